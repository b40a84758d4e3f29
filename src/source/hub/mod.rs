//! Hugging Face hub trajectories (`hf:ORG/NAME`): one checkpoint per git branch, `step0` …
//! `step143000` as in `EleutherAI/pythia-*`.
//!
//! Listing asks the hub's refs API for the branches (one small request; nothing large is
//! downloaded) and keeps that list for offline use. [`download_checkpoint`] fetches only the
//! files one checkpoint needs (`config.json`, the weights — one file or the shards an index
//! names — and `tokenizer.json` when there is one) through hf-hub into the standard Hugging Face
//! cache, `models--ORG--NAME/{blobs,refs,snapshots}`, the layout Python's `huggingface_hub` uses,
//! so downloads are shared with the user's other tools.
//!
//! Everything here is told where and how by [`HubOptions`] (built from `HF_ENDPOINT`,
//! `HF_HUB_CACHE`/`HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE`, `--offline` and lawa's retry knobs by
//! [`crate::config`]); nothing here reads the environment.
//!
//! Everything here is blocking: each call runs its own small tokio runtime on a scoped thread,
//! so it may be called from plain threads, `spawn_blocking` jobs, or even async code.

mod cache;
mod error;
mod fetch;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub use cache::{choose_weights, Weights};
pub use error::HubError;

use super::{Checkpoint, Location, Metrics, Trajectory};
use crate::progress::Reporter;

/// A model repo on the hub, `ORG/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoId {
    pub owner: String,
    pub name: String,
}

impl RepoId {
    /// `hf:ORG/NAME` or `ORG/NAME`.
    pub fn parse(spec: &str) -> Result<Self, HubError> {
        let bad = || HubError::InvalidRepo {
            spec: spec.to_string(),
        };
        let id = spec
            .strip_prefix("hf:")
            .unwrap_or(spec)
            .trim_end_matches('/');
        let (owner, name) = id.split_once('/').ok_or_else(bad)?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 96
                && !s.contains("..")
                && !s.contains("--")
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !ok(owner) || !ok(name) {
            return Err(bad());
        }
        Ok(Self {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Tokens per step for runs whose batch size is known (the Pythia suite).
pub fn tokens_per_step(repo: &RepoId) -> Option<u64> {
    super::known_tokens_per_step(&repo.to_string())
}

/// The step of a branch named `step<digits>` (`step0`, `step143000`); other branches
/// (`main`, tags, …) are not checkpoints.
pub fn branch_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where and how to reach the hub, and where the cache is.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// `https://huggingface.co` unless `HF_ENDPOINT` says otherwise; no trailing `/`.
    pub endpoint: String,
    /// The hub cache (`…/huggingface/hub`), holding `models--ORG--NAME` folders.
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    /// Work from the cache only; never touch the network.
    pub offline: bool,
    /// Retries after a rate limit, a dropped connection or a corrupt download.
    pub retries: u32,
    /// First backoff delay; doubles with each retry (a 429's `Retry-After` wins).
    pub retry_delay: Duration,
    /// Where the last online listing of each repo is kept for offline mode (`None`: not kept).
    pub listing_dir: Option<PathBuf>,
    /// A connection that sends nothing for this long is dropped and retried (hf-hub sets no
    /// timeout of its own, so a stalled transfer would otherwise hang forever).
    pub read_timeout: Duration,
}

/// Lists the step branches of a hub repo as a trajectory (no retry messages).
pub fn open(spec: &str, opts: &HubOptions) -> Result<Trajectory, HubError> {
    open_with(spec, opts, &Reporter::silent())
}

/// Lists the step branches of a hub repo, sorted by step, with tokens seen where known.
///
/// Online: one request to the refs API; the list is kept for offline use. If the hub cannot be
/// reached, falls back to the cache with a warning. Offline: lists what the last online listing
/// and the cache's refs know, and warns about the checkpoints that are not downloaded.
pub fn open_with(
    spec: &str,
    opts: &HubOptions,
    reporter: &Reporter,
) -> Result<Trajectory, HubError> {
    let repo = RepoId::parse(spec)?;
    if opts.offline {
        return offline_trajectory(&repo, opts, None);
    }
    let listed = block_on(async {
        let session = fetch::Session::new(opts, reporter)?;
        session.list_branches(&repo).await
    })?;
    let branches = match listed {
        Ok(b) => b,
        Err(e @ HubError::Network { .. }) => {
            let note = format!("{e}; listed from the cache instead");
            return offline_trajectory(&repo, opts, Some(note)).map_err(|_| e);
        }
        Err(e) => return Err(e),
    };
    let mut t = trajectory_from_branches(&repo, &branches)?;
    if let Some(dir) = &opts.listing_dir {
        let listing = cache::SavedListing {
            repo: repo.to_string(),
            endpoint: opts.endpoint.clone(),
            branches,
        };
        if let Err(e) = cache::write_listing(dir, &repo, &listing) {
            t.warnings.push(format!(
                "could not keep the listing for offline use in {}: {e}",
                dir.display()
            ));
        }
    }
    Ok(t)
}

/// The trajectory of a repo's branches (`(name, commit)`): step branches sorted by step;
/// `main` and other names skipped; a step named twice (`step1000`, `step01000`) kept once with
/// a warning.
pub fn trajectory_from_branches(
    repo: &RepoId,
    branches: &[(String, String)],
) -> Result<Trajectory, HubError> {
    let tps = tokens_per_step(repo);
    let mut by_step: BTreeMap<u64, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut others = Vec::new();
    for (name, _) in branches {
        match branch_step(name) {
            Some(step) => {
                if let Some(first) = by_step.get(&step) {
                    let (keep, drop) = if first.len() <= name.len() {
                        (first.clone(), name.clone())
                    } else {
                        (name.clone(), first.clone())
                    };
                    warnings.push(format!(
                        "branches {keep} and {drop} are both step {step}; using {keep}"
                    ));
                    by_step.insert(step, keep);
                } else {
                    by_step.insert(step, name.clone());
                }
            }
            None => others.push(name.clone()),
        }
    }
    if by_step.is_empty() {
        return Err(HubError::NoStepBranches {
            repo: repo.to_string(),
            branches: if others.is_empty() {
                "none".into()
            } else {
                abbreviate(&others, 8)
            },
        });
    }
    others.retain(|n| n != "main");
    if !others.is_empty() {
        warnings.push(format!(
            "skipped branches that are not steps: {}",
            abbreviate(&others, 8)
        ));
    }
    let checkpoints = by_step
        .into_iter()
        .map(|(step, name)| Checkpoint {
            step,
            tokens: tps.map(|t| step.saturating_mul(t)),
            location: Location::Hub {
                repo: repo.to_string(),
                revision: name.clone(),
            },
            name,
        })
        .collect();
    // OLMo's branches state tokens (`stage1-step1000-tokens4B`): fill_tokens reads them.
    let mut t = Trajectory {
        name: repo.to_string(),
        source: format!("hf:{repo}"),
        checkpoints,
        metrics: Metrics::default(),
        tokens_per_step: tps,
        warnings,
        notes: Vec::new(),
    };
    super::fill_tokens(&mut t);
    Ok(t)
}

fn offline_trajectory(
    repo: &RepoId,
    opts: &HubOptions,
    note: Option<String>,
) -> Result<Trajectory, HubError> {
    let repo_dir = cache::repo_dir(&opts.cache_dir, repo);
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    if let Some(listing) = opts
        .listing_dir
        .as_deref()
        .and_then(|d| cache::read_listing(d, repo))
    {
        known.extend(listing.branches);
    }
    // What is on disk wins over an older listing.
    known.extend(cache::cached_refs(&repo_dir));
    let branches: Vec<(String, String)> = known.into_iter().collect();
    let mut t = trajectory_from_branches(repo, &branches).map_err(|_| HubError::NothingCached {
        repo: repo.to_string(),
        dir: opts.cache_dir.clone(),
    })?;
    let missing: Vec<String> = t
        .checkpoints
        .iter()
        .filter(|c| cached_checkpoint(repo, &c.name, opts).is_none())
        .map(|c| c.name.clone())
        .collect();
    if !missing.is_empty() {
        t.warnings.insert(
            0,
            format!(
                "offline: {} of {} checkpoints are not in the cache ({}): {}",
                missing.len(),
                t.checkpoints.len(),
                opts.cache_dir.display(),
                abbreviate(&missing, 8)
            ),
        );
    }
    if let Some(note) = note {
        t.warnings.insert(0, note);
    }
    Ok(t)
}

/// The snapshot folder of a checkpoint when all its files are in the cache (no network).
pub fn cached_checkpoint(repo: &RepoId, revision: &str, opts: &HubOptions) -> Option<PathBuf> {
    let repo_dir = cache::repo_dir(&opts.cache_dir, repo);
    let commit = cache::resolve_ref(&repo_dir, revision)?;
    let snapshot = repo_dir.join("snapshots").join(commit);
    cache::complete_snapshot(&snapshot).map(|_| snapshot)
}

/// Where a checkpoint already is on disk, without downloading anything: a local one's path if
/// it exists, a hub one's snapshot folder if it is complete in the cache `opts.cache_dir`.
/// Lets `lawa list` and the explorer show what is local.
pub fn cached_location(location: &Location, opts: &HubOptions) -> Option<PathBuf> {
    match location {
        Location::Local { path } => path.exists().then(|| path.clone()),
        Location::Hub { repo, revision } => {
            let repo = RepoId::parse(repo).ok()?;
            let repo_dir = cache::repo_dir(&opts.cache_dir, &repo);
            let commit = cache::resolve_ref(&repo_dir, revision)?;
            let snapshot = repo_dir.join("snapshots").join(commit);
            cache::complete_snapshot(&snapshot).map(|_| snapshot)
        }
    }
}

/// The local folder of a hub checkpoint (`…/snapshots/<commit>`, an HF model dir), downloading
/// the files that are not in the cache yet, with byte progress (stage `download`,
/// [`crate::progress::Unit::Bytes`]) and retry messages through `reporter`. Cancellable; an
/// interrupted download leaves only `.incomplete` files, never a file that looks complete.
pub fn download_checkpoint(
    repo: &str,
    revision: &str,
    opts: &HubOptions,
    reporter: &Reporter,
) -> Result<PathBuf, HubError> {
    let repo = RepoId::parse(repo)?;
    if let Some(snapshot) = cached_checkpoint(&repo, revision, opts) {
        return Ok(snapshot);
    }
    if opts.offline {
        return Err(HubError::NotCached {
            what: format!("{repo}@{revision}"),
            dir: opts.cache_dir.clone(),
        });
    }
    // Jobs of one process asking for the same checkpoint (overlapping windows in a sweep)
    // take turns; the later ones then find it in the cache.
    let key = format!("{}|{repo}@{revision}", opts.cache_dir.display());
    let _turn = wait_turn(&key, reporter)?;
    if let Some(snapshot) = cached_checkpoint(&repo, revision, opts) {
        return Ok(snapshot);
    }
    let snapshot = block_on(async {
        let session = fetch::Session::new(opts, reporter)?;
        session.download_checkpoint(&repo, revision).await
    })??;
    if cache::complete_snapshot(&snapshot).is_none() {
        return Err(HubError::Hub {
            what: format!("{repo}@{revision}"),
            message: format!("downloaded, but {} is incomplete", snapshot.display()),
        });
    }
    Ok(snapshot)
}

/// Checkpoints being downloaded by this process.
static IN_FLIGHT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Marks `key` as being downloaded by this thread until dropped.
struct Turn(String);

impl Drop for Turn {
    fn drop(&mut self) {
        if let Ok(mut set) = IN_FLIGHT.lock() {
            set.remove(&self.0);
        }
    }
}

/// Waits (cancellably) until no other thread of this process is downloading `key`.
fn wait_turn(key: &str, reporter: &Reporter) -> Result<Turn, HubError> {
    let mut told = false;
    loop {
        {
            let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
            if set.insert(key.to_string()) {
                return Ok(Turn(key.to_string()));
            }
        }
        reporter.check()?;
        if !told {
            told = true;
            let what = key.rsplit('|').next().unwrap_or(key);
            reporter.report_detail(
                fetch::STAGE,
                0,
                None,
                crate::progress::Unit::Bytes,
                Some(format!("waiting for another job downloading {what}")),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a future to completion on a fresh runtime on its own (scoped) thread,
/// so callers need no runtime and may even be inside one (the TUI runs tokio).
fn block_on<T: Send>(fut: impl Future<Output = T> + Send) -> Result<T, HubError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // Multi-threaded: hf-hub's Xet transfers spawn blocking work and pollers.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| HubError::Hub {
                    what: "the download runtime".into(),
                    message: e.to_string(),
                })?;
            Ok(rt.block_on(fut))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(HubError::Hub {
                what: "the download thread".into(),
                message: "panicked".into(),
            })
        })
    })
}

/// `a, b, c, …, y, z (N more)`: long branch lists on one line.
fn abbreviate(items: &[String], max: usize) -> String {
    if items.len() <= max {
        return items.join(", ");
    }
    let head = max / 2;
    let tail = max - head;
    format!(
        "{}, …, {} ({} in all)",
        items[..head].join(", "),
        items[items.len() - tail..].join(", "),
        items.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        let r = RepoId::parse("hf:EleutherAI/pythia-160m").unwrap();
        assert_eq!(
            (r.owner.as_str(), r.name.as_str()),
            ("EleutherAI", "pythia-160m")
        );
        assert_eq!(r.to_string(), "EleutherAI/pythia-160m");
        assert_eq!(RepoId::parse("Org/x.y_z").unwrap().name, "x.y_z");
        for bad in [
            "hf:", "pythia", "a/b/c", "/b", "a/", "a/b c", "a/../b", "a--b/c", "a/b?x",
        ] {
            let e = RepoId::parse(bad).unwrap_err();
            assert!(matches!(e, HubError::InvalidRepo { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn step_branches() {
        assert_eq!(branch_step("step0"), Some(0));
        assert_eq!(branch_step("step143000"), Some(143000));
        for no in ["main", "step", "step-1", "step1a", "Step1", "v1.0", "stepx"] {
            assert_eq!(branch_step(no), None, "{no}");
        }
    }

    #[test]
    fn pythia_tokens() {
        let p = RepoId::parse("EleutherAI/pythia-1b-deduped").unwrap();
        assert_eq!(tokens_per_step(&p), Some(2_097_152));
        assert_eq!(
            tokens_per_step(&RepoId::parse("Other/pythia-1b").unwrap()),
            None
        );
        assert_eq!(
            tokens_per_step(&RepoId::parse("EleutherAI/gpt-j-6b").unwrap()),
            None
        );
    }

    fn br(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), "c".repeat(40)))
            .collect()
    }

    #[test]
    fn trajectory_is_sorted_by_step_and_skips_main() {
        let repo = RepoId::parse("EleutherAI/pythia-70m").unwrap();
        let t = trajectory_from_branches(
            &repo,
            &br(&[
                "main",
                "step1000",
                "step2",
                "step143000",
                "step0",
                "step512",
            ]),
        )
        .unwrap();
        assert_eq!(t.steps(), vec![0, 2, 512, 1000, 143000]);
        assert_eq!(t.checkpoints[3].tokens, Some(1000 * 2_097_152));
        assert_eq!(t.checkpoints[3].name, "step1000");
        assert_eq!(
            t.checkpoints[3].location,
            Location::Hub {
                repo: "EleutherAI/pythia-70m".into(),
                revision: "step1000".into()
            }
        );
        assert_eq!(t.source, "hf:EleutherAI/pythia-70m");
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn duplicate_steps_and_other_branches_are_reported() {
        let repo = RepoId::parse("Org/run").unwrap();
        let t = trajectory_from_branches(&repo, &br(&["step01000", "step1000", "dev", "main"]))
            .unwrap();
        assert_eq!(t.steps(), vec![1000]);
        assert_eq!(t.checkpoints[0].name, "step1000");
        assert_eq!(t.checkpoints[0].tokens, None);
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("step01000") && t.warnings[0].contains("using step1000"));
        assert!(t.warnings[1].contains("dev") && !t.warnings[1].contains("main"));
    }

    #[test]
    fn no_step_branches_is_an_error_naming_the_branches() {
        let repo = RepoId::parse("Org/run").unwrap();
        let e = trajectory_from_branches(&repo, &br(&["main", "v1"])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("Org/run") && msg.contains("main, v1"), "{msg}");
    }

    #[test]
    fn abbreviation() {
        let items: Vec<String> = (0..20).map(|i| format!("step{i}")).collect();
        assert_eq!(abbreviate(&items[..3], 8), "step0, step1, step2");
        assert_eq!(
            abbreviate(&items, 4),
            "step0, step1, …, step18, step19 (20 in all)"
        );
    }
}
