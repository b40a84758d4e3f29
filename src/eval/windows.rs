//! The window convention of `lawa eval` (kept exactly; the README states it):
//! the first `max_tokens` tokens (all by default) are cut into consecutive non-overlapping
//! windows of `ctx` tokens; a remainder shorter than `ctx` is dropped, unless the whole input
//! is shorter than `ctx`, in which case it is one window; in each window every token after
//! the first is predicted.

use std::ops::Range;

/// Where the windows lie in the token stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Tokens per window (the whole input when it is shorter than the requested ctx).
    pub len: usize,
    pub count: usize,
}

impl Windows {
    /// Cuts `n_tokens` (already limited to `max_tokens`) into windows of `ctx`.
    /// `None` when fewer than two tokens leave nothing to predict.
    pub fn plan(n_tokens: usize, ctx: usize) -> Option<Windows> {
        if n_tokens < 2 || ctx < 2 {
            return None;
        }
        Some(if n_tokens < ctx {
            Windows {
                len: n_tokens,
                count: 1,
            }
        } else {
            Windows {
                len: ctx,
                count: n_tokens / ctx,
            }
        })
    }

    pub fn range(&self, i: usize) -> Range<usize> {
        i * self.len..(i + 1) * self.len
    }

    /// Tokens covered by all windows (a prefix of the stream).
    pub fn tokens_used(&self) -> usize {
        self.len * self.count
    }

    /// Predicted tokens: all but the first of each window.
    pub fn predicted(&self) -> usize {
        (self.len - 1) * self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainder_is_dropped() {
        let w = Windows::plan(10, 4).unwrap();
        assert_eq!(w, Windows { len: 4, count: 2 });
        assert_eq!(w.range(1), 4..8);
        assert_eq!((w.tokens_used(), w.predicted()), (8, 6));
    }

    #[test]
    fn exact_multiple_uses_everything() {
        assert_eq!(Windows::plan(12, 4), Some(Windows { len: 4, count: 3 }));
    }

    #[test]
    fn short_input_is_one_window() {
        let w = Windows::plan(3, 4).unwrap();
        assert_eq!(w, Windows { len: 3, count: 1 });
        assert_eq!(w.predicted(), 2);
    }

    #[test]
    fn nothing_to_predict() {
        assert_eq!(Windows::plan(1, 4), None);
        assert_eq!(Windows::plan(0, 4), None);
        assert_eq!(Windows::plan(10, 1), None);
    }
}
