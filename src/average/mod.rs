//! Averaging checkpoints: weight schemes (pure functions of steps) and the streaming weighted sum.
//!
//! [`average`] reads the inputs tensor by tensor (memory-mapped), folds them into an f32
//! accumulator with [`crate::kernels::weighted_sum`], casts once to the output dtype and streams
//! the result into a [`SafetensorsWriter`](crate::checkpoint::SafetensorsWriter) inside an
//! [`OutputDir`](crate::checkpoint::OutputDir): memory stays at a small multiple of the largest
//! tensor whatever the number of checkpoints, and the output appears only when complete.

use std::path::PathBuf;
use std::str::FromStr;

use crate::checkpoint::{CheckpointError, DType};
use crate::kernels::weighted_sum::KernelError;
use crate::kernels::Fused;
use crate::progress::Cancelled;

mod convert;
mod engine;
mod memory;
mod plan;
mod side;
mod weights;

pub use engine::average;
pub use memory::{average_in_memory, InMemoryAverage, ResidentCheckpoint, Scratch};
pub use weights::{select_steps, weights, window_ending_at, Scheme};

/// One checkpoint to average: where it is, its step, and its weight.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AverageInput {
    pub path: PathBuf,
    pub step: u64,
    pub weight: f64,
}

/// The dtype of the averaged float tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutDType {
    /// The newest input's dtype, tensor by tensor.
    #[default]
    Keep,
    F32,
    F16,
    BF16,
}

impl OutDType {
    /// The concrete dtype for a float tensor stored as `input` in the newest checkpoint.
    pub fn resolve(self, input: DType) -> DType {
        match self {
            OutDType::Keep => input,
            OutDType::F32 => DType::F32,
            OutDType::F16 => DType::F16,
            OutDType::BF16 => DType::BF16,
        }
    }
}

impl FromStr for OutDType {
    type Err = AverageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "keep" => OutDType::Keep,
            "f32" | "float32" | "fp32" => OutDType::F32,
            "f16" | "float16" | "fp16" => OutDType::F16,
            "bf16" | "bfloat16" => OutDType::BF16,
            _ => {
                return Err(AverageError::Options(format!(
                    "--dtype '{s}': expected keep, f32, f16 or bf16"
                )))
            }
        })
    }
}

impl std::fmt::Display for OutDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutDType::Keep => "keep",
            OutDType::F32 => "f32",
            OutDType::F16 => "f16",
            OutDType::BF16 => "bf16",
        })
    }
}

/// How to average (everything but the inputs and the destination).
#[derive(Clone, Debug)]
pub struct AverageOptions {
    pub dtype: OutDType,
    pub device: candle_core::Device,
    /// Whether our GPU weighted-sum kernel may run on a GPU `device` (else candle's ops).
    pub fused: Fused,
    /// Shard the output above this many bytes.
    pub shard_size: u64,
    /// Average tensors holding NaN/Inf instead of failing.
    pub allow_nonfinite: bool,
    /// Replace an existing output dir.
    pub force: bool,
    /// The weight scheme, recorded in `lawa.json` (as its string).
    pub scheme: Scheme,
}

impl Default for AverageOptions {
    fn default() -> Self {
        AverageOptions {
            dtype: OutDType::Keep,
            device: candle_core::Device::Cpu,
            fused: Fused::On,
            shard_size: crate::checkpoint::DEFAULT_SHARD_SIZE,
            allow_nonfinite: false,
            force: false,
            scheme: Scheme::Uniform,
        }
    }
}

impl AverageOptions {
    /// Defaults (keep dtype, CPU, 5 GB shards) with the scheme recorded for provenance.
    pub fn new(scheme: &Scheme) -> Self {
        AverageOptions {
            scheme: scheme.clone(),
            ..Default::default()
        }
    }
}

/// What an average did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AverageSummary {
    pub out: PathBuf,
    /// What the user should know about the output (one line each): stale temp dirs removed,
    /// mixed input dtypes and the output's, side files left out and why.
    pub notes: Vec<String>,
    pub tensors: usize,
    /// Tensors computed as weighted sums.
    pub averaged: usize,
    /// Tensors identical in every input, copied (buffers verbatim).
    pub copied: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// Why an average failed; every message is one line naming the file(s) and tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum AverageError {
    #[error("{0}")]
    Weights(String),
    #[error("{0}")]
    Window(String),
    #[error("{0}")]
    Options(String),
    #[error("no checkpoints to average")]
    NoInputs,
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Inputs that cannot be averaged together (names, shapes, dtypes): names both files.
    #[error("{0}")]
    Mismatch(String),
    #[error("{}: tensor '{name}' contains NaN or Inf (use --allow-nonfinite to average anyway)", file.display())]
    NonFinite { name: String, file: PathBuf },
    #[error("tensor '{name}': the weighted sum overflows {dtype} (no input value is NaN/Inf; try --dtype f32)")]
    Overflow { name: String, dtype: DType },
    #[error("preparing the device: {0}")]
    Device(KernelError),
    #[error("tensor '{name}': {error}")]
    Kernel { name: String, error: KernelError },
    #[error("{}: {}", path.display(), crate::checkpoint::io_problem(error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Writing into the output failed (disk full, ...): names the output file, not the input.
    #[error("{}: cannot write: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Config { path: PathBuf, problem: String },
    #[error("cancelled")]
    Cancelled(Cancelled),
}

impl From<Cancelled> for AverageError {
    fn from(c: Cancelled) -> Self {
        AverageError::Cancelled(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dtypes_parse_and_resolve() {
        for s in ["keep", "f32", "f16", "bf16"] {
            assert_eq!(s.parse::<OutDType>().unwrap().to_string(), s);
        }
        assert_eq!("BF16".parse::<OutDType>().unwrap(), OutDType::BF16);
        assert!("int8".parse::<OutDType>().is_err());
        assert_eq!(OutDType::Keep.resolve(DType::BF16), DType::BF16);
        assert_eq!(OutDType::F32.resolve(DType::BF16), DType::F32);
    }
}
