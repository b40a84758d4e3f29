//! An average of nanoGPT checkpoints (`ckpt.pt`: `model` + `model_args`, `nn.Linear` layout)
//! written as what transformers loads as GPT-2 (`GPT2LMHeadModel`): `config.json` from
//! `model_args`, the Linear weights transposed to `Conv1D`'s `[in, out]`, the biases that
//! `bias=False` leaves out written as zeros (what that model computes), and the tied
//! `lm_head.weight` and causal-mask buffers left out, as transformers saves GPT-2.
//!
//! The window is averaged in nanoGPT's own layout first, by the same plan and kernel as every
//! average, into a staging folder inside the output; then each tensor is converted from there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AverageError, AverageInput};
use crate::checkpoint::{is_buffer, DType, Format, SafetensorsWriter, TensorInfo, WeightsReader};
use crate::model::gpt2::{self, Gpt2Config, Layout};
use crate::model::nanogpt;
use crate::progress::Reporter;

/// The folder inside the output that holds the average in nanoGPT's layout until converted.
pub(crate) const STAGING: &str = ".nanogpt-average";

/// What the provenance says of the conversion.
pub(crate) const PROVENANCE: &str = "nanoGPT checkpoints converted to transformers' GPT-2 \
     (GPT2LMHeadModel): config.json from model_args, nn.Linear weights transposed to Conv1D, \
     absent biases (bias=False) as zeros, tied lm_head.weight and attention buffers left out";

/// `model_args` that decide the architecture: inputs must agree on every one.
const ARCH_ARGS: &[&str] = &[
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "bias",
    "vocab_size",
];

/// A window of nanoGPT checkpoints to be written as GPT-2.
#[derive(Debug)]
pub(crate) struct NanoGpt {
    pub cfg: Gpt2Config,
    /// The checkpoint whose `model_args` gave the config.
    pub args_from: PathBuf,
}

/// The conversion this window needs: `Some` when the newest input is a nanoGPT `.pt` (a
/// torch zip with `model_args`) and no input has a `config.json` (which would describe the
/// model instead). Every input's `model_args` must describe the same architecture.
pub(crate) fn nanogpt_window(
    inputs: &[AverageInput],
    readers: &[WeightsReader],
    newest: usize,
    has_config: bool,
) -> Result<Option<NanoGpt>, AverageError> {
    if has_config || readers[newest].format() != Format::TorchPt {
        return Ok(None);
    }
    let args_of = |i: usize| -> Result<Option<serde_json::Map<String, Value>>, AverageError> {
        let pt = readers[i].files()[0];
        nanogpt::read_model_args(pt).map_err(|problem| AverageError::Config {
            path: pt.to_path_buf(),
            problem: crate::model::one_line(&problem),
        })
    };
    let Some(args) = args_of(newest)? else {
        return Ok(None);
    };
    let newest_pt = readers[newest].files()[0].to_path_buf();
    for i in (0..inputs.len()).filter(|&i| i != newest) {
        let pt = readers[i].files()[0].to_path_buf();
        let Some(other) = args_of(i)? else {
            return Err(AverageError::Mismatch(format!(
                "{} has model_args (nanoGPT) but {} has none: checkpoints of different kinds cannot be averaged",
                newest_pt.display(),
                pt.display()
            )));
        };
        if let Some(f) = ARCH_ARGS.iter().find(|f| args.get(**f) != other.get(**f)) {
            let show = |v: Option<&Value>| v.map_or("absent".into(), Value::to_string);
            return Err(AverageError::Mismatch(format!(
                "model_args '{f}' is {} in {} but {} in {}: checkpoints of different architectures cannot be averaged",
                show(args.get(*f)),
                newest_pt.display(),
                show(other.get(*f)),
                pt.display()
            )));
        }
    }
    let cfg = Gpt2Config::from_nanogpt(&args).map_err(|problem| AverageError::Config {
        path: newest_pt.clone(),
        problem: format!("model_args: {problem}"),
    })?;
    Ok(Some(NanoGpt {
        cfg,
        args_from: newest_pt,
    }))
}

/// Where one tensor of the GPT-2 output comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Source {
    /// The averaged tensor of this name, as it is.
    Copy(String),
    /// The averaged `nn.Linear` weight of this name (`[out, in]`), transposed.
    Transpose(String),
    /// Zeros: a bias that `bias=False` leaves out.
    Zeros,
}

/// The GPT-2 output's tensors (transformers' names, order and `Conv1D` shapes), each with its
/// source among the averaged nanoGPT tensors `averaged`. Fails naming the tensor when one is
/// missing or has another shape, or when a tensor is left over that GPT-2 has no place for
/// (other than the tied head and buffers).
pub(crate) fn gpt2_plan(
    cfg: &Gpt2Config,
    averaged: &[TensorInfo],
) -> Result<Vec<(TensorInfo, Source)>, String> {
    let by_name: HashMap<&str, &TensorInfo> =
        averaged.iter().map(|t| (t.name.as_str(), t)).collect();
    let hf = Gpt2Config {
        layout: Layout::Conv1D,
        bias: true,
        tie_word_embeddings: true,
        prefix: "transformer.".into(),
        ..cfg.clone()
    };
    // The dtype zeros are written in: that of the weights (the embedding's).
    let wte = format!("{}wte.weight", hf.prefix);
    let float = by_name
        .get(wte.as_str())
        .map(|t| t.dtype)
        .ok_or_else(|| format!("tensor '{wte}' is missing"))?;
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (name, shape) in gpt2::parameter_shapes(&hf) {
        let linear = ["c_attn", "c_proj", "c_fc"]
            .iter()
            .any(|l| name.ends_with(&format!(".{l}.weight")));
        let want: Vec<usize> = if linear {
            shape.iter().rev().copied().collect()
        } else {
            shape.clone()
        };
        let source = match by_name.get(name.as_str()) {
            Some(t) if t.shape != want => {
                return Err(format!(
                    "tensor '{name}' has shape {:?}, model_args give {want:?}",
                    t.shape
                ))
            }
            Some(_) if linear => Source::Transpose(name.clone()),
            Some(_) => Source::Copy(name.clone()),
            None if !cfg.bias && name.ends_with(".bias") => Source::Zeros,
            None => return Err(format!("tensor '{name}' is missing")),
        };
        used.insert(name.clone());
        let dtype = by_name.get(name.as_str()).map_or(float, |t| t.dtype);
        out.push((TensorInfo { name, dtype, shape }, source));
    }
    let head = "lm_head.weight";
    if let Some(t) = averaged
        .iter()
        .find(|t| !used.contains(&t.name) && t.name != head && !is_buffer(&t.name))
    {
        return Err(format!(
            "tensor '{}' has no place in GPT-2 (model_args: n_layer {}, bias {})",
            t.name, cfg.n_layer, cfg.bias
        ));
    }
    Ok(out)
}

/// `[rows, cols]` row-major elements of `elem` bytes → `[cols, rows]`.
pub(crate) fn transpose_bytes(src: &[u8], rows: usize, cols: usize, elem: usize) -> Vec<u8> {
    assert_eq!(src.len(), rows * cols * elem, "transpose: size");
    let mut dst = vec![0u8; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            let s = (r * cols + c) * elem;
            let d = (c * rows + r) * elem;
            dst[d..d + elem].copy_from_slice(&src[s..s + elem]);
        }
    }
    dst
}

impl NanoGpt {
    /// Converts the average in `staging` into GPT-2 weights in `out` (sharded above
    /// `shard_size`); returns the bytes written and the weights' dtype (the embedding's). The
    /// caller removes `staging`.
    pub(crate) fn write_gpt2(
        &self,
        staging: &Path,
        out: &Path,
        shard_size: u64,
        reporter: &Reporter,
    ) -> Result<(u64, DType), AverageError> {
        let avg = WeightsReader::open(staging)?;
        let plan = gpt2_plan(&self.cfg, avg.tensors()).map_err(|problem| AverageError::Config {
            path: self.args_from.clone(),
            problem,
        })?;
        let mut writer = SafetensorsWriter::create(
            out,
            plan.iter().map(|(t, _)| t.clone()).collect(),
            shard_size,
        )?;
        for (info, source) in &plan {
            reporter.check()?;
            match source {
                Source::Copy(name) => writer.write(&info.name, &avg.bytes(name)?)?,
                Source::Transpose(name) => {
                    let bytes = avg.bytes(name)?;
                    // Stored `[out, in]`; the output is `[in, out]` = info.shape.
                    let (rows, cols) = (info.shape[1], info.shape[0]);
                    let t = transpose_bytes(&bytes, rows, cols, info.dtype.size_in_bytes());
                    writer.write(&info.name, &t)?
                }
                Source::Zeros => writer.write(&info.name, &vec![0u8; info.nbytes()])?,
            }
        }
        let dtype = plan[0].0.dtype;
        Ok((writer.finish()?, dtype))
    }

    /// transformers' `config.json` for the output, its dtype field the output's.
    pub(crate) fn config_json(&self, dtype: DType) -> String {
        let mut cfg = self.cfg.to_hf_json();
        let name = match dtype {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            _ => "float32",
        };
        cfg["torch_dtype"] = name.into();
        serde_json::to_string_pretty(&cfg).expect("JSON of plain values")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(bias: bool) -> Gpt2Config {
        let args = serde_json::json!({"n_layer": 1, "n_head": 2, "n_embd": 4, "block_size": 8,
            "bias": bias, "vocab_size": 10});
        Gpt2Config::from_nanogpt(args.as_object().unwrap()).unwrap()
    }

    fn nanogpt_tensors(bias: bool) -> Vec<TensorInfo> {
        let t = |name: &str, shape: &[usize]| TensorInfo {
            name: name.into(),
            dtype: DType::F16,
            shape: shape.to_vec(),
        };
        let mut v = vec![
            t("transformer.wte.weight", &[10, 4]),
            t("transformer.wpe.weight", &[8, 4]),
            t("transformer.h.0.ln_1.weight", &[4]),
            t("transformer.h.0.attn.c_attn.weight", &[12, 4]),
            t("transformer.h.0.attn.c_proj.weight", &[4, 4]),
            t("transformer.h.0.attn.bias", &[1, 1, 8, 8]),
            t("transformer.h.0.ln_2.weight", &[4]),
            t("transformer.h.0.mlp.c_fc.weight", &[16, 4]),
            t("transformer.h.0.mlp.c_proj.weight", &[4, 16]),
            t("transformer.ln_f.weight", &[4]),
            t("lm_head.weight", &[10, 4]),
        ];
        if bias {
            for (n, s) in [
                ("transformer.h.0.ln_1.bias", 4),
                ("transformer.h.0.attn.c_attn.bias", 12),
                ("transformer.h.0.attn.c_proj.bias", 4),
                ("transformer.h.0.ln_2.bias", 4),
                ("transformer.h.0.mlp.c_fc.bias", 16),
                ("transformer.h.0.mlp.c_proj.bias", 4),
                ("transformer.ln_f.bias", 4),
            ] {
                v.push(t(n, &[s]));
            }
        }
        v
    }

    #[test]
    fn the_plan_transposes_linears_zeroes_absent_biases_and_drops_the_tied_head() {
        for bias in [true, false] {
            let plan = gpt2_plan(&cfg(bias), &nanogpt_tensors(bias)).unwrap();
            let get = |n: &str| plan.iter().find(|(t, _)| t.name == n).unwrap();
            let (t, s) = get("transformer.h.0.mlp.c_fc.weight");
            assert_eq!(
                (t.shape.as_slice(), s),
                (&[4, 16][..], &Source::Transpose(t.name.clone()))
            );
            let (t, s) = get("transformer.h.0.attn.c_attn.bias");
            assert_eq!(t.shape, [12]);
            assert_eq!(t.dtype, DType::F16);
            if bias {
                assert_eq!(s, &Source::Copy(t.name.clone()));
            } else {
                assert_eq!(s, &Source::Zeros);
            }
            assert!(plan.iter().all(|(t, _)| t.name != "lm_head.weight"));
            assert!(plan.iter().all(|(t, _)| !t.name.ends_with(".attn.bias")));
            // GPT2LMHeadModel's parameters, one each: 2 embeddings, 12 per layer, ln_f's two.
            assert_eq!(plan.len(), 2 + 12 + 2);
        }
    }

    #[test]
    fn the_plan_names_a_missing_misshapen_or_extra_tensor() {
        let mut t = nanogpt_tensors(true);
        t.retain(|t| t.name != "transformer.h.0.attn.c_proj.bias");
        let e = gpt2_plan(&cfg(true), &t).unwrap_err();
        assert_eq!(e, "tensor 'transformer.h.0.attn.c_proj.bias' is missing");
        let mut t = nanogpt_tensors(false);
        t[3].shape = vec![4, 12]; // c_attn stored as Conv1D already
        let e = gpt2_plan(&cfg(false), &t).unwrap_err();
        assert!(e.starts_with("tensor 'transformer.h.0.attn.c_attn.weight' has shape [4, 12], model_args give [12, 4]"), "{e}");
        let mut t = nanogpt_tensors(false);
        t.push(TensorInfo {
            name: "transformer.h.1.ln_1.weight".into(),
            dtype: DType::F16,
            shape: vec![4],
        });
        let e = gpt2_plan(&cfg(false), &t).unwrap_err();
        assert!(
            e.starts_with("tensor 'transformer.h.1.ln_1.weight' has no place in GPT-2"),
            "{e}"
        );
    }

    #[test]
    fn transpose_moves_whole_elements() {
        // [2, 3] of 2-byte elements 0..6 → [3, 2].
        let src: Vec<u8> = (0u8..6).flat_map(|i| [i, 100 + i]).collect();
        let t = transpose_bytes(&src, 2, 3, 2);
        let order: Vec<u8> = t.chunks(2).map(|c| c[0]).collect();
        assert_eq!(order, [0, 3, 1, 4, 2, 5]);
        assert!(t.chunks(2).all(|c| c[1] == 100 + c[0]));
    }
}
