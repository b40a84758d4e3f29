//! `lawa explore`: open the interactive explorer on a trajectory (and `lawa` alone: the demo).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use lawa::jobs::engine::{EngineExecutor, EvalConfig};
use lawa::jobs::JobRunner;
use lawa::results::{self, EvalDType, ResultsStore};
use lawa::source::Trajectory;
use lawa::sweep::slurm::{self, ArrayPlan};
use lawa::Config;
use lawa::HubOptions;

use super::args::{EvalArgs, StoreTaskArgs};
use crate::tui::app::{self, App};
use crate::tui::state::{EvalView, Event, State, TaskView};

/// `--export-dir`'s default.
const EXPORT_DIR: &str = "lawa-export";

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct Args {
    /// The trajectory: a run folder, a repo folder in the Hugging Face cache, or hf:ORG/NAME
    pub source: String,
    #[command(flatten)]
    pub eval: EvalArgs,
    #[command(flatten)]
    pub zero_shot: StoreTaskArgs,
    /// Where `e` writes the chart and tables
    #[arg(long, default_value = EXPORT_DIR)]
    pub export_dir: PathBuf,
    /// Memory for checkpoints kept between window jobs, in MiB [default: a quarter of the
    /// machine's]
    #[arg(long)]
    pub memory_mib: Option<u64>,
    #[command(flatten)]
    pub tokens: super::args::TokensPerStepArg,
}

impl Args {
    /// `lawa explore SOURCE` with no flags.
    pub fn for_source(source: String) -> Self {
        Args {
            source,
            eval: EvalArgs::default(),
            zero_shot: StoreTaskArgs::default(),
            export_dir: PathBuf::from(EXPORT_DIR),
            memory_mib: None,
            tokens: Default::default(),
        }
    }
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let traj = args.tokens.open(&args.source, config)?;
    open(traj, &args, config)
}

/// The model's `max_position_embeddings` from the config of the newest checkpoint on disk (a
/// local one, or a hub one in the cache) that has one: the default context is resolved from
/// it, so "auto" never matches results of another context. `None` (nothing on disk yet):
/// learnt from the first result.
fn max_position_embeddings(traj: &Trajectory, hub: &HubOptions) -> Option<usize> {
    on_disk(traj, hub).find_map(|path| {
        let dir = if path.is_dir() {
            path
        } else {
            path.parent()?.to_path_buf()
        };
        let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("max_position_embeddings")?
            .as_u64()
            .map(|m| m as usize)
    })
}

/// The dtype the jobs will evaluate in: f32 on the CPU; on a GPU the stored dtype of the
/// newest checkpoint on disk (read from its headers). `None` (nothing on disk yet): learnt
/// from the first result.
fn eval_dtype(
    traj: &Trajectory,
    hub: &HubOptions,
    device: &candle_core::Device,
) -> Option<EvalDType> {
    if device.is_cpu() {
        return Some(EvalDType::default_for(device, None));
    }
    on_disk(traj, hub).find_map(|path| {
        let stored = lawa::checkpoint::WeightsReader::open(&path)
            .ok()?
            .main_dtype();
        Some(EvalDType::default_for(device, stored?.to_candle()))
    })
}

/// The checkpoints already on disk, newest first, without downloading anything.
fn on_disk<'a>(traj: &'a Trajectory, hub: &'a HubOptions) -> impl Iterator<Item = PathBuf> + 'a {
    traj.checkpoints
        .iter()
        .rev()
        .filter_map(|c| lawa::source::hub::cached_location(&c.location, hub))
}

/// Opens the explorer on an already listed trajectory.
pub fn open(traj: Trajectory, args: &Args, config: &Config) -> anyhow::Result<()> {
    let eval = args.eval.data(&traj, &args.source)?;
    let tasks = args.zero_shot.configs(&traj, &args.source)?;
    let dir = results::trajectory_dir(config.home()?, &traj.source);
    let (store, warnings) = ResultsStore::open(&dir)?;
    let records = store.records().to_vec();
    let budget = args
        .memory_mib
        .map_or_else(|| lawa::sweep::default_budget() / 2, |m| m << 20);
    let device = lawa::device::select(args.eval.device)?;
    let view = EvalView {
        data: eval
            .as_ref()
            .map_or("no eval data (--text/--tokens)".into(), |e| e.1.clone()),
        data_hash: eval.as_ref().map(|e| e.2.clone()).unwrap_or_default(),
        ctx_asked: args.eval.ctx,
        max_ctx: max_position_embeddings(&traj, &config.hub),
        learnt_ctx: None,
        max_tokens: args.eval.max_tokens,
        data_tokens_max: eval.as_ref().and_then(|e| data_tokens_max(&e.0)),
        dtype: eval_dtype(&traj, &config.hub, &device),
        device: lawa::device::describe(&device).into(),
        tasks: tasks
            .iter()
            .map(|t| TaskView {
                name: t.name,
                label: t.label.clone(),
                hash: t.hash.clone(),
            })
            .collect(),
    };
    let mut state = State::new(traj.clone(), records, view);
    state.greet(
        warnings
            .first()
            .or(traj.warnings.first())
            .cloned()
            .unwrap_or_else(|| format!("{} checkpoints · ? for keys", traj.checkpoints.len())),
    );
    let base = eval.map(|e| args.eval.config(e, tasks, (device.clone(), config.fused)));
    let store = Arc::new(Mutex::new(store));
    let store_w = store.clone();
    let traj_w = traj.clone();
    let resident = lawa::jobs::engine::Resident::default();
    let hub = config.hub.clone();
    let make_runner: app::RunnerFactory = Box::new(move |ctx, max_tokens, sink| {
        let cfg = base.clone().map(|c| EvalConfig {
            ctx,
            max_tokens,
            ..c
        });
        let exec = EngineExecutor::new(traj.clone(), cfg, store.clone(), budget, resident.clone())
            .with_hub(hub.clone());
        JobRunner::start(exec, sink)
    });
    let watch = watcher(store_w, dir, traj_w);
    app::run(App {
        state,
        make_runner,
        export_dir: args.export_dir.clone(),
        watch: Some(watch),
    })
}

/// An upper bound of the eval data's token count: a token file's ids, a text's bytes.
fn data_tokens_max(data: &lawa::eval::EvalData) -> Option<u64> {
    use lawa::eval::{EvalData, TokenDType};
    let size = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.len());
    match data {
        EvalData::Text(p) => size(p),
        EvalData::TokensAs(p, w) => size(p).map(|n| n / if *w == TokenDType::U16 { 2 } else { 4 }),
        // .npy has a header and any width: its bytes bound its ids too.
        EvalData::Tokens(p) => match TokenDType::from_extension(p) {
            Some(TokenDType::U16) => size(p).map(|n| n / 2),
            Some(TokenDType::U32) => size(p).map(|n| n / 4),
            None => size(p),
        },
    }
}

/// Watches the store for results others append (a `lawa sweep` in another terminal, Slurm
/// array tasks) every call, and the Slurm sweeps' progress every fifth.
fn watcher(store: Arc<Mutex<ResultsStore>>, dir: PathBuf, traj: Trajectory) -> app::Watcher {
    let mut calls = 0u64;
    Box::new(move || {
        let mut out = Vec::new();
        // Once, at the first call: which checkpoints cannot be read (headers only).
        if calls == 0 {
            let bad = lawa::source::unreadable(&traj);
            if !bad.is_empty() {
                out.push(Event::Unreadable(bad));
            }
        }
        let (new, plans) = {
            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.records().len();
            let new = match s.reload() {
                Ok(_) => s.records()[before..].to_vec(),
                Err(_) => Vec::new(),
            };
            let plans = if calls.is_multiple_of(5) {
                let (plans, _) = ArrayPlan::all_in(&dir);
                (!plans.is_empty()).then(|| (plans, s.records().to_vec()))
            } else {
                None
            };
            (new, plans)
        };
        calls += 1;
        if !new.is_empty() {
            out.push(Event::Stored(new));
        }
        // squeue runs without the store locked: jobs keep appending meanwhile.
        if let Some((plans, records)) = plans {
            out.push(Event::Cluster(slurm::progress_all(&plans, &records)));
        }
        out
    })
}

/// `lawa` with no arguments: the explorer on the demo trajectory, trained first if needed.
pub fn run_demo(config: &Config, train: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = config.demo_dir()?;
    if !lawa::train::is_complete(&dir) {
        eprintln!(
            "lawa: no demo trajectory yet; training it into {} (once, about 2 minutes)",
            dir.display()
        );
        train().context("training the demo trajectory")?;
    }
    let source = dir.display().to_string();
    run(Args::for_source(source), config)
}
