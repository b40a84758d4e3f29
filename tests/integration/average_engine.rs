//! The streaming average against the fp32 references of tests/fixtures/gen_checkpoints.py
//! (numpy/torch), for every input dtype, form and scheme; and every way an average must refuse.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lawa::average::{
    average, weights, AverageError, AverageInput, AverageOptions, OutDType, Scheme,
};
use lawa::checkpoint::{is_buffer, DType, SafetensorsWriter, TensorInfo, WeightsReader};
use lawa::progress::{CancelToken, Reporter};

const STEPS: [u64; 3] = [100, 200, 400];
const SCHEMES: [(&str, &str); 4] = [
    ("uniform", "uniform"),
    ("ema150", "ema:150"),
    ("linear", "linear"),
    ("custom", "0.5,0.2,0.3"),
];

fn fixture(rel: &str) -> PathBuf {
    crate::support::fixture("checkpoints").join(rel)
}

fn inputs_for(run: &Path, scheme: &Scheme) -> Vec<AverageInput> {
    let ws = weights(scheme, &STEPS, true).unwrap();
    STEPS
        .iter()
        .zip(ws)
        .map(|(&step, weight)| AverageInput {
            path: run.join(format!("step{step}")),
            step,
            weight,
        })
        .collect()
}

fn opts(scheme: &Scheme, dtype: OutDType) -> AverageOptions {
    AverageOptions {
        dtype,
        ..AverageOptions::new(scheme)
    }
}

/// Runs one average into a fresh temp dir; returns (tempdir, out dir).
fn run_average(
    inputs: &[AverageInput],
    o: &AverageOptions,
) -> (tempfile::TempDir, PathBuf, lawa::average::AverageSummary) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("avg");
    let s = average(inputs, &out, o, &Reporter::silent()).unwrap();
    (tmp, out, s)
}

/// Compares every tensor of the output with the reference: exactly (the kernel's order of
/// operations is the reference's, and both round to nearest even).
fn check_against_reference(out: &Path, dname: &str, label: &str, cast: bool, input: &Path) {
    let reference = WeightsReader::open(&fixture("reference.safetensors")).unwrap();
    let avg = WeightsReader::open(out).unwrap();
    let src = WeightsReader::open(input).unwrap();
    assert_eq!(avg.tensors().len(), 8);
    for t in avg.tensors() {
        if is_buffer(&t.name) {
            assert_eq!(
                avg.bytes(&t.name).unwrap(),
                src.bytes(&t.name).unwrap(),
                "buffer {}",
                t.name
            );
            assert_eq!(&t.dtype, &src.info(&t.name).unwrap().dtype);
            continue;
        }
        let key = if cast {
            format!("{dname}/{label}/{}/cast", t.name)
        } else {
            format!("{dname}/{label}/{}", t.name)
        };
        let r = reference
            .info(&key)
            .unwrap_or_else(|| panic!("no reference {key}"));
        assert_eq!((t.dtype, &t.shape), (r.dtype, &r.shape), "{key}");
        let got = avg
            .tensor(&t.name, &candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let want = reference
            .tensor(&key, &candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, want, "{key}");
    }
}

#[test]
fn safetensors_averages_equal_the_fp32_reference_for_every_dtype_and_scheme() {
    for dname in ["f32", "f16", "bf16"] {
        let run = fixture(&format!("st_{dname}"));
        for (label, spec) in SCHEMES {
            let scheme: Scheme = spec.parse().unwrap();
            let inputs = inputs_for(&run, &scheme);
            // Kept dtype: the f32 sum rounded once to the input dtype.
            let (_t, out, s) = run_average(&inputs, &opts(&scheme, OutDType::Keep));
            check_against_reference(&out, dname, label, true, &inputs[2].path);
            assert_eq!(
                (s.tensors, s.averaged, s.copied),
                (8, 5, 3),
                "{dname} {label}"
            );
            // f32 output: the accumulator itself.
            let (_t, out, _) = run_average(&inputs, &opts(&scheme, OutDType::F32));
            check_against_reference(&out, dname, label, false, &inputs[2].path);
        }
    }
}

#[test]
fn sharded_inputs_and_outputs_give_the_same_average() {
    let scheme = Scheme::Uniform;
    let inputs = inputs_for(&fixture("st_f16_sharded"), &scheme);
    let mut o = opts(&scheme, OutDType::Keep);
    o.shard_size = 600; // a few tensors per shard
    let (_t, out, s) = run_average(&inputs, &o);
    let r = WeightsReader::open(&out).unwrap();
    assert!(r.files().len() >= 3, "{:?}", r.files());
    assert!(out.join("model.safetensors.index.json").is_file());
    check_against_reference(&out, "f16", "uniform", true, &inputs[2].path);
    let on_disk: u64 = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(s.bytes_written, on_disk);
}

#[test]
fn output_dir_has_config_tokenizer_and_provenance_from_the_newest() {
    let scheme: Scheme = "ema:150".parse().unwrap();
    let mut inputs = inputs_for(&fixture("st_bf16"), &scheme);
    inputs.reverse(); // order of the inputs must not matter: the newest is by step
    let (_t, out, s) = run_average(&inputs, &opts(&scheme, OutDType::F32));
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["lawa_fixture_step"], 400);
    assert_eq!(
        config["torch_dtype"], "float32",
        "dtype retagged for --dtype f32"
    );
    let tok: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(tok["lawa_fixture_step"], 400);
    let lawa: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("lawa.json")).unwrap()).unwrap();
    assert_eq!(lawa["scheme"], "ema:150");
    assert_eq!(lawa["dtype"], "f32");
    assert_eq!(lawa["version"], env!("CARGO_PKG_VERSION"));
    let ins = lawa["inputs"].as_array().unwrap();
    assert_eq!(ins.len(), 3);
    for (i, inp) in inputs.iter().enumerate() {
        assert_eq!(ins[i]["step"], inp.step);
        assert!((ins[i]["weight"].as_f64().unwrap() - inp.weight).abs() < 1e-15);
        assert_eq!(
            ins[i]["header_sha256"],
            WeightsReader::open(&inp.path).unwrap().header_hash()
        );
    }
    assert!(s.bytes_read > 0 && s.seconds >= 0.0);
    // Nothing else beside the output (no temp dir left).
    assert_eq!(fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn mixed_float_dtypes_average_and_identical_weights_are_copied() {
    // step100 in f32, the others in f16: convertible, averaged in f32, kept as the newest (f16).
    let scheme = Scheme::Uniform;
    let mut inputs = inputs_for(&fixture("st_f16"), &scheme);
    inputs[0].path = fixture("st_f32/step100");
    let (_t, out, s) = run_average(&inputs, &opts(&scheme, OutDType::Keep));
    assert_eq!(s.averaged, 5);
    assert_eq!(
        WeightsReader::open(&out).unwrap().main_dtype(),
        Some(DType::F16)
    );

    // The same checkpoint three times: every tensor copied verbatim.
    let same: Vec<AverageInput> = (0..3)
        .map(|i| AverageInput {
            path: fixture("st_bf16/step200"),
            step: 200 + i,
            weight: 1.0 / 3.0,
        })
        .collect();
    let (_t, out, s) = run_average(&same, &opts(&scheme, OutDType::Keep));
    assert_eq!((s.averaged, s.copied), (0, 8));
    let (a, b) = (
        WeightsReader::open(&out).unwrap(),
        WeightsReader::open(&fixture("st_bf16/step200")).unwrap(),
    );
    for t in b.tensors() {
        assert_eq!(a.bytes(&t.name).unwrap(), b.bytes(&t.name).unwrap());
    }
}

#[test]
fn progress_is_reported_per_tensor_and_cancel_leaves_nothing() {
    let scheme = Scheme::Uniform;
    let inputs = inputs_for(&fixture("st_f32"), &scheme);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let r = Reporter::new(CancelToken::new(), move |p| {
        seen2.lock().unwrap().push((p.done, p.total))
    });
    let tmp = tempfile::tempdir().unwrap();
    average(
        &inputs,
        &tmp.path().join("avg"),
        &opts(&scheme, OutDType::Keep),
        &r,
    )
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 9);
    assert_eq!(seen.last(), Some(&(8, Some(8))));

    let token = CancelToken::new();
    let t2 = token.clone();
    let r = Reporter::new(token, move |p| {
        if p.done == 3 {
            t2.cancel();
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let e = average(
        &inputs,
        &tmp.path().join("avg"),
        &opts(&scheme, OutDType::Keep),
        &r,
    )
    .unwrap_err();
    assert!(matches!(e, AverageError::Cancelled(_)), "{e}");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "cancelled average left files"
    );
}

/// Writes a checkpoint dir holding `tensors` (name, dtype, shape, f32 values).
fn write_ckpt(dir: &Path, tensors: &[(&str, DType, Vec<usize>, Vec<f32>)]) {
    fs::create_dir_all(dir).unwrap();
    let plan: Vec<TensorInfo> = tensors
        .iter()
        .map(|(n, d, s, _)| TensorInfo {
            name: n.to_string(),
            dtype: *d,
            shape: s.clone(),
        })
        .collect();
    let mut w = SafetensorsWriter::create(dir, plan, u64::MAX).unwrap();
    for (n, d, _, v) in tensors {
        let bytes: Vec<u8> = match d {
            DType::F32 => bytemuck::cast_slice(v).to_vec(),
            DType::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            DType::I64 => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
            _ => unreachable!(),
        };
        w.write(n, &bytes).unwrap();
    }
    w.finish().unwrap();
}

fn two(a: &Path, b: &Path) -> Vec<AverageInput> {
    vec![
        AverageInput {
            path: a.to_path_buf(),
            step: 1,
            weight: 0.5,
        },
        AverageInput {
            path: b.to_path_buf(),
            step: 2,
            weight: 0.5,
        },
    ]
}

/// The error of an average of `a` and `b` into `root/out`, asserting nothing was written.
fn refused(root: &Path, a: &Path, b: &Path, o: &AverageOptions) -> String {
    let out = root.join("out");
    let e = average(&two(a, b), &out, o, &Reporter::silent())
        .unwrap_err()
        .to_string();
    assert!(!out.exists(), "output written despite: {e}");
    let stray: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temp files left: {stray:?}");
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn mismatched_inputs_name_the_tensor_and_both_files() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let base = vec![
        ("w", DType::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
        ("ids", DType::I64, vec![2], vec![0.0, 1.0]),
    ];
    write_ckpt(&r.join("a"), &base);
    let o = AverageOptions::default();

    let mut missing = base.clone();
    missing.pop();
    write_ckpt(&r.join("missing"), &missing);
    let e = refused(r, &r.join("a"), &r.join("missing"), &o);
    assert!(
        e.contains("'ids'") && e.contains("/a/") && e.contains("missing"),
        "{e}"
    );

    let mut shape = base.clone();
    shape[0].2 = vec![4];
    write_ckpt(&r.join("shape"), &shape);
    let e = refused(r, &r.join("a"), &r.join("shape"), &o);
    assert!(
        e.contains("'w'")
            && e.contains("shape [2, 2]")
            && e.contains("[4]")
            && e.contains("/a/")
            && e.contains("/shape/"),
        "{e}"
    );

    let mut dtype = base.clone();
    dtype[1].1 = DType::F32;
    write_ckpt(&r.join("dtype"), &dtype);
    let e = refused(r, &r.join("a"), &r.join("dtype"), &o);
    assert!(
        e.contains("'ids' is i64") && e.contains("f32") && e.contains("/dtype/"),
        "{e}"
    );

    let mut ints = base.clone();
    ints[1].3 = vec![5.0, 6.0];
    write_ckpt(&r.join("ints"), &ints);
    let e = refused(r, &r.join("a"), &r.join("ints"), &o);
    assert!(
        e.contains("'ids' (i64) differs") && e.contains("/a/") && e.contains("/ints/"),
        "{e}"
    );

    let mut nan = base.clone();
    nan[0].3[2] = f32::NAN;
    write_ckpt(&r.join("nan"), &nan);
    let e = refused(r, &r.join("a"), &r.join("nan"), &o);
    assert!(
        e.contains("nan/model.safetensors: tensor 'w' contains NaN or Inf"),
        "{e}"
    );
    let mut inf = base.clone();
    inf[0].3[0] = f32::INFINITY;
    write_ckpt(&r.join("inf"), &inf);
    let e = refused(r, &r.join("inf"), &r.join("a"), &o);
    assert!(
        e.contains("inf/model.safetensors: tensor 'w' contains NaN or Inf"),
        "{e}"
    );
    // Allowed, the NaN propagates into the average.
    let allow = AverageOptions {
        allow_nonfinite: true,
        ..AverageOptions::default()
    };
    let out = r.join("allowed");
    average(
        &two(&r.join("a"), &r.join("nan")),
        &out,
        &allow,
        &Reporter::silent(),
    )
    .unwrap();
    let w = WeightsReader::open(&out)
        .unwrap()
        .tensor("w", &candle_core::Device::Cpu)
        .unwrap();
    let v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!((v[0], v[1], v[3]), (1.0, 2.0, 4.0));
    assert!(v[2].is_nan());

    // An f16 output that overflows though no input is infinite.
    let big = vec![("w", DType::F32, vec![2], vec![60000.0, 1.0])];
    write_ckpt(&r.join("big1"), &big);
    write_ckpt(&r.join("big2"), &big);
    let no_norm = AverageOptions {
        dtype: OutDType::F16,
        ..AverageOptions::default()
    };
    let out = r.join("out");
    let mut ins = two(&r.join("big1"), &r.join("big2"));
    ins[0].weight = 1.0;
    ins[1].weight = 1.0;
    let e = average(&ins, &out, &no_norm, &Reporter::silent())
        .unwrap_err()
        .to_string();
    assert!(e.contains("'w'") && e.contains("overflows f16"), "{e}");
    assert!(!out.exists());
}

#[test]
fn output_dir_rules() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let t = vec![("w", DType::F16, vec![3], vec![1.0, 2.0, 3.0])];
    write_ckpt(&r.join("a"), &t);
    write_ckpt(&r.join("b"), &t);
    let o = AverageOptions::default();
    let ins = two(&r.join("a"), &r.join("b"));
    // Inside an input.
    let e = average(&ins, &r.join("a/avg"), &o, &Reporter::silent())
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside the input"), "{e}");
    assert!(!r.join("a/avg").exists());
    // Exists: refused without force, replaced with it.
    fs::create_dir(r.join("out")).unwrap();
    fs::write(r.join("out/old"), "x").unwrap();
    let e = average(&ins, &r.join("out"), &o, &Reporter::silent())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    assert!(r.join("out/old").exists());
    let forced = AverageOptions {
        force: true,
        ..AverageOptions::default()
    };
    average(&ins, &r.join("out"), &forced, &Reporter::silent()).unwrap();
    assert!(!r.join("out/old").exists() && r.join("out/model.safetensors").exists());
    // Unwritable parent.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = r.join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores permissions; only check where they apply.
        if fs::write(ro.join("probe"), "x").is_err() {
            let e = average(&ins, &ro.join("avg"), &o, &Reporter::silent())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("cannot write there") && e.contains("ro/avg"),
                "{e}"
            );
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Bad weights never reach the disk.
    let mut bad = ins.clone();
    bad[0].weight = f64::NAN;
    assert!(average(&bad, &r.join("nanw"), &o, &Reporter::silent()).is_err());
    assert!(!r.join("nanw").exists());
    assert!(matches!(
        average(&[], &r.join("none"), &o, &Reporter::silent()),
        Err(AverageError::NoInputs)
    ));
}

#[test]
fn pytorch_bin_and_pt_averages_equal_the_fp32_reference() {
    for dname in ["f32", "f16", "bf16"] {
        let run = fixture(&format!("bin_{dname}"));
        for (label, spec) in SCHEMES {
            let scheme: Scheme = spec.parse().unwrap();
            let inputs = inputs_for(&run, &scheme);
            let (_t, out, s) = run_average(&inputs, &opts(&scheme, OutDType::Keep));
            check_against_reference(&out, dname, label, true, &inputs[2].path);
            assert_eq!((s.averaged, s.copied), (5, 3));
            let lawa: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(out.join("lawa.json")).unwrap()).unwrap();
            assert_eq!(lawa["inputs"][0]["format"], "pytorch .bin");
        }
    }
    let scheme: Scheme = "linear".parse().unwrap();
    let inputs = inputs_for(&fixture("bin_f16_sharded"), &scheme);
    let (_t, out, _) = run_average(&inputs, &opts(&scheme, OutDType::F32));
    check_against_reference(&out, "f16", "linear", false, &inputs[2].path);

    // nanoGPT files: weights under "model" with the torch.compile prefix, no config beside them.
    let scheme: Scheme = "ema:150".parse().unwrap();
    let mut inputs = inputs_for(&fixture("pt_f32"), &scheme);
    for i in &mut inputs {
        i.path = fixture(&format!("pt_f32/ckpt_{}.pt", i.step));
    }
    let (_t, out, _) = run_average(&inputs, &opts(&scheme, OutDType::Keep));
    check_against_reference(&out, "f32", "ema150", true, &inputs[2].path);
    assert!(!out.join("config.json").exists());
}

/// Tensors larger than the engine's piece size (1M elements) are summed piece by piece: the
/// result must not depend on where the pieces fall.
#[test]
fn large_tensors_streamed_in_pieces_equal_the_elementwise_sum() {
    let root = tempfile::tempdir().unwrap();
    let n = 2_500_003; // two full pieces and a ragged tail
    let vals = |k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + k * 104729) % 20011) as f32 - 10005.0) * 1e-3)
            .collect()
    };
    let inputs: Vec<AverageInput> = (0..3)
        .map(|k| {
            let dir = root.path().join(format!("step{k}"));
            write_ckpt(
                &dir,
                &[
                    ("big.weight", DType::F16, vec![n], vals(k)),
                    ("same", DType::F32, vec![n], vals(9)),
                ],
            );
            AverageInput {
                path: dir,
                step: k as u64,
                weight: [0.2, 0.3, 0.5][k],
            }
        })
        .collect();
    let out = root.path().join("avg");
    let s = average(
        &inputs,
        &out,
        &AverageOptions::default(),
        &Reporter::silent(),
    )
    .unwrap();
    assert_eq!((s.averaged, s.copied), (1, 1));
    let r = WeightsReader::open(&out).unwrap();
    let got = r.bytes("big.weight").unwrap();
    let xs: Vec<Vec<f32>> = (0..3)
        .map(|k| {
            vals(k)
                .iter()
                .map(|v| half::f16::from_f32(*v).to_f32())
                .collect()
        })
        .collect();
    let w = [0.2f32, 0.3, 0.5];
    for i in (0..n).step_by(997).chain([n - 1, (1 << 20) - 1, 1 << 20]) {
        let want = half::f16::from_f32(w[0] * xs[0][i] + w[1] * xs[1][i] + w[2] * xs[2][i]);
        assert_eq!(
            half::f16::from_le_bytes([got[2 * i], got[2 * i + 1]]),
            want,
            "element {i}"
        );
    }
    let same = WeightsReader::open(&inputs[0].path).unwrap();
    assert_eq!(r.bytes("same").unwrap(), same.bytes("same").unwrap());
}
