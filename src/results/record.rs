//! A stored result: which model (the series and its window), which metric and eval settings,
//! and the numbers. One `ResultRecord` is one JSON line of a store.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::series::Series;
use crate::average::Scheme;
pub use crate::eval::EvalDType;
use crate::tasks::{TaskName, TaskResult};

/// Version of lawa that wrote a record.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One evaluation: a raw checkpoint (`scheme` `raw`) or an average of a window of checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The trajectory's source string.
    pub source: String,
    /// The checkpoint the window ends at (the x position of the result).
    pub end_step: u64,
    /// The checkpoints that were averaged (one for a raw checkpoint).
    pub steps: Vec<u64>,
    /// `None`: a raw checkpoint. Stored as `raw`, or the scheme as it prints (`uniform`,
    /// `ema:HALF_LIFE`, `linear`, `w1,w2,...`); a line whose scheme does not parse is unreadable.
    #[serde(with = "super::series::scheme_field")]
    pub scheme: Option<Scheme>,
    /// The window size asked for (the spike-aware window may skip checkpoints but keeps k).
    pub k: usize,
    /// Checkpoints inside detected loss spikes were left out of the window.
    pub spike_aware: bool,
    /// Normalised weight of each step in `steps`.
    pub weights: Vec<f64>,
    /// Eval data: its file name (for people) and content hash (for matching).
    pub data: String,
    pub data_hash: String,
    pub ctx: usize,
    pub max_tokens: Option<u64>,
    /// The dtype the model ran in.
    pub dtype: EvalDType,
    pub device: String,
    /// Perplexity results: the mean NLL and perplexity of `data`. A task result has none
    /// (NaN here, absent from the file): its scores are in `task`.
    #[serde(default = "nan", skip_serializing_if = "is_nan")]
    pub mean_nll: f64,
    #[serde(default = "nan", skip_serializing_if = "is_nan")]
    pub ppl: f64,
    pub bits_per_byte: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub predicted_tokens: u64,
    /// A zero-shot task's scores (`data` and `data_hash` then name the task file); `None`:
    /// a perplexity result (every record written before tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskResult>,
    pub tool_version: String,
    /// Seconds since the Unix epoch when the result was stored.
    pub unix_time: u64,
}

fn nan() -> f64 {
    f64::NAN
}

fn is_nan(x: &f64) -> bool {
    x.is_nan()
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// What a result measures: the eval data's loss (and perplexity), or a zero-shot task's
/// accuracy. Results of two metrics are never compared or drawn on one axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    #[default]
    Perplexity,
    Task(TaskName),
}

impl Metric {
    /// Accuracy is better higher; loss and perplexity lower.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Task(_))
    }

    /// Whether `avg` beats `raw` (values as [`ResultRecord::value`] gives them); a tie is
    /// not a win.
    pub fn better(self, avg: f64, raw: f64) -> bool {
        if self.higher_is_better() {
            avg > raw
        } else {
            avg < raw
        }
    }

    /// `avg` against `raw` as people read it: the perplexity change in % for losses,
    /// accuracy points (percentage points) for tasks.
    pub fn change(self, avg: f64, raw: f64) -> f64 {
        match self {
            Metric::Perplexity => (avg - raw).exp_m1() * 100.0,
            Metric::Task(_) => (avg - raw) * 100.0,
        }
    }

    /// Whether a [`Metric::change`] is an improvement.
    pub fn improves(self, change: f64) -> bool {
        if self.higher_is_better() {
            change > 0.0
        } else {
            change < 0.0
        }
    }

    /// The unit of [`Metric::change`]: `%` (of perplexity) or `pp` (accuracy points).
    pub fn change_unit(self) -> &'static str {
        match self {
            Metric::Perplexity => "%",
            Metric::Task(_) => "pp",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Perplexity => f.write_str("perplexity"),
            Metric::Task(t) => write!(f, "{t} accuracy"),
        }
    }
}

impl ResultRecord {
    pub fn is_raw(&self) -> bool {
        self.scheme.is_none()
    }
    /// What this result measures.
    pub fn metric(&self) -> Metric {
        self.task
            .as_ref()
            .map_or(Metric::Perplexity, |t| Metric::Task(t.task))
    }
    /// The number the charts, the list and the verdict compare: the mean NLL (nats) of a
    /// perplexity result, the accuracy (0..1) of a task result.
    pub fn value(&self) -> f64 {
        match &self.task {
            None => self.mean_nll,
            Some(t) => t.acc,
        }
    }
    /// The `scheme` as the store writes it: `raw`, or the scheme.
    pub fn scheme_label(&self) -> String {
        self.scheme
            .as_ref()
            .map_or_else(|| super::RAW.to_string(), |s| s.to_string())
    }

    /// The curve this result belongs to.
    pub fn series(&self) -> Series {
        match &self.scheme {
            None => Series::Raw,
            Some(scheme) => Series::average(scheme.clone(), self.k, self.spike_aware),
        }
    }
}

/// Which eval data and settings a record must match to be shown next to others.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EvalKey {
    pub metric: Metric,
    pub data_hash: String,
    /// `None`: the model's default context (whatever the record says).
    pub ctx: Option<usize>,
    pub max_tokens: Option<u64>,
}

impl EvalKey {
    pub fn matches(&self, r: &ResultRecord) -> bool {
        r.metric() == self.metric
            && r.data_hash == self.data_hash
            && self.ctx.is_none_or(|c| c == r.ctx)
            && self.max_tokens == r.max_tokens
    }
}

/// The eval settings a result was computed with, all resolved (no "auto"): two results are
/// comparable only when every field is equal. The explorer shows exactly one such set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvalSettings {
    /// Perplexity of the eval data, or a task (older sweep plans: perplexity).
    #[serde(default)]
    pub metric: Metric,
    /// The eval data's or the task file's content hash.
    pub data_hash: String,
    /// Tokens per window (a task: the model's context, where the harness truncates).
    pub ctx: usize,
    pub max_tokens: Option<u64>,
    /// The dtype the model runs in: f32 on the CPU, the checkpoint's own on a GPU
    /// ([`crate::eval::default_dtype`]).
    pub dtype: EvalDType,
}

impl EvalSettings {
    pub fn of(r: &ResultRecord) -> Self {
        EvalSettings {
            metric: r.metric(),
            data_hash: r.data_hash.clone(),
            ctx: r.ctx,
            max_tokens: r.max_tokens,
            dtype: r.dtype,
        }
    }

    pub fn matches(&self, r: &ResultRecord) -> bool {
        r.metric() == self.metric
            && r.data_hash == self.data_hash
            && r.ctx == self.ctx
            && r.max_tokens == self.max_tokens
            && r.dtype == self.dtype
    }
}

/// Seconds since the epoch, for record timestamps.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::RAW;

    pub(crate) fn record(end: u64, scheme: &str, nll: f64) -> ResultRecord {
        ResultRecord {
            source: "run".into(),
            end_step: end,
            steps: vec![end],
            scheme: crate::results::parse_stored_scheme(scheme).unwrap(),
            k: 1,
            spike_aware: false,
            weights: vec![1.0],
            data: "heldout.txt".into(),
            data_hash: "text:abc".into(),
            ctx: 64,
            max_tokens: None,
            dtype: crate::results::EvalDType::F32,
            device: "cpu".into(),
            mean_nll: nll,
            ppl: nll.exp(),
            bits_per_byte: Some(1.0),
            predicted_tokens: 100,
            task: None,
            tool_version: TOOL_VERSION.into(),
            unix_time: 1,
        }
    }

    pub(crate) fn task_record(end: u64, scheme: &str, acc: f64, hash: &str) -> ResultRecord {
        ResultRecord {
            data: "cloze.jsonl".into(),
            data_hash: hash.into(),
            mean_nll: f64::NAN,
            ppl: f64::NAN,
            bits_per_byte: None,
            predicted_tokens: 0,
            task: Some(TaskResult {
                task: TaskName::LambadaOpenai,
                n: 10,
                acc,
                acc_stderr: 0.1,
                acc_norm: None,
                acc_norm_stderr: None,
                perplexity: Some(100.0),
            }),
            ..record(end, scheme, 0.0)
        }
    }

    #[test]
    fn eval_key_matches_data_ctx_and_max_tokens() {
        let r = record(10, RAW, 2.0);
        let mut k = EvalKey {
            metric: Metric::Perplexity,
            data_hash: "text:abc".into(),
            ctx: None,
            max_tokens: None,
        };
        assert!(k.matches(&r));
        k.ctx = Some(64);
        assert!(k.matches(&r));
        k.ctx = Some(128);
        assert!(!k.matches(&r));
        k.ctx = None;
        k.max_tokens = Some(10);
        assert!(!k.matches(&r));
        k.max_tokens = None;
        k.data_hash = "text:other".into();
        assert!(!k.matches(&r));
    }

    #[test]
    fn eval_settings_match_every_resolved_field() {
        let r = record(10, RAW, 2.0);
        let s = EvalSettings::of(&r);
        assert!(s.matches(&r));
        for change in [
            |r: &mut ResultRecord| r.ctx = 32,
            |r: &mut ResultRecord| r.max_tokens = Some(10),
            |r: &mut ResultRecord| r.data_hash = "text:other".into(),
            |r: &mut ResultRecord| r.dtype = EvalDType::F16,
            |r: &mut ResultRecord| r.dtype = EvalDType::Unrecorded,
        ] {
            let mut other = r.clone();
            change(&mut other);
            assert!(!s.matches(&other), "{other:?}");
        }
    }

    #[test]
    fn a_line_in_the_stored_format_reads_and_writes_back_byte_for_byte() {
        // As lawa writes results.jsonl today (and wrote before task results): a window
        // average on a GPU; field order, names and the absent task are the format.
        let line = r#"{"source":"/runs/r","end_step":300,"steps":[200,300],"scheme":"ema:200","k":2,"spike_aware":true,"weights":[0.4142135623730951,0.5857864376269049],"data":"heldout.txt","data_hash":"text:0123","ctx":64,"max_tokens":null,"dtype":"checkpoint","device":"cuda:0","mean_nll":2.5,"ppl":12.25,"bits_per_byte":1.25,"predicted_tokens":1000,"tool_version":"0.1.0","unix_time":1700000000}"#;
        let r: ResultRecord = serde_json::from_str(line).unwrap();
        assert_eq!((r.end_step, r.k, r.spike_aware), (300, 2, true));
        assert_eq!(r.series().to_string(), "ema:200 k=2 spike-aware");
        assert_eq!(
            r.series(),
            Series::average(Scheme::Ema { half_life: 200.0 }, 2, true)
        );
        assert_eq!(r.metric(), Metric::Perplexity);
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
    }

    #[test]
    fn the_direction_of_better_follows_the_metric() {
        let ppl = Metric::Perplexity;
        let acc = Metric::Task(TaskName::Piqa);
        // Lower NLL is better; higher accuracy is; a tie is neither.
        assert!(ppl.better(2.0, 2.5) && !ppl.better(2.5, 2.0) && !ppl.better(2.0, 2.0));
        assert!(acc.better(0.6, 0.5) && !acc.better(0.5, 0.6) && !acc.better(0.5, 0.5));
        // Changes: % of perplexity, accuracy points.
        assert!((ppl.change(2.0, 2.0f64.ln() + 2.0) - (0.5f64 - 1.0) * 100.0).abs() < 1e-9);
        assert!((acc.change(0.62, 0.5) - 12.0).abs() < 1e-9);
        assert!(ppl.improves(-3.0) && !ppl.improves(3.0));
        assert!(acc.improves(3.0) && !acc.improves(-3.0) && !acc.improves(0.0));
        assert_eq!((ppl.change_unit(), acc.change_unit()), ("%", "pp"));
        assert_eq!(acc.to_string(), "piqa accuracy");
    }

    #[test]
    fn a_task_record_has_no_perplexity_in_the_file_and_reads_back_typed() {
        let r = task_record(10, RAW, 0.25, "task:aa");
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            !line.contains("mean_nll") && !line.contains("\"ppl\""),
            "{line}"
        );
        assert!(line.contains("\"task\":\"lambada_openai\""), "{line}");
        let back: ResultRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.metric(), Metric::Task(TaskName::LambadaOpenai));
        assert_eq!(back.value(), 0.25);
        assert!(back.mean_nll.is_nan());
        // A perplexity record (every record before tasks) is a perplexity result.
        let p = record(10, RAW, 2.0);
        let back: ResultRecord = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!((back.metric(), back.value()), (Metric::Perplexity, 2.0));
    }

    #[test]
    fn task_results_are_keyed_by_task_and_file_hash_and_never_mixed_with_perplexity() {
        let t = task_record(10, RAW, 0.25, "task:aa");
        let s = EvalSettings::of(&t);
        assert_eq!(s.metric, Metric::Task(TaskName::LambadaOpenai));
        assert!(s.matches(&t));
        // Another file's results, another task's, a perplexity result of the same hash.
        let other_file = task_record(10, RAW, 0.25, "task:bb");
        assert!(!s.matches(&other_file));
        let mut other_task = t.clone();
        other_task.task.as_mut().unwrap().task = TaskName::Piqa;
        assert!(!s.matches(&other_task));
        let mut ppl = record(10, RAW, 2.0);
        ppl.data_hash = "task:aa".into();
        ppl.ctx = t.ctx;
        assert!(!s.matches(&ppl));
        assert!(!EvalSettings::of(&ppl).matches(&t));
    }
}
