//! Feature gates (`--feature-gates NoExecuteEviction=true,...`) for behaviours that change
//! workloads.

use std::{collections::BTreeMap, fmt, str::FromStr};

/// The gates this controller knows, with their defaults.
pub const KNOWN: [(&str, bool, &str); 1] = [(
    "NoExecuteEviction",
    true,
    "evict replicas from clusters with NoExecute taints (stale heartbeat, drain) once their toleration runs out; \
     when false, automatic taints only stop new replicas",
)];

/// A set of feature gates, all known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates(BTreeMap<String, bool>);

/// A malformed or unknown gate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid --feature-gates: {0}")]
pub struct FeatureGateError(String);

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates(KNOWN.iter().map(|(name, default, _)| (name.to_string(), *default)).collect())
    }
}

impl FeatureGates {
    /// Whether a gate is enabled (unknown gates are off).
    pub fn enabled(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }
}

impl FromStr for FeatureGates {
    type Err = FeatureGateError;

    /// Parses `Name=true,Other=false`; names must be known.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut gates = FeatureGates::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) =
                part.split_once('=').ok_or_else(|| FeatureGateError(format!("{part:?} is not Name=true|false")))?;
            let value: bool =
                value.trim().parse().map_err(|_| FeatureGateError(format!("{part:?}: value must be true or false")))?;
            let name = name.trim();
            if !KNOWN.iter().any(|(k, _, _)| *k == name) {
                let known: Vec<&str> = KNOWN.iter().map(|(k, _, _)| *k).collect();
                return Err(FeatureGateError(format!("unknown gate {name:?} (known: {})", known.join(", "))));
            }
            gates.0.insert(name.to_string(), value);
        }
        Ok(gates)
    }
}

impl fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_with_defaults_and_reject_unknown_names() {
        let default: FeatureGates = "".parse().unwrap();
        assert!(default.enabled("NoExecuteEviction"));
        let off: FeatureGates = "NoExecuteEviction=false".parse().unwrap();
        assert!(!off.enabled("NoExecuteEviction"));
        assert_eq!(off.to_string(), "NoExecuteEviction=false");
        assert!("Bogus=true".parse::<FeatureGates>().unwrap_err().to_string().contains("unknown gate"));
        assert!("NoExecuteEviction".parse::<FeatureGates>().is_err());
        assert!("NoExecuteEviction=yes".parse::<FeatureGates>().is_err());
    }
}
