//! The built-in demo run: corpus (embedded novels), tokenizer training, AdamW training loop, checkpoint and metrics writing.
//!
//! [`run_demo`] trains a tiny GPT-NeoX on Jane Austen's novels and writes its trajectory the way
//! real runs are written: `step{N}/` Hugging Face model dirs, `metrics.jsonl`, `heldout.txt`,
//! a cloze task file (`cloze.jsonl`, lm-evaluation-harness's `lambada_openai` schema) and
//! `trajectory.json`.

pub mod corpus;
pub mod optim;
pub mod rng;
mod run;
pub mod tokenizer;

use std::path::PathBuf;

pub use run::{
    existing_config, is_complete, run_demo, train_into, train_with_observer, DemoConfig,
    DemoSummary, DemoText, CLOZE,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("--corpus {}: {message}", path.display())]
    Corpus { path: PathBuf, message: String },
    #[error("tokenizer training: {0}")]
    Tokenizer(String),
    #[error("training: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f32 },
    #[error("invalid demo configuration: {0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled(#[from] crate::progress::Cancelled),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        TrainError::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
