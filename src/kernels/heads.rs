//! Heads in and out of attention on the f32 CPU eval path: a projection `[B, T, ...]` split
//! into per-head `[B, H, T, hs]` with rotate-half RoPE applied on the way, and the heads merged
//! back into `[B, T, H·hs]`. One parallel pass each, where candle's `narrow`, `transpose`,
//! `contiguous`, `rope` and `cat` made five to seven copies, most of them on one thread
//! (BENCHMARKS.md, "The AVX2 path"). There is no CUDA half: on a GPU the candle ops run.
//!
//! The reference is those candle ops (`model::rope::RopeTables::apply` after a transpose), and
//! the tests compare the two.

use std::mem::MaybeUninit;

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::matmul::cpu_f32;

/// Where head `h` of token `i` of batch row `b` starts in a projection of `t` tokens:
/// `(b·t + i)·row + offset + h·head_stride`, its `hs` values contiguous.
#[derive(Clone, Copy, Debug)]
pub struct HeadLayout {
    /// Values per token.
    pub row: usize,
    /// From one head to the next.
    pub head_stride: usize,
    /// Of head 0 in a token's row (GPT-NeoX's interleaved `[q_h, k_h, v_h]`: 0, hs, 2·hs).
    pub offset: usize,
}

/// Rotate-half RoPE over the first `ndims` values of each head: `cos`, `sin` are `[T, ndims/2]`
/// (row `i` for position `i`).
#[derive(Clone, Copy, Debug)]
pub struct Rope<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub ndims: usize,
}

/// `[B, H, T, hs]` (row-major) from `src`, a projection of `b × t` tokens laid out as `layout`
/// says, with `rope` applied. Panics if `src` is too short for the layout, or the tables for `t`.
pub fn split_heads(
    src: &[f32],
    (b, t, heads, hs): (usize, usize, usize, usize),
    layout: HeadLayout,
    rope: Option<Rope>,
) -> Vec<f32> {
    if b * t * heads * hs == 0 {
        return Vec::new();
    }
    let last = (b * t - 1) * layout.row + layout.offset + (heads - 1) * layout.head_stride + hs;
    assert!(last <= src.len(), "split_heads: projection too short");
    if let Some(r) = &rope {
        assert!(r.ndims <= hs && r.ndims % 2 == 0, "split_heads: rope dims");
        assert!(r.cos.len() >= t * r.ndims / 2 && r.sin.len() >= t * r.ndims / 2);
    }
    filled(b * heads * t * hs, t * hs, |g, out| {
        let (bi, h) = (g / heads, g % heads);
        for i in 0..t {
            let at = (bi * t + i) * layout.row + layout.offset + h * layout.head_stride;
            let x = &src[at..at + hs];
            let o = &mut out[i * hs..(i + 1) * hs];
            let n = rope.map_or(0, |r| r.ndims);
            if let Some(r) = &rope {
                let half = n / 2;
                let (cos, sin) = (&r.cos[i * half..][..half], &r.sin[i * half..][..half]);
                for d in 0..half {
                    let (x1, x2) = (x[d], x[d + half]);
                    o[d].write(x1 * cos[d] - x2 * sin[d]);
                    o[d + half].write(x2 * cos[d] + x1 * sin[d]);
                }
            }
            for d in n..hs {
                o[d].write(x[d]);
            }
        }
    })
}

/// `[B, T, H·hs]` from heads `[B, H, T, hs]` (row-major).
pub fn merge_heads(src: &[f32], (b, heads, t, hs): (usize, usize, usize, usize)) -> Vec<f32> {
    assert!(src.len() >= b * heads * t * hs, "merge_heads: too short");
    if b * t * heads * hs == 0 {
        return Vec::new();
    }
    filled(b * t * heads * hs, heads * hs, |g, out| {
        let (bi, i) = (g / t, g % t);
        for h in 0..heads {
            let at = ((bi * heads + h) * t + i) * hs;
            for (o, x) in out[h * hs..(h + 1) * hs].iter_mut().zip(&src[at..at + hs]) {
                o.write(*x);
            }
        }
    })
}

/// [`split_heads`] of a contiguous f32 CPU tensor `x: [B, T, row]` (`layout.row` is taken
/// from it) → `[B, H, T, hs]`.
pub fn split_heads_tensor(
    x: &Tensor,
    heads: usize,
    hs: usize,
    layout: HeadLayout,
    rope: Option<Rope>,
) -> Result<Tensor> {
    let (b, t, row) = x.dims3()?;
    let x = x.contiguous()?;
    let (s, l) = x.storage_and_layout();
    let out = split_heads(
        cpu_f32(&s, l)?,
        (b, t, heads, hs),
        HeadLayout { row, ..layout },
        rope,
    );
    Tensor::from_vec(out, (b, heads, t, hs), &Device::Cpu)
}

/// [`merge_heads`] of a contiguous f32 CPU tensor `[B, H, T, hs]` → `[B, T, H·hs]`.
pub fn merge_heads_tensor(y: &Tensor) -> Result<Tensor> {
    let (b, heads, t, hs) = y.dims4()?;
    let y = y.contiguous()?;
    let (s, l) = y.storage_and_layout();
    let out = merge_heads(cpu_f32(&s, l)?, (b, heads, t, hs));
    Tensor::from_vec(out, (b, t, heads * hs), &Device::Cpu)
}

/// A vector of `len` values written by `fill(chunk_index, chunk)` over chunks of `chunk`
/// values in parallel; `fill` must write every value of its chunk (no zeroing pass first).
fn filled(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(g, c)| fill(g, c));
    // SAFETY: every chunk of the `len` values was written by `fill` (its contract; both
    // callers write each index of their chunk exactly once).
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rope::{Rope as RopeFreqs, RopeScaling};
    use candle_core::{DType, Device, Tensor};

    /// The candle ops these replace: narrow the head's part, transpose to `[B, H, T, hs]`,
    /// rotate with the differentiable RoPE; and the transpose + reshape back.
    #[test]
    fn split_and_merge_match_the_candle_ops_they_replace() {
        let dev = Device::Cpu;
        let (b, t, heads, hs) = (2, 7, 3, 8);
        // GPT-NeoX's interleaved qkv (row 3·H·hs, head stride 3·hs), partial rotary (4 of 8),
        // and a plain projection (Llama's q) with full rotary.
        for (parts, ndims) in [(3, 4), (1, 8), (3, 0)] {
            let row = parts * heads * hs;
            let x = Tensor::randn(0f32, 1.0, (b, t, row), &dev).unwrap();
            let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let freqs = RopeFreqs::new(ndims, 10000.0, &RopeScaling::None);
            let tables = freqs.tables(t, DType::F32, &dev).unwrap();
            for part in 0..parts {
                let want = x
                    .reshape((b, t, heads, parts * hs))
                    .unwrap()
                    .narrow(3, part * hs, hs)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap();
                let want = tables.apply(&want, false).unwrap();
                let (cos, sin) = tables.cpu_f32().unwrap();
                let rope = (ndims > 0).then_some(Rope {
                    cos: &cos,
                    sin: &sin,
                    ndims,
                });
                let layout = HeadLayout {
                    row,
                    head_stride: parts * hs,
                    offset: part * hs,
                };
                let got = split_heads(&data, (b, t, heads, hs), layout, rope);
                let got = Tensor::from_vec(got, (b, heads, t, hs), &dev).unwrap();
                let d = crate::kernels::max_abs_diff(&got, &want).unwrap();
                assert!(d <= 1e-6, "parts {parts} ndims {ndims} part {part}: {d}");
                // And back: [B, H, T, hs] -> [B, T, H·hs].
                let merged = merge_heads(
                    &got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    (b, heads, t, hs),
                );
                let want = got
                    .transpose(1, 2)
                    .unwrap()
                    .reshape((b, t, heads * hs))
                    .unwrap();
                let merged = Tensor::from_vec(merged, (b, t, heads * hs), &dev).unwrap();
                assert_eq!(crate::kernels::max_abs_diff(&merged, &want).unwrap(), 0.0);
            }
        }
    }
}
