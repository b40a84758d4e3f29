//! Log-softmax + NLL over the vocabulary in one pass per row, reading the logits in their own
//! dtype: `nll[r] = logsumexp(logits[r]) - logits[r][targets[r]]`, `[N, V]` + `[N]` u32 → `[N]`
//! f32. Unfused, this is five passes over `N x V` and an f32 copy of the logits.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The fused op (`logits.apply_op2_no_bwd(targets, &TokenNll)`), for contiguous `[N, V]` logits
/// (f32, f16 or bf16) and `[N]` u32 targets below `V`.
pub struct TokenNll;

/// The fused NLL where it applies: on the CPU, and on a GPU when this binary has the kernels
/// (`None`: use the unfused ops). A target outside the vocabulary is an error on the CPU and
/// NaN on a GPU (checking would cost a device sync per call; `eval::plan` checks every id first).
pub fn token_nll(logits: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
    let on_gpu = logits.device().is_cuda();
    if on_gpu && !(super::built_with_cuda() && super::enabled()) {
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
            let sum = crate::model::gemm::sum_exp(row, max);
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
        super::cuda::token_nll(s1, l1, s2, l2)
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
