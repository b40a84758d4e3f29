//! The exact (erf) GELU in place over f32, vectorised with AVX2/FMA where the CPU has them:
//! fused into the Linear's output pass by [`super::matmul::linear_t`].

use super::exp::available;
#[cfg(target_arch = "x86_64")]
use super::exp::exp256;

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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

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
}
