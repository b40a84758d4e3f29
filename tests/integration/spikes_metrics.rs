//! Spike detection on a loss read from a run folder's `metrics.jsonl`, the way the explorer uses
//! it: detect regions on the training loss, then ask which checkpoints lie inside one.

use std::fs;

use lawa::source;
use lawa::spikes::{detect, in_spike, SpikeParams};

#[test]
fn a_logged_spike_marks_the_checkpoints_inside_it() {
    let d = tempfile::tempdir().unwrap();
    for s in (0..=2000).step_by(100) {
        let dir = d.path().join(format!("step{s}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), "{}").unwrap();
        fs::write(dir.join("model.safetensors"), "x").unwrap();
    }
    // A decaying loss with deterministic ripple, a blow-up at step 1150 that takes ~120 steps
    // to come back down, and one NaN step, as a diverging run logs it (Python writes NaN bare).
    let mut log = String::new();
    for s in 1..=2000u64 {
        let ripple = 0.03 * ((s as f64) * 1.7).sin() * ((s as f64) * 0.31).cos();
        let mut loss = 2.5 + 5.0 * (-(s as f64) / 250.0).exp() + ripple;
        if (1150..1270).contains(&s) {
            loss += 2.0 * (1.0 - (s - 1150) as f64 / 120.0);
        }
        if s == 1700 {
            log.push_str(&format!("{{\"step\": {s}, \"loss\": NaN}}\n"));
            continue;
        }
        log.push_str(&format!(
            "{{\"step\": {s}, \"loss\": {loss}, \"lr\": 0.003}}\n"
        ));
    }
    fs::write(d.path().join("metrics.jsonl"), log).unwrap();

    let t = source::open(d.path().to_str().unwrap(), &lawa::Config::default().hub).unwrap();
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let loss = &t.metrics.loss;
    assert_eq!(loss.len(), 2000);
    let regions = detect(&loss.steps, &loss.values, &SpikeParams::default());
    assert_eq!(regions.len(), 2, "{regions:?}");
    let r = &regions[0];
    assert_eq!((r.start_step, r.peak_step), (1150, 1150));
    assert!((1255..=1270).contains(&r.end_step), "{r:?}");
    assert!((r.height - 2.0).abs() < 0.1, "{r:?}");
    assert_eq!((regions[1].start_step, regions[1].end_step), (1700, 1700));

    let inside: Vec<u64> = t
        .steps()
        .into_iter()
        .filter(|&s| in_spike(&regions, s))
        .collect();
    assert_eq!(inside, vec![1200, 1700]);
}
