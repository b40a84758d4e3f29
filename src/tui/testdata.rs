//! A small real trajectory for the explorer's tests: 12 checkpoints, a train loss logged every
//! 2 steps that falls like a power law with one loss spike, and stored eval results.

use lawa::results::{ResultRecord, RAW, TOOL_VERSION};
use lawa::source::{Checkpoint, Location, Metrics, Series, Trajectory};

use super::state::{EvalView, State, TaskView};

pub const STEPS: [u64; 12] = [
    100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200,
];

/// Train loss at `step`: a power law, a little deterministic wiggle, and a spike at 590..650.
pub fn loss(step: u64) -> f64 {
    let base = 2.0 + 6.0 / ((step as f64) / 10.0).sqrt();
    let wiggle = 0.02 * ((step as f64) * 0.37).sin();
    let spike = if (590..=650).contains(&step) {
        1.5
    } else {
        0.0
    };
    base + wiggle + spike
}

pub fn trajectory() -> Trajectory {
    let log_steps: Vec<u64> = (1..=600).map(|i| i * 2).collect();
    Trajectory {
        name: "tiny-run".into(),
        source: "/runs/tiny-run".into(),
        checkpoints: STEPS
            .iter()
            .map(|&s| Checkpoint {
                step: s,
                tokens: None,
                name: format!("step{s}"),
                location: Location::Local {
                    path: format!("/runs/tiny-run/step{s}").into(),
                },
            })
            .collect(),
        metrics: Metrics {
            loss: Series {
                values: log_steps.iter().map(|&s| loss(s)).collect(),
                steps: log_steps,
            },
            ..Default::default()
        },
        tokens_per_step: Some(4096),
        warnings: vec![],
        notes: vec!["spike made on purpose: lr x20 at steps 590-592".into()],
    }
}

pub const DATA_HASH: &str = "text:0123456789abcdef";

/// A stored result as the job runner writes it.
pub fn record(end: u64, scheme: &str, k: usize, nll: f64) -> ResultRecord {
    let i = STEPS
        .iter()
        .position(|&s| s == end)
        .expect("a checkpoint step");
    let steps: Vec<u64> = STEPS[(i + 1).saturating_sub(k)..=i].to_vec();
    let n = steps.len();
    ResultRecord {
        source: "/runs/tiny-run".into(),
        end_step: end,
        steps,
        scheme: lawa::results::parse_stored_scheme(scheme).unwrap(),
        k,
        spike_aware: false,
        weights: vec![1.0 / n as f64; n],
        data: "heldout.txt".into(),
        data_hash: DATA_HASH.into(),
        ctx: 64,
        max_tokens: None,
        dtype: lawa::results::EvalDType::F32,
        device: "cpu".into(),
        mean_nll: nll,
        ppl: nll.exp(),
        bits_per_byte: Some(nll / std::f64::consts::LN_2 / 4.0),
        predicted_tokens: 4032,
        task: None,
        tool_version: TOOL_VERSION.into(),
        unix_time: 1_700_000_000,
    }
}

/// Raw evals at every other checkpoint, and a uniform k=3 curve over the second half.
pub fn records() -> Vec<ResultRecord> {
    let mut v = Vec::new();
    for &s in STEPS.iter().step_by(2) {
        v.push(record(s, RAW, 1, loss(s) + 0.1));
    }
    for &s in &STEPS[6..] {
        v.push(record(s, "uniform", 3, loss(s) - 0.05));
    }
    v
}

pub fn eval_view() -> EvalView {
    EvalView {
        data: "heldout.txt".into(),
        data_hash: DATA_HASH.into(),
        ctx_asked: None,
        max_ctx: Some(64),
        learnt_ctx: None,
        max_tokens: None,
        data_tokens_max: Some(100_000),
        dtype: Some(lawa::results::EvalDType::F32),
        device: "cpu".into(),
        tasks: Vec::new(),
    }
}

pub fn state() -> State {
    State::new(trajectory(), records(), eval_view())
}

pub const TASK_HASH: &str = "task:fedcba9876543210";

/// A stored lambada_openai result (`acc` in 0..1) of the task file `TASK_HASH`.
pub fn task_record(end: u64, scheme: &str, k: usize, acc: f64) -> ResultRecord {
    ResultRecord {
        data: "cloze.jsonl".into(),
        data_hash: TASK_HASH.into(),
        mean_nll: f64::NAN,
        ppl: f64::NAN,
        bits_per_byte: None,
        predicted_tokens: 0,
        task: Some(lawa::tasks::TaskResult {
            task: lawa::tasks::TaskName::LambadaOpenai,
            n: 200,
            acc,
            acc_stderr: 0.03,
            acc_norm: None,
            acc_norm_stderr: None,
            perplexity: Some(900.0),
        }),
        ..record(end, scheme, k, 0.0)
    }
}

/// [`state`] with the cloze task in the session, and its results: raw at every other
/// checkpoint, uniform k=3 over the second half. Where perplexity says the average is better
/// (everywhere), the accuracy says so at 700 and 1100 only: a view that does not follow the
/// metric shows the wrong winner.
pub fn state_with_task() -> State {
    let mut records = records();
    for &s in STEPS.iter().step_by(2) {
        records.push(task_record(s, RAW, 1, 0.10 + s as f64 / 10_000.0));
    }
    for (&s, d) in STEPS[6..]
        .iter()
        .zip([0.05, -0.02, -0.03, 0.0, 0.04, -0.01])
    {
        records.push(task_record(s, "uniform", 3, 0.10 + s as f64 / 10_000.0 + d));
    }
    let mut view = eval_view();
    view.tasks = vec![TaskView {
        name: lawa::tasks::TaskName::LambadaOpenai,
        label: "cloze.jsonl".into(),
        hash: TASK_HASH.into(),
    }];
    State::new(trajectory(), records, view)
}
