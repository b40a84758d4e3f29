//! Causal attention on the CPU in f32 for evaluation, the fast path of f32 models on the CPU:
//! one head per rayon task, the scores `q kᵀ` and `p v` by the `gemm` crate, each row's softmax
//! one pass over its unmasked prefix (no mask tensor). Compare [`super::flash`] (the CUDA
//! kernel's algorithm, tiled with an online softmax) and [`super::reference`] (differentiable).

use candle_core::{Device, Result, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::kernels::matmul::{cpu_f32, matmul_with, View};

/// Causal attention on the CPU in f32: `softmax(q kᵀ · scale + causal mask) v` for
/// `q, k, v: [B, H, T, hs]` → `[B, H, T, hs]`. Heads run in parallel; each row's softmax
/// is one pass over its unmasked prefix (no mask tensor, no T x T broadcast).
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, h, t, hs) = q.dims4()?;
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let mut out = vec![0f32; b * h * t * hs];
    {
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (qd, kd, vd) = (cpu_f32(&qs, ql)?, cpu_f32(&ks, kl)?, cpu_f32(&vs, vl)?);
        let scale = scale as f32;
        out.par_chunks_mut(t * hs).enumerate().for_each(|(g, o)| {
            let head = g * t * hs..(g + 1) * t * hs;
            let (qg, kg, vg) = (&qd[head.clone()], &kd[head.clone()], &vd[head]);
            let mut s = vec![0f32; t * t];
            matmul_with(
                t,
                hs,
                t,
                View {
                    data: qg,
                    rs: hs,
                    cs: 1,
                },
                View {
                    data: kg,
                    rs: 1,
                    cs: hs,
                },
                &mut s,
                false,
                Parallelism::None,
            );
            for (i, row) in s.chunks_mut(t).enumerate() {
                causal_softmax_row(row, i + 1, scale);
            }
            matmul_with(
                t,
                t,
                hs,
                View {
                    data: &s,
                    rs: t,
                    cs: 1,
                },
                View {
                    data: vg,
                    rs: hs,
                    cs: 1,
                },
                o,
                false,
                Parallelism::None,
            );
        });
    }
    Tensor::from_vec(out, (b, h, t, hs), &Device::Cpu)
}

/// Softmax of `row[..n] * scale` in place; `row[n..]` (the future) set to 0.
fn causal_softmax_row(row: &mut [f32], n: usize, scale: f32) {
    let (live, future) = row.split_at_mut(n);
    let max = live
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
    let mut sum = 0f32;
    for x in live.iter_mut() {
        *x = (*x * scale - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in live.iter_mut() {
        *x *= inv;
    }
    future.fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::reference;

    #[test]
    fn causal_attention_matches_candle_ops() {
        let dev = Device::Cpu;
        let shape = (2, 3, 23, 8);
        let q = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let mask = reference::causal_mask(23, &dev).unwrap();
        let scale = 1.0 / 8f64.sqrt();
        let want = reference::causal_attention(&q, &k, &v, &mask, scale).unwrap();
        let got = causal_attention(&q, &k, &v, scale).unwrap();
        let diff: f32 = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
