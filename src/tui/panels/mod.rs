//! One render function per panel, each drawing into a buffer area from the explorer state.

pub mod chart;
pub mod checkpoints;
pub mod help;
pub mod jobs;
pub mod spikes;
pub mod status;
pub mod summary;
pub mod window;

use ratatui::layout::Rect;
use ratatui::widgets::{Block, BorderType, Borders};

use super::theme::Theme;

/// The bordered block every panel sits in.
pub fn panel_block<'a>(title: String, focused: bool, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(theme.border(focused))
        .title(title)
        .title_style(theme.title())
}

/// `s` cut to `width` characters, with `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    let s = &*lawa::display::escape(s); // file-derived text: no control characters drawn raw
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Perplexity in a fixed small width.
pub fn fmt_ppl(p: f64) -> String {
    if !p.is_finite() {
        "inf".into()
    } else if p < 100.0 {
        format!("{p:.2}")
    } else if p < 10_000.0 {
        format!("{p:.1}")
    } else {
        format!("{p:.2e}")
    }
}

/// `1m05s`, `42s`, `1h02m`.
pub fn fmt_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The rows inside a bordered panel below its header line.
pub fn rows_below_header(inner: Rect) -> Rect {
    Rect {
        y: inner.y.saturating_add(1),
        height: inner.height.saturating_sub(1),
        ..inner
    }
}
