//! Reading checkpoints of every form from the committed fixtures (tests/fixtures/gen_checkpoints.py),
//! strict validation of broken files, and the streaming writer's output read by Python safetensors.

use std::fs;
use std::path::{Path, PathBuf};

use lawa::checkpoint::{is_buffer, DType, Format, SafetensorsWriter, TensorInfo, WeightsReader};

fn fixture(rel: &str) -> PathBuf {
    crate::support::fixture("checkpoints").join(rel)
}

const WEIGHTS: [&str; 5] = [
    "gpt_neox.embed_in.weight",
    "gpt_neox.layers.0.attention.query_key_value.weight",
    "gpt_neox.layers.0.attention.query_key_value.bias",
    "gpt_neox.final_layer_norm.weight",
    "embed_out.weight",
];
/// 16·8 + 24·8 + 24 + 8 + 16·8: the buffers (mask, masked_bias, inv_freq) are not parameters.
const PARAMS: u64 = 480;

#[test]
fn safetensors_single_and_sharded_read_the_same_tensors() {
    let single = WeightsReader::open(&fixture("st_f16/step200")).unwrap();
    let sharded = WeightsReader::open(&fixture("st_f16_sharded/step200")).unwrap();
    assert_eq!(single.format(), Format::Safetensors);
    assert_eq!(sharded.format(), Format::ShardedSafetensors);
    assert_eq!(sharded.files().len(), 2);
    assert_eq!(single.tensors().len(), 8);
    for r in [&single, &sharded] {
        assert_eq!(r.parameter_count(), PARAMS);
        assert_eq!(r.main_dtype(), Some(DType::F16));
        for name in WEIGHTS {
            assert_eq!(r.info(name).unwrap().dtype, DType::F16);
        }
        let mask = r.info("gpt_neox.layers.0.attention.bias").unwrap();
        assert_eq!(
            (mask.dtype, mask.shape.as_slice()),
            (DType::Bool, &[1, 1, 4, 4][..])
        );
        assert_eq!(
            r.info("gpt_neox.layers.0.attention.masked_bias")
                .unwrap()
                .shape,
            Vec::<usize>::new()
        );
    }
    let mut names_a: Vec<_> = single.tensors().iter().map(|t| t.name.clone()).collect();
    let mut names_b: Vec<_> = sharded.tensors().iter().map(|t| t.name.clone()).collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b);
    for t in single.tensors() {
        assert_eq!(
            single.bytes(&t.name).unwrap(),
            sharded.bytes(&t.name).unwrap(),
            "{}",
            t.name
        );
        assert!(sharded
            .file_of(&t.name)
            .unwrap()
            .starts_with(fixture("st_f16_sharded/step200")));
    }
    let data: u64 = single.tensors().iter().map(|t| t.nbytes() as u64).sum();
    assert_eq!(single.data_bytes(), data);
    // The causal mask is a lower-triangular bool matrix.
    let mask = single.bytes("gpt_neox.layers.0.attention.bias").unwrap();
    assert_eq!(&mask[..8], &[1, 0, 0, 0, 1, 1, 0, 0]);
}

#[test]
fn tensors_load_into_candle_with_their_values() {
    let r = WeightsReader::open(&fixture("st_bf16/step100/model.safetensors")).unwrap();
    let t = r
        .tensor(
            "gpt_neox.final_layer_norm.weight",
            &candle_core::Device::Cpu,
        )
        .unwrap();
    assert_eq!(t.dtype(), candle_core::DType::BF16);
    let v = t
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // 1 + 0.1·N(0,1) plus a small drift: all near 1.
    assert!(v.iter().all(|x| (0.5..1.5).contains(x)), "{v:?}");
    let raw = r.bytes("gpt_neox.final_layer_norm.weight").unwrap();
    assert_eq!(half::bf16::from_le_bytes([raw[0], raw[1]]).to_f32(), v[0]);
    let mask = r
        .tensor(
            "gpt_neox.layers.0.attention.bias",
            &candle_core::Device::Cpu,
        )
        .unwrap();
    assert_eq!(mask.dtype(), candle_core::DType::U8);
    let e = r
        .tensor("nope", &candle_core::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("'nope'"),
        "{e}"
    );
}

#[test]
fn header_hash_is_identity_without_data() {
    let a = WeightsReader::open(&fixture("st_f32/step100")).unwrap();
    let a2 = WeightsReader::open(&fixture("st_f32/step100/model.safetensors")).unwrap();
    let b = WeightsReader::open(&fixture("st_f16/step100")).unwrap();
    assert_eq!(a.header_hash(), a2.header_hash());
    assert_eq!(a.header_hash().len(), 64);
    assert_ne!(a.header_hash(), b.header_hash());
    // Two steps of one run have byte-identical headers; the hash still tells them apart.
    for run in ["st_f32", "bin_f16", "st_f16_sharded"] {
        let h = |s: &str| {
            WeightsReader::open(&fixture(&format!("{run}/{s}")))
                .unwrap()
                .header_hash()
        };
        assert_ne!(h("step100"), h("step200"), "{run}");
        assert_eq!(h("step100"), h("step100"), "{run}");
    }
}

/// A copy of a fixture file with `edit` applied, in a temp dir; returns (dir, file).
fn broken(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(fixture("st_f32/step100/model.safetensors")).unwrap();
    edit(&mut bytes);
    let p = dir.path().join("model.safetensors");
    fs::write(&p, bytes).unwrap();
    (dir, p)
}

fn header_of(bytes: &[u8]) -> String {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    String::from_utf8(bytes[8..8 + n].to_vec()).unwrap()
}

/// Replaces the header with `new` (same data after it).
fn set_header(bytes: &mut Vec<u8>, new: &str) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data = bytes[8 + n..].to_vec();
    bytes.clear();
    bytes.extend_from_slice(&(new.len() as u64).to_le_bytes());
    bytes.extend_from_slice(new.as_bytes());
    bytes.extend_from_slice(&data);
}

fn open_err(dir: &Path) -> String {
    let e = WeightsReader::open(dir).unwrap_err().to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn broken_safetensors_are_refused_with_the_file_and_problem() {
    type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 10)),
        ),
        ("too short", Box::new(|b: &mut Vec<u8>| b.truncate(5))),
        (
            "not a JSON object",
            Box::new(|b: &mut Vec<u8>| {
                let h = header_of(b);
                set_header(b, &h.replacen('{', "<", 1));
            }),
        ),
        (
            "absurd",
            Box::new(|b: &mut Vec<u8>| b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes())),
        ),
        (
            "past the end",
            Box::new(|b: &mut Vec<u8>| {
                // Grow the last tensor's claimed range beyond the data.
                let h = header_of(b);
                let data_len = b.len() - 8 - h.len();
                let v: serde_json::Value = serde_json::from_str(&h).unwrap();
                let (name, _) = v
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "__metadata__")
                    .max_by_key(|(_, e)| e["data_offsets"][1].as_u64().unwrap())
                    .unwrap();
                let mut v2 = v.clone();
                let e = &mut v2[name.as_str()];
                let len =
                    e["data_offsets"][1].as_u64().unwrap() - e["data_offsets"][0].as_u64().unwrap();
                e["data_offsets"] = serde_json::json!([data_len as u64, data_len as u64 + len]);
                set_header(b, &v2.to_string());
            }),
        ),
        (
            "overlap",
            Box::new(|b: &mut Vec<u8>| {
                let h = header_of(b);
                let mut v: serde_json::Value = serde_json::from_str(&h).unwrap();
                let obj = v.as_object_mut().unwrap();
                // Two f32 tensors of equal size made to share the bytes of the earlier one.
                let start = |k: &str| obj[k]["data_offsets"][0].as_u64().unwrap();
                let (mut x, mut y) = ("gpt_neox.embed_in.weight", "embed_out.weight");
                if start(x) > start(y) {
                    (x, y) = (y, x);
                }
                let offsets = obj[x]["data_offsets"].clone();
                obj.get_mut(y).unwrap()["data_offsets"] = offsets;
                set_header(b, &v.to_string());
            }),
        ),
        (
            "unknown dtype 'F8_E9'",
            Box::new(|b: &mut Vec<u8>| {
                let h = header_of(b);
                set_header(b, &h.replacen("\"F32\"", "\"F8_E9\"", 1));
            }),
        ),
    ];
    for (problem, edit) in cases {
        let (dir, file) = broken(edit);
        for target in [dir.path(), file.as_path()] {
            let e = open_err(target);
            assert!(e.contains(problem), "expected '{problem}': {e}");
            assert!(
                e.contains(&file.display().to_string()),
                "file not named: {e}"
            );
        }
    }
}

#[test]
fn folders_without_one_clear_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open_err(dir.path()).contains("no weights found"));
    assert!(open_err(&dir.path().join("missing")).contains("no such file"));
    for f in ["a.safetensors", "b.safetensors"] {
        fs::copy(
            fixture("st_f32/step100/model.safetensors"),
            dir.path().join(f),
        )
        .unwrap();
    }
    let e = open_err(dir.path());
    assert!(
        e.contains("several weights files") && e.contains("a.safetensors"),
        "{e}"
    );
    fs::remove_file(dir.path().join("b.safetensors")).unwrap();
    assert_eq!(WeightsReader::open(dir.path()).unwrap().tensors().len(), 8);
    let odd = dir.path().join("weights.npz");
    fs::write(&odd, "x").unwrap();
    assert!(open_err(&odd).contains("not a checkpoint file"));
}

#[test]
fn shard_index_must_match_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    for e in fs::read_dir(fixture("st_f16_sharded/step100")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let idx = dir.path().join("model.safetensors.index.json");
    let text = fs::read_to_string(&idx).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors".into();
    fs::write(&idx, v.to_string()).unwrap();
    let e = open_err(dir.path());
    assert!(
        e.contains("'ghost.weight'") && e.contains("model-00001-of-00002.safetensors"),
        "{e}"
    );
    v["weight_map"]["ghost.weight"] = "model-00009-of-00009.safetensors".into();
    fs::write(&idx, v.to_string()).unwrap();
    let e = open_err(dir.path());
    assert!(
        e.contains("names the shard model-00009-of-00009.safetensors, which is missing"),
        "{e}"
    );
    fs::write(&idx, "{").unwrap();
    assert!(open_err(dir.path()).contains("not a shard index"));
}

/// Python's safetensors must read what our streaming writer wrote, sharded or not. Needs the
/// reference venv (LAWA_PYTHON or /work/pyref/bin/python); says so and passes without it.
#[test]
fn writer_output_is_read_by_python_safetensors() {
    let python = std::env::var("LAWA_PYTHON").unwrap_or_else(|_| "/work/pyref/bin/python".into());
    if !Path::new(&python).exists() {
        eprintln!("skipped: no reference python at {python} (set LAWA_PYTHON)");
        return;
    }
    let plan = vec![
        TensorInfo {
            name: "a.weight".into(),
            dtype: DType::F32,
            shape: vec![3, 5],
        },
        TensorInfo {
            name: "b.weight".into(),
            dtype: DType::F16,
            shape: vec![7],
        },
        TensorInfo {
            name: "c.mask".into(),
            dtype: DType::Bool,
            shape: vec![2, 2],
        },
        TensorInfo {
            name: "d.weight".into(),
            dtype: DType::BF16,
            shape: vec![4, 1],
        },
        TensorInfo {
            name: "e.scalar".into(),
            dtype: DType::F32,
            shape: vec![],
        },
    ];
    // Written unsharded and in 3 shards (a.weight alone, b+c, d+e), checked by one python run.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut expect = serde_json::Map::new();
    for (dir, shard_size) in dirs.iter().zip([u64::MAX, 20]) {
        let mut w = SafetensorsWriter::create(dir.path(), plan.clone(), shard_size).unwrap();
        for t in &plan {
            let vals: Vec<f32> = (0..t.numel()).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes: Vec<u8> = match t.dtype {
                DType::F32 => bytemuck::cast_slice(&vals).to_vec(),
                DType::F16 => vals
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                DType::BF16 => vals
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => vals.iter().map(|v| (*v > 0.0) as u8).collect(),
            };
            let sum: f64 = match t.dtype {
                DType::Bool => vals.iter().filter(|v| **v > 0.0).count() as f64,
                _ => vals.iter().map(|v| *v as f64).sum(),
            };
            expect.insert(t.name.clone(), serde_json::json!([t.shape, sum]));
            w.write(&t.name, &bytes).unwrap();
        }
        assert!(w.finish().unwrap() > 0);
    }
    let script = r#"
import json, os, sys
from safetensors import safe_open
res = []
for d in sys.argv[1:]:
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(os.path.join(d, f), "pt") as s:
            assert s.metadata() == {"format": "pt"}, s.metadata()
            for k in s.keys():
                t = s.get_tensor(k)
                out[k] = [list(t.shape), float(t.double().sum())]
    res.append({"files": len(files), "tensors": out})
print(json.dumps(res))
"#;
    let o = std::process::Command::new(&python)
        .args(["-c", script])
        .args(dirs.iter().map(|d| d.path()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expect = serde_json::Value::Object(expect);
    for (i, files) in [1, 3].into_iter().enumerate() {
        assert_eq!(got[i]["files"], files);
        assert_eq!(got[i]["tensors"], expect);
    }
}

#[test]
fn buffers_in_fixtures_are_recognised() {
    let r = WeightsReader::open(&fixture("st_f32/step100")).unwrap();
    let buffers: Vec<_> = r
        .tensors()
        .iter()
        .filter(|t| is_buffer(&t.name))
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(buffers.len(), 3, "{buffers:?}");
}

#[test]
fn pytorch_checkpoints_read_the_same_tensors_as_safetensors() {
    for (bin, st, format) in [
        ("bin_f16/step400", "st_f16/step400", Format::TorchBin),
        ("bin_bf16/step100", "st_bf16/step100", Format::TorchBin),
        (
            "bin_f16_sharded/step200",
            "st_f16/step200",
            Format::ShardedTorchBin,
        ),
        ("pt_f32/ckpt_200.pt", "st_f32/step200", Format::TorchPt),
    ] {
        let b = WeightsReader::open(&fixture(bin)).unwrap();
        let s = WeightsReader::open(&fixture(st)).unwrap();
        assert_eq!(b.format(), format, "{bin}");
        assert_eq!(b.tensors().len(), s.tensors().len(), "{bin}");
        assert_eq!(b.parameter_count(), PARAMS);
        for t in s.tensors() {
            assert_eq!(b.info(&t.name), Some(t), "{bin} {}", t.name);
            assert_eq!(
                b.bytes(&t.name).unwrap(),
                s.bytes(&t.name).unwrap(),
                "{bin} {}",
                t.name
            );
        }
        assert_eq!(
            b.header_hash(),
            WeightsReader::open(&fixture(bin)).unwrap().header_hash()
        );
        assert_ne!(b.header_hash(), s.header_hash());
    }
}

#[test]
fn bad_pytorch_files_are_refused_naming_the_file() {
    let evil = fixture("bad/unknown_class/pytorch_model.bin");
    let e = open_err(&evil);
    assert!(e.contains(&evil.display().to_string()), "{e}");
    assert!(
        e.contains("system"),
        "the refused global should be named: {e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("pytorch_model.bin");
    fs::write(&junk, vec![7u8; 300]).unwrap();
    let e = open_err(dir.path());
    assert!(
        e.contains("not a PyTorch zip") && e.contains("pytorch_model.bin"),
        "{e}"
    );
    let mut bytes = fs::read(fixture("bin_f16/step100/pytorch_model.bin")).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&junk, bytes).unwrap();
    let e = open_err(&junk);
    assert!(e.contains("pytorch_model.bin"), "{e}");
}
