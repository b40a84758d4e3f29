//! Which curve a result belongs to: the raw checkpoints, or one averaging setting (scheme,
//! window size, spike-aware). A typed, hashable key: the explorer's index, its hidden set,
//! the chart's curves and the sweeps' "is it stored?" all key on it; people read its label.

use crate::average::Scheme;

/// The name of the raw curve, and a record's `scheme` for one checkpoint as it is.
pub const RAW: &str = "raw";

/// One averaging setting: `scheme` over windows of `k` checkpoints, leaving out those in loss
/// spikes when `spike_aware` (the window then reaches further back and keeps `k`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Averaging {
    pub scheme: Scheme,
    pub k: usize,
    pub spike_aware: bool,
}

/// The curve of a result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Series {
    /// Each checkpoint as it is.
    Raw,
    Average(Averaging),
}

impl Series {
    pub fn average(scheme: Scheme, k: usize, spike_aware: bool) -> Self {
        Series::Average(Averaging {
            scheme,
            k,
            spike_aware,
        })
    }

    pub fn is_raw(&self) -> bool {
        matches!(self, Series::Raw)
    }
}

impl std::fmt::Display for Averaging {
    /// `uniform k=5`, `ema:200 k=8 spike-aware`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} k={}", self.scheme, self.k)?;
        if self.spike_aware {
            f.write_str(" spike-aware")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Series {
    /// `raw`, or the averaging setting.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Series::Raw => f.write_str(RAW),
            Series::Average(a) => a.fmt(f),
        }
    }
}

/// Written as its label (the chart's JSON export names curves so).
impl serde::Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A record's `scheme` as stored: `raw` is none (a raw checkpoint), anything else a scheme.
pub fn parse_stored_scheme(s: &str) -> Result<Option<Scheme>, crate::average::AverageError> {
    if s == RAW {
        return Ok(None);
    }
    s.parse().map(Some)
}

/// A record's `scheme` field: `raw` (no scheme), or the scheme's Display string.
pub(crate) mod scheme_field {
    use super::{Scheme, RAW};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(scheme: &Option<Scheme>, s: S) -> Result<S::Ok, S::Error> {
        match scheme {
            None => s.serialize_str(RAW),
            Some(scheme) => s.collect_str(scheme),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Scheme>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_stored_scheme(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(Series::Raw.to_string(), "raw");
        assert_eq!(
            Series::average(Scheme::Uniform, 5, false).to_string(),
            "uniform k=5"
        );
        let ema = Series::average(Scheme::Ema { half_life: 200.0 }, 8, true);
        assert_eq!(ema.to_string(), "ema:200 k=8 spike-aware");
    }

    #[test]
    fn series_are_one_key_exactly_when_every_part_is_equal() {
        let a = |s: Scheme, k, aware| Series::average(s, k, aware);
        let all = [
            Series::Raw,
            a(Scheme::Uniform, 5, false),
            a(Scheme::Uniform, 5, true),
            a(Scheme::Uniform, 6, false),
            a(Scheme::Linear, 5, false),
            a(Scheme::Ema { half_life: 200.0 }, 5, false),
            a(Scheme::Ema { half_life: 200.5 }, 5, false),
            a(Scheme::Custom(vec![0.25, 0.75]), 2, false),
        ];
        let set: HashSet<&Series> = all.iter().collect();
        assert_eq!(set.len(), all.len());
        assert!(set.contains(&a(Scheme::Ema { half_life: 200.0 }, 5, false)));
        assert!(set.contains(&a(Scheme::Custom(vec![0.25, 0.75]), 2, false)));
        assert!(!set.contains(&a(Scheme::Custom(vec![0.25, 0.7500001]), 2, false)));
    }
}
