//! A fake Hugging Face cache (refs → snapshots → blobs, as huggingface_hub lays it out) made by
//! the tests. The environment a test means (`HF_HOME`, `HF_HUB_CACHE`) goes in as an
//! [`lawa::Env`], not into this process's environment, which the tests share across threads.

use std::fs;
use std::path::{Path, PathBuf};

use lawa::source::{self, hf_cache, Location, SourceError};

/// Adds branch `branch` at commit `sha` to repo `repo` in `cache`, with `files` in its snapshot
/// stored as blobs and linked like huggingface_hub does.
fn add_branch(cache: &Path, repo: &str, branch: &str, sha: &str, files: &[&str]) -> PathBuf {
    let dir = cache.join(hf_cache::repo_folder_name(repo));
    fs::create_dir_all(dir.join("refs")).unwrap();
    fs::create_dir_all(dir.join("blobs")).unwrap();
    fs::write(dir.join("refs").join(branch), sha).unwrap();
    let snap = dir.join("snapshots").join(sha);
    fs::create_dir_all(&snap).unwrap();
    for f in files {
        let blob = dir.join("blobs").join(format!("{sha}-{f}"));
        fs::write(&blob, format!("{branch} {f}")).unwrap();
        std::os::unix::fs::symlink(&blob, snap.join(f)).unwrap();
    }
    snap
}

const PYTHIA_FILES: &[&str] = &["config.json", "pytorch_model.bin", "tokenizer.json"];

/// The hub options as the CLI builds them from an environment of just `vars`.
fn hf_with(vars: &[(&str, &str)]) -> lawa::HubOptions {
    lawa::Config::builder()
        .env(lawa::Env::from_vars(vars.iter().copied()))
        .build()
        .hub
}

/// The hub options with none of the variables lawa reads set.
fn hf() -> lawa::HubOptions {
    hf_with(&[])
}

fn pythia_cache(cache: &Path) {
    let repo = "EleutherAI/pythia-70m";
    for (i, step) in [0u64, 1, 2, 4, 512, 1000, 143000].iter().enumerate() {
        add_branch(
            cache,
            repo,
            &format!("step{step}"),
            &format!("{i:040x}"),
            PYTHIA_FILES,
        );
    }
    // `main` is step143000 again: skipped silently.
    let dir = cache.join("models--EleutherAI--pythia-70m");
    fs::write(dir.join("refs/main"), format!("{:040x}", 6)).unwrap();
    // A pull-request ref lives in a sub-folder.
    fs::create_dir_all(dir.join("refs/refs/pr")).unwrap();
    fs::write(dir.join("refs/refs/pr/1"), "ffff").unwrap();
}

#[test]
fn pythia_style_branches_sorted_with_tokens() {
    let d = tempfile::tempdir().unwrap();
    pythia_cache(d.path());
    let t =
        hf_cache::open_repo_in(d.path(), "EleutherAI/pythia-70m", "EleutherAI/pythia-70m").unwrap();
    assert_eq!(t.name, "EleutherAI/pythia-70m");
    assert_eq!(t.steps(), vec![0, 1, 2, 4, 512, 1000, 143000]);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(t.tokens_per_step, Some(2_097_152));
    assert_eq!(t.checkpoint(1000).unwrap().tokens, Some(2_097_152_000));
    let c = t.checkpoint(512).unwrap();
    assert_eq!(c.name, "step512");
    let Location::Local { path } = &c.location else {
        panic!("{c:?}")
    };
    assert!(path.ends_with(format!("snapshots/{:040x}", 4)), "{path:?}");
    assert!(path.join("pytorch_model.bin").is_file());
}

#[test]
fn missing_snapshots_and_partial_downloads_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let repo = "org/run";
    add_branch(
        d.path(),
        repo,
        "step100",
        &"a".repeat(40),
        &["config.json", "model.safetensors"],
    );
    // Only config.json downloaded.
    add_branch(d.path(), repo, "step200", &"b".repeat(40), &["config.json"]);
    // A blob deleted behind a snapshot link: the link dangles, the weights are not there.
    let snap = add_branch(
        d.path(),
        repo,
        "step300",
        &"c".repeat(40),
        &["model.safetensors"],
    );
    fs::remove_file(fs::read_link(snap.join("model.safetensors")).unwrap()).unwrap();
    // A ref whose snapshot folder is gone.
    let dir = d.path().join("models--org--run");
    fs::write(dir.join("refs/step400"), "d".repeat(40)).unwrap();
    // A branch that is not a step.
    add_branch(
        d.path(),
        repo,
        "dev",
        &"e".repeat(40),
        &["model.safetensors"],
    );
    // Two names for one step.
    add_branch(
        d.path(),
        repo,
        "checkpoint-100",
        &"f".repeat(40),
        &["model.safetensors"],
    );

    let t = hf_cache::open_repo_in(d.path(), repo, repo).unwrap();
    assert_eq!(t.steps(), vec![100]);
    assert_eq!(t.checkpoints[0].name, "checkpoint-100");
    assert_eq!(t.tokens_per_step, None);
    let w = t.warnings.join("\n");
    for expected in [
        "branch dev: no step in its name; skipped",
        "branch step200: weights not downloaded",
        "branch step300: weights not downloaded",
        &format!(
            "branch step400: snapshot {} is not in the cache; skipped",
            "d".repeat(40)
        ),
        "step 100 found more than once: using branch checkpoint-100, skipped branch step100",
    ] {
        assert!(w.contains(expected), "missing {expected:?} in:\n{w}");
    }
    assert_eq!(t.warnings.len(), 5, "{w}");
}

#[test]
fn opening_by_path_of_the_repo_folder() {
    let d = tempfile::tempdir().unwrap();
    pythia_cache(d.path());
    let dir = d.path().join("models--EleutherAI--pythia-70m");
    let t = source::open(dir.to_str().unwrap(), &hf()).unwrap();
    assert_eq!(t.name, "EleutherAI/pythia-70m");
    assert_eq!(t.checkpoints.len(), 7);
}

#[test]
fn repo_without_step_branches_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    add_branch(
        d.path(),
        "org/model",
        "main",
        &"a".repeat(40),
        &["model.safetensors"],
    );
    let e = hf_cache::open_repo_in(d.path(), "org/model", "org/model").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SourceError::NoCheckpoints { .. }), "{msg}");
    assert!(
        msg.contains("models--org--model: no checkpoints found: no step branches"),
        "{msg}"
    );
}

/// `ORG/NAME` resolved through `HF_HOME`, and the error when the repo is not cached.
#[test]
fn org_name_is_found_through_hf_home() {
    let d = tempfile::tempdir().unwrap();
    pythia_cache(&d.path().join("hub"));
    let home = [("HF_HOME", d.path().to_str().unwrap())];
    let hf = || hf_with(&home);
    assert_eq!(hf().cache_dir, d.path().join("hub"));
    let t = source::open("EleutherAI/pythia-70m", &hf()).unwrap();
    assert_eq!(t.source, "EleutherAI/pythia-70m");
    assert_eq!(t.checkpoints.len(), 7);

    let e = source::open("EleutherAI/pythia-160m", &hf())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "EleutherAI/pythia-160m: not a local path, and not in the Hugging Face cache {} (use hf:EleutherAI/pythia-160m to list it from the hub)",
            d.path().join("hub").display()
        )
    );

    // HF_HUB_CACHE wins over HF_HOME.
    let other = tempfile::tempdir().unwrap();
    let both = [home[0], ("HF_HUB_CACHE", other.path().to_str().unwrap())];
    assert!(source::open("EleutherAI/pythia-70m", &hf_with(&both)).is_err());
}
