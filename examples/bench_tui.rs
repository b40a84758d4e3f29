//! Explorer speed: opening a run folder of 154 checkpoints (metadata only), and drawing one
//! frame with 150 checkpoints and 5 curves (train loss raw + smoothed, raw eval, two schemes).
//!
//! `cargo run --release --example bench_tui` — numbers go into BENCHMARKS.md.

// The explorer lives in the binary; the bench compiles the same source files.
#[allow(dead_code, unused_imports)]
#[path = "../src/tui/mod.rs"]
mod tui;

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use lawa::results::{ResultRecord, RAW};
use lawa::source::{Checkpoint, Location, Metrics, Series, Trajectory};
use tui::state::{update, EvalView, Event, State};
use tui::theme::Theme;

/// A run folder with the 154 step names of a Pythia run, each a small HF model dir.
fn write_run(dir: &std::path::Path) -> usize {
    let mut steps: Vec<u64> = vec![0];
    steps.extend((0..10).map(|i| 1u64 << i));
    steps.extend((1..=143).map(|i| i * 1000));
    let header =
        br#"{"gpt_neox.embed_in.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#;
    for s in &steps {
        let d = dir.join(format!("step{s}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("config.json"),
            r#"{"architectures":["GPTNeoXForCausalLM"],"model_type":"gpt_neox","hidden_size":4,"num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":16,"vocab_size":4,"max_position_embeddings":16}"#,
        )
        .unwrap();
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        f.extend_from_slice(&[0u8; 64]);
        std::fs::write(d.join("model.safetensors"), f).unwrap();
    }
    steps.len()
}

fn record(end: u64, scheme: &str, k: usize, nll: f64) -> ResultRecord {
    ResultRecord {
        source: "bench".into(),
        end_step: end,
        steps: vec![end],
        scheme: lawa::results::parse_stored_scheme(scheme).unwrap(),
        k,
        spike_aware: false,
        weights: vec![1.0],
        data: "d".into(),
        data_hash: "h".into(),
        ctx: 64,
        max_tokens: None,
        dtype: lawa::results::EvalDType::F32,
        device: "cpu".into(),
        mean_nll: nll,
        ppl: nll.exp(),
        bits_per_byte: None,
        predicted_tokens: 1,
        task: None,
        tool_version: "bench".into(),
        unix_time: 0,
    }
}

fn bench_state() -> State {
    let ckpt_steps: Vec<u64> = (1..=150).map(|i| i * 1000).collect();
    let log_steps: Vec<u64> = (1..=15_000).map(|i| i * 10).collect();
    let loss = |s: u64| 2.0 + 8.0 / (s as f64 / 10.0).sqrt() + 0.05 * ((s as f64) * 0.01).sin();
    let traj = Trajectory {
        name: "bench".into(),
        source: "bench".into(),
        checkpoints: ckpt_steps
            .iter()
            .map(|&s| Checkpoint {
                step: s,
                tokens: None,
                name: format!("step{s}"),
                location: Location::Local {
                    path: format!("/x/step{s}").into(),
                },
            })
            .collect(),
        metrics: Metrics {
            loss: Series {
                values: log_steps.iter().map(|&s| loss(s)).collect(),
                steps: log_steps,
            },
            ..Default::default()
        },
        tokens_per_step: Some(2_097_152),
        warnings: vec![],
        notes: vec![],
    };
    let mut records = Vec::new();
    for &s in &ckpt_steps {
        records.push(record(s, RAW, 1, loss(s) + 0.1));
        records.push(record(s, "uniform", 5, loss(s) - 0.05));
        records.push(record(s, "ema:2000", 5, loss(s) - 0.03));
    }
    State::new(
        traj,
        records,
        EvalView {
            data: "d".into(),
            data_hash: "h".into(),
            ctx_asked: None,
            max_ctx: Some(64),
            learnt_ctx: None,
            max_tokens: None,
            data_tokens_max: None,
            dtype: Some(lawa::results::EvalDType::F32),
            device: "cpu".into(),
            tasks: Vec::new(),
        },
    )
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    format!(
        "mean {:.2} ms, median {:.2} ms, max {:.2} ms ({} runs)",
        mean.as_secs_f64() * 1e3,
        v[v.len() / 2].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    )
}

fn main() {
    let tmp = std::env::temp_dir().join(format!("lawa-bench-{}", std::process::id()));
    let n = write_run(&tmp);
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let traj = lawa::source::open(&tmp.display().to_string(), &lawa::Config::default().hub)
            .expect("the run opens");
        opens.push(t.elapsed());
        assert_eq!(traj.checkpoints.len(), n);
    }
    println!("open {n} checkpoints (metadata only): {}", stats(opens));
    let _ = std::fs::remove_dir_all(&tmp);

    let theme = Theme::from_env();
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut state = bench_state();
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        let mut frames = Vec::new();
        for i in 0..200 {
            // Alternate keys so every frame has something new to draw.
            let key = if i % 2 == 0 {
                KeyCode::Up
            } else {
                KeyCode::Char(']')
            };
            let t = Instant::now();
            update(&mut state, Event::Key(KeyEvent::from(key)));
            let mut areas = state.areas;
            term.draw(|f| {
                let area = f.area();
                areas = tui::ui::draw(f.buffer_mut(), area, &state, &theme);
            })
            .unwrap();
            state.areas = areas;
            frames.push(t.elapsed());
        }
        println!(
            "key + frame at {w}x{h}, 150 checkpoints, {} curves: {}",
            state.chart().curves.len(),
            stats(frames)
        );
    }
}
