//! `lawa explore`: open the interactive explorer on a trajectory (and `lawa` alone: the demo).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use lawa::device::DevicePref;
use lawa::eval::EvalData;
use lawa::jobs::engine::{EngineExecutor, EvalConfig};
use lawa::jobs::JobRunner;
use lawa::results::{self, ModelCache, ResultsStore};
use lawa::source::{Location, Trajectory};

use crate::tui::app::{self, App};
use crate::tui::state::{EvalView, State};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The trajectory: a run folder, a repo folder in the Hugging Face cache, or hf:ORG/NAME
    pub source: String,
    /// Eval text (UTF-8), tokenised with the checkpoints' tokenizer.json
    /// [default: heldout.txt in the run folder, if there is one]
    #[arg(long, conflicts_with = "tokens")]
    pub text: Option<PathBuf>,
    /// Pre-tokenised eval ids (.npy, .bin/.u16 as uint16, .u32)
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Eval context length [default: the model's, capped at 2048]
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Evaluate only the first N tokens
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Eval windows per forward pass
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = DevicePref::Auto)]
    pub device: DevicePref,
    /// Where `e` writes the chart and tables
    #[arg(long, default_value = "lawa-export")]
    pub export_dir: PathBuf,
    /// Size limit of the averaged-model cache, in MiB
    #[arg(long, default_value_t = 4096)]
    pub cache_mib: u64,
}

impl Args {
    pub fn for_source(source: String) -> Self {
        Args {
            source,
            text: None,
            tokens: None,
            ctx: None,
            max_tokens: None,
            batch: 8,
            device: DevicePref::Auto,
            export_dir: PathBuf::from("lawa-export"),
            cache_mib: 4096,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let traj = lawa::source::open(&args.source)?;
    open(traj, &args)
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

/// The eval data from the flags, else the run's own held-out text.
fn eval_data(traj: &Trajectory, args: &Args) -> anyhow::Result<Option<(EvalData, String, String)>> {
    let (data, path, kind) = if let Some(t) = &args.text {
        (EvalData::Text(t.clone()), t.clone(), "text")
    } else if let Some(t) = &args.tokens {
        (EvalData::Tokens(t.clone()), t.clone(), "tokens")
    } else {
        match run_folder(traj, &args.source).map(|d| d.join("heldout.txt")) {
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

/// The model's `max_position_embeddings` from the config of the first local checkpoint that
/// has one: the default context is resolved from it, so "auto" never matches results of
/// another context. `None` (hub checkpoints not downloaded yet): learnt from the first result.
fn max_position_embeddings(traj: &Trajectory) -> Option<usize> {
    traj.checkpoints.iter().find_map(|c| match &c.location {
        Location::Local { path } => {
            let dir = if path.is_dir() {
                path.clone()
            } else {
                path.parent()?.to_path_buf()
            };
            let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v.get("max_position_embeddings")?
                .as_u64()
                .map(|m| m as usize)
        }
        Location::Hub { .. } => None,
    })
}

/// Opens the explorer on an already listed trajectory.
pub fn open(traj: Trajectory, args: &Args) -> anyhow::Result<()> {
    let eval = eval_data(&traj, args)?;
    let dir = results::trajectory_dir(&traj.source)?;
    let (store, warnings) = ResultsStore::open(&dir)?;
    let records = store.records().to_vec();
    let cache = ModelCache::in_trajectory_dir(&dir, args.cache_mib << 20);
    let device = lawa::device::select(args.device)?;
    let view = EvalView {
        data: eval
            .as_ref()
            .map_or("no eval data (--text/--tokens)".into(), |e| e.1.clone()),
        data_hash: eval.as_ref().map(|e| e.2.clone()).unwrap_or_default(),
        ctx_asked: args.ctx,
        max_ctx: max_position_embeddings(&traj),
        learnt_ctx: None,
        max_tokens: args.max_tokens,
        dtype: lawa::jobs::engine::record_dtype(&device).into(),
        device: lawa::device::describe(&device).into(),
    };
    let mut state = State::new(traj.clone(), records, view);
    state.message = warnings
        .first()
        .or(traj.warnings.first())
        .cloned()
        .or_else(|| {
            Some(format!(
                "{} checkpoints · ? for keys",
                traj.checkpoints.len()
            ))
        });
    let base = eval.map(|(data, data_label, data_hash)| EvalConfig {
        data,
        data_label,
        data_hash,
        ctx: args.ctx,
        max_tokens: args.max_tokens,
        batch: args.batch.max(1),
        device: device.clone(),
    });
    let store = Arc::new(Mutex::new(store));
    let resident = lawa::jobs::engine::Resident::default();
    let make_runner: app::RunnerFactory = Box::new(move |ctx, max_tokens, sink| {
        let cfg = base.clone().map(|c| EvalConfig {
            ctx,
            max_tokens,
            ..c
        });
        let exec = EngineExecutor::new(
            traj.clone(),
            cfg,
            store.clone(),
            cache.clone(),
            resident.clone(),
        );
        JobRunner::start(exec, sink)
    });
    app::run(App {
        state,
        make_runner,
        export_dir: args.export_dir.clone(),
    })
}

/// `lawa` with no arguments: the explorer on the demo trajectory, trained first if needed.
pub fn run_demo(train: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = lawa::train::demo_dir();
    if !lawa::train::is_complete(&dir) {
        eprintln!(
            "lawa: no demo trajectory yet; training it into {} (once, about 2 minutes)",
            dir.display()
        );
        train().context("training the demo trajectory")?;
    }
    let source = dir.display().to_string();
    run(Args::for_source(source))
}
