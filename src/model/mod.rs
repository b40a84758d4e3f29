//! The model families lawa evaluates, in candle: GPT-NeoX (also trained by the demo), one
//! configurable decoder for the Llama-like families, GPT-2 (Hugging Face and nanoGPT files).
//! [`load_model_dir`] picks the family from `config.json` (or nanoGPT's `model_args`).

use std::path::{Path, PathBuf};

pub mod config;
pub mod decoder;
pub mod family;
pub mod gpt2;
pub mod gpt_neox;
mod load;
pub mod nanogpt;
pub mod rope;

pub use config::{Activation, Config};
pub use family::Family;
pub use gpt_neox::{parameter_shapes, GptNeox};
pub use load::{
    check_tensors, load_model_dir, load_model_dir_with, load_model_from_tensors, read_config,
    ConfigSource, LoadedModel, Model, ModelConfig, ModelInfo,
};

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
