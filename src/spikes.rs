//! Spike regions of a loss series (pure functions).
//!
//! A point starts a spike when it is above a robust baseline — the median of the `window`
//! finite points before it — by more than `threshold` robust standard deviations
//! (1.4826 × MAD of that window) and by more than `min_rel` of the baseline. While a spike lasts
//! the baseline is frozen (the spike must not raise its own baseline); it ends at the first
//! point back within half the entry margin (hysteresis, so noise on the way down does not
//! split it). A rise still up after `max_len` points is closed there: kept as a spike when it
//! has come well down from its peak (slow recovery), dropped as a level shift when it has not;
//! either way the baseline restarts from the new level. Regions at most
//! `merge_gap` points apart are merged. NaN and infinite values are excluded from baselines and,
//! with `nonfinite_is_spike`, are spike points themselves (a loss that blew up).

use serde::{Deserialize, Serialize};

/// Knobs of [`detect`]; the defaults suit a loss logged every step or every few steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpikeParams {
    /// Finite points before each point that form its baseline.
    pub window: usize,
    /// Points needed before a baseline exists (earlier points are never spikes).
    pub min_history: usize,
    /// Margin above the baseline, in robust standard deviations of the window.
    pub threshold: f64,
    /// ... and at least this fraction of the baseline (noise-free or very flat stretches).
    pub min_rel: f64,
    /// Regions separated by at most this many points are merged into one.
    pub merge_gap: usize,
    /// Regions with fewer points are dropped.
    pub min_len: usize,
    /// Longest region: a rise still up after this many points is closed (see the module doc).
    pub max_len: usize,
    /// NaN / infinite values count as spike points.
    pub nonfinite_is_spike: bool,
}

impl Default for SpikeParams {
    fn default() -> Self {
        Self {
            window: 50,
            min_history: 10,
            threshold: 5.0,
            min_rel: 0.03,
            merge_gap: 5,
            min_len: 1,
            max_len: 200,
            nonfinite_is_spike: true,
        }
    }
}

/// One spike: the steps it covers (inclusive) and its peak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpikeRegion {
    pub start_step: u64,
    pub end_step: u64,
    pub peak_step: u64,
    /// Loss above the baseline at the peak (infinite when the peak is a NaN/infinite loss).
    pub height: f64,
    /// The baseline the spike was measured against (NaN if the series had none yet).
    pub baseline: f64,
}

/// Whether `step` lies inside one of `regions`.
pub fn in_spike(regions: &[SpikeRegion], step: u64) -> bool {
    regions
        .iter()
        .any(|r| r.start_step <= step && step <= r.end_step)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The last `cap` finite values before the current point, also kept sorted so that the median
/// is a lookup and the MAD a linear selection (long logs have 10^5 points).
struct Window {
    order: std::collections::VecDeque<f64>,
    sorted: Vec<f64>,
    cap: usize,
    scratch: Vec<f64>,
}

impl Window {
    fn new(cap: usize) -> Self {
        Self {
            order: Default::default(),
            sorted: Vec::with_capacity(cap + 1),
            cap,
            scratch: Vec::with_capacity(cap + 1),
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn push(&mut self, v: f64) {
        self.order.push_back(v);
        let at = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
        self.sorted.insert(at, v);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                let at = self.sorted.partition_point(|x| x.total_cmp(&old).is_lt());
                self.sorted.remove(at);
            }
        }
    }

    fn reset(&mut self, values: impl Iterator<Item = f64>) {
        self.order.clear();
        self.sorted.clear();
        for v in values {
            self.push(v);
        }
    }

    /// Median and robust standard deviation (1.4826 × MAD); the window must not be empty.
    fn stats(&mut self) -> (f64, f64) {
        let med = median(&self.sorted);
        self.scratch.clear();
        self.scratch
            .extend(self.sorted.iter().map(|x| (x - med).abs()));
        let n = self.scratch.len();
        let (lower, hi, _) = self.scratch.select_nth_unstable_by(n / 2, f64::total_cmp);
        let hi = *hi;
        let mad = if n % 2 == 1 {
            hi
        } else {
            let lo = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo + hi) / 2.0
        };
        (med, 1.4826 * mad)
    }
}

/// A region being tracked, in point indices.
struct Open {
    start: usize,
    end: usize,
    peak: usize,
    peak_excess: f64,
    baseline: f64,
    /// Entry margin; the region ends at a point within half of it.
    margin: f64,
}

/// Spike regions of `values` (aligned with `steps`, sorted by step), in step order.
pub fn detect(steps: &[u64], values: &[f64], params: &SpikeParams) -> Vec<SpikeRegion> {
    let n = steps.len().min(values.len());
    let window = params.window.max(1);
    let min_history = params.min_history.clamp(1, window);
    let mut history = Window::new(window);
    let mut closed: Vec<(usize, usize, usize, f64, f64)> = Vec::new();
    let mut open: Option<Open> = None;

    let mut i = 0;
    while i < n {
        let v = values[i];
        if let Some(o) = &mut open {
            let excess = if v.is_finite() {
                v - o.baseline
            } else {
                f64::INFINITY
            };
            let still_up = if v.is_finite() {
                // A region opened by a NaN before any baseline ends at the first finite point.
                o.baseline.is_finite() && excess > o.margin / 2.0
            } else {
                params.nonfinite_is_spike
            };
            if still_up {
                o.end = i;
                if excess > o.peak_excess {
                    o.peak = i;
                    o.peak_excess = excess;
                }
                if o.end - o.start + 1 >= params.max_len.max(1) {
                    // Still up after `max_len` points. A spike in slow recovery has come well
                    // down from its peak: keep it. A rise that stayed up is a level shift: drop
                    // it. Either way the baseline restarts from the recent points.
                    let from = (i + 1).saturating_sub(window).max(o.start);
                    let tail: Vec<f64> = values[from..=i]
                        .iter()
                        .filter(|x| x.is_finite())
                        .map(|x| x - o.baseline)
                        .collect();
                    let tail_mean = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
                    if o.peak_excess > 2.0 * tail_mean {
                        closed.push((o.start, o.end, o.peak, o.peak_excess, o.baseline));
                    }
                    let from = (i + 1).saturating_sub(window);
                    history.reset(values[from..=i].iter().copied().filter(|x| x.is_finite()));
                    open = None;
                }
                i += 1;
                continue;
            }
            closed.push((o.start, o.end, o.peak, o.peak_excess, o.baseline));
            open = None;
            // Fall through: this point is judged against the normal rolling baseline.
        }
        // Baseline and entry margin from the finite points before this one.
        let stats = (history.len() >= min_history).then(|| {
            let (med, sigma) = history.stats();
            let margin = (params.threshold * sigma)
                .max(params.min_rel * med.abs())
                .max(1e-12);
            (med, margin)
        });
        if !v.is_finite() {
            if params.nonfinite_is_spike {
                let (baseline, margin) = stats.unwrap_or((f64::NAN, 0.0));
                open = Some(Open {
                    start: i,
                    end: i,
                    peak: i,
                    peak_excess: f64::INFINITY,
                    baseline,
                    margin,
                });
            }
            i += 1;
            continue;
        }
        if let Some((med, margin)) = stats {
            let excess = v - med;
            if excess > margin {
                open = Some(Open {
                    start: i,
                    end: i,
                    peak: i,
                    peak_excess: excess,
                    baseline: med,
                    margin,
                });
                i += 1;
                continue;
            }
        }
        history.push(v);
        i += 1;
    }
    if let Some(o) = open {
        closed.push((o.start, o.end, o.peak, o.peak_excess, o.baseline));
    }

    // Merge close regions, keeping the higher peak.
    let mut merged: Vec<(usize, usize, usize, f64, f64)> = Vec::new();
    for r in closed {
        match merged.last_mut() {
            Some(m) if r.0 - m.1 - 1 <= params.merge_gap => {
                m.1 = r.1;
                if r.3 > m.3 {
                    m.2 = r.2;
                    m.3 = r.3;
                    m.4 = r.4;
                }
            }
            _ => merged.push(r),
        }
    }
    merged
        .into_iter()
        .filter(|r| r.1 - r.0 + 1 >= params.min_len.max(1))
        .map(|(start, end, peak, height, baseline)| SpikeRegion {
            start_step: steps[start],
            end_step: steps[end],
            peak_step: steps[peak],
            height,
            baseline,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-1, 1] (a small LCG), so tests are reproducible without a crate.
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// A decaying loss curve 2 + 6·exp(-step/300) with ±2% multiplicative noise.
    fn clean_curve(n: usize, seed: u64) -> (Vec<u64>, Vec<f64>) {
        let steps: Vec<u64> = (1..=n as u64).collect();
        let z = noise(seed, n);
        let values = steps
            .iter()
            .zip(&z)
            .map(|(&s, e)| (2.0 + 6.0 * (-(s as f64) / 300.0).exp()) * (1.0 + 0.02 * e))
            .collect();
        (steps, values)
    }

    /// Adds a triangular-ish bump: `height` at `at`, for `width` points, decaying linearly.
    fn add_spike(values: &mut [f64], at: usize, width: usize, height: f64) {
        for k in 0..width {
            values[at + k] += height * (1.0 - k as f64 / width as f64);
        }
    }

    #[test]
    fn rolling_window_stats_match_a_naive_computation() {
        let z = noise(2, 300);
        for cap in [1, 2, 7, 50] {
            let mut w = Window::new(cap);
            for (i, &v) in z.iter().enumerate() {
                // Repeated values too: removal must take out exactly one copy.
                w.push((v * 4.0).round());
                let from = (i + 1).saturating_sub(cap);
                let mut naive: Vec<f64> = z[from..=i].iter().map(|v| (v * 4.0).round()).collect();
                naive.sort_by(f64::total_cmp);
                let med = median(&naive);
                let mut dev: Vec<f64> = naive.iter().map(|x| (x - med).abs()).collect();
                dev.sort_by(f64::total_cmp);
                assert_eq!(w.stats(), (med, 1.4826 * median(&dev)), "cap {cap} at {i}");
                assert_eq!(w.len(), naive.len());
            }
        }
    }

    #[test]
    fn clean_noisy_curves_have_no_spikes() {
        for seed in 0..20 {
            let (s, v) = clean_curve(3000, seed);
            let r = detect(&s, &v, &SpikeParams::default());
            assert!(r.is_empty(), "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn spikes_of_various_widths_are_found_with_their_ranges() {
        let (s, mut v) = clean_curve(3000, 7);
        // index → step is index + 1.
        add_spike(&mut v, 500, 1, 1.5); // one point
        add_spike(&mut v, 1200, 10, 1.0);
        add_spike(&mut v, 2000, 60, 2.0); // wider than half the window
        let r = detect(&s, &v, &SpikeParams::default());
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(
            (r[0].start_step, r[0].end_step, r[0].peak_step),
            (501, 501, 501)
        );
        assert!((r[0].height - 1.5).abs() < 0.2, "{:?}", r[0]);
        assert_eq!((r[1].start_step, r[1].peak_step), (1201, 1201));
        // The tail ends where the bump falls into the noise: within the bump, near its end.
        assert!((1205..=1210).contains(&r[1].end_step), "{:?}", r[1]);
        assert_eq!((r[2].start_step, r[2].peak_step), (2001, 2001));
        assert!((2040..=2060).contains(&r[2].end_step), "{:?}", r[2]);
        assert!((r[2].height - 2.0).abs() < 0.2, "{:?}", r[2]);
        for region in &r {
            assert!(in_spike(&r, region.start_step));
            assert!(in_spike(&r, region.end_step));
            assert!(!in_spike(&r, region.start_step - 1));
            assert!(!in_spike(&r, region.end_step + 1));
        }
    }

    #[test]
    fn close_spikes_merge_and_far_ones_do_not() {
        let (s, mut v) = clean_curve(2000, 3);
        add_spike(&mut v, 1000, 3, 1.0);
        add_spike(&mut v, 1006, 3, 1.5); // gap of 3 points ≤ merge_gap
        add_spike(&mut v, 1500, 3, 1.0);
        add_spike(&mut v, 1530, 3, 1.0); // gap of 27 points
        let r = detect(&s, &v, &SpikeParams::default());
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].start_step, 1001);
        assert!((1008..=1009).contains(&r[0].end_step), "{:?}", r[0]);
        assert_eq!(r[0].peak_step, 1007, "the higher peak is kept");
        assert_eq!((r[1].start_step, r[2].start_step), (1501, 1531));
        // With no merging allowed the first pair stays apart.
        let p = SpikeParams {
            merge_gap: 0,
            ..SpikeParams::default()
        };
        assert_eq!(detect(&s, &v, &p).len(), 4);
    }

    #[test]
    fn a_step_change_is_not_an_endless_spike() {
        let n = 1500;
        let steps: Vec<u64> = (0..n as u64).collect();
        let z = noise(11, n);
        let mut v: Vec<f64> = (0..n)
            .map(|i| if i < 500 { 3.0 } else { 3.6 } * (1.0 + 0.01 * z[i]))
            .collect();
        assert!(detect(&steps, &v, &SpikeParams::default()).is_empty());
        // A spike after the shift is measured against the new level.
        add_spike(&mut v, 1000, 5, 1.0);
        let r = detect(&steps, &v, &SpikeParams::default());
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].start_step, 1000);
        assert!((r[0].baseline - 3.6).abs() < 0.05, "{:?}", r[0]);
    }

    #[test]
    fn a_slowly_recovering_spike_is_kept_and_bounded() {
        let n = 1000;
        let steps: Vec<u64> = (0..n as u64).collect();
        let z = noise(13, n);
        let v: Vec<f64> = (0..n)
            .map(|i| {
                let bump = if i >= 300 {
                    2.0 * (-((i - 300) as f64) / 80.0).exp()
                } else {
                    0.0
                };
                3.0 * (1.0 + 0.01 * z[i]) + bump
            })
            .collect();
        let p = SpikeParams::default();
        let r = detect(&steps, &v, &p);
        assert_eq!(r.len(), 1, "{r:?}");
        // Cut at max_len points, not dropped like a level shift, and nothing after it.
        assert_eq!((r[0].start_step, r[0].peak_step), (300, 300));
        assert_eq!(r[0].end_step, 300 + p.max_len as u64 - 1);
    }

    #[test]
    fn nans_are_spike_points_and_stay_out_of_baselines() {
        let (s, mut v) = clean_curve(1000, 5);
        v[600] = f64::NAN;
        v[601] = f64::INFINITY;
        v[3] = f64::NAN; // before any baseline exists
        let r = detect(&s, &v, &SpikeParams::default());
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!((r[0].start_step, r[0].end_step), (4, 4));
        assert!(r[0].baseline.is_nan());
        assert_eq!(
            (r[1].start_step, r[1].end_step, r[1].peak_step),
            (601, 602, 601)
        );
        assert!(r[1].height.is_infinite());
        // Without counting them, NaNs are simply skipped.
        let p = SpikeParams {
            nonfinite_is_spike: false,
            ..SpikeParams::default()
        };
        assert!(detect(&s, &v, &p).is_empty());
    }

    #[test]
    fn short_flat_and_mismatched_inputs() {
        let p = SpikeParams::default();
        assert!(detect(&[], &[], &p).is_empty());
        assert!(
            detect(&[1, 2, 3], &[1.0, 9.0, 1.0], &p).is_empty(),
            "no baseline yet"
        );
        // A perfectly flat series (MAD 0) with one jump: the relative floor decides.
        let steps: Vec<u64> = (0..100).collect();
        let mut flat = vec![2.0; 100];
        flat[50] = 2.05; // 2.5% above: below min_rel
        flat[70] = 2.2; // 10% above
        let r = detect(&steps, &flat, &p);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].start_step, 70);
        // Values longer than steps are ignored rather than indexed out of bounds.
        assert_eq!(detect(&steps[..60], &flat, &p).len(), 0);
        // min_len drops one-point regions.
        let p2 = SpikeParams {
            min_len: 2,
            ..SpikeParams::default()
        };
        assert!(detect(&steps, &flat, &p2).is_empty());
    }
}
