//! [`OutputDir`]: an output folder that appears only when complete.
//!
//! Everything is written into a hidden temp dir beside the destination (same filesystem, so the
//! final rename is atomic); [`OutputDir::commit`] renames it into place. Dropping it without a
//! commit (error, cancel, panic) removes the temp dir, so a failed run leaves no `--out` dir and
//! an existing one untouched.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::CheckpointError;

#[derive(Debug)]
pub struct OutputDir {
    dest: PathBuf,
    tmp: PathBuf,
    force: bool,
    committed: bool,
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:09}", std::process::id())
}

/// `p` made absolute and resolved as far as it exists (the rest appended), so that
/// `out/../x` and symlinked inputs compare correctly before `out` exists.
fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

impl OutputDir {
    /// Prepares `dest`. Refused when `dest` exists and `force` is off, when it is inside an
    /// input dir or is or contains an input (dir or file), or when it cannot be written.
    pub fn create(
        dest: &Path,
        force: bool,
        inputs: &[&Path],
    ) -> Result<OutputDir, CheckpointError> {
        let fail = |problem: String| CheckpointError::Output {
            path: dest.to_path_buf(),
            problem,
        };
        let name = dest
            .file_name()
            .filter(|n| *n != "..")
            .ok_or_else(|| fail("not a usable output dir name".into()))?
            .to_string_lossy()
            .into_owned();
        let target = resolve(dest);
        for input in inputs {
            let input = resolve(input);
            if input.is_dir() && target.starts_with(&input) {
                return Err(fail(format!(
                    "output dir is inside the input {}",
                    input.display()
                )));
            }
            if input.starts_with(&target) {
                return Err(fail(format!(
                    "output dir would replace the input {}",
                    input.display()
                )));
            }
        }
        if dest.exists() {
            if !force {
                return Err(fail("already exists (use --force to replace it)".into()));
            }
            if !dest.is_dir() {
                return Err(fail("exists and is not a directory".into()));
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| fail(format!("cannot create its parent: {e}")))?;
        let tmp = parent.join(format!(".{name}.lawa-tmp-{}", unique_suffix()));
        fs::create_dir(&tmp).map_err(|e| fail(format!("cannot write there: {e}")))?;
        Ok(OutputDir {
            dest: dest.to_path_buf(),
            tmp,
            force,
            committed: false,
        })
    }

    /// Where to write the contents (the temp dir).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The final destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the temp dir into place, replacing an existing destination only with `force`
    /// (the old one is moved aside first and removed only after the rename succeeded).
    pub fn commit(mut self) -> Result<PathBuf, CheckpointError> {
        let fail = |problem: String| CheckpointError::Output {
            path: self.dest.clone(),
            problem,
        };
        let mut old = None;
        if self.dest.exists() {
            if !self.force {
                return Err(fail(
                    "appeared while writing; not replaced (use --force)".into(),
                ));
            }
            let aside = self.tmp.with_file_name(format!(
                ".{}.lawa-old-{}",
                self.dest.file_name().unwrap_or_default().to_string_lossy(),
                unique_suffix()
            ));
            fs::rename(&self.dest, &aside)
                .map_err(|e| fail(format!("cannot move the existing dir aside: {e}")))?;
            old = Some(aside);
        }
        if let Err(e) = fs::rename(&self.tmp, &self.dest) {
            if let Some(aside) = &old {
                let _ = fs::rename(aside, &self.dest);
            }
            return Err(fail(format!(
                "cannot rename the finished output into place: {e}"
            )));
        }
        self.committed = true;
        if let Some(aside) = old {
            let _ = fs::remove_dir_all(aside);
        }
        Ok(self.dest.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_publishes_and_drop_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("avg");
        {
            let out = OutputDir::create(&dest, false, &[]).unwrap();
            fs::write(out.path().join("a"), "1").unwrap();
            assert!(!dest.exists());
        }
        assert!(!dest.exists());
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            0,
            "temp dir left behind"
        );

        let out = OutputDir::create(&dest, false, &[]).unwrap();
        fs::write(out.path().join("a"), "1").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "1");

        let e = OutputDir::create(&dest, false, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists") && e.contains("avg"), "{e}");

        // A forced replacement that fails leaves the old one untouched ...
        {
            let out = OutputDir::create(&dest, true, &[]).unwrap();
            fs::write(out.path().join("b"), "2").unwrap();
        }
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "1");
        // ... and one that commits replaces it whole.
        let out = OutputDir::create(&dest, true, &[]).unwrap();
        fs::write(out.path().join("b"), "2").unwrap();
        out.commit().unwrap();
        assert!(!dest.join("a").exists());
        assert_eq!(fs::read_to_string(dest.join("b")).unwrap(), "2");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn output_inside_an_input_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let input = root.path().join("run/step100");
        fs::create_dir_all(&input).unwrap();
        let file = root.path().join("run/ckpt_5.safetensors");
        fs::write(&file, "x").unwrap();
        for (dest, inputs) in [
            (input.join("avg"), vec![input.as_path()]),
            (input.join("../step100/x/y"), vec![input.as_path()]),
            (file.clone(), vec![file.as_path()]),
            (root.path().join("run"), vec![input.as_path()]),
        ] {
            let existed = dest.exists();
            let e = OutputDir::create(&dest, true, &inputs)
                .unwrap_err()
                .to_string();
            assert!(e.contains("input"), "{e}");
            assert_eq!(dest.exists(), existed);
        }
    }
}
