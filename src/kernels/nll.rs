//! Log-softmax + NLL over the vocabulary in one pass per row, reading the logits in their own
//! dtype: `nll[r] = logsumexp(logits[r]) - logits[r][targets[r]]`, `[N, V]` + `[N]` u32 → `[N]`
//! f32. Unfused, this is five passes over `N x V` and an f32 copy of the logits. The CPU half
//! is `cpu_fwd` (rows in parallel, the vectorised `Σ exp` of [`super::exp`]); the GPU half
//! launches `lawa_token_nll_*` of `kernels.cu` (`gpu` below). The tests are `eval::nll`'s,
//! against candle's ops (`token_nll_ops`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The fused op (`logits.apply_op2_no_bwd(targets, &TokenNll)`), for contiguous `[N, V]` logits
/// (f32, f16 or bf16) and `[N]` u32 targets below `V`.
pub struct TokenNll;

/// The fused NLL where it applies: on the CPU, and on a GPU when this binary has the kernels
/// (`None`: use the unfused ops); whether it may run at all is the model's choice
/// ([`crate::kernels::NllKernel`]). A target outside the vocabulary is an error on the CPU and
/// NaN on a GPU (checking would cost a device sync per call; `eval::plan` checks every id first).
pub fn token_nll(logits: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
    if logits.device().is_cuda() && !super::built_with_cuda() {
        return Ok(None);
    }
    if !matches!(logits.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        return Ok(None);
    }
    let (n, _) = logits.dims2()?;
    let targets = targets.to_dtype(DType::U32)?.contiguous()?;
    if targets.dims1()? != n {
        candle_core::bail!(
            "token_nll: {n} rows of logits but {} targets",
            targets.dims1()?
        );
    }
    logits
        .contiguous()?
        .apply_op2_no_bwd(&targets, &TokenNll)
        .map(Some)
}

impl CustomOp2 for TokenNll {
    fn name(&self) -> &'static str {
        "lawa-token-nll"
    }

    /// Rows in parallel; the max, then `Σ exp(x - max)` accumulated in f64.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let (Some((a, b)), Some((ta, tb))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("token_nll: inputs must be contiguous");
        };
        let targets = &s2.as_slice::<u32>()?[ta..tb];
        if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("token_nll: target {t} is not below the vocabulary size {v}");
        }
        let row_nll = |row: &[f32], t: u32| -> f32 {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum = super::exp::sum_exp(row, max);
            (max as f64 + sum.ln() - row[t as usize] as f64) as f32
        };
        let out: Vec<f32> = match s1 {
            CpuStorage::F32(data) => data[a..b]
                .par_chunks(v.max(1))
                .zip(targets.par_iter())
                .map(|(row, &t)| row_nll(row, t))
                .collect(),
            CpuStorage::F16(data) => {
                rows_converted(&data[a..b], v, targets, |x| x.to_f32(), row_nll)
            }
            CpuStorage::BF16(data) => {
                rows_converted(&data[a..b], v, targets, |x| x.to_f32(), row_nll)
            }
            s => candle_core::bail!("token_nll: logits of dtype {:?}", s.dtype()),
        };
        debug_assert_eq!(out.len(), n);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::token_nll(s1, l1, s2, l2)
    }
}

/// Half-precision rows, each converted to f32 in a per-thread buffer before `f`.
fn rows_converted<T: Sync>(
    data: &[T],
    v: usize,
    targets: &[u32],
    to_f32: impl Fn(&T) -> f32 + Sync,
    f: impl Fn(&[f32], u32) -> f32 + Sync,
) -> Vec<f32> {
    data.par_chunks(v.max(1))
        .zip(targets.par_iter())
        .map_init(Vec::new, |buf: &mut Vec<f32>, (row, &t)| {
            buf.clear();
            buf.extend(row.iter().map(&to_f32));
            f(buf, t)
        })
        .collect()
}

/// The GPU half: launching `lawa_token_nll_*` of `kernels.cu`.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, Layout, Result, Shape};
    use half::{bf16, f16};

    use crate::kernels::cuda::function;

    /// The `token_nll` kernel: one block of 256 threads per row.
    pub(super) fn token_nll(
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let dev = &s1.device;
        let (Some((o1, _)), Some((o2, _))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("token_nll: inputs must be contiguous");
        };
        let out = unsafe { dev.alloc::<f32>(n) }?;
        if n == 0 {
            return Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                Shape::from(n),
            ));
        }
        let dtype = s1.dtype();
        let name = match dtype {
            candle_core::DType::F32 => "lawa_token_nll_f32",
            candle_core::DType::F16 => "lawa_token_nll_f16",
            candle_core::DType::BF16 => "lawa_token_nll_bf16",
            d => candle_core::bail!("token_nll: logits of dtype {d:?}"),
        };
        let func = function(dev, name)?;
        let stream = dev.cuda_stream();
        let targets = s2.as_cuda_slice::<u32>()?.slice(o2..);
        let v32 = v as u32;
        // The logits' view, of the dtype's element type; declared before the builder borrows it.
        let (as_f32, as_f16, as_bf16);
        let mut b = stream.launch_builder(&func);
        match dtype {
            candle_core::DType::F32 => {
                as_f32 = s1.as_cuda_slice::<f32>()?.slice(o1..);
                b.arg(&as_f32)
            }
            candle_core::DType::F16 => {
                as_f16 = s1.as_cuda_slice::<f16>()?.slice(o1..);
                b.arg(&as_f16)
            }
            _ => {
                as_bf16 = s1.as_cuda_slice::<bf16>()?.slice(o1..);
                b.arg(&as_bf16)
            }
        };
        b.arg(&targets).arg(&out).arg(&v32);
        let cfg = LaunchConfig {
            grid_dim: (n as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types match the kernel; `out` holds one value per row.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from(n),
        ))
    }
}
