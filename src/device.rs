//! Choosing the candle device: CPU by default, CUDA when the binary has it and a GPU is present.

use candle_core::Device;

/// What the user asked for with `--device`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DevicePref {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device cuda: this lawa binary was built without the `cuda` feature (rebuild with scripts/build-cuda.sh)")]
    NotBuilt,
    #[error("--device cuda: no usable CUDA GPU: {0}")]
    Unavailable(String),
}

/// The device to run on. `Auto` takes GPU 0 when this build has CUDA and a GPU answers, else the CPU.
pub fn select(pref: DevicePref) -> Result<Device, DeviceError> {
    match pref {
        DevicePref::Cpu => Ok(Device::Cpu),
        DevicePref::Cuda => cuda(),
        DevicePref::Auto => Ok(cuda().unwrap_or(Device::Cpu)),
    }
}

fn cuda() -> Result<Device, DeviceError> {
    if !candle_core::utils::cuda_is_available() {
        return Err(DeviceError::NotBuilt);
    }
    Device::new_cuda(0).map_err(|e| DeviceError::Unavailable(e.to_string()))
}

/// Short human name of a device, for "running on ..." lines.
pub fn describe(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda:0",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available_and_auto_falls_back() {
        assert!(select(DevicePref::Cpu).unwrap().is_cpu());
        let auto = select(DevicePref::Auto).unwrap();
        if !candle_core::utils::cuda_is_available() {
            assert!(auto.is_cpu());
            assert!(matches!(
                select(DevicePref::Cuda),
                Err(DeviceError::NotBuilt)
            ));
        }
    }
}
