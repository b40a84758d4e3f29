//! The whole screen: layout of the panels, drawn from the state; returns where things went.
//!
//! Two layouts. The full one: checkpoint list and chart on top, the window, jobs and spikes
//! panels below. On a small terminal (`compact`), the chart gets the rows: the list keeps its
//! priority columns (step, raw and averaged perplexity), and the bottom panels become one line
//! each under the eval settings, which are always shown whole; the focused jobs or spikes
//! panel opens up (a third of the screen at most).

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};

use super::panels;
use super::panels::summary;
use super::state::{Areas, Focus, JobStatus, State};
use super::theme::Theme;

/// Below this many columns or rows the screen is compact.
pub const COMPACT_W: u16 = 100;
pub const COMPACT_H: u16 = 30;

pub fn compact(area: Rect) -> bool {
    area.width < COMPACT_W || area.height < COMPACT_H
}

/// Widths of the compact list: step, raw and averaged perplexity (and the job mark), or, when
/// the chart would be narrower than `CHART_MIN_W`, step and raw.
const LIST_PRIORITY_W: u16 = 2 + 9 + 1 + 7 + 1 + 7 + 1 + 1;
const LIST_STEP_RAW_W: u16 = 2 + 9 + 1 + 7 + 1 + 1;
const CHART_MIN_W: u16 = 44;

/// Draws every panel into `buf` and returns the areas the mouse needs.
pub fn draw(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Areas {
    let areas = if compact(area) {
        draw_compact(buf, area, state, theme)
    } else {
        draw_full(buf, area, state, theme)
    };
    if state.help {
        panels::help::render(buf, area, theme);
    }
    areas
}

fn draw_full(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Areas {
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
    Areas {
        list_rows,
        graph: drawn.graph,
        graph_x: drawn.x_view,
        jobs_rows,
        spikes_rows,
        ..Areas::default()
    }
}

/// Rows the focused jobs panel asks for: its jobs, a Slurm line or two, the highlighted failed
/// job's message, the border.
fn jobs_panel_rows(state: &State, width: u16) -> u16 {
    let message = match state.selected_job().map(|j| &j.status) {
        Some(JobStatus::Failed(e)) => {
            panels::window::wrap(e, width.saturating_sub(2) as usize).len() + 1
        }
        _ => 0,
    };
    (state.jobs.len().max(1) + state.cluster.len().min(2) + message + 2) as u16
}

/// Rows the focused spikes panel asks for: the note wrapped, a row per spike, the border.
fn spikes_panel_rows(state: &State, width: u16) -> u16 {
    let note: usize = state
        .traj
        .notes
        .iter()
        .map(|n| panels::window::wrap(n, width.saturating_sub(2) as usize).len())
        .sum();
    (note + state.spikes.len().max(1) + 2) as u16
}

fn draw_compact(buf: &mut Buffer, area: Rect, state: &State, theme: &Theme) -> Areas {
    let [main, status] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    // Rows by priority: the chart keeps 12 (8 below 19 rows); then the eval settings
    // whole, the window line, the focused panel opened (up to a third of the screen), the jobs
    // and spikes lines.
    let keep = if main.height >= 18 { 12 } else { 8 };
    let mut room = main.height.saturating_sub(keep);
    let mut take = |want: u16| {
        let t = want.min(room);
        room -= t;
        t
    };
    let eval_h = take(summary::eval_lines(state, main.width).len() as u16);
    let window_h = take(1);
    let open = (main.height / 3).max(4);
    let (mut jobs_h, mut spikes_h) = (0, 0);
    match state.focus {
        Focus::Jobs => jobs_h = take(jobs_panel_rows(state, main.width).clamp(4, open)),
        Focus::Spikes => spikes_h = take(spikes_panel_rows(state, main.width).clamp(4, open)),
        Focus::Checkpoints => {}
    }
    if state.focus != Focus::Jobs {
        jobs_h = take(1);
    }
    if state.focus != Focus::Spikes {
        spikes_h = take(1);
    }
    let [top, eval, window, jobs, spikes] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(eval_h),
        Constraint::Length(window_h),
        Constraint::Length(jobs_h),
        Constraint::Length(spikes_h),
    ])
    .areas(main);
    let list_w = if top.width >= LIST_PRIORITY_W + CHART_MIN_W {
        LIST_PRIORITY_W
    } else if top.width >= LIST_STEP_RAW_W + 30 {
        LIST_STEP_RAW_W
    } else {
        top.width / 2
    };
    let [list, chart] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Min(0)]).areas(top);

    let list_rows = panels::checkpoints::render(buf, list, state, theme);
    let drawn = panels::chart::render(buf, chart, state, theme);
    summary::render_eval(buf, eval, state, theme);
    summary::render_window(buf, window, state, theme);
    let mut areas = Areas {
        list_rows,
        graph: drawn.graph,
        graph_x: drawn.x_view,
        ..Areas::default()
    };
    // A panel with no row left (a tiny terminal) is not drawn.
    match (jobs.height, state.focus) {
        (0, _) => {}
        (_, Focus::Jobs) => areas.jobs_rows = panels::jobs::render(buf, jobs, state, theme),
        _ => {
            summary::render_jobs(buf, jobs, state, theme);
            areas.jobs_line = jobs;
        }
    }
    match (spikes.height, state.focus) {
        (0, _) => {}
        (_, Focus::Spikes) => areas.spikes_rows = panels::spikes::render(buf, spikes, state, theme),
        _ => {
            summary::render_spikes(buf, spikes, state, theme);
            areas.spikes_line = spikes;
        }
    }
    panels::status::render(buf, status, state, theme);
    areas
}
