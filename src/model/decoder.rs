//! One configurable pre-LN/post-LN decoder for the Llama-like families (Llama, Mistral, OLMo,
//! OLMo-2, Qwen2, Qwen3), as transformers computes them.
//!
//! candle-transformers 0.11.1 cannot serve these whole for perplexity: the causal-LM `forward`
//! of its Llama, OLMo, OLMo-2 and Mistral returns only the last position's logits; its Qwen2
//! and Qwen3 base models return every position but hold a KV cache behind `&mut self`, and
//! Qwen2's computes the rotary angles in the model dtype (in bf16 a position above 256 is
//! rounded), so one decoder of our own runs them all, with candle's kernels (`rms_norm`,
//! `layer_norm`, `rope`, softmax), candle-transformers' `repeat_kv`, and the eval kernels of
//! [`crate::kernels`] (chosen once, when the model is built). The families differ in a few
//! switches, mapped from `config.json` in [`DecoderConfig::from_hf`].

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde_json::{json, Map, Value};

use super::config::Activation;
use super::family::{Family, Fields};
use super::rope::{Rope, RopeScaling, RopeTables};
use crate::kernels::attention::{self, LazyMask};
use crate::kernels::matmul::linear_eval;
use crate::kernels::{heads, AttentionKernel, Fused, Kernels};

/// How the residual stream is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm with a learned scale (Llama, Mistral, Qwen, OLMo-2).
    Rms,
    /// LayerNorm without parameters, eps 1e-5 (OLMo).
    NonParametricLayerNorm,
}

/// Where each block's norms sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + attn(norm(x))` (`input_layernorm`, `post_attention_layernorm`).
    Pre,
    /// `x + norm(attn(x))` (OLMo-2: `post_attention_layernorm`, `post_feedforward_layernorm`).
    Post,
}

/// Normalisation of queries and keys before the rotary embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// RMSNorm over each head's `head_dim` (Qwen3: weight `[head_dim]`).
    PerHead,
    /// RMSNorm over all heads at once (OLMo-2: weight `[heads * head_dim]`).
    Whole,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub placement: NormPlacement,
    pub qk_norm: QkNorm,
    /// Biases on q, k, v.
    pub qkv_bias: bool,
    /// Bias on o_proj.
    pub o_bias: bool,
    /// Biases on gate, up, down (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// OLMo: q, k, v clamped to `[-clip, clip]` after projection.
    pub clip_qkv: Option<f64>,
    pub tie_word_embeddings: bool,
    pub hidden_act: Activation,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Attention sees at most this many keys back; only windows shorter than the context
    /// change the result, and those are refused at run time.
    pub sliding_window: Option<usize>,
}

impl DecoderConfig {
    /// Maps a Hugging Face `config.json` of a Llama-like `family` (its fields and
    /// transformers' defaults for them). Fields that would change the computation in a way
    /// not implemented here are errors naming the field.
    pub fn from_hf(
        family: Family,
        cfg: &Map<String, Value>,
    ) -> std::result::Result<DecoderConfig, String> {
        let f = Fields(cfg);
        let hidden_size = f.size("hidden_size")?;
        let heads = f.size("num_attention_heads")?;
        let kv_heads = f.size_or("num_key_value_heads", heads)?;
        if !heads.is_multiple_of(kv_heads) {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            ));
        }
        let head_dim = match (family, f.opt_size("head_dim")?) {
            (_, Some(d)) => d,
            (Family::Qwen3, None) => 128,
            (_, None) => {
                if !hidden_size.is_multiple_of(heads) {
                    return Err(format!(
                        "hidden_size {hidden_size} is not divisible by num_attention_heads {heads}"
                    ));
                }
                hidden_size / heads
            }
        };
        if !head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {head_dim} must be even for the rotary embedding"
            ));
        }
        let (norm, placement, qk_norm) = match family {
            Family::Olmo => (
                NormKind::NonParametricLayerNorm,
                NormPlacement::Pre,
                QkNorm::None,
            ),
            Family::Olmo2 => (NormKind::Rms, NormPlacement::Post, QkNorm::Whole),
            Family::Qwen3 => (NormKind::Rms, NormPlacement::Pre, QkNorm::PerHead),
            _ => (NormKind::Rms, NormPlacement::Pre, QkNorm::None),
        };
        // OLMo's LayerNorm has its eps fixed at 1e-5 (no config field).
        let norm_eps = match family {
            Family::Olmo => 1e-5,
            Family::Olmo2 => f.eps_or("rms_norm_eps", 1e-5)?,
            _ => f.eps_or("rms_norm_eps", 1e-6)?,
        };
        let attention_bias = f.bool_or("attention_bias", false)?;
        let (qkv_bias, o_bias) = match family {
            Family::Qwen2 => (true, false),
            Family::Mistral => (false, false),
            _ => (attention_bias, attention_bias),
        };
        let mlp_bias = match family {
            Family::Llama => f.bool_or("mlp_bias", false)?,
            _ => false,
        };
        let clip_qkv = match family {
            Family::Olmo => match f.0.get("clip_qkv").filter(|v| !v.is_null()) {
                None => None,
                Some(v) => Some(
                    v.as_f64()
                        .filter(|c| c.is_finite() && *c > 0.0)
                        .ok_or_else(|| format!("clip_qkv must be a positive number, not {v}"))?,
                ),
            },
            _ => {
                f.refuse_unless("clip_qkv", &[])?;
                None
            }
        };
        let act = f.str_or("hidden_act", "silu")?;
        let hidden_act =
            Activation::from_hf(act).ok_or_else(|| format!("unsupported hidden_act {act:?}"))?;
        let sliding_window = match family {
            Family::Mistral => f.opt_size("sliding_window")?,
            Family::Qwen2 | Family::Qwen3 if f.bool_or("use_sliding_window", false)? => {
                f.opt_size("sliding_window")?
            }
            _ => None,
        };
        if let Some(types) = cfg.get("layer_types").and_then(Value::as_array) {
            if let Some(t) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
                if sliding_window.is_none() {
                    return Err(format!("unsupported field layer_types: layer type {t}"));
                }
            }
        }
        for key in [
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "logits_scaling",
        ] {
            f.refuse_unless(key, &[])?;
        }
        f.refuse_unless("pretraining_tp", &[json!(1)])?;
        let (rope_theta, rope_scaling) = rope(&f)?;
        Ok(DecoderConfig {
            family,
            vocab_size: f.size("vocab_size")?,
            hidden_size,
            intermediate_size: f.size("intermediate_size")?,
            num_hidden_layers: f.size("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            max_position_embeddings: f.size_or("max_position_embeddings", 2048)?,
            norm,
            norm_eps,
            placement,
            qk_norm,
            qkv_bias,
            o_bias,
            mlp_bias,
            clip_qkv,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
            hidden_act,
            rope_theta,
            rope_scaling,
            sliding_window,
        })
    }
}

/// `rope_theta` and the scaling, from the legacy `rope_theta` + `rope_scaling` or the
/// transformers-5 `rope_parameters` (which wins).
fn rope(f: &Fields) -> std::result::Result<(f64, RopeScaling), String> {
    let params =
        f.0.get("rope_parameters")
            .filter(|v| !v.is_null())
            .map(|v| ("rope_parameters", v))
            .or_else(|| {
                f.0.get("rope_scaling")
                    .filter(|v| !v.is_null())
                    .map(|v| ("rope_scaling", v))
            });
    let mut theta = f.float_or("rope_theta", 10000.0)?;
    let Some((field, params)) = params else {
        f.refuse_unless("partial_rotary_factor", &[json!(1.0), json!(1)])?;
        return Ok((theta, RopeScaling::None));
    };
    let p = params
        .as_object()
        .ok_or_else(|| format!("{field} must be an object, not {params}"))?;
    let pf = Fields(p);
    theta = pf.float_or("rope_theta", theta)?;
    if theta <= 0.0 {
        return Err(format!("rope_theta {theta} must be positive"));
    }
    pf.refuse_unless("partial_rotary_factor", &[json!(1.0), json!(1)])?;
    f.refuse_unless("partial_rotary_factor", &[json!(1.0), json!(1)])?;
    let kind = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = || -> std::result::Result<f64, String> {
        let x = pf.float_or("factor", f64::NAN)?;
        if x.is_nan() || x <= 0.0 {
            return Err(format!("{field}.factor must be a positive number"));
        }
        Ok(x)
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: pf.float_or("low_freq_factor", 1.0)?,
            high_freq_factor: pf.float_or("high_freq_factor", 4.0)?,
            original_max_position_embeddings: pf
                .size("original_max_position_embeddings")
                .map_err(|e| format!("{field}: {e}"))? as f64,
        },
        other => {
            return Err(format!(
                "unsupported field {field}: rope_type {other:?} (lawa implements default, linear, llama3)"
            ))
        }
    };
    if let RopeScaling::Llama3 {
        low_freq_factor,
        high_freq_factor,
        ..
    } = scaling
    {
        if high_freq_factor <= low_freq_factor || low_freq_factor <= 0.0 {
            return Err(format!(
                "{field}: high_freq_factor {high_freq_factor} must exceed low_freq_factor {low_freq_factor} > 0"
            ));
        }
    }
    Ok((theta, scaling))
}

/// Every parameter a checkpoint must hold for `cfg`, with its shape, in the model's order.
pub fn parameter_shapes(cfg: &DecoderConfig) -> Vec<(String, Vec<usize>)> {
    let (v, d, i) = (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
    let rms = cfg.norm == NormKind::Rms;
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{p}.{name}"), shape));
        for (name, out_dim, in_dim, bias) in [
            ("self_attn.q_proj", q, d, cfg.qkv_bias),
            ("self_attn.k_proj", kv, d, cfg.qkv_bias),
            ("self_attn.v_proj", kv, d, cfg.qkv_bias),
            ("self_attn.o_proj", d, q, cfg.o_bias),
            ("mlp.gate_proj", i, d, cfg.mlp_bias),
            ("mlp.up_proj", i, d, cfg.mlp_bias),
            ("mlp.down_proj", d, i, cfg.mlp_bias),
        ] {
            push(&format!("{name}.weight"), vec![out_dim, in_dim]);
            if bias {
                push(&format!("{name}.bias"), vec![out_dim]);
            }
        }
        match cfg.qk_norm {
            QkNorm::None => {}
            QkNorm::PerHead => {
                push("self_attn.q_norm.weight", vec![cfg.head_dim]);
                push("self_attn.k_norm.weight", vec![cfg.head_dim]);
            }
            QkNorm::Whole => {
                push("self_attn.q_norm.weight", vec![q]);
                push("self_attn.k_norm.weight", vec![kv]);
            }
        }
        if rms {
            match cfg.placement {
                NormPlacement::Pre => {
                    push("input_layernorm.weight", vec![d]);
                    push("post_attention_layernorm.weight", vec![d]);
                }
                NormPlacement::Post => {
                    push("post_attention_layernorm.weight", vec![d]);
                    push("post_feedforward_layernorm.weight", vec![d]);
                }
            }
        }
    }
    if rms {
        out.push(("model.norm.weight".to_string(), vec![d]));
    }
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, d]));
    }
    out
}

#[derive(Clone, Debug)]
enum Norm {
    Rms {
        weight: Tensor,
        eps: f64,
    },
    /// LayerNorm with weight 1 and bias 0.
    Plain {
        ones: Tensor,
        zeros: Tensor,
        eps: f64,
    },
}

impl Norm {
    fn new(cfg: &DecoderConfig, size: usize, vb: VarBuilder) -> Result<Norm> {
        Ok(match cfg.norm {
            NormKind::Rms => Norm::Rms {
                weight: vb.get(size, "weight")?,
                eps: cfg.norm_eps,
            },
            NormKind::NonParametricLayerNorm => Norm::Plain {
                ones: Tensor::ones(size, vb.dtype(), vb.device())?,
                zeros: Tensor::zeros(size, vb.dtype(), vb.device())?,
                eps: cfg.norm_eps,
            },
        })
    }

    fn rms(size: usize, eps: f64, vb: VarBuilder) -> Result<Norm> {
        Ok(Norm::Rms {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        match self {
            Norm::Rms { weight, eps } => candle_nn::ops::rms_norm(&x, weight, *eps as f32),
            Norm::Plain { ones, zeros, eps } => {
                candle_nn::ops::layer_norm(&x, ones, zeros, *eps as f32)
            }
        }
    }
}

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

#[derive(Clone, Debug)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    qk_norm: QkNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    clip: Option<f64>,
}

impl Attention {
    fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let q = cfg.num_attention_heads * cfg.head_dim;
        let kv = cfg.num_key_value_heads * cfg.head_dim;
        let (qn, kn) = match cfg.qk_norm {
            QkNorm::None => (None, None),
            QkNorm::PerHead => (Some(cfg.head_dim), Some(cfg.head_dim)),
            QkNorm::Whole => (Some(q), Some(kv)),
        };
        Ok(Self {
            q: linear(d, q, cfg.qkv_bias, vb.pp("q_proj"))?,
            k: linear(d, kv, cfg.qkv_bias, vb.pp("k_proj"))?,
            v: linear(d, kv, cfg.qkv_bias, vb.pp("v_proj"))?,
            o: linear(q, d, cfg.o_bias, vb.pp("o_proj"))?,
            q_norm: qn
                .map(|n| Norm::rms(n, cfg.norm_eps, vb.pp("q_norm")))
                .transpose()?,
            k_norm: kn
                .map(|n| Norm::rms(n, cfg.norm_eps, vb.pp("k_norm")))
                .transpose()?,
            qk_norm: cfg.qk_norm,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            clip: cfg.clip_qkv,
        })
    }

    /// QK-norm of q and k (each where there is one), over whatever shape the caller is at.
    fn norm_qk(&self, q: Tensor, k: Tensor) -> Result<(Tensor, Tensor)> {
        let norm = |n: &Option<Norm>, y: Tensor| match n {
            Some(n) => n.forward(&y),
            None => Ok(y),
        };
        Ok((norm(&self.q_norm, q)?, norm(&self.k_norm, k)?))
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        mask: &LazyMask,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        let project = |l: &Linear| -> Result<Tensor> {
            let y = linear_eval(kernels.linear, l, x)?;
            match self.clip {
                Some(c) => y.clamp(-c, c),
                None => Ok(y),
            }
        };
        let (mut q, mut k, v) = (project(&self.q)?, project(&self.k)?, project(&self.v)?);
        if self.qk_norm == QkNorm::Whole {
            (q, k) = self.norm_qk(q, k)?;
        }
        if kernels.attention == AttentionKernel::CpuF32 {
            return self.forward_cpu_f32(q, k, v, rope, kernels);
        }
        let heads = |y: Tensor, n: usize| -> Result<Tensor> { y.reshape((b, t, n, hd)) };
        let (mut q, mut k, v) = (
            heads(q, self.heads)?,
            heads(k, self.kv_heads)?,
            heads(v, self.kv_heads)?,
        );
        if self.qk_norm == QkNorm::PerHead {
            (q, k) = self.norm_qk(q, k)?;
        }
        let to_bhtd = |y: Tensor| y.transpose(1, 2)?.contiguous();
        let q = rope.apply(&to_bhtd(q)?, true)?;
        let k = rope.apply(&to_bhtd(k)?, true)?;
        let v = to_bhtd(v)?;
        let rep = self.heads / self.kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, rep)?.contiguous()?;
        let v = candle_transformers::utils::repeat_kv(v, rep)?.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let y = attention::causal_attention(kernels.attention, &q, &k, &v, mask, scale)?;
        linear_eval(
            kernels.linear,
            &self.o,
            &y.transpose(1, 2)?.reshape((b, t, self.heads * hd))?,
        )
    }

    /// The attention after the projections (and a whole-vector QK norm) on the f32 CPU path:
    /// heads split out with RoPE in one pass each, key/value heads read in place by the
    /// grouped query heads, heads merged back in one pass.
    fn forward_cpu_f32(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        rope: &RopeTables,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (b, t, _) = q.dims3()?;
        let hd = self.head_dim;
        let (q, k) = if self.qk_norm == QkNorm::PerHead {
            let per_head = |y: Tensor, n: usize| y.reshape((b, t, n, hd));
            let (q, k) = self.norm_qk(per_head(q, self.heads)?, per_head(k, self.kv_heads)?)?;
            (q.flatten_from(2)?, k.flatten_from(2)?)
        } else {
            (q, k)
        };
        let (cos, sin) = rope.cpu_f32()?;
        let rotary = (rope.ndims() > 0).then_some(heads::Rope {
            cos: &cos,
            sin: &sin,
            ndims: rope.ndims(),
        });
        let layout = heads::HeadLayout {
            row: 0,
            head_stride: hd,
            offset: 0,
        };
        let q = heads::split_heads_tensor(&q, self.heads, hd, layout, rotary)?;
        let k = heads::split_heads_tensor(&k, self.kv_heads, hd, layout, rotary)?;
        let v = heads::split_heads_tensor(&v, self.kv_heads, hd, layout, None)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let y = attention::eval_cpu::causal_attention(&q, &k, &v, scale)?;
        linear_eval(kernels.linear, &self.o, &heads::merge_heads_tensor(&y)?)
    }
}

#[derive(Clone, Debug)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate: linear(d, i, cfg.mlp_bias, vb.pp("gate_proj"))?,
            up: linear(d, i, cfg.mlp_bias, vb.pp("up_proj"))?,
            down: linear(i, d, cfg.mlp_bias, vb.pp("down_proj"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        let linear = |l: &Linear, x: &Tensor| linear_eval(kernels.linear, l, x);
        let g = linear(&self.gate, x)?;
        let g = match self.act {
            Activation::Gelu => g.gelu_erf()?,
            Activation::GeluTanh => g.gelu()?,
            Activation::Relu => g.relu()?,
            Activation::Silu => g.silu()?,
        };
        linear(&self.down, &(g * linear(&self.up, x)?)?)
    }
}

#[derive(Clone, Debug)]
struct Layer {
    attn: Attention,
    mlp: Mlp,
    /// Pre: input_layernorm, post_attention_layernorm. Post: post_attention_layernorm,
    /// post_feedforward_layernorm.
    norm1: Norm,
    norm2: Norm,
    placement: NormPlacement,
}

impl Layer {
    fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let (n1, n2) = match cfg.placement {
            NormPlacement::Pre => ("input_layernorm", "post_attention_layernorm"),
            NormPlacement::Post => ("post_attention_layernorm", "post_feedforward_layernorm"),
        };
        Ok(Self {
            attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            norm1: Norm::new(cfg, d, vb.pp(n1))?,
            norm2: Norm::new(cfg, d, vb.pp(n2))?,
            placement: cfg.placement,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        mask: &LazyMask,
        k: Kernels,
    ) -> Result<Tensor> {
        match self.placement {
            NormPlacement::Pre => {
                let h = (x + self.attn.forward(&self.norm1.forward(x)?, rope, mask, k)?)?;
                let m = self.mlp.forward(&self.norm2.forward(&h)?, k)?;
                h + m
            }
            NormPlacement::Post => {
                let h = (x + self.norm1.forward(&self.attn.forward(x, rope, mask, k)?)?)?;
                let m = self.norm2.forward(&self.mlp.forward(&h, k)?)?;
                h + m
            }
        }
    }
}

/// A Llama-like causal LM (`model.embed_tokens`, `model.layers.{i}`, `model.norm`, `lm_head`).
#[derive(Clone, Debug)]
pub struct Decoder {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Norm,
    head: Linear,
    rope: Rope,
    cfg: DecoderConfig,
    kernels: Kernels,
}

impl Decoder {
    /// The model over `vb`, its eval kernels chosen for `vb`'s device and dtype with our GPU
    /// kernels allowed ([`Decoder::with_kernels`] chooses otherwise).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let kernels = Kernels::choose(vb.device(), vb.dtype(), Fused::On);
        let vb_m = vb.pp("model");
        let embed = vb_m
            .pp("embed_tokens")
            .get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, vb_m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = Norm::new(cfg, cfg.hidden_size, vb_m.pp("norm"))?;
        let head = if cfg.tie_word_embeddings {
            Linear::new(embed.clone(), None)
        } else {
            linear(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(Self {
            embed,
            layers,
            norm,
            head,
            rope: Rope::new(cfg.head_dim, cfg.rope_theta, &cfg.rope_scaling),
            cfg: cfg.clone(),
            kernels,
        })
    }

    /// The model with its eval path on `kernels` (chosen for its device and dtype).
    pub fn with_kernels(self, kernels: Kernels) -> Self {
        Self { kernels, ..self }
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// The final-normed hidden states `[B, T, hidden]`.
    pub fn hidden_states(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} tokens is longer than max_position_embeddings {}",
                self.cfg.max_position_embeddings
            );
        }
        if let Some(w) = self.cfg.sliding_window.filter(|w| t > *w) {
            candle_core::bail!(
                "sliding-window attention (window {w}) is not implemented; evaluate with --ctx {w} or less"
            );
        }
        let mut x = self
            .embed
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let device = x.device().clone();
        let mask = LazyMask::new(t, &device);
        let rope = self.rope.tables(t, x.dtype(), &device)?;
        for layer in &self.layers {
            x = layer.forward(&x, &rope, &mask, self.kernels)?;
        }
        self.norm.forward(&x)
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        linear_eval(self.kernels.linear, &self.head, hidden)
    }

    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(input_ids)?)
    }
}
