//! The jobs panel: running (progress bar, ETA), queued, done, failed (the error's line).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use lawa::jobs::eta;
use lawa::progress::Progress;

use super::{fit, fmt_duration, panel_block};
use crate::tui::state::{Focus, JobStatus, JobView, State};
use crate::tui::theme::Theme;

/// `████░░░░` of `width` cells for `done/total`.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let frac = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let full = (frac * width as f64).round() as usize;
    "█".repeat(full) + &"░".repeat(width - full)
}

/// One line per Slurm sweep that is still running, else the newest one:
/// `slurm 12 ██░░ 30/42 · 2/3 tasks done · 1 running · 1 failed`.
pub fn cluster_lines(state: &State, theme: &Theme, max: usize) -> Vec<Line<'static>> {
    use lawa::sweep::slurm::TaskState;
    let live: Vec<_> = state.cluster.iter().filter(|s| !s.finished()).collect();
    let shown = if live.is_empty() {
        state.cluster.last().into_iter().collect()
    } else {
        live
    };
    shown
        .iter()
        .rev()
        .take(max)
        .rev()
        .map(|s| {
            let failed = s.count(TaskState::Failed);
            let mut spans = vec![
                Span::styled(format!("slurm {} ", s.job_id), theme.busy()),
                Span::styled(bar(s.stored() as u64, s.windows() as u64, 8), theme.busy()),
                Span::raw(format!(
                    " {}/{} · {}/{} tasks done",
                    s.stored(),
                    s.windows(),
                    s.count(TaskState::Done),
                    s.tasks.len()
                )),
            ];
            for (n, what) in [
                (s.count(TaskState::Running), "running"),
                (s.count(TaskState::Pending), "pending"),
            ] {
                if n > 0 {
                    spans.push(Span::raw(format!(" · {n} {what}")));
                }
            }
            if failed > 0 {
                spans.push(Span::styled(format!(" · {failed} failed"), theme.error()));
            }
            Line::from(spans)
        })
        .collect()
}

/// Draws the panel; returns the rectangle of its rows (for the mouse).
pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Rect {
    let active = state.jobs.iter().filter(|j| j.status.is_active()).count();
    let block = panel_block(
        format!(" Jobs {active} active "),
        state.focus == Focus::Jobs,
        theme,
    );
    let mut inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 10 {
        return Rect::default();
    }
    // The trajectory's Slurm sweeps first, one line each (at most half the panel).
    let cluster = cluster_lines(state, theme, (inner.height as usize / 2).max(1));
    for line in &cluster {
        buf.set_line(inner.x, inner.y, line, inner.width);
        inner.y += 1;
        inner.height -= 1;
    }
    if inner.height == 0 {
        return Rect::default();
    }
    let jobs = state.jobs_in_order();
    if jobs.is_empty() {
        if !cluster.is_empty() {
            return inner;
        }
        buf.set_string(
            inner.x,
            inner.y,
            fit(
                "Enter: average + eval the window; s: sweep",
                inner.width as usize,
            ),
            theme.faint(),
        );
        return inner;
    }
    let sel = state.selected_job_row().unwrap_or(0);
    let w = inner.width as usize;
    // The highlighted failed job's whole message, wrapped under the list (one row at least
    // stays for the jobs).
    if let (Focus::Jobs, Some(j)) = (state.focus, jobs.get(sel)) {
        if let JobStatus::Failed(e) = &j.status {
            let text =
                lawa::display::escape(&format!("{} failed: {e}", j.target.label())).into_owned();
            let room = inner.height.saturating_sub(1) as usize;
            let mut lines = super::window::wrap(&text, w);
            if lines.len() > room {
                lines.truncate(room);
                if let Some(l) = lines.last_mut() {
                    *l = fit(&format!("{l}…"), w);
                }
            }
            let top = inner.bottom() - lines.len() as u16;
            for (k, l) in lines.iter().enumerate() {
                buf.set_string(inner.x, top + k as u16, l, theme.error());
            }
            inner.height -= lines.len() as u16;
        }
    }
    let h = inner.height as usize;
    let offset = state.jobs_offset(h);
    // Labels as wide as the longest shown, up to half the panel: the rest is the status.
    let label_w = jobs
        .iter()
        .map(|j| j.target.label().chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, (w / 2).max(8));
    for (row, (i, j)) in jobs.iter().enumerate().skip(offset).take(h).enumerate() {
        let mut line = job_line(j, theme, label_w, w);
        if state.focus == Focus::Jobs && i == sel {
            line = line.style(theme.selected());
        }
        buf.set_line(inner.x, inner.y + row as u16, &line, inner.width);
    }
    inner
}

/// One job's row in `w` cells: status glyph, its label padded to `label_w`, then progress and
/// ETA, the queue state, how long it took, or the error's line.
pub fn job_line(j: &JobView, theme: &Theme, label_w: usize, w: usize) -> Line<'static> {
    let (glyph, gstyle) = match j.status {
        JobStatus::Queued => ("…", theme.busy()),
        JobStatus::Running => ("*", theme.busy()),
        JobStatus::Done => ("✓", theme.ok()),
        JobStatus::Failed(_) => ("!", theme.error()),
        JobStatus::Cancelled => ("x", theme.faint()),
    };
    let label = j.target.label();
    let mut spans = vec![
        Span::styled(glyph, gstyle),
        Span::raw(" "),
        Span::raw(format!("{:<label_w$}", fit(&label, label_w))),
        Span::raw(" "),
    ];
    let rest = w.saturating_sub(label_w + 3);
    let tail = match (&j.status, &j.progress) {
        // A stage of unknown length says what it is doing ("preparing GPU kernels ...").
        (
            JobStatus::Running,
            Some(Progress {
                total: None,
                detail: Some(d),
                ..
            }),
        ) => vec![Span::styled(fit(d, rest), theme.busy())],
        (JobStatus::Running, Some(p)) => {
            let pct = p
                .total
                .filter(|t| *t > 0)
                .map(|t| format!("{:>3}%", (p.done * 100 / t).min(100)))
                .unwrap_or_default();
            let eta = eta(p, j.elapsed)
                .map(|d| format!(" {}", fmt_duration(d)))
                .unwrap_or_default();
            let stage = fit(&p.stage, 10);
            let fixed = stage.chars().count() + 1 + pct.len() + eta.len() + 1;
            let bw = rest.saturating_sub(fixed).min(20);
            let bar = if bw >= 3 {
                format!(" {}", bar(p.done, p.total.unwrap_or(0), bw))
            } else {
                String::new()
            };
            vec![
                Span::raw(stage),
                Span::styled(bar, theme.busy()),
                Span::raw(format!(" {pct}{eta}")),
            ]
        }
        (JobStatus::Running, None) => vec![Span::raw("starting")],
        (JobStatus::Queued, _) => vec![Span::styled("queued", theme.faint())],
        (JobStatus::Done, _) => vec![Span::styled(
            format!("done in {}", fmt_duration(j.elapsed)),
            theme.faint(),
        )],
        (JobStatus::Failed(e), _) => vec![Span::styled(fit(e, rest), theme.error())],
        (JobStatus::Cancelled, _) => vec![Span::styled("cancelled", theme.faint())],
    };
    spans.extend(tail);
    Line::from(spans)
}
