//! The vectorised `exp` of our f32 CPU kernels: `Σ exp(x - max)` (the one-pass NLL's
//! normaliser, [`super::nll`]) and an 8-lane `exp` that the GELU ([`super::gelu`]) shares.
//! AVX2 and FMA are checked at run time ([`available`]); elsewhere the scalar `f32::exp` runs.

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

/// `row[i] ← exp(row[i] · scale − max)` (a softmax's numerators), returning their sum: 8 lanes at
/// a time with the same exp as [`sum_exp`] when [`available`], else `f32::exp`.
pub fn exp_scaled_inplace(row: &mut [f32], scale: f32, max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 and FMA are present.
        return unsafe { exp_scaled_avx2(row, scale, max) };
    }
    exp_scaled_scalar(row, scale, max)
}

fn exp_scaled_scalar(row: &mut [f32], scale: f32, max: f32) -> f32 {
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x * scale - max).exp();
        sum += *x;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_scaled_avx2(row: &mut [f32], scale: f32, max: f32) -> f32 {
    use std::arch::x86_64::*;
    let (s, m) = (_mm256_set1_ps(scale), _mm256_set1_ps(max));
    let mut acc = _mm256_setzero_ps();
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        let e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(c.as_ptr()), s, m));
        _mm256_storeu_ps(c.as_mut_ptr(), e);
        acc = _mm256_add_ps(acc, e);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    lanes.iter().sum::<f32>() + exp_scaled_scalar(chunks.into_remainder(), scale, max)
}

/// exp(x) for x ≤ 0 lanes (x > 88 overflows, x < -87 flushes to 0), Cephes `expf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp256(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_scaled_matches_f32_exp_and_sums_them() {
        let row: Vec<f32> = (0..203)
            .map(|i| ((i * 7919) % 601) as f32 / 10.0 - 30.0)
            .collect();
        let (scale, max) = (0.125f32, 4.0f32);
        let mut got = row.clone();
        let sum = exp_scaled_inplace(&mut got, scale, max);
        let mut want = row.clone();
        let want_sum = exp_scaled_scalar(&mut want, scale, max);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.max(1e-30), "{g} vs {w}");
        }
        assert!(
            ((sum - want_sum) / want_sum).abs() < 1e-6,
            "{sum} vs {want_sum}"
        );
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
}
