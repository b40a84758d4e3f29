//! Reading and writing checkpoint tensors: safetensors (mmap, shards), PyTorch zip pickles,
//! streaming writer, atomic output dirs.
//!
//! A checkpoint is opened with [`WeightsReader::open`] (headers parsed and validated, data
//! memory-mapped) and read one tensor at a time; nothing here ever holds a whole checkpoint.
//! [`SafetensorsWriter`] writes a model as a stream whose header is computed from the plan
//! before any data, and [`OutputDir`] makes the whole output dir appear atomically.

use std::path::{Path, PathBuf};

mod outdir;
pub mod pickle;
mod reader;
mod safetensors;
mod tensor;
pub mod torch;
mod varbuilder;
mod writer;

pub use outdir::{is_lawa_temp_name, remove_live_temp_dirs, remove_stale_temp_dirs, OutputDir};
pub use reader::WeightsReader;
pub use safetensors::{parse_header, HeaderEntry, MAX_HEADER_LEN};
pub use tensor::{DType, TensorInfo};
pub use varbuilder::var_builder;
pub use writer::{Claimed, SafetensorsWriter, DEFAULT_SHARD_SIZE};

/// An I/O error in words that say what happened to the file, where the OS's own would mislead
/// ("failed to fill whole buffer" for a file cut short, "No such device" for a mapped folder).
pub fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the file ended early (truncated, or changed while it was read)".into()
        }
        _ if e.raw_os_error() == Some(19) => "cannot be memory-mapped: not a regular file".into(),
        _ => e.to_string(),
    }
}

/// How a checkpoint's weights are stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One `*.safetensors` file.
    Safetensors,
    /// `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`.
    ShardedSafetensors,
    /// One PyTorch zip pickle `pytorch_model.bin` (or any `*.bin`).
    TorchBin,
    /// `pytorch_model-0000i-of-0000n.bin` + `pytorch_model.bin.index.json`.
    ShardedTorchBin,
    /// A training checkpoint `*.pt` / `*.pth` (nanoGPT style: weights under `model`).
    TorchPt,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::ShardedSafetensors => "safetensors (sharded)",
            Format::TorchBin => "pytorch .bin",
            Format::ShardedTorchBin => "pytorch .bin (sharded)",
            Format::TorchPt => "pytorch .pt",
        })
    }
}

/// Everything that can go wrong reading or writing a checkpoint. Every message is one line
/// that names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // Causes are part of the one-line message and not chained as `source`, so the CLI's
    // `a: b: c` rendering of an error chain does not repeat them.
    #[error("{}: {}", path.display(), io_problem(error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: no weights found (expected model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json, or one *.safetensors/*.bin/*.pt file)", path.display())]
    NoWeights { path: PathBuf },
    #[error("{}: several weights files and no index to choose between them: {}", path.display(), files.join(", "))]
    Ambiguous { path: PathBuf, files: Vec<String> },
    #[error("{}: not a checkpoint file (expected .safetensors, .bin, .pt, .pth or an index .json)", path.display())]
    UnknownFormat { path: PathBuf },
    /// A file whose contents are not what its format says (bad header, bad offsets, truncation).
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error("{}: no tensor named '{name}'", path.display())]
    NoSuchTensor { path: PathBuf, name: String },
    #[error("{}: tensor '{name}' has dtype {dtype}, which candle cannot hold", path.display())]
    UnsupportedDType {
        path: PathBuf,
        name: String,
        dtype: DType,
    },
    #[error("{}: tensor '{name}': {error}", path.display())]
    Candle {
        path: PathBuf,
        name: String,
        error: Box<candle_core::Error>,
    },
    #[error("{}: writer: {problem}", path.display())]
    Write { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Output { path: PathBuf, problem: String },
    /// A PyTorch file the pickle reader refused (its message names the file).
    #[error("{0}")]
    Torch(torch::TorchError),
}

impl CheckpointError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        // A path that is there but is a link to nothing is not simply "missing".
        if error.kind() == std::io::ErrorKind::NotFound
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        {
            return CheckpointError::invalid(path, "a symbolic link to nothing (dangling)");
        }
        if error.kind() == std::io::ErrorKind::NotFound {
            CheckpointError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            CheckpointError::Io {
                path: path.to_path_buf(),
                error,
            }
        }
    }
    pub(crate) fn invalid(path: &Path, problem: impl Into<String>) -> Self {
        CheckpointError::Invalid {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

impl From<torch::TorchError> for CheckpointError {
    fn from(e: torch::TorchError) -> Self {
        CheckpointError::Torch(e)
    }
}

/// Non-trainable buffers that checkpoints carry beside the weights (causal masks, rotary
/// frequencies, BatchNorm counters): not parameters, and copied verbatim when averaging.
///
/// Matched on the last name components so that `attention.dense.bias` (a weight) is not
/// mistaken for `attention.bias` (GPT-NeoX's causal mask).
pub fn is_buffer(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let last = parts.next().unwrap_or("");
    let prev = parts.next().unwrap_or("");
    matches!(
        (prev, last),
        ("attention" | "attn", "bias" | "masked_bias") | ("rotary_emb", "inv_freq")
    ) || matches!(last, "position_ids" | "num_batches_tracked" | "inv_freq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recognised_by_their_last_components() {
        for b in [
            "gpt_neox.layers.0.attention.bias",
            "gpt_neox.layers.3.attention.masked_bias",
            "gpt_neox.layers.0.attention.rotary_emb.inv_freq",
            "transformer.h.0.attn.bias",
            "transformer.h.0.attn.masked_bias",
            "bert.embeddings.position_ids",
            "bn.num_batches_tracked",
        ] {
            assert!(is_buffer(b), "{b} should be a buffer");
        }
        for w in [
            "gpt_neox.layers.0.attention.dense.bias",
            "gpt_neox.layers.0.attention.query_key_value.bias",
            "transformer.h.0.attn.c_attn.bias",
            "gpt_neox.embed_in.weight",
            "bias",
        ] {
            assert!(!is_buffer(w), "{w} should be a weight");
        }
    }

    #[test]
    fn formats_display_for_listings() {
        assert_eq!(
            Format::ShardedSafetensors.to_string(),
            "safetensors (sharded)"
        );
        assert_eq!(Format::TorchBin.to_string(), "pytorch .bin");
    }
}

#[cfg(test)]
mod io_tests {
    use super::*;

    #[test]
    fn io_errors_say_what_happened_to_the_file() {
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(
            io_problem(&eof).contains("ended early"),
            "{}",
            io_problem(&eof)
        );
        let nodev = std::io::Error::from_raw_os_error(19);
        assert!(io_problem(&nodev).contains("not a regular file"));
        let e = CheckpointError::Io {
            path: "x/model.safetensors".into(),
            error: eof,
        };
        assert_eq!(
            e.to_string(),
            "x/model.safetensors: the file ended early (truncated, or changed while it was read)"
        );
    }
}
