//! Where a trajectory's store lives (a key of its source) and content hashes of eval files.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{io_err, ResultsError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
