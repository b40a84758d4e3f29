//! Causal attention for inference, flash-attention style: `softmax(q kᵀ · scale + causal) v`
//! without the `T x T` score matrix in memory. Keys are walked in tiles with an online softmax
//! (running max and sum per query row, the output rescaled when the max grows); the
//! probabilities are rounded to the input dtype before they multiply `v`, as flash-attention does.
//! The GPU half is `lawa_flash_attn_*` of `kernels.cu` (`gpu` below); `cpu_fwd` runs the same
//! algorithm on the CPU, tile for tile, for the tests and `lawa doctor`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Head sizes the GPU kernel is built for: those of the Pythia suite.
pub const HEAD_SIZES: [usize; 4] = [64, 80, 128, 256];

/// Query rows per GPU block (the tiles the kernel walks keys for).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) const BLOCK_ROWS: usize = 64;

/// Keys per tile for a head size (`kernels.cu`: 32 for 256-wide heads, to fit shared memory).
pub(crate) fn key_tile(head_size: usize) -> usize {
    if head_size > 128 {
        32
    } else {
        64
    }
}

/// The fused op on `q, k, v: [B, H, T, hs]` (contiguous, same dtype) → `[B, H, T, hs]`.
#[derive(Clone, Copy, Debug)]
pub struct CausalAttention {
    pub scale: f32,
}

/// Flash attention where the GPU kernel applies (CUDA build and device, f16/bf16, a head size
/// of [`HEAD_SIZES`]); `None`: use the unfused ops. Whether it may run at all is the model's
/// choice ([`crate::kernels::AttentionKernel::Flash`]).
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Option<Tensor>> {
    let fits = q.device().is_cuda()
        && crate::kernels::built_with_cuda()
        && matches!(q.dtype(), DType::F16 | DType::BF16)
        && HEAD_SIZES.contains(&q.dim(candle_core::D::Minus1)?);
    if !fits {
        return Ok(None);
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    // The kernel copies rows with 16-byte loads.
    if [&q, &k, &v]
        .iter()
        .any(|t| t.layout().start_offset() % 8 != 0)
    {
        return Ok(None);
    }
    q.apply_op3_no_bwd(
        &k,
        &v,
        &CausalAttention {
            scale: scale as f32,
        },
    )
    .map(Some)
}

impl CausalAttention {
    fn check(l1: &Layout, l2: &Layout, l3: &Layout) -> Result<(usize, usize, usize)> {
        let (b, h, t, hs) = l1.shape().dims4()?;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            candle_core::bail!(
                "causal attention: q {:?}, k {:?}, v {:?} differ",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        if [l1, l2, l3].iter().any(|l| !l.is_contiguous()) {
            candle_core::bail!("causal attention: q, k, v must be contiguous");
        }
        Ok((b * h, t, hs))
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "lawa-causal-attention"
    }

    /// The kernel's algorithm on the CPU, row by row: key tiles of [`key_tile`], online softmax
    /// in f32, probabilities rounded to the input dtype.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (heads, t, hs) = Self::check(l1, l2, l3)?;
        let dtype = s1.dtype();
        let f32s = |s: &CpuStorage, l: &Layout| -> Result<Vec<f32>> {
            let (a, b) = l.contiguous_offsets().expect("checked contiguous");
            Ok(match s {
                CpuStorage::F32(d) => d[a..b].to_vec(),
                CpuStorage::F16(d) => d[a..b].iter().map(|x| x.to_f32()).collect(),
                CpuStorage::BF16(d) => d[a..b].iter().map(|x| x.to_f32()).collect(),
                s => candle_core::bail!("causal attention: dtype {:?}", s.dtype()),
            })
        };
        let (q, k, v) = (f32s(s1, l1)?, f32s(s2, l2)?, f32s(s3, l3)?);
        let round: fn(f32) -> f32 = match dtype {
            DType::F16 => |x| f16::from_f32(x).to_f32(),
            DType::BF16 => |x| bf16::from_f32(x).to_f32(),
            _ => |x| x,
        };
        let bc = key_tile(hs);
        let mut out = vec![0f32; heads * t * hs];
        out.par_chunks_mut(t * hs.max(1))
            .enumerate()
            .for_each(|(head, o)| {
                let base = head * t * hs;
                let (q, k, v) = (&q[base..], &k[base..], &v[base..]);
                let mut s = vec![0f32; bc];
                let mut acc = vec![0f32; hs];
                for row in 0..t {
                    let qr = &q[row * hs..(row + 1) * hs];
                    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
                    acc.iter_mut().for_each(|a| *a = 0.0);
                    for k0 in (0..=row).step_by(bc) {
                        let keys = bc.min(row + 1 - k0);
                        let mut mx = f32::NEG_INFINITY;
                        for (c, sc) in s.iter_mut().enumerate().take(keys) {
                            let kr = &k[(k0 + c) * hs..(k0 + c + 1) * hs];
                            *sc = qr.iter().zip(kr).map(|(a, b)| a * b).sum::<f32>() * self.scale;
                            mx = mx.max(*sc);
                        }
                        let m_new = m.max(mx);
                        let alpha = if m == f32::NEG_INFINITY {
                            0.0
                        } else {
                            (m - m_new).exp()
                        };
                        let mut sum = 0f32;
                        acc.iter_mut().for_each(|a| *a *= alpha);
                        for (c, &sc) in s.iter().enumerate().take(keys) {
                            let p = round((sc - m_new).exp());
                            sum += p;
                            let vr = &v[(k0 + c) * hs..(k0 + c + 1) * hs];
                            acc.iter_mut().zip(vr).for_each(|(a, x)| *a += p * x);
                        }
                        l = l * alpha + sum;
                        m = m_new;
                    }
                    for (d, a) in o[row * hs..(row + 1) * hs].iter_mut().zip(&acc) {
                        *d = a / l;
                    }
                }
            });
        let shape = l1.shape().clone();
        let storage = match dtype {
            DType::F16 => CpuStorage::F16(out.into_iter().map(f16::from_f32).collect()),
            DType::BF16 => CpuStorage::BF16(out.into_iter().map(bf16::from_f32).collect()),
            _ => CpuStorage::F32(out),
        };
        Ok((storage, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (heads, t, hs) = Self::check(l1, l2, l3)?;
        gpu::flash_attention([(s1, l1), (s2, l2), (s3, l3)], heads, t, hs, self.scale)
    }
}

/// The GPU half: launching `lawa_flash_attn_{f16,bf16}_{hs}` of `kernels.cu`.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{
        sys, CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
    use candle_core::{CudaStorage, Layout, Result, Shape};
    use half::{bf16, f16};

    use super::{key_tile, BLOCK_ROWS};
    use crate::kernels::cuda::function;

    /// Bytes of shared memory the attention kernel for `hs` uses (`kernels.cu`'s `fa_smem`).
    fn attention_smem(hs: usize, tsize: usize) -> usize {
        let (br, bc) = (BLOCK_ROWS, key_tile(hs));
        br * hs * tsize
            + 2 * bc * hs * tsize
            + br * bc * 4
            + br * bc * tsize
            + br * hs * 4
            + 3 * br * 4
    }

    /// The flash-attention kernel on `[heads, t, hs]` q, k, v (f16 or bf16, contiguous).
    pub(super) fn flash_attention(
        qkv: [(&CudaStorage, &Layout); 3],
        heads: usize,
        t: usize,
        hs: usize,
        scale: f32,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = &qkv[0].0.device;
        let shape = qkv[0].1.shape().clone();
        let n = heads * t * hs;
        let smem = attention_smem(hs, 2);
        let cfg = LaunchConfig {
            grid_dim: (t.div_ceil(BLOCK_ROWS) as u32, heads as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        let name = |ty: &str| format!("lawa_flash_attn_{ty}_{hs}");
        let args = (t, scale, smem, cfg);
        let storage = match qkv[0].0.dtype() {
            candle_core::DType::F16 => {
                let out = launch_attention::<f16>(dev, &name("f16"), qkv, n, args)?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }
            candle_core::DType::BF16 => {
                let out = launch_attention::<bf16>(dev, &name("bf16"), qkv, n, args)?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }
            d => candle_core::bail!("causal attention: no kernel for dtype {d:?}"),
        };
        Ok((storage, shape))
    }

    /// Launches `name` on q, k, v of element type `T` into a new `n`-element output.
    /// `launch` is (sequence length, scale, shared memory bytes, launch configuration).
    fn launch_attention<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        name: &str,
        qkv: [(&CudaStorage, &Layout); 3],
        n: usize,
        (t, scale, smem, cfg): (usize, f32, usize, LaunchConfig),
    ) -> Result<CudaSlice<T>> {
        let func = function(dev, name)?;
        // Above 48 KiB of shared memory a kernel must opt in.
        func.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .w()?;
        fn view<'a, T: CudaDType>(
            (s, l): (&'a CudaStorage, &Layout),
        ) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
            Ok(s.as_cuda_slice::<T>()?.slice(l.start_offset()..))
        }
        let (q, k, v) = (view::<T>(qkv[0])?, view::<T>(qkv[1])?, view::<T>(qkv[2])?);
        let out = unsafe { dev.alloc::<T>(n) }?;
        let stream = dev.cuda_stream();
        let t32 = t as i32;
        let mut b = stream.launch_builder(&func);
        b.arg(&q).arg(&k).arg(&v).arg(&out).arg(&t32).arg(&scale);
        // SAFETY: argument types match the kernel; all four hold `n` elements.
        unsafe { b.launch(cfg) }.w()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::reference::{causal_attention as attention_train, causal_mask};
    use candle_core::Device;

    /// The fused algorithm against the unfused ops (f32 softmax, as transformers' eager
    /// attention), for every head size the GPU kernel has, at lengths that end mid-tile.
    #[test]
    fn fused_algorithm_matches_the_unfused_ops() {
        let dev = Device::Cpu;
        for &hs in &HEAD_SIZES {
            for (dtype, tol) in [(DType::F32, 2e-5), (DType::F16, 4e-3), (DType::BF16, 3e-2)] {
                let t = if hs == 256 { 70 } else { 100 };
                let mk = || {
                    Tensor::randn(0f32, 1.0, (2, 3, t, hs), &dev)
                        .and_then(|x| x.to_dtype(dtype))
                        .unwrap()
                };
                let (q, k, v) = (mk(), mk(), mk());
                let scale = 1.0 / (hs as f64).sqrt();
                let fused = q
                    .apply_op3_no_bwd(
                        &k,
                        &v,
                        &CausalAttention {
                            scale: scale as f32,
                        },
                    )
                    .unwrap();
                let f32 = |x: &Tensor| x.to_dtype(DType::F32).unwrap();
                let naive = attention_train(
                    &f32(&q),
                    &f32(&k),
                    &f32(&v),
                    &causal_mask(t, &dev).unwrap(),
                    scale,
                )
                .unwrap();
                let diff = crate::kernels::max_abs_diff(&f32(&fused), &naive).unwrap() as f32;
                assert!(
                    diff < tol,
                    "hs {hs} {dtype:?}: max |fused - naive| = {diff}"
                );
            }
        }
    }

    #[test]
    fn first_row_attends_only_to_itself_and_shapes_are_checked() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 5, 64), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 1, 5, 64), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 1, 5, 64), &dev).unwrap();
        let op = CausalAttention { scale: 0.125 };
        let y = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
        let first: Vec<f32> = y
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let v0: Vec<f32> = v
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(first, v0);
        let short = Tensor::zeros((1, 1, 4, 64), DType::F32, &dev).unwrap();
        assert!(q.apply_op3_no_bwd(&short, &v, &op).is_err());
        // On the CPU the model keeps its own kernels: no fused attention is offered.
        assert!(causal_attention(&q, &k, &v, 0.125).unwrap().is_none());
    }
}
