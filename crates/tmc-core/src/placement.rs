//! Solver input and output: the fleet and workloads in, one [`Placement`] per workload out.

use serde::{Deserialize, Serialize};

use crate::{AffinityMismatch, Cluster, ReplicaSchedulingType, Taint, Workload, WorkloadKey};

/// Everything the solver needs: the fleet, the workloads, and optionally the previous decisions.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementInput {
    /// The clusters.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// The workloads to place.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Earlier placements, in the output's shape; the solver keeps them when they are still valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<Placement>,
    /// The current time in seconds on the clock of [`crate::Taint::added_at`], if the caller has
    /// one. The solver never reads a clock; without `now`, bounded tolerations never run out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<i64>,
}

/// Replicas of one workload on one cluster.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    /// Cluster name.
    pub cluster: String,
    /// Replicas on it (>= 1).
    pub replicas: u32,
}

/// How much of a workload was placed.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Fully placed.
    #[default]
    Scheduled,
    /// Some replicas (or, for Duplicated, some clusters) placed, not all.
    PartiallyScheduled,
    /// Nothing placed.
    Unschedulable,
}

/// Why one cluster did not take (more of) a workload.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum Reason {
    /// Failed `clusterAffinity` (or the affinity group tried).
    AffinityMismatch {
        /// Which part failed.
        part: AffinityMismatch,
    },
    /// Does not serve a required API resource.
    MissingApi {
        /// The API, e.g. `deployments.apps/v1`.
        api: String,
    },
    /// Lacks a required capability.
    MissingCapability {
        /// The capability.
        capability: String,
    },
    /// Has no value for a spread topology key.
    MissingTopologyKey {
        /// The key.
        key: String,
    },
    /// Carries a taint the workload does not tolerate (`NoSchedule`/`NoExecute`), or a
    /// `NoExecute` taint it tolerates only for `tolerationSeconds` (no new replicas).
    UntoleratedTaint {
        /// The taint.
        taint: Taint,
    },
    /// Cordoned (`unschedulable`): no new replicas.
    Cordoned,
    /// Not enough free capacity for one more replica (Duplicated: for all replicas).
    Insufficient {
        /// The resource that ran out first.
        resource: String,
    },
    /// `replicaScheduling.weights` gives it weight 0.
    ZeroWeight,
    /// Feasible, but not chosen (`numberOfClusters`, spread `maxGroups`, Aggregated, skew).
    NotSelected,
}

impl Reason {
    /// The Kubernetes-style phrase used in messages ("had untolerated taint {k=v:NoSchedule}").
    pub fn phrase(&self) -> String {
        match self {
            Reason::AffinityMismatch { .. } => "did not match cluster affinity".to_string(),
            Reason::MissingApi { api } => format!("did not serve API {api}"),
            Reason::MissingCapability { capability } => format!("lacked capability {capability}"),
            Reason::MissingTopologyKey { key } => format!("had no {key} for spread"),
            Reason::UntoleratedTaint { taint } => format!("had untolerated taint {taint}"),
            Reason::Cordoned => "had been cordoned".to_string(),
            Reason::Insufficient { resource } => format!("had insufficient {resource}"),
            Reason::ZeroWeight => "had weight 0".to_string(),
            Reason::NotSelected => "were feasible but not selected".to_string(),
        }
    }
}

/// How many clusters one reason kept from taking (more of) a workload: one entry of
/// [`Placement::unavailable`].
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasonCount {
    /// The reason.
    pub reason: Reason,
    /// How many clusters it applies to.
    pub clusters: u32,
}

/// The reasons one cluster was not (fully) used, from [`crate::cluster_rejections`].
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRejection {
    /// Cluster name.
    pub cluster: String,
    /// Every reason found, most fundamental first.
    pub reasons: Vec<Reason>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The outcome for one workload.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// `namespace/name`.
    pub workload: WorkloadKey,
    /// Scheduled, PartiallyScheduled or Unschedulable.
    #[serde(default)]
    pub phase: Phase,
    /// Where the replicas go, sorted by cluster.
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// `Divided` or `Duplicated`, as the workload asked.
    #[serde(default)]
    pub replica_scheduling_type: ReplicaSchedulingType,
    /// Replicas requested (Duplicated: per cluster).
    #[serde(default)]
    pub requested: u32,
    /// Replicas placed in total (Duplicated: summed over the chosen clusters).
    #[serde(default)]
    pub placed: u64,
    /// The `clusterAffinities` group used, when the workload has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_group: Option<String>,
    /// Kubernetes-style explanation when not fully placed, followed by what happened to the
    /// workload in this solve (preemption, rebalancing); empty when fully placed and nothing
    /// happened.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Replica moves that `rebalance` still wants after this round's `maxMovesPerRound` budget; a
    /// controller solves again later to continue (0 when settled).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rebalance_pending: u64,
    /// Why clusters were not (fully) used, for workloads that are not fully placed: how many
    /// clusters each reason applies to, most clusters first (ties in [`Reason`] order). As in
    /// `message` (and kube-scheduler), each unused cluster counts under its most fundamental
    /// reason only, or, when that is capacity, under every resource that fell short; feasible
    /// clusters that were not chosen count as [`Reason::NotSelected`]. Room is judged in the
    /// plan as it ends, with every other workload's replicas where the plan puts them. Every
    /// reason of every cluster is available on demand from [`crate::cluster_rejections`]: listing
    /// them here would cost clusters × unplaced workloads entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<ReasonCount>,
}

/// The solver's output.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    /// Replicas placed, each weighted by its workload's priority: `1 + priority − lowest
    /// priority in the input` per replica (Duplicated: per copy). Preferences and prioritizers
    /// only order plans of equal objective and are not part of it. The weights are linear, not
    /// lexicographic: a plan that trades one higher-priority replica for more lower-priority ones
    /// can score higher. The solver places in priority order, then makes such trades where they
    /// raise the objective, except at the expense of a workload that may preempt (it would take
    /// the room back on the next solve).
    #[serde(default)]
    pub objective: f64,
    /// An upper bound on the objective of any plan for this input (Lagrangian relaxation of the
    /// capacity constraints).
    #[serde(default)]
    pub bound: f64,
    /// `(bound - objective) / bound`: how far from optimal this plan can be at most (0.004 = 0.4%).
    #[serde(default)]
    pub gap: f64,
    /// One entry per workload, sorted by `namespace/name`.
    pub placements: Vec<Placement>,
}

impl Plan {
    /// The placement of `key`, if the workload exists.
    pub fn get(&self, key: &WorkloadKey) -> Option<&Placement> {
        self.placements.binary_search_by(|p| p.workload.cmp(key)).ok().map(|i| &self.placements[i])
    }
}
