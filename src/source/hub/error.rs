//! What can go wrong with a hub trajectory, one line each, saying what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use hf_hub::HFError;

use crate::progress::Cancelled;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{spec}` is not a hub repo: expected ORG/NAME, e.g. hf:EleutherAI/pythia-160m")]
    InvalidRepo { spec: String },

    #[error("hub repo {repo} not found at {endpoint}")]
    RepoNotFound { repo: String, endpoint: String },

    #[error(
        "hub repo {repo} was not found or is private: set HF_TOKEN to a token that can read it \
         (or run `huggingface-cli login`)"
    )]
    AuthRequired { repo: String },

    #[error("the hub rejected the token (HF_TOKEN or the saved token) for {repo}: check that it is valid and can read this repo")]
    TokenRejected { repo: String },

    #[error("access to hub repo {repo} is forbidden: it may be gated (accept its terms on the hub) or the token lacks access")]
    Forbidden { repo: String },

    #[error("hub repo {repo} has no step branches (branches: {branches}); lawa reads one checkpoint per branch named stepN")]
    NoStepBranches { repo: String, branches: String },

    #[error("branch {revision} not found in hub repo {repo}")]
    RevisionNotFound { repo: String, revision: String },

    #[error("{repo}@{revision} has no config.json: is {revision} a branch of the repo? (`lawa list hf:{repo}` shows them)")]
    NoConfig { repo: String, revision: String },

    #[error("{file} not found in hub repo {repo} at {revision}")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },

    #[error(
        "{repo}@{revision} has no weights: expected model.safetensors, pytorch_model.bin or a \
         sharded index json (files: {files})"
    )]
    NoWeights {
        repo: String,
        revision: String,
        files: String,
    },

    #[error("{repo}@{revision}: {file} is not valid JSON: {message}")]
    BadIndex {
        repo: String,
        revision: String,
        file: String,
        message: String,
    },

    #[error(
        "the hub kept rate-limiting {what} ({attempts} attempts); wait a few minutes and try again \
         (a token in HF_TOKEN raises the limit)"
    )]
    RateLimited { what: String, attempts: u32 },

    #[error("network error talking to {endpoint} about {what} ({attempts} attempts): {message}; use --offline to work from the cache")]
    Network {
        endpoint: String,
        what: String,
        attempts: u32,
        message: String,
    },

    #[error("disk full while downloading {what} into {dir}: free some space or point HF_HUB_CACHE at a bigger disk")]
    DiskFull { what: String, dir: PathBuf },

    #[error("download of {what} was corrupt ({detail}) and has been removed from the cache; run again to re-download it")]
    Corrupt { what: String, detail: String },

    #[error("{what} is not in the Hugging Face cache at {dir} and offline mode is on (--offline / HF_HUB_OFFLINE)")]
    NotCached { what: String, dir: PathBuf },

    #[error(
        "offline: no checkpoints of {repo} known in the cache at {dir}; list it once online first"
    )]
    NothingCached { repo: String, dir: PathBuf },

    #[error(
        "another process holds the cache lock for {what} ({path}); try again when it has finished"
    )]
    Locked { what: String, path: PathBuf },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("hub error for {what}: {message}")]
    Hub { what: String, message: String },

    #[error("cancelled")]
    Cancelled,
}

impl From<Cancelled> for HubError {
    fn from(_: Cancelled) -> Self {
        HubError::Cancelled
    }
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Whether an hf-hub error is worth retrying, and after how long the server asked us to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// 429: the hub's `Retry-After` when it sent one.
    RateLimited(Option<Duration>),
    /// Could not connect at all: a few quick tries, then fall back to the cache.
    Unreachable,
    /// The connection broke (mid-body drop, reset, timeout) or a 5xx: try again.
    Transient,
    /// Another process holds hf-hub's lock on the blob (it waited 10 s): wait some more.
    Locked,
    No,
}

pub(crate) fn retry_kind(e: &HFError) -> Retry {
    match e {
        HFError::RateLimited { retry_after, .. } => Retry::RateLimited(*retry_after),
        HFError::Request { source, .. } if source.is_connect() => Retry::Unreachable,
        HFError::Request { .. } => Retry::Transient,
        HFError::Http { context } if context.status.is_server_error() => Retry::Transient,
        HFError::CacheLockTimeout { .. } => Retry::Locked,
        _ => Retry::No,
    }
}

pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122) on Linux; StorageFull / QuotaExceeded where std maps them.
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// One line, without the hub's multi-line bodies.
pub(crate) fn one_line(s: &str) -> String {
    let s: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect();
    s
}

/// The innermost message of an error chain (reqwest's top level only says "error decoding body").
pub(crate) fn root_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    one_line(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_recognised_by_kind_and_errno() {
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(28)));
        assert!(is_disk_full(&std::io::Error::from(
            std::io::ErrorKind::StorageFull
        )));
        assert!(!is_disk_full(&std::io::Error::from(
            std::io::ErrorKind::PermissionDenied
        )));
    }

    #[test]
    fn one_line_collapses_whitespace() {
        assert_eq!(one_line("a\n  b\r\n\tc "), "a b c");
    }
}
