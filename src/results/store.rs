//! The append-only store of one trajectory: `results.jsonl` and one shard per concurrent
//! writer, read whole on open and incrementally by `reload`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{io_err, trajectory_dir, ResultRecord, ResultsError};

pub(super) const RESULTS_FILE: &str = "results.jsonl";

/// The append-only store of one trajectory's results.
#[derive(Debug)]
pub struct ResultsStore {
    /// Where this store appends: `results.jsonl`, or its own shard.
    path: PathBuf,
    dir: PathBuf,
    records: Vec<ResultRecord>,
    /// How far each file of the store has been read (complete lines only).
    read_to: std::collections::HashMap<PathBuf, u64>,
    /// Records this store appended that a later read will meet again.
    own_unread: Vec<ResultRecord>,
}

/// Shards written by other processes (Slurm array tasks), one file per writer.
pub const SHARDS_DIR: &str = "shards";

impl ResultsStore {
    /// Opens (creating) the store in `dir`, reading `results.jsonl` and every shard in
    /// `shards/`; a torn last line of `results.jsonl` is cut off, with a warning.
    pub fn open(dir: &Path) -> Result<(ResultsStore, Vec<String>), ResultsError> {
        Self::open_as(dir, None)
    }

    /// As [`ResultsStore::open`], appending to `shards/NAME.jsonl` instead of `results.jsonl`:
    /// each of several concurrent writers (array tasks on other nodes) has a file of its own.
    pub fn open_shard(dir: &Path, name: &str) -> Result<(ResultsStore, Vec<String>), ResultsError> {
        Self::open_as(dir, Some(name))
    }

    fn open_as(
        dir: &Path,
        shard: Option<&str>,
    ) -> Result<(ResultsStore, Vec<String>), ResultsError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let main = dir.join(RESULTS_FILE);
        let path = match shard {
            Some(name) => {
                let shards = dir.join(SHARDS_DIR);
                fs::create_dir_all(&shards).map_err(io_err(&shards))?;
                shards.join(format!("{name}.jsonl"))
            }
            None => main.clone(),
        };
        let mut warnings = Vec::new();
        // Our own file: a torn last line is an interrupted write of ours, cut off so the next
        // append starts a fresh line.
        if let Ok(bytes) = fs::read(&path) {
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete < bytes.len() {
                warnings.push(format!(
                    "{}: ignored a torn last line ({} bytes; an interrupted write)",
                    path.display(),
                    bytes.len() - complete
                ));
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(complete as u64).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
        }
        let mut store = ResultsStore {
            path,
            dir: dir.to_path_buf(),
            records: Vec::new(),
            read_to: Default::default(),
            own_unread: Vec::new(),
        };
        let (_, w) = store.reload()?;
        warnings.extend(w);
        Ok((store, warnings))
    }

    /// The files of the store: `results.jsonl`, then the shards in name order.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.dir.join(RESULTS_FILE)];
        if let Ok(rd) = fs::read_dir(self.dir.join(SHARDS_DIR)) {
            let mut shards: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            shards.sort();
            files.extend(shards);
        }
        files
    }

    /// Reads what other writers appended since the last read (complete lines only; a line
    /// being written is read next time) and returns how many records are new, with warnings
    /// for lines that are not records. The explorer calls this to watch a running sweep.
    pub fn reload(&mut self) -> Result<(usize, Vec<String>), ResultsError> {
        let mut warnings = Vec::new();
        let before = self.records.len();
        for file in self.files() {
            let from = self.read_to.get(&file).copied().unwrap_or(0);
            let mut f = match File::open(&file) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&file)(e)),
            };
            let len = f.metadata().map_err(io_err(&file))?.len();
            if len <= from {
                continue;
            }
            f.seek(SeekFrom::Start(from)).map_err(io_err(&file))?;
            let mut bytes = Vec::with_capacity((len - from) as usize);
            f.read_to_end(&mut bytes).map_err(io_err(&file))?;
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // Line numbers for messages count from the start of the file.
            let first_line = if from == 0 {
                0
            } else {
                fs::read(&file)
                    .map(|b| b[..from as usize].iter().filter(|&&c| c == b'\n').count())
                    .unwrap_or(0)
            };
            for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<ResultRecord>(line) {
                    Ok(r) => match self.own_unread.iter().position(|o| *o == r) {
                        Some(k) if file == self.path => {
                            self.own_unread.swap_remove(k);
                        }
                        _ => self.records.push(r),
                    },
                    Err(e) => warnings.push(format!(
                        "{}: line {}: skipped, not a result record: {e}",
                        file.display(),
                        first_line + i + 1
                    )),
                }
            }
            self.read_to.insert(file, from + complete as u64);
        }
        Ok((self.records.len() - before, warnings))
    }

    /// The store of `source` under lawa's data dir `home`.
    pub fn open_for_source(
        home: &Path,
        source: &str,
    ) -> Result<(ResultsStore, Vec<String>), ResultsError> {
        Self::open(&trajectory_dir(home, source))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn records(&self) -> &[ResultRecord] {
        &self.records
    }

    /// Appends one record as one whole line and fsyncs before returning.
    pub fn append(&mut self, record: ResultRecord) -> Result<(), ResultsError> {
        let mut line = serde_json::to_vec(&record).map_err(|e| ResultsError::Json {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        // One write call of the whole line: concurrent appenders never interleave within a line.
        f.write_all(&line).map_err(io_err(&self.path))?;
        f.sync_data().map_err(io_err(&self.path))?;
        // Our own line is in `records` already; reading it back would show it twice. When no
        // one else appended since the last read, skip past it; else read it back and drop it.
        let end = f.metadata().map_err(io_err(&self.path))?.len();
        let read = self.read_to.get(&self.path).copied().unwrap_or(0);
        if read + line.len() as u64 == end {
            self.read_to.insert(self.path.clone(), end);
        } else {
            self.own_unread.push(record.clone());
        }
        self.records.push(record);
        Ok(())
    }
}

/// Reads the last `n` bytes of a file (used by tests and diagnostics of torn writes).
pub fn tail_bytes(path: &Path, n: u64) -> Result<Vec<u8>, ResultsError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(n)))
        .map_err(io_err(path))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(io_err(path))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::record::tests::record;
    use crate::results::RAW;

    #[test]
    fn appended_records_are_loaded_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, w) = ResultsStore::open(dir.path()).unwrap();
        assert!(w.is_empty() && s.records().is_empty());
        s.append(record(10, RAW, 2.0)).unwrap();
        s.append(record(20, "uniform", 1.5)).unwrap();
        let (s2, w2) = ResultsStore::open(dir.path()).unwrap();
        assert!(w2.is_empty());
        assert_eq!(s2.records(), s.records());
        assert_eq!(s2.records()[1].end_step, 20);
    }

    #[test]
    fn torn_last_line_is_dropped_with_a_warning_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = ResultsStore::open(dir.path()).unwrap();
        s.append(record(10, RAW, 2.0)).unwrap();
        // A write cut short by a crash: half a JSON line, no newline.
        let full = serde_json::to_string(&record(20, RAW, 1.0)).unwrap();
        let mut f = OpenOptions::new().append(true).open(s.path()).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);
        let (mut s2, w) = ResultsStore::open(dir.path()).unwrap();
        assert_eq!(s2.records().len(), 1);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("torn last line"), "{}", w[0]);
        s2.append(record(30, RAW, 1.0)).unwrap();
        let (s3, w3) = ResultsStore::open(dir.path()).unwrap();
        assert!(w3.is_empty(), "{w3:?}");
        assert_eq!(
            s3.records().iter().map(|r| r.end_step).collect::<Vec<_>>(),
            vec![10, 30]
        );
        assert_eq!(tail_bytes(s3.path(), 1).unwrap(), b"\n");
    }

    #[test]
    fn garbage_lines_are_skipped_with_their_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&record(10, RAW, 2.0)).unwrap();
        fs::write(
            dir.path().join(RESULTS_FILE),
            format!("{line}\nnot json\n\n{line}\n"),
        )
        .unwrap();
        let (s, w) = ResultsStore::open(dir.path()).unwrap();
        assert_eq!(s.records().len(), 2);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("line 2"), "{}", w[0]);
    }

    #[test]
    fn a_line_whose_scheme_does_not_parse_is_skipped_and_named() {
        // Hand-edited: a scheme lawa never writes. Read as some other curve it would be
        // drawn under a wrong name; it is left out, and the warning says which line and why.
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&record(20, "ema:50", 2.0)).unwrap();
        let bad = good.replace("\"ema:50\"", "\"ema:soon\"");
        fs::write(dir.path().join(RESULTS_FILE), format!("{good}\n{bad}\n")).unwrap();
        let (s, w) = ResultsStore::open(dir.path()).unwrap();
        assert_eq!(s.records().len(), 1);
        assert_eq!(s.records()[0].scheme_label(), "ema:50");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("line 2") && w[0].contains("half-life"),
            "{}",
            w[0]
        );
    }
}
