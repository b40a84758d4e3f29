//! [`OutputDir`]: an output folder that appears only when complete.
//!
//! Everything is written into a hidden temp dir beside the destination (same filesystem, so the
//! final rename is atomic); [`OutputDir::commit`] renames it into place. Dropping it without a
//! commit (error, cancel, panic) removes the temp dir, so a failed run leaves no `--out` dir and
//! an existing one untouched. A process killed outright (SIGKILL, power cut) cannot clean up:
//! its temp dir names its PID, and the next output written beside it removes it once that PID
//! is gone. Every live temp dir is also listed in a process-wide registry, so a signal handler
//! that must exit at once can still remove them ([`remove_live_temp_dirs`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::CheckpointError;

/// Marks our temp dirs: `.{name}.lawa-tmp-{pid}-{nanos}`.
const TMP_MARK: &str = ".lawa-tmp-";
/// Marks a replaced output moved aside during a forced commit (never removed automatically:
/// after a crash it may be the only copy).
const OLD_MARK: &str = ".lawa-old-";
/// Bytes of the destination's name kept in a temp name, so that a legal 255-byte name still
/// leaves room for the suffix.
const NAME_PREFIX_MAX: usize = 64;

/// Temp dirs of this process not yet committed or removed.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every temp dir this process is still writing; for a signal handler about to exit
/// without unwinding. Returns the dirs removed.
pub fn remove_live_temp_dirs() -> Vec<PathBuf> {
    let dirs = std::mem::take(&mut *live());
    for d in &dirs {
        let _ = fs::remove_dir_all(d);
    }
    dirs
}

/// Whether a file name is one of our temp or moved-aside dirs (listings skip them).
pub fn is_lawa_temp_name(name: &str) -> bool {
    name.starts_with('.') && (name.contains(TMP_MARK) || name.contains(OLD_MARK))
}

/// The PID in a temp dir name `.{name}.lawa-tmp-{pid}-{nanos}`.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = &name[name.rfind(TMP_MARK)? + TMP_MARK.len()..];
    let (pid, nanos) = rest.split_once('-')?;
    if nanos.is_empty() || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists (unknown counts as alive, so nothing is removed on doubt).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        // Signal 0 checks existence only; EPERM means it exists under another user.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Removes the temp dirs in `parent` left by processes that no longer exist (killed before
/// they could clean up). Returns one note per dir removed.
pub fn remove_stale_temp_dirs(parent: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        let Some(pid) = temp_pid(&name) else {
            continue;
        };
        // Only dirs, never through a symlink.
        if !e.file_type().is_ok_and(|t| t.is_dir()) || pid_alive(pid) {
            continue;
        }
        let path = e.path();
        if fs::remove_dir_all(&path).is_ok() {
            notes.push(format!(
                "removed {}: the temp dir of an interrupted run (process {pid} is gone)",
                path.display()
            ));
        }
    }
    notes.sort();
    notes
}

/// `name` cut to at most `max` bytes, at a char boundary.
fn name_prefix(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// fsync of a file or dir by path.
fn sync_path(p: &Path) -> std::io::Result<()> {
    fs::File::open(p)?.sync_all()
}

/// fsync of every regular file under `dir`, then of `dir` itself: what the rename publishes
/// is on disk before it is published.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            sync_path(&e.path())?;
        }
    }
    sync_path(dir)
}

#[derive(Debug)]
pub struct OutputDir {
    dest: PathBuf,
    tmp: PathBuf,
    force: bool,
    committed: bool,
    notes: Vec<String>,
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
        // A dangling symlink does not "exist", yet the final rename could not replace it.
        if let Ok(m) = fs::symlink_metadata(dest) {
            if m.file_type().is_symlink() && !dest.exists() {
                return Err(fail(
                    "is a symbolic link to nothing (remove it or choose another --out)".into(),
                ));
            }
        }
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
        let notes = remove_stale_temp_dirs(&parent);
        let tmp = parent.join(format!(
            ".{}{TMP_MARK}{}",
            name_prefix(&name, NAME_PREFIX_MAX),
            unique_suffix()
        ));
        // Registered before it exists, so a signal arriving in between still removes it.
        live().push(tmp.clone());
        if let Err(e) = fs::create_dir(&tmp) {
            live().retain(|p| *p != tmp);
            return Err(fail(format!("cannot write there: {e}")));
        }
        Ok(OutputDir {
            dest: dest.to_path_buf(),
            tmp,
            force,
            committed: false,
            notes,
        })
    }

    /// One line per stale temp dir (of a killed run) removed beside the destination.
    pub fn notes(&self) -> &[String] {
        &self.notes
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
        sync_tree(&self.tmp)
            .map_err(|e| fail(format!("cannot flush the finished output to disk: {e}")))?;
        let mut old = None;
        if self.dest.exists() {
            if !self.force {
                return Err(fail(
                    "appeared while writing; not replaced (use --force)".into(),
                ));
            }
            let aside = self.tmp.with_file_name(format!(
                ".{}{OLD_MARK}{}",
                name_prefix(
                    &self.dest.file_name().unwrap_or_default().to_string_lossy(),
                    NAME_PREFIX_MAX
                ),
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
        live().retain(|p| *p != self.tmp);
        // The rename itself is durable only once the parent dir is synced.
        if let Some(parent) = self.tmp.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_path(parent).map_err(|e| {
                fail(format!(
                    "renamed into place, but flushing its parent dir failed: {e}"
                ))
            })?;
        }
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
            live().retain(|p| *p != self.tmp);
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

    /// A dead process's temp dir is removed by the next output beside it, with a note; a live
    /// one's (this process) and look-alike names are kept.
    #[test]
    fn stale_temp_dirs_of_gone_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        // PIDs above the kernel's maximum (4194304) cannot be alive.
        let stale = root.path().join(".avg.lawa-tmp-4294967-000000001");
        let mine = root
            .path()
            .join(format!(".x.lawa-tmp-{}-000000002", std::process::id()));
        let other = root.path().join(".notes.lawa-tmp-abc-1");
        for d in [&stale, &mine, &other] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("model.safetensors"), "x").unwrap();
        }
        let out = OutputDir::create(&root.path().join("avg"), false, &[]).unwrap();
        assert_eq!(out.notes().len(), 1, "{:?}", out.notes());
        assert!(out.notes()[0].contains("process 4294967 is gone"));
        assert!(!stale.exists());
        assert!(mine.exists() && other.exists());
        assert!(is_lawa_temp_name(".avg.lawa-tmp-4294967-000000001"));
        assert!(is_lawa_temp_name(".avg.lawa-old-1-2"));
        assert!(!is_lawa_temp_name("avg"));
    }

    #[test]
    fn a_long_legal_name_gets_a_short_temp_name() {
        let root = tempfile::tempdir().unwrap();
        let name = "a".to_string()
            + &"é".repeat(80)
            + "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123";
        assert!(name.len() > 225 && name.len() <= 255);
        let dest = root.path().join(&name);
        let out = OutputDir::create(&dest, false, &[]).unwrap();
        fs::write(out.path().join("a"), "1").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "1");
        // And replacing it moves the old one aside under a short name too.
        let out = OutputDir::create(&dest, true, &[]).unwrap();
        fs::write(out.path().join("b"), "2").unwrap();
        out.commit().unwrap();
        assert!(dest.join("b").exists() && !dest.join("a").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_symlink_out_is_refused_before_any_work() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("avg");
        std::os::unix::fs::symlink(root.path().join("nowhere"), &dest).unwrap();
        let e = OutputDir::create(&dest, true, &[]).unwrap_err().to_string();
        assert!(e.contains("symbolic link to nothing"), "{e}");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn live_temp_dirs_are_registered_until_dropped() {
        let root = tempfile::tempdir().unwrap();
        let out = OutputDir::create(&root.path().join("avg"), false, &[]).unwrap();
        let tmp = out.path().to_path_buf();
        assert!(tmp.exists());
        // Not `remove_live_temp_dirs()` itself: it would remove the temp dirs of the other
        // tests running in this process.
        assert!(live().contains(&tmp));
        drop(out);
        assert!(!tmp.exists() && !live().contains(&tmp));
    }
}
