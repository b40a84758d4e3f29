//! Progress reporting and cancellation shared by every long-running engine function.
//!
//! Engine code never prints: it calls [`Reporter::report`] and polls [`Reporter::check`]
//! between units of work (tensors, batches, steps). The CLI turns reports into a progress
//! bar; the TUI forwards them over a channel to the jobs panel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag shared between a job and whoever may cancel it.
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a progress count is counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Tensors,
    Bytes,
    Windows,
    Steps,
    Files,
}

/// One progress report: `done` of `total` units in the named stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub stage: String,
    pub done: u64,
    pub total: Option<u64>,
    pub unit: Unit,
    /// Free-form detail for the UI (current tensor name, loss, ...).
    pub detail: Option<String>,
}

/// Returned by engine functions that stopped because their job was cancelled.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("cancelled")]
pub struct Cancelled;

type Sink = Arc<dyn Fn(Progress) + Send + Sync>;

/// Handed to long-running engine functions: where progress goes, and whether to stop.
#[derive(Clone, Default)]
pub struct Reporter {
    cancel: CancelToken,
    sink: Option<Sink>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

impl Reporter {
    /// Reports nowhere and is never cancelled (tests, library callers that do not care).
    pub fn silent() -> Self {
        Self::default()
    }

    pub fn new(cancel: CancelToken, sink: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        Self {
            cancel,
            sink: Some(Arc::new(sink)),
        }
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    pub fn report(&self, stage: &str, done: u64, total: Option<u64>, unit: Unit) {
        self.report_detail(stage, done, total, unit, None);
    }

    pub fn report_detail(
        &self,
        stage: &str,
        done: u64,
        total: Option<u64>,
        unit: Unit,
        detail: Option<String>,
    ) {
        if let Some(sink) = &self.sink {
            sink(Progress {
                stage: stage.to_string(),
                done,
                total,
                unit,
                detail,
            });
        }
    }

    /// `Err(Cancelled)` once the job has been cancelled; call between units of work.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.cancel.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn reports_reach_the_sink_and_cancel_is_seen() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let token = CancelToken::new();
        let r = Reporter::new(token.clone(), move |p| seen2.lock().unwrap().push(p.done));
        r.report("x", 1, Some(2), Unit::Tensors);
        assert!(r.check().is_ok());
        token.cancel();
        assert_eq!(r.check(), Err(Cancelled));
        assert_eq!(*seen.lock().unwrap(), vec![1]);
    }
}
