//! The checkpoint list: step, tokens, train loss, eval perplexity raw and averaged, job status.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Row, Table, Widget};

use lawa::chart::{three_digits, tokens_at};
use lawa::results::{Metric, ResultRecord, Series};

use super::{fmt_ppl, panel_block, rows_below_header};
use crate::tui::state::{Focus, JobStatus, State};
use crate::tui::theme::Theme;

/// Train loss logged at `step` (or the last one logged before it).
fn loss_at(state: &State, step: u64) -> Option<f64> {
    let l = &state.traj.metrics.loss;
    let i = match l.steps.binary_search(&step) {
        Ok(i) => i,
        Err(0) => return None,
        Err(i) => i - 1,
    };
    Some(l.values[i]).filter(|v| v.is_finite())
}

/// Draws the list; returns the rectangle of its data rows (for the mouse).
pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Rect {
    let n = state.traj.checkpoints.len();
    let block = panel_block(
        format!(" Checkpoints {}/{} ", (state.cursor + 1).min(n), n),
        state.focus == Focus::Checkpoints,
        theme,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 2 || inner.width < 10 {
        return Rect::default();
    }
    let rows_area = rows_below_header(inner);
    let index = state.result_index();
    let series = state.series();
    // Step, raw and averaged perplexity always fit (and are never squeezed: a row without its
    // step is worse than no row); then, as the width allows, Δ% (first when the curve has
    // results), train loss, tokens.
    let has_avg = index.keys().any(|(s, _)| *s == series);
    // Narrower than that, the perplexities go first (avg, then raw), never the step.
    // (Widths: step 9, each ppl 7, the job mark 1, one space between columns.)
    let show_avg = inner.width > 9 + 1 + 7 + 1 + 7 + 1;
    let show_raw = inner.width > 9 + 1 + 7 + 1;
    let mut room = inner.width.saturating_sub(9 + 1 + 7 + 1 + 7 + 1 + 1);
    let mut fits = |w: u16| {
        let ok = room > w;
        if ok {
            room -= w + 1;
        }
        ok
    };
    let has_loss = !state.traj.metrics.loss.is_empty();
    let (show_delta, show_loss) = if has_avg {
        let d = fits(6);
        (d, has_loss && fits(5))
    } else {
        let l = has_loss && fits(5);
        (fits(6), l)
    };
    let show_tokens = lawa::chart::has_tokens(&state.traj) && fits(7);

    let window = state.window_steps();
    let height = rows_area.height as usize;
    let offset = state.list_offset_for(height);

    let mut header = vec!["  step".to_string()];
    let mut widths = vec![Constraint::Length(9)];
    if show_tokens {
        header.push("tokens".into());
        widths.push(Constraint::Length(7));
    }
    if show_loss {
        header.push("loss".into());
        widths.push(Constraint::Length(5));
    }
    let metric = state.metric;
    let (unit, delta_head) = match metric {
        Metric::Perplexity => ("ppl", "  Δ%"),
        Metric::Task(_) => ("acc", " Δpts"),
    };
    if show_raw {
        header.push(format!("raw {unit}"));
        widths.push(Constraint::Length(7));
    }
    if show_avg {
        header.push(format!("avg {unit}"));
        widths.push(Constraint::Length(7));
    }
    if show_delta {
        header.push(delta_head.into());
        widths.push(Constraint::Length(6));
    }
    header.push(String::new());
    widths.push(Constraint::Length(1));

    let rows = state
        .traj
        .checkpoints
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, c)| {
            let in_window = window.contains(&c.step);
            let mark = if in_window { "▐" } else { " " };
            let spike = if state.in_spike(c.step) { "~" } else { " " };
            let mut cells: Vec<Line> = vec![Line::from(vec![
                Span::styled(mark, theme.in_window()),
                Span::styled(spike, theme.error()),
                Span::raw(format!("{:>7}", c.step)),
            ])];
            if show_tokens {
                cells.push(Line::from(
                    tokens_at(&state.traj, c.step)
                        .map(|t| three_digits(t as f64))
                        .unwrap_or_default(),
                ));
            }
            if show_loss {
                cells.push(Line::from(
                    loss_at(state, c.step)
                        .map(|l| format!("{l:.2}"))
                        .unwrap_or_default(),
                ));
            }
            let raw = index.get(&(Series::Raw, c.step));
            if show_raw {
                cells.push(Line::from(raw.map(|r| fmt_value(r)).unwrap_or_default()));
            }
            let avg = index.get(&(series.clone(), c.step));
            // Green where the average is better: lower perplexity, higher accuracy.
            let avg_cell = match (avg, raw) {
                (Some(a), Some(r)) if metric.better(a.value(), r.value()) => {
                    Line::from(Span::styled(fmt_value(a), theme.ok()))
                }
                (Some(a), _) => Line::from(fmt_value(a)),
                _ => Line::from(""),
            };
            if show_avg {
                cells.push(avg_cell);
            }
            if show_delta {
                cells.push(match (avg, raw) {
                    (Some(a), Some(r)) => {
                        let d = metric.change(a.value(), r.value());
                        // A tie (common for accuracy over a few hundred items) is neither.
                        let style = if metric.improves(d) {
                            theme.ok()
                        } else if metric.improves(-d) {
                            theme.error()
                        } else {
                            ratatui::style::Style::default()
                        };
                        Line::from(Span::styled(fmt_delta(d, metric), style))
                    }
                    _ => Line::from(""),
                });
            }
            let status = state
                .jobs
                .iter()
                .filter(|j| j.target.end_step() == c.step)
                .map(|j| &j.status)
                .fold(None, |acc: Option<&JobStatus>, s| match (acc, s) {
                    (Some(JobStatus::Running), _) => acc,
                    (_, JobStatus::Running) => Some(s),
                    (Some(JobStatus::Queued), _) => acc,
                    (_, JobStatus::Queued) => Some(s),
                    (Some(JobStatus::Failed(_)), _) => acc,
                    (_, JobStatus::Failed(_)) => Some(s),
                    _ => acc,
                });
            cells.push(match status {
                Some(JobStatus::Running) => Line::from(Span::styled("*", theme.busy())),
                Some(JobStatus::Queued) => Line::from(Span::styled("…", theme.busy())),
                Some(JobStatus::Failed(_)) => Line::from(Span::styled("!", theme.error())),
                _ if state.unreadable.contains_key(&c.step) => {
                    Line::from(Span::styled("✗", theme.error()))
                }
                _ => Line::from(""),
            });
            let row = Row::new(cells);
            if i == state.cursor {
                row.style(theme.selected())
            } else {
                row
            }
        });
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.header()))
        .column_spacing(1);
    Widget::render(table, inner, buf);
    rows_area
}

/// A result's value for a 7-cell column: the perplexity, or the accuracy in %.
fn fmt_value(r: &ResultRecord) -> String {
    match &r.task {
        None => fmt_ppl(r.ppl),
        Some(t) => format!("{:.1}%", t.acc * 100.0),
    }
}

/// A change for a 6-cell column: perplexity `−5.4%`, `+12%`, `−100%`; accuracy points
/// `+1.2`, `−12`.
fn fmt_delta(d: f64, metric: Metric) -> String {
    let sign = if d < 0.0 { "−" } else { "+" };
    let unit = match metric {
        Metric::Perplexity => "%",
        Metric::Task(_) => "",
    };
    let a = d.abs();
    let s = if a < 10.0 {
        format!("{sign}{a:.1}{unit}")
    } else {
        format!("{sign}{a:.0}{unit}")
    };
    format!("{s:>6}")
}
