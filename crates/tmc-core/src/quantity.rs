//! Kubernetes resource quantities as exact integers.
//!
//! A [`Quantity`] holds a non-negative amount in units of 10^-9 (nano-units), so every value the
//! Kubernetes grammar can express down to `1n` is represented exactly and capacity arithmetic never
//! touches floating point. Values finer than `1n` are rounded up, as Kubernetes does.
//!
//! Grammar (from `k8s.io/apimachinery/pkg/api/resource`):
//! `<sign><digits>[.<digits>]<suffix>` where suffix is a binary SI suffix (`Ki Mi Gi Ti Pi Ei`), a
//! decimal SI suffix (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`).
//! Negative quantities are rejected: capacities and requests are never negative.

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Nano-units per unit.
const NANOS_PER_UNIT: u128 = 1_000_000_000;

/// A non-negative, exact resource amount (for example `500m` cpu or `2Gi` memory).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Quantity {
    nanos: u128,
}

/// Why a string is not a valid quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string was empty.
    #[error("empty quantity")]
    Empty,
    /// The string does not follow the Kubernetes quantity grammar.
    #[error("malformed quantity {0:?}: expected a number with an optional suffix such as 500m, 2Gi or 1e3")]
    Malformed(String),
    /// The suffix is not one Kubernetes knows.
    #[error(
        "unknown suffix {suffix:?} in quantity {input:?} (allowed: n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent such as e3)"
    )]
    UnknownSuffix {
        /// The whole input.
        input: String,
        /// The unrecognised suffix.
        suffix: String,
    },
    /// The quantity is negative.
    #[error("negative quantity {0:?}: resource amounts must be >= 0")]
    Negative(String),
    /// The quantity is too large to represent exactly.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// The largest representable quantity; used as "unlimited" in fit computations.
    pub const MAX: Quantity = Quantity { nanos: u128::MAX };

    /// A quantity of `n` nano-units.
    pub const fn from_nanos(nanos: u128) -> Self {
        Quantity { nanos }
    }

    /// A quantity of `n` whole units (`pods: 110`, `nvidia.com/gpu: 8`).
    pub const fn from_units(units: u64) -> Self {
        Quantity { nanos: units as u128 * NANOS_PER_UNIT }
    }

    /// A quantity of `m` milli-units (`500m` cpu is `from_millis(500)`).
    pub const fn from_millis(millis: u64) -> Self {
        Quantity { nanos: millis as u128 * 1_000_000 }
    }

    /// The exact amount in nano-units.
    pub const fn nanos(self) -> u128 {
        self.nanos
    }

    /// True when the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// Checked addition; `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.nanos.checked_add(other.nanos).map(Quantity::from_nanos)
    }

    /// Saturating addition (at [`Quantity::MAX`]).
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        Quantity::from_nanos(self.nanos.saturating_add(other.nanos))
    }

    /// Subtraction that stops at zero.
    pub fn saturating_sub(self, other: Quantity) -> Quantity {
        Quantity::from_nanos(self.nanos.saturating_sub(other.nanos))
    }

    /// Checked multiplication by a count (replicas); `None` on overflow.
    pub fn checked_mul(self, count: u64) -> Option<Quantity> {
        self.nanos.checked_mul(u128::from(count)).map(Quantity::from_nanos)
    }

    /// Saturating multiplication by a count.
    pub fn saturating_mul(self, count: u64) -> Quantity {
        Quantity::from_nanos(self.nanos.saturating_mul(u128::from(count)))
    }

    /// How many whole `per` fit into `self` (`u64::MAX` when `per` is zero).
    pub fn fits(self, per: Quantity) -> u64 {
        if per.nanos == 0 {
            return u64::MAX;
        }
        u64::try_from(self.nanos / per.nanos).unwrap_or(u64::MAX)
    }

    /// `self / total` in thousandths, clamped to 0..=1000 (for scoring, never for capacity).
    pub fn per_mille_of(self, total: Quantity) -> u64 {
        if total.nanos == 0 {
            return 0;
        }
        // Scale down both sides first so the multiplication cannot overflow.
        let shift = 128 - total.nanos.leading_zeros();
        let shift = shift.saturating_sub(100);
        let (a, b) = (self.nanos >> shift, (total.nanos >> shift).max(1));
        u64::try_from((a.saturating_mul(1000) / b).min(1000)).unwrap_or(1000)
    }

    /// Parses the Kubernetes quantity grammar; see the module docs.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let malformed = || QuantityError::Malformed(input.to_string());
        let too_large = || QuantityError::TooLarge(input.to_string());
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        // Split the numeric part from the suffix.
        let num_end = rest.bytes().position(|b| !(b.is_ascii_digit() || b == b'.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(malformed());
        }
        // Value = digits * 10^(exp10 - frac_len) * 2^exp2, in units.
        let (exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other if other.starts_with(['e', 'E']) && other.len() > 1 => {
                let exp = &other[1..];
                let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                let valid = !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit());
                if !valid {
                    return Err(malformed());
                }
                let e: i32 = exp.parse().map_err(|_| too_large())?;
                (e, 0)
            }
            other => {
                return Err(QuantityError::UnknownSuffix { input: input.to_string(), suffix: other.to_string() });
            }
        };
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| too_large())?;
        if digits.is_empty() {
            return Ok(Quantity::ZERO);
        }
        if negative {
            return Err(QuantityError::Negative(input.to_string()));
        }
        // Drop trailing zeros to keep the mantissa small; they only raise the exponent.
        let trimmed = digits.trim_end_matches('0');
        let trailing = i32::try_from(digits.len() - trimmed.len()).map_err(|_| too_large())?;
        // Every digit is ASCII 0-9 here, so the only way parsing fails is overflow.
        let mantissa: u128 = trimmed.parse().map_err(|_| too_large())?;
        // Scale to nano-units: value_nanos = mantissa * 10^(exp10 - frac_len + trailing + 9) * 2^exp2.
        let scale = exp10.checked_sub(frac_len).and_then(|v| v.checked_add(trailing + 9)).ok_or_else(too_large)?;
        let mut nanos = mantissa;
        if scale >= 0 {
            let pow = 10u128.checked_pow(u32::try_from(scale).map_err(|_| too_large())?).ok_or_else(too_large)?;
            nanos = nanos.checked_mul(pow).ok_or_else(too_large)?;
            nanos = nanos.checked_mul(1u128 << exp2).ok_or_else(too_large)?;
        } else {
            // Finer than 1n: multiply by the binary factor first, then divide rounding up.
            nanos = nanos.checked_mul(1u128 << exp2).ok_or_else(too_large)?;
            let neg = u32::try_from(-scale).map_err(|_| too_large())?;
            nanos = match 10u128.checked_pow(neg) {
                Some(div) => nanos.div_ceil(div),
                // Dividing by more than 10^38 leaves a positive amount below 1n.
                None => 1,
            };
        }
        Ok(Quantity { nanos })
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Canonical form: whole units when exact, else the coarsest of `m`, `u`, `n` that is exact.
    /// Binary suffixes are used for exact multiples of 1Ki and above when they are whole units,
    /// so `2Gi` prints as `2Gi`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n == 0 {
            return f.write_str("0");
        }
        if n.is_multiple_of(NANOS_PER_UNIT) {
            let units = n / NANOS_PER_UNIT;
            for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
                let unit = 1u128 << shift;
                if units >= unit && units.is_multiple_of(unit) {
                    return write!(f, "{}{suffix}", units / unit);
                }
            }
            return write!(f, "{units}");
        }
        if n.is_multiple_of(1_000_000) {
            return write!(f, "{}m", n / 1_000_000);
        }
        if n.is_multiple_of(1_000) {
            return write!(f, "{}u", n / 1_000);
        }
        write!(f, "{n}n")
    }
}

impl PartialEq<u64> for Quantity {
    fn eq(&self, other: &u64) -> bool {
        *self == Quantity::from_units(*other)
    }
}

impl PartialOrd<u64> for Quantity {
    fn partial_cmp(&self, other: &u64) -> Option<Ordering> {
        Some(self.cmp(&Quantity::from_units(*other)))
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// Accepts a string (`"500m"`, `2Gi`) or a plain number (`110`, `0.5`), as Kubernetes does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 2Gi or 110")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::from_units(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                u64::try_from(v)
                    .map(Quantity::from_units)
                    .map_err(|_| E::custom(QuantityError::Negative(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                // Go through the decimal text so 0.1 means exactly 100m, not a binary fraction.
                if !v.is_finite() {
                    return Err(E::custom(QuantityError::Malformed(v.to_string())));
                }
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    /// Like Kubernetes' `resource.Quantity`: an integer or a string, marked int-or-string so the
    /// API server accepts both `pods: 110` and `cpu: 500m`.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes quantity such as 500m, 2Gi or 110.",
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_kubernetes_grammar() {
        let cases: &[(&str, u128)] = &[
            ("0", 0),
            ("1", 1_000_000_000),
            ("500m", 500_000_000),
            ("0.5", 500_000_000),
            (".5", 500_000_000),
            ("1.", 1_000_000_000),
            ("+2", 2_000_000_000),
            ("1k", 1_000_000_000_000),
            ("1Ki", 1024 * 1_000_000_000),
            ("2Gi", 2 * (1 << 30) * 1_000_000_000),
            ("1.5Gi", 3 * (1 << 29) * 1_000_000_000),
            ("1e3", 1_000_000_000_000),
            ("1E3", 1_000_000_000_000),
            ("1e-3", 1_000_000),
            ("25e+2", 2_500_000_000_000),
            ("1n", 1),
            ("1u", 1_000),
            ("1.5n", 2),
            ("100M", 100_000_000 * 1_000_000_000),
            ("1Ei", (1u128 << 60) * 1_000_000_000),
            ("8E", 8 * 10u128.pow(18) * 1_000_000_000),
            ("0.000000000001", 1),
            ("000123", 123_000_000_000),
            ("-0", 0),
        ];
        for (s, nanos) in cases {
            assert_eq!(q(s).nanos(), *nanos, "{s}");
        }
    }

    #[test]
    fn rejects_bad_quantities_with_a_reason() {
        assert_eq!(Quantity::parse(""), Err(QuantityError::Empty));
        assert!(matches!(Quantity::parse("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(Quantity::parse("1Xi"), Err(QuantityError::UnknownSuffix { .. })));
        assert!(matches!(Quantity::parse("1mi"), Err(QuantityError::UnknownSuffix { .. })));
        for bad in ["abc", ".", "1.2.3", "1e", "1e+", "e3", "1e3.5", "--1", "1 k"] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(matches!(Quantity::parse("1e40"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(Quantity::parse("1e99999999999"), Err(QuantityError::TooLarge(_))));
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (s, shown) in [
            ("500m", "500m"),
            ("2Gi", "2Gi"),
            ("2048Mi", "2Gi"),
            ("1000", "1000"),
            ("1.5", "1500m"),
            ("3n", "3n"),
            ("0", "0"),
            ("1536Ki", "1536Ki"),
        ] {
            assert_eq!(q(s).to_string(), shown);
            assert_eq!(q(shown), q(s));
        }
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(q("100m").checked_mul(10), Some(q("1")));
        assert_eq!(q("4").fits(q("1500m")), 2);
        assert_eq!(q("4").fits(Quantity::ZERO), u64::MAX);
        assert_eq!(q("1").saturating_sub(q("2")), Quantity::ZERO);
        assert_eq!(q("1").per_mille_of(q("4")), 250);
        assert_eq!(Quantity::MAX.per_mille_of(Quantity::MAX), 1000);
        assert_eq!(q("3"), 3u64);
    }

    #[test]
    fn deserializes_strings_and_numbers() {
        #[derive(Deserialize)]
        struct R {
            a: Quantity,
            b: Quantity,
            c: Quantity,
        }
        let r: R = serde_json::from_str(r#"{"a": "500m", "b": 110, "c": 0.1}"#).unwrap();
        assert_eq!((r.a, r.b, r.c), (q("500m"), q("110"), q("100m")));
        assert!(serde_json::from_str::<R>(r#"{"a": -1, "b": 1, "c": 1}"#).is_err());
        assert!(serde_json::from_str::<R>(r#"{"a": "1Q", "b": 1, "c": 1}"#).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn display_round_trips(nanos in any::<u64>()) {
                let x = Quantity::from_nanos(u128::from(nanos) * 1000);
                prop_assert_eq!(Quantity::parse(&x.to_string()), Ok(x));
            }

            #[test]
            fn never_panics(s in "\\PC{0,24}") {
                let _ = Quantity::parse(&s);
            }

            #[test]
            fn milli_suffix_matches_decimal(m in 0u64..10_000_000) {
                let a = Quantity::parse(&format!("{m}m")).unwrap();
                let b = Quantity::parse(&format!("{}.{:03}", m / 1000, m % 1000)).unwrap();
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, Quantity::from_millis(m));
            }
        }
    }
}
