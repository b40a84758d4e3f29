//! The per-trajectory results store (append-only) and the averaged-model cache.
//!
//! Every evaluation result is one JSON line in `results.jsonl` under the trajectory's data dir
//! (`$LAWA_HOME/trajectories/<hash of the source>/`). Lines are appended whole and fsynced, so a
//! crash or kill leaves at worst a torn last line, which is dropped (with a warning) on open.
//! Averaged model dirs live beside it in `models/`, evicted oldest-first above a size limit.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tasks::{TaskName, TaskResult};

/// Version of lawa that wrote a record.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The scheme name of a record that evaluates one checkpoint as it is.
pub const RAW: &str = "raw";

const RESULTS_FILE: &str = "results.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Json { path: PathBuf, msg: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One evaluation: a raw checkpoint (`scheme == "raw"`) or an average of a window of checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The trajectory's source string.
    pub source: String,
    /// The checkpoint the window ends at (the x position of the result).
    pub end_step: u64,
    /// The checkpoints that were averaged (one for a raw checkpoint).
    pub steps: Vec<u64>,
    /// `raw`, `uniform`, `ema:HALF_LIFE`, `linear`, `custom:w1,w2,...` (the average scheme's Display).
    pub scheme: String,
    /// The window size asked for (the spike-aware window may skip checkpoints but keeps k).
    pub k: usize,
    /// Checkpoints inside detected loss spikes were left out of the window.
    pub spike_aware: bool,
    /// Normalised weight of each step in `steps`.
    pub weights: Vec<f64>,
    /// Eval data: its file name (for people) and content hash (for matching).
    pub data: String,
    pub data_hash: String,
    pub ctx: usize,
    pub max_tokens: Option<u64>,
    pub dtype: String,
    pub device: String,
    /// Perplexity results: the mean NLL and perplexity of `data`. A task result has none
    /// (NaN here, absent from the file): its scores are in `task`.
    #[serde(default = "nan", skip_serializing_if = "is_nan")]
    pub mean_nll: f64,
    #[serde(default = "nan", skip_serializing_if = "is_nan")]
    pub ppl: f64,
    pub bits_per_byte: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub predicted_tokens: u64,
    /// A zero-shot task's scores (`data` and `data_hash` then name the task file); `None`:
    /// a perplexity result (every record written before tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskResult>,
    pub tool_version: String,
    /// Seconds since the Unix epoch when the result was stored.
    pub unix_time: u64,
}

fn nan() -> f64 {
    f64::NAN
}

fn is_nan(x: &f64) -> bool {
    x.is_nan()
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// What a result measures: the eval data's loss (and perplexity), or a zero-shot task's
/// accuracy. Results of two metrics are never compared or drawn on one axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    #[default]
    Perplexity,
    Task(TaskName),
}

impl Metric {
    /// Accuracy is better higher; loss and perplexity lower.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Task(_))
    }

    /// Whether `avg` beats `raw` (values as [`ResultRecord::value`] gives them); a tie is
    /// not a win.
    pub fn better(self, avg: f64, raw: f64) -> bool {
        if self.higher_is_better() {
            avg > raw
        } else {
            avg < raw
        }
    }

    /// `avg` against `raw` as people read it: the perplexity change in % for losses,
    /// accuracy points (percentage points) for tasks.
    pub fn change(self, avg: f64, raw: f64) -> f64 {
        match self {
            Metric::Perplexity => (avg - raw).exp_m1() * 100.0,
            Metric::Task(_) => (avg - raw) * 100.0,
        }
    }

    /// Whether a [`Metric::change`] is an improvement.
    pub fn improves(self, change: f64) -> bool {
        if self.higher_is_better() {
            change > 0.0
        } else {
            change < 0.0
        }
    }

    /// The unit of [`Metric::change`]: `%` (of perplexity) or `pp` (accuracy points).
    pub fn change_unit(self) -> &'static str {
        match self {
            Metric::Perplexity => "%",
            Metric::Task(_) => "pp",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Perplexity => f.write_str("perplexity"),
            Metric::Task(t) => write!(f, "{t} accuracy"),
        }
    }
}

impl ResultRecord {
    pub fn is_raw(&self) -> bool {
        self.scheme == RAW
    }
    /// What this result measures.
    pub fn metric(&self) -> Metric {
        self.task
            .as_ref()
            .map_or(Metric::Perplexity, |t| Metric::Task(t.task))
    }
    /// The number the charts, the list and the verdict compare: the mean NLL (nats) of a
    /// perplexity result, the accuracy (0..1) of a task result.
    pub fn value(&self) -> f64 {
        match &self.task {
            None => self.mean_nll,
            Some(t) => t.acc,
        }
    }
    /// The curve this result belongs to.
    pub fn series(&self) -> String {
        series_label(&self.scheme, self.k, self.spike_aware)
    }
}

/// Name of the curve of one averaging setting: `raw`, `uniform k=5`, `ema:200 k=8 spike-aware`.
pub fn series_label(scheme: &str, k: usize, spike_aware: bool) -> String {
    if scheme == RAW {
        return RAW.to_string();
    }
    let aware = if spike_aware { " spike-aware" } else { "" };
    format!("{scheme} k={k}{aware}")
}

/// Which eval data and settings a record must match to be shown next to others.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EvalKey {
    pub metric: Metric,
    pub data_hash: String,
    /// `None`: the model's default context (whatever the record says).
    pub ctx: Option<usize>,
    pub max_tokens: Option<u64>,
}

impl EvalKey {
    pub fn matches(&self, r: &ResultRecord) -> bool {
        r.metric() == self.metric
            && r.data_hash == self.data_hash
            && self.ctx.is_none_or(|c| c == r.ctx)
            && self.max_tokens == r.max_tokens
    }
}

/// The eval settings a result was computed with, all resolved (no "auto"): two results are
/// comparable only when every field is equal. The explorer shows exactly one such set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvalSettings {
    /// Perplexity of the eval data, or a task (older sweep plans: perplexity).
    #[serde(default)]
    pub metric: Metric,
    /// The eval data's or the task file's content hash.
    pub data_hash: String,
    /// Tokens per window (a task: the model's context, where the harness truncates).
    pub ctx: usize,
    pub max_tokens: Option<u64>,
    /// As the record stores it (`f32` on the CPU, `checkpoint` on a GPU).
    pub dtype: String,
}

impl EvalSettings {
    pub fn of(r: &ResultRecord) -> Self {
        EvalSettings {
            metric: r.metric(),
            data_hash: r.data_hash.clone(),
            ctx: r.ctx,
            max_tokens: r.max_tokens,
            dtype: r.dtype.clone(),
        }
    }

    pub fn matches(&self, r: &ResultRecord) -> bool {
        r.metric() == self.metric
            && r.data_hash == self.data_hash
            && r.ctx == self.ctx
            && r.max_tokens == self.max_tokens
            && r.dtype == self.dtype
    }
}

/// Seconds since the epoch, for record timestamps.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Stable key of a trajectory source: an existing path is canonicalised first, so `./run` and
/// `/abs/run` share one store.
pub fn source_key(source: &str) -> String {
    let canonical = fs::canonicalize(source)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| source.to_string());
    hex16(canonical.as_bytes())
}

/// The data dir of one trajectory: `HOME/trajectories/<source key>`, where `home` is lawa's
/// data dir ([`crate::config::Config::home`]: `$LAWA_HOME`).
pub fn trajectory_dir(home: &Path, source: &str) -> PathBuf {
    home.join("trajectories").join(source_key(source))
}

/// First 16 hex digits of the sha256 of `bytes`.
pub fn hex16(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Hash identifying eval data by content: `text:` or `tokens:` + sha256 of the file.
pub fn file_hash(kind: &str, path: &Path) -> Result<String, ResultsError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{kind}:{hex}"))
}

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

    pub(crate) fn record(end: u64, scheme: &str, nll: f64) -> ResultRecord {
        ResultRecord {
            source: "run".into(),
            end_step: end,
            steps: vec![end],
            scheme: scheme.into(),
            k: 1,
            spike_aware: false,
            weights: vec![1.0],
            data: "heldout.txt".into(),
            data_hash: "text:abc".into(),
            ctx: 64,
            max_tokens: None,
            dtype: "f32".into(),
            device: "cpu".into(),
            mean_nll: nll,
            ppl: nll.exp(),
            bits_per_byte: Some(1.0),
            predicted_tokens: 100,
            task: None,
            tool_version: TOOL_VERSION.into(),
            unix_time: 1,
        }
    }

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
    fn eval_key_matches_data_ctx_and_max_tokens() {
        let r = record(10, RAW, 2.0);
        let mut k = EvalKey {
            metric: Metric::Perplexity,
            data_hash: "text:abc".into(),
            ctx: None,
            max_tokens: None,
        };
        assert!(k.matches(&r));
        k.ctx = Some(64);
        assert!(k.matches(&r));
        k.ctx = Some(128);
        assert!(!k.matches(&r));
        k.ctx = None;
        k.max_tokens = Some(10);
        assert!(!k.matches(&r));
        k.max_tokens = None;
        k.data_hash = "text:other".into();
        assert!(!k.matches(&r));
    }

    #[test]
    fn eval_settings_match_every_resolved_field() {
        let r = record(10, RAW, 2.0);
        let s = EvalSettings::of(&r);
        assert!(s.matches(&r));
        for change in [
            |r: &mut ResultRecord| r.ctx = 32,
            |r: &mut ResultRecord| r.max_tokens = Some(10),
            |r: &mut ResultRecord| r.data_hash = "text:other".into(),
            |r: &mut ResultRecord| r.dtype = "checkpoint".into(),
        ] {
            let mut other = r.clone();
            change(&mut other);
            assert!(!s.matches(&other), "{other:?}");
        }
    }

    #[test]
    fn series_labels() {
        assert_eq!(series_label(RAW, 5, true), "raw");
        assert_eq!(series_label("uniform", 5, false), "uniform k=5");
        assert_eq!(series_label("ema:200", 8, true), "ema:200 k=8 spike-aware");
    }

    #[test]
    fn source_key_is_the_same_for_relative_and_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let abs = dir.path().to_string_lossy().into_owned();
        let with_dot = format!("{abs}/.");
        assert_eq!(source_key(&abs), source_key(&with_dot));
        assert_ne!(source_key("hf:a/b"), source_key("hf:a/c"));
    }

    #[test]
    fn file_hash_depends_on_content_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        fs::write(&a, "hello").unwrap();
        let h1 = file_hash("text", &a).unwrap();
        assert!(h1.starts_with("text:"));
        assert_ne!(h1, file_hash("tokens", &a).unwrap());
        fs::write(&a, "hellp").unwrap();
        assert_ne!(h1, file_hash("text", &a).unwrap());
        let e = file_hash("text", &dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    pub(crate) fn task_record(end: u64, scheme: &str, acc: f64, hash: &str) -> ResultRecord {
        ResultRecord {
            data: "cloze.jsonl".into(),
            data_hash: hash.into(),
            mean_nll: f64::NAN,
            ppl: f64::NAN,
            bits_per_byte: None,
            predicted_tokens: 0,
            task: Some(TaskResult {
                task: TaskName::LambadaOpenai,
                n: 10,
                acc,
                acc_stderr: 0.1,
                acc_norm: None,
                acc_norm_stderr: None,
                perplexity: Some(100.0),
            }),
            ..record(end, scheme, 0.0)
        }
    }

    #[test]
    fn the_direction_of_better_follows_the_metric() {
        let ppl = Metric::Perplexity;
        let acc = Metric::Task(TaskName::Piqa);
        // Lower NLL is better; higher accuracy is; a tie is neither.
        assert!(ppl.better(2.0, 2.5) && !ppl.better(2.5, 2.0) && !ppl.better(2.0, 2.0));
        assert!(acc.better(0.6, 0.5) && !acc.better(0.5, 0.6) && !acc.better(0.5, 0.5));
        // Changes: % of perplexity, accuracy points.
        assert!((ppl.change(2.0, 2.0f64.ln() + 2.0) - (0.5f64 - 1.0) * 100.0).abs() < 1e-9);
        assert!((acc.change(0.62, 0.5) - 12.0).abs() < 1e-9);
        assert!(ppl.improves(-3.0) && !ppl.improves(3.0));
        assert!(acc.improves(3.0) && !acc.improves(-3.0) && !acc.improves(0.0));
        assert_eq!((ppl.change_unit(), acc.change_unit()), ("%", "pp"));
        assert_eq!(acc.to_string(), "piqa accuracy");
    }

    #[test]
    fn a_task_record_has_no_perplexity_in_the_file_and_reads_back_typed() {
        let r = task_record(10, RAW, 0.25, "task:aa");
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            !line.contains("mean_nll") && !line.contains("\"ppl\""),
            "{line}"
        );
        assert!(line.contains("\"task\":\"lambada_openai\""), "{line}");
        let back: ResultRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.metric(), Metric::Task(TaskName::LambadaOpenai));
        assert_eq!(back.value(), 0.25);
        assert!(back.mean_nll.is_nan());
        // A perplexity record (every record before tasks) is a perplexity result.
        let p = record(10, RAW, 2.0);
        let back: ResultRecord = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!((back.metric(), back.value()), (Metric::Perplexity, 2.0));
    }

    #[test]
    fn task_results_are_keyed_by_task_and_file_hash_and_never_mixed_with_perplexity() {
        let t = task_record(10, RAW, 0.25, "task:aa");
        let s = EvalSettings::of(&t);
        assert_eq!(s.metric, Metric::Task(TaskName::LambadaOpenai));
        assert!(s.matches(&t));
        // Another file's results, another task's, a perplexity result of the same hash.
        let other_file = task_record(10, RAW, 0.25, "task:bb");
        assert!(!s.matches(&other_file));
        let mut other_task = t.clone();
        other_task.task.as_mut().unwrap().task = TaskName::Piqa;
        assert!(!s.matches(&other_task));
        let mut ppl = record(10, RAW, 2.0);
        ppl.data_hash = "task:aa".into();
        ppl.ctx = t.ctx;
        assert!(!s.matches(&ppl));
        assert!(!EvalSettings::of(&ppl).matches(&t));
    }
}
