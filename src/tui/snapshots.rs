//! Snapshot tests: each panel and the whole screen rendered into ratatui's `TestBackend` /
//! a `Buffer` from the small real trajectory of `testdata`, compared with the text files in
//! `tests/snapshots/`. `UPDATE_SNAPSHOTS=1 cargo test --bin lawa snapshots` rewrites them
//! (review the diff before committing).

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::Terminal;

use lawa::jobs::{JobEvent, Target};
use lawa::progress::{Progress, Unit};

use super::panels;
use super::state::{update, Event, Focus, State};
use super::testdata;
use super::theme::Theme;
use super::ui;

/// The buffer as text, one line per row, trailing blanks trimmed.
pub fn buffer_text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"))
}

fn check(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "snapshot {name} differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

fn screen(state: &mut State, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = Theme::plain();
    let mut areas = state.areas;
    term.draw(|f| {
        let area = f.area();
        areas = ui::draw(f.buffer_mut(), area, state, &theme);
    })
    .unwrap();
    state.areas = areas;
    buffer_text(term.backend().buffer())
}

fn panel(w: u16, h: u16, draw: impl FnOnce(&mut Buffer, Rect)) -> String {
    let area = Rect::new(0, 0, w, h);
    let mut buf = Buffer::empty(area);
    draw(&mut buf, area);
    buffer_text(&buf)
}

/// The test state with jobs in every status.
fn busy_state() -> State {
    let mut s = testdata::state();
    let ev = |s: &mut State, e| {
        update(s, Event::Job(e));
    };
    let window = s.window_target(s.cursor).unwrap();
    ev(
        &mut s,
        JobEvent::Queued {
            id: 1,
            target: Target::Checkpoint { step: 1200 },
        },
    );
    ev(
        &mut s,
        JobEvent::Queued {
            id: 2,
            target: window,
        },
    );
    ev(
        &mut s,
        JobEvent::Queued {
            id: 3,
            target: Target::Checkpoint { step: 200 },
        },
    );
    ev(
        &mut s,
        JobEvent::Queued {
            id: 4,
            target: Target::Checkpoint { step: 400 },
        },
    );
    ev(&mut s, JobEvent::Started { id: 3 });
    ev(
        &mut s,
        JobEvent::Failed {
            id: 3,
            error: "/runs/tiny-run/step200/model.safetensors: truncated file".into(),
        },
    );
    ev(&mut s, JobEvent::Cancelled { id: 4 });
    ev(&mut s, JobEvent::Started { id: 1 });
    ev(
        &mut s,
        JobEvent::Progress {
            id: 1,
            progress: Progress {
                stage: "eval".into(),
                done: 3,
                total: Some(8),
                unit: Unit::Windows,
                detail: None,
            },
            elapsed: std::time::Duration::from_secs(6),
        },
    );
    s
}

#[test]
fn whole_screen_80x24() {
    let mut s = busy_state();
    check("screen_80x24", &screen(&mut s, 80, 24));
}

#[test]
fn whole_screen_60x20() {
    let mut s = busy_state();
    check("screen_60x20", &screen(&mut s, 60, 20));
}

#[test]
fn whole_screen_80x24_jobs_focused() {
    let mut s = busy_state();
    s.focus = Focus::Jobs;
    check("screen_80x24_jobs", &screen(&mut s, 80, 24));
}

#[test]
fn whole_screen_120x36() {
    let mut s = busy_state();
    check("screen_120x36", &screen(&mut s, 120, 36));
}

#[test]
fn whole_screen_log_tokens_zoomed_spike_aware_then_help() {
    let mut s = testdata::state();
    let key = |s: &mut State, c: char| {
        update(s, Event::Key(KeyEvent::from(KeyCode::Char(c))));
    };
    for c in "xlia".chars() {
        key(&mut s, c);
    }
    check("screen_log_tokens_zoomed", &screen(&mut s, 100, 30));
    key(&mut s, '?');
    check("screen_help", &screen(&mut s, 100, 30));
}

#[test]
fn checkpoints_panel() {
    let mut s = busy_state();
    s.cursor = 5;
    s.k = 3;
    let text = panel(36, 10, |b, a| {
        panels::checkpoints::render(b, a, &s, &Theme::plain());
    });
    check("panel_checkpoints", &text);
}

#[test]
fn chart_panel() {
    let s = testdata::state();
    let text = panel(70, 18, |b, a| {
        panels::chart::render(b, a, &s, &Theme::plain());
    });
    check("panel_chart", &text);
}

#[test]
fn window_panel_for_each_scheme() {
    let mut s = testdata::state();
    let mut all = String::new();
    for _ in 0..4 {
        all.push_str(&panel(30, 9, |b, a| {
            panels::window::render(b, a, &s, &Theme::plain());
        }));
        update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char('w'))));
    }
    check("panel_window", &all);
}

#[test]
fn jobs_panel() {
    let mut s = busy_state();
    s.focus = Focus::Jobs;
    let text = panel(60, 6, |b, a| {
        panels::jobs::render(b, a, &s, &Theme::plain());
    });
    check("panel_jobs", &text);
}

#[test]
fn a_slurm_sweep_is_a_line_above_the_local_jobs() {
    use lawa::sweep::slurm::{SweepProgress, TaskState, TaskStatus};
    let mut s = busy_state();
    let task = |index, state, done| TaskStatus {
        index,
        state,
        done,
        windows: 10,
    };
    update(
        &mut s,
        Event::Cluster(vec![SweepProgress {
            id: "1700000000-42".into(),
            job_id: 12,
            tasks: vec![
                task(0, TaskState::Done, 10),
                task(1, TaskState::Running, 4),
                task(2, TaskState::Failed, 2),
            ],
            queue_error: None,
        }]),
    );
    let text = panel(70, 6, |b, a| {
        panels::jobs::render(b, a, &s, &Theme::plain());
    });
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].contains("slurm 12 ")
            && lines[1].contains("16/30 · 1/3 tasks done · 1 running · 1 failed"),
        "{text}"
    );
    // The local jobs follow on the next rows.
    assert!(lines[2].contains("step"), "{text}");
}

#[test]
fn a_job_preparing_gpu_kernels_says_so() {
    let mut s = busy_state();
    update(
        &mut s,
        Event::Job(JobEvent::Progress {
            id: 1,
            progress: Progress {
                stage: "GPU".into(),
                done: 0,
                total: None,
                unit: Unit::Steps,
                detail: Some(lawa::device::PREPARING.into()),
            },
            elapsed: std::time::Duration::from_secs(2),
        }),
    );
    let text = panel(100, 6, |b, a| {
        panels::jobs::render(b, a, &s, &Theme::plain());
    });
    assert!(
        text.contains("preparing GPU kernels (first use on this machine)"),
        "{text}"
    );
}

#[test]
fn spikes_and_status_panels() {
    let s = testdata::state();
    let mut text = panel(24, 4, |b, a| {
        panels::spikes::render(b, a, &s, &Theme::plain());
    });
    text.push_str(&panel(80, 1, |b, a| {
        panels::status::render(b, a, &s, &Theme::plain());
    }));
    check("panel_spikes_status", &text);
}

#[test]
fn the_screen_fits_80x24_and_survives_tiny_terminals() {
    let mut s = busy_state();
    for (w, h) in [(80, 24), (40, 10), (20, 5), (1, 1), (200, 60)] {
        let text = screen(&mut s, w, h);
        assert_eq!(text.lines().count(), h as usize);
    }
}

#[test]
fn colours_shade_spikes_and_no_color_has_none() {
    let s = testdata::state();
    let area = Rect::new(0, 0, 70, 18);
    let mut buf = Buffer::empty(area);
    let color = Theme { color: true };
    let drawn = panels::chart::render(&mut buf, area, &s, &color);
    let g = drawn.graph;
    let spike_bg = color.spike_bg().unwrap();
    let shaded = (g.left()..g.right())
        .filter(|&x| buf[(x, g.top())].bg == spike_bg)
        .count();
    assert!(shaded > 0, "a spike region is shaded");
    let mut plain = Buffer::empty(area);
    panels::chart::render(&mut plain, area, &s, &Theme::plain());
    assert!(plain
        .content
        .iter()
        .all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset));
}

#[test]
fn the_checkpoint_list_shows_the_change_against_raw() {
    let mut s = testdata::state();
    for _ in 0..2 {
        update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char('-'))));
    }
    assert_eq!(s.series().to_string(), "uniform k=3");
    let text = panel(50, 16, |b, a| {
        panels::checkpoints::render(b, a, &s, &Theme::plain());
    });
    assert!(text.lines().nth(1).unwrap().contains("Δ%"), "{text}");
    // At 700 the average's NLL is 0.15 below raw's: exp(−0.15) − 1 = −13.9%.
    let row = text.lines().find(|l| l.contains(" 700 ")).unwrap();
    assert!(row.contains("−14%"), "{text}");
    // A step with an average and no raw result has no change.
    let row = text.lines().find(|l| l.contains(" 800 ")).unwrap();
    assert!(!row.contains('%'), "{text}");
}

#[test]
fn a_narrow_checkpoint_list_keeps_every_step_whole() {
    let s = testdata::state();
    for w in [24u16, 28, 36, 50] {
        let text = panel(w, 15, |b, a| {
            panels::checkpoints::render(b, a, &s, &Theme::plain());
        });
        // Rows 2.. are checkpoints 100.. in order: each shows its step in full.
        for (row, step) in text.lines().skip(2).zip(testdata::STEPS) {
            assert!(row.contains(&format!(" {step} ")), "width {w}:\n{text}");
        }
    }
}

#[test]
fn the_help_shows_every_key_at_80x24() {
    for (w, h) in [(80u16, 24u16), (120, 36)] {
        let text = panel(w, h, |b, a| panels::help::render(b, a, &Theme::plain()));
        for r in crate::tui::keys::KEYS {
            let k = r.keys;
            assert!(text.contains(k), "{w}x{h}: key {k:?} missing:\n{text}");
        }
    }
}

/// Cells of the graph drawn in `color`.
fn cells_in(buf: &Buffer, graph: Rect, color: ratatui::style::Color) -> usize {
    let mut n = 0;
    for y in graph.top()..graph.bottom() {
        for x in graph.left()..graph.right() {
            if buf[(x, y)].fg == color {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_hidden_series_leaves_the_chart_and_is_marked_in_the_legend() {
    let mut s = testdata::state();
    let theme = Theme { color: true };
    let area = Rect::new(0, 0, 90, 20);
    let avg = s
        .chart()
        .curves
        .iter()
        .find(|c| {
            c.series
                == Some(lawa::results::Series::average(
                    lawa::average::Scheme::Uniform,
                    3,
                    false,
                ))
        })
        .map(|c| theme.curve(c.color).fg.unwrap())
        .unwrap();
    let mut buf = Buffer::empty(area);
    let drawn = panels::chart::render(&mut buf, area, &s, &theme);
    assert!(cells_in(&buf, drawn.graph, avg) > 0, "the average is drawn");
    update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char('2'))));
    let mut buf = Buffer::empty(area);
    let drawn = panels::chart::render(&mut buf, area, &s, &theme);
    assert_eq!(cells_in(&buf, drawn.graph, avg), 0, "hidden: not drawn");
    let text = buffer_text(&buf);
    let legend = text.lines().nth(1).unwrap();
    assert!(legend.contains("2┈◆ uniform k=3"), "{legend}");
    assert!(legend.contains("1━• raw ckpt"), "{legend}");
    let x = legend.chars().position(|c| c == 'u').unwrap() as u16;
    assert!(buf[(x, 1)]
        .modifier
        .contains(ratatui::style::Modifier::CROSSED_OUT));
    // The train loss (v) is marked the same way.
    update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char('v'))));
    let text = panel(90, 20, |b, a| {
        panels::chart::render(b, a, &s, &Theme::plain());
    });
    assert!(
        text.lines().nth(1).unwrap().starts_with("│v┈ train"),
        "{text}"
    );
}

#[test]
fn the_legend_shows_the_smoothing_of_the_train_loss() {
    let mut s = testdata::state();
    let legend = |s: &State| {
        let text = panel(90, 20, |b, a| {
            panels::chart::render(b, a, s, &Theme::plain());
        });
        text.lines().nth(1).unwrap().to_string()
    };
    assert!(legend(&s).contains("train (EMA 0.60)"), "{}", legend(&s));
    update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char('<'))));
    let want = format!("train (EMA {:.2})", s.smoothing);
    assert_ne!(want, "train (EMA 0.60)");
    assert!(legend(&s).contains(&want), "{}", legend(&s));
}

#[test]
fn eight_schemes_get_average_colours_and_never_the_train_raw_or_spike_ones() {
    use ratatui::style::Color;
    let mut s = testdata::state();
    for k in 1..=8 {
        let recs = testdata::STEPS[8..]
            .iter()
            .map(|&st| testdata::record(st, "linear", k, testdata::loss(st) + k as f64 * 0.01))
            .collect();
        update(&mut s, Event::Stored(recs));
    }
    let theme = Theme { color: true };
    let area = Rect::new(0, 0, 200, 30);
    let mut buf = Buffer::empty(area);
    panels::chart::render(&mut buf, area, &s, &theme);
    let text = buffer_text(&buf);
    let taken = [
        theme.curve(lawa::chart::palette::TRAIN_SMOOTH).fg.unwrap(),
        theme.curve(lawa::chart::palette::TRAIN_RAW).fg.unwrap(),
        theme.curve(lawa::chart::palette::EVAL_RAW).fg.unwrap(),
        Color::Red,
        Color::LightRed,
    ];
    // Each legend entry of an average: its line sample's and marker's colour (`━◆ linear`).
    let mut found = 0;
    for (row, line) in text.lines().enumerate().take(4) {
        for (col, _) in line.match_indices(" linear") {
            let x = line[..col].chars().count() as u16;
            for sample in [x - 2, x - 1] {
                let fg = buf[(sample, row as u16)].fg;
                assert!(!taken.contains(&fg), "{line}: {fg:?}");
            }
            assert_eq!(buf[(x - 2, row as u16)].symbol(), "━", "{line}");
            found += 1;
        }
    }
    assert_eq!(found, 8, "{text}");
}

#[test]
fn status_hints_are_the_key_tables_in_every_focus() {
    let mut s = testdata::state();
    for focus in [Focus::Checkpoints, Focus::Jobs, Focus::Spikes] {
        s.focus = focus;
        let text = panel(120, 1, |b, a| {
            panels::status::render(b, a, &s, &Theme::plain());
        });
        let want: String = crate::tui::keys::hints(focus)
            .iter()
            .map(|h| format!("{} {} ", crate::tui::keys::hint_keys(h), h.label))
            .collect();
        assert!(text.starts_with(want.trim_end()), "{focus:?}: {text}");
    }
    s.focus = Focus::Jobs;
    let text = panel(120, 1, |b, a| {
        panels::status::render(b, a, &s, &Theme::plain());
    });
    assert!(text.starts_with("↑↓ job c cancel C cancel all Tab focus ? help q quit"));
}

#[test]
fn a_highlighted_failed_job_shows_its_whole_message() {
    let mut s = busy_state();
    let long = "/runs/tiny-run/step200/model.safetensors: tensor gpt_neox.layers.0.attention.dense.weight ends at byte 9000 past the end of the file (8192 bytes)";
    update(
        &mut s,
        Event::Job(JobEvent::Queued {
            id: 9,
            target: Target::Checkpoint { step: 300 },
        }),
    );
    update(&mut s, Event::Job(JobEvent::Started { id: 9 }));
    update(
        &mut s,
        Event::Job(JobEvent::Failed {
            id: 9,
            error: long.into(),
        }),
    );
    s.focus = Focus::Jobs;
    s.job_sel = Some(9);
    let text = panel(60, 10, |b, a| {
        panels::jobs::render(b, a, &s, &Theme::plain());
    });
    // Every word of the message is on the panel (wrapped, not cut).
    let joined: String = text
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ");
    for word in long.split(' ') {
        assert!(joined.contains(word), "{word:?} missing:\n{text}");
    }
    // The selected job's row is still in the list above it.
    assert!(text.contains("! eval step 300"), "{text}");
}

#[test]
fn the_spike_note_is_wrapped_whole_above_the_spikes() {
    let mut s = testdata::state();
    let note = "spike made on purpose: lr x30 at steps 720-760 (lr_surge in trajectory.json)";
    std::sync::Arc::make_mut(&mut s.traj).notes = vec![note.into()];
    assert!(!s.spikes.is_empty());
    let text = panel(26, 9, |b, a| {
        panels::spikes::render(b, a, &s, &Theme::plain());
    });
    let joined: String = text
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(joined.contains(note), "{text}");
    let r = &s.spikes[0];
    assert!(
        text.contains(&format!("{}..{}", r.start_step, r.end_step)),
        "{text}"
    );
}

#[test]
fn with_a_task_shown_the_list_and_chart_say_accuracy_and_green_is_higher() {
    let mut s = testdata::state_with_task();
    for c in "--m".chars() {
        update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char(c))));
    }
    let area = Rect::new(0, 0, 50, 16);
    let mut buf = Buffer::empty(area);
    let theme = Theme { color: true };
    panels::checkpoints::render(&mut buf, area, &s, &theme);
    let text = buffer_text(&buf);
    let header = text.lines().nth(1).unwrap();
    assert!(
        header.contains("raw acc") && header.contains("avg acc") && header.contains("Δpts"),
        "{text}"
    );
    // The cell's foreground where `needle` starts on the row of `step`.
    let fg = |step: u64, needle: &str| {
        let (y, row) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(&format!(" {step} ")))
            .unwrap();
        let byte = row
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} at {step}:\n{text}"));
        let x = row[..byte].chars().count() as u16;
        buf[(x, y as u16)].fg
    };
    // 700: the average's accuracy is 5 points above raw's: green, +5.0.
    assert_eq!(fg(700, "22.0%"), theme.ok().fg.unwrap());
    assert_eq!(fg(700, "+5.0"), theme.ok().fg.unwrap());
    // 900: 3 points below (its perplexity is better, the accuracy is not): not green, red Δ.
    assert_ne!(fg(900, "16.0%"), theme.ok().fg.unwrap());
    assert_eq!(fg(900, "−3.0"), theme.error().fg.unwrap());
    // The whole screen: the chart's y axis says what it shows and which way is better.
    let screen = screen(&mut s, 100, 30);
    assert!(
        screen.contains("lambada_openai acc (%) ↑ better"),
        "{screen}"
    );
}

/// Every checkpoint row of the list on `text` shows its step whole.
fn assert_steps_whole(text: &str, rows: Rect, s: &State) {
    let lines: Vec<&str> = text.lines().collect();
    let offset = s.list_offset_for(rows.height as usize);
    for r in 0..rows.height as usize {
        let Some(step) = testdata::STEPS.get(offset + r) else {
            break;
        };
        let row: String = lines[rows.y as usize + r]
            .chars()
            .take(rows.right() as usize)
            .collect();
        assert!(row.contains(&format!(" {step} ")), "step {step}:\n{text}");
    }
}

#[test]
fn at_80x24_the_chart_takes_the_rows_and_the_panels_are_lines() {
    let mut s = busy_state();
    let text = screen(&mut s, 80, 24);
    let g = s.areas.graph;
    // The chart panel (graph, legend, axis, labels, border) has at least 60% of the rows.
    assert!(g.height >= 12, "{g:?}\n{text}");
    assert!(g.height + 6 >= 24 * 6 / 10, "{g:?}\n{text}");
    assert!(g.width >= 44, "{g:?}\n{text}");
    // The settings of the results shown, whole on one line.
    let settings = panels::window::settings_text(&s);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Eval") && l.contains(&settings)),
        "{settings}\n{text}"
    );
    let line = |head: &str| {
        text.lines()
            .find(|l| l.starts_with(head))
            .unwrap_or_else(|| panic!("no {head} line:\n{text}"))
            .to_string()
    };
    let window = line("Window");
    assert!(
        window.contains("w uniform")
            && window.contains("k 5")
            && window.contains("steps 800..1200")
            && window.contains("spike-aware off"),
        "{window}"
    );
    // The jobs: how many are active and failed, and the running one with its progress.
    let jobs = line("Jobs");
    assert!(
        jobs.contains("2 active · 1 failed · * eval step 1200") && jobs.contains("37%"),
        "{jobs}"
    );
    let spikes = line("Spikes");
    let r = &s.spikes[0];
    assert!(
        spikes.contains(&format!("{}..{}", r.start_step, r.end_step)),
        "{spikes}"
    );
    assert!(!text.contains("Window & weights"), "{text}");
    assert_steps_whole(&text, s.areas.list_rows, &s);
}

#[test]
fn at_60x20_the_settings_wrap_whole_and_the_step_column_stays() {
    let mut s = busy_state();
    let text = screen(&mut s, 60, 20);
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("Eval")).unwrap();
    let settings: String = lines[first..]
        .iter()
        .take_while(|l| l.starts_with("Eval") || l.starts_with("       "))
        .map(|l| l[7..].trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(settings, panels::window::settings_text(&s), "{text}");
    assert!(s.areas.graph.height >= 8, "{:?}\n{text}", s.areas.graph);
    assert_steps_whole(&text, s.areas.list_rows, &s);
}

#[test]
fn in_a_small_terminal_the_focused_panel_opens_and_a_click_on_a_line_focuses_it() {
    use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    let mut s = busy_state();
    let collapsed = screen(&mut s, 80, 24);
    let graph_rows = s.areas.graph.height;
    let line = s.areas.jobs_line;
    assert_eq!(line.height, 1, "{collapsed}");
    assert!(collapsed
        .lines()
        .nth(line.y as usize)
        .unwrap()
        .starts_with("Jobs"));
    // A click on the jobs line focuses the jobs, and the panel opens with every job.
    update(
        &mut s,
        Event::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: line.x + 10,
            row: line.y,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(s.focus, Focus::Jobs);
    let open = screen(&mut s, 80, 24);
    assert!(open.contains("Jobs 2 active"), "{open}");
    for label in [
        "eval step 1200",
        "uniform k=5 800",
        "eval step 400",
        "eval step 200",
    ] {
        assert!(open.contains(&format!(" {label}")), "{label}:\n{open}");
    }
    assert!(s.areas.jobs_rows.height >= 4, "{open}");
    assert!(s.areas.graph.height >= 6, "the chart stays:\n{open}");
    // Tab: the spikes open (the whole note), the jobs are a line again.
    update(&mut s, Event::Key(KeyEvent::from(KeyCode::Tab)));
    assert_eq!(s.focus, Focus::Spikes);
    let spikes = screen(&mut s, 80, 24);
    assert!(spikes.contains("Spikes 1"), "{spikes}");
    let joined: String = spikes
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(joined.contains(&s.traj.notes[0]), "{spikes}");
    assert!(spikes.lines().any(|l| l.starts_with("Jobs")), "{spikes}");
    // Back on the list: every panel is a line and the chart has its rows back.
    update(&mut s, Event::Key(KeyEvent::from(KeyCode::Tab)));
    let again = screen(&mut s, 80, 24);
    assert_eq!(again, collapsed);
    assert_eq!(s.areas.graph.height, graph_rows);
}

#[test]
fn a_large_terminal_keeps_the_full_layout() {
    let mut s = busy_state();
    for (w, h) in [(160u16, 48u16), (110, 34), (100, 30)] {
        let text = screen(&mut s, w, h);
        for title in ["Window & weights", "Jobs 2 active", "Spikes 1"] {
            assert!(text.contains(title), "{w}x{h}: {title}\n{text}");
        }
        assert!(!text.lines().any(|l| l.starts_with("Eval")), "{text}");
    }
}

#[test]
fn without_colour_each_eval_series_has_its_own_marker_in_the_chart_and_legend() {
    let mut s = testdata::state();
    let recs = testdata::STEPS[4..]
        .iter()
        .map(|&st| testdata::record(st, "linear", 2, testdata::loss(st) + 0.02))
        .collect();
    update(&mut s, Event::Stored(recs));
    let area = Rect::new(0, 0, 100, 24);
    let mut buf = Buffer::empty(area);
    let drawn = panels::chart::render(&mut buf, area, &s, &Theme::plain());
    let text = buffer_text(&buf);
    let legend: String = text.lines().skip(1).take(3).collect::<Vec<_>>().join(" ");
    let mut glyphs = Vec::new();
    for name in ["raw ckpt", "linear k=2", "uniform k=3"] {
        // `2━◆ linear k=2`: the key, the line sample, the marker, the name.
        let at = legend
            .find(&format!(" {name}"))
            .unwrap_or_else(|| panic!("{name}: {legend}"));
        let head: Vec<char> = legend[..at].chars().rev().take(3).collect();
        assert!(head[2].is_ascii_digit() && head[1] == '━', "{legend}");
        glyphs.push(head[0]);
    }
    let mut distinct = glyphs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one marker each: {glyphs:?}");
    // Each marker is drawn in the graph, at most once per evaluated point.
    let g = drawn.graph;
    let points = [6usize, 8, 6];
    for (glyph, max) in glyphs.iter().zip(points) {
        let n = (g.top()..g.bottom())
            .flat_map(|y| (g.left()..g.right()).map(move |x| (x, y)))
            .filter(|&p| buf[p].symbol() == glyph.to_string())
            .count();
        assert!(n >= 1 && n <= max, "{glyph}: {n}\n{text}");
    }
}

/// The settings line says which set of results is shown: with a task shown, the task and its
/// file at the model's context, not the perplexity data the other metric uses.
#[test]
fn with_a_task_shown_the_settings_line_names_the_task_file() {
    for (w, h) in [(120u16, 36u16), (80, 24)] {
        let mut s = testdata::state_with_task();
        let ppl = screen(&mut s, w, h);
        let data = s.eval.data.clone();
        assert!(ppl.contains(&data), "{ppl}");
        update(&mut s, Event::Key(KeyEvent::from(KeyCode::Char('m'))));
        let text = screen(&mut s, w, h);
        let line = panels::window::settings_text(&s);
        assert!(
            line.starts_with("lambada_openai · cloze.jsonl · ctx "),
            "{line}"
        );
        assert!(!line.contains(&data), "{line}");
        // Wrapped in the window panel at 120x36: read it without the borders.
        let joined: String = text
            .replace(['│', '┃'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(joined.contains(&line), "{w}x{h}:\n{text}");
    }
}
