//! Taints on clusters and tolerations on workloads, with Kubernetes matching rules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Key of the taint a cluster carries automatically while it is not ready.
pub const NOT_READY_TAINT_KEY: &str = "tmc.kcp.io/not-ready";

/// What a taint does to workloads that do not tolerate it.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    /// No new replicas; replicas already placed stay.
    NoSchedule,
    /// Allowed, but the cluster scores lower.
    PreferNoSchedule,
    /// No new replicas, and placed replicas leave (after a toleration's `tolerationSeconds`).
    NoExecute,
}

impl fmt::Display for TaintEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        })
    }
}

/// A taint on a cluster: `{key, value, effect}`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    /// Taint key, for example `maintenance`.
    pub key: String,
    /// Optional value; empty when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// The effect on workloads that do not tolerate it.
    pub effect: TaintEffect,
    /// When the taint appeared, in seconds on the caller's clock (Unix time for the controller,
    /// virtual time for the simulator). With [`crate::PlacementInput::now`] it bounds how long a
    /// `NoExecute` toleration with `tolerationSeconds` keeps replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<i64>,
}

impl Taint {
    /// The automatic taint of a cluster whose `ready` is false.
    pub fn not_ready() -> Taint {
        Taint {
            key: NOT_READY_TAINT_KEY.to_string(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
            added_at: None,
        }
    }
}

impl fmt::Display for Taint {
    /// Kubernetes' form: `{key=value:Effect}` (or `{key:Effect}` without a value).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{{{}:{}}}", self.key, self.effect)
        } else {
            write!(f, "{{{}={}:{}}}", self.key, self.value, self.effect)
        }
    }
}

/// How a toleration compares its value.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    /// Key and value must be equal (the default).
    #[default]
    Equal,
    /// Key must match; the value is ignored. With an empty key it tolerates every taint.
    Exists,
}

/// A toleration on a workload.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Taint key to match; empty with `Exists` matches every key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// `Equal` (default) or `Exists`.
    #[serde(default)]
    pub operator: TolerationOperator,
    /// Value to compare with `Equal`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Effect to match; absent matches every effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// For `NoExecute`: how long placed replicas may stay after the taint appears. A toleration
    /// with a bound keeps existing replicas but does not admit new ones, since they would be evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Kubernetes `ToleratesTaint`: effect matches (or is empty), key matches (or is empty with
    /// `Exists`), and with `Equal` the values are equal.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

/// How a set of tolerations treats one taint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintVerdict {
    /// Tolerated without limits (or the effect never blocks).
    Tolerated,
    /// Only tolerated for a bounded time (`NoExecute` with `tolerationSeconds`) that has not run
    /// out: replicas already there stay, new ones are not admitted.
    ToleratedForAWhile,
    /// Not tolerated (or the bounded toleration has run out).
    Untolerated,
}

/// Judges `taint` against `tolerations` at time `now` (same clock as [`Taint::added_at`]).
///
/// A bounded `NoExecute` toleration runs out at `added_at + tolerationSeconds`; when either time
/// is unknown it never runs out (the replicas stay until a caller with a clock says otherwise).
/// With several matching tolerations the most permissive wins, as in Kubernetes.
pub fn judge(taint: &Taint, tolerations: &[Toleration], now: Option<i64>) -> TaintVerdict {
    let mut best = TaintVerdict::Untolerated;
    for t in tolerations.iter().filter(|t| t.tolerates(taint)) {
        match (taint.effect, t.toleration_seconds) {
            (TaintEffect::NoExecute, Some(seconds)) => {
                let expired =
                    matches!((now, taint.added_at), (Some(now), Some(at)) if now >= at.saturating_add(seconds.max(0)));
                if !expired {
                    best = TaintVerdict::ToleratedForAWhile;
                }
            }
            _ => return TaintVerdict::Tolerated,
        }
    }
    best
}

/// When a bounded toleration of `taint` among `tolerations` runs out, if it does: the latest
/// `added_at + tolerationSeconds` of the matching bounded tolerations (the simulator schedules an
/// eviction check then).
pub fn toleration_deadline(taint: &Taint, tolerations: &[Toleration]) -> Option<i64> {
    if taint.effect != TaintEffect::NoExecute {
        return None;
    }
    let at = taint.added_at?;
    let mut deadline = None;
    for t in tolerations.iter().filter(|t| t.tolerates(taint)) {
        match t.toleration_seconds {
            None => return None,
            Some(s) => deadline = deadline.max(Some(at.saturating_add(s.max(0)))),
        }
    }
    deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint { key: key.into(), value: value.into(), effect, added_at: None }
    }

    fn tol(key: &str, op: TolerationOperator, value: &str, effect: Option<TaintEffect>) -> Toleration {
        Toleration { key: key.into(), operator: op, value: value.into(), effect, toleration_seconds: None }
    }

    #[test]
    fn kubernetes_toleration_matching() {
        use TaintEffect::*;
        use TolerationOperator::*;
        let t = taint("maintenance", "true", NoSchedule);
        assert!(tol("maintenance", Equal, "true", Some(NoSchedule)).tolerates(&t));
        assert!(tol("maintenance", Equal, "true", None).tolerates(&t), "empty effect matches all");
        assert!(!tol("maintenance", Equal, "false", None).tolerates(&t));
        assert!(!tol("maintenance", Equal, "true", Some(NoExecute)).tolerates(&t));
        assert!(tol("maintenance", Exists, "", None).tolerates(&t));
        assert!(tol("", Exists, "", None).tolerates(&t), "empty key + Exists tolerates everything");
        assert!(!tol("", Equal, "", None).tolerates(&t), "empty key + Equal only matches an empty key");
        assert!(!tol("other", Exists, "", None).tolerates(&t));
    }

    #[test]
    fn toleration_seconds_only_keeps() {
        let t = Taint::not_ready();
        let mut bounded = tol(NOT_READY_TAINT_KEY, TolerationOperator::Exists, "", Some(TaintEffect::NoExecute));
        bounded.toleration_seconds = Some(300);
        assert_eq!(judge(&t, std::slice::from_ref(&bounded), None), TaintVerdict::ToleratedForAWhile);
        let forever = tol(NOT_READY_TAINT_KEY, TolerationOperator::Exists, "", None);
        assert_eq!(judge(&t, &[bounded.clone(), forever], None), TaintVerdict::Tolerated);
        assert_eq!(judge(&t, &[], None), TaintVerdict::Untolerated);
        // With a clock, the bounded toleration runs out at addedAt + tolerationSeconds.
        let dated = Taint { added_at: Some(1000), ..Taint::not_ready() };
        let one = std::slice::from_ref(&bounded);
        assert_eq!(judge(&dated, one, Some(1299)), TaintVerdict::ToleratedForAWhile);
        assert_eq!(judge(&dated, one, Some(1300)), TaintVerdict::Untolerated);
        assert_eq!(judge(&dated, one, None), TaintVerdict::ToleratedForAWhile);
        assert_eq!(toleration_deadline(&dated, one), Some(1300));
        assert_eq!(toleration_deadline(&t, one), None, "no addedAt, no deadline");
    }

    #[test]
    fn displays_like_kubernetes() {
        assert_eq!(taint("maintenance", "true", TaintEffect::NoSchedule).to_string(), "{maintenance=true:NoSchedule}");
        assert_eq!(Taint::not_ready().to_string(), "{tmc.kcp.io/not-ready:NoExecute}");
    }
}
