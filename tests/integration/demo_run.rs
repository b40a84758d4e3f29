//! The demo run on its tiny configuration: a real (seconds-long) training run written to disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lawa::model::{Config, GptNeox};
use lawa::progress::{CancelToken, Reporter, Unit};
use lawa::train::{self, DemoConfig, TrainError};

fn probe(cfg: &DemoConfig) -> Tensor {
    let ids: Vec<u32> = (0..2 * cfg.ctx as u32)
        .map(|i| (i * 37 + 5) % 257)
        .collect();
    Tensor::from_vec(ids, (2, cfg.ctx), &Device::Cpu).unwrap()
}

fn load(dir: &Path) -> GptNeox {
    let cfg = Config::load(&dir.join("config.json")).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    GptNeox::new(&cfg, vb).unwrap()
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tiny_run_learns_writes_metrics_and_checkpoints_that_reload_exactly() {
    let cfg = DemoConfig::tiny();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let x = probe(&cfg);
    let mut at_save: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let reports = Arc::new(AtomicU64::new(0));
    let r2 = reports.clone();
    let reporter = Reporter::new(CancelToken::new(), move |p| {
        if p.unit == Unit::Steps && p.total.is_some() {
            assert!(p.detail.as_deref().unwrap_or("").starts_with("loss "));
            r2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let summary = train::train_with_observer(&cfg, &out, &reporter, &mut |step, model| {
        let logits = model.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        at_save.insert(step, logits);
        Ok(())
    })
    .unwrap();
    assert_eq!(reports.load(Ordering::SeqCst), cfg.steps);
    assert!(train::is_complete(&out));
    assert_eq!(summary.checkpoint_steps, cfg.checkpoint_steps());
    assert_eq!(
        at_save.keys().copied().collect::<Vec<_>>(),
        cfg.checkpoint_steps()
    );

    // metrics.jsonl: one line per step, in order, with the tokens each step adds.
    let m = metrics(&out);
    assert_eq!(m.len() as u64, cfg.steps);
    for (i, line) in m.iter().enumerate() {
        let step = i as u64 + 1;
        assert_eq!(line["step"].as_u64(), Some(step));
        assert_eq!(line["tokens"].as_u64(), Some(step * cfg.tokens_per_step()));
        let lr = line["lr"].as_f64().unwrap();
        assert!((lr - cfg.schedule().lr(step)).abs() < 1e-12);
        assert!(line["loss"].as_f64().unwrap().is_finite());
        assert!(line["grad_norm"].as_f64().unwrap() > 0.0);
    }
    // The loss falls: the last ten steps average well below the first ten.
    let mean = |s: &[serde_json::Value]| {
        s.iter().map(|l| l["loss"].as_f64().unwrap()).sum::<f64>() / s.len() as f64
    };
    let (first, last) = (mean(&m[..10]), mean(&m[m.len() - 10..]));
    assert!(last < first - 0.5, "loss {first} -> {last}");

    // The declared learning-rate surge: applied on its steps only, written into
    // trajectory.json, and it makes the loss jump above where it was just before.
    let surge = cfg
        .lr_surge
        .clone()
        .expect("the tiny demo declares a surge, like the real one");
    let plain = lawa::train::optim::Schedule {
        surge: None,
        ..cfg.schedule()
    };
    for line in &m {
        let step = line["step"].as_u64().unwrap();
        let ratio = line["lr"].as_f64().unwrap() / plain.lr(step);
        let inside = step >= surge.step && step < surge.step + surge.steps;
        let want = if inside { surge.factor } else { 1.0 };
        assert!((ratio - want).abs() < 1e-9, "step {step}: lr ratio {ratio}");
    }
    let at = surge.step as usize - 1; // index of the first surged step
    let (before, after) = (mean(&m[at - 10..at]), mean(&m[at + 1..at + 11]));
    assert!(after > before + 0.3, "no spike: {before} -> {after}");

    // Every checkpoint is a model dir that reloads with the logits it had when saved.
    for (step, logits) in &at_save {
        let dir = out.join(format!("step{step}"));
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
        }
        let got = load(&dir)
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(&got, logits, "step {step}");
        let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        assert_eq!(
            tok.get_vocab_size(true),
            Config::load(&dir.join("config.json")).unwrap().vocab_size
        );
    }
    // Training reaches every parameter: between two checkpoints every tensor moved, including
    // the biases and LayerNorms, which get no weight decay and so move only by their gradient.
    let steps = cfg.checkpoint_steps();
    let a = candle_core::safetensors::load(
        out.join(format!("step{}/model.safetensors", steps[0])),
        &Device::Cpu,
    )
    .unwrap();
    let b = candle_core::safetensors::load(
        out.join(format!("step{}/model.safetensors", steps[1])),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let diff = (ta - &b[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff > 0.0, "{name} did not change between checkpoints");
    }
    // The held-out text and the run's description are there.
    let heldout = std::fs::read_to_string(out.join("heldout.txt")).unwrap();
    // Real English: the opening of the held-out novel, cut at a paragraph break.
    assert!(heldout.starts_with("Persuasion"), "{}", &heldout[..40]);
    assert!(heldout.len() <= cfg.heldout_bytes && heldout.len() > cfg.heldout_bytes / 2);
    // The cloze task: lambada_openai's schema, passages of the held-out novel ending at the
    // target word, which the passage names earlier.
    let cloze = std::fs::read_to_string(out.join(train::CLOZE)).unwrap();
    let items: Vec<String> = cloze
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v.as_object().unwrap().len(), 1, "{l}");
            v["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(!items.is_empty());
    let novel = lawa::train::corpus::HELDOUT_NOVEL.text();
    for text in &items {
        assert!(novel.contains(text.as_str()), "{text}");
        let (context, target) = text.rsplit_once(' ').unwrap();
        assert!(target.chars().all(|c| c.is_ascii_alphabetic()), "{text}");
        assert!(
            context.to_lowercase().contains(&target.to_lowercase()),
            "{text}"
        );
    }
    let traj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trajectory.json")).unwrap())
            .unwrap();
    assert_eq!(
        traj["tokens_per_step"].as_u64(),
        Some(cfg.tokens_per_step())
    );
    assert_eq!(traj["seed"].as_u64(), Some(cfg.seed));
    assert_eq!(
        traj["tasks"]["lambada_openai"]["items"].as_u64(),
        Some(items.len() as u64)
    );
    assert!(traj["corpus"]["source"]
        .as_str()
        .unwrap()
        .contains("Persuasion held out"));
    assert_eq!(traj["lr_surge"]["factor"].as_f64(), Some(surge.factor));
    assert!(traj["lr_surge"]["why"]
        .as_str()
        .unwrap()
        .contains("on purpose"));
    // No temporary dir is left beside it.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["demo".to_string()]);
}

#[test]
fn same_seed_same_checkpoints_and_reuse_unless_config_changes() {
    let cfg = DemoConfig {
        steps: 20,
        ..DemoConfig::tiny()
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train::run_demo(&cfg, &a, &Reporter::silent()).unwrap();
    train::run_demo(&cfg, &b, &Reporter::silent()).unwrap();
    for step in cfg.checkpoint_steps() {
        for f in ["model.safetensors", "config.json", "tokenizer.json"] {
            let pa = a.join(format!("step{step}")).join(f);
            let pb = b.join(format!("step{step}")).join(f);
            assert_eq!(
                std::fs::read(&pa).unwrap(),
                std::fs::read(&pb).unwrap(),
                "{}",
                pa.display()
            );
        }
    }
    assert_eq!(metrics(&a), metrics(&b));

    // Same config again: reused, nothing rewritten.
    let before = std::fs::metadata(a.join("metrics.jsonl"))
        .unwrap()
        .modified()
        .unwrap();
    let s = train::run_demo(&cfg, &a, &Reporter::silent()).unwrap();
    assert!(s.reused);
    assert_eq!(
        std::fs::metadata(a.join("metrics.jsonl"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );

    // Another seed: retrained in place, different weights.
    let other = DemoConfig {
        seed: 99,
        ..cfg.clone()
    };
    let s = train::run_demo(&other, &a, &Reporter::silent()).unwrap();
    assert!(!s.reused);
    let last = format!("step{}", cfg.steps);
    assert_ne!(
        std::fs::read(a.join(&last).join("model.safetensors")).unwrap(),
        std::fs::read(b.join(&last).join("model.safetensors")).unwrap()
    );
    assert_eq!(train::existing_config(&a), Some(other));
}

#[test]
fn a_cancelled_run_leaves_nothing_that_looks_complete() {
    let cfg = DemoConfig::tiny();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    // What a killed run leaves behind (no process has this id) is cleaned up by the next run.
    std::fs::create_dir(tmp.path().join(".demo.partial-999999999")).unwrap();
    let token = CancelToken::new();
    let t2 = token.clone();
    let reporter = Reporter::new(token, move |p| {
        if p.total.is_some() && p.done == 25 {
            t2.cancel();
        }
    });
    let err = train::run_demo(&cfg, &out, &reporter).unwrap_err();
    assert!(matches!(err, TrainError::Cancelled(_)), "{err}");
    assert!(!out.exists());
    assert!(!train::is_complete(&out));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn corpus_file_is_trained_on_and_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let text = lawa::train::corpus::austen(60_000, 0).train;
    let path = tmp.path().join("my text.txt");
    std::fs::write(&path, &text).unwrap();
    let cfg = DemoConfig {
        corpus: Some(path.clone()),
        steps: 10,
        ..DemoConfig::tiny()
    };
    let out = tmp.path().join("demo");
    train::run_demo(&cfg, &out, &Reporter::silent()).unwrap();
    let heldout = std::fs::read_to_string(out.join("heldout.txt")).unwrap();
    assert!(text.ends_with(&heldout) && heldout.len() > 1000);

    let bad = tmp.path().join("bad.bin");
    std::fs::write(&bad, b"hello\xff\xfeworld").unwrap();
    let cfg = DemoConfig {
        corpus: Some(bad.clone()),
        ..cfg
    };
    let err = train::run_demo(&cfg, &tmp.path().join("x"), &Reporter::silent())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.bin") && err.contains("offset 5"), "{err}");
    assert!(!tmp.path().join("x").exists());
}
