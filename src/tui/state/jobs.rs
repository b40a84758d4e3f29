//! Jobs: what to request (a window, a sweep), the jobs panel's model, and job events.

use super::*;

impl State {
    /// Jobs for the window at checkpoint `i` (average+eval, and the raw end checkpoint) that
    /// are neither stored nor already queued.
    pub(super) fn requests_at(&self, i: usize, out: &mut Vec<Target>) -> Result<(), String> {
        let end_step = self.traj.checkpoints[i].step;
        if !self.has_result(&Series::Raw, end_step) && !self.has_active_job(&Series::Raw, end_step)
        {
            out.push(Target::Checkpoint { step: end_step });
        }
        let target = self.window_target(i)?;
        // A window of one checkpoint with all the weight is the raw checkpoint itself.
        if let Target::Window { steps, .. } = &target {
            if steps.len() == 1 && steps[0] == end_step {
                return Ok(());
            }
        }
        let series = target.series();
        if !self.has_result(&series, end_step) && !self.has_active_job(&series, end_step) {
            out.push(target);
        }
        Ok(())
    }

    pub(super) fn request_current(&mut self) -> Vec<Effect> {
        if self.traj.checkpoints.is_empty() {
            return Vec::new();
        }
        let mut targets = Vec::new();
        if let Err(e) = self.requests_at(self.cursor, &mut targets) {
            self.message = Some(e);
            return Vec::new();
        }
        self.message = Some(if targets.is_empty() {
            "already computed (or queued) for this window".into()
        } else {
            format!("queued {} job(s)", targets.len())
        });
        targets.into_iter().map(Effect::Submit).collect()
    }

    pub(super) fn sweep(&mut self) -> Vec<Effect> {
        let k = self.window_k();
        let mut targets = Vec::new();
        let mut skipped = Vec::new();
        for i in 0..self.traj.checkpoints.len() {
            if self.window_steps_at(i).len() < k {
                skipped.push(i);
                continue;
            }
            if let Err(e) = self.requests_at(i, &mut targets) {
                self.message = Some(e);
                return Vec::new();
            }
        }
        let mut m = format!("sweep {}: queued {} job(s)", self.series(), targets.len());
        if !skipped.is_empty() {
            let steps: Vec<u64> = self.traj.checkpoints.iter().map(|c| c.step).collect();
            m.push_str(&format!(
                "; skips {} (no full window of {k} checkpoints)",
                index_runs(&skipped, &steps)
            ));
        }
        self.message = Some(m);
        if !targets.is_empty() {
            self.batch.sweep = Some(self.series());
        }
        targets.into_iter().map(Effect::Submit).collect()
    }

    /// Jobs in display order: running, queued, then finished (newest first).
    pub fn jobs_in_order(&self) -> Vec<&JobView> {
        let rank = |j: &JobView| match j.status {
            JobStatus::Running => 0,
            JobStatus::Queued => 1,
            _ => 2,
        };
        let mut v: Vec<&JobView> = self.jobs.iter().collect();
        v.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| {
                if rank(a) == 2 {
                    b.id.cmp(&a.id)
                } else {
                    a.id.cmp(&b.id)
                }
            })
        });
        v
    }

    /// The highlighted job: the one selected by id, else the first in display order.
    pub fn selected_job(&self) -> Option<&JobView> {
        self.job_sel
            .and_then(|id| self.jobs.iter().find(|j| j.id == id))
            .or_else(|| self.jobs_in_order().first().copied())
    }

    /// Index of the highlighted job in display order.
    pub fn selected_job_row(&self) -> Option<usize> {
        let id = self.selected_job()?.id;
        self.jobs_in_order().iter().position(|j| j.id == id)
    }

    pub(super) fn active_jobs(&self) -> usize {
        self.jobs.iter().filter(|j| j.status.is_active()).count()
    }

    /// After a job ends: when none is left, the status line says how the spell went, so no
    /// "queued ..." or "cancelling ..." stays behind.
    pub(super) fn after_job_finished(&mut self) {
        if self.active_jobs() > 0 {
            return;
        }
        let b = std::mem::take(&mut self.batch);
        let mut parts = Vec::new();
        if b.done > 0 {
            parts.push(format!("{} done", b.done));
        }
        if b.failed > 0 {
            parts.push(format!("{} failed", b.failed));
        }
        if b.cancelled > 0 {
            parts.push(format!("{} cancelled", b.cancelled));
        }
        let verdict = b.sweep.as_ref().and_then(|series| {
            lawa::export::verdict::verdict(
                &self.visible_results(),
                series,
                &self.spikes,
                self.metric,
            )
        });
        let mut m = match verdict {
            Some(v) if b.failed + b.cancelled == 0 => v.to_string(),
            Some(v) => format!("{v} · jobs: {}", parts.join(", ")),
            None => format!("jobs finished: {}", parts.join(", ")),
        };
        if let Some(e) = b.last_error {
            m.push_str(&format!(" · last error: {e}"));
        }
        self.message = Some(m);
    }

    /// While `s` runs: `sweep uniform k=5 31/112 · ETA 1m20s` (the ETA from the mean time of
    /// the jobs done so far).
    pub fn sweep_progress(&self) -> Option<String> {
        let series = self.batch.sweep.as_ref()?;
        let active = self.active_jobs();
        if active == 0 {
            return None;
        }
        let b = &self.batch;
        let finished = b.done + b.failed + b.cancelled;
        let mut s = format!("sweep {series} {finished}/{}", finished + active);
        if b.done > 0 {
            let eta = b.busy.mul_f64(active as f64 / b.done as f64);
            s.push_str(&format!(" · ETA {}", crate::tui::panels::fmt_duration(eta)));
        }
        Some(s)
    }

    /// Records that others appended to the store: shown as they arrive (a record already
    /// here, e.g. one of our own jobs read back, is not added twice).
    pub(super) fn on_stored(&mut self, records: Vec<ResultRecord>) {
        let mut added = 0;
        let mut raw = false;
        for r in records {
            if !self.results.contains(&r) {
                raw |= r.is_raw();
                self.results.push(r);
                added += 1;
            }
        }
        if added == 0 {
            return;
        }
        if raw && self.traj.metrics.loss.len() < 3 {
            self.redetect_spikes();
        }
        if self
            .message
            .as_deref()
            .is_none_or(|m| m.ends_with(FROM_STORE))
        {
            self.message = Some(format!("{added} new result(s){FROM_STORE}"));
        }
    }

    pub(super) fn on_job(&mut self, e: JobEvent) {
        match e {
            JobEvent::Queued { id, target } => {
                // A late event of a job already shown must not add a second row.
                if self.jobs.iter().all(|j| j.id != id) {
                    self.jobs.push(JobView {
                        id,
                        target,
                        status: JobStatus::Queued,
                        progress: None,
                        elapsed: Duration::ZERO,
                    })
                }
            }
            JobEvent::Replaced { id, .. } => self.jobs.retain(|j| j.id != id),
            JobEvent::Started { id } => self.with_job(id, |j| j.status = JobStatus::Running),
            JobEvent::Progress {
                id,
                progress,
                elapsed,
            } => self.with_job(id, |j| {
                j.progress = Some(progress);
                j.elapsed = elapsed;
            }),
            JobEvent::Done { id, records } => {
                let took = self.jobs.iter().find(|j| j.id == id).map(|j| j.elapsed);
                if self.finish_job(id, JobStatus::Done) {
                    self.batch.done += 1;
                    self.batch.busy += took.unwrap_or_default();
                }
                let mut raw = false;
                for record in records {
                    // The dtype of a GPU's jobs, when no checkpoint was local at open: this
                    // session's job evaluated in it.
                    self.eval.dtype.get_or_insert(record.dtype);
                    // The model's default context, when its config was not readable at
                    // open (a task result is at the model's full context: that is it).
                    let e = &self.eval;
                    if record.task.is_some() {
                        if e.max_ctx.is_none() && e.tasks.iter().any(|t| t.hash == record.data_hash)
                        {
                            self.eval.max_ctx = Some(record.ctx);
                        }
                    } else if e.ctx().is_none()
                        && record.data_hash == e.data_hash
                        && record.max_tokens == e.max_tokens
                        && Some(record.dtype) == e.dtype
                    {
                        self.eval.learnt_ctx = Some(record.ctx);
                    }
                    raw |= record.is_raw() && record.task.is_none();
                    self.results.push(record);
                }
                if raw && self.traj.metrics.loss.len() < 3 {
                    self.redetect_spikes();
                }
                self.after_job_finished();
            }
            JobEvent::Failed { id, error } => {
                let label = self
                    .jobs
                    .iter()
                    .find(|j| j.id == id)
                    .map(|j| j.target.label())
                    .unwrap_or_else(|| format!("job {id}"));
                self.message = Some(format!("{label} failed: {error}"));
                if self.finish_job(id, JobStatus::Failed(error.clone())) {
                    self.batch.failed += 1;
                    self.batch.last_error = Some(format!("{label}: {error}"));
                }
                self.after_job_finished();
            }
            JobEvent::Cancelled { id } => {
                if self.finish_job(id, JobStatus::Cancelled) {
                    self.batch.cancelled += 1;
                }
                self.after_job_finished();
            }
        }
        self.prune_jobs();
    }

    /// The first job row shown in a jobs panel `height` rows high (the selection stays in view).
    pub fn jobs_offset(&self, height: usize) -> usize {
        match self.selected_job_row() {
            Some(sel) if self.focus == Focus::Jobs && sel >= height.max(1) => {
                sel + 1 - height.max(1)
            }
            _ => 0,
        }
    }

    pub(super) fn with_job(&mut self, id: JobId, f: impl FnOnce(&mut JobView)) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
            f(j);
        }
    }

    /// Ends an active job with `status`; false when the job is unknown or already ended (an
    /// ended job never changes again: a failure is never turned into "done").
    pub(super) fn finish_job(&mut self, id: JobId, status: JobStatus) -> bool {
        match self.jobs.iter_mut().find(|j| j.id == id) {
            Some(j) if j.status.is_active() => {
                j.status = status;
                true
            }
            _ => false,
        }
    }

    pub(super) fn prune_jobs(&mut self) {
        let finished = self.jobs.iter().filter(|j| !j.status.is_active()).count();
        if finished > KEEP_FINISHED {
            let mut drop = finished - KEEP_FINISHED;
            self.jobs.retain(|j| {
                if drop > 0 && !j.status.is_active() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if self
            .job_sel
            .is_some_and(|id| self.jobs.iter().all(|j| j.id != id))
        {
            self.job_sel = None;
        }
    }
}

/// Runs of consecutive checkpoint indices as step ranges: `20–80, 400`; after three runs,
/// how many more.
fn index_runs(indices: &[usize], steps: &[u64]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(3)
        .map(|&(a, b)| match a == b {
            true => format!("step {}", steps[a]),
            false => format!("steps {}–{}", steps[a], steps[b]),
        })
        .collect();
    if runs.len() > 3 {
        parts.push(format!("{} more", runs.len() - 3));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_runs_are_step_ranges_and_single_steps() {
        let steps = [10, 20, 30, 40, 50, 60, 70, 80, 90];
        assert_eq!(super::index_runs(&[0, 1, 2], &steps), "steps 10–30");
        assert_eq!(
            super::index_runs(&[0, 1, 4, 6, 7, 8], &steps),
            "steps 10–20, step 50, steps 70–90"
        );
        assert_eq!(
            super::index_runs(&[0, 2, 4, 6, 8], &steps),
            "step 10, step 30, step 50, 2 more"
        );
    }
}
