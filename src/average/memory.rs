//! Averages of checkpoints held in memory, for sweeps: each checkpoint is read once into a
//! [`ResidentCheckpoint`], and every window that holds it is averaged from memory with the
//! same plan, copy-or-average rule and CPU kernel as the streaming engine, input by input in
//! the same order, so the result is bit for bit what `lawa average` writes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::plan::{self, non_finite, plan, TensorIndex, TensorRule};
use super::side::side_files;
use super::{AverageError, AverageInput, AverageOptions};
use crate::checkpoint::{TensorInfo, WeightsReader};
use crate::kernels::weighted_sum::{self, all_finite, Input};
use crate::progress::Reporter;

/// One checkpoint's tensors, kept while the sweep needs them: tensors stored as contiguous
/// little-endian bytes are used in place from the file's mapping (the page cache holds them,
/// nothing is copied or allocated per tensor); the others (e.g. big-endian or strided torch
/// storages) are decoded once into memory.
#[derive(Debug)]
pub struct ResidentCheckpoint {
    path: PathBuf,
    step: u64,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    files: Vec<PathBuf>,
    reader: WeightsReader,
    /// The decoded bytes of tensors the mapping cannot give as they are.
    decoded: Vec<Option<Vec<u8>>>,
    main_dtype: Option<crate::checkpoint::DType>,
    format: crate::checkpoint::Format,
}

impl ResidentCheckpoint {
    /// Opens the checkpoint at `path` (any form [`WeightsReader`] reads) and decodes what must
    /// be decoded. Cancellable between tensors.
    pub fn read(path: &Path, step: u64, reporter: &Reporter) -> Result<Self, AverageError> {
        let reader = WeightsReader::open(path)?;
        reader.advise_sequential();
        let tensors = reader.tensors().to_vec();
        let mut decoded = Vec::with_capacity(tensors.len());
        let mut files = Vec::with_capacity(tensors.len());
        for t in &tensors {
            reporter.check()?;
            decoded.push(match reader.bytes(&t.name)? {
                Cow::Borrowed(_) => None,
                Cow::Owned(v) => Some(v),
            });
            files.push(TensorIndex::file_of(&reader, &t.name).to_path_buf());
        }
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(ResidentCheckpoint {
            path: path.to_path_buf(),
            step,
            main_dtype: reader.main_dtype(),
            format: reader.format(),
            tensors,
            by_name,
            files,
            reader,
            decoded,
        })
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of tensor data held (what is read).
    pub fn nbytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.nbytes() as u64).sum()
    }

    pub fn main_dtype(&self) -> Option<crate::checkpoint::DType> {
        self.main_dtype
    }

    pub fn format(&self) -> crate::checkpoint::Format {
        self.format
    }

    /// Every tensor with its bytes, in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorInfo, &[u8])> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t, self.bytes_at(i)))
    }

    fn bytes(&self, name: &str) -> &[u8] {
        self.bytes_at(self.by_name[name])
    }

    fn bytes_at(&self, i: usize) -> &[u8] {
        if let Some(d) = &self.decoded[i] {
            return d;
        }
        match self.reader.bytes(&self.tensors[i].name) {
            Ok(Cow::Borrowed(b)) => b,
            // `read` decoded every tensor the mapping does not give in place, and the
            // mapping does not change: this cannot happen.
            _ => unreachable!(
                "tensor {} was given in place when read",
                self.tensors[i].name
            ),
        }
    }
}

impl TensorIndex for ResidentCheckpoint {
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn file_of(&self, name: &str) -> &Path {
        self.by_name
            .get(name)
            .map_or(self.path.as_path(), |&i| self.files[i].as_path())
    }
}

/// An average computed in memory: the output tensors (copies borrow the inputs' bytes) and the
/// `config.json` the output of `lawa average` would carry.
#[derive(Debug)]
pub struct InMemoryAverage<'a> {
    pub tensors: Vec<(TensorInfo, Cow<'a, [u8]>)>,
    /// The window's config (checked across the inputs as `lawa average` checks it).
    pub config: Option<PathBuf>,
}

/// Output buffers of an earlier average, by tensor name, for the next one to write into: a
/// sweep averages the same shapes window after window, and fresh buffers of a model's size
/// each time cost as much in page faults as the averaging itself.
pub type Scratch = HashMap<String, Vec<u8>>;

impl InMemoryAverage<'_> {
    /// Gives the computed buffers back for the next average.
    pub fn recycle(self, scratch: &mut Scratch) {
        for (info, bytes) in self.tensors {
            if let Cow::Owned(v) = bytes {
                scratch.insert(info.name, v);
            }
        }
    }
}

/// Averages resident checkpoints with `weights` (used as given), as [`super::average`] would
/// with the same inputs and options (CPU kernel; output dtype per `opts.dtype`), writing into
/// `scratch`'s buffers where their sizes fit (the kernel writes every byte).
pub fn average_in_memory<'a>(
    inputs: &[&'a ResidentCheckpoint],
    weights: &[f64],
    opts: &AverageOptions,
    scratch: &mut Scratch,
    reporter: &Reporter,
) -> Result<InMemoryAverage<'a>, AverageError> {
    if inputs.is_empty() {
        return Err(AverageError::NoInputs);
    }
    if inputs.len() != weights.len() {
        return Err(AverageError::Weights(format!(
            "{} weights for {} checkpoints",
            weights.len(),
            inputs.len()
        )));
    }
    if let Some((i, w)) = inputs.iter().zip(weights).find(|(_, w)| !w.is_finite()) {
        return Err(AverageError::Weights(format!(
            "{}: weight {w} is not finite",
            i.path.display()
        )));
    }
    let newest = (0..inputs.len())
        .max_by_key(|&i| (inputs[i].step, i))
        .expect("non-empty");
    let owned: Vec<&ResidentCheckpoint> = inputs.to_vec();
    let readers: Vec<Ref<'_>> = owned.iter().map(|r| Ref(r)).collect();
    let plan = plan(&readers, newest, opts)?;
    let as_inputs: Vec<AverageInput> = inputs
        .iter()
        .zip(weights)
        .map(|(r, &weight)| AverageInput {
            path: r.path.clone(),
            step: r.step,
            weight,
        })
        .collect();
    let config = side_files(&as_inputs, newest, false)?
        .files
        .into_iter()
        .find(|(name, ..)| *name == "config.json")
        .map(|(_, path, _)| path);
    let w32: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let normalized = (weights.iter().sum::<f64>() - 1.0).abs() < 1e-6;
    let mut tensors = Vec::with_capacity(plan.len());
    for p in &plan {
        reporter.check()?;
        let name = p.out.name.as_str();
        let srcs: Vec<&'a [u8]> = inputs.iter().map(|r| r.bytes(name)).collect();
        let src_dtype = p.in_dtypes[0];
        let (used, w): (usize, &[f32]) = match plan::rule(p, normalized, || {
            srcs.iter().all(|s| *s == srcs[0])
        }) {
            TensorRule::NotFloatAndDifferent => {
                let other = (1..srcs.len()).find(|&i| srcs[i] != srcs[0]).unwrap_or(1);
                return Err(plan::not_float_and_different(&readers, p, other));
            }
            TensorRule::Copy => {
                if plan::check_finite(p, opts.allow_nonfinite) && !all_finite(srcs[0], src_dtype) {
                    return Err(non_finite(&readers, &srcs, &p.in_dtypes, p.out.dtype, name));
                }
                if src_dtype == p.out.dtype {
                    tensors.push((p.out.clone(), Cow::Borrowed(srcs[0])));
                    continue;
                }
                (1, &[1.0])
            }
            TensorRule::Average => (srcs.len(), &w32),
        };
        let ins: Vec<Input> = srcs[..used]
            .iter()
            .zip(&p.in_dtypes)
            .map(|(s, &dtype)| Input { bytes: s, dtype })
            .collect();
        let mut out = match scratch.remove(name) {
            Some(v) if v.len() == p.out.nbytes() => v,
            _ => vec![0u8; p.out.nbytes()],
        };
        let finite =
            weighted_sum::weighted_sum_cpu(&ins, w, p.out.dtype, &mut out).map_err(|error| {
                AverageError::Kernel {
                    name: name.to_string(),
                    error,
                }
            })?;
        if !finite && !opts.allow_nonfinite {
            return Err(non_finite(&readers, &srcs, &p.in_dtypes, p.out.dtype, name));
        }
        tensors.push((p.out.clone(), Cow::Owned(out)));
    }
    Ok(InMemoryAverage { tensors, config })
}

/// A borrowed resident checkpoint as a plan input.
struct Ref<'a>(&'a ResidentCheckpoint);

impl TensorIndex for Ref<'_> {
    fn tensors(&self) -> &[TensorInfo] {
        self.0.tensors()
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.0.info(name)
    }
    fn path(&self) -> &Path {
        TensorIndex::path(self.0)
    }
    fn file_of(&self, name: &str) -> &Path {
        TensorIndex::file_of(self.0, name)
    }
}
