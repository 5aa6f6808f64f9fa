//! Clusters: the places workloads go.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ResourceList, Taint};

/// Where a cluster runs. Each part may be absent; a spread or location selector over an absent
/// part never matches the cluster.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Location {
    /// Cloud or infrastructure provider, for example `aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Region, for example `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Zone, for example `eu-west-1a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A physical cluster that can receive replicas (kcp's SyncTarget, Karmada's Cluster).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Unique name.
    pub name: String,
    /// Labels matched by label selectors and usable as spread topology keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Provider, region and zone.
    #[serde(default)]
    pub location: Location,
    /// Free-form capabilities such as `pci-dss` or `gpu`, matched by `requiredCapabilities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// API resources the cluster serves, as `resource.group/version` (`deployments.apps/v1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_resources: Vec<String>,
    /// Total capacity. A resource not listed has zero capacity (except `pods`, which is only
    /// enforced where listed). A free amount (capacity less allocated) of exactly
    /// [`Quantity::MAX`](crate::Quantity::MAX) counts as unlimited.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub capacity: ResourceList,
    /// Already in use by things outside the batch being planned.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocated: ResourceList,
    /// Taints; see [`crate::taint`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Cordoned: no new replicas, placed replicas stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
    /// Healthy. `false` acts as the taint `tmc.kcp.io/not-ready:NoExecute`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ready: bool,
    /// When the cluster stopped being ready (seconds, the clock of [`crate::PlacementInput::now`]);
    /// becomes the `addedAt` of the automatic not-ready taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_since: Option<i64>,
    /// Relative cost, used by the `Cost` prioritizer (lower is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            name: String::new(),
            labels: BTreeMap::new(),
            location: Location::default(),
            capabilities: Vec::new(),
            api_resources: Vec::new(),
            capacity: ResourceList::new(),
            allocated: ResourceList::new(),
            taints: Vec::new(),
            unschedulable: false,
            ready: true,
            not_ready_since: None,
            cost: None,
        }
    }
}

impl Cluster {
    /// The cluster's taints including the automatic not-ready taint.
    pub fn effective_taints(&self) -> impl Iterator<Item = std::borrow::Cow<'_, Taint>> {
        let auto = (!self.ready)
            .then(|| std::borrow::Cow::Owned(Taint { added_at: self.not_ready_since, ..Taint::not_ready() }));
        self.taints.iter().map(std::borrow::Cow::Borrowed).chain(auto)
    }

    /// The cluster's value for a spread topology key: `cluster`, `provider`, `region`, `zone`, or
    /// any label key. `None` when the cluster lacks it.
    pub fn topology_value(&self, key: &str) -> Option<&str> {
        match key {
            "cluster" => Some(&self.name),
            "provider" => self.location.provider.as_deref(),
            "region" => self.location.region.as_deref(),
            "zone" => self.location.zone.as_deref(),
            label => self.labels.get(label).map(String::as_str),
        }
    }
}
