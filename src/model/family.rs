//! Which model family a `config.json` describes (from `architectures`, else `model_type`), in
//! one place, and the checked reading of config fields every family shares.

use serde_json::{Map, Value};

/// A family lawa evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    GptNeox,
    Llama,
    Mistral,
    Olmo,
    Olmo2,
    Qwen2,
    Qwen3,
    Gpt2,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::GptNeox,
        Family::Llama,
        Family::Mistral,
        Family::Olmo,
        Family::Olmo2,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gpt2,
    ];

    /// transformers' causal-LM class name.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::GptNeox => "GPTNeoXForCausalLM",
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Olmo => "OlmoForCausalLM",
            Family::Olmo2 => "Olmo2ForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Gpt2 => "GPT2LMHeadModel",
        }
    }

    /// transformers' `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::GptNeox => "gpt_neox",
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Olmo => "olmo",
            Family::Olmo2 => "olmo2",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gpt2 => "gpt2",
        }
    }

    /// The family of a parsed `config.json`: the first known name in `architectures`, else
    /// `model_type`. An unknown family is an error naming it and listing the supported ones.
    pub fn detect(config: &Value) -> Result<Family, String> {
        let archs: Vec<&str> = config
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in &archs {
            // GPT2Model / LlamaModel (no head) checkpoints carry the same weights minus the head.
            if let Some(f) = Family::ALL.iter().find(|f| f.architecture() == *name) {
                return Ok(*f);
            }
        }
        let model_type = config.get("model_type").and_then(Value::as_str);
        if let Some(mt) = model_type {
            if let Some(f) = Family::ALL.iter().find(|f| f.model_type() == mt) {
                return Ok(*f);
            }
        }
        let named = match (archs.is_empty(), model_type) {
            (false, _) => format!("architecture {}", archs.join(", ")),
            (true, Some(mt)) => format!("model_type {mt}"),
            (true, None) => {
                return Err(format!(
                    "no architectures or model_type field; lawa runs {}",
                    supported()
                ))
            }
        };
        Err(format!("unsupported {named}; lawa runs {}", supported()))
    }
}

/// "GPTNeoXForCausalLM, LlamaForCausalLM, ..." for error messages.
pub fn supported() -> String {
    Family::ALL
        .iter()
        .map(|f| f.architecture())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Largest value any size field may take: beyond every real model, small enough that sums and
/// products of a few sizes cannot overflow. Checked before anything is allocated.
pub const MAX_SIZE: usize = 1 << 24;
/// Most layers a config may declare (the weights are then checked to hold exactly that many).
pub const MAX_LAYERS: usize = 4096;

/// Typed, checked access to a config's fields; every error names the field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn present(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A positive size, at most [`MAX_SIZE`] (layer counts: [`MAX_LAYERS`]).
    pub fn size(&self, key: &str) -> Result<usize, String> {
        match self.opt_size(key)? {
            Some(n) => Ok(n),
            None => Err(format!("missing field {key}")),
        }
    }

    pub fn size_or(&self, key: &str, default: usize) -> Result<usize, String> {
        Ok(self.opt_size(key)?.unwrap_or(default))
    }

    pub fn opt_size(&self, key: &str) -> Result<Option<usize>, String> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        let limit = if key.contains("layer") {
            MAX_LAYERS
        } else {
            MAX_SIZE
        };
        match v.as_u64() {
            Some(0) => Err(format!("{key} must be positive")),
            Some(n) if n as u128 <= limit as u128 => Ok(Some(n as usize)),
            Some(n) => Err(format!(
                "{key} {n} is beyond any real model (limit {limit})"
            )),
            None => Err(format!("{key} must be a positive integer, not {v}")),
        }
    }

    pub fn float_or(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{key} must be a finite number, not {v}")),
        }
    }

    /// A norm epsilon: finite and positive (a negative one turns the norm's input NaN).
    pub fn eps_or(&self, key: &str, default: f64) -> Result<f64, String> {
        let e = self.float_or(key, default)?;
        if e <= 0.0 {
            return Err(format!("{key} {e} must be positive"));
        }
        Ok(e)
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("{key} must be true or false, not {v}")),
        }
    }

    pub fn str_or<'b>(&'b self, key: &str, default: &'b str) -> Result<&'b str, String> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| format!("{key} must be a string, not {v}")),
        }
    }

    /// A field this implementation does not compute: an error naming it unless absent, null
    /// or equal to the value that means "off".
    pub fn refuse_unless(&self, key: &str, off: &[Value]) -> Result<(), String> {
        match self.present(key) {
            Some(v) if !off.contains(v) => Err(format!(
                "unsupported field {key} = {v} (lawa does not implement it, so it would compute a different model)"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_by_architecture_then_model_type() {
        assert_eq!(
            Family::detect(&json!({"architectures": ["Olmo2ForCausalLM"], "model_type": "x"})),
            Ok(Family::Olmo2)
        );
        assert_eq!(
            Family::detect(&json!({"model_type": "qwen3"})),
            Ok(Family::Qwen3)
        );
        let err =
            Family::detect(&json!({"architectures": ["GemmaForCausalLM"], "model_type": "gemma"}))
                .unwrap_err();
        assert!(
            err.contains("GemmaForCausalLM")
                && err.contains("LlamaForCausalLM")
                && err.contains("GPT2LMHeadModel"),
            "{err}"
        );
        let err = Family::detect(&json!({"model_type": "phi3"})).unwrap_err();
        assert!(err.contains("model_type phi3"), "{err}");
        assert!(Family::detect(&json!({}))
            .unwrap_err()
            .contains("no architectures"));
    }

    #[test]
    fn sizes_are_bounded_and_named() {
        let m = json!({"max_position_embeddings": 10_000_000_000u64, "num_hidden_layers": 1_000_000_000,
                       "hidden_size": 0, "vocab_size": 1.5, "layer_norm_eps": -1e-5});
        let f = Fields(m.as_object().unwrap());
        assert!(f
            .size("max_position_embeddings")
            .unwrap_err()
            .contains("max_position_embeddings 10000000000"));
        assert!(f
            .size("num_hidden_layers")
            .unwrap_err()
            .contains("limit 4096"));
        assert!(f.size("hidden_size").unwrap_err().contains("positive"));
        assert!(f.size("vocab_size").unwrap_err().contains("vocab_size"));
        assert!(f
            .size("intermediate_size")
            .unwrap_err()
            .contains("missing field intermediate_size"));
        assert!(f
            .eps_or("layer_norm_eps", 1e-5)
            .unwrap_err()
            .contains("layer_norm_eps -0.00001"));
    }
}
