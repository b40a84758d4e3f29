//! The whole screen: layout of the panels, drawn from the state; returns where things went.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};

use super::panels;
use super::state::{Areas, State};
use super::theme::Theme;

/// Draws every panel into `buf` and returns the areas the mouse needs.
pub fn draw(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Areas {
    let [main, status] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    let bottom_h = match main.height {
        h if h >= 30 => 11,
        h if h >= 20 => 9,
        h if h >= 14 => 7,
        _ => 0,
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(bottom_h)]).areas(main);
    let list_w = if top.width >= 110 {
        50
    } else {
        36.min(top.width / 2)
    };
    let [list, chart] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Min(0)]).areas(top);
    let spikes_w = if bottom.width >= 100 { 26 } else { 20 };
    let [window, jobs, spikes] = Layout::horizontal([
        Constraint::Length(30.min(bottom.width / 3)),
        Constraint::Min(0),
        Constraint::Length(spikes_w.min(bottom.width / 4)),
    ])
    .areas(bottom);

    let list_rows = panels::checkpoints::render(buf, list, state, theme);
    let drawn = panels::chart::render(buf, chart, state, theme);
    let mut jobs_rows = Rect::default();
    let mut spikes_rows = Rect::default();
    if bottom.height > 0 {
        panels::window::render(buf, window, state, theme);
        jobs_rows = panels::jobs::render(buf, jobs, state, theme);
        spikes_rows = panels::spikes::render(buf, spikes, state, theme);
    }
    panels::status::render(buf, status, state, theme);
    if state.help {
        panels::help::render(buf, area, theme);
    }
    Areas {
        list_rows,
        graph: drawn.graph,
        graph_x: drawn.x_view,
        jobs_rows,
        spikes_rows,
    }
}
