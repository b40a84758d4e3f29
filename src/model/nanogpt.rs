//! nanoGPT checkpoints (`torch.save({"model": state_dict, "model_args": {...}, ...})`): the
//! model's shape from `model_args`, and the conversion of its weights to transformers' GPT-2
//! (names unchanged apart from wrapper prefixes, `nn.Linear` `[out, in]` → `Conv1D` `[in, out]`,
//! missing biases as zeros, tied `lm_head` dropped).

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::checkpoint::pickle::{self, Object, Pickle};

/// Largest `data.pkl` read for `model_args` (a nanoGPT checkpoint's holds the optimizer's
/// index too, a few entries per parameter).
const MAX_PICKLE: u64 = 64 << 20;

/// `model_args` of a nanoGPT `.pt`, as JSON; `Ok(None)` for a torch zip without that key.
pub fn read_model_args(path: &Path) -> Result<Option<Map<String, Value>>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a torch zip: {e}"))?;
    let name = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.matches('/').count())
        .map(str::to_string)
        .ok_or("no data.pkl in the archive")?;
    let entry = zip.by_name(&name).map_err(|e| e.to_string())?;
    if entry.size() > MAX_PICKLE {
        return Err(format!("data.pkl is {} bytes: too large", entry.size()));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .take(MAX_PICKLE)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let pk = pickle::parse(&bytes).map_err(|e| e.to_string())?;
    let Some(args) = pk.dict_get(pk.root(), "model_args") else {
        return Ok(None);
    };
    let items = pk.dict_items(args).ok_or("model_args is not a dict")?;
    let mut out = Map::new();
    for &(k, v) in items {
        let Some(key) = pk.as_str(k) else { continue };
        out.insert(key.to_string(), scalar(&pk, v));
    }
    Ok(Some(out))
}

fn scalar(pk: &Pickle, id: pickle::ObjId) -> Value {
    match pk.get(id) {
        Object::Bool(b) => Value::from(*b),
        Object::Int(i) => Value::from(*i),
        Object::Float(f) => Value::from(*f),
        Object::Str(s) => Value::from(s.as_str()),
        _ => Value::Null,
    }
}
