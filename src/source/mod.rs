//! Where checkpoints come from: run folders, the Hugging Face cache, hub repos.
//!
//! Every source is turned into a [`Trajectory`]: the checkpoints of one training run sorted by
//! step, plus whatever training metrics were found. Listing reads metadata only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::progress::Reporter;

pub mod hf_cache;
pub mod hub;
pub mod metrics;
pub mod run_dir;
pub mod steps;

/// Why a source could not be opened. Every message is one line naming the path or repo.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: empty folder, no checkpoints in it", .0.display())]
    EmptyFolder(PathBuf),
    #[error("{}: no checkpoints found: {hint}", path.display())]
    NoCheckpoints { path: PathBuf, hint: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{repo}: not a local path, and not in the Hugging Face cache {} (use hf:{repo} to list it from the hub)", cache.display())]
    NotInCache { repo: String, cache: PathBuf },
    /// Listing or fetching a hub repo (`hf:ORG/NAME`) failed.
    #[error(transparent)]
    Hub(#[from] hub::HubError),
}

impl SourceError {
    /// An I/O error on `path`; a missing path becomes [`SourceError::NotFound`].
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::NotFound {
            SourceError::NotFound(path.to_path_buf())
        } else {
            SourceError::Io {
                path: path.to_path_buf(),
                error,
            }
        }
    }
}

/// Opens a trajectory from what the user typed: a run folder, a `models--ORG--NAME` folder of
/// the HF cache, `ORG/NAME` (looked up in the HF cache when no such local path exists), or
/// `hf:ORG/NAME` (the hub), with the hub and cache `hf` names. Reads metadata only, never
/// tensor data.
pub fn open(spec: &str, hf: &hub::HubOptions) -> Result<Trajectory, SourceError> {
    if spec.starts_with("hf:") {
        return Ok(hub::open(spec, hf)?);
    }
    let path = Path::new(spec);
    if path.exists() {
        if hf_cache::is_repo_dir(path) {
            return hf_cache::open_repo_dir(path, spec);
        }
        return run_dir::open(path, spec);
    }
    if hf_cache::looks_like_repo_id(spec) {
        return hf_cache::open_repo_in(&hf.cache_dir, spec, spec);
    }
    Err(SourceError::NotFound(path.to_path_buf()))
}

/// The local checkpoints whose weights cannot be opened (missing, truncated, not a checkpoint),
/// with the reader's one-line reason. Reads headers only; hub checkpoints are not checked.
pub fn unreadable(traj: &Trajectory) -> Vec<(u64, String)> {
    traj.checkpoints
        .iter()
        .filter_map(|c| match &c.location {
            Location::Local { path } => crate::checkpoint::WeightsReader::open(path)
                .err()
                .map(|e| (c.step, e.to_string())),
            Location::Hub { .. } => None,
        })
        .collect()
}

/// The local model dir or weights file of a checkpoint, checked to exist. A hub checkpoint is
/// downloaded into the Hugging Face cache `hf` names first (only its missing files; progress in
/// bytes and retry messages through `reporter`, cancellable; an error in offline mode if not
/// cached).
pub fn local_path(
    ckpt: &Checkpoint,
    hf: &hub::HubOptions,
    reporter: &Reporter,
) -> Result<PathBuf, SourceError> {
    match &ckpt.location {
        Location::Local { path } => {
            if path.exists() {
                Ok(path.clone())
            } else {
                Err(SourceError::NotFound(path.clone()))
            }
        }
        Location::Hub { repo, revision } => {
            Ok(hub::download_checkpoint(repo, revision, hf, reporter)?)
        }
    }
}

/// Tokens per step of well-known public runs.
pub fn known_tokens_per_step(repo: &str) -> Option<u64> {
    // Pythia: batch 1024 sequences of 2048 tokens for every model size (Biderman et al. 2023).
    let name = repo.strip_prefix("EleutherAI/")?;
    name.starts_with("pythia-").then_some(2_097_152)
}

/// Sets each checkpoint's tokens seen: the tokens logged at exactly that step if the metrics
/// have them, else `tokens_per_step × step`, else the tokens the checkpoint's name states
/// (OLMo's `step1000-tokens4B`). When no tokens per step is known but the names state tokens,
/// it is derived from them (the name with the most tokens, whose rounding matters least) if
/// every name agrees with it to within its rounding, so the x axis is exact rather than
/// rounded to whole billions; names that disagree (a later stage with another batch size)
/// keep their own figures.
pub fn fill_tokens(t: &mut Trajectory) {
    let named: Vec<(u64, u64, u64)> = t
        .checkpoints
        .iter()
        .filter_map(|c| steps::parse_tokens(&c.name).map(|(n, unit)| (c.step, n, unit)))
        .collect();
    if t.tokens_per_step.is_none() {
        t.tokens_per_step = tokens_per_step_from_names(&named);
    }
    for c in &mut t.checkpoints {
        let logged = t
            .metrics
            .tokens
            .steps
            .binary_search(&c.step)
            .ok()
            .map(|i| t.metrics.tokens.values[i])
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64);
        c.tokens = logged
            .or_else(|| t.tokens_per_step.map(|k| k.saturating_mul(c.step)))
            .or_else(|| steps::parse_tokens(&c.name).map(|(n, _)| n));
    }
}

/// The user's tokens per step (`--tokens-per-step N`), for runs whose names and metrics do not
/// carry tokens: replaces any derived figure; tokens logged at a step still win.
pub fn set_tokens_per_step(t: &mut Trajectory, n: u64) {
    t.tokens_per_step = Some(n);
    fill_tokens(t);
}

/// Tokens per step implied by `(step, tokens, rounding unit)` from names, when they all agree.
fn tokens_per_step_from_names(named: &[(u64, u64, u64)]) -> Option<u64> {
    let &(step, tokens, unit) = named.iter().filter(|n| n.0 > 0).max_by_key(|n| n.1)?;
    let k = (tokens as f64 / step as f64).round() as u64;
    // k is off by at most unit / step (the name's rounding) + 1/2 (rounding k) per step; a name
    // is off by at most its own unit.
    let slack_per_step = unit as f64 / step as f64 + 0.5;
    let agree = named.iter().all(|&(s, n, u)| {
        (k.saturating_mul(s) as f64 - n as f64).abs() <= u as f64 + s as f64 * slack_per_step
    });
    (k > 0 && agree).then_some(k)
}

/// Where one checkpoint's files are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// A model dir (`config.json` + weights) or a single weights file on disk.
    Local { path: PathBuf },
    /// A revision (branch) of a hub repo; files are fetched into the HF cache on demand.
    Hub { repo: String, revision: String },
}

/// One checkpoint of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: u64,
    /// Tokens seen at this step, when the run says how many tokens a step is.
    pub tokens: Option<u64>,
    /// The name it was found under (`step1000`, `checkpoint-1000`, `ckpt_1000.pt`, a branch).
    pub name: String,
    pub location: Location,
}

/// A metric along training steps (loss, lr, grad norm ...), sorted by step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub steps: Vec<u64>,
    pub values: Vec<f64>,
}

impl Series {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    pub fn len(&self) -> usize {
        self.steps.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.steps.iter().copied().zip(self.values.iter().copied())
    }
}

/// Training metrics found beside the checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub loss: Series,
    pub lr: Series,
    pub grad_norm: Series,
    /// Tokens seen, per logged step (when logged).
    pub tokens: Series,
    /// The file(s) metrics were read from.
    pub files: Vec<PathBuf>,
}

/// The checkpoints of one training run, sorted by step, with its metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// Short display name (folder name, `ORG/NAME`).
    pub name: String,
    /// The source string the user gave (`PATH`, `hf:ORG/NAME`), enough to reopen it.
    pub source: String,
    pub checkpoints: Vec<Checkpoint>,
    pub metrics: Metrics,
    /// Tokens per optimizer step, when known (from `trajectory.json`, metrics, or known runs).
    pub tokens_per_step: Option<u64>,
    /// Things the user should know that did not stop listing: duplicate steps, names that
    /// looked like checkpoints but had no parseable step, unreadable metrics lines.
    pub warnings: Vec<String>,
    /// What the run declares about itself that every view must show (e.g. a loss spike made
    /// on purpose by a scheduled learning-rate surge).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Trajectory {
    pub fn steps(&self) -> Vec<u64> {
        self.checkpoints.iter().map(|c| c.step).collect()
    }
    pub fn checkpoint(&self, step: u64) -> Option<&Checkpoint> {
        self.checkpoints
            .binary_search_by_key(&step, |c| c.step)
            .ok()
            .map(|i| &self.checkpoints[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_names_the_checkpoints_that_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt_neox/parallel");
        for step in [10, 20, 30] {
            let d = dir.path().join(format!("step{step}"));
            std::fs::create_dir(&d).unwrap();
            for f in ["config.json", "model.safetensors"] {
                std::fs::copy(fixture.join(f), d.join(f)).unwrap();
            }
        }
        let cut = dir.path().join("step20/model.safetensors");
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(
            dir.path().join("step30/model.safetensors"),
            b"not a checkpoint",
        )
        .unwrap();
        let traj = open(dir.path().to_str().unwrap(), &crate::Config::default().hub).unwrap();
        let bad = unreadable(&traj);
        let steps: Vec<u64> = bad.iter().map(|b| b.0).collect();
        assert_eq!(steps, vec![20, 30], "{bad:?}");
        assert!(bad[0].1.contains("step20"), "{}", bad[0].1);
    }

    #[test]
    fn tokens_per_step_is_derived_from_olmo_names_when_they_agree() {
        // OLMo-2 7B stage 1: 1024 x 4096 = 4,194,304 tokens per step, names rounded up to whole B.
        let k = 4_194_304u64;
        let named: Vec<(u64, u64, u64)> = [1000u64, 2000, 928_646]
            .iter()
            .map(|&s| {
                (
                    s,
                    (k * s).div_ceil(1_000_000_000) * 1_000_000_000,
                    1_000_000_000,
                )
            })
            .collect();
        let got = tokens_per_step_from_names(&named).unwrap();
        // Within the largest name's rounding per step (1e9 / 928646 ≈ 1077 tokens), where the
        // name `stage1-step1000-tokens5B` alone is 19% off.
        assert!(got.abs_diff(k) <= 1_000_000_000 / 928_646 + 1, "{got}");
        // A stage with another batch size in the same list: no single tokens per step.
        let mut mixed = named.clone();
        mixed.push((10_000, 200_000_000_000, 1_000_000_000));
        assert_eq!(tokens_per_step_from_names(&mixed), None);
        assert_eq!(tokens_per_step_from_names(&[]), None);
    }

    #[test]
    fn fill_tokens_reads_names_and_prefers_logged_tokens() {
        let ck = |step: u64, name: &str| Checkpoint {
            step,
            tokens: None,
            name: name.into(),
            location: Location::Local { path: name.into() },
        };
        let mut t = Trajectory {
            name: "olmo".into(),
            source: "x".into(),
            checkpoints: vec![
                ck(1000, "stage1-step1000-tokens5B"),
                ck(2000, "stage1-step2000-tokens9B"),
            ],
            metrics: Metrics::default(),
            tokens_per_step: None,
            warnings: vec![],
            notes: vec![],
        };
        t.metrics.tokens = Series {
            steps: vec![2000],
            values: vec![8_388_608_000.0],
        };
        fill_tokens(&mut t);
        let k = t.tokens_per_step.unwrap();
        assert_eq!(t.checkpoints[0].tokens, Some(k * 1000));
        assert_eq!(t.checkpoints[1].tokens, Some(8_388_608_000));
    }
}
