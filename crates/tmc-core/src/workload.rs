//! Workloads and their placement policy (the spec of a WorkloadPlacement).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ClusterAffinity, LabelSelector, LocationSelector, ResourceList, Toleration};

fn default_namespace() -> String {
    "default".to_string()
}

fn one() -> u32 {
    1
}

/// `namespace/name`, the identity of a workload.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkloadKey(pub String);

impl WorkloadKey {
    /// Builds `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        WorkloadKey(format!("{namespace}/{name}"))
    }
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A workload to place, with its policy.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Name, unique within the namespace.
    pub name: String,
    /// Namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Desired replicas (default 1).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Per-replica resource requests.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub resources: ResourceList,
    /// API resources every chosen cluster must serve (`deployments.apps/v1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_apis: Vec<String>,
    /// Capabilities every chosen cluster must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_capabilities: Vec<String>,
    /// Which clusters are allowed. Exclusive with `clusterAffinities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_affinity: Option<ClusterAffinity>,
    /// Ordered fallback groups: the first that can hold the whole request wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_affinities: Vec<ClusterAffinity>,
    /// Tolerated taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Spread over topology domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread_constraints: Vec<SpreadConstraint>,
    /// How replicas are assigned to clusters.
    #[serde(default)]
    pub replica_scheduling: ReplicaScheduling,
    /// Duplicated: exactly this many clusters. Divided: at most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_clusters: Option<u32>,
    /// Soft preferences that raise a cluster's score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<Preference>,
    /// Scoring functions and weights; empty means `Steady` and `LeastAllocated`, weight 1 each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prioritizers: Vec<Prioritizer>,
    /// Higher is placed first under contention and weighs more in the plan's objective (default
    /// 0). Within one solve, a workload placed fresh that may not preempt can end with fewer
    /// replicas than it got first when the room it gives up places more priority-weighted
    /// replicas of others (the plan's `objective`); with `PreemptLowerPriority` it never does.
    #[serde(default)]
    pub priority: i32,
    /// Whether this workload may displace replicas of lower-priority workloads (default `Never`).
    #[serde(default)]
    pub preemption: Preemption,
    /// Whether and how fast placed replicas move back to better clusters (default `Never`).
    #[serde(default)]
    pub rebalance: Rebalance,
}

impl Workload {
    /// `namespace/name`.
    pub fn key(&self) -> WorkloadKey {
        WorkloadKey::new(&self.namespace, &self.name)
    }

    /// A workload with defaults and the given name.
    pub fn named(name: &str) -> Self {
        Workload {
            name: name.to_string(),
            namespace: default_namespace(),
            replicas: 1,
            resources: ResourceList::new(),
            required_apis: Vec::new(),
            required_capabilities: Vec::new(),
            cluster_affinity: None,
            cluster_affinities: Vec::new(),
            tolerations: Vec::new(),
            spread_constraints: Vec::new(),
            replica_scheduling: ReplicaScheduling::default(),
            number_of_clusters: None,
            preferences: Vec::new(),
            prioritizers: Vec::new(),
            priority: 0,
            preemption: Preemption::Never,
            rebalance: Rebalance::default(),
        }
    }
}

/// Spread of decisions over the values of a topology key.
///
/// Clusters without the key are ineligible. With `Divided` scheduling `maxSkew` bounds the
/// difference in replicas between used groups; with `Duplicated` (where every cluster holds all
/// replicas) it bounds the difference in the number of chosen clusters per group.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpreadConstraint {
    /// `cluster`, `provider`, `region`, `zone`, or any label key.
    pub topology_key: String,
    /// At least this many distinct values among the chosen clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_groups: Option<u32>,
    /// At most this many distinct values among the chosen clusters. The groups of the most
    /// preferred clusters are chosen, unless a Divided workload would then be placed only in
    /// part and other groups hold more of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_groups: Option<u32>,
    /// Largest allowed difference between used groups (see the type docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_skew: Option<u32>,
}

/// Whether every chosen cluster runs all replicas or they are divided.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReplicaSchedulingType {
    /// Every chosen cluster gets all replicas.
    Duplicated,
    /// Replicas are divided so they sum to the request (the default).
    #[default]
    Divided,
}

/// How divided replicas are split.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Division {
    /// By static weights (largest remainder).
    Weighted,
    /// In proportion to each cluster's free capacity (the default).
    #[default]
    Dynamic,
    /// On as few clusters as possible.
    Aggregated,
}

/// A static weight for clusters named or selected.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterWeight {
    /// Clusters by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_names: Vec<String>,
    /// Clusters by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Relative weight; a cluster's weight comes from the first entry that matches it, and a
    /// cluster no entry matches has weight 0 (gets nothing).
    pub weight: u32,
}

/// Replica scheduling policy.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaScheduling {
    /// `Duplicated` or `Divided` (default).
    #[serde(default, rename = "type")]
    pub kind: ReplicaSchedulingType,
    /// For `Divided`: `Weighted`, `Dynamic` (default) or `Aggregated`.
    #[serde(default)]
    pub division: Division,
    /// For `Weighted`: the weights; empty means equal weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<ClusterWeight>,
    /// For `Divided`: every used cluster gets at least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas_per_cluster: Option<u32>,
    /// For `Divided`: no cluster gets more than this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_cluster: Option<u32>,
}

/// A soft preference: clusters matching it gain `weight` points.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preference {
    /// 1..=100.
    pub weight: u32,
    /// Labels to match (ANDed with `locationSelector` when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Locations to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_selector: Option<LocationSelector>,
}

/// Built-in scoring functions, each giving 0..=100 per cluster.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PrioritizerName {
    /// Prefers clusters holding fewer of this batch's workloads.
    Balance,
    /// Prefers clusters the workload is already on (from the previous decisions).
    Steady,
    /// Prefers clusters with more free capacity for the requested resources.
    LeastAllocated,
    /// Prefers fuller clusters (bin packing).
    MostAllocated,
    /// Prefers cheaper clusters (`cost`); a cluster without a cost scores 0.
    Cost,
}

/// A prioritizer and its weight.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prioritizer {
    /// Which function.
    pub name: PrioritizerName,
    /// Weight, -100..=100 (default 1); negative inverts the preference.
    #[serde(default = "default_weight")]
    pub weight: i32,
}

fn default_weight() -> i32 {
    1
}

/// Whether a workload that does not fit may displace lower-priority replicas.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Preemption {
    /// Never displace anything (the default).
    #[default]
    Never,
    /// Displace the fewest replicas of strictly lower-priority workloads needed to fit; the
    /// victims are re-placed elsewhere where possible. A workload takes back at most what it
    /// would place if every workload after it in placement order were not there, so a plan is
    /// kept as it is by the next solve of the same input.
    PreemptLowerPriority,
}

/// When placed replicas move to a better placement on their own.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RebalancePolicy {
    /// Replicas move only when a rule forces them to (the default).
    #[default]
    Never,
    /// Replicas move back when the placement the workload would get today is better than the one
    /// it has: an earlier `clusterAffinities` group, or a higher preference score (for example
    /// after a preferred cluster recovers or is uncordoned).
    OnRecovery,
    /// Replicas move whenever today's placement (what a fresh solve would give, counting only
    /// the workloads placed before this one) differs from the current one.
    Always,
}

/// Rebalance policy and budget.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rebalance {
    /// `Never` (default), `OnRecovery` or `Always`.
    #[serde(default)]
    pub policy: RebalancePolicy,
    /// At most this many replicas move per solve (round); unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_moves_per_round: Option<u32>,
}
