//! GPT-NeoX configuration, read from (and written as) a Hugging Face `config.json`.
//!
//! Two spellings of the rotary settings exist in the wild: the older top-level
//! `rotary_pct` / `rotary_emb_base` (Pythia's own files) and the newer `rope_parameters`
//! object (`partial_rotary_factor`, `rope_theta`, `rope_type`) written by transformers 5.
//! Both are accepted; both are written, so that old and new transformers load our files.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelError;

/// The architecture name transformers uses for the causal-LM GPT-NeoX model.
pub const ARCHITECTURE: &str = "GPTNeoXForCausalLM";
/// The `model_type` transformers uses for GPT-NeoX.
pub const MODEL_TYPE: &str = "gpt_neox";

/// The MLP activation (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU (Pythia).
    Gelu,
    /// `gelu_new`, `gelu_fast`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn from_hf(name: &str) -> Option<Activation> {
        Some(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }

    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        }
    }
}

/// A GPT-NeoX model's shape and numerics, with the rotary settings resolved.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    pub use_parallel_residual: bool,
    pub hidden_act: Activation,
    /// Fraction of each head's dimensions that are rotated (`rotary_pct`, `partial_rotary_factor`).
    pub rotary_pct: f64,
    /// RoPE base (`rotary_emb_base`, `rope_theta`).
    pub rotary_emb_base: f64,
    pub tie_word_embeddings: bool,
    /// Biases on `query_key_value` and `attention.dense`.
    pub attention_bias: bool,
    pub initializer_range: f64,
    /// Every other key (`bos_token_id`, `torch_dtype`, ...) of the file, kept so that a read-then-written config loses nothing.
    pub extra: Map<String, Value>,
}

impl Config {
    /// A config with Pythia's defaults for everything but the shape.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        max_position_embeddings: usize,
    ) -> Config {
        Config {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size: 4 * hidden_size,
            max_position_embeddings,
            layer_norm_eps: 1e-5,
            use_parallel_residual: true,
            hidden_act: Activation::Gelu,
            rotary_pct: 0.25,
            rotary_emb_base: 10000.0,
            tie_word_embeddings: false,
            attention_bias: true,
            initializer_range: 0.02,
            extra: [("bos_token_id", 0), ("eos_token_id", 0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::from(v)))
                .collect(),
        }
    }

    /// Reads and checks a `config.json`; errors name the file.
    pub fn load(path: &Path) -> Result<Config, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Config::from_json(&text).map_err(|msg| ModelError::Config {
            path: path.to_path_buf(),
            msg,
        })
    }

    /// Parses and checks the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Config, String> {
        // Check the architecture first: a Llama config should say "unsupported architecture",
        // not "missing field use_parallel_residual".
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        check_architecture(&value)?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// Pretty JSON for a `config.json` that transformers loads as `GPTNeoXForCausalLM`.
    pub fn to_json(&self) -> String {
        // Serialising plain data into a `Value` cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Rotated dimensions per head; truncated like transformers' `int(head_size * pct)`.
    pub fn rotary_ndims(&self) -> usize {
        (self.head_size() as f64 * self.rotary_pct) as usize
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        // Bounds before anything is allocated from these sizes (a hostile config must not
        // turn into a huge allocation or a billion-layer loop).
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v > super::family::MAX_SIZE) {
            return Err(format!(
                "{name} {v} is beyond any real model (limit {})",
                super::family::MAX_SIZE
            ));
        }
        if self.num_hidden_layers > super::family::MAX_LAYERS {
            return Err(format!(
                "num_hidden_layers {} is beyond any real model (limit {})",
                self.num_hidden_layers,
                super::family::MAX_LAYERS
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(0.0..=1.0).contains(&self.rotary_pct) {
            return Err(format!("rotary_pct {} is not in [0, 1]", self.rotary_pct));
        }
        if !self.rotary_ndims().is_multiple_of(2) {
            return Err(format!(
                "rotary dimensions per head ({}) must be even",
                self.rotary_ndims()
            ));
        }
        if self.rotary_emb_base <= 0.0 {
            return Err(format!(
                "rotary_emb_base {} must be positive",
                self.rotary_emb_base
            ));
        }
        Ok(())
    }
}

fn check_architecture(value: &Value) -> Result<(), String> {
    if let Some(archs) = value.get("architectures").and_then(Value::as_array) {
        let names: Vec<&str> = archs.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() && !names.contains(&ARCHITECTURE) {
            return Err(format!(
                "unsupported architecture {} (lawa runs {ARCHITECTURE} models)",
                names.join(", ")
            ));
        }
    }
    if let Some(mt) = value.get("model_type").and_then(Value::as_str) {
        if mt != MODEL_TYPE {
            return Err(format!(
                "unsupported model_type {mt} (lawa runs {MODEL_TYPE} models)"
            ));
        }
    }
    Ok(())
}

/// `rope_parameters` of transformers 5.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct RopeParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partial_rotary_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_type: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// The file's shape: every key optional where transformers has a default.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_true")]
    use_parallel_residual: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotary_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotary_emb_base: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_parameters: Option<RopeParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_scaling: Option<Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "default_true")]
    attention_bias: bool,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn default_max_pos() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_act() -> String {
    "gelu".to_string()
}
fn default_init_range() -> f64 {
    0.02
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Config, String> {
        let hidden_act = Activation::from_hf(&raw.hidden_act)
            .ok_or_else(|| format!("unsupported hidden_act {:?}", raw.hidden_act))?;
        // transformers 5 merges a legacy `rope_scaling` into `rope_parameters`; both may only
        // describe plain RoPE here.
        let rope = match (raw.rope_parameters, raw.rope_scaling) {
            (Some(p), _) => Some(p),
            (None, Some(Value::Null)) | (None, None) => None,
            (None, Some(v)) => Some(
                serde_json::from_value::<RopeParameters>(v)
                    .map_err(|e| format!("rope_scaling: {e}"))?,
            ),
        };
        let rope = rope.unwrap_or_default();
        if let Some(t) = rope.rope_type.as_deref().or_else(|| {
            // Older files spell it `type`.
            rope.other.get("type").and_then(Value::as_str)
        }) {
            if t != "default" {
                return Err(format!(
                    "unsupported rope_type {t:?} (only plain RoPE, \"default\", is implemented)"
                ));
            }
        }
        let cfg = Config {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings,
            layer_norm_eps: raw.layer_norm_eps,
            use_parallel_residual: raw.use_parallel_residual,
            hidden_act,
            // transformers: `rope_parameters` wins, then the legacy keys, then 0.25 / 10000.
            rotary_pct: rope
                .partial_rotary_factor
                .or(raw.rotary_pct)
                .unwrap_or(0.25),
            rotary_emb_base: rope.rope_theta.or(raw.rotary_emb_base).unwrap_or(10000.0),
            tie_word_embeddings: raw.tie_word_embeddings,
            attention_bias: raw.attention_bias,
            initializer_range: raw.initializer_range,
            extra: raw.extra,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl From<Config> for RawConfig {
    fn from(c: Config) -> RawConfig {
        let mut extra = c.extra;
        // Written by us, so stale copies from a file we read must not shadow them.
        for k in [
            "architectures",
            "model_type",
            "rope_parameters",
            "rope_scaling",
        ] {
            extra.remove(k);
        }
        RawConfig {
            architectures: Some(vec![ARCHITECTURE.to_string()]),
            model_type: Some(MODEL_TYPE.to_string()),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            max_position_embeddings: c.max_position_embeddings,
            layer_norm_eps: c.layer_norm_eps,
            use_parallel_residual: c.use_parallel_residual,
            hidden_act: c.hidden_act.hf_name().to_string(),
            rotary_pct: Some(c.rotary_pct),
            rotary_emb_base: Some(c.rotary_emb_base),
            rope_parameters: Some(RopeParameters {
                rope_theta: Some(c.rotary_emb_base),
                partial_rotary_factor: Some(c.rotary_pct),
                rope_type: Some("default".to_string()),
                other: Map::new(),
            }),
            rope_scaling: None,
            tie_word_embeddings: c.tie_word_embeddings,
            attention_bias: c.attention_bias,
            initializer_range: c.initializer_range,
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The config.json of EleutherAI/pythia-70m (legacy rotary spelling).
    const PYTHIA_70M: &str = r#"{
      "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
      "hidden_act": "gelu", "hidden_size": 512, "initializer_range": 0.02,
      "intermediate_size": 2048, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
      "model_type": "gpt_neox", "num_attention_heads": 8, "num_hidden_layers": 6,
      "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": false,
      "torch_dtype": "float16", "transformers_version": "4.24.0", "use_cache": true,
      "use_parallel_residual": true, "vocab_size": 50304
    }"#;

    #[test]
    fn reads_pythia_legacy_spelling() {
        let c = Config::from_json(PYTHIA_70M).unwrap();
        assert_eq!(c.hidden_size, 512);
        assert_eq!(c.head_size(), 64);
        assert_eq!(c.rotary_ndims(), 16);
        assert_eq!(c.rotary_emb_base, 10000.0);
        assert_eq!(c.hidden_act, Activation::Gelu);
        assert!(c.use_parallel_residual && c.attention_bias && !c.tie_word_embeddings);
        assert_eq!(c.extra.get("torch_dtype"), Some(&Value::from("float16")));
    }

    #[test]
    fn reads_rope_parameters_spelling_and_it_wins() {
        let text = PYTHIA_70M.replace(
            "\"rotary_emb_base\": 10000, \"rotary_pct\": 0.25,",
            "\"rotary_emb_base\": 7, \"rope_parameters\": {\"rope_theta\": 500.0, \"partial_rotary_factor\": 0.5, \"rope_type\": \"default\"},",
        );
        let c = Config::from_json(&text).unwrap();
        assert_eq!(c.rotary_emb_base, 500.0);
        assert_eq!(c.rotary_pct, 0.5);
        assert_eq!(c.rotary_ndims(), 32);
    }

    #[test]
    fn round_trips_and_writes_both_spellings() {
        let c = Config::from_json(PYTHIA_70M).unwrap();
        let json = c.to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["architectures"][0], "GPTNeoXForCausalLM");
        assert_eq!(v["model_type"], "gpt_neox");
        assert_eq!(v["rotary_pct"], 0.25);
        assert_eq!(v["rope_parameters"]["partial_rotary_factor"], 0.25);
        assert_eq!(v["rope_parameters"]["rope_theta"], 10000.0);
        assert_eq!(v["torch_dtype"], "float16");
        assert_eq!(Config::from_json(&json).unwrap(), c);
    }

    #[test]
    fn rejects_other_architectures_by_name() {
        let llama = PYTHIA_70M.replace("GPTNeoXForCausalLM", "LlamaForCausalLM");
        let err = Config::from_json(&llama).unwrap_err();
        assert!(err.contains("LlamaForCausalLM"), "{err}");
        let mt = PYTHIA_70M.replace("\"gpt_neox\"", "\"llama\"");
        assert!(Config::from_json(&mt).unwrap_err().contains("llama"));
        let scaled = PYTHIA_70M.replace(
            "\"rotary_pct\": 0.25,",
            "\"rotary_pct\": 0.25, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0},",
        );
        assert!(Config::from_json(&scaled).unwrap_err().contains("linear"));
    }

    #[test]
    fn rejects_inconsistent_shapes() {
        let bad = PYTHIA_70M.replace("\"num_attention_heads\": 8", "\"num_attention_heads\": 7");
        assert!(Config::from_json(&bad)
            .unwrap_err()
            .contains("not divisible"));
        for (field, bad) in [
            ("\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": -1e-05"),
            (
                "\"max_position_embeddings\": 2048",
                "\"max_position_embeddings\": 10000000000",
            ),
            (
                "\"num_hidden_layers\": 6",
                "\"num_hidden_layers\": 1000000000",
            ),
        ] {
            let err = Config::from_json(&PYTHIA_70M.replace(field, bad)).unwrap_err();
            let name = field.split('"').nth(1).unwrap();
            assert!(err.contains(name), "{err}");
        }
        let act = PYTHIA_70M.replace("\"gelu\"", "\"mish\"");
        assert!(Config::from_json(&act).unwrap_err().contains("mish"));
    }
}
