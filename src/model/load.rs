//! Building a [`GptNeox`] from a Hugging Face model dir (`config.json` + weights in any form).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};

use super::{parameter_shapes, Config, GptNeox, ModelError};
use crate::checkpoint::{var_builder, Format, WeightsReader};

/// A model loaded from a dir, with what callers need to know about it.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    /// The model dir (holding `config.json`).
    pub dir: PathBuf,
    pub config: Config,
    pub model: GptNeox,
    /// The dtype most of the checkpoint's parameters are stored in.
    pub stored_dtype: Option<DType>,
    pub format: Format,
}

/// Loads a model from `path`: a model dir (`config.json` + weights in any form the checkpoint
/// module reads), or one weights file with `config.json` beside it. Weights are converted to
/// `dtype` on `device` (`None`: the stored dtype). Checks first that every tensor the model
/// needs is there with the right shape, so a bad checkpoint fails with its name rather than
/// deep in candle. Non-weight buffers (`attention.bias`, `rotary_emb.inv_freq`, ...) are ignored.
pub fn load_model_dir(
    path: &Path,
    dtype: Option<DType>,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    load_model_dir_with(
        path,
        |stored| dtype.or(stored).unwrap_or(DType::F32),
        device,
    )
}

/// As [`load_model_dir`], with the dtype chosen by `choose` from the stored dtype (known once
/// the weights' headers are read, before any tensor is loaded).
pub fn load_model_dir_with(
    path: &Path,
    choose: impl FnOnce(Option<DType>) -> DType,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    };
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ModelError::NoConfig {
            dir: dir.to_path_buf(),
        });
    }
    let config = Config::load(&config_path)?;
    let reader = WeightsReader::open(path)?;
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
    check_tensors(&config, &shapes, &weights_path)?;
    let stored_dtype = reader.main_dtype().and_then(|d| d.to_candle());
    let format = reader.format();
    let dtype = choose(stored_dtype);
    let vb = var_builder(Arc::new(reader), dtype, device);
    let model = GptNeox::new(&config, vb).map_err(|e| ModelError::weights(&weights_path, e))?;
    Ok(LoadedModel {
        dir: dir.to_path_buf(),
        config,
        model,
        stored_dtype,
        format,
    })
}

/// Every parameter of `cfg` present with its shape; `lm_head.weight` may stand in for
/// `embed_out.weight` (transformers 5 saves either).
pub fn check_tensors(
    cfg: &Config,
    have: &HashMap<String, Vec<usize>>,
    path: &Path,
) -> Result<(), ModelError> {
    for (name, want) in parameter_shapes(cfg) {
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
