//! Colours and text styles; `NO_COLOR` turns every colour off (emphasis by reverse/bold only).

use lawa::chart::palette;
use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

/// Curve colours by palette slot (`lawa::chart::palette::slot`): the same hues in the same
/// slots as the exported PNG/SVG. The averages' colours are far from the train loss's (grey,
/// cyan), the raw eval's (yellow) and the spike shading's (red), and from each other.
/// Averages use 256-colour indices (the same on every terminal, unlike the 16 named colours
/// that themes redefine: a theme's light green can read as cyan).
const PALETTE: [Color; palette::SLOTS] = [
    Color::DarkGray,     // train loss, raw
    Color::Cyan,         // train loss, smoothed
    Color::Yellow,       // raw checkpoint eval
    Color::Indexed(77),  // averages: green (#5fd75f)
    Color::Indexed(207), // magenta (#ff5fff)
    Color::Indexed(99),  // violet (#875fff)
    Color::Indexed(253), // white (#dadada)
    Color::Indexed(180), // tan (#d7af87)
];

/// Marker glyphs of the eval series: the raw checkpoints' dot, then the averages' shapes, light
/// ones (a series evaluated at every checkpoint is a row of them). Seven shapes against five
/// average colours: a colour and shape pair repeats only after 35 schemes.
const MARKERS: [char; 8] = ['•', '◆', '×', '▪', '○', '+', '◇', '▴'];

/// The spike shading's background.
const SPIKE_BG: Color = Color::Indexed(52);

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
        self.fg(PALETTE[palette::slot(index)])
    }

    /// The marker of the eval curve with colour index `index` (`Curve::color`), in the chart and
    /// its legend, with or without colour: with `NO_COLOR` the shape is what tells series apart.
    pub fn marker(index: usize) -> char {
        if index < palette::FIRST_AVERAGE {
            MARKERS[0]
        } else {
            MARKERS[1 + (index - palette::FIRST_AVERAGE) % (MARKERS.len() - 1)]
        }
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
        self.color.then_some(SPIKE_BG)
    }

    /// Background of chart columns inside the averaging window.
    pub fn window_bg(&self) -> Option<Color> {
        self.color.then_some(Color::Indexed(236))
    }

    pub fn cursor_bg(&self) -> Option<Color> {
        self.color.then_some(Color::Indexed(240))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_never_take_a_train_raw_or_spike_colour() {
        let t = Theme { color: true };
        let reserved = [
            PALETTE[palette::TRAIN_RAW],
            PALETTE[palette::TRAIN_SMOOTH],
            PALETTE[palette::EVAL_RAW],
            SPIKE_BG,
            Color::Red,
            Color::LightRed,
            Color::LightCyan,
            Color::LightBlue,
        ];
        let mut seen = Vec::new();
        // Many more averages than colours: each still gets an average's colour.
        for i in palette::FIRST_AVERAGE..palette::FIRST_AVERAGE + 3 * palette::AVERAGES {
            let c = t.curve(i).fg.expect("a colour");
            assert!(!reserved.contains(&c), "average {i} got {c:?}");
            if i < palette::SLOTS {
                assert!(!seen.contains(&c), "average {i} repeats {c:?}");
                seen.push(c);
            }
        }
        assert_eq!(t.curve(palette::EVAL_RAW).fg, Some(Color::Yellow));
        assert_eq!(
            Theme { color: false }.curve(4).fg,
            None,
            "NO_COLOR: no colour"
        );
    }
}
