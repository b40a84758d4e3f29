//! [`SafetensorsWriter`]: writes a model as a stream. The header of every shard is computed
//! from the plan (names, dtypes, shapes) before any data, so tensors go straight to disk one at
//! a time and memory never holds more than the tensor being written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::safetensors::build_header;
use super::{CheckpointError, TensorInfo};

/// Shard above this many data bytes (the Hugging Face default, 5 GB).
pub const DEFAULT_SHARD_SIZE: u64 = 5_000_000_000;

/// One output file: which plan entries it holds.
struct Shard {
    path: PathBuf,
    range: std::ops::Range<usize>,
    data_bytes: u64,
}

/// A tensor taken with [`SafetensorsWriter::claim`]: its bytes go at `offset` in `file` (the
/// shard at `path`).
pub struct Claimed<'a> {
    pub file: &'a File,
    pub offset: u64,
    pub path: &'a Path,
}

/// Streaming safetensors writer: [`create`](Self::create) with the plan, then
/// [`write`](Self::write) each tensor's bytes in plan order, then [`finish`](Self::finish).
pub struct SafetensorsWriter {
    dir: PathBuf,
    plan: Vec<TensorInfo>,
    shards: Vec<Shard>,
    next: usize,
    shard: usize,
    out: Option<BufWriter<File>>,
    bytes_written: u64,
    /// Bytes of the current tensor written so far (streamed in parts).
    partial: usize,
}

impl SafetensorsWriter {
    /// Plans the files in `dir`: `model.safetensors`, or `model-0000i-of-0000n.safetensors` +
    /// `model.safetensors.index.json` when the data exceeds `shard_size` bytes. A tensor
    /// larger than `shard_size` gets a shard of its own.
    pub fn create(
        dir: &Path,
        plan: Vec<TensorInfo>,
        shard_size: u64,
    ) -> Result<SafetensorsWriter, CheckpointError> {
        let mut seen = std::collections::HashSet::new();
        for t in &plan {
            if !seen.insert(t.name.as_str()) {
                return Err(CheckpointError::Write {
                    path: dir.to_path_buf(),
                    problem: format!("tensor '{}' is planned twice", t.name),
                });
            }
        }
        let mut ranges: Vec<(std::ops::Range<usize>, u64)> = Vec::new();
        let (mut begin, mut size) = (0usize, 0u64);
        for (i, t) in plan.iter().enumerate() {
            let n = t.nbytes() as u64;
            if i > begin && size + n > shard_size {
                ranges.push((begin..i, size));
                (begin, size) = (i, 0);
            }
            size += n;
        }
        ranges.push((begin..plan.len(), size));
        let total = ranges.len();
        let shards = ranges
            .into_iter()
            .enumerate()
            .map(|(i, (range, data_bytes))| Shard {
                path: dir.join(if total == 1 {
                    "model.safetensors".to_string()
                } else {
                    format!("model-{:05}-of-{:05}.safetensors", i + 1, total)
                }),
                range,
                data_bytes,
            })
            .collect();
        let mut w = SafetensorsWriter {
            dir: dir.to_path_buf(),
            plan,
            shards,
            next: 0,
            shard: 0,
            out: None,
            bytes_written: 0,
            partial: 0,
        };
        w.open_shard()?;
        Ok(w)
    }

    /// The files this writer creates (shards, then the index when sharded).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.shards.iter().map(|s| s.path.clone()).collect();
        if self.shards.len() > 1 {
            v.push(self.dir.join("model.safetensors.index.json"));
        }
        v
    }

    /// The tensor expected next.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.plan.get(self.next)
    }

    fn err(&self, problem: String) -> CheckpointError {
        CheckpointError::Write {
            path: self.shards[self.shard.min(self.shards.len() - 1)]
                .path
                .clone(),
            problem,
        }
    }

    fn open_shard(&mut self) -> Result<(), CheckpointError> {
        let shard = &self.shards[self.shard];
        let header = build_header(&self.plan[shard.range.clone()]);
        let file = File::create(&shard.path).map_err(|e| CheckpointError::io(&shard.path, e))?;
        // Big tensors bypass the buffer; small ones are batched into few syscalls.
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header)
            .map_err(|e| CheckpointError::io(&shard.path, e))?;
        self.bytes_written += header.len() as u64;
        self.out = Some(out);
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), CheckpointError> {
        if let Some(out) = self.out.take() {
            let path = &self.shards[self.shard].path;
            // No fsync here: `OutputDir::commit` syncs every file of the output, then the dir,
            // before the rename, so the writes of all shards reach the disk together.
            out.into_inner()
                .map_err(|e| CheckpointError::io(path, e.into_error()))?;
        }
        Ok(())
    }

    /// Writes the next tensor of the plan whole; `name` and the byte count must match it.
    pub fn write(&mut self, name: &str, data: &[u8]) -> Result<(), CheckpointError> {
        if let Some(t) = self.plan.get(self.next) {
            if t.name == name && (self.partial != 0 || t.nbytes() != data.len()) {
                return Err(self.err(format!(
                    "tensor '{name}': {} bytes written, {} planned",
                    self.partial + data.len(),
                    t.nbytes()
                )));
            }
        }
        self.write_part(name, data)
    }

    /// Appends the next bytes of the current tensor (the next of the plan), so a tensor can be
    /// streamed in pieces; the tensor is complete once its planned byte count is reached.
    pub fn write_part(&mut self, name: &str, data: &[u8]) -> Result<(), CheckpointError> {
        let Some(t) = self.plan.get(self.next) else {
            return Err(self.err(format!("tensor '{name}' written after the plan's end")));
        };
        if t.name != name {
            return Err(self.err(format!(
                "tensor '{name}' written where the plan expects '{}'",
                t.name
            )));
        }
        let nbytes = t.nbytes();
        if self.partial + data.len() > nbytes {
            return Err(self.err(format!(
                "tensor '{name}': {} bytes written, {nbytes} planned",
                self.partial + data.len()
            )));
        }
        while self.next >= self.shards[self.shard].range.end {
            self.close_shard()?;
            self.shard += 1;
            self.open_shard()?;
        }
        let path = &self.shards[self.shard].path;
        self.out
            .as_mut()
            .expect("a shard is open while tensors remain")
            .write_all(data)
            .map_err(|e| CheckpointError::io(path, e))?;
        self.bytes_written += data.len() as u64;
        self.partial += data.len();
        if self.partial == nbytes {
            self.next += 1;
            self.partial = 0;
        }
        Ok(())
    }

    /// Takes the next tensor of the plan for the caller to write itself with positional writes
    /// (`write_all_at`, from any number of threads): returns its shard file and the offset of
    /// its first byte there, and counts it as written. The caller must fill exactly its
    /// `nbytes()` there before [`finish`](Self::finish); writes through this writer continue
    /// after it.
    pub fn claim(&mut self, name: &str) -> Result<Claimed<'_>, CheckpointError> {
        let Some(t) = self.plan.get(self.next) else {
            return Err(self.err(format!("tensor '{name}' claimed after the plan's end")));
        };
        if t.name != name || self.partial != 0 {
            return Err(self.err(format!(
                "tensor '{name}' claimed where the plan expects '{}'",
                t.name
            )));
        }
        let nbytes = t.nbytes() as i64;
        while self.next >= self.shards[self.shard].range.end {
            self.close_shard()?;
            self.shard += 1;
            self.open_shard()?;
        }
        let path = &self.shards[self.shard].path;
        let out = self
            .out
            .as_mut()
            .expect("a shard is open while tensors remain");
        // Flushes what is buffered, then moves the cursor past the claimed bytes so later
        // sequential writes land after them.
        let offset = out
            .stream_position()
            .and_then(|at| out.seek(SeekFrom::Current(nbytes)).map(|_| at))
            .map_err(|e| CheckpointError::io(path, e))?;
        self.bytes_written += nbytes as u64;
        self.next += 1;
        Ok(Claimed {
            file: out.get_ref(),
            offset,
            path,
        })
    }

    /// Checks every planned tensor was written, flushes, writes the shard index.
    /// Returns the bytes written (headers included).
    pub fn finish(mut self) -> Result<u64, CheckpointError> {
        if self.partial != 0 {
            let t = &self.plan[self.next];
            return Err(self.err(format!(
                "tensor '{}': only {} of {} bytes written",
                t.name,
                self.partial,
                t.nbytes()
            )));
        }
        if self.next != self.plan.len() {
            return Err(self.err(format!(
                "finished after {} of {} tensors (next: '{}')",
                self.next,
                self.plan.len(),
                self.plan[self.next].name
            )));
        }
        self.close_shard()?;
        // Shards after the last written tensor can only be empty ones (an empty plan).
        while self.shard + 1 < self.shards.len() {
            self.shard += 1;
            self.open_shard()?;
            self.close_shard()?;
        }
        if self.shards.len() > 1 {
            let mut weight_map = BTreeMap::new();
            for s in &self.shards {
                let file = s.path.file_name().unwrap_or_default().to_string_lossy();
                for t in &self.plan[s.range.clone()] {
                    weight_map.insert(t.name.clone(), file.to_string());
                }
            }
            let total: u64 = self.shards.iter().map(|s| s.data_bytes).sum();
            let index = serde_json::json!({
                "metadata": {"total_size": total},
                "weight_map": weight_map,
            });
            let path = self.dir.join("model.safetensors.index.json");
            let text = serde_json::to_string_pretty(&index).expect("JSON of strings");
            std::fs::write(&path, &text).map_err(|e| CheckpointError::io(&path, e))?;
            self.bytes_written += text.len() as u64;
        }
        Ok(self.bytes_written)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DType, WeightsReader};
    use super::*;

    fn plan() -> Vec<TensorInfo> {
        vec![
            TensorInfo {
                name: "w1".into(),
                dtype: DType::F32,
                shape: vec![4, 3],
            },
            TensorInfo {
                name: "mask".into(),
                dtype: DType::Bool,
                shape: vec![5],
            },
            TensorInfo {
                name: "w2".into(),
                dtype: DType::BF16,
                shape: vec![7],
            },
        ]
    }

    fn data(t: &TensorInfo) -> Vec<u8> {
        (0..t.nbytes())
            .map(|i| (i as u8).wrapping_mul(31) ^ t.name.len() as u8)
            .collect()
    }

    #[test]
    fn single_and_sharded_outputs_read_back_identically() {
        for shard_size in [DEFAULT_SHARD_SIZE, 48, 1] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = SafetensorsWriter::create(dir.path(), plan(), shard_size).unwrap();
            let files = w.files();
            for t in plan() {
                w.write(&t.name, &data(&t)).unwrap();
            }
            let written = w.finish().unwrap();
            let on_disk: u64 = files
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum();
            assert_eq!(written, on_disk);
            let r = WeightsReader::open(dir.path()).unwrap();
            let expect_shards = match shard_size {
                DEFAULT_SHARD_SIZE => 1,
                48 => 2, // w1 (48 bytes) alone, then mask + w2
                _ => 3,
            };
            assert_eq!(r.files().len(), expect_shards, "shard size {shard_size}");
            assert_eq!(r.tensors(), plan().as_slice());
            for t in plan() {
                assert_eq!(&*r.bytes(&t.name).unwrap(), data(&t).as_slice());
            }
        }
    }

    #[test]
    fn tensors_can_be_streamed_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SafetensorsWriter::create(dir.path(), plan(), 48).unwrap();
        for t in plan() {
            let d = data(&t);
            for piece in d.chunks(5) {
                w.write_part(&t.name, piece).unwrap();
            }
        }
        w.finish().unwrap();
        let r = WeightsReader::open(dir.path()).unwrap();
        for t in plan() {
            assert_eq!(&*r.bytes(&t.name).unwrap(), data(&t).as_slice());
        }
        let dir = tempfile::tempdir().unwrap();
        let mut w = SafetensorsWriter::create(dir.path(), plan(), 48).unwrap();
        w.write_part("w1", &[0; 40]).unwrap();
        assert!(w
            .write_part("w1", &[0; 9])
            .unwrap_err()
            .to_string()
            .contains("49 bytes written, 48 planned"));
        assert!(
            w.write("w1", &[0; 8]).is_err(),
            "whole write in the middle of a tensor"
        );
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("only 40 of 48 bytes"), "{e}");
    }

    #[test]
    fn claimed_tensors_written_in_place_mix_with_streamed_ones() {
        use std::os::unix::fs::FileExt;
        for shard_size in [48, DEFAULT_SHARD_SIZE] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = SafetensorsWriter::create(dir.path(), plan(), shard_size).unwrap();
            for (i, t) in plan().iter().enumerate() {
                let d = data(t);
                if i % 2 == 0 {
                    let c = w.claim(&t.name).unwrap();
                    // Back to front: the order of positional writes does not matter.
                    for (k, piece) in d.chunks(5).enumerate().rev() {
                        c.file.write_all_at(piece, c.offset + 5 * k as u64).unwrap();
                    }
                } else {
                    w.write(&t.name, &d).unwrap();
                }
            }
            assert!(w.claim("w1").is_err(), "claim past the plan");
            w.finish().unwrap();
            let r = WeightsReader::open(dir.path()).unwrap();
            for t in plan() {
                assert_eq!(&*r.bytes(&t.name).unwrap(), data(&t).as_slice());
            }
        }
    }

    #[test]
    fn writes_out_of_plan_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SafetensorsWriter::create(dir.path(), plan(), DEFAULT_SHARD_SIZE).unwrap();
        assert!(w
            .write("w2", &[0; 14])
            .unwrap_err()
            .to_string()
            .contains("expects 'w1'"));
        assert!(w
            .write("w1", &[0; 3])
            .unwrap_err()
            .to_string()
            .contains("48 planned"));
        w.write("w1", &[0; 48]).unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(
            e.contains("after 1 of 3") && e.contains("model.safetensors"),
            "{e}"
        );
    }
}
