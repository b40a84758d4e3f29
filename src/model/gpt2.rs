//! GPT-2 as transformers' `GPT2LMHeadModel` computes it, from Hugging Face checkpoints
//! (Conv1D layout: weights stored `[in, out]`) or nanoGPT ones (`nn.Linear` layout `[out, in]`,
//! config from `model_args`, optional biases, exact GELU).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde_json::{json, Map, Value};

use super::config::Activation;
use super::family::Fields;
use crate::kernels::attention::{self, LazyMask};
use crate::kernels::{matmul, Fused, Kernels};

/// How the projection weights are laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// transformers' `Conv1D`: `[in, out]`.
    Conv1D,
    /// nanoGPT's `nn.Linear`: `[out, in]`.
    Linear,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_inner: usize,
    pub n_positions: usize,
    pub layer_norm_epsilon: f64,
    pub activation: Activation,
    /// Biases on every Linear and LayerNorm (nanoGPT's `bias`; always true in transformers).
    pub bias: bool,
    pub tie_word_embeddings: bool,
    pub layout: Layout,
    /// Prefix of the body's tensor names: `transformer.` (GPT2LMHeadModel, nanoGPT) or empty
    /// (the original `gpt2` checkpoints). Set from the weights at load time.
    pub prefix: String,
}

impl Gpt2Config {
    /// From a Hugging Face `config.json` (`model_type` gpt2).
    pub fn from_hf(cfg: &Map<String, Value>) -> std::result::Result<Gpt2Config, String> {
        let f = Fields(cfg);
        let n_embd = f.size("n_embd")?;
        let n_head = f.size("n_head")?;
        if !n_embd.is_multiple_of(n_head) {
            return Err(format!(
                "n_embd {n_embd} is not divisible by n_head {n_head}"
            ));
        }
        let act = f.str_or("activation_function", "gelu_new")?;
        let activation = Activation::from_hf(act)
            .ok_or_else(|| format!("unsupported activation_function {act:?}"))?;
        f.refuse_unless("scale_attn_by_inverse_layer_idx", &[json!(false)])?;
        f.refuse_unless("scale_attn_weights", &[json!(true)])?;
        f.refuse_unless("add_cross_attention", &[json!(false)])?;
        Ok(Gpt2Config {
            vocab_size: f.size("vocab_size")?,
            n_embd,
            n_layer: f.size("n_layer")?,
            n_head,
            n_inner: f.size_or("n_inner", 4 * n_embd)?,
            n_positions: f.size_or("n_positions", 1024)?,
            layer_norm_epsilon: f.eps_or("layer_norm_epsilon", 1e-5)?,
            activation,
            bias: true,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", true)?,
            layout: Layout::Conv1D,
            prefix: "transformer.".into(),
        })
    }

    /// From nanoGPT's `model_args` (`n_layer`, `n_head`, `n_embd`, `block_size`, `bias`,
    /// `vocab_size`): exact GELU, LayerNorm eps 1e-5, `lm_head` tied to `wte`.
    pub fn from_nanogpt(args: &Map<String, Value>) -> std::result::Result<Gpt2Config, String> {
        let f = Fields(args);
        let n_embd = f.size("n_embd")?;
        let n_head = f.size("n_head")?;
        if !n_embd.is_multiple_of(n_head) {
            return Err(format!(
                "n_embd {n_embd} is not divisible by n_head {n_head}"
            ));
        }
        Ok(Gpt2Config {
            vocab_size: f.size("vocab_size")?,
            n_embd,
            n_layer: f.size("n_layer")?,
            n_head,
            n_inner: 4 * n_embd,
            n_positions: f.size("block_size")?,
            layer_norm_epsilon: 1e-5,
            activation: Activation::Gelu,
            bias: f.bool_or("bias", true)?,
            tie_word_embeddings: true,
            layout: Layout::Linear,
            prefix: "transformer.".into(),
        })
    }

    /// A `config.json` that transformers loads as `GPT2LMHeadModel` computing this model.
    pub fn to_hf_json(&self) -> Value {
        json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": self.n_inner,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "activation_function": self.activation.hf_name(),
            "tie_word_embeddings": self.tie_word_embeddings,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "scale_attn_weights": true,
            "torch_dtype": "float32",
        })
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// Every parameter for `cfg` with its shape as stored (in `cfg.layout`), in the model's order.
/// `lm_head.weight` is listed only when untied.
pub fn parameter_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let (v, d, i, p) = (cfg.vocab_size, cfg.n_embd, cfg.n_inner, cfg.n_positions);
    let pre = &cfg.prefix;
    let w = |inp: usize, out: usize| match cfg.layout {
        Layout::Conv1D => vec![inp, out],
        Layout::Linear => vec![out, inp],
    };
    let mut out = vec![
        (format!("{pre}wte.weight"), vec![v, d]),
        (format!("{pre}wpe.weight"), vec![p, d]),
    ];
    for l in 0..cfg.n_layer {
        let mut push =
            |name: &str, shape: Vec<usize>| out.push((format!("{pre}h.{l}.{name}"), shape));
        for (name, inp, o) in [
            ("attn.c_attn", d, 3 * d),
            ("attn.c_proj", d, d),
            ("mlp.c_fc", d, i),
            ("mlp.c_proj", i, d),
        ] {
            push(&format!("{name}.weight"), w(inp, o));
            if cfg.bias {
                push(&format!("{name}.bias"), vec![o]);
            }
        }
        for ln in ["ln_1", "ln_2"] {
            push(&format!("{ln}.weight"), vec![d]);
            if cfg.bias {
                push(&format!("{ln}.bias"), vec![d]);
            }
        }
    }
    out.push((format!("{pre}ln_f.weight"), vec![d]));
    if cfg.bias {
        out.push((format!("{pre}ln_f.bias"), vec![d]));
    }
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![v, d]));
    }
    out
}

#[derive(Clone, Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.n_embd;
        Ok(Self {
            weight: vb.get(d, "weight")?,
            bias: if cfg.bias {
                vb.get(d, "bias")?
            } else {
                Tensor::zeros(d, vb.dtype(), vb.device())?
            },
            eps: cfg.layer_norm_epsilon,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
    }
}

/// A projection read in the file's layout, held as `[out, in]`.
fn linear(cfg: &Gpt2Config, inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = match cfg.layout {
        Layout::Conv1D => vb.get((inp, out), "weight")?.t()?.contiguous()?,
        Layout::Linear => vb.get((out, inp), "weight")?,
    };
    let bias = if cfg.bias {
        Some(vb.get(out, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

#[derive(Clone, Debug)]
struct Block {
    ln_1: LayerNorm,
    ln_2: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// `GPT2LMHeadModel`.
#[derive(Clone, Debug)]
pub struct Gpt2 {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
    cfg: Gpt2Config,
    kernels: Kernels,
}

impl Gpt2 {
    /// The model over `vb`, its eval kernels chosen for `vb`'s device and dtype with our GPU
    /// kernels allowed ([`Gpt2::with_kernels`] chooses otherwise).
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        let kernels = Kernels::choose(vb.device(), vb.dtype(), Fused::On);
        let (d, i) = (cfg.n_embd, cfg.n_inner);
        let body = if cfg.prefix.is_empty() {
            vb.clone()
        } else {
            vb.pp(cfg.prefix.trim_end_matches('.'))
        };
        let wte = body.pp("wte").get((cfg.vocab_size, d), "weight")?;
        let wpe = body.pp("wpe").get((cfg.n_positions, d), "weight")?;
        let blocks = (0..cfg.n_layer)
            .map(|l| {
                let b = body.pp("h").pp(l);
                Ok(Block {
                    ln_1: LayerNorm::new(cfg, b.pp("ln_1"))?,
                    ln_2: LayerNorm::new(cfg, b.pp("ln_2"))?,
                    c_attn: linear(cfg, d, 3 * d, b.pp("attn").pp("c_attn"))?,
                    attn_proj: linear(cfg, d, d, b.pp("attn").pp("c_proj"))?,
                    c_fc: linear(cfg, d, i, b.pp("mlp").pp("c_fc"))?,
                    mlp_proj: linear(cfg, i, d, b.pp("mlp").pp("c_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(cfg, body.pp("ln_f"))?;
        let head = if cfg.tie_word_embeddings {
            Linear::new(wte.clone(), None)
        } else {
            Linear::new(vb.pp("lm_head").get((cfg.vocab_size, d), "weight")?, None)
        };
        Ok(Self {
            wte,
            wpe,
            blocks,
            ln_f,
            head,
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

    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.wte.dtype()
    }

    pub fn device(&self) -> &Device {
        self.wte.device()
    }

    pub fn hidden_states(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let (d, h) = (self.cfg.n_embd, self.cfg.n_head);
        let hd = self.cfg.head_dim();
        if t > self.cfg.n_positions {
            candle_core::bail!(
                "sequence of {t} tokens is longer than n_positions {}",
                self.cfg.n_positions
            );
        }
        let tok = self
            .wte
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let mut x = tok.broadcast_add(&self.wpe.narrow(0, 0, t)?)?;
        let device = x.device().clone();
        let mask = LazyMask::new(t, &device);
        let linear_eval = |l: &Linear, x: &Tensor| matmul::linear_eval(self.kernels.linear, l, x);
        for blk in &self.blocks {
            let qkv = linear_eval(&blk.c_attn, &blk.ln_1.forward(&x)?)?;
            // q, k, v are consecutive blocks of n_embd, each split into heads.
            let split = |i: usize| -> Result<Tensor> {
                qkv.narrow(2, i * d, d)?
                    .reshape((b, t, h, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let y = attention::causal_attention(
                self.kernels.attention,
                &split(0)?,
                &split(1)?,
                &split(2)?,
                &mask,
                1.0 / (hd as f64).sqrt(),
            )?;
            let y = linear_eval(&blk.attn_proj, &y.transpose(1, 2)?.reshape((b, t, d))?)?;
            x = (x + y)?;
            let m = linear_eval(&blk.c_fc, &blk.ln_2.forward(&x)?)?;
            let m = match self.cfg.activation {
                Activation::Gelu => m.gelu_erf()?,
                Activation::GeluTanh => m.gelu()?,
                Activation::Relu => m.relu()?,
                Activation::Silu => m.silu()?,
            };
            x = (x + linear_eval(&blk.mlp_proj, &m)?)?;
        }
        self.ln_f.forward(&x)
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        matmul::linear_eval(self.kernels.linear, &self.head, hidden)
    }

    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(input_ids)?)
    }
}
