//! The per-trajectory results store (append-only).
//!
//! Every evaluation result is one JSON line in `results.jsonl` under the trajectory's data dir
//! (`$LAWA_HOME/trajectories/<hash of the source>/`). Lines are appended whole and fsynced, so a
//! crash or kill leaves at worst a torn last line, which is dropped (with a warning) on open.
//! `record` is what a line holds (`series`: which curve it is on), `store` reads and appends them, `paths` says where a
//! trajectory's store is and hashes eval files by content.

use std::path::{Path, PathBuf};

mod paths;
mod record;
mod series;
mod store;

pub use paths::{file_hash, hex16, source_key, trajectory_dir};
pub use record::{now_unix, EvalDType, EvalKey, EvalSettings, Metric, ResultRecord, TOOL_VERSION};
pub use series::{parse_stored_scheme, Averaging, Series, RAW};
pub use store::{tail_bytes, ResultsStore, SHARDS_DIR};

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Json { path: PathBuf, msg: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}
