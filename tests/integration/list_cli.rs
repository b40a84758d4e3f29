//! `lawa list` end to end: the real binary on run folders and files written by the test
//! (safetensors written by hand from the format: u64 header length, JSON header, data).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

/// Writes a safetensors file holding `tensors` (name, dtype, shape), filled with zeros.
fn write_safetensors(path: &Path, tensors: &[(&str, &str, &[usize])]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let size = match *dtype {
            "F32" => 4,
            "F16" | "BF16" => 2,
            _ => 1,
        };
        let n = shape.iter().product::<usize>() * size;
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.resize(bytes.len() + offset, 0);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

const F32_MODEL: &[(&str, &str, &[usize])] = &[
    ("gpt_neox.embed_in.weight", "F32", &[4, 3]),
    // GPT-NeoX's causal mask: a buffer, not a parameter.
    ("gpt_neox.layers.0.attention.bias", "BOOL", &[1, 1, 2, 2]),
];

fn lawa(args: &[&str]) -> Output {
    Command::new(crate::support::LAWA)
        .args(args)
        .output()
        .unwrap()
}

/// A run with folders, a file, a broken checkpoint, metrics with a spike and a stray file.
fn make_run(root: &Path) {
    for s in [100, 200] {
        let d = root.join(format!("step{s}"));
        write_safetensors(&d.join("model.safetensors"), F32_MODEL);
        fs::write(d.join("config.json"), "{}").unwrap();
    }
    write_safetensors(
        &root.join("step_300.safetensors"),
        &[("w", "F16", &[10, 10]), ("b", "F32", &[10])],
    );
    fs::write(root.join("step_400.safetensors"), b"\x05\x00").unwrap();
    fs::write(root.join("best.pt"), b"x").unwrap();
    let mut log = String::new();
    for s in 1..=400u64 {
        let spike = if (250..255).contains(&s) { 3.0 } else { 0.0 };
        let loss = 3.0 + 2.0 / (s as f64).sqrt() + spike + 0.01 * ((s as f64) * 0.7).sin();
        log.push_str(&format!(
            "{{\"step\": {s}, \"loss\": {loss}, \"lr\": 0.0006}}\n"
        ));
    }
    fs::write(root.join("metrics.jsonl"), log).unwrap();
    fs::write(root.join("trajectory.json"), r#"{"tokens_per_step": 512}"#).unwrap();
}

#[test]
fn json_listing_has_headers_metrics_spikes_and_warnings() {
    let d = tempfile::tempdir().unwrap();
    make_run(d.path());
    let out = lawa(&["list", d.path().to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tokens_per_step"], 512);
    let rows = v["checkpoints"].as_array().unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![100, 200, 300, 400]);

    let r = &rows[0];
    assert_eq!(r["name"], "step100");
    assert_eq!(r["tokens"], 51_200);
    assert_eq!(r["format"], "safetensors");
    assert_eq!(r["dtype"], "f32");
    assert_eq!(r["parameters"], 12);
    assert_eq!(r["size_bytes"], 12 * 4 + 4);
    assert!(r["error"].is_null());

    let r = &rows[2];
    assert_eq!(r["name"], "step_300.safetensors");
    assert_eq!(r["dtype"], "f16", "most weights are f16");
    assert_eq!(r["parameters"], 110);
    assert_eq!(r["size_bytes"], 200 + 40);

    let r = &rows[3];
    assert!(r["format"].is_null());
    let e = r["error"].as_str().unwrap();
    assert!(e.contains("step_400.safetensors"), "{e}");

    let m = &v["metrics"];
    assert_eq!(m["files"].as_array().unwrap().len(), 1);
    assert_eq!(m["loss"]["count"], 400);
    assert_eq!(m["loss"]["first_step"], 1);
    assert_eq!(m["loss"]["last_step"], 400);
    assert!(m["grad_norm"].is_null());

    let spikes = v["spikes"].as_array().unwrap();
    assert_eq!(spikes.len(), 1, "{spikes:?}");
    assert_eq!(spikes[0]["start_step"], 250);
    assert_eq!(spikes[0]["end_step"], 254);

    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        vec!["best.pt: a weights file with no step in its name; skipped"]
    );
}

#[test]
fn table_listing() {
    let d = tempfile::tempdir().unwrap();
    make_run(d.path());
    let out = lawa(&["list", d.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("4 checkpoints, 512 tokens/step"),
        "{text}"
    );
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        ["STEP", "TOKENS", "FORMAT", "SIZE", "DTYPE", "PARAMS", "NAME"]
    );
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        row,
        [
            "100",
            "51.2K",
            "safetensors",
            "52",
            "B",
            "f32",
            "12",
            "step100"
        ]
    );
    assert!(
        lines[5].contains("step_400.safetensors  (unreadable: "),
        "{text}"
    );
    assert!(
        text.contains("  loss      400 points, steps 1-400, last "),
        "{text}"
    );
    assert!(
        text.contains("  loss spikes: 1\n    steps 250-254, peak at "),
        "{text}"
    );
    assert!(
        text.contains("warnings (1):\n  best.pt: a weights file with no step in its name; skipped"),
        "{text}"
    );
}

#[test]
fn bad_sources_fail_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    let empty = d.path().join("empty");
    fs::create_dir(&empty).unwrap();
    for (path, says) in [
        (&missing, "no such file or folder"),
        (&empty, "empty folder"),
    ] {
        let out = lawa(&["list", path.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(&format!("{name}: {says}")), "{err}");
    }
}

/// The engine's committed fixtures: a sharded safetensors run lists with the shard format.
#[test]
fn sharded_fixture_run() {
    let dir = crate::support::fixture("checkpoints/st_f16_sharded");
    let out = lawa(&["list", dir.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["checkpoints"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert!(r["format"].as_str().unwrap().contains("sharded"), "{r}");
        assert_eq!(r["dtype"], "f16");
        assert!(r["parameters"].as_u64().unwrap() > 0);
        assert!(r["error"].is_null());
    }
    assert!(v["metrics"]["loss"].is_null());
    assert_eq!(v["warnings"], json!([]));
}
