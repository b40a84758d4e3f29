//! Weight schemes and window selection: pure functions of the chosen steps.

use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::AverageError;

/// How the checkpoints of a window are weighted.
///
/// A scheme is an identity (a curve, a job's target, a record's series), so it is `Eq` and
/// `Hash`: its numbers compare by [`identity_bits`]. It is written and read as its Display
/// string (`uniform`, `ema:200`, `linear`, `0.2,0.3,0.5`), as the store and plans hold it.
#[derive(Clone, Debug)]
pub enum Scheme {
    /// Every checkpoint equally (LAWA).
    Uniform,
    /// Exponential by distance in steps from the newest: `w_i ∝ 0.5^((s_last − s_i)/half_life)`.
    Ema { half_life: f64 },
    /// A ramp by position in the window: the oldest gets 1, the next 2, …, the newest k.
    Linear,
    /// One explicit weight per checkpoint, oldest first.
    Custom(Vec<f64>),
}

/// The bits a scheme's number is compared and hashed by: two schemes are one when they print
/// (and so parse) the same, which is bit equality of their f64s, with -0 taken as 0. IEEE
/// `==` would make a NaN scheme unequal to itself, which `Eq` and `Hash` cannot have.
fn identity_bits(x: f64) -> u64 {
    (x + 0.0).to_bits()
}

impl PartialEq for Scheme {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Scheme::Uniform, Scheme::Uniform) | (Scheme::Linear, Scheme::Linear) => true,
            (Scheme::Ema { half_life: a }, Scheme::Ema { half_life: b }) => {
                identity_bits(*a) == identity_bits(*b)
            }
            (Scheme::Custom(a), Scheme::Custom(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| identity_bits(*x) == identity_bits(*y))
            }
            _ => false,
        }
    }
}

impl Eq for Scheme {}

impl Hash for Scheme {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Scheme::Uniform | Scheme::Linear => {}
            Scheme::Ema { half_life } => identity_bits(*half_life).hash(state),
            Scheme::Custom(ws) => {
                ws.len().hash(state);
                ws.iter().for_each(|w| identity_bits(*w).hash(state));
            }
        }
    }
}

impl serde::Serialize for Scheme {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Scheme {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Scheme {
    type Err = AverageError;

    /// `uniform`, `ema:HALF_LIFE_STEPS`, `linear`, or `w1,w2,...`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| AverageError::Weights(format!("--weights '{s}': {why}"));
        let t = s.trim();
        match t {
            "uniform" => return Ok(Scheme::Uniform),
            "linear" => return Ok(Scheme::Linear),
            _ => {}
        }
        if let Some(h) = t.strip_prefix("ema:") {
            let half_life: f64 = h
                .trim()
                .parse()
                .map_err(|_| bad("the EMA half-life must be a number of steps"))?;
            if !(half_life.is_finite() && half_life > 0.0) {
                return Err(bad("the EMA half-life must be a positive number of steps"));
            }
            return Ok(Scheme::Ema { half_life });
        }
        let ws: Result<Vec<f64>, _> = t.split(',').map(|w| w.trim().parse::<f64>()).collect();
        match ws {
            Ok(ws) if ws.iter().all(|w| w.is_finite()) => Ok(Scheme::Custom(ws)),
            Ok(_) => Err(bad("weights must be finite numbers")),
            Err(_) => Err(bad(
                "expected uniform, linear, ema:HALF_LIFE_STEPS or a list of numbers like 0.2,0.3,0.5",
            )),
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheme::Uniform => f.write_str("uniform"),
            Scheme::Linear => f.write_str("linear"),
            Scheme::Ema { half_life } => write!(f, "ema:{half_life}"),
            Scheme::Custom(ws) => {
                let parts: Vec<String> = ws.iter().map(|w| w.to_string()).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// The weight of each step (oldest first) under `scheme`; summing to 1 when `normalize`.
///
/// Errors: no steps, a custom list of the wrong length, non-finite weights, and — with
/// normalisation — negative weights or weights summing to 0.
pub fn weights(scheme: &Scheme, steps: &[u64], normalize: bool) -> Result<Vec<f64>, AverageError> {
    let bad = |why: String| AverageError::Weights(format!("--weights {scheme}: {why}"));
    if steps.is_empty() {
        return Err(bad("no checkpoints to weight".into()));
    }
    let last = *steps.iter().max().expect("non-empty");
    let raw: Vec<f64> = match scheme {
        Scheme::Uniform => vec![1.0; steps.len()],
        Scheme::Linear => (1..=steps.len()).map(|i| i as f64).collect(),
        Scheme::Ema { half_life } => {
            if !(half_life.is_finite() && *half_life > 0.0) {
                return Err(bad("the EMA half-life must be positive".into()));
            }
            steps
                .iter()
                .map(|&s| 0.5f64.powf((last - s) as f64 / half_life))
                .collect()
        }
        Scheme::Custom(ws) => {
            if ws.len() != steps.len() {
                return Err(bad(format!(
                    "{} weights given for {} checkpoints",
                    ws.len(),
                    steps.len()
                )));
            }
            ws.clone()
        }
    };
    if let Some(w) = raw.iter().find(|w| !w.is_finite()) {
        return Err(bad(format!("weight {w} is not finite")));
    }
    if !normalize {
        return Ok(raw);
    }
    if let Some(w) = raw.iter().find(|&&w| w < 0.0) {
        return Err(bad(format!(
            "negative weight {w} with normalisation on (use --no-normalize to allow it)"
        )));
    }
    let sum: f64 = raw.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return Err(bad(format!("weights sum to {sum}, cannot normalise")));
    }
    Ok(raw.into_iter().map(|w| w / sum).collect())
}

/// The `k` latest steps at or before `at` (oldest first). `steps` are the run's steps in
/// ascending order; `at` must be one of them and there must be `k` of them up to it.
pub fn window_ending_at(steps: &[u64], at: u64, k: usize) -> Result<Vec<u64>, AverageError> {
    if k == 0 {
        return Err(AverageError::Window("--last must be at least 1".into()));
    }
    let Ok(idx) = steps.binary_search(&at) else {
        return Err(AverageError::Window(format!(
            "step {at} is not a checkpoint of this run{}",
            nearest(steps, at)
        )));
    };
    if k > idx + 1 {
        return Err(AverageError::Window(format!(
            "--last {k}: only {} checkpoints at or before step {at}",
            idx + 1
        )));
    }
    Ok(steps[idx + 1 - k..=idx].to_vec())
}

/// Checks every requested step exists; returns them sorted, without duplicates.
pub fn select_steps(steps: &[u64], wanted: &[u64]) -> Result<Vec<u64>, AverageError> {
    let mut out = wanted.to_vec();
    out.sort_unstable();
    out.dedup();
    if out.len() != wanted.len() {
        return Err(AverageError::Window("--steps names a step twice".into()));
    }
    for &s in &out {
        if steps.binary_search(&s).is_err() {
            return Err(AverageError::Window(format!(
                "step {s} is not a checkpoint of this run{}",
                nearest(steps, s)
            )));
        }
    }
    if out.is_empty() {
        return Err(AverageError::Window("no steps given".into()));
    }
    Ok(out)
}

/// `" (nearest: 900, 1000)"`: helps when a step was mistyped.
fn nearest(steps: &[u64], at: u64) -> String {
    let i = steps.partition_point(|&s| s < at);
    let near: Vec<String> = [i.checked_sub(1), Some(i)]
        .into_iter()
        .flatten()
        .filter_map(|j| steps.get(j))
        .map(|s| s.to_string())
        .collect();
    if near.is_empty() {
        " (it has no checkpoints)".into()
    } else {
        format!(" (nearest: {})", near.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn schemes_are_keys_equal_when_they_print_the_same_and_stored_as_their_string() {
        use std::collections::HashSet;
        let parsed: Vec<Scheme> = [
            "uniform",
            "ema:200",
            "ema:200.0",
            "0.5,0.5",
            "0.5,0.50",
            "linear",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let set: HashSet<&Scheme> = parsed.iter().collect();
        // `ema:200.0` is `ema:200`, `0.5,0.50` is `0.5,0.5`: four schemes.
        assert_eq!(set.len(), 4);
        assert!(set.contains(&Scheme::Ema { half_life: 200.0 }));
        assert_ne!(
            Scheme::Ema { half_life: 200.0 },
            Scheme::Ema { half_life: 200.5 }
        );
        assert_ne!(Scheme::Custom(vec![1.0]), Scheme::Custom(vec![1.0, 1.0]));
        // -0 and 0 are one weight; a NaN weight is still equal to itself (a key must be).
        assert_eq!(
            Scheme::Custom(vec![-0.0, 1.0]),
            Scheme::Custom(vec![0.0, 1.0])
        );
        let nan = Scheme::Custom(vec![f64::NAN]);
        assert_eq!(nan, nan.clone());
        // JSON holds the Display string, and reads it back to the same scheme.
        let json = serde_json::to_string(&parsed[1]).unwrap();
        assert_eq!(json, "\"ema:200\"");
        assert_eq!(serde_json::from_str::<Scheme>(&json).unwrap(), parsed[1]);
        let bad = serde_json::from_str::<Scheme>("\"ema:-1\"").unwrap_err();
        assert!(bad.to_string().contains("half-life"), "{bad}");
    }

    #[test]
    fn schemes_parse_and_print_back() {
        for s in [
            "uniform",
            "linear",
            "ema:500",
            "ema:0.5",
            "0.2,0.3,0.5",
            "1",
            "-1,2",
        ] {
            assert_eq!(s.parse::<Scheme>().unwrap().to_string(), s);
        }
        assert_eq!(
            "ema:500".parse::<Scheme>().unwrap(),
            Scheme::Ema { half_life: 500.0 }
        );
        assert_eq!(
            " 1, 2 ".parse::<Scheme>().unwrap(),
            Scheme::Custom(vec![1.0, 2.0])
        );
        for bad in [
            "", "ema:", "ema:-3", "ema:0", "ema:x", "unifrom", "1,,2", "1,nan", "inf",
        ] {
            assert!(bad.parse::<Scheme>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn uniform_and_linear() {
        let steps = [100, 200, 400, 800];
        assert!(close(
            &weights(&Scheme::Uniform, &steps, true).unwrap(),
            &[0.25; 4]
        ));
        assert!(close(
            &weights(&Scheme::Uniform, &steps, false).unwrap(),
            &[1.0; 4]
        ));
        assert!(close(
            &weights(&Scheme::Linear, &steps, true).unwrap(),
            &[0.1, 0.2, 0.3, 0.4]
        ));
    }

    #[test]
    fn ema_halves_every_half_life_steps_back() {
        let w = weights(&Scheme::Ema { half_life: 100.0 }, &[100, 200, 300], false).unwrap();
        assert!(close(&w, &[0.25, 0.5, 1.0]));
        let w = weights(&Scheme::Ema { half_life: 100.0 }, &[100, 200, 300], true).unwrap();
        assert!(close(&w, &[0.25 / 1.75, 0.5 / 1.75, 1.0 / 1.75]));
        // Uneven spacing: distance in steps, not positions.
        let w = weights(&Scheme::Ema { half_life: 50.0 }, &[0, 150], false).unwrap();
        assert!(close(&w, &[0.125, 1.0]));
    }

    #[test]
    fn custom_weights_are_checked() {
        let steps = [1, 2, 3];
        let w = weights(&Scheme::Custom(vec![1.0, 1.0, 2.0]), &steps, true).unwrap();
        assert!(close(&w, &[0.25, 0.25, 0.5]));
        let e = weights(&Scheme::Custom(vec![1.0, 2.0]), &steps, true).unwrap_err();
        assert!(e.to_string().contains("2 weights given for 3"), "{e}");
        let e = weights(&Scheme::Custom(vec![1.0, -1.0, 0.0]), &steps, true).unwrap_err();
        assert!(e.to_string().contains("sum to 0") || e.to_string().contains("negative"));
        let e = weights(&Scheme::Custom(vec![0.0, 0.0, 0.0]), &steps, true).unwrap_err();
        assert!(e.to_string().contains("sum to 0"), "{e}");
        let e = weights(&Scheme::Custom(vec![2.0, -0.5, 0.5]), &steps, true).unwrap_err();
        assert!(e.to_string().contains("negative weight -0.5"), "{e}");
        // Without normalisation, extrapolating weights are the user's business.
        let w = weights(&Scheme::Custom(vec![2.0, -0.5, 0.0]), &steps, false).unwrap();
        assert!(close(&w, &[2.0, -0.5, 0.0]));
        assert!(weights(&Scheme::Uniform, &[], true).is_err());
    }

    #[test]
    fn windows_end_at_a_step_and_fit_the_run() {
        let steps = [10, 20, 30, 40, 50];
        assert_eq!(window_ending_at(&steps, 40, 3).unwrap(), vec![20, 30, 40]);
        assert_eq!(window_ending_at(&steps, 10, 1).unwrap(), vec![10]);
        assert_eq!(window_ending_at(&steps, 50, 5).unwrap(), steps.to_vec());
        let e = window_ending_at(&steps, 40, 5).unwrap_err().to_string();
        assert!(e.contains("only 4 checkpoints"), "{e}");
        let e = window_ending_at(&steps, 35, 2).unwrap_err().to_string();
        assert!(
            e.contains("step 35") && e.contains("nearest: 30, 40"),
            "{e}"
        );
        assert!(window_ending_at(&steps, 50, 0).is_err());
        assert!(window_ending_at(&[], 1, 1)
            .unwrap_err()
            .to_string()
            .contains("no checkpoints"));
    }

    #[test]
    fn explicit_steps_must_exist() {
        let steps = [10, 20, 30];
        assert_eq!(select_steps(&steps, &[30, 10]).unwrap(), vec![10, 30]);
        let e = select_steps(&steps, &[10, 25]).unwrap_err().to_string();
        assert!(e.contains("step 25 is not a checkpoint"), "{e}");
        assert!(select_steps(&steps, &[10, 10]).is_err());
        assert!(select_steps(&steps, &[]).is_err());
    }
}
