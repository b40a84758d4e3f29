//! The status bar: the keys that matter now, or the value being edited, and the last message.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::tui::state::{Focus, State};
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
        let keys: &[(&str, &str)] = match state.focus {
            Focus::Jobs => &[
                ("↑↓", "job"),
                ("c", "cancel"),
                ("C", "cancel all"),
                ("Tab", "focus"),
                ("?", "help"),
                ("q", "quit"),
            ],
            Focus::Spikes => &[
                ("↑↓", "spike"),
                ("⏎", "go"),
                ("a", "spike-aware"),
                ("Tab", "focus"),
                ("?", "help"),
                ("q", "quit"),
            ],
            Focus::Checkpoints => &[
                ("⏎", "avg+eval"),
                ("s", "sweep"),
                ("[]", "k"),
                ("w", "scheme"),
                ("e", "export"),
                ("?", "help"),
                ("q", "quit"),
            ],
        };
        let mut spans = Vec::new();
        for (k, what) in keys {
            spans.push(Span::styled(*k, key));
            spans.push(Span::raw(format!(" {what} ")));
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
