//! Keys and the mouse, mapped to state changes and effects.

use super::*;
use crate::tui::keys::Action as A;

impl State {
    /// Hides or shows the chart's `n`-th eval series (1-based, in legend order).
    fn toggle_series(&mut self, n: u8) {
        let series: Vec<Series> = self
            .chart_all()
            .curves
            .into_iter()
            .filter_map(|c| c.series)
            .collect();
        let Some(name) = (n as usize).checked_sub(1).and_then(|i| series.get(i)) else {
            self.message = Some(match series.len() {
                0 => "no eval series on the chart yet".into(),
                1 => format!("no series {n}: the chart has one eval series (1)"),
                k => format!("no series {n}: the chart's eval series are 1–{k}"),
            });
            return;
        };
        let label = if name.is_raw() {
            "raw checkpoint".to_string()
        } else {
            name.to_string()
        };
        self.message = Some(if self.hidden.remove(name) {
            format!("shown: {label}")
        } else {
            self.hidden.insert(name.clone());
            format!("hidden: {label} ({n} shows it again)")
        });
    }

    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
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
        let Some(action) = crate::tui::keys::action_of(key.code) else {
            return Vec::new();
        };
        match action {
            A::Quit => {
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
            A::Escape => {
                self.message = None;
                self.zoom = None;
            }
            A::Help => self.help = true,
            A::Focus => {
                self.focus = match self.focus {
                    Focus::Checkpoints => Focus::Jobs,
                    Focus::Jobs => Focus::Spikes,
                    Focus::Spikes => Focus::Checkpoints,
                }
            }
            A::Up => self.move_selection(-1),
            A::Down => self.move_selection(1),
            A::PageUp => self.move_selection(-(self.page() as isize)),
            A::PageDown => self.move_selection(self.page() as isize),
            A::First => self.move_selection(-(n as isize) - 1),
            A::Last => self.move_selection(n as isize + 1),
            A::Shrink => self.resize_window(-1),
            A::Grow => self.resize_window(1),
            A::CycleScheme => self.cycle_scheme(),
            A::EditParam => self.start_edit(Field::Param),
            A::EditCtx => self.start_edit(Field::Ctx),
            A::EditMaxTokens => self.start_edit(Field::MaxTokens),
            A::SpikeAware => {
                self.spike_aware = !self.spike_aware;
                self.message = Some(format!(
                    "spike-aware window: {}",
                    if self.spike_aware { "on" } else { "off" }
                ));
            }
            A::Enter => {
                if self.focus == Focus::Spikes {
                    self.goto_spike(self.spike_sel);
                } else {
                    return self.request_current();
                }
            }
            A::EvalRaw => {
                if let Some(step) = self.cursor_step() {
                    if self.has_result(&Series::Raw, step)
                        || self.has_active_job(&Series::Raw, step)
                    {
                        self.message = Some(format!("step {step}: already evaluated (or queued)"));
                    } else {
                        self.message = Some(format!("queued: eval step {step}"));
                        return vec![Effect::Submit(Target::Checkpoint { step })];
                    }
                }
            }
            A::Sweep => return self.sweep(),
            A::Export => {
                self.message = Some("exporting...".into());
                return vec![Effect::Export];
            }
            A::ToggleX => {
                if self.x_axis == XAxis::Step && !chart::has_tokens(&self.traj) {
                    self.message = Some("tokens per step unknown for this run".into());
                } else {
                    self.x_axis = self.x_axis.toggled();
                    self.zoom = None;
                    self.message = Some(format!("x axis: {}", self.x_axis.label()));
                }
            }
            A::ToggleGain => {
                self.gain = !self.gain;
                self.message = Some(match (self.gain, self.metric) {
                    (true, Metric::Perplexity) => {
                        "gain view: each average's eval NLL minus raw's (below 0: the average is better)".into()
                    }
                    (true, Metric::Task(t)) => format!(
                        "gain view: each average's {t} accuracy minus raw's (above 0: the average is better)"
                    ),
                    (false, Metric::Perplexity) => "loss view: train loss and eval NLL".into(),
                    (false, m) => format!("{m} of each checkpoint and average"),
                });
            }
            A::ToggleTrain => {
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
            A::ToggleSeries(n) => self.toggle_series(n),
            A::CycleMetric => self.cycle_metric(),
            A::TogglePpl => {
                self.ppl = !self.ppl;
                self.message = Some(format!("y axis: {}", self.chart().y_label()));
            }
            A::ToggleLogY => {
                self.log_y = !self.log_y;
                self.message = Some(format!(
                    "y axis: {}",
                    if self.log_y { "log" } else { "linear" }
                ));
            }
            A::ZoomIn => self.zoom_by(0.5, None),
            A::ZoomOut => self.zoom_by(2.0, None),
            A::ZoomReset => self.zoom = None,
            A::PanLeft => self.pan(-0.25),
            A::PanRight => self.pan(0.25),
            A::LessSmoothing => {
                self.smoothing = ((self.smoothing - 0.1) * 10.0).round() / 10.0;
                self.smoothing = self.smoothing.max(0.0);
                self.message = Some(format!("train-loss smoothing: {:.1}", self.smoothing));
            }
            A::MoreSmoothing => {
                self.smoothing = ((self.smoothing + 0.1) * 10.0).round() / 10.0;
                self.smoothing = self.smoothing.min(0.9);
                self.message = Some(format!("train-loss smoothing: {:.1}", self.smoothing));
            }
            A::NextSpike => self.jump_spike(true),
            A::PrevSpike => self.jump_spike(false),
            A::Cancel => {
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
            A::CancelAll => {
                let n = self.active_jobs();
                if n == 0 {
                    self.message = Some("no job to cancel".into());
                } else {
                    self.message = Some(format!("cancelling {n} job(s)"));
                    return vec![Effect::CancelAll];
                }
            }
        }
        Vec::new()
    }

    /// `m`: the next metric of the session (perplexity, each task, perplexity again).
    pub(super) fn cycle_metric(&mut self) {
        let all = self.eval.metrics();
        if all.len() < 2 {
            self.message = Some(
                "only perplexity: start lawa explore with --task NAME=FILE for a zero-shot task"
                    .into(),
            );
            return;
        }
        let i = all.iter().position(|m| *m == self.metric).unwrap_or(0);
        self.metric = all[(i + 1) % all.len()];
        self.message = Some(match self.metric {
            Metric::Perplexity => "metric: perplexity (lower is better)".into(),
            Metric::Task(name) => {
                let file = self
                    .eval
                    .tasks
                    .iter()
                    .find(|t| t.name == name)
                    .map(|t| t.label.clone())
                    .unwrap_or_default();
                format!(
                    "metric: {name} accuracy (higher is better) · {}",
                    lawa::display::escape(&file)
                )
            }
        });
    }

    pub(super) fn move_selection(&mut self, delta: isize) {
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

    pub(super) fn graph_x_at(&self, column: u16) -> Option<f64> {
        let g = self.areas.graph;
        if g.width < 2 {
            return None;
        }
        let (a, b) = self.areas.graph_x;
        let t = (column.saturating_sub(g.x)) as f64 / (g.width - 1) as f64;
        Some(a + t.clamp(0.0, 1.0) * (b - a))
    }

    pub(super) fn on_mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
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
                } else if a.jobs_line.contains(at) {
                    self.focus = Focus::Jobs;
                } else if a.spikes_line.contains(at) {
                    self.focus = Focus::Spikes;
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
