//! Building a [`GptNeox`] from a Hugging Face model dir (`config.json` + weights in any form).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::{parameter_shapes, Config, GptNeox, ModelError};

/// A model loaded from a dir, with what callers need to know about it.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub dir: PathBuf,
    pub config: Config,
    pub model: GptNeox,
    /// The dtype most of the checkpoint's parameters are stored in.
    pub stored_dtype: Option<DType>,
}

/// Loads `dir/config.json` and the weights beside it, converted to `dtype` on `device`
/// (`None`: the stored dtype). Checks first that every tensor the model needs is there with
/// the right shape, so a bad checkpoint fails with its name rather than deep in candle.
pub fn load_model_dir(
    dir: &Path,
    dtype: Option<DType>,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    load_model_dir_with(dir, |stored| dtype.or(stored).unwrap_or(DType::F32), device)
}

/// As [`load_model_dir`], with the dtype chosen by `choose` from the stored dtype (known once
/// the weights' headers are read, before any tensor is loaded).
pub fn load_model_dir_with(
    dir: &Path,
    choose: impl FnOnce(Option<DType>) -> DType,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ModelError::NoConfig {
            dir: dir.to_path_buf(),
        });
    }
    let config = Config::load(&config_path)?;
    let weights = Weights::open(dir)?;
    check_tensors(&config, &weights.shapes, &weights.path)?;
    let stored_dtype = weights.main_dtype;
    let dtype = choose(stored_dtype);
    let vb = weights.var_builder(dtype, device)?;
    let model = GptNeox::new(&config, vb).map_err(|e| ModelError::weights(&weights.path, e))?;
    Ok(LoadedModel {
        dir: dir.to_path_buf(),
        config,
        model,
        stored_dtype,
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

/// The weights of a model dir: names and shapes, and how to build a `VarBuilder` over them.
struct Weights {
    path: PathBuf,
    shapes: HashMap<String, Vec<usize>>,
    main_dtype: Option<DType>,
    files: Vec<PathBuf>,
}

impl Weights {
    fn open(dir: &Path) -> Result<Weights, ModelError> {
        let files = safetensors_files(dir)?;
        // SAFETY: the files are memory-mapped read-only; lawa never writes into a checkpoint
        // it reads (outputs are written beside and renamed into place).
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
            .map_err(|e| ModelError::weights(dir, e))?;
        let mut shapes = HashMap::new();
        let mut count: HashMap<DType, usize> = HashMap::new();
        for (name, view) in st.tensors() {
            if let Ok(dt) = DType::try_from(view.dtype()) {
                if dt.is_float() {
                    *count.entry(dt).or_default() += view.shape().iter().product::<usize>();
                }
            }
            shapes.insert(name, view.shape().to_vec());
        }
        let main_dtype = count.into_iter().max_by_key(|(_, n)| *n).map(|(d, _)| d);
        Ok(Weights {
            path: files.first().cloned().unwrap_or_else(|| dir.to_path_buf()),
            shapes,
            main_dtype,
            files,
        })
    }

    fn var_builder(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<VarBuilder<'static>, ModelError> {
        // SAFETY: as in `open`.
        unsafe { VarBuilder::from_mmaped_safetensors(&self.files, dtype, device) }
            .map_err(|e| ModelError::weights(&self.path, e))
    }
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::weights(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::weights(&index, e))?;
        let mut files: Vec<PathBuf> = v["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::weights(&index, "no weight_map"))?
            .values()
            .filter_map(|f| f.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    Err(ModelError::weights(
        dir,
        "no model.safetensors in this model dir",
    ))
}
