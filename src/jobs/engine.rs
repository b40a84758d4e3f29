//! The real executor: fetches checkpoints, averages windows into the model cache, evaluates, and
//! appends every result to the trajectory's results store before reporting it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::average::{self, AverageInput, AverageOptions, Scheme};
use crate::eval::{self, EvalData, EvalOptions};
use crate::progress::Reporter;
use crate::results::{
    average_key, now_unix, ModelCache, ResultRecord, ResultsStore, RAW, TOOL_VERSION,
};
use crate::source::{self, Trajectory};

use super::{Executor, JobError, Target};

/// What every evaluation of a session uses.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    pub data: EvalData,
    /// The data file's name, for people.
    pub data_label: String,
    /// Content hash of the data file (see [`crate::results::file_hash`]).
    pub data_hash: String,
    pub ctx: Option<usize>,
    pub max_tokens: Option<u64>,
    pub batch: usize,
    pub device: candle_core::Device,
}

/// Runs average and eval jobs with the lawa engine.
pub struct EngineExecutor {
    traj: Trajectory,
    /// `None`: no eval data was given; every job fails with a clear line.
    eval: Option<EvalConfig>,
    store: Arc<Mutex<ResultsStore>>,
    cache: ModelCache,
}

impl EngineExecutor {
    pub fn new(
        traj: Trajectory,
        eval: Option<EvalConfig>,
        store: Arc<Mutex<ResultsStore>>,
        cache: ModelCache,
    ) -> Self {
        Self {
            traj,
            eval,
            store,
            cache,
        }
    }

    fn checkpoint_path(&self, step: u64, reporter: &Reporter) -> Result<PathBuf, JobError> {
        let ckpt = self.traj.checkpoint(step).ok_or_else(|| {
            JobError::Failed(format!("step {step} is not in {}", self.traj.source))
        })?;
        source::local_path(ckpt, reporter).map_err(|e| fail(reporter, e))
    }

    /// The cached average of the window, computing it when missing.
    fn averaged(
        &self,
        steps: &[u64],
        weights: &[f64],
        scheme: &str,
        device: &candle_core::Device,
        reporter: &Reporter,
    ) -> Result<PathBuf, JobError> {
        let key = average_key(&self.traj.source, steps, weights, "keep");
        if let Some(dir) = self.cache.get(&key) {
            return Ok(dir);
        }
        let mut inputs = Vec::with_capacity(steps.len());
        for (&step, &weight) in steps.iter().zip(weights) {
            inputs.push(AverageInput {
                path: self.checkpoint_path(step, reporter)?,
                step,
                weight,
            });
        }
        std::fs::create_dir_all(self.cache.dir())
            .map_err(|e| JobError::Failed(format!("{}: {e}", self.cache.dir().display())))?;
        let out = self.cache.path_for(&key);
        let scheme = scheme
            .parse::<Scheme>()
            .unwrap_or(Scheme::Custom(weights.to_vec()));
        let opts = AverageOptions {
            device: device.clone(),
            ..AverageOptions::new(&scheme)
        };
        average::average(&inputs, &out, &opts, reporter).map_err(|e| fail(reporter, e))?;
        // Evicting is housekeeping: a failure here must not lose the result.
        let _ = self.cache.evict(Some(&out));
        Ok(out)
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
    fn run(&mut self, target: &Target, reporter: &Reporter) -> Result<ResultRecord, JobError> {
        let Some(cfg) = self.eval.clone() else {
            return Err(JobError::Failed(
                "no eval data: start lawa explore with --text FILE or --tokens FILE".into(),
            ));
        };
        let (model_dir, steps, weights, scheme, k, spike_aware) = match target {
            Target::Checkpoint { step } => (
                self.checkpoint_path(*step, reporter)?,
                vec![*step],
                vec![1.0],
                RAW.to_string(),
                1,
                false,
            ),
            Target::Window {
                steps,
                weights,
                scheme,
                k,
                spike_aware,
                ..
            } => (
                self.averaged(steps, weights, scheme, &cfg.device, reporter)?,
                steps.clone(),
                weights.clone(),
                scheme.clone(),
                *k,
                *spike_aware,
            ),
        };
        reporter.check().map_err(|_| JobError::Cancelled)?;
        let opts = EvalOptions {
            ctx: cfg.ctx,
            max_tokens: cfg.max_tokens.map(|m| m as usize),
            batch: cfg.batch,
            device: cfg.device.clone(),
            dtype: None,
        };
        let res = eval::eval_model_dir(&model_dir, &cfg.data, &opts, reporter)
            .map_err(|e| fail(reporter, e))?;
        let record = ResultRecord {
            source: self.traj.source.clone(),
            end_step: target.end_step(),
            steps,
            scheme,
            k,
            spike_aware,
            weights,
            data: cfg.data_label.clone(),
            data_hash: cfg.data_hash.clone(),
            ctx: res.ctx,
            max_tokens: cfg.max_tokens,
            dtype: if cfg.device.is_cpu() {
                "f32"
            } else {
                "checkpoint"
            }
            .into(),
            device: crate::device::describe(&cfg.device).into(),
            mean_nll: res.mean_nll,
            ppl: res.ppl,
            bits_per_byte: res.bits_per_byte,
            predicted_tokens: res.predicted_tokens,
            tool_version: TOOL_VERSION.into(),
            unix_time: now_unix(),
        };
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(record.clone())
            .map_err(|e| JobError::Failed(e.to_string()))?;
        Ok(record)
    }
}
