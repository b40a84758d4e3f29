//! Termination signals for commands that write: SIGINT, SIGTERM, SIGHUP (terminal closed, ssh
//! dropped) and SIGQUIT all cancel the job, which stops between units of work and removes its
//! temp dir; any further signal removes every live temp dir at once and exits 130.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use lawa::progress::CancelToken;

/// The first signal received, by name.
static RECEIVED: OnceLock<&'static str> = OnceLock::new();

/// The name of the signal that cancelled this run, if one did.
pub fn received() -> Option<&'static str> {
    RECEIVED.get().copied()
}

/// Held by whoever prints the last error line and exits (the main thread after a cancel, or
/// the handler on a second signal), so that a run never ends with two error lines.
static EXITING: Mutex<()> = Mutex::new(());

/// Prints `line` on stderr and exits 130, unless another thread is already doing so.
pub fn exit_cancelled(line: &str) -> ! {
    let _only_one = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    // A closed terminal (SIGHUP) may refuse the write: nothing else to do about it.
    let _ = writeln!(std::io::stderr(), "error: {}", lawa::display::escape(line));
    std::process::exit(CANCEL_EXIT.into());
}

/// Exit status for a run stopped by a signal (the shell's 128 + SIGINT).
pub const CANCEL_EXIT: u8 = 130;

/// Cancels `token` on the first termination signal. The handlers are installed before this
/// returns, so no signal can arrive between here and the job with its default action (which
/// would skip the cleanup).
pub fn cancel_on_signals(token: CancelToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
        ];
        let streams: Vec<_> = {
            let _in_rt = rt.enter();
            kinds
                .into_iter()
                .filter_map(|(k, name)| Some((signal(k).ok()?, name)))
                .collect()
        };
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut streams = streams;
                loop {
                    let recvs = streams.iter_mut().map(|(s, name)| {
                        Box::pin(async move {
                            s.recv().await;
                            *name
                        })
                    });
                    let (name, _, _) = futures::future::select_all(recvs).await;
                    on_signal(&token, name);
                }
            });
        });
    }
    #[cfg(not(unix))]
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            loop {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                on_signal(&token, "Ctrl-C");
            }
        });
    });
}

fn on_signal(token: &CancelToken, name: &'static str) {
    let _ = RECEIVED.set(name);
    if !token.is_cancelled() {
        token.cancel();
        return;
    }
    // Second signal: no waiting for the job to reach a check; clean up here and go.
    let removed = lawa::checkpoint::remove_live_temp_dirs();
    let what = match removed.len() {
        0 => String::new(),
        1 => format!("; removed {}", removed[0].display()),
        n => format!("; removed {n} temp dirs"),
    };
    // A closed terminal (SIGHUP) may refuse the write: nothing else to do about it.
    let _ = writeln!(
        std::io::stderr(),
        "error: {}",
        lawa::display::escape(&format!(
            "stopped at once by a second signal ({name}){what}"
        ))
    );
    std::process::exit(CANCEL_EXIT.into());
}
