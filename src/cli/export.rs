//! `lawa export`: export the chart and tables of a trajectory from its cached results.

use std::path::PathBuf;

use lawa::chart::{self, ChartOptions, XAxis};
use lawa::results::{self, EvalSettings, Metric, ResultRecord, ResultsStore};
use lawa::spikes::SpikeParams;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum XArg {
    #[default]
    Step,
    Tokens,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The trajectory (as given to `lawa explore`)
    pub source: String,
    /// Output folder (created if needed)
    #[arg(long)]
    pub out: PathBuf,
    /// x axis of the chart
    #[arg(long, value_enum, default_value_t = XArg::Step)]
    pub x: XArg,
    /// Logarithmic y axis
    #[arg(long)]
    pub log_y: bool,
    /// EMA smoothing of the train loss, in [0, 1)
    #[arg(long, default_value_t = 0.6)]
    pub smoothing: f64,
    /// The gain view: each averaged curve minus raw (eval NLL, nats) against zero
    #[arg(long)]
    pub gain: bool,
    /// Perplexities instead of losses (with --gain: % change of perplexity)
    #[arg(long)]
    pub ppl: bool,
    /// Leave the train loss off the chart
    #[arg(long)]
    pub no_train: bool,
    /// Chart a zero-shot task's accuracy (NAME=FILE, as given to sweep or explore: the
    /// results of that task file) instead of the perplexity
    #[arg(long, value_name = "NAME=FILE")]
    pub task: Option<lawa::tasks::TaskSpec>,
    #[command(flatten)]
    pub tokens: super::args::TokensPerStepArg,
}

pub fn run(args: Args, config: &lawa::Config) -> anyhow::Result<()> {
    let traj = args.tokens.open(&args.source, config)?;
    let dir = results::trajectory_dir(config.home()?, &traj.source);
    let (store, warnings) = ResultsStore::open(&dir)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let all: Vec<ResultRecord> = store.records().to_vec();
    // The chart compares like with like: the eval settings of the newest result of the
    // metric asked for (data or task file, ctx, max tokens and dtype all equal).
    let (metric, hash) = match &args.task {
        Some(spec) => {
            let hash = results::file_hash("task", &spec.file)?;
            (Metric::Task(spec.name), Some(hash))
        }
        None => (Metric::Perplexity, None),
    };
    let newest = |m: Metric, hash: Option<&str>| {
        all.iter()
            .rev()
            .find(|r| r.metric() == m && hash.is_none_or(|h| r.data_hash == h))
            .map(EvalSettings::of)
    };
    let key = newest(metric, hash.as_deref());
    if let (Some(spec), None) = (&args.task, &key) {
        anyhow::bail!(
            "{}: no {} results of this file in the store of {} (run lawa sweep --task first)",
            spec.file.display(),
            spec.name,
            args.source
        );
    }
    let shown: Vec<&ResultRecord> = all
        .iter()
        .filter(|r| key.as_ref().is_some_and(|k| k.matches(r)))
        .collect();
    // Spikes come from the train loss, else the raw perplexity curve.
    let ppl_key = newest(Metric::Perplexity, None);
    let ppl_shown: Vec<&ResultRecord> = all
        .iter()
        .filter(|r| ppl_key.as_ref().is_some_and(|k| k.matches(r)))
        .collect();
    let spikes = chart::detect_spikes(&traj, &ppl_shown, &SpikeParams::default());
    let x_axis = match args.x {
        XArg::Step => XAxis::Step,
        XArg::Tokens => XAxis::Tokens,
    };
    if x_axis == XAxis::Tokens && !chart::has_tokens(&traj) {
        anyhow::bail!(
            "{}: tokens per step unknown for this run; use --x step",
            args.source
        );
    }
    let model = chart::build(
        &traj,
        &shown,
        &ChartOptions {
            x_axis,
            log_y: args.log_y,
            smoothing: args.smoothing.clamp(0.0, 0.99),
            spikes: spikes.iter().map(|r| (r.start_step, r.end_step)).collect(),
            cursor_step: None,
            window_steps: None,
            gain: args.gain,
            ppl: args.ppl,
            hide_train: args.no_train,
            metric,
        },
    );
    let verdicts = lawa::export::verdict::all(&shown, &spikes, metric);
    for v in &verdicts {
        eprintln!("{v}");
    }
    let files = lawa::export::export_all(
        &model,
        &all,
        &verdicts,
        &args.out,
        &lawa::export::file_stem(&traj.name),
    )?;
    eprintln!(
        "{} results ({} on the chart), {} spike region(s)",
        all.len(),
        shown.len(),
        spikes.len()
    );
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
