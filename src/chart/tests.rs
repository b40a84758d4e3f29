//! Tests of the chart model.

use super::*;
use crate::source::{Checkpoint, Location, Metrics, Series};

fn traj() -> Trajectory {
    let steps = [100u64, 200, 300, 400];
    Trajectory {
        name: "t".into(),
        source: "t".into(),
        checkpoints: steps
            .iter()
            .map(|&s| Checkpoint {
                step: s,
                tokens: None,
                name: format!("step{s}"),
                location: Location::Local {
                    path: format!("/x/step{s}").into(),
                },
            })
            .collect(),
        metrics: Metrics {
            loss: Series {
                steps: (1..=400).collect(),
                values: (1..=400).map(|s| 5.0 / (s as f64).sqrt()).collect(),
            },
            ..Default::default()
        },
        tokens_per_step: Some(1000),
        warnings: vec![],
        notes: vec![],
    }
}

/// A perplexity record of one checkpoint step (`scheme` `raw` or a window's).
fn rec(end: u64, scheme: &str, k: usize, nll: f64) -> ResultRecord {
    ResultRecord {
        source: "t".into(),
        end_step: end,
        steps: vec![end],
        scheme: crate::results::parse_stored_scheme(scheme).unwrap(),
        k,
        spike_aware: false,
        weights: vec![1.0],
        data: "d".into(),
        data_hash: "h".into(),
        ctx: 8,
        max_tokens: None,
        dtype: crate::results::EvalDType::F32,
        device: "cpu".into(),
        mean_nll: nll,
        ppl: nll.exp(),
        bits_per_byte: None,
        predicted_tokens: 1,
        task: None,
        tool_version: "0".into(),
        unix_time: 0,
    }
}

#[test]
fn ema_debiased_starts_at_the_first_value_and_smooths() {
    let v = [4.0, 2.0, 2.0, 2.0];
    let s = ema_debiased(&v, 0.5);
    assert_eq!(s[0], 4.0);
    // (0.5*0.5*4 + 0.5*2) / (1 - 0.25) = 2 / 0.75
    assert!((s[1] - 2.0 / 0.75).abs() < 1e-12);
    assert!(s[3] < s[2] && s[2] < s[1]);
    assert_eq!(ema_debiased(&v, 0.0), v.to_vec());
    let with_nan = ema_debiased(&[1.0, f64::NAN, 3.0], 0.0);
    assert_eq!(with_nan, vec![1.0, 1.0, 3.0]);
    assert!(ema_debiased(&[f64::NAN], 0.5)[0].is_nan());
}

#[test]
fn tokens_come_from_tokens_per_step() {
    let t = traj();
    assert_eq!(tokens_at(&t, 200), Some(200_000));
    assert_eq!(x_of(&t, XAxis::Tokens, 300), Some(300_000.0));
    assert_eq!(x_of(&t, XAxis::Step, 300), Some(300.0));
    assert!(has_tokens(&t));
}

#[test]
fn build_orders_curves_and_keeps_series_colours() {
    let t = traj();
    let mk = rec;
    let recs = [
        mk(300, "uniform", 3, 1.0),
        mk(200, "raw", 1, 2.0),
        mk(300, "raw", 1, 1.5),
        mk(200, "raw", 1, 1.9),
    ];
    let refs: Vec<&ResultRecord> = recs.iter().collect();
    let m = build(
        &t,
        &refs,
        &ChartOptions {
            spikes: vec![(150, 180)],
            cursor_step: Some(300),
            window_steps: Some((200, 300)),
            ..Default::default()
        },
    );
    let names: Vec<_> = m.curves.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "train loss",
            "train loss (EMA 0.00)",
            "eval: raw checkpoint",
            "eval: uniform k=3"
        ]
    );
    // The later record for step 200 replaces the earlier one.
    assert_eq!(m.curves[2].points, vec![(200.0, 1.9), (300.0, 1.5)]);
    assert_eq!(m.curves[3].color, 3);
    assert_eq!(m.spikes, vec![(150.0, 180.0)]);
    assert_eq!(m.window, Some((200.0, 300.0)));
    assert_eq!(m.x_range(), Some((1.0, 400.0)));
    let (lo, hi) = m.y_range(300.0, 400.0).unwrap();
    assert!((hi - 1.5).abs() < 1e-12, "{hi}");
    assert!((lo - 0.25).abs() < 1e-12, "{lo}");
    // The first 5% of the train loss (steps 1..20, up to 5.0 here) does not set the
    // range: the highest point is the raw eval at 200.
    let (_, hi) = m.y_range(1.0, 400.0).unwrap();
    assert!((hi - 1.9).abs() < 1e-12, "{hi}");
}

#[test]
fn lines_break_where_a_checkpoint_between_was_not_evaluated() {
    let t = traj();
    let mk = |end: u64, nll: f64| rec(end, "raw", 1, nll);
    // Checkpoints 100..400; 300 not evaluated: 200 and 400 must not be joined.
    let recs = [mk(100, 3.0), mk(200, 2.5), mk(400, 2.0)];
    let refs: Vec<&ResultRecord> = recs.iter().collect();
    let m = build(&t, &refs, &ChartOptions::default());
    let raw = m
        .curves
        .iter()
        .find(|c| c.kind == CurveKind::EvalRaw)
        .unwrap();
    assert_eq!(raw.gaps, vec![2]);
    assert_eq!(
        raw.segments(),
        vec![&[(100.0, 3.0), (200.0, 2.5)][..], &[(400.0, 2.0)][..]]
    );
    assert_eq!(
        gaps_between(&[100, 200, 300, 400], &[100, 200, 300, 400]),
        Vec::<usize>::new()
    );
}

#[test]
fn clipping_ends_lines_at_the_edge_instead_of_a_plateau() {
    let pts = [
        (0.0, 10.0),
        (1.0, 6.0),
        (2.0, 2.0),
        (3.0, 1.0),
        (4.0, 5.0),
        (5.0, 1.0),
    ];
    let parts = clip_above(&pts, 4.0);
    assert_eq!(parts.len(), 2, "{parts:?}");
    // Enters at the crossing x = 1.5 (6 → 2 crosses 4 half-way), no point at y = 4 before.
    assert_eq!(
        parts[0],
        vec![(1.5, 4.0), (2.0, 2.0), (3.0, 1.0), (3.75, 4.0)]
    );
    assert_eq!(parts[1], vec![(4.25, 4.0), (5.0, 1.0)]);
    assert!(parts.iter().flatten().all(|p| p.1 <= 4.0));
    assert_eq!(clip_above(&pts, 100.0), vec![pts.to_vec()]);
}

#[test]
fn ticks_are_round_and_cover_the_range() {
    assert_eq!(
        nice_ticks(0.0, 10.0, 5),
        vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    );
    assert_eq!(nice_ticks(2.1, 2.9, 4), vec![2.2, 2.4, 2.6, 2.8]);
    assert_eq!(nice_ticks(1.0, 1.0, 4), vec![1.0]);
    assert!(nice_ticks(f64::NAN, 1.0, 4).is_empty());
}

#[test]
fn three_digit_counts_keep_neighbours_apart() {
    assert_eq!(three_digits(983_040.0), "983k");
    assert_eq!(three_digits(1_003_520.0), "1.00M");
    assert_eq!(three_digits(1_024_000.0), "1.02M");
    assert_eq!(three_digits(12_345_678.0), "12.3M");
    assert_eq!(three_digits(123_456_789.0), "123M");
    assert_eq!(three_digits(999_999.0), "1.00M");
    assert_eq!(three_digits(300e9), "300G");
    assert_eq!(three_digits(640.0), "640");
    assert_eq!(three_digits(1_500.0), "1.50k");
}

#[test]
fn short_numbers() {
    assert_eq!(short_number(2000.0), "2000");
    assert_eq!(short_number(20000.0), "20k");
    assert_eq!(short_number(2_097_152.0), "2.1M");
    assert_eq!(short_number(3.2567), "3.26");
    assert_eq!(short_number(12.345), "12.3");
    assert_eq!(short_number(143e9), "143G");
}
