//! `lawa eval` end to end: text through a tokenizer, token files, --against, --json, bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use lawa::eval::{Comparison, EvalResult};

use crate::support::{self, lawa_at, model_run, s as p, Out, LAWA};

fn fixture(name: &str) -> PathBuf {
    support::fixture("gpt_neox").join(name)
}

fn lawa(args: &[&str]) -> (bool, String, String) {
    support::lawa(&[&["eval"], args].concat()).parts()
}

/// Runs `cmd`: (success, stdout, stderr).
fn output(mut cmd: Command) -> (bool, String, String) {
    Out::of(&mut cmd).parts()
}

/// One-line error on stderr, failure exit; returns the line.
fn fails(args: &[&str]) -> String {
    let (ok, _, err) = lawa(args);
    assert!(!ok, "succeeded: {args:?}");
    let line = err.trim_end();
    assert!(
        line.starts_with("error:") && line.lines().count() == 1,
        "{err}"
    );
    line.to_string()
}

const WORDS: [&str; 12] = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "rug", "and", "slept",
];

/// A copy of the `parallel` fixture with a word-level `tokenizer.json` (ids below its vocab 100).
fn model_with_tokenizer() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("parallel").join(f), dir.path().join(f)).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert(w.to_string(), (i + 1).into());
    }
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
    dir
}

#[test]
fn text_and_the_same_ids_as_tokens_agree_and_bits_per_byte_counts_the_span() {
    let model = model_with_tokenizer();
    let text = "the cat sat on the mat and the dog slept under a rug ";
    let ids: Vec<u16> = text
        .split_whitespace()
        .map(|w| WORDS.iter().position(|x| *x == w).unwrap() as u16 + 1)
        .collect();
    assert_eq!(ids.len(), 13);
    let txt = model.path().join("t.txt");
    std::fs::write(&txt, text).unwrap();
    let bin = model.path().join("t.bin");
    std::fs::write(&bin, bytemuck::cast_slice(&ids)).unwrap();

    let (ok, out, err) = lawa(&[p(model.path()), "--text", p(&txt), "--ctx", "6", "--json"]);
    assert!(ok, "{err}");
    let from_text: EvalResult = serde_json::from_str(&out).unwrap();
    let (ok, out, err) = lawa(&[p(model.path()), "--tokens", p(&bin), "--ctx", "6", "--json"]);
    assert!(ok, "{err}");
    let from_ids: EvalResult = serde_json::from_str(&out).unwrap();

    // 13 tokens, ctx 6: two windows, the 13th token ("rug") dropped.
    assert_eq!((from_text.windows, from_text.predicted_tokens), (2, 10));
    assert_eq!(from_text.mean_nll, from_ids.mean_nll);
    assert_eq!(from_text.data_hash, from_ids.data_hash);
    assert_eq!(from_ids.bits_per_byte, None);
    // The span ends after "a", the 12th word: the bytes of "the cat ... under a".
    let span = text.find(" rug").unwrap();
    let want = from_text.mean_nll * 10.0 / std::f64::consts::LN_2 / span as f64;
    let bpb = from_text.bits_per_byte.unwrap();
    assert!((bpb - want).abs() < 1e-9, "{bpb} vs {want}");
}

#[test]
fn human_output_and_against() {
    let model = model_with_tokenizer();
    let txt = model.path().join("t.txt");
    std::fs::write(&txt, "the cat sat on the mat ".repeat(4)).unwrap();
    let (ok, out, err) = lawa(&[p(model.path()), "--text", p(&txt), "--ctx", "8"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("perplexity") && out.contains("bits/byte"),
        "{out}"
    );
    assert!(err.contains("evaluating"), "{err}");

    let other = fixture("full_rotary");
    let (ok, out, err) = lawa(&[
        p(model.path()),
        "--text",
        p(&txt),
        "--ctx",
        "8",
        "--against",
        p(&other),
        "--json",
    ]);
    assert!(ok, "{err}");
    let c: Comparison = serde_json::from_str(&out).unwrap();
    assert!(c.mean_kl > 0.0 && (0.0..=1.0).contains(&c.top1_agreement));
    assert_eq!(c.model.windows, 3);
}

#[test]
fn every_bad_input_is_one_line_naming_the_problem() {
    let model = model_with_tokenizer();
    let m = p(model.path());
    let dir = model.path();

    // --text with no tokenizer.json.
    let txt = dir.join("t.txt");
    std::fs::write(&txt, "the cat").unwrap();
    let e = fails(&[p(&fixture("parallel")), "--text", p(&txt)]);
    assert!(
        e.contains("tokenizer.json") && e.contains("--tokens"),
        "{e}"
    );

    // Token id >= vocab size.
    let bin = dir.join("big.bin");
    std::fs::write(&bin, bytemuck::cast_slice(&[1u16, 2, 100, 4])).unwrap();
    let e = fails(&[m, "--tokens", p(&bin)]);
    assert!(
        e.contains("token id 100") && e.contains("vocab_size 100"),
        "{e}"
    );

    // Empty text.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let e = fails(&[m, "--text", p(&empty)]);
    assert!(e.contains("empty text") && e.contains("empty.txt"), "{e}");

    // Non-UTF-8 text, with the byte offset.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"the cat \xff sat").unwrap();
    let e = fails(&[m, "--text", p(&bad)]);
    assert!(e.contains("not UTF-8") && e.contains("offset 8"), "{e}");

    // ctx > max_position_embeddings.
    std::fs::write(&txt, "the cat sat").unwrap();
    let e = fails(&[m, "--text", p(&txt), "--ctx", "33"]);
    assert!(
        e.contains("--ctx 33") && e.contains("max_position_embeddings 32"),
        "{e}"
    );

    // CUDA on a build without it (or a machine without a GPU).
    if !candle_core::utils::cuda_is_available() {
        let e = fails(&[m, "--text", p(&txt), "--device", "cuda"]);
        assert!(e.contains("cuda"), "{e}");
    }

    // Token file whose width cannot be told.
    let dat = dir.join("ids.dat");
    std::fs::write(&dat, [1u8, 0, 2, 0]).unwrap();
    let e = fails(&[m, "--tokens", p(&dat)]);
    assert!(e.contains("--token-dtype"), "{e}");
    let (ok, _, err) = lawa(&[m, "--tokens", p(&dat), "--token-dtype", "u16"]);
    assert!(ok, "{err}");

    // Unsupported architecture, named.
    let cfg = dir.join("config.json");
    let orig = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        orig.replace("GPTNeoXForCausalLM", "MistralForCausalLM"),
    )
    .unwrap();
    let e = fails(&[m, "--text", p(&txt)]);
    assert!(
        e.contains("MistralForCausalLM") && e.contains("config.json"),
        "{e}"
    );
    std::fs::write(&cfg, &orig).unwrap();

    // A checkpoint missing a tensor the model needs, named.
    let mut t =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    t.remove("gpt_neox.final_layer_norm.weight");
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let e = fails(&[m, "--text", p(&txt)]);
    assert!(e.contains("gpt_neox.final_layer_norm.weight"), "{e}");

    // Neither --text nor --tokens: clap's usage error (not one line, but a failure).
    let (ok, _, _) = lawa(&[m]);
    assert!(!ok);
}

#[test]
fn a_run_with_step_evaluates_that_checkpoint() {
    let run = tempfile::tempdir().unwrap();
    for (step, name) in [(100, "parallel"), (200, "full_rotary")] {
        let d = run.path().join(format!("step{step}"));
        std::fs::create_dir(&d).unwrap();
        for f in MODEL {
            std::fs::copy(fixture(name).join(f), d.join(f)).unwrap();
        }
    }
    let bin = run.path().join("ids.u32");
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 100).collect();
    std::fs::write(&bin, bytemuck::cast_slice(&ids)).unwrap();
    let eval_json = |args: &[&str]| -> EvalResult {
        let (ok, out, err) = lawa(args);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let via_run = eval_json(&[
        p(run.path()),
        "--step",
        "200",
        "--tokens",
        p(&bin),
        "--json",
    ]);
    let direct = eval_json(&[p(&fixture("full_rotary")), "--tokens", p(&bin), "--json"]);
    assert_eq!(via_run.mean_nll, direct.mean_nll);
    assert_eq!(via_run.windows, 1);
    let e = fails(&[p(run.path()), "--step", "300", "--tokens", p(&bin)]);
    assert!(e.contains("step 300") && e.contains("100 to 200"), "{e}");
}

/// A LAWA_HOME for a test, holding `ids.u32`: 90 token ids below the fixtures' vocabulary.
fn home_with_ids() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let ids = home.path().join("ids.u32");
    let v: Vec<u32> = (0..90).map(|i| (i * 37 + 11) % 100).collect();
    std::fs::write(&ids, bytemuck::cast_slice(&v)).unwrap();
    (home, ids)
}

/// A run folder of steps 100, 200, 300, each the `parallel` fixture.
fn three_step_run() -> tempfile::TempDir {
    model_run(&fixture("parallel"), MODEL, &[100, 200, 300])
}

/// The files of a fixture model that a run's checkpoint needs.
const MODEL: &[&str] = &["config.json", "model.safetensors"];

/// `lawa sweep`: results go to the trajectory's store under LAWA_HOME; a rerun skips them all;
/// the raw result is `lawa eval`'s; missing eval data is one line.
#[test]
fn sweep_stores_results_and_a_rerun_skips_them() {
    let run = three_step_run();
    let (home, bin) = home_with_ids();
    let sweep = |extra: &[&str]| {
        let mut cmd = Command::new(LAWA);
        cmd.env("LAWA_HOME", home.path())
            .args(["sweep", p(run.path()), "--last", "2"])
            .args(extra);
        output(cmd)
    };
    let (ok, out, err) = sweep(&["--tokens", p(&bin), "--ctx", "16", "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // raw 100, raw 200, k=2 at 200, raw 300, k=2 at 300, then the summary.
    assert_eq!(lines.len(), 6, "{out}");
    let summary = &lines[5]["summary"];
    assert_eq!(summary["evaluated"], 5);
    assert_eq!(summary["skipped"], 0);
    assert_eq!(summary["reads"]["checkpoint_reads"], 3);
    let raw200 = lines
        .iter()
        .find(|l| l["scheme"] == "raw" && l["end_step"] == 200)
        .unwrap();
    let (ok, e, err) = lawa(&[
        p(&run.path().join("step200")),
        "--tokens",
        p(&bin),
        "--ctx",
        "16",
        "--json",
    ]);
    assert!(ok, "{err}");
    let direct: EvalResult = serde_json::from_str(&e).unwrap();
    assert_eq!(raw200["mean_nll"].as_f64().unwrap(), direct.mean_nll);

    let (ok, out, err) = sweep(&["--tokens", p(&bin), "--ctx", "16"]);
    assert!(ok, "{err}");
    assert!(err.contains("5 of 5 already in the store"), "{err}");
    assert!(out.contains("0 evaluated, 5 already stored"), "{out}");
    // Another context is another set of results.
    let (ok, _, err) = sweep(&["--tokens", p(&bin), "--ctx", "8", "--no-raw"]);
    assert!(ok, "{err}");
    let store = std::fs::read_dir(home.path().join("trajectories"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("results.jsonl");
    let text = std::fs::read_to_string(&store).unwrap();
    assert_eq!(text.lines().count(), 5 + 2);
    // No spike in this run: each spike-aware window is the plain window, stored already, so it
    // is stored under its own name without being evaluated again.
    let (ok, out, err) = sweep(&[
        "--tokens",
        p(&bin),
        "--ctx",
        "16",
        "--spike-aware",
        "--no-raw",
        "--json",
    ]);
    assert!(ok, "{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            last["summary"]["reused"].as_u64(),
            last["summary"]["evaluated"].as_u64()
        ),
        (Some(2), Some(0)),
        "{out}"
    );
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["spike_aware"], true);
    let plain = lines
        .iter()
        .find(|l| l["scheme"] == "uniform" && l["end_step"] == first["end_step"])
        .unwrap();
    assert_eq!(first["mean_nll"], plain["mean_nll"]);
    assert_eq!(
        std::fs::read_to_string(&store).unwrap().lines().count(),
        5 + 2 + 2
    );

    let (ok, _, err) = sweep(&[]);
    assert!(!ok);
    assert!(
        err.trim_end().lines().count() == 1 && err.contains("no eval data"),
        "{err}"
    );
}

/// A one-node Slurm (scripts/slurm-up.sh) answers here; CI sets LAWA_REQUIRE_SLURM so that a
/// missing cluster fails there instead of skipping.
fn slurm_answers() -> bool {
    let up = Command::new("sinfo")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success());
    if !up && std::env::var_os("LAWA_REQUIRE_SLURM").is_some() {
        panic!("LAWA_REQUIRE_SLURM is set but sinfo does not answer: run scripts/slurm-up.sh");
    }
    up
}

/// Waits until no element of `job` is in the queue.
fn wait_for_job(job: u64) {
    let t0 = std::time::Instant::now();
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-r", &format!("--jobs={job}"), "--format=%K %T"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            t0.elapsed().as_secs() < 300,
            "job {job} still queued after 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Every record of a store folder: results.jsonl and every shard.
fn store_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut files = vec![dir.join("results.jsonl")];
    if let Ok(rd) = std::fs::read_dir(dir.join("shards")) {
        files.extend(rd.map(|e| e.unwrap().path()));
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_slurm_sweep_equals_local_average_and_eval_and_a_cancelled_task_reruns_without_duplicates() {
    if !slurm_answers() {
        eprintln!("skipped: no Slurm cluster answers (scripts/slurm-up.sh starts one)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    lawa::train::train_into(
        &lawa::train::DemoConfig::tiny(),
        &run,
        &lawa::progress::Reporter::silent(),
    )
    .unwrap();
    let home = tmp.path().join("home");
    let sweep = |extra: &[&str]| {
        let mut cmd = Command::new(LAWA);
        cmd.env("LAWA_HOME", &home)
            .args([
                "sweep",
                p(&run),
                "--last",
                "3",
                "--from",
                "40",
                "--to",
                "100",
            ])
            .args(extra);
        output(cmd)
    };
    let json = |out: &str| -> serde_json::Value { serde_json::from_str(out.trim()).unwrap() };

    // 1. A sweep in three array tasks; every window equals lawa average + lawa eval.
    let (ok, out, err) = sweep(&["--slurm", "--tasks", "3", "--json"]);
    assert!(ok, "{err}");
    let sub = json(&out);
    let job = sub["job_id"].as_u64().unwrap();
    assert_eq!(sub["tasks"], 3);
    // Raw at 40..100 (7) and a k=3 window at each (7).
    assert_eq!(sub["windows"], 14, "{out}");
    let store = PathBuf::from(sub["store"].as_str().unwrap());
    wait_for_job(job);
    let (ok, out, err) = sweep(&["--status", "--json"]);
    assert!(ok, "{err}");
    let status = json(&out);
    let s = &status["sweeps"][0];
    assert_eq!(
        (s["done"].as_u64(), s["stored"].as_u64()),
        (Some(3), Some(14)),
        "{out}"
    );
    // The run's trajectory.json lists its cloze task: every window has its accuracy too.
    let (records, tasks): (Vec<_>, Vec<_>) = store_records(&store)
        .into_iter()
        .partition(|r| r["task"].is_null());
    assert_eq!((records.len(), tasks.len()), (14, 14));
    assert_eq!(std::fs::read_dir(store.join("shards")).unwrap().count(), 3);
    let heldout = run.join("heldout.txt");
    let raw = tasks
        .iter()
        .find(|r| r["steps"].as_array().unwrap().len() == 1)
        .unwrap();
    let model = run.join(format!("step{}", raw["steps"][0]));
    let cloze = format!("lambada_openai={}", p(&run.join("cloze.jsonl")));
    let (ok, e, err) = lawa(&[p(&model), "--task", &cloze, "--json"]);
    assert!(ok, "{err}");
    let direct: serde_json::Value = serde_json::from_str(&e).unwrap();
    assert_eq!(
        raw["task"]["acc"], direct["tasks"]["lambada_openai"]["acc"],
        "{raw}"
    );
    for r in &records {
        let steps = crate::support::u64s(&r["steps"]);
        let model = if steps.len() == 1 {
            run.join(format!("step{}", steps[0]))
        } else {
            let out = tmp.path().join(format!("avg-{}", steps[2]));
            let list = steps
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut cmd = Command::new(LAWA);
            cmd.args(["average", p(&run), "--steps", &list, "--out", p(&out)]);
            let (ok, _, err) = output(cmd);
            assert!(ok, "{err}");
            out
        };
        let (ok, e, err) = lawa(&[p(&model), "--text", p(&heldout), "--json"]);
        assert!(ok, "{err}");
        let direct: EvalResult = serde_json::from_str(&e).unwrap();
        assert_eq!(r["mean_nll"].as_f64().unwrap(), direct.mean_nll, "{r}");
    }

    // 2. One task, slowed by a longer text, cancelled after its first result; the rerun
    //    submits only what is missing and the store ends complete without duplicates.
    let long = tmp.path().join("long.txt");
    let text = std::fs::read_to_string(&heldout).unwrap();
    std::fs::write(&long, text.repeat(60)).unwrap();
    let args = ["--text", p(&long), "--slurm", "--tasks", "1", "--json"];
    let (ok, out, err) = sweep(&args);
    assert!(ok, "{err}");
    let job = json(&out)["job_id"].as_u64().unwrap();
    let shard = std::fs::read_dir(store.join("sweeps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .max()
        .unwrap();
    let shard = store.join("shards").join(format!("{shard}-task0.jsonl"));
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&shard).map_or(0, |t| t.lines().count()) == 0 {
        assert!(t0.elapsed().as_secs() < 120, "no result from job {job}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = Command::new("scancel")
        .arg(format!("{job}_0"))
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for_job(job);
    let stored = std::fs::read_to_string(&shard).unwrap().lines().count();
    assert!(
        (1..14).contains(&stored),
        "the task should have been cancelled mid-run: {stored} of 14 stored"
    );
    let (ok, out, _) = sweep(&["--status"]);
    assert!(ok);
    assert!(out.contains("1 failed"), "{out}");
    let (ok, out, err) = sweep(&args);
    assert!(ok, "{err}");
    let resub = json(&out);
    assert_eq!(resub["windows"].as_u64(), Some(14 - stored as u64), "{out}");
    wait_for_job(resub["job_id"].as_u64().unwrap());
    let long_hash = store_records(&store)
        .into_iter()
        .filter(|r| r["data"].as_str().is_some_and(|f| f == "long.txt"))
        .collect::<Vec<_>>();
    let mut keys: Vec<(String, u64)> = long_hash
        .iter()
        .map(|r| {
            (
                format!("{}-{}", r["scheme"], r["k"]),
                r["end_step"].as_u64().unwrap(),
            )
        })
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!((n, keys.len()), (14, 14), "duplicates or missing windows");
    let (ok, out, err) = sweep(&["--text", p(&long), "--slurm"]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to submit"), "{out}");

    // 3. A store the tasks cannot write to (here: `shards` is a file): the task fails with a
    //    line saying so, and --status shows it.
    std::fs::remove_dir_all(store.join("shards")).unwrap();
    std::fs::write(store.join("shards"), "").unwrap();
    let (ok, out, err) = sweep(&["--ctx", "8", "--slurm", "--tasks", "1", "--json"]);
    assert!(ok, "{err}");
    wait_for_job(json(&out)["job_id"].as_u64().unwrap());
    let (ok, out, _) = sweep(&["--status"]);
    assert!(ok);
    let last = out.lines().rev().nth(1).unwrap_or("");
    assert!(
        last.contains("failed") && last.contains("writable from the compute nodes"),
        "{out}"
    );
}

#[test]
fn a_sweep_goes_on_past_an_unreadable_checkpoint_and_fails_at_the_end() {
    let run = three_step_run();
    // Step 200 cut in half: every target that reads it fails, the others are stored.
    let bad = run.path().join("step200/model.safetensors");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let (home, ids) = home_with_ids();
    let (ok, out, err) = lawa_at(
        home.path(),
        &[
            "sweep",
            p(run.path()),
            "--last",
            "2",
            "--tokens",
            p(&ids),
            "--ctx",
            "16",
        ],
    );
    assert!(!ok, "{out}");
    // raw 200, k=2 at 200 and k=2 at 300 hold step 200; raw 100 and raw 300 do not.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[..3]
            .iter()
            .all(|l| l.contains("step200/model.safetensors") && l.contains("truncated")),
        "{err}"
    );
    assert!(lines[3].contains("3 of 5 evaluation(s) failed"), "{err}");
    assert!(out.contains("2 evaluated"), "{out}");
    let stored: Vec<serde_json::Value> = store_records(
        &std::fs::read_dir(home.path().join("trajectories"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    );
    let steps: Vec<u64> = stored
        .iter()
        .map(|r| r["end_step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![100, 300]);
}

#[test]
fn export_draws_tokens_on_x_when_told_the_tokens_per_step() {
    let run = three_step_run();
    let (home, ids) = home_with_ids();
    let lawa_cmd = |args: &[&str]| lawa_at(home.path(), args);
    let src = p(run.path());
    let (ok, _, err) = lawa_cmd(&[
        "sweep",
        src,
        "--last",
        "2",
        "--tokens",
        p(&ids),
        "--ctx",
        "16",
    ]);
    assert!(ok, "{err}");
    let out = home.path().join("out");
    let (ok, _, err) = lawa_cmd(&["export", src, "--out", p(&out), "--x", "tokens"]);
    assert!(!ok && err.contains("tokens per step unknown"), "{err}");
    let (ok, files, err) = lawa_cmd(&[
        "export",
        src,
        "--out",
        p(&out),
        "--x",
        "tokens",
        "--tokens-per-step",
        "4096",
        "--gain",
    ]);
    assert!(ok, "{err}");
    assert!(files.contains("-verdict.txt"), "{files}");
    let svg = std::fs::read_to_string(out.join(format!(
        "{}.svg",
        lawa::export::file_stem(&run.path().file_name().unwrap().to_string_lossy())
    )))
    .unwrap();
    // 300 steps × 4096 tokens: the x axis reaches about 1.2M tokens.
    assert!(
        svg.contains("1.2M") || svg.contains("1.1M"),
        "x axis in tokens"
    );
}
