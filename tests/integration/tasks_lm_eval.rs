//! Zero-shot tasks against lm-evaluation-harness itself: the same model, the same task files,
//! lm-eval's own task definitions (`tests/fixtures/gen_tasks.py` wrote the reference).

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Out, LAWA};

use lawa::eval::{load_model, EvalOptions};
use lawa::progress::Reporter;
use lawa::tasks::{evaluate_task, read_docs, TaskName};

fn fixtures() -> PathBuf {
    crate::support::fixture("tasks")
}

/// The fixture dir, lm-eval's results, the model and its tokenizer.
fn fixture() -> (
    PathBuf,
    serde_json::Value,
    lawa::model::LoadedModel,
    tokenizers::Tokenizer,
) {
    let dir = fixtures();
    let reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let model = load_model(&dir.join("model"), &EvalOptions::default()).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.join("model/tokenizer.json")).unwrap();
    (dir, reference, model, tok)
}

#[test]
fn every_task_equals_lm_eval_on_the_same_files() {
    let (dir, reference, model, tok) = fixture();
    let encode = lawa::tasks::encoder(&tok);
    let max_length = model.config.max_position_embeddings;
    for task in TaskName::ALL {
        let want = &reference[task.as_str()];
        let docs = read_docs(task, &dir.join(format!("{task}.jsonl"))).unwrap();
        let mut forward = |x: &candle_core::Tensor| model.model.forward(x);
        let got = evaluate_task(
            task,
            &docs,
            &encode,
            0,
            max_length,
            5,
            &candle_core::Device::Cpu,
            &mut forward,
            &Reporter::silent(),
        )
        .unwrap();
        let metric = |k: &str| want["metrics"][k].as_f64().unwrap();
        assert_eq!(got.n, docs.len());
        assert_eq!(got.acc, metric("acc"), "{task} acc");
        assert!(
            (got.acc_stderr - metric("acc_stderr")).abs() < 1e-12,
            "{task}"
        );
        match got.acc_norm {
            Some(a) => assert_eq!(a, metric("acc_norm"), "{task} acc_norm"),
            None => {
                let (p, w) = (got.perplexity.unwrap(), metric("perplexity"));
                assert!((p - w).abs() / w < 1e-3, "{task} perplexity {p} vs {w}");
            }
        }
        // The per-request log-likelihoods are compared in the next test.
        let want_ll: Vec<Vec<f64>> =
            serde_json::from_value(want["loglikelihoods"].clone()).unwrap();
        assert_eq!(want_ll.len(), docs.len(), "{task}");
        for (d, w) in docs.iter().zip(&want_ll) {
            assert_eq!(d.continuations.len(), w.len(), "{task}");
        }
        let nonzero = got.acc > 0.0 || got.acc_norm.unwrap_or(0.0) > 0.0;
        assert!(nonzero, "{task}: the trained model should get some right");
    }
}

#[test]
fn per_request_loglikelihoods_equal_lm_eval() {
    use lawa::tasks::score::{encode_pair, loglikelihoods, Request};
    let (dir, reference, model, tok) = fixture();
    let encode = lawa::tasks::encoder(&tok);
    let max_length = model.config.max_position_embeddings;
    let mut worst = 0f64;
    for task in TaskName::ALL {
        let docs = read_docs(task, &dir.join(format!("{task}.jsonl"))).unwrap();
        let want: Vec<Vec<f64>> =
            serde_json::from_value(reference[task.as_str()]["loglikelihoods"].clone()).unwrap();
        let requests: Vec<Request> = docs
            .iter()
            .flat_map(|d| d.continuations.iter().map(move |c| (d, c)))
            .map(|(d, c)| {
                let (ctx, cont) = encode_pair(&d.context, c, 0, &encode).unwrap();
                Request::new(&ctx, &cont, max_length)
            })
            .collect();
        let mut forward = |x: &candle_core::Tensor| model.model.forward(x);
        let got = loglikelihoods(
            &requests,
            7,
            &candle_core::Device::Cpu,
            &mut forward,
            &Reporter::silent(),
            "t",
        )
        .unwrap();
        let want: Vec<f64> = want.into_iter().flatten().collect();
        assert_eq!(got.len(), want.len(), "{task}");
        for (j, ((g, _), w)) in got.iter().zip(&want).enumerate() {
            let err = (g - w).abs() / w.abs().max(1.0);
            worst = worst.max(err);
            assert!(err < 1e-4, "{task} request {j}: {g} vs lm-eval {w}");
        }
    }
    eprintln!("worst relative log-likelihood difference: {worst:.2e}");
}

#[test]
fn a_bad_task_file_is_one_line_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("arc.jsonl");
    std::fs::write(
        &p,
        "{\"question\":\"q\",\"choices\":{\"text\":[\"a\"],\"label\":[\"A\"]},\"answerKey\":\"A\"}\n{\"question\":\"q\",\"answerKey\":\"A\"}\n",
    )
    .unwrap();
    let e = read_docs(TaskName::ArcEasy, &p).unwrap_err().to_string();
    assert_eq!(e, format!("{}:2: missing field \"choices\"", p.display()));
    assert!(!e.contains('\n'));
    let e = read_docs(TaskName::ArcEasy, &tmp.path().join("absent.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.jsonl: No such file"), "{e}");
}

#[test]
fn lawa_eval_task_json_gives_the_harness_numbers_beside_perplexity() {
    let dir = fixtures();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let arg = |t: &str| format!("{t}={}", dir.join(format!("{t}.jsonl")).display());
    let out = Out::of(
        Command::new(LAWA)
            .arg("eval")
            .arg(dir.join("model"))
            .args(["--task", &arg("piqa"), "--task", &arg("lambada_openai")])
            .arg("--text")
            .arg(dir.join("piqa.jsonl"))
            .args(["--json", "--batch", "3"]),
    )
    .success();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["mean_nll"].as_f64().unwrap().is_finite());
    let piqa = &v["tasks"]["piqa"];
    assert_eq!(piqa["acc"], reference["piqa"]["metrics"]["acc"]);
    assert_eq!(piqa["acc_norm"], reference["piqa"]["metrics"]["acc_norm"]);
    assert_eq!(piqa["n"].as_u64(), Some(24));
    let (p, w) = (
        v["tasks"]["lambada_openai"]["perplexity"].as_f64().unwrap(),
        reference["lambada_openai"]["metrics"]["perplexity"]
            .as_f64()
            .unwrap(),
    );
    assert!((p - w).abs() / w < 1e-3, "{p} vs {w}");

    // A bad task file: one line naming the file, the line and the field; nothing on stdout.
    let out = Out::of(
        Command::new(LAWA)
            .arg("eval")
            .arg(dir.join("model"))
            .arg("--task")
            .arg(format!("piqa={}", dir.join("sciq.jsonl").display())),
    );
    let err = out.stderr;
    assert!(out.code != Some(0) && out.stdout.is_empty());
    assert!(
        err.trim_end()
            .ends_with("sciq.jsonl:1: missing field \"goal\" (piqa needs it)"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
