//! The demo training run and its on-disk trajectory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::optim::{clip_grad_norm, grad_norm, AdamW, AdamWConfig, LrSurge, Schedule};
use super::rng::Pcg32;
use super::{corpus, tokenizer, TrainError};
use crate::model::{Config as ModelConfig, GptNeox};
use crate::progress::{Reporter, Unit};

/// Everything that determines the demo run. Stored in `trajectory.json`; a re-run with an equal
/// config reuses the existing demo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoConfig {
    pub seed: u64,
    /// The built-in text (no default on purpose: a demo made from other text, such as the
    /// generated grammar of earlier versions, does not match and is trained again).
    pub text: DemoText,
    /// Train on this UTF-8 file instead of the built-in text (its last 5% is held out).
    pub corpus: Option<PathBuf>,
    /// At most this many bytes of the built-in text's train and held-out splits.
    pub train_bytes: usize,
    pub heldout_bytes: usize,
    /// The BPE is trained on this much of the train split (its statistics settle long before).
    pub tokenizer_bytes: usize,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Tokens per sequence (also the model's `max_position_embeddings`).
    pub ctx: usize,
    pub batch_size: usize,
    pub steps: u64,
    /// A checkpoint every this many steps (and at the last step).
    pub checkpoint_every: u64,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    /// Clip gradients to this global norm (`None`: no clipping).
    pub clip_norm: Option<f64>,
    /// A declared learning-rate surge (see [`LrSurge`]).
    pub lr_surge: Option<LrSurge>,
}

impl Default for DemoConfig {
    /// The real demo: about two minutes on two CPU cores.
    fn default() -> Self {
        DemoConfig {
            seed: 1234,
            text: DemoText::Austen,
            corpus: None,
            // All five train novels (3.5 MB); the first 50 kB of Persuasion (about 17k tokens: enough
            // for the few-% perplexity differences of LAWA to stand out, small enough that the
            // explorer's full sweep of 116 evals takes about 20 s on 2 cores).
            train_bytes: 4_000_000,
            heldout_bytes: 50_000,
            tokenizer_bytes: 1_000_000,
            vocab_size: 1024,
            hidden_size: 64,
            num_layers: 2,
            num_heads: 4,
            ctx: 64,
            batch_size: 16,
            steps: 1200,
            checkpoint_every: 20,
            peak_lr: 6e-3,
            min_lr: 6e-4,
            warmup_steps: 60,
            adamw: AdamWConfig {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            clip_norm: Some(1.0),
            lr_surge: Some(LrSurge {
                step: 720,
                steps: 10,
                factor: 20.0,
                why: SURGE_WHY.to_string(),
            }),
        }
    }
}

/// The demo's built-in text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoText {
    /// Jane Austen's novels ([`corpus::austen`]): five to train on, Persuasion held out.
    Austen,
}

/// The cloze task file of a demo dir, in lm-evaluation-harness's `lambada_openai` schema.
pub const CLOZE: &str = "cloze.jsonl";
/// Cloze passages: long enough to give the word away, short enough for the demo's context.
const CLOZE_CHARS: (usize, usize) = (60, 260);
const CLOZE_MAX_ITEMS: usize = 500;

/// Why the demo's spike is made on purpose (written into `trajectory.json`).
pub const SURGE_WHY: &str = "a loss spike made on purpose: this tiny model did not spike on its \
own (tried: peak lr up to 6e-2, Adam beta2 up to 0.999, eps 1e-12, no clipping), so the \
learning rate is multiplied for a few steps to give the run a spike to explore";

impl DemoConfig {
    /// A run of a few seconds for tests: same code paths, tiny sizes.
    pub fn tiny() -> Self {
        DemoConfig {
            seed: 7,
            train_bytes: 120_000,
            heldout_bytes: 8_000,
            tokenizer_bytes: 120_000,
            vocab_size: 300,
            hidden_size: 32,
            num_layers: 1,
            num_heads: 2,
            ctx: 16,
            batch_size: 8,
            steps: 100,
            checkpoint_every: 10,
            peak_lr: 5e-3,
            min_lr: 5e-4,
            warmup_steps: 5,
            lr_surge: Some(LrSurge {
                step: 70,
                steps: 2,
                factor: 100.0,
                why: SURGE_WHY.to_string(),
            }),
            ..DemoConfig::default()
        }
    }

    pub fn tokens_per_step(&self) -> u64 {
        (self.batch_size * self.ctx) as u64
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            peak_lr: self.peak_lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
            surge: self.lr_surge.clone(),
        }
    }

    /// The steps at which checkpoints are written.
    pub fn checkpoint_steps(&self) -> Vec<u64> {
        let every = self.checkpoint_every.max(1);
        let mut s: Vec<u64> = (1..=self.steps / every).map(|i| i * every).collect();
        if s.last() != Some(&self.steps) && self.steps > 0 {
            s.push(self.steps);
        }
        s
    }

    /// The model's `config.json` contents.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig::new(
            self.vocab_size,
            self.hidden_size,
            self.num_layers,
            self.num_heads,
            self.ctx,
        )
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.steps == 0 || self.batch_size == 0 || self.ctx < 2 {
            return bad("steps, batch size and ctx (>= 2) must be positive".into());
        }
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "hidden size {} is not divisible by {} heads",
                self.hidden_size, self.num_heads
            ));
        }
        if self.vocab_size < 257 {
            return bad(format!(
                "vocab size {} is below 257 (256 bytes + end of text)",
                self.vocab_size
            ));
        }
        if !(self.peak_lr > 0.0 && self.min_lr >= 0.0) {
            return bad("learning rates must be positive".into());
        }
        Ok(())
    }
}

/// What a finished (or reused) demo run is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoSummary {
    pub dir: PathBuf,
    pub checkpoint_steps: Vec<u64>,
    pub final_loss: f32,
    pub lr_surge: Option<LrSurge>,
    /// True when an existing complete demo with the same config was reused.
    pub reused: bool,
    pub seconds: f64,
}

const TRAJECTORY: &str = "trajectory.json";
const METRICS: &str = "metrics.jsonl";
const HELDOUT: &str = "heldout.txt";

/// A demo dir is complete once it has its `trajectory.json` with `"complete": true`: the whole
/// dir is built under a temporary name and renamed into place last, so a dir at the final path
/// is only ever a finished run.
pub fn is_complete(dir: &Path) -> bool {
    read_trajectory(dir)
        .map(|v| v.get("complete") == Some(&json!(true)) && dir.join(METRICS).is_file())
        .unwrap_or(false)
}

fn read_trajectory(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(TRAJECTORY)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The config a complete demo at `dir` was made with, if it is one.
pub fn existing_config(dir: &Path) -> Option<DemoConfig> {
    if !is_complete(dir) {
        return None;
    }
    serde_json::from_value(read_trajectory(dir)?.get("config")?.clone()).ok()
}

/// Removes the temporary build dir unless the run got to the final rename.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Trains the demo into `out` (replacing what is there), unless `out` already holds a complete
/// demo made with the same config, which is reused. Reports `Unit::Steps` with the loss in
/// `detail`; cancellable between steps. Nothing appears at `out` unless the run finishes.
pub fn run_demo(
    cfg: &DemoConfig,
    out: &Path,
    reporter: &Reporter,
) -> Result<DemoSummary, TrainError> {
    cfg.validate()?;
    if existing_config(out).as_ref() == Some(cfg) {
        let metrics = read_last_loss(&out.join(METRICS));
        return Ok(DemoSummary {
            dir: out.to_path_buf(),
            checkpoint_steps: cfg.checkpoint_steps(),
            final_loss: metrics.unwrap_or(f32::NAN),
            lr_surge: cfg.lr_surge.clone(),
            reused: true,
            seconds: 0.0,
        });
    }
    train_into(cfg, out, reporter)
}

fn read_last_loss(path: &Path) -> Option<f32> {
    let text = std::fs::read_to_string(path).ok()?;
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let v: serde_json::Value = serde_json::from_str(last).ok()?;
    v.get("loss")?.as_f64().map(|x| x as f32)
}

/// Always trains, then atomically replaces `out`.
pub fn train_into(
    cfg: &DemoConfig,
    out: &Path,
    reporter: &Reporter,
) -> Result<DemoSummary, TrainError> {
    train_with_observer(cfg, out, reporter, &mut |_, _| Ok(()))
}

/// [`train_into`], calling `observer(step, model)` right after each checkpoint is written, with
/// the live model (checks of what a checkpoint holds, live evaluation).
pub fn train_with_observer(
    cfg: &DemoConfig,
    out: &Path,
    reporter: &Reporter,
    observer: &mut dyn FnMut(u64, &GptNeox) -> Result<(), TrainError>,
) -> Result<DemoSummary, TrainError> {
    cfg.validate()?;
    // Never delete what is not ours: only a previous demo or an empty dir may be replaced.
    if out.exists() && !is_complete(out) && !is_empty_dir(out) {
        return Err(TrainError::io(
            out,
            "exists and is not a lawa demo; choose another --out or remove it",
        ));
    }
    let started = Instant::now();
    tune_malloc();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "demo".into());
    let mut tmp = TempDir {
        path: parent.join(format!(".{name}.partial-{}", std::process::id())),
        keep: false,
    };
    remove_stale_partials(parent, &name);
    if tmp.path.exists() {
        std::fs::remove_dir_all(&tmp.path).map_err(|e| TrainError::io(&tmp.path, e))?;
    }
    std::fs::create_dir_all(&tmp.path).map_err(|e| TrainError::io(&tmp.path, e))?;

    // Data.
    reporter.report("demo: corpus", 0, None, Unit::Steps);
    let corpus = match &cfg.corpus {
        Some(p) => read_corpus(p)?,
        None => match cfg.text {
            DemoText::Austen => corpus::austen(cfg.train_bytes, cfg.heldout_bytes),
        },
    };
    reporter.check()?;
    reporter.report("demo: tokenizer", 0, None, Unit::Steps);
    let tok_text = &corpus.train[..floor_boundary(&corpus.train, cfg.tokenizer_bytes)];
    let tok = tokenizer::train(tok_text, cfg.vocab_size)?;
    // The vocabulary may come out smaller on a small `--corpus`; the model matches it.
    let vocab = tok.get_vocab_size(true);
    reporter.check()?;
    let train_ids = tokenizer::encode(&tok, &corpus.train)?;
    let heldout_ids = tokenizer::encode(&tok, &corpus.heldout)?;
    if train_ids.len() < cfg.ctx + 2 {
        return Err(TrainError::Config(format!(
            "the train text is only {} tokens, fewer than one sequence of {}",
            train_ids.len(),
            cfg.ctx + 1
        )));
    }
    let heldout_path = tmp.path.join(HELDOUT);
    std::fs::write(&heldout_path, &corpus.heldout).map_err(|e| TrainError::io(&heldout_path, e))?;
    let cloze =
        corpus::cloze_passages(&corpus.cloze, CLOZE_CHARS.0, CLOZE_CHARS.1, CLOZE_MAX_ITEMS);
    let cloze_path = tmp.path.join(CLOZE);
    let lines: String = cloze
        .iter()
        .map(|text| format!("{}\n", json!({ "text": text })))
        .collect();
    std::fs::write(&cloze_path, lines).map_err(|e| TrainError::io(&cloze_path, e))?;
    let tok_json = tok
        .to_string(false)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let mut mcfg = cfg.model_config();
    mcfg.vocab_size = vocab;
    let config_json = mcfg.to_json();
    reporter.check()?;

    // Model and optimizer.
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = GptNeox::new(&mcfg, vb)?;
    let vars = sorted_vars(&varmap);
    init_params(&vars, &mcfg, &mut Pcg32::new(cfg.seed, 11))?;
    let var_list: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars.clone(), cfg.adamw.clone())?;
    let schedule = cfg.schedule();
    let ckpt_steps = cfg.checkpoint_steps();

    let metrics_path = tmp.path.join(METRICS);
    let metrics_file =
        std::fs::File::create(&metrics_path).map_err(|e| TrainError::io(&metrics_path, e))?;
    let mut metrics = std::io::BufWriter::new(metrics_file);
    let mut batch_rng = Pcg32::new(cfg.seed, 10);
    let (b, t) = (cfg.batch_size, cfg.ctx);
    let mut input = vec![0u32; b * t];
    let mut target = vec![0u32; b * t];
    let mut last_loss = f32::NAN;
    let mut next_ckpt = 0;
    let stage = "demo: training";
    for step in 1..=cfg.steps {
        reporter.check()?;
        sample_batch(&train_ids, t, &mut batch_rng, &mut input, &mut target);
        let x = Tensor::from_slice(&input, (b, t), &device)?;
        let logits = model.forward_train(&x)?.reshape((b * t, vocab))?;
        let y = Tensor::from_slice(&target, b * t, &device)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let loss_v = loss.to_scalar::<f32>()?;
        if !loss_v.is_finite() {
            return Err(TrainError::Diverged { step, loss: loss_v });
        }
        let mut grads = loss.backward()?;
        let norm = match cfg.clip_norm {
            Some(max) => clip_grad_norm(&var_list, &mut grads, max)?,
            None => grad_norm(var_list.iter(), &grads)?,
        };
        let lr = schedule.lr(step);
        opt.step(&grads, lr)?;
        last_loss = loss_v;
        let line = json!({
            "step": step,
            "tokens": step * cfg.tokens_per_step(),
            "loss": loss_v,
            "lr": lr,
            "grad_norm": norm,
        });
        writeln!(metrics, "{line}").map_err(|e| TrainError::io(&metrics_path, e))?;
        if ckpt_steps.get(next_ckpt) == Some(&step) {
            next_ckpt += 1;
            let dir = tmp.path.join(format!("step{step}"));
            write_checkpoint(&dir, &vars, &config_json, &tok_json)?;
            observer(step, &model)?;
        }
        reporter.report_detail(
            stage,
            step,
            Some(cfg.steps),
            Unit::Steps,
            Some(format!("loss {loss_v:.3}")),
        );
    }
    metrics
        .flush()
        .map_err(|e| TrainError::io(&metrics_path, e))?;
    drop(metrics);

    let seconds = started.elapsed().as_secs_f64();
    let trajectory = json!({
        "name": "lawa demo",
        "complete": true,
        "lawa_version": env!("CARGO_PKG_VERSION"),
        "description": "A tiny GPT-NeoX pre-trained by `lawa demo` on Jane Austen's novels (Persuasion held out).",
        "seed": cfg.seed,
        "config": cfg,
        "model": serde_json::from_str::<serde_json::Value>(&config_json).unwrap_or_default(),
        "parameters": vars.iter().map(|(_, v)| v.elem_count()).sum::<usize>(),
        "tokens_per_step": cfg.tokens_per_step(),
        "schedule": schedule,
        "checkpoint_steps": ckpt_steps,
        "corpus": {
            "source": match &cfg.corpus {
                Some(p) => p.display().to_string(),
                None => format!(
                    "Jane Austen (public domain): {} for training; {} held out",
                    corpus::TRAIN_NOVELS.map(|n| n.title).join(", "),
                    corpus::HELDOUT_NOVEL.title
                ),
            },
            "train_bytes": corpus.train.len(),
            "heldout_bytes": corpus.heldout.len(),
            "train_tokens": train_ids.len(),
            "heldout_tokens": heldout_ids.len(),
            "epochs": (cfg.steps * cfg.tokens_per_step()) as f64 / train_ids.len() as f64,
        },
        "tasks": { "lambada_openai": { "file": CLOZE, "items": cloze.len() } },
        "vocab_size": vocab,
        "lr_surge": cfg.lr_surge,
        "seconds": seconds,
    });
    let tpath = tmp.path.join(TRAJECTORY);
    let text = serde_json::to_string_pretty(&trajectory).map_err(|e| TrainError::io(&tpath, e))?;
    std::fs::write(&tpath, text).map_err(|e| TrainError::io(&tpath, e))?;
    reporter.check()?;

    // Swap into place: the old demo (if any) moves aside first, then is removed.
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| TrainError::io(out, e))?;
        std::fs::rename(&tmp.path, out).map_err(|e| TrainError::io(out, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp.path, out).map_err(|e| TrainError::io(out, e))?;
    }
    tmp.keep = true;
    Ok(DemoSummary {
        dir: out.to_path_buf(),
        checkpoint_steps: ckpt_steps,
        final_loss: last_loss,
        lr_surge: cfg.lr_surge.clone(),
        reused: false,
        seconds,
    })
}

/// glibc returns freed buffers above 128 KiB to the kernel at once, so every step's logits,
/// attention scores and gradients are fresh `mmap`s that page-fault in again: measured, a fifth
/// of the step time went to the kernel. Keeping them on the heap makes them reused instead.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tuning parameters; any value is valid input.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 256 << 20);
        }
    }
}

/// Removes `.{name}.partial-{pid}` dirs left by runs that were killed (not cancelled): only
/// those whose process is gone, so a concurrent run is left alone. Best effort.
fn remove_stale_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = if cfg!(target_os = "linux") {
            Path::new(&format!("/proc/{pid}")).exists()
        } else {
            true // no cheap liveness check: leave it
        };
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn read_corpus(path: &Path) -> Result<corpus::Corpus, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::Corpus {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| TrainError::Corpus {
        path: path.to_path_buf(),
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    if text.trim().is_empty() {
        return Err(TrainError::Corpus {
            path: path.to_path_buf(),
            message: "the file is empty".into(),
        });
    }
    let c = corpus::split_text(&text, 0.05);
    if c.heldout.trim().is_empty() {
        return Err(TrainError::Corpus {
            path: path.to_path_buf(),
            message: "too short to hold out a part for evaluation".into(),
        });
    }
    Ok(c)
}

/// The VarMap's variables sorted by name: a fixed order for initialisation and updates.
fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn is_norm(name: &str) -> bool {
    name.contains("layernorm") || name.contains("layer_norm")
}

/// GPT-NeoX's initialisation as Pythia uses it, from our own seeded generator (candle's CPU
/// random numbers cannot be seeded): `small_init` N(0, sqrt(2 / 5d)) for weights, `wang_init`
/// N(0, 2 / (L sqrt(d))) for the projections back into the residual stream, zero biases,
/// unit LayerNorm gains.
fn init_params(
    vars: &[(String, Var)],
    cfg: &ModelConfig,
    rng: &mut Pcg32,
) -> Result<(), TrainError> {
    let d = cfg.hidden_size as f64;
    let small = (2.0 / (5.0 * d)).sqrt();
    let wang = 2.0 / (cfg.num_hidden_layers as f64 * d.sqrt());
    for (name, var) in vars {
        let n = var.elem_count();
        let data: Vec<f32> = if is_norm(name) && name.ends_with(".weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let std = if name.ends_with("attention.dense.weight")
                || name.ends_with("mlp.dense_4h_to_h.weight")
            {
                wang
            } else {
                small
            };
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        };
        var.set(&Tensor::from_vec(data, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// `b` random windows of `t + 1` tokens: inputs are the first `t`, targets the last `t`.
fn sample_batch(ids: &[u32], t: usize, rng: &mut Pcg32, input: &mut [u32], target: &mut [u32]) {
    let span = ids.len() - t - 1;
    for (xi, yi) in input.chunks_mut(t).zip(target.chunks_mut(t)) {
        let start = rng.below(span + 1);
        xi.copy_from_slice(&ids[start..start + t]);
        yi.copy_from_slice(&ids[start + 1..start + 1 + t]);
    }
}

/// One Hugging Face model dir: `config.json`, `model.safetensors`, `tokenizer.json`.
fn write_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    config_json: &str,
    tok_json: &str,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let cpath = dir.join("config.json");
    std::fs::write(&cpath, config_json).map_err(|e| TrainError::io(&cpath, e))?;
    let tpath = dir.join("tokenizer.json");
    std::fs::write(&tpath, tok_json).map_err(|e| TrainError::io(&tpath, e))?;
    let wpath = dir.join("model.safetensors");
    write_safetensors(&wpath, vars)?;
    Ok(())
}

/// A plain f32 safetensors file with `{"format": "pt"}` metadata (older transformers insist on it).
fn write_safetensors(path: &Path, vars: &[(String, Var)]) -> Result<(), TrainError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data: Vec<u8> = Vec::new();
    for (name, var) in vars {
        let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let start = data.len();
        data.extend_from_slice(bytemuck::cast_slice(&values));
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": var.dims(), "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_string(&header).map_err(|e| TrainError::io(path, e))?;
    // Pad the header so the data starts 8-byte aligned.
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    let mut file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    file.write_all(&(h.len() as u64).to_le_bytes())
        .and_then(|_| file.write_all(h.as_bytes()))
        .and_then(|_| file.write_all(&data))
        .map_err(|e| TrainError::io(path, e))?;
    Ok(())
}
