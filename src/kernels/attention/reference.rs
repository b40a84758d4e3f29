//! The differentiable reference attention: `softmax(q kᵀ · scale + mask) v` from candle ops that
//! all have a backward pass (the training forward), and the causal mask it takes. The tests of
//! the fast paths ([`super::eval_cpu`], [`super::flash`]) compare against it.

use candle_core::{DType, Device, Result, Tensor, D};

/// `[T, T]` f32 additive causal mask: 0 on and below the diagonal, -inf above.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)
}

/// Causal attention from differentiable ops only, the softmax in f32 (as transformers' eager
/// attention): `q, k, v: [B, H, T, hs]`, `mask: [T, T]` f32 → `[B, H, T, hs]`.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let scores = (q * scale)?.matmul(&k.t()?)?;
    let scores = scores.to_dtype(DType::F32)?.broadcast_add(mask)?;
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}
