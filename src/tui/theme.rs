//! Colours and text styles; `NO_COLOR` turns every colour off (emphasis by reverse/bold only).

use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

/// Curve colours by palette index (see `lawa::export::chart::Curve::color`).
const PALETTE: [Color; 10] = [
    Color::DarkGray,
    Color::Cyan,
    Color::Yellow,
    Color::LightGreen,
    Color::LightMagenta,
    Color::LightBlue,
    Color::LightRed,
    Color::Green,
    Color::Magenta,
    Color::White,
];

impl Theme {
    /// Colour unless `NO_COLOR` is set to something non-empty (<https://no-color.org>).
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    #[cfg(test)]
    pub fn plain() -> Self {
        Theme { color: false }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    pub fn curve(&self, index: usize) -> Style {
        self.fg(PALETTE[index % PALETTE.len()])
    }

    pub fn faint(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }

    pub fn title(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    pub fn header(&self) -> Style {
        self.fg(Color::Gray).add_modifier(Modifier::BOLD)
    }

    pub fn border(&self, focused: bool) -> Style {
        match (focused, self.color) {
            (true, true) => Style::default().fg(Color::Cyan),
            (true, false) => Style::default().add_modifier(Modifier::BOLD),
            (false, _) => self.faint(),
        }
    }

    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    pub fn in_window(&self) -> Style {
        self.fg(Color::LightCyan)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::LightRed)
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::LightGreen)
    }

    pub fn busy(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Background of chart columns inside a spike region (none without colour).
    pub fn spike_bg(&self) -> Option<Color> {
        self.color.then_some(Color::Indexed(52))
    }

    /// Background of chart columns inside the averaging window.
    pub fn window_bg(&self) -> Option<Color> {
        self.color.then_some(Color::Indexed(236))
    }

    pub fn cursor_bg(&self) -> Option<Color> {
        self.color.then_some(Color::Indexed(240))
    }
}
