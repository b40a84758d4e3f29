//! Causal attention `softmax(q kᵀ · scale + causal) v` on `q, k, v: [B, H, T, hs]`, the softmax
//! in f32 (as transformers' eager attention). One op, kept three ways, each for its own use:
//!
//! - [`eval_cpu`]: the eval fast path for f32 on the CPU (the `gemm` crate, no mask tensor);
//! - [`flash`]: the flash-style CUDA kernel (f16/bf16, no `T x T` scores in memory) as a candle
//!   custom op, with its algorithm mirrored on the CPU so that the tests can check it;
//! - [`reference`]: differentiable candle ops (training, and the reference of the tests).
//!
//! [`causal_attention`] runs the one a model chose ([`crate::kernels::AttentionKernel`]).

pub mod eval_cpu;
pub mod flash;
pub mod reference;

use candle_core::{DType, Device, Result, Tensor};

use super::AttentionKernel;

pub use reference::causal_mask;

/// The causal mask of one forward pass, built on first use: the CPU kernel and the flash
/// kernel need none, and at T = 2048 it is 16 MB to fill and upload.
pub struct LazyMask<'a> {
    t: usize,
    device: &'a Device,
    mask: std::cell::OnceCell<Tensor>,
}

impl<'a> LazyMask<'a> {
    pub fn new(t: usize, device: &'a Device) -> Self {
        Self {
            t,
            device,
            mask: std::cell::OnceCell::new(),
        }
    }

    pub fn get(&self) -> Result<&Tensor> {
        if let Some(m) = self.mask.get() {
            return Ok(m);
        }
        let m = causal_mask(self.t, self.device)?;
        Ok(self.mask.get_or_init(|| m))
    }
}

/// Causal attention for evaluation with `kernel`; `mask` must be the causal mask.
/// `Flash` falls back to candle's ops for head sizes without a kernel.
pub fn causal_attention(
    kernel: AttentionKernel,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &LazyMask,
    scale: f64,
) -> Result<Tensor> {
    match kernel {
        AttentionKernel::CpuF32 => return eval_cpu::causal_attention(q, k, v, scale),
        AttentionKernel::Flash => {
            if let Some(y) = flash::causal_attention(q, k, v, scale)? {
                return Ok(y);
            }
        }
        AttentionKernel::Candle => {}
    }
    let dtype = q.dtype();
    let scores = (q * scale)?.matmul(&k.t()?)?;
    let scores = scores.to_dtype(DType::F32)?.broadcast_add(mask.get()?)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}
