//! The window and weights panel: scheme and its parameter, the window's steps, the spike-aware
//! toggle, eval settings, and a bar chart of the weight each checkpoint gets.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use lawa::average::Scheme;

use super::panel_block;
use crate::tui::state::State;
use crate::tui::theme::Theme;

const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

fn scheme_text(s: &Scheme) -> String {
    match s {
        Scheme::Uniform => "uniform (LAWA)".into(),
        Scheme::Ema { half_life } => format!("EMA, half-life {half_life} steps"),
        Scheme::Linear => "linear ramp".into(),
        Scheme::Custom(w) => format!("custom ({} weights)", w.len()),
    }
}

/// Which set of results is shown: the eval data and the resolved settings, in full.
pub fn settings_text(state: &State) -> String {
    state.eval.settings_line(state.metric)
}

/// Vertical bars, one per weight, scaled to the largest, in `area`.
pub fn bars(buf: &mut Buffer, area: Rect, weights: &[f64], style: ratatui::style::Style) {
    if area.width == 0 || area.height == 0 || weights.is_empty() {
        return;
    }
    let width = area.width as usize;
    // The newest weights matter most: when there are more than columns, show the last ones.
    let shown = &weights[weights.len().saturating_sub(width)..];
    let slot = (width / shown.len()).max(1);
    let bar_w = if slot >= 3 { (slot - 1).min(4) } else { 1 };
    let max = shown.iter().cloned().fold(0.0f64, f64::max);
    if max <= 0.0 {
        return;
    }
    let h8 = area.height as usize * 8;
    for (i, w) in shown.iter().enumerate() {
        let eighths = ((w / max) * h8 as f64).round() as usize;
        let x0 = area.x + (i * slot) as u16;
        for dx in 0..bar_w as u16 {
            let x = x0 + dx;
            if x >= area.right() {
                break;
            }
            for r in 0..area.height as usize {
                let level = eighths.saturating_sub(r * 8).min(8);
                let y = area.bottom() - 1 - r as u16;
                buf[(x, y)].set_symbol(EIGHTHS[level]).set_style(style);
            }
        }
    }
}

/// The last `max` weights as one row of bars scaled to the largest (`▂▄▆█`).
pub fn sparkline(weights: &[f64], max: usize) -> String {
    let shown = &weights[weights.len().saturating_sub(max)..];
    let top = shown.iter().cloned().fold(0.0f64, f64::max);
    if top <= 0.0 {
        return String::new();
    }
    shown
        .iter()
        .map(|w| EIGHTHS[((w / top) * 8.0).round().clamp(0.0, 8.0) as usize])
        .collect()
}

/// Words of `s` on lines of at most `width` characters (a longer word is cut into pieces).
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            lines.push(word[..width].iter().collect());
            word.drain(..width);
        }
        let n = cur.chars().count();
        if n > 0 && n + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.extend(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) {
    let block = panel_block(" Window & weights ".into(), false, theme);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 10 {
        return;
    }
    let steps = state.window_steps();
    let weights = state.window_weights(&steps);
    let key = theme.key();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("w ", key),
            Span::raw(scheme_text(&state.scheme)),
        ]),
        Line::from(vec![
            Span::styled("[ ] ", key),
            Span::raw(format!("k {}  ", state.window_k())),
            Span::styled("p ", key),
            Span::raw("edit"),
        ]),
        Line::from(match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => format!("steps {a}..{b} ({})", steps.len()),
            _ => "no checkpoints".into(),
        }),
        Line::from(vec![
            Span::styled("a ", key),
            Span::raw(format!(
                "spike-aware {}",
                if state.spike_aware { "on" } else { "off" }
            )),
        ]),
    ];
    // The settings of the results shown, wrapped so that all of it stays visible.
    for l in wrap(
        &format!("eval {}", settings_text(state)),
        inner.width as usize,
    ) {
        lines.push(Line::from(Span::styled(l, theme.faint())));
    }
    let text_rows = (lines.len() as u16).min(inner.height);
    for (i, l) in lines.iter().take(text_rows as usize).enumerate() {
        buf.set_line(inner.x, inner.y + i as u16, l, inner.width);
    }
    let bar_area = Rect {
        y: inner.y + text_rows,
        height: inner.height - text_rows,
        ..inner
    };
    match weights {
        Ok(w) => bars(buf, bar_area, &w, theme.in_window()),
        Err(err) if bar_area.height > 0 => {
            buf.set_string(
                bar_area.x,
                bar_area.y,
                super::fit(&err, bar_area.width as usize),
                theme.error(),
            );
        }
        Err(_) => {}
    }
}
