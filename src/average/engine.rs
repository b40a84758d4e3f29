//! The streaming average: plan the output from the inputs' headers, then for each tensor read
//! the k inputs (memory-mapped), sum them into one output buffer, write it, and let go of the
//! input pages before the next tensor.

use std::borrow::Cow;
use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use super::convert;
use super::plan::{self, file_of, non_finite, plan, Planned, TensorRule};
use super::side::{
    any_config, config_json, mixed_dtypes_note, provenance, retag_config, side_files,
};
use super::{AverageError, AverageInput, AverageOptions, AverageSummary};
use crate::checkpoint::{CheckpointError, DType, OutputDir, SafetensorsWriter, WeightsReader};
use crate::kernels::weighted_sum::{self, all_finite, FileInput, Input};
use crate::progress::{Reporter, Unit};

/// Averages `inputs` (each with its weight, used as given) into a new model dir at `out`.
///
/// Fails without leaving `out` behind when the inputs do not match (names, shapes, non-float
/// dtypes), hold NaN/Inf (unless `allow_nonfinite`), when `out` is refused (exists without
/// `force`, inside an input, unwritable), or when `reporter` is cancelled.
pub fn average(
    inputs: &[AverageInput],
    out: &Path,
    opts: &AverageOptions,
    reporter: &Reporter,
) -> Result<AverageSummary, AverageError> {
    let t0 = Instant::now();
    if inputs.is_empty() {
        return Err(AverageError::NoInputs);
    }
    if let Some(i) = inputs.iter().find(|i| !i.weight.is_finite()) {
        return Err(AverageError::Weights(format!(
            "{}: weight {} is not finite",
            i.path.display(),
            i.weight
        )));
    }
    let readers = inputs
        .iter()
        .map(|i| WeightsReader::open(&i.path))
        .collect::<Result<Vec<_>, _>>()?;
    crate::device::prepare(&opts.device, reporter).map_err(|e| AverageError::Device(e.into()))?;
    let paths: Vec<&Path> = inputs.iter().map(|i| i.path.as_path()).collect();
    let outdir = OutputDir::create(out, opts.force, &paths)?;

    // The newest input decides the tensor order, the dtypes kept and the side files.
    let newest = (0..inputs.len())
        .max_by_key(|&i| (inputs[i].step, i))
        .expect("non-empty");
    let plan = plan(&readers, newest, opts)?;
    // nanoGPT checkpoints are averaged in their own layout into a staging folder, then written
    // as transformers' GPT-2 (see `convert`).
    let nanogpt = convert::nanogpt_window(inputs, &readers, newest, any_config(inputs))?;
    let staging = outdir.path().join(convert::STAGING);
    let weights_dir = match &nanogpt {
        Some(_) => {
            fs::create_dir(&staging).map_err(|e| AverageError::Write {
                path: staging.clone(),
                error: e,
            })?;
            staging.as_path()
        }
        None => outdir.path(),
    };
    let writer = SafetensorsWriter::create(
        weights_dir,
        plan.iter().map(|p| p.out.clone()).collect(),
        opts.shard_size,
    )?;
    let w32: Vec<f32> = inputs.iter().map(|i| i.weight as f32).collect();
    // Identical tensors equal their weighted sum only when the weights sum to 1.
    let sum: f64 = inputs.iter().map(|i| i.weight).sum();
    let normalized = (sum - 1.0).abs() < 1e-6;
    for r in &readers {
        r.advise_sequential();
    }
    let job = Job {
        readers: &readers,
        plan: &plan,
        weights: &w32,
        normalized,
        opts,
        reporter,
        device_sum: if !piecewise(&opts.device) {
            None
        } else {
            let sum = weighted_sum::DeviceSum::new(&opts.device, opts.fused)
                .map_err(AverageError::Device)?;
            Some(std::sync::Mutex::new(sum))
        },
    };
    let (counts, writer) = job.run(writer)?;
    let mut bytes_written = writer.finish()?;
    let Counts {
        averaged,
        copied,
        bytes_read,
    } = counts;

    let mut notes = outdir.notes().to_vec();
    notes.extend(mixed_dtypes_note(inputs, &readers, &plan, newest, opts));
    if let Some(n) = &nanogpt {
        let (bytes, dtype) = n.write_gpt2(&staging, outdir.path(), opts.shard_size, reporter)?;
        bytes_written = bytes;
        fs::remove_dir_all(&staging).map_err(|e| AverageError::Write {
            path: staging.clone(),
            error: e,
        })?;
        let cfg = outdir.path().join("config.json");
        let text = n.config_json(dtype);
        fs::write(&cfg, &text).map_err(|e| AverageError::Write {
            path: cfg.clone(),
            error: e,
        })?;
        bytes_written += text.len() as u64;
        notes.push(format!(
            "nanoGPT checkpoints: converted to transformers' GPT-2 (GPT2LMHeadModel; config.json from the model_args of {})",
            n.args_from.display()
        ));
    }
    let side = side_files(inputs, newest, nanogpt.is_some())?;
    notes.extend(side.notes);
    for (name, _src, text) in side.files {
        let dst = outdir.path().join(name);
        let text = match (&config_json(&text), name) {
            (Some(_), "config.json") if opts.dtype != super::OutDType::Keep => {
                retag_config(&text, opts.dtype.resolve(DType::F32)).into_bytes()
            }
            _ => text,
        };
        fs::write(&dst, &text).map_err(|e| AverageError::Write {
            path: dst.clone(),
            error: e,
        })?;
        bytes_written += text.len() as u64;
    }
    let converted = nanogpt.as_ref().map(|_| convert::PROVENANCE);
    let lawa = provenance(inputs, &readers, opts, &plan, newest, converted);
    let lawa_path = outdir.path().join("lawa.json");
    let text = serde_json::to_string_pretty(&lawa).expect("JSON of plain values");
    fs::write(&lawa_path, &text).map_err(|e| AverageError::Io {
        path: lawa_path.clone(),
        error: e,
    })?;
    bytes_written += text.len() as u64;

    // A cancel that arrived during the last tensor still means "do not publish".
    reporter.check()?;
    let out = outdir.commit()?;
    Ok(AverageSummary {
        out,
        notes,
        tensors: plan.len(),
        averaged,
        copied,
        bytes_read,
        bytes_written,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Elements per piece of a large tensor on a GPU: the inputs are consumed, and their pages
/// released, piece by piece, so memory stays a few pieces whatever the number of checkpoints;
/// within a piece the GPU sum overlaps copying the next sub-chunk with computing this one.
const GPU_SEGMENT: usize = if cfg!(test) { 1000 } else { 16 << 20 };

#[cfg(test)]
thread_local! {
    /// Tests: take the piece-wise (GPU) path on the CPU, through `DeviceSum`'s candle ops,
    /// since no test machine has a GPU.
    static PIECES_ON_CPU: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this average goes piece by piece through a [`weighted_sum::DeviceSum`] (GPUs), rather
/// than the CPU path that writes each tensor in place.
fn piecewise(device: &candle_core::Device) -> bool {
    #[cfg(test)]
    if PIECES_ON_CPU.with(|c| c.get()) {
        return true;
    }
    !device.is_cpu()
}
const MAX_DTYPE_SIZE: usize = 8;

/// What the writer thread is handed, in plan order.
enum Piece<'a> {
    /// Computed bytes of tensor `name` (the first `len` of `buf`; `buf` returns to the pool).
    Part {
        name: &'a str,
        buf: Vec<u8>,
        len: usize,
    },
    /// A whole tensor copied from an input; its input pages are released once written.
    Whole { name: &'a str, data: Cow<'a, [u8]> },
}

#[derive(Default)]
struct Counts {
    averaged: usize,
    copied: usize,
    bytes_read: u64,
}

/// Why the compute side stopped: a real error, or the writer hung up (it has the error).
enum Stop {
    Error(AverageError),
    WriterGone,
}

impl<E: Into<AverageError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Error(e.into())
    }
}

/// The streaming part of an average: computing on this thread (and rayon's), writing on another,
/// so disk writes overlap the arithmetic.
struct Job<'a> {
    readers: &'a [WeightsReader],
    plan: &'a [Planned],
    weights: &'a [f32],
    normalized: bool,
    opts: &'a AverageOptions,
    reporter: &'a Reporter,
    /// The GPU sum and its buffers (None on the CPU).
    device_sum: Option<std::sync::Mutex<weighted_sum::DeviceSum>>,
}

impl<'a> Job<'a> {
    fn run(&self, writer: SafetensorsWriter) -> Result<(Counts, SafetensorsWriter), AverageError> {
        self.reporter
            .report("average", 0, Some(self.plan.len() as u64), Unit::Tensors);
        if self.device_sum.is_none() {
            return self.run_cpu(writer);
        }
        std::thread::scope(|scope| {
            // Two pieces in flight at most: bounded memory, and enough to keep both sides busy.
            let (tx, rx) = mpsc::sync_channel::<Piece<'a>>(2);
            let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
            let readers = self.readers;
            let writing = scope.spawn(move || write_pieces(writer, rx, pool_tx, readers));
            let computed = self.compute(&tx, &pool_rx);
            drop(tx);
            let written = match writing.join() {
                Ok(w) => w,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match (computed, written) {
                (Ok(counts), Ok(writer)) => Ok((counts, writer)),
                (Err(Stop::Error(e)), _) => Err(e),
                (_, Err(e)) => Err(e.into()),
                (Err(Stop::WriterGone), Ok(_)) => unreachable!("the writer only hangs up on error"),
            }
        })
    }

    fn compute(
        &self,
        tx: &mpsc::SyncSender<Piece<'a>>,
        pool: &mpsc::Receiver<Vec<u8>>,
    ) -> Result<Counts, Stop> {
        let readers = self.readers;
        let mut c = Counts::default();
        for (k, p) in self.plan.iter().enumerate() {
            self.reporter.check()?;
            let name = p.out.name.as_str();
            let mut srcs = readers
                .iter()
                .map(|r| r.bytes(name))
                .collect::<Result<Vec<Cow<'a, [u8]>>, _>>()?;
            c.bytes_read += srcs.iter().map(|s| s.len() as u64).sum::<u64>();
            let src_dtype = p.in_dtypes[0];
            match plan::rule(p, self.normalized, || srcs.iter().all(|s| *s == srcs[0])) {
                TensorRule::NotFloatAndDifferent => {
                    let other = (1..srcs.len()).find(|&i| srcs[i] != srcs[0]).unwrap_or(1);
                    return Err(Stop::Error(plan::not_float_and_different(
                        readers, p, other,
                    )));
                }
                TensorRule::Copy => {
                    if plan::check_finite(p, self.opts.allow_nonfinite)
                        && !all_finite(&srcs[0], src_dtype)
                    {
                        return Err(Stop::Error(non_finite(
                            readers,
                            &srcs,
                            &p.in_dtypes,
                            p.out.dtype,
                            name,
                        )));
                    }
                    if src_dtype == p.out.dtype {
                        let data = srcs.swap_remove(0);
                        tx.send(Piece::Whole { name, data })
                            .map_err(|_| Stop::WriterGone)?;
                    } else {
                        self.sum_pieces(p, &srcs[..1], &[1.0], tx, pool)?;
                    }
                    c.copied += 1;
                }
                TensorRule::Average => {
                    self.sum_pieces(p, &srcs, self.weights, tx, pool)?;
                    c.averaged += 1;
                }
            }
            self.tensor_done(k, name);
        }
        Ok(c)
    }

    /// The weighted sum of one tensor, GPU_SEGMENT elements at a time: each piece is computed,
    /// handed to the writer, and the input pages it came from released.
    fn sum_pieces(
        &self,
        p: &'a Planned,
        srcs: &[Cow<'a, [u8]>],
        weights: &[f32],
        tx: &mpsc::SyncSender<Piece<'a>>,
        pool: &mpsc::Receiver<Vec<u8>>,
    ) -> Result<(), Stop> {
        let name = p.out.name.as_str();
        let n = p.out.numel();
        let osz = p.out.dtype.size_in_bytes();
        let segment = GPU_SEGMENT;
        let mut start = 0;
        while start < n {
            let len = segment.min(n - start);
            let ins: Vec<Input> = srcs
                .iter()
                .zip(&p.in_dtypes)
                .map(|(s, &dtype)| {
                    let sz = dtype.size_in_bytes();
                    Input {
                        bytes: &s[start * sz..(start + len) * sz],
                        dtype,
                    }
                })
                .collect();
            let mut buf = pool
                .try_recv()
                .unwrap_or_else(|_| vec![0u8; segment * MAX_DTYPE_SIZE]);
            let out = &mut buf[..len * osz];
            let kernel_err = |error| {
                Stop::Error(AverageError::Kernel {
                    name: name.to_string(),
                    error,
                })
            };
            let finite = {
                let sum = self.device_sum.as_ref().expect("set for non-CPU devices");
                let mut sum = sum.lock().unwrap_or_else(|e| e.into_inner());
                sum.run(&ins, weights, p.out.dtype, out)
                    .map_err(kernel_err)?
            };
            if !finite && !self.opts.allow_nonfinite {
                return Err(Stop::Error(non_finite(
                    self.readers,
                    srcs,
                    &p.in_dtypes,
                    p.out.dtype,
                    name,
                )));
            }
            tx.send(Piece::Part {
                name,
                buf,
                len: len * osz,
            })
            .map_err(|_| Stop::WriterGone)?;
            for (r, &dtype) in self.readers.iter().zip(&p.in_dtypes) {
                let sz = dtype.size_in_bytes();
                r.release_range(name, start * sz, len * sz);
            }
            start += len;
        }
        if n == 0 {
            tx.send(Piece::Part {
                name,
                buf: Vec::new(),
                len: 0,
            })
            .map_err(|_| Stop::WriterGone)?;
        }
        for r in self.readers {
            r.release(name);
        }
        Ok(())
    }
}

impl Job<'_> {
    /// Reports that tensor `k` (of the plan) is written.
    fn tensor_done(&self, k: usize, name: &str) {
        self.reporter.report_detail(
            "average",
            k as u64 + 1,
            Some(self.plan.len() as u64),
            Unit::Tensors,
            Some(name.to_string()),
        );
    }

    /// The CPU path: tensors in plan order on this thread, each tensor's chunks on rayon's
    /// threads, read with `pread` and written in place with `pwrite` into the space the writer
    /// reserves for the tensor. No writer thread and no piece buffers: each output chunk is
    /// written from the cache of the core that computed it, which on few cores costs less
    /// than handing it over.
    fn run_cpu(
        &self,
        mut writer: SafetensorsWriter,
    ) -> Result<(Counts, SafetensorsWriter), AverageError> {
        let mut c = Counts::default();
        for (k, p) in self.plan.iter().enumerate() {
            self.reporter.check()?;
            let name = p.out.name.as_str();
            c.bytes_read += p
                .in_dtypes
                .iter()
                .map(|d| (p.out.numel() * d.size_in_bytes()) as u64)
                .sum::<u64>();
            let spans: Option<Vec<(&fs::File, u64)>> =
                self.readers.iter().map(|r| r.file_span(name)).collect();
            let copied = match spans {
                Some(spans) => self.tensor_in_place(p, &spans, &mut writer)?,
                None => self.tensor_in_memory(p, &mut writer)?,
            };
            if copied {
                c.copied += 1;
            } else {
                c.averaged += 1;
            }
            self.tensor_done(k, name);
        }
        Ok((c, writer))
    }

    /// One tensor whose inputs are contiguous in their files. Returns whether it was copied
    /// (identical inputs) rather than averaged.
    fn tensor_in_place(
        &self,
        p: &Planned,
        spans: &[(&fs::File, u64)],
        writer: &mut SafetensorsWriter,
    ) -> Result<bool, AverageError> {
        let name = p.out.name.as_str();
        let n = p.out.numel();
        let src_dtype = p.in_dtypes[0];
        let out = writer.claim(name)?;
        let io_err = |(i, error): weighted_sum::FileError| AverageError::Io {
            path: match i {
                Some(i) => file_of(&self.readers[i], name).to_path_buf(),
                None => out.path.to_path_buf(),
            },
            error,
        };
        let kernel_err = |error| AverageError::Kernel {
            name: name.to_string(),
            error,
        };
        let files: Vec<FileInput> = spans
            .iter()
            .zip(&p.in_dtypes)
            .map(|(&(file, offset), &dtype)| FileInput {
                file,
                offset,
                dtype,
            })
            .collect();
        // The weighted sum written in place; a non-finite result fails unless allowed.
        let sum_into = |files: &[FileInput], weights: &[f32]| -> Result<(), AverageError> {
            let finite = weighted_sum::weighted_sum_files_at(
                files,
                weights,
                p.out.dtype,
                n,
                out.file,
                out.offset,
            )
            .map_err(kernel_err)?
            .map_err(io_err)?;
            if !finite && !self.opts.allow_nonfinite {
                return Err(self.non_finite_in(p)?);
            }
            Ok(())
        };
        // Identical inputs are copied when the rule allows; only then is it worth comparing
        // them, and the comparison copies as it goes.
        if plan::copies_identical(p, self.normalized) {
            let check_finite = plan::check_finite(p, self.opts.allow_nonfinite);
            // Same dtype out: the bytes are written while they are compared.
            let dest = (src_dtype == p.out.dtype).then_some((out.file, out.offset));
            let v = weighted_sum::copy_if_identical_files(
                spans,
                n * src_dtype.size_in_bytes(),
                dest,
                check_finite.then_some(src_dtype),
            )
            .map_err(io_err)?;
            match plan::rule(p, self.normalized, || v.differs.is_none()) {
                TensorRule::Copy if !v.finite => return Err(self.non_finite_in(p)?),
                TensorRule::Copy => {
                    if dest.is_none() {
                        sum_into(&files[..1], &[1.0])?;
                    }
                    return Ok(true);
                }
                TensorRule::NotFloatAndDifferent => {
                    let other = v.differs.unwrap_or(1);
                    return Err(plan::not_float_and_different(self.readers, p, other));
                }
                // Averaged below, overwriting what was copied before the difference.
                TensorRule::Average => {}
            }
        }
        sum_into(&files, self.weights)?;
        Ok(false)
    }

    /// One tensor that some input stores strided (a view into a PyTorch storage): gathered in
    /// memory, summed and written whole. Returns whether it was copied rather than averaged.
    fn tensor_in_memory(
        &self,
        p: &Planned,
        writer: &mut SafetensorsWriter,
    ) -> Result<bool, AverageError> {
        let name = p.out.name.as_str();
        let srcs = self
            .readers
            .iter()
            .map(|r| r.bytes(name))
            .collect::<Result<Vec<_>, _>>()?;
        let copied = match plan::rule(p, self.normalized, || srcs.iter().all(|s| *s == srcs[0])) {
            TensorRule::NotFloatAndDifferent => {
                let other = (1..srcs.len()).find(|&i| srcs[i] != srcs[0]).unwrap_or(1);
                return Err(plan::not_float_and_different(self.readers, p, other));
            }
            rule => rule == TensorRule::Copy,
        };
        let src_dtype = p.in_dtypes[0];
        if copied
            && plan::check_finite(p, self.opts.allow_nonfinite)
            && !all_finite(&srcs[0], src_dtype)
        {
            return Err(non_finite(
                self.readers,
                &srcs,
                &p.in_dtypes,
                p.out.dtype,
                name,
            ));
        }
        if copied && src_dtype == p.out.dtype {
            writer.write(name, &srcs[0])?;
        } else {
            let used = if copied { 1 } else { srcs.len() };
            let ins: Vec<Input> = srcs[..used]
                .iter()
                .zip(&p.in_dtypes)
                .map(|(s, &dtype)| Input { bytes: s, dtype })
                .collect();
            let weights = if copied { &[1.0][..] } else { self.weights };
            let mut out = vec![0u8; p.out.nbytes()];
            let finite = weighted_sum::weighted_sum_cpu(&ins, weights, p.out.dtype, &mut out)
                .map_err(|error| AverageError::Kernel {
                    name: name.to_string(),
                    error,
                })?;
            if !finite && !self.opts.allow_nonfinite {
                return Err(non_finite(
                    self.readers,
                    &srcs,
                    &p.in_dtypes,
                    p.out.dtype,
                    name,
                ));
            }
            writer.write(name, &out)?;
        }
        drop(srcs);
        for r in self.readers {
            r.release(name);
        }
        Ok(copied)
    }

    /// The error for a non-finite result, found by reading the inputs again (error path only).
    fn non_finite_in(&self, p: &Planned) -> Result<AverageError, AverageError> {
        let name = p.out.name.as_str();
        let srcs = self
            .readers
            .iter()
            .map(|r| r.bytes(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(non_finite(
            self.readers,
            &srcs,
            &p.in_dtypes,
            p.out.dtype,
            name,
        ))
    }
}

/// The writer thread: writes pieces in order, recycles buffers, releases copied inputs' pages.
fn write_pieces<'a>(
    mut writer: SafetensorsWriter,
    rx: mpsc::Receiver<Piece<'a>>,
    pool: mpsc::Sender<Vec<u8>>,
    readers: &[WeightsReader],
) -> Result<SafetensorsWriter, CheckpointError> {
    for piece in rx {
        match piece {
            Piece::Part { name, buf, len } => {
                writer.write_part(name, &buf[..len])?;
                let _ = pool.send(buf);
            }
            Piece::Whole { name, data } => {
                writer.write(name, &data)?;
                drop(data);
                for r in readers {
                    r.release(name);
                }
            }
        }
    }
    Ok(writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::average::{AverageInput, Scheme};

    /// The piece-wise path a GPU takes (pieces, writer thread, `DeviceSum`) gives the same
    /// average as the CPU path, for every input dtype and f32 output, across many pieces.
    #[test]
    fn the_piecewise_path_equals_the_cpu_path() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints");
        for run in ["st_f16", "st_bf16", "st_f32", "bin_f16_sharded"] {
            for dtype in [super::super::OutDType::Keep, super::super::OutDType::F32] {
                let scheme: Scheme = "linear".parse().unwrap();
                let inputs: Vec<AverageInput> = [(100, 0.2), (200, 0.3), (400, 0.5)]
                    .iter()
                    .map(|&(step, weight)| AverageInput {
                        path: root.join(run).join(format!("step{step}")),
                        step,
                        weight,
                    })
                    .collect();
                let opts = AverageOptions {
                    dtype,
                    ..AverageOptions::new(&scheme)
                };
                let tmp = tempfile::tempdir().unwrap();
                let cpu = tmp.path().join("cpu");
                let pieces = tmp.path().join("pieces");
                average(&inputs, &cpu, &opts, &Reporter::silent()).unwrap();
                PIECES_ON_CPU.with(|c| c.set(true));
                let s = average(&inputs, &pieces, &opts, &Reporter::silent());
                PIECES_ON_CPU.with(|c| c.set(false));
                let s = s.unwrap();
                assert!(s.averaged > 0);
                let a = WeightsReader::open(&cpu).unwrap();
                let b = WeightsReader::open(&pieces).unwrap();
                assert_eq!(a.tensors().len(), b.tensors().len());
                for t in a.tensors() {
                    let cpu_dev = candle_core::Device::Cpu;
                    let (x, y) = (
                        a.tensor(&t.name, &cpu_dev).unwrap(),
                        b.tensor(&t.name, &cpu_dev).unwrap(),
                    );
                    let (x, y) = (
                        x.to_dtype(candle_core::DType::F32)
                            .unwrap()
                            .flatten_all()
                            .unwrap(),
                        y.to_dtype(candle_core::DType::F32)
                            .unwrap()
                            .flatten_all()
                            .unwrap(),
                    );
                    // Equal values (+0 and -0 may differ: candle adds the first product to 0).
                    assert_eq!(
                        x.to_vec1::<f32>().unwrap(),
                        y.to_vec1::<f32>().unwrap(),
                        "{run} {dtype:?} {}",
                        t.name
                    );
                }
            }
        }
    }

    #[test]
    fn config_dtype_is_retagged_only_where_present() {
        let c = retag_config(
            br#"{"torch_dtype": "float16", "hidden_size": 8}"#,
            DType::F32,
        );
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["torch_dtype"], "float32");
        assert_eq!(v["hidden_size"], 8);
        assert!(v.get("dtype").is_none());
        assert_eq!(retag_config(b"not json", DType::F16), "not json");
    }
}
