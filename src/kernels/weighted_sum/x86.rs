//! The x86-64 builds of the weighted sum's loops: the generic loop compiled with AVX2/FMA/F16C
//! enabled (auto-vectorised f32/bf16), and F16C conversions for f16. Callers check
//! [`super::simd_available`] first.

use super::{chunk as generic_chunk, Input};
use crate::checkpoint::DType;
use std::arch::x86_64::*;

/// The generic chunk loop compiled for AVX2 (auto-vectorised f32/bf16 paths) with F16C
/// conversions for f16.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn chunk(
    inputs: &[Input<'_>],
    weights: &[f32],
    start: usize,
    out_dtype: DType,
    out: &mut [u8],
    acc: &mut [f32],
) -> bool {
    generic_chunk::<true>(inputs, weights, start, out_dtype, out, acc)
}

/// [`super::fold_input`] compiled for AVX2 with F16C conversions.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn fold_input(inp: &Input<'_>, w: f32, acc: &mut [f32], first: bool) {
    super::fold_input::<true>(inp, w, 0, acc, first)
}

/// [`super::store`] compiled for AVX2 with F16C conversions.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn store(acc: &[f32], out_dtype: DType, out: &mut [u8]) -> bool {
    super::store::<true>(acc, out_dtype, out)
}

#[target_feature(enable = "avx2,f16c")]
#[inline]
pub unsafe fn fold_f16(acc: &mut [f32], w: f32, src: &[u8], first: bool) {
    let n = acc.len();
    debug_assert_eq!(src.len(), 2 * n);
    let wv = _mm256_set1_ps(w);
    let mut i = 0;
    // SAFETY: i + 8 <= n keeps every 8-lane load/store inside acc and src (2 bytes each).
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(src.as_ptr().add(2 * i) as *const __m128i);
            let wx = _mm256_mul_ps(wv, _mm256_cvtph_ps(h));
            let p = acc.as_mut_ptr().add(i);
            let r = if first {
                wx
            } else {
                _mm256_add_ps(_mm256_loadu_ps(p), wx)
            };
            _mm256_storeu_ps(p, r);
            i += 8;
        }
    }
    for j in i..n {
        let x = half::f16::from_bits(u16::from_le_bytes([src[2 * j], src[2 * j + 1]])).to_f32();
        acc[j] = if first { w * x } else { acc[j] + w * x };
    }
}

#[target_feature(enable = "avx2,f16c")]
#[inline]
pub unsafe fn store_f16(acc: &[f32], out: &mut [u8]) {
    let n = acc.len();
    debug_assert_eq!(out.len(), 2 * n);
    let mut i = 0;
    // SAFETY: i + 8 <= n keeps every 8-lane load/store inside acc and out.
    unsafe {
        while i + 8 <= n {
            let v = _mm256_loadu_ps(acc.as_ptr().add(i));
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_storeu_si128(out.as_mut_ptr().add(2 * i) as *mut __m128i, h);
            i += 8;
        }
    }
    for j in i..n {
        out[2 * j..2 * j + 2].copy_from_slice(&half::f16::from_f32(acc[j]).to_bits().to_le_bytes());
    }
}
