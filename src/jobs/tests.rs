//! Queue mechanics with an executor whose pace the test controls: each job waits until the
//! test releases it (or it is cancelled), then returns a record describing its target.

use std::sync::mpsc;

use super::*;
use crate::progress::Unit;

/// Blocks each job until released through `gate`; `fail` and `panic` steps misbehave.
struct Gated {
    gate: mpsc::Receiver<()>,
}

impl Executor for Gated {
    fn run(&mut self, target: &Target, reporter: &Reporter) -> Result<Vec<ResultRecord>, JobError> {
        let step = target.end_step();
        if step == 666 {
            panic!("boom at {step}");
        }
        reporter.report("work", 0, Some(2), Unit::Windows);
        loop {
            reporter.check().map_err(|_| JobError::Cancelled)?;
            match self.gate.recv_timeout(Duration::from_millis(2)) {
                Ok(()) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(JobError::Cancelled),
            }
        }
        reporter.report("work", 2, Some(2), Unit::Windows);
        if step == 13 {
            return Err(JobError::Failed(format!("step {step}: unlucky")));
        }
        Ok(vec![record_for(target)])
    }
}

fn record_for(target: &Target) -> ResultRecord {
    let (steps, weights, scheme, k) = match target {
        Target::Checkpoint { step } => (vec![*step], vec![1.0], None, 1),
        Target::Window {
            steps,
            weights,
            scheme,
            k,
            ..
        } => (steps.clone(), weights.clone(), Some(scheme.clone()), *k),
    };
    ResultRecord {
        source: "test".into(),
        end_step: target.end_step(),
        steps,
        scheme,
        k,
        spike_aware: false,
        weights,
        data: "d".into(),
        data_hash: "h".into(),
        ctx: 4,
        max_tokens: None,
        dtype: crate::results::EvalDType::F32,
        device: "cpu".into(),
        mean_nll: target.end_step() as f64,
        ppl: 1.0,
        bits_per_byte: None,
        predicted_tokens: 1,
        task: None,
        tool_version: "t".into(),
        unix_time: 0,
    }
}

struct Harness {
    runner: JobRunner,
    gate: mpsc::Sender<()>,
    events: mpsc::Receiver<JobEvent>,
}

fn harness() -> Harness {
    let (gate_tx, gate_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = mpsc::channel();
    let ev_tx = Mutex::new(ev_tx);
    let runner = JobRunner::start(Gated { gate: gate_rx }, move |e| {
        let _ = ev_tx.lock().unwrap().send(e);
    });
    Harness {
        runner,
        gate: gate_tx,
        events: ev_rx,
    }
}

impl Harness {
    /// The next `n` events (no progress); the worker may start a job while others are still
    /// being queued, so `Started` of `started` is checked and taken out, keeping the rest's order.
    fn queued(&self, n: usize, started: JobId) -> Vec<JobEvent> {
        let mut v: Vec<JobEvent> = (0..n).map(|_| self.next()).collect();
        let pos = v
            .iter()
            .position(|e| *e == JobEvent::Started { id: started })
            .unwrap_or_else(|| panic!("job {started} started: {v:?}"));
        v.remove(pos);
        v
    }

    /// Next event that is not a progress report.
    fn next(&self) -> JobEvent {
        loop {
            let e = self
                .events
                .recv_timeout(Duration::from_secs(20))
                .expect("an event");
            if !matches!(e, JobEvent::Progress { .. }) {
                return e;
            }
        }
    }
}

fn window(end: u64) -> Target {
    Target::Window {
        end_step: end,
        steps: vec![end - 1, end],
        weights: vec![0.5, 0.5],
        scheme: crate::average::Scheme::Uniform,
        k: 2,
        spike_aware: false,
    }
}

#[test]
fn jobs_run_one_at_a_time_in_order_with_progress() {
    let h = harness();
    let a = h.runner.submit(Target::Checkpoint { step: 10 });
    let b = h.runner.submit(window(20));
    assert_eq!(
        h.queued(3, a),
        vec![
            JobEvent::Queued {
                id: a,
                target: Target::Checkpoint { step: 10 }
            },
            JobEvent::Queued {
                id: b,
                target: window(20)
            }
        ]
    );
    // The first job is blocked: the second has not started.
    assert_eq!(h.runner.busy(), 2);
    h.gate.send(()).unwrap();
    match h.next() {
        JobEvent::Done { id, records } => {
            assert_eq!(id, a);
            assert_eq!(records[0].end_step, 10);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.next(), JobEvent::Started { id: b });
    h.gate.send(()).unwrap();
    match h.next() {
        JobEvent::Done { id, records } => {
            assert_eq!(id, b);
            assert_eq!(records[0].steps, vec![19, 20]);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.runner.busy(), 0);
}

#[test]
fn progress_events_carry_the_job_id() {
    let h = harness();
    let a = h.runner.submit(Target::Checkpoint { step: 1 });
    h.gate.send(()).unwrap();
    let mut seen = Vec::new();
    loop {
        let e = h.events.recv_timeout(Duration::from_secs(20)).unwrap();
        if let JobEvent::Progress { id, progress, .. } = &e {
            assert_eq!(*id, a);
            seen.push(progress.done);
        }
        if matches!(e, JobEvent::Done { .. }) {
            break;
        }
    }
    assert_eq!(seen, vec![0, 2]);
}

#[test]
fn a_new_request_for_a_queued_target_replaces_it() {
    let h = harness();
    let a = h.runner.submit(Target::Checkpoint { step: 1 });
    let b = h.runner.submit(window(20));
    let c = h.runner.submit(window(20));
    let ev = h.queued(5, a);
    assert!(matches!(ev[0], JobEvent::Queued { id, .. } if id == a));
    assert!(matches!(ev[1], JobEvent::Queued { id, .. } if id == b));
    assert_eq!(ev[2], JobEvent::Replaced { id: b, by: c });
    assert!(matches!(ev[3], JobEvent::Queued { id, .. } if id == c));
    assert_eq!(h.runner.busy(), 2);
    h.gate.send(()).unwrap();
    h.gate.send(()).unwrap();
    assert!(matches!(h.next(), JobEvent::Done { id, .. } if id == a));
    assert_eq!(h.next(), JobEvent::Started { id: c });
    assert!(matches!(h.next(), JobEvent::Done { id, .. } if id == c));
}

#[test]
fn cancel_queued_running_and_all() {
    let h = harness();
    let a = h.runner.submit(Target::Checkpoint { step: 1 });
    let b = h.runner.submit(Target::Checkpoint { step: 2 });
    let c = h.runner.submit(Target::Checkpoint { step: 3 });
    let d = h.runner.submit(Target::Checkpoint { step: 4 });
    let ev = h.queued(5, a);
    assert!(ev.iter().all(|e| matches!(e, JobEvent::Queued { .. })));
    h.runner.cancel(b);
    assert_eq!(h.next(), JobEvent::Cancelled { id: b });
    h.runner.cancel(a);
    assert_eq!(h.next(), JobEvent::Cancelled { id: a });
    assert_eq!(h.next(), JobEvent::Started { id: c });
    h.runner.cancel_all();
    let mut rest = vec![h.next(), h.next()];
    rest.sort_by_key(|e| e.id());
    assert_eq!(
        rest,
        vec![JobEvent::Cancelled { id: c }, JobEvent::Cancelled { id: d }]
    );
    assert_eq!(h.runner.busy(), 0);
}

#[test]
fn ids_stay_unique_across_runners_and_a_dropped_runner_cancels_its_queue() {
    // The explorer starts a new runner when the eval settings change; the ids of the new one
    // must never name a job of the old one.
    let first = harness();
    let a = first.runner.submit(Target::Checkpoint { step: 1 });
    let b = first.runner.submit(Target::Checkpoint { step: 2 });
    let _ = first.queued(3, a);
    let second = harness();
    let c = second.runner.submit(Target::Checkpoint { step: 1 });
    assert!(c != a && c != b, "{a} {b} {c}");
    let Harness {
        runner,
        gate,
        events,
    } = first;
    // Drop the runner while `a` still waits at its gate (the drop joins the worker, so on
    // another thread): the queued `b` is cancelled by the drop itself, before `a` is let go,
    // so the worker can never start `b` first.
    let dropping = std::thread::spawn(move || drop(runner));
    let mut got: Vec<JobEvent> = Vec::new();
    while got.is_empty() {
        let e = events
            .recv_timeout(Duration::from_secs(20))
            .expect("the drop cancels the queue");
        if !matches!(e, JobEvent::Progress { .. }) {
            got.push(e);
        }
    }
    drop(gate);
    dropping.join().unwrap();
    got.extend(events.try_iter());
    got.retain(|e| !matches!(e, JobEvent::Progress { .. }));
    got.sort_by_key(|e| e.id());
    assert_eq!(
        got,
        vec![JobEvent::Cancelled { id: a }, JobEvent::Cancelled { id: b }]
    );
}

#[test]
fn jobs_submitted_together_are_all_queued_before_the_first_starts() {
    // Step 666 panics at once: queued one by one, its failure could be reported before the
    // next job was queued, and the explorer would take it for the end of the batch.
    for _ in 0..50 {
        let h = harness();
        let ids = h.runner.submit_all(vec![
            Target::Checkpoint { step: 666 },
            Target::Checkpoint { step: 7 },
            Target::Checkpoint { step: 8 },
        ]);
        let first: Vec<JobEvent> = (0..4).map(|_| h.next()).collect();
        assert!(
            first[..3]
                .iter()
                .zip(&ids)
                .all(|(e, id)| matches!(e, JobEvent::Queued { id: q, .. } if q == id)),
            "{first:?}"
        );
        assert_eq!(first[3], JobEvent::Started { id: ids[0] });
    }
}

#[test]
fn failures_and_panics_are_reported_and_the_queue_goes_on() {
    let h = harness();
    let a = h.runner.submit(Target::Checkpoint { step: 13 });
    let b = h.runner.submit(Target::Checkpoint { step: 666 });
    let c = h.runner.submit(Target::Checkpoint { step: 7 });
    let ev = h.queued(4, a);
    assert!(ev.iter().all(|e| matches!(e, JobEvent::Queued { .. })));
    h.gate.send(()).unwrap();
    assert_eq!(
        h.next(),
        JobEvent::Failed {
            id: a,
            error: "step 13: unlucky".into()
        }
    );
    assert_eq!(h.next(), JobEvent::Started { id: b });
    match h.next() {
        JobEvent::Failed { id, error } => {
            assert_eq!(id, b);
            assert!(error.contains("boom at 666"), "{error}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.next(), JobEvent::Started { id: c });
    h.gate.send(()).unwrap();
    assert!(matches!(h.next(), JobEvent::Done { id, .. } if id == c));
}

#[test]
fn eta_from_progress() {
    let p = |done, total| Progress {
        stage: "x".into(),
        done,
        total,
        unit: Unit::Tensors,
        detail: None,
    };
    let e = eta(&p(1, Some(4)), Duration::from_secs(2)).unwrap();
    assert_eq!(e, Duration::from_secs(6));
    assert_eq!(eta(&p(0, Some(4)), Duration::from_secs(2)), None);
    assert_eq!(eta(&p(1, None), Duration::from_secs(2)), None);
    assert_eq!(
        eta(&p(4, Some(4)), Duration::from_secs(2)),
        Some(Duration::ZERO)
    );
}

#[test]
fn labels_and_series() {
    assert_eq!(Target::Checkpoint { step: 5 }.label(), "eval step 5");
    assert_eq!(window(20).label(), "uniform k=2 19..20");
    assert_eq!(window(20).series().to_string(), "uniform k=2");
}
