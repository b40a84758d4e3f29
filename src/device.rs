//! Choosing the candle device: CPU by default, CUDA when the binary has it and a GPU is present.

use candle_core::Device;

use crate::progress::{Reporter, Unit};

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
    // candle may append a backtrace to the message: keep the one line that says what failed.
    Device::new_cuda(0).map_err(|e| {
        let msg = e.to_string();
        DeviceError::Unavailable(msg.lines().next().unwrap_or_default().trim().to_string())
    })
}

/// What the progress shows while [`prepare`] runs: on a machine that has not run this binary
/// before, the driver compiles candle's GPU kernels (PTX) on first use, about half a minute.
pub const PREPARING: &str = "preparing GPU kernels (first use on this machine)";

/// Loads the GPU kernels a job will use before the job starts, reporting [`PREPARING`], so a
/// first run shows why it waits instead of looking hung. Once per device and process; nothing
/// on the CPU. The driver caches what it compiles, so later runs pass here quickly.
pub fn prepare(device: &Device, reporter: &Reporter) -> candle_core::Result<()> {
    if device.is_cpu() {
        return Ok(());
    }
    static DONE: std::sync::Mutex<Vec<candle_core::DeviceLocation>> =
        std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.contains(&device.location()) {
        return Ok(());
    }
    reporter.report_detail("GPU", 0, None, Unit::Steps, Some(PREPARING.to_string()));
    warm_up(device)?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        crate::kernels::cuda::load(dev)?;
    }
    done.push(device.location());
    reporter.report_detail(
        "GPU",
        1,
        Some(1),
        Unit::Steps,
        Some("GPU kernels ready".into()),
    );
    Ok(())
}

/// Runs once each kind of op that averaging and evaluation use, in each float dtype, so that
/// every candle kernel module they need is loaded (compiled by the driver, the first time).
pub fn warm_up(device: &Device) -> candle_core::Result<()> {
    use candle_core::{DType, Tensor, D};
    let ids = Tensor::new(&[0u32, 3, 1], device)?;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let x = Tensor::arange(0f32, 32.0, device)?
            .reshape((4, 8))?
            .affine(0.01, 0.0)?
            .to_dtype(dtype)?;
        let y = ((&x + &x)? * &x)?.broadcast_sub(&x.max_keepdim(D::Minus1)?)?;
        let y = (y.exp()?.sqrt()?.gelu_erf()? + (x.sqr()? + 1.0)?.log()?)?;
        let w = Tensor::ones(8, dtype, device)?;
        let b = Tensor::zeros(8, dtype, device)?;
        let n = candle_nn::ops::layer_norm(&y.contiguous()?, &w, &b, 1e-5)?;
        let p = candle_nn::ops::softmax_last_dim(&n.matmul(&n.t()?)?)?;
        let e = x.index_select(&ids, 0)?;
        let g = e.gather(&ids.unsqueeze(1)?.contiguous()?, 1)?;
        let c = Tensor::cat(&[&p.narrow(1, 0, 2)?, &p.narrow(1, 2, 2)?], 1)?;
        let total = (c.to_dtype(DType::F32)?.sum_all()? + g.to_dtype(DType::F32)?.sum_all()?)?;
        p.argmax(D::Minus1)?.to_dtype(DType::F32)?.sum_all()?;
        total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    Ok(())
}

/// Short human name of a device, for "running on ..." lines.
pub fn describe(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda:0",
        Device::Metal(_) => "metal",
    }
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), where the OS tells it.
pub fn total_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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

    #[test]
    fn warm_up_ops_run_and_prepare_is_silent_on_the_cpu() {
        warm_up(&Device::Cpu).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let reporter = Reporter::new(Default::default(), move |p| s.lock().unwrap().push(p));
        prepare(&Device::Cpu, &reporter).unwrap();
        assert!(seen.lock().unwrap().is_empty());
    }
}
