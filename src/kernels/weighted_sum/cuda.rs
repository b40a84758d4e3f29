//! The weighted sum on a GPU: pinned, double-buffered uploads of each input's sub-chunk while
//! the previous one is summed (`lawa_weighted_sum` in `kernels.cu`), bitwise equal to the CPU
//! kernel.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    result, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PinnedHostSlice, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::Result;
use rayon::prelude::*;

use super::Input;
use crate::checkpoint::DType;
use crate::kernels::cuda::function;

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
/// ([`super::weighted_sum_cpu`]). Buffers are kept between calls, sized for
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
