//! f32 CPU kernels of the eval path around the matrix product `C[M,N] = A[M,K] · B[K,N]`, with B
//! given by strides (a Linear's `xWᵀ`, attention's `q kᵀ` and `p v` are all this shape): the
//! Linear with its bias and exact GELU fused, causal attention without a mask tensor, and the
//! vectorised `Σ exp` of the NLL.
//!
//! The product itself is the `gemm` crate's (the one candle's CPU matmul calls), built with its
//! `x86-v4` feature so that it picks AVX-512 at run time where the CPU has it and AVX2/FMA
//! elsewhere. It replaced a packed AVX2 kernel of our own: on an Intel Xeon with AVX-512 it
//! ran 1.1-2.2x faster at Pythia-70M shapes even on its AVX2 path (BENCHMARKS.md, "CPU matrix
//! product"), and a well-kept library follows new CPUs without us.

use candle_core::{Device, Result, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// Whether this CPU has AVX2 and FMA, for the hand-vectorised GELU and `Σ exp` (the matrix
/// product dispatches by itself, on any CPU).
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
    /// Panics unless every element of a `rows x cols` matrix lies inside `data`: the product
    /// reads through raw pointers.
    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "gemm: {what} view too short");
        }
    }
}

/// `c[M*N]` (row-major) = `a[M,K] · b[K,N]`, plus the old `c` when `accumulate`, on all of
/// rayon's threads. Panics if a view is too short for the shape.
pub fn matmul(m: usize, k: usize, n: usize, a: View, b: View, c: &mut [f32], accumulate: bool) {
    matmul_with(m, k, n, a, b, c, accumulate, threads());
}

fn threads() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        t => Parallelism::Rayon(t),
    }
}

#[allow(clippy::too_many_arguments)]
fn matmul_with(
    m: usize,
    k: usize,
    n: usize,
    a: View,
    b: View,
    c: &mut [f32],
    accumulate: bool,
    par: Parallelism,
) {
    assert!(c.len() >= m * n, "gemm: output too short");
    a.check(m, k, "A");
    b.check(k, n, "B");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the views were checked to hold every element read, `c` every element written;
    // `c` does not alias `a` or `b` (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
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
        // The bias goes in first and the product is accumulated onto it: one pass less.
        let guard = bias.as_ref().map(|b| b.storage_and_layout());
        if let Some((s, l)) = &guard {
            let bd = cpu_f32(s, l)?;
            if bd.len() != n {
                candle_core::bail!("gemm: bias has {} elements for {n} outputs", bd.len());
            }
            out.par_chunks_mut(n)
                .for_each(|row| row.copy_from_slice(bd));
        }
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
            guard.is_some(),
        );
    }
    if gelu {
        out.par_chunks_mut(n).for_each(gelu_erf_inplace);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(v: View, r: usize, c: usize) -> f32 {
        v.data[r * v.rs + c * v.cs]
    }

    fn naive(m: usize, k: usize, n: usize, a: View, b: View) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| at(a, i, p) as f64 * at(b, p, j) as f64)
                    .sum();
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
    fn matches_naive_on_edge_shapes_and_strides_and_accumulates() {
        // Odd sizes in every dim, and B both as Wᵀ (column-strided) and row-major.
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
                matmul(m, k, n, av, b, &mut c, false);
                let want = naive(m, k, n, av, b);
                for (x, y) in c.iter().zip(&want) {
                    assert!(((*x as f64) - y).abs() < 1e-3, "{m}x{k}x{n}: {x} vs {y}");
                }
                // Accumulating adds the product onto what `c` holds.
                let mut acc = vec![0.5f32; m * n];
                matmul(m, k, n, av, b, &mut acc, true);
                for (x, y) in acc.iter().zip(&want) {
                    assert!(((*x as f64) - (y + 0.5)).abs() < 1e-3, "{m}x{k}x{n}: {x}");
                }
            }
        }
    }

    #[test]
    fn causal_attention_matches_candle_ops() {
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
