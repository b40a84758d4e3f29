//! `lawa eval`: evaluate a model's perplexity on text or tokens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::DType;
use lawa::device;
use lawa::eval::{self, Comparison, EvalData, EvalOptions, EvalResult, TokenDType, Tokens};
use lawa::model::LoadedModel;
use lawa::progress::{CancelToken, Reporter};
use lawa::tasks::{TaskResult, TaskSpec};

use super::args::EvalArgs;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Windows: the first --max-tokens tokens (all by default) are cut into \
consecutive non-overlapping windows of --ctx tokens; a remainder shorter than ctx is dropped, \
unless the whole input is shorter than ctx, in which case it is one window; in each window \
every token after the first is predicted.",
    // The shared --text, as `lawa eval` needs it: no run folder to default to.
    mut_arg("text", |a| a
        .help("UTF-8 text, tokenised with the model's tokenizer.json")
        .required_unless_present_any(["tokens", "task"]))
)]
pub struct Args {
    /// A model dir (config.json + weights), an averaged output, or a run (with --step)
    pub model: PathBuf,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Width of the ids of a raw --tokens file, whatever its extension
    #[arg(long, value_enum, requires = "tokens")]
    pub token_dtype: Option<TokenDType>,
    /// The checkpoint of the run MODEL at this step
    #[arg(long)]
    pub step: Option<u64>,
    /// Compute dtype [default: f32 on CPU, the checkpoint's dtype on a GPU]
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
    /// Also run this model dir on the same windows: KL(OTHER ‖ MODEL) and top-1 agreement
    #[arg(long, value_name = "OTHER")]
    pub against: Option<PathBuf>,
    /// A zero-shot task as lm-evaluation-harness defines it, on a local JSONL file in the
    /// dataset's own schema (repeatable): lambada_openai, piqa, arc_easy, arc_challenge,
    /// hellaswag or sciq, e.g. --task piqa=piqa_validation.jsonl
    #[arg(long, value_name = "NAME=FILE")]
    pub task: Vec<TaskSpec>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl DTypeArg {
    fn to_candle(self) -> DType {
        match self {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
            DTypeArg::Bf16 => DType::BF16,
        }
    }
}

pub fn run(args: Args, config: &lawa::Config) -> anyhow::Result<()> {
    let model_dir = resolve_model(&args.model, args.step, config)?;
    let device = device::select(args.eval.device)?;
    let opts = EvalOptions {
        ctx: args.eval.ctx,
        max_tokens: args.eval.max_tokens_len(),
        batch: args.eval.batch,
        device,
        dtype: args.dtype.map(DTypeArg::to_candle),
        fused: config.fused,
    };
    let data = match (&args.eval.text, &args.eval.tokens, args.token_dtype) {
        (Some(t), _, _) => EvalData::Text(t.clone()),
        (None, Some(t), Some(w)) => EvalData::TokensAs(t.clone(), w),
        (None, Some(t), None) => EvalData::Tokens(t.clone()),
        (None, None, _) if !args.task.is_empty() => {
            return run_tasks_only(&args, &model_dir, &opts)
        }
        (None, None, _) => anyhow::bail!("give --text FILE, --tokens FILE or --task NAME=FILE"),
    };
    // A bad task file should not wait for the perplexity either.
    for spec in &args.task {
        lawa::tasks::read_docs(spec.name, &spec.file)?;
    }

    // Cheap checks first: a bad token file should not wait for a model to load.
    let tokens = eval::load_tokens(&data, &model_dir, opts.max_tokens)?;
    let (reporter, bar) = super::progress::reporter(CancelToken::new());
    // Before loading: a dtype cast while loading is already a GPU kernel.
    device::prepare(&opts.device, &reporter)?;
    let model = eval::load_model(&model_dir, &opts)?;
    let other = args
        .against
        .as_deref()
        .map(|o| eval::load_model(o, &opts))
        .transpose()?;
    let w = eval::plan(&model, other.as_ref(), &tokens, &opts)?;
    eprintln!(
        "evaluating {} on {} windows x {} tokens of {} (batch {}) on {}, {:?}",
        lawa::display::escape(&model_dir.display().to_string()),
        w.count,
        w.len,
        lawa::display::escape(&tokens.source.display().to_string()),
        opts.batch,
        device::describe(&opts.device),
        model.model.dtype(),
    );

    match &other {
        None => {
            let r = eval::evaluate(&model, &tokens, &opts, &reporter)?;
            let tasks = run_tasks(&model, &args, &reporter)?;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            if args.json {
                let v = with_tasks(serde_json::to_value(&r)?, &tasks)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_result(&model, &tokens, &r);
                print_tasks(&tasks);
            }
            finite_or_fail(&model_dir, &[("mean NLL", r.mean_nll)])?;
        }
        Some(o) => {
            let c = eval::compare(&model, o, &tokens, &opts, &reporter)?;
            let tasks = run_tasks(&model, &args, &reporter)?;
            let other_tasks = run_tasks(o, &args, &reporter)?;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            if args.json {
                let mut v = with_tasks(serde_json::to_value(&c)?, &tasks)?;
                if !other_tasks.is_empty() {
                    v["other_tasks"] = tasks_json(&other_tasks);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_result(&model, &tokens, &c.model);
                print_tasks(&tasks);
                print_comparison(o, &c);
                print_tasks(&other_tasks);
            }
            finite_or_fail(&model_dir, &[("mean NLL", c.model.mean_nll)])?;
            finite_or_fail(
                o.dir.as_path(),
                &[("mean NLL", c.other_mean_nll), ("KL", c.mean_kl)],
            )?;
        }
    }
    Ok(())
}

/// `lawa eval MODEL --task …` with no perplexity data: the tasks alone (and `--against`'s).
fn run_tasks_only(args: &Args, model_dir: &Path, opts: &EvalOptions) -> anyhow::Result<()> {
    for spec in &args.task {
        lawa::tasks::read_docs(spec.name, &spec.file)?;
    }
    let (reporter, bar) = super::progress::reporter(CancelToken::new());
    device::prepare(&opts.device, &reporter)?;
    let model = eval::load_model(model_dir, opts)?;
    let other = args
        .against
        .as_deref()
        .map(|o| eval::load_model(o, opts))
        .transpose()?;
    let tasks = run_tasks(&model, args, &reporter)?;
    let other_tasks = match &other {
        Some(o) => run_tasks(o, args, &reporter)?,
        None => Vec::new(),
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if args.json {
        let mut v = serde_json::json!({ "model": model.dir, "tasks": tasks_json(&tasks) });
        if let Some(o) = &other {
            v["against"] = serde_json::json!(o.dir);
            v["other_tasks"] = tasks_json(&other_tasks);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "model        {}",
            lawa::display::escape(&model.dir.display().to_string())
        );
        print_tasks(&tasks);
        if let Some(o) = &other {
            println!(
                "against      {}",
                lawa::display::escape(&o.dir.display().to_string())
            );
            print_tasks(&other_tasks);
        }
    }
    Ok(())
}

fn run_tasks(
    model: &LoadedModel,
    args: &Args,
    reporter: &Reporter,
) -> anyhow::Result<Vec<TaskResult>> {
    args.task
        .iter()
        .map(|spec| {
            Ok(lawa::tasks::evaluate_model(
                model,
                spec,
                args.eval.batch,
                reporter,
            )?)
        })
        .collect()
}

/// `{"piqa": {"acc": …, "acc_norm": …, "n": …, "acc_stderr": …}, …}`
fn tasks_json(tasks: &[TaskResult]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for t in tasks {
        let mut v = serde_json::to_value(t).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("task");
        }
        m.insert(t.task.to_string(), v);
    }
    serde_json::Value::Object(m)
}

fn with_tasks(mut v: serde_json::Value, tasks: &[TaskResult]) -> anyhow::Result<serde_json::Value> {
    if !tasks.is_empty() {
        v["tasks"] = tasks_json(tasks);
    }
    Ok(v)
}

fn print_tasks(tasks: &[TaskResult]) {
    for t in tasks {
        let mut line = format!(
            "{:<12} acc {:.4} ± {:.4}",
            t.task.as_str(),
            t.acc,
            t.acc_stderr
        );
        if let (Some(a), Some(se)) = (t.acc_norm, t.acc_norm_stderr) {
            line.push_str(&format!(", acc_norm {a:.4} ± {se:.4}"));
        }
        if let Some(p) = t.perplexity {
            line.push_str(&format!(", perplexity {p:.4}"));
        }
        println!("{line} ({} docs)", t.n);
    }
}

/// A NaN or infinite result is not a perplexity: printed as computed, it fails the command
/// (non-zero exit, one line naming the model) so no script records it as a number.
fn finite_or_fail(model: &Path, values: &[(&str, f64)]) -> anyhow::Result<()> {
    match values.iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some((what, v)) => anyhow::bail!(
            "{}: the {what} is {v}, not a number to report: NaN/Inf weights or a broken config (e.g. a negative layer_norm_eps) make the logits non-finite",
            model.display()
        ),
    }
}

/// The model dir MODEL names: itself, or with `--step N` the checkpoint of that run.
fn resolve_model(
    model: &Path,
    step: Option<u64>,
    config: &lawa::Config,
) -> anyhow::Result<PathBuf> {
    let Some(step) = step else {
        return Ok(model.to_path_buf());
    };
    let source = model.to_string_lossy();
    let traj = lawa::source::open(&source, &config.hub)?;
    let ckpt = traj.checkpoint(step).with_context(|| {
        let steps = traj.steps();
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => format!(
                "{source}: no checkpoint at step {step} (it has {} checkpoints, steps {a} to {b})",
                steps.len()
            ),
            _ => format!("{source}: no checkpoint at step {step}"),
        }
    })?;
    Ok(lawa::source::local_path(
        ckpt,
        &config.hub,
        &Reporter::silent(),
    )?)
}

fn print_result(model: &LoadedModel, tokens: &Tokens, r: &EvalResult) {
    println!(
        "model        {}",
        lawa::display::escape(&model.dir.display().to_string())
    );
    println!(
        "data         {} (sha256 {})",
        tokens.source.display(),
        &r.data_hash[..16]
    );
    println!(
        "windows      {} x {} tokens, {} predicted",
        r.windows, r.ctx, r.predicted_tokens
    );
    println!("mean NLL     {:.6} nats", r.mean_nll);
    println!("perplexity   {:.4}", r.ppl);
    if let Some(b) = r.bits_per_byte {
        println!("bits/byte    {b:.5}");
    }
    println!("speed        {:.0} tokens/s", r.tokens_per_s);
}

fn print_comparison(other: &LoadedModel, c: &Comparison) {
    println!(
        "against      {}",
        lawa::display::escape(&other.dir.display().to_string())
    );
    println!(
        "  mean NLL   {:.6} nats (ppl {:.4})",
        c.other_mean_nll,
        c.other_mean_nll.exp()
    );
    println!("  KL(other‖model) {:.6} nats/token", c.mean_kl);
    println!("  top-1 agreement {:.4}", c.top1_agreement);
}
