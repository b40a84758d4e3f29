//! Averaging checkpoints: weight schemes (pure functions of steps) and the streaming weighted sum.
