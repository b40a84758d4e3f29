//! Talking to the hub through hf-hub: listing branches and fetching one checkpoint's files into
//! the cache, with our own retry loop (so the user hears about rate limits and dropped
//! connections through the [`Reporter`]), cancellation, and a check of every downloaded blob.
//!
//! hf-hub's cached download writes `blobs/<etag>.incomplete` and renames it to `blobs/<etag>`
//! when the body is complete, then points `snapshots/<commit>/<file>` at it. It restarts rather
//! than resumes an interrupted file (the `.incomplete` is truncated on the next try), which is
//! clean. It does not check the status of the body request, so an error page could be renamed
//! into place as a blob: every blob we fetch is therefore checked against the size the tree
//! listing gave and, for LFS files (named by their sha256), against its hash, and removed if it
//! does not match.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use hf_hub::repository::RepoTreeEntry;
use hf_hub::{HFClient, HFError};
use sha2::{Digest, Sha256};

use super::cache::{self, Weights};
use super::error::{is_disk_full, retry_kind, root_message, HubError, Retry};
use super::{HubOptions, RepoId};
use crate::progress::{Reporter, Unit};

/// Connection refused / DNS failure: the hub is not there; do not make the user wait long.
const UNREACHABLE_RETRIES: u32 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Never sleep longer than this for one retry, whatever the server asks.
const MAX_DELAY: Duration = Duration::from_secs(120);
/// Report download progress at most every this many bytes (plus at the end of each file).
const REPORT_EVERY: u64 = 1 << 20;

pub(super) const STAGE: &str = "download";
/// Stage of the messages about requests that download nothing (listing).
const LIST_STAGE: &str = "hub";

/// Where a failed request was going, to name it in errors.
#[derive(Clone, Debug)]
struct Target<'a> {
    repo: &'a RepoId,
    revision: Option<&'a str>,
    file: Option<&'a str>,
}

impl Target<'_> {
    fn what(&self) -> String {
        match (self.revision, self.file) {
            (Some(r), Some(f)) => format!("{}@{r}/{f}", self.repo),
            (Some(r), None) => format!("{}@{r}", self.repo),
            _ => format!("the branches of {}", self.repo),
        }
    }
}

/// Byte counts of one checkpoint download, shared with hf-hub's progress callback.
struct Bytes {
    reporter: Reporter,
    label: Mutex<String>,
    /// Bytes of the files finished before the current one.
    base: AtomicU64,
    current: AtomicU64,
    last_reported: AtomicU64,
    /// Unknown while the config and index are fetched, before the file list is known.
    total: Option<u64>,
}

impl Bytes {
    fn done(&self) -> u64 {
        self.base.load(Ordering::Relaxed) + self.current.load(Ordering::Relaxed)
    }

    fn report(&self, detail: String) {
        self.reporter
            .report_detail(STAGE, self.done(), self.total, Unit::Bytes, Some(detail));
    }

    fn start_file(&self, label: String) {
        self.current.store(0, Ordering::Relaxed);
        if let Ok(mut l) = self.label.lock() {
            *l = label.clone();
        }
        self.report(label);
    }

    fn finish_file(&self, size: u64) {
        self.base.fetch_add(size, Ordering::Relaxed);
        self.current.store(0, Ordering::Relaxed);
        let label = self.label.lock().map(|l| l.clone()).unwrap_or_default();
        self.report(label);
    }
}

struct Handler(Arc<Bytes>);

impl ProgressHandler for Handler {
    fn on_progress(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Download(DownloadEvent::Progress { files }) => {
                for f in files {
                    self.0.current.store(f.bytes_completed, Ordering::Relaxed);
                }
            }
            // Xet-backed files report the batch, which is our one file.
            ProgressEvent::Download(DownloadEvent::AggregateProgress {
                bytes_completed, ..
            }) => self.0.current.store(*bytes_completed, Ordering::Relaxed),
            _ => return,
        }
        let done = self.0.done();
        let last = self.0.last_reported.load(Ordering::Relaxed);
        if done.saturating_sub(last) >= REPORT_EVERY || done < last {
            self.0.last_reported.store(done, Ordering::Relaxed);
            let label = self.0.label.lock().map(|l| l.clone()).unwrap_or_default();
            self.0.report(label);
        }
    }
}

pub(super) struct Session<'a> {
    client: HFClient,
    opts: &'a HubOptions,
    reporter: &'a Reporter,
}

impl<'a> Session<'a> {
    pub fn new(opts: &'a HubOptions, reporter: &'a Reporter) -> Result<Self, HubError> {
        let setup_error = |message: String| HubError::Hub {
            what: format!("the endpoint {}", opts.endpoint),
            message,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        let ua = format!("lawa/{}; hf-hub/1.0", env!("CARGO_PKG_VERSION"));
        headers.insert(
            reqwest::header::USER_AGENT,
            reqwest::header::HeaderValue::from_str(&ua).map_err(|e| setup_error(e.to_string()))?,
        );
        // Our own client only to bound stalls: hf-hub's sets no timeouts.
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(opts.read_timeout)
            .build()
            .map_err(|e| setup_error(root_message(&e)))?;
        let mut b = HFClient::builder()
            .endpoint(opts.endpoint.clone())
            .cache_dir(opts.cache_dir.clone())
            .client(http)
            // Retries are ours: they report to the user and honour Retry-After.
            .retry_max_attempts(0);
        if let Some(t) = &opts.token {
            b = b.token(t.clone());
        }
        let client = b.build().map_err(|e| setup_error(root_message(&e)))?;
        Ok(Self {
            client,
            opts,
            reporter,
        })
    }

    /// All branches of the repo with the commits they point to (one small request).
    pub async fn list_branches(&self, repo: &RepoId) -> Result<Vec<(String, String)>, HubError> {
        let hrepo = self.client.model(&repo.owner, &repo.name);
        let target = Target {
            repo,
            revision: None,
            file: None,
        };
        let refs = self
            .retrying(&target, None, || hrepo.list_refs().send())
            .await?;
        Ok(refs
            .branches
            .into_iter()
            .map(|b| (b.name, b.target_commit))
            .collect())
    }

    /// Fetches the files of one checkpoint that are not in the cache yet; returns its snapshot
    /// folder (`<cache>/models--ORG--NAME/snapshots/<commit>`).
    pub async fn download_checkpoint(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<PathBuf, HubError> {
        let hrepo = self.client.model(&repo.owner, &repo.name);
        let bytes = Arc::new(Bytes {
            reporter: self.reporter.clone(),
            label: Mutex::new(String::new()),
            base: AtomicU64::new(0),
            current: AtomicU64::new(0),
            last_reported: AtomicU64::new(0),
            total: None,
        });

        // config.json through the branch name: resolves the branch to its commit and writes
        // refs/<branch>, as huggingface_hub does.
        let config = self
            .fetch_file(
                &hrepo,
                repo,
                revision,
                revision,
                "config.json",
                None,
                &bytes,
            )
            .await?;
        let snapshot = config
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| HubError::Hub {
                what: format!("{repo}@{revision}"),
                message: format!("unexpected cache path {}", config.display()),
            })?;
        let commit = snapshot
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(revision)
            .to_string();

        let target = Target {
            repo,
            revision: Some(revision),
            file: None,
        };
        let tree: Vec<(String, u64)> = self
            .retrying(&target, None, || async {
                let stream = hrepo.list_tree().revision(commit.clone()).send()?;
                futures::pin_mut!(stream);
                let mut files = Vec::new();
                while let Some(entry) = stream.next().await {
                    if let RepoTreeEntry::File { path, size, .. } = entry? {
                        files.push((path, size));
                    }
                }
                Ok(files)
            })
            .await?;
        let size_of = |name: &str| tree.iter().find(|(p, _)| p == name).map(|(_, s)| *s);

        let weights =
            cache::choose_weights(tree.iter().map(|(p, _)| p.as_str())).ok_or_else(|| {
                HubError::NoWeights {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                    files: tree
                        .iter()
                        .map(|(p, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
        let mut wanted: Vec<String> = Vec::new();
        match weights {
            Weights::Single(f) => wanted.push(f),
            Weights::Sharded(index) => {
                let path = self
                    .fetch_file(
                        &hrepo,
                        repo,
                        &commit,
                        revision,
                        &index,
                        size_of(&index),
                        &bytes,
                    )
                    .await?;
                let json = std::fs::read_to_string(&path).map_err(|e| HubError::io(&path, e))?;
                let shards =
                    cache::shards_of_index(&json).map_err(|message| HubError::BadIndex {
                        repo: repo.to_string(),
                        revision: revision.to_string(),
                        file: index.clone(),
                        message,
                    })?;
                if let Some(missing) = shards.iter().find(|s| size_of(s).is_none()) {
                    return Err(HubError::FileNotFound {
                        repo: repo.to_string(),
                        revision: revision.to_string(),
                        file: missing.clone(),
                    });
                }
                wanted.extend(shards);
            }
        }
        if size_of("tokenizer.json").is_some() {
            wanted.push("tokenizer.json".into());
        }

        let todo: Vec<(String, Option<u64>)> = wanted
            .into_iter()
            .filter(|f| !snapshot.join(f).exists())
            .map(|f| {
                let size = size_of(&f);
                (f, size)
            })
            .collect();
        let total: u64 = todo.iter().filter_map(|(_, s)| *s).sum();
        let bytes = Arc::new(Bytes {
            reporter: self.reporter.clone(),
            label: Mutex::new(String::new()),
            base: AtomicU64::new(0),
            current: AtomicU64::new(0),
            last_reported: AtomicU64::new(0),
            total: Some(total),
        });
        for (file, size) in &todo {
            self.fetch_file(&hrepo, repo, &commit, revision, file, *size, &bytes)
                .await?;
        }
        Ok(snapshot)
    }

    /// One file into the cache, retried, cancellable, and checked.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_file(
        &self,
        hrepo: &hf_hub::repository::HFRepository<hf_hub::RepoTypeModel>,
        repo: &RepoId,
        revision: &str,
        shown: &str,
        file: &str,
        size: Option<u64>,
        bytes: &Arc<Bytes>,
    ) -> Result<PathBuf, HubError> {
        // Messages name the branch the user asked for, not the commit it resolved to.
        let target = Target {
            repo,
            revision: Some(shown),
            file: Some(file),
        };
        let what = target.what();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            bytes.start_file(format!("{repo}@{shown} {file}"));
            let path = self
                .retrying(&target, Some(bytes), || {
                    hrepo
                        .download_file()
                        .filename(file)
                        .revision(revision)
                        .progress(hf_hub::progress::Progress::new(Handler(bytes.clone())))
                        .send()
                })
                .await?;
            match verify_blob(&path, size, self.reporter) {
                Ok(len) => {
                    bytes.finish_file(size.unwrap_or(len));
                    return Ok(path);
                }
                Err(Verify::Cancelled) => return Err(HubError::Cancelled),
                Err(Verify::Bad(detail)) => {
                    remove_bad_blob(&path);
                    if attempt > self.opts.retries {
                        return Err(HubError::Corrupt { what, detail });
                    }
                    let delay = self.backoff(attempt);
                    bytes.report(format!(
                        "{what} arrived corrupt ({detail}); downloading again in {} (retry {attempt} of {})",
                        secs(delay),
                        self.opts.retries
                    ));
                    self.sleep(delay).await?;
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << (attempt.saturating_sub(1)).min(16);
        (self.opts.retry_delay * factor).min(MAX_DELAY)
    }

    async fn sleep(&self, d: Duration) -> Result<(), HubError> {
        cancellable(self.reporter, tokio::time::sleep(d)).await
    }

    /// Runs `op` until it succeeds, retrying rate limits and broken connections with backoff
    /// (telling the user through the reporter), and turns the final error into a [`HubError`].
    async fn retrying<T, F, Fut>(
        &self,
        target: &Target<'_>,
        bytes: Option<&Arc<Bytes>>,
        mut op: F,
    ) -> Result<T, HubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HFError>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.reporter.check()?;
            let err = match cancellable(self.reporter, op()).await? {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let kind = retry_kind(&err);
            let limit = match kind {
                Retry::Unreachable => UNREACHABLE_RETRIES.min(self.opts.retries),
                Retry::No => 0,
                _ => self.opts.retries,
            };
            if attempt > limit {
                return Err(self.final_error(err, target, attempt));
            }
            let (delay, why) = match kind {
                Retry::RateLimited(after) => (
                    after
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(MAX_DELAY),
                    "rate limited by the hub".to_string(),
                ),
                Retry::Locked => (
                    self.backoff(attempt),
                    "another process is downloading the same file".to_string(),
                ),
                _ => (
                    self.backoff(attempt),
                    format!("connection problem ({})", short(&root_message(&err))),
                ),
            };
            let msg = format!(
                "{why}; retrying {} in {} (retry {attempt} of {limit})",
                target.what(),
                secs(delay)
            );
            match bytes {
                Some(b) => b.report(msg),
                None => self
                    .reporter
                    .report_detail(LIST_STAGE, 0, None, Unit::Files, Some(msg)),
            }
            self.sleep(delay).await?;
        }
    }

    fn final_error(&self, err: HFError, t: &Target<'_>, attempts: u32) -> HubError {
        let repo = t.repo.to_string();
        let what = t.what();
        match err {
            HFError::RepoNotFound { .. } => HubError::RepoNotFound {
                repo,
                endpoint: self.opts.endpoint.clone(),
            },
            // The hub answers 401 for private *and* missing repos when no token is sent.
            HFError::AuthRequired { .. } if self.opts.token.is_some() => {
                HubError::TokenRejected { repo }
            }
            HFError::AuthRequired { .. } => HubError::AuthRequired { repo },
            HFError::Forbidden { .. } => HubError::Forbidden { repo },
            HFError::RevisionNotFound { revision, .. } => {
                HubError::RevisionNotFound { repo, revision }
            }
            HFError::EntryNotFound { path, .. } => match (t.revision, t.file) {
                // hf-hub does not say whether the file or the branch is missing.
                (Some(rev), Some("config.json")) => HubError::NoConfig {
                    repo,
                    revision: rev.to_string(),
                },
                (rev, _) => HubError::FileNotFound {
                    repo,
                    revision: rev.unwrap_or("main").to_string(),
                    file: path,
                },
            },
            HFError::RateLimited { .. } => HubError::RateLimited { what, attempts },
            HFError::Request { .. } => HubError::Network {
                endpoint: self.opts.endpoint.clone(),
                what,
                attempts,
                message: root_message(&err),
            },
            HFError::Io(e) if is_disk_full(&e) => HubError::DiskFull {
                what,
                dir: self.opts.cache_dir.clone(),
            },
            HFError::Io(e) => HubError::Io {
                path: self.opts.cache_dir.join(cache::repo_folder(t.repo)),
                source: e,
            },
            HFError::CacheLockTimeout { path } => HubError::Locked { what, path },
            other => HubError::Hub {
                what,
                message: root_message(&other),
            },
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Polls the cancel flag while `fut` runs; dropping hf-hub's future mid-body leaves only a
/// `.incomplete` file, which the next try truncates.
pub(super) async fn cancellable<T>(
    reporter: &Reporter,
    fut: impl Future<Output = T>,
) -> Result<T, HubError> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            v = &mut fut => return Ok(v),
            _ = tokio::time::sleep(Duration::from_millis(50)) => reporter.check()?,
        }
    }
}

enum Verify {
    Bad(String),
    Cancelled,
}

/// Checks a downloaded file: its size against the tree listing, and for blobs named by a
/// sha256 (LFS files) the hash of the content. Returns the size.
fn verify_blob(path: &Path, size: Option<u64>, reporter: &Reporter) -> Result<u64, Verify> {
    let blob = std::fs::canonicalize(path).map_err(|e| Verify::Bad(format!("unreadable: {e}")))?;
    let len = std::fs::metadata(&blob)
        .map_err(|e| Verify::Bad(format!("unreadable: {e}")))?
        .len();
    if let Some(expected) = size {
        if len != expected {
            return Err(Verify::Bad(format!("{len} bytes, expected {expected}")));
        }
    }
    let etag = blob.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hash = sha256_file(&blob, reporter)?;
        if !hash.eq_ignore_ascii_case(etag) {
            return Err(Verify::Bad(format!("sha256 {hash} does not match {etag}")));
        }
    }
    Ok(len)
}

fn sha256_file(path: &Path, reporter: &Reporter) -> Result<String, Verify> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Verify::Bad(format!("unreadable: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        if reporter.check().is_err() {
            return Err(Verify::Cancelled);
        }
        let n = f
            .read(&mut buf)
            .map_err(|e| Verify::Bad(format!("unreadable: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Removes a bad blob and the snapshot pointer to it, so nothing in the cache looks complete.
fn remove_bad_blob(pointer: &Path) {
    if let Ok(blob) = std::fs::canonicalize(pointer) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(pointer);
}
