//! Fused kernels: one pass over memory where candle's generic ops make several and leave most of
//! a GPU idle. Each is a CUDA kernel of our own (`kernels.cu`, compiled by the `cuda` feature's
//! build into a cubin, so there is no driver JIT wait on first use) with a CPU implementation of
//! the same algorithm. The tests compare the CPU implementation with the unfused ops it replaces;
//! `lawa doctor` compares the CUDA kernels with the unfused ops on a GPU.
//!
//! - weighted sum of k tensors (averaging): [`crate::average::kernel`] on the CPU, [`cuda`] on a GPU;
//! - causal attention for inference, flash-attention style: [`causal_attention`];
//! - log-softmax + NLL over the vocabulary: [`token_nll`].
//!
//! `LAWA_FUSED=0` turns the GPU kernels off (the unfused candle ops run instead), to compare or
//! to work around a problem.

mod attention;
#[cfg(feature = "cuda")]
pub mod cuda;
mod nll;

pub use attention::{causal_attention, CausalAttention, HEAD_SIZES};
pub use nll::{token_nll, TokenNll};

/// Whether the fused GPU kernels may be used (`LAWA_FUSED` is not `0`).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("LAWA_FUSED").map_or(true, |v| v.trim() != "0"))
}

/// Whether this binary carries the fused CUDA kernels.
pub const fn built_with_cuda() -> bool {
    cfg!(feature = "cuda")
}
