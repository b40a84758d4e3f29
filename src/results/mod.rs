//! The per-trajectory results store (append-only) and the averaged-model cache.
