//! GPT-NeoX (Pythia) in candle: config, eval forward with fused ops, training forward with differentiable ops.

use std::path::{Path, PathBuf};

pub mod config;
pub mod gpt_neox;
mod load;

pub use config::{Activation, Config};
pub use gpt_neox::{parameter_shapes, GptNeox};
pub use load::{check_tensors, load_model_dir, load_model_dir_with, LoadedModel};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },
    #[error("{}: no config.json (not a Hugging Face model dir)", dir.display())]
    NoConfig { dir: PathBuf },
    #[error("{}: checkpoint has no tensor {name}, which the model needs", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor {name} has shape {have:?}, the config needs {want:?}", path.display())]
    WrongShape {
        path: PathBuf,
        name: String,
        have: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("{}: {msg}", path.display())]
    Weights { path: PathBuf, msg: String },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn weights(path: &Path, e: impl std::fmt::Display) -> ModelError {
        ModelError::Weights {
            path: path.to_path_buf(),
            msg: one_line(&e.to_string()),
        }
    }
}

/// candle's errors can carry backtraces and newlines; our messages are one line.
pub(crate) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
