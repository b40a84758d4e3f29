//! f32 matrix product for the CPU eval path: `C[M,N] = A[M,K] · B[K,N]` with B given by strides
//! (a Linear's `xWᵀ`, attention's `q kᵀ` and `p v` are all this shape).
//!
//! Why our own: on the AVX2 machines we measured, candle 0.11.1's CPU matmul (the `gemm`
//! crate) ran at ~33 GFLOP/s per core where PyTorch's MKL ran at ~65 on the same shapes, and
//! matrix products are nearly all of an eval's time. This is the classic packed design
//! (BLIS): B packed into KC x 16 column slivers, A into 6 x KC row slivers, a 6 x 16 FMA
//! register-tile kernel, work split across rayon threads by column slivers.
//! Only x86-64 with AVX2+FMA takes it; [`available`] says so, and callers fall back to candle.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 96;
const NC: usize = 4096;

/// Whether this CPU runs the packed kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A read-only matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    #[inline(always)]
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }
}

/// `c[M*N]` (row-major) = `a[M,K] · b[K,N]`. Panics if views are too short for the shape;
/// callers pass views built from tensor layouts. Call only when [`available`].
pub fn matmul(m: usize, k: usize, n: usize, a: View, b: View, c: &mut [f32]) {
    assert!(c.len() >= m * n, "gemm: output too short");
    assert!(available(), "gemm: no AVX2/FMA on this CPU");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let c_ptr = SendPtr(c.as_mut_ptr());
    let mut bpack = vec![0f32; KC * NC.min(n.div_ceil(NR) * NR)];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let slivers = nc.div_ceil(NR);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // Pack B[pc.., jc..] into column slivers, in parallel by sliver.
            bpack[..slivers * NR * kc]
                .par_chunks_mut(NR * kc)
                .enumerate()
                .for_each(|(s, dst)| {
                    pack_b(b, pc, kc, jc + s * NR, (jc + nc).min(jc + s * NR + NR), dst)
                });
            let bpack = &bpack;
            let accumulate = pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let mut apack = vec![0f32; mc.div_ceil(MR) * MR * kc];
                pack_a(a, ic, mc, pc, kc, &mut apack);
                let apack = &apack;
                // Threads take column slivers; each writes its own columns of C.
                (0..slivers).into_par_iter().with_min_len(4).for_each(|s| {
                    let j = jc + s * NR;
                    let nr = NR.min(jc + nc - j);
                    let bs = &bpack[s * NR * kc..(s + 1) * NR * kc];
                    for (t, ir) in (0..mc).step_by(MR).enumerate() {
                        let mr = MR.min(mc - ir);
                        let as_ = &apack[t * MR * kc..(t + 1) * MR * kc];
                        // SAFETY: tiles (ic + ir.., j..) are disjoint between slivers and
                        // inside `c` (m * n); the kernel is only reached when `available()`.
                        unsafe {
                            tile(
                                kc,
                                as_,
                                bs,
                                c_ptr.get().add((ic + ir) * n + j),
                                n,
                                mr,
                                nr,
                                accumulate,
                            )
                        };
                    }
                });
            }
        }
    }
}

/// `x [..., K] · wᵀ (+ bias)` for `w [N, K]` (a Linear's weight) on the CPU in f32 →
/// `[..., N]`, with the exact (erf) GELU applied in the same pass when `gelu`.
pub fn linear_t(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, gelu: bool) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (n, k) = w.dims2()?;
    let m = x.elem_count() / k;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let bias = bias.map(|b| b.contiguous()).transpose()?;
    let mut out = vec![0f32; m * n];
    {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let xd = cpu_f32(&xs, xl)?;
        let wd = cpu_f32(&ws, wl)?;
        matmul(
            m,
            k,
            n,
            View {
                data: xd,
                rs: k,
                cs: 1,
            },
            View {
                data: wd,
                rs: 1,
                cs: k,
            },
            &mut out,
        );
    }
    if bias.is_some() || gelu {
        let guard = bias.as_ref().map(|b| b.storage_and_layout());
        let bd = match &guard {
            Some((s, l)) => Some(cpu_f32(s, l)?),
            None => None,
        };
        out.par_chunks_mut(n).for_each(|row| {
            if let Some(b) = bd {
                for (o, b) in row.iter_mut().zip(b) {
                    *o += b;
                }
            }
            if gelu {
                gelu_erf_inplace(row);
            }
        });
    }
    let mut shape = dims;
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, shape, &Device::Cpu)
}

/// `x ← 0.5 x (1 + erf(x / √2))`, erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7, below
/// f32 rounding of the result): 8 lanes at a time when [`available`].
pub fn gelu_erf_inplace(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 and FMA are present.
        unsafe { gelu_erf_avx2(xs) };
        return;
    }
    for x in xs.iter_mut() {
        *x = gelu_erf_scalar(*x);
    }
}

const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_8,
    -1.453_152_1,
    1.061_405_4,
];

fn gelu_erf_scalar(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + ERF_P * z);
    let poly = t * (ERF_A[0] + t * (ERF_A[1] + t * (ERF_A[2] + t * (ERF_A[3] + t * ERF_A[4]))));
    let erf = (1.0 - poly * (-z * z).exp()).copysign(x);
    0.5 * x * (1.0 + erf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_avx2(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = xs.chunks_exact_mut(8);
    let sign_mask = _mm256_set1_ps(-0.0);
    let one = _mm256_set1_ps(1.0);
    for c in &mut chunks {
        let x = _mm256_loadu_ps(c.as_ptr());
        let z = _mm256_andnot_ps(
            sign_mask,
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2)),
        );
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), z, one));
        let mut p = _mm256_set1_ps(ERF_A[4]);
        for a in [ERF_A[3], ERF_A[2], ERF_A[1], ERF_A[0]] {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(a));
        }
        p = _mm256_mul_ps(p, t);
        let e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z)));
        let erf_abs = _mm256_fnmadd_ps(p, e, one);
        let erf = _mm256_or_ps(erf_abs, _mm256_and_ps(x, sign_mask));
        let y = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(0.5), x),
            _mm256_add_ps(one, erf),
        );
        _mm256_storeu_ps(c.as_mut_ptr(), y);
    }
    for x in chunks.into_remainder() {
        *x = gelu_erf_scalar(*x);
    }
}

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
            matmul(
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
            );
            for (i, row) in s.chunks_mut(t).enumerate() {
                causal_softmax_row(row, i + 1, scale);
            }
            matmul(
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

/// `Σ exp(x - max)` over `row`, in f64: 8 lanes at a time with a Cephes-style exp
/// (relative error ~2e-7, below f32's own rounding) when [`available`], else `f32::exp`.
pub fn sum_exp(row: &[f32], max: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 and FMA are present.
        return unsafe { sum_exp_avx2(row, max) };
    }
    row.iter().map(|&x| (x - max).exp() as f64).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_exp_avx2(row: &[f32], max: f32) -> f64 {
    use std::arch::x86_64::*;
    let chunks = row.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| (x - max).exp() as f64)
        .sum();
    let m = _mm256_set1_ps(max);
    // Partial sums stay in f32 lanes over at most 1024 elements (8 x 128), then go to f64.
    let mut total = 0f64;
    for block in row[..row.len() - row.len() % 8].chunks(1024) {
        let mut acc = _mm256_setzero_ps();
        for c in block.chunks_exact(8) {
            let x = _mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m);
            acc = _mm256_add_ps(acc, exp256(x));
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        total += lanes.iter().map(|&v| v as f64).sum::<f64>();
    }
    total + tail
}

/// exp(x) for x ≤ 0 lanes (x > 88 overflows, x < -87 flushes to 0), Cephes `expf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp256(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let x = _mm256_min_ps(x, _mm256_set1_ps(88.0));
    // n = round(x / ln 2); r = x - n ln 2 (in two parts for accuracy).
    let n = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5, // Cephes: 5.0000001201e-1, which is 0.5 in f32
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    // Scale by 2^n through the exponent bits.
    let e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
        23,
    );
    _mm256_mul_ps(y, _mm256_castsi256_ps(e))
}

fn cpu_f32<'a>(s: &'a candle_core::Storage, l: &candle_core::Layout) -> Result<&'a [f32]> {
    let data = match s {
        candle_core::Storage::Cpu(c) => c.as_slice::<f32>()?,
        _ => candle_core::bail!("gemm: tensor is not on the CPU"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("gemm: tensor is not contiguous"),
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    // A method, so closures capture the whole (Send) wrapper, not the raw pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: threads write disjoint tiles through it (see `matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Columns `j0..j1` of B rows `pc..pc+kc` into `dst[k * NR + c]`, zero-padded to NR.
fn pack_b(b: View, pc: usize, kc: usize, j0: usize, j1: usize, dst: &mut [f32]) {
    let w = j1 - j0;
    if b.rs == 1 {
        // B = Wᵀ with W row-major: column j of B is a contiguous row of W.
        for c in 0..w {
            let col = &b.data[(j0 + c) * b.cs + pc..(j0 + c) * b.cs + pc + kc];
            for (p, &v) in col.iter().enumerate() {
                dst[p * NR + c] = v;
            }
        }
        if w < NR {
            for p in 0..kc {
                dst[p * NR + w..(p + 1) * NR].fill(0.0);
            }
        }
    } else {
        for p in 0..kc {
            let row = &mut dst[p * NR..(p + 1) * NR];
            for (c, d) in row.iter_mut().enumerate() {
                *d = if c < w { b.at(pc + p, j0 + c) } else { 0.0 };
            }
        }
    }
}

/// Rows `ic..ic+mc`, columns `pc..pc+kc` of A into MR-row slivers `dst[s][p * MR + r]`.
fn pack_a(a: View, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]) {
    for (s, sliver) in dst.chunks_mut(MR * kc).enumerate() {
        for r in 0..MR {
            let i = s * MR + r;
            if i < mc {
                let row = ic + i;
                for p in 0..kc {
                    sliver[p * MR + r] = a.at(row, pc + p);
                }
            } else {
                for p in 0..kc {
                    sliver[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// One `mr x nr` tile of C (at `c`, row stride `ldc`) from packed slivers; full tiles are
/// written (or accumulated) in place, edge tiles go through a scratch tile.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    accumulate: bool,
) {
    if mr == MR && nr == NR {
        kernel_6x16(kc, a.as_ptr(), b.as_ptr(), c, ldc, accumulate);
        return;
    }
    let mut acc = [0f32; MR * NR];
    kernel_6x16(kc, a.as_ptr(), b.as_ptr(), acc.as_mut_ptr(), NR, false);
    for r in 0..mr {
        let dst = c.add(r * ldc);
        for j in 0..nr {
            let v = acc[r * NR + j];
            if accumulate {
                *dst.add(j) += v;
            } else {
                *dst.add(j) = v;
            }
        }
    }
}

/// `out[r * ldc + c] (+)= Σ_p a[p*6 + r] * b[p*16 + c]` for a 6 x 16 tile: 12 ymm
/// accumulators, 2 B loads and one broadcast per row per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut c00 = _mm256_setzero_ps();
    let mut c01 = _mm256_setzero_ps();
    let mut c10 = _mm256_setzero_ps();
    let mut c11 = _mm256_setzero_ps();
    let mut c20 = _mm256_setzero_ps();
    let mut c21 = _mm256_setzero_ps();
    let mut c30 = _mm256_setzero_ps();
    let mut c31 = _mm256_setzero_ps();
    let mut c40 = _mm256_setzero_ps();
    let mut c41 = _mm256_setzero_ps();
    let mut c50 = _mm256_setzero_ps();
    let mut c51 = _mm256_setzero_ps();
    for p in 0..kc {
        let bp = b.add(p * NR);
        let b0 = _mm256_loadu_ps(bp);
        let b1 = _mm256_loadu_ps(bp.add(8));
        let ap = a.add(p * MR);
        let x = _mm256_broadcast_ss(&*ap);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        let x = _mm256_broadcast_ss(&*ap.add(1));
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        let x = _mm256_broadcast_ss(&*ap.add(2));
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        let x = _mm256_broadcast_ss(&*ap.add(3));
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        let x = _mm256_broadcast_ss(&*ap.add(4));
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        let x = _mm256_broadcast_ss(&*ap.add(5));
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    for (r, (lo, hi)) in [
        (c00, c01),
        (c10, c11),
        (c20, c21),
        (c30, c31),
        (c40, c41),
        (c50, c51),
    ]
    .into_iter()
    .enumerate()
    {
        let row = out.add(r * ldc);
        let (lo, hi) = if accumulate {
            (
                _mm256_add_ps(lo, _mm256_loadu_ps(row)),
                _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8))),
            )
        } else {
            (lo, hi)
        };
        _mm256_storeu_ps(row, lo);
        _mm256_storeu_ps(row.add(8), hi);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel_6x16(
    _kc: usize,
    _a: *const f32,
    _b: *const f32,
    _out: *mut f32,
    _ldc: usize,
    _accumulate: bool,
) {
    unreachable!("gemm::available() is false off x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: View, b: View) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a.at(i, p) as f64 * b.at(p, j) as f64).sum();
            }
        }
        c
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_naive_on_edge_shapes_and_strides() {
        if !available() {
            return;
        }
        // Edges in every dim (m % 6, n % 16, k % KC, several KC and MC blocks).
        for (m, k, n) in [
            (1, 1, 1),
            (7, 300, 17),
            (13, 513, 33),
            (100, 64, 50),
            (6, 16, 16),
        ] {
            let a = data(m * k, 1);
            let w = data(n * k, 2); // W [n, k]: B = Wᵀ
            let av = View {
                data: &a,
                rs: k,
                cs: 1,
            };
            for b in [
                View {
                    data: &w,
                    rs: 1,
                    cs: k,
                },
                View {
                    data: &w,
                    rs: n,
                    cs: 1,
                },
            ] {
                let mut c = vec![f32::NAN; m * n];
                matmul(m, k, n, av, b, &mut c);
                let want = naive(m, k, n, av, b);
                for (x, y) in c.iter().zip(&want) {
                    assert!(((*x as f64) - y).abs() < 1e-3, "{m}x{k}x{n}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn causal_attention_matches_candle_ops() {
        if !available() {
            return;
        }
        let dev = Device::Cpu;
        let shape = (2, 3, 23, 8);
        let q = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let mask = crate::model::gpt_neox::causal_mask(23, &dev).unwrap();
        let scale = 1.0 / 8f64.sqrt();
        let want = crate::model::gpt_neox::attention_train(&q, &k, &v, &mask, scale).unwrap();
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

    #[test]
    fn gelu_matches_candle_erf_gelu() {
        let xs: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 12.0).collect();
        let want: Vec<f32> = Tensor::new(xs.as_slice(), &Device::Cpu)
            .unwrap()
            .gelu_erf()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut got = xs.clone();
        gelu_erf_inplace(&mut got);
        for ((g, w), x) in got.iter().zip(&want).zip(&xs) {
            assert!(
                (g - w).abs() <= 2e-6 * (1.0 + x.abs()),
                "gelu({x}): {g} vs {w}"
            );
            assert!((gelu_erf_scalar(*x) - w).abs() <= 2e-6 * (1.0 + x.abs()));
        }
    }

    #[test]
    fn sum_exp_is_accurate() {
        let row: Vec<f32> = (0..1037)
            .map(|i| ((i * 7919) % 3001) as f32 / 100.0 - 30.0)
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
        let got = sum_exp(&row, max);
        assert!(((got - want) / want).abs() < 1e-6, "{got} vs {want}");
        // Far below the max: flushes towards 0, never NaN.
        assert!(sum_exp(&[-1000.0, 0.0], 0.0) >= 1.0);
    }

    #[test]
    fn linear_t_matches_candle() {
        if !available() {
            return;
        }
        let x = Tensor::randn(0f32, 1.0, (2, 5, 40), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (19, 40), &Device::Cpu).unwrap();
        let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let b = Tensor::randn(0f32, 1.0, 19, &Device::Cpu).unwrap();
        let want_g = want.broadcast_add(&b).unwrap().gelu_erf().unwrap();
        let got_g = linear_t(&x, &w, Some(&b), true).unwrap();
        let diff: f32 = (got_g - want_g)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
        let got = linear_t(&x, &w, None, false).unwrap();
        assert_eq!(got.dims(), &[2, 5, 19]);
        let diff: f32 = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }
}
