//! A run folder: a folder of checkpoint folders (`step1000/`, `checkpoint-1000/` ... each an
//! HF-style model dir) and/or of checkpoint files (`step_1000.safetensors`, `ckpt_1000.pt` ...),
//! with training metrics beside them.

use std::path::{Path, PathBuf};

use super::{metrics, steps, Checkpoint, Location, SourceError, Trajectory};

/// Weights files a folder may hold to count as an HF-style model dir.
const HF_WEIGHTS: &[&str] = &[
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// Files with a weights extension that training frameworks write beside checkpoints and that are
/// not checkpoints themselves.
const NOT_CHECKPOINTS: &[&str] = &[
    "training_args.bin",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state.pth",
];

/// Subfolders that often hold the checkpoints of a run (looked into when the run folder itself
/// has none).
const CHECKPOINT_SUBDIRS: &[&str] = &["checkpoints", "checkpoint", "ckpts", "ckpt"];

/// Whether `name` is one of the HF weights file names (single or sharded).
fn is_hf_weights_name(name: &str) -> bool {
    if HF_WEIGHTS.contains(&name) {
        return true;
    }
    // model-00001-of-00002.safetensors, pytorch_model-00001-of-00002.bin
    let shard = |prefix: &str, ext: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(ext))
            .and_then(|r| r.split_once("-of-"))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
    };
    shard("model-", ".safetensors") || shard("pytorch_model-", ".bin")
}

/// Whether `dir` holds HF-style weights (`model.safetensors`, `pytorch_model.bin`, shards).
pub fn has_hf_weights(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        // `is_file` follows symlinks: an HF cache snapshot links to blobs, a dangling link is
        // a file that is not (yet) downloaded.
        e.path().is_file() && is_hf_weights_name(&e.file_name().to_string_lossy())
    })
}

/// Whether `dir` holds an entry named like HF weights, whatever it is: a run's folder meant as
/// a checkpoint.
fn names_hf_weights(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        // Whatever the entry is (file, link, even a folder or a dangling link): the folder is
        // meant as a checkpoint, and opening it says precisely what is wrong with its weights
        // rather than "not a checkpoint of this run".
        is_hf_weights_name(&e.file_name().to_string_lossy())
    })
}

/// A checkpoint found while scanning, before duplicates are resolved.
#[derive(Debug)]
struct Found {
    step: u64,
    /// Folders first, then safetensors files, then other files: the preferred copy of a step.
    rank: u8,
    name: String,
    path: PathBuf,
}

/// What one folder holds: checkpoints, and warnings about things that looked like them.
#[derive(Default)]
struct Scan {
    found: Vec<Found>,
    warnings: Vec<String>,
    /// The folder is itself a model dir (HF Trainer's output dir holds the final model).
    is_model_dir: bool,
    subdirs: Vec<PathBuf>,
}

fn scan(dir: &Path) -> Result<Scan, SourceError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| SourceError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    entries.sort();
    let mut s = Scan::default();
    let mut own_model_files = Vec::new();
    for (name, path) in entries {
        // Our own temp dirs (an average being written, or left by a killed one) are not models.
        if crate::checkpoint::is_lawa_temp_name(&name) {
            continue;
        }
        if path.is_dir() {
            s.subdirs.push(path.clone());
            let step = steps::parse_step(&name);
            match (step, names_hf_weights(&path)) {
                (Some(step), true) => s.found.push(Found {
                    step,
                    rank: 0,
                    name,
                    path,
                }),
                (None, true) => s.warnings.push(format!(
                    "{name}/: a model folder with no step in its name; skipped"
                )),
                (Some(_), false) => s.warnings.push(format!(
                    "{name}/: named like a checkpoint but holds no model.safetensors or pytorch_model.bin; skipped"
                )),
                (None, false) => {}
            }
        } else if path.is_file() {
            let Some(ext) = steps::weights_extension(&name) else {
                continue;
            };
            if is_hf_weights_name(&name) {
                s.is_model_dir = true;
                own_model_files.push(name);
                continue;
            }
            if NOT_CHECKPOINTS.contains(&name.as_str()) || name.starts_with("rng_state") {
                continue;
            }
            match steps::parse_step(&name) {
                Some(step) => s.found.push(Found {
                    step,
                    rank: if ext == "safetensors" { 1 } else { 2 },
                    name,
                    path,
                }),
                None => s.warnings.push(format!(
                    "{name}: a weights file with no step in its name; skipped"
                )),
            }
        }
    }
    if s.is_model_dir && !s.found.is_empty() {
        s.warnings.push(format!(
            "the folder's own model ({}) has no step; skipped",
            own_model_files.join(", ")
        ));
    }
    Ok(s)
}

/// Sorts by step and keeps one checkpoint per step (the preferred copy), warning about the rest.
fn dedupe(mut found: Vec<Found>, warnings: &mut Vec<String>) -> Vec<Found> {
    found.sort_by(|a, b| (a.step, a.rank, &a.name).cmp(&(b.step, b.rank, &b.name)));
    let mut kept: Vec<Found> = Vec::with_capacity(found.len());
    let mut dropped: Vec<(u64, String)> = Vec::new();
    for f in found {
        match kept.last() {
            Some(last) if last.step == f.step => dropped.push((f.step, f.name)),
            _ => kept.push(f),
        }
    }
    for (step, name) in dropped {
        let used = kept
            .iter()
            .find(|k| k.step == step)
            .map(|k| k.name.as_str())
            .unwrap_or("?");
        warnings.push(format!(
            "step {step} found more than once: using {used}, skipped {name}"
        ));
    }
    kept
}

/// A run's own description, `trajectory.json` (written by `lawa demo`), if the folder has one.
fn read_trajectory_json(dir: &Path, warnings: &mut Vec<String>) -> Option<serde_json::Value> {
    let path = dir.join("trajectory.json");
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            warnings.push(format!("{}: not JSON ({e}); ignored", path.display()));
            None
        }
    }
}

/// `tokens_per_step` from a `trajectory.json`.
fn trajectory_json_tokens(
    path: &Path,
    v: &serde_json::Value,
    warnings: &mut Vec<String>,
) -> Option<u64> {
    // At the top level, or one level down (`{"training": {"tokens_per_step": ...}}`).
    let direct = v.get("tokens_per_step");
    let nested = || {
        v.as_object()?
            .values()
            .find_map(|x| x.get("tokens_per_step"))
    };
    let t = direct.or_else(nested)?;
    match t.as_u64() {
        Some(n) if n > 0 => Some(n),
        _ => {
            warnings.push(format!(
                "{}: tokens_per_step = {t} is not a positive whole number; ignored",
                path.display()
            ));
            None
        }
    }
}

/// What a run declares about itself that the user must see: a learning-rate surge scheduled to
/// make a loss spike on purpose (`lr_surge` in the demo's `trajectory.json`).
fn trajectory_json_notes(v: &serde_json::Value) -> Vec<String> {
    let Some(s) = v.get("lr_surge").filter(|s| !s.is_null()) else {
        return Vec::new();
    };
    let step = s.get("step").and_then(|x| x.as_u64());
    let steps = s.get("steps").and_then(|x| x.as_u64()).unwrap_or(1).max(1);
    let factor = s.get("factor").and_then(|x| x.as_f64());
    match (step, factor) {
        (Some(step), Some(factor)) => vec![format!(
            "spike made on purpose: lr x{factor} at steps {step}-{} (lr_surge in trajectory.json)",
            step + steps - 1
        )],
        _ => vec!["spike made on purpose: a learning-rate surge (trajectory.json lr_surge)".into()],
    }
}

/// Opens a run folder. `source` is the string the user gave (kept to reopen it).
pub fn open(dir: &Path, source: &str) -> Result<Trajectory, SourceError> {
    let meta = std::fs::metadata(dir).map_err(|e| SourceError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(SourceError::Invalid {
            path: dir.to_path_buf(),
            message: "not a folder (a trajectory is a folder of checkpoints)".into(),
        });
    }
    // Absolute paths, so checkpoints stay valid whatever the caller's working dir becomes.
    let dir = std::fs::canonicalize(dir).map_err(|e| SourceError::io(dir, e))?;
    if !dir_has_entries(&dir)? {
        return Err(SourceError::EmptyFolder(dir));
    }
    let top = scan(&dir)?;
    let mut warnings = Vec::new();
    let mut metric_dirs = vec![dir.clone()];
    let scanned = if top.found.is_empty() {
        // Checkpoints one level down, in `checkpoints/` or the like.
        let sub = top.subdirs.iter().find_map(|p| {
            let name = p.file_name()?.to_string_lossy().to_ascii_lowercase();
            if !CHECKPOINT_SUBDIRS.contains(&name.as_str()) {
                return None;
            }
            let s = scan(p).ok()?;
            (!s.found.is_empty()).then(|| (p.clone(), s))
        });
        match sub {
            Some((p, s)) => {
                metric_dirs.push(p);
                s
            }
            None => top,
        }
    } else {
        top
    };
    warnings.extend(scanned.warnings);
    if scanned.found.is_empty() {
        let hint = if scanned.is_model_dir {
            "it is a single model dir, not a run: a run folder holds checkpoint folders (step1000/, checkpoint-1000/ ...) or files (step_1000.safetensors, ckpt_1000.pt ...)"
        } else {
            "expected checkpoint folders (step1000/, checkpoint-1000/, global_step1000/, iter_0001000/ ...) holding config.json + model.safetensors or pytorch_model.bin, or files like step_1000.safetensors, ckpt_1000.pt"
        };
        let hint = match warnings.first() {
            Some(w) => format!("{hint}; {w}"),
            None => hint.to_string(),
        };
        return Err(SourceError::NoCheckpoints { path: dir, hint });
    }
    let found = dedupe(scanned.found, &mut warnings);

    let mut files: Vec<PathBuf> = metric_dirs
        .iter()
        .flat_map(|d| metrics::candidate_files(d))
        .collect();
    if files.is_empty() {
        // HF Trainer keeps its log in each checkpoint; the newest has the whole history.
        if let Some(newest) = found.iter().rev().find(|f| f.rank == 0) {
            let t = newest.path.join("trainer_state.json");
            if t.is_file() {
                files.push(t);
            }
        }
    }
    let metrics = metrics::read_all(&files, &mut warnings);
    let described: Vec<(PathBuf, serde_json::Value)> = metric_dirs
        .iter()
        .filter_map(|d| {
            Some((
                d.join("trajectory.json"),
                read_trajectory_json(d, &mut warnings)?,
            ))
        })
        .collect();
    let tokens_per_step = described
        .iter()
        .find_map(|(p, v)| trajectory_json_tokens(p, v, &mut warnings))
        .or_else(|| metrics::tokens_per_step(&metrics.tokens));
    let notes = described
        .iter()
        .flat_map(|(_, v)| trajectory_json_notes(v))
        .collect();

    let checkpoints = found
        .into_iter()
        .map(|f| Checkpoint {
            step: f.step,
            tokens: None,
            name: f.name,
            location: Location::Local { path: f.path },
        })
        .collect();
    let mut t = Trajectory {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        source: source.to_string(),
        checkpoints,
        metrics,
        tokens_per_step,
        warnings,
        notes,
    };
    super::fill_tokens(&mut t);
    Ok(t)
}

fn dir_has_entries(dir: &Path) -> Result<bool, SourceError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| SourceError::io(dir, e))?
        .next()
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_weights_names() {
        for n in [
            "model.safetensors",
            "pytorch_model.bin",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "pytorch_model-00002-of-00002.bin",
        ] {
            assert!(is_hf_weights_name(n), "{n}");
        }
        for n in [
            "model-.safetensors",
            "model-a-of-2.safetensors",
            "step_1000.safetensors",
            "config.json",
            "training_args.bin",
        ] {
            assert!(!is_hf_weights_name(n), "{n}");
        }
    }
}
