//! Token streams: text through a model's `tokenizer.json`, or pre-tokenised id files
//! (raw little-endian uint16 as nanoGPT writes `.bin`, raw uint32, or `.npy`).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::EvalError;

/// Width of the ids in a raw token file.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenDType {
    U16,
    U32,
}

impl TokenDType {
    /// The width a raw file's extension implies: `.bin`/`.u16` (nanoGPT) → u16, `.u32` → u32.
    pub fn from_extension(path: &Path) -> Option<TokenDType> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "bin" | "u16" => Some(TokenDType::U16),
            "u32" => Some(TokenDType::U32),
            _ => None,
        }
    }

    fn width(self) -> usize {
        match self {
            TokenDType::U16 => 2,
            TokenDType::U32 => 4,
        }
    }
}

/// Token ids to evaluate, with the text they came from when there was one.
#[derive(Clone, Debug, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// The file the ids were read or tokenised from.
    pub source: PathBuf,
    /// For text input: the end byte offset (in the UTF-8 text) of each token.
    pub byte_ends: Option<Vec<usize>>,
    /// For text input: the length of the text in bytes.
    pub text_bytes: Option<usize>,
    /// Whether `ids` stops at a `max_tokens` limit before the end of the source.
    pub truncated: bool,
}

impl Tokens {
    /// UTF-8 bytes of the text spanned by the first `n` tokens (text input only): up to the
    /// end of token `n - 1`, or the whole text when every token of it is used.
    pub fn span_bytes(&self, n: usize) -> Option<usize> {
        let ends = self.byte_ends.as_ref()?;
        if n == 0 {
            return Some(0);
        }
        if n >= ends.len() && !self.truncated {
            return self.text_bytes;
        }
        ends.get(n - 1).copied()
    }
}

/// Reads pre-tokenised ids. `.npy` files describe themselves; raw files take `dtype`, or the
/// width their extension implies. Only the first `max_tokens` ids are read.
pub fn read_token_file(
    path: &Path,
    dtype: Option<TokenDType>,
    max_tokens: Option<usize>,
) -> Result<Tokens, EvalError> {
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| EvalError::io(path, e))?.len() as usize;
    let mut reader = std::io::BufReader::new(file);
    let (elem, signed, count) = if is_npy {
        let h = read_npy_header(&mut reader, path)?;
        if h.header_len + h.count * h.elem > file_len {
            return Err(EvalError::bad_tokens(
                path,
                format!(
                    "header says {} ids but the file holds {} bytes of data",
                    h.count,
                    file_len - h.header_len
                ),
            ));
        }
        (h.elem, h.signed, h.count)
    } else {
        let dtype = dtype
            .or_else(|| TokenDType::from_extension(path))
            .ok_or_else(|| EvalError::TokenWidth {
                path: path.to_path_buf(),
            })?;
        let w = dtype.width();
        if !file_len.is_multiple_of(w) {
            return Err(EvalError::bad_tokens(
                path,
                format!("{file_len} bytes is not a whole number of {}-byte ids", w),
            ));
        }
        (w, false, file_len / w)
    };
    let n = max_tokens.map_or(count, |m| m.min(count));
    let mut bytes = vec![0u8; n * elem];
    reader
        .read_exact(&mut bytes)
        .map_err(|e| EvalError::io(path, e))?;
    let ids = decode_ids(&bytes, elem, signed).map_err(|(pos, v)| {
        EvalError::bad_tokens(path, format!("id {v} at position {pos} is not a token id"))
    })?;
    Ok(Tokens {
        ids,
        source: path.to_path_buf(),
        byte_ends: None,
        text_bytes: None,
        truncated: n < count,
    })
}

/// Little-endian ids of `elem` bytes each; `Err((position, value))` for one that is negative
/// or does not fit in u32.
fn decode_ids(bytes: &[u8], elem: usize, signed: bool) -> Result<Vec<u32>, (usize, i128)> {
    bytes
        .chunks_exact(elem)
        .enumerate()
        .map(|(i, c)| {
            let mut b = [0u8; 8];
            b[..elem].copy_from_slice(c);
            let unsigned = u64::from_le_bytes(b);
            let v: i128 = if signed {
                // Sign-extend from `elem` bytes.
                let shift = 64 - 8 * elem as u32;
                (((unsigned << shift) as i64) >> shift) as i128
            } else {
                unsigned as i128
            };
            u32::try_from(v).map_err(|_| (i, v))
        })
        .collect()
}

struct NpyHeader {
    header_len: usize,
    elem: usize,
    signed: bool,
    count: usize,
}

fn read_npy_header(r: &mut impl Read, path: &Path) -> Result<NpyHeader, EvalError> {
    let bad = |msg: &str| EvalError::bad_tokens(path, format!("not a readable .npy file: {msg}"));
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|_| bad("too short"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (len_bytes, prefix) = match pre[6] {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => return Err(bad(&format!("unknown version {v}"))),
    };
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb[..len_bytes])
        .map_err(|_| bad("too short"))?;
    let hlen = u32::from_le_bytes(lb) as usize;
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header)
        .map_err(|_| bad("header cut short"))?;
    let header = String::from_utf8_lossy(&header);
    let (elem, signed) = parse_npy_descr(&header).ok_or_else(|| {
        bad(&format!(
            "ids must be little-endian integers (u1/u2/u4/u8/i2/i4/i8), header {}",
            header.trim()
        ))
    })?;
    if npy_field(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        // A 1-D array reads the same either way; a 2-D Fortran array would be transposed.
        let shape = npy_shape(&header).ok_or_else(|| bad("no shape"))?;
        if shape.len() > 1 {
            return Err(bad("Fortran-ordered arrays are not supported"));
        }
    }
    let shape = npy_shape(&header).ok_or_else(|| bad("no shape"))?;
    Ok(NpyHeader {
        header_len: prefix + hlen,
        elem,
        signed,
        count: shape.iter().product(),
    })
}

/// The text after `'key':` in a .npy header dict.
fn npy_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest[rest.find(':')? + 1..].trim_start())
}

fn parse_npy_descr(header: &str) -> Option<(usize, bool)> {
    let v = npy_field(header, "descr")?;
    let v = v.strip_prefix('\'')?;
    let descr = &v[..v.find('\'')?];
    Some(match descr {
        "|u1" | "<u1" => (1, false),
        "<u2" => (2, false),
        "<u4" => (4, false),
        "<u8" => (8, false),
        "<i2" => (2, true),
        "<i4" => (4, true),
        "<i8" => (8, true),
        "|i1" | "<i1" => (1, true),
        _ => return None,
    })
}

fn npy_shape(header: &str) -> Option<Vec<usize>> {
    let v = npy_field(header, "shape")?.strip_prefix('(')?;
    let inner = &v[..v.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// Tokenises a UTF-8 text file with `tokenizer` (a `tokenizer.json`), keeping the first
/// `max_tokens` ids and each token's end byte offset (for bits per byte).
pub fn tokenize_text_file(
    path: &Path,
    tokenizer: &Path,
    max_tokens: Option<usize>,
) -> Result<Tokens, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| EvalError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(EvalError::EmptyText {
            path: path.to_path_buf(),
        });
    }
    let tok = tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| EvalError::Tokenizer {
        path: tokenizer.to_path_buf(),
        msg: e.to_string(),
    })?;
    let enc = tok.encode(text, false).map_err(|e| EvalError::Tokenizer {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let count = enc.get_ids().len();
    let n = max_tokens.map_or(count, |m| m.min(count));
    Ok(Tokens {
        ids: enc.get_ids()[..n].to_vec(),
        source: path.to_path_buf(),
        byte_ends: Some(enc.get_offsets()[..n].iter().map(|o| o.1).collect()),
        text_bytes: Some(text.len()),
        truncated: n < count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn raw_widths_by_extension_and_override() {
        let dir = tempfile::tempdir().unwrap();
        let ids: [u16; 4] = [1, 2, 65535, 7];
        let p = dir.path().join("train.bin");
        std::fs::write(&p, bytemuck::cast_slice(&ids)).unwrap();
        assert_eq!(
            read_token_file(&p, None, None).unwrap().ids,
            vec![1, 2, 65535, 7]
        );
        // The same 8 bytes as two u32s.
        let t = read_token_file(&p, Some(TokenDType::U32), None).unwrap();
        assert_eq!(t.ids, vec![2 << 16 | 1, 7 << 16 | 65535]);
        let t = read_token_file(&p, None, Some(3)).unwrap();
        assert_eq!((t.ids.len(), t.truncated), (3, true));
        let odd = dir.path().join("x.u32");
        std::fs::write(&odd, [0u8; 6]).unwrap();
        assert!(read_token_file(&odd, None, None)
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        let unknown = dir.path().join("x.dat");
        std::fs::write(&unknown, [0u8; 4]).unwrap();
        assert!(matches!(
            read_token_file(&unknown, None, None),
            Err(EvalError::TokenWidth { .. })
        ));
    }

    #[test]
    fn npy_files_of_several_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        let vals: [i64; 3] = [5, 0, 1 << 20];
        std::fs::write(&p, npy("<i8", "(3,)", bytemuck::cast_slice(&vals))).unwrap();
        assert_eq!(
            read_token_file(&p, None, None).unwrap().ids,
            vec![5, 0, 1 << 20]
        );
        let vals: [u16; 4] = [9, 8, 7, 6];
        std::fs::write(&p, npy("<u2", "(2, 2)", bytemuck::cast_slice(&vals))).unwrap();
        assert_eq!(
            read_token_file(&p, None, None).unwrap().ids,
            vec![9, 8, 7, 6]
        );
        let vals: [i32; 2] = [3, -1];
        std::fs::write(&p, npy("<i4", "(2,)", bytemuck::cast_slice(&vals))).unwrap();
        let err = read_token_file(&p, None, None).unwrap_err().to_string();
        assert!(err.contains("-1") && err.contains("position 1"), "{err}");
        std::fs::write(&p, npy("<f4", "(1,)", &[0; 4])).unwrap();
        assert!(read_token_file(&p, None, None)
            .unwrap_err()
            .to_string()
            .contains("integers"));
        std::fs::write(&p, npy("<u2", "(10,)", &[0; 4])).unwrap();
        assert!(read_token_file(&p, None, None)
            .unwrap_err()
            .to_string()
            .contains("10 ids"));
    }

    #[test]
    fn span_bytes_covers_used_tokens() {
        let t = Tokens {
            ids: vec![1, 2, 3],
            source: PathBuf::from("x"),
            byte_ends: Some(vec![2, 5, 9]),
            text_bytes: Some(10),
            truncated: false,
        };
        assert_eq!(t.span_bytes(2), Some(5));
        assert_eq!(t.span_bytes(3), Some(10));
    }
}
