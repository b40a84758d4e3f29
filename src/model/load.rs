//! Building a model of any supported family from a model dir (`config.json` + weights in any
//! form), or from a nanoGPT `.pt` (config from its `model_args`).
//!
//! Everything that can be checked without allocating is checked first, in this order: the
//! config's fields (sizes bounded, eps positive, unsupported fields named), the family against
//! the weights' names, the layer count against the layers the weights hold (a config with
//! fewer or more layers is an error, not a truncated or exploding model), then every
//! tensor's presence and shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::decoder::{self, Decoder, DecoderConfig};
use super::family::Family;
use super::gpt2::{self, Gpt2, Gpt2Config};
use super::{gpt_neox, Config, GptNeox, ModelError};
use crate::checkpoint::{var_builder, Format, WeightsReader};
use crate::kernels::{Fused, Kernels};

/// A family's configuration, mapped from its `config.json` (or nanoGPT's `model_args`).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    GptNeox(Config),
    Decoder(DecoderConfig),
    Gpt2(Gpt2Config),
}

impl ModelConfig {
    /// Parses a `config.json`: the family from `architectures`/`model_type`, then its fields.
    pub fn from_json(text: &str) -> Result<ModelConfig, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let family = Family::detect(&value)?;
        let map = value
            .as_object()
            .ok_or("config.json is not a JSON object")?;
        Ok(match family {
            Family::GptNeox => ModelConfig::GptNeox(Config::from_json(text)?),
            Family::Gpt2 => ModelConfig::Gpt2(Gpt2Config::from_hf(map)?),
            f => ModelConfig::Decoder(DecoderConfig::from_hf(f, map)?),
        })
    }

    pub fn family(&self) -> Family {
        match self {
            ModelConfig::GptNeox(_) => Family::GptNeox,
            ModelConfig::Decoder(c) => c.family,
            ModelConfig::Gpt2(_) => Family::Gpt2,
        }
    }

    pub fn info(&self) -> ModelInfo {
        let (vocab_size, max_position_embeddings, hidden_size, num_hidden_layers) = match self {
            ModelConfig::GptNeox(c) => (
                c.vocab_size,
                c.max_position_embeddings,
                c.hidden_size,
                c.num_hidden_layers,
            ),
            ModelConfig::Decoder(c) => (
                c.vocab_size,
                c.max_position_embeddings,
                c.hidden_size,
                c.num_hidden_layers,
            ),
            ModelConfig::Gpt2(c) => (c.vocab_size, c.n_positions, c.n_embd, c.n_layer),
        };
        ModelInfo {
            family: self.family(),
            vocab_size,
            max_position_embeddings,
            hidden_size,
            num_hidden_layers,
        }
    }

    /// The embedding's tensor name: a family's signature in the weights.
    fn embedding_name(&self) -> String {
        match self {
            ModelConfig::GptNeox(_) => "gpt_neox.embed_in.weight".into(),
            ModelConfig::Decoder(_) => "model.embed_tokens.weight".into(),
            ModelConfig::Gpt2(c) => format!("{}wte.weight", c.prefix),
        }
    }

    /// The prefix of layer `i`'s tensor names, without the index.
    fn layers_prefix(&self) -> String {
        match self {
            ModelConfig::GptNeox(_) => "gpt_neox.layers.".into(),
            ModelConfig::Decoder(_) => "model.layers.".into(),
            ModelConfig::Gpt2(c) => format!("{}h.", c.prefix),
        }
    }

    /// Every parameter the checkpoint must hold, with its stored shape.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            ModelConfig::GptNeox(c) => gpt_neox::parameter_shapes(c),
            ModelConfig::Decoder(c) => decoder::parameter_shapes(c),
            ModelConfig::Gpt2(c) => gpt2::parameter_shapes(c),
        }
    }
}

/// What every caller needs to know of a model, whatever its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub family: Family,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
}

/// A loaded model of any family.
#[derive(Clone, Debug)]
pub enum Model {
    GptNeox(GptNeox),
    Decoder(Decoder),
    Gpt2(Gpt2),
}

impl Model {
    /// Logits `[B, T, vocab]` for every position of `input_ids: [B, T]` (u32).
    pub fn forward(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        self.logits(&self.hidden_states(input_ids)?)
    }

    /// The final-normed hidden states `[B, T, hidden]`; with [`Model::logits`] an evaluator
    /// projects to the vocabulary in row chunks.
    pub fn hidden_states(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Model::GptNeox(m) => m.hidden_states(input_ids),
            Model::Decoder(m) => m.hidden_states(input_ids),
            Model::Gpt2(m) => m.hidden_states(input_ids),
        }
    }

    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Model::GptNeox(m) => m.logits(hidden),
            Model::Decoder(m) => m.logits(hidden),
            Model::Gpt2(m) => m.logits(hidden),
        }
    }

    /// The differentiable forward (GPT-NeoX only: the demo trains GPT-NeoX).
    pub fn forward_train(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Model::GptNeox(m) => m.forward_train(input_ids),
            _ => candle_core::bail!("the training forward is implemented for GPT-NeoX only"),
        }
    }

    /// The eval kernels chosen when the model was built.
    pub fn kernels(&self) -> Kernels {
        match self {
            Model::GptNeox(m) => m.kernels(),
            Model::Decoder(m) => m.kernels(),
            Model::Gpt2(m) => m.kernels(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Model::GptNeox(m) => m.dtype(),
            Model::Decoder(m) => m.dtype(),
            Model::Gpt2(m) => m.dtype(),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Model::GptNeox(m) => m.device(),
            Model::Decoder(m) => m.device(),
            Model::Gpt2(m) => m.device(),
        }
    }
}

/// Where a model's configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// A `config.json`.
    ConfigJson(PathBuf),
    /// `model_args` inside a nanoGPT `.pt`.
    NanoGptArgs(PathBuf),
}

impl ConfigSource {
    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::ConfigJson(p) | ConfigSource::NanoGptArgs(p) => p,
        }
    }
}

/// A model loaded from a dir, with what callers need to know about it.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    /// The model dir (holding `config.json`, or the nanoGPT `.pt`).
    pub dir: PathBuf,
    pub config: ModelInfo,
    pub arch: ModelConfig,
    pub config_source: ConfigSource,
    pub model: Model,
    /// The dtype most of the checkpoint's parameters are stored in.
    pub stored_dtype: Option<DType>,
    pub format: Format,
}

/// Loads a model from `path`: a model dir (`config.json` + weights in any form the checkpoint
/// module reads), one weights file with `config.json` beside it, or a nanoGPT `.pt` (file or
/// the dir holding it) without one. Weights are converted to `dtype` on `device` (`None`: the
/// stored dtype). Non-weight buffers (`attention.bias`, `rotary_emb.inv_freq`, ...) are ignored.
pub fn load_model_dir(
    path: &Path,
    dtype: Option<DType>,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    load_model_dir_with(
        path,
        |stored| dtype.or(stored).unwrap_or(DType::F32),
        device,
        Fused::On,
    )
}

/// The config of the model at `path` (see [`load_model_dir`]) and where it came from, with the
/// weights reader; nothing is allocated beyond headers.
pub fn read_config(path: &Path) -> Result<(ModelConfig, ConfigSource, WeightsReader), ModelError> {
    let dir = model_dir_of(path);
    let config_path = dir.join("config.json");
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).map_err(|e| ModelError::Config {
            path: config_path.clone(),
            msg: e.to_string(),
        })?;
        let cfg = ModelConfig::from_json(&text).map_err(|msg| ModelError::Config {
            path: config_path.clone(),
            msg,
        })?;
        let reader = WeightsReader::open(path)?;
        return Ok((cfg, ConfigSource::ConfigJson(config_path), reader));
    }
    // No config.json: a nanoGPT `.pt` carries its shape in `model_args`.
    let reader = match WeightsReader::open(path) {
        Ok(r) if r.format() == Format::TorchPt => r,
        _ => {
            return Err(ModelError::NoConfig {
                dir: dir.to_path_buf(),
            })
        }
    };
    let pt = reader.files()[0].to_path_buf();
    let bad = |msg: String| ModelError::Config {
        path: pt.clone(),
        msg,
    };
    let args = super::nanogpt::read_model_args(&pt)
        .map_err(|e| bad(super::one_line(&e)))?
        .ok_or_else(|| ModelError::NoConfig {
            dir: dir.to_path_buf(),
        })?;
    let cfg = Gpt2Config::from_nanogpt(&args).map_err(|e| bad(format!("model_args: {e}")))?;
    Ok((
        ModelConfig::Gpt2(cfg),
        ConfigSource::NanoGptArgs(pt),
        reader,
    ))
}

fn model_dir_of(path: &Path) -> &Path {
    if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    }
}

/// As [`load_model_dir`], with the dtype chosen by `choose` from the stored dtype (known once
/// the weights' headers are read, before any tensor is loaded) and our GPU kernels allowed by
/// `fused`.
pub fn load_model_dir_with(
    path: &Path,
    choose: impl FnOnce(Option<DType>) -> DType,
    device: &Device,
    fused: Fused,
) -> Result<LoadedModel, ModelError> {
    let dir = model_dir_of(path).to_path_buf();
    let (mut cfg, source, reader) = read_config(path)?;
    let shapes: HashMap<String, Vec<usize>> = reader
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    // Name the weights file when there is one, else the dir (shards).
    let weights_path = match reader.files().as_slice() {
        [one] => one.to_path_buf(),
        _ => reader.path().to_path_buf(),
    };
    // The original `gpt2` checkpoints have no `transformer.` prefix.
    if let ModelConfig::Gpt2(c) = &mut cfg {
        if !shapes.contains_key("transformer.wte.weight") && shapes.contains_key("wte.weight") {
            c.prefix = String::new();
        }
    }
    let stored_dtype = reader.main_dtype().and_then(|d| d.to_candle());
    let format = reader.format();
    let dtype = choose(stored_dtype);
    let vb = var_builder(Arc::new(reader), dtype, device);
    build(
        dir,
        cfg,
        source,
        &shapes,
        &weights_path,
        vb,
        stored_dtype,
        format,
        fused,
    )
}

/// A model of the config at `config` over weights already in memory (a sweep's averaged
/// window): the same checks as [`load_model_dir`], weights converted to `dtype` on `device`.
/// `dir` names the model in messages; `fused` as in [`load_model_dir_with`].
pub fn load_model_from_tensors(
    dir: &Path,
    config: &Path,
    tensors: HashMap<String, Tensor>,
    stored_dtype: Option<DType>,
    dtype: DType,
    device: &Device,
    fused: Fused,
) -> Result<LoadedModel, ModelError> {
    let bad = |msg: String| ModelError::Config {
        path: config.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(config).map_err(|e| bad(e.to_string()))?;
    let mut cfg = ModelConfig::from_json(&text).map_err(bad)?;
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.dims().to_vec()))
        .collect();
    if let ModelConfig::Gpt2(c) = &mut cfg {
        if !shapes.contains_key("transformer.wte.weight") && shapes.contains_key("wte.weight") {
            c.prefix = String::new();
        }
    }
    let vb = candle_nn::VarBuilder::from_tensors(tensors, dtype, device);
    build(
        dir.to_path_buf(),
        cfg,
        ConfigSource::ConfigJson(config.to_path_buf()),
        &shapes,
        dir,
        vb,
        stored_dtype,
        crate::checkpoint::Format::Safetensors,
        fused,
    )
}

/// The checks of the config against the weights' shapes, then the family's model over `vb`.
#[allow(clippy::too_many_arguments)]
fn build(
    dir: PathBuf,
    cfg: ModelConfig,
    source: ConfigSource,
    shapes: &HashMap<String, Vec<usize>>,
    weights_path: &Path,
    vb: candle_nn::VarBuilder<'_>,
    stored_dtype: Option<DType>,
    format: Format,
    fused: Fused,
) -> Result<LoadedModel, ModelError> {
    check_against_weights(&cfg, source.path(), shapes, weights_path)?;
    check_tensors(&cfg, shapes, weights_path)?;
    let weights = |e| ModelError::weights(weights_path, e);
    // The eval kernels, chosen once for the model's device and dtype.
    let k = Kernels::choose(vb.device(), vb.dtype(), fused);
    let model = match &cfg {
        ModelConfig::GptNeox(c) => {
            Model::GptNeox(GptNeox::new(c, vb).map_err(weights)?.with_kernels(k))
        }
        ModelConfig::Decoder(c) => {
            Model::Decoder(Decoder::new(c, vb).map_err(weights)?.with_kernels(k))
        }
        ModelConfig::Gpt2(c) => Model::Gpt2(Gpt2::new(c, vb).map_err(weights)?.with_kernels(k)),
    };
    Ok(LoadedModel {
        dir,
        config: cfg.info(),
        arch: cfg,
        config_source: source,
        model,
        stored_dtype,
        format,
    })
}

/// The config against the weights' names, before any per-tensor work: the family's embedding
/// is there, and the config's layer count is the number of layers the weights hold.
fn check_against_weights(
    cfg: &ModelConfig,
    config_path: &Path,
    have: &HashMap<String, Vec<usize>>,
    weights_path: &Path,
) -> Result<(), ModelError> {
    let err = |msg: String| ModelError::Config {
        path: config_path.to_path_buf(),
        msg,
    };
    let family = cfg.family();
    let embed = cfg.embedding_name();
    if !have.contains_key(&embed) {
        let looks_like = [
            ("gpt_neox.embed_in.weight", "GPT-NeoX"),
            ("model.embed_tokens.weight", "a Llama-like decoder"),
            ("transformer.wte.weight", "GPT-2"),
            ("wte.weight", "GPT-2"),
        ]
        .iter()
        .find(|(probe, _)| have.contains_key(*probe))
        .map(|(_, what)| format!(" (its names are {what}'s)"))
        .unwrap_or_default();
        return Err(err(format!(
            "config is {} but {} has no {embed}{looks_like}",
            family.architecture(),
            weights_path.display()
        )));
    }
    let prefix = cfg.layers_prefix();
    let held = have
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix(&prefix)?;
            let (idx, _) = rest.split_once('.')?;
            idx.parse::<usize>().ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    let declared = cfg.info().num_hidden_layers;
    if declared != held {
        let field = if family == Family::Gpt2 {
            "n_layer"
        } else {
            "num_hidden_layers"
        };
        return Err(err(format!(
            "{field} is {declared} but {} holds {held} layers ({prefix}0 to {prefix}{})",
            weights_path.display(),
            held.saturating_sub(1)
        )));
    }
    Ok(())
}

/// Every parameter of `cfg` present with its shape. For GPT-NeoX `lm_head.weight` may stand in
/// for `embed_out.weight` (transformers 5 saves either).
pub fn check_tensors(
    cfg: &ModelConfig,
    have: &HashMap<String, Vec<usize>>,
    path: &Path,
) -> Result<(), ModelError> {
    for (name, want) in cfg.parameter_shapes() {
        let found = have.get(&name).or_else(|| {
            (name == "embed_out.weight")
                .then(|| have.get("lm_head.weight"))
                .flatten()
        });
        match found {
            None => {
                return Err(ModelError::MissingTensor {
                    path: path.to_path_buf(),
                    name,
                })
            }
            Some(shape) if *shape != want => {
                return Err(ModelError::WrongShape {
                    path: path.to_path_buf(),
                    name,
                    have: shape.clone(),
                    want,
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}
