//! The real executor: fetches checkpoints, evaluates them, averages windows in memory (with the
//! sweep engine: checkpoints stay resident between jobs, so a sweep reads each about once), and
//! appends every result to the trajectory's results store before reporting it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::eval::{self, EvalDType, EvalData, EvalOptions};
use crate::model::LoadedModel;
use crate::progress::Reporter;
use crate::results::{now_unix, Metric, ResultRecord, ResultsStore, TOOL_VERSION};
use crate::source::{self, hub::HubOptions, Trajectory};
use crate::sweep::{SweepEngine, SweepError};
use crate::tasks::{TaskError, TaskName, TaskResult, TaskSpec};

use super::{Executor, JobError, Target};

/// What every evaluation of a session uses. Serialised for Slurm array tasks without the
/// device, which each task chooses on its node.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EvalConfig {
    pub data: EvalData,
    /// The data file's name, for people.
    pub data_label: String,
    /// Content hash of the data file (see [`crate::results::file_hash`]).
    pub data_hash: String,
    pub ctx: Option<usize>,
    pub max_tokens: Option<u64>,
    pub batch: usize,
    #[serde(skip, default = "cpu")]
    pub device: candle_core::Device,
    /// Whether our GPU kernels may run on `device` (chosen where the device is, not stored).
    #[serde(skip)]
    pub fused: crate::kernels::Fused,
    /// Zero-shot tasks, each evaluated beside the perplexity on every target (plans written
    /// before tasks: none).
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
}

/// A task of a session: its file, checked and hashed once (results are keyed by the task's
/// name and this content hash).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskConfig {
    pub name: TaskName,
    pub file: PathBuf,
    /// The file's name, for people.
    pub label: String,
    /// `task:` + the sha256 of the file (see [`crate::results::file_hash`]).
    pub hash: String,
}

impl TaskConfig {
    /// Reads every document of the task file (so a bad line is one error now, not one per
    /// target later) and hashes the file.
    pub fn load(spec: &TaskSpec) -> Result<TaskConfig, TaskError> {
        crate::tasks::read_docs(spec.name, &spec.file)?;
        let hash = crate::results::file_hash("task", &spec.file).map_err(|e| TaskError::Io {
            path: spec.file.clone(),
            msg: e.to_string(),
        })?;
        Ok(TaskConfig {
            name: spec.name,
            file: spec.file.clone(),
            label: spec
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.file.display().to_string()),
            hash,
        })
    }

    pub fn metric(&self) -> Metric {
        Metric::Task(self.name)
    }
}

fn cpu() -> candle_core::Device {
    candle_core::Device::Cpu
}

/// The last model evaluated, kept loaded (on a GPU, resident in its memory) and shared by the
/// executors of a session (the explorer starts a new one when ctx or max-tokens change):
/// evaluating it again skips reading and uploading its weights.
#[derive(Clone, Default)]
pub struct Resident(Arc<Mutex<Option<crate::model::LoadedModel>>>);

/// What the eval data's token ids depend on: the model dir for text (its tokenizer), and the
/// max-tokens limit.
type TokensKey = (Option<PathBuf>, Option<usize>);

/// Runs average and eval jobs with the lawa engine.
pub struct EngineExecutor {
    traj: Trajectory,
    /// Where hub checkpoints are fetched from and cached.
    hub: HubOptions,
    /// `None`: no eval data was given; every job fails with a clear line.
    eval: Option<EvalConfig>,
    store: Arc<Mutex<ResultsStore>>,
    /// Memory for checkpoints kept between window jobs.
    budget: u64,
    /// Averages windows; made at the first window job.
    windows: Option<SweepEngine>,
    resident: Resident,
    /// Token ids of the eval data, read once per session (text: per model dir, whose
    /// tokenizer it goes through).
    tokens: Option<(TokensKey, eval::Tokens)>,
}

impl EngineExecutor {
    pub fn new(
        traj: Trajectory,
        eval: Option<EvalConfig>,
        store: Arc<Mutex<ResultsStore>>,
        budget: u64,
        resident: Resident,
    ) -> Self {
        Self {
            traj,
            hub: crate::Config::default().hub,
            eval,
            store,
            budget,
            windows: None,
            resident,
            tokens: None,
        }
    }

    /// Fetches hub checkpoints with `hub` (default: [`crate::Config::default`]'s, the public
    /// hub; local trajectories never need it).
    #[must_use]
    pub fn with_hub(self, hub: HubOptions) -> Self {
        Self { hub, ..self }
    }

    /// The model at `dir` for `opts` (loaded unless it is the one kept resident), evaluated.
    fn evaluate(
        &self,
        dir: &std::path::Path,
        tokens: &eval::Tokens,
        opts: &EvalOptions,
        reporter: &Reporter,
    ) -> Result<eval::EvalResult, eval::EvalError> {
        let mut resident = self.resident.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = resident.as_ref().is_some_and(|m| {
            m.dir == dir
                && m.model.device().same_device(&opts.device)
                && opts.dtype.is_none_or(|d| m.model.dtype() == d)
        });
        if !held {
            // Free the old weights before the new ones load.
            *resident = None;
            *resident = Some(eval::load_model(dir, opts)?);
        }
        let model = resident.as_ref().expect("just loaded");
        eval::evaluate(model, tokens, opts, reporter)
    }

    /// The eval data's token ids (text is tokenised with `model_dir`'s tokenizer).
    fn tokens(
        &mut self,
        data: &EvalData,
        model_dir: &std::path::Path,
        max_tokens: Option<usize>,
    ) -> Result<eval::Tokens, eval::EvalError> {
        let key = (
            matches!(data, EvalData::Text(_)).then(|| model_dir.to_path_buf()),
            max_tokens,
        );
        if let Some((k, t)) = &self.tokens {
            if *k == key {
                return Ok(t.clone());
            }
        }
        let t = eval::load_tokens(data, model_dir, max_tokens)?;
        self.tokens = Some((key, t.clone()));
        Ok(t)
    }

    fn checkpoint_path(&self, step: u64, reporter: &Reporter) -> Result<PathBuf, JobError> {
        let ckpt = self.traj.checkpoint(step).ok_or_else(|| {
            JobError::Failed(format!("step {step} is not in {}", self.traj.source))
        })?;
        source::local_path(ckpt, &self.hub, reporter).map_err(|e| fail(reporter, e))
    }
}

/// The stored record of `target` evaluated with `cfg` (the explorer's jobs and sweeps).
pub fn make_record(
    source: &str,
    target: &Target,
    cfg: &EvalConfig,
    res: &eval::EvalResult,
) -> ResultRecord {
    ResultRecord {
        data: cfg.data_label.clone(),
        data_hash: cfg.data_hash.clone(),
        ctx: res.ctx,
        max_tokens: cfg.max_tokens,
        mean_nll: res.mean_nll,
        ppl: res.ppl,
        bits_per_byte: res.bits_per_byte,
        predicted_tokens: res.predicted_tokens,
        ..record_of(source, target, cfg, res.dtype)
    }
}

/// The stored record of `task` scored on `target` by `model` (at the model's context: the
/// harness truncates to it).
pub fn make_task_record(
    source: &str,
    target: &Target,
    cfg: &EvalConfig,
    task: &TaskConfig,
    model: &LoadedModel,
    res: TaskResult,
) -> ResultRecord {
    let ctx = model.config.max_position_embeddings;
    ResultRecord {
        data: task.label.clone(),
        data_hash: task.hash.clone(),
        ctx,
        max_tokens: None,
        task: Some(res),
        ..record_of(source, target, cfg, EvalDType::of(model.model.dtype()))
    }
}

/// What every record of `target` says, whatever it measured (evaluated in `dtype`).
fn record_of(source: &str, target: &Target, cfg: &EvalConfig, dtype: EvalDType) -> ResultRecord {
    let (steps, weights, scheme, k, spike_aware) = match target {
        Target::Checkpoint { step } => (vec![*step], vec![1.0], None, 1, false),
        Target::Window {
            steps,
            weights,
            scheme,
            k,
            spike_aware,
            ..
        } => (
            steps.clone(),
            weights.clone(),
            Some(scheme.clone()),
            *k,
            *spike_aware,
        ),
    };
    ResultRecord {
        source: source.to_string(),
        end_step: target.end_step(),
        steps,
        scheme,
        k,
        spike_aware,
        weights,
        data: String::new(),
        data_hash: String::new(),
        ctx: 0,
        max_tokens: None,
        dtype,
        device: crate::device::describe(&cfg.device).into(),
        mean_nll: f64::NAN,
        ppl: f64::NAN,
        bits_per_byte: None,
        predicted_tokens: 0,
        task: None,
        tool_version: TOOL_VERSION.into(),
        unix_time: now_unix(),
    }
}

/// An engine error as a job error: a cancellation stays a cancellation.
fn fail(reporter: &Reporter, e: impl std::fmt::Display) -> JobError {
    if reporter.check().is_err() {
        JobError::Cancelled
    } else {
        JobError::Failed(e.to_string())
    }
}

impl Executor for EngineExecutor {
    /// Every metric of the session (perplexity, then each task) that the store lacks for
    /// `target`, from one load (a window: one average) of the model.
    fn run(&mut self, target: &Target, reporter: &Reporter) -> Result<Vec<ResultRecord>, JobError> {
        let Some(cfg) = self.eval.clone() else {
            return Err(JobError::Failed(
                "no eval data: start lawa explore with --text FILE or --tokens FILE".into(),
            ));
        };
        // An engine of other settings resolves other settings: a new one.
        if self.windows.as_ref().is_some_and(|e| {
            let c = e.eval_config();
            c.ctx != cfg.ctx || c.max_tokens != cfg.max_tokens
        }) {
            self.windows = None;
        }
        let (traj, hub, budget) = (&self.traj, &self.hub, self.budget);
        let engine = self.windows.get_or_insert_with(|| {
            SweepEngine::new(traj.clone(), cfg.clone(), budget).with_hub(hub.clone())
        });
        let all = engine
            .all_settings_for(Some(target))
            .map_err(|e| fail(reporter, e))?;
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            for settings in crate::sweep::missing(target, store.records(), &all) {
                // The same model stored under another curve (a spike-aware window that no
                // spike touches) is that result, not a new evaluation.
                match crate::sweep::reuse(target, store.records(), settings) {
                    Some(r) => {
                        store
                            .append(r.clone())
                            .map_err(|e| JobError::Failed(e.to_string()))?;
                        out.push(r);
                    }
                    None => missing.push(settings.metric),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        crate::device::prepare(&cfg.device, reporter).map_err(|e| fail(reporter, e))?;
        let records = match target {
            Target::Checkpoint { step } => {
                self.checkpoint(*step, &cfg, target, &missing, reporter)?
            }
            Target::Window { .. } => {
                let engine = self.windows.as_mut().expect("made above");
                engine
                    .evaluate(target, &missing, reporter)
                    .map_err(|e| match e {
                        SweepError::Cancelled(_) => JobError::Cancelled,
                        e => fail(reporter, e),
                    })?
            }
        };
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            store
                .append(r.clone())
                .map_err(|e| JobError::Failed(e.to_string()))?;
            out.push(r);
        }
        Ok(out)
    }
}

impl EngineExecutor {
    /// One checkpoint as it is, evaluated with the resident model when it is the same one:
    /// each of `metrics` on the one loaded model.
    fn checkpoint(
        &mut self,
        step: u64,
        cfg: &EvalConfig,
        target: &Target,
        metrics: &[Metric],
        reporter: &Reporter,
    ) -> Result<Vec<ResultRecord>, JobError> {
        let model_dir = self.checkpoint_path(step, reporter)?;
        reporter.check().map_err(|_| JobError::Cancelled)?;
        let opts = EvalOptions {
            ctx: cfg.ctx,
            max_tokens: cfg.max_tokens.map(|m| m as usize),
            batch: cfg.batch,
            device: cfg.device.clone(),
            dtype: None,
            fused: cfg.fused,
        };
        let mut out = Vec::new();
        for &metric in metrics {
            match metric {
                Metric::Perplexity => {
                    let tokens = self
                        .tokens(&cfg.data, &model_dir, opts.max_tokens)
                        .map_err(|e| fail(reporter, e))?;
                    let res = self
                        .evaluate(&model_dir, &tokens, &opts, reporter)
                        .map_err(|e| fail(reporter, e))?;
                    out.push(make_record(&self.traj.source, target, cfg, &res));
                }
                Metric::Task(name) => {
                    let engine = self.windows.as_mut().expect("made by run");
                    let (task, docs) = engine.task_docs(name).map_err(|e| fail(reporter, e))?;
                    let mut resident = self.resident.0.lock().unwrap_or_else(|e| e.into_inner());
                    let held = resident.as_ref().is_some_and(|m| {
                        m.dir == model_dir && m.model.device().same_device(&opts.device)
                    });
                    if !held {
                        *resident = None;
                        *resident = Some(
                            eval::load_model(&model_dir, &opts).map_err(|e| fail(reporter, e))?,
                        );
                    }
                    let model = resident.as_ref().expect("just loaded");
                    let res = crate::tasks::evaluate_docs(model, name, &docs, cfg.batch, reporter)
                        .map_err(|e| fail(reporter, e))?;
                    out.push(make_task_record(
                        &self.traj.source,
                        target,
                        cfg,
                        &task,
                        model,
                        res,
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Reporter;
    use std::path::Path;

    /// A run folder with one checkpoint (the `parallel` GPT-NeoX fixture) and a token file.
    fn setup() -> (tempfile::TempDir, EngineExecutor, Resident) {
        let dir = tempfile::tempdir().unwrap();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt_neox/parallel");
        let step = dir.path().join("run/step100");
        std::fs::create_dir_all(&step).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture.join(f), step.join(f)).unwrap();
        }
        let ids: Vec<u8> = (0..200u32)
            .flat_map(|i| ((i * 7) % 100).to_le_bytes())
            .collect();
        let tokens = dir.path().join("ids.u32");
        std::fs::write(&tokens, ids).unwrap();
        let traj = source::open(
            dir.path().join("run").to_str().unwrap(),
            &crate::Config::default().hub,
        )
        .unwrap();
        let (store, _) = ResultsStore::open(&dir.path().join("results")).unwrap();
        let cfg = EvalConfig {
            data: EvalData::TokensAs(tokens, eval::TokenDType::U32),
            data_label: "ids.u32".into(),
            data_hash: "h".into(),
            ctx: Some(16),
            max_tokens: None,
            batch: 2,
            device: candle_core::Device::Cpu,
            fused: crate::kernels::Fused::On,
            tasks: Vec::new(),
        };
        let resident = Resident::default();
        let exec = EngineExecutor::new(
            traj,
            Some(cfg),
            Arc::new(Mutex::new(store)),
            1 << 30,
            resident.clone(),
        );
        (dir, exec, resident)
    }

    #[test]
    fn the_last_model_stays_loaded_and_the_tokens_are_read_once() {
        let (dir, mut exec, resident) = setup();
        let target = Target::Checkpoint { step: 100 };
        let first = exec.run(&target, &Reporter::silent()).unwrap().remove(0);
        let held = resident.0.lock().unwrap().as_ref().map(|m| m.dir.clone());
        assert_eq!(held, Some(dir.path().join("run/step100")));
        // Neither the weights nor the token file are read again: the same result without them.
        std::fs::remove_file(dir.path().join("run/step100/model.safetensors")).unwrap();
        std::fs::remove_file(dir.path().join("ids.u32")).unwrap();
        // Stored already: nothing is evaluated again.
        assert!(exec.run(&target, &Reporter::silent()).unwrap().is_empty());
        exec.store = Arc::new(Mutex::new(
            ResultsStore::open(&dir.path().join("results2")).unwrap().0,
        ));
        let again = exec.run(&target, &Reporter::silent()).unwrap().remove(0);
        assert_eq!(again.mean_nll, first.mean_nll);
        // A new max-tokens limit reads the token file again, and it is gone (the weights are
        // back: new settings are resolved from the checkpoint).
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt_neox/parallel");
        std::fs::copy(
            fixture.join("model.safetensors"),
            dir.path().join("run/step100/model.safetensors"),
        )
        .unwrap();
        exec.eval.as_mut().unwrap().max_tokens = Some(100);
        let err = exec.run(&target, &Reporter::silent()).unwrap_err();
        assert!(
            matches!(err, JobError::Failed(m) if m.contains("ids.u32")),
            "token file re-read for a new max-tokens"
        );
    }
}
