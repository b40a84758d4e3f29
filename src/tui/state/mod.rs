//! Explorer state and its pure transition function `update(&mut State, Event) -> Vec<Effect>`.
//!
//! Keys, mouse, job events and ticks all go through [`update`]; what must happen outside (start
//! or cancel jobs, export, quit) comes back as [`Effect`]s for the event loop. Nothing here
//! touches the terminal or a thread, so every transition is a plain unit test.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;

use lawa::average::Scheme;
use lawa::chart::{self, ChartModel, ChartOptions, XAxis};
use lawa::jobs::{JobEvent, JobId, Target};
use lawa::progress::Progress;
use lawa::results::{EvalSettings, Metric, ResultRecord, Series};
use lawa::source::Trajectory;
use lawa::spikes::{SpikeParams, SpikeRegion};
use lawa::sweep::slurm::SweepProgress;

// The transitions, by concept (each an `impl State` block).
mod edit;
mod input;
mod jobs;
mod navigation;

/// Everything that can happen to the explorer.
#[derive(Clone, Debug)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Job(JobEvent),
    /// The export finished: the files written, or the error's one line.
    Exported(Result<Vec<String>, String>),
    /// Results another writer (a sweep in another terminal, Slurm array tasks) appended to
    /// the trajectory's store.
    Stored(Vec<ResultRecord>),
    /// Where the trajectory's Slurm sweeps stand.
    Cluster(Vec<SweepProgress>),
    /// Checkpoints whose weights cannot be read, with why (checked in the background at open).
    Unreadable(Vec<(u64, String)>),
    /// Steady redraw tick.
    Tick,
    Resize,
}

/// What the event loop must do after an update.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Submit(Target),
    Cancel(JobId),
    CancelAll,
    /// Export the current chart and results.
    Export,
    /// The eval settings changed: later jobs must use these.
    SetEval {
        ctx: Option<usize>,
        max_tokens: Option<u64>,
    },
    Quit,
}

/// Eval settings as shown and matched against stored results. Results are matched on the
/// resolved settings (tokens per window, max tokens, data hash, dtype), never on "auto".
#[derive(Clone, Debug, PartialEq)]
pub struct EvalView {
    /// The eval data's file name.
    pub data: String,
    pub data_hash: String,
    /// Tokens per window as asked; `None`: the model's default.
    pub ctx_asked: Option<usize>,
    /// The model's `max_position_embeddings`, when its config could be read at open.
    pub max_ctx: Option<usize>,
    /// The default context learnt from the first result, when the config was not readable.
    pub learnt_ctx: Option<usize>,
    pub max_tokens: Option<u64>,
    /// At most this many tokens in the eval data (a token file's count; a text's bytes, which
    /// its tokens never exceed), when known: a larger max-tokens would only look different.
    pub data_tokens_max: Option<u64>,
    /// The dtype the jobs evaluate in (f32 on the CPU, the checkpoints' own on a GPU);
    /// `None` on a GPU while no checkpoint is local: learnt from the first result.
    pub dtype: Option<lawa::results::EvalDType>,
    pub device: String,
    /// Zero-shot tasks evaluated beside the perplexity (`--task`, or the run's own).
    pub tasks: Vec<TaskView>,
}

/// A task of the session as results are matched on it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    pub name: lawa::tasks::TaskName,
    /// The task file's name.
    pub label: String,
    pub hash: String,
}

impl EvalView {
    /// Tokens per window the jobs use, resolved; `None` while the model's default is unknown.
    pub fn ctx(&self) -> Option<usize> {
        self.ctx_asked
            .or(self.max_ctx.map(|m| m.min(lawa::eval::DEFAULT_CTX_CAP)))
            .or(self.learnt_ctx)
    }

    /// The settings of `metric`'s results: a task is scored at the model's full context
    /// (`None` while that is unknown, or for a task not in the session).
    pub fn settings_for(&self, metric: Metric) -> Option<EvalSettings> {
        match metric {
            Metric::Perplexity => Some(EvalSettings {
                metric,
                data_hash: self.data_hash.clone(),
                ctx: self.ctx()?,
                max_tokens: self.max_tokens,
                dtype: self.dtype?,
            }),
            Metric::Task(name) => {
                let t = self.tasks.iter().find(|t| t.name == name)?;
                Some(EvalSettings {
                    metric,
                    data_hash: t.hash.clone(),
                    ctx: self.max_ctx?,
                    max_tokens: None,
                    dtype: self.dtype?,
                })
            }
        }
    }

    /// Every metric of the session: perplexity, then each task.
    pub fn metrics(&self) -> Vec<Metric> {
        std::iter::once(Metric::Perplexity)
            .chain(self.tasks.iter().map(|t| Metric::Task(t.name)))
            .collect()
    }

    /// The settings line: which set of results is shown, in full.
    pub fn describe(&self) -> String {
        let ctx = match (self.ctx(), self.ctx_asked) {
            (Some(c), Some(_)) => format!("ctx {c}"),
            (Some(c), None) => format!("ctx {c} (model default)"),
            (None, _) => "ctx model default (not known yet)".into(),
        };
        let max = self
            .max_tokens
            .map_or("all tokens".into(), |m| format!("first {m} tokens"));
        format!("{ctx} · {max} · {} · {}", self.dtype_label(), self.device)
    }

    fn dtype_label(&self) -> String {
        self.dtype
            .map_or("the checkpoints' dtype (not known yet)".into(), |d| {
                d.to_string()
            })
    }

    /// The settings line of `metric`'s results, in full: the eval data and [`Self::describe`]
    /// for perplexity; for a task, its name and file at the model's full context (where the
    /// harness truncates), every item scored.
    pub fn settings_line(&self, metric: Metric) -> String {
        let task = match metric {
            Metric::Perplexity => None,
            Metric::Task(name) => self.tasks.iter().find(|t| t.name == name),
        };
        match task {
            None => format!("{} · {}", self.data, self.describe()),
            Some(t) => {
                let ctx = self
                    .max_ctx
                    .map_or("ctx model default (not known yet)".into(), |c| {
                        format!("ctx {c} (the model's context)")
                    });
                format!(
                    "{} · {} · {ctx} · every item · {} · {}",
                    t.name,
                    t.label,
                    self.dtype_label(),
                    self.device
                )
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed(String),
    Cancelled,
}

impl JobStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub id: JobId,
    pub target: Target,
    pub status: JobStatus,
    pub progress: Option<Progress>,
    pub elapsed: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Checkpoints,
    Jobs,
    Spikes,
}

/// A value being typed in the status bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// k for uniform/linear, half-life for EMA, the weight list for custom.
    Param,
    Ctx,
    MaxTokens,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    pub field: Field,
    pub buffer: String,
}

/// Where the panels were drawn last frame (for the mouse).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Areas {
    /// Rows of the checkpoint list (without header and border).
    pub list_rows: Rect,
    /// The plotting area of the chart and the x range it showed.
    pub graph: Rect,
    pub graph_x: (f64, f64),
    /// Rows of the jobs and spikes panels.
    pub jobs_rows: Rect,
    pub spikes_rows: Rect,
    /// The jobs and spikes panels as one line each (compact screen): a click focuses (opens) it.
    pub jobs_line: Rect,
    pub spikes_line: Rect,
}

/// The explorer's state.
#[derive(Clone, Debug)]
pub struct State {
    pub traj: Arc<Trajectory>,
    /// Every stored result of this trajectory (all eval settings).
    pub results: Vec<ResultRecord>,
    pub eval: EvalView,
    /// Index of the selected checkpoint.
    pub cursor: usize,
    /// First checkpoint shown in the list.
    pub list_offset: usize,
    /// Window size (checkpoints averaged).
    pub k: usize,
    pub scheme: Scheme,
    /// Leave checkpoints inside detected spikes out of the window.
    pub spike_aware: bool,
    pub spike_params: SpikeParams,
    pub spikes: Vec<SpikeRegion>,
    /// Which spike the spikes panel has selected.
    pub spike_sel: usize,
    pub x_axis: XAxis,
    pub log_y: bool,
    /// The chart shows each averaged curve minus raw (`g`).
    pub gain: bool,
    /// The chart shows perplexities instead of losses (`y`).
    pub ppl: bool,
    /// What the chart, the list and the verdict show (`m`): perplexity or a task's accuracy.
    pub metric: Metric,
    /// The chart leaves the train loss out (`v`).
    pub hide_train: bool,
    /// Eval series left off the chart (`1`–`9`), by stored series (`raw`, `uniform k=5`): the
    /// legend still lists them, marked; they set neither the y range nor the export.
    pub hidden: HashSet<Series>,
    /// EMA factor for the train loss.
    pub smoothing: f64,
    /// The x range shown when zoomed in, in x-axis units.
    pub zoom: Option<(f64, f64)>,
    pub jobs: Vec<JobView>,
    /// The highlighted job, by id: rows move as jobs start and finish.
    pub job_sel: Option<JobId>,
    /// How the jobs since the queue was last empty ended: the status line says so once
    /// they are all finished.
    pub batch: Batch,
    pub focus: Focus,
    pub help: bool,
    pub edit: Option<Edit>,
    /// One line for the status bar (last action, error, warning).
    pub message: Option<String>,
    /// What the status line said at open (see [`State::greet`]), until a key says more.
    greeting: Option<String>,
    pub areas: Areas,
    /// Checkpoint index where a mouse drag on the chart started.
    pub drag_from: Option<usize>,
    pub quit: bool,
    /// `q` was pressed once with jobs queued or running: a second `q` quits.
    pub quit_asked: bool,
    /// The trajectory's Slurm sweeps, as the store and the queue last said.
    pub cluster: Vec<SweepProgress>,
    /// Checkpoints that cannot be read, by step: marked in the list before any job fails.
    pub unreadable: HashMap<u64, String>,
}

/// Counts of the jobs of one busy spell (from the first queued to the last finished).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub done: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub last_error: Option<String>,
    /// The curve `s` swept in this spell, if it did: its end says the verdict.
    pub sweep: Option<Series>,
    /// Time the done jobs took, for the ETA.
    pub busy: Duration,
}

/// The end of the status line that says results arrived from another writer.
const FROM_STORE: &str = " from another writer of the store";

/// How many finished jobs the jobs panel keeps.
const KEEP_FINISHED: usize = 200;
/// Checkpoints moved by PageUp/PageDown when the list height is not known yet.
const DEFAULT_PAGE: usize = 10;

impl State {
    pub fn new(traj: Trajectory, results: Vec<ResultRecord>, eval: EvalView) -> Self {
        let n = traj.checkpoints.len();
        let mut s = State {
            traj: Arc::new(traj),
            results,
            eval,
            cursor: n.saturating_sub(1),
            list_offset: 0,
            k: 5.min(n.max(1)),
            scheme: Scheme::Uniform,
            spike_aware: false,
            spike_params: SpikeParams::default(),
            spikes: Vec::new(),
            spike_sel: 0,
            x_axis: XAxis::Step,
            log_y: false,
            gain: false,
            ppl: false,
            metric: Metric::Perplexity,
            hide_train: false,
            hidden: HashSet::new(),
            smoothing: 0.6,
            zoom: None,
            jobs: Vec::new(),
            job_sel: None,
            batch: Batch::default(),
            focus: Focus::Checkpoints,
            help: false,
            edit: None,
            message: None,
            greeting: None,
            areas: Areas::default(),
            drag_from: None,
            quit: false,
            quit_asked: false,
            cluster: Vec::new(),
            unreadable: HashMap::new(),
        };
        s.redetect_spikes();
        s
    }

    pub fn steps(&self) -> Vec<u64> {
        self.traj.steps()
    }

    pub fn cursor_step(&self) -> Option<u64> {
        self.traj.checkpoints.get(self.cursor).map(|c| c.step)
    }

    /// Results of the shown metric computed with the current eval settings.
    pub fn visible_results(&self) -> Vec<&ResultRecord> {
        self.results_of(self.metric)
    }

    /// The status line's first message (the run's size, or a warning about it): later news
    /// that is not an answer to a key, such as unreadable checkpoints, may replace it.
    pub fn greet(&mut self, message: String) {
        self.greeting = Some(message.clone());
        self.message = Some(message);
    }

    /// Results of `metric` computed with the current eval settings.
    pub fn results_of(&self, metric: Metric) -> Vec<&ResultRecord> {
        let Some(settings) = self.eval.settings_for(metric) else {
            return Vec::new();
        };
        self.results
            .iter()
            .filter(|r| settings.matches(r))
            .collect()
    }

    /// The effective window size: a custom weight list fixes it.
    pub fn window_k(&self) -> usize {
        match &self.scheme {
            Scheme::Custom(w) => w.len().max(1),
            _ => self.k.max(1),
        }
    }

    /// Whether a step lies inside a detected spike region.
    pub fn in_spike(&self, step: u64) -> bool {
        self.spikes
            .iter()
            .any(|r| r.start_step <= step && step <= r.end_step)
    }

    /// The checkpoints of the window ending at the cursor: the last k at or before it, skipping
    /// those inside spikes when the window is spike-aware. Fewer than k near the start.
    pub fn window_steps(&self) -> Vec<u64> {
        self.window_steps_at(self.cursor)
    }

    pub fn window_steps_at(&self, end: usize) -> Vec<u64> {
        lawa::sweep::window_steps(
            &self.steps(),
            end,
            self.window_k(),
            self.spike_aware,
            &self.spikes,
        )
    }

    /// Weights of the window's checkpoints under the current scheme.
    pub fn window_weights(&self, steps: &[u64]) -> Result<Vec<f64>, String> {
        if steps.is_empty() {
            return Err("no checkpoints in the window".into());
        }
        lawa::sweep::window_weights(&self.scheme, steps).map_err(|e| e.to_string())
    }

    /// The curve the current setting produces.
    pub fn series(&self) -> Series {
        Series::average(self.scheme.clone(), self.window_k(), self.spike_aware)
    }

    /// The job target for the window ending at checkpoint `end`, or why there is none.
    pub fn window_target(&self, end: usize) -> Result<Target, String> {
        let steps = self.window_steps_at(end);
        let weights = self.window_weights(&steps)?;
        let end_step = self.traj.checkpoints[end].step;
        Ok(Target::Window {
            end_step,
            steps,
            weights,
            scheme: self.scheme.clone(),
            k: self.window_k(),
            spike_aware: self.spike_aware,
        })
    }

    /// `series -> end_step -> record` for the current eval settings (latest wins).
    pub fn result_index(&self) -> HashMap<(Series, u64), &ResultRecord> {
        let mut m = HashMap::new();
        for r in self.visible_results() {
            m.insert((r.series(), r.end_step), r);
        }
        m
    }

    /// Whether every metric of the session (perplexity, each task) has a result of `series`
    /// at `end_step`: a job computes all that are missing, from one model.
    fn has_result(&self, series: &Series, end_step: u64) -> bool {
        self.eval.metrics().into_iter().all(|m| {
            self.results_of(m)
                .iter()
                .any(|r| r.end_step == end_step && r.series() == *series)
        })
    }

    fn has_active_job(&self, series: &Series, end_step: u64) -> bool {
        self.jobs.iter().any(|j| {
            j.status.is_active() && j.target.end_step() == end_step && j.target.series() == *series
        })
    }

    /// Spike regions: on the train loss when the run logged one, else on the raw eval curve.
    pub fn redetect_spikes(&mut self) {
        // From the loss, whatever metric is shown.
        let records = self.results_of(Metric::Perplexity);
        self.spikes = chart::detect_spikes(&self.traj, &records, &self.spike_params);
        self.spike_sel = self.spike_sel.min(self.spikes.len().saturating_sub(1));
    }

    /// The chart of the current state as drawn and exported: without the hidden series.
    pub fn chart(&self) -> ChartModel {
        self.shown(self.chart_all())
    }

    /// `all` (a [`State::chart_all`]) without the hidden series.
    pub fn shown(&self, mut all: ChartModel) -> ChartModel {
        all.curves.retain(|c| !self.is_hidden(c));
        all
    }

    /// Whether a curve of [`State::chart_all`] is hidden (`v`: the train loss; `1`–`9`: eval).
    pub fn is_hidden(&self, c: &chart::Curve) -> bool {
        match &c.series {
            Some(s) => self.hidden.contains(s),
            None => self.hide_train,
        }
    }

    /// The chart with every series, hidden ones too (the legend lists them all; colours are
    /// given here, so a series keeps its colour when another is hidden).
    pub fn chart_all(&self) -> ChartModel {
        let window = self.window_steps();
        let records = self.visible_results();
        chart::build(
            &self.traj,
            &records,
            &ChartOptions {
                x_axis: self.x_axis,
                log_y: self.log_y,
                smoothing: self.smoothing,
                spikes: self
                    .spikes
                    .iter()
                    .map(|r| (r.start_step, r.end_step))
                    .collect(),
                cursor_step: self.cursor_step(),
                window_steps: window.first().zip(window.last()).map(|(a, b)| (*a, *b)),
                gain: self.gain,
                ppl: self.ppl,
                // Hidden in `shown`: the legend still lists it.
                hide_train: false,
                metric: self.metric,
            },
        )
    }

    /// The x range the chart shows: the zoom, else everything.
    pub fn x_view(&self, model: &ChartModel) -> Option<(f64, f64)> {
        let full = model.x_range()?;
        Some(self.zoom.unwrap_or(full))
    }

    fn x_of_index(&self, i: usize) -> Option<f64> {
        let c = self.traj.checkpoints.get(i)?;
        chart::x_of(&self.traj, self.x_axis, c.step)
    }

    /// The checkpoint whose x is nearest to `x`.
    pub fn nearest_checkpoint(&self, x: f64) -> Option<usize> {
        (0..self.traj.checkpoints.len())
            .filter_map(|i| Some((i, (self.x_of_index(i)? - x).abs())))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|p| p.0)
    }

    /// The first list row shown in a list `height` rows high: the stored offset, moved just
    /// enough to show the cursor and no empty rows at the end.
    pub fn list_offset_for(&self, height: usize) -> usize {
        let height = height.max(1);
        let n = self.traj.checkpoints.len();
        let mut off = self.list_offset.min(n.saturating_sub(height));
        if self.cursor < off {
            off = self.cursor;
        } else if self.cursor >= off + height {
            off = self.cursor + 1 - height;
        }
        off
    }
}

/// A linear ramp as a starting point for a custom weight list.
fn default_custom(k: usize) -> Vec<f64> {
    (1..=k).map(|i| i as f64).collect()
}

/// Applies one event; returns what the event loop must do.
pub fn update(state: &mut State, event: Event) -> Vec<Effect> {
    match event {
        Event::Key(k) => state.on_key(k),
        Event::Mouse(m) => state.on_mouse(m),
        Event::Job(j) => {
            state.on_job(j);
            Vec::new()
        }
        Event::Exported(r) => {
            state.message = Some(match r {
                Ok(files) => format!("exported {}", files.join(", ")),
                Err(e) => format!("export failed: {e}"),
            });
            Vec::new()
        }
        Event::Stored(records) => {
            state.on_stored(records);
            Vec::new()
        }
        Event::Cluster(sweeps) => {
            state.cluster = sweeps;
            Vec::new()
        }
        Event::Unreadable(bad) => {
            if let Some((step, why)) = bad.first() {
                let more = match bad.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let warning = format!(
                    "{} checkpoint(s) cannot be read; the windows holding them will fail: step {step}: {why}{more}",
                    bad.len()
                );
                // The check ends a moment after open: it replaces the greeting, but what a key
                // said meanwhile stays in view.
                state.message = Some(match state.message.take() {
                    Some(m) if state.greeting.as_ref() != Some(&m) => format!("{m} · {warning}"),
                    _ => warning,
                });
            }
            state.unreadable = bad.into_iter().collect();
            Vec::new()
        }
        Event::Tick | Event::Resize => {
            state.follow_list();
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
