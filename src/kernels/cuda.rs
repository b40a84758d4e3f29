//! Loading our CUDA kernels (`kernels.cu`, one module for every op) on a candle CUDA device.
//! Each op's launch code lives with the op (`weighted_sum::cuda`, `nll`, `attention::flash`).
//!
//! build.rs compiles `kernels.cu` into a cubin for the GPU this build targets
//! (`CUDA_COMPUTE_CAP`, 90 = H100/H200) and PTX for compute 8.0: the cubin loads with no driver
//! JIT; another GPU (sm_80 or newer) JIT-compiles the PTX once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaModule};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::cuda_backend::{CudaDevice, DeviceId, WrapErr};
use candle_core::Result;

static CUBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lawa_fused.cubin"));
static PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/lawa_fused.ptx"));

/// Our module on `dev`, loaded once per device.
fn module(dev: &CudaDevice) -> Result<Arc<CudaModule>> {
    static MODULES: OnceLock<Mutex<HashMap<DeviceId, Arc<CudaModule>>>> = OnceLock::new();
    let mut mods = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(m) = mods.get(&dev.id()) {
        return Ok(m.clone());
    }
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    let m = match ctx.load_module(Ptx::from_binary(CUBIN.to_vec())) {
        Ok(m) => m,
        // Not the GPU the cubin was built for: the driver compiles the PTX.
        Err(_) => ctx.load_module(Ptx::from_src(PTX)).w()?,
    };
    mods.insert(dev.id(), m.clone());
    Ok(m)
}

pub(crate) fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    module(dev)?.load_function(name).w()
}

/// Loads our kernels on `dev` (a no-op after the first call): the first use of a cubin is fast,
/// but the PTX fallback is compiled by the driver here rather than in the middle of a job.
pub fn load(dev: &CudaDevice) -> Result<()> {
    module(dev).map(|_| ())
}
