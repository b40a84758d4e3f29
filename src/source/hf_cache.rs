//! A repo in the local Hugging Face cache whose branches are checkpoints.
//!
//! Layout (shared with Python's `huggingface_hub` and hf-hub): `<cache>/models--ORG--NAME/`
//! holds `refs/<branch>` (a file with the commit hash) and `snapshots/<commit>/` (the files of
//! that commit, links into `blobs/`). Branches named like steps (`step1000`) are the checkpoints.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{metrics, run_dir, steps, Checkpoint, Location, Metrics, SourceError, Trajectory};

/// The hub cache dir, resolved as hf-hub and `huggingface_hub` do: `HF_HUB_CACHE` (or
/// `HUGGINGFACE_HUB_CACHE`), then `$HF_HOME/hub`, then `$XDG_CACHE_HOME/huggingface/hub`, then
/// `~/.cache/huggingface/hub`, from values [`crate::config`] read (pure; empty counts as unset).
pub fn cache_dir_from(
    hub_cache: Option<OsString>,
    hf_home: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<PathBuf>,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty());
    let home = home.unwrap_or_else(|| PathBuf::from("/tmp"));
    let expand = |v: OsString| -> PathBuf {
        let p = PathBuf::from(v);
        match p.strip_prefix("~") {
            Ok(rest) => home.join(rest),
            Err(_) => p,
        }
    };
    if let Some(c) = set(hub_cache) {
        return expand(c);
    }
    if let Some(h) = set(hf_home) {
        return expand(h).join("hub");
    }
    if let Some(x) = set(xdg_cache_home) {
        return expand(x).join("huggingface").join("hub");
    }
    home.join(".cache").join("huggingface").join("hub")
}

/// `ORG/NAME` → `models--ORG--NAME`.
pub fn repo_folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// `models--ORG--NAME` → `ORG/NAME` (`models--gpt2` → `gpt2`).
pub fn repo_id_from_folder(folder: &str) -> Option<String> {
    let rest = folder.strip_prefix("models--")?;
    if rest.is_empty() {
        return None;
    }
    Some(match rest.split_once("--") {
        Some((org, name)) => format!("{org}/{name}"),
        None => rest.to_string(),
    })
}

/// Whether `dir` looks like a cached repo (`refs/` and `snapshots/` inside).
pub fn is_repo_dir(dir: &Path) -> bool {
    dir.join("refs").is_dir() && dir.join("snapshots").is_dir()
}

/// Whether `spec` has the shape of a hub repo id (`ORG/NAME`, letters, digits, `-_.`).
pub fn looks_like_repo_id(spec: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(spec.split_once('/'), Some((org, name)) if ok(org) && ok(name))
}

/// Opens `ORG/NAME` from the cache dir `cache`.
pub fn open_repo_in(cache: &Path, repo: &str, source: &str) -> Result<Trajectory, SourceError> {
    let dir = cache.join(repo_folder_name(repo));
    if !is_repo_dir(&dir) {
        return Err(SourceError::NotInCache {
            repo: repo.to_string(),
            cache: cache.to_path_buf(),
        });
    }
    open_repo_dir(&dir, source)
}

/// Opens a `models--ORG--NAME` folder: one checkpoint per step branch whose snapshot holds
/// weights. `main` is the latest checkpoint under another name, so it is skipped silently.
pub fn open_repo_dir(dir: &Path, source: &str) -> Result<Trajectory, SourceError> {
    let dir = std::fs::canonicalize(dir).map_err(|e| SourceError::io(dir, e))?;
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let repo = repo_id_from_folder(&folder).unwrap_or_else(|| folder.clone());
    let refs = dir.join("refs");
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(&refs)
        .map_err(|e| SourceError::io(&refs, e))?
        .filter_map(Result::ok)
        // Sub-folders hold pull-request refs (`refs/pr/1`), never checkpoints.
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();

    let mut warnings = Vec::new();
    let mut found: Vec<(u64, String, PathBuf)> = Vec::new();
    for (branch, ref_file) in names {
        let Some(step) = steps::parse_step(&branch) else {
            if branch != "main" {
                warnings.push(format!("branch {branch}: no step in its name; skipped"));
            }
            continue;
        };
        let commit = match std::fs::read_to_string(&ref_file) {
            Ok(c) => c.trim().to_string(),
            Err(e) => {
                warnings.push(format!("{}: {e}; skipped", ref_file.display()));
                continue;
            }
        };
        let snapshot = dir.join("snapshots").join(&commit);
        if commit.is_empty() || !snapshot.is_dir() {
            warnings.push(format!(
                "branch {branch}: snapshot {commit} is not in the cache; skipped"
            ));
            continue;
        }
        if !run_dir::has_hf_weights(&snapshot) {
            warnings.push(format!(
                "branch {branch}: weights not downloaded (snapshot {commit} has no model.safetensors or pytorch_model.bin); skipped"
            ));
            continue;
        }
        found.push((step, branch, snapshot));
    }
    if found.is_empty() {
        let mut hint = "no step branches (step1000 ...) with downloaded weights".to_string();
        if let Some(w) = warnings.first() {
            hint = format!("{hint}; {w}");
        }
        return Err(SourceError::NoCheckpoints { path: dir, hint });
    }
    found.sort();
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(found.len());
    for (step, branch, snapshot) in found {
        if let Some(prev) = checkpoints.last().filter(|c| c.step == step) {
            warnings.push(format!(
                "step {step} found more than once: using branch {}, skipped branch {branch}",
                prev.name
            ));
            continue;
        }
        checkpoints.push(Checkpoint {
            step,
            tokens: None,
            name: branch,
            location: Location::Local { path: snapshot },
        });
    }

    // A model repo rarely carries its training log; when the newest snapshot does, use it.
    let mut metrics = Metrics::default();
    if let Some(Location::Local { path }) = checkpoints.last().map(|c| &c.location) {
        let files = metrics::candidate_files(path);
        metrics = metrics::read_all(&files, &mut warnings);
    }
    let tokens_per_step =
        super::known_tokens_per_step(&repo).or_else(|| metrics::tokens_per_step(&metrics.tokens));
    let mut t = Trajectory {
        name: repo,
        source: source.to_string(),
        checkpoints,
        metrics,
        tokens_per_step,
        warnings,
        notes: Vec::new(),
    };
    super::fill_tokens(&mut t);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let home = Some(PathBuf::from("/home/u"));
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            cache_dir_from(s("/c"), s("/h"), s("/x"), home.clone()),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(None, s("/h"), s("/x"), home.clone()),
            PathBuf::from("/h/hub")
        );
        assert_eq!(
            cache_dir_from(s(""), s("~/hf"), None, home.clone()),
            PathBuf::from("/home/u/hf/hub")
        );
        assert_eq!(
            cache_dir_from(None, None, s("/x"), home.clone()),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            cache_dir_from(None, None, None, home),
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
    }

    #[test]
    fn repo_names() {
        assert_eq!(
            repo_folder_name("EleutherAI/pythia-70m"),
            "models--EleutherAI--pythia-70m"
        );
        assert_eq!(
            repo_id_from_folder("models--EleutherAI--pythia-70m").as_deref(),
            Some("EleutherAI/pythia-70m")
        );
        assert_eq!(repo_id_from_folder("models--gpt2").as_deref(), Some("gpt2"));
        assert_eq!(repo_id_from_folder("datasets--x--y"), None);
        assert!(looks_like_repo_id("EleutherAI/pythia-1.4b-deduped"));
        for bad in ["pythia", "a/b/c", "/abs", "./x", "a/", "../x", "a b/c"] {
            assert!(!looks_like_repo_id(bad), "{bad}");
        }
    }
}
