//! The event loop: terminal events, job events and a steady tick go into `update`; effects go to
//! the job runner and the exporter; the screen is redrawn after every batch of events.
//!
//! The terminal is restored on every way out: normal quit, error (the guard's `Drop`), panic
//! (a hook that restores before the message prints), SIGTERM/SIGHUP (handled as quit).

use std::cell::Cell;
use std::io::{self, Stdout};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind,
};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use futures::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use lawa::jobs::{JobEvent, JobRunner};

use super::state::{update, Effect, Event, State};
use super::theme::Theme;
use super::ui;

/// Starts a job runner for the given eval settings (ctx, max tokens) that sends its events to
/// the sink. Called again when the settings change in the TUI.
pub type RunnerFactory =
    Box<dyn FnMut(Option<usize>, Option<u64>, Box<dyn Fn(JobEvent) + Send + Sync>) -> JobRunner>;

pub struct App {
    pub state: State,
    pub make_runner: RunnerFactory,
    /// Where `e` writes its files.
    pub export_dir: PathBuf,
    /// Called about once a second on a thread of its own: what changed outside (results
    /// others appended to the store, the Slurm sweeps' progress).
    pub watch: Option<Watcher>,
}

/// See [`App::watch`].
pub type Watcher = Box<dyn FnMut() -> Vec<Event> + Send>;

/// How often the watcher looks at the store.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Runs `watch` until the explorer's channel closes.
fn spawn_watcher(mut watch: Watcher, tx: UnboundedSender<Event>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(WATCH_EVERY);
        if tx.is_closed() {
            return;
        }
        for ev in watch() {
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
}

thread_local! {
    /// Set on threads whose panics are caught and reported in the UI (the export task):
    /// those must not tear the terminal down.
    static CAUGHT_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Leaves raw mode, the alternate screen and mouse capture; safe to call more than once.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = std::thread::current().name() == Some("lawa-jobs")
                || CAUGHT_PANICS.with(|c| c.get());
            if caught {
                // The job runner / export turns it into a failed job; the UI goes on.
                return;
            }
            restore_terminal();
            previous(info);
        }));
    });
}

/// The terminal in explorer mode for as long as it lives.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(e) = execute!(
            out,
            EnterAlternateScreen,
            EnableMouseCapture,
            crossterm::cursor::Hide
        ) {
            restore_terminal();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Redraw period when nothing happens (progress bars and ETAs move on their own).
const TICK: Duration = Duration::from_millis(100);

/// Runs the explorer until the user quits.
pub fn run(app: App) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_loop(app))
}

fn job_sink(tx: UnboundedSender<Event>) -> Box<dyn Fn(JobEvent) + Send + Sync> {
    Box::new(move |e| {
        let _ = tx.send(Event::Job(e));
    })
}

async fn run_loop(mut app: App) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    let (tx, mut rx) = unbounded_channel::<Event>();
    let mut runner = Some((app.make_runner)(
        app.state.eval.ctx(),
        app.state.eval.max_tokens,
        job_sink(tx.clone()),
    ));
    if let Some(w) = app.watch.take() {
        spawn_watcher(w, tx.clone());
    }
    let mut guard = TerminalGuard::enter()?;
    let mut term_events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;

    let state = &mut app.state;
    loop {
        let mut areas = state.areas;
        guard.terminal.draw(|f| {
            let area = f.area();
            areas = ui::draw(f.buffer_mut(), area, state, &theme);
        })?;
        state.areas = areas;

        let first = tokio::select! {
            ev = term_events.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => Event::Key(k),
                Some(Ok(TermEvent::Mouse(m))) => Event::Mouse(m),
                Some(Ok(TermEvent::Resize(_, _))) => Event::Resize,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            Some(ev) = rx.recv() => ev,
            _ = tick.tick() => Event::Tick,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        };
        // Take everything else that is already waiting (progress comes in bursts) before
        // drawing again, so the screen never lags behind the jobs.
        let mut batch = vec![first];
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        for ev in batch {
            // One key's jobs are queued together (see `JobRunner::submit_all`), in order with
            // the other effects.
            let mut submits = Vec::new();
            for effect in update(state, ev) {
                if let Effect::Submit(t) = effect {
                    submits.push(t);
                    continue;
                }
                if let (Some(r), false) = (&runner, submits.is_empty()) {
                    r.submit_all(std::mem::take(&mut submits));
                }
                match effect {
                    Effect::Submit(_) => unreachable!("collected above"),
                    Effect::Cancel(id) => {
                        if let Some(r) = &runner {
                            r.cancel(id);
                        }
                    }
                    Effect::CancelAll => {
                        if let Some(r) = &runner {
                            r.cancel_all();
                        }
                    }
                    Effect::SetEval { ctx, max_tokens } => {
                        if let Some(old) = runner.take() {
                            old.cancel_all();
                            // Joining waits for the running job to reach its next cancel
                            // check: not on the UI thread.
                            std::thread::spawn(move || drop(old));
                        }
                        runner = Some((app.make_runner)(ctx, max_tokens, job_sink(tx.clone())));
                    }
                    Effect::Export => spawn_export(state, &app.export_dir, tx.clone()),
                    Effect::Quit => {}
                }
            }
            if let (Some(r), false) = (&runner, submits.is_empty()) {
                r.submit_all(submits);
            }
        }
        if state.quit {
            break;
        }
    }
    if let Some(r) = runner.take() {
        r.cancel_all();
        drop(r);
    }
    drop(guard);
    Ok(())
}

fn spawn_export(state: &State, dir: &std::path::Path, tx: UnboundedSender<Event>) {
    let model = state.chart();
    let records: Vec<_> = state.visible_results().into_iter().cloned().collect();
    let verdicts =
        lawa::export::verdict::all(&state.visible_results(), &state.spikes, state.metric);
    let dir = dir.to_path_buf();
    let stem = lawa::export::file_stem(&state.traj.name);
    tokio::task::spawn_blocking(move || {
        CAUGHT_PANICS.with(|c| c.set(true));
        let out = std::panic::catch_unwind(|| {
            lawa::export::export_all(&model, &records, &verdicts, &dir, &stem)
                .map(|files| {
                    files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|_| Err("internal error while exporting".into()));
        CAUGHT_PANICS.with(|c| c.set(false));
        let _ = tx.send(Event::Exported(out));
    });
}
