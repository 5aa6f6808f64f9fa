//! The `tmc.kcp.io/v1alpha1` APIs: [`ClusterRegistration`] and [`WorkloadPlacement`].
//!
//! The specs embed the model types of `tmc-core` (locations, resource lists, taints, and the whole
//! placement policy of a [`tmc_core::Workload`]), so the CRD schema, the simulator's scenario files
//! and the library share one definition: a field added to the core's `Workload` appears in the
//! WorkloadPlacement CRD when the YAML is regenerated (`tmc-controller crdgen`).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _};
use tmc_core::{Decision, LabelSelector, Location, ResourceList, Taint, Workload};

/// API group of the tmc APIs.
pub const GROUP: &str = "tmc.kcp.io";
/// API version of the tmc APIs.
pub const VERSION: &str = "v1alpha1";

fn time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

/// A physical cluster that can receive replicas (kcp's SyncTarget, Karmada's Cluster).
///
/// Cluster-scoped. Its labels (used by label selectors and spread constraints) are the object's
/// `metadata.labels`; everything else the solver knows about the cluster is in the spec, completed
/// by what the controller discovers and observes (status).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tmc.kcp.io",
    version = "v1alpha1",
    kind = "ClusterRegistration",
    doc = "A physical cluster tmc can place replicas on: capacity, location, taints, cordon/drain (spec); health, discovered capabilities and what tmc placed there (status).",
    shortname = "creg",
    category = "tmc",
    status = "ClusterRegistrationStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Schedulable", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Schedulable\")].status"}"#,
    printcolumn = r#"{"name": "Placed", "type": "integer", "jsonPath": ".status.placedReplicas"}"#,
    printcolumn = r#"{"name": "Heartbeat", "type": "date", "jsonPath": ".status.lastHeartbeatTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationSpec {
    /// Provider, region and zone.
    #[serde(default)]
    pub location: Location,
    /// Free-form capabilities such as `pci-dss` or `gpu`, matched by `requiredCapabilities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// API resources the cluster serves, as `resource.group/version` (`deployments.apps/v1`).
    /// When empty, the ones discovered through `kubeconfigSecretRef` (status) are used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_resources: Vec<String>,
    /// Capacity available to tmc. When empty, the discovered node allocatable (status) is used.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub capacity: ResourceList,
    /// Already in use by things tmc does not place.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocated: ResourceList,
    /// Taints; the controller adds `tmc.kcp.io/not-ready` and `tmc.kcp.io/draining` by itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Cordon: no new replicas, placed replicas stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
    /// Drain: the cluster is cordoned at once and, from this time on, carries the
    /// `tmc.kcp.io/draining:NoExecute` taint, so replicas leave (kcp's `evictAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "time_schema")]
    pub evict_after: Option<Time>,
    /// A cluster whose last heartbeat is older than this is not ready, for example `60s` or
    /// `2m30s` (default: the controller's `--heartbeat-threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub heartbeat_threshold: Option<String>,
    /// Relative cost, used by the `Cost` prioritizer (lower is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// A Secret holding a kubeconfig for the physical cluster. With it, the controller probes the
    /// cluster (a successful probe is a heartbeat) and discovers its API resources and node
    /// allocatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Key holding the kubeconfig (default `kubeconfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Kubernetes-style condition (`metav1.Condition`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, for example `Ready` or `Scheduled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One-word CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "time_schema")]
    pub last_transition_time: Option<Time>,
    /// The `.metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Replicas of one workload on a cluster, as tmc placed them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacedWorkload {
    /// `namespace/name` of the WorkloadPlacement.
    pub workload: String,
    /// Replicas on this cluster.
    pub replicas: u32,
}

/// Observed state of a [`ClusterRegistration`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationStatus {
    /// `Ready`, `HeartbeatHealthy` and `Schedulable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Last heartbeat from the cluster's agent (or the controller's own probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "time_schema")]
    pub last_heartbeat_time: Option<Time>,
    /// API resources discovered on the physical cluster (`resource.group/version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_resources: Vec<String>,
    /// Discovered capacity (sum over ready nodes).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub capacity: ResourceList,
    /// Discovered allocatable (sum over ready, schedulable nodes).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocatable: ResourceList,
    /// Taints the controller added (not-ready, draining), with the time they appeared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub automatic_taints: Vec<Taint>,
    /// The workloads tmc placed here, by name (at most 200 listed; `placedReplicas` counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placements: Vec<PlacedWorkload>,
    /// Total replicas tmc placed here.
    #[serde(default)]
    pub placed_replicas: u64,
    /// The `.metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What a [`WorkloadPlacement`] places: objects of one kind in the placement's namespace, by name
/// or by label.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSelector {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    /// `Deployment`, `StatefulSet`, `ConfigMap`, ...
    pub kind: String,
    /// One object by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Objects by label (all objects of the kind when neither `name` nor this is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
}

/// Desired placement of a workload: the objects it places and the placement policy.
///
/// The policy is a [`tmc_core::Workload`] (every field of the core's model except `name` and
/// `namespace`, which come from the object). `replicas` and `resources` (per replica) are taken
/// from the selected objects' pod templates unless they are set here.
#[derive(CustomResource, Clone, Debug, PartialEq)]
#[kube(
    group = "tmc.kcp.io",
    version = "v1alpha1",
    kind = "WorkloadPlacement",
    doc = "Where the replicas of the selected objects go: a tmc-core placement policy (spec) and the decisions, planned jointly with every other placement of the workspace (status).",
    namespaced,
    shortname = "wp",
    category = "tmc",
    status = "WorkloadPlacementStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Clusters", "type": "string", "jsonPath": ".status.decisions[*].cluster"}"#,
    printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"}"#,
    printcolumn = r#"{"name": "Placed", "type": "integer", "jsonPath": ".status.placedReplicas"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
pub struct WorkloadPlacementSpec {
    /// The objects placed (`resourceSelectors`).
    pub resource_selectors: Vec<ResourceSelector>,
    /// `replicas` when the spec sets it; otherwise the replicas come from the selected objects.
    pub replicas: Option<u32>,
    /// The placement policy. `name` and `namespace` are empty; `replicas` is meaningful only
    /// when [`Self::replicas`] is set, and empty `resources` mean "from the pod templates".
    pub policy: Workload,
}

impl Default for WorkloadPlacementSpec {
    fn default() -> Self {
        WorkloadPlacementSpec { resource_selectors: Vec::new(), replicas: None, policy: Workload::named("") }
    }
}

const SELECTORS: &str = "resourceSelectors";

impl Serialize for WorkloadPlacementSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut policy = self.policy.clone();
        policy.replicas = self.replicas.unwrap_or(0);
        let value = serde_json::to_value(&policy).map_err(S::Error::custom)?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(S::Error::custom("a workload policy serializes to an object"));
        };
        map.remove("name");
        map.remove("namespace");
        if self.replicas.is_none() {
            map.remove("replicas");
        }
        let selectors = serde_json::to_value(&self.resource_selectors).map_err(S::Error::custom)?;
        map.insert(SELECTORS.to_string(), selectors);
        map.serialize(serializer)
    }
}

/// The CRD schema of the spec, for pruning fields this build does not know.
fn spec_schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        crate::crdgen::schema_of("WorkloadPlacement")
            .and_then(|s| s.pointer("/properties/spec").cloned())
            .unwrap_or(serde_json::Value::Null)
    })
}

impl<'de> Deserialize<'de> for WorkloadPlacementSpec {
    /// Fields this build's schema does not declare are dropped first, as the API server prunes
    /// unknown fields: a newer CRD (a field added to the core's `Workload`) must not make an older
    /// controller fail to read every placement during a rolling upgrade. Everything else is
    /// strict (the core's types reject unknown fields).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        let schema = spec_schema();
        if !schema.is_null() {
            crate::crdgen::prune(&mut value, schema);
        }
        let serde_json::Value::Object(mut map) = value else {
            return Err(D::Error::custom("spec must be an object"));
        };
        let resource_selectors = match map.remove(SELECTORS) {
            Some(v) => serde_json::from_value(v).map_err(|e| D::Error::custom(format!("{SELECTORS}: {e}")))?,
            None => Vec::new(),
        };
        let replicas = match map.get("replicas") {
            Some(v) => {
                Some(serde_json::from_value::<u32>(v.clone()).map_err(|e| D::Error::custom(format!("replicas: {e}")))?)
            }
            None => None,
        };
        map.insert("name".to_string(), serde_json::Value::String(String::new()));
        map.insert("namespace".to_string(), serde_json::Value::String(String::new()));
        let policy: Workload = serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        Ok(WorkloadPlacementSpec { resource_selectors, replicas, policy })
    }
}

impl JsonSchema for WorkloadPlacementSpec {
    fn schema_name() -> Cow<'static, str> {
        "WorkloadPlacementSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = Workload::json_schema(generator);
        let selectors = generator.subschema_for::<Vec<ResourceSelector>>();
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "description".into(),
                "Desired placement: the objects placed (resourceSelectors) and the tmc-core placement policy. \
                 replicas and resources (per replica) come from the selected objects' pod templates unless set here."
                    .into(),
            );
            if let Some(serde_json::Value::Object(props)) = obj.get_mut("properties") {
                props.remove("name");
                props.remove("namespace");
                if let Some(serde_json::Value::Object(replicas)) = props.get_mut("replicas") {
                    replicas.remove("default");
                    replicas.insert(
                        "description".into(),
                        "Desired replicas; default: from the selected objects (spec.replicas or spec.parallelism)."
                            .into(),
                    );
                }
                if let Some(serde_json::Value::Object(resources)) = props.get_mut("resources") {
                    resources.insert(
                        "description".into(),
                        "Per-replica requests; default: the effective requests of the selected objects' pod templates."
                            .into(),
                    );
                }
                let mut selectors = selectors.to_value();
                if let serde_json::Value::Object(s) = &mut selectors {
                    s.insert("description".into(), "The objects this placement places (same namespace).".into());
                }
                props.insert(SELECTORS.into(), selectors);
            }
            if let Some(serde_json::Value::Array(required)) = obj.get_mut("required") {
                required.retain(|r| r != "name" && r != "namespace");
                if required.is_empty() {
                    obj.remove("required");
                }
            }
        }
        schema
    }
}

/// Lifecycle of a [`WorkloadPlacement`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PlacementPhase {
    /// Not planned yet, or nothing selected to derive replicas from.
    #[default]
    Pending,
    /// Fully placed.
    Scheduled,
    /// Some replicas placed, not all.
    PartiallyScheduled,
    /// Nothing placed.
    Unschedulable,
}

impl From<tmc_core::Phase> for PlacementPhase {
    fn from(p: tmc_core::Phase) -> Self {
        match p {
            tmc_core::Phase::Scheduled => PlacementPhase::Scheduled,
            tmc_core::Phase::PartiallyScheduled => PlacementPhase::PartiallyScheduled,
            tmc_core::Phase::Unschedulable => PlacementPhase::Unschedulable,
        }
    }
}

/// Observed state of a [`WorkloadPlacement`]: the decisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPlacementStatus {
    /// `Pending`, `Scheduled`, `PartiallyScheduled` or `Unschedulable`.
    #[serde(default)]
    pub phase: PlacementPhase,
    /// `Scheduled` (reasons `Scheduled`, `PartiallyScheduled`, `NoClusterFit`, `InvalidPolicy`,
    /// `NoSelectedWorkload`), with the Kubernetes-style "0/N clusters are available: ..." message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Replicas per cluster, sorted by cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
    /// The `clusterAffinities` group used, when the policy has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_group: Option<String>,
    /// Replicas requested (Duplicated: per cluster).
    #[serde(default)]
    pub replicas: u32,
    /// Replicas placed in total (Duplicated: summed over clusters).
    #[serde(default)]
    pub placed_replicas: u64,
    /// The `.metadata.generation` the decisions were computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl WorkloadPlacementStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl ClusterRegistrationStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_round_trip_and_fields_of_a_newer_crd_are_ignored() {
        let spec: WorkloadPlacementSpec = serde_json::from_value(json!({
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "replicas": 3,
            "rebalance": {"policy": "OnRecovery", "fromTheFuture": true},
            "fromTheFuture": 1,
        }))
        .unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.policy.rebalance.policy, tmc_core::RebalancePolicy::OnRecovery);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["replicas"], 3);
        assert_eq!(back["resourceSelectors"][0]["name"], "web");
        assert!(back.get("name").is_none() && back.get("namespace").is_none() && back.get("fromTheFuture").is_none());

        let unset: WorkloadPlacementSpec = serde_json::from_value(json!({"resources": {"cpu": "1"}})).unwrap();
        assert_eq!(unset.replicas, None);
        assert!(serde_json::to_value(&unset).unwrap().get("replicas").is_none(), "replicas stay unset");
        assert!(serde_json::from_value::<WorkloadPlacementSpec>(json!({"replicas": -1})).is_err());
        assert!(serde_json::from_value::<WorkloadPlacementSpec>(json!({"resources": {"cpu": "-1"}})).is_err());
    }
}
