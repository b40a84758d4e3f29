//! Sweeps: the raw checkpoint and each window's average evaluated at every step of a
//! trajectory, reading each checkpoint about once.
//!
//! [`plan`] lists the [`Target`]s (the same typed targets the explorer's jobs use) and
//! [`pending`] drops those the results store already holds for the same resolved eval
//! settings. [`SweepEngine`] evaluates targets in step order: checkpoints are read into
//! memory ([`crate::average::ResidentCheckpoint`]) and kept while the memory budget allows,
//! so consecutive windows share their reads; each window is averaged in memory (bit for bit
//! what `lawa average` writes) and evaluated without touching the disk.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;

use crate::average::{self, AverageError, AverageOptions, ResidentCheckpoint, Scheme};
use crate::eval::{self, EvalDType, EvalError, EvalOptions};
use crate::jobs::engine::{make_record, make_task_record, EvalConfig, TaskConfig};
use crate::jobs::Target;
use crate::model::ModelError;
use crate::progress::Reporter;
use crate::results::{Averaging, EvalSettings, Metric, ResultRecord, ResultsError, Series};
use crate::source::hub::HubOptions;
use crate::source::Trajectory;
use crate::spikes::SpikeRegion;
use crate::tasks::{Doc, TaskError, TaskName};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Average(#[from] AverageError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("{0}")]
    Plan(String),
    #[error("sweep cancelled")]
    Cancelled(#[from] crate::progress::Cancelled),
}

/// What a sweep covers.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// The averaging settings: one curve of the explorer each.
    pub windows: Vec<Averaging>,
    /// Evaluate the raw checkpoint at each step too.
    pub raw: bool,
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Every n-th checkpoint of the range.
    pub every: usize,
}

/// The checkpoints of the window ending at checkpoint `end` of `steps`: the last `k` at or
/// before it, skipping those inside `spikes` when spike-aware. Fewer than k near the start.
pub fn window_steps(
    steps: &[u64],
    end: usize,
    k: usize,
    spike_aware: bool,
    spikes: &[SpikeRegion],
) -> Vec<u64> {
    if steps.is_empty() {
        return Vec::new();
    }
    let in_spike = |s: u64| spikes.iter().any(|r| r.start_step <= s && s <= r.end_step);
    let mut out: Vec<u64> = steps[..=end.min(steps.len() - 1)]
        .iter()
        .rev()
        .copied()
        .filter(|&s| !(spike_aware && in_spike(s)))
        .take(k)
        .collect();
    out.reverse();
    out
}

/// Normalised weights of a window's checkpoints; a custom list longer than the window (near
/// the start) uses its last entries.
pub fn window_weights(scheme: &Scheme, steps: &[u64]) -> Result<Vec<f64>, AverageError> {
    let scheme = match scheme {
        Scheme::Custom(w) if w.len() > steps.len() => {
            Scheme::Custom(w[w.len() - steps.len()..].to_vec())
        }
        s => s.clone(),
    };
    average::weights(&scheme, steps, true)
}

/// The window target ending at checkpoint `end`, or `None` when the window is not full (fewer
/// than k checkpoints) or is only the end checkpoint itself (that is the raw result).
pub fn window_target(
    steps: &[u64],
    end: usize,
    w: &Averaging,
    spikes: &[SpikeRegion],
) -> Result<Option<Target>, AverageError> {
    let window = window_steps(steps, end, w.k, w.spike_aware, spikes);
    if window.len() < w.k.max(1) || (window.len() == 1 && window[0] == steps[end]) {
        return Ok(None);
    }
    let weights = window_weights(&w.scheme, &window)?;
    Ok(Some(Target::Window {
        end_step: steps[end],
        steps: window,
        weights,
        scheme: w.scheme.clone(),
        k: w.k,
        spike_aware: w.spike_aware,
    }))
}

/// Every target of the sweep, in step order (raw first at each step).
pub fn plan(
    traj: &Trajectory,
    spec: &SweepSpec,
    spikes: &[SpikeRegion],
) -> Result<Vec<Target>, SweepError> {
    let steps = traj.steps();
    let every = spec.every.max(1);
    let in_range: Vec<usize> = (0..steps.len())
        .filter(|&i| {
            spec.from.is_none_or(|f| steps[i] >= f) && spec.to.is_none_or(|t| steps[i] <= t)
        })
        .collect();
    if in_range.is_empty() {
        return Err(SweepError::Plan(format!(
            "{}: no checkpoint in the step range",
            traj.source
        )));
    }
    let mut out = Vec::new();
    for &i in in_range.iter().step_by(every) {
        if spec.raw {
            out.push(Target::Checkpoint { step: steps[i] });
        }
        for w in &spec.windows {
            out.extend(window_target(&steps, i, w, spikes)?);
        }
    }
    Ok(out)
}

/// A target of a sweep and the metrics the store still lacks for it (in the order of the
/// settings: perplexity first).
#[derive(Clone, Debug, PartialEq)]
pub struct Todo {
    pub target: Target,
    pub metrics: Vec<Metric>,
}

/// Those of `settings` (one per metric) for which `records` hold no result of `target`.
pub fn missing<'a>(
    target: &Target,
    records: &[ResultRecord],
    settings: &'a [EvalSettings],
) -> Vec<&'a EvalSettings> {
    let (series, end) = (target.series(), target.end_step());
    settings
        .iter()
        .filter(|s| {
            !records
                .iter()
                .any(|r| r.end_step == end && s.matches(r) && r.series() == series)
        })
        .collect()
}

/// The targets of `plan` with a metric of `settings` not stored yet, and how many
/// evaluations (target × metric) were stored already.
pub fn pending(
    plan: Vec<Target>,
    records: &[ResultRecord],
    settings: &[EvalSettings],
) -> (Vec<Todo>, usize) {
    let done: std::collections::HashSet<(Metric, Series, u64)> = records
        .iter()
        .filter(|r| settings.iter().any(|s| s.matches(r)))
        .map(|r| (r.metric(), r.series(), r.end_step))
        .collect();
    let mut skipped = 0;
    let mut todo = Vec::new();
    for target in plan {
        let key = (target.series(), target.end_step());
        let metrics: Vec<Metric> = settings
            .iter()
            .map(|s| s.metric)
            .filter(|m| !done.contains(&(*m, key.0.clone(), key.1)))
            .collect();
        skipped += settings.len() - metrics.len();
        if !metrics.is_empty() {
            todo.push(Todo { target, metrics });
        }
    }
    (todo, skipped)
}

/// A stored result of the same model (the same checkpoints with the same weights) under the
/// same settings, relabelled as `target`: a spike-aware window that no spike touches is the
/// plain window, already evaluated. `None` when nothing stored is that model.
pub fn reuse(
    target: &Target,
    records: &[ResultRecord],
    settings: &EvalSettings,
) -> Option<ResultRecord> {
    let Target::Window {
        end_step,
        steps,
        weights,
        scheme,
        k,
        spike_aware,
    } = target
    else {
        return None;
    };
    records
        .iter()
        .rev()
        .find(|r| settings.matches(r) && r.steps == *steps && r.weights == *weights)
        .map(|r| ResultRecord {
            end_step: *end_step,
            scheme: Some(scheme.clone()),
            k: *k,
            spike_aware: *spike_aware,
            unix_time: crate::results::now_unix(),
            ..r.clone()
        })
}

/// What reading cost so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Checkpoint reads (a checkpoint read again after eviction counts again).
    pub checkpoint_reads: u64,
    pub bytes_read: u64,
    /// Reads that found the memory budget too small to keep the window.
    pub over_budget: bool,
}

/// Evaluates targets with checkpoints kept in memory between them (least recently used out
/// first, above `budget` bytes). One engine serves a whole sweep.
pub struct SweepEngine {
    traj: Trajectory,
    /// Where hub checkpoints are fetched from and cached.
    hub: HubOptions,
    eval: EvalConfig,
    budget: u64,
    resident: VecDeque<Arc<ResidentCheckpoint>>,
    tokens: Option<eval::Tokens>,
    stats: ReadStats,
    /// The last average's output buffers, written again by the next.
    scratch: average::Scratch,
    /// Perplexity's settings, then each task's (resolved once).
    settings: Option<Vec<EvalSettings>>,
    /// Each task's documents, read once.
    docs: HashMap<TaskName, Arc<Vec<Doc>>>,
}

/// Default memory for checkpoints kept between windows: half the machine's memory.
pub fn default_budget() -> u64 {
    crate::device::total_memory_bytes().map_or(8 << 30, |m| m / 2)
}

impl SweepEngine {
    pub fn new(traj: Trajectory, eval: EvalConfig, budget: u64) -> Self {
        SweepEngine {
            traj,
            hub: crate::Config::default().hub,
            eval,
            budget,
            resident: VecDeque::new(),
            tokens: None,
            stats: ReadStats::default(),
            scratch: Default::default(),
            settings: None,
            docs: HashMap::new(),
        }
    }

    /// Fetches hub checkpoints with `hub` (default: [`crate::Config::default`]'s, the public
    /// hub; local trajectories never need it).
    #[must_use]
    pub fn with_hub(self, hub: HubOptions) -> Self {
        SweepEngine { hub, ..self }
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    pub fn trajectory(&self) -> &Trajectory {
        &self.traj
    }

    pub fn hub(&self) -> &HubOptions {
        &self.hub
    }

    pub fn eval_config(&self) -> &EvalConfig {
        &self.eval
    }

    /// The eval settings every perplexity result of this engine will carry (ctx resolved
    /// against the newest checkpoint's config, without loading weights); resolved once.
    pub fn settings(&mut self) -> Result<EvalSettings, SweepError> {
        Ok(self.all_settings()?.swap_remove(0))
    }

    /// The settings of every metric the engine evaluates: perplexity, then each task of the
    /// config (at the model's full context, where the harness truncates, on the same dtype).
    pub fn all_settings(&mut self) -> Result<Vec<EvalSettings>, SweepError> {
        self.all_settings_for(None)
    }

    /// [`Self::all_settings`] for evaluating `target` first: with no checkpoint on disk, the
    /// settings are read from the one `target` fetches anyway, not from the newest.
    pub fn all_settings_for(
        &mut self,
        target: Option<&Target>,
    ) -> Result<Vec<EvalSettings>, SweepError> {
        if let Some(s) = &self.settings {
            return Ok(s.clone());
        }
        let s = self.resolve_settings(target.map(Target::end_step))?;
        self.settings = Some(s.clone());
        Ok(s)
    }

    fn resolve_settings(&self, prefer: Option<u64>) -> Result<Vec<EvalSettings>, SweepError> {
        let last = self
            .traj
            .checkpoints
            .last()
            .ok_or_else(|| SweepError::Plan(format!("{}: no checkpoints", self.traj.source)))?;
        // The newest checkpoint on disk (a local one, or a hub one complete in the cache) that
        // reads stands for all: one unreadable file fails only the targets that hold it, and
        // nothing is downloaded for the settings alone. With none on disk, the checkpoint of
        // the target to be evaluated is fetched (it is needed anyway), else the newest.
        let on_disk = |c: &crate::source::Checkpoint| {
            crate::source::hub::cached_location(&c.location, &self.hub)
        };
        let mut first_error = None;
        let mut found = None;
        for path in self.traj.checkpoints.iter().rev().filter_map(on_disk) {
            match crate::model::read_config(&path) {
                Ok(read) => {
                    found = Some(read);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let (cfg, source, weights) = match found {
            Some(read) => read,
            None => {
                let fetch = prefer
                    .and_then(|step| self.traj.checkpoint(step))
                    .filter(|c| on_disk(c).is_none())
                    .or_else(|| {
                        let mut rest = self.traj.checkpoints.iter().rev();
                        rest.find(|c| on_disk(c).is_none())
                    });
                match (fetch, first_error) {
                    (Some(c), _) => crate::model::read_config(&self.local(c.step)?)?,
                    (None, Some(e)) => return Err(e.into()),
                    (None, None) => crate::model::read_config(&self.local(last.step)?)?,
                }
            }
        };
        let max = cfg.info().max_position_embeddings;
        let ctx = eval::resolve_ctx_against(self.eval.ctx, max, source.path())?;
        // The dtype every result will be evaluated in.
        let stored = weights.main_dtype().and_then(|d| d.to_candle());
        let dtype = EvalDType::default_for(&self.eval.device, stored);
        let mut all = vec![EvalSettings {
            metric: Metric::Perplexity,
            data_hash: self.eval.data_hash.clone(),
            ctx,
            max_tokens: self.eval.max_tokens,
            dtype,
        }];
        all.extend(self.eval.tasks.iter().map(|t| EvalSettings {
            metric: t.metric(),
            data_hash: t.hash.clone(),
            ctx: max,
            max_tokens: None,
            dtype,
        }));
        Ok(all)
    }

    /// The task `name` of the config and its documents (read at the first use).
    pub fn task_docs(&mut self, name: TaskName) -> Result<(TaskConfig, Arc<Vec<Doc>>), SweepError> {
        let task = self
            .eval
            .tasks
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| SweepError::Plan(format!("no task {name} in this session")))?;
        if let Some(d) = self.docs.get(&name) {
            return Ok((task, d.clone()));
        }
        let docs = Arc::new(crate::tasks::read_docs(name, &task.file)?);
        self.docs.insert(name, docs.clone());
        Ok((task, docs))
    }

    fn local(&self, step: u64) -> Result<PathBuf, SweepError> {
        let ckpt = self.traj.checkpoint(step).ok_or_else(|| {
            SweepError::Plan(format!("step {step} is not in {}", self.traj.source))
        })?;
        crate::source::local_path(ckpt, &self.hub, &Reporter::silent())
            .map_err(|e| SweepError::Plan(e.to_string()))
    }

    /// The checkpoint at `step`, read unless resident; the least recently used ones above the
    /// budget are let go, but never one of `keep` (the window being evaluated).
    fn checkpoint(
        &mut self,
        step: u64,
        keep: &[u64],
        reporter: &Reporter,
    ) -> Result<Arc<ResidentCheckpoint>, SweepError> {
        if let Some(i) = self.resident.iter().position(|c| c.step() == step) {
            let c = self.resident.remove(i).expect("found");
            self.resident.push_back(c.clone());
            return Ok(c);
        }
        let path = self.local(step)?;
        let c = Arc::new(ResidentCheckpoint::read(&path, step, reporter)?);
        self.stats.checkpoint_reads += 1;
        self.stats.bytes_read += c.nbytes();
        self.resident.push_back(c.clone());
        let mut held: u64 = self.resident.iter().map(|c| c.nbytes()).sum();
        let mut i = 0;
        while held > self.budget && i < self.resident.len() {
            if keep.contains(&self.resident[i].step()) {
                i += 1;
                continue;
            }
            let gone = self.resident.remove(i).expect("in range");
            held -= gone.nbytes();
        }
        if held > self.budget {
            self.stats.over_budget = true;
        }
        Ok(c)
    }

    /// Evaluates each of `metrics` on one target (one average of a window, one model) and
    /// returns the records (not stored: the caller appends them). A cancel, wherever it
    /// stopped the work (reading, averaging, evaluating), is [`SweepError::Cancelled`].
    pub fn evaluate(
        &mut self,
        target: &Target,
        metrics: &[Metric],
        reporter: &Reporter,
    ) -> Result<Vec<ResultRecord>, SweepError> {
        self.evaluate_inner(target, metrics, reporter)
            .map_err(|e| match reporter.check() {
                Err(c) => SweepError::Cancelled(c),
                Ok(()) => e,
            })
    }

    fn evaluate_inner(
        &mut self,
        target: &Target,
        metrics: &[Metric],
        reporter: &Reporter,
    ) -> Result<Vec<ResultRecord>, SweepError> {
        let (steps, weights) = match target {
            Target::Checkpoint { step } => (vec![*step], vec![1.0]),
            Target::Window { steps, weights, .. } => (steps.clone(), weights.clone()),
        };
        let mut inputs = Vec::with_capacity(steps.len());
        for &s in &steps {
            inputs.push(self.checkpoint(s, &steps, reporter)?);
        }
        let newest = inputs
            .iter()
            .max_by_key(|c| c.step())
            .expect("non-empty window")
            .clone();
        let opts = EvalOptions {
            ctx: self.eval.ctx,
            max_tokens: self.eval.max_tokens.map(|m| m as usize),
            batch: self.eval.batch,
            device: self.eval.device.clone(),
            dtype: None,
            fused: self.eval.fused,
        };
        let stored = newest.main_dtype().and_then(|d| d.to_candle());
        let dtype = eval::default_dtype(&opts.device, stored);
        // The averaged window, or the raw checkpoint as it is.
        let (avg, config) = match target {
            Target::Checkpoint { .. } => (None, config_of(newest.path())?),
            Target::Window { .. } => {
                let refs: Vec<&ResidentCheckpoint> = inputs.iter().map(|c| c.as_ref()).collect();
                let avg = average::average_in_memory(
                    &refs,
                    &weights,
                    &AverageOptions::new(&Scheme::Custom(weights.clone())),
                    &mut self.scratch,
                    reporter,
                )?;
                let config = avg.config.clone().ok_or_else(|| ModelError::NoConfig {
                    dir: newest.path().to_path_buf(),
                })?;
                (Some(avg), config)
            }
        };
        let tensors = match &avg {
            Some(avg) => to_tensors(
                avg.tensors.iter().map(|(t, b)| (t, b.as_ref())),
                dtype,
                &opts.device,
                newest.path(),
            )?,
            None => to_tensors(newest.iter(), dtype, &opts.device, newest.path())?,
        };
        if let Some(avg) = avg {
            avg.recycle(&mut self.scratch);
        }
        let model = crate::model::load_model_from_tensors(
            newest.path(),
            &config,
            tensors,
            stored,
            dtype,
            &opts.device,
            opts.fused,
        )?;
        let mut out = Vec::with_capacity(metrics.len());
        for &metric in metrics {
            match metric {
                Metric::Perplexity => {
                    let tokens = match &self.tokens {
                        Some(t) => t.clone(),
                        None => {
                            let t =
                                eval::load_tokens(&self.eval.data, newest.path(), opts.max_tokens)?;
                            self.tokens = Some(t.clone());
                            t
                        }
                    };
                    let res = eval::evaluate(&model, &tokens, &opts, reporter)?;
                    out.push(make_record(&self.traj.source, target, &self.eval, &res));
                }
                Metric::Task(name) => {
                    let (task, docs) = self.task_docs(name)?;
                    let res = crate::tasks::evaluate_docs(
                        &model,
                        name,
                        &docs,
                        self.eval.batch,
                        reporter,
                    )?;
                    out.push(make_task_record(
                        &self.traj.source,
                        target,
                        &self.eval,
                        &task,
                        &model,
                        res,
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// The `config.json` of a checkpoint (its dir, or a weights file's folder).
fn config_of(path: &Path) -> Result<PathBuf, ModelError> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    };
    let c = dir.join("config.json");
    if c.is_file() {
        Ok(c)
    } else {
        Err(ModelError::NoConfig {
            dir: dir.to_path_buf(),
        })
    }
}

/// Float tensors as candle tensors on `device` (buffers and integer tensors are not weights
/// and are left out: no model reads them). Half-precision weights for an f32 eval on the CPU
/// are widened here, in one pass from the bytes (F16C where the CPU has it), rather than
/// copied into a half tensor and converted again by the model's loader: the same values
/// (widening is exact), a third of the memory traffic.
fn to_tensors<'a>(
    tensors: impl Iterator<Item = (&'a crate::checkpoint::TensorInfo, &'a [u8])>,
    eval_dtype: candle_core::DType,
    device: &candle_core::Device,
    path: &Path,
) -> Result<HashMap<String, Tensor>, ModelError> {
    use candle_core::DType as C;
    let mut out = HashMap::new();
    for (info, bytes) in tensors {
        if !info.dtype.is_float() || crate::checkpoint::is_buffer(&info.name) {
            continue;
        }
        let Some(dtype) = info.dtype.to_candle() else {
            continue;
        };
        let widen = eval_dtype == C::F32 && device.is_cpu() && matches!(dtype, C::F16 | C::BF16);
        let t = if widen {
            let v = widen_to_f32(bytes, dtype);
            Tensor::from_vec(v, info.shape.as_slice(), device)
        } else {
            Tensor::from_raw_buffer(bytes, dtype, &info.shape, device)
        }
        .map_err(|e| ModelError::weights(path, e))?;
        out.insert(info.name.clone(), t);
    }
    Ok(out)
}

/// Little-endian f16 or bf16 bytes as f32 values (exact).
fn widen_to_f32(bytes: &[u8], dtype: candle_core::DType) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    let n = bytes.len() / 2;
    let mut out = vec![0f32; n];
    let aligned: Option<&[u16]> = bytemuck::try_cast_slice(bytes).ok();
    match (dtype, aligned) {
        (candle_core::DType::F16, Some(u)) => {
            let h: &[half::f16] = bytemuck::cast_slice(u);
            h.convert_to_f32_slice(&mut out);
        }
        (candle_core::DType::BF16, Some(u)) => {
            let h: &[half::bf16] = bytemuck::cast_slice(u);
            h.convert_to_f32_slice(&mut out);
        }
        (candle_core::DType::F16, None) => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
    }
    out
}

pub mod slurm;

#[cfg(test)]
mod tests;
