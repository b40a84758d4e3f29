//! An average and an eval of hub checkpoints (fetched from the test hub server into a temp
//! cache) equal the same computed from local copies of those checkpoints (the fixture folders).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::hub_server::{HubServer, Repo};
use lawa::average::{average, AverageInput, AverageOptions};
use lawa::eval::{eval_model_dir, EvalData, EvalOptions};
use lawa::jobs::engine::EvalConfig;
use lawa::jobs::Target;
use lawa::progress::Reporter;
use lawa::results::Metric;
use lawa::source::hub::{self, HubOptions};
use lawa::sweep::SweepEngine;

const REPO: &str = "EleutherAI/pythia-tiny";

fn fixtures() -> PathBuf {
    crate::support::fixture("hub/pythia-tiny")
}

fn inputs(paths: &[(u64, PathBuf)]) -> Vec<AverageInput> {
    let w = 1.0 / paths.len() as f64;
    paths
        .iter()
        .map(|(step, path)| AverageInput {
            path: path.clone(),
            step: *step,
            weight: w,
        })
        .collect()
}

fn weights_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".safetensors") || n == "config.json" || n == "tokenizer.json")
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap();
            (n, b)
        })
        .collect();
    files.sort();
    files
}

/// The test hub serving the fixture repo, and options fetching from it into a temp cache.
fn serve() -> (HubServer, tempfile::TempDir, HubOptions) {
    let server = HubServer::start(vec![(REPO, Repo::from_dir(REPO, &fixtures()))], None);
    let dir = tempfile::tempdir().unwrap();
    let o = HubOptions {
        endpoint: server.url(),
        cache_dir: dir.path().join("hub"),
        token: None,
        offline: false,
        retries: 2,
        retry_delay: Duration::from_millis(5),
        listing_dir: None,
        read_timeout: Duration::from_secs(30),
    };
    (server, dir, o)
}

/// Perplexity of the fixture text on the CPU, at the model's default context.
fn text_eval() -> EvalConfig {
    EvalConfig {
        data: EvalData::Text(fixtures().join("text.txt")),
        data_label: "text.txt".into(),
        data_hash: "h".into(),
        ctx: None,
        max_tokens: None,
        batch: 2,
        device: candle_core::Device::Cpu,
        fused: lawa::kernels::Fused::On,
        tasks: Vec::new(),
    }
}

#[test]
fn average_and_eval_of_hub_checkpoints_match_local_copies() {
    let (_server, dir, o) = serve();
    let t = hub::open(REPO, &o).unwrap();
    // The last three steps: two single .bin files and the sharded one.
    let window = [1000u64, 2000, 3000];
    let hub_paths: Vec<(u64, PathBuf)> = window
        .iter()
        .map(|&s| {
            let c = t.checkpoint(s).unwrap();
            let p = hub::download_checkpoint(REPO, &c.name, &o, &Reporter::silent()).unwrap();
            (s, p)
        })
        .collect();
    let local_paths: Vec<(u64, PathBuf)> = window
        .iter()
        .map(|&s| (s, fixtures().join(format!("step{s}"))))
        .collect();

    let out_hub = dir.path().join("avg-hub");
    let out_local = dir.path().join("avg-local");
    let opts = AverageOptions::default();
    let a = average(&inputs(&hub_paths), &out_hub, &opts, &Reporter::silent()).unwrap();
    let b = average(
        &inputs(&local_paths),
        &out_local,
        &opts,
        &Reporter::silent(),
    )
    .unwrap();
    assert_eq!(a.tensors, b.tensors);
    assert!(a.averaged > 0 && a.copied > 0, "{a:?}");
    let (wa, wb) = (weights_bytes(&out_hub), weights_bytes(&out_local));
    assert_eq!(
        wa.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["config.json", "model.safetensors", "tokenizer.json"]
    );
    assert!(
        wa == wb,
        "averaged model differs between hub and local inputs"
    );

    let text = EvalData::Text(fixtures().join("text.txt"));
    let eo = EvalOptions::default();
    let r_hub = eval_model_dir(&out_hub, &text, &eo, &Reporter::silent()).unwrap();
    let r_local = eval_model_dir(&out_local, &text, &eo, &Reporter::silent()).unwrap();
    assert!(r_hub.mean_nll.is_finite() && r_hub.predicted_tokens > 0);
    assert_eq!(r_hub.mean_nll, r_local.mean_nll);
    assert_eq!(r_hub.window_nll, r_local.window_nll);
    assert_eq!(r_hub.data_hash, r_local.data_hash);

    // A single hub checkpoint (the sharded fp16 .bin) evaluates as its local copy does.
    let s_hub = eval_model_dir(&hub_paths[2].1, &text, &eo, &Reporter::silent()).unwrap();
    let s_local = eval_model_dir(&local_paths[2].1, &text, &eo, &Reporter::silent()).unwrap();
    assert_eq!(s_hub.mean_nll, s_local.mean_nll);
    assert_ne!(s_hub.mean_nll, r_hub.mean_nll);
}

#[test]
fn the_eval_settings_come_from_a_cached_checkpoint_without_fetching_the_newest() {
    // A researcher on a hub run with one early checkpoint in the cache evaluates it: the
    // settings (context, dtype) are read from that cached checkpoint, and the newest one, which
    // nothing asked for, is not downloaded (for Pythia-12B that is about 24 GB).
    let (server, _dir, o) = serve();
    let t = hub::open(REPO, &o).unwrap();
    let (first, newest) = (
        t.checkpoints[0].clone(),
        t.checkpoints.last().unwrap().clone(),
    );
    assert_ne!(first.step, newest.step);
    hub::download_checkpoint(REPO, &first.name, &o, &Reporter::silent()).unwrap();
    server.clear_log();
    let mut engine = SweepEngine::new(t, text_eval(), 1 << 30).with_hub(o);
    let settings = engine.all_settings().unwrap();
    assert_eq!(settings[0].dtype, lawa::results::EvalDType::F32);
    let target = Target::Checkpoint { step: first.step };
    let r = engine
        .evaluate(&target, &[Metric::Perplexity], &Reporter::silent())
        .unwrap();
    assert!(r[0].mean_nll.is_finite() && r[0].end_step == first.step);
    assert!(server.log().is_empty(), "fetched: {:?}", server.log());
}

#[test]
fn with_nothing_cached_the_settings_come_from_the_checkpoint_the_job_fetches() {
    // Nothing of the run is on disk yet: evaluating an early step fetches that step, and the
    // settings are read from it, not from the newest checkpoint (never fetched here).
    let (server, _dir, o) = serve();
    let t = hub::open(REPO, &o).unwrap();
    let (first, newest) = (
        t.checkpoints[0].clone(),
        t.checkpoints.last().unwrap().clone(),
    );
    server.clear_log();
    let mut engine = SweepEngine::new(t, text_eval(), 1 << 30).with_hub(o);
    let target = Target::Checkpoint { step: first.step };
    engine.all_settings_for(Some(&target)).unwrap();
    let r = engine
        .evaluate(&target, &[Metric::Perplexity], &Reporter::silent())
        .unwrap();
    assert!(r[0].mean_nll.is_finite());
    let log = server.log();
    let newest_commit = crate::support::hub_server::commit_of(REPO, &newest.name);
    assert!(
        log.iter().any(|l| l.contains(&first.name)),
        "the early step was fetched: {log:?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains(&newest.name) || l.contains(&newest_commit)),
        "the newest was fetched: {log:?}"
    );
}
