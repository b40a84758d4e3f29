//! The weighted sum `out = Σ w_i · x_i` over raw little-endian tensor bytes: f32/f16/bf16/f64
//! in, f32 accumulation, one rounding (round-to-nearest-even) to the output dtype.
//!
//! The CPU kernel works in cache-sized chunks (all inputs of a chunk are folded into one f32
//! accumulator before it is cast and stored) spread over threads with rayon; on x86-64 with
//! AVX2/F16C it runs a vectorised build of the same loop (`x86`). From files to a file it reads
//! and writes with `pread`/`pwrite` (`files`). On a GPU, [`DeviceSum`]: our CUDA kernel
//! (`cuda`, `lawa_weighted_sum` in `kernels.cu`) or candle's tensor ops.
//! Each product is `w * x` then added (no fused multiply-add), in input order, so results are
//! bit-identical to a plain f32 reference (`acc = acc + w * x`).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::Fused;
use crate::checkpoint::DType;

#[cfg(feature = "cuda")]
mod cuda;
mod files;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use files::{copy_if_identical_files, weighted_sum_files_at, FileError, FileInput, Verbatim};
#[cfg(test)]
use files::{COMPARE_BLOCK, DIRECT_CHUNK};

/// One input tensor: its bytes and dtype (every input holds the same number of elements).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub bytes: &'a [u8],
    pub dtype: DType,
}

/// Elements per chunk: accumulator + one input chunk stay in L2.
const CHUNK: usize = 16 * 1024;
/// Below this many elements threads cost more than they save.
const PARALLEL_MIN: usize = 4 * CHUNK;

/// Why a weighted sum could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("dtype {0} cannot be averaged (only f16, bf16, f32, f64)")]
    NotFloat(DType),
    #[error("inputs hold different element counts ({0} and {1})")]
    Length(usize, usize),
    #[error("{0} inputs but {1} weights")]
    Weights(usize, usize),
    #[error("device: {0}")]
    Candle(Box<candle_core::Error>),
}

impl From<candle_core::Error> for KernelError {
    fn from(e: candle_core::Error) -> Self {
        KernelError::Candle(Box::new(e))
    }
}

fn check(inputs: &[Input<'_>], weights: &[f32], out_dtype: DType) -> Result<usize, KernelError> {
    if inputs.len() != weights.len() || inputs.is_empty() {
        return Err(KernelError::Weights(inputs.len(), weights.len()));
    }
    for d in inputs.iter().map(|i| i.dtype).chain([out_dtype]) {
        if !d.is_float() {
            return Err(KernelError::NotFloat(d));
        }
    }
    let n = inputs[0].bytes.len() / inputs[0].dtype.size_in_bytes();
    for i in inputs {
        let m = i.bytes.len() / i.dtype.size_in_bytes();
        if m != n || i.bytes.len() % i.dtype.size_in_bytes() != 0 {
            return Err(KernelError::Length(n, m));
        }
    }
    Ok(n)
}

/// The weighted sum on `device`, as bytes of `out_dtype`. Returns the bytes and whether every
/// output value is finite (NaN/Inf in an input, or overflow of the output dtype, make it false).
pub fn weighted_sum(
    inputs: &[Input<'_>],
    weights: &[f32],
    out_dtype: DType,
    device: &Device,
) -> Result<(Vec<u8>, bool), KernelError> {
    let n = check(inputs, weights, out_dtype)?;
    if device.is_cpu() {
        let mut out = vec![0u8; n * out_dtype.size_in_bytes()];
        let finite = weighted_sum_cpu(inputs, weights, out_dtype, &mut out)?;
        Ok((out, finite))
    } else {
        weighted_sum_candle(inputs, weights, out_dtype, device)
    }
}

/// The weighted sum with candle tensor ops on any device (the path for GPUs).
pub fn weighted_sum_candle(
    inputs: &[Input<'_>],
    weights: &[f32],
    out_dtype: DType,
    device: &Device,
) -> Result<(Vec<u8>, bool), KernelError> {
    let n = check(inputs, weights, out_dtype)?;
    let mut acc: Option<Tensor> = None;
    for (inp, &w) in inputs.iter().zip(weights) {
        let dt = inp
            .dtype
            .to_candle()
            .ok_or(KernelError::NotFloat(inp.dtype))?;
        let x = Tensor::from_raw_buffer(inp.bytes, dt, &[n], device)?
            .to_dtype(candle_core::DType::F32)?;
        let wx = x.affine(w as f64, 0.0)?;
        acc = Some(match acc {
            None => wx,
            Some(a) => (a + wx)?,
        });
    }
    let acc = acc.expect("at least one input");
    let out_c = out_dtype
        .to_candle()
        .ok_or(KernelError::NotFloat(out_dtype))?;
    let host = acc.to_dtype(out_c)?.to_device(&Device::Cpu)?;
    let bytes: Vec<u8> = match out_dtype {
        DType::F32 => bytemuck::cast_slice(&host.to_vec1::<f32>()?).to_vec(),
        DType::F64 => bytemuck::cast_slice(&host.to_vec1::<f64>()?).to_vec(),
        DType::F16 => bytemuck::cast_slice(&host.to_vec1::<half::f16>()?).to_vec(),
        DType::BF16 => bytemuck::cast_slice(&host.to_vec1::<half::bf16>()?).to_vec(),
        d => return Err(KernelError::NotFloat(d)),
    };
    let finite = all_finite(&bytes, out_dtype);
    Ok((bytes, finite))
}

/// The weighted sum on a GPU (or any non-CPU device), keeping its buffers between calls: our
/// CUDA kernel (`cuda::WeightedSum`) when this build has it and `fused` allows it (bitwise
/// equal to the CPU kernel), else candle's tensor ops ([`weighted_sum_candle`]).
pub struct DeviceSum {
    device: Device,
    #[cfg(feature = "cuda")]
    fused: Option<cuda::WeightedSum>,
}

impl DeviceSum {
    pub fn new(device: &Device, fused: Fused) -> Result<Self, KernelError> {
        #[cfg(feature = "cuda")]
        let fused = match device {
            Device::Cuda(dev) if fused == Fused::On => Some(cuda::WeightedSum::new(dev)?),
            _ => None,
        };
        #[cfg(not(feature = "cuda"))]
        let _ = fused;
        Ok(Self {
            device: device.clone(),
            #[cfg(feature = "cuda")]
            fused,
        })
    }

    /// `out = Σ w_i · x_i` as `out_dtype` bytes; returns whether every value is finite.
    pub fn run(
        &mut self,
        inputs: &[Input<'_>],
        weights: &[f32],
        out_dtype: DType,
        out: &mut [u8],
    ) -> Result<bool, KernelError> {
        let n = check(inputs, weights, out_dtype)?;
        if out.len() != n * out_dtype.size_in_bytes() {
            return Err(KernelError::Length(
                n,
                out.len() / out_dtype.size_in_bytes(),
            ));
        }
        #[cfg(feature = "cuda")]
        if let Some(fused) = &mut self.fused {
            return Ok(fused.run(inputs, weights, out_dtype, out)?);
        }
        let (bytes, finite) = weighted_sum_candle(inputs, weights, out_dtype, &self.device)?;
        out.copy_from_slice(&bytes);
        Ok(finite)
    }
}

/// Whether every value of a float tensor's bytes is finite.
pub fn all_finite(bytes: &[u8], dtype: DType) -> bool {
    match dtype {
        DType::F32 => !bytes.chunks_exact(4).fold(false, |bad, c| {
            bad | (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000 == 0x7f80_0000)
        }),
        DType::F16 => !u16_any_exp_max(bytes, 0x7c00),
        DType::BF16 => !u16_any_exp_max(bytes, 0x7f80),
        DType::F64 => bytes
            .chunks_exact(8)
            .all(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")).is_finite()),
        _ => true,
    }
}

fn u16_any_exp_max(bytes: &[u8], mask: u16) -> bool {
    bytes.chunks_exact(2).fold(false, |bad, c| {
        bad | (u16::from_le_bytes([c[0], c[1]]) & mask == mask)
    })
}

/// The CPU kernel, writing into `out` (exactly `n * out_dtype.size_in_bytes()` bytes).
/// Returns whether every output value is finite.
pub fn weighted_sum_cpu(
    inputs: &[Input<'_>],
    weights: &[f32],
    out_dtype: DType,
    out: &mut [u8],
) -> Result<bool, KernelError> {
    let n = check(inputs, weights, out_dtype)?;
    let osz = out_dtype.size_in_bytes();
    if out.len() != n * osz {
        return Err(KernelError::Length(n, out.len() / osz));
    }
    let nonfinite = AtomicBool::new(false);
    let fast = simd_available();
    let run = |ci: usize, o: &mut [u8], acc: &mut Vec<f32>| {
        let start = ci * CHUNK;
        let len = o.len() / osz;
        acc.resize(len, 0.0);
        #[cfg(target_arch = "x86_64")]
        let bad = if fast {
            // SAFETY: simd_available() checked the CPU has AVX2, FMA and F16C.
            unsafe { x86::chunk(inputs, weights, start, out_dtype, o, &mut acc[..len]) }
        } else {
            chunk::<false>(inputs, weights, start, out_dtype, o, &mut acc[..len])
        };
        #[cfg(not(target_arch = "x86_64"))]
        let bad = {
            let _ = fast;
            chunk::<false>(inputs, weights, start, out_dtype, o, &mut acc[..len])
        };
        if bad {
            nonfinite.store(true, Ordering::Relaxed);
        }
    };
    if n < PARALLEL_MIN {
        let mut acc = Vec::with_capacity(CHUNK);
        for (ci, o) in out.chunks_mut(CHUNK * osz).enumerate() {
            run(ci, o, &mut acc);
        }
    } else {
        out.par_chunks_mut(CHUNK * osz)
            .enumerate()
            .for_each_init(|| Vec::with_capacity(CHUNK), |acc, (ci, o)| run(ci, o, acc));
    }
    Ok(!nonfinite.load(Ordering::Relaxed))
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One chunk: fold every input into `acc`, then cast into `out`. Returns true if any output
/// value is not finite. `SIMD` selects the x86 F16C conversions (only inside `x86::chunk`).
#[inline(always)]
fn chunk<const SIMD: bool>(
    inputs: &[Input<'_>],
    weights: &[f32],
    start: usize,
    out_dtype: DType,
    out: &mut [u8],
    acc: &mut [f32],
) -> bool {
    for (i, (inp, &w)) in inputs.iter().zip(weights).enumerate() {
        fold_input::<SIMD>(inp, w, start, acc, i == 0);
    }
    store::<SIMD>(acc, out_dtype, out)
}

/// Folds elements `start..start + acc.len()` of one input into `acc` (`acc = w·x` for the
/// first input, `acc += w·x` after). `SIMD` as in [`chunk`].
#[inline(always)]
fn fold_input<const SIMD: bool>(
    inp: &Input<'_>,
    w: f32,
    start: usize,
    acc: &mut [f32],
    first: bool,
) {
    let len = acc.len();
    let sz = inp.dtype.size_in_bytes();
    let src = &inp.bytes[start * sz..(start + len) * sz];
    match inp.dtype {
        DType::F32 => {
            let xs = src
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            fold(acc, w, xs, first)
        }
        DType::BF16 => {
            let xs = src
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16));
            fold(acc, w, xs, first)
        }
        DType::F16 => {
            #[cfg(target_arch = "x86_64")]
            if SIMD {
                // SAFETY: SIMD is only true inside the x86 wrappers, compiled with F16C.
                unsafe { x86::fold_f16(acc, w, src, first) };
                return;
            }
            let xs = src
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32());
            fold(acc, w, xs, first)
        }
        DType::F64 => {
            let xs = src
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32);
            fold(acc, w, xs, first)
        }
        _ => unreachable!("checked: inputs are floats"),
    }
}

#[inline(always)]
fn fold(acc: &mut [f32], w: f32, xs: impl Iterator<Item = f32>, first: bool) {
    if first {
        for (a, x) in acc.iter_mut().zip(xs) {
            *a = w * x;
        }
    } else {
        for (a, x) in acc.iter_mut().zip(xs) {
            *a += w * x;
        }
    }
}

/// f32 → bf16 with round-to-nearest-even (what PyTorch does); NaN stays NaN.
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if b & 0x7fff_ffff > 0x7f80_0000 {
        ((b >> 16) as u16) | 0x0040
    } else {
        rounded
    }
}

#[inline(always)]
fn store<const SIMD: bool>(acc: &[f32], out_dtype: DType, out: &mut [u8]) -> bool {
    match out_dtype {
        DType::F32 => {
            for (o, a) in out.chunks_exact_mut(4).zip(acc) {
                o.copy_from_slice(&a.to_le_bytes());
            }
            acc.iter().fold(false, |bad, a| bad | !a.is_finite())
        }
        DType::BF16 => {
            for (o, a) in out.chunks_exact_mut(2).zip(acc) {
                o.copy_from_slice(&f32_to_bf16_bits(*a).to_le_bytes());
            }
            u16_any_exp_max(out, 0x7f80)
        }
        DType::F16 => {
            #[cfg(target_arch = "x86_64")]
            if SIMD {
                // SAFETY: SIMD is only true inside x86::chunk, compiled with F16C.
                unsafe { x86::store_f16(acc, out) };
                return u16_any_exp_max(out, 0x7c00);
            }
            for (o, a) in out.chunks_exact_mut(2).zip(acc) {
                o.copy_from_slice(&half::f16::from_f32(*a).to_bits().to_le_bytes());
            }
            u16_any_exp_max(out, 0x7c00)
        }
        DType::F64 => {
            for (o, a) in out.chunks_exact_mut(8).zip(acc) {
                o.copy_from_slice(&(*a as f64).to_le_bytes());
            }
            acc.iter().fold(false, |bad, a| bad | !a.is_finite())
        }
        _ => unreachable!("checked: output is a float"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values spanning signs, magnitudes, subnormals and rounding ties.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let m = (s % 20001) as f32 / 10000.0 - 1.0;
                let e = [1e-6, 1e-3, 0.1, 1.0, 7.0, 300.0][(s as usize >> 8) % 6];
                if i % 97 == 0 {
                    6e-8 * m // f16 subnormal range
                } else {
                    m * e
                }
            })
            .collect()
    }

    fn encode(v: &[f32], d: DType) -> Vec<u8> {
        match d {
            DType::F32 => bytemuck::cast_slice(v).to_vec(),
            DType::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            DType::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            DType::F64 => v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect(),
            _ => unreachable!(),
        }
    }

    fn decode(b: &[u8], d: DType) -> Vec<f32> {
        match d {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            _ => unreachable!(),
        }
    }

    /// Element by element, in input order: the definition the kernels must reproduce exactly.
    fn reference(ins: &[Vec<f32>], w: &[f32]) -> Vec<f32> {
        (0..ins[0].len())
            .map(|j| {
                let mut a = w[0] * ins[0][j];
                for i in 1..ins.len() {
                    a += w[i] * ins[i][j];
                }
                a
            })
            .collect()
    }

    fn cast_ref(v: &[f32], d: DType) -> Vec<f32> {
        decode(&encode(v, d), d)
    }

    #[test]
    fn cpu_and_candle_paths_equal_the_elementwise_reference_bit_for_bit() {
        let w = [0.2f32, 0.3, 0.5];
        // Sizes around the chunk and SIMD-lane boundaries, and one that goes parallel.
        for n in [1usize, 7, 8, 9, CHUNK + 3, PARALLEL_MIN + 5] {
            for in_d in [DType::F32, DType::F16, DType::BF16, DType::F64] {
                let raw: Vec<Vec<f32>> = (0..3).map(|k| values(n, k + n as u32)).collect();
                let ins: Vec<Vec<f32>> = raw.iter().map(|v| cast_ref(v, in_d)).collect();
                let bytes: Vec<Vec<u8>> = ins.iter().map(|v| encode(v, in_d)).collect();
                let inputs: Vec<Input> = bytes
                    .iter()
                    .map(|b| Input {
                        bytes: b,
                        dtype: in_d,
                    })
                    .collect();
                let expect = reference(&ins, &w);
                for out_d in [DType::F32, DType::F16, DType::BF16] {
                    let (cpu, finite) = weighted_sum(&inputs, &w, out_d, &Device::Cpu).unwrap();
                    assert!(finite);
                    let want = encode(&expect, out_d);
                    assert!(cpu == want, "cpu n={n} {in_d}->{out_d}");
                    if n < 100 {
                        let (cd, finite) =
                            weighted_sum_candle(&inputs, &w, out_d, &Device::Cpu).unwrap();
                        assert!(finite);
                        assert_eq!(
                            decode(&cd, out_d),
                            decode(&want, out_d),
                            "candle n={n} {in_d}->{out_d}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn positional_file_path_writes_the_reference_bytes_in_place() {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        // Across chunk boundaries, sequential (< 2 chunks) and parallel, mixed input dtypes.
        for n in [5usize, DIRECT_CHUNK + 9, 3 * DIRECT_CHUNK + 1] {
            let w = [0.2f32, 0.3, 0.5];
            let dts = [DType::F16, DType::BF16, DType::F32];
            let vals: Vec<Vec<f32>> = (0..3)
                .map(|k| cast_ref(&values(n, 70 + k as u32), dts[k]))
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let mut files = Vec::new();
            for (k, v) in vals.iter().enumerate() {
                let p = dir.path().join(format!("{k}"));
                let mut f = std::fs::File::create(&p).unwrap();
                f.write_all(&vec![7u8; 5 + k]).unwrap(); // data at an odd offset
                f.write_all(&encode(v, dts[k])).unwrap();
                files.push(std::fs::File::open(&p).unwrap());
            }
            let ins: Vec<FileInput> = files
                .iter()
                .enumerate()
                .map(|(k, file)| FileInput {
                    file,
                    offset: 5 + k as u64,
                    dtype: dts[k],
                })
                .collect();
            for out_d in [DType::F32, DType::F16, DType::BF16] {
                let p = dir.path().join("out");
                let out = std::fs::File::create(&p).unwrap();
                out.write_all_at(b"head", 0).unwrap();
                let finite = weighted_sum_files_at(&ins, &w, out_d, n, &out, 4)
                    .unwrap()
                    .unwrap();
                assert!(finite);
                let got = std::fs::read(&p).unwrap();
                assert_eq!(&got[..4], b"head");
                assert!(
                    got[4..] == encode(&reference(&vals, &w), out_d),
                    "n={n} {out_d}"
                );
            }
        }
    }

    #[test]
    fn identical_inputs_are_copied_and_differences_found() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * COMPARE_BLOCK + 17;
        let same: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        let mut late = same.clone();
        late[n - 1] ^= 1;
        let mut files = Vec::new();
        for (k, data) in [&same, &same, &late].into_iter().enumerate() {
            let p = dir.path().join(format!("{k}"));
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(&vec![0u8; k]).unwrap();
            f.write_all(data).unwrap();
            files.push(std::fs::File::open(&p).unwrap());
        }
        let spans: Vec<(&std::fs::File, u64)> = files
            .iter()
            .enumerate()
            .map(|(k, f)| (f, k as u64))
            .collect();
        let p = dir.path().join("out");
        let out = std::fs::File::create(&p).unwrap();
        let v = copy_if_identical_files(&spans[..2], n, Some((&out, 3)), None).unwrap();
        assert_eq!(
            v,
            Verbatim {
                differs: None,
                finite: true
            }
        );
        assert_eq!(std::fs::read(&p).unwrap()[3..], same[..]);
        let v = copy_if_identical_files(&spans, n, None, None).unwrap();
        assert_eq!(v.differs, Some(2));
        // High bytes 0x7c..=0x7f make f16 Inf/NaN, and the pattern holds some.
        assert!(
            !copy_if_identical_files(&spans[..2], n, None, Some(DType::F16))
                .unwrap()
                .finite
        );
        let e = copy_if_identical_files(&spans, n + 1, None, None).unwrap_err();
        assert_eq!(e.0, Some(0));
    }

    #[test]
    fn mixed_input_dtypes_and_portable_path_agree() {
        let n = 1000;
        let a = cast_ref(&values(n, 1), DType::F16);
        let b = cast_ref(&values(n, 2), DType::BF16);
        let ab = [encode(&a, DType::F16), encode(&b, DType::BF16)];
        let inputs = [
            Input {
                bytes: &ab[0],
                dtype: DType::F16,
            },
            Input {
                bytes: &ab[1],
                dtype: DType::BF16,
            },
        ];
        let w = [0.75f32, 0.25];
        let (out, _) = weighted_sum(&inputs, &w, DType::F16, &Device::Cpu).unwrap();
        assert_eq!(out, encode(&reference(&[a, b], &w), DType::F16));
        let mut portable = vec![0u8; n * 2];
        let mut acc = vec![0f32; n];
        chunk::<false>(&inputs, &w, 0, DType::F16, &mut portable, &mut acc);
        assert_eq!(portable, out);
    }

    #[test]
    fn non_finite_values_and_overflow_are_flagged() {
        let mut v = values(100, 3);
        let ok = encode(&v, DType::F32);
        v[50] = f32::NAN;
        let nan = encode(&v, DType::F32);
        let w = [0.5f32, 0.5];
        let inp = |a: &[u8], b: &[u8]| -> [Vec<u8>; 2] { [a.to_vec(), b.to_vec()] };
        let pair = inp(&ok, &nan);
        let inputs = [
            Input {
                bytes: &pair[0],
                dtype: DType::F32,
            },
            Input {
                bytes: &pair[1],
                dtype: DType::F32,
            },
        ];
        for d in [DType::F32, DType::F16, DType::BF16] {
            assert!(
                !weighted_sum(&inputs, &w, d, &Device::Cpu).unwrap().1,
                "{d}"
            );
        }
        // 60000 is a finite f16 but 2·60000 overflows it.
        let big = encode(&[60000.0; 16], DType::F32);
        let inputs = [
            Input {
                bytes: &big,
                dtype: DType::F32,
            },
            Input {
                bytes: &big,
                dtype: DType::F32,
            },
        ];
        assert!(
            !weighted_sum(&inputs, &[1.0, 1.0], DType::F16, &Device::Cpu)
                .unwrap()
                .1
        );
        assert!(
            weighted_sum(&inputs, &[1.0, 1.0], DType::F32, &Device::Cpu)
                .unwrap()
                .1
        );
        assert!(all_finite(&ok, DType::F32) && !all_finite(&nan, DType::F32));
    }

    #[test]
    fn bf16_rounding_matches_half() {
        for bits in (0u32..=u32::MAX)
            .step_by(65521)
            .chain([0x3f80_8000, 0x3f81_8000, 0x7f7f_ffff])
        {
            let x = f32::from_bits(bits);
            if x.is_nan() {
                assert!(half::bf16::from_bits(f32_to_bf16_bits(x)).is_nan());
            } else {
                assert_eq!(
                    f32_to_bf16_bits(x),
                    half::bf16::from_f32(x).to_bits(),
                    "{bits:#x}"
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let a = [0u8; 8];
        let b = [0u8; 12];
        let i = |bytes: &'static [u8], dtype| Input { bytes, dtype };
        let _ = i;
        let inputs = [
            Input {
                bytes: &a,
                dtype: DType::F32,
            },
            Input {
                bytes: &b,
                dtype: DType::F32,
            },
        ];
        assert!(matches!(
            weighted_sum(&inputs, &[0.5, 0.5], DType::F32, &Device::Cpu),
            Err(KernelError::Length(2, 3))
        ));
        assert!(matches!(
            weighted_sum(&inputs[..1], &[0.5, 0.5], DType::F32, &Device::Cpu),
            Err(KernelError::Weights(1, 2))
        ));
        let ints = [Input {
            bytes: &a,
            dtype: DType::I64,
        }];
        assert!(matches!(
            weighted_sum(&ints, &[1.0], DType::F32, &Device::Cpu),
            Err(KernelError::NotFloat(DType::I64))
        ));
    }
}
