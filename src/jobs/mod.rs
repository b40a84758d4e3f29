//! Background jobs: queue, progress events, cancellation; runs average and eval off the UI thread.
//!
//! One worker thread runs one job at a time (averaging is memory- and device-bound: two at once
//! only slow each other down); the others wait in a FIFO queue. A request for a target that is
//! already queued replaces the queued one. Everything a job does is reported as a [`JobEvent`]
//! through a callback (the TUI forwards it over a channel); a job that fails or panics reports
//! `Failed` and the runner goes on with the next one.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::progress::{CancelToken, Progress, Reporter};
use crate::results::{ResultRecord, Series};

pub mod engine;

pub type JobId = u64;

/// Job ids are unique for the whole process, not per runner: the explorer starts a new runner
/// when the eval settings change, and events of the old one may still arrive. Per-runner ids
/// started again at 1 and landed on the rows of older jobs.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_id() -> JobId {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a job evaluates.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// One checkpoint as it is.
    Checkpoint { step: u64 },
    /// The weighted average of a window of checkpoints.
    Window {
        /// The step the window ends at (the cursor when it was asked for).
        end_step: u64,
        steps: Vec<u64>,
        weights: Vec<f64>,
        scheme: crate::average::Scheme,
        k: usize,
        spike_aware: bool,
    },
}

impl Target {
    pub fn end_step(&self) -> u64 {
        match self {
            Target::Checkpoint { step } => *step,
            Target::Window { end_step, .. } => *end_step,
        }
    }

    /// The curve the result will belong to.
    pub fn series(&self) -> Series {
        match self {
            Target::Checkpoint { .. } => Series::Raw,
            Target::Window {
                scheme,
                k,
                spike_aware,
                ..
            } => Series::average(scheme.clone(), *k, *spike_aware),
        }
    }

    /// Short description for the jobs panel.
    pub fn label(&self) -> String {
        match self {
            Target::Checkpoint { step } => format!("eval step {step}"),
            Target::Window {
                steps, end_step, ..
            } => {
                let first = steps.first().copied().unwrap_or(*end_step);
                format!("{} {first}..{end_step}", self.series())
            }
        }
    }
}

/// Why a job did not produce a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

/// Everything the runner tells its owner, in order, per job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobEvent {
    Queued {
        id: JobId,
        target: Target,
    },
    /// A queued job was dropped because a new request for the same target replaced it.
    Replaced {
        id: JobId,
        by: JobId,
    },
    Started {
        id: JobId,
    },
    Progress {
        id: JobId,
        progress: Progress,
        /// Time since the job started, for ETAs.
        elapsed: Duration,
    },
    /// The job's records: each metric it evaluated (perplexity, tasks).
    Done {
        id: JobId,
        records: Vec<ResultRecord>,
    },
    Failed {
        id: JobId,
        error: String,
    },
    Cancelled {
        id: JobId,
    },
}

impl JobEvent {
    pub fn id(&self) -> JobId {
        match self {
            JobEvent::Queued { id, .. }
            | JobEvent::Replaced { id, .. }
            | JobEvent::Started { id }
            | JobEvent::Progress { id, .. }
            | JobEvent::Done { id, .. }
            | JobEvent::Failed { id, .. }
            | JobEvent::Cancelled { id } => *id,
        }
    }
}

/// Does the work of a job (on the worker thread). The real one is [`engine::EngineExecutor`].
pub trait Executor: Send + 'static {
    /// The records the job stored (none when everything was stored already).
    fn run(&mut self, target: &Target, reporter: &Reporter) -> Result<Vec<ResultRecord>, JobError>;
}

type Sink = Arc<dyn Fn(JobEvent) + Send + Sync>;

struct Queue {
    pending: VecDeque<(JobId, Target)>,
    running: Option<(JobId, CancelToken)>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    sink: Sink,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock can only come from the sink; the queue stays usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The job queue and its worker thread. Dropping it cancels the running job and stops.
pub struct JobRunner {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl JobRunner {
    pub fn start(exec: impl Executor, sink: impl Fn(JobEvent) + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                running: None,
                shutdown: false,
            }),
            wake: Condvar::new(),
            sink: Arc::new(sink),
        });
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("lawa-jobs".into())
            .spawn(move || worker(s, exec))
            .ok();
        if worker.is_none() {
            (shared.sink)(JobEvent::Failed {
                id: 0,
                error: "could not start the jobs thread".into(),
            });
        }
        JobRunner { shared, worker }
    }

    /// Queues a job; a queued job for the same target is replaced by it.
    pub fn submit(&self, target: Target) -> JobId {
        self.submit_all(vec![target])[0]
    }

    /// Queues jobs together: every one is reported `Queued` before the first can start, so a
    /// job that fails at once is never taken for the end of a batch still being queued.
    pub fn submit_all(&self, targets: Vec<Target>) -> Vec<JobId> {
        let mut q = self.shared.lock();
        let mut ids = Vec::with_capacity(targets.len());
        for target in targets {
            let id = next_id();
            if let Some(pos) = q.pending.iter().position(|(_, t)| same_target(t, &target)) {
                let (old, _) = q.pending.remove(pos).expect("position is in range");
                (self.shared.sink)(JobEvent::Replaced { id: old, by: id });
            }
            (self.shared.sink)(JobEvent::Queued {
                id,
                target: target.clone(),
            });
            q.pending.push_back((id, target));
            ids.push(id);
        }
        drop(q);
        self.shared.wake.notify_all();
        ids
    }

    /// Cancels a queued job at once, or asks the running one to stop at its next check.
    pub fn cancel(&self, id: JobId) {
        let mut q = self.shared.lock();
        if let Some(pos) = q.pending.iter().position(|(i, _)| *i == id) {
            q.pending.remove(pos);
            (self.shared.sink)(JobEvent::Cancelled { id });
        } else if let Some((rid, token)) = &q.running {
            if *rid == id {
                token.cancel();
            }
        }
    }

    /// Cancels every queued job and the running one.
    pub fn cancel_all(&self) {
        let mut q = self.shared.lock();
        for (id, _) in std::mem::take(&mut q.pending) {
            (self.shared.sink)(JobEvent::Cancelled { id });
        }
        if let Some((_, token)) = &q.running {
            token.cancel();
        }
    }

    /// Number of jobs queued or running.
    pub fn busy(&self) -> usize {
        let q = self.shared.lock();
        q.pending.len() + usize::from(q.running.is_some())
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.shutdown = true;
            // Whoever shows these jobs must not wait for them forever.
            for (id, _) in std::mem::take(&mut q.pending) {
                (self.shared.sink)(JobEvent::Cancelled { id });
            }
            if let Some((_, token)) = &q.running {
                token.cancel();
            }
        }
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Same target: the same model of the same checkpoints. A window's weights are a pure
/// function of its scheme and steps (`sweep::window_weights`), so the typed scheme stands
/// for them; k and spike-awareness only name the curve (a spike-aware window no spike touches
/// is the plain one).
fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Checkpoint { step: x }, Target::Checkpoint { step: y }) => x == y,
        (
            Target::Window {
                end_step: e1,
                steps: s1,
                scheme: c1,
                ..
            },
            Target::Window {
                end_step: e2,
                steps: s2,
                scheme: c2,
                ..
            },
        ) => (e1, s1, c1) == (e2, s2, c2),
        _ => false,
    }
}

fn worker(shared: Arc<Shared>, mut exec: impl Executor) {
    loop {
        let (id, target, token) = {
            let mut q = shared.lock();
            loop {
                if q.shutdown {
                    return;
                }
                if let Some((id, t)) = q.pending.pop_front() {
                    let token = CancelToken::new();
                    q.running = Some((id, token.clone()));
                    (shared.sink)(JobEvent::Started { id });
                    break (id, t, token);
                }
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let started = Instant::now();
        let sink = shared.sink.clone();
        let reporter = Reporter::new(token.clone(), move |progress| {
            sink(JobEvent::Progress {
                id,
                progress,
                elapsed: started.elapsed(),
            })
        });
        let outcome = catch_unwind(AssertUnwindSafe(|| exec.run(&target, &reporter)));
        let event = match outcome {
            Ok(Ok(records)) => JobEvent::Done { id, records },
            Ok(Err(JobError::Cancelled)) => JobEvent::Cancelled { id },
            // Engine errors that wrap the cancellation are still a cancellation.
            Ok(Err(JobError::Failed(_))) if token.is_cancelled() => JobEvent::Cancelled { id },
            Ok(Err(JobError::Failed(error))) => JobEvent::Failed { id, error },
            Err(panic) => JobEvent::Failed {
                id,
                error: format!("internal error: {}", panic_message(&panic)),
            },
        };
        let mut q = shared.lock();
        q.running = None;
        (shared.sink)(event);
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Estimated time left from progress so far: `elapsed * (total - done) / done`.
pub fn eta(progress: &Progress, elapsed: Duration) -> Option<Duration> {
    let total = progress.total?;
    if progress.done == 0 || progress.done > total {
        return None;
    }
    let left = (total - progress.done) as f64 / progress.done as f64;
    Some(Duration::from_secs_f64(elapsed.as_secs_f64() * left))
}

#[cfg(test)]
mod tests;
