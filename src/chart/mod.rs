//! The chart as data: curves, spike regions, cursor and window, in the units of the axes.
//!
//! Built once from a trajectory and its results; the terminal chart and the PNG/SVG export both
//! draw this same model, so what is exported is what was on screen.

use std::collections::BTreeMap;

use serde::Serialize;

pub mod palette;

use crate::results::{Metric, ResultRecord, Series};
use crate::source::Trajectory;

/// What the x axis counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum XAxis {
    #[default]
    Step,
    Tokens,
}

impl XAxis {
    pub fn label(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens",
        }
    }
    pub fn toggled(self) -> Self {
        match self {
            XAxis::Step => XAxis::Tokens,
            XAxis::Tokens => XAxis::Step,
        }
    }
}

/// The role of a curve, which fixes how it is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CurveKind {
    /// Train loss as logged, drawn faint behind the smoothed one.
    TrainRaw,
    /// Train loss smoothed with a debiased EMA.
    TrainSmooth,
    /// Eval loss of each raw checkpoint.
    EvalRaw,
    /// Eval loss of averages of one scheme, at the step their window ends.
    Average,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Curve {
    pub name: String,
    pub kind: CurveKind,
    /// Index into the palette (see `chart::palette::slot`): stable per series so colours do
    /// not jump as results arrive.
    pub color: usize,
    /// The stored series of an eval curve (`ResultRecord::series`), the same in the losses
    /// and the gain view; `None` for the train loss.
    pub series: Option<Series>,
    /// (x, y) sorted by x; y in nats.
    pub points: Vec<(f64, f64)>,
    /// Indices `i` where no line joins `points[i - 1]` to `points[i]`: a checkpoint between
    /// them was not evaluated (or its job was cancelled), and a line would invent its value.
    pub gaps: Vec<usize>,
}

impl Curve {
    /// The runs of points that a line may join (a run of one is a lone marker).
    pub fn segments(&self) -> Vec<&[(f64, f64)]> {
        let mut out = Vec::new();
        let mut start = 0;
        for &g in self
            .gaps
            .iter()
            .filter(|&&g| g > 0 && g < self.points.len())
        {
            if g > start {
                out.push(&self.points[start..g]);
            }
            start = g;
        }
        if start < self.points.len() {
            out.push(&self.points[start..]);
        }
        out
    }
}

/// Where the lines of evaluated points must break: between two evaluated steps with a
/// checkpoint of the run in between that has no value.
pub fn gaps_between(evaluated: &[u64], checkpoints: &[u64]) -> Vec<usize> {
    (1..evaluated.len())
        .filter(|&i| {
            let (a, b) = (evaluated[i - 1], evaluated[i]);
            checkpoints.iter().any(|&c| a < c && c < b)
        })
        .collect()
}

/// Splits a line at `y_max` (plotted units): the parts above are left out and each part
/// below ends exactly where the line crosses `y_max`, so a clipped warm-up never looks like a
/// flat plateau at the top of the chart.
pub fn clip_above(points: &[(f64, f64)], y_max: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| points[j]);
        let cross = |a: (f64, f64), b: (f64, f64)| {
            let t = (y_max - a.1) / (b.1 - a.1);
            (a.0 + t * (b.0 - a.0), y_max)
        };
        if p.1 <= y_max {
            if let Some(q) = prev.filter(|q| q.1 > y_max) {
                cur.push(cross(q, p));
            }
            cur.push(p);
        } else if let Some(q) = prev.filter(|q| q.1 <= y_max) {
            cur.push(cross(q, p));
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChartModel {
    pub title: String,
    pub x_axis: XAxis,
    pub log_y: bool,
    pub curves: Vec<Curve>,
    /// Spike regions as x ranges.
    pub spikes: Vec<(f64, f64)>,
    pub cursor: Option<f64>,
    /// The averaging window as an x range.
    pub window: Option<(f64, f64)>,
    /// The gain view: each averaged curve minus raw (eval NLL, nats) against raw at zero.
    pub gain: bool,
    /// Values are perplexities (exp of the losses; in the gain view, % change of perplexity).
    pub ppl: bool,
    /// What the eval curves measure: a task's accuracy is drawn in %, higher is better.
    pub metric: Metric,
}

impl ChartModel {
    /// What the y axis shows, with its unit (and, for accuracy, which way is better).
    pub fn y_label(&self) -> String {
        match (self.metric, self.gain, self.ppl) {
            (Metric::Task(t), true, _) => format!("averaged − raw {t} accuracy (points)"),
            (Metric::Task(t), false, _) => format!("{t} accuracy (%, higher is better)"),
            (_, true, false) => "averaged − raw eval NLL (nats)".into(),
            (_, true, true) => "averaged vs raw perplexity (%)".into(),
            (_, false, false) => "train loss, eval NLL (nats)".into(),
            (_, false, true) => "perplexity (exp of train loss, eval NLL)".into(),
        }
    }

    /// [`ChartModel::y_label`] for a terminal panel title.
    pub fn y_short(&self) -> String {
        match (self.metric, self.gain, self.ppl) {
            (Metric::Task(t), true, _) => format!("Δ {t} acc vs raw (points)"),
            (Metric::Task(t), false, _) => format!("{t} acc (%) ↑ better"),
            (_, true, false) => "Δ NLL vs raw (nats)".into(),
            (_, true, true) => "Δ ppl vs raw (%)".into(),
            (_, false, false) => "loss (nats)".into(),
            (_, false, true) => "perplexity".into(),
        }
    }

    /// Where the gain view's better side is, for its axis note.
    pub fn better_side(&self) -> &'static str {
        if self.metric.higher_is_better() {
            "above 0: the average is better"
        } else {
            "below 0: the average is better"
        }
    }
}

/// What to put on the chart besides the trajectory and its results.
#[derive(Clone, Debug, Default)]
pub struct ChartOptions {
    pub x_axis: XAxis,
    pub log_y: bool,
    /// EMA smoothing factor of the train loss in [0, 1): 0 is no smoothing.
    pub smoothing: f64,
    /// Spike regions as step ranges.
    pub spikes: Vec<(u64, u64)>,
    pub cursor_step: Option<u64>,
    pub window_steps: Option<(u64, u64)>,
    /// Show each averaged curve minus raw instead of the losses (see [`ChartModel::gain`]).
    pub gain: bool,
    /// Show perplexities instead of losses (see [`ChartModel::ppl`]).
    pub ppl: bool,
    /// Leave the train loss out (the eval curves alone).
    pub hide_train: bool,
    /// What `records` measure (the caller passes one metric's records only); a task's
    /// accuracy leaves the train loss out: it has another unit.
    pub metric: Metric,
}

/// Debiased exponential moving average (as TensorBoard smooths): `s_t = a s_{t-1} + (1-a) x_t`
/// started at 0 and divided by `1 - a^t`, so early values are not pulled towards zero.
/// Non-finite inputs are skipped (the previous smoothed value is repeated).
pub fn ema_debiased(values: &[f64], alpha: f64) -> Vec<f64> {
    let a = alpha.clamp(0.0, 0.999_999);
    let mut acc = 0.0;
    let mut weight = 0.0;
    let mut out = Vec::with_capacity(values.len());
    for &v in values {
        if v.is_finite() {
            acc = a * acc + (1.0 - a) * v;
            weight = a * weight + (1.0 - a);
        }
        out.push(if weight > 0.0 { acc / weight } else { f64::NAN });
    }
    out
}

/// Tokens seen at `step`: the checkpoint's own count, else the metrics' tokens at that step,
/// else `step * tokens_per_step`.
pub fn tokens_at(traj: &Trajectory, step: u64) -> Option<u64> {
    if let Some(t) = traj.checkpoint(step).and_then(|c| c.tokens) {
        return Some(t);
    }
    let tk = &traj.metrics.tokens;
    if let Ok(i) = tk.steps.binary_search(&step) {
        if tk.values[i].is_finite() && tk.values[i] >= 0.0 {
            return Some(tk.values[i] as u64);
        }
    }
    traj.tokens_per_step.map(|t| t.saturating_mul(step))
}

/// The x coordinate of a step on the given axis (`None` when tokens are unknown).
pub fn x_of(traj: &Trajectory, axis: XAxis, step: u64) -> Option<f64> {
    match axis {
        XAxis::Step => Some(step as f64),
        XAxis::Tokens => tokens_at(traj, step).map(|t| t as f64),
    }
}

/// Whether the tokens axis can be drawn at all for this trajectory.
pub fn has_tokens(traj: &Trajectory) -> bool {
    traj.tokens_per_step.is_some()
        || !traj.metrics.tokens.is_empty()
        || traj.checkpoints.iter().any(|c| c.tokens.is_some())
}

/// Spike regions of a run: on the train loss when one was logged, else on the raw-checkpoint
/// eval curve of `records` (sparser, so with a shorter history).
pub fn detect_spikes(
    traj: &Trajectory,
    records: &[&ResultRecord],
    params: &crate::spikes::SpikeParams,
) -> Vec<crate::spikes::SpikeRegion> {
    let loss = &traj.metrics.loss;
    if loss.len() >= 3 {
        return crate::spikes::detect(&loss.steps, &loss.values, params);
    }
    let mut raw: Vec<(u64, f64)> = records
        .iter()
        .filter(|r| r.is_raw() && r.task.is_none())
        .map(|r| (r.end_step, r.mean_nll))
        .collect();
    // Latest result wins for a step evaluated twice.
    raw.reverse();
    raw.sort_by_key(|p| p.0);
    raw.dedup_by_key(|p| p.0);
    if raw.len() < 3 {
        return Vec::new();
    }
    let (s, v): (Vec<u64>, Vec<f64>) = raw.into_iter().unzip();
    let sparse = crate::spikes::SpikeParams {
        window: params.window.min(20),
        min_history: params.min_history.min(4),
        ..params.clone()
    };
    crate::spikes::detect(&s, &v, &sparse)
}

/// The gain view's series (raw first): raw as zero wherever an average was compared with it,
/// each average as its NLL minus raw's at the steps where both were evaluated.
fn gains(series: Vec<(Series, BTreeMap<u64, f64>)>) -> Vec<(Series, BTreeMap<u64, f64>)> {
    let Some((_, raw)) = series.iter().find(|(n, _)| n.is_raw()) else {
        return Vec::new();
    };
    let raw = raw.clone();
    let mut zero = BTreeMap::new();
    let mut out = Vec::new();
    for (name, pts) in series {
        if name.is_raw() {
            continue;
        }
        let d: BTreeMap<u64, f64> = pts
            .iter()
            .filter_map(|(s, v)| raw.get(s).map(|r| (*s, v - r)))
            .collect();
        zero.extend(d.keys().map(|&s| (s, 0.0)));
        out.push((name, d));
    }
    out.insert(0, (Series::Raw, zero));
    out
}

/// Builds the chart of a trajectory and the results that match the current eval settings.
/// Curves: train loss raw and smoothed (if logged), raw-checkpoint eval, one per averaging series
/// in order of first appearance in `records`.
pub fn build(traj: &Trajectory, records: &[&ResultRecord], opts: &ChartOptions) -> ChartModel {
    let x = |s: u64| x_of(traj, opts.x_axis, s);
    let task = opts.metric.higher_is_better();
    // Losses as drawn: nats, or perplexities (in the gain view, % change of perplexity);
    // accuracies in % (in the gain view, points).
    let y = |v: f64| match (task, opts.ppl, opts.gain) {
        (true, _, _) => v * 100.0,
        (false, false, _) => v,
        (false, true, false) => v.exp(),
        (false, true, true) => v.exp_m1() * 100.0,
    };
    let mut curves = Vec::new();
    let loss = &traj.metrics.loss;
    if !loss.is_empty() && !opts.gain && !opts.hide_train && !task {
        let raw: Vec<(f64, f64)> = loss
            .iter()
            .filter(|(_, v)| v.is_finite())
            .filter_map(|(s, v)| Some((x(s)?, y(v))))
            .collect();
        let sm = ema_debiased(&loss.values, opts.smoothing);
        let smooth: Vec<(f64, f64)> = loss
            .steps
            .iter()
            .zip(sm)
            .filter(|(_, v)| v.is_finite())
            .filter_map(|(&s, v)| Some((x(s)?, y(v))))
            .collect();
        curves.push(Curve {
            name: "train loss".into(),
            kind: CurveKind::TrainRaw,
            color: palette::TRAIN_RAW,
            series: None,
            points: raw,
            gaps: Vec::new(),
        });
        curves.push(Curve {
            name: format!("train loss (EMA {:.2})", opts.smoothing),
            kind: CurveKind::TrainSmooth,
            color: palette::TRAIN_SMOOTH,
            series: None,
            points: smooth,
            gaps: Vec::new(),
        });
    }
    // Latest result wins when the same point was evaluated twice.
    let mut series: Vec<(Series, BTreeMap<u64, f64>)> = Vec::new();
    for r in records.iter().filter(|r| r.metric() == opts.metric) {
        let name = r.series();
        let i = match series.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                series.push((name, BTreeMap::new()));
                series.len() - 1
            }
        };
        series[i].1.insert(r.end_step, r.value());
    }
    // The raw eval curve comes first and has a fixed colour.
    series.sort_by_key(|(n, _)| !n.is_raw());
    if opts.gain {
        series = gains(series);
    }
    let mut next_color = palette::FIRST_AVERAGE;
    let checkpoints = traj.steps();
    for (name, pts) in series {
        let is_raw = name.is_raw();
        let kept: Vec<(u64, f64)> = pts
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .filter(|(s, _)| x(*s).is_some())
            .collect();
        let evaluated: Vec<u64> = kept.iter().map(|p| p.0).collect();
        let gaps = gaps_between(&evaluated, &checkpoints);
        let points = kept
            .into_iter()
            .filter_map(|(s, v)| Some((x(s)?, y(v))))
            .collect();
        let series = Some(name.clone());
        let (kind, color, name) = if is_raw {
            let name = if opts.gain {
                "raw checkpoint (zero)"
            } else {
                "eval: raw checkpoint"
            };
            (CurveKind::EvalRaw, palette::EVAL_RAW, name.to_string())
        } else {
            next_color += 1;
            (CurveKind::Average, next_color - 1, format!("eval: {name}"))
        };
        curves.push(Curve {
            name,
            kind,
            color,
            series,
            points,
            gaps,
        });
    }
    let spikes = opts
        .spikes
        .iter()
        .filter_map(|&(a, b)| Some((x(a)?, x(b)?)))
        .collect();
    let window = opts.window_steps.and_then(|(a, b)| Some((x(a)?, x(b)?)));
    ChartModel {
        title: traj.name.clone(),
        x_axis: opts.x_axis,
        // Gains are negative where averaging helps: no log scale.
        log_y: opts.log_y && !opts.gain,
        curves,
        spikes,
        cursor: opts.cursor_step.and_then(x),
        window,
        gain: opts.gain,
        ppl: opts.ppl && !task,
        metric: opts.metric,
    }
}

impl ChartModel {
    /// The x range covered by the data (curves, spikes, cursor), `None` when there is nothing.
    pub fn x_range(&self) -> Option<(f64, f64)> {
        let xs = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .chain(self.spikes.iter().flat_map(|s| [s.0, s.1]))
            .chain(self.cursor);
        min_max(xs)
    }

    /// The y range of the points whose x lies in `[x0, x1]` (log10 of it on a log axis;
    /// non-positive values are left out there). The train loss of the first 5% of the range is
    /// left out: its first steps (loss near ln(vocab)) would flatten everything else, and
    /// spikes later in the run still set the range.
    pub fn y_range(&self, x0: f64, x1: f64) -> Option<(f64, f64)> {
        let train_from = x0 + 0.05 * (x1 - x0);
        let ys = self.curves.iter().flat_map(|c| {
            let from = match c.kind {
                CurveKind::TrainRaw | CurveKind::TrainSmooth => train_from,
                _ => x0,
            };
            c.points
                .iter()
                .filter(move |p| p.0 >= from && p.0 <= x1)
                .filter_map(|p| self.y_value(p.1))
        });
        min_max(ys).or_else(|| {
            // Nothing past the warm-up: fall back to everything in range.
            min_max(self.curves.iter().flat_map(|c| {
                c.points
                    .iter()
                    .filter(move |p| p.0 >= x0 && p.0 <= x1)
                    .filter_map(|p| self.y_value(p.1))
            }))
        })
    }

    /// A data value in plotted units: log10 on a log axis (None if not positive).
    pub fn y_value(&self, y: f64) -> Option<f64> {
        if !self.log_y {
            return y.is_finite().then_some(y);
        }
        (y > 0.0 && y.is_finite()).then(|| y.log10())
    }
}

fn min_max(it: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    it.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })
}

/// About `n` round tick values covering `[lo, hi]` (1, 2, 5 × 10^k steps).
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || n == 0 {
        return Vec::new();
    }
    if hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Decimals the step needs; printing and parsing snaps away noise like 2.4000000000000004.
    let decimals = (-step.log10().floor()).max(0.0) as usize + 1;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            format!("{v:.decimals$}").parse().unwrap_or(v)
        })
        .collect()
}

/// A short label of an axis value: `1.2k`, `3.4M`, `2.05`.
/// A count to three significant digits with a k/M/G/T suffix, for tables where neighbouring
/// values must stay distinguishable: `983k`, `1.00M`, `1.02M`, `12.3M`, `123M`.
pub fn three_digits(v: f64) -> String {
    let a = v.abs();
    if a < 1000.0 {
        return format!("{v:.0}");
    }
    let (mut scaled, mut i) = (v, 0);
    while scaled.abs() >= 999.5 && i < 4 {
        scaled /= 1000.0;
        i += 1;
    }
    let suffix = ["", "k", "M", "G", "T"][i];
    let s = scaled.abs();
    if s >= 99.95 {
        format!("{scaled:.0}{suffix}")
    } else if s >= 9.995 {
        format!("{scaled:.1}{suffix}")
    } else {
        format!("{scaled:.2}{suffix}")
    }
}

pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if suffix.is_empty() {
        if a >= 100.0 || (v.fract() == 0.0 && a < 1e4) {
            format!("{v:.0}")
        } else if a >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    } else {
        let s = format!("{scaled:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
        format!("{s}{suffix}")
    }
}

#[cfg(test)]
mod tests;
