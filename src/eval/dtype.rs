//! Which dtype an evaluation runs in, and the name a result record gives it.

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// The compute dtype when none is asked for: f32 on CPU (candle's half-precision CPU kernels
/// are slow), the checkpoint's own dtype on a GPU.
pub fn default_dtype(device: &Device, stored: Option<DType>) -> DType {
    match (device, stored) {
        (Device::Cpu, _) => DType::F32,
        (_, Some(d @ (DType::F16 | DType::BF16 | DType::F32))) => d,
        _ => DType::F32,
    }
}

/// The dtype an evaluation ran in, as a record stores it (`f32`, `f16`, `bf16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalDType {
    F32,
    F16,
    Bf16,
    /// What lawa 0.1 wrote for a GPU evaluation (in the checkpoint's own dtype, which it did
    /// not name): read and listed, but no session resolves to it, so it is never reused or
    /// drawn beside results of a known dtype.
    #[serde(rename = "checkpoint")]
    Unrecorded,
}

impl EvalDType {
    /// The record's name of the dtype a model ran in: f32, f16 or bf16 (loading converts the
    /// weights to one of them; `--dtype` offers no other); any other reads as unrecorded.
    pub fn of(dtype: candle_core::DType) -> Self {
        use candle_core::DType as D;
        match dtype {
            D::F32 => EvalDType::F32,
            D::F16 => EvalDType::F16,
            D::BF16 => EvalDType::Bf16,
            _ => EvalDType::Unrecorded,
        }
    }
}

impl std::fmt::Display for EvalDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvalDType::F32 => "f32",
            EvalDType::F16 => "f16",
            EvalDType::Bf16 => "bf16",
            EvalDType::Unrecorded => "checkpoint",
        })
    }
}

impl EvalDType {
    /// The dtype an evaluation on `device` runs in when none is asked for (see
    /// [`default_dtype`]), as records name it: what stored results must say to be reused.
    pub fn default_for(device: &Device, stored: Option<DType>) -> Self {
        EvalDType::of(default_dtype(device, stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_evaluates_in_f32_a_gpu_in_the_checkpoints_dtype() {
        assert_eq!(
            EvalDType::default_for(&Device::Cpu, Some(DType::F16)),
            EvalDType::F32
        );
        assert_eq!(default_dtype(&Device::Cpu, Some(DType::BF16)), DType::F32);
        // Names as records write them, and back.
        for (d, name) in [
            (EvalDType::F32, "f32"),
            (EvalDType::F16, "f16"),
            (EvalDType::Bf16, "bf16"),
            (EvalDType::Unrecorded, "checkpoint"),
        ] {
            assert_eq!(d.to_string(), name);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<EvalDType>(&json).unwrap(), d);
        }
        assert_eq!(EvalDType::of(DType::BF16), EvalDType::Bf16);
        assert_eq!(EvalDType::of(DType::U32), EvalDType::Unrecorded);
    }
}
