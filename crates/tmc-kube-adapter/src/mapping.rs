//! Objects to `tmc-core` types and back. Pure: no I/O, no clock (the caller passes `now`).

use std::collections::BTreeMap;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{ResourceExt, api::DynamicObject};
use serde_json::Value;
use tmc_core::{
    Cluster, Decision, Phase, Placement, Quantity, ResourceList, Workload, WorkloadKey,
    controller::{ClusterHealth, ControllerConfig},
};

use crate::crd::{
    ClusterRegistration, Condition, PlacementPhase, ResourceSelector, WorkloadPlacement, WorkloadPlacementStatus,
};

/// Annotation kcp sets on every object with the logical cluster (workspace) it belongs to.
pub const KCP_CLUSTER_ANNOTATION: &str = "kcp.io/cluster";

/// The condition type on WorkloadPlacements.
pub const SCHEDULED: &str = "Scheduled";

/// Why an object could not be mapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A duration such as `heartbeatThreshold` is malformed.
    #[error("invalid duration {0:?}: expected a Go duration such as 60s, 2m30s or 1h")]
    Duration(String),
    /// A pod template's resource quantity is malformed.
    #[error("{path}: {message}")]
    Quantity {
        /// Where in the object.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The workspace (kcp logical cluster) of an object: its `kcp.io/cluster` annotation, or `""`
/// on plain Kubernetes, where everything is one workspace.
pub fn workspace_of(meta: &ObjectMeta) -> String {
    meta.annotations.as_ref().and_then(|a| a.get(KCP_CLUSTER_ANNOTATION)).cloned().unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(t: &Time) -> i64 {
    t.0.as_second()
}

/// A Kubernetes `Time` at `seconds` since the Unix epoch (clamped into jiff's range).
pub fn time_at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap_or(if seconds < 0 { Timestamp::MIN } else { Timestamp::MAX }))
}

/// Parses a Go duration (`90s`, `1m30s`, `1h`, `500ms`) into whole seconds, rounding up.
pub fn parse_duration_seconds(s: &str) -> Result<i64, MappingError> {
    let err = || MappingError::Duration(s.to_string());
    let s_trim = s.trim();
    if s_trim.is_empty() {
        return Err(err());
    }
    if s_trim == "0" {
        return Ok(0);
    }
    let mut nanos: u128 = 0;
    let mut rest = s_trim;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(err());
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| err())? };
        let mut part = int.checked_mul(unit_nanos).ok_or_else(err)?;
        let mut scale = unit_nanos;
        for d in frac.chars() {
            scale /= 10;
            let digit = u128::from(d.to_digit(10).ok_or_else(err)?);
            part = part.checked_add(digit * scale).ok_or_else(err)?;
        }
        nanos = nanos.checked_add(part).ok_or_else(err)?;
        rest = tail;
    }
    let secs = nanos.div_ceil(1_000_000_000);
    i64::try_from(secs).map_err(|_| err())
}

/// A ClusterRegistration as the core sees it, before the controller rules are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    /// The cluster (always `ready`; [`ControllerConfig::observe`] decides readiness).
    pub cluster: Cluster,
    /// Heartbeat and drain.
    pub health: ClusterHealth,
    /// The controller configuration with this cluster's `heartbeatThreshold`.
    pub config: ControllerConfig,
}

impl ClusterView {
    /// The cluster as the solver must see it at `now` ([`ControllerConfig::observe`]).
    pub fn observe(&self, now: i64) -> Cluster {
        self.config.observe(&self.cluster, &self.health, now)
    }
}

/// Maps a ClusterRegistration: labels from metadata, the rest from the spec; API resources and
/// capacity from the spec when set there, otherwise as discovered (status).
pub fn cluster_view(reg: &ClusterRegistration, base: &ControllerConfig) -> Result<ClusterView, MappingError> {
    let spec = &reg.spec;
    let status = reg.status.clone().unwrap_or_default();
    let mut config = base.clone();
    if let Some(t) = &spec.heartbeat_threshold {
        config.heartbeat_threshold_seconds = parse_duration_seconds(t)?;
    }
    let cluster = Cluster {
        name: reg.name_any(),
        labels: reg.labels().clone(),
        location: spec.location.clone(),
        capabilities: spec.capabilities.clone(),
        api_resources: if spec.api_resources.is_empty() { status.api_resources } else { spec.api_resources.clone() },
        capacity: if spec.capacity.is_empty() { status.allocatable } else { spec.capacity.clone() },
        allocated: spec.allocated.clone(),
        taints: spec.taints.clone(),
        unschedulable: spec.unschedulable,
        ready: true,
        not_ready_since: None,
        cost: spec.cost,
    };
    let health = ClusterHealth {
        last_heartbeat: status.last_heartbeat_time.as_ref().map(unix_seconds),
        evict_after: spec.evict_after.as_ref().map(unix_seconds),
    };
    Ok(ClusterView { cluster, health, config })
}

/// What the controller needs from an object a placement may select.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadObject {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.replicas` (or `spec.parallelism` for Jobs); `None` for objects without replicas.
    pub replicas: Option<u32>,
    /// Effective per-pod requests of `spec.template` (empty without a pod template).
    pub requests: ResourceList,
}

/// Extracts replicas and per-pod requests from an object with a pod template
/// (Deployment, StatefulSet, ReplicaSet, Job, ...).
pub fn workload_object(obj: &DynamicObject) -> Result<WorkloadObject, MappingError> {
    let (api_version, kind) = obj.types.as_ref().map(|t| (t.api_version.clone(), t.kind.clone())).unwrap_or_default();
    let spec = obj.data.get("spec");
    let count = |field: &str| {
        spec.and_then(|s| s.get(field)).and_then(Value::as_u64).map(|r| u32::try_from(r).unwrap_or(u32::MAX))
    };
    let template = spec.and_then(|s| s.pointer("/template/spec"));
    let replicas = match count("replicas").or_else(|| count("parallelism")) {
        // Kubernetes defaults replicas to 1 for objects with a pod template.
        None if template.is_some() => Some(1),
        r => r,
    };
    let requests = match template {
        Some(pod) => pod_requests(pod, "spec.template.spec")?,
        None => ResourceList::new(),
    };
    Ok(WorkloadObject {
        api_version,
        kind,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        labels: obj.labels().clone(),
        replicas,
        requests,
    })
}

/// The effective requests of a pod spec, as kube-scheduler computes them: the larger of the sum
/// over containers and the largest init container, per resource, plus `overhead`. A container
/// without requests but with limits requests its limits.
pub fn pod_requests(pod: &Value, path: &str) -> Result<ResourceList, MappingError> {
    let container_requests = |c: &Value, cpath: &str| -> Result<ResourceList, MappingError> {
        let res = c.get("resources");
        let requests = res.and_then(|r| r.get("requests")).and_then(Value::as_object);
        let limits = res.and_then(|r| r.get("limits")).and_then(Value::as_object);
        let mut out = ResourceList::new();
        for (source, field) in [(limits, "limits"), (requests, "requests")] {
            for (k, v) in source.into_iter().flatten() {
                let q = quantity(v, &format!("{cpath}.resources.{field}.{k}"))?;
                out.insert(k.clone(), q);
            }
        }
        Ok(out)
    };
    let mut sum = ResourceList::new();
    for (i, c) in pod.get("containers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for (k, q) in container_requests(c, &format!("{path}.containers[{i}]"))? {
            let e = sum.entry(k).or_insert(Quantity::ZERO);
            *e = e.saturating_add(q);
        }
    }
    for (i, c) in pod.get("initContainers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for (k, q) in container_requests(c, &format!("{path}.initContainers[{i}]"))? {
            let e = sum.entry(k).or_insert(Quantity::ZERO);
            *e = (*e).max(q);
        }
    }
    for (k, v) in pod.get("overhead").and_then(Value::as_object).into_iter().flatten() {
        let q = quantity(v, &format!("{path}.overhead.{k}"))?;
        let e = sum.entry(k.clone()).or_insert(Quantity::ZERO);
        *e = e.saturating_add(q);
    }
    sum.retain(|_, q| !q.is_zero());
    Ok(sum)
}

fn quantity(v: &Value, path: &str) -> Result<Quantity, MappingError> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(MappingError::Quantity { path: path.into(), message: format!("not a quantity: {other}") });
        }
    };
    Quantity::parse(&s).map_err(|e| MappingError::Quantity { path: path.into(), message: e.to_string() })
}

/// Whether a resource selector names `obj` (same namespace is the caller's concern).
pub fn selects(selector: &ResourceSelector, obj: &WorkloadObject) -> bool {
    if selector.api_version != obj.api_version || selector.kind != obj.kind {
        return false;
    }
    if let Some(name) = &selector.name
        && name != &obj.name
    {
        return false;
    }
    selector.label_selector.as_ref().is_none_or(|s| s.matches(&obj.labels))
}

/// Whether any selector of `wp` names `obj` (in the placement's namespace).
pub fn placement_selects(wp: &WorkloadPlacement, obj: &WorkloadObject) -> bool {
    wp.namespace().unwrap_or_default() == obj.namespace && wp.spec.resource_selectors.iter().any(|s| selects(s, obj))
}

/// A placement mapped to the core, or why it cannot be planned yet.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadMapping {
    /// Ready to plan.
    Ready(Box<Workload>),
    /// Nothing to plan: no replicas in the spec and no selected object with a pod template.
    Pending {
        /// Condition reason.
        reason: String,
        /// Condition message.
        message: String,
    },
}

/// Maps a WorkloadPlacement and the objects it may select to a core [`Workload`].
///
/// Replicas: `spec.replicas`, else the largest replica count among the selected objects with a
/// pod template (one placement replica is one pod of each selected object). Per-replica requests:
/// `spec.resources`, else the sum of the selected objects' per-pod requests.
pub fn workload_of(wp: &WorkloadPlacement, objects: &[WorkloadObject]) -> WorkloadMapping {
    let mut w = wp.spec.policy.clone();
    w.name = wp.name_any();
    w.namespace = wp.namespace().unwrap_or_default();
    let selected: Vec<&WorkloadObject> =
        objects.iter().filter(|o| o.replicas.is_some() && placement_selects(wp, o)).collect();
    match wp.spec.replicas {
        Some(r) => w.replicas = r,
        None => match selected.iter().filter_map(|o| o.replicas).max() {
            Some(r) => w.replicas = r,
            None => {
                return WorkloadMapping::Pending {
                    reason: "NoSelectedWorkload".into(),
                    message: "spec.replicas is not set and no selected object with a pod template exists".into(),
                };
            }
        },
    }
    if w.resources.is_empty() {
        for o in &selected {
            for (k, q) in &o.requests {
                let e = w.resources.entry(k.clone()).or_insert(Quantity::ZERO);
                *e = e.saturating_add(*q);
            }
        }
    }
    WorkloadMapping::Ready(Box::new(w))
}

/// The previous decisions recorded in a placement's status, in the solver's shape.
pub fn previous_placement(key: WorkloadKey, status: &WorkloadPlacementStatus) -> Option<Placement> {
    if status.decisions.is_empty() {
        return None;
    }
    let mut decisions: Vec<Decision> = status.decisions.iter().filter(|d| d.replicas > 0).cloned().collect();
    decisions.sort();
    decisions.dedup_by(|a, b| a.cluster == b.cluster);
    Some(Placement { workload: key, decisions, ..Placement::default() })
}

/// Sets (or replaces) the condition of its type, keeping `lastTransitionTime` when the status
/// did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, old: &[Condition], now: i64) {
    let previous = old.iter().find(|c| c.type_ == new.type_);
    new.last_transition_time = match previous {
        Some(p) if p.status == new.status && p.last_transition_time.is_some() => p.last_transition_time.clone(),
        _ => Some(time_at(now)),
    };
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// The status of a placement the solver planned.
pub fn status_from_plan(
    placement: &Placement,
    generation: Option<i64>,
    old: Option<&WorkloadPlacementStatus>,
    now: i64,
) -> WorkloadPlacementStatus {
    let (status, reason, message) = match placement.phase {
        Phase::Scheduled => ("True", "Scheduled", format!("placed {} replica(s)", placement.placed)),
        Phase::PartiallyScheduled => ("False", "PartiallyScheduled", placement.message.clone()),
        Phase::Unschedulable => ("False", "NoClusterFit", placement.message.clone()),
    };
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        Condition {
            type_: SCHEDULED.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: None,
            observed_generation: generation,
        },
        old.map(|o| o.conditions.as_slice()).unwrap_or_default(),
        now,
    );
    WorkloadPlacementStatus {
        phase: placement.phase.into(),
        conditions,
        decisions: placement.decisions.clone(),
        affinity_group: placement.affinity_group.clone(),
        replicas: placement.requested,
        placed_replicas: placement.placed,
        observed_generation: generation,
    }
}

/// The status of a placement that was not planned (pending or invalid). Previous decisions are
/// kept: a placement whose policy became invalid does not lose its replicas.
pub fn status_not_planned(
    reason: &str,
    message: &str,
    generation: Option<i64>,
    old: Option<&WorkloadPlacementStatus>,
    now: i64,
) -> WorkloadPlacementStatus {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        Condition {
            type_: SCHEDULED.into(),
            status: "False".into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: generation,
        },
        old.map(|o| o.conditions.as_slice()).unwrap_or_default(),
        now,
    );
    let kept = old.map(|o| o.decisions.clone()).unwrap_or_default();
    let phase = if kept.is_empty() { PlacementPhase::Pending } else { old.map(|o| o.phase).unwrap_or_default() };
    WorkloadPlacementStatus {
        phase,
        conditions,
        placed_replicas: kept.iter().map(|d| u64::from(d.replicas)).sum(),
        decisions: kept,
        affinity_group: old.and_then(|o| o.affinity_group.clone()),
        replicas: old.map(|o| o.replicas).unwrap_or_default(),
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration_seconds("60s"), Ok(60));
        assert_eq!(parse_duration_seconds("2m30s"), Ok(150));
        assert_eq!(parse_duration_seconds("1h"), Ok(3600));
        assert_eq!(parse_duration_seconds("1.5s"), Ok(2), "rounded up");
        assert_eq!(parse_duration_seconds("500ms"), Ok(1));
        assert_eq!(parse_duration_seconds("0"), Ok(0));
        for bad in ["", "10", "s", "1x", "1.2.3s", "-1s"] {
            assert!(parse_duration_seconds(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn effective_pod_requests_follow_kube_scheduler() {
        let pod = json!({
            "containers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 1}}},
                {}
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
            "overhead": {"memory": "100Mi"}
        });
        let r = pod_requests(&pod, "spec").unwrap();
        assert_eq!(r["cpu"], Quantity::parse("2").unwrap(), "init container larger than the sum");
        assert_eq!(r["memory"], Quantity::parse("1124Mi").unwrap(), "sum plus overhead");
        assert_eq!(r["nvidia.com/gpu"], Quantity::from_units(1), "limits stand in for requests");
        let bad = json!({"containers": [{"resources": {"requests": {"cpu": "lots"}}}]});
        let err = pod_requests(&bad, "spec").unwrap_err();
        assert!(err.to_string().contains("spec.containers[0].resources.requests.cpu"), "{err}");
    }

    #[test]
    fn replicas_and_requests_come_from_selected_objects_unless_set() {
        let wp: WorkloadPlacement = serde_json::from_value(json!({
            "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]}
        }))
        .unwrap();
        let obj = |name: &str, ns: &str, replicas| WorkloadObject {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: ns.into(),
            name: name.into(),
            replicas: Some(replicas),
            requests: [("cpu".to_string(), Quantity::from_millis(250))].into(),
            ..WorkloadObject::default()
        };
        assert!(matches!(workload_of(&wp, &[]), WorkloadMapping::Pending { .. }));
        assert!(matches!(workload_of(&wp, &[obj("web", "other", 3)]), WorkloadMapping::Pending { .. }));
        let WorkloadMapping::Ready(w) = workload_of(&wp, &[obj("web", "shop", 3), obj("api", "shop", 9)]) else {
            panic!("not ready")
        };
        assert_eq!((w.name.as_str(), w.namespace.as_str(), w.replicas), ("web", "shop", 3));
        assert_eq!(w.resources["cpu"], Quantity::from_millis(250));

        let mut explicit = wp.clone();
        explicit.spec.replicas = Some(7);
        explicit.spec.policy.resources.insert("cpu".into(), Quantity::from_units(1));
        let WorkloadMapping::Ready(w) = workload_of(&explicit, &[obj("web", "shop", 3)]) else { panic!("not ready") };
        assert_eq!((w.replicas, w.resources["cpu"]), (7, Quantity::from_units(1)));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let cond = |status: &str| Condition { type_: "Ready".into(), status: status.into(), ..Condition::default() };
        let mut first = Vec::new();
        set_condition(&mut first, cond("True"), &[], 100);
        let mut second = Vec::new();
        set_condition(&mut second, cond("True"), &first, 200);
        assert_eq!(second[0].last_transition_time, Some(time_at(100)));
        let mut third = Vec::new();
        set_condition(&mut third, cond("False"), &second, 300);
        assert_eq!(third[0].last_transition_time, Some(time_at(300)));
    }
}
