//! Moving around: the cursor and the list, zoom and pan, the window's scheme and size, spike jumps.

use super::*;

impl State {
    /// Keeps the cursor inside the list's visible rows.
    pub(super) fn follow_list(&mut self) {
        self.list_offset = self.list_offset_for(self.areas.list_rows.height as usize);
    }

    /// Keeps the cursor inside the list's visible rows and inside a zoomed chart.
    pub(super) fn follow_cursor(&mut self) {
        self.follow_list();
        if let (Some((a, b)), Some(x)) = (self.zoom, self.x_of_index(self.cursor)) {
            let w = b - a;
            if x < a {
                self.zoom = Some((x - w * 0.1, x + w * 0.9));
            } else if x > b {
                self.zoom = Some((x - w * 0.9, x + w * 0.1));
            }
        }
    }

    pub(super) fn set_cursor(&mut self, i: usize) {
        let n = self.traj.checkpoints.len();
        if n == 0 {
            return;
        }
        self.cursor = i.min(n - 1);
        self.follow_cursor();
    }

    pub(super) fn page(&self) -> usize {
        match self.areas.list_rows.height as usize {
            0 => DEFAULT_PAGE,
            h => h.saturating_sub(1).max(1),
        }
    }

    pub(super) fn full_x(&self) -> Option<(f64, f64)> {
        self.chart().x_range()
    }

    /// Zooms by `factor` (< 1 in, > 1 out) keeping `center` in place.
    pub(super) fn zoom_by(&mut self, factor: f64, center: Option<f64>) {
        let Some((f0, f1)) = self.full_x() else {
            return;
        };
        let (a, b) = self.zoom.unwrap_or((f0, f1));
        let c = center
            .or_else(|| self.x_of_index(self.cursor))
            .unwrap_or((a + b) / 2.0);
        let w = ((b - a) * factor).max((f1 - f0) * 1e-4);
        if w >= f1 - f0 {
            self.zoom = None;
            return;
        }
        // Keep c at the same relative position in the view.
        let rel = if b > a {
            ((c - a) / (b - a)).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let mut lo = c - rel * w;
        lo = lo.clamp(f0, f1 - w);
        self.zoom = Some((lo, lo + w));
    }

    pub(super) fn pan(&mut self, frac: f64) {
        let (Some((a, b)), Some((f0, f1))) = (self.zoom, self.full_x()) else {
            return;
        };
        let w = b - a;
        let lo = (a + frac * w).clamp(f0, f1 - w);
        self.zoom = Some((lo, lo + w));
    }

    pub(super) fn cycle_scheme(&mut self) {
        self.scheme = match &self.scheme {
            Scheme::Uniform => Scheme::Ema {
                half_life: self.default_half_life(),
            },
            Scheme::Ema { .. } => Scheme::Linear,
            Scheme::Linear => Scheme::Custom(default_custom(self.k.max(1))),
            Scheme::Custom(w) => {
                self.k = w.len().max(1);
                Scheme::Uniform
            }
        };
        self.message = Some(format!("scheme: {}", self.scheme));
    }

    /// A half-life of about half the window's span in steps.
    pub(super) fn default_half_life(&self) -> f64 {
        let steps = self.window_steps();
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) if b > a => ((b - a) as f64 / 2.0).max(1.0),
            _ => 1.0,
        }
    }

    pub(super) fn resize_window(&mut self, delta: isize) {
        let n = self.traj.checkpoints.len().max(1);
        match &mut self.scheme {
            Scheme::Custom(w) => {
                if delta > 0 && w.len() < n {
                    w.insert(0, w.first().copied().unwrap_or(1.0));
                } else if delta < 0 && w.len() > 1 {
                    w.remove(0);
                }
                self.k = w.len();
            }
            _ => {
                self.k = (self.k as isize + delta).clamp(1, n as isize) as usize;
            }
        }
        self.message = Some(format!("window: k = {}", self.window_k()));
    }

    pub(super) fn jump_spike(&mut self, forward: bool) {
        if self.spikes.is_empty() {
            self.message = Some("no spikes detected".into());
            return;
        }
        let here = self.cursor_step().unwrap_or(0);
        let idx = if forward {
            self.spikes
                .iter()
                .position(|r| r.peak_step > here)
                .unwrap_or(0)
        } else {
            self.spikes
                .iter()
                .rposition(|r| r.peak_step < here)
                .unwrap_or(self.spikes.len() - 1)
        };
        self.goto_spike(idx);
    }

    pub(super) fn goto_spike(&mut self, idx: usize) {
        let Some(r) = self.spikes.get(idx).cloned() else {
            return;
        };
        self.spike_sel = idx;
        // The first checkpoint at or after the peak: the one the spike damaged.
        let steps = self.steps();
        let i = steps
            .iter()
            .position(|&s| s >= r.peak_step)
            .unwrap_or(steps.len().saturating_sub(1));
        self.set_cursor(i);
        self.message = Some(format!(
            "spike {}/{}: steps {}..{}, peak {} (+{:.3})",
            idx + 1,
            self.spikes.len(),
            r.start_step,
            r.end_step,
            r.peak_step,
            r.height
        ));
    }
}
