//! The f32 CPU matrix product `C[M,N] = A[M,K] · B[K,N]`, with B given by strides (a Linear's
//! `xWᵀ`, attention's `q kᵀ` and `p v` are all this shape), and the Linear of the eval path
//! around it with its bias and exact GELU ([`super::gelu`]) fused.
//!
//! The product itself is the `gemm` crate's (the one candle's CPU matmul calls), built with its
//! `x86-v4` feature (lawa's default `avx512` feature) so that it picks AVX-512 at run time where
//! the CPU has it and AVX2/FMA elsewhere. It replaced a packed AVX2 kernel of our own: on an Intel Xeon with AVX-512 it
//! ran 1.1-2.2x faster at Pythia-70M shapes even on its AVX2 path (BENCHMARKS.md, "CPU matrix
//! product"), and a well-kept library follows new CPUs without us.

use std::mem::MaybeUninit;

use candle_core::{Device, Result, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::gelu::gelu_erf_inplace;
use super::LinearKernel;

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
pub(crate) fn matmul_with(
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
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: `c` holds `m * n` initialised values and does not alias `a` or `b` (it is
    // borrowed mutably).
    unsafe { gemm_into(m, k, n, a, b, c.as_mut_ptr(), accumulate, par) }
}

/// `c[M*N]` = `a · b` into memory that need not be initialised (nothing is read from it), on
/// all of rayon's threads: an output written whole, without a zeroing pass first.
pub fn matmul_uninit(m: usize, k: usize, n: usize, a: View, b: View, c: &mut [MaybeUninit<f32>]) {
    assert!(c.len() >= m * n, "gemm: output too short");
    if k == 0 {
        c[..m * n].iter_mut().for_each(|x| {
            x.write(0.0);
        });
        return;
    }
    // SAFETY: with `accumulate` false the product only writes `c`, every one of its `m * n`
    // values; `c` does not alias `a` or `b`.
    unsafe { gemm_into(m, k, n, a, b, c.as_mut_ptr().cast(), false, threads()) }
}

/// # Safety
/// `c` points to `m * n` writable values (initialised when `accumulate`), aliasing neither view;
/// `k > 0`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    m: usize,
    k: usize,
    n: usize,
    a: View,
    b: View,
    c: *mut f32,
    accumulate: bool,
    par: Parallelism,
) {
    a.check(m, k, "A");
    b.check(k, n, "B");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the views were checked to hold every element read; the caller vouches for `c`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
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

/// A Linear layer of an eval forward pass on `kernel`: [`linear_t`], or candle's `Linear`.
pub fn linear_eval(kernel: LinearKernel, l: &candle_nn::Linear, x: &Tensor) -> Result<Tensor> {
    match kernel {
        LinearKernel::CpuF32 => linear_t(x, l.weight(), l.bias(), false),
        LinearKernel::Candle => candle_core::Module::forward(l, x),
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
    // Written whole below (the bias, then the product onto it; or the product alone): no
    // zeroing pass, which ran on one thread.
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
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
            out.spare_capacity_mut()[..m * n]
                .par_chunks_mut(n)
                .with_min_len(16)
                .for_each(|row| {
                    for (o, b) in row.iter_mut().zip(bd) {
                        o.write(*b);
                    }
                });
            // SAFETY: every row was just written with the bias.
            unsafe { out.set_len(m * n) };
        }
        let x = View {
            data: xd,
            rs: k,
            cs: 1,
        };
        let w = View {
            data: wd,
            rs: 1,
            cs: k,
        };
        if guard.is_some() {
            matmul(m, k, n, x, w, &mut out, true);
        } else {
            matmul_uninit(m, k, n, x, w, &mut out.spare_capacity_mut()[..m * n]);
            // SAFETY: the product wrote all `m * n` values.
            unsafe { out.set_len(m * n) };
        }
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

pub(crate) fn cpu_f32<'a>(
    s: &'a candle_core::Storage,
    l: &candle_core::Layout,
) -> Result<&'a [f32]> {
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
    fn linear_t_matches_candle() {
        let x = Tensor::randn(0f32, 1.0, (2, 5, 40), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (19, 40), &Device::Cpu).unwrap();
        let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let b = Tensor::randn(0f32, 1.0, 19, &Device::Cpu).unwrap();
        let want_g = want.broadcast_add(&b).unwrap().gelu_erf().unwrap();
        let got_g = linear_t(&x, &w, Some(&b), true).unwrap();
        let diff = crate::kernels::max_abs_diff(&got_g, &want_g).unwrap() as f32;
        assert!(diff < 1e-4, "{diff}");
        let got = linear_t(&x, &w, None, false).unwrap();
        assert_eq!(got.dims(), &[2, 5, 19]);
        let diff = crate::kernels::max_abs_diff(&got, &want).unwrap() as f32;
        assert!(diff < 1e-4, "{diff}");
    }
}
