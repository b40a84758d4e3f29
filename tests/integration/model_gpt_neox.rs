//! Our GPT-NeoX against Hugging Face transformers' logits on the fixtures written by
//! tests/fixtures/gen_gpt_neox.py (tiny random models, every parameter randomised).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use lawa::model::{load_model_dir, ModelError};

use crate::support;
use crate::support::logits::{max_abs_diff, mean_ce, reference};

const VARIANTS: [&str; 4] = ["parallel", "sequential", "full_rotary", "rope_parameters"];

fn fixture(name: &str) -> PathBuf {
    support::fixture("gpt_neox").join(name)
}

#[test]
fn f32_logits_and_cross_entropy_match_transformers() {
    for name in VARIANTS {
        let dir = fixture(name);
        let r = reference(&dir);
        let m = load_model_dir(&dir, Some(DType::F32), &Device::Cpu).unwrap();
        for (path, logits) in [
            ("eval", m.model.forward(&r.ids).unwrap()),
            ("train", m.model.forward_train(&r.ids).unwrap()),
        ] {
            let diff = max_abs_diff(&logits, &r.logits);
            assert!(diff <= 1e-4, "{name} {path}: max |Δlogit| {diff}");
            let ce = mean_ce(&logits, &r.ids);
            assert!(
                (ce - r.mean_ce).abs() <= 1e-5,
                "{name} {path}: CE {ce} vs {}",
                r.mean_ce
            );
        }
    }
}

// Half precision. Logits here are O(1) (std ~1, |max| ~4) and pass through 2 layers of
// ~10 rounded ops each. f16 keeps 11 significant bits (unit roundoff 2^-11 ≈ 4.9e-4), so each
// rounding moves an O(1) value by ≲ 5e-4 and a few dozen of them, partly cancelling, give
// errors of a few 1e-3: we allow 2e-2 on logits and 5e-3 on the mean CE. bf16 keeps 8 bits
// (2^-8 ≈ 3.9e-3), 8x coarser: 1.5e-1 on logits, 3e-2 on CE. Softmax, LayerNorm statistics
// and the CE itself are computed in f32 in both, so these bounds are about storage rounding.
#[test]
fn half_precision_logits_within_rounding_tolerance() {
    for (dtype, logit_tol, ce_tol) in [(DType::F16, 2e-2, 5e-3), (DType::BF16, 1.5e-1, 3e-2)] {
        for name in VARIANTS {
            let dir = fixture(name);
            let r = reference(&dir);
            let m = load_model_dir(&dir, Some(dtype), &Device::Cpu).unwrap();
            assert_eq!(m.model.dtype(), dtype);
            let logits = m.model.forward(&r.ids).unwrap();
            assert_eq!(logits.dtype(), dtype);
            let diff = max_abs_diff(&logits, &r.logits);
            let ce = mean_ce(&logits, &r.ids);
            assert!(diff <= logit_tol, "{name} {dtype:?}: max |Δlogit| {diff}");
            assert!(
                (ce - r.mean_ce).abs() <= ce_tol,
                "{name} {dtype:?}: CE {ce} vs {}",
                r.mean_ce
            );
        }
    }
}

fn copy_with(dir: &Path, edit: impl Fn(&mut HashMap<String, Tensor>)) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), out.path().join("config.json")).unwrap();
    let mut t =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, out.path().join("model.safetensors")).unwrap();
    out
}

#[test]
fn lm_head_name_is_accepted_for_the_output_head() {
    let dir = fixture("parallel");
    let r = reference(&dir);
    let out = copy_with(&dir, |t| {
        let w = t.remove("embed_out.weight").unwrap();
        t.insert("lm_head.weight".into(), w);
    });
    let m = load_model_dir(out.path(), None, &Device::Cpu).unwrap();
    assert_eq!(m.stored_dtype, Some(DType::F32));
    assert!(max_abs_diff(&m.model.forward(&r.ids).unwrap(), &r.logits) <= 1e-4);
}

#[test]
fn missing_tensor_is_named() {
    let out = copy_with(&fixture("sequential"), |t| {
        t.remove("gpt_neox.layers.1.mlp.dense_4h_to_h.bias");
    });
    let err = load_model_dir(out.path(), None, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("gpt_neox.layers.1.mlp.dense_4h_to_h.bias")
            && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1);
}

#[test]
fn wrong_shape_and_unsupported_architecture_are_named() {
    let dir = fixture("parallel");
    let out = copy_with(&dir, |t| {
        let w = t["gpt_neox.embed_in.weight"].narrow(0, 0, 50).unwrap();
        t.insert("gpt_neox.embed_in.weight".into(), w);
    });
    let msg = load_model_dir(out.path(), None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("gpt_neox.embed_in.weight") && msg.contains("[50, 32]"),
        "{msg}"
    );

    let text = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("GPTNeoXForCausalLM", "LlamaForCausalLM");
    std::fs::write(out.path().join("config.json"), text).unwrap();
    let msg = load_model_dir(out.path(), None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("LlamaForCausalLM") && msg.contains("config.json"),
        "{msg}"
    );

    let empty = tempfile::tempdir().unwrap();
    let msg = load_model_dir(empty.path(), None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn batch_rows_are_independent() {
    // Row 1 evaluated alone equals row 1 of the batch: no leakage between sequences.
    let dir = fixture("full_rotary");
    let r = reference(&dir);
    let m = load_model_dir(&dir, None, &Device::Cpu).unwrap();
    let both = m.model.forward(&r.ids).unwrap();
    let alone = m.model.forward(&r.ids.narrow(0, 1, 1).unwrap()).unwrap();
    assert!(max_abs_diff(&alone, &both.narrow(0, 1, 1).unwrap()) <= 1e-5);
}

#[test]
fn pytorch_bin_with_pythia_buffers_gives_the_same_logits() {
    for name in VARIANTS {
        let dir = fixture(name);
        let r = reference(&dir);
        // The .bin file itself (config.json beside it), and a dir holding only the .bin.
        let m = load_model_dir(&dir.join("pytorch_model.bin"), None, &Device::Cpu).unwrap();
        assert_eq!(m.format, lawa::checkpoint::Format::TorchBin);
        assert_eq!(m.dir, dir);
        let diff = max_abs_diff(&m.model.forward(&r.ids).unwrap(), &r.logits);
        assert!(diff <= 1e-4, "{name} .bin: {diff}");
        let only_bin = tempfile::tempdir().unwrap();
        for f in ["config.json", "pytorch_model.bin"] {
            std::fs::copy(dir.join(f), only_bin.path().join(f)).unwrap();
        }
        let m = load_model_dir(only_bin.path(), Some(DType::F32), &Device::Cpu).unwrap();
        assert_eq!(m.format, lawa::checkpoint::Format::TorchBin);
        let diff = max_abs_diff(&m.model.forward(&r.ids).unwrap(), &r.logits);
        assert!(diff <= 1e-4, "{name} .bin dir: {diff}");
    }
}

#[test]
fn sharded_safetensors_written_by_the_checkpoint_writer_load() {
    // As an averaged output is written: our streaming writer, here in bf16 and forced into shards.
    use lawa::checkpoint::{DType as CkDType, SafetensorsWriter, TensorInfo, WeightsReader};
    let dir = fixture("sequential");
    let r = reference(&dir);
    let src = WeightsReader::open(&dir.join("model.safetensors")).unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), out.path().join("config.json")).unwrap();
    let plan: Vec<TensorInfo> = src
        .tensors()
        .iter()
        .map(|t| TensorInfo {
            name: t.name.clone(),
            dtype: CkDType::BF16,
            shape: t.shape.clone(),
        })
        .collect();
    let mut w = SafetensorsWriter::create(out.path(), plan.clone(), 20_000).unwrap();
    for t in &plan {
        let v = src
            .tensor(&t.name, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let v: Vec<half::bf16> = v.flatten_all().unwrap().to_vec1().unwrap();
        w.write(&t.name, bytemuck::cast_slice(&v)).unwrap();
    }
    w.finish().unwrap();
    assert!(out.path().join("model.safetensors.index.json").is_file());
    let m = load_model_dir(out.path(), None, &Device::Cpu).unwrap();
    assert_eq!(m.format, lawa::checkpoint::Format::ShardedSafetensors);
    assert_eq!(m.stored_dtype, Some(DType::BF16));
    assert_eq!(m.model.dtype(), DType::BF16);
    // bf16 weights, bf16 compute: the bf16 bound of half_precision_logits_within_rounding_tolerance.
    let diff = max_abs_diff(&m.model.forward(&r.ids).unwrap(), &r.logits);
    assert!(diff <= 1.5e-1, "{diff}");
}
