//! `lawa average` end to end through the real binary: a run folder in, a model dir out; and every
//! bad input of issue 2: exit code ≠ 0, one line on stderr naming the file and the problem, and
//! nothing written.

use std::fs;
use std::path::{Path, PathBuf};

use lawa::checkpoint::{is_buffer, WeightsReader};

use crate::support::{self, copy_dir, s, Out};

fn fixture(rel: &str) -> PathBuf {
    support::fixture("checkpoints").join(rel)
}

fn lawa(args: &[&str]) -> Out {
    support::lawa(&[&["average"], args].concat())
}

fn run_copy(rel: &str) -> (tempfile::TempDir, PathBuf) {
    support::run_copy(&format!("checkpoints/{rel}"))
}

/// Runs `lawa average` expecting failure: asserts exit code, one stderr line containing every
/// `needle`, and that neither `out` nor a temp dir beside it was created.
fn fails(args: &[&str], out: &Path, needles: &[&str]) -> String {
    let existed = out.exists();
    let o = lawa(args);
    assert_ne!(o.code, Some(0), "should fail: {args:?}\n{}", o.stdout);
    let err = o.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
    let parts: Vec<&str> = err.split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "repeated cause: {err}"
    );
    assert_eq!(out.exists(), existed, "output changed: {err}");
    if let Some(parent) = out.parent().filter(|p| p.exists()) {
        let stray: Vec<_> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("lawa-tmp"))
            .collect();
        assert!(stray.is_empty(), "temp dir left: {stray:?}");
    }
    err.to_string()
}

#[test]
fn averages_a_run_folder_into_a_model_dir() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("avg");
    let run = fixture("st_bf16");
    let o = lawa(&[
        s(&run),
        "--at",
        "400",
        "--last",
        "3",
        "--weights",
        "0.5,0.2,0.3",
        "--out",
        s(&out),
        "--json",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let summary: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(summary["tensors"], 8);
    assert_eq!(summary["averaged"], 5);
    assert_eq!(summary["copied"], 3);
    assert_eq!(summary["out"], s(&out));
    let reference = WeightsReader::open(&fixture("reference.safetensors")).unwrap();
    let avg = WeightsReader::open(&out).unwrap();
    for tensor in avg.tensors().iter().filter(|t| !is_buffer(&t.name)) {
        let key = format!("bf16/custom/{}/cast", tensor.name);
        assert_eq!(
            avg.bytes(&tensor.name).unwrap(),
            reference.bytes(&key).unwrap(),
            "{key}"
        );
    }
    for f in [
        "config.json",
        "tokenizer.json",
        "lawa.json",
        "model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }

    // --steps, --dtype, sharding, --no-normalize, the human summary.
    let out2 = t.path().join("avg2");
    let o = lawa(&[
        s(&run),
        "--steps",
        "200,400",
        "--weights",
        "1,1",
        "--no-normalize",
        "--dtype",
        "f32",
        "--shard-size",
        "1KB",
        "--out",
        s(&out2),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stdout.contains("averaged 2 checkpoints (steps 200,400"),
        "{}",
        o.stdout
    );
    assert!(out2.join("model.safetensors.index.json").is_file());
    let a = WeightsReader::open(&out2).unwrap();
    let (x, y) = (
        WeightsReader::open(&run.join("step200")).unwrap(),
        WeightsReader::open(&run.join("step400")).unwrap(),
    );
    let name = "gpt_neox.final_layer_norm.weight";
    let get = |r: &WeightsReader| {
        r.tensor(name, &candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (sum, xs, ys) = (get(&a), get(&x), get(&y));
    for i in 0..sum.len() {
        assert_eq!(sum[i], xs[i] + ys[i]);
    }
}

#[test]
fn missing_empty_and_checkpointless_folders() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("avg");
    let missing = t.path().join("nope");
    fails(
        &[s(&missing), "--steps", "1", "--out", s(&out)],
        &out,
        &["nope"],
    );
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fails(
        &[s(&empty), "--steps", "1", "--out", s(&out)],
        &out,
        &["empty"],
    );
    let junk = t.path().join("junk");
    fs::create_dir(&junk).unwrap();
    fs::write(junk.join("notes.txt"), "hi").unwrap();
    fails(
        &[s(&junk), "--steps", "1", "--out", s(&out)],
        &out,
        &["junk", "no checkpoints"],
    );
}

/// Rewrites the safetensors header of `file` with `edit` applied to its JSON.
fn edit_header(file: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let b = fs::read(file).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut v: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    edit(&mut v);
    let h = v.to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&b[8 + n..]);
    fs::write(file, out).unwrap();
}

#[test]
fn broken_safetensors_in_a_run() {
    type Break = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "truncated",
            Box::new(|f: &Path| {
                let b = fs::read(f).unwrap();
                fs::write(f, &b[..b.len() - 100]).unwrap();
            }),
        ),
        (
            "not a JSON object",
            Box::new(|f: &Path| {
                let mut b = fs::read(f).unwrap();
                b[8] = b'#';
                fs::write(f, b).unwrap();
            }),
        ),
        (
            "past the end",
            Box::new(|f: &Path| {
                edit_header(f, |v| {
                    let e = &mut v["embed_out.weight"]["data_offsets"];
                    let (a, b) = (e[0].as_u64().unwrap(), e[1].as_u64().unwrap());
                    *e = serde_json::json!([a + 1_000_000, b + 1_000_000]);
                })
            }),
        ),
        (
            "overlap",
            Box::new(|f: &Path| {
                // The later of two equal-sized tensors made to share the earlier one's bytes.
                edit_header(f, |v| {
                    let (mut a, mut b) = ("gpt_neox.embed_in.weight", "embed_out.weight");
                    if v[a]["data_offsets"][0].as_u64() > v[b]["data_offsets"][0].as_u64() {
                        (a, b) = (b, a);
                    }
                    let o = v[a]["data_offsets"].clone();
                    v[b]["data_offsets"] = o;
                })
            }),
        ),
        (
            "absurd",
            Box::new(|f: &Path| {
                let mut b = fs::read(f).unwrap();
                b[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
                fs::write(f, b).unwrap();
            }),
        ),
    ];
    for (problem, brk) in cases {
        let (t, run) = run_copy("st_f32");
        let file = run.join("step200/model.safetensors");
        brk(&file);
        let out = t.path().join("avg");
        fails(
            &[s(&run), "--at", "400", "--last", "3", "--out", s(&out)],
            &out,
            &[problem, s(&file)],
        );
    }
}

#[test]
fn bad_pytorch_bins_in_a_run() {
    let (t, run) = run_copy("bin_f16");
    let out = t.path().join("avg");
    let file = run.join("step100/pytorch_model.bin");
    fs::write(&file, vec![0u8; 4096]).unwrap();
    fails(
        &[s(&run), "--steps", "100,200", "--out", s(&out)],
        &out,
        &["not a PyTorch zip", s(&file)],
    );
    fs::copy(fixture("bad/unknown_class/pytorch_model.bin"), &file).unwrap();
    fails(
        &[s(&run), "--steps", "100,200", "--out", s(&out)],
        &out,
        &["system", s(&file)],
    );
}

#[test]
fn inputs_that_do_not_match() {
    // step200 replaced by a checkpoint with a missing tensor, then a different shape, then an
    // int dtype: the message names the tensor and both files.
    let base = fixture("st_f32");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("avg");
    let run = t.path().join("run");
    copy_dir(&base, &run);
    let odd = run.join("step200/model.safetensors");
    let newest = run.join("step400/model.safetensors");

    edit_header(&odd, |v| {
        let o = v.as_object_mut().unwrap();
        let e = o.remove("gpt_neox.final_layer_norm.weight").unwrap();
        o.insert("gpt_neox.final_layer_norm.renamed".into(), e);
    });
    fails(
        &[s(&run), "--at", "400", "--last", "2", "--out", s(&out)],
        &out,
        &["final_layer_norm", s(&odd), "step400"],
    );

    copy_dir(&base, &run);
    edit_header(&odd, |v| {
        v["gpt_neox.embed_in.weight"]["shape"] = serde_json::json!([8, 16])
    });
    fails(
        &[s(&run), "--at", "400", "--last", "2", "--out", s(&out)],
        &out,
        &[
            "'gpt_neox.embed_in.weight' has shape [8, 16]",
            s(&odd),
            s(&newest),
        ],
    );

    copy_dir(&base, &run);
    edit_header(&odd, |v| {
        v["gpt_neox.embed_in.weight"]["dtype"] = "I32".into()
    });
    fails(
        &[s(&run), "--at", "400", "--last", "2", "--out", s(&out)],
        &out,
        &["'gpt_neox.embed_in.weight' is i32", s(&odd), s(&newest)],
    );
}

/// Overwrites the first value of a f32 tensor in a safetensors file.
fn poke_f32(file: &Path, tensor: &str, value: f32) {
    let r = WeightsReader::open(file).unwrap();
    let b = fs::read(file).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let v: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let start = 8 + n + v[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
    drop(r);
    let mut b = b;
    b[start..start + 4].copy_from_slice(&value.to_le_bytes());
    fs::write(file, b).unwrap();
}

#[test]
fn non_finite_inputs_fail_unless_allowed() {
    for bad in [f32::NAN, f32::INFINITY] {
        let (t, run) = run_copy("st_f32");
        let file = run.join("step200/model.safetensors");
        poke_f32(&file, "embed_out.weight", bad);
        let out = t.path().join("avg");
        fails(
            &[s(&run), "--at", "400", "--last", "3", "--out", s(&out)],
            &out,
            &[
                "'embed_out.weight'",
                "NaN or Inf",
                s(&file),
                "--allow-nonfinite",
            ],
        );
        let o = lawa(&[
            s(&run),
            "--at",
            "400",
            "--last",
            "3",
            "--allow-nonfinite",
            "--out",
            s(&out),
        ]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        assert!(out.join("model.safetensors").is_file());
    }
}

#[test]
fn windows_and_weights_that_cannot_be() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("avg");
    let run = fixture("st_f16");
    let run_s = s(&run);
    let o = s(&out);
    fails(
        &[run_s, "--steps", "100,300", "--out", o],
        &out,
        &["step 300 is not a checkpoint", "nearest: 200, 400", run_s],
    );
    fails(
        &[run_s, "--at", "300", "--last", "1", "--out", o],
        &out,
        &["step 300"],
    );
    fails(
        &[run_s, "--at", "400", "--last", "4", "--out", o],
        &out,
        &["--last 4", "only 3 checkpoints"],
    );
    fails(
        &[run_s, "--steps", "100,200", "--weights", "0,0", "--out", o],
        &out,
        &["sum to 0"],
    );
    fails(
        &[
            run_s,
            "--steps",
            "100,200",
            "--weights",
            "1,-0.5",
            "--out",
            o,
        ],
        &out,
        &["negative weight -0.5"],
    );
    fails(
        &[
            run_s,
            "--steps",
            "100,200",
            "--weights",
            "1,2,3",
            "--out",
            o,
        ],
        &out,
        &["3 weights given for 2"],
    );
    fails(
        &[
            run_s,
            "--steps",
            "100,200",
            "--weights",
            "ema:-1",
            "--out",
            o,
        ],
        &out,
        &["half-life"],
    );
    fails(
        &[run_s, "--steps", "100,200", "--dtype", "int8", "--out", o],
        &out,
        &["'int8' for '--dtype", "expected keep, f32, f16 or bf16"],
    );
    // Without normalisation, weights are taken as given (extrapolation is allowed).
    let ok = lawa(&[
        run_s,
        "--steps",
        "100,200",
        "--weights",
        "1,-0.5",
        "--no-normalize",
        "--out",
        o,
    ]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
}

#[test]
fn output_dirs_that_are_refused() {
    let (t, run) = run_copy("st_f16");
    let run_s = s(&run);
    let inside = run.join("step400/avg");
    fails(
        &[run_s, "--at", "400", "--last", "2", "--out", s(&inside)],
        &inside,
        &["inside the input", "step400"],
    );
    let existing = t.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::write(existing.join("keep.txt"), "mine").unwrap();
    fails(
        &[run_s, "--at", "400", "--last", "2", "--out", s(&existing)],
        &existing,
        &["already exists", "--force"],
    );
    assert_eq!(
        fs::read_to_string(existing.join("keep.txt")).unwrap(),
        "mine"
    );
    let o = lawa(&[
        run_s,
        "--at",
        "400",
        "--last",
        "2",
        "--force",
        "--out",
        s(&existing),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!existing.join("keep.txt").exists() && existing.join("lawa.json").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = t.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        if fs::write(ro.join("probe"), "x").is_err() {
            let out = ro.join("avg");
            fails(
                &[run_s, "--at", "400", "--last", "2", "--out", s(&out)],
                &out,
                &["cannot write there", s(&out)],
            );
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
        // Unwritable even for root (tests may run as root, where permissions do not apply).
        let sys = Path::new("/sys/lawa-test-avg");
        if Path::new("/sys").is_dir() {
            fails(
                &[run_s, "--at", "400", "--last", "2", "--out", s(sys)],
                sys,
                &["cannot write there", "/sys/lawa-test-avg"],
            );
        }
    }
}
