//! [`WeightsReader`]: an opened checkpoint, any format, read one tensor at a time.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::safetensors::parse_header;
use super::torch::{read_bin_index, read_torch_index, torch_tensor_bytes, TorchTensor};
use super::{is_buffer, CheckpointError, DType, Format, TensorInfo};

/// One memory-mapped weights file.
struct MappedFile {
    path: PathBuf,
    file: fs::File,
    map: Mmap,
}

/// Where a tensor's bytes are inside its file.
#[derive(Clone, Debug)]
enum Loc {
    /// Contiguous little-endian bytes `start..end` (absolute file offsets).
    Range { start: u64, end: u64 },
    /// A view of a storage inside a PyTorch zip (possibly strided).
    Torch(Box<TorchTensor>),
}

#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    loc: Loc,
}

/// An opened checkpoint: all headers parsed and validated, the data memory-mapped, tensors
/// read one at a time. Opening reads only headers, so it is cheap even for large models.
pub struct WeightsReader {
    path: PathBuf,
    format: Format,
    files: Vec<MappedFile>,
    tensors: Vec<TensorInfo>,
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    header_hash: String,
}

impl std::fmt::Debug for WeightsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightsReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
const SAFETENSORS_SINGLE: &str = "model.safetensors";
const TORCH_INDEX: &str = "pytorch_model.bin.index.json";
const TORCH_SINGLE: &str = "pytorch_model.bin";

fn map_file(path: &Path) -> Result<(fs::File, Mmap), CheckpointError> {
    // Checked before opening: opening a FIFO would block, mapping a folder says "No such device".
    let meta = fs::metadata(path).map_err(|e| CheckpointError::io(path, e))?;
    if meta.is_dir() {
        return Err(CheckpointError::invalid(
            path,
            "is a folder, not a weights file",
        ));
    }
    if !meta.is_file() {
        return Err(CheckpointError::invalid(
            path,
            "is not a regular file (a FIFO, socket or device), not a weights file",
        ));
    }
    let file = fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    // SAFETY: the mapping is read-only; like every mmap-based reader (candle, safetensors) we
    // rely on checkpoint files not being modified while they are open.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
    Ok((file, map))
}

impl WeightsReader {
    /// Opens an HF-style model dir (`config.json` + weights) or a single weights file (or a
    /// shard index `.json`). Validates every header; reads no tensor data.
    pub fn open(path: &Path) -> Result<WeightsReader, CheckpointError> {
        let meta = fs::metadata(path).map_err(|e| CheckpointError::io(path, e))?;
        let (format, file) = if meta.is_dir() {
            Self::find_in_dir(path)?
        } else {
            (Self::format_of_file(path)?, path.to_path_buf())
        };
        let mut reader = match format {
            Format::Safetensors => Self::open_files(vec![file], None, false)?,
            Format::ShardedSafetensors => Self::open_sharded_safetensors(&file)?,
            Format::TorchBin | Format::TorchPt => Self::open_files(vec![file], None, true)?,
            Format::ShardedTorchBin => Self::open_sharded_torch(&file)?,
        };
        reader.path = path.to_path_buf();
        reader.format = format;
        Ok(reader)
    }

    fn format_of_file(path: &Path) -> Result<Format, CheckpointError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(if name.ends_with(".safetensors.index.json") {
            Format::ShardedSafetensors
        } else if name.ends_with(".bin.index.json") {
            Format::ShardedTorchBin
        } else if name.ends_with(".safetensors") {
            Format::Safetensors
        } else if name.ends_with(".bin") {
            Format::TorchBin
        } else if name.ends_with(".pt") || name.ends_with(".pth") {
            Format::TorchPt
        } else {
            return Err(CheckpointError::UnknownFormat {
                path: path.to_path_buf(),
            });
        })
    }

    /// The weights of a model dir: the HF names first, else the one weights file it holds.
    fn find_in_dir(dir: &Path) -> Result<(Format, PathBuf), CheckpointError> {
        for (name, format) in [
            (SAFETENSORS_INDEX, Format::ShardedSafetensors),
            (SAFETENSORS_SINGLE, Format::Safetensors),
            (TORCH_INDEX, Format::ShardedTorchBin),
            (TORCH_SINGLE, Format::TorchBin),
        ] {
            let p = dir.join(name);
            // Anything by that name is what the dir means to hold: a folder, FIFO or dangling
            // link there is reported as such when opened, not as "no weights".
            if fs::symlink_metadata(&p).is_ok() {
                return Ok((format, p));
            }
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| CheckpointError::io(dir, e))? {
            let entry = entry.map_err(|e| CheckpointError::io(dir, e))?;
            let p = entry.path();
            if p.is_file() {
                if let Ok(f) = Self::format_of_file(&p) {
                    found.push((f, p));
                }
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        match found.len() {
            0 => Err(CheckpointError::NoWeights {
                path: dir.to_path_buf(),
            }),
            1 => Ok(found.pop().expect("one")),
            _ => Err(CheckpointError::Ambiguous {
                path: dir.to_path_buf(),
                files: found
                    .iter()
                    .map(|(_, p)| p.file_name().unwrap_or_default().to_string_lossy().into())
                    .collect(),
            }),
        }
    }

    /// Weights files in order (safetensors, or torch zips when `torch`); `expected` (from a
    /// shard index) says which file must hold each tensor.
    fn open_files(
        paths: Vec<PathBuf>,
        expected: Option<&BTreeMap<String, String>>,
        torch: bool,
    ) -> Result<WeightsReader, CheckpointError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut tensors = Vec::new();
        let mut entries = Vec::new();
        let mut by_name = HashMap::new();
        let mut hasher = Sha256::new();
        for (fi, path) in paths.into_iter().enumerate() {
            let (file, map) = map_file(&path)?;
            let parsed = if torch {
                // No raw header to hash: hash a canonical listing of the index instead.
                let index = read_torch_index(&path)?;
                hasher.update((map.len() as u64).to_le_bytes());
                index
                    .into_iter()
                    .map(|t| {
                        hasher.update(
                            format!(
                                "{}\t{}\t{:?}\t{}\t{}\t{}\t{:?}\n",
                                t.info.name,
                                t.info.dtype,
                                t.info.shape,
                                t.data_offset,
                                t.storage_nbytes,
                                t.storage_offset,
                                t.strides
                            )
                            .as_bytes(),
                        );
                        (t.info.clone(), Loc::Torch(Box::new(t)))
                    })
                    .collect::<Vec<_>>()
            } else {
                let (parsed, header) = parse_header(&path, &map, map.len() as u64)?;
                hasher.update((header.len() as u64).to_le_bytes());
                hasher.update(header);
                parsed
                    .into_iter()
                    .map(|e| {
                        let loc = Loc::Range {
                            start: e.start,
                            end: e.end,
                        };
                        (e.info, loc)
                    })
                    .collect()
            };
            // Headers of two steps of one run are byte-identical (same names, shapes, offsets):
            // a few sampled blocks of the data tell them apart without reading it.
            let data_start = if torch {
                0
            } else {
                map.len() - parsed_data_len(&parsed)
            };
            sample_into(&mut hasher, &map[data_start..]);
            let file_name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for (info, loc) in parsed {
                if let Some(expected) = expected {
                    match expected.get(&info.name) {
                        Some(f) if *f == file_name => {}
                        Some(f) => {
                            return Err(CheckpointError::invalid(
                                &path,
                                format!(
                                    "tensor '{}' is here but the shard index puts it in {f}",
                                    info.name
                                ),
                            ))
                        }
                        None => {
                            return Err(CheckpointError::invalid(
                                &path,
                                format!("tensor '{}' is missing from the shard index", info.name),
                            ))
                        }
                    }
                }
                if by_name.insert(info.name.clone(), tensors.len()).is_some() {
                    return Err(CheckpointError::invalid(
                        &path,
                        format!(
                            "tensor '{}' appears twice (in this file or another shard)",
                            info.name
                        ),
                    ));
                }
                tensors.push(info);
                entries.push(Entry { file: fi, loc });
            }
            files.push(MappedFile { path, file, map });
        }
        if let Some(expected) = expected {
            for (name, file) in expected {
                if !by_name.contains_key(name) {
                    return Err(CheckpointError::invalid(
                        &files
                            .iter()
                            .find(|f| f.path.file_name().is_some_and(|n| n == file.as_str()))
                            .map(|f| f.path.clone())
                            .unwrap_or_default(),
                        format!(
                            "the shard index puts tensor '{name}' here but it is not in the file"
                        ),
                    ));
                }
            }
        }
        Ok(WeightsReader {
            path: PathBuf::new(),
            format: Format::Safetensors,
            files,
            tensors,
            entries,
            by_name,
            header_hash: hex(&hasher.finalize()),
        })
    }

    fn open_sharded_safetensors(index: &Path) -> Result<WeightsReader, CheckpointError> {
        let weight_map = read_index(index)?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<&String> = weight_map.values().collect();
        shards.sort();
        shards.dedup();
        for s in &shards {
            if s.contains('/') || s.contains('\\') || s.as_str() == ".." {
                return Err(CheckpointError::invalid(
                    index,
                    format!("shard file name '{s}' is not a plain file name"),
                ));
            }
        }
        let paths = shard_paths(index, dir, &shards)?;
        Self::open_files(paths, Some(&weight_map), false)
    }

    fn open_sharded_torch(index: &Path) -> Result<WeightsReader, CheckpointError> {
        let weight_map: BTreeMap<String, String> = read_bin_index(index)?
            .into_iter()
            .map(|(name, p)| {
                let f = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                (name, f)
            })
            .collect();
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<&String> = weight_map.values().collect();
        shards.sort();
        shards.dedup();
        let paths = shard_paths(index, dir, &shards)?;
        Self::open_files(paths, Some(&weight_map), true)
    }

    /// What was opened (the model dir or file given to [`open`](Self::open)).
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn format(&self) -> Format {
        self.format
    }
    /// The weights files, in the order their tensors are listed.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }
    /// Every tensor, in storage order (file by file).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
    /// Which file (shard) holds a tensor.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.by_name
            .get(name)
            .map(|&i| self.files[self.entries[i].file].path.as_path())
    }

    fn entry(&self, name: &str) -> Result<(&TensorInfo, &Entry), CheckpointError> {
        match self.by_name.get(name) {
            Some(&i) => Ok((&self.tensors[i], &self.entries[i])),
            None => Err(CheckpointError::NoSuchTensor {
                path: self.path.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// The tensor's raw little-endian bytes: borrowed from the mapping when contiguous.
    pub fn bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, CheckpointError> {
        let (_, entry) = self.entry(name)?;
        let file = &self.files[entry.file];
        match &entry.loc {
            Loc::Range { start, end } => {
                Ok(Cow::Borrowed(&file.map[*start as usize..*end as usize]))
            }
            // The torch reader is given bytes, not the path: add the file to its message.
            Loc::Torch(t) => torch_tensor_bytes(&file.map, t)
                .map_err(|e| CheckpointError::invalid(&file.path, e.to_string())),
        }
    }

    /// The tensor on `device`, in its stored dtype (bool is loaded as u8).
    pub fn tensor(
        &self,
        name: &str,
        device: &candle_core::Device,
    ) -> Result<candle_core::Tensor, CheckpointError> {
        let (info, entry) = self.entry(name)?;
        let path = &self.files[entry.file].path;
        let dtype = match info.dtype {
            DType::Bool => candle_core::DType::U8,
            d => d
                .to_candle()
                .ok_or_else(|| CheckpointError::UnsupportedDType {
                    path: path.clone(),
                    name: name.to_string(),
                    dtype: d,
                })?,
        };
        let bytes = self.bytes(name)?;
        candle_core::Tensor::from_raw_buffer(&bytes, dtype, &info.shape, device).map_err(|source| {
            CheckpointError::Candle {
                path: path.clone(),
                name: name.to_string(),
                error: Box::new(source),
            }
        })
    }

    /// Tells the OS this process is done with a tensor's pages: they leave this process's
    /// resident set (they stay in the page cache). Streaming over many checkpoints through
    /// mmap would otherwise count every byte read against our RSS.
    pub fn release(&self, name: &str) {
        let Ok((_, entry)) = self.entry(name) else {
            return;
        };
        let file = &self.files[entry.file];
        let (start, end) = match &entry.loc {
            Loc::Range { start, end } => (*start, *end),
            Loc::Torch(t) => (t.data_offset, t.data_offset + t.storage_nbytes),
        };
        drop_pages(&file.map, start, end);
    }

    /// Where a tensor's bytes lie contiguously in its file: the open file and the absolute
    /// offset, or `None` for strided views. Lets bulk readers use `pread` (a plain copy, cheaper
    /// than faulting in mapped pages) instead of the mapping.
    pub fn file_span(&self, name: &str) -> Option<(&fs::File, u64)> {
        let (info, entry) = self.entry(name).ok()?;
        let file = &self.files[entry.file];
        match &entry.loc {
            Loc::Range { start, .. } => Some((&file.file, *start)),
            Loc::Torch(t) if is_row_major(&info.shape, &t.strides) => Some((
                &file.file,
                t.data_offset + t.storage_offset * info.dtype.size_in_bytes() as u64,
            )),
            Loc::Torch(_) => None,
        }
    }

    /// Like [`release`](Self::release) for bytes `offset..offset + len` of a tensor's data, so
    /// a large tensor can be let go of piece by piece as it is consumed. A no-op for tensors
    /// whose bytes are not contiguous in the file (those are read into memory anyway).
    pub fn release_range(&self, name: &str, offset: usize, len: usize) {
        let Ok((info, entry)) = self.entry(name) else {
            return;
        };
        let file = &self.files[entry.file];
        let base = match &entry.loc {
            Loc::Range { start, .. } => *start,
            Loc::Torch(t) if is_row_major(&info.shape, &t.strides) => {
                t.data_offset + t.storage_offset * info.dtype.size_in_bytes() as u64
            }
            Loc::Torch(_) => return,
        };
        let len = len.min(info.nbytes().saturating_sub(offset));
        let start = base + offset as u64;
        drop_pages(&file.map, start, start + len as u64);
    }

    /// Hints that tensors will be read front to back (aggressive read-ahead on a cold cache).
    pub fn advise_sequential(&self) {
        for f in &self.files {
            let _ = f.map.advise(memmap2::Advice::Sequential);
        }
    }

    /// sha256 (hex) over the header(s) and 16 sampled 4 KiB blocks of each file's data: the
    /// checkpoint's identity without reading its data (steps of one run share their headers).
    pub fn header_hash(&self) -> String {
        self.header_hash.clone()
    }

    /// Number of weights (elements of every tensor that is not a buffer).
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|t| !is_buffer(&t.name))
            .map(|t| t.numel() as u64)
            .sum()
    }

    /// Bytes of tensor data (buffers included).
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.nbytes() as u64).sum()
    }

    /// The dtype holding the most weights (buffers not counted).
    pub fn main_dtype(&self) -> Option<DType> {
        let mut count: HashMap<DType, u64> = HashMap::new();
        for t in self.tensors.iter().filter(|t| !is_buffer(&t.name)) {
            *count.entry(t.dtype).or_default() += t.numel() as u64;
        }
        count
            .into_iter()
            .max_by_key(|&(d, n)| (n, d.size_in_bytes()))
            .map(|(d, _)| d)
    }
}

/// Bytes of tensor data listed in a parsed safetensors file (they end the file).
fn parsed_data_len(parsed: &[(TensorInfo, Loc)]) -> usize {
    let (lo, hi) = parsed
        .iter()
        .fold((u64::MAX, 0u64), |(lo, hi), (_, loc)| match loc {
            Loc::Range { start, end } => (lo.min(*start), hi.max(*end)),
            Loc::Torch(_) => (lo, hi),
        });
    if hi > lo {
        (hi - lo) as usize
    } else {
        0
    }
}

/// Hashes 16 blocks of 4 KiB spread evenly over `data` (all of it when smaller).
fn sample_into(hasher: &mut Sha256, data: &[u8]) {
    const BLOCK: usize = 4096;
    const SAMPLES: usize = 16;
    if data.len() <= BLOCK * SAMPLES {
        hasher.update(data);
        return;
    }
    let span = data.len() - BLOCK;
    for i in 0..SAMPLES {
        let at = span / (SAMPLES - 1) * i;
        hasher.update(&data[at..at + BLOCK]);
    }
}

/// Drops this process's mapping of bytes `start..end` of `map` (see [`WeightsReader::release`]).
fn drop_pages(map: &Mmap, start: u64, end: u64) {
    let end = end.min(map.len() as u64);
    if end > start {
        // SAFETY: the mapping is read-only and file-backed, so dropped pages are simply
        // faulted in again from the file on the next access; no data can be lost.
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start as usize,
                (end - start) as usize,
            )
        };
    }
}

/// Whether `strides` (in elements) are those of a row-major contiguous tensor of `shape`.
fn is_row_major(shape: &[usize], strides: &[usize]) -> bool {
    let mut expect = 1;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expect {
            return false;
        }
        expect *= d;
    }
    shape.len() == strides.len()
}

/// The `weight_map` of a shard index (`{"weight_map": {tensor: file}}`).
/// The shard files an index names, each checked to be there (the error names the index, the
/// shard and the folder, rather than a bare "no such file").
fn shard_paths(
    index: &Path,
    dir: &Path,
    shards: &[&String],
) -> Result<Vec<PathBuf>, CheckpointError> {
    shards
        .iter()
        .map(|s| {
            let p = dir.join(s.as_str());
            match fs::symlink_metadata(&p) {
                Ok(_) => Ok(p),
                Err(_) => Err(CheckpointError::invalid(
                    index,
                    format!(
                        "names the shard {s}, which is missing from {}",
                        dir.display()
                    ),
                )),
            }
        })
        .collect()
}

fn read_index(index: &Path) -> Result<BTreeMap<String, String>, CheckpointError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = fs::read_to_string(index).map_err(|e| CheckpointError::io(index, e))?;
    let idx: Index = serde_json::from_str(&text)
        .map_err(|e| CheckpointError::invalid(index, format!("not a shard index: {e}")))?;
    if idx.weight_map.is_empty() {
        return Err(CheckpointError::invalid(
            index,
            "shard index has an empty weight_map",
        ));
    }
    Ok(idx.weight_map)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
