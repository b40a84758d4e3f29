//! Spike regions of a loss series (pure functions).
