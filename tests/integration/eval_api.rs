//! The evaluation library on the transformers fixtures (tests/fixtures/gen_gpt_neox.py).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use lawa::eval::{self, nll, EvalData, EvalError, EvalOptions};
use lawa::progress::{CancelToken, Reporter, Unit};

fn fixture(name: &str) -> PathBuf {
    crate::support::fixture("gpt_neox").join(name)
}

/// The fixture's reference ids (2 rows of 16) and transformers' mean cross-entropy on them.
fn reference(name: &str) -> (Vec<u32>, f64) {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("reference.json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<Vec<u32>> = serde_json::from_value(json["input_ids"].clone()).unwrap();
    (rows.concat(), json["mean_ce"].as_f64().unwrap())
}

fn write_u16(dir: &Path, ids: &[u32]) -> PathBuf {
    let p = dir.join("tokens.bin");
    let v: Vec<u16> = ids.iter().map(|&i| i as u16).collect();
    std::fs::write(&p, bytemuck::cast_slice(&v)).unwrap();
    p
}

/// Token ids held in memory, as a text source gives them without byte offsets.
fn in_memory(ids: Vec<u32>) -> eval::Tokens {
    eval::Tokens {
        ids,
        source: PathBuf::from("mem"),
        byte_ends: None,
        text_bytes: None,
        truncated: false,
    }
}

#[test]
fn nll_over_two_windows_matches_transformers_cross_entropy() {
    for name in ["parallel", "sequential", "full_rotary", "rope_parameters"] {
        let (ids, ce) = reference(name);
        let tmp = tempfile::tempdir().unwrap();
        let path = write_u16(tmp.path(), &ids);
        // ctx 16 cuts the 32 ids into exactly the fixture's two rows; batch 1 and 2 agree.
        for batch in [1, 2] {
            let opts = EvalOptions {
                ctx: Some(16),
                batch,
                ..EvalOptions::default()
            };
            let r = eval::eval_model_dir(
                &fixture(name),
                &EvalData::Tokens(path.clone()),
                &opts,
                &Reporter::silent(),
            )
            .unwrap();
            assert_eq!((r.windows, r.ctx, r.predicted_tokens), (2, 16, 30));
            assert!(
                (r.mean_nll - ce).abs() <= 1e-5,
                "{name}: {} vs {ce}",
                r.mean_nll
            );
            assert!((r.ppl - ce.exp()).abs() <= 1e-4 * ce.exp());
            assert_eq!(r.window_nll.len(), 2);
            let mean_of_windows = (r.window_nll[0] + r.window_nll[1]) / 2.0;
            assert!((mean_of_windows - r.mean_nll).abs() < 1e-12);
            assert_eq!(r.bits_per_byte, None);
            assert_eq!(r.data_hash, eval::hash_ids(&ids));
            assert!(r.tokens_per_s > 0.0);
        }
    }
}

#[test]
fn the_result_names_the_dtype_the_model_ran_in() {
    // The fixture is stored in f32; on the CPU the default is f32, and an asked dtype is run
    // and named as asked (records store this name, and reuse matches on it).
    let (ids, ce) = reference("parallel");
    let tmp = tempfile::tempdir().unwrap();
    let path = write_u16(tmp.path(), &ids);
    for (asked, named) in [
        (None, eval::EvalDType::F32),
        (Some(candle_core::DType::BF16), eval::EvalDType::Bf16),
        (Some(candle_core::DType::F16), eval::EvalDType::F16),
    ] {
        let opts = EvalOptions {
            ctx: Some(16),
            dtype: asked,
            ..EvalOptions::default()
        };
        let r = eval::eval_model_dir(
            &fixture("parallel"),
            &EvalData::Tokens(path.clone()),
            &opts,
            &Reporter::silent(),
        )
        .unwrap();
        assert_eq!(r.dtype, named);
        // Half precision is a different computation, but of the same model.
        assert!(
            (r.mean_nll - ce).abs() < 0.05 * ce,
            "{asked:?}: {} vs {ce}",
            r.mean_nll
        );
    }
}

#[test]
fn window_convention_drops_the_remainder_and_max_tokens_cuts_first() {
    let (ids, _) = reference("parallel");
    let tmp = tempfile::tempdir().unwrap();
    let path = write_u16(tmp.path(), &ids);
    let run = |ctx: Option<usize>, max_tokens: Option<usize>| {
        let opts = EvalOptions {
            ctx,
            max_tokens,
            ..EvalOptions::default()
        };
        eval::eval_model_dir(
            &fixture("parallel"),
            &EvalData::Tokens(path.clone()),
            &opts,
            &Reporter::silent(),
        )
        .unwrap()
    };
    // 32 tokens, ctx 10: three windows, the last 2 tokens dropped.
    let r = run(Some(10), None);
    assert_eq!((r.windows, r.predicted_tokens), (3, 27));
    assert_eq!(r.data_hash, eval::hash_ids(&ids[..30]));
    // Default ctx is max_position_embeddings (32): one window of everything.
    let r = run(None, None);
    assert_eq!((r.ctx, r.windows, r.predicted_tokens), (32, 1, 31));
    // Fewer tokens than ctx: one shorter window.
    let r = run(Some(32), Some(7));
    assert_eq!((r.windows, r.predicted_tokens), (1, 6));
    assert_eq!(r.data_hash, eval::hash_ids(&ids[..7]));
}

#[test]
fn evaluation_matches_a_direct_forward() {
    // The chunked, batched evaluator against one plain forward pass of the whole window.
    let (ids, _) = reference("sequential");
    let model = eval::load_model(&fixture("sequential"), &EvalOptions::default()).unwrap();
    let logits = model
        .model
        .forward(&Tensor::from_slice(&ids[..20], (1, 20), &Device::Cpu).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap();
    let targets = Tensor::from_slice(&ids[1..20], 19, &Device::Cpu).unwrap();
    let direct: Vec<f32> = nll::token_nll(&logits.narrow(0, 0, 19).unwrap(), &targets)
        .unwrap()
        .to_vec1()
        .unwrap();
    let direct = direct.iter().map(|&x| x as f64).sum::<f64>() / 19.0;
    let tokens = in_memory(ids[..20].to_vec());
    let r = eval::evaluate(
        &model,
        &tokens,
        &EvalOptions::default(),
        &Reporter::silent(),
    )
    .unwrap();
    assert!((r.mean_nll - direct).abs() < 1e-6);
}

#[test]
fn against_itself_is_zero_kl_and_full_agreement_and_against_another_is_not() {
    let (ids, _) = reference("parallel");
    let tokens = in_memory(ids);
    let opts = EvalOptions {
        ctx: Some(16),
        ..EvalOptions::default()
    };
    let a = eval::load_model(&fixture("parallel"), &opts).unwrap();
    let b = eval::load_model(&fixture("full_rotary"), &opts).unwrap();
    let same = eval::compare(&a, &a, &tokens, &opts, &Reporter::silent()).unwrap();
    assert!(same.mean_kl.abs() < 1e-6, "{}", same.mean_kl);
    assert_eq!(same.top1_agreement, 1.0);
    assert!((same.other_mean_nll - same.model.mean_nll).abs() < 1e-12);

    let c = eval::compare(&a, &b, &tokens, &opts, &Reporter::silent()).unwrap();
    let alone_b = eval::evaluate(&b, &tokens, &opts, &Reporter::silent()).unwrap();
    assert!((c.other_mean_nll - alone_b.mean_nll).abs() < 1e-6);
    // KL from full forwards of both models, position by position.
    let ids = Tensor::from_slice(&tokens.ids, (2, 16), &Device::Cpu).unwrap();
    // The logits of the 15 predicting positions of both windows, `[30, vocab]`.
    let predicting = |m: &lawa::model::LoadedModel| {
        let l = m.model.forward(&ids).unwrap();
        l.narrow(1, 0, 15).unwrap().reshape((30, 100)).unwrap()
    };
    let mean = |t: Tensor| {
        let t = t.to_dtype(DType::F64).unwrap();
        t.mean_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let (kl, agree) = nll::kl_and_top1(&predicting(&a), &predicting(&b)).unwrap();
    let (kl, agree) = (mean(kl), mean(agree));
    assert!(kl > 0.01, "{kl}");
    assert!((c.mean_kl - kl).abs() < 1e-6, "{} vs {kl}", c.mean_kl);
    assert!((c.top1_agreement - agree).abs() < 1e-12);
}

#[test]
fn reports_windows_and_cancels_between_batches() {
    let (ids, _) = reference("parallel");
    let tokens = in_memory(ids);
    let opts = EvalOptions {
        ctx: Some(8),
        batch: 1,
        ..EvalOptions::default()
    };
    let model = eval::load_model(&fixture("parallel"), &opts).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = Reporter::new(CancelToken::new(), move |p| {
        assert_eq!(p.unit, Unit::Windows);
        s.lock().unwrap().push((p.done, p.total));
    });
    eval::evaluate(&model, &tokens, &opts, &r).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        (0..=4).map(|d| (d, Some(4))).collect::<Vec<_>>()
    );

    // Cancelled after the first batch: stops with Cancelled, before the rest.
    let token = CancelToken::new();
    let t2 = token.clone();
    let count = Arc::new(Mutex::new(0));
    let c2 = count.clone();
    let r = Reporter::new(token, move |p| {
        *c2.lock().unwrap() += 1;
        if p.done == 1 {
            t2.cancel();
        }
    });
    let err = eval::evaluate(&model, &tokens, &opts, &r).unwrap_err();
    assert!(matches!(err, EvalError::Cancelled(_)));
    assert_eq!(*count.lock().unwrap(), 2);
}

#[test]
fn bad_inputs_give_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = EvalOptions::default();
    let silent = Reporter::silent();
    let run = |data: EvalData, opts: &EvalOptions| {
        eval::eval_model_dir(&fixture("parallel"), &data, opts, &silent)
            .unwrap_err()
            .to_string()
    };
    let big = write_u16(tmp.path(), &[1, 2, 150, 3]);
    let msg = run(EvalData::Tokens(big), &opts);
    assert!(
        msg.contains("150") && msg.contains("position 2") && msg.contains("vocab_size 100"),
        "{msg}"
    );
    let one = write_u16(tmp.path(), &[1]);
    assert!(run(EvalData::Tokens(one.clone()), &opts).contains("at least 2"));
    let ok = write_u16(tmp.path(), &[1, 2, 3]);
    let long = EvalOptions {
        ctx: Some(64),
        ..EvalOptions::default()
    };
    let msg = run(EvalData::Tokens(ok.clone()), &long);
    assert!(
        msg.contains("--ctx 64") && msg.contains("max_position_embeddings 32"),
        "{msg}"
    );
    let zero = EvalOptions {
        batch: 0,
        ..EvalOptions::default()
    };
    assert!(run(EvalData::Tokens(ok), &zero).contains("--batch"));
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, "hello").unwrap();
    let msg = run(EvalData::Text(text), &opts);
    assert!(
        msg.contains("tokenizer.json") && msg.contains("--tokens"),
        "{msg}"
    );
}
