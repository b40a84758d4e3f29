//! The plan of an average, decided once from the inputs' headers: which tensors the output
//! has, in what dtype, and for each tensor whether it is copied or averaged ([`rule`]). The
//! streaming engine and the in-memory average of sweeps both follow it.

use std::path::Path;

use super::{AverageError, AverageOptions};
use crate::checkpoint::{is_buffer, DType, TensorInfo, WeightsReader};
use crate::kernels::weighted_sum::all_finite;

/// What the plan needs of an input: its tensors' headers and where each one is stored.
pub(crate) trait TensorIndex {
    fn tensors(&self) -> &[TensorInfo];
    fn info(&self, name: &str) -> Option<&TensorInfo>;
    /// The input as a whole (a model dir or a weights file).
    fn path(&self) -> &Path;
    /// The file holding `name` (a shard), for messages.
    fn file_of(&self, name: &str) -> &Path;
}

impl TensorIndex for WeightsReader {
    fn tensors(&self) -> &[TensorInfo] {
        WeightsReader::tensors(self)
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        WeightsReader::info(self, name)
    }
    fn path(&self) -> &Path {
        WeightsReader::path(self)
    }
    fn file_of(&self, name: &str) -> &Path {
        WeightsReader::file_of(self, name).unwrap_or(WeightsReader::path(self))
    }
}

/// What happens to one tensor of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TensorRule {
    /// The first input's values (converted to the output dtype when it differs).
    Copy,
    /// The weighted sum of every input.
    Average,
    /// Inputs differ in a tensor that cannot be averaged: an error.
    NotFloatAndDifferent,
}

/// The one copy-or-average rule. Identical inputs are copied when that equals their weighted
/// sum: always for buffers (not weights: `attention.bias`, `inv_freq`) and non-float tensors,
/// and for weights only when the weights sum to 1. `identical` is only consulted when copying
/// is allowed, so callers may compute it lazily.
pub(crate) fn rule(p: &Planned, normalized: bool, identical: impl FnOnce() -> bool) -> TensorRule {
    match (
        copies_identical(p, normalized) && identical(),
        p.out.dtype.is_float(),
    ) {
        (true, _) => TensorRule::Copy,
        (false, true) => TensorRule::Average,
        (false, false) => TensorRule::NotFloatAndDifferent,
    }
}

/// Whether identical inputs of this tensor are copied (the precondition of [`TensorRule::Copy`]);
/// the file path compares while it copies, so it asks this before [`rule`].
pub(crate) fn copies_identical(p: &Planned, normalized: bool) -> bool {
    let may_copy = !p.out.dtype.is_float() || is_buffer(&p.out.name) || normalized;
    may_copy && p.in_dtypes.iter().all(|&d| d == p.in_dtypes[0])
}

/// The error for a non-float tensor that differs between input 0 and input `other`.
pub(crate) fn not_float_and_different(
    readers: &[impl TensorIndex],
    p: &Planned,
    other: usize,
) -> AverageError {
    let name = p.out.name.as_str();
    AverageError::Mismatch(format!(
        "tensor '{name}' ({}) differs between {} and {}: only float tensors can be averaged",
        p.out.dtype,
        file_of(&readers[0], name).display(),
        file_of(&readers[other], name).display(),
    ))
}

/// Whether a copied tensor must be checked for NaN/Inf (weights, unless allowed).
pub(crate) fn check_finite(p: &Planned, allow_nonfinite: bool) -> bool {
    p.out.dtype.is_float() && !is_buffer(&p.out.name) && !allow_nonfinite
}

/// One output tensor: its name/dtype/shape and the dtype each input stores it in.
pub(crate) struct Planned {
    pub out: TensorInfo,
    pub in_dtypes: Vec<DType>,
}

pub(crate) fn file_of<'a>(r: &'a impl TensorIndex, name: &str) -> &'a Path {
    r.file_of(name)
}

/// Checks the inputs agree (same names and shapes; dtypes equal, or both float) and lists the
/// output tensors in the newest input's storage order.
pub(crate) fn plan<R: TensorIndex>(
    readers: &[R],
    newest: usize,
    opts: &AverageOptions,
) -> Result<Vec<Planned>, AverageError> {
    let base = &readers[newest];
    for (i, r) in readers.iter().enumerate() {
        if i == newest {
            continue;
        }
        if let Some(t) = r.tensors().iter().find(|t| base.info(&t.name).is_none()) {
            return Err(AverageError::Mismatch(format!(
                "tensor '{}' is in {} but not in {}",
                t.name,
                file_of(r, &t.name).display(),
                base.path().display()
            )));
        }
        if let Some(t) = base.tensors().iter().find(|t| r.info(&t.name).is_none()) {
            return Err(AverageError::Mismatch(format!(
                "tensor '{}' is in {} but not in {}",
                t.name,
                file_of(base, &t.name).display(),
                r.path().display()
            )));
        }
    }
    let mut plan = Vec::with_capacity(base.tensors().len());
    for t in base.tensors() {
        let mut in_dtypes = Vec::with_capacity(readers.len());
        for r in readers {
            let other = r.info(&t.name).expect("checked above");
            if other.shape != t.shape {
                return Err(AverageError::Mismatch(format!(
                    "tensor '{}' has shape {:?} in {} but {:?} in {}",
                    t.name,
                    other.shape,
                    file_of(r, &t.name).display(),
                    t.shape,
                    file_of(base, &t.name).display()
                )));
            }
            if other.dtype != t.dtype && !(other.dtype.is_float() && t.dtype.is_float()) {
                return Err(AverageError::Mismatch(format!(
                    "tensor '{}' is {} in {} but {} in {}",
                    t.name,
                    other.dtype,
                    file_of(r, &t.name).display(),
                    t.dtype,
                    file_of(base, &t.name).display()
                )));
            }
            in_dtypes.push(other.dtype);
        }
        // Buffers and non-float tensors keep their dtype; weights take the requested one.
        let dtype = if t.dtype.is_float() && !is_buffer(&t.name) {
            opts.dtype.resolve(t.dtype)
        } else {
            t.dtype
        };
        plan.push(Planned {
            out: TensorInfo {
                name: t.name.clone(),
                dtype,
                shape: t.shape.clone(),
            },
            in_dtypes,
        });
    }
    Ok(plan)
}

/// The error for a tensor whose sum is not finite: the first input holding NaN/Inf, or an
/// overflow of the output dtype when no input does.
pub(crate) fn non_finite<S: AsRef<[u8]>>(
    readers: &[impl TensorIndex],
    srcs: &[S],
    dtypes: &[DType],
    out_dtype: DType,
    name: &str,
) -> AverageError {
    for (i, s) in srcs.iter().enumerate() {
        if !all_finite(s.as_ref(), dtypes[i]) {
            return AverageError::NonFinite {
                name: name.to_string(),
                file: file_of(&readers[i], name).to_path_buf(),
            };
        }
    }
    AverageError::Overflow {
        name: name.to_string(),
        dtype: out_dtype,
    }
}
