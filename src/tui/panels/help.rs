//! The help overlay (`?`): every key and mouse action.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};

use super::panel_block;
use crate::tui::theme::Theme;

use crate::tui::keys::{KeyRow, KEYS};

pub fn render(buf: &mut Buffer, area: Rect, theme: &Theme) {
    let key_w = KEYS
        .iter()
        .map(|k| k.keys.chars().count())
        .max()
        .unwrap_or(0);
    let text_w = KEYS
        .iter()
        .map(|k| k.what.chars().count())
        .max()
        .unwrap_or(0);
    // One column where the terminal is tall enough, else two (descriptions cut to fit): no
    // key may be missing from its own help.
    let cols = if KEYS.len() + 2 <= area.height as usize {
        1
    } else {
        2
    };
    let per_col = KEYS.len().div_ceil(cols);
    let w = if cols == 1 {
        ((key_w + text_w + 5) as u16).min(area.width)
    } else {
        area.width
    };
    let h = (per_col as u16 + 2).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    Clear.render(r, buf);
    let block = panel_block(" Keys (any key closes) ".into(), true, theme);
    let inner = block.inner(r);
    block.render(r, buf);
    let col_w = (inner.width.saturating_sub(1) / cols as u16) as usize;
    let rows = inner.height as usize;
    for (i, KeyRow { keys: k, what, .. }) in KEYS.iter().enumerate() {
        let (col, row) = (i / per_col, i % per_col);
        if row >= rows {
            continue;
        }
        // Each column is as wide as its own longest key.
        let kw = KEYS[col * per_col..((col + 1) * per_col).min(KEYS.len())]
            .iter()
            .map(|k| k.keys.chars().count())
            .max()
            .unwrap_or(key_w);
        let text_room = col_w.saturating_sub(kw + 3);
        let line = Line::from(vec![
            Span::styled(format!("{k:<kw$}"), theme.key()),
            Span::raw("  "),
            Span::raw(super::fit(what, text_room)),
        ]);
        buf.set_line(
            inner.x + 1 + (col * col_w) as u16,
            inner.y + row as u16,
            &line,
            col_w as u16,
        );
    }
    if per_col > rows && rows > 0 {
        buf.set_string(
            inner.x + 1,
            inner.y + rows as u16 - 1,
            super::fit(
                "… more keys: make the terminal taller",
                inner.width as usize - 1,
            ),
            theme.faint(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::KEYS;

    /// The README's key table is the key table: one source, no drift.
    #[test]
    fn the_readme_key_table_is_the_help_table() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("| key | action |\n|---|---|\n")
            .expect("the README has a key table");
        let rows: Vec<(String, String)> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
                (cells[0].trim().to_string(), cells[1].trim().to_string())
            })
            .collect();
        let want: Vec<(String, String)> = KEYS
            .iter()
            .map(|r| (r.keys.to_string(), r.what.to_string()))
            .collect();
        assert_eq!(rows, want, "README key table = tui::keys::KEYS");
    }
}
