//! `lawa sweep`: the raw checkpoint and each window's average, evaluated at every step of a
//! trajectory and appended to its results store (the one the explorer reads). Incremental:
//! what the store holds for the same eval settings is skipped.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use lawa::average::{AverageInput, AverageOptions, Scheme};
use lawa::jobs::Target;
use lawa::progress::{CancelToken, Reporter};
use lawa::results::{self, ResultsStore};
use lawa::sweep::{self, SweepEngine, SweepError, SweepSpec, WindowSpec};

use super::args::StoreEvalArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The trajectory: a run folder, a repo folder in the Hugging Face cache, or hf:ORG/NAME
    pub source: String,
    /// Window sizes (repeatable, or comma-separated): one curve per k
    #[arg(
        long = "last",
        value_name = "K",
        value_delimiter = ',',
        default_value = "5"
    )]
    pub ks: Vec<usize>,
    /// Weight scheme: uniform, ema:HALF_LIFE_STEPS, linear, or w1,w2,... (oldest first)
    #[arg(long, default_value = "uniform")]
    pub weights: String,
    /// Leave checkpoints inside detected loss spikes out of each window
    #[arg(long)]
    pub spike_aware: bool,
    /// Do not evaluate the raw checkpoints
    #[arg(long)]
    pub no_raw: bool,
    /// First step of the sweep
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step of the sweep
    #[arg(long)]
    pub to: Option<u64>,
    /// Every N-th checkpoint of the range
    #[arg(long, default_value_t = 1)]
    pub every: usize,
    #[command(flatten)]
    pub eval: StoreEvalArgs,
    /// Memory for checkpoints kept between windows, in MiB [default: half the machine's]
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Also write each averaged model, as `lawa average` would, into DIR
    #[arg(long, value_name = "DIR")]
    pub keep_models: Option<PathBuf>,
    /// Print each result as a JSON line, and a summary line at the end
    #[arg(long)]
    pub json: bool,
}

/// What the sweep did, for `--json` and the last line.
#[derive(serde::Serialize)]
struct Summary<'a> {
    store: String,
    planned: usize,
    skipped: usize,
    evaluated: usize,
    seconds: f64,
    windows_per_s: f64,
    reads: &'a sweep::ReadStats,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let scheme: Scheme = args.weights.parse()?;
    if args.ks.contains(&0) {
        anyhow::bail!("--last 0: a window needs at least one checkpoint");
    }
    let traj = lawa::source::open(&args.source)?;
    let data = args.eval.data(&traj, &args.source)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no eval data: pass --text FILE or --tokens FILE (or put heldout.txt in the run folder)",
            args.source
        )
    })?;
    let device = lawa::device::select(args.eval.device)?;
    let cfg = args.eval.config(data, device.clone());
    let dir = results::trajectory_dir(&traj.source)?;
    let (mut store, warnings) = ResultsStore::open(&dir)?;
    for w in &warnings {
        eprintln!("warning: {}", lawa::display::escape(w));
    }
    let records: Vec<&results::ResultRecord> = store.records().iter().collect();
    let spikes = lawa::export::chart::detect_spikes(&traj, &records, &Default::default());
    let spec = SweepSpec {
        windows: args
            .ks
            .iter()
            .map(|&k| WindowSpec {
                scheme: scheme.clone(),
                k,
                spike_aware: args.spike_aware,
            })
            .collect(),
        raw: !args.no_raw,
        from: args.from,
        to: args.to,
        every: args.every,
    };
    let planned = sweep::plan(&traj, &spec, &spikes)?;
    let budget = args
        .memory_mib
        .map_or_else(sweep::default_budget, |m| m << 20);
    let mut engine = SweepEngine::new(traj.clone(), cfg, budget);
    let settings = engine.settings()?;
    let total = planned.len();
    let (todo, skipped) = sweep::pending(planned, store.records(), &settings);
    if skipped > 0 && !args.json {
        eprintln!(
            "lawa sweep: {skipped} of {total} already in the store (ctx {}), skipped",
            settings.ctx
        );
    }

    let token = CancelToken::new();
    super::signals::cancel_on_signals(token.clone());
    let (reporter, bar) = super::progress::reporter(token);
    let t0 = Instant::now();
    let mut evaluated = 0;
    let result = (|| -> anyhow::Result<()> {
        for (i, target) in todo.iter().enumerate() {
            if let Some(b) = &bar {
                b.println(format!("[{}/{}] {}", i + 1, todo.len(), target.label()));
            }
            let record = engine.evaluate(target, &reporter).map_err(|e| match e {
                SweepError::Cancelled(_) => anyhow::anyhow!(
                    "sweep cancelled by {} after {evaluated} result(s); every stored result is complete",
                    super::signals::received().unwrap_or("a signal")
                ),
                e => anyhow::Error::from(e).context(target.label()),
            })?;
            if let (Some(out), Target::Window { steps, weights, .. }) = (&args.keep_models, target)
            {
                keep_model(&engine, out, steps, weights, &scheme, &device, &reporter)?;
            }
            store.append(record.clone())?;
            evaluated += 1;
            print_result(&record, args.json)?;
        }
        Ok(())
    })();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result?;
    let seconds = t0.elapsed().as_secs_f64();
    let stats = engine.stats();
    if stats.over_budget {
        eprintln!(
            "note: the memory budget ({} MiB) holds less than a window: checkpoints were read again for each window (--memory-mib)",
            budget >> 20
        );
    }
    let summary = Summary {
        store: store.path().display().to_string(),
        planned: total,
        skipped,
        evaluated,
        seconds,
        windows_per_s: evaluated as f64 / seconds.max(1e-9),
        reads: &stats,
    };
    if args.json {
        println!("{}", serde_json::json!({ "summary": summary }));
    } else {
        println!(
            "swept {}: {evaluated} evaluated, {skipped} already stored, in {seconds:.1}s ({:.2}/s); {} checkpoint reads, {:.1} MB; results in {}",
            lawa::display::escape(&traj.source),
            summary.windows_per_s,
            stats.checkpoint_reads,
            stats.bytes_read as f64 / 1e6,
            lawa::display::escape(&summary.store),
        );
    }
    Ok(())
}

fn print_result(r: &results::ResultRecord, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "step {:>8}  {:<24} nll {:.5}  ppl {:.3}",
            r.end_step,
            r.series(),
            r.mean_nll,
            r.ppl
        );
    }
    Ok(())
}

/// `--keep-models`: the window written by the streaming engine, as `lawa average` writes it.
fn keep_model(
    engine: &SweepEngine,
    out: &std::path::Path,
    steps: &[u64],
    weights: &[f64],
    scheme: &Scheme,
    device: &candle_core::Device,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let traj = engine.trajectory();
    let mut inputs = Vec::with_capacity(steps.len());
    for (&step, &weight) in steps.iter().zip(weights) {
        let ckpt = traj
            .checkpoint(step)
            .with_context(|| format!("step {step} is not in {}", traj.source))?;
        let path = lawa::source::local_path(ckpt, reporter)?;
        inputs.push(AverageInput { path, step, weight });
    }
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let (first, last) = (steps[0], steps[steps.len() - 1]);
    let dest = out.join(format!("avg-{first}-{last}-k{}", steps.len()));
    let opts = AverageOptions {
        device: device.clone(),
        force: true,
        ..AverageOptions::new(scheme)
    };
    lawa::average::average(&inputs, &dest, &opts, reporter)?;
    Ok(())
}
