//! lawa's compute kernels, one module per op, each holding its CPU and CUDA halves and the test
//! against its reference together (as candle's `candle-nn/src/rotary_emb.rs` does):
//!
//! - [`weighted_sum`]: `Σ w_i · x_i` over raw tensor bytes (averaging): the CPU kernel (in memory,
//!   and file to file with `pread`/`pwrite`), compare-and-copy, and [`weighted_sum::DeviceSum`]
//!   for GPUs (our CUDA kernel, pinned double-buffered uploads, or candle's ops);
//! - [`matmul`]: the f32 CPU matrix product (the `gemm` crate) and the eval Linear with its bias
//!   and GELU ([`gelu`]) fused;
//! - [`heads`]: a projection split into heads with RoPE applied, and merged back (f32 CPU);
//! - [`attention`]: causal attention, three ways, named for what each is for: the f32 CPU eval
//!   fast path, the flash-style CUDA kernel with its CPU mirror, the differentiable reference;
//! - [`nll`]: log-softmax + NLL in one pass over the vocabulary (CPU, CUDA);
//! - [`exp`]: the vectorised `exp` (`Σ exp` of the NLL; shared by the GELU).
//!
//! The CUDA source of every op is one file, `kernels.cu` (one cubin, loaded once per device by
//! `cuda`), compiled by `build.rs` with the `cuda` feature. The tests compare each CPU
//! implementation with the unfused ops it replaces; `lawa doctor` compares the CUDA kernels
//! with the unfused ops on a GPU.
//!
//! A model chooses its [`Kernels`] once, when it is built, from its device, its dtype and
//! [`Fused`] (whether our GPU kernels may run: the CLI reads `LAWA_FUSED` into `Config`).

pub mod attention;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod exp;
pub mod gelu;
pub mod heads;
pub mod matmul;
pub mod nll;
pub mod weighted_sum;

use candle_core::{DType, Device};

/// Whether lawa's own GPU kernels may run where they apply (`Off`: candle's ops run instead, to
/// compare or to work around a problem). The CPU kernels are not affected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fused {
    #[default]
    On,
    Off,
}

impl Fused {
    /// The `LAWA_FUSED` convention: `0` turns the GPU kernels off; unset or anything else, on.
    pub fn from_env_value(value: Option<&str>) -> Fused {
        match value {
            Some(v) if v.trim() == "0" => Fused::Off,
            _ => Fused::On,
        }
    }
}

/// Whether this binary carries the CUDA kernels.
pub const fn built_with_cuda() -> bool {
    cfg!(feature = "cuda")
}

/// The Linear layers of an eval forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearKernel {
    /// [`matmul::linear_t`]: f32 on the CPU, the bias (and the MLP's erf GELU) fused.
    CpuF32,
    /// candle's `Linear`.
    Candle,
}

/// The causal attention of an eval forward pass ([`attention::causal_attention`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// [`attention::eval_cpu`]: f32 on the CPU, no mask tensor.
    CpuF32,
    /// [`attention::flash`] on a GPU (f16/bf16) where the head size has a kernel, else candle.
    Flash,
    /// candle's matmuls and softmax with the causal mask.
    Candle,
}

/// The per-token NLL of evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NllKernel {
    /// [`nll::TokenNll`]: one pass per row (CPU, or our CUDA kernel).
    Fused,
    /// candle's ops (`eval::nll::token_nll_ops`).
    Candle,
}

impl NllKernel {
    /// The NLL kernel for logits on `device`.
    pub fn choose(device: &Device, fused: Fused) -> NllKernel {
        if device.is_cpu() || (device.is_cuda() && built_with_cuda() && fused == Fused::On) {
            NllKernel::Fused
        } else {
            NllKernel::Candle
        }
    }
}

/// The kernels a model's eval path runs, chosen once when the model is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    pub linear: LinearKernel,
    pub attention: AttentionKernel,
    pub nll: NllKernel,
}

impl Kernels {
    /// The kernels for a model of `dtype` on `device`.
    pub fn choose(device: &Device, dtype: DType, fused: Fused) -> Kernels {
        let cpu_f32 = device.is_cpu() && dtype == DType::F32;
        let cuda = device.is_cuda() && built_with_cuda() && fused == Fused::On;
        Kernels {
            linear: if cpu_f32 {
                LinearKernel::CpuF32
            } else {
                LinearKernel::Candle
            },
            attention: if cpu_f32 {
                AttentionKernel::CpuF32
            } else if cuda && matches!(dtype, DType::F16 | DType::BF16) {
                AttentionKernel::Flash
            } else {
                AttentionKernel::Candle
            },
            nll: NllKernel::choose(device, fused),
        }
    }
}

/// The largest |a − b| of two tensors of one shape, compared in f32; NaN when any difference
/// is NaN (`max` alone would hide it). The doctor and the kernels' tests compare with it.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> candle_core::Result<f64> {
    let d = (a.to_dtype(candle_core::DType::F32)? - b.to_dtype(candle_core::DType::F32)?)?.abs()?;
    let m = d.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
    // A NaN anywhere must not hide behind max().
    let nan = d
        .ne(&d)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(if nan > 0.0 { f64::NAN } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_follow_device_dtype_and_the_fused_switch() {
        let cpu = Kernels::choose(&Device::Cpu, DType::F32, Fused::On);
        assert_eq!(cpu.linear, LinearKernel::CpuF32);
        assert_eq!(cpu.attention, AttentionKernel::CpuF32);
        assert_eq!(cpu.nll, NllKernel::Fused);
        // Half precision on the CPU: candle's ops; the one-pass NLL still applies.
        for dtype in [DType::F16, DType::BF16] {
            let half = Kernels::choose(&Device::Cpu, dtype, Fused::On);
            assert_eq!(half.linear, LinearKernel::Candle);
            assert_eq!(half.attention, AttentionKernel::Candle);
            assert_eq!(half.nll, NllKernel::Fused);
        }
        // The switch is for the GPU kernels only.
        assert_eq!(Kernels::choose(&Device::Cpu, DType::F32, Fused::Off), cpu);
    }

    #[test]
    fn lawa_fused_zero_turns_the_gpu_kernels_off() {
        assert_eq!(Fused::from_env_value(None), Fused::On);
        assert_eq!(Fused::from_env_value(Some("1")), Fused::On);
        assert_eq!(Fused::from_env_value(Some(" 0 ")), Fused::Off);
    }
}
