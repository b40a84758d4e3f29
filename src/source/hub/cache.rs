//! The Hugging Face cache as Python's `huggingface_hub` lays it out, read without the network:
//! `<cache>/models--ORG--NAME/{refs/<branch>, snapshots/<commit>/<file> -> ../../blobs/<etag>}`.
//! Also the lawa-side copy of a repo's last online listing, so offline mode knows every branch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RepoId;

/// `models--ORG--NAME`, the repo's folder in the cache.
pub fn repo_folder(repo: &RepoId) -> String {
    format!("models--{}--{}", repo.owner, repo.name)
}

pub fn repo_dir(cache_dir: &Path, repo: &RepoId) -> PathBuf {
    cache_dir.join(repo_folder(repo))
}

pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit a branch points to in the cache (`refs/<branch>`), or the revision itself when it
/// is already a commit hash.
pub fn resolve_ref(repo_dir: &Path, revision: &str) -> Option<String> {
    if is_commit_hash(revision) {
        return Some(revision.to_string());
    }
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
    let commit = commit.trim();
    is_commit_hash(commit).then(|| commit.to_string())
}

/// Every branch ref in the cache (`refs/<name>`; `refs/pr/*` and other nested refs skipped).
pub fn cached_refs(repo_dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(repo_dir.join("refs")) else {
        return Vec::new();
    };
    let mut refs: Vec<(String, String)> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let commit = resolve_ref(repo_dir, &name)?;
            Some((name, commit))
        })
        .collect();
    refs.sort();
    refs
}

/// Which weights files make up a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    /// One file: `model.safetensors` or `pytorch_model.bin`.
    Single(String),
    /// An index json naming the shards.
    Sharded(String),
}

/// Safetensors before pickles (memory-mapped, no pickle VM), one file before shards.
const WEIGHTS_PREFERENCE: [(&str, bool); 4] = [
    ("model.safetensors", false),
    ("model.safetensors.index.json", true),
    ("pytorch_model.bin", false),
    ("pytorch_model.bin.index.json", true),
];

/// Picks the weights of a checkpoint from the names of the files at its root.
pub fn choose_weights<'a>(files: impl IntoIterator<Item = &'a str>) -> Option<Weights> {
    let files: BTreeSet<&str> = files.into_iter().collect();
    WEIGHTS_PREFERENCE
        .iter()
        .find(|(name, _)| files.contains(name))
        .map(|(name, sharded)| {
            if *sharded {
                Weights::Sharded(name.to_string())
            } else {
                Weights::Single(name.to_string())
            }
        })
}

/// The shard file names an index json maps tensors to, sorted, each once.
pub fn shards_of_index(json: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let shards: BTreeSet<String> = index.weight_map.into_values().collect();
    if shards.is_empty() {
        return Err("its weight_map is empty".into());
    }
    if let Some(bad) = shards
        .iter()
        .find(|s| s.contains("..") || s.starts_with('/') || s.contains('\\'))
    {
        return Err(format!("shard name {bad:?} leaves the checkpoint folder"));
    }
    Ok(shards.into_iter().collect())
}

/// The files of a complete checkpoint in a snapshot folder (config + every weights file), or
/// `None` when something is missing. `exists()` follows the pointer symlinks, so a pointer to a
/// missing blob counts as missing.
pub fn complete_snapshot(snapshot: &Path) -> Option<Vec<String>> {
    if !snapshot.join("config.json").exists() {
        return None;
    }
    let names: Vec<String> = std::fs::read_dir(snapshot)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| snapshot.join(n).exists())
        .collect();
    let mut files = vec!["config.json".to_string()];
    match choose_weights(names.iter().map(String::as_str))? {
        Weights::Single(f) => files.push(f),
        Weights::Sharded(index) => {
            let json = std::fs::read_to_string(snapshot.join(&index)).ok()?;
            let shards = shards_of_index(&json).ok()?;
            if !shards.iter().all(|s| snapshot.join(s).exists()) {
                return None;
            }
            files.push(index);
            files.extend(shards);
        }
    }
    if snapshot.join("tokenizer.json").exists() {
        files.push("tokenizer.json".into());
    }
    Some(files)
}

/// A repo's branches as last listed online, kept for offline mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedListing {
    pub repo: String,
    pub endpoint: String,
    /// (branch, commit)
    pub branches: Vec<(String, String)>,
}

pub fn listing_path(dir: &Path, repo: &RepoId) -> PathBuf {
    dir.join(format!("{}.json", repo_folder(repo)))
}

pub fn read_listing(dir: &Path, repo: &RepoId) -> Option<SavedListing> {
    let text = std::fs::read_to_string(listing_path(dir, repo)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Written to a temp name and renamed, so a reader never sees half a listing.
pub fn write_listing(dir: &Path, repo: &RepoId, listing: &SavedListing) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = listing_path(dir, repo);
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let json = serde_json::to_vec_pretty(listing).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_preference_order() {
        assert_eq!(
            choose_weights(["config.json", "pytorch_model.bin", "model.safetensors"]),
            Some(Weights::Single("model.safetensors".into()))
        );
        assert_eq!(
            choose_weights([
                "pytorch_model.bin.index.json",
                "pytorch_model-00001-of-00002.bin"
            ]),
            Some(Weights::Sharded("pytorch_model.bin.index.json".into()))
        );
        assert_eq!(
            choose_weights(["pytorch_model.bin"]),
            Some(Weights::Single("pytorch_model.bin".into()))
        );
        assert_eq!(choose_weights(["config.json", "README.md"]), None);
    }

    #[test]
    fn index_shards_sorted_unique_and_contained() {
        let json = r#"{"metadata":{},"weight_map":{"a":"m-2.bin","b":"m-1.bin","c":"m-2.bin"}}"#;
        assert_eq!(shards_of_index(json).unwrap(), vec!["m-1.bin", "m-2.bin"]);
        assert!(shards_of_index(r#"{"weight_map":{"a":"../x"}}"#).is_err());
        assert!(shards_of_index(r#"{"weight_map":{}}"#).is_err());
        assert!(shards_of_index("not json").is_err());
    }

    #[test]
    fn refs_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoId::parse("Org/run").unwrap();
        let rd = repo_dir(dir.path(), &repo);
        let commit = "a".repeat(40);
        std::fs::create_dir_all(rd.join("refs")).unwrap();
        std::fs::write(rd.join("refs/step5"), format!("{commit}\n")).unwrap();
        std::fs::write(rd.join("refs/bad"), "not-a-commit").unwrap();
        assert_eq!(resolve_ref(&rd, "step5"), Some(commit.clone()));
        assert_eq!(resolve_ref(&rd, "bad"), None);
        assert_eq!(
            cached_refs(&rd),
            vec![("step5".to_string(), commit.clone())]
        );

        let snap = rd.join("snapshots").join(&commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(complete_snapshot(&snap), None);
        std::fs::write(
            snap.join("pytorch_model.bin.index.json"),
            r#"{"weight_map":{"a":"p-1.bin","b":"p-2.bin"}}"#,
        )
        .unwrap();
        std::fs::write(snap.join("p-1.bin"), "x").unwrap();
        assert_eq!(complete_snapshot(&snap), None);
        // A pointer to a blob that is not there is not a file.
        std::os::unix::fs::symlink("../../blobs/nothing", snap.join("p-2.bin")).unwrap();
        assert_eq!(complete_snapshot(&snap), None);
        std::fs::remove_file(snap.join("p-2.bin")).unwrap();
        std::fs::write(snap.join("p-2.bin"), "x").unwrap();
        assert_eq!(
            complete_snapshot(&snap).unwrap(),
            vec![
                "config.json",
                "pytorch_model.bin.index.json",
                "p-1.bin",
                "p-2.bin"
            ]
        );
    }

    #[test]
    fn listing_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoId::parse("Org/run").unwrap();
        assert_eq!(read_listing(dir.path(), &repo), None);
        let l = SavedListing {
            repo: "Org/run".into(),
            endpoint: "http://x".into(),
            branches: vec![("step1".into(), "b".repeat(40))],
        };
        write_listing(dir.path(), &repo, &l).unwrap();
        assert_eq!(read_listing(dir.path(), &repo), Some(l));
    }
}
