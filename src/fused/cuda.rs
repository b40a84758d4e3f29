//! Loading and launching the fused kernels (`kernels.cu`) on a candle CUDA device.
//!
//! build.rs compiles `kernels.cu` into a cubin for the GPU this build targets
//! (`CUDA_COMPUTE_CAP`, 90 = H100/H200) and PTX for compute 8.0: the cubin loads with no driver
//! JIT; another GPU (sm_80 or newer) JIT-compiles the PTX once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    result, sys, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId, WrapErr};
use candle_core::{CudaStorage, Layout, Result, Shape};
use half::{bf16, f16};
use rayon::prelude::*;

use crate::average::kernel::Input;
use crate::checkpoint::DType;

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

fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    module(dev)?.load_function(name).w()
}

/// Loads our kernels on `dev` (a no-op after the first call): the first use of a cubin is fast,
/// but the PTX fallback is compiled by the driver here rather than in the middle of a job.
pub fn load(dev: &CudaDevice) -> Result<()> {
    module(dev).map(|_| ())
}

/// dtype codes of `kernels.cu`.
fn code(d: DType) -> Option<i32> {
    match d {
        DType::F32 => Some(0),
        DType::F16 => Some(1),
        DType::BF16 => Some(2),
        DType::F64 => Some(3),
        _ => None,
    }
}

/// Inputs per launch of the weighted-sum kernel (`WSUM_MAX`); more are chained through f32.
const WSUM_MAX: usize = 8;

/// `WsumArgs` of `kernels.cu`, passed by value.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct WsumArgs {
    x: [u64; WSUM_MAX],
    w: [f32; WSUM_MAX],
    dtype: [i32; WSUM_MAX],
    k: i32,
}

// SAFETY: a plain #[repr(C)] struct of numbers laid out as the CUDA struct.
unsafe impl DeviceRepr for WsumArgs {}

/// Elements per sub-chunk: the CPU copies the next sub-chunk into pinned memory while the GPU
/// uploads, sums and downloads the current one.
const SUB: usize = 4 << 20;
const MAX_DTYPE_SIZE: usize = 8;

/// One of the two pipeline slots: pinned staging for the inputs, their device copy, the
/// device output, and the event that says the GPU is done with the slot.
struct Slot {
    staging: PinnedHostSlice<u8>,
    input: CudaSlice<u8>,
    output: CudaSlice<u8>,
    done: CudaEvent,
}

/// The weighted sum of raw tensor bytes on a GPU, bitwise equal to the CPU kernel
/// ([`crate::average::kernel::weighted_sum_cpu`]). Buffers are kept between calls, sized for
/// the largest `k` seen.
pub struct WeightedSum {
    stream: Arc<CudaStream>,
    func: CudaFunction,
    slots: Vec<Slot>,
    k: usize,
    acc: CudaSlice<f32>,
    flag: CudaSlice<u32>,
    result: Option<PinnedHostSlice<u8>>,
}

impl WeightedSum {
    pub fn new(dev: &CudaDevice) -> Result<Self> {
        let stream = dev.cuda_stream();
        Ok(Self {
            func: function(dev, "lawa_weighted_sum")?,
            acc: stream.alloc_zeros::<f32>(SUB).w()?,
            flag: stream.alloc_zeros::<u32>(1).w()?,
            stream,
            slots: Vec::new(),
            k: 0,
            result: None,
        })
    }

    fn ensure(&mut self, k: usize, out_bytes: usize) -> Result<()> {
        let ctx = self.stream.context().clone();
        if k > self.k {
            self.slots.clear();
            for _ in 0..2 {
                let bytes = k * SUB * MAX_DTYPE_SIZE;
                self.slots.push(Slot {
                    // SAFETY: written before every read (the CPU fills what the GPU reads).
                    staging: unsafe { ctx.alloc_pinned::<u8>(bytes) }.w()?,
                    input: unsafe { self.stream.alloc::<u8>(bytes) }.w()?,
                    output: unsafe { self.stream.alloc::<u8>(SUB * MAX_DTYPE_SIZE) }.w()?,
                    done: ctx.new_event(None).w()?,
                });
            }
            self.k = k;
        }
        if self.result.as_ref().is_none_or(|r| r.len() < out_bytes) {
            // Not write-combined: the CPU reads this one.
            self.result = Some(unsafe { ctx.alloc_pinned_with_flags::<u8>(out_bytes, 0) }.w()?);
        }
        Ok(())
    }

    /// `out = Σ weights[i] · inputs[i]` as `out_dtype` bytes; returns whether all are finite.
    pub fn run(
        &mut self,
        inputs: &[Input<'_>],
        weights: &[f32],
        out_dtype: DType,
        out: &mut [u8],
    ) -> Result<bool> {
        let osz = out_dtype.size_in_bytes();
        let n = out.len() / osz;
        let out_code = code(out_dtype)
            .ok_or_else(|| candle_core::Error::Msg(format!("cannot average into {out_dtype}")))?;
        let codes = inputs
            .iter()
            .map(|i| code(i.dtype))
            .collect::<Option<Vec<i32>>>()
            .ok_or_else(|| candle_core::Error::Msg("inputs must be floats".into()))?;
        self.ensure(inputs.len(), out.len())?;
        self.stream.memset_zeros(&mut self.flag).w()?;
        let cu = self.stream.cu_stream();
        let result_ptr = self.result.as_mut().expect("ensured").as_mut_ptr().w()?;
        for (j, start) in (0..n).step_by(SUB).enumerate() {
            let len = SUB.min(n - start);
            let slot = &mut self.slots[j % 2];
            // The GPU has finished reading this slot's staging (two sub-chunks ago).
            slot.done.synchronize().w()?;
            let staging = slot.staging.as_mut_ptr().w()?;
            let region = SUB * MAX_DTYPE_SIZE;
            // SAFETY: `staging` holds k regions of `region` bytes; no GPU work reads it now.
            let stage = unsafe { std::slice::from_raw_parts_mut(staging, self.k * region) };
            stage
                .par_chunks_mut(region)
                .zip(inputs.par_iter())
                .for_each(|(dst, inp)| {
                    let sz = inp.dtype.size_in_bytes();
                    let src = &inp.bytes[start * sz..(start + len) * sz];
                    dst[..src.len()].copy_from_slice(src);
                });
            let (dev_in, _g1) = slot.input.device_ptr(&self.stream);
            let (dev_out, _g2) = slot.output.device_ptr(&self.stream);
            let (acc, _g3) = self.acc.device_ptr(&self.stream);
            let (flag, _g4) = self.flag.device_ptr(&self.stream);
            for (i, inp) in inputs.iter().enumerate() {
                let bytes = len * inp.dtype.size_in_bytes();
                let off = i * region;
                // SAFETY: both ranges lie inside their allocations; one stream orders the copy
                // before the kernel and the next fill waits on `done`.
                unsafe {
                    result::memcpy_htod_async(dev_in + off as u64, &stage[off..off + bytes], cu)
                }
                .w()?;
            }
            let groups = inputs.len().div_ceil(WSUM_MAX);
            for g in 0..groups {
                let idx = g * WSUM_MAX..((g + 1) * WSUM_MAX).min(inputs.len());
                let mut args = WsumArgs {
                    k: idx.len() as i32,
                    ..Default::default()
                };
                for (s, i) in idx.clone().enumerate() {
                    args.x[s] = dev_in + (i * region) as u64;
                    args.w[s] = weights[i];
                    args.dtype[s] = codes[i];
                }
                let last = g + 1 == groups;
                let acc_in: u64 = if g == 0 { 0 } else { acc };
                let (dst, dst_code) = if last { (dev_out, out_code) } else { (acc, 0) };
                let n64 = len as u64;
                let blocks = len.div_ceil(256).clamp(1, 4096) as u32;
                let mut b = self.stream.launch_builder(&self.func);
                b.arg(&args)
                    .arg(&acc_in)
                    .arg(&dst)
                    .arg(&dst_code)
                    .arg(&n64)
                    .arg(&flag);
                // SAFETY: argument types match `lawa_weighted_sum`; every pointer covers `len`.
                unsafe {
                    b.launch(LaunchConfig {
                        grid_dim: (blocks, 1, 1),
                        block_dim: (256, 1, 1),
                        shared_mem_bytes: 0,
                    })
                }
                .w()?;
            }
            // SAFETY: the result buffer holds `out.len()` bytes.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(result_ptr.add(start * osz), len * osz) };
            unsafe { result::memcpy_dtoh_async(dst, dev_out, cu) }.w()?;
            slot.done.record(&self.stream).w()?;
        }
        self.stream.synchronize().w()?;
        // SAFETY: the stream is idle; the buffer holds `out.len()` bytes.
        let res = unsafe { std::slice::from_raw_parts(result_ptr, out.len()) };
        out.par_chunks_mut(1 << 20)
            .zip(res.par_chunks(1 << 20))
            .for_each(|(o, r)| o.copy_from_slice(r));
        let flag = self.stream.clone_dtoh(&self.flag).w()?;
        Ok(flag[0] == 0)
    }
}

/// The `token_nll` kernel: one block of 256 threads per row.
pub fn token_nll(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let (n, v) = l1.shape().dims2()?;
    let dev = &s1.device;
    let (Some((o1, _)), Some((o2, _))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
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

/// Bytes of shared memory the attention kernel for `hs` uses (`kernels.cu`'s `fa_smem`).
fn attention_smem(hs: usize, tsize: usize) -> usize {
    let (br, bc) = (super::attention::BLOCK_ROWS, super::attention::key_tile(hs));
    br * hs * tsize + 2 * bc * hs * tsize + br * bc * 4 + br * bc * tsize + br * hs * 4 + 3 * br * 4
}

/// The flash-attention kernel on `[heads, t, hs]` q, k, v (f16 or bf16, contiguous).
pub fn flash_attention(
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
        grid_dim: (
            t.div_ceil(super::attention::BLOCK_ROWS) as u32,
            heads as u32,
            1,
        ),
        block_dim: (128, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let storage = match qkv[0].0.dtype() {
        candle_core::DType::F16 => {
            let out = launch_attention::<f16>(
                dev,
                &format!("lawa_flash_attn_f16_{hs}"),
                qkv,
                n,
                (t, scale, smem, cfg),
            )?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        }
        candle_core::DType::BF16 => {
            let out = launch_attention::<bf16>(
                dev,
                &format!("lawa_flash_attn_bf16_{hs}"),
                qkv,
                n,
                (t, scale, smem, cfg),
            )?;
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
