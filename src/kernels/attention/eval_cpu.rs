//! Causal attention on the CPU in f32 for evaluation, the fast path of f32 models on the CPU:
//! one head per rayon task, the scores `q kᵀ` and `p v` by the `gemm` crate, each row's softmax
//! one pass over its unmasked prefix (no mask tensor). Compare [`super::flash`] (the CUDA
//! kernel's algorithm, tiled with an online softmax) and [`super::reference`] (differentiable).

use candle_core::{Device, Result, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::kernels::matmul::{cpu_f32, matmul_with, View};

/// Query rows per block of the scores.
const ROWS: usize = 64;

/// Causal attention on the CPU in f32: `softmax(q kᵀ · scale + causal mask) v` for
/// `q: [B, H, T, hs]` and `k, v: [B, Hkv, T, hs]` → `[B, H, T, hs]`. With fewer key/value heads
/// (grouped-query attention) each serves `H / Hkv` consecutive query heads, read in place
/// rather than repeated. Heads run in parallel; each row's softmax is one pass over its
/// unmasked prefix (no mask tensor, no T x T broadcast).
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, h, t, hs) = q.dims4()?;
    let hkv = k.dim(1)?;
    if k.dims() != v.dims() || k.dims() != [b, hkv, t, hs] || hkv == 0 || h % hkv != 0 {
        candle_core::bail!(
            "attention: q {:?} with k {:?} and v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let group = h / hkv;
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
            let kv = (g / h) * hkv + (g % h) / group;
            let kv = kv * t * hs..(kv + 1) * t * hs;
            let (qg, kg, vg) = (&qd[head], &kd[kv.clone()], &vd[kv]);
            let mut s = vec![0f32; ROWS.min(t) * t];
            // Rows in blocks: block `i0..i1` needs only keys `..i1` (the rest is the future),
            // so about half the products of a full `t x t` are skipped.
            for i0 in (0..t).step_by(ROWS) {
                let (i1, rows) = ((i0 + ROWS).min(t), ROWS.min(t - i0));
                let s = &mut s[..rows * i1];
                matmul_with(
                    rows,
                    hs,
                    i1,
                    View {
                        data: &qg[i0 * hs..i1 * hs],
                        rs: hs,
                        cs: 1,
                    },
                    View {
                        data: &kg[..i1 * hs],
                        rs: 1,
                        cs: hs,
                    },
                    s,
                    false,
                    Parallelism::None,
                );
                for (r, row) in s.chunks_mut(i1).enumerate() {
                    causal_softmax_row(row, i0 + r + 1, scale);
                }
                matmul_with(
                    rows,
                    i1,
                    hs,
                    View {
                        data: s,
                        rs: i1,
                        cs: 1,
                    },
                    View {
                        data: &vg[..i1 * hs],
                        rs: hs,
                        cs: 1,
                    },
                    &mut o[i0 * hs..i1 * hs],
                    false,
                    Parallelism::None,
                );
            }
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
    let sum = crate::kernels::exp::exp_scaled_inplace(live, scale, max);
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

    /// One block of rows (23), exactly `ROWS`, and several with a short last one (150).
    #[test]
    fn causal_attention_matches_candle_ops() {
        let dev = Device::Cpu;
        for t in [23, ROWS, 150] {
            let shape = (2, 3, t, 8);
            let q = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let mask = reference::causal_mask(t, &dev).unwrap();
            let scale = 1.0 / 8f64.sqrt();
            let want = reference::causal_attention(&q, &k, &v, &mask, scale).unwrap();
            let got = causal_attention(&q, &k, &v, scale).unwrap();
            let diff = crate::kernels::max_abs_diff(&got, &want).unwrap() as f32;
            assert!(diff < 1e-5, "t {t}: {diff}");
        }
    }

    /// Grouped-query attention: 6 query heads over 2 key/value heads read in place equal
    /// the reference over the key/value heads repeated (as `repeat_kv` does).
    #[test]
    fn grouped_query_heads_read_their_key_value_head() {
        let dev = Device::Cpu;
        let t = 70;
        let q = Tensor::randn(0f32, 1.0, (2, 6, t, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 2, t, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 2, t, 8), &dev).unwrap();
        let rep = |x: &Tensor| candle_transformers::utils::repeat_kv(x.clone(), 3).unwrap();
        let mask = reference::causal_mask(t, &dev).unwrap();
        let want = reference::causal_attention(&q, &rep(&k), &rep(&v), &mask, 0.3).unwrap();
        let got = causal_attention(&q, &k, &v, 0.3).unwrap();
        let diff = crate::kernels::max_abs_diff(&got, &want).unwrap();
        assert!(diff < 1e-5, "{diff}");
        // Heads that do not divide, or unequal k and v, are refused, not misread.
        let k5 = Tensor::randn(0f32, 1.0, (2, 4, t, 8), &dev).unwrap();
        assert!(causal_attention(&q, &k5, &k5, 0.3).is_err());
        assert!(causal_attention(&q, &k, &k5, 0.3).is_err());
    }
}
