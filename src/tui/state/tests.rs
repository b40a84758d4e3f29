//! State transitions: keys, mouse and job events into state and effects, no terminal.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use lawa::average::Scheme;
use lawa::jobs::{JobEvent, Target};
use lawa::progress::{Progress, Unit};

use super::*;
use crate::tui::testdata::{self, STEPS};

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn press(s: &mut State, keys: &str) -> Vec<Effect> {
    keys.chars().flat_map(|c| update(s, key(c))).collect()
}

fn submitted(effects: &[Effect]) -> Vec<&Target> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Submit(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn opens_at_the_last_checkpoint_with_a_uniform_window_of_five() {
    let s = testdata::state();
    assert_eq!(s.cursor, STEPS.len() - 1);
    assert_eq!(s.k, 5);
    assert_eq!(s.scheme, Scheme::Uniform);
    assert_eq!(s.window_steps(), vec![800, 900, 1000, 1100, 1200]);
    assert_eq!(s.series().to_string(), "uniform k=5");
}

#[test]
fn cursor_keys_move_and_clamp() {
    let mut s = testdata::state();
    update(&mut s, code(KeyCode::Home));
    assert_eq!(s.cursor, 0);
    update(&mut s, code(KeyCode::Up));
    assert_eq!(s.cursor, 0);
    press(&mut s, "jjj");
    assert_eq!(s.cursor, 3);
    press(&mut s, "k");
    assert_eq!(s.cursor, 2);
    update(&mut s, code(KeyCode::PageDown));
    assert_eq!(
        s.cursor, 11,
        "a page is 10 before the list is drawn; clamped at the end"
    );
    update(&mut s, code(KeyCode::PageUp));
    assert_eq!(s.cursor, 1);
    update(&mut s, code(KeyCode::End));
    assert_eq!(s.cursor, 11);
}

#[test]
fn list_scrolls_to_keep_the_cursor_visible() {
    let mut s = testdata::state();
    s.areas.list_rows = Rect::new(1, 2, 30, 4);
    update(&mut s, code(KeyCode::Home));
    assert_eq!(s.list_offset, 0);
    press(&mut s, "jjjjj");
    assert_eq!(s.cursor, 5);
    assert_eq!(s.list_offset, 2);
    press(&mut s, "kkkk");
    assert_eq!(s.list_offset, 1);
}

#[test]
fn window_grows_and_shrinks_within_bounds() {
    let mut s = testdata::state();
    press(&mut s, "]]");
    assert_eq!(s.k, 7);
    press(&mut s, "-------------");
    assert_eq!(s.k, 1);
    press(&mut s, &"+".repeat(30));
    assert_eq!(s.k, STEPS.len());
    // Near the start the window holds what there is.
    update(&mut s, code(KeyCode::Home));
    press(&mut s, "j");
    assert_eq!(s.window_steps(), vec![100, 200]);
}

#[test]
fn scheme_cycles_and_weights_follow() {
    let mut s = testdata::state();
    press(&mut s, "[["); // k = 3: 1000, 1100, 1200
    let steps = s.window_steps();
    let uniform = s.window_weights(&steps).unwrap();
    assert_eq!(uniform.len(), 3);
    assert!(uniform.iter().all(|w| (w - 1.0 / 3.0).abs() < 1e-12));
    press(&mut s, "w");
    assert!(matches!(s.scheme, Scheme::Ema { half_life } if half_life == 100.0));
    let ema = s.window_weights(&steps).unwrap();
    // Half-life 100 steps: each older checkpoint gets half the weight.
    assert!((ema[1] / ema[2] - 0.5).abs() < 1e-12);
    assert!((ema[0] / ema[2] - 0.25).abs() < 1e-12);
    press(&mut s, "w");
    assert_eq!(s.scheme, Scheme::Linear);
    let lin = s.window_weights(&steps).unwrap();
    assert!((lin[2] / lin[0] - 3.0).abs() < 1e-12);
    press(&mut s, "w");
    assert_eq!(s.scheme, Scheme::Custom(vec![1.0, 2.0, 3.0]));
    press(&mut s, "w");
    assert_eq!(s.scheme, Scheme::Uniform);
    assert_eq!(s.series().to_string(), "uniform k=3");
}

#[test]
fn parameter_edit_sets_k_half_life_and_custom_weights() {
    let mut s = testdata::state();
    press(&mut s, "p");
    assert_eq!(s.edit.as_ref().unwrap().buffer, "5");
    update(&mut s, code(KeyCode::Backspace));
    press(&mut s, "3");
    update(&mut s, code(KeyCode::Enter));
    assert_eq!(s.k, 3);
    assert!(s.edit.is_none());

    press(&mut s, "w"); // EMA
    press(&mut s, "p");
    s.edit.as_mut().unwrap().buffer.clear();
    press(&mut s, "250");
    update(&mut s, code(KeyCode::Enter));
    assert_eq!(s.scheme, Scheme::Ema { half_life: 250.0 });

    // A bad value keeps the old one and says why.
    press(&mut s, "p");
    s.edit.as_mut().unwrap().buffer.clear();
    press(&mut s, "-4");
    update(&mut s, code(KeyCode::Enter));
    assert_eq!(s.scheme, Scheme::Ema { half_life: 250.0 });
    assert!(s.message.as_deref().unwrap().contains("half-life"));

    press(&mut s, "ww"); // custom
    press(&mut s, "p");
    s.edit.as_mut().unwrap().buffer.clear();
    press(&mut s, "1,1,2,4");
    update(&mut s, code(KeyCode::Enter));
    assert_eq!(s.scheme, Scheme::Custom(vec![1.0, 1.0, 2.0, 4.0]));
    assert_eq!(s.window_k(), 4);
    assert_eq!(s.window_steps(), vec![900, 1000, 1100, 1200]);
    let w = s.window_weights(&s.window_steps()).unwrap();
    assert!((w[3] - 0.5).abs() < 1e-12);

    // Esc abandons an edit; keys typed there do not act.
    press(&mut s, "p");
    press(&mut s, "q");
    update(&mut s, code(KeyCode::Esc));
    assert!(!s.quit && s.edit.is_none());
    assert_eq!(s.scheme, Scheme::Custom(vec![1.0, 1.0, 2.0, 4.0]));
}

#[test]
fn eval_settings_edit_emits_set_eval_and_changes_what_is_shown() {
    let mut s = testdata::state();
    let before = s.visible_results().len();
    assert!(before > 0);
    press(&mut s, "t");
    s.edit.as_mut().unwrap().buffer.clear();
    press(&mut s, "32");
    let eff = update(&mut s, code(KeyCode::Enter));
    assert_eq!(
        eff,
        vec![Effect::SetEval {
            ctx: Some(32),
            max_tokens: None
        }]
    );
    assert_eq!(
        s.message.as_deref(),
        Some("eval settings: ctx 32 · all tokens · f32 · cpu")
    );
    // Stored results were computed with ctx 64: none match now.
    assert!(s.visible_results().is_empty());
    press(&mut s, "t");
    s.edit.as_mut().unwrap().buffer.clear();
    let eff = update(&mut s, code(KeyCode::Enter));
    // Empty is the model's default, resolved: the job runner is told 64, not "auto".
    assert_eq!(
        eff,
        vec![Effect::SetEval {
            ctx: Some(64),
            max_tokens: None
        }]
    );
    assert_eq!(s.eval.ctx_asked, None);
    assert_eq!(s.visible_results().len(), before);
}

#[test]
fn on_a_gpu_results_of_the_checkpoints_dtype_are_shown_once_it_is_known() {
    use lawa::results::EvalDType;
    // A GPU session on a hub trajectory: no checkpoint local at open, so the dtype its jobs
    // evaluate in is unknown, and neither the CPU's f32 results nor an earlier GPU's f16
    // ones may be drawn as this session's.
    let mut f16 = testdata::record(1100, "raw", 1, 3.1);
    f16.dtype = EvalDType::F16;
    let f32_ = testdata::record(1200, "raw", 1, 3.0);
    let mut view = testdata::eval_view();
    view.dtype = None;
    let mut s = State::new(testdata::trajectory(), vec![f16, f32_], view);
    assert!(s.visible_results().is_empty());
    assert!(s
        .eval
        .describe()
        .contains("the checkpoints' dtype (not known yet)"));
    // The first job's result says it: f16, and the f16 results are this session's.
    let mut done = testdata::record(1000, "raw", 1, 3.2);
    done.dtype = EvalDType::F16;
    job(
        &mut s,
        JobEvent::Done {
            id: 1,
            records: vec![done],
        },
    );
    assert_eq!(s.eval.dtype, Some(EvalDType::F16));
    let shown: Vec<u64> = s.visible_results().iter().map(|r| r.end_step).collect();
    assert_eq!(shown, vec![1100, 1000]);
    assert!(s.eval.describe().contains(" · f16 · "));
}

#[test]
fn the_model_default_context_never_matches_results_of_another_context() {
    // A raw eval at ctx 48 and an average at ctx 64 (the model's default): with the default
    // asked for, only ctx-64 results are shown, so no ctx-48 raw value sits beside a ctx-64
    // average.
    let mut recs = testdata::records();
    let mut at48 = testdata::record(1200, "raw", 1, 9.0);
    at48.ctx = 48;
    recs.push(at48);
    let mut gpu = testdata::record(1100, "raw", 1, 8.0);
    gpu.dtype = lawa::results::EvalDType::F16;
    recs.push(gpu);
    let s = State::new(testdata::trajectory(), recs, testdata::eval_view());
    assert_eq!(s.eval.ctx(), Some(64));
    let shown = s.visible_results();
    assert!(shown
        .iter()
        .all(|r| r.ctx == 64 && r.dtype == lawa::results::EvalDType::F32));
    assert!(!s.result_index().contains_key(&(Series::Raw, 1200)));
    assert_eq!(
        s.result_index()[&(Series::Raw, 1100)].mean_nll,
        testdata::loss(1100) + 0.1
    );
}

#[test]
fn prompts_check_values_against_the_model_and_the_run_in_their_own_words() {
    let mut s = testdata::state();
    let typed = |s: &mut State, k: char, text: &str| {
        press(s, &k.to_string());
        s.edit.as_mut().unwrap().buffer = text.into();
        update(s, code(KeyCode::Enter))
    };
    // ctx 1 would fail when the job runs; the prompt refuses it, and anything past the model.
    for bad in ["1", "65", "x"] {
        assert!(typed(&mut s, 't', bad).is_empty(), "{bad}");
        let m = s.message.clone().unwrap();
        assert!(
            m.starts_with("eval context length (empty: model default): empty or a whole number from 2 to 64 (the model's max_position_embeddings)"),
            "{m}"
        );
        assert!(!m.contains("--ctx"), "{m}");
    }
    assert_eq!(s.eval.ctx(), Some(64));
    // A valid value clears the old error and says the new value.
    typed(&mut s, 't', "2");
    assert_eq!(
        s.message.as_deref(),
        Some("eval settings: ctx 2 · all tokens · f32 · cpu")
    );
    // Max tokens: at least 2 (one to predict), at most what the eval data holds.
    for bad in ["1", "100001"] {
        assert!(typed(&mut s, 'T', bad).is_empty(), "{bad}");
        let m = s.message.clone().unwrap();
        assert!(
            m.contains("empty or a whole number from 2 to 100000 (the eval data's size)"),
            "{m}"
        );
    }
    assert!(!typed(&mut s, 'T', "512").is_empty());
    assert_eq!(s.eval.max_tokens, Some(512));
    typed(&mut s, 'T', "");
    // EMA half-life: within the run's span (100..1200: 1100 steps).
    press(&mut s, "w");
    assert!(matches!(s.scheme, Scheme::Ema { .. }));
    typed(&mut s, 'p', "5000");
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("at most 1100 (the run's span)"),
        "{:?}",
        s.message
    );
    typed(&mut s, 'p', "100");
    assert_eq!(s.scheme, Scheme::Ema { half_life: 100.0 });
    assert_eq!(
        s.message.as_deref(),
        Some("scheme: ema:100 (half-life 100 steps)")
    );
    // Custom weights: at most one per checkpoint.
    press(&mut s, "ww");
    let thirteen = vec!["1"; 13].join(",");
    typed(&mut s, 'p', &thirteen);
    assert!(s.message.as_deref().unwrap().contains("1 to 12 weights"));
    typed(&mut s, 'p', "1,2");
    assert_eq!(s.message.as_deref(), Some("scheme: custom weights 1,2"));
}

#[test]
fn enter_queues_the_window_and_the_raw_end_checkpoint_once() {
    let mut s = testdata::state();
    // At 1200 neither the raw eval nor uniform k=5 is stored.
    let eff = update(&mut s, code(KeyCode::Enter));
    let t = submitted(&eff);
    assert_eq!(t.len(), 2, "{eff:?}");
    assert_eq!(*t[0], Target::Checkpoint { step: 1200 });
    match t[1] {
        Target::Window {
            end_step,
            steps,
            weights,
            scheme,
            k,
            spike_aware,
        } => {
            assert_eq!(*end_step, 1200);
            assert_eq!(steps, &vec![800, 900, 1000, 1100, 1200]);
            assert_eq!(weights, &vec![0.2; 5]);
            assert_eq!(*scheme, Scheme::Uniform);
            assert_eq!(*k, 5);
            assert!(!spike_aware);
        }
        other => panic!("{other:?}"),
    }
    // The runner reports them queued: a second Enter asks for nothing new.
    for (i, t) in t.iter().enumerate() {
        update(
            &mut s,
            Event::Job(JobEvent::Queued {
                id: i as u64 + 1,
                target: (*t).clone(),
            }),
        );
    }
    let again = update(&mut s, code(KeyCode::Enter));
    assert!(submitted(&again).is_empty());
    // At 1100 the raw result is stored (every other step from 100): only the window.
    press(&mut s, "k");
    let eff = update(&mut s, code(KeyCode::Enter));
    let t = submitted(&eff);
    assert_eq!(t.len(), 1);
    assert!(matches!(t[0], Target::Window { end_step: 1100, .. }));
}

#[test]
fn a_window_of_one_is_just_the_raw_checkpoint() {
    let mut s = testdata::state();
    press(&mut s, "----");
    assert_eq!(s.k, 1);
    let eff = update(&mut s, code(KeyCode::Enter));
    assert_eq!(submitted(&eff), vec![&Target::Checkpoint { step: 1200 }]);
}

#[test]
fn sweep_queues_every_missing_point_of_the_curve() {
    let mut s = testdata::state();
    press(&mut s, "--"); // uniform k=3: the stored curve covers 700..1200
    let eff = press(&mut s, "s");
    let t = submitted(&eff);
    let windows: Vec<u64> = t
        .iter()
        .filter(|t| matches!(t, Target::Window { .. }))
        .map(|t| t.end_step())
        .collect();
    // Full windows start at the third checkpoint; 700.. are stored.
    assert_eq!(windows, vec![300, 400, 500, 600]);
    let raws: Vec<u64> = t
        .iter()
        .filter(|t| matches!(t, Target::Checkpoint { .. }))
        .map(|t| t.end_step())
        .collect();
    // Raw evals exist for 100, 300, ..., 1100; the sweep adds the rest from 300 on.
    assert_eq!(raws, vec![400, 600, 800, 1000, 1200]);
    // It says which steps it leaves out, and why.
    let m = s.message.clone().unwrap();
    assert!(
        m.ends_with("queued 9 job(s); skips steps 100–200 (no full window of 3 checkpoints)"),
        "{m}"
    );
}

#[test]
fn spikes_are_detected_on_the_train_loss_and_can_be_left_out() {
    let mut s = testdata::state();
    assert_eq!(s.spikes.len(), 1, "{:?}", s.spikes);
    let r = &s.spikes[0];
    assert!(r.start_step <= 600 && r.end_step >= 600, "{r:?}");
    assert!(r.height > 1.0);
    // Jump to it: the cursor lands on the first checkpoint at or after its peak.
    press(&mut s, "n");
    assert_eq!(s.cursor_step(), Some(600));
    press(&mut s, "]]"); // k = 7 from 600: 100..600 (6 checkpoints)
    press(&mut s, "j"); // 700
    assert_eq!(s.window_steps(), vec![100, 200, 300, 400, 500, 600, 700]);
    press(&mut s, "a");
    assert!(s.spike_aware);
    assert_eq!(s.window_steps(), vec![100, 200, 300, 400, 500, 700]);
    assert_eq!(s.series().to_string(), "uniform k=7 spike-aware");
    let eff = update(&mut s, code(KeyCode::Enter));
    let t = submitted(&eff);
    assert!(t.iter().any(
        |t| matches!(t, Target::Window { spike_aware: true, steps, .. } if !steps.contains(&600))
    ));
}

#[test]
fn job_events_update_the_jobs_and_results() {
    let mut s = testdata::state();
    let target = Target::Checkpoint { step: 1200 };
    update(
        &mut s,
        Event::Job(JobEvent::Queued {
            id: 7,
            target: target.clone(),
        }),
    );
    assert_eq!(s.jobs[0].status, JobStatus::Queued);
    update(&mut s, Event::Job(JobEvent::Started { id: 7 }));
    let p = Progress {
        stage: "eval".into(),
        done: 3,
        total: Some(10),
        unit: Unit::Windows,
        detail: None,
    };
    update(
        &mut s,
        Event::Job(JobEvent::Progress {
            id: 7,
            progress: p.clone(),
            elapsed: Duration::from_secs(3),
        }),
    );
    assert_eq!(s.jobs[0].status, JobStatus::Running);
    assert_eq!(s.jobs[0].progress, Some(p));
    let before = s.results.len();
    let rec = testdata::record(1200, lawa::results::RAW, 1, 2.5);
    update(
        &mut s,
        Event::Job(JobEvent::Done {
            id: 7,
            records: vec![rec.clone()],
        }),
    );
    assert_eq!(s.jobs[0].status, JobStatus::Done);
    assert_eq!(s.results.len(), before + 1);
    assert_eq!(s.result_index()[&(Series::Raw, 1200)].mean_nll, 2.5);
    // Failures show their line and never quit.
    update(
        &mut s,
        Event::Job(JobEvent::Queued {
            id: 8,
            target: Target::Checkpoint { step: 100 },
        }),
    );
    update(
        &mut s,
        Event::Job(JobEvent::Failed {
            id: 8,
            error: "step100/model.safetensors: truncated".into(),
        }),
    );
    assert!(!s.quit);
    assert!(matches!(&s.jobs[1].status, JobStatus::Failed(e) if e.contains("truncated")));
    // Replaced jobs disappear.
    update(
        &mut s,
        Event::Job(JobEvent::Queued {
            id: 9,
            target: target.clone(),
        }),
    );
    update(&mut s, Event::Job(JobEvent::Replaced { id: 9, by: 10 }));
    assert!(s.jobs.iter().all(|j| j.id != 9));
}

#[test]
fn cancel_keys_target_the_selected_or_running_job() {
    let mut s = testdata::state();
    for id in 1..=3 {
        update(
            &mut s,
            Event::Job(JobEvent::Queued {
                id,
                target: Target::Checkpoint { step: id * 100 },
            }),
        );
    }
    update(&mut s, Event::Job(JobEvent::Started { id: 1 }));
    assert_eq!(press(&mut s, "c"), vec![Effect::Cancel(1)]);
    update(&mut s, code(KeyCode::Tab)); // jobs
    assert_eq!(s.focus, Focus::Jobs);
    press(&mut s, "jj");
    assert_eq!(press(&mut s, "c"), vec![Effect::Cancel(3)]);
    assert_eq!(press(&mut s, "C"), vec![Effect::CancelAll]);
}

fn job(s: &mut State, e: JobEvent) {
    update(s, Event::Job(e));
}

#[test]
fn c_cancels_the_highlighted_job_even_when_the_queue_moves_under_it() {
    let mut s = testdata::state();
    for id in 1..=3 {
        job(
            &mut s,
            JobEvent::Queued {
                id,
                target: Target::Checkpoint { step: id * 100 },
            },
        );
    }
    job(&mut s, JobEvent::Started { id: 1 });
    update(&mut s, code(KeyCode::Tab));
    press(&mut s, "j");
    assert_eq!(s.selected_job().map(|j| j.id), Some(2));
    // Job 1 ends and job 2 starts: the rows move, the highlight stays on job 2.
    job(
        &mut s,
        JobEvent::Done {
            id: 1,
            records: vec![testdata::record(100, "raw", 1, 3.0)],
        },
    );
    job(&mut s, JobEvent::Started { id: 2 });
    assert_eq!(s.selected_job().map(|j| j.id), Some(2));
    assert_eq!(s.selected_job_row(), Some(0));
    assert_eq!(press(&mut s, "c"), vec![Effect::Cancel(2)]);
    assert_eq!(s.message.as_deref(), Some("cancelling eval step 200"));
}

#[test]
fn a_failed_job_stays_failed_counts_clear_and_the_status_line_says_how_it_ended() {
    let mut s = testdata::state();
    let effects = press(&mut s, "r");
    assert_eq!(s.message.as_deref(), Some("queued: eval step 1200"));
    assert_eq!(submitted(&effects).len(), 1);
    for (id, step) in [(1, 1100), (2, 1200)] {
        job(
            &mut s,
            JobEvent::Queued {
                id,
                target: Target::Checkpoint { step },
            },
        );
    }
    job(&mut s, JobEvent::Started { id: 1 });
    job(
        &mut s,
        JobEvent::Failed {
            id: 1,
            error: "step1100/model.safetensors: truncated".into(),
        },
    );
    assert_eq!(
        s.message.as_deref(),
        Some("eval step 1100 failed: step1100/model.safetensors: truncated")
    );
    // A late "done" for the failed job never turns it into done.
    job(
        &mut s,
        JobEvent::Done {
            id: 1,
            records: vec![testdata::record(1100, "raw", 1, 3.0)],
        },
    );
    assert!(matches!(s.jobs[0].status, JobStatus::Failed(_)));
    assert_eq!(s.jobs.iter().filter(|j| j.status.is_active()).count(), 1);
    job(&mut s, JobEvent::Started { id: 2 });
    job(
        &mut s,
        JobEvent::Done {
            id: 2,
            records: vec![testdata::record(1200, "raw", 1, 2.6)],
        },
    );
    assert_eq!(s.jobs[1].status, JobStatus::Done);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "jobs finished: 1 done, 1 failed · last error: eval step 1100: \
             step1100/model.safetensors: truncated"
        )
    );
    // Nothing is left to cancel, and the screen says so.
    assert!(press(&mut s, "C").is_empty());
    assert_eq!(s.message.as_deref(), Some("no job to cancel"));
    // "cancelling" resolves once the jobs are gone.
    job(
        &mut s,
        JobEvent::Queued {
            id: 3,
            target: Target::Checkpoint { step: 100 },
        },
    );
    assert_eq!(press(&mut s, "C"), vec![Effect::CancelAll]);
    assert_eq!(s.message.as_deref(), Some("cancelling 1 job(s)"));
    job(&mut s, JobEvent::Cancelled { id: 3 });
    assert_eq!(s.message.as_deref(), Some("jobs finished: 1 cancelled"));
}

#[test]
fn q_with_jobs_queued_asks_once() {
    let mut s = testdata::state();
    job(
        &mut s,
        JobEvent::Queued {
            id: 1,
            target: Target::Checkpoint { step: 100 },
        },
    );
    assert!(press(&mut s, "q").is_empty());
    assert!(!s.quit);
    assert_eq!(
        s.message.as_deref(),
        Some("1 job(s) queued or running: q again quits and stops them")
    );
    // Another key in between: asked again.
    press(&mut s, "j");
    assert!(press(&mut s, "q").is_empty());
    assert_eq!(press(&mut s, "q"), vec![Effect::Quit]);
    assert!(s.quit);
}

#[test]
fn view_keys_say_what_they_did() {
    let mut s = testdata::state();
    press(&mut s, "x");
    assert_eq!(s.message.as_deref(), Some("x axis: tokens"));
    press(&mut s, "<");
    assert_eq!(s.message.as_deref(), Some("train-loss smoothing: 0.5"));
    press(&mut s, ">>");
    assert_eq!(s.message.as_deref(), Some("train-loss smoothing: 0.7"));
    press(&mut s, "l");
    assert_eq!(s.message.as_deref(), Some("y axis: log"));
}

#[test]
fn axis_toggles_zoom_and_pan() {
    let mut s = testdata::state();
    press(&mut s, "x");
    assert_eq!(s.x_axis, XAxis::Tokens);
    press(&mut s, "l");
    assert!(s.log_y);
    press(&mut s, "x");
    assert_eq!(s.x_axis, XAxis::Step);
    // Full range is 2..1200 (the loss log); zoom in halves it around the cursor (1200).
    press(&mut s, "i");
    let (a, b) = s.zoom.unwrap();
    assert!((b - a - 599.0).abs() < 1e-9, "{a} {b}");
    assert!((b - 1200.0).abs() < 1e-9);
    update(&mut s, code(KeyCode::Left));
    let (a2, _) = s.zoom.unwrap();
    assert!((a - a2 - 599.0 / 4.0).abs() < 1e-9);
    // Moving the cursor out of view pans to it.
    update(&mut s, code(KeyCode::Home));
    let (a3, b3) = s.zoom.unwrap();
    assert!(a3 <= 100.0 && 100.0 <= b3);
    press(&mut s, "o");
    assert_eq!(s.zoom, None);
    press(&mut s, "i0");
    assert_eq!(s.zoom, None);
}

#[test]
fn tokens_axis_needs_tokens() {
    let mut t = testdata::trajectory();
    t.tokens_per_step = None;
    let mut s = State::new(t, vec![], testdata::eval_view());
    press(&mut s, "x");
    assert_eq!(s.x_axis, XAxis::Step);
    assert!(s.message.as_deref().unwrap().contains("tokens"));
}

#[test]
fn smoothing_stays_in_range() {
    let mut s = testdata::state();
    press(&mut s, &">".repeat(10));
    assert_eq!(s.smoothing, 0.9);
    press(&mut s, &"<".repeat(20));
    assert_eq!(s.smoothing, 0.0);
}

#[test]
fn mouse_clicks_drags_and_wheel() {
    let mut s = testdata::state();
    s.areas = Areas {
        list_rows: Rect::new(1, 2, 30, 12),
        graph: Rect::new(40, 2, 101, 10),
        graph_x: (0.0, 1000.0),
        jobs_rows: Rect::new(40, 20, 30, 3),
        spikes_rows: Rect::new(80, 20, 20, 3),
        ..Areas::default()
    };
    let mouse = |kind, column, row| {
        Event::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    // Row 3 of the list (offset 0 after Home).
    update(&mut s, code(KeyCode::Home));
    update(&mut s, mouse(MouseEventKind::Down(MouseButton::Left), 5, 5));
    assert_eq!(s.cursor, 3);
    // Column 40 + 30 is x = 300: checkpoint index 2; drag to x = 700.
    update(
        &mut s,
        mouse(MouseEventKind::Down(MouseButton::Left), 70, 5),
    );
    assert_eq!(s.cursor_step(), Some(300));
    update(
        &mut s,
        mouse(MouseEventKind::Drag(MouseButton::Left), 110, 5),
    );
    update(&mut s, mouse(MouseEventKind::Up(MouseButton::Left), 110, 5));
    assert_eq!(s.cursor_step(), Some(700));
    assert_eq!(s.window_steps(), vec![300, 400, 500, 600, 700]);
    // Wheel over the chart zooms about the mouse.
    update(&mut s, mouse(MouseEventKind::ScrollUp, 90, 5));
    let (a, b) = s.zoom.unwrap();
    assert!(a < 500.0 && 500.0 < b && b - a < 1190.0);
    // Clicks outside any panel do nothing.
    let before = s.cursor;
    update(&mut s, mouse(MouseEventKind::Down(MouseButton::Left), 0, 0));
    assert_eq!(s.cursor, before);
}

#[test]
fn help_quit_and_ctrl_c() {
    let mut s = testdata::state();
    press(&mut s, "?");
    assert!(s.help);
    press(&mut s, "j");
    assert!(!s.help);
    assert_eq!(
        s.cursor,
        STEPS.len() - 1,
        "the key that closes help does nothing else"
    );
    assert_eq!(press(&mut s, "q"), vec![Effect::Quit]);
    assert!(s.quit);
    let mut s = testdata::state();
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(update(&mut s, ctrl_c), vec![Effect::Quit]);
}

#[test]
fn export_key_and_result() {
    let mut s = testdata::state();
    assert_eq!(press(&mut s, "e"), vec![Effect::Export]);
    update(
        &mut s,
        Event::Exported(Ok(vec!["a.png".into(), "a.svg".into()])),
    );
    assert!(s.message.as_deref().unwrap().contains("a.png, a.svg"));
    update(
        &mut s,
        Event::Exported(Err("out: permission denied".into())),
    );
    assert!(s.message.as_deref().unwrap().starts_with("export failed"));
}

#[test]
fn without_a_loss_log_spikes_come_from_the_raw_eval_curve() {
    let mut t = testdata::trajectory();
    t.metrics = Default::default();
    let mut s = State::new(t, vec![], testdata::eval_view());
    assert!(s.spikes.is_empty());
    // Raw evals arrive one by one: a flat curve with one bad checkpoint.
    for (i, &step) in STEPS.iter().enumerate() {
        let nll = if step == 900 {
            5.0
        } else {
            3.0 - i as f64 * 0.01
        };
        update(
            &mut s,
            Event::Job(JobEvent::Done {
                id: i as u64,
                records: vec![testdata::record(step, lawa::results::RAW, 1, nll)],
            }),
        );
    }
    assert!(s.in_spike(900), "{:?}", s.spikes);
    assert!(!s.in_spike(1200));
}

#[test]
fn results_another_writer_stored_appear_once_and_say_so() {
    let mut s = testdata::state();
    let before = s.visible_results().len();
    let steps = STEPS;
    // A raw result at a step that had none (the test data has raw at every other step).
    let new = testdata::record(steps[1], "raw", 1, 2.5);
    let known = s.results[0].clone();
    update(&mut s, Event::Stored(vec![new.clone(), known]));
    assert_eq!(s.visible_results().len(), before + 1);
    assert!(s.result_index().contains_key(&(Series::Raw, steps[1])));
    assert_eq!(
        s.message.as_deref(),
        Some("1 new result(s) from another writer of the store")
    );
    // The same record again (our own append read back) changes nothing.
    update(&mut s, Event::Stored(vec![new]));
    assert_eq!(s.visible_results().len(), before + 1);
    // An error on the status line is not overwritten by arrivals.
    s.message = Some("ctx: must be between 2 and 64".into());
    update(
        &mut s,
        Event::Stored(vec![testdata::record(steps[3], "raw", 1, 2.4)]),
    );
    assert_eq!(s.message.as_deref(), Some("ctx: must be between 2 and 64"));
}

#[test]
fn a_sweep_shows_progress_with_an_eta_and_ends_with_the_verdict() {
    let mut s = testdata::state();
    press(&mut s, "--"); // uniform k=3
    let eff = press(&mut s, "s");
    let targets: Vec<Target> = submitted(&eff).into_iter().cloned().collect();
    assert_eq!(targets.len(), 9);
    for (i, t) in targets.iter().enumerate() {
        update(
            &mut s,
            Event::Job(JobEvent::Queued {
                id: 100 + i as u64,
                target: t.clone(),
            }),
        );
    }
    let p = Progress {
        stage: "eval".into(),
        unit: Unit::Windows,
        done: 1,
        total: Some(1),
        detail: None,
    };
    for (i, t) in targets.iter().enumerate() {
        let id = 100 + i as u64;
        update(&mut s, Event::Job(JobEvent::Started { id }));
        update(
            &mut s,
            Event::Job(JobEvent::Progress {
                id,
                progress: p.clone(),
                elapsed: Duration::from_secs(2),
            }),
        );
        // The averages beat raw everywhere but at 500.
        let (scheme, k, delta) = match t {
            Target::Checkpoint { .. } => ("raw", 1, 0.0),
            Target::Window { end_step: 500, .. } => ("uniform", 3, 0.2),
            Target::Window { .. } => ("uniform", 3, -0.1),
        };
        let step = t.end_step();
        let rec = testdata::record(step, scheme, k, testdata::loss(step) + 0.1 + delta);
        update(
            &mut s,
            Event::Job(JobEvent::Done {
                id,
                records: vec![rec],
            }),
        );
        if i == 0 {
            assert_eq!(
                s.sweep_progress().as_deref(),
                Some("sweep uniform k=3 1/9 · ETA 16s")
            );
        }
    }
    assert_eq!(s.sweep_progress(), None);
    let records = s.visible_results();
    let v = lawa::export::verdict::verdict(
        &records,
        &Series::average(Scheme::Uniform, 3, false),
        &s.spikes,
        lawa::results::Metric::Perplexity,
    )
    .unwrap();
    assert_eq!(s.message.as_deref(), Some(v.to_string().as_str()));
    assert!(
        v.to_string()
            .starts_with("uniform k=3 beat raw at 9/10 steps;")
            && v.to_string().contains("worse at 500"),
        "{v}"
    );
}

#[test]
fn g_toggles_the_gain_view_and_says_what_it_shows() {
    let mut s = testdata::state();
    press(&mut s, "--"); // uniform k=3, stored from 700
    press(&mut s, "g");
    assert!(s.gain);
    assert!(s.message.as_deref().unwrap().starts_with("gain view"));
    let m = s.chart();
    assert!(m.gain);
    // No train loss in the gain view; the average sits below zero where it beats raw.
    assert!(m.curves.iter().all(|c| matches!(
        c.kind,
        chart::CurveKind::EvalRaw | chart::CurveKind::Average
    )));
    let avg = m
        .curves
        .iter()
        .find(|c| c.kind == chart::CurveKind::Average)
        .unwrap();
    assert!(avg.points.iter().all(|p| p.1 < 0.0), "{:?}", avg.points);
    press(&mut s, "g");
    assert!(!s.gain && !s.chart().gain);
}

#[test]
fn y_switches_losses_and_perplexities_and_says_so() {
    let mut s = testdata::state();
    press(&mut s, "y");
    assert!(s.ppl && s.chart().ppl);
    assert_eq!(
        s.message.as_deref(),
        Some("y axis: perplexity (exp of train loss, eval NLL)")
    );
    press(&mut s, "y");
    assert_eq!(
        s.message.as_deref(),
        Some("y axis: train loss, eval NLL (nats)")
    );
}

/// The header check reports a moment after open: a message a key gave meanwhile is kept.
#[test]
fn a_late_unreadable_warning_does_not_hide_what_a_key_said() {
    let mut s = testdata::state();
    // It replaces the greeting.
    s.greet("12 checkpoints · ? for keys".into());
    update(
        &mut s,
        Event::Unreadable(vec![(300, "step300/model.safetensors: truncated".into())]),
    );
    let m = s.message.clone().unwrap();
    assert!(m.starts_with("1 checkpoint(s) cannot be read"), "{m}");
    // What a key said stays first.
    press(&mut s, "y");
    let said = s.message.clone().unwrap();
    update(
        &mut s,
        Event::Unreadable(vec![(300, "step300/model.safetensors: truncated".into())]),
    );
    let m = s.message.clone().unwrap();
    assert!(
        m.starts_with(&format!("{said} · 1 checkpoint(s) cannot be read")),
        "{m}"
    );
}

#[test]
fn unreadable_checkpoints_are_marked_and_said_before_any_job_fails() {
    let mut s = testdata::state();
    update(
        &mut s,
        Event::Unreadable(vec![
            (300, "step300/model.safetensors: truncated".into()),
            (500, "step500: no weights".into()),
        ]),
    );
    assert_eq!(
        s.message.as_deref(),
        Some(
            "2 checkpoint(s) cannot be read; the windows holding them will fail: \
             step 300: step300/model.safetensors: truncated (and 1 more)"
        )
    );
    let text = {
        let area = ratatui::layout::Rect::new(0, 0, 50, 16);
        let mut buf = ratatui::buffer::Buffer::empty(area);
        crate::tui::panels::checkpoints::render(
            &mut buf,
            area,
            &s,
            &crate::tui::theme::Theme::plain(),
        );
        (0..16)
            .map(|y| {
                (0..50)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
    };
    let row = |step: u64| {
        text.iter()
            .find(|l| l.contains(&format!(" {step} ")))
            .unwrap()
            .clone()
    };
    assert!(
        row(300).contains('✗') && row(500).contains('✗'),
        "{text:#?}"
    );
    assert!(!row(400).contains('✗'));
}

#[test]
fn v_hides_the_train_loss_and_brings_it_back() {
    let mut s = testdata::state();
    let train = |s: &State| {
        s.chart()
            .curves
            .iter()
            .filter(|c| {
                matches!(
                    c.kind,
                    chart::CurveKind::TrainRaw | chart::CurveKind::TrainSmooth
                )
            })
            .count()
    };
    assert_eq!(train(&s), 2);
    press(&mut s, "v");
    assert_eq!(train(&s), 0);
    assert!(s
        .chart()
        .curves
        .iter()
        .any(|c| c.kind == chart::CurveKind::EvalRaw));
    assert_eq!(
        s.message.as_deref(),
        Some("train loss hidden: the eval curves alone")
    );
    press(&mut s, "v");
    assert_eq!(train(&s), 2);
}

/// Colour index of each eval series of the full chart.
fn colours(s: &State) -> Vec<(String, usize)> {
    s.chart_all()
        .curves
        .into_iter()
        .filter_map(|c| Some((c.series?.to_string(), c.color)))
        .collect()
}

#[test]
fn number_keys_hide_and_show_an_eval_series_which_keeps_its_colour() {
    let mut s = testdata::state();
    s.hide_train = true; // the eval curves alone set the y range
    let before = colours(&s);
    assert_eq!(before.len(), 2, "{before:?}");
    let model = s.chart();
    let (_, hi_all) = model.y_range(0.0, 1e9).unwrap();
    press(&mut s, "1");
    assert!(s.hidden.contains(&Series::Raw));
    assert_eq!(
        s.message.as_deref(),
        Some("hidden: raw checkpoint (1 shows it again)")
    );
    let shown = s.chart();
    assert!(shown.curves.iter().all(|c| c.series != Some(Series::Raw)));
    // The raw curve (0.15 above the average) no longer sets the top of the y range.
    let (_, hi) = shown.y_range(0.0, 1e9).unwrap();
    assert!(hi < hi_all, "{hi} < {hi_all}");
    // Hidden, the raw series keeps its place and the average its colour.
    assert_eq!(colours(&s), before);
    // A new scheme's results arrive: the others keep their colours, it gets a new one.
    let new: Vec<ResultRecord> = STEPS[8..]
        .iter()
        .map(|&st| testdata::record(st, "linear", 3, testdata::loss(st)))
        .collect();
    update(&mut s, Event::Stored(new));
    let after = colours(&s);
    assert_eq!(after[..2], before[..]);
    assert_eq!(after[2].0, "linear k=3");
    assert!(before.iter().all(|b| b.1 != after[2].1));
    press(&mut s, "1");
    assert!(s.hidden.is_empty());
    assert_eq!(s.message.as_deref(), Some("shown: raw checkpoint"));
    press(&mut s, "7");
    assert_eq!(
        s.message.as_deref(),
        Some("no series 7: the chart's eval series are 1–3")
    );
    // The export draws what the chart shows: the hidden series is not in it.
    press(&mut s, "3");
    assert!(s
        .chart()
        .curves
        .iter()
        .all(|c| c.series != Some(Series::average(Scheme::Linear, 3, false))));
}

#[test]
fn m_switches_the_metric_and_the_chart_and_the_gain_view_follow_its_direction() {
    use lawa::chart::CurveKind;
    use lawa::tasks::TaskName;
    let mut s = testdata::state_with_task();
    press(&mut s, "--");
    assert_eq!(s.series().to_string(), "uniform k=3");
    assert_eq!(s.metric, Metric::Perplexity);
    let ppl = s.visible_results().len();
    assert!(s.visible_results().iter().all(|r| r.task.is_none()));
    press(&mut s, "m");
    let task = Metric::Task(TaskName::LambadaOpenai);
    assert_eq!(s.metric, task);
    let m = s.message.clone().unwrap();
    assert!(
        m.contains("lambada_openai accuracy (higher is better)") && m.contains("cloze.jsonl"),
        "{m}"
    );
    assert_eq!(s.visible_results().len(), 12);
    assert!(s.visible_results().iter().all(|r| r.metric() == task));
    let chart = s.chart();
    assert_eq!(
        chart.y_label(),
        "lambada_openai accuracy (%, higher is better)"
    );
    // Accuracy has no common axis with the train loss: only the eval curves, in %.
    assert!(chart
        .curves
        .iter()
        .all(|c| matches!(c.kind, CurveKind::EvalRaw | CurveKind::Average)));
    let raw = chart
        .curves
        .iter()
        .find(|c| c.kind == CurveKind::EvalRaw)
        .unwrap();
    let at =
        |c: &lawa::chart::Curve, x: f64| c.points.iter().find(|p| p.0 == x).map(|p| p.1).unwrap();
    assert!((at(raw, 700.0) - 17.0).abs() < 1e-9);
    // The gain view: averaged minus raw accuracy, in points; above zero is better.
    press(&mut s, "g");
    assert!(
        s.message.as_deref().unwrap().contains("above 0"),
        "{:?}",
        s.message
    );
    let g = s.chart();
    let avg = g
        .curves
        .iter()
        .find(|c| c.kind == CurveKind::Average)
        .unwrap();
    assert!((at(avg, 700.0) - 5.0).abs() < 1e-9);
    assert!((at(avg, 900.0) + 3.0).abs() < 1e-9);
    assert_eq!(g.better_side(), "above 0: the average is better");
    // Back to perplexity: the perplexity results again, lower is better.
    press(&mut s, "gm");
    assert_eq!(s.metric, Metric::Perplexity);
    assert_eq!(s.visible_results().len(), ppl);
    assert_eq!(s.chart().y_label(), "train loss, eval NLL (nats)");
}

#[test]
fn m_without_a_task_stays_on_perplexity_and_says_how_to_add_one() {
    let mut s = testdata::state();
    press(&mut s, "m");
    assert_eq!(s.metric, Metric::Perplexity);
    assert!(
        s.message.as_deref().unwrap().contains("--task"),
        "{:?}",
        s.message
    );
}

#[test]
fn a_window_is_evaluated_again_while_a_task_result_is_missing() {
    let mut s = testdata::state_with_task();
    press(&mut s, "--");
    s.cursor = 6; // step 700: raw and k=3 stored for perplexity and the task
    let e = update(&mut s, code(KeyCode::Enter));
    assert!(submitted(&e).is_empty(), "{:?}", s.message);
    // Without the task's window result there: the window is queued (perplexity is
    // stored, the job computes what is missing); the raw checkpoint is complete.
    s.results
        .retain(|r| !(r.task.is_some() && r.end_step == 700 && !r.is_raw()));
    let e = update(&mut s, code(KeyCode::Enter));
    let t = submitted(&e);
    assert_eq!(t.len(), 1);
    assert!(matches!(t[0], Target::Window { end_step: 700, .. }));
}

#[test]
fn a_sweep_shown_on_a_task_ends_with_the_accuracy_verdict() {
    let mut s = testdata::state_with_task();
    press(&mut s, "--m");
    let effects = press(&mut s, "s");
    // Everything missing is queued; finishing them all says the verdict of the shown metric.
    let ids: Vec<u64> = (0..submitted(&effects).len() as u64)
        .map(|i| 9000 + i)
        .collect();
    for (id, t) in ids.iter().zip(submitted(&effects)) {
        update(
            &mut s,
            Event::Job(JobEvent::Queued {
                id: *id,
                target: t.clone(),
            }),
        );
    }
    for id in &ids {
        update(
            &mut s,
            Event::Job(JobEvent::Done {
                id: *id,
                records: vec![],
            }),
        );
    }
    let m = s.message.clone().unwrap();
    assert!(m.contains("pp lambada_openai acc"), "{m}");
    assert!(m.starts_with("uniform k=3 beat raw at 2/3 steps"), "{m}");
}
