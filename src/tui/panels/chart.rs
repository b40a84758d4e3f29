//! The main chart: train loss (raw faint + smoothed), raw-checkpoint eval, one curve per scheme,
//! spike regions shaded, window and cursor marked, our own axes (so the mouse knows exactly
//! which x a column is) around a ratatui `Chart` that draws only the curves.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Widget};

use lawa::export::chart::{nice_ticks, short_number, ChartModel, CurveKind};

use super::panel_block;
use crate::tui::state::State;
use crate::tui::theme::Theme;

/// What the mouse needs from a drawn chart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Drawn {
    pub graph: Rect,
    pub x_view: (f64, f64),
}

/// Keeps, per x bucket, the first, lowest and highest point: the shape survives at a fraction
/// of the points (long train logs have far more points than the chart has columns).
pub fn decimate(points: &[(f64, f64)], x0: f64, x1: f64, buckets: usize) -> Vec<(f64, f64)> {
    if points.len() <= buckets * 3 || buckets == 0 || x1 <= x0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(buckets * 3);
    let width = (x1 - x0) / buckets as f64;
    let mut i = 0;
    while i < points.len() {
        let b = ((points[i].0 - x0) / width).floor();
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < points.len() && ((points[j].0 - x0) / width).floor() == b {
            if points[j].1 < points[lo].1 {
                lo = j;
            }
            if points[j].1 > points[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut keep = [i, lo, hi, j - 1];
        keep.sort_unstable();
        let mut last = usize::MAX;
        for k in keep {
            if k != last {
                out.push(points[k]);
                last = k;
            }
        }
        i = j;
    }
    out
}

/// The points of a curve inside `[x0, x1]` plus one neighbour each side (so lines reach the
/// edges), in plotted units.
fn visible(model: &ChartModel, pts: &[(f64, f64)], x0: f64, x1: f64) -> Vec<(f64, f64)> {
    let start = pts.partition_point(|p| p.0 < x0).saturating_sub(1);
    let end = (pts.partition_point(|p| p.0 <= x1) + 1).min(pts.len());
    pts[start..end.max(start)]
        .iter()
        .filter_map(|&(x, y)| Some((x, model.y_value(y)?)))
        .collect()
}

/// Tick positions (plotted units) and their labels for the y axis.
fn y_ticks(model: &ChartModel, y0: f64, y1: f64, n: usize) -> Vec<(f64, String)> {
    if model.log_y {
        // Round values of the loss itself, placed at their log10.
        let (a, b) = (10f64.powf(y0), 10f64.powf(y1));
        nice_ticks(a, b, n)
            .into_iter()
            .filter(|v| *v > 0.0)
            .map(|v| (v.log10(), short_number(v)))
            .collect()
    } else {
        nice_ticks(y0, y1, n)
            .into_iter()
            .map(|v| (v, short_number(v)))
            .collect()
    }
}

fn legend(model: &ChartModel, theme: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for c in &model.curves {
        let glyph = match c.kind {
            CurveKind::TrainRaw => "┄ ",
            _ => "━ ",
        };
        spans.push(Span::styled(glyph, theme.curve(c.color)));
        spans.push(Span::raw(format!("{}  ", c.name)));
    }
    if !model.spikes.is_empty() {
        let style = match theme.spike_bg() {
            Some(bg) => Style::default().bg(bg),
            None => Style::default(),
        };
        spans.push(Span::styled(if theme.color { "  " } else { "≈ " }, style));
        spans.push(Span::raw(" spike"));
    }
    Line::from(spans)
}

pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Drawn {
    let model = state.chart();
    let y_name = if model.log_y { "loss, log" } else { "loss" };
    let zoom = if state.zoom.is_some() {
        " (zoomed)"
    } else {
        ""
    };
    let block = panel_block(
        format!(
            " {} · {y_name} vs {}{zoom} ",
            model.title,
            model.x_axis.label()
        ),
        false,
        theme,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 6 || inner.width < 24 {
        return Drawn::default();
    }
    buf.set_line(inner.x, inner.y, &legend(&model, theme), inner.width);
    let plot = Rect {
        y: inner.y + 1,
        height: inner.height - 1,
        ..inner
    };
    let Some((mut x0, mut x1)) = state.x_view(&model) else {
        let msg = "no loss logged and nothing evaluated yet: Enter evaluates the cursor's window, s sweeps";
        let text = super::fit(msg, plot.width as usize);
        buf.set_string(plot.x, plot.y + plot.height / 2, text, theme.faint());
        return Drawn::default();
    };
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let (mut y0, mut y1) = model.y_range(x0, x1).unwrap_or((0.0, 1.0));
    let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { 0.5 };
    y0 -= pad;
    y1 += pad;

    let graph_h = plot.height.saturating_sub(2);
    let ticks = y_ticks(&model, y0, y1, (graph_h as usize / 3).clamp(2, 8));
    let label_w = ticks
        .iter()
        .map(|t| t.1.chars().count())
        .max()
        .unwrap_or(1)
        .min(plot.width as usize / 4) as u16;
    let graph = Rect {
        x: plot.x + label_w + 1,
        y: plot.y,
        width: plot.width.saturating_sub(label_w + 1),
        height: graph_h,
    };
    if graph.width < 4 || graph.height < 2 {
        return Drawn::default();
    }

    let curves: Vec<(Vec<(f64, f64)>, &lawa::export::chart::Curve)> = model
        .curves
        .iter()
        .map(|c| {
            let v = visible(&model, &c.points, x0, x1);
            (decimate(&v, x0, x1, graph.width as usize * 2), c)
        })
        .collect();
    let datasets: Vec<Dataset> = curves
        .iter()
        .map(|(pts, c)| {
            let marker = match c.kind {
                // Evaluations are few: half blocks make single points visible.
                CurveKind::EvalRaw | CurveKind::Average if pts.len() < 3 => Marker::HalfBlock,
                _ => Marker::Braille,
            };
            Dataset::default()
                .data(pts)
                .marker(marker)
                .graph_type(GraphType::Line)
                .style(theme.curve(c.color))
        })
        .collect();
    Chart::new(datasets)
        .x_axis(Axis::default().bounds([x0, x1]))
        .y_axis(Axis::default().bounds([y0, y1]))
        .legend_position(None)
        .render(graph, buf);

    // Shading and marks, column by column.
    let col_x =
        |col: u16| x0 + (col - graph.x) as f64 / (graph.width - 1).max(1) as f64 * (x1 - x0);
    let half = (x1 - x0) / (graph.width - 1).max(1) as f64 / 2.0;
    let covers = |col: u16, a: f64, b: f64| {
        let x = col_x(col);
        x + half >= a && x - half <= b
    };
    let axis_y = graph.bottom();
    let cursor_col = model
        .cursor
        .filter(|c| *c >= x0 - half && *c <= x1 + half)
        .map(|c| graph.x + (((c - x0) / (x1 - x0)) * (graph.width - 1) as f64).round() as u16);
    for col in graph.left()..graph.right() {
        let spike = model.spikes.iter().any(|&(a, b)| covers(col, a, b));
        let window = model.window.is_some_and(|(a, b)| covers(col, a, b));
        let cursor = cursor_col == Some(col);
        let bg = if cursor {
            theme.cursor_bg()
        } else if window {
            theme.window_bg()
        } else if spike {
            theme.spike_bg()
        } else {
            None
        };
        if let Some(bg) = bg {
            for row in graph.top()..graph.bottom() {
                buf[(col, row)].set_bg(bg);
            }
        }
        let sym = if cursor {
            "▲"
        } else if window {
            "═"
        } else if spike {
            "≈"
        } else {
            "─"
        };
        buf[(col, axis_y)].set_symbol(sym).set_style(theme.faint());
    }
    let axis_x = graph.x - 1;
    for row in graph.top()..graph.bottom() {
        buf[(axis_x, row)].set_symbol("│").set_style(theme.faint());
    }
    buf[(axis_x, axis_y)]
        .set_symbol("└")
        .set_style(theme.faint());

    for (t, label) in &ticks {
        if *t < y0 || *t > y1 {
            continue;
        }
        let frac = (t - y0) / (y1 - y0);
        let row = graph.bottom() - 1 - (frac * (graph.height - 1) as f64).round() as u16;
        let text = super::fit(label, label_w as usize);
        let x = plot.x + label_w - text.chars().count() as u16;
        buf.set_string(x, row, text, theme.faint());
        buf[(axis_x, row)].set_symbol("┤");
    }

    let label_y = axis_y + 1;
    let xt = nice_ticks(x0, x1, (graph.width as usize / 12).max(2));
    let mut free_from = plot.x;
    for t in xt {
        let col = graph.x + (((t - x0) / (x1 - x0)) * (graph.width - 1) as f64).round() as u16;
        let text = short_number(t);
        let w = text.chars().count() as u16;
        let start = col.saturating_sub(w / 2).max(plot.x);
        if start < free_from || start + w > plot.right() {
            continue;
        }
        buf.set_string(start, label_y, &text, theme.faint());
        if buf[(col, axis_y)].symbol() == "─" {
            buf[(col, axis_y)].set_symbol("┴");
        }
        free_from = start + w + 1;
    }
    Drawn {
        graph,
        x_view: (x0, x1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimate_keeps_extremes_and_ends() {
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| (i as f64, if i == 500 { 10.0 } else { (i % 7) as f64 }))
            .collect();
        let d = decimate(&pts, 0.0, 999.0, 20);
        assert!(d.len() <= 20 * 4 + 4, "{}", d.len());
        assert_eq!(d.first(), pts.first());
        assert_eq!(d.last(), pts.last());
        assert!(d.contains(&(500.0, 10.0)));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        // Few points are kept as they are.
        assert_eq!(decimate(&pts[..10], 0.0, 9.0, 20), pts[..10].to_vec());
    }
}
