//! `Bounded<MIN, MAX>`: an integer that was range-checked when the config was parsed, so no
//! later code re-validates it and every range error names the key it came from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An unsigned integer known to lie in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// A compile-time known value. Panics (at compile time, in const context) when out of range.
    pub const fn new_const(value: u64) -> Self {
        assert!(value >= MIN && value <= MAX, "Bounded::new_const out of range");
        Self(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

/// The error for a value outside `MIN..=MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    value: i64,
    min: u64,
    max: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is out of range (allowed {}..={})", self.value, self.min, self.max)
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<i64> for Bounded<MIN, MAX> {
    type Error = OutOfRange;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match u64::try_from(value) {
            Ok(v) if (MIN..=MAX).contains(&v) => Ok(Self(v)),
            _ => Err(OutOfRange { value, min: MIN, max: MAX }),
        }
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for u64 {
    fn from(b: Bounded<MIN, MAX>) -> u64 {
        b.0
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bounds_and_rejects_outside() {
        type B = Bounded<60, 1440>;
        assert_eq!(B::try_from(60).map(B::get), Ok(60));
        assert_eq!(B::try_from(1440).map(B::get), Ok(1440));
        assert!(B::try_from(59).is_err());
        assert!(B::try_from(1441).is_err());
        assert!(B::try_from(-1).is_err());
        assert_eq!(B::try_from(5000).unwrap_err().to_string(), "5000 is out of range (allowed 60..=1440)");
    }
}
