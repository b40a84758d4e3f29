//! `lawa sweep --task` and `lawa export --task` end to end: each task's accuracy stored for
//! every raw checkpoint and averaged window is what `lawa average` + `lawa eval --task` give
//! for that model; results are keyed by the task file's content; a bad file is one line.

use std::path::PathBuf;

use lawa::checkpoint::{SafetensorsWriter, WeightsReader, DEFAULT_SHARD_SIZE};

use crate::support::{self, lawa_at, s as p};

fn fixtures() -> PathBuf {
    support::fixture("tasks")
}

/// A run of steps 100..=400, each the tasks fixture's model (with its tokenizer) with every
/// float weight shifted by a step-dependent pattern, so no two windows are the same model.
fn run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("model");
    let reader = WeightsReader::open(&model.join("model.safetensors")).unwrap();
    for step in [100u64, 200, 300, 400] {
        let out = dir.path().join(format!("step{step}"));
        std::fs::create_dir_all(&out).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(model.join(f), out.join(f)).unwrap();
        }
        let plan = reader.tensors().to_vec();
        let mut w = SafetensorsWriter::create(&out, plan, DEFAULT_SHARD_SIZE).unwrap();
        for t in reader.tensors() {
            let bytes = reader.bytes(&t.name).unwrap();
            let data = if t.dtype == lawa::checkpoint::DType::F32 {
                let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
                let v: Vec<f32> = v
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x + 0.05 * ((i as f32) * 0.37 + step as f32 * 0.011).sin())
                    .collect();
                bytemuck::cast_slice(&v).to_vec()
            } else {
                bytes.into_owned()
            };
            w.write(&t.name, &data).unwrap();
        }
        w.finish().unwrap();
    }
    dir
}

fn lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sweep_task_results_equal_average_then_eval_task_and_are_keyed_by_the_file() {
    let run = run();
    let home = tempfile::tempdir().unwrap();
    let tasks = tempfile::tempdir().unwrap();
    // The fixtures copied: a changed file below must be another file's results.
    for t in ["lambada_openai", "piqa"] {
        std::fs::copy(
            fixtures().join(format!("{t}.jsonl")),
            tasks.path().join(format!("{t}.jsonl")),
        )
        .unwrap();
    }
    let lambada = tasks.path().join("lambada_openai.jsonl");
    let piqa = tasks.path().join("piqa.jsonl");
    let text = fixtures().join("lambada_openai.jsonl");
    let task_args = [
        "--task".to_string(),
        format!("lambada_openai={}", p(&lambada)),
        "--task".to_string(),
        format!("piqa={}", p(&piqa)),
    ];
    let sweep = |extra: &[&str]| {
        let mut args = vec!["sweep", p(run.path()), "--last", "2", "--text", p(&text)];
        args.extend(task_args.iter().map(String::as_str));
        args.extend(extra);
        lawa_at(home.path(), &args)
    };
    let (ok, out, err) = sweep(&["--json", "--batch", "3"]);
    assert!(ok, "{err}");
    let recs = lines(&out);
    let summary = &recs.last().unwrap()["summary"];
    // 4 raw + 3 windows, each perplexity + 2 tasks.
    assert_eq!(summary["evaluated"], 21, "{out}");
    assert_eq!(summary["planned"], 21);
    let task_recs: Vec<&serde_json::Value> =
        recs.iter().filter(|r| r.get("task").is_some()).collect();
    assert_eq!(task_recs.len(), 14);
    for r in &task_recs {
        assert!(r.get("mean_nll").is_none() && r.get("ppl").is_none(), "{r}");
    }
    // Every window's and raw checkpoint's accuracy is `lawa average` + `lawa eval --task`.
    let mut windows_checked = 0;
    for r in recs
        .iter()
        .filter(|r| r.get("task").is_some() || r.get("mean_nll").is_some())
    {
        if r.get("summary").is_some() {
            continue;
        }
        let steps = crate::support::u64s(&r["steps"]);
        let model_dir = if r["scheme"] == "raw" {
            run.path().join(format!("step{}", steps[0]))
        } else {
            let out = home.path().join(format!("avg-{}-{}", steps[0], steps[1]));
            if !out.exists() {
                let (ok, _, err) = lawa_at(
                    home.path(),
                    &[
                        "average",
                        p(run.path()),
                        "--steps",
                        &format!("{},{}", steps[0], steps[1]),
                        "--out",
                        p(&out),
                    ],
                );
                assert!(ok, "{err}");
            }
            out
        };
        let Some(task) = r.get("task") else {
            continue;
        };
        let name = task["task"].as_str().unwrap();
        let file = if name == "piqa" { &piqa } else { &lambada };
        let (ok, e, err) = lawa_at(
            home.path(),
            &[
                "eval",
                p(&model_dir),
                "--task",
                &format!("{name}={}", p(file)),
                "--json",
                "--batch",
                "3",
            ],
        );
        assert!(ok, "{err}");
        let direct: serde_json::Value = serde_json::from_str(&e).unwrap();
        let want = &direct["tasks"][name];
        assert_eq!(task["acc"], want["acc"], "{name} at {:?}", steps);
        assert_eq!(task["n"], want["n"]);
        if name == "piqa" {
            assert_eq!(task["acc_norm"], want["acc_norm"]);
        } else {
            assert_eq!(task["perplexity"], want["perplexity"]);
        }
        if r["scheme"] != "raw" {
            windows_checked += 1;
        }
    }
    assert_eq!(windows_checked, 6);

    // A rerun skips everything; a changed task file is another file: only its task again.
    let (ok, _, err) = sweep(&[]);
    assert!(ok, "{err}");
    assert!(err.contains("21 of 21 already in the store"), "{err}");
    let docs = std::fs::read_to_string(&piqa).unwrap();
    let fewer: Vec<&str> = docs.lines().skip(1).collect();
    std::fs::write(&piqa, fewer.join("\n") + "\n").unwrap();
    let (ok, out, err) = sweep(&["--json"]);
    assert!(ok, "{err}");
    let recs = lines(&out);
    let summary = &recs.last().unwrap()["summary"];
    assert_eq!(
        (summary["skipped"].as_u64(), summary["evaluated"].as_u64()),
        (Some(14), Some(7))
    );
    assert!(recs[..recs.len() - 1]
        .iter()
        .all(|r| r["task"]["task"] == "piqa" && r["task"]["n"] == 23));

    // The export charts a task's accuracy on request, from that file's results only.
    let export = home.path().join("export");
    let (ok, out, err) = lawa_at(
        home.path(),
        &[
            "export",
            p(run.path()),
            "--out",
            p(&export),
            "--task",
            &format!("piqa={}", p(&piqa)),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains(".png"), "{out}");
    assert!(err.contains("(7 on the chart)"), "{err}");
    assert!(
        err.contains("pp piqa acc"),
        "the verdict is in accuracy points: {err}"
    );
}

#[test]
fn a_bad_task_file_or_spec_is_one_line_before_anything_runs() {
    let run = run();
    let home = tempfile::tempdir().unwrap();
    let bad = home.path().join("piqa.jsonl");
    std::fs::write(
        &bad,
        "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":0}\n{\"goal\":\"g\",\"sol1\":\"a\"}\n",
    )
    .unwrap();
    let text = fixtures().join("lambada_openai.jsonl");
    for (task, want) in [
        (
            format!("piqa={}", p(&bad)),
            format!("{}:2: missing field \"sol2\"", bad.display()),
        ),
        (
            format!("piqa={}", p(&home.path().join("absent.jsonl"))),
            "absent.jsonl: No such file".to_string(),
        ),
        (
            "mmlu=x.jsonl".to_string(),
            "unknown task \"mmlu\"".to_string(),
        ),
    ] {
        let (ok, _, err) = lawa_at(
            home.path(),
            &["sweep", p(run.path()), "--text", p(&text), "--task", &task],
        );
        assert!(!ok);
        let err = err.trim_end();
        assert!(err.lines().count() == 1 && err.contains(&want), "{err}");
    }
    // Nothing was evaluated or stored.
    assert!(
        !home.path().join("trajectories").exists()
            || std::fs::read_dir(home.path().join("trajectories"))
                .unwrap()
                .all(|d| !d.unwrap().path().join("results.jsonl").exists())
    );
}
