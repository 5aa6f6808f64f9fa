//! Label selectors, location selectors and cluster affinity, with Kubernetes semantics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Cluster;

/// Operator of a label-selector requirement.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is not one of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value, read as an integer, is greater than the single value (node-affinity style).
    Gt,
    /// The label's value, read as an integer, is less than the single value (node-affinity style).
    Lt,
}

/// One `matchExpressions` entry.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// How the value is compared.
    pub operator: SelectorOperator,
    /// Values: non-empty for `In`/`NotIn`, one integer for `Gt`/`Lt`, empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelectorRequirement {
    /// Whether `labels` satisfy this requirement. A malformed `Gt`/`Lt` (rejected by validation)
    /// matches nothing rather than panicking.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Gt | SelectorOperator::Lt => {
                let (Some(v), [bound]) = (value, self.values.as_slice()) else { return false };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else { return false };
                if self.operator == SelectorOperator::Gt { v > bound } else { v < bound }
            }
        }
    }
}

/// A Kubernetes label selector; all terms are ANDed and an empty selector matches everything.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    /// True when the selector has no terms (and so matches every cluster).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// Selects clusters by their `location`; each non-empty list must contain the cluster's value,
/// and a cluster without that location field does not match a non-empty list.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationSelector {
    /// Allowed providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Allowed regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Allowed zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
}

impl LocationSelector {
    /// Whether the cluster's location satisfies every non-empty list.
    pub fn matches(&self, cluster: &Cluster) -> bool {
        fn ok(allowed: &[String], actual: &Option<String>) -> bool {
            allowed.is_empty() || actual.as_ref().is_some_and(|a| allowed.contains(a))
        }
        let loc = &cluster.location;
        ok(&self.providers, &loc.provider) && ok(&self.regions, &loc.region) && ok(&self.zones, &loc.zone)
    }

    /// True when no list is set.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty() && self.regions.is_empty() && self.zones.is_empty()
    }
}

/// Which clusters a workload may use. All set fields are ANDed; `exclude` always wins.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterAffinity {
    /// Name of this group; required inside `clusterAffinities`, where it is reported as the
    /// chosen `affinityGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Cluster labels to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Cluster locations to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_selector: Option<LocationSelector>,
    /// When non-empty, only these clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_names: Vec<String>,
    /// Never these clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Why a cluster fails a [`ClusterAffinity`].
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AffinityMismatch {
    /// Listed in `exclude`.
    Excluded,
    /// `clusterNames` is set and does not list it.
    NotInClusterNames,
    /// The label selector does not match.
    Labels,
    /// The location selector does not match.
    Location,
}

impl ClusterAffinity {
    /// `Ok(())` when the cluster matches, else the first failing part.
    pub fn check(&self, cluster: &Cluster) -> Result<(), AffinityMismatch> {
        if self.exclude.contains(&cluster.name) {
            return Err(AffinityMismatch::Excluded);
        }
        if !self.cluster_names.is_empty() && !self.cluster_names.contains(&cluster.name) {
            return Err(AffinityMismatch::NotInClusterNames);
        }
        if self.label_selector.as_ref().is_some_and(|s| !s.matches(&cluster.labels)) {
            return Err(AffinityMismatch::Labels);
        }
        if self.location_selector.as_ref().is_some_and(|s| !s.matches(cluster)) {
            return Err(AffinityMismatch::Location);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement { key: key.into(), operator, values: values.iter().map(|v| v.to_string()).collect() }
    }

    #[test]
    fn set_based_operators_follow_kubernetes() {
        use SelectorOperator::*;
        let with = labels(&[("tier", "gold"), ("gen", "5")]);
        let without = labels(&[]);
        let cases = [
            (req("tier", In, &["gold", "silver"]), true, false),
            (req("tier", NotIn, &["bronze"]), true, true),
            (req("tier", NotIn, &["gold"]), false, true),
            (req("tier", Exists, &[]), true, false),
            (req("tier", DoesNotExist, &[]), false, true),
            (req("gen", Gt, &["4"]), true, false),
            (req("gen", Gt, &["5"]), false, false),
            (req("gen", Lt, &["6"]), true, false),
            (req("tier", Gt, &["1"]), false, false),
            (req("gen", Gt, &["x"]), false, false),
        ];
        for (r, on_with, on_without) in cases {
            assert_eq!(r.matches(&with), on_with, "{r:?} on labelled cluster");
            assert_eq!(r.matches(&without), on_without, "{r:?} on unlabelled cluster");
        }
    }

    #[test]
    fn empty_selector_matches_all_and_terms_are_anded() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        assert!(LabelSelector::default().matches(&l));
        let s = LabelSelector {
            match_labels: labels(&[("a", "1")]),
            match_expressions: vec![req("b", SelectorOperator::In, &["3"])],
        };
        assert!(!s.matches(&l));
    }

    #[test]
    fn exclude_always_wins() {
        let cluster = Cluster { name: "c1".into(), ..Cluster::default() };
        let aff =
            ClusterAffinity { cluster_names: vec!["c1".into()], exclude: vec!["c1".into()], ..Default::default() };
        assert_eq!(aff.check(&cluster), Err(AffinityMismatch::Excluded));
        let loc = ClusterAffinity {
            location_selector: Some(LocationSelector { regions: vec!["eu".into()], ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(loc.check(&cluster), Err(AffinityMismatch::Location), "no region never matches a region list");
    }
}
