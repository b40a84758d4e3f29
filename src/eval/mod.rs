//! Evaluation: token streams, windows, NLL / perplexity / bits per byte / KL against another model.
//!
//! The window convention is in [`windows`]. Windows are batched; the log-softmax is taken in
//! f32 whatever the model's dtype, and the vocabulary projection is done in row chunks so the
//! f32 logits of a whole batch never sit in memory at once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kernels::Fused;
use crate::model::{load_model_dir_with, one_line, LoadedModel, ModelError};
use crate::progress::{Cancelled, Reporter, Unit};

mod dtype;
pub mod nll;
pub mod tokens;
pub mod windows;

pub use dtype::{default_dtype, EvalDType};
pub use tokens::{read_token_file, tokenize_text_file, TokenDType, Tokens};
pub use windows::Windows;

/// The longest default context: the model's `max_position_embeddings`, capped here.
pub const DEFAULT_CTX_CAP: usize = 2048;

/// f32 logits held at once per model while projecting to the vocabulary (elements).
const LOGITS_BUDGET: usize = 1 << 26;

/// What to evaluate on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalData {
    /// UTF-8 text, tokenised with the model dir's `tokenizer.json`.
    Text(PathBuf),
    /// Pre-tokenised ids: `.npy`, or raw little-endian with the width the extension implies
    /// (`.bin`/`.u16` → u16 as nanoGPT writes them, `.u32` → u32).
    Tokens(PathBuf),
    /// Raw little-endian ids of the given width, whatever the extension.
    TokensAs(PathBuf, TokenDType),
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Tokens per window; default the model's `max_position_embeddings`, capped at 2048.
    pub ctx: Option<usize>,
    /// Evaluate only the first this many tokens.
    pub max_tokens: Option<usize>,
    /// Windows per forward pass.
    pub batch: usize,
    pub device: Device,
    /// Compute dtype; default f32 on CPU, the checkpoint's dtype on a GPU.
    pub dtype: Option<DType>,
    /// Whether our GPU kernels may run on a GPU `device`.
    pub fused: Fused,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            ctx: None,
            max_tokens: None,
            batch: 4,
            device: Device::Cpu,
            dtype: None,
            fused: Fused::On,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean negative log-likelihood per predicted token, nats.
    pub mean_nll: f64,
    pub ppl: f64,
    /// Text input only: total NLL in bits over the UTF-8 bytes of the evaluated span.
    pub bits_per_byte: Option<f64>,
    pub predicted_tokens: u64,
    /// Tokens run through the model (every token of every window) per second of forward work.
    pub tokens_per_s: f64,
    /// Mean NLL of each window, in order.
    pub window_nll: Vec<f64>,
    /// The requested window length (the one window is shorter when the input is).
    pub ctx: usize,
    pub windows: usize,
    /// sha256 (hex) of the evaluated token ids as little-endian u32.
    pub data_hash: String,
    /// The dtype the model ran in.
    pub dtype: EvalDType,
}

/// `lawa eval MODEL --against OTHER`: both models on the same windows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Comparison {
    pub model: EvalResult,
    pub other_mean_nll: f64,
    /// Mean over predicted tokens of KL(P_other ‖ P_model), nats.
    pub mean_kl: f64,
    /// Fraction of predicted positions where both models' most likely token is the same.
    pub top1_agreement: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: no tokenizer.json for --text; pass pre-tokenised ids with --tokens", dir.display())]
    NoTokenizer { dir: PathBuf },
    #[error("{}: {msg}", path.display())]
    Tokenizer { path: PathBuf, msg: String },
    #[error("{}: not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{}: empty text, nothing to evaluate", path.display())]
    EmptyText { path: PathBuf },
    #[error("{}: {n} token(s), at least 2 are needed to predict one", path.display())]
    TooFewTokens { path: PathBuf, n: usize },
    #[error("{}: cannot tell the id width from the extension; use .npy, .bin/.u16 (uint16) or .u32, or pass --token-dtype u16|u32", path.display())]
    TokenWidth { path: PathBuf },
    #[error("{}: {msg}", path.display())]
    BadTokens { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Io { path: PathBuf, msg: String },
    #[error("{}: token id {id} at position {position} is not below the model's vocab_size {vocab}", path.display())]
    TokenOutOfRange {
        path: PathBuf,
        id: u32,
        position: usize,
        vocab: usize,
    },
    #[error("--ctx {ctx} is larger than max_position_embeddings {max} of {}", config.display())]
    CtxTooLarge {
        ctx: usize,
        max: usize,
        config: PathBuf,
    },
    #[error("--ctx {0} is too small: a window needs at least 2 tokens")]
    CtxTooSmall(usize),
    #[error("--batch must be at least 1")]
    BatchZero,
    #[error("{} (vocab {a}) and {} (vocab {b}) have different vocabularies; they cannot be compared", dir_a.display(), dir_b.display())]
    VocabMismatch {
        dir_a: PathBuf,
        a: usize,
        dir_b: PathBuf,
        b: usize,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: evaluation failed: {msg}", dir.display())]
    Compute { dir: PathBuf, msg: String },
    #[error("evaluation cancelled")]
    Cancelled(#[from] Cancelled),
}

impl EvalError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> EvalError {
        EvalError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    }

    pub(crate) fn bad_tokens(path: &Path, msg: String) -> EvalError {
        EvalError::BadTokens {
            path: path.to_path_buf(),
            msg,
        }
    }
}

/// Reads or tokenises `data`, keeping the first `max_tokens` ids. `model_dir` (or, for a
/// weights file, its folder) supplies `tokenizer.json` for text.
pub fn load_tokens(
    data: &EvalData,
    model_dir: &Path,
    max_tokens: Option<usize>,
) -> Result<Tokens, EvalError> {
    match data {
        EvalData::Text(path) => {
            let dir = if model_dir.is_file() {
                model_dir.parent().unwrap_or(Path::new("."))
            } else {
                model_dir
            };
            let tokenizer = dir.join("tokenizer.json");
            if !tokenizer.is_file() {
                return Err(EvalError::NoTokenizer {
                    dir: dir.to_path_buf(),
                });
            }
            tokenize_text_file(path, &tokenizer, max_tokens)
        }
        EvalData::Tokens(path) => read_token_file(path, None, max_tokens),
        EvalData::TokensAs(path, dtype) => read_token_file(path, Some(*dtype), max_tokens),
    }
}

/// Loads a model dir for evaluation with `opts`' device and dtype.
pub fn load_model(model_dir: &Path, opts: &EvalOptions) -> Result<LoadedModel, EvalError> {
    let choose = |stored| {
        opts.dtype
            .unwrap_or_else(|| default_dtype(&opts.device, stored))
    };
    Ok(load_model_dir_with(
        model_dir,
        choose,
        &opts.device,
        opts.fused,
    )?)
}

/// `--ctx`, or the default, checked against the model.
pub fn resolve_ctx(ctx: Option<usize>, model: &LoadedModel) -> Result<usize, EvalError> {
    let config = model.dir.join("config.json");
    resolve_ctx_against(ctx, model.config.max_position_embeddings, &config)
}

/// `--ctx`, or the default, checked against a model's `max_position_embeddings` (from
/// `config`, named in the error), before any weights are loaded.
pub fn resolve_ctx_against(
    ctx: Option<usize>,
    max: usize,
    config: &Path,
) -> Result<usize, EvalError> {
    let ctx = ctx.unwrap_or(max.min(DEFAULT_CTX_CAP));
    if ctx > max {
        return Err(EvalError::CtxTooLarge {
            ctx,
            max,
            config: config.to_path_buf(),
        });
    }
    if ctx < 2 {
        return Err(EvalError::CtxTooSmall(ctx));
    }
    Ok(ctx)
}

/// Evaluates `model_dir` on `data`: loads the model and the tokens, then [`evaluate`].
/// Reports `Unit::Windows` and can be cancelled between batches.
pub fn eval_model_dir(
    model_dir: &Path,
    data: &EvalData,
    opts: &EvalOptions,
    reporter: &Reporter,
) -> Result<EvalResult, EvalError> {
    reporter.check()?;
    crate::device::prepare(&opts.device, reporter).map_err(|e| EvalError::Compute {
        dir: model_dir.to_path_buf(),
        msg: one_line(&e.to_string()),
    })?;
    let model = load_model(model_dir, opts)?;
    let tokens = load_tokens(data, model_dir, opts.max_tokens)?;
    evaluate(&model, &tokens, opts, reporter)
}

/// Evaluates an already loaded model on already loaded tokens (no reloading between calls).
pub fn evaluate(
    model: &LoadedModel,
    tokens: &Tokens,
    opts: &EvalOptions,
    reporter: &Reporter,
) -> Result<EvalResult, EvalError> {
    Ok(run(model, None, tokens, opts, reporter)?.0)
}

/// Evaluates `model` and `other` on the same windows: both NLLs, KL(other ‖ model), top-1 agreement.
pub fn compare(
    model: &LoadedModel,
    other: &LoadedModel,
    tokens: &Tokens,
    opts: &EvalOptions,
    reporter: &Reporter,
) -> Result<Comparison, EvalError> {
    let (result, against) = run(model, Some(other), tokens, opts, reporter)?;
    let (other_nll, kl, agree) = against.unwrap_or_default();
    let n = result.predicted_tokens as f64;
    Ok(Comparison {
        model: result,
        other_mean_nll: other_nll / n,
        mean_kl: kl / n,
        top1_agreement: agree / n,
    })
}

/// Checks everything about a run that can fail before any compute (ctx, batch, the token ids
/// against the vocabulary, the models' compatibility) and returns its windows.
pub fn plan(
    model: &LoadedModel,
    other: Option<&LoadedModel>,
    tokens: &Tokens,
    opts: &EvalOptions,
) -> Result<Windows, EvalError> {
    let ctx = resolve_ctx(opts.ctx, model)?;
    let vocab = model.config.vocab_size;
    if let Some(o) = other {
        resolve_ctx(Some(ctx), o)?;
        if o.config.vocab_size != vocab {
            return Err(EvalError::VocabMismatch {
                dir_a: model.dir.clone(),
                a: vocab,
                dir_b: o.dir.clone(),
                b: o.config.vocab_size,
            });
        }
    }
    if opts.batch == 0 {
        return Err(EvalError::BatchZero);
    }
    let n = opts
        .max_tokens
        .map_or(tokens.ids.len(), |m| m.min(tokens.ids.len()));
    let w = Windows::plan(n, ctx).ok_or_else(|| EvalError::TooFewTokens {
        path: tokens.source.clone(),
        n,
    })?;
    let used = &tokens.ids[..w.tokens_used()];
    if let Some((position, &id)) = used
        .iter()
        .enumerate()
        .find(|(_, &id)| id as usize >= vocab)
    {
        return Err(EvalError::TokenOutOfRange {
            path: tokens.source.clone(),
            id,
            position,
            vocab,
        });
    }
    Ok(w)
}

/// Sums over predicted tokens of the comparison: other's NLL, KL, agreements.
type AgainstSums = (f64, f64, f64);

fn run(
    model: &LoadedModel,
    other: Option<&LoadedModel>,
    tokens: &Tokens,
    opts: &EvalOptions,
    reporter: &Reporter,
) -> Result<(EvalResult, Option<AgainstSums>), EvalError> {
    let w = plan(model, other, tokens, opts)?;
    let used = &tokens.ids[..w.tokens_used()];
    let data_hash = hash_ids(used);
    let compute = |e: candle_core::Error| EvalError::Compute {
        dir: model.dir.clone(),
        msg: one_line(&e.to_string()),
    };

    crate::device::prepare(&opts.device, reporter).map_err(compute)?;
    let start = Instant::now();
    let mut window_nll = Vec::with_capacity(w.count);
    let mut total = 0f64;
    let mut against: Option<AgainstSums> = other.map(|_| (0.0, 0.0, 0.0));
    reporter.report("eval", 0, Some(w.count as u64), Unit::Windows);
    for first in (0..w.count).step_by(opts.batch) {
        reporter.check()?;
        let nb = opts.batch.min(w.count - first);
        let ids = &used[w.range(first).start..w.range(first + nb - 1).end];
        let sums = run_batch(model, other, ids, nb, w.len, &opts.device).map_err(compute)?;
        for per_window in sums.nll.chunks(w.len - 1) {
            let s: f64 = per_window.iter().map(|&x| x as f64).sum();
            total += s;
            window_nll.push(s / (w.len - 1) as f64);
        }
        if let (Some(acc), Some(b)) = (against.as_mut(), sums.against) {
            acc.0 += b.0;
            acc.1 += b.1;
            acc.2 += b.2;
        }
        reporter.report(
            "eval",
            (first + nb) as u64,
            Some(w.count as u64),
            Unit::Windows,
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let predicted = w.predicted();
    let mean_nll = total / predicted as f64;
    let result = EvalResult {
        mean_nll,
        ppl: nll::perplexity(mean_nll),
        bits_per_byte: tokens
            .span_bytes(w.tokens_used())
            .and_then(|b| nll::bits_per_byte(total, b)),
        predicted_tokens: predicted as u64,
        tokens_per_s: w.tokens_used() as f64 / seconds.max(1e-9),
        window_nll,
        ctx: resolve_ctx(opts.ctx, model)?,
        windows: w.count,
        data_hash,
        dtype: EvalDType::of(model.model.dtype()),
    };
    Ok((result, against))
}

struct BatchSums {
    /// Per predicted token, window-major.
    nll: Vec<f32>,
    against: Option<AgainstSums>,
}

/// One forward pass over `nb` windows of `len` tokens (`ids` row-major).
fn run_batch(
    model: &LoadedModel,
    other: Option<&LoadedModel>,
    ids: &[u32],
    nb: usize,
    len: usize,
    device: &Device,
) -> candle_core::Result<BatchSums> {
    let ids = Tensor::from_slice(ids, (nb, len), device)?;
    let rows = nb * (len - 1);
    // Position t predicts token t + 1.
    let targets = ids.narrow(1, 1, len - 1)?.flatten_all()?;
    let inputs = |m: &LoadedModel| -> candle_core::Result<Tensor> {
        let h = m.model.hidden_states(&ids)?;
        let d = h.dim(2)?;
        h.narrow(1, 0, len - 1)?.reshape((rows, d))
    };
    let hidden = inputs(model)?;
    let hidden_other = other.map(inputs).transpose()?;
    let vocab = model.config.vocab_size;
    let chunk = (LOGITS_BUDGET / vocab).max(1);
    let mut nll = Vec::with_capacity(rows);
    let mut against = other.map(|_| (0f64, 0f64, 0f64));
    for start in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - start);
        let t = targets.narrow(0, start, n)?;
        let logits = model.model.logits(&hidden.narrow(0, start, n)?)?;
        let kernel = model.model.kernels().nll;
        nll.extend(nll::token_nll_with(kernel, &logits, &t)?.to_vec1::<f32>()?);
        if let (Some(o), Some(h), Some(acc)) = (other, &hidden_other, against.as_mut()) {
            let logits_o = o.model.logits(&h.narrow(0, start, n)?)?;
            let sum = |x: Tensor| -> candle_core::Result<f64> {
                x.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()
            };
            acc.0 += sum(nll::token_nll_with(o.model.kernels().nll, &logits_o, &t)?)?;
            let (kl, agree) = nll::kl_and_top1(&logits, &logits_o)?;
            acc.1 += sum(kl)?;
            acc.2 += sum(agree)?;
        }
    }
    Ok(BatchSums { nll, against })
}

/// sha256 hex of ids as little-endian u32.
pub fn hash_ids(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    format!("{:x}", h.finalize())
}
