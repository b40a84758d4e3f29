//! `lawa sweep`: the raw checkpoint and each window's average, evaluated at every step of a
//! trajectory and appended to its results store (the one the explorer reads). Incremental:
//! what the store holds for the same eval settings is skipped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use lawa::average::{AverageInput, AverageOptions, Scheme};
use lawa::jobs::engine::EvalConfig;
use lawa::jobs::Target;
use lawa::progress::{CancelToken, Reporter};
use lawa::results::Metric;
use lawa::results::{self, EvalSettings, ResultsStore};
use lawa::results::{Averaging, Series};
use lawa::sweep::slurm::{self, ArrayPlan, SubmitOptions, TaskState};
use lawa::sweep::{self, SweepEngine, SweepError, SweepSpec, Todo};
use lawa::Config;

use super::args::{EvalArgs, StoreTaskArgs};

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
    pub weights: Scheme,
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
    pub eval: EvalArgs,
    #[command(flatten)]
    pub zero_shot: StoreTaskArgs,
    /// Memory for checkpoints kept between windows, in MiB [default: half the machine's]
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Also write each averaged model, as `lawa average` would, into DIR
    #[arg(long, value_name = "DIR")]
    pub keep_models: Option<PathBuf>,
    /// Print each result as a JSON line, and a summary line at the end
    #[arg(long)]
    pub json: bool,
    /// Submit the sweep to Slurm as one job array instead of running it here
    #[arg(long, conflicts_with = "status")]
    pub slurm: bool,
    /// Slurm partition
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// At most N array tasks at once (the array's %N)
    #[arg(long, value_name = "N", requires = "slurm")]
    pub parallel: Option<usize>,
    /// Array tasks, each a contiguous chunk of the windows [default: one per 8 windows]
    #[arg(long, value_name = "M", requires = "slurm")]
    pub tasks: Option<usize>,
    /// More sbatch arguments, e.g. "--gres=gpu:1 --time=4:00:00 --mem=64G"
    #[arg(
        long,
        value_name = "ARGS",
        requires = "slurm",
        allow_hyphen_values = true
    )]
    pub sbatch: Option<String>,
    /// Report the Slurm sweeps of SOURCE: tasks done / running / failed, windows stored
    #[arg(long)]
    pub status: bool,
}

/// `lawa sweep-task PLAN`: one array task of a Slurm sweep (also a Kubernetes Indexed Job's
/// entry point).
#[derive(clap::Args, Debug, Clone)]
pub struct TaskArgs {
    /// The plan `lawa sweep --slurm` wrote (in the store's sweeps/ folder)
    pub plan: PathBuf,
    /// The task to run [default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX]
    #[arg(long)]
    pub index: Option<usize>,
}

/// What the sweep did, for `--json` and the last line.
#[derive(serde::Serialize)]
struct Summary<'a> {
    /// Each swept curve against raw, over everything stored for these settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    verdicts: Vec<String>,
    store: String,
    planned: usize,
    skipped: usize,
    evaluated: usize,
    /// Stored under this curve's name from an evaluation of the same model (no compute).
    reused: usize,
    seconds: f64,
    windows_per_s: f64,
    reads: &'a sweep::ReadStats,
}

pub fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    if args.status {
        return status(&args, config);
    }
    let scheme = args.weights.clone();
    if args.ks.contains(&0) {
        anyhow::bail!("--last 0: a window needs at least one checkpoint");
    }
    let traj = lawa::source::open(&args.source, &config.hub)?;
    let data = args.eval.data(&traj, &args.source)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no eval data: pass --text FILE or --tokens FILE (or put heldout.txt in the run folder)",
            args.source
        )
    })?;
    let tasks = args.zero_shot.configs(&traj, &args.source)?;
    let device = lawa::device::select(args.eval.device)?;
    let cfg = args
        .eval
        .config(data, tasks, (device.clone(), config.fused));
    let dir = results::trajectory_dir(config.home()?, &traj.source);
    let (mut store, warnings) = ResultsStore::open(&dir)?;
    for w in &warnings {
        eprintln!("warning: {}", lawa::display::escape(w));
    }
    let records: Vec<&results::ResultRecord> = store.records().iter().collect();
    let spikes = lawa::chart::detect_spikes(&traj, &records, &Default::default());
    let spec = SweepSpec {
        windows: args
            .ks
            .iter()
            .map(|&k| Averaging {
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
    let budget = budget(args.memory_mib);
    let mut engine = SweepEngine::new(traj.clone(), cfg, budget).with_hub(config.hub.clone());
    let all = engine.all_settings()?;
    // Evaluations: each target once per metric (perplexity, each task).
    let total = planned.len() * all.len();
    let (todo, skipped) = sweep::pending(planned, store.records(), &all);
    if skipped > 0 && !args.json {
        eprintln!(
            "lawa sweep: {skipped} of {total} already in the store (ctx {}), skipped",
            all[0].ctx
        );
    }
    if args.slurm {
        return submit(&args, &engine, &dir, store.records(), todo, all);
    }
    let keep = args.keep_models.as_deref().map(|d| (d, &scheme));
    let done = execute(&mut engine, &mut store, &todo, &all, keep, args.json)?;
    let mut verdicts = Vec::new();
    for settings in &all {
        let same: Vec<&results::ResultRecord> = store
            .records()
            .iter()
            .filter(|r| settings.matches(r))
            .collect();
        verdicts.extend(
            spec.windows
                .iter()
                .filter_map(|w| {
                    let series = Series::Average(w.clone());
                    lawa::export::verdict::verdict(&same, &series, &spikes, settings.metric)
                })
                .map(|v| v.to_string()),
        );
    }
    let stats = engine.stats();
    let summary = Summary::new(verdicts, &store, total, skipped, &done, &stats);
    print_summary(&traj.source, &summary, args.json);
    failures(done.failed, todo.len())
}

/// The exit of a sweep whose targets failed: one line after the results that were stored.
fn failures(failed: usize, of: usize) -> anyhow::Result<()> {
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {of} evaluation(s) failed (lines above); every other result is stored"
        );
    }
    Ok(())
}

fn budget(memory_mib: Option<u64>) -> u64 {
    memory_mib.map_or_else(sweep::default_budget, |m| m << 20)
}

impl<'a> Summary<'a> {
    fn new(
        verdicts: Vec<String>,
        store: &ResultsStore,
        planned: usize,
        skipped: usize,
        done: &Done,
        reads: &'a sweep::ReadStats,
    ) -> Self {
        Summary {
            verdicts,
            store: store.path().display().to_string(),
            planned,
            skipped,
            evaluated: done.evaluated,
            reused: done.reused,
            seconds: done.seconds,
            windows_per_s: done.evaluated as f64 / done.seconds.max(1e-9),
            reads,
        }
    }
}

/// What [`execute`] did.
struct Done {
    evaluated: usize,
    /// Targets whose model was already evaluated under another name (see `sweep::reuse`).
    reused: usize,
    failed: usize,
    seconds: f64,
}

/// Evaluates `todo` in order, appending each result to `store` as soon as it is known; a
/// signal stops between results, so every stored line is whole. A target that fails (an
/// unreadable checkpoint) is one error line and the sweep goes on: an overnight sweep is not
/// lost to one bad file; the caller fails at the end if any did.
fn execute(
    engine: &mut SweepEngine,
    store: &mut ResultsStore,
    todo: &[Todo],
    settings: &[EvalSettings],
    keep: Option<(&Path, &Scheme)>,
    json: bool,
) -> anyhow::Result<Done> {
    let token = CancelToken::new();
    super::signals::cancel_on_signals(token.clone());
    let (reporter, bar) = super::progress::reporter(token);
    let t0 = Instant::now();
    let mut evaluated = 0;
    let mut failed = 0;
    let mut reused = 0;
    let result = (|| -> anyhow::Result<()> {
        for (i, item) in todo.iter().enumerate() {
            let target = &item.target;
            let mut metrics: Vec<Metric> = Vec::new();
            for s in settings.iter().filter(|s| item.metrics.contains(&s.metric)) {
                match sweep::reuse(target, store.records(), s) {
                    Some(record) => {
                        store.append(record.clone())?;
                        reused += 1;
                        print_result(&record, json)?;
                    }
                    None => metrics.push(s.metric),
                }
            }
            if metrics.is_empty() {
                continue;
            }
            if let Some(b) = &bar {
                b.println(format!("[{}/{}] {}", i + 1, todo.len(), target.label()));
            }
            let records = match engine.evaluate(target, &metrics, &reporter) {
                Ok(r) => r,
                Err(SweepError::Cancelled(_)) => anyhow::bail!(
                    "sweep cancelled by {} after {evaluated} result(s); every stored result is complete",
                    super::signals::received().unwrap_or("a signal")
                ),
                Err(e) => {
                    failed += 1;
                    let line = format!("error: {}: {e}", target.label());
                    match &bar {
                        Some(b) => b.println(lawa::display::escape(&line)),
                        None => eprintln!("{}", lawa::display::escape(&line)),
                    }
                    continue;
                }
            };
            if let (Some((out, scheme)), Target::Window { steps, weights, .. }) = (keep, target) {
                keep_model(engine, out, steps, weights, scheme, &reporter)?;
            }
            for record in records {
                store.append(record.clone())?;
                evaluated += 1;
                print_result(&record, json)?;
            }
        }
        Ok(())
    })();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result?;
    Ok(Done {
        evaluated,
        reused,
        failed,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn print_summary(source: &str, summary: &Summary, json: bool) {
    let stats = summary.reads;
    if stats.over_budget {
        eprintln!(
            "note: the memory budget holds less than a window: checkpoints were read again for each window (--memory-mib)"
        );
    }
    if json {
        println!("{}", serde_json::json!({ "summary": summary }));
    } else {
        for v in &summary.verdicts {
            println!("{}", lawa::display::escape(v));
        }
        println!(
            "swept {}: {} evaluated, {} already stored{}, in {:.1}s ({:.2}/s); {} checkpoint reads, {:.1} MB; results in {}",
            lawa::display::escape(source),
            summary.evaluated,
            summary.skipped,
            match summary.reused {
                0 => String::new(),
                n => format!(", {n} reused (the same model stored under another curve)"),
            },
            summary.seconds,
            summary.windows_per_s,
            stats.checkpoint_reads,
            stats.bytes_read as f64 / 1e6,
            lawa::display::escape(&summary.store),
        );
    }
}

/// `--slurm`: writes the plan and its batch script beside the store and submits one array;
/// if sbatch refuses, nothing is left behind.
fn submit(
    args: &Args,
    engine: &SweepEngine,
    dir: &Path,
    records: &[results::ResultRecord],
    todo: Vec<Todo>,
    mut settings: Vec<EvalSettings>,
) -> anyhow::Result<()> {
    let todo: Vec<Target> = todo.into_iter().map(|t| t.target).collect();
    // Windows that tasks of earlier submissions still have queued or running are theirs.
    let (plans, _) = ArrayPlan::all_in(dir);
    let flight = slurm::in_flight(&plans, &slurm::progress_all(&plans, records));
    let before = todo.len();
    let todo: Vec<Target> = todo
        .into_iter()
        .filter(|t| !flight.iter().any(|(_, f)| f == t))
        .collect();
    if todo.len() < before {
        let mut jobs: Vec<u64> = flight.iter().map(|(j, _)| *j).collect();
        jobs.dedup();
        eprintln!(
            "lawa sweep: {} window(s) already queued or running in job(s) {}, left to them",
            before - todo.len(),
            jobs.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let windows = todo.len();
    if windows == 0 {
        println!("nothing to submit: every window of the sweep is stored or already submitted");
        return Ok(());
    }
    let tasks = args.tasks.unwrap_or(windows.div_ceil(8)).max(1);
    let chunked: Vec<Vec<Target>> = slurm::chunks(windows, tasks)
        .into_iter()
        .map(|r| todo[r].to_vec())
        .collect();
    let traj = engine.trajectory();
    let eval = plan_eval(engine.eval_config())?;
    let plan = ArrayPlan {
        id: format!("{}-{}", results::now_unix(), std::process::id()),
        source: absolute_source(&traj.source),
        store_dir: dir.to_path_buf(),
        eval,
        device: args.eval.device,
        settings: settings.remove(0),
        task_settings: settings,
        memory_mib: args.memory_mib,
        keep_models: args.keep_models.as_deref().map(absolute).transpose()?,
        scheme: args.weights.clone(),
        tasks: chunked,
        job_id: None,
        created_unix: results::now_unix(),
    };
    let opts = SubmitOptions {
        partition: args.partition.clone(),
        parallel: args.parallel,
        extra: args
            .sbatch
            .as_deref()
            .map(slurm::split_args)
            .transpose()?
            .unwrap_or_default(),
    };
    let exe = std::env::current_exe().context("the path of this lawa binary")?;
    let submitted = (|| -> anyhow::Result<u64> {
        let plan_path = plan.save()?;
        let logs = plan_path.with_extension("");
        std::fs::create_dir_all(&logs).with_context(|| logs.display().to_string())?;
        let script = plan_path.with_extension("sbatch");
        std::fs::write(&script, slurm::batch_script(&exe, &plan_path))
            .with_context(|| script.display().to_string())?;
        Ok(slurm::submit(&slurm::sbatch_args(&plan, &opts), &script)?)
    })();
    let job_id = match submitted {
        Ok(id) => id,
        Err(e) => {
            plan.remove_files();
            return Err(e.context("--slurm: nothing was submitted"));
        }
    };
    let plan = ArrayPlan {
        job_id: Some(job_id),
        ..plan
    };
    plan.save()?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "job_id": job_id,
                "tasks": plan.tasks.len(),
                "windows": windows,
                "store": dir.display().to_string(),
            })
        );
    } else {
        println!(
            "submitted Slurm job {job_id}: {} array task(s), {windows} evaluation(s); results go to {}; follow with `lawa sweep {} --status` or `lawa explore`",
            plan.tasks.len(),
            lawa::display::escape(&dir.display().to_string()),
            lawa::display::escape(&args.source),
        );
    }
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| p.display().to_string())
}

/// A local source as an absolute path (the tasks start in another folder); others as given.
fn absolute_source(source: &str) -> String {
    match std::fs::canonicalize(source) {
        Ok(p) => p.display().to_string(),
        Err(_) => source.to_string(),
    }
}

/// The eval configuration a task rebuilds on its node, with absolute paths.
fn plan_eval(cfg: &EvalConfig) -> anyhow::Result<EvalConfig> {
    use lawa::eval::EvalData;
    let data = match &cfg.data {
        EvalData::Text(p) => EvalData::Text(absolute(p)?),
        EvalData::Tokens(p) => EvalData::Tokens(absolute(p)?),
        EvalData::TokensAs(p, w) => EvalData::TokensAs(absolute(p)?, *w),
    };
    let mut tasks = cfg.tasks.clone();
    for t in &mut tasks {
        t.file = absolute(&t.file)?;
    }
    Ok(EvalConfig {
        data,
        tasks,
        ..cfg.clone()
    })
}

/// `lawa sweep-task PLAN`: runs one array task's chunk into its own shard, skipping what the
/// store already holds (a rerun after a failure or preemption does only what is missing).
pub fn run_task(args: TaskArgs, config: &Config) -> anyhow::Result<()> {
    let plan = ArrayPlan::load(&args.plan)?;
    let index = match args.index {
        Some(i) => i,
        None => slurm::task_index(|k| std::env::var(k).ok())?.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no task index: pass --index N, or run as an array task (SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)",
                args.plan.display()
            )
        })?,
    };
    let targets = plan.tasks.get(index).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no task {index} (the plan has {} tasks)",
            args.plan.display(),
            plan.tasks.len()
        )
    })?;
    let (kind, path) = match &plan.eval.data {
        lawa::eval::EvalData::Text(p) => ("text", p),
        lawa::eval::EvalData::Tokens(p) | lawa::eval::EvalData::TokensAs(p, _) => ("tokens", p),
    };
    if results::file_hash(kind, path)? != plan.eval.data_hash {
        anyhow::bail!(
            "{}: the eval data changed since the sweep was submitted",
            path.display()
        );
    }
    for t in &plan.eval.tasks {
        if results::file_hash("task", &t.file)? != t.hash {
            anyhow::bail!(
                "{}: the task file changed since the sweep was submitted",
                t.file.display()
            );
        }
    }
    let traj = lawa::source::open(&plan.source, &config.hub)?;
    let cfg = EvalConfig {
        device: lawa::device::select(plan.device)?,
        fused: config.fused,
        ..plan.eval.clone()
    };
    let mut engine =
        SweepEngine::new(traj, cfg, budget(plan.memory_mib)).with_hub(config.hub.clone());
    let settings = engine.all_settings()?;
    if settings != plan.all_settings() {
        anyhow::bail!(
            "{}: this node resolves other eval settings ({settings:?}) than the submission ({:?})",
            args.plan.display(),
            plan.all_settings()
        );
    }
    let (mut store, warnings) = ResultsStore::open_shard(&plan.store_dir, &plan.shard_name(index))
        .context("opening the results store (it must be writable from the compute nodes)")?;
    for w in &warnings {
        eprintln!("warning: {}", lawa::display::escape(w));
    }
    let (todo, skipped) = sweep::pending(targets.clone(), store.records(), &settings);
    eprintln!(
        "lawa sweep-task {index} of {}: {} to evaluate, {skipped} already stored",
        plan.id,
        todo.len()
    );
    let keep = plan.keep_models.as_deref().map(|d| (d, &plan.scheme));
    let done = execute(&mut engine, &mut store, &todo, &settings, keep, false)?;
    let stats = engine.stats();
    let planned = targets.len() * settings.len();
    let summary = Summary::new(Vec::new(), &store, planned, skipped, &done, &stats);
    print_summary(&plan.source, &summary, false);
    failures(done.failed, todo.len())
}

/// `--status`: each Slurm sweep of the trajectory, from the store and `squeue`.
fn status(args: &Args, config: &Config) -> anyhow::Result<()> {
    let traj = lawa::source::open(&args.source, &config.hub)?;
    let dir = results::trajectory_dir(config.home()?, &traj.source);
    let (plans, warnings) = ArrayPlan::all_in(&dir);
    for w in &warnings {
        eprintln!("warning: {}", lawa::display::escape(w));
    }
    let (store, _) = ResultsStore::open(&dir)?;
    let sweeps = slurm::progress_all(&plans, store.records());
    if args.json {
        let out: Vec<_> = sweeps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id, "job_id": s.job_id, "tasks": s.tasks,
                    "done": s.count(TaskState::Done), "running": s.count(TaskState::Running),
                    "pending": s.count(TaskState::Pending), "failed": s.count(TaskState::Failed),
                    "windows": s.windows(), "stored": s.stored(), "queue_error": s.queue_error,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "sweeps": out }));
        return Ok(());
    }
    if sweeps.is_empty() {
        println!(
            "no Slurm sweeps of {} (submit one with lawa sweep --slurm)",
            lawa::display::escape(&args.source)
        );
    }
    for (s, plan) in sweeps
        .iter()
        .zip(plans.iter().filter(|p| p.job_id.is_some()))
    {
        println!("{} ({})", s.summary(), s.id);
        if let Some(e) = &s.queue_error {
            println!("  (queue unknown: {})", lawa::display::escape(e));
        }
        for t in s.tasks.iter().filter(|t| t.state != TaskState::Done) {
            let why = match t.state {
                TaskState::Failed => slurm::last_log_line(&plan.log_path(t.index))
                    .map(|l| format!(": {}", lawa::display::escape(&l)))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            println!(
                "  task {:>3} {:<8} {}/{}{why}",
                t.index,
                format!("{:?}", t.state).to_lowercase(),
                t.done,
                t.windows
            );
        }
        if s.count(TaskState::Failed) > 0 {
            println!(
                "  rerun the same `lawa sweep ... --slurm` to submit only the missing windows"
            );
        }
    }
    Ok(())
}

fn print_result(r: &results::ResultRecord, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else if let Some(t) = &r.task {
        println!(
            "step {:>8}  {:<24} {} acc {:.4}",
            r.end_step,
            r.series(),
            t.task,
            t.acc
        );
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
    out: &Path,
    steps: &[u64],
    weights: &[f64],
    scheme: &Scheme,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let traj = engine.trajectory();
    let mut inputs = Vec::with_capacity(steps.len());
    for (&step, &weight) in steps.iter().zip(weights) {
        let ckpt = traj
            .checkpoint(step)
            .with_context(|| format!("step {step} is not in {}", traj.source))?;
        let path = lawa::source::local_path(ckpt, engine.hub(), reporter)?;
        inputs.push(AverageInput { path, step, weight });
    }
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let (first, last) = (steps[0], steps[steps.len() - 1]);
    let dest = out.join(format!("avg-{first}-{last}-k{}", steps.len()));
    let opts = AverageOptions {
        device: engine.eval_config().device.clone(),
        fused: engine.eval_config().fused,
        force: true,
        ..AverageOptions::new(scheme)
    };
    lawa::average::average(&inputs, &dest, &opts, reporter)?;
    Ok(())
}
