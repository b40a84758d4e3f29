//! Which palette slot each curve's colour comes from, shared by the terminal theme and the
//! PNG/SVG export so that a series has the same colour in both.
//!
//! The first slots are roles (train loss as logged, smoothed, raw-checkpoint eval); averaged
//! series take the slots after them in order of their first result, cycling within those only:
//! however many schemes are shown, none gets a train-loss or raw colour. Neither palette holds
//! a red, the colour of the spike shading.

pub const TRAIN_RAW: usize = 0;
pub const TRAIN_SMOOTH: usize = 1;
pub const EVAL_RAW: usize = 2;
/// The slot of the first averaged series (`Curve::color` counts on from here).
pub const FIRST_AVERAGE: usize = 3;
/// Colours for averaged series in each palette.
pub const AVERAGES: usize = 5;
/// Entries of each palette: every renderer's palette has exactly this many.
pub const SLOTS: usize = FIRST_AVERAGE + AVERAGES;

/// The palette slot of curve colour index `color` (`Curve::color`).
pub fn slot(color: usize) -> usize {
    if color < FIRST_AVERAGE {
        color
    } else {
        FIRST_AVERAGE + (color - FIRST_AVERAGE) % AVERAGES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_cycle_within_their_own_slots() {
        assert_eq!(slot(TRAIN_RAW), TRAIN_RAW);
        assert_eq!(slot(EVAL_RAW), EVAL_RAW);
        assert_eq!(slot(FIRST_AVERAGE), FIRST_AVERAGE);
        // The sixth average wraps to the first average's colour, never to a role's.
        assert_eq!(slot(FIRST_AVERAGE + AVERAGES), FIRST_AVERAGE);
        for c in FIRST_AVERAGE..100 {
            assert!((FIRST_AVERAGE..SLOTS).contains(&slot(c)), "{c}");
        }
    }
}
