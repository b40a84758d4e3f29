//! The spikes panel: detected loss spikes with their step range and height; `n`/`N` jump.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::Widget;

use super::{fit, panel_block};
use crate::tui::state::{Focus, State};
use crate::tui::theme::Theme;

/// Draws the panel; returns the rectangle of its rows (for the mouse).
pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Rect {
    let block = panel_block(
        format!(" Spikes {} ", state.spikes.len()),
        state.focus == Focus::Spikes,
        theme,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 6 {
        return Rect::default();
    }
    // A spike the run made on purpose is said plainly, above the list, wrapped to be read
    // whole; the spikes keep a row each (one at least).
    let mut inner = inner;
    let keep = state.spikes.len().clamp(1, 3) as u16;
    let room = inner.height.saturating_sub(keep) as usize;
    let mut lines: Vec<String> = state
        .traj
        .notes
        .iter()
        .flat_map(|n| super::window::wrap(&lawa::display::escape(n), inner.width as usize))
        .collect();
    if lines.len() > room {
        lines.truncate(room);
        if let Some(l) = lines.last_mut() {
            *l = fit(&format!("{l}…"), inner.width as usize);
        }
    }
    for l in &lines {
        buf.set_string(inner.x, inner.y, l, theme.faint());
        inner.y += 1;
        inner.height -= 1;
    }
    if state.spikes.is_empty() {
        buf.set_string(
            inner.x,
            inner.y,
            fit("none detected", inner.width as usize),
            theme.faint(),
        );
        return inner;
    }
    let h = inner.height as usize;
    let offset = (state.spike_sel + 1).saturating_sub(h);
    for (row, (i, r)) in state
        .spikes
        .iter()
        .enumerate()
        .skip(offset)
        .take(h)
        .enumerate()
    {
        let text = fit(
            &format!("{}..{} +{:.2}", r.start_step, r.end_step, r.height),
            inner.width as usize,
        );
        let style = if i == state.spike_sel && state.focus == Focus::Spikes {
            theme.selected()
        } else {
            theme.error()
        };
        buf.set_string(inner.x, inner.y + row as u16, text, style);
    }
    inner
}
