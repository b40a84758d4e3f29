//! The terminal explorer: state, panels, key map, event loop. Lives in the binary: the engine
//! never sees the terminal.

pub mod app;
pub mod keys;
pub mod panels;
pub mod state;
pub mod theme;
pub mod ui;

#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod testdata;
