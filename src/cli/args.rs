//! Flags that several subcommands share, declared once and flattened into each: the eval data
//! and settings (`eval`, `explore`, `sweep`), the tokens per step (`list`, `explore`, `export`).

use std::path::{Path, PathBuf};

use lawa::device::DevicePref;
use lawa::eval::EvalData;
use lawa::jobs::engine::{EvalConfig, TaskConfig};
use lawa::results;
use lawa::source::{Location, Trajectory};
use lawa::tasks::{TaskName, TaskSpec};

/// Default windows per forward pass, for `eval`, `explore` and `sweep` alike.
pub const DEFAULT_BATCH: usize = 8;

/// The eval data and settings. `explore` and `sweep` default the data to the run's own
/// `heldout.txt`; `eval` requires data (or a task) and says so in its own help for `--text`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct EvalArgs {
    /// Eval text (UTF-8), tokenised with the checkpoints' tokenizer.json
    /// [default: heldout.txt in the run folder, if there is one]
    #[arg(long, conflicts_with = "tokens")]
    pub text: Option<PathBuf>,
    /// Pre-tokenised ids: .npy, raw little-endian uint16 (.bin as nanoGPT writes, .u16) or
    /// uint32 (.u32)
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Tokens per window [default: the model's max_position_embeddings, at most 2048]
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Evaluate only the first N tokens
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
    /// Windows per forward pass
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = DevicePref::Auto)]
    pub device: DevicePref,
}

/// The zero-shot tasks of a store's evaluations (`explore`, `sweep`): evaluated beside the
/// perplexity on every target. (`eval` declares its own `--task`, with its own help.)
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct StoreTaskArgs {
    /// Zero-shot task NAME=FILE (repeatable), evaluated beside the perplexity on every
    /// checkpoint and window [default: the tasks the run folder's trajectory.json lists]
    #[arg(long = "task", id = "task", value_name = "NAME=FILE")]
    pub tasks: Vec<TaskSpec>,
    /// Leave out the tasks the run folder's trajectory.json lists
    #[arg(long, conflicts_with = "task")]
    pub no_tasks: bool,
}

impl Default for EvalArgs {
    fn default() -> Self {
        EvalArgs {
            text: None,
            tokens: None,
            ctx: None,
            max_tokens: None,
            batch: DEFAULT_BATCH,
            device: DevicePref::Auto,
        }
    }
}

impl StoreTaskArgs {
    /// The tasks of `--task`, else those the run folder's `trajectory.json` lists (the
    /// demo's cloze file), each file read and hashed: a bad file is one line naming it.
    pub fn configs(&self, traj: &Trajectory, source: &str) -> anyhow::Result<Vec<TaskConfig>> {
        let specs = if !self.tasks.is_empty() {
            self.tasks.clone()
        } else if self.no_tasks {
            Vec::new()
        } else {
            run_folder(traj, source)
                .map(|d| listed_tasks(&d))
                .unwrap_or_default()
        };
        let mut out: Vec<TaskConfig> = Vec::new();
        for spec in &specs {
            if out.iter().any(|t| t.name == spec.name) {
                anyhow::bail!("--task {}: given twice", spec.name);
            }
            out.push(TaskConfig::load(spec)?);
        }
        Ok(out)
    }
}

impl EvalArgs {
    /// The eval data from the flags, else the run's own `heldout.txt`: (data, label, hash).
    pub fn data(
        &self,
        traj: &Trajectory,
        source: &str,
    ) -> anyhow::Result<Option<(EvalData, String, String)>> {
        let (data, path, kind) = if let Some(t) = &self.text {
            (EvalData::Text(t.clone()), t.clone(), "text")
        } else if let Some(t) = &self.tokens {
            (EvalData::Tokens(t.clone()), t.clone(), "tokens")
        } else {
            match run_folder(traj, source).map(|d| d.join("heldout.txt")) {
                Some(h) if h.is_file() => (EvalData::Text(h.clone()), h, "text"),
                _ => return Ok(None),
            }
        };
        let hash = results::file_hash(kind, &path)?;
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(Some((data, label, hash)))
    }

    /// `--max-tokens` as a length in memory (a count beyond the address space is "all").
    pub fn max_tokens_len(&self) -> Option<usize> {
        self.max_tokens
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The eval configuration of these flags on `device` (our GPU kernels as `fused` allows),
    /// given the data and the tasks.
    pub fn config(
        &self,
        (data, data_label, data_hash): (EvalData, String, String),
        tasks: Vec<TaskConfig>,
        (device, fused): (candle_core::Device, lawa::kernels::Fused),
    ) -> EvalConfig {
        EvalConfig {
            data,
            data_label,
            data_hash,
            ctx: self.ctx,
            max_tokens: self.max_tokens,
            batch: self.batch.max(1),
            device,
            fused,
            tasks,
        }
    }
}

/// The tasks `DIR/trajectory.json` lists (`"tasks": {"lambada_openai": {"file": ...}}`) whose
/// files are there; anything else in it is not ours to judge and is left out.
fn listed_tasks(dir: &Path) -> Vec<TaskSpec> {
    let Ok(text) = std::fs::read_to_string(dir.join("trajectory.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let Some(tasks) = v.get("tasks").and_then(|t| t.as_object()) else {
        return Vec::new();
    };
    tasks
        .iter()
        .filter_map(|(name, t)| {
            let name: TaskName = name.parse().ok()?;
            let file = dir.join(t.get("file")?.as_str()?);
            file.is_file().then_some(TaskSpec { name, file })
        })
        .collect()
}

/// The folder of a local trajectory (where `heldout.txt` may be).
fn run_folder(traj: &Trajectory, source: &str) -> Option<PathBuf> {
    let p = Path::new(source);
    if p.is_dir() {
        return Some(p.to_path_buf());
    }
    match &traj.checkpoints.first()?.location {
        Location::Local { path } => path.parent().map(Path::to_path_buf),
        Location::Hub { .. } => None,
    }
}

/// `--tokens-per-step N`, shared by the commands that draw or list a trajectory's x axis.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct TokensPerStepArg {
    /// Tokens per optimizer step, where neither the checkpoint names nor the metrics carry
    /// tokens (the x axis in tokens = N × step)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub tokens_per_step: Option<u64>,
}

impl TokensPerStepArg {
    /// The trajectory at `source`, with the tokens per step when given.
    pub fn open(&self, source: &str, config: &lawa::Config) -> anyhow::Result<Trajectory> {
        let mut t = lawa::source::open(source, &config.hub)?;
        if let Some(n) = self.tokens_per_step {
            lawa::source::set_tokens_per_step(&mut t, n);
        }
        Ok(t)
    }
}
