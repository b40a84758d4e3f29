//! PyTorch zip checkpoints (`torch.save` since 1.6): `pytorch_model.bin`, nanoGPT `ckpt.pt`.
//!
//! The archive holds `<folder>/data.pkl` (the object tree, run by our code-free pickle machine)
//! and one stored (uncompressed) entry `<folder>/data/<key>` per storage. We index where each
//! tensor's bytes lie in the file so the caller can memory-map it and read tensors one at a time;
//! nothing here reads tensor data except [`torch_tensor_bytes`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::pickle::{self, ObjId, Object, Pickle, PickleError, TensorRef};
use super::{DType, TensorInfo};

/// One tensor of a torch checkpoint: where its storage lies in the file and how it views it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorchTensor {
    pub info: TensorInfo,
    /// Absolute byte offset of the storage's data in the file.
    pub data_offset: u64,
    pub storage_nbytes: u64,
    /// In elements.
    pub storage_offset: u64,
    /// In elements, one per dimension.
    pub strides: Vec<usize>,
}

#[derive(thiserror::Error, Debug)]
pub enum TorchError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: legacy (pre-1.6) torch.save format is not supported; re-save it with torch.save from a recent PyTorch", path.display())]
    Legacy { path: PathBuf },
    #[error("{}: not a PyTorch zip checkpoint ({reason})", path.display())]
    NotTorchZip { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Pickle { path: PathBuf, source: PickleError },
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error("{}: tensor {name}: {problem}", path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        problem: String,
    },
    /// From [`torch_tensor_bytes`], which is given the bytes but not the path: the caller adds it.
    #[error("tensor {name}: {problem}")]
    Data { name: String, problem: String },
    #[error("{}: bad shard index: {problem}", path.display())]
    Index { path: PathBuf, problem: String },
}

/// The pickle of a `data.pkl` is parsed in memory; anything bigger than this is not a checkpoint
/// (a 12B-parameter shard's is ~100 KB) and would only cost memory.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Keys under which training scripts nest the model's state dict.
const NESTING_KEYS: &[&str] = &["model", "state_dict", "module", "model_state_dict"];
/// Prefixes torch.compile (`_orig_mod.`) and DistributedDataParallel (`module.`) add to names.
const WRAPPER_PREFIXES: &[&str] = &["_orig_mod.", "module."];

/// Reads the index of a torch zip checkpoint: every tensor of its state dict, in dict order.
/// Reads the zip directory and `data.pkl` only, never tensor data.
pub fn read_torch_index(path: &Path) -> Result<Vec<TorchTensor>, TorchError> {
    let io = |source| TorchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |problem: String| TorchError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic).map_err(io)?;
    if got < 4 || magic != *b"PK\x03\x04" {
        // Legacy torch.save starts with a protocol-2 pickle of its magic number.
        if got == 4 && magic == [0x80, 0x02, 0x8a, 0x0a] {
            return Err(TorchError::Legacy {
                path: path.to_path_buf(),
            });
        }
        let reason = if file_len == 0 {
            "empty file".to_string()
        } else {
            "no zip signature at the start".to_string()
        };
        return Err(TorchError::NotTorchZip {
            path: path.to_path_buf(),
            reason,
        });
    }
    let mut zip = zip::ZipArchive::new(file).map_err(|e| TorchError::NotTorchZip {
        path: path.to_path_buf(),
        reason: format!("truncated or corrupt zip: {e}"),
    })?;

    // The archive's top folder is named after the file at save time: find it from data.pkl.
    let pkl_name = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.matches('/').count())
        .map(str::to_string)
        .ok_or_else(|| TorchError::NotTorchZip {
            path: path.to_path_buf(),
            reason: "no data.pkl in the archive".into(),
        })?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();

    // torch.jit.save archives hold code and a pickled module object, not a state dict.
    if zip
        .index_for_name(&format!("{prefix}constants.pkl"))
        .is_some()
    {
        return Err(invalid(
            "a TorchScript archive (torch.jit.save), not a state dict: save model.state_dict() with torch.save".into(),
        ));
    }

    if let Some(i) = zip.index_for_name(&format!("{prefix}byteorder")) {
        let e = entry(&mut zip, i, path, file_len)?;
        if e.size > 16 {
            return Err(invalid(format!("byteorder entry of {} bytes", e.size)));
        }
        let order = read_entry(&mut zip, i, &e, path)?;
        if order != b"little" {
            return Err(invalid(format!(
                "byte order {:?} is not supported (little-endian only)",
                String::from_utf8_lossy(&order)
            )));
        }
    }

    let pkl_index = zip
        .index_for_name(&pkl_name)
        .ok_or_else(|| invalid("data.pkl vanished from the zip directory".into()))?;
    let pkl_entry = entry(&mut zip, pkl_index, path, file_len)?;
    if pkl_entry.size > MAX_PICKLE_BYTES {
        return Err(invalid(format!(
            "data.pkl is {} bytes: too large for a checkpoint",
            pkl_entry.size
        )));
    }
    let pkl_bytes = read_entry(&mut zip, pkl_index, &pkl_entry, path)?;
    let pk = pickle::parse(&pkl_bytes).map_err(|source| TorchError::Pickle {
        path: path.to_path_buf(),
        source,
    })?;

    let items = find_state_dict(&pk).ok_or_else(|| {
        invalid(format!(
            "no state dict of tensors found ({})",
            describe_root(&pk)
        ))
    })?;
    let names: Vec<&str> = items.iter().map(|(n, _)| *n).collect();
    let prefix_len = common_wrapper_prefix_len(&names);

    let mut storages: HashMap<String, Entry> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (full_name, t) in items {
        let name = full_name[prefix_len..].to_string();
        if !seen.insert(name.clone()) {
            return Err(invalid(format!("tensor {name} appears twice")));
        }
        let tensor_err = |problem: String| TorchError::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            problem,
        };
        let e = match storages.get(&t.storage.key) {
            Some(e) => e.clone(),
            None => {
                let entry_name = format!("{prefix}data/{}", t.storage.key);
                let i = zip.index_for_name(&entry_name).ok_or_else(|| {
                    tensor_err(format!("storage {entry_name} is missing from the archive"))
                })?;
                let e = entry(&mut zip, i, path, file_len)?;
                storages.insert(t.storage.key.clone(), e.clone());
                e
            }
        };
        let dtype = t.storage.dtype;
        // Stride-0 (expanded) views can claim more elements than their storage holds; a reader
        // must allocate that much, so it is capped by the file's size like everything else.
        let nbytes = checked_nbytes(&t.shape, dtype);
        if nbytes.is_none_or(|n| n > file_len) {
            return Err(tensor_err(format!(
                "shape {:?} claims more bytes than the whole file holds",
                t.shape
            )));
        }
        let needed = view_extent(&t.shape, &t.strides, t.storage_offset)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes() as u64))
            .ok_or_else(|| tensor_err("shape, strides and offset overflow".into()))?;
        if needed > e.size {
            return Err(tensor_err(format!(
                "needs {needed} bytes of its storage but the storage has {}",
                e.size
            )));
        }
        out.push(TorchTensor {
            info: TensorInfo {
                name,
                dtype,
                shape: t.shape.clone(),
            },
            data_offset: e.data_start,
            storage_nbytes: e.size,
            storage_offset: t.storage_offset,
            strides: t.strides.clone(),
        });
    }
    Ok(out)
}

/// The raw little-endian bytes of `t`, row-major. `file` is the whole checkpoint file (usually
/// memory-mapped). Contiguous tensors are borrowed from it; strided views are gathered.
pub fn torch_tensor_bytes<'a>(
    file: &'a [u8],
    t: &TorchTensor,
) -> Result<Cow<'a, [u8]>, TorchError> {
    let err = |problem: String| TorchError::Data {
        name: t.info.name.clone(),
        problem,
    };
    let es = t.info.dtype.size_in_bytes();
    if t.strides.len() != t.info.shape.len() {
        return Err(err(format!(
            "{} strides for {} dimensions",
            t.strides.len(),
            t.info.shape.len()
        )));
    }
    let needed = view_extent(&t.info.shape, &t.strides, t.storage_offset)
        .and_then(|n| n.checked_mul(es as u64))
        .ok_or_else(|| err("shape, strides and offset overflow".into()))?;
    if needed > t.storage_nbytes {
        return Err(err(format!(
            "needs {needed} bytes of a {}-byte storage",
            t.storage_nbytes
        )));
    }
    if checked_nbytes(&t.info.shape, t.info.dtype).is_none_or(|n| n > file.len() as u64) {
        return Err(err(format!(
            "shape {:?} claims more bytes than the whole file holds",
            t.info.shape
        )));
    }
    let storage_end = t
        .data_offset
        .checked_add(t.storage_nbytes)
        .filter(|&end| end <= file.len() as u64)
        .ok_or_else(|| {
            err(format!(
                "storage at bytes {}..+{} lies past the end of the {}-byte file (was it changed since it was indexed?)",
                t.data_offset,
                t.storage_nbytes,
                file.len()
            ))
        })?;
    let storage = &file[t.data_offset as usize..storage_end as usize];
    let numel: usize = t.info.shape.iter().product();
    if numel == 0 {
        return Ok(Cow::Borrowed(&[]));
    }
    let start = t.storage_offset as usize * es;
    if is_contiguous(&t.info.shape, &t.strides) {
        return Ok(Cow::Borrowed(&storage[start..start + numel * es]));
    }
    Ok(Cow::Owned(gather(
        storage,
        es,
        t.storage_offset as usize,
        &t.info.shape,
        &t.strides,
    )))
}

/// Reads `pytorch_model.bin.index.json`: tensor name → shard file (beside the index).
pub fn read_bin_index(path: &Path) -> Result<BTreeMap<String, PathBuf>, TorchError> {
    let bad = |problem: String| TorchError::Index {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| TorchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut out = BTreeMap::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("shard of {name} is not a string")))?;
        // The index comes from the download: it may only name files beside itself.
        let p = Path::new(file);
        let plain = p.components().count() == 1
            && matches!(p.components().next(), Some(std::path::Component::Normal(_)));
        if !plain {
            return Err(bad(format!(
                "shard {file:?} of {name} is not a file name in the index's folder"
            )));
        }
        out.insert(name.clone(), dir.join(p));
    }
    if out.is_empty() {
        return Err(bad("\"weight_map\" is empty".into()));
    }
    Ok(out)
}

/// Where an archive entry's bytes lie in the file.
#[derive(Clone, Debug)]
struct Entry {
    data_start: u64,
    size: u64,
}

fn entry(
    zip: &mut zip::ZipArchive<File>,
    index: usize,
    path: &Path,
    file_len: u64,
) -> Result<Entry, TorchError> {
    let invalid = |problem: String| TorchError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let f = zip
        .by_index_raw(index)
        .map_err(|e| invalid(format!("corrupt zip entry #{index}: {e}")))?;
    let name = f.name().to_string();
    if f.compression() != zip::CompressionMethod::Stored || f.encrypted() {
        return Err(invalid(format!(
            "zip entry {name} is compressed or encrypted (torch.save stores entries uncompressed)"
        )));
    }
    if f.compressed_size() != f.size() {
        return Err(invalid(format!("zip entry {name} has inconsistent sizes")));
    }
    let e = Entry {
        data_start: f.data_start(),
        size: f.size(),
    };
    if e.data_start
        .checked_add(e.size)
        .is_none_or(|end| end > file_len)
    {
        return Err(TorchError::NotTorchZip {
            path: path.to_path_buf(),
            reason: format!("zip entry {name} extends past the end of the file (truncated?)"),
        });
    }
    Ok(e)
}

fn read_entry(
    zip: &mut zip::ZipArchive<File>,
    index: usize,
    e: &Entry,
    path: &Path,
) -> Result<Vec<u8>, TorchError> {
    let io = |source| TorchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = zip.by_index_raw(index).map_err(|e| TorchError::Invalid {
        path: path.to_path_buf(),
        problem: format!("corrupt zip entry #{index}: {e}"),
    })?;
    let mut buf = Vec::with_capacity(e.size as usize);
    f.take(e.size).read_to_end(&mut buf).map_err(io)?;
    if (buf.len() as u64) < e.size {
        return Err(TorchError::NotTorchZip {
            path: path.to_path_buf(),
            reason: "zip entry ends early (truncated?)".into(),
        });
    }
    Ok(buf)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The state dict: the top-level dict if it maps names to tensors, else one nested under a
/// conventional key (`model`, `state_dict`, ...), a few levels deep at most.
fn find_state_dict(pk: &Pickle) -> Option<Vec<(&str, &TensorRef)>> {
    let mut id = pk.root();
    for _ in 0..4 {
        if let Some(items) = tensor_dict(pk, id) {
            return Some(items);
        }
        id = NESTING_KEYS.iter().find_map(|k| pk.dict_get(id, k))?;
    }
    None
}

/// `Some(items)` if `id` is a non-empty dict of string keys to tensors.
fn tensor_dict(pk: &Pickle, id: ObjId) -> Option<Vec<(&str, &TensorRef)>> {
    let items = pk.dict_items(id)?;
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|&(k, v)| match (pk.get(k), pk.get(v)) {
            (Object::Str(name), Object::Tensor(t)) => Some((name.as_str(), &**t)),
            _ => None,
        })
        .collect()
}

fn describe_root(pk: &Pickle) -> String {
    let root = pk.root();
    match pk.dict_items(root) {
        Some(items) => {
            let keys: Vec<String> = items
                .iter()
                .take(8)
                .map(|&(k, _)| match pk.get(k) {
                    Object::Str(s) => format!("{s:?}"),
                    o => o.kind().to_string(),
                })
                .collect();
            let more = if items.len() > 8 { ", ..." } else { "" };
            format!("top-level keys: {}{more}", keys.join(", "))
        }
        None => format!("the file holds a {}", pk.get(root).kind()),
    }
}

/// Length of the wrapper prefixes (`_orig_mod.`, `module.`, stacked) that every name carries.
fn common_wrapper_prefix_len(names: &[&str]) -> usize {
    let mut len = 0;
    'outer: loop {
        for p in WRAPPER_PREFIXES {
            if names
                .iter()
                .all(|n| n[len..].starts_with(p) && n.len() > len + p.len())
            {
                len += p.len();
                continue 'outer;
            }
        }
        return len;
    }
}

/// Size in bytes of a tensor, `None` on overflow.
fn checked_nbytes(shape: &[usize], dtype: DType) -> Option<u64> {
    shape
        .iter()
        .try_fold(dtype.size_in_bytes() as u64, |acc, &n| {
            acc.checked_mul(n as u64)
        })
}

/// Number of storage elements a view needs: 1 + the largest index it touches (0 if empty).
fn view_extent(shape: &[usize], strides: &[usize], offset: u64) -> Option<u64> {
    if shape.contains(&0) {
        return Some(0);
    }
    let mut last = offset;
    for (&n, &s) in shape.iter().zip(strides) {
        let span = (n as u64 - 1).checked_mul(s as u64)?;
        last = last.checked_add(span)?;
    }
    last.checked_add(1)
}

/// Row-major contiguity; dimensions of size 1 may have any stride.
fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

/// Copies a strided view out of `storage` into row-major order. The caller has checked that
/// every index lies inside `storage`.
fn gather(storage: &[u8], es: usize, offset: usize, shape: &[usize], strides: &[usize]) -> Vec<u8> {
    // A fixed element size turns each element copy into one load and store.
    match es {
        1 => gather_n::<1>(storage, offset, shape, strides),
        2 => gather_n::<2>(storage, offset, shape, strides),
        4 => gather_n::<4>(storage, offset, shape, strides),
        _ => gather_n::<8>(storage, offset, shape, strides),
    }
}

fn gather_n<const ES: usize>(
    storage: &[u8],
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut out = vec![0u8; numel * ES];
    if numel == 0 {
        return out;
    }
    let Some((&inner_n, outer)) = shape.split_last() else {
        out.copy_from_slice(&storage[offset * ES..(offset + 1) * ES]);
        return out;
    };
    let inner_s = strides[outer.len()];
    if let ([rows], [sr, sc]) = (outer, strides) {
        if inner_s != 1 {
            transpose_tiled::<ES>(storage, offset, (*rows, inner_n), (*sr, *sc), &mut out);
            return out;
        }
    }
    // Odometer over the outer dimensions; the innermost one is a row (one copy if stride 1).
    let mut idx = vec![0usize; outer.len()];
    for row in out.chunks_exact_mut(inner_n * ES) {
        let base = offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        if inner_s == 1 {
            row.copy_from_slice(&storage[base * ES..(base + inner_n) * ES]);
        } else {
            for (j, dst) in row.chunks_exact_mut(ES).enumerate() {
                let e = (base + j * inner_s) * ES;
                dst.copy_from_slice(&storage[e..e + ES]);
            }
        }
        for k in (0..outer.len()).rev() {
            idx[k] += 1;
            if idx[k] < outer[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// The 2-D strided copy (typically a transposed weight) in tiles, so that both the reads and
/// the writes of a tile stay within a few cache lines each instead of missing on every element.
fn transpose_tiled<const ES: usize>(
    storage: &[u8],
    offset: usize,
    (rows, cols): (usize, usize),
    (sr, sc): (usize, usize),
    out: &mut [u8],
) {
    const TILE: usize = 32;
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for j in j0..(j0 + TILE).min(cols) {
                for i in i0..(i0 + TILE).min(rows) {
                    let e = (offset + i * sr + j * sc) * ES;
                    let o = (i * cols + j) * ES;
                    out[o..o + ES].copy_from_slice(&storage[e..e + ES]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_and_contiguity() {
        assert_eq!(view_extent(&[2, 3], &[3, 1], 0), Some(6));
        assert_eq!(view_extent(&[2, 3], &[1, 2], 4), Some(10));
        assert_eq!(view_extent(&[], &[], 5), Some(6));
        assert_eq!(view_extent(&[4, 0], &[1, 1], 100), Some(0));
        assert_eq!(view_extent(&[4, 3], &[0, 1], 0), Some(3));
        assert_eq!(view_extent(&[usize::MAX, 2], &[usize::MAX, 1], 0), None);
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
        assert!(!is_contiguous(&[4, 3], &[0, 1]));
    }

    #[test]
    fn gather_matches_index_arithmetic() {
        // u16 storage 0..24; view: shape (3, 2, 2), strides (1, 8, 3), offset 1.
        let storage: Vec<u8> = (0u16..24).flat_map(|v| v.to_le_bytes()).collect();
        let (shape, strides, off) = ([3usize, 2, 2], [1usize, 8, 3], 1usize);
        let got = gather(&storage, 2, off, &shape, &strides);
        let mut want = Vec::new();
        for i in 0..3 {
            for j in 0..2 {
                for k in 0..2 {
                    want.extend_from_slice(&((off + i + 8 * j + 3 * k) as u16).to_le_bytes());
                }
            }
        }
        assert_eq!(got, want);
        assert_eq!(gather(&storage, 2, 5, &[], &[]), 5u16.to_le_bytes());
        // 2-D views (tiled path), sizes not multiples of the tile, every element size.
        for es in [1usize, 2, 4, 8] {
            let (rows, cols) = (37usize, 70usize);
            let storage: Vec<u8> = (0..rows * cols * es + 3 * es)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            for (strides, off) in [
                ([1usize, rows], 0usize),
                ([1, rows], 3),
                ([cols, 1], 1),
                ([0, 1], 2),
            ] {
                let got = gather(&storage, es, off, &[rows, cols], &strides);
                let mut want = Vec::new();
                for i in 0..rows {
                    for j in 0..cols {
                        let e = (off + i * strides[0] + j * strides[1]) * es;
                        want.extend_from_slice(&storage[e..e + es]);
                    }
                }
                assert_eq!(got, want, "es {es} strides {strides:?} offset {off}");
            }
        }
    }

    #[test]
    fn wrapper_prefixes_are_stripped_only_when_shared() {
        assert_eq!(
            common_wrapper_prefix_len(&["_orig_mod.a.w", "_orig_mod.b"]),
            "_orig_mod.".len()
        );
        assert_eq!(
            common_wrapper_prefix_len(&["module._orig_mod.a", "module._orig_mod.b"]),
            "module._orig_mod.".len()
        );
        assert_eq!(
            common_wrapper_prefix_len(&["module.a", "lm_head.weight"]),
            0
        );
        assert_eq!(common_wrapper_prefix_len(&["module."]), 0);
    }
}
