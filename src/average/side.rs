//! What goes beside the averaged weights: the window's `config.json` (every input's checked to
//! describe the same architecture), the newest input's tokenizer files (regular files inside
//! the checkpoint only), and the provenance record `lawa.json`.

use std::fs;
use std::path::{Path, PathBuf};

use super::plan::Planned;
use super::{AverageError, AverageInput, AverageOptions};
use crate::checkpoint::{is_buffer, DType, WeightsReader};

/// Files copied from the newest input beside the weights, when present.
const SIDE_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
];

/// Where an input's config and tokenizer live: the model dir, or a weights file's folder.
fn side_dir(input: &Path) -> PathBuf {
    if input.is_dir() {
        input.to_path_buf()
    } else {
        input.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// The folder a side file may resolve into: the checkpoint dir itself, or for an HF cache
/// snapshot (`models--ORG--NAME/snapshots/REV/...`, whose files link to `../../blobs/`) the
/// repo's cache folder.
fn side_root(dir: &Path) -> PathBuf {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for a in dir.ancestors() {
        let is_snapshots = a.file_name().is_some_and(|n| n == "snapshots");
        if let (true, Some(repo)) = (is_snapshots, a.parent()) {
            if repo
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("models--"))
            {
                return repo.to_path_buf();
            }
        }
    }
    dir
}

/// `dir/name` when it is a regular file inside the checkpoint (links followed only while they
/// stay inside it); `Err(why)` when it is there but must not be copied; `None` when absent.
fn side_file(dir: &Path, name: &str) -> Option<Result<PathBuf, String>> {
    let p = dir.join(name);
    fs::symlink_metadata(&p).ok()?;
    let why = |w: &str| Some(Err(format!("{}: {w}; not copied", p.display())));
    let Ok(real) = p.canonicalize() else {
        return why("a symbolic link to nothing");
    };
    if !real.starts_with(side_root(dir)) {
        return why(&format!(
            "a link to {}, outside the checkpoint",
            real.display()
        ));
    }
    match fs::metadata(&real) {
        Ok(m) if m.is_file() => Some(Ok(p)),
        _ => why("not a regular file"),
    }
}

/// The parsed object of a `config.json`, or None when it is not a JSON object.
pub(crate) fn config_json(text: &[u8]) -> Option<JsonObject> {
    match serde_json::from_slice(text) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The config fields that define an architecture (GPT-NeoX, Llama-like and GPT-2 spellings):
/// two checkpoints that differ in any of these are different models.
const ARCH_FIELDS: &[&str] = &[
    "model_type",
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "rotary_pct",
    "partial_rotary_factor",
    "rotary_emb_base",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "use_parallel_residual",
    "hidden_act",
    "layer_norm_eps",
    "rms_norm_eps",
    "tie_word_embeddings",
    "n_embd",
    "n_layer",
    "n_head",
    "n_positions",
    "n_inner",
];

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// What goes beside the weights: (name, source, contents), and notes on what was left out.
pub(crate) struct SideFiles {
    pub files: Vec<(&'static str, PathBuf, Vec<u8>)>,
    pub notes: Vec<String>,
}

fn read_side(path: &Path) -> Result<Vec<u8>, AverageError> {
    fs::read(path).map_err(|e| AverageError::Io {
        path: path.to_path_buf(),
        error: e,
    })
}

/// Whether any input has a `config.json` beside its weights (readable or not).
pub(crate) fn any_config(inputs: &[AverageInput]) -> bool {
    inputs
        .iter()
        .any(|i| side_file(&side_dir(&i.path), "config.json").is_some())
}

/// The side files of the output: the window's `config.json` (every input's config checked to
/// parse and to describe the same architecture; the newest one that has a config is used), and
/// the newest input's tokenizer files. Only regular files inside a checkpoint are read.
pub(crate) fn side_files(
    inputs: &[AverageInput],
    newest: usize,
    config_made: bool,
) -> Result<SideFiles, AverageError> {
    let mut notes = Vec::new();
    // Newest first, so the first config found is the one the output gets.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((inputs[i].step, i)));
    let mut configs: Vec<(usize, PathBuf, Vec<u8>, JsonObject)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &i in &order {
        let dir = side_dir(&inputs[i].path);
        match side_file(&dir, "config.json") {
            None => {}
            Some(Err(why)) => notes.push(why),
            Some(Ok(p)) => {
                if !seen.insert(p.clone()) {
                    continue;
                }
                let text = read_side(&p)?;
                let Some(map) = config_json(&text) else {
                    return Err(AverageError::Config {
                        path: p,
                        problem: "not a JSON object: the output would have no usable config".into(),
                    });
                };
                configs.push((i, p, text, map));
            }
        }
    }
    if let Some((_, base_path, _, base)) = configs.first() {
        for (_, path, _, map) in &configs[1..] {
            for f in ARCH_FIELDS {
                if base.get(*f) != map.get(*f) {
                    let show = |v: Option<&serde_json::Value>| {
                        v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into())
                    };
                    return Err(AverageError::Mismatch(format!(
                        "config field '{f}' is {} in {} but {} in {}: checkpoints of different architectures cannot be averaged",
                        show(base.get(*f)),
                        base_path.display(),
                        show(map.get(*f)),
                        path.display()
                    )));
                }
            }
        }
    }
    let mut files = Vec::new();
    match configs.into_iter().next() {
        Some((i, p, text, _)) => {
            if i != newest {
                notes.push(format!(
                    "config.json comes from step {} ({}): the newest input has none",
                    inputs[i].step,
                    p.display()
                ));
            }
            files.push(("config.json", p, text));
        }
        None if config_made => {}
        None => notes.push(
            "no input has a config.json: the output holds the weights only (eval needs a config)"
                .into(),
        ),
    }
    let dir = side_dir(&inputs[newest].path);
    for f in SIDE_FILES.iter().filter(|f| **f != "config.json") {
        match side_file(&dir, f) {
            None => {}
            Some(Err(why)) => notes.push(why),
            Some(Ok(p)) => {
                let text = read_side(&p)?;
                files.push((f, p, text));
            }
        }
    }
    Ok(SideFiles { files, notes })
}

/// A note when the window's inputs store their weights in different dtypes: which dtype the
/// output has, and why.
pub(crate) fn mixed_dtypes_note(
    inputs: &[AverageInput],
    readers: &[WeightsReader],
    plan: &[Planned],
    newest: usize,
    opts: &AverageOptions,
) -> Option<String> {
    let mixed = plan
        .iter()
        .any(|p| p.in_dtypes.iter().any(|&d| d != p.in_dtypes[0]));
    if !mixed {
        return None;
    }
    let each: Vec<String> = inputs
        .iter()
        .zip(readers)
        .map(|(i, r)| {
            let d = r.main_dtype().map(|d| d.to_string());
            format!("step {} {}", i.step, d.as_deref().unwrap_or("?"))
        })
        .collect();
    let out = plan
        .iter()
        .filter(|p| p.out.dtype.is_float() && !is_buffer(&p.out.name))
        .max_by_key(|p| p.out.numel())
        .map(|p| p.out.dtype.to_string())
        .unwrap_or_else(|| "unchanged".into());
    let why = if opts.dtype == super::OutDType::Keep {
        format!(
            "the dtype of the newest input (step {}); accumulated in f32; --dtype chooses another",
            inputs[newest].step
        )
    } else {
        format!("as --dtype {} asks; accumulated in f32", opts.dtype)
    };
    Some(format!(
        "the inputs mix dtypes ({}): the output is {out}, {why}",
        each.join(", ")
    ))
}

/// `config.json` with its dtype field (`torch_dtype`, or `dtype` in newer transformers) set to
/// the output dtype; left as is when it does not parse (callers have checked it does).
pub(crate) fn retag_config(text: &[u8], dtype: DType) -> String {
    let text = String::from_utf8_lossy(text);
    let text = text.as_ref();
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(text) else {
        return text.to_string();
    };
    let name = match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    };
    for key in ["torch_dtype", "dtype"] {
        if map.contains_key(key) {
            map.insert(key.into(), name.into());
        }
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_else(|_| text.into())
}

#[derive(serde::Serialize)]
pub(crate) struct Provenance<'a> {
    tool: &'static str,
    version: &'static str,
    scheme: &'a super::Scheme,
    dtype: String,
    device: &'static str,
    created_unix: u64,
    /// How the output's layout differs from the inputs' (nanoGPT → GPT-2), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    converted: Option<&'static str>,
    inputs: Vec<ProvenanceInput<'a>>,
}

#[derive(serde::Serialize)]
pub(crate) struct ProvenanceInput<'a> {
    path: &'a Path,
    step: u64,
    weight: f64,
    format: String,
    header_sha256: String,
}

pub(crate) fn provenance<'a>(
    inputs: &'a [AverageInput],
    readers: &[WeightsReader],
    opts: &'a AverageOptions,
    plan: &[Planned],
    newest: usize,
    converted: Option<&'static str>,
) -> Provenance<'a> {
    // The dtype of most output weights, as `lawa list` would report it.
    let main = plan
        .iter()
        .filter(|p| p.out.dtype.is_float() && !is_buffer(&p.out.name))
        .max_by_key(|p| p.out.numel())
        .map(|p| p.out.dtype)
        .or_else(|| readers[newest].main_dtype());
    Provenance {
        tool: "lawa",
        version: env!("CARGO_PKG_VERSION"),
        scheme: &opts.scheme,
        dtype: main.map(|d| d.to_string()).unwrap_or_default(),
        device: crate::device::describe(&opts.device),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        converted,
        inputs: inputs
            .iter()
            .zip(readers)
            .map(|(i, r)| ProvenanceInput {
                path: &i.path,
                step: i.step,
                weight: i.weight,
                format: r.format().to_string(),
                header_sha256: r.header_hash(),
            })
            .collect(),
    }
}
