//! The compact screen's summary lines (a small terminal: see `ui::compact`): each bottom panel
//! in one line, so that the chart gets the rows. The eval settings (which set of results is
//! shown) in full, wrapped; the window and its weights; the jobs (how many, the current one);
//! the spikes (how many, the selected one, the run's note). Focusing jobs or spikes (Tab, or a
//! click on its line) opens that panel in full instead of its line.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use lawa::average::Scheme;

use super::window::{settings_text, sparkline, wrap};
use super::{fit, jobs};
use crate::tui::state::{JobStatus, State};
use crate::tui::theme::Theme;

/// Width of the label column (`Window `).
pub const LABEL_W: u16 = 7;

fn label<'a>(text: &str, theme: &Theme) -> Span<'a> {
    Span::styled(format!("{text:<w$}", w = LABEL_W as usize), theme.title())
}

/// The settings line(s) for `width` columns: the label's column, then the settings wrapped.
pub fn eval_lines(state: &State, width: u16) -> Vec<String> {
    wrap(
        &settings_text(state),
        width.saturating_sub(LABEL_W).max(1) as usize,
    )
}

/// The eval settings, whole, over `area`'s rows (as many as `eval_lines` gives).
pub fn render_eval(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) {
    for (i, l) in eval_lines(state, area.width)
        .into_iter()
        .take(area.height as usize)
        .enumerate()
    {
        let head = if i == 0 {
            label("Eval", theme)
        } else {
            Span::raw(" ".repeat(LABEL_W as usize))
        };
        let line = Line::from(vec![head, Span::styled(l, theme.faint())]);
        buf.set_line(area.x, area.y + i as u16, &line, area.width);
    }
}

/// Spans of `parts` joined by ` · ` in their order, as many as fit `width`, chosen by rank
/// (the lowest first).
fn joined<'a>(parts: Vec<(u8, Vec<Span<'a>>)>, width: usize, theme: &Theme) -> Vec<Span<'a>> {
    let widths: Vec<usize> = parts
        .iter()
        .map(|(_, p)| p.iter().map(|s| s.content.chars().count()).sum())
        .collect();
    let mut by_rank: Vec<usize> = (0..parts.len()).collect();
    by_rank.sort_by_key(|&i| parts[i].0);
    let mut keep = vec![false; parts.len()];
    let mut used = 0;
    for i in by_rank {
        let sep = if used == 0 { 0 } else { 3 };
        if used + sep + widths[i] <= width {
            keep[i] = true;
            used += sep + widths[i];
        }
    }
    let mut out = Vec::new();
    for ((_, p), keep) in parts.into_iter().zip(keep) {
        if keep {
            if !out.is_empty() {
                out.push(Span::styled(" · ", theme.faint()));
            }
            out.extend(p);
        }
    }
    out
}

/// The scheme in a few words.
fn scheme_short(s: &Scheme) -> String {
    match s {
        Scheme::Uniform => "uniform".into(),
        Scheme::Ema { half_life } => format!("EMA half-life {half_life}"),
        Scheme::Linear => "linear".into(),
        Scheme::Custom(w) => format!("custom ({} weights)", w.len()),
    }
}

/// `Window w uniform · [ ] k 5 · steps 1120..1200 · a spike-aware off · █████`.
pub fn render_window(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let key = theme.key();
    let steps = state.window_steps();
    // What the next average will be (scheme, k, spike-aware) goes first; then which steps it
    // takes (the chart marks them too) and the weights.
    let k = state.window_k();
    let mut parts = vec![
        (
            0,
            vec![
                Span::styled("w ", key),
                Span::raw(scheme_short(&state.scheme)),
            ],
        ),
        (
            0,
            vec![Span::styled("[ ] ", key), Span::raw(format!("k {k}"))],
        ),
        (
            2,
            vec![Span::raw(match (steps.first(), steps.last()) {
                (Some(a), Some(b)) if steps.len() == k => format!("steps {a}..{b}"),
                (Some(a), Some(b)) => format!("steps {a}..{b} ({} used)", steps.len()),
                _ => "no checkpoints".into(),
            })],
        ),
        (
            1,
            vec![
                Span::styled("a ", key),
                Span::raw(format!(
                    "spike-aware {}",
                    if state.spike_aware { "on" } else { "off" }
                )),
            ],
        ),
    ];
    match state.window_weights(&steps) {
        Ok(w) => parts.push((3, vec![Span::styled(sparkline(&w, 16), theme.in_window())])),
        Err(e) => parts.push((1, vec![Span::styled(e, theme.error())])),
    }
    let room = area.width.saturating_sub(LABEL_W) as usize;
    let mut spans = vec![label("Window", theme)];
    spans.extend(joined(parts, room, theme));
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

/// `Jobs   2 active · 1 failed · * eval step 1200 eval ████░░ 37% 10s`: the first job of the
/// panel's order (running, then queued, then the newest finished).
pub fn render_jobs(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let active = state.jobs.iter().filter(|j| j.status.is_active()).count();
    let failed = state
        .jobs
        .iter()
        .filter(|j| matches!(j.status, JobStatus::Failed(_)))
        .count();
    let mut spans = vec![label("Jobs", theme), Span::raw(format!("{active} active"))];
    if failed > 0 {
        spans.push(Span::styled(" · ", theme.faint()));
        spans.push(Span::styled(format!("{failed} failed"), theme.error()));
    }
    spans.push(Span::styled(" · ", theme.faint()));
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let room = (area.width as usize).saturating_sub(used);
    let jobs = state.jobs_in_order();
    match jobs.first() {
        Some(j) => {
            let label_w = j.target.label().chars().count().min(room / 2).max(1);
            spans.extend(jobs::job_line(j, theme, label_w, room).spans);
        }
        None => match jobs::cluster_lines(state, theme, 1).pop() {
            Some(l) => spans.extend(l.spans),
            None => spans.push(Span::styled(
                fit("Enter: average + eval the window; s: sweep", room),
                theme.faint(),
            )),
        },
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

/// `Spikes 1 · 721..835 +1.36 · spike made on purpose: …`: the selected spike, then the note.
pub fn render_spikes(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let n = state.spikes.len();
    let mut spans = vec![label("Spikes", theme), Span::raw(n.to_string())];
    match state.spikes.get(state.spike_sel) {
        Some(r) => {
            let which = if n > 1 {
                format!(" ({}/{n})", state.spike_sel + 1)
            } else {
                String::new()
            };
            spans.push(Span::styled(" · ", theme.faint()));
            spans.push(Span::styled(
                format!("{}..{} +{:.2}{which}", r.start_step, r.end_step, r.height),
                theme.error(),
            ));
        }
        None => spans.push(Span::styled(" · none detected", theme.faint())),
    }
    let note = state.traj.notes.join(" · ");
    if !note.is_empty() {
        spans.push(Span::styled(" · ", theme.faint()));
        let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        let room = (area.width as usize).saturating_sub(used);
        spans.push(Span::styled(fit(&note, room), theme.faint()));
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}
