//! Sweeps on a Slurm cluster: one job array, each task a contiguous chunk of the sweep's
//! targets (so consecutive windows still share their reads within a chunk), each writing its
//! own shard of the trajectory's results store.
//!
//! `lawa sweep --slurm` writes an [`ArrayPlan`] (every target, chunked, and the eval settings)
//! beside the store, and a batch script that runs `lawa sweep-task PLAN` per array element;
//! the element's index comes from `SLURM_ARRAY_TASK_ID` (or a Kubernetes Indexed Job's
//! `JOB_COMPLETION_INDEX`). A task skips what the store already holds, so a task that is
//! rerun after a failure or a preemption does only what is missing. [`task_status`] says how
//! far each task got, from the store and `squeue`.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::average::Scheme;
use crate::device::DevicePref;
use crate::jobs::engine::EvalConfig;
use crate::jobs::Target;
use crate::results::{EvalSettings, ResultRecord};

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("{program} not found: is Slurm installed here (and on PATH)?")]
    NotFound { program: &'static str },
    /// Slurm's own message (its first error line).
    #[error("{program}: {message}")]
    Failed {
        program: &'static str,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a sweep plan: {source}", path.display())]
    BadPlan {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Task(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SlurmError + '_ {
    move |source| SlurmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything an array task needs, written once at submission.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArrayPlan {
    /// Names the plan's files, its tasks' shards and logs.
    pub id: String,
    pub source: String,
    /// The trajectory's results store folder (it must be on a filesystem the nodes share).
    pub store_dir: PathBuf,
    /// Eval data (absolute paths), ctx, max tokens, batch; the device is chosen on the node
    /// from `device`.
    pub eval: EvalConfig,
    pub device: DevicePref,
    /// The resolved settings every perplexity result of the sweep carries.
    pub settings: EvalSettings,
    /// Those of each task's results (`--task`; plans written before tasks: none).
    #[serde(default)]
    pub task_settings: Vec<EvalSettings>,
    pub memory_mib: Option<u64>,
    /// `--keep-models`: where each task also writes its averaged models.
    pub keep_models: Option<PathBuf>,
    /// The weight scheme, for `--keep-models` (stored as its string).
    pub scheme: Scheme,
    /// Each array task's targets, in step order.
    pub tasks: Vec<Vec<Target>>,
    /// Set once sbatch has accepted the array.
    pub job_id: Option<u64>,
    pub created_unix: u64,
}

/// Folder of the plans, scripts and task logs, inside a store folder.
pub const SWEEPS_DIR: &str = "sweeps";

impl ArrayPlan {
    /// The settings of every metric of the sweep: perplexity, then each task.
    pub fn all_settings(&self) -> Vec<EvalSettings> {
        std::iter::once(self.settings.clone())
            .chain(self.task_settings.iter().cloned())
            .collect()
    }

    pub fn windows(&self) -> usize {
        self.tasks.iter().map(Vec::len).sum()
    }

    pub fn path_in(store_dir: &Path, id: &str) -> PathBuf {
        store_dir.join(SWEEPS_DIR).join(format!("{id}.json"))
    }

    /// The shard task `index` appends to (`shards/NAME.jsonl`).
    pub fn shard_name(&self, index: usize) -> String {
        format!("{}-task{index}", self.id)
    }

    /// Slurm's output file of task `index`.
    pub fn log_path(&self, index: usize) -> PathBuf {
        self.store_dir
            .join(SWEEPS_DIR)
            .join(&self.id)
            .join(format!("task-{index}.log"))
    }

    /// Writes the plan under a temporary name and renames it into place.
    pub fn save(&self) -> Result<PathBuf, SlurmError> {
        let path = Self::path_in(&self.store_dir, &self.id);
        let dir = path.parent().expect("plan path has a folder");
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("plans serialise");
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(path)
    }

    pub fn load(path: &Path) -> Result<ArrayPlan, SlurmError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        serde_json::from_str(&text).map_err(|source| SlurmError::BadPlan {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The plans of a store folder, oldest first (unreadable ones are skipped with a warning).
    pub fn all_in(store_dir: &Path) -> (Vec<ArrayPlan>, Vec<String>) {
        let mut plans = Vec::new();
        let mut warnings = Vec::new();
        let Ok(rd) = std::fs::read_dir(store_dir.join(SWEEPS_DIR)) else {
            return (plans, warnings);
        };
        for p in rd.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.extension().is_some_and(|x| x == "json") {
                match Self::load(&p) {
                    Ok(plan) => plans.push(plan),
                    Err(e) => warnings.push(e.to_string()),
                }
            }
        }
        plans.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        (plans, warnings)
    }

    /// Removes the plan's files (a submission that failed leaves nothing behind).
    pub fn remove_files(&self) {
        let dir = self.store_dir.join(SWEEPS_DIR);
        let _ = std::fs::remove_file(Self::path_in(&self.store_dir, &self.id));
        let _ = std::fs::remove_file(dir.join(format!("{}.sbatch", self.id)));
        let _ = std::fs::remove_dir_all(dir.join(&self.id));
        // Only when empty: other plans may live there.
        let _ = std::fs::remove_dir(&dir);
    }
}

/// `n` items in `tasks` contiguous chunks whose sizes differ by at most one (fewer chunks when
/// there are fewer items).
pub fn chunks(n: usize, tasks: usize) -> Vec<Range<usize>> {
    let tasks = tasks.clamp(1, n.max(1));
    let (size, extra) = (n / tasks, n % tasks);
    let mut out = Vec::with_capacity(tasks);
    let mut start = 0;
    for i in 0..tasks {
        let len = size + usize::from(i < extra);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// The array task index this process runs, from the environment a scheduler gives it: Slurm's
/// `SLURM_ARRAY_TASK_ID`, else a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`.
pub fn task_index(env: impl Fn(&str) -> Option<String>) -> Result<Option<usize>, SlurmError> {
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Some(v) = env(var) {
            return v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| SlurmError::Task(format!("{var}={v:?}: not an array task index")));
        }
    }
    Ok(None)
}

/// How a submission asks Slurm for its array.
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    pub partition: Option<String>,
    /// At most this many tasks at once (the array's `%N`).
    pub parallel: Option<usize>,
    /// Passed to sbatch as they are (resources: `--gres=gpu:1`, `--time`, `--mem` ...).
    pub extra: Vec<String>,
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script of a plan: each array element runs its chunk with this same binary.
pub fn batch_script(exe: &Path, plan_path: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by `lawa sweep --slurm`: array task $SLURM_ARRAY_TASK_ID runs its chunk of the plan.\n\
         exec {} sweep-task {}\n",
        shell_quote(&exe.display().to_string()),
        shell_quote(&plan_path.display().to_string()),
    )
}

/// sbatch's arguments for a plan's array (before the script's path).
pub fn sbatch_args(plan: &ArrayPlan, opts: &SubmitOptions) -> Vec<String> {
    let last = plan.tasks.len().saturating_sub(1);
    let mut array = format!("--array=0-{last}");
    if let Some(n) = opts.parallel {
        array.push_str(&format!("%{n}"));
    }
    let log = plan
        .store_dir
        .join(SWEEPS_DIR)
        .join(&plan.id)
        .join("task-%a.log");
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name=lawa-sweep-{}", plan.id),
        array,
        format!("--output={}", log.display()),
    ];
    if let Some(p) = &opts.partition {
        args.push(format!("--partition={p}"));
    }
    args.extend(opts.extra.iter().cloned());
    args
}

/// Splits `--sbatch "ARGS"` as a shell would split plain words and quotes.
pub fn split_args(s: &str) -> Result<Vec<String>, SlurmError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(SlurmError::Task(format!("--sbatch {s:?}: unclosed quote")));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Runs a Slurm command, mapping "not installed" and Slurm's own errors to one line.
fn slurm(program: &'static str, args: &[String]) -> Result<String, SlurmError> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SlurmError::NotFound { program }
        } else {
            SlurmError::Failed {
                program,
                message: e.to_string(),
            }
        }
    })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            program,
            message: error_message(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Slurm's error lines as one line, without the program's prefix (sbatch says what was
/// wrong first and that the submission failed last: both are kept).
fn error_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once("error: ").map_or(l, |(_, m)| m))
        .collect();
    if lines.is_empty() {
        "failed without a message".to_string()
    } else {
        lines.join("; ")
    }
}

/// Submits the array (`sbatch ARGS SCRIPT`) and returns its job id.
pub fn submit(args: &[String], script: &Path) -> Result<u64, SlurmError> {
    let mut all = args.to_vec();
    all.push(script.display().to_string());
    let out = slurm("sbatch", &all)?;
    // --parsable: "JOBID" or "JOBID;CLUSTER".
    let id = out.trim().split(';').next().unwrap_or("");
    id.parse().map_err(|_| SlurmError::Failed {
        program: "sbatch",
        message: format!("unexpected answer {:?}", out.trim()),
    })
}

/// The queue's state of each array element of `job_id` still known to the controller
/// (`PENDING`, `RUNNING`, ...); empty once the whole array has left the queue.
pub fn queue(job_id: u64) -> Result<HashMap<usize, String>, SlurmError> {
    let args = [
        "-h".to_string(),
        "-r".to_string(),
        format!("--jobs={job_id}"),
        "--format=%K|%T".to_string(),
    ];
    let out = match slurm("squeue", &args) {
        Ok(out) => out,
        // A job that finished long enough ago is unknown to squeue.
        Err(SlurmError::Failed { message, .. }) if message.contains("Invalid job id") => {
            String::new()
        }
        Err(e) => return Err(e),
    };
    Ok(parse_queue(&out))
}

/// `squeue -r --format=%K|%T` lines as index → state. A pending array's unexpanded range
/// (`0-3%1`) counts for each of its indices.
pub fn parse_queue(out: &str) -> HashMap<usize, String> {
    let mut map = HashMap::new();
    for line in out.lines() {
        let Some((idx, state)) = line.trim().split_once('|') else {
            continue;
        };
        let idx = idx.split('%').next().unwrap_or("");
        for part in idx.split(',') {
            let range = match part.split_once('-') {
                Some((a, b)) => a.parse::<usize>().ok().zip(b.parse::<usize>().ok()),
                None => part.parse::<usize>().ok().map(|a| (a, a)),
            };
            if let Some((a, b)) = range {
                for i in a..=b {
                    map.insert(i, state.trim().to_string());
                }
            }
        }
    }
    map
}

/// Where one array task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Every target of the task is in the store.
    Done,
    Running,
    /// Waiting in the queue.
    Pending,
    /// Left the queue with targets missing (failed, cancelled, preempted and not requeued).
    Failed,
    /// Not all stored, and the queue did not answer.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub index: usize,
    pub state: TaskState,
    /// Targets of the task in the store.
    pub done: usize,
    pub windows: usize,
}

/// Each task's state: done from the store, running or pending from the queue, failed when
/// it left the queue with targets missing; unknown when the queue (`None`) did not answer.
pub fn task_status(
    plan: &ArrayPlan,
    records: &[ResultRecord],
    queue: Option<&HashMap<usize, String>>,
) -> Vec<TaskStatus> {
    // A target is done when every metric of the plan is stored for it.
    let all = plan.all_settings();
    let stored: Vec<std::collections::HashSet<(crate::results::Series, u64)>> = all
        .iter()
        .map(|s| {
            records
                .iter()
                .filter(|r| s.matches(r))
                .map(|r| (r.series(), r.end_step))
                .collect()
        })
        .collect();
    plan.tasks
        .iter()
        .enumerate()
        .map(|(index, targets)| {
            let done = targets
                .iter()
                .filter(|t| {
                    let key = (t.series(), t.end_step());
                    stored.iter().all(|s| s.contains(&key))
                })
                .count();
            let state = if done == targets.len() {
                TaskState::Done
            } else if queue.is_none() {
                TaskState::Unknown
            } else {
                match queue.and_then(|q| q.get(&index)).map(String::as_str) {
                    Some("RUNNING" | "COMPLETING" | "CONFIGURING" | "SIGNALING" | "STAGE_OUT") => {
                        TaskState::Running
                    }
                    Some(s) if !is_ended(s) => TaskState::Pending,
                    _ => TaskState::Failed,
                }
            };
            TaskStatus {
                index,
                state,
                done,
                windows: targets.len(),
            }
        })
        .collect()
}

/// Queue states of an element that will not run again by itself.
fn is_ended(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "PREEMPTED"
    )
}

/// Where one submitted sweep stands: what `lawa sweep --status` prints and the explorer shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepProgress {
    pub id: String,
    pub job_id: u64,
    pub tasks: Vec<TaskStatus>,
    /// Why the queue could not be read (the states then come from the store alone).
    pub queue_error: Option<String>,
}

impl SweepProgress {
    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|t| t.state == state).count()
    }

    pub fn stored(&self) -> usize {
        self.tasks.iter().map(|t| t.done).sum()
    }

    pub fn windows(&self) -> usize {
        self.tasks.iter().map(|t| t.windows).sum()
    }

    pub fn finished(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
    }

    /// One line: `job 12: 2/3 tasks done, 1 running, 0 pending, 0 failed; 30/42 windows stored`.
    pub fn summary(&self) -> String {
        format!(
            "job {}: {}/{} tasks done, {} running, {} pending, {} failed; {}/{} windows stored",
            self.job_id,
            self.count(TaskState::Done),
            self.tasks.len(),
            self.count(TaskState::Running),
            self.count(TaskState::Pending),
            self.count(TaskState::Failed),
            self.stored(),
            self.windows()
        )
    }
}

/// The targets of `plans` whose tasks are still queued or running (by `progress`, in the same
/// order): a new submission leaves them out, so no two tasks evaluate the same window.
pub fn in_flight(plans: &[ArrayPlan], progress: &[SweepProgress]) -> Vec<(u64, Target)> {
    let mut out = Vec::new();
    for (plan, p) in plans.iter().filter(|p| p.job_id.is_some()).zip(progress) {
        for t in &p.tasks {
            if matches!(
                t.state,
                TaskState::Running | TaskState::Pending | TaskState::Unknown
            ) {
                out.extend(plan.tasks[t.index].iter().map(|x| (p.job_id, x.clone())));
            }
        }
    }
    out
}

/// The progress of every submitted sweep of a store folder, asking `squeue` for each job.
pub fn progress_all(plans: &[ArrayPlan], records: &[ResultRecord]) -> Vec<SweepProgress> {
    plans
        .iter()
        .filter_map(|plan| {
            let job_id = plan.job_id?;
            let (queue, queue_error) = match queue(job_id) {
                Ok(q) => (Some(q), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Some(SweepProgress {
                id: plan.id.clone(),
                job_id,
                tasks: task_status(plan, records, queue.as_ref()),
                queue_error,
            })
        })
        .collect()
}

/// The last non-empty line of a task's log, to say why it failed.
pub fn last_log_line(path: &Path) -> Option<String> {
    let bytes = crate::results::tail_bytes(path, 4096).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_contiguous_and_even() {
        assert_eq!(chunks(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(chunks(2, 5), vec![0..1, 1..2]);
        assert_eq!(chunks(0, 3), vec![0..0]);
        let c = chunks(107, 8);
        assert_eq!(c.len(), 8);
        assert_eq!(c.last().unwrap().end, 107);
        assert!(c.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn the_task_index_comes_from_slurm_or_kubernetes() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            task_index(env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap(),
            Some(3)
        );
        assert_eq!(
            task_index(env(&[("JOB_COMPLETION_INDEX", "7")])).unwrap(),
            Some(7)
        );
        assert_eq!(task_index(env(&[])).unwrap(), None);
        let e = task_index(env(&[("SLURM_ARRAY_TASK_ID", "x")])).unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID"), "{e}");
    }

    #[test]
    fn sbatch_words_split_like_a_shell() {
        assert_eq!(
            split_args(r#"--gres=gpu:1  --time 1:00:00 --comment "two words""#).unwrap(),
            vec![
                "--gres=gpu:1",
                "--time",
                "1:00:00",
                "--comment",
                "two words"
            ]
        );
        assert!(split_args("--x 'open").is_err());
        assert!(split_args("  ").unwrap().is_empty());
    }

    #[test]
    fn the_queue_parses_expanded_and_pending_ranges() {
        let q = parse_queue("0|RUNNING\n2-4%1|PENDING\n");
        assert_eq!(q.get(&0).map(String::as_str), Some("RUNNING"));
        assert_eq!(q.len(), 4);
        assert_eq!(q.get(&4).map(String::as_str), Some("PENDING"));
    }

    #[test]
    fn slurm_errors_are_one_line_without_the_prefix() {
        let e = "sbatch: error: invalid partition specified: nope\n\
                 sbatch: error: Batch job submission failed: Invalid partition name specified\n";
        assert_eq!(
            error_message(e),
            "invalid partition specified: nope; \
             Batch job submission failed: Invalid partition name specified"
        );
    }

    fn settings() -> EvalSettings {
        EvalSettings {
            metric: crate::results::Metric::Perplexity,
            data_hash: "text:ab".into(),
            ctx: 16,
            max_tokens: None,
            dtype: crate::results::EvalDType::F32,
        }
    }

    fn stored(step: u64, ctx: usize) -> ResultRecord {
        serde_json::from_value(serde_json::json!({
            "source": "run", "end_step": step, "steps": [step], "scheme": "raw", "k": 1,
            "spike_aware": false, "weights": [1.0], "data": "heldout.txt",
            "data_hash": "text:ab", "ctx": ctx, "max_tokens": null, "dtype": "f32",
            "device": "cpu", "mean_nll": 2.0, "ppl": 7.39, "bits_per_byte": null,
            "predicted_tokens": 10, "tool_version": "t", "unix_time": 0
        }))
        .unwrap()
    }

    fn plan_of(tasks: Vec<Vec<u64>>) -> ArrayPlan {
        ArrayPlan {
            id: "p".into(),
            source: "run".into(),
            store_dir: PathBuf::from("/s"),
            eval: EvalConfig {
                data: crate::eval::EvalData::Text("/h.txt".into()),
                data_label: "h.txt".into(),
                data_hash: "text:ab".into(),
                ctx: Some(16),
                max_tokens: None,
                batch: 8,
                device: candle_core::Device::Cpu,
                fused: crate::kernels::Fused::On,
                tasks: Vec::new(),
            },
            device: DevicePref::Cpu,
            settings: settings(),
            task_settings: Vec::new(),
            memory_mib: None,
            keep_models: None,
            scheme: Scheme::Uniform,
            tasks: tasks
                .into_iter()
                .map(|t| {
                    t.into_iter()
                        .map(|step| Target::Checkpoint { step })
                        .collect()
                })
                .collect(),
            job_id: Some(7),
            created_unix: 0,
        }
    }

    #[test]
    fn task_states_come_from_the_store_and_the_queue() {
        let plan = plan_of(vec![vec![1, 2], vec![3, 4], vec![5], vec![6]]);
        // Task 0 complete; task 1 half (and a result at another ctx does not count).
        let records = vec![stored(1, 16), stored(2, 16), stored(3, 16), stored(4, 8)];
        let queue = parse_queue("1|RUNNING\n2|PENDING\n");
        let st = task_status(&plan, &records, Some(&queue));
        let states: Vec<TaskState> = st.iter().map(|t| t.state).collect();
        use TaskState::*;
        assert_eq!(states, vec![Done, Running, Pending, Failed]);
        assert_eq!((st[1].done, st[1].windows), (1, 2));
        let p = SweepProgress {
            id: plan.id.clone(),
            job_id: 7,
            tasks: st,
            queue_error: None,
        };
        assert_eq!(
            p.summary(),
            "job 7: 1/4 tasks done, 1 running, 1 pending, 1 failed; 3/6 windows stored"
        );
        assert!(!p.finished());
        // Running and pending tasks keep their windows from a new submission.
        let flight: Vec<u64> = in_flight(std::slice::from_ref(&plan), &[p])
            .into_iter()
            .map(|(_, t)| t.end_step())
            .collect();
        assert_eq!(flight, vec![3, 4, 5]);
        // No answer from the queue: unknown, never "failed".
        let st = task_status(&plan, &records, None);
        assert_eq!(st[3].state, Unknown);
        assert_eq!(st[0].state, Done);
    }

    #[test]
    fn the_script_quotes_its_paths() {
        let s = batch_script(Path::new("/opt/my lawa/lawa"), Path::new("/s/it's.json"));
        assert!(
            s.contains(r"exec '/opt/my lawa/lawa' sweep-task '/s/it'\''s.json'"),
            "{s}"
        );
    }
}
