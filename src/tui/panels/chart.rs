//! The main chart: train loss (raw faint + smoothed), raw-checkpoint eval, one curve per scheme,
//! spike regions shaded, window and cursor marked, our own axes (so the mouse knows exactly
//! which x a column is) around a ratatui `Chart` that draws only the curves.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Widget};

use lawa::chart::{clip_above, nice_ticks, short_number, ChartModel, CurveKind};

use super::panel_block;
use crate::tui::state::State;
use crate::tui::theme::Theme;

/// Points of a curve in plotted units.
type Points = Vec<(f64, f64)>;

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

/// One legend entry: the key that hides it (eval series), a line sample, the name.
struct Item {
    key: Option<String>,
    glyph: String,
    style: Style,
    name: String,
    hidden: bool,
}

/// Legend items, short enough for an 80-column chart: every series of `all` (the chart with
/// hidden series too), each with the key that hides it (`v`, eval series numbered for `1`–`9`),
/// hidden ones marked `┈` and struck through; the train loss says its smoothing.
fn legend_items(all: &ChartModel, state: &State, theme: &Theme) -> Vec<Item> {
    let mut items = Vec::new();
    let mut n = 0;
    for c in &all.curves {
        let (key, name) = match c.kind {
            // The faint raw loss is explained by the smoothed entry.
            CurveKind::TrainRaw => continue,
            CurveKind::TrainSmooth => (
                Some("v".to_string()),
                format!("train (EMA {:.2})", state.smoothing),
            ),
            CurveKind::EvalRaw | CurveKind::Average => {
                n += 1;
                let name = match c.kind {
                    CurveKind::EvalRaw if all.gain => "raw = 0".to_string(),
                    CurveKind::EvalRaw => "raw ckpt".to_string(),
                    _ => c.name.trim_start_matches("eval: ").to_string(),
                };
                (Some(n.to_string()), name)
            }
        };
        let hidden = state.is_hidden(c);
        let line = if hidden { "┈" } else { "━" };
        // An eval series' sample has its marker: without colour it is what tells them apart.
        let glyph = match c.kind {
            CurveKind::EvalRaw | CurveKind::Average => format!("{line}{}", Theme::marker(c.color)),
            _ => line.to_string(),
        };
        items.push(Item {
            key,
            glyph,
            style: if hidden {
                theme.faint()
            } else {
                theme.curve(c.color)
            },
            name,
            hidden,
        });
    }
    if !all.spikes.is_empty() {
        let style = match theme.spike_bg() {
            Some(bg) => Style::default().bg(bg),
            None => Style::default(),
        };
        items.push(Item {
            key: None,
            glyph: if theme.color { " " } else { "≈" }.to_string(),
            style,
            name: "spike".into(),
            hidden: false,
        });
    }
    items
}

/// Lays the legend out over as many lines as it needs, at most `max_lines` (a `…` says that
/// entries were left out).
fn legend_lines(
    all: &ChartModel,
    state: &State,
    theme: &Theme,
    width: u16,
    max_lines: usize,
) -> Vec<Line<'static>> {
    let mut lines: Vec<Vec<Span<'static>>> = vec![Vec::new()];
    let mut used = 0usize;
    for it in legend_items(all, state, theme) {
        let key_w = it.key.as_ref().map_or(0, |k| k.chars().count());
        let w = key_w + it.glyph.chars().count() + 1 + it.name.chars().count() + 2;
        if used > 0 && used + w > width as usize {
            if lines.len() == max_lines {
                lines
                    .last_mut()
                    .expect("one line at least")
                    .push(Span::styled("…", theme.faint()));
                break;
            }
            lines.push(Vec::new());
            used = 0;
        }
        let l = lines.last_mut().expect("one line at least");
        if let Some(k) = it.key {
            l.push(Span::styled(k, theme.key()));
        }
        l.push(Span::styled(it.glyph, it.style));
        let name_style = if it.hidden {
            theme.faint().add_modifier(Modifier::CROSSED_OUT)
        } else {
            Style::default()
        };
        l.push(Span::raw(" "));
        l.push(Span::styled(it.name, name_style));
        l.push(Span::raw("  "));
        used += w;
    }
    lines.into_iter().map(Line::from).collect()
}

pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Drawn {
    let all = state.chart_all();
    let model = state.shown(all.clone());
    let log = if model.log_y { ", log" } else { "" };
    let y_name = format!("{}{log}", model.y_short());
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
    let legend = legend_lines(
        &all,
        state,
        theme,
        inner.width,
        if inner.height >= 16 { 3 } else { 2 },
    );
    for (i, l) in legend.iter().enumerate() {
        buf.set_line(inner.x, inner.y + i as u16, l, inner.width);
    }
    let n = legend.len() as u16;
    let plot = Rect {
        y: inner.y + n,
        height: inner.height - n,
        ..inner
    };
    let Some((mut x0, mut x1)) = state.x_view(&model) else {
        let msg = if all.curves.is_empty() {
            "no loss logged and nothing evaluated yet: Enter evaluates the cursor's window, s sweeps"
        } else {
            "every series is hidden: 1–9 (legend numbers) and v show them again"
        };
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
    let ticks = y_ticks(&model, y0, y1, (graph_h as usize / 2).clamp(3, 8));
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

    // Owned point lists first (datasets borrow them): lines, then markers on top.
    // Train curves end at the top edge where the warm-up is clipped; eval curves are lines only
    // between neighbouring evaluated checkpoints, with a marker at every evaluated point.
    let mut lines: Vec<(Points, Style)> = Vec::new();
    let mut markers: Vec<(Points, Style, char)> = Vec::new();
    let mut clipped: Vec<f64> = Vec::new();
    for c in &model.curves {
        let style = theme.curve(c.color);
        match c.kind {
            CurveKind::TrainRaw | CurveKind::TrainSmooth => {
                let v = visible(&model, &c.points, x0, x1);
                clipped.extend(
                    v.iter()
                        .filter(|p| p.0 >= x0 && p.0 <= x1 && p.1 > y1)
                        .map(|p| p.0),
                );
                let v = decimate(&v, x0, x1, graph.width as usize * 2);
                for piece in clip_above(&v, y1) {
                    lines.push((piece, style));
                }
            }
            CurveKind::EvalRaw | CurveKind::Average => {
                for seg in c.segments() {
                    let v = visible(&model, seg, x0, x1);
                    if v.len() >= 2 {
                        lines.push((v, style));
                    }
                }
                let pts: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .filter(|p| p.0 >= x0 && p.0 <= x1)
                    .filter_map(|&(x, y)| Some((x, model.y_value(y)?)))
                    .collect();
                markers.push((pts, style, Theme::marker(c.color)));
            }
        }
    }
    let mut datasets: Vec<Dataset> = lines
        .iter()
        .map(|(pts, style)| {
            Dataset::default()
                .data(pts)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(*style)
        })
        .collect();
    datasets.extend(markers.iter().map(|(pts, style, glyph)| {
        Dataset::default()
            .data(pts)
            .marker(Marker::Custom(*glyph))
            .graph_type(GraphType::Scatter)
            .style(*style)
    }));
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
    // The warm-up loss left off the top: an arrow over each clipped column and a note.
    if let (Some(&first), Some(&last)) = (
        clipped.iter().min_by(|a, b| a.total_cmp(b)),
        clipped.iter().max_by(|a, b| a.total_cmp(b)),
    ) {
        let col =
            |x: f64| graph.x + (((x - x0) / (x1 - x0)) * (graph.width - 1) as f64).round() as u16;
        let (c0, c1) = (col(first), col(last).min(graph.right() - 1));
        for c in c0..=c1 {
            buf[(c, graph.y)].set_symbol("↑").set_style(theme.faint());
        }
        let top = model
            .curves
            .iter()
            .filter(|c| matches!(c.kind, CurveKind::TrainRaw))
            .flat_map(|c| {
                c.points
                    .iter()
                    .filter(|p| p.0 >= x0 && p.0 <= x1)
                    .map(|p| p.1)
            })
            .fold(f64::NEG_INFINITY, f64::max);
        let note = if top.is_finite() && !model.log_y {
            format!(" warm-up loss off the top (to {})", short_number(top))
        } else {
            " warm-up loss off the top".to_string()
        };
        let room = graph.right().saturating_sub(c1 + 1) as usize;
        if room > 8 {
            buf.set_string(c1 + 1, graph.y, super::fit(&note, room), theme.faint());
        }
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
