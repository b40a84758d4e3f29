//! Where checkpoints come from: run folders, the Hugging Face cache, hub repos.
//!
//! Every source is turned into a [`Trajectory`]: the checkpoints of one training run sorted by
//! step, plus whatever training metrics were found. Listing reads metadata only.

pub mod hub;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
