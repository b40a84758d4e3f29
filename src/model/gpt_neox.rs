//! GPT-NeoX (Pythia) as Hugging Face's `GPTNeoXForCausalLM` computes it.
//!
//! Tensor names mirror the checkpoints (`gpt_neox.layers.{i}.attention.query_key_value`, ...).
//! Two forward paths share one structure:
//! - [`GptNeox::forward`] (evaluation): candle's fused kernels (`ops::layer_norm`,
//!   `ops::softmax_last_dim`, `rotary_emb::rope`). Several of them have no backward pass.
//! - [`GptNeox::forward_train`] (training): only differentiable ops (hand-written LayerNorm,
//!   `ops::softmax`, rotate-half by hand), so every parameter receives a gradient.
//!
//! Built from a `VarMap`-backed `VarBuilder`, the model creates its parameters with GPT-NeoX's
//! (Pythia's) initialisation under the checkpoint names, so the `VarMap` saved as safetensors
//! is a Hugging Face checkpoint.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};

use super::config::{Activation, Config};
use super::rope::{Rope, RopeScaling, RopeTables};
use crate::kernels::attention::{self, reference, LazyMask};
use crate::kernels::matmul::{linear_eval, linear_t};
use crate::kernels::{heads, AttentionKernel, Fused, Kernels, LinearKernel};

/// Which kernels a forward pass may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The model's eval kernels (chosen when it was built), no gradients.
    Eval(Kernels),
    /// Differentiable ops only.
    Train,
}

/// Pythia's `small_init`: N(0, sqrt(2 / (5 d))) for embeddings and most weights.
fn small_init(cfg: &Config) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / (5.0 * cfg.hidden_size as f64)).sqrt(),
    }
}

/// Pythia's `wang_init`: N(0, 2 / (layers sqrt(d))) for the projections back into the residual.
fn wang_init(cfg: &Config) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: 2.0 / (cfg.num_hidden_layers as f64 * (cfg.hidden_size as f64).sqrt()),
    }
}

fn linear(in_dim: usize, out_dim: usize, bias: bool, init: Init, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = if bias {
        Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// A Linear on either path.
fn linear_fwd(l: &Linear, x: &Tensor, path: Path) -> Result<Tensor> {
    match path {
        Path::Eval(k) => linear_eval(k.linear, l, x),
        Path::Train => l.forward(x),
    }
}

#[derive(Clone, Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        match path {
            Path::Eval(_) => candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            ),
            Path::Train => layer_norm_differentiable(x, &self.weight, &self.bias, self.eps),
        }
    }
}

/// LayerNorm over the last dim from differentiable ops (statistics in f32 for half inputs).
pub fn layer_norm_differentiable(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = match dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed
        .to_dtype(dtype)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// The f32 cos/sin tables exactly as transformers computes them (f32 all the way, so that
/// the angles at late positions round the same way): `inv_freq = 1 / base^(2i/ndims)`,
/// `angle = pos * inv_freq`. Row-major `[max_positions, ndims / 2]`.
pub fn rotary_tables(ndims: usize, base: f64, max_positions: usize) -> (Vec<f32>, Vec<f32>) {
    let half = ndims / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0f32 / (base as f32).powf((2 * i) as f32 / ndims as f32))
        .collect();
    let mut cos = Vec::with_capacity(max_positions * half);
    let mut sin = Vec::with_capacity(max_positions * half);
    for pos in 0..max_positions {
        for f in &inv_freq {
            let angle = pos as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// Rotate-half RoPE (`x cos + rotate_half(x) sin`) from differentiable ops;
/// `cos`, `sin`: `[T, ndims / 2]`.
pub fn rope_differentiable(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, n / 2)?;
    let x2 = x.narrow(D::Minus1, n / 2, n - n / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

#[derive(Clone, Debug)]
struct Attention {
    query_key_value: Linear,
    dense: Linear,
    heads: usize,
    head_size: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            query_key_value: linear(
                d,
                3 * d,
                cfg.attention_bias,
                small_init(cfg),
                vb.pp("query_key_value"),
            )?,
            dense: linear(d, d, cfg.attention_bias, wang_init(cfg), vb.pp("dense"))?,
            heads: cfg.num_attention_heads,
            head_size: cfg.head_size(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &RopeTables,
        mask: &LazyMask,
        path: Path,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hs = self.head_size;
        let scale = 1.0 / (hs as f64).sqrt();
        if let Path::Eval(k) = path {
            if k.attention == AttentionKernel::CpuF32 {
                // Heads out of the interleaved projection and back in one pass each.
                let qkv = linear_fwd(&self.query_key_value, x, path)?;
                let (cos, sin) = rotary.cpu_f32()?;
                let rope = (rotary.ndims() > 0).then_some(heads::Rope {
                    cos: &cos,
                    sin: &sin,
                    ndims: rotary.ndims(),
                });
                let part = |i: usize, rope| {
                    let layout = heads::HeadLayout {
                        row: 0,
                        head_stride: 3 * hs,
                        offset: i * hs,
                    };
                    heads::split_heads_tensor(&qkv, self.heads, hs, layout, rope)
                };
                let (q, k, v) = (part(0, rope)?, part(1, rope)?, part(2, None)?);
                let y = attention::eval_cpu::causal_attention(&q, &k, &v, scale)?;
                return linear_fwd(&self.dense, &heads::merge_heads_tensor(&y)?, path);
            }
        }
        // The fused projection is interleaved per head: [q_h, k_h, v_h] for each head h.
        let qkv =
            linear_fwd(&self.query_key_value, x, path)?.reshape((b, t, self.heads, 3 * hs))?;
        let split = |i: usize| qkv.narrow(3, i * hs, hs)?.transpose(1, 2)?.contiguous();
        let eval = matches!(path, Path::Eval(_));
        let q = rotary.apply(&split(0)?, eval)?;
        let k = rotary.apply(&split(1)?, eval)?;
        let v = split(2)?;
        let y = match path {
            Path::Eval(kernels) => {
                attention::causal_attention(kernels.attention, &q, &k, &v, mask, scale)?
            }
            Path::Train => reference::causal_attention(&q, &k, &v, mask.get()?, scale)?,
        };
        linear_fwd(&self.dense, &y.transpose(1, 2)?.reshape((b, t, d))?, path)
    }
}

#[derive(Clone, Debug)]
struct Mlp {
    dense_h_to_4h: Linear,
    dense_4h_to_h: Linear,
    act: Activation,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            dense_h_to_4h: linear(d, i, true, small_init(cfg), vb.pp("dense_h_to_4h"))?,
            dense_4h_to_h: linear(i, d, true, wang_init(cfg), vb.pp("dense_4h_to_h"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        if let Path::Eval(k) = path {
            if self.act == Activation::Gelu && k.linear == LinearKernel::CpuF32 {
                // Up-projection, bias and GELU in one pass over the intermediate activations.
                let w = self.dense_h_to_4h.weight();
                let h = linear_t(x, w, self.dense_h_to_4h.bias(), true)?;
                return linear_eval(k.linear, &self.dense_4h_to_h, &h);
            }
        }
        let h = linear_fwd(&self.dense_h_to_4h, x, path)?;
        let h = match self.act {
            Activation::Gelu => h.gelu_erf()?,
            Activation::GeluTanh => h.gelu()?,
            Activation::Relu => h.relu()?,
            Activation::Silu => h.silu()?,
        };
        linear_fwd(&self.dense_4h_to_h, &h, path)
    }
}

#[derive(Clone, Debug)]
struct Layer {
    input_layernorm: LayerNorm,
    post_attention_layernorm: LayerNorm,
    attention: Attention,
    mlp: Mlp,
    parallel: bool,
}

impl Layer {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            input_layernorm: LayerNorm::new(cfg.hidden_size, eps, vb.pp("input_layernorm"))?,
            post_attention_layernorm: LayerNorm::new(
                cfg.hidden_size,
                eps,
                vb.pp("post_attention_layernorm"),
            )?,
            attention: Attention::new(cfg, vb.pp("attention"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            parallel: cfg.use_parallel_residual,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &RopeTables,
        mask: &LazyMask,
        path: Path,
    ) -> Result<Tensor> {
        let attn =
            self.attention
                .forward(&self.input_layernorm.forward(x, path)?, rotary, mask, path)?;
        if self.parallel {
            // x + attn(ln1(x)) + mlp(ln2(x)), summed in transformers' order.
            let mlp = self
                .mlp
                .forward(&self.post_attention_layernorm.forward(x, path)?, path)?;
            (mlp + attn)? + x
        } else {
            let h = (attn + x)?;
            let mlp = self
                .mlp
                .forward(&self.post_attention_layernorm.forward(&h, path)?, path)?;
            mlp + h
        }
    }
}

/// `GPTNeoXForCausalLM`.
#[derive(Clone, Debug)]
pub struct GptNeox {
    embed_in: Tensor,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
    embed_out: Linear,
    rotary: Rope,
    cfg: Config,
    /// The eval kernels, chosen when the model is built.
    kernels: Kernels,
}

impl GptNeox {
    /// Builds the model from `vb` (a checkpoint, or a `VarMap` to create fresh parameters).
    /// The output head is `embed_out` (Pythia) or `lm_head` (as transformers 5 may save it),
    /// or `embed_in` itself when `tie_word_embeddings`. The eval kernels are chosen for `vb`'s
    /// device and dtype with our GPU kernels allowed ([`GptNeox::with_kernels`] chooses
    /// otherwise).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let kernels = Kernels::choose(vb.device(), vb.dtype(), Fused::On);
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        let vb_m = vb.pp("gpt_neox");
        let embed_in = vb_m
            .pp("embed_in")
            .get_with_hints((v, d), "weight", small_init(cfg))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, vb_m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = LayerNorm::new(d, cfg.layer_norm_eps, vb_m.pp("final_layer_norm"))?;
        let embed_out = if cfg.tie_word_embeddings {
            Linear::new(embed_in.clone(), None)
        } else {
            let name = if !vb.contains_tensor("embed_out.weight")
                && vb.contains_tensor("lm_head.weight")
            {
                "lm_head"
            } else {
                "embed_out"
            };
            linear(d, v, false, small_init(cfg), vb.pp(name))?
        };
        let rotary = Rope::new(cfg.rotary_ndims(), cfg.rotary_emb_base, &RopeScaling::None);
        Ok(Self {
            embed_in,
            layers,
            final_layer_norm,
            embed_out,
            rotary,
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

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.embed_in.dtype()
    }

    pub fn device(&self) -> &Device {
        self.embed_in.device()
    }

    /// Logits `[B, T, vocab]` for every position of `input_ids: [B, T]` (u32), on the model's eval kernels.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(input_ids)?)
    }

    /// Logits `[B, T, vocab]` from differentiable ops only (training).
    pub fn forward_train(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.embed_out.forward(&self.run(input_ids, Path::Train)?)
    }

    /// The final-layer-normed hidden states `[B, T, hidden]` (eval path). With
    /// [`GptNeox::logits`] this lets an evaluator project to the vocabulary in row chunks.
    pub fn hidden_states(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.run(input_ids, Path::Eval(self.kernels))
    }

    /// The output head: `[..., hidden]` → `[..., vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        linear_eval(self.kernels.linear, &self.embed_out, hidden)
    }

    fn run(&self, input_ids: &Tensor, path: Path) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} tokens is longer than max_position_embeddings {}",
                self.cfg.max_position_embeddings
            );
        }
        let ids = input_ids.flatten_all()?;
        let mut x = self
            .embed_in
            .index_select(&ids, 0)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let device = x.device().clone();
        let mask = LazyMask::new(t, &device);
        let rotary = self.rotary.tables(t, x.dtype(), &device)?;
        for layer in &self.layers {
            x = layer.forward(&x, &rotary, &mask, path)?;
        }
        self.final_layer_norm.forward(&x, path)
    }
}

/// Every parameter a checkpoint must hold for `cfg`, with its shape, in the model's order.
/// The output head is listed as `embed_out.weight` (absent when the embeddings are tied).
pub fn parameter_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (v, d, i) = (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size);
    let mut out = vec![("gpt_neox.embed_in.weight".to_string(), vec![v, d])];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("gpt_neox.layers.{l}");
        let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{p}.{name}"), shape));
        push("input_layernorm.weight", vec![d]);
        push("input_layernorm.bias", vec![d]);
        push("post_attention_layernorm.weight", vec![d]);
        push("post_attention_layernorm.bias", vec![d]);
        push("attention.query_key_value.weight", vec![3 * d, d]);
        if cfg.attention_bias {
            push("attention.query_key_value.bias", vec![3 * d]);
        }
        push("attention.dense.weight", vec![d, d]);
        if cfg.attention_bias {
            push("attention.dense.bias", vec![d]);
        }
        push("mlp.dense_h_to_4h.weight", vec![i, d]);
        push("mlp.dense_h_to_4h.bias", vec![i]);
        push("mlp.dense_4h_to_h.weight", vec![d, i]);
        push("mlp.dense_4h_to_h.bias", vec![d]);
    }
    out.push(("gpt_neox.final_layer_norm.weight".to_string(), vec![d]));
    out.push(("gpt_neox.final_layer_norm.bias".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("embed_out.weight".to_string(), vec![v, d]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny(parallel: bool, rotary_pct: f64) -> Config {
        let mut c = Config::new(37, 16, 2, 2, 12);
        c.use_parallel_residual = parallel;
        c.rotary_pct = rotary_pct;
        c
    }

    fn ids(b: usize, t: usize, vocab: u32) -> Tensor {
        let v: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 7 + 3) % vocab).collect();
        Tensor::from_vec(v, (b, t), &Device::Cpu).unwrap()
    }

    #[test]
    fn varmap_parameters_have_checkpoint_names_and_shapes() {
        let cfg = tiny(true, 0.25);
        let vm = VarMap::new();
        GptNeox::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let data = vm.data().lock().unwrap();
        let mut have: Vec<(String, Vec<usize>)> = data
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        have.sort();
        let mut want = parameter_shapes(&cfg);
        want.sort();
        assert_eq!(have, want);
    }

    #[test]
    fn train_and_eval_paths_agree() {
        for (parallel, pct) in [(true, 0.25), (false, 1.0), (true, 0.0)] {
            let cfg = tiny(parallel, pct);
            let vm = VarMap::new();
            let m =
                GptNeox::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
            let x = ids(2, 9, 37);
            let a = m.forward(&x).unwrap();
            let b = m.forward_train(&x).unwrap();
            assert_eq!(a.dims(), &[2, 9, 37]);
            let diff = crate::kernels::max_abs_diff(&a, &b).unwrap() as f32;
            assert!(diff < 1e-5, "parallel={parallel} pct={pct}: {diff}");
        }
    }

    #[test]
    fn every_parameter_gets_a_nonzero_gradient() {
        for (parallel, pct) in [(true, 0.25), (false, 1.0)] {
            let cfg = tiny(parallel, pct);
            let vm = VarMap::new();
            let m =
                GptNeox::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
            let x = ids(2, 8, 37);
            let logits = m.forward_train(&x.narrow(1, 0, 7).unwrap()).unwrap();
            let targets = x.narrow(1, 1, 7).unwrap().flatten_all().unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits.reshape((14, 37)).unwrap(), &targets)
                .unwrap();
            let grads = loss.backward().unwrap();
            let data = vm.data().lock().unwrap();
            assert_eq!(data.len(), parameter_shapes(&cfg).len());
            for (name, var) in data.iter() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient"));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    norm.is_finite() && norm > 0.0,
                    "{name}: gradient norm {norm}"
                );
            }
        }
    }

    #[test]
    fn causality_later_tokens_do_not_change_earlier_logits() {
        let cfg = tiny(true, 0.25);
        let vm = VarMap::new();
        let m = GptNeox::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let a: Vec<u32> = vec![1, 2, 3, 4, 5, 6];
        let mut b = a.clone();
        b[5] = 30;
        let run = |v: Vec<u32>| {
            m.forward(&Tensor::from_vec(v, (1, 6), &Device::Cpu).unwrap())
                .unwrap()
                .narrow(1, 0, 5)
                .unwrap()
        };
        let diff = crate::kernels::max_abs_diff(&run(a), &run(b)).unwrap() as f32;
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn rotary_tables_match_the_formula() {
        let (cos, sin) = rotary_tables(4, 10000.0, 3);
        // position 2, frequency index 1: angle = 2 / 10000^(2/4) = 0.02
        assert!((cos[2 * 2 + 1] - 0.02f32.cos()).abs() < 1e-7);
        assert!((sin[2 * 2 + 1] - 0.02f32.sin()).abs() < 1e-7);
        assert_eq!(sin[0], 0.0);
    }

    #[test]
    fn too_long_input_is_an_error() {
        let cfg = tiny(true, 0.25);
        let vm = VarMap::new();
        let m = GptNeox::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let err = m.forward(&ids(1, 13, 37)).unwrap_err().to_string();
        assert!(err.contains("max_position_embeddings"), "{err}");
    }
}
