//! The safetensors header: strict parsing and validation, and building one for the writer.
//!
//! Layout: 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype", "shape", "data_offsets": [start, end]}, "__metadata__": {..}}`), then the
//! data, whose byte ranges (relative to the end of the header) must tile it exactly.

use std::collections::BTreeMap;
use std::path::Path;

use super::{CheckpointError, DType, TensorInfo};

/// Headers above this are refused (the safetensors library's own limit): a corrupt length
/// field must not make us allocate or scan gigabytes.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor of a parsed header: its metadata and its byte range in the file (absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEntry {
    pub info: TensorInfo,
    pub start: u64,
    pub end: u64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Parses and validates the header of a safetensors file of `file_len` bytes whose first bytes
/// are `head` (at least the 8-byte length plus the header, when the file is long enough).
/// Returns the tensors in storage order and the raw header bytes (for hashing).
pub fn parse_header<'a>(
    path: &Path,
    head: &'a [u8],
    file_len: u64,
) -> Result<(Vec<HeaderEntry>, &'a [u8]), CheckpointError> {
    let bad = |p: String| CheckpointError::invalid(path, p);
    if file_len < 8 || head.len() < 8 {
        return Err(bad(format!(
            "truncated safetensors file: {file_len} bytes, too short for the 8-byte header length"
        )));
    }
    let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_LEN {
        return Err(bad(format!(
            "safetensors header length {n} is absurd (limit {MAX_HEADER_LEN}): not a safetensors file or corrupt"
        )));
    }
    if 8 + n > file_len || (head.len() as u64) < 8 + n {
        return Err(bad(format!(
            "truncated safetensors file: header claims {n} bytes but the file has {} after the length field",
            file_len.saturating_sub(8)
        )));
    }
    let header = &head[8..8 + n as usize];
    let text = std::str::from_utf8(header)
        .map_err(|e| bad(format!("safetensors header is not UTF-8 JSON: {e}")))?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| bad(format!("safetensors header is not a JSON object: {e}")))?;
    let data_len = file_len - 8 - n;
    let data_start = 8 + n;

    let mut entries = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            if !value.is_object() {
                return Err(bad("safetensors __metadata__ is not a JSON object".into()));
            }
            continue;
        }
        let e: RawEntry = serde_json::from_value(value)
            .map_err(|err| bad(format!("tensor '{name}': bad header entry: {err}")))?;
        let dtype = DType::from_safetensors_name(&e.dtype)
            .ok_or_else(|| bad(format!("tensor '{name}': unknown dtype '{}'", e.dtype)))?;
        let (s, t) = e.data_offsets;
        if t < s {
            return Err(bad(format!(
                "tensor '{name}': data_offsets [{s}, {t}] end before they start"
            )));
        }
        let need = e
            .shape
            .iter()
            .try_fold(dtype.size_in_bytes() as u64, |acc, &d| {
                acc.checked_mul(d as u64)
            })
            .ok_or_else(|| bad(format!("tensor '{name}': shape {:?} is too large", e.shape)))?;
        if t - s != need {
            return Err(bad(format!(
                "tensor '{name}': data_offsets [{s}, {t}] hold {} bytes but shape {:?} of {dtype} needs {need}",
                t - s,
                e.shape
            )));
        }
        if t > data_len {
            return Err(bad(format!(
                "tensor '{name}': data_offsets [{s}, {t}] run past the end of the {data_len} data bytes (truncated or corrupt file)"
            )));
        }
        entries.push(HeaderEntry {
            info: TensorInfo {
                name,
                dtype,
                shape: e.shape,
            },
            start: data_start + s,
            end: data_start + t,
        });
    }
    // The ranges must tile the data exactly: no overlap (two tensors sharing bytes) and no
    // gap (bytes nobody owns, which is how truncation-then-padding or corruption shows up).
    entries.sort_by_key(|e| (e.start, e.end));
    let mut pos = data_start;
    for (i, e) in entries.iter().enumerate() {
        if e.start < pos {
            let prev = &entries[i - 1];
            return Err(bad(format!(
                "tensors '{}' and '{}' overlap (data_offsets [{}, {}] and [{}, {}])",
                prev.info.name,
                e.info.name,
                prev.start - data_start,
                prev.end - data_start,
                e.start - data_start,
                e.end - data_start
            )));
        }
        if e.start > pos {
            return Err(bad(format!(
                "data bytes {}..{} are not covered by any tensor",
                pos - data_start,
                e.start - data_start
            )));
        }
        pos = e.end;
    }
    if pos != file_len {
        return Err(bad(format!(
            "data bytes {}..{data_len} after the last tensor are not covered by any tensor",
            pos - data_start
        )));
    }
    Ok((entries, header))
}

/// The header bytes (length prefix included) for tensors laid out in `plan` order, padded
/// with spaces so the data starts 8-byte aligned, as the safetensors library does.
pub(crate) fn build_header(plan: &[TensorInfo]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    map.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut offset = 0u64;
    for t in plan {
        let end = offset + t.nbytes() as u64;
        map.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": t.dtype.safetensors_name(),
                "shape": t.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(map)).expect("JSON of strings");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, dtype: DType, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn file_with(header: &str, data_len: usize) -> Vec<u8> {
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header.as_bytes());
        f.resize(f.len() + data_len, 0);
        f
    }

    fn err(f: &[u8]) -> String {
        parse_header(Path::new("x.safetensors"), f, f.len() as u64)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn built_headers_parse_back_in_plan_order() {
        let plan = vec![
            info("b", DType::F16, &[3, 2]),
            info("a", DType::F32, &[5]),
            info("mask", DType::Bool, &[1, 1, 4, 4]),
            info("empty", DType::F32, &[0]),
        ];
        let mut f = build_header(&plan);
        assert_eq!(f.len() % 8, 0);
        let data: usize = plan.iter().map(|t| t.nbytes()).sum();
        f.resize(f.len() + data, 7);
        let (entries, _) = parse_header(Path::new("x"), &f, f.len() as u64).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.info.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "mask", "empty"]);
        assert_eq!(entries[0].info, plan[0]);
        assert_eq!(entries.last().unwrap().end, f.len() as u64);
    }

    #[test]
    fn bad_headers_give_one_line_naming_the_file_and_problem() {
        assert!(err(&[1, 0, 0]).contains("too short"));
        let mut absurd = u64::MAX.to_le_bytes().to_vec();
        absurd.extend_from_slice(b"{}");
        assert!(err(&absurd).contains("absurd"));
        let mut short = 100u64.to_le_bytes().to_vec();
        short.extend_from_slice(b"{}");
        assert!(err(&short).contains("truncated"));
        assert!(err(&file_with("not json", 0)).contains("not a JSON object"));
        assert!(err(&file_with("[1,2]", 0)).contains("not a JSON object"));
        let h = r#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#;
        assert!(err(&file_with(h, 1)).contains("unknown dtype 'Q4'"));
        let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let e = err(&file_with(h, 8));
        assert!(e.contains("past the end") && e.contains("'a'"), "{e}");
        let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#;
        assert!(err(&file_with(h, 12)).contains("needs 16"));
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        let e = err(&file_with(h, 12));
        assert!(
            e.contains("overlap") && e.contains("'a'") && e.contains("'b'"),
            "{e}"
        );
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#;
        assert!(err(&file_with(h, 20)).contains("bytes 8..12 are not covered"));
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(err(&file_with(h, 10)).contains("after the last tensor"));
        for e in [err(&file_with("not json", 0)), err(&absurd)] {
            assert!(e.starts_with("x.safetensors: ") && !e.contains('\n'), "{e}");
        }
    }
}
