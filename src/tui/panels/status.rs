//! The status bar: the keys that matter now, or the value being edited, and the last message.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::tui::keys;
use crate::tui::state::State;
use crate::tui::theme::Theme;

pub fn render(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let key = theme.key();
    let line = if let Some(edit) = &state.edit {
        Line::from(vec![
            Span::styled(format!("{}: ", state.edit_prompt(edit.field)), key),
            Span::raw(edit.buffer.clone()),
            Span::styled("█", theme.faint()),
            Span::styled("  Enter ok · Esc cancel", theme.faint()),
        ])
    } else {
        // The hints come from the key table: a hint shows the keys that do what it says.
        let mut spans = Vec::new();
        for h in keys::hints(state.focus) {
            spans.push(Span::styled(keys::hint_keys(h), key));
            spans.push(Span::raw(format!(" {} ", h.label)));
        }
        if let Some(p) = state.sweep_progress() {
            spans.push(Span::styled("│ ", theme.faint()));
            spans.push(Span::styled(p, theme.busy()));
            spans.push(Span::raw(" "));
        }
        if let Some(m) = &state.message {
            spans.push(Span::styled("│ ", theme.faint()));
            spans.push(Span::raw(lawa::display::escape(m).into_owned()));
        }
        Line::from(spans)
    };
    buf.set_line(area.x, area.y, &line, area.width);
}
