//! The point of the demo, measured on a real demo dir: held-out perplexity of each checkpoint
//! against the uniform average of the latest k checkpoints ending there (LAWA).
//!
//! Not part of the normal test run (it needs a full demo, minutes): run it with
//! `LAWA_DEMO_DIR=~/.local/share/lawa/demo cargo test --release --test integration demo_lawa:: -- --ignored --nocapture`
//! (optional: `LAWA_K`, default 5; `LAWA_MAX_TOKENS`, default 32768).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lawa::model::{Config, GptNeox};

fn mean_nll(model: &GptNeox, ids: &[u32], ctx: usize) -> f64 {
    let windows: Vec<&[u32]> = ids.chunks_exact(ctx).collect();
    let mut total = 0f64;
    let mut n = 0usize;
    for batch in windows.chunks(32) {
        let flat: Vec<u32> = batch.iter().flat_map(|w| w.iter().copied()).collect();
        let x = Tensor::from_vec(flat, (batch.len(), ctx), &Device::Cpu).unwrap();
        let logits = model.forward(&x).unwrap();
        let logp = candle_nn::ops::log_softmax(&logits, 2).unwrap();
        let logp: Vec<Vec<Vec<f32>>> = logp.to_vec3().unwrap();
        for (w, lp) in batch.iter().zip(logp) {
            for t in 0..ctx - 1 {
                total -= lp[t][w[t + 1] as usize] as f64;
                n += 1;
            }
        }
    }
    total / n as f64
}

fn load_tensors(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn model_from(cfg: &Config, tensors: HashMap<String, Tensor>) -> GptNeox {
    GptNeox::new(
        cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )
    .unwrap()
}

#[test]
#[ignore = "needs a full demo dir in LAWA_DEMO_DIR"]
fn lawa_beats_the_raw_checkpoint_early_and_mid_run() {
    let Some(dir) = std::env::var_os("LAWA_DEMO_DIR").map(PathBuf::from) else {
        eprintln!("set LAWA_DEMO_DIR");
        return;
    };
    let k: usize = std::env::var("LAWA_K")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let max_tokens: usize = std::env::var("LAWA_MAX_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32768);
    let traj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trajectory.json")).unwrap())
            .unwrap();
    let steps = crate::support::u64s(&traj["checkpoint_steps"]);
    let first = dir.join(format!("step{}", steps[0]));
    let cfg = Config::load(&first.join("config.json")).unwrap();
    let tok = tokenizers::Tokenizer::from_file(first.join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(dir.join("heldout.txt")).unwrap();
    let mut ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    ids.truncate(max_tokens);
    let ctx = cfg.max_position_embeddings;

    let all: Vec<HashMap<String, Tensor>> = steps
        .iter()
        .map(|s| load_tensors(&dir.join(format!("step{s}"))))
        .collect();
    println!("| step | raw ppl | LAWA k={k} ppl | gain |");
    println!("|---:|---:|---:|---:|");
    let mut wins = 0;
    let mut rows = 0;
    for i in 0..steps.len() {
        let raw = mean_nll(&model_from(&cfg, all[i].clone()), &ids, ctx).exp();
        if i + 1 < k {
            println!("| {} | {raw:.3} | | |", steps[i]);
            continue;
        }
        let mut avg = HashMap::new();
        for name in all[i].keys() {
            let mut acc = all[i][name].zeros_like().unwrap();
            for m in &all[i + 1 - k..=i] {
                acc = (acc + &m[name]).unwrap();
            }
            avg.insert(name.clone(), (acc / k as f64).unwrap());
        }
        let lawa = mean_nll(&model_from(&cfg, avg), &ids, ctx).exp();
        println!(
            "| {} | {raw:.3} | {lawa:.3} | {:+.2}% |",
            steps[i],
            100.0 * (raw - lawa) / raw
        );
        if i < steps.len() * 2 / 3 {
            rows += 1;
            wins += usize::from(lawa < raw);
        }
    }
    println!("LAWA better in {wins}/{rows} checkpoints of the first two thirds");
    assert!(wins * 4 >= rows * 3, "LAWA better in only {wins}/{rows}");
}
