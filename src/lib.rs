//! lawa: explore latest-weight averaging (LAWA) of checkpoints along LLM training runs.
//!
//! This crate is the engine: it finds checkpoints ([`source`]), reads and writes their tensors
//! ([`checkpoint`]), averages them ([`average`]), runs the supported model families
//! ([`model`]) and evaluates them ([`eval`]). It knows nothing of the terminal; the `lawa` binary (CLI and TUI) is one
//! caller of it. Long-running functions take a [`progress::Reporter`] for progress and cancel.
//! Configuration is one [`Config`] the caller builds ([`config`]: the only place the environment
//! is read) and passes down.

pub mod average;
pub mod chart;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod display;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod jobs;
pub mod kernels;
pub mod model;
pub mod progress;
pub mod results;
pub mod source;
pub mod spikes;
pub mod sweep;
pub mod tasks;
pub mod train;

// The façade: what the binary and the tests use most, at the crate root. The modules stay the
// full paths.
pub use average::{average, AverageInput, AverageOptions, Scheme};
pub use checkpoint::{OutputDir, SafetensorsWriter, WeightsReader};
pub use config::{Config, Env};
pub use device::DevicePref;
pub use eval::{EvalData, EvalOptions, EvalResult};
pub use progress::{CancelToken, Reporter};
pub use results::{ResultRecord, ResultsStore};
pub use source::hub::HubOptions;
pub use source::{Checkpoint, Location, Trajectory};
