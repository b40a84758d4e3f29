//! A small real trajectory for the explorer's tests: 12 checkpoints, a train loss logged every
//! 2 steps that falls like a power law with one loss spike, and stored eval results.

use lawa::results::{ResultRecord, RAW, TOOL_VERSION};
use lawa::source::{Checkpoint, Location, Metrics, Series, Trajectory};

use super::state::{EvalView, State};

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
        scheme: scheme.into(),
        k,
        spike_aware: false,
        weights: vec![1.0 / n as f64; n],
        data: "heldout.txt".into(),
        data_hash: DATA_HASH.into(),
        ctx: 64,
        max_tokens: None,
        dtype: "f32".into(),
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
        dtype: "f32".into(),
        device: "cpu".into(),
        tasks: Vec::new(),
    }
}

pub fn state() -> State {
    State::new(trajectory(), records(), eval_view())
}
