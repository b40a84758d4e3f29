//! What the integration tests share: fixture paths, the real `lawa` binary (with its own
//! `LAWA_HOME` where a test needs one), copies of fixture runs, tiny run folders, and the
//! local hub server ([`hub_server`]) and model references ([`logits`]).

pub mod hub_server;
pub mod logits;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, built by Cargo for integration tests.
pub const LAWA: &str = env!("CARGO_BIN_EXE_lawa");

/// `tests/fixtures/REL`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A path as an argument (the temp and fixture paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What a finished `lawa` said: its exit code (`None` when a signal ended it), stdout, stderr.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    /// Runs `cmd` to the end.
    pub fn of(cmd: &mut Command) -> Out {
        cmd.output().unwrap().into()
    }

    /// (success, stdout, stderr).
    pub fn parts(self) -> (bool, String, String) {
        (self.code == Some(0), self.stdout, self.stderr)
    }

    /// Asserts a zero exit (showing stderr otherwise); returns stdout.
    pub fn success(self) -> String {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        self.stdout
    }
}

/// `lawa ARGS`.
pub fn lawa(args: &[&str]) -> Out {
    Out::of(Command::new(LAWA).args(args))
}

/// `lawa ARGS` with `LAWA_HOME=home`: (success, stdout, stderr).
pub fn lawa_at(home: &Path, args: &[&str]) -> (bool, String, String) {
    Out::of(Command::new(LAWA).env("LAWA_HOME", home).args(args)).parts()
}

/// A JSON array of whole numbers (a record's steps).
pub fn u64s(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the fixture run `tests/fixtures/REL` in a temp dir: (tempdir, its `run` folder).
pub fn run_copy(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    copy_dir(&fixture(rel), &run);
    (t, run)
}

/// A run folder in a temp dir: `step{N}` for each of `steps`, each holding copies of `files`
/// from the model folder `model`.
pub fn model_run(model: &Path, files: &[&str], steps: &[u64]) -> tempfile::TempDir {
    let run = tempfile::tempdir().unwrap();
    for step in steps {
        let d = run.path().join(format!("step{step}"));
        fs::create_dir(&d).unwrap();
        for f in files {
            fs::copy(model.join(f), d.join(f)).unwrap();
        }
    }
    run
}
