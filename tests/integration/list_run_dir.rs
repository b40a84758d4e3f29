//! Run folders made by the tests in every naming style, opened through `lawa::source::open`.

use std::fs;
use std::path::{Path, PathBuf};

use lawa::progress::Reporter;
use lawa::source::{self, Location, SourceError, Trajectory};

/// Writes `rel` under `root` (creating folders) with `content`.
fn put(root: &Path, rel: &str, content: &[u8]) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    p
}

/// An HF-style model dir: config.json + a weights file (listing never reads the weights).
fn model_dir(root: &Path, name: &str, weights: &str) {
    put(root, &format!("{name}/config.json"), b"{}");
    put(root, &format!("{name}/{weights}"), b"not read when listing");
}

fn open(dir: &Path) -> Trajectory {
    source::open(dir.to_str().unwrap(), &lawa::Config::default().hub).unwrap()
}

fn names(t: &Trajectory) -> Vec<&str> {
    t.checkpoints.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn folders_in_every_naming_style_sorted_numerically() {
    let d = tempfile::tempdir().unwrap();
    model_dir(d.path(), "step1000", "model.safetensors");
    model_dir(d.path(), "checkpoint-200", "pytorch_model.bin");
    model_dir(d.path(), "global_step30000", "model.safetensors");
    model_dir(d.path(), "iter_0000500", "model-00001-of-00002.safetensors");
    model_dir(d.path(), "ckpt_9", "pytorch_model.bin.index.json");
    let t = open(d.path());
    assert_eq!(t.steps(), vec![9, 200, 500, 1000, 30000]);
    assert_eq!(
        names(&t),
        vec![
            "ckpt_9",
            "checkpoint-200",
            "iter_0000500",
            "step1000",
            "global_step30000"
        ]
    );
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(t.name, d.path().file_name().unwrap().to_string_lossy());
    assert_eq!(t.source, d.path().to_str().unwrap());
    let c = t.checkpoint(1000).unwrap();
    let Location::Local { path } = &c.location else {
        panic!("{c:?}")
    };
    assert!(path.is_absolute());
    assert_eq!(path, &fs::canonicalize(d.path().join("step1000")).unwrap());
    assert_eq!(
        source::local_path(c, &lawa::Config::default().hub, &Reporter::silent()).unwrap(),
        *path
    );
    // No tokens per step anywhere: tokens unknown.
    assert!(t.tokens_per_step.is_none());
    assert!(t.checkpoints.iter().all(|c| c.tokens.is_none()));
}

#[test]
fn files_in_every_naming_style() {
    let d = tempfile::tempdir().unwrap();
    for f in [
        "step_1000.safetensors",
        "ckpt_20.pt",
        "model_00300.bin",
        "epoch=0-step=4000.ckpt",
        "checkpoint-50.pth",
    ] {
        put(d.path(), f, b"x");
    }
    put(d.path(), "notes.txt", b"ignored");
    put(d.path(), "config.json", b"{}");
    let t = open(d.path());
    assert_eq!(t.steps(), vec![20, 50, 300, 1000, 4000]);
    assert_eq!(t.checkpoint(4000).unwrap().name, "epoch=0-step=4000.ckpt");
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn duplicates_and_unparseable_names_are_reported() {
    let d = tempfile::tempdir().unwrap();
    model_dir(d.path(), "step100", "model.safetensors");
    model_dir(d.path(), "checkpoint-100", "model.safetensors");
    put(d.path(), "step_100.safetensors", b"x");
    put(d.path(), "step_200.pt", b"x");
    put(d.path(), "step_200.safetensors", b"x");
    model_dir(d.path(), "final", "model.safetensors");
    put(d.path(), "best.pt", b"x");
    fs::create_dir_all(d.path().join("step300")).unwrap(); // no weights inside
    put(d.path(), "step300/config.json", b"{}");
    // Written by HF Trainer beside checkpoints: not checkpoints, not worth a warning.
    put(d.path(), "training_args.bin", b"x");
    put(d.path(), "optimizer.pt", b"x");
    fs::create_dir_all(d.path().join("logs")).unwrap();
    let t = open(d.path());
    assert_eq!(t.steps(), vec![100, 200]);
    // A folder beats a file; safetensors beats other files; then name order.
    assert_eq!(names(&t), vec!["checkpoint-100", "step_200.safetensors"]);
    let w = t.warnings.join("\n");
    for expected in [
        "step 100 found more than once: using checkpoint-100, skipped step100",
        "step 100 found more than once: using checkpoint-100, skipped step_100.safetensors",
        "step 200 found more than once: using step_200.safetensors, skipped step_200.pt",
        "final/: a model folder with no step in its name; skipped",
        "best.pt: a weights file with no step in its name; skipped",
        "step300/: named like a checkpoint but holds no model.safetensors or pytorch_model.bin; skipped",
    ] {
        assert!(w.contains(expected), "missing {expected:?} in:\n{w}");
    }
    assert_eq!(t.warnings.len(), 6, "{w}");
}

#[test]
fn hf_trainer_output_dir_with_its_own_model_and_trainer_state() {
    let d = tempfile::tempdir().unwrap();
    let state = |n: u64| {
        let entries: Vec<String> = (1..=n)
            .map(|s| {
                format!(
                    r#"{{"epoch": 0.1, "learning_rate": 0.001, "loss": {}, "step": {}}}"#,
                    5.0 - s as f64 * 0.01,
                    s * 10
                )
            })
            .collect();
        format!(
            r#"{{"global_step": {}, "log_history": [{}]}}"#,
            n * 10,
            entries.join(",")
        )
    };
    model_dir(d.path(), "checkpoint-100", "model.safetensors");
    put(
        d.path(),
        "checkpoint-100/trainer_state.json",
        state(10).as_bytes(),
    );
    put(d.path(), "checkpoint-100/optimizer.pt", b"x");
    model_dir(d.path(), "checkpoint-200", "model.safetensors");
    put(
        d.path(),
        "checkpoint-200/trainer_state.json",
        state(20).as_bytes(),
    );
    // The final model at the top, as Trainer.save_model() leaves it.
    put(d.path(), "model.safetensors", b"x");
    put(d.path(), "config.json", b"{}");
    let t = open(d.path());
    assert_eq!(t.steps(), vec![100, 200]);
    // The newest checkpoint's trainer_state.json holds the whole history.
    assert_eq!(t.metrics.loss.len(), 20);
    assert_eq!(t.metrics.loss.steps[19], 200);
    assert!((t.metrics.loss.values[19] - 4.8).abs() < 1e-9);
    assert_eq!(t.metrics.lr.len(), 20);
    assert_eq!(
        t.metrics.files,
        vec![fs::canonicalize(d.path())
            .unwrap()
            .join("checkpoint-200/trainer_state.json")]
    );
    assert_eq!(
        t.warnings,
        vec!["the folder's own model (model.safetensors) has no step; skipped"]
    );
}

#[test]
fn demo_style_run_with_metrics_jsonl_and_trajectory_json() {
    let d = tempfile::tempdir().unwrap();
    for s in [0, 50, 100, 150] {
        model_dir(d.path(), &format!("step{s}"), "model.safetensors");
    }
    let mut lines = String::new();
    for s in 1..=150u64 {
        lines.push_str(&format!(
            "{{\"step\": {s}, \"tokens\": {}, \"loss\": {}, \"lr\": 0.01, \"grad_norm\": 1.0}}\n",
            s * 1024,
            6.0 / (s as f64).sqrt()
        ));
    }
    lines.push_str("{\"step\": \"oops\"}\n");
    put(d.path(), "metrics.jsonl", lines.as_bytes());
    put(
        d.path(),
        "trajectory.json",
        br#"{"seed": 1, "tokens_per_step": 1024, "lr_surge": {"step": 80, "steps": 3, "factor": 20.0, "why": "made on purpose"}}"#,
    );
    put(d.path(), "heldout.txt", b"text");
    let t = open(d.path());
    assert_eq!(t.steps(), vec![0, 50, 100, 150]);
    assert_eq!(t.tokens_per_step, Some(1024));
    // A spike the run made on purpose is carried to every view.
    assert_eq!(
        t.notes,
        vec!["spike made on purpose: lr x20 at steps 80-82 (lr_surge in trajectory.json)"]
    );
    let tokens: Vec<_> = t.checkpoints.iter().map(|c| c.tokens).collect();
    assert_eq!(
        tokens,
        vec![Some(0), Some(51_200), Some(102_400), Some(153_600)]
    );
    assert_eq!(t.metrics.loss.len(), 150);
    assert_eq!(t.metrics.grad_norm.len(), 150);
    assert_eq!(t.metrics.tokens.len(), 150);
    assert_eq!(
        t.warnings,
        vec![format!(
            "{}: line 151: step \"oops\" is not a whole number",
            fs::canonicalize(d.path())
                .unwrap()
                .join("metrics.jsonl")
                .display()
        )]
    );
}

#[test]
fn tokens_per_step_from_logged_tokens_and_csv_metrics() {
    let d = tempfile::tempdir().unwrap();
    put(d.path(), "step_10.safetensors", b"x");
    put(d.path(), "step_20.safetensors", b"x");
    put(d.path(), "step_25.safetensors", b"x");
    let mut csv = String::from("step,loss,tokens,lr\n");
    for s in 1..=20u64 {
        csv.push_str(&format!("{s},{},{},0.1\n", 4.0 - s as f64 * 0.1, s * 4096));
    }
    put(d.path(), "train_log.csv", csv.as_bytes());
    put(d.path(), "eval.csv", b"name,accuracy\nx,1\n"); // not metrics: ignored
    let t = open(d.path());
    assert_eq!(t.tokens_per_step, Some(4096));
    assert_eq!(t.metrics.loss.len(), 20);
    assert_eq!(t.metrics.files.len(), 1);
    // Step 25 is past the log: tokens from the per-step rate.
    let tokens: Vec<_> = t.checkpoints.iter().map(|c| c.tokens).collect();
    assert_eq!(tokens, vec![Some(40_960), Some(81_920), Some(102_400)]);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn checkpoints_in_a_checkpoints_subfolder() {
    let d = tempfile::tempdir().unwrap();
    model_dir(d.path(), "checkpoints/step10", "model.safetensors");
    model_dir(d.path(), "checkpoints/step20", "model.safetensors");
    put(
        d.path(),
        "metrics.jsonl",
        b"{\"step\": 10, \"loss\": 2.0}\n",
    );
    let t = open(d.path());
    assert_eq!(t.steps(), vec![10, 20]);
    assert_eq!(t.metrics.loss.values, vec![2.0]);
}

fn err(spec: &str) -> String {
    source::open(spec, &lawa::Config::default().hub)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_sources_are_one_line_errors_naming_the_folder() {
    let d = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(d.path()).unwrap();

    let missing = root.join("nope");
    let e = err(missing.to_str().unwrap());
    assert_eq!(e, format!("{}: no such file or folder", missing.display()));

    let empty = root.join("empty");
    fs::create_dir(&empty).unwrap();
    let e = err(empty.to_str().unwrap());
    assert_eq!(
        e,
        format!("{}: empty folder, no checkpoints in it", empty.display())
    );

    let other = root.join("other");
    put(&other, "readme.md", b"hi");
    let e = err(other.to_str().unwrap());
    assert!(
        e.starts_with(&format!(
            "{}: no checkpoints found: expected",
            other.display()
        )),
        "{e}"
    );

    let single = root.join("single");
    model_dir(&root, "single", "model.safetensors");
    let e = err(single.to_str().unwrap());
    assert!(e.contains("a single model dir, not a run"), "{e}");

    let hollow = root.join("hollow");
    fs::create_dir_all(hollow.join("step100")).unwrap();
    let e = err(hollow.to_str().unwrap());
    assert!(
        e.contains("step100/: named like a checkpoint but holds no"),
        "{e}"
    );

    let file = put(&root, "file.safetensors", b"x");
    let e = err(file.to_str().unwrap());
    assert!(e.contains("not a folder"), "{e}");

    for e in [
        err(missing.to_str().unwrap()),
        err(empty.to_str().unwrap()),
        err(other.to_str().unwrap()),
    ] {
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn local_path_of_a_vanished_checkpoint_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    model_dir(d.path(), "step1", "model.safetensors");
    model_dir(d.path(), "step2", "model.safetensors");
    let t = open(d.path());
    fs::remove_dir_all(d.path().join("step2")).unwrap();
    let e = source::local_path(
        t.checkpoint(2).unwrap(),
        &lawa::Config::default().hub,
        &Reporter::silent(),
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::NotFound(_)), "{e}");
    assert!(
        e.to_string().ends_with("step2: no such file or folder"),
        "{e}"
    );
}
