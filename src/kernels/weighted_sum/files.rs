//! The weighted sum from files to a file with positional I/O (`pread`/`pwrite`, no mapping),
//! and the compare-and-copy of inputs that are byte-identical: the paths of the streaming
//! average on the CPU (`average::engine`). The arithmetic is the in-memory kernel's
//! ([`super::fold_input`], [`super::store`]), so both paths give the same bytes.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{all_finite, fold_input, simd_available, store, Input, KernelError};
use crate::checkpoint::DType;

/// One input read from a file with `pread` instead of a mapping: its tensor data starts at
/// `offset` in `file`.
#[derive(Clone, Copy, Debug)]
pub struct FileInput<'a> {
    pub file: &'a std::fs::File,
    pub offset: u64,
    pub dtype: DType,
}

/// Where positional file I/O failed: input `Some(i)`, or the output (`None`), and the error.
pub type FileError = (Option<usize>, std::io::Error);

/// Elements per chunk of [`weighted_sum_files_at`]: the f32 accumulator, one input's chunk and
/// the output chunk stay in a core's L2 together.
pub(super) const DIRECT_CHUNK: usize = 32 * 1024;

/// Per-thread buffers of the positional path, kept across calls (fresh ones would cost page
/// faults and zeroing every time).
#[derive(Default)]
struct Direct {
    acc: Vec<f32>,
    input: Vec<u8>,
    out: Vec<u8>,
}

thread_local! {
    static DIRECT: std::cell::RefCell<Direct> = std::cell::RefCell::new(Direct::default());
}

/// The CPU kernel from files to a file: `n` elements of each input are folded chunk by chunk
/// on rayon's threads, each chunk read with `pread` one input at a time (folded at once, while
/// it is in L1/L2), cast, and written with `pwrite` at `out_offset` in `out`. Nothing passes
/// through a large buffer or another thread, so the output bytes are written while still in
/// cache. Returns whether every output value is finite, or where I/O failed.
pub fn weighted_sum_files_at(
    inputs: &[FileInput<'_>],
    weights: &[f32],
    out_dtype: DType,
    n: usize,
    out: &std::fs::File,
    out_offset: u64,
) -> Result<Result<bool, FileError>, KernelError> {
    use std::os::unix::fs::FileExt;
    use std::sync::Mutex;
    if inputs.len() != weights.len() || inputs.is_empty() {
        return Err(KernelError::Weights(inputs.len(), weights.len()));
    }
    for d in inputs.iter().map(|i| i.dtype).chain([out_dtype]) {
        if !d.is_float() {
            return Err(KernelError::NotFloat(d));
        }
    }
    let osz = out_dtype.size_in_bytes();
    let nonfinite = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<FileError>> = Mutex::new(None);
    let fail = |e: FileError| {
        stop.store(true, Ordering::Relaxed);
        failed.lock().expect("not poisoned").get_or_insert(e);
    };
    let fast = simd_available();
    let run = |ci: usize| {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        DIRECT.with(|d| {
            let Direct {
                acc,
                input,
                out: obuf,
            } = &mut *d.borrow_mut();
            let start = ci * DIRECT_CHUNK;
            let len = DIRECT_CHUNK.min(n - start);
            acc.resize(len, 0.0);
            for (i, (inp, &w)) in inputs.iter().zip(weights).enumerate() {
                let sz = inp.dtype.size_in_bytes();
                input.resize(len * sz, 0);
                if let Err(e) = inp
                    .file
                    .read_exact_at(input, inp.offset + (start * sz) as u64)
                {
                    return fail((Some(i), e));
                }
                let x = Input {
                    bytes: input,
                    dtype: inp.dtype,
                };
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: simd_available() checked the CPU has AVX2, FMA and F16C.
                    unsafe { x86::fold_input(&x, w, acc, i == 0) };
                    continue;
                }
                let _ = fast;
                fold_input::<false>(&x, w, 0, acc, i == 0);
            }
            obuf.resize(len * osz, 0);
            #[cfg(target_arch = "x86_64")]
            let bad = if fast {
                // SAFETY: as above.
                unsafe { x86::store(acc, out_dtype, obuf) }
            } else {
                store::<false>(acc, out_dtype, obuf)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let bad = store::<false>(acc, out_dtype, obuf);
            if bad {
                nonfinite.store(true, Ordering::Relaxed);
            }
            if let Err(e) = out.write_all_at(obuf, out_offset + (start * osz) as u64) {
                fail((None, e));
            }
        })
    };
    let chunks = n.div_ceil(DIRECT_CHUNK);
    if chunks < 2 {
        (0..chunks).for_each(run);
    } else {
        (0..chunks).into_par_iter().for_each(run);
    }
    if let Some(f) = failed.into_inner().expect("not poisoned") {
        return Ok(Err(f));
    }
    Ok(Ok(!nonfinite.load(Ordering::Relaxed)))
}

/// What [`copy_if_identical_files`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Verbatim {
    /// The first input whose bytes differ from the first input's, if any.
    pub differs: Option<usize>,
    /// Whether the bytes compared hold no NaN/Inf (only checked when asked).
    pub finite: bool,
}

/// Bytes compared per read after the first block.
pub(super) const COMPARE_BLOCK: usize = 256 * 1024;

/// Compares `nbytes` bytes of every input (file and offset) with the first input's, and while
/// they agree writes the first input's bytes to `out` (file and offset) when given, in one
/// pass with `pread`/`pwrite`. It stops at the first difference; the first block read is small,
/// so inputs that differ from their first bytes (trained weights) cost one small read each.
/// Bytes already written before a difference is found are left for the caller to overwrite.
/// With `finite_of`, also checks the first input's bytes are finite values of that dtype.
pub fn copy_if_identical_files(
    inputs: &[(&std::fs::File, u64)],
    nbytes: usize,
    out: Option<(&std::fs::File, u64)>,
    finite_of: Option<DType>,
) -> Result<Verbatim, FileError> {
    use std::os::unix::fs::FileExt;
    DIRECT.with(|d| {
        let Direct {
            input, out: first, ..
        } = &mut *d.borrow_mut();
        let mut finite = true;
        let mut at = 0;
        while at < nbytes {
            // 4 KiB, then larger blocks: whole elements of any dtype either way.
            let len = if at == 0 { 4096 } else { COMPARE_BLOCK }.min(nbytes - at);
            first.resize(len, 0);
            let (f0, o0) = inputs[0];
            f0.read_exact_at(first, o0 + at as u64)
                .map_err(|e| (Some(0), e))?;
            for (i, &(f, o)) in inputs.iter().enumerate().skip(1) {
                input.resize(len, 0);
                f.read_exact_at(input, o + at as u64)
                    .map_err(|e| (Some(i), e))?;
                if input != first {
                    return Ok(Verbatim {
                        differs: Some(i),
                        finite,
                    });
                }
            }
            if let Some(d) = finite_of {
                finite &= all_finite(first, d);
            }
            if let Some((f, o)) = out {
                f.write_all_at(first, o + at as u64)
                    .map_err(|e| (None, e))?;
            }
            at += len;
        }
        Ok(Verbatim {
            differs: None,
            finite,
        })
    })
}
