use std::path::Path;

use super::*;
use crate::checkpoint::{SafetensorsWriter, WeightsReader, DEFAULT_SHARD_SIZE};
use crate::eval::{EvalData, TokenDType};
use crate::results::ResultsStore;

/// A run folder of `steps` checkpoints of the `parallel` GPT-NeoX fixture, each float tensor
/// shifted by a step-dependent pattern (so every window average differs from its inputs),
/// and a token file.
fn run(steps: &[u64]) -> (tempfile::TempDir, Trajectory, EvalConfig) {
    run_as(steps, crate::checkpoint::DType::F32)
}

/// A run whose float weights are stored as `dtype` (f32 or f16), each step perturbed.
fn run_as(
    steps: &[u64],
    dtype: crate::checkpoint::DType,
) -> (tempfile::TempDir, Trajectory, EvalConfig) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt_neox/parallel");
    let reader = WeightsReader::open(&fixture.join("model.safetensors")).unwrap();
    for &step in steps {
        let out = dir.path().join(format!("run/step{step}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(fixture.join("config.json"), out.join("config.json")).unwrap();
        let f32_ = crate::checkpoint::DType::F32;
        let plan: Vec<_> = reader
            .tensors()
            .iter()
            .map(|t| crate::checkpoint::TensorInfo {
                dtype: if t.dtype == f32_ { dtype } else { t.dtype },
                ..t.clone()
            })
            .collect();
        let mut w = SafetensorsWriter::create(&out, plan.clone(), DEFAULT_SHARD_SIZE).unwrap();
        for t in reader.tensors() {
            let bytes = reader.bytes(&t.name).unwrap();
            let data = if t.dtype == f32_ {
                let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
                let v: Vec<f32> = v
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x + 0.02 * ((i as f32) * 0.7 + step as f32 * 0.013).sin())
                    .collect();
                if dtype == f32_ {
                    bytemuck::cast_slice(&v).to_vec()
                } else {
                    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
                    bytemuck::cast_slice(&h).to_vec()
                }
            } else {
                bytes.into_owned()
            };
            w.write(&t.name, &data).unwrap();
        }
        w.finish().unwrap();
    }
    let ids: Vec<u8> = (0..300u32)
        .flat_map(|i| ((i * 7 + i / 5) % 100).to_le_bytes())
        .collect();
    let tokens = dir.path().join("ids.u32");
    std::fs::write(&tokens, ids).unwrap();
    let traj = crate::source::open(
        dir.path().join("run").to_str().unwrap(),
        &crate::Config::default().hub,
    )
    .unwrap();
    let cfg = EvalConfig {
        data: EvalData::TokensAs(tokens, TokenDType::U32),
        data_label: "ids.u32".into(),
        data_hash: "h".into(),
        ctx: Some(16),
        max_tokens: None,
        batch: 3,
        device: candle_core::Device::Cpu,
        fused: crate::kernels::Fused::On,
        tasks: Vec::new(),
    };
    (dir, traj, cfg)
}

/// The perplexity record of one target.
fn ppl(
    engine: &mut SweepEngine,
    target: &Target,
    reporter: &Reporter,
) -> Result<ResultRecord, SweepError> {
    engine
        .evaluate(target, &[Metric::Perplexity], reporter)
        .map(|mut v| v.remove(0))
}

fn spec(ks: &[usize], scheme: &str) -> SweepSpec {
    SweepSpec {
        windows: ks
            .iter()
            .map(|&k| Averaging {
                scheme: scheme.parse().unwrap(),
                k,
                spike_aware: false,
            })
            .collect(),
        raw: true,
        from: None,
        to: None,
        every: 1,
    }
}

#[test]
fn windows_are_the_last_k_and_skip_spikes_when_asked() {
    let steps = [100, 200, 300, 400, 500];
    assert_eq!(window_steps(&steps, 3, 3, false, &[]), vec![200, 300, 400]);
    assert_eq!(window_steps(&steps, 1, 3, false, &[]), vec![100, 200]);
    let spike = SpikeRegion {
        start_step: 250,
        end_step: 350,
        peak_step: 300,
        height: 1.0,
        baseline: 2.0,
    };
    assert_eq!(
        window_steps(&steps, 3, 3, true, &[spike]),
        vec![100, 200, 400]
    );
}

#[test]
fn the_plan_has_raw_and_full_windows_in_step_order_and_the_store_is_skipped() {
    let (_d, traj, _) = run(&[100, 200, 300, 400]);
    let p = plan(&traj, &spec(&[2, 3], "uniform"), &[]).unwrap();
    let labels: Vec<(u64, String)> = p
        .iter()
        .map(|t| (t.end_step(), t.series().to_string()))
        .collect();
    assert_eq!(
        labels,
        vec![
            (100, "raw".into()),
            (200, "raw".into()),
            (200, "uniform k=2".into()),
            (300, "raw".into()),
            (300, "uniform k=2".into()),
            (300, "uniform k=3".into()),
            (400, "raw".into()),
            (400, "uniform k=2".into()),
            (400, "uniform k=3".into()),
        ]
    );
    let ranged = SweepSpec {
        from: Some(200),
        to: Some(300),
        every: 2,
        ..spec(&[2], "uniform")
    };
    let p2 = plan(&traj, &ranged, &[]).unwrap();
    assert_eq!(
        p2.iter().map(|t| t.end_step()).collect::<Vec<_>>(),
        vec![200, 200]
    );
    let none = SweepSpec {
        from: Some(900),
        ..spec(&[2], "uniform")
    };
    assert!(plan(&traj, &none, &[]).is_err());
}

/// Every result of the in-memory engine equals `lawa average` (streaming, to disk) followed
/// by `lawa eval` of the output, exactly; each checkpoint is read once; a rerun skips all.
#[test]
fn f16_checkpoints_give_exactly_what_average_then_eval_gives() {
    // Half weights are widened to f32 for the CPU eval straight from the bytes: the same
    // values the model loader's conversion gives from the files.
    let (dir, traj, cfg) = run_as(&[100, 200, 300], crate::checkpoint::DType::F16);
    equal_to_average_then_eval(&dir, &traj, &cfg, 3);
}

#[test]
fn sweep_results_equal_average_then_eval_and_each_checkpoint_is_read_once() {
    let steps = [100, 200, 300, 400, 500];
    let (dir, traj, cfg) = run(&steps);
    equal_to_average_then_eval(&dir, &traj, &cfg, steps.len());
    // Windows differ from the raw checkpoint (the test would pass vacuously otherwise).
    let mut engine = SweepEngine::new(traj.clone(), cfg.clone(), 1 << 30);
    let targets = plan(&traj, &spec(&[3], "uniform"), &[]).unwrap();
    let raw = ppl(&mut engine, &targets[2], &Reporter::silent()).unwrap();
    let avg = ppl(&mut engine, &targets[3], &Reporter::silent()).unwrap();
    assert_eq!((raw.end_step, avg.end_step), (300, 300));
    assert_ne!(raw.mean_nll, avg.mean_nll);

    // The store: what is there for the same settings is skipped, other settings are not.
    let (mut store, _) = ResultsStore::open(&dir.path().join("results")).unwrap();
    store.append(raw.clone()).unwrap();
    store.append(avg.clone()).unwrap();
    let settings = engine.settings().unwrap();
    assert_eq!(settings.ctx, 16);
    let (todo, skipped) = pending(
        targets.clone(),
        store.records(),
        std::slice::from_ref(&settings),
    );
    assert_eq!((todo.len(), skipped), (targets.len() - 2, 2));
    let other = EvalSettings { ctx: 8, ..settings };
    assert_eq!(pending(targets.clone(), store.records(), &[other]).1, 0);
}

/// Every target of a k=3 sweep (uniform and linear) gives exactly the NLL of `lawa average`'s
/// output evaluated from disk; each of the `n` checkpoints is read once.
fn equal_to_average_then_eval(
    dir: &tempfile::TempDir,
    traj: &Trajectory,
    cfg: &EvalConfig,
    n: usize,
) {
    for scheme in ["uniform", "linear"] {
        let targets = plan(traj, &spec(&[3], scheme), &[]).unwrap();
        let mut engine = SweepEngine::new(traj.clone(), cfg.clone(), 1 << 30);
        let opts = EvalOptions {
            ctx: cfg.ctx,
            batch: cfg.batch,
            ..Default::default()
        };
        for t in &targets {
            let got = ppl(&mut engine, t, &Reporter::silent()).unwrap();
            let model_dir = match t {
                Target::Checkpoint { step } => dir.path().join(format!("run/step{step}")),
                Target::Window { steps, weights, .. } => {
                    let inputs: Vec<_> = steps
                        .iter()
                        .zip(weights)
                        .map(|(&s, &w)| crate::average::AverageInput {
                            path: dir.path().join(format!("run/step{s}")),
                            step: s,
                            weight: w,
                        })
                        .collect();
                    let out = dir.path().join(format!("avg-{scheme}-{}", t.end_step()));
                    let o = AverageOptions::new(&scheme.parse().unwrap());
                    average::average(&inputs, &out, &o, &Reporter::silent()).unwrap();
                    out
                }
            };
            let want =
                eval::eval_model_dir(&model_dir, &cfg.data, &opts, &Reporter::silent()).unwrap();
            assert_eq!(got.mean_nll, want.mean_nll, "{}", t.label());
            assert_eq!(got.predicted_tokens, want.predicted_tokens);
        }
        let s = engine.stats();
        assert_eq!(s.checkpoint_reads, n as u64, "{scheme}");
        assert!(!s.over_budget);
    }
}

/// A budget too small for a window reads checkpoints again (and says so), with the same
/// results.
#[test]
fn a_small_memory_budget_rereads_with_the_same_results() {
    let (_d, traj, cfg) = run(&[100, 200, 300, 400]);
    let targets = plan(&traj, &spec(&[2], "uniform"), &[]).unwrap();
    let mut big = SweepEngine::new(traj.clone(), cfg.clone(), 1 << 30);
    let mut small = SweepEngine::new(traj, cfg, 1);
    for t in &targets {
        let a = ppl(&mut big, t, &Reporter::silent()).unwrap();
        let b = ppl(&mut small, t, &Reporter::silent()).unwrap();
        assert_eq!(a.mean_nll, b.mean_nll);
    }
    assert_eq!(big.stats().checkpoint_reads, 4);
    assert!(small.stats().checkpoint_reads > 4);
    assert!(small.stats().over_budget);
}

/// Records appended by another writer (a shard of an array task) appear on reload, once; our
/// own appends are not read back twice.
#[test]
fn the_store_reads_shards_and_reloads_what_others_append() {
    let (_d, traj, cfg) = run(&[100, 200]);
    let mut engine = SweepEngine::new(traj, cfg, 1 << 30);
    let r = ppl(
        &mut engine,
        &Target::Checkpoint { step: 100 },
        &Reporter::silent(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut main, _) = ResultsStore::open(dir.path()).unwrap();
    let (mut shard, _) = ResultsStore::open_shard(dir.path(), "task-0").unwrap();
    main.append(r.clone()).unwrap();
    let mut r2 = r.clone();
    r2.end_step = 200;
    shard.append(r2.clone()).unwrap();
    assert_eq!(main.reload().unwrap().0, 1);
    assert_eq!(main.records().len(), 2);
    assert_eq!(shard.reload().unwrap().0, 1);
    assert_eq!(main.reload().unwrap().0, 0);
    let (fresh, _) = ResultsStore::open(dir.path()).unwrap();
    assert_eq!(fresh.records().len(), 2);
}

/// A cancel is `SweepError::Cancelled` whichever stage it stopped (the CLI's "sweep cancelled"
/// message keys on it; an eval-stage cancel used to surface as "evaluation cancelled").
#[test]
fn a_cancel_is_a_sweep_cancel_at_every_stage() {
    let (_d, traj, cfg) = run(&[100, 200]);
    let token = crate::progress::CancelToken::new();
    token.cancel();
    let cancelled = Reporter::new(token, |_| {});
    let mut engine = SweepEngine::new(traj, cfg, 1 << 30);
    // Read and evaluated with a live reporter first, so the cancel meets the eval stage.
    let raw = Target::Checkpoint { step: 100 };
    ppl(&mut engine, &raw, &Reporter::silent()).unwrap();
    let e = ppl(&mut engine, &raw, &cancelled).unwrap_err();
    assert!(matches!(e, SweepError::Cancelled(_)), "{e:?}");
    let window = Target::Window {
        end_step: 200,
        steps: vec![100, 200],
        weights: vec![0.5, 0.5],
        scheme: crate::average::Scheme::Uniform,
        k: 2,
        spike_aware: false,
    };
    let e = ppl(&mut engine, &window, &cancelled).unwrap_err();
    assert!(matches!(e, SweepError::Cancelled(_)), "{e:?}");
}

#[test]
fn half_bytes_widen_exactly_aligned_or_not() {
    let vals = [0.0f32, -1.5, 65504.0, 1e-7, f32::INFINITY, 3.140625];
    for dtype in [candle_core::DType::F16, candle_core::DType::BF16] {
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|&v| match dtype {
                candle_core::DType::F16 => half::f16::from_f32(v).to_le_bytes(),
                _ => half::bf16::from_f32(v).to_le_bytes(),
            })
            .collect();
        let want: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|c| match dtype {
                candle_core::DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
                _ => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
            })
            .collect();
        assert_eq!(widen_to_f32(&bytes, dtype), want);
        // The same bytes one past an even address take the unaligned path.
        let mut shifted = vec![0u8];
        shifted.extend(&bytes);
        assert_eq!(widen_to_f32(&shifted[1..], dtype), want);
    }
}

#[test]
fn torch_bin_checkpoints_are_used_in_place_and_give_what_average_then_eval_gives() {
    // Pythia's branches hold pytorch_model.bin pickles: their storages are read through the
    // mapping like safetensors (or decoded once where they must be). The run beside the
    // safetensors one of `run` reuses its token file and eval settings.
    let (dir, _, cfg) = run(&[1]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt_neox/parallel");
    let bin_dir = tempfile::tempdir().unwrap();
    for step in [100, 200, 300] {
        let out = bin_dir.path().join(format!("run/step{step}"));
        std::fs::create_dir_all(&out).unwrap();
        for f in ["config.json", "pytorch_model.bin"] {
            std::fs::copy(fixture.join(f), out.join(f)).unwrap();
        }
    }
    let step100 = bin_dir.path().join("run/step100");
    assert_eq!(
        WeightsReader::open(&step100).unwrap().format(),
        crate::checkpoint::Format::TorchBin
    );
    let traj = crate::source::open(
        bin_dir.path().join("run").to_str().unwrap(),
        &crate::Config::default().hub,
    )
    .unwrap();
    equal_to_average_then_eval(&bin_dir, &traj, &cfg, 3);
    drop(dir);
}

/// A stored raw record at `step`: perplexity (`task: None`) or the lambada task's accuracy.
fn stored(step: u64, hash: &str, ctx: usize, task: Option<f64>) -> ResultRecord {
    let mut v = serde_json::json!({
        "source": "run", "end_step": step, "steps": [step], "scheme": "raw", "k": 1,
        "spike_aware": false, "weights": [1.0], "data": "d", "data_hash": hash, "ctx": ctx,
        "max_tokens": null, "dtype": "f32", "device": "cpu", "bits_per_byte": null,
        "tool_version": "t", "unix_time": 0
    });
    match task {
        None => {
            v["mean_nll"] = 2.0.into();
            v["ppl"] = 7.4.into();
            v["predicted_tokens"] = 10.into();
        }
        Some(acc) => {
            v["task"] = serde_json::json!({"task": "lambada_openai", "n": 5, "acc": acc,
                "acc_stderr": 0.1, "perplexity": 50.0});
        }
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn pending_lists_each_missing_metric_and_another_task_file_is_not_reused() {
    let targets = vec![
        Target::Checkpoint { step: 100 },
        Target::Checkpoint { step: 200 },
    ];
    let ppl = EvalSettings {
        metric: Metric::Perplexity,
        data_hash: "text:h".into(),
        ctx: 16,
        max_tokens: None,
        dtype: crate::results::EvalDType::F32,
    };
    let task = EvalSettings {
        metric: Metric::Task(TaskName::LambadaOpenai),
        data_hash: "task:aa".into(),
        ctx: 64,
        ..ppl.clone()
    };
    let records = vec![
        stored(100, "text:h", 16, None),
        stored(200, "text:h", 16, None),
        stored(100, "task:aa", 64, Some(0.4)),
    ];
    let (todo, skipped) = pending(targets.clone(), &records, &[ppl.clone(), task.clone()]);
    assert_eq!(skipped, 3);
    assert_eq!(
        todo,
        vec![Todo {
            target: targets[1].clone(),
            metrics: vec![Metric::Task(TaskName::LambadaOpenai)]
        }]
    );
    assert_eq!(
        missing(&targets[1], &records, &[ppl.clone(), task.clone()]),
        vec![&task]
    );
    // Another task file (another hash): none of the first file's results count for it.
    let other = EvalSettings {
        data_hash: "task:bb".into(),
        ..task.clone()
    };
    let (todo, skipped) = pending(targets.clone(), &records, &[ppl.clone(), other.clone()]);
    assert_eq!(skipped, 2);
    assert_eq!(todo.len(), 2);
    assert!(todo.iter().all(|t| t.metrics == vec![other.metric]));
    // Nor is a stored task result reused under another name for the other file.
    let window = Target::Window {
        end_step: 100,
        steps: vec![100],
        weights: vec![1.0],
        scheme: crate::average::Scheme::Uniform,
        k: 1,
        spike_aware: true,
    };
    assert!(reuse(&window, &records, &task).is_some());
    assert!(reuse(&window, &records, &other).is_none());
}

#[test]
fn an_unreadable_newest_checkpoint_fails_only_its_own_targets() {
    // The eval settings are resolved from a checkpoint's config: the newest one that reads,
    // so a damaged newest file does not block evaluating the others.
    let (dir, traj, cfg) = run(&[100, 200, 300]);
    let newest = dir.path().join("run/step300/model.safetensors");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    f.set_len(1000).unwrap();
    let mut engine = SweepEngine::new(traj, cfg, 1 << 30);
    let settings = engine.all_settings().unwrap();
    assert_eq!(settings[0].ctx, 16);
    let r = ppl(
        &mut engine,
        &Target::Checkpoint { step: 200 },
        &Reporter::silent(),
    )
    .unwrap();
    assert!(r.mean_nll.is_finite() && r.end_step == 200);
    let e = ppl(
        &mut engine,
        &Target::Checkpoint { step: 300 },
        &Reporter::silent(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("step300") && e.contains("model.safetensors"),
        "{e}"
    );
}
