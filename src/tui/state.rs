//! Explorer state and its pure transition function `update(&mut State, Event) -> Vec<Effect>`.
//!
//! Keys, mouse, job events and ticks all go through [`update`]; what must happen outside (start
//! or cancel jobs, export, quit) comes back as [`Effect`]s for the event loop. Nothing here
//! touches the terminal or a thread, so every transition is a plain unit test.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;

use lawa::average::Scheme;
use lawa::export::chart::{self, ChartModel, ChartOptions, XAxis};
use lawa::jobs::{JobEvent, JobId, Target};
use lawa::progress::Progress;
use lawa::results::{series_label, EvalSettings, ResultRecord, RAW};
use lawa::source::Trajectory;
use lawa::spikes::{SpikeParams, SpikeRegion};
use lawa::sweep::slurm::SweepProgress;

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
    /// The dtype results name (see `jobs::engine::record_dtype`).
    pub dtype: String,
    pub device: String,
}

impl EvalView {
    /// Tokens per window the jobs use, resolved; `None` while the model's default is unknown.
    pub fn ctx(&self) -> Option<usize> {
        self.ctx_asked
            .or(self.max_ctx.map(|m| m.min(lawa::eval::DEFAULT_CTX_CAP)))
            .or(self.learnt_ctx)
    }

    pub fn settings(&self) -> Option<EvalSettings> {
        Some(EvalSettings {
            data_hash: self.data_hash.clone(),
            ctx: self.ctx()?,
            max_tokens: self.max_tokens,
            dtype: self.dtype.clone(),
        })
    }

    pub fn matches(&self, r: &ResultRecord) -> bool {
        self.settings().is_some_and(|s| s.matches(r))
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
        format!("{ctx} · {max} · {} · {}", self.dtype, self.device)
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
    /// The chart leaves the train loss out (`v`).
    pub hide_train: bool,
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
    pub sweep: Option<String>,
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
            hide_train: false,
            smoothing: 0.6,
            zoom: None,
            jobs: Vec::new(),
            job_sel: None,
            batch: Batch::default(),
            focus: Focus::Checkpoints,
            help: false,
            edit: None,
            message: None,
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

    /// Results computed with the current eval settings.
    pub fn visible_results(&self) -> Vec<&ResultRecord> {
        self.results
            .iter()
            .filter(|r| self.eval.matches(r))
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

    /// The name of the curve the current setting produces.
    pub fn series(&self) -> String {
        series_label(&self.scheme.to_string(), self.window_k(), self.spike_aware)
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
            scheme: self.scheme.to_string(),
            k: self.window_k(),
            spike_aware: self.spike_aware,
        })
    }

    /// `series -> end_step -> record` for the current eval settings (latest wins).
    pub fn result_index(&self) -> HashMap<(String, u64), &ResultRecord> {
        let mut m = HashMap::new();
        for r in self.visible_results() {
            m.insert((r.series(), r.end_step), r);
        }
        m
    }

    fn has_result(&self, series: &str, end_step: u64) -> bool {
        self.visible_results()
            .iter()
            .any(|r| r.end_step == end_step && r.series() == series)
    }

    fn has_active_job(&self, series: &str, end_step: u64) -> bool {
        self.jobs.iter().any(|j| {
            j.status.is_active() && j.target.end_step() == end_step && j.target.series() == series
        })
    }

    /// Spike regions: on the train loss when the run logged one, else on the raw eval curve.
    pub fn redetect_spikes(&mut self) {
        let records = self.visible_results();
        self.spikes = chart::detect_spikes(&self.traj, &records, &self.spike_params);
        self.spike_sel = self.spike_sel.min(self.spikes.len().saturating_sub(1));
    }

    /// The chart of the current state (shared with the export).
    pub fn chart(&self) -> ChartModel {
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
                hide_train: self.hide_train,
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

    /// Keeps the cursor inside the list's visible rows.
    fn follow_list(&mut self) {
        self.list_offset = self.list_offset_for(self.areas.list_rows.height as usize);
    }

    /// Keeps the cursor inside the list's visible rows and inside a zoomed chart.
    fn follow_cursor(&mut self) {
        self.follow_list();
        if let (Some((a, b)), Some(x)) = (self.zoom, self.x_of_index(self.cursor)) {
            let w = b - a;
            if x < a {
                self.zoom = Some((x - w * 0.1, x + w * 0.9));
            } else if x > b {
                self.zoom = Some((x - w * 0.9, x + w * 0.1));
            }
        }
    }

    fn set_cursor(&mut self, i: usize) {
        let n = self.traj.checkpoints.len();
        if n == 0 {
            return;
        }
        self.cursor = i.min(n - 1);
        self.follow_cursor();
    }

    fn page(&self) -> usize {
        match self.areas.list_rows.height as usize {
            0 => DEFAULT_PAGE,
            h => h.saturating_sub(1).max(1),
        }
    }

    fn full_x(&self) -> Option<(f64, f64)> {
        self.chart().x_range()
    }

    /// Zooms by `factor` (< 1 in, > 1 out) keeping `center` in place.
    fn zoom_by(&mut self, factor: f64, center: Option<f64>) {
        let Some((f0, f1)) = self.full_x() else {
            return;
        };
        let (a, b) = self.zoom.unwrap_or((f0, f1));
        let c = center
            .or_else(|| self.x_of_index(self.cursor))
            .unwrap_or((a + b) / 2.0);
        let w = ((b - a) * factor).max((f1 - f0) * 1e-4);
        if w >= f1 - f0 {
            self.zoom = None;
            return;
        }
        // Keep c at the same relative position in the view.
        let rel = if b > a {
            ((c - a) / (b - a)).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let mut lo = c - rel * w;
        lo = lo.clamp(f0, f1 - w);
        self.zoom = Some((lo, lo + w));
    }

    fn pan(&mut self, frac: f64) {
        let (Some((a, b)), Some((f0, f1))) = (self.zoom, self.full_x()) else {
            return;
        };
        let w = b - a;
        let lo = (a + frac * w).clamp(f0, f1 - w);
        self.zoom = Some((lo, lo + w));
    }

    fn cycle_scheme(&mut self) {
        self.scheme = match &self.scheme {
            Scheme::Uniform => Scheme::Ema {
                half_life: self.default_half_life(),
            },
            Scheme::Ema { .. } => Scheme::Linear,
            Scheme::Linear => Scheme::Custom(default_custom(self.k.max(1))),
            Scheme::Custom(w) => {
                self.k = w.len().max(1);
                Scheme::Uniform
            }
        };
        self.message = Some(format!("scheme: {}", self.scheme));
    }

    /// A half-life of about half the window's span in steps.
    fn default_half_life(&self) -> f64 {
        let steps = self.window_steps();
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) if b > a => ((b - a) as f64 / 2.0).max(1.0),
            _ => 1.0,
        }
    }

    fn resize_window(&mut self, delta: isize) {
        let n = self.traj.checkpoints.len().max(1);
        match &mut self.scheme {
            Scheme::Custom(w) => {
                if delta > 0 && w.len() < n {
                    w.insert(0, w.first().copied().unwrap_or(1.0));
                } else if delta < 0 && w.len() > 1 {
                    w.remove(0);
                }
                self.k = w.len();
            }
            _ => {
                self.k = (self.k as isize + delta).clamp(1, n as isize) as usize;
            }
        }
        self.message = Some(format!("window: k = {}", self.window_k()));
    }

    fn jump_spike(&mut self, forward: bool) {
        if self.spikes.is_empty() {
            self.message = Some("no spikes detected".into());
            return;
        }
        let here = self.cursor_step().unwrap_or(0);
        let idx = if forward {
            self.spikes
                .iter()
                .position(|r| r.peak_step > here)
                .unwrap_or(0)
        } else {
            self.spikes
                .iter()
                .rposition(|r| r.peak_step < here)
                .unwrap_or(self.spikes.len() - 1)
        };
        self.goto_spike(idx);
    }

    fn goto_spike(&mut self, idx: usize) {
        let Some(r) = self.spikes.get(idx).cloned() else {
            return;
        };
        self.spike_sel = idx;
        // The first checkpoint at or after the peak: the one the spike damaged.
        let steps = self.steps();
        let i = steps
            .iter()
            .position(|&s| s >= r.peak_step)
            .unwrap_or(steps.len().saturating_sub(1));
        self.set_cursor(i);
        self.message = Some(format!(
            "spike {}/{}: steps {}..{}, peak {} (+{:.3})",
            idx + 1,
            self.spikes.len(),
            r.start_step,
            r.end_step,
            r.peak_step,
            r.height
        ));
    }

    /// Jobs for the window at checkpoint `i` (average+eval, and the raw end checkpoint) that
    /// are neither stored nor already queued.
    fn requests_at(&self, i: usize, out: &mut Vec<Target>) -> Result<(), String> {
        let end_step = self.traj.checkpoints[i].step;
        if !self.has_result(RAW, end_step) && !self.has_active_job(RAW, end_step) {
            out.push(Target::Checkpoint { step: end_step });
        }
        let target = self.window_target(i)?;
        // A window of one checkpoint with all the weight is the raw checkpoint itself.
        if let Target::Window { steps, .. } = &target {
            if steps.len() == 1 && steps[0] == end_step {
                return Ok(());
            }
        }
        let series = target.series();
        if !self.has_result(&series, end_step) && !self.has_active_job(&series, end_step) {
            out.push(target);
        }
        Ok(())
    }

    fn request_current(&mut self) -> Vec<Effect> {
        if self.traj.checkpoints.is_empty() {
            return Vec::new();
        }
        let mut targets = Vec::new();
        if let Err(e) = self.requests_at(self.cursor, &mut targets) {
            self.message = Some(e);
            return Vec::new();
        }
        self.message = Some(if targets.is_empty() {
            "already computed (or queued) for this window".into()
        } else {
            format!("queued {} job(s)", targets.len())
        });
        targets.into_iter().map(Effect::Submit).collect()
    }

    fn sweep(&mut self) -> Vec<Effect> {
        let k = self.window_k();
        let mut targets = Vec::new();
        for i in 0..self.traj.checkpoints.len() {
            if self.window_steps_at(i).len() < k {
                continue;
            }
            if let Err(e) = self.requests_at(i, &mut targets) {
                self.message = Some(e);
                return Vec::new();
            }
        }
        self.message = Some(format!(
            "sweep {}: queued {} job(s)",
            self.series(),
            targets.len()
        ));
        if !targets.is_empty() {
            self.batch.sweep = Some(self.series());
        }
        targets.into_iter().map(Effect::Submit).collect()
    }

    /// Jobs in display order: running, queued, then finished (newest first).
    pub fn jobs_in_order(&self) -> Vec<&JobView> {
        let rank = |j: &JobView| match j.status {
            JobStatus::Running => 0,
            JobStatus::Queued => 1,
            _ => 2,
        };
        let mut v: Vec<&JobView> = self.jobs.iter().collect();
        v.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| {
                if rank(a) == 2 {
                    b.id.cmp(&a.id)
                } else {
                    a.id.cmp(&b.id)
                }
            })
        });
        v
    }

    /// The highlighted job: the one selected by id, else the first in display order.
    pub fn selected_job(&self) -> Option<&JobView> {
        self.job_sel
            .and_then(|id| self.jobs.iter().find(|j| j.id == id))
            .or_else(|| self.jobs_in_order().first().copied())
    }

    /// Index of the highlighted job in display order.
    pub fn selected_job_row(&self) -> Option<usize> {
        let id = self.selected_job()?.id;
        self.jobs_in_order().iter().position(|j| j.id == id)
    }

    fn active_jobs(&self) -> usize {
        self.jobs.iter().filter(|j| j.status.is_active()).count()
    }

    /// After a job ends: when none is left, the status line says how the spell went, so no
    /// "queued ..." or "cancelling ..." stays behind.
    fn after_job_finished(&mut self) {
        if self.active_jobs() > 0 {
            return;
        }
        let b = std::mem::take(&mut self.batch);
        let mut parts = Vec::new();
        if b.done > 0 {
            parts.push(format!("{} done", b.done));
        }
        if b.failed > 0 {
            parts.push(format!("{} failed", b.failed));
        }
        if b.cancelled > 0 {
            parts.push(format!("{} cancelled", b.cancelled));
        }
        let verdict = b.sweep.as_deref().and_then(|series| {
            lawa::export::verdict::verdict(&self.visible_results(), series, &self.spikes)
        });
        let mut m = match verdict {
            Some(v) if b.failed + b.cancelled == 0 => v.to_string(),
            Some(v) => format!("{v} · jobs: {}", parts.join(", ")),
            None => format!("jobs finished: {}", parts.join(", ")),
        };
        if let Some(e) = b.last_error {
            m.push_str(&format!(" · last error: {e}"));
        }
        self.message = Some(m);
    }

    /// While `s` runs: `sweep uniform k=5 31/112 · ETA 1m20s` (the ETA from the mean time of
    /// the jobs done so far).
    pub fn sweep_progress(&self) -> Option<String> {
        let series = self.batch.sweep.as_ref()?;
        let active = self.active_jobs();
        if active == 0 {
            return None;
        }
        let b = &self.batch;
        let finished = b.done + b.failed + b.cancelled;
        let mut s = format!("sweep {series} {finished}/{}", finished + active);
        if b.done > 0 {
            let eta = b.busy.mul_f64(active as f64 / b.done as f64);
            s.push_str(&format!(" · ETA {}", crate::tui::panels::fmt_duration(eta)));
        }
        Some(s)
    }

    /// Records that others appended to the store: shown as they arrive (a record already
    /// here, e.g. one of our own jobs read back, is not added twice).
    fn on_stored(&mut self, records: Vec<ResultRecord>) {
        let mut added = 0;
        let mut raw = false;
        for r in records {
            if !self.results.contains(&r) {
                raw |= r.is_raw();
                self.results.push(r);
                added += 1;
            }
        }
        if added == 0 {
            return;
        }
        if raw && self.traj.metrics.loss.len() < 3 {
            self.redetect_spikes();
        }
        if self
            .message
            .as_deref()
            .is_none_or(|m| m.ends_with(FROM_STORE))
        {
            self.message = Some(format!("{added} new result(s){FROM_STORE}"));
        }
    }

    fn on_job(&mut self, e: JobEvent) {
        match e {
            JobEvent::Queued { id, target } => {
                // A late event of a job already shown must not add a second row.
                if self.jobs.iter().all(|j| j.id != id) {
                    self.jobs.push(JobView {
                        id,
                        target,
                        status: JobStatus::Queued,
                        progress: None,
                        elapsed: Duration::ZERO,
                    })
                }
            }
            JobEvent::Replaced { id, .. } => self.jobs.retain(|j| j.id != id),
            JobEvent::Started { id } => self.with_job(id, |j| j.status = JobStatus::Running),
            JobEvent::Progress {
                id,
                progress,
                elapsed,
            } => self.with_job(id, |j| {
                j.progress = Some(progress);
                j.elapsed = elapsed;
            }),
            JobEvent::Done { id, record } => {
                let took = self.jobs.iter().find(|j| j.id == id).map(|j| j.elapsed);
                if self.finish_job(id, JobStatus::Done) {
                    self.batch.done += 1;
                    self.batch.busy += took.unwrap_or_default();
                }
                // The model's default context, when its config was not readable at open.
                let e = &self.eval;
                if e.ctx().is_none()
                    && record.data_hash == e.data_hash
                    && record.max_tokens == e.max_tokens
                    && record.dtype == e.dtype
                {
                    self.eval.learnt_ctx = Some(record.ctx);
                }
                let raw = record.is_raw();
                self.results.push(*record);
                if raw && self.traj.metrics.loss.len() < 3 {
                    self.redetect_spikes();
                }
                self.after_job_finished();
            }
            JobEvent::Failed { id, error } => {
                let label = self
                    .jobs
                    .iter()
                    .find(|j| j.id == id)
                    .map(|j| j.target.label())
                    .unwrap_or_else(|| format!("job {id}"));
                self.message = Some(format!("{label} failed: {error}"));
                if self.finish_job(id, JobStatus::Failed(error.clone())) {
                    self.batch.failed += 1;
                    self.batch.last_error = Some(format!("{label}: {error}"));
                }
                self.after_job_finished();
            }
            JobEvent::Cancelled { id } => {
                if self.finish_job(id, JobStatus::Cancelled) {
                    self.batch.cancelled += 1;
                }
                self.after_job_finished();
            }
        }
        self.prune_jobs();
    }

    /// The first job row shown in a jobs panel `height` rows high (the selection stays in view).
    pub fn jobs_offset(&self, height: usize) -> usize {
        match self.selected_job_row() {
            Some(sel) if self.focus == Focus::Jobs && sel >= height.max(1) => {
                sel + 1 - height.max(1)
            }
            _ => 0,
        }
    }

    fn with_job(&mut self, id: JobId, f: impl FnOnce(&mut JobView)) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
            f(j);
        }
    }

    /// Ends an active job with `status`; false when the job is unknown or already ended (an
    /// ended job never changes again: a failure is never turned into "done").
    fn finish_job(&mut self, id: JobId, status: JobStatus) -> bool {
        match self.jobs.iter_mut().find(|j| j.id == id) {
            Some(j) if j.status.is_active() => {
                j.status = status;
                true
            }
            _ => false,
        }
    }

    fn prune_jobs(&mut self) {
        let finished = self.jobs.iter().filter(|j| !j.status.is_active()).count();
        if finished > KEEP_FINISHED {
            let mut drop = finished - KEEP_FINISHED;
            self.jobs.retain(|j| {
                if drop > 0 && !j.status.is_active() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if self
            .job_sel
            .is_some_and(|id| self.jobs.iter().all(|j| j.id != id))
        {
            self.job_sel = None;
        }
    }

    fn start_edit(&mut self, field: Field) {
        let buffer = match field {
            Field::Param => match &self.scheme {
                Scheme::Uniform | Scheme::Linear => self.k.to_string(),
                Scheme::Ema { half_life } => format!("{half_life}"),
                Scheme::Custom(w) => w
                    .iter()
                    .map(|x| format!("{x}"))
                    .collect::<Vec<_>>()
                    .join(","),
            },
            Field::Ctx => self
                .eval
                .ctx_asked
                .map(|c| c.to_string())
                .unwrap_or_default(),
            Field::MaxTokens => self
                .eval
                .max_tokens
                .map(|c| c.to_string())
                .unwrap_or_default(),
        };
        self.edit = Some(Edit { field, buffer });
    }

    /// The prompt of a field being edited.
    pub fn edit_prompt(&self, field: Field) -> &'static str {
        match field {
            Field::Param => match self.scheme {
                Scheme::Uniform | Scheme::Linear => "window size k",
                Scheme::Ema { .. } => "EMA half-life (steps)",
                Scheme::Custom(_) => "weights, oldest first (w1,w2,...)",
            },
            Field::Ctx => "eval context length (empty: model default)",
            Field::MaxTokens => "eval max tokens (empty: all)",
        }
    }

    /// The longest half-life that means anything: the run's span of checkpoint steps.
    fn run_span(&self) -> f64 {
        let steps = self.steps();
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64,
            _ => 1.0,
        }
    }

    /// Checks a typed value against the model and the run, in the prompt's own words; on
    /// success the status line says the new value (and an old error goes away).
    fn finish_edit(&mut self) -> Vec<Effect> {
        let Some(Edit { field, buffer }) = self.edit.take() else {
            return Vec::new();
        };
        let prompt = self.edit_prompt(field);
        let text = buffer.trim();
        let n = self.traj.checkpoints.len().max(1);
        let bad = |rule: String| Some(format!("{prompt}: {rule}, not {text:?}"));
        let span = self.run_span();
        match field {
            Field::Param => match &mut self.scheme {
                Scheme::Uniform | Scheme::Linear => match text.parse::<usize>() {
                    Ok(k) if (1..=n).contains(&k) => {
                        self.k = k;
                        self.message = Some(format!("window size k: {k}"));
                    }
                    _ => {
                        self.message =
                            bad(format!("a whole number from 1 to {n} (the checkpoints)"))
                    }
                },
                Scheme::Ema { half_life } => match text.parse::<f64>() {
                    Ok(h) if h > 0.0 && h <= span => {
                        *half_life = h;
                        self.message = Some(format!("scheme: ema:{h} (half-life {h} steps)"));
                    }
                    _ => {
                        self.message = bad(format!(
                            "a number of steps above 0 and at most {span} (the run's span)"
                        ))
                    }
                },
                Scheme::Custom(w) => {
                    let parsed: Result<Vec<f64>, _> =
                        text.split(',').map(|p| p.trim().parse::<f64>()).collect();
                    match parsed {
                        Ok(v)
                            if !v.is_empty()
                                && v.len() <= n
                                && v.iter().all(|x| x.is_finite() && *x >= 0.0)
                                && v.iter().sum::<f64>() > 0.0 =>
                        {
                            self.k = v.len();
                            *w = v;
                            self.message = Some(format!("scheme: custom weights {}", self.scheme));
                        }
                        _ => {
                            self.message = bad(format!(
                                "1 to {n} weights (the checkpoints), each 0 or more, not all 0"
                            ))
                        }
                    }
                }
            },
            Field::Ctx | Field::MaxTokens => {
                let v: Result<Option<u64>, ()> = if text.is_empty() {
                    Ok(None)
                } else {
                    text.parse::<u64>().map(Some).map_err(|_| ())
                };
                let max_ctx = self.eval.max_ctx;
                let rule = if field == Field::Ctx {
                    match max_ctx {
                        Some(m) => format!("empty or a whole number from 2 to {m} (the model's max_position_embeddings)"),
                        None => "empty or a whole number from 2".to_string(),
                    }
                } else {
                    match self.eval.data_tokens_max {
                        Some(m) => {
                            format!("empty or a whole number from 2 to {m} (the eval data's size)")
                        }
                        None => "empty or a whole number from 2".to_string(),
                    }
                };
                let ok = match (field, &v) {
                    (_, Err(_)) => false,
                    (Field::Ctx, Ok(Some(c))) => *c >= 2 && max_ctx.is_none_or(|m| *c <= m as u64),
                    (_, Ok(Some(c))) => {
                        *c >= 2 && self.eval.data_tokens_max.is_none_or(|m| *c <= m)
                    }
                    (_, Ok(None)) => true,
                };
                let (true, Ok(v)) = (ok, v) else {
                    self.message = bad(rule);
                    return Vec::new();
                };
                if field == Field::Ctx {
                    self.eval.ctx_asked = v.map(|x| x as usize);
                } else {
                    self.eval.max_tokens = v;
                }
                self.redetect_spikes();
                self.message = Some(format!("eval settings: {}", self.eval.describe()));
                return vec![Effect::SetEval {
                    ctx: self.eval.ctx(),
                    max_tokens: self.eval.max_tokens,
                }];
            }
        }
        Vec::new()
    }

    fn on_edit_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(edit) = &mut self.edit else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Enter => return self.finish_edit(),
            KeyCode::Esc => self.edit = None,
            KeyCode::Backspace => {
                edit.buffer.pop();
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL) && edit.buffer.len() < 200 =>
            {
                edit.buffer.push(c);
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Effect::Quit];
        }
        if self.edit.is_some() {
            return self.on_edit_key(key);
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            if key.code != KeyCode::Char('q') {
                return Vec::new();
            }
        }
        let n = self.traj.checkpoints.len();
        let asked = std::mem::take(&mut self.quit_asked);
        match key.code {
            KeyCode::Char('q') => {
                let active = self.active_jobs();
                if active > 0 && !asked {
                    // Quitting stops the work: ask once.
                    self.quit_asked = true;
                    self.message = Some(format!(
                        "{active} job(s) queued or running: q again quits and stops them"
                    ));
                    return Vec::new();
                }
                self.quit = true;
                return vec![Effect::Quit];
            }
            KeyCode::Esc => {
                self.message = None;
                self.zoom = None;
            }
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => {
                self.focus = match self.focus {
                    Focus::Checkpoints => Focus::Jobs,
                    Focus::Jobs => Focus::Spikes,
                    Focus::Spikes => Focus::Checkpoints,
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-(self.page() as isize)),
            KeyCode::PageDown => self.move_selection(self.page() as isize),
            KeyCode::Home => self.move_selection(-(n as isize) - 1),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(n as isize + 1),
            KeyCode::Char('[') | KeyCode::Char('-') => self.resize_window(-1),
            KeyCode::Char(']') | KeyCode::Char('+') | KeyCode::Char('=') => self.resize_window(1),
            KeyCode::Char('w') => self.cycle_scheme(),
            KeyCode::Char('p') => self.start_edit(Field::Param),
            KeyCode::Char('t') => self.start_edit(Field::Ctx),
            KeyCode::Char('T') => self.start_edit(Field::MaxTokens),
            KeyCode::Char('a') => {
                self.spike_aware = !self.spike_aware;
                self.message = Some(format!(
                    "spike-aware window: {}",
                    if self.spike_aware { "on" } else { "off" }
                ));
            }
            KeyCode::Enter => {
                if self.focus == Focus::Spikes {
                    self.goto_spike(self.spike_sel);
                } else {
                    return self.request_current();
                }
            }
            KeyCode::Char('r') => {
                if let Some(step) = self.cursor_step() {
                    if self.has_result(RAW, step) || self.has_active_job(RAW, step) {
                        self.message = Some(format!("step {step}: already evaluated (or queued)"));
                    } else {
                        self.message = Some(format!("queued: eval step {step}"));
                        return vec![Effect::Submit(Target::Checkpoint { step })];
                    }
                }
            }
            KeyCode::Char('s') => return self.sweep(),
            KeyCode::Char('e') => {
                self.message = Some("exporting...".into());
                return vec![Effect::Export];
            }
            KeyCode::Char('x') => {
                if self.x_axis == XAxis::Step && !chart::has_tokens(&self.traj) {
                    self.message = Some("tokens per step unknown for this run".into());
                } else {
                    self.x_axis = self.x_axis.toggled();
                    self.zoom = None;
                    self.message = Some(format!("x axis: {}", self.x_axis.label()));
                }
            }
            KeyCode::Char('g') => {
                self.gain = !self.gain;
                self.message = Some(
                    if self.gain {
                        "gain view: each average's eval NLL minus raw's (below 0: the average is better)"
                    } else {
                        "loss view: train loss and eval NLL"
                    }
                    .into(),
                );
            }
            KeyCode::Char('v') => {
                self.hide_train = !self.hide_train;
                self.message = Some(
                    if self.hide_train {
                        "train loss hidden: the eval curves alone"
                    } else {
                        "train loss shown"
                    }
                    .into(),
                );
            }
            KeyCode::Char('y') => {
                self.ppl = !self.ppl;
                self.message = Some(format!("y axis: {}", self.chart().y_label()));
            }
            KeyCode::Char('l') => {
                self.log_y = !self.log_y;
                self.message = Some(format!(
                    "y axis: {}",
                    if self.log_y { "log" } else { "linear" }
                ));
            }
            KeyCode::Char('i') => self.zoom_by(0.5, None),
            KeyCode::Char('o') => self.zoom_by(2.0, None),
            KeyCode::Char('0') => self.zoom = None,
            KeyCode::Left | KeyCode::Char('h') => self.pan(-0.25),
            KeyCode::Right => self.pan(0.25),
            KeyCode::Char('<') | KeyCode::Char(',') => {
                self.smoothing = ((self.smoothing - 0.1) * 10.0).round() / 10.0;
                self.smoothing = self.smoothing.max(0.0);
                self.message = Some(format!("train-loss smoothing: {:.1}", self.smoothing));
            }
            KeyCode::Char('>') | KeyCode::Char('.') => {
                self.smoothing = ((self.smoothing + 0.1) * 10.0).round() / 10.0;
                self.smoothing = self.smoothing.min(0.9);
                self.message = Some(format!("train-loss smoothing: {:.1}", self.smoothing));
            }
            KeyCode::Char('n') => self.jump_spike(true),
            KeyCode::Char('N') => self.jump_spike(false),
            KeyCode::Char('c') => {
                // In the jobs panel: the highlighted job; elsewhere: the running one.
                let job = if self.focus == Focus::Jobs {
                    self.selected_job()
                } else {
                    self.jobs.iter().find(|j| j.status == JobStatus::Running)
                };
                match job {
                    Some(j) if j.status.is_active() => {
                        let (id, label) = (j.id, j.target.label());
                        self.message = Some(format!("cancelling {label}"));
                        return vec![Effect::Cancel(id)];
                    }
                    Some(j) => {
                        self.message = Some(format!("{}: already finished", j.target.label()))
                    }
                    None => self.message = Some("no job to cancel".into()),
                }
            }
            KeyCode::Char('C') => {
                let n = self.active_jobs();
                if n == 0 {
                    self.message = Some("no job to cancel".into());
                } else {
                    self.message = Some(format!("cancelling {n} job(s)"));
                    return vec![Effect::CancelAll];
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn move_selection(&mut self, delta: isize) {
        let shift = |v: usize, len: usize| -> usize {
            (v as isize + delta).clamp(0, len.saturating_sub(1) as isize) as usize
        };
        match self.focus {
            Focus::Checkpoints => self.set_cursor(shift(self.cursor, self.traj.checkpoints.len())),
            Focus::Jobs => {
                let order: Vec<JobId> = self.jobs_in_order().iter().map(|j| j.id).collect();
                let row = self.selected_job_row().unwrap_or(0);
                self.job_sel = order.get(shift(row, order.len())).copied();
            }
            Focus::Spikes => self.spike_sel = shift(self.spike_sel, self.spikes.len()),
        }
    }

    fn graph_x_at(&self, column: u16) -> Option<f64> {
        let g = self.areas.graph;
        if g.width < 2 {
            return None;
        }
        let (a, b) = self.areas.graph_x;
        let t = (column.saturating_sub(g.x)) as f64 / (g.width - 1) as f64;
        Some(a + t.clamp(0.0, 1.0) * (b - a))
    }

    fn on_mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
        if self.help || self.edit.is_some() {
            return Vec::new();
        }
        let at = ratatui::layout::Position::new(m.column, m.row);
        let a = self.areas;
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if a.list_rows.contains(at) {
                    self.focus = Focus::Checkpoints;
                    let i = self.list_offset_for(a.list_rows.height as usize)
                        + (m.row - a.list_rows.y) as usize;
                    if i < self.traj.checkpoints.len() {
                        self.set_cursor(i);
                    }
                } else if a.graph.contains(at) {
                    if let Some(i) = self
                        .graph_x_at(m.column)
                        .and_then(|x| self.nearest_checkpoint(x))
                    {
                        self.set_cursor(i);
                        self.drag_from = Some(i);
                    }
                } else if a.jobs_rows.contains(at) {
                    self.focus = Focus::Jobs;
                    let i = self.jobs_offset(a.jobs_rows.height as usize)
                        + (m.row - a.jobs_rows.y) as usize;
                    if let Some(j) = self.jobs_in_order().get(i) {
                        self.job_sel = Some(j.id);
                    }
                } else if a.spikes_rows.contains(at) {
                    self.focus = Focus::Spikes;
                    let i = (m.row - a.spikes_rows.y) as usize;
                    if i < self.spikes.len() {
                        self.goto_spike(i);
                    }
                }
            }
            MouseEventKind::Drag(MouseButton::Left) => {
                if let (Some(from), Some(x)) = (self.drag_from, self.graph_x_at(m.column)) {
                    if let Some(to) = self.nearest_checkpoint(x) {
                        let (lo, hi) = (from.min(to), from.max(to));
                        self.set_cursor(hi);
                        let k = hi - lo + 1;
                        match &mut self.scheme {
                            Scheme::Custom(_) => {}
                            _ => self.k = k,
                        }
                        self.message = Some(format!("window: k = {}", self.window_k()));
                    }
                }
            }
            MouseEventKind::Up(_) => self.drag_from = None,
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = m.kind == MouseEventKind::ScrollUp;
                if a.graph.contains(at) {
                    let c = self.graph_x_at(m.column);
                    self.zoom_by(if up { 0.8 } else { 1.25 }, c);
                } else if a.list_rows.contains(at) {
                    self.focus = Focus::Checkpoints;
                    self.move_selection(if up { -3 } else { 3 });
                }
            }
            _ => {}
        }
        Vec::new()
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
                state.message = Some(format!(
                    "{} checkpoint(s) cannot be read; the windows holding them will fail: step {step}: {why}{more}",
                    bad.len()
                ));
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
#[path = "state_tests.rs"]
mod tests;
