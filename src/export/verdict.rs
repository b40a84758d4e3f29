//! The one-line verdict of an averaged curve against the raw checkpoints: where it helped, by how
//! much, at the spike, and where it did not. Shown when a sweep ends (explorer, `lawa sweep`) and
//! written with the export.

use std::fmt;

use crate::results::{Metric, ResultRecord, Series};
use crate::spikes::SpikeRegion;

/// An averaged series compared with raw at the steps where both were evaluated (on one
/// consistent set of eval settings: the caller passes only such records).
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub series: Series,
    /// What was compared: which way is better and the unit of the changes.
    pub metric: Metric,
    /// Steps where the average is better than raw (lower NLL, higher accuracy).
    pub better: usize,
    /// Steps with both results.
    pub compared: usize,
    /// Mean change over the compared steps ([`Metric::change`]: % of perplexity, exp(Δ NLL)
    /// − 1; accuracy points for a task).
    pub mean_change: f64,
    pub first_step: u64,
    pub last_step: u64,
    /// At the compared step inside the highest spike where raw is worst: (step, change).
    pub spike_peak: Option<(u64, f64)>,
    /// Runs of consecutive compared steps where the average is not better: (first, last).
    pub worse: Vec<(u64, u64)>,
}

/// Perplexity change of `avg` against `raw` NLLs, in %.
pub fn ppl_change(avg_nll: f64, raw_nll: f64) -> f64 {
    ((avg_nll - raw_nll).exp() - 1.0) * 100.0
}

/// The verdict of `series` against raw on `metric` (records of other metrics are left out);
/// `None` when no step has both.
pub fn verdict(
    records: &[&ResultRecord],
    series: &Series,
    spikes: &[SpikeRegion],
    metric: Metric,
) -> Option<Verdict> {
    let latest = |name: &Series| {
        let mut by_step = std::collections::BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.series() == *name && r.metric() == metric)
        {
            by_step.insert(r.end_step, r.value());
        }
        by_step
    };
    let raw = latest(&Series::Raw);
    let pairs: Vec<(u64, f64, f64)> = latest(series)
        .into_iter()
        .filter_map(|(step, avg)| raw.get(&step).map(|&r| (step, avg, r)))
        .filter(|(_, a, r)| a.is_finite() && r.is_finite())
        .collect();
    let (first, last) = (pairs.first()?.0, pairs.last()?.0);
    let changes: Vec<f64> = pairs.iter().map(|&(_, a, r)| metric.change(a, r)).collect();
    let highest = spikes
        .iter()
        .filter(|s| !s.height.is_nan())
        .max_by(|a, b| a.height.total_cmp(&b.height));
    let spike_peak = highest.and_then(|s| {
        pairs
            .iter()
            .zip(&changes)
            .filter(|((step, _, _), _)| s.start_step <= *step && *step <= s.end_step)
            // Raw at its worst: the highest loss, the lowest accuracy.
            .max_by(|a, b| {
                let o = a.0 .2.total_cmp(&b.0 .2);
                if metric.higher_is_better() {
                    o.reverse()
                } else {
                    o
                }
            })
            .map(|((step, _, _), c)| (*step, *c))
    });
    let mut worse: Vec<(u64, u64)> = Vec::new();
    let mut prev_worse = false;
    for &(step, a, r) in &pairs {
        let is_worse = !metric.better(a, r);
        match (is_worse, prev_worse, worse.last_mut()) {
            (true, true, Some(run)) => run.1 = step,
            (true, _, _) => worse.push((step, step)),
            _ => {}
        }
        prev_worse = is_worse;
    }
    Some(Verdict {
        series: series.clone(),
        metric,
        better: pairs
            .iter()
            .filter(|(_, a, r)| metric.better(*a, *r))
            .count(),
        compared: pairs.len(),
        mean_change: changes.iter().sum::<f64>() / changes.len() as f64,
        first_step: first,
        last_step: last,
        spike_peak,
        worse,
    })
}

/// The verdict of every averaged series in `records` against raw on `metric`, in name order.
pub fn all(records: &[&ResultRecord], spikes: &[SpikeRegion], metric: Metric) -> Vec<Verdict> {
    let mut series: Vec<Series> = records
        .iter()
        .filter(|r| !r.is_raw())
        .map(|r| r.series())
        .collect();
    series.sort_by_cached_key(|s| s.to_string());
    series.dedup();
    series
        .iter()
        .filter_map(|s| verdict(records, s, spikes, metric))
        .collect()
}

/// A signed change with a real minus sign: `−5.4%`, `+2.0 pp`.
fn signed(x: f64, unit: &str) -> String {
    let sep = if unit == "%" { "" } else { " " };
    let num = format!("{:.1}", x.abs());
    let s = format!("{num}{sep}{unit}");
    if x < 0.0 && num != "0.0" {
        format!("−{s}")
    } else {
        format!("+{s}")
    }
}

impl fmt::Display for Verdict {
    /// `uniform k=5 beat raw at 31/56 steps; mean −5.4% ppl over steps 180–700; −56.0% at the
    /// spike peak (740); worse at 800–900`; for a task `… mean +1.2 pp lambada_openai acc …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.metric.change_unit();
        let what = match self.metric {
            Metric::Perplexity => "ppl".to_string(),
            Metric::Task(t) => format!("{t} acc"),
        };
        write!(
            f,
            "{} beat raw at {}/{} steps; mean {} {what} over steps {}–{}",
            self.series,
            self.better,
            self.compared,
            signed(self.mean_change, unit),
            self.first_step,
            self.last_step
        )?;
        if let Some((step, c)) = self.spike_peak {
            write!(f, "; {} at the spike peak ({step})", signed(c, unit))?;
        }
        if !self.worse.is_empty() {
            let runs: Vec<String> = self
                .worse
                .iter()
                .take(3)
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}–{b}")
                    }
                })
                .collect();
            let more = if self.worse.len() > 3 { ", …" } else { "" };
            write!(f, "; worse at {}{more}", runs.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::average::Scheme;
    use crate::results::RAW;

    fn uniform(k: usize) -> Series {
        Series::average(Scheme::Uniform, k, false)
    }

    fn rec(step: u64, scheme: &str, k: usize, nll: f64) -> ResultRecord {
        serde_json::from_value(serde_json::json!({
            "source": "run", "end_step": step, "steps": [step], "scheme": scheme, "k": k,
            "spike_aware": false, "weights": [1.0], "data": "h", "data_hash": "h", "ctx": 16,
            "max_tokens": null, "dtype": "f32", "device": "cpu", "mean_nll": nll,
            "ppl": nll.exp(), "bits_per_byte": null, "predicted_tokens": 1,
            "tool_version": "t", "unix_time": 0
        }))
        .unwrap()
    }

    #[test]
    fn the_verdict_counts_steps_averages_the_change_and_names_the_spike_and_the_worse_runs() {
        let raw = [
            (100, 3.0),
            (200, 2.8),
            (300, 4.0),
            (400, 2.5),
            (500, 2.4),
            (600, 2.3),
        ];
        let avg = [(200, 2.7), (300, 3.0), (400, 2.6), (500, 2.45), (600, 2.2)];
        let mut records: Vec<ResultRecord> = raw.iter().map(|&(s, n)| rec(s, RAW, 1, n)).collect();
        records.extend(avg.iter().map(|&(s, n)| rec(s, "uniform", 3, n)));
        let refs: Vec<&ResultRecord> = records.iter().collect();
        let spike = SpikeRegion {
            start_step: 250,
            end_step: 350,
            peak_step: 300,
            height: 1.5,
            baseline: 2.7,
        };
        let v = verdict(&refs, &uniform(3), &[spike], Metric::Perplexity).unwrap();
        assert_eq!((v.better, v.compared), (3, 5));
        assert_eq!((v.first_step, v.last_step), (200, 600));
        let expect: f64 = [(2.7, 2.8), (3.0, 4.0), (2.6, 2.5), (2.45, 2.4), (2.2, 2.3)]
            .iter()
            .map(|&(a, r)| ppl_change(a, r))
            .sum::<f64>()
            / 5.0;
        assert!((v.mean_change - expect).abs() < 1e-12);
        let (step, c) = v.spike_peak.unwrap();
        assert_eq!(step, 300);
        assert!((c - ((-1.0f64).exp() - 1.0) * 100.0).abs() < 1e-9);
        assert_eq!(v.worse, vec![(400, 500)]);
        assert_eq!(
            v.to_string(),
            format!(
                "uniform k=3 beat raw at 3/5 steps; mean −{:.1}% ppl over steps 200–600; \
                 −63.2% at the spike peak (300); worse at 400–500",
                -expect
            )
        );
        assert!(verdict(
            &refs,
            &Series::average(Scheme::Ema { half_life: 60.0 }, 5, false),
            &[],
            Metric::Perplexity
        )
        .is_none());
    }

    #[test]
    fn for_accuracy_higher_is_better_the_change_is_in_points_and_the_peak_is_raw_at_its_lowest() {
        let acc = |step: u64, scheme: &str, k: usize, a: f64| {
            let mut r = rec(step, scheme, k, 0.0);
            r.task = Some(crate::tasks::TaskResult {
                task: crate::tasks::TaskName::LambadaOpenai,
                n: 100,
                acc: a,
                acc_stderr: 0.0,
                acc_norm: None,
                acc_norm_stderr: None,
                perplexity: None,
            });
            r
        };
        let raw = [(200, 0.10), (300, 0.02), (400, 0.20), (500, 0.25)];
        let avg = [(200, 0.13), (300, 0.09), (400, 0.18), (500, 0.25)];
        let mut records: Vec<ResultRecord> = raw.iter().map(|&(s, a)| acc(s, RAW, 1, a)).collect();
        records.extend(avg.iter().map(|&(s, a)| acc(s, "uniform", 3, a)));
        // A perplexity result of the same curve must not enter the accuracy verdict.
        records.push(rec(600, "uniform", 3, 1.0));
        records.push(rec(600, RAW, 1, 2.0));
        let refs: Vec<&ResultRecord> = records.iter().collect();
        let spike = SpikeRegion {
            start_step: 250,
            end_step: 450,
            peak_step: 300,
            height: 1.0,
            baseline: 2.0,
        };
        let m = Metric::Task(crate::tasks::TaskName::LambadaOpenai);
        let v = verdict(&refs, &uniform(3), &[spike], m).unwrap();
        assert_eq!((v.better, v.compared, v.last_step), (2, 4, 500));
        let expect = (3.0 + 7.0 - 2.0 + 0.0) / 4.0;
        assert!((v.mean_change - expect).abs() < 1e-9, "{}", v.mean_change);
        // Raw is worst at 300 inside the spike (lowest accuracy, not highest).
        assert_eq!(v.spike_peak.map(|p| p.0), Some(300));
        // A tie is not a win: 400 (worse) and 500 (equal) are one run.
        assert_eq!(v.worse, vec![(400, 500)]);
        assert_eq!(
            v.to_string(),
            "uniform k=3 beat raw at 2/4 steps; mean +2.0 pp lambada_openai acc over steps \
             200–500; +7.0 pp at the spike peak (300); worse at 400–500"
        );
        // The perplexity verdict of the same records sees only the perplexity results.
        let p = verdict(&refs, &uniform(3), &[], Metric::Perplexity).unwrap();
        assert_eq!((p.compared, p.better), (1, 1));
    }
}
