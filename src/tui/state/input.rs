//! Keys and the mouse, mapped to state changes and effects.

use super::*;

impl State {
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
