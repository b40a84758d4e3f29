//! Export: files written whole (PNG decodable with the right size, SVG with the curves and
//! legend), tables with every record, nothing half-written on failure.

use super::*;
use crate::chart::{build, ChartOptions, CurveKind};
use crate::results::{ResultRecord, RAW, TOOL_VERSION};
use crate::source::{Checkpoint, Location, Metrics, Series, Trajectory};

fn traj() -> Trajectory {
    let steps: Vec<u64> = (1..=100).map(|i| i * 10).collect();
    Trajectory {
        name: "org/run,1".into(),
        source: "/runs/r".into(),
        checkpoints: steps
            .iter()
            .step_by(10)
            .map(|&s| Checkpoint {
                step: s,
                tokens: None,
                name: format!("step{s}"),
                location: Location::Local {
                    path: format!("/runs/r/step{s}").into(),
                },
            })
            .collect(),
        metrics: Metrics {
            loss: Series {
                values: steps
                    .iter()
                    .map(|&s| 3.0 / (s as f64).sqrt() + if s == 500 { 1.0 } else { 0.0 })
                    .collect(),
                steps,
            },
            ..Default::default()
        },
        tokens_per_step: Some(100),
        warnings: vec![],
        notes: vec![],
    }
}

fn record(end: u64, scheme: &str, nll: f64) -> ResultRecord {
    ResultRecord {
        source: "/runs/r".into(),
        end_step: end,
        steps: vec![end - 10, end],
        scheme: crate::results::parse_stored_scheme(scheme).unwrap(),
        k: 2,
        spike_aware: false,
        weights: vec![0.5, 0.5],
        data: "held \"out\", v2.txt".into(),
        data_hash: "text:ab".into(),
        ctx: 32,
        max_tokens: Some(1000),
        dtype: crate::results::EvalDType::F32,
        device: "cpu".into(),
        mean_nll: nll,
        ppl: nll.exp(),
        bits_per_byte: None,
        predicted_tokens: 990,
        task: None,
        tool_version: TOOL_VERSION.into(),
        unix_time: 5,
    }
}

fn records() -> Vec<ResultRecord> {
    vec![
        record(110, RAW, 0.5),
        record(510, RAW, 0.4),
        record(910, RAW, 0.2),
        record(510, "uniform", 0.35),
        record(910, "uniform", 0.18),
    ]
}

fn model(log_y: bool) -> crate::chart::ChartModel {
    let recs = records();
    let refs: Vec<&ResultRecord> = recs.iter().collect();
    build(
        &traj(),
        &refs,
        &ChartOptions {
            log_y,
            smoothing: 0.5,
            spikes: vec![(490, 520)],
            cursor_step: Some(910),
            window_steps: Some((810, 910)),
            ..Default::default()
        },
    )
}

#[test]
fn csv_has_a_header_and_one_escaped_row_per_record() {
    let csv = results_csv(&records());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].starts_with("source,end_step,scheme,k,"));
    let cols = lines[0].split(',').count();
    assert_eq!(cols, 23);
    // The data name has a comma and quotes: quoted, quotes doubled.
    assert!(
        lines[1].contains("\"held \"\"out\"\", v2.txt\""),
        "{}",
        lines[1]
    );
    assert!(
        lines[4].contains(",510,uniform,2,false,500 510,0.5 0.5,"),
        "{}",
        lines[4]
    );
}

#[test]
fn export_all_writes_png_svg_csv_json_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let files = export_all(
        &model(false),
        &records(),
        &[],
        &out,
        &file_stem("org/run,1"),
    )
    .unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "org_run_1.png",
            "org_run_1.svg",
            "org_run_1-results.csv",
            "org_run_1-results.json"
        ]
    );
    let mut listed: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected, "no temporary files are left");

    let png = std::fs::read(&files[0]).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), PNG_SIZE);
    // A real chart, not a blank canvas: many distinct bytes of compressed image data.
    assert!(png.len() > 20_000, "{}", png.len());

    let svg = std::fs::read_to_string(&files[1]).unwrap();
    assert!(svg.starts_with("<svg"));
    for name in [
        "train loss",
        "eval: raw checkpoint",
        "eval: uniform k=2",
        "loss spike",
        "averaging window",
    ] {
        assert!(svg.contains(name), "legend entry {name:?} in the SVG");
    }
    assert!(svg.contains("org/run,1"), "the title");

    let json: Vec<ResultRecord> =
        serde_json::from_slice(&std::fs::read(&files[3]).unwrap()).unwrap();
    // serde_json reads floats to within an ulp or so: compare values, not bits.
    let expected = records();
    assert_eq!(json.len(), expected.len());
    for (a, b) in json.iter().zip(&expected) {
        assert_eq!(
            (a.end_step, &a.scheme, &a.steps),
            (b.end_step, &b.scheme, &b.steps)
        );
        assert!((a.ppl - b.ppl).abs() < 1e-12 && (a.mean_nll - b.mean_nll).abs() < 1e-12);
    }
}

#[test]
fn log_scale_labels_show_loss_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.svg");
    write_svg(&model(true), &p).unwrap();
    let svg = std::fs::read_to_string(&p).unwrap();
    assert!(svg.contains("log scale"));
    // Ticks are loss values (0.2 .. 1.x), not their logarithms (negative numbers).
    assert!(!svg.contains(">-0."), "no negative log10 labels");
}

#[test]
fn a_failed_export_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    // The output "dir" is a file: nothing can be written.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, "x").unwrap();
    let err = export_all(&model(false), &records(), &[], &blocker, "s").unwrap_err();
    assert!(err.to_string().contains("out"), "{err}");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    // A PNG into a missing folder fails naming the file, leaving nothing.
    let p = dir.path().join("missing").join("c.png");
    let err = write_png(&model(false), &p, (200, 100)).unwrap_err();
    assert!(err.to_string().contains("c.png"), "{err}");
}

#[test]
fn an_empty_chart_still_exports() {
    let mut t = traj();
    t.metrics = Default::default();
    let m = build(&t, &[], &ChartOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let files = export_all(&m, &[], &[], dir.path(), "empty").unwrap();
    assert_eq!(files.len(), 4);
    let csv = std::fs::read_to_string(&files[2]).unwrap();
    assert_eq!(csv.lines().count(), 1);
}

#[test]
fn file_stems_are_safe() {
    assert_eq!(file_stem("EleutherAI/pythia-70m"), "EleutherAI_pythia-70m");
    assert_eq!(file_stem("../.."), "_");
    assert_eq!(file_stem(""), "lawa");
}

#[test]
fn the_verdict_is_exported_beside_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records();
    let refs: Vec<&ResultRecord> = recs.iter().collect();
    let verdicts = super::verdict::all(&refs, &[], crate::results::Metric::Perplexity);
    assert_eq!(verdicts.len(), 1);
    let files = export_all(&model(false), &recs, &verdicts, dir.path(), "run").unwrap();
    let txt = files.last().unwrap();
    assert_eq!(txt.file_name().unwrap(), "run-verdict.txt");
    let text = std::fs::read_to_string(txt).unwrap();
    // Both averaged steps beat raw (0.35 < 0.4, 0.18 < 0.2).
    assert!(
        text.starts_with("uniform k=2 beat raw at 2/2 steps;"),
        "{text}"
    );
    assert_eq!(text, format!("{}\n", verdicts[0]));
}

#[test]
fn the_gain_view_is_each_average_minus_raw_against_zero() {
    let recs = records();
    let refs: Vec<&ResultRecord> = recs.iter().collect();
    let m = build(
        &traj(),
        &refs,
        &ChartOptions {
            log_y: true,
            gain: true,
            ..Default::default()
        },
    );
    assert!(m.gain && !m.log_y, "gains are negative: no log scale");
    let kinds: Vec<CurveKind> = m.curves.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![CurveKind::EvalRaw, CurveKind::Average]);
    // Raw is zero where an average was compared with it (510, 910), not at 110.
    assert!(m.curves[0].points.iter().all(|p| p.1 == 0.0));
    assert_eq!(m.curves[0].points.len(), 2);
    let d: Vec<f64> = m.curves[1].points.iter().map(|p| p.1).collect();
    assert_eq!(d, vec![0.35 - 0.4, 0.18 - 0.2]);
    // It draws, with its own y label.
    let dir = tempfile::tempdir().unwrap();
    write_svg(&m, &dir.path().join("g.svg")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("g.svg")).unwrap();
    assert!(svg.contains("averaged − raw eval NLL"), "y label");
}

#[test]
fn perplexity_mode_shows_exp_of_the_losses_and_percent_in_the_gain_view() {
    let recs = records();
    let refs: Vec<&ResultRecord> = recs.iter().collect();
    let opts = |gain, ppl| ChartOptions {
        gain,
        ppl,
        ..Default::default()
    };
    let nats = build(&traj(), &refs, &opts(false, false));
    let ppl = build(&traj(), &refs, &opts(false, true));
    assert_eq!(nats.curves.len(), ppl.curves.len());
    for (a, b) in nats.curves.iter().zip(&ppl.curves) {
        let want: Vec<(f64, f64)> = a.points.iter().map(|&(x, v)| (x, v.exp())).collect();
        assert_eq!(b.points, want, "{}", a.name);
    }
    assert_eq!(ppl.y_label(), "perplexity (exp of train loss, eval NLL)");
    let g = build(&traj(), &refs, &opts(true, true));
    let avg = g
        .curves
        .iter()
        .find(|c| c.kind == CurveKind::Average)
        .unwrap();
    let want = [
        (0.35f64 - 0.4).exp_m1() * 100.0,
        (0.18f64 - 0.2).exp_m1() * 100.0,
    ];
    let got: Vec<f64> = avg.points.iter().map(|p| p.1).collect();
    assert_eq!(got, want);
    assert_eq!(g.y_label(), "averaged vs raw perplexity (%)");
}
