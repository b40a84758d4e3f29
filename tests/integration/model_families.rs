//! Every family against Hugging Face transformers' logits on the fixtures written by
//! tests/fixtures/gen_families.py (tiny random models, every parameter randomised), and the
//! one-line errors for configs and weights that do not fit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use lawa::model::{load_model_dir, ConfigSource, Family, ModelError};

use crate::support;
use crate::support::logits::{max_abs_diff, mean_ce, reference, Reference};

/// (fixture, the path handed to the loader inside it, family)
const VARIANTS: [(&str, &str, Family); 10] = [
    ("llama_gqa_llama3", "", Family::Llama),
    ("llama_tied_linear_legacy", "", Family::Llama),
    ("mistral", "", Family::Mistral),
    ("olmo_clip_qkv", "", Family::Olmo),
    ("olmo2", "", Family::Olmo2),
    ("qwen2_tied", "", Family::Qwen2),
    ("qwen3", "", Family::Qwen3),
    ("gpt2", "", Family::Gpt2),
    ("nanogpt", "ckpt.pt", Family::Gpt2),
    ("nanogpt_nobias", "ckpt.pt", Family::Gpt2),
];

fn fixture(name: &str) -> PathBuf {
    support::fixture("families").join(name)
}

#[test]
fn f32_logits_and_cross_entropy_match_transformers_for_every_family() {
    for (name, file, family) in VARIANTS {
        let dir = fixture(name);
        let r = reference(&dir);
        let m = load_model_dir(&dir.join(file), Some(DType::F32), &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.config.family, family, "{name}");
        let logits = m.model.forward(&r.ids).unwrap();
        let diff = max_abs_diff(&logits, &r.logits);
        assert!(diff <= 1e-4, "{name}: max |Δlogit| {diff}");
        let ce = mean_ce(&logits, &r.ids);
        eprintln!(
            "{name}: max |Δlogit| {diff:.2e}, CE rel err {:.2e}",
            (ce - r.mean_ce).abs() / r.mean_ce
        );
        assert!(
            (ce - r.mean_ce).abs() <= 1e-4 * r.mean_ce,
            "{name}: CE {ce} vs {}",
            r.mean_ce
        );
    }
}

// Half precision: the same argument as for GPT-NeoX (tests/model_gpt_neox.rs). Logits here are
// O(1) (std ~1, |max| <= 6) after 2 layers of ~10 rounded ops; f16's unit roundoff is 4.9e-4,
// bf16's 3.9e-3. Norm statistics, softmax and the CE are computed in f32 in both, so the
// error is storage rounding: 2e-2 / 5e-3 (logits / CE) for f16, 1.5e-1 / 3e-2 for bf16.
// The GPT-2 fixtures' logits reach |5.7| and have larger activations through the un-normed
// residual, so their bounds are doubled.
#[test]
fn half_precision_logits_within_rounding_tolerance() {
    for (dtype, logit_tol, ce_tol) in [(DType::F16, 2e-2f32, 5e-3), (DType::BF16, 1.5e-1, 3e-2)] {
        for (name, file, family) in VARIANTS {
            let k = if family == Family::Gpt2 { 2.0 } else { 1.0 };
            let dir = fixture(name);
            let r = reference(&dir);
            let m = load_model_dir(&dir.join(file), Some(dtype), &Device::Cpu).unwrap();
            assert_eq!(m.model.dtype(), dtype);
            let logits = m.model.forward(&r.ids).unwrap();
            let diff = max_abs_diff(&logits, &r.logits);
            let ce = mean_ce(&logits, &r.ids);
            assert!(
                diff <= k * logit_tol,
                "{name} {dtype:?}: max |Δlogit| {diff}"
            );
            assert!(
                (ce - r.mean_ce).abs() <= k as f64 * ce_tol,
                "{name} {dtype:?}: CE {ce} vs {}",
                r.mean_ce
            );
        }
    }
}

#[test]
fn nanogpt_config_comes_from_model_args() {
    for name in ["nanogpt", "nanogpt_nobias"] {
        // The file itself, and a run's out dir holding only it.
        let only = tempfile::tempdir().unwrap();
        let pt = only.path().join("ckpt.pt");
        std::fs::copy(fixture(name).join("ckpt.pt"), &pt).unwrap();
        for path in [only.path().to_path_buf(), pt.clone()] {
            let m = load_model_dir(&path, None, &Device::Cpu).unwrap();
            assert_eq!(m.config_source, ConfigSource::NanoGptArgs(pt.clone()));
            assert_eq!(m.config.max_position_embeddings, 64);
            assert_eq!(m.format, lawa::checkpoint::Format::TorchPt);
        }
    }
}

/// A copy of fixture `name` with its config edited as JSON and its tensors edited.
fn copy_with(
    name: &str,
    edit_config: impl Fn(&mut serde_json::Value),
    edit: impl Fn(&mut HashMap<String, Tensor>),
) -> tempfile::TempDir {
    let dir = fixture(name);
    let out = tempfile::tempdir().unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit_config(&mut cfg);
    std::fs::write(out.path().join("config.json"), cfg.to_string()).unwrap();
    let mut t =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, out.path().join("model.safetensors")).unwrap();
    out
}

fn load_err(dir: &Path) -> String {
    let msg = load_model_dir(dir, None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    msg
}

#[test]
fn unsupported_family_is_named_with_the_supported_list() {
    let out = copy_with(
        "llama_gqa_llama3",
        |c| {
            c["architectures"] = serde_json::json!(["GemmaForCausalLM"]);
            c["model_type"] = "gemma".into();
        },
        |_| {},
    );
    let msg = load_err(out.path());
    assert!(
        msg.contains("GemmaForCausalLM")
            && msg.contains("config.json")
            && msg.contains("Olmo2ForCausalLM")
            && msg.contains("GPT2LMHeadModel"),
        "{msg}"
    );
}

#[test]
fn unsupported_config_fields_are_named() {
    for (name, key, value, expect) in [
        (
            "llama_gqa_llama3",
            "rope_parameters",
            serde_json::json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}),
            "yarn",
        ),
        (
            "qwen3",
            "final_logit_softcapping",
            serde_json::json!(30.0),
            "final_logit_softcapping",
        ),
        (
            "gpt2",
            "scale_attn_by_inverse_layer_idx",
            serde_json::json!(true),
            "scale_attn_by_inverse_layer_idx",
        ),
        (
            "mistral",
            "hidden_act",
            serde_json::json!("swiglu_magic"),
            "swiglu_magic",
        ),
        (
            "olmo2",
            "partial_rotary_factor",
            serde_json::json!(0.5),
            "partial_rotary_factor",
        ),
    ] {
        let out = copy_with(name, |c| c[key] = value.clone(), |_| {});
        let msg = load_err(out.path());
        assert!(
            msg.contains(expect) && msg.contains("config.json"),
            "{name}: {msg}"
        );
    }
}

#[test]
fn shape_disagreement_and_missing_tensor_are_named() {
    // num_key_value_heads 4 on weights made for 2: k_proj is [16, 32], the config wants [32, 32].
    let out = copy_with(
        "llama_gqa_llama3",
        |c| c["num_key_value_heads"] = 4.into(),
        |_| {},
    );
    let msg = load_err(out.path());
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj.weight")
            && msg.contains("[16, 32]")
            && msg.contains("[32, 32]"),
        "{msg}"
    );
    let out = copy_with(
        "qwen2_tied",
        |_| {},
        |t| {
            t.remove("model.layers.1.self_attn.v_proj.bias");
        },
    );
    let err = load_model_dir(out.path(), None, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("model.layers.1.self_attn.v_proj.bias"));
    // An untied config over weights without a head.
    let out = copy_with(
        "qwen2_tied",
        |c| c["tie_word_embeddings"] = false.into(),
        |_| {},
    );
    assert!(load_err(out.path()).contains("lm_head.weight"));
    // A family whose names the weights do not have.
    let out = copy_with(
        "olmo2",
        |c| {
            c["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
            c["model_type"] = "gpt2".into();
            c["n_embd"] = 32.into();
            c["n_layer"] = 2.into();
            c["n_head"] = 4.into();
        },
        |_| {},
    );
    let msg = load_err(out.path());
    assert!(
        msg.contains("GPT2LMHeadModel")
            && msg.contains("transformer.wte.weight")
            && msg.contains("Llama-like"),
        "{msg}"
    );
}

// Issue 16, defects 2 and 8: hostile or inconsistent configs fail before anything is
// allocated, in one line naming the field.
#[test]
fn hostile_and_inconsistent_configs_fail_before_allocating() {
    for (name, key, value) in [
        (
            "llama_gqa_llama3",
            "max_position_embeddings",
            serde_json::json!(10_000_000_000u64),
        ),
        (
            "olmo2",
            "num_hidden_layers",
            serde_json::json!(1_000_000_000),
        ),
        ("qwen3", "rms_norm_eps", serde_json::json!(-1e-6)),
        ("gpt2", "layer_norm_epsilon", serde_json::json!(-1e-5)),
        (
            "gpt2",
            "n_positions",
            serde_json::json!(1_000_000_000_000u64),
        ),
        ("mistral", "vocab_size", serde_json::json!(0)),
    ] {
        let out = copy_with(name, |c| c[key] = value.clone(), |_| {});
        let msg = load_err(out.path());
        assert!(
            msg.contains(key) && msg.contains("config.json"),
            "{name} {key}: {msg}"
        );
    }
    // Fewer layers than the weights hold: an error, not a silently truncated model.
    for (name, key) in [
        ("llama_gqa_llama3", "num_hidden_layers"),
        ("gpt2", "n_layer"),
    ] {
        let out = copy_with(name, |c| c[key] = 1.into(), |_| {});
        let msg = load_err(out.path());
        assert!(msg.contains(key) && msg.contains("holds 2 layers"), "{msg}");
    }
    // And for GPT-NeoX.
    let dir = support::fixture("gpt_neox/parallel");
    let out = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("model.safetensors"),
        out.path().join("model.safetensors"),
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    for (from, to, key) in [
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 1",
            "num_hidden_layers",
        ),
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 1000000000",
            "num_hidden_layers",
        ),
        (
            "\"max_position_embeddings\": 32",
            "\"max_position_embeddings\": 10000000000",
            "max_position_embeddings",
        ),
        (
            "\"layer_norm_eps\": 1e-05",
            "\"layer_norm_eps\": -1e-05",
            "layer_norm_eps",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(out.path().join("config.json"), text.replace(from, to)).unwrap();
        let msg = load_err(out.path());
        assert!(msg.contains(key), "{msg}");
    }
}

#[test]
fn sliding_window_shorter_than_the_context_is_refused() {
    let out = copy_with("mistral", |c| c["sliding_window"] = 8.into(), |_| {});
    let m = load_model_dir(out.path(), None, &Device::Cpu).unwrap();
    let r = reference(&fixture("mistral"));
    let err = m.model.forward(&r.ids).unwrap_err().to_string();
    assert!(
        err.contains("sliding-window") && err.contains("--ctx 8"),
        "{err}"
    );
    assert!(m.model.forward(&r.ids.narrow(1, 0, 8).unwrap()).is_ok());
}

/// The fixture's ids as a `.u32` token file, and the reference mean CE of its first row.
fn first_row_tokens(dir: &Path, out: &Path) -> (PathBuf, f64, Reference) {
    let r = reference(dir);
    let row: Vec<u32> = r
        .ids
        .narrow(0, 0, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let path = out.join("ids.u32");
    let bytes: Vec<u8> = row.iter().flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&path, bytes).unwrap();
    let logits = r.logits.narrow(0, 0, 1).unwrap();
    let ce = mean_ce(&logits, &r.ids.narrow(0, 0, 1).unwrap());
    (path, ce, r)
}

#[test]
fn eval_and_compare_run_on_every_family() {
    use lawa::eval::{self, EvalData, EvalOptions};
    use lawa::progress::Reporter;
    let tmp = tempfile::tempdir().unwrap();
    let opts = EvalOptions {
        ctx: Some(16),
        ..EvalOptions::default()
    };
    let mut previous: Option<lawa::model::LoadedModel> = None;
    for (name, file, _) in VARIANTS {
        let dir = fixture(name);
        let (ids, want, _) = first_row_tokens(&dir, tmp.path());
        let path = dir.join(file);
        let r = eval::eval_model_dir(
            &path,
            &EvalData::Tokens(ids.clone()),
            &opts,
            &Reporter::silent(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.predicted_tokens, 15);
        assert!(
            (r.mean_nll - want).abs() <= 1e-4 * want,
            "{name}: {} vs {want}",
            r.mean_nll
        );
        // KL and top-1 against the previous family's model (same vocabulary), and itself.
        let m = eval::load_model(&path, &opts).unwrap();
        let tokens = eval::load_tokens(&EvalData::Tokens(ids), &path, None).unwrap();
        let same = eval::compare(&m, &m, &tokens, &opts, &Reporter::silent()).unwrap();
        assert!(
            same.mean_kl.abs() < 1e-6 && same.top1_agreement == 1.0,
            "{name}"
        );
        if let Some(p) = &previous {
            let c = eval::compare(&m, p, &tokens, &opts, &Reporter::silent()).unwrap();
            assert!(
                c.mean_kl > 0.01 && c.mean_kl.is_finite(),
                "{name}: KL {}",
                c.mean_kl
            );
        }
        previous = Some(m);
    }
}

/// `lawa average` of a nanoGPT run (two `ckpt_N.pt` with `model_args`, bias=False) writes
/// transformers' GPT-2: the config, names, order and shapes GPT2LMHeadModel saves
/// (tests/fixtures/gen_nanogpt_run.py), and logits equal to transformers' on the average.
#[test]
fn a_nanogpt_average_is_written_as_transformers_gpt2_and_computes_its_logits() {
    let fx = support::fixture("nanogpt_run");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("avg");
    let run = |args: &[&str]| {
        std::process::Command::new(support::LAWA)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "average",
        fx.join("run").to_str().unwrap(),
        "--steps",
        "1000,2000",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("converted to transformers' GPT-2"),
        "{stderr}"
    );
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let want = json(&fx.join("reference.json"));
    let cfg = json(&out.join("config.json"));
    for (k, v) in want["config"].as_object().unwrap() {
        // transformers reads n_inner null as 4 * n_embd.
        let v = match (k.as_str(), v) {
            ("n_inner", serde_json::Value::Null) => {
                serde_json::json!(4 * cfg["n_embd"].as_u64().unwrap())
            }
            _ => v.clone(),
        };
        assert_eq!(cfg[k], v, "config.json {k}");
    }
    assert_eq!(cfg["architectures"], serde_json::json!(["GPT2LMHeadModel"]));
    let written: Vec<(String, Vec<usize>)> = lawa::checkpoint::WeightsReader::open(&out)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let saved: Vec<(String, Vec<usize>)> =
        serde_json::from_value(want["state_dict"].clone()).unwrap();
    let mut sorted = saved.clone();
    sorted.sort();
    let mut written_sorted = written.clone();
    written_sorted.sort();
    assert_eq!(written_sorted, sorted, "names and shapes");
    let lawa_json = json(&out.join("lawa.json"));
    assert!(
        lawa_json["converted"]
            .as_str()
            .unwrap()
            .starts_with("nanoGPT checkpoints converted"),
        "{lawa_json}"
    );
    assert!(!out.join(".nanogpt-average").exists());
    // The output loads from its config.json and computes transformers' logits.
    let m = load_model_dir(&out, Some(DType::F32), &Device::Cpu).unwrap();
    assert_eq!(m.config.family, Family::Gpt2);
    assert_eq!(
        m.config_source,
        ConfigSource::ConfigJson(out.join("config.json"))
    );
    let r = reference(&fx);
    let logits = m.model.forward(&r.ids).unwrap();
    let diff = max_abs_diff(&logits, &r.logits);
    assert!(diff <= 1e-4, "logits differ by {diff}");
    let ce = mean_ce(&logits, &r.ids);
    assert!(
        ((ce - r.mean_ce) / r.mean_ce).abs() <= 1e-4,
        "{ce} vs {}",
        r.mean_ce
    );

    // nanoGPT checkpoints of another architecture (bias=True) are refused in one line.
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(fx.join("run/ckpt_1000.pt"), mixed.join("ckpt_1000.pt")).unwrap();
    std::fs::copy(
        fixture("nanogpt").join("ckpt.pt"),
        mixed.join("ckpt_2000.pt"),
    )
    .unwrap();
    let o = run(&[
        "average",
        mixed.to_str().unwrap(),
        "--steps",
        "1000,2000",
        "--out",
        tmp.path().join("bad").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!tmp.path().join("bad").exists());
    assert!(
        stderr.contains("ckpt_1000.pt") && stderr.contains("ckpt_2000.pt"),
        "{stderr}"
    );
}
