//! Scenario timelines: what happens to the fleet and the workloads, and when.
//!
//! A timeline is a list of entries, each with a virtual time `at` and exactly one event:
//!
//! ```yaml
//! timeline:
//!   - {at: 90s, clusterDown: aws-us-east-1a}          # heartbeats stop
//!   - {at: 20m, clusterUp: aws-us-east-1a}            # heartbeats resume
//!   - {at: 5m, taint: {cluster: a, key: maintenance, value: "true", effect: NoExecute}}
//!   - {at: 6m, untaint: {cluster: a, key: maintenance}}   # every effect, or `effect: X`
//!   - {at: 7m, cordon: b}
//!   - {at: 8m, uncordon: b}                            # also ends a drain
//!   - {at: 9m, drain: {cluster: c, gracePeriod: 2m}}  # cordon now, evict after 2m
//!   - {at: 10m, capacityChange: {cluster: c, capacity: {cpu: "96"}, allocated: {cpu: "10"}}}
//!   - {at: 11m, addCluster: {name: d, capacity: {cpu: "64"}}}
//!   - {at: 12m, removeCluster: d}
//!   - {at: 13m, addWorkload: {name: api, namespace: shop, replicas: 3}}
//!   - {at: 14m, removeWorkload: shop/api}
//!   - {at: 15m, scale: {workload: shop/web, replicas: 12}}
//! ```
//!
//! Times are offsets from the start of the run: plain integers are seconds, strings combine an
//! integer with a unit (`90s`, `5m`, `1h`, `2d`, or compounds such as `1h30m`). Entries must be in
//! time order; entries at the same time apply in file order. Every entry may carry a `label`
//! shown in outputs.
//!
//! Events refer to clusters by name and to workloads by `namespace/name` (a bare `name` means the
//! `default` namespace). [`Timeline::compile`] checks every reference against the fleet as it is
//! at that point of the timeline, and reports every problem with its field path
//! (`timeline[3].at`, `timeline[5].scale.workload`).

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use tmc_core::{
    Cluster, PlacementInput, ResourceList, Taint, TaintEffect, ValidationError, ValidationErrors, Workload,
    WorkloadKey, validate,
};

/// A virtual time or duration in whole seconds, written `90s`, `5m`, `1h30m` or as an integer.
///
/// Never negative: times are offsets from the start of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub i64);

impl SimTime {
    /// Parses `90`, `90s`, `5m`, `1h`, `2d` or a compound such as `1h30m`.
    pub fn parse(text: &str) -> Result<SimTime, String> {
        let s = text.trim();
        let bad = || format!("invalid time {text:?}: expected seconds (90) or a duration such as 90s, 5m, 1h30m");
        if let Some(rest) = s.strip_prefix('-') {
            return Err(match SimTime::parse(rest) {
                Ok(_) => format!("negative time {text:?}: times are offsets from the start of the run"),
                Err(_) => bad(),
            });
        }
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(n) = s.parse::<i64>() {
            return Ok(SimTime(n));
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        let mut last_unit = u8::MAX;
        for ch in s.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let (rank, scale) = match ch {
                'd' => (0, 86_400),
                'h' => (1, 3_600),
                'm' => (2, 60),
                's' => (3, 1),
                _ => return Err(bad()),
            };
            // Units must come largest first, each once (`1h30m`, not `30m1h`).
            if digits.is_empty() || (last_unit != u8::MAX && rank <= last_unit) {
                return Err(bad());
            }
            last_unit = rank;
            let n: i64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            total = n.checked_mul(scale).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        Ok(SimTime(total))
    }

    /// Seconds.
    pub fn seconds(self) -> i64 {
        self.0
    }
}

/// Formats seconds as the largest exact units: `0s`, `45s`, `5m`, `1h30m`, `2d`, `-1m`.
pub fn format_seconds(seconds: i64) -> String {
    if seconds == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if seconds < 0 {
        out.push('-');
    }
    let mut rest = seconds.unsigned_abs();
    for (unit, scale) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= scale {
            out.push_str(&format!("{}{unit}", rest / scale));
            rest %= scale;
        }
    }
    out
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_seconds(self.0))
    }
}

impl Serialize for SimTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SimTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = SimTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time in seconds (90) or a duration such as 90s, 5m, 1h30m")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SimTime, E> {
                if v < 0 {
                    return Err(E::custom(format!("negative time {v}: times are offsets from the start of the run")));
                }
                Ok(SimTime(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SimTime, E> {
                i64::try_from(v).map(SimTime).map_err(|_| E::custom(format!("time {v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SimTime, E> {
                Err(E::custom(format!("time {v} is not a whole number of seconds")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SimTime, E> {
                SimTime::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `taint:` a taint appears on a cluster (its `addedAt` is the event's time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaintEvent {
    /// Cluster name.
    pub cluster: String,
    /// Taint key.
    pub key: String,
    /// Taint value (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: TaintEffect,
}

/// `untaint:` taints with this key (and effect, when given) leave a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UntaintEvent {
    /// Cluster name.
    pub cluster: String,
    /// Taint key.
    pub key: String,
    /// Only the taint with this effect; every effect when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

/// `drain:` cordon a cluster now and evict its replicas after `gracePeriod` (kcp's `evictAfter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainEvent {
    /// Cluster name.
    pub cluster: String,
    /// Delay before eviction (default 0: evict at once).
    #[serde(default)]
    pub grace_period: SimTime,
}

/// `capacityChange:` new values for some resources of a cluster; resources not listed keep
/// theirs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapacityChangeEvent {
    /// Cluster name.
    pub cluster: String,
    /// New total capacity per resource.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub capacity: ResourceList,
    /// New amount in use outside the batch, per resource.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocated: ResourceList,
}

/// `scale:` a workload's replica count changes, as an autoscaler would change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleEvent {
    /// `namespace/name`.
    pub workload: String,
    /// New replica count.
    pub replicas: u32,
}

/// One timeline entry as written: a time, exactly one event field, and an optional label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineEntry {
    /// When, as an offset from the start of the run.
    pub at: SimTime,
    /// Free text shown in outputs (for example `us-east-1 outage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The cluster's heartbeats stop; after the controller's heartbeat threshold it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_down: Option<String>,
    /// The cluster's heartbeats resume; it is ready again at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_up: Option<String>,
    /// A taint appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<TaintEvent>,
    /// Taints leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untaint: Option<UntaintEvent>,
    /// No new replicas on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cordon: Option<String>,
    /// New replicas allowed again; also ends a drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncordon: Option<String>,
    /// Cordon, then evict after a grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainEvent>,
    /// Capacity or outside usage changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_change: Option<CapacityChangeEvent>,
    /// A cluster joins the fleet (heartbeating unless `ready: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_cluster: Option<Cluster>,
    /// A cluster leaves the fleet; its replicas must go elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_cluster: Option<String>,
    /// A workload is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_workload: Option<Workload>,
    /// A workload is deleted (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_workload: Option<String>,
    /// A workload's replica count changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleEvent>,
}

/// The event fields of [`TimelineEntry`], in the order they are listed in error messages.
const EVENT_FIELDS: [&str; 13] = [
    "clusterDown",
    "clusterUp",
    "taint",
    "untaint",
    "cordon",
    "uncordon",
    "drain",
    "capacityChange",
    "addCluster",
    "removeCluster",
    "addWorkload",
    "removeWorkload",
    "scale",
];

/// A checked event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Heartbeats of the cluster stop.
    ClusterDown(String),
    /// Heartbeats of the cluster resume.
    ClusterUp(String),
    /// A taint appears on a cluster (`addedAt` is set when it is applied).
    Taint {
        /// Cluster name.
        cluster: String,
        /// The taint.
        taint: Taint,
    },
    /// Taints with `key` (and `effect`, when given) leave a cluster.
    Untaint {
        /// Cluster name.
        cluster: String,
        /// Taint key.
        key: String,
        /// Only this effect, when given.
        effect: Option<TaintEffect>,
    },
    /// The cluster is cordoned.
    Cordon(String),
    /// The cluster is uncordoned (and no longer drained).
    Uncordon(String),
    /// The cluster is cordoned and its replicas are evicted after `grace_period` seconds.
    Drain {
        /// Cluster name.
        cluster: String,
        /// Seconds before eviction.
        grace_period: i64,
    },
    /// New capacity or outside usage for some resources.
    CapacityChange {
        /// Cluster name.
        cluster: String,
        /// New capacities.
        capacity: ResourceList,
        /// New outside usage.
        allocated: ResourceList,
    },
    /// A cluster joins.
    AddCluster(Box<Cluster>),
    /// A cluster leaves.
    RemoveCluster(String),
    /// A workload is created.
    AddWorkload(Box<Workload>),
    /// A workload is deleted.
    RemoveWorkload(WorkloadKey),
    /// A workload's replica count changes.
    Scale {
        /// The workload.
        workload: WorkloadKey,
        /// New replica count.
        replicas: u32,
    },
}

impl Event {
    /// The event's field name in scenario files (`clusterDown`, `scale`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ClusterDown(_) => "clusterDown",
            Event::ClusterUp(_) => "clusterUp",
            Event::Taint { .. } => "taint",
            Event::Untaint { .. } => "untaint",
            Event::Cordon(_) => "cordon",
            Event::Uncordon(_) => "uncordon",
            Event::Drain { .. } => "drain",
            Event::CapacityChange { .. } => "capacityChange",
            Event::AddCluster(_) => "addCluster",
            Event::RemoveCluster(_) => "removeCluster",
            Event::AddWorkload(_) => "addWorkload",
            Event::RemoveWorkload(_) => "removeWorkload",
            Event::Scale { .. } => "scale",
        }
    }

    /// The cluster the event concerns, if any.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Event::ClusterDown(c)
            | Event::ClusterUp(c)
            | Event::Cordon(c)
            | Event::Uncordon(c)
            | Event::RemoveCluster(c)
            | Event::Taint { cluster: c, .. }
            | Event::Untaint { cluster: c, .. }
            | Event::Drain { cluster: c, .. }
            | Event::CapacityChange { cluster: c, .. } => Some(c),
            Event::AddCluster(c) => Some(&c.name),
            Event::AddWorkload(_) | Event::RemoveWorkload(_) | Event::Scale { .. } => None,
        }
    }

    /// A one-line description such as `clusterDown aws-us-east-1a` or `scale shop/web to 12`.
    pub fn describe(&self) -> String {
        let kind = self.kind();
        match self {
            Event::ClusterDown(c)
            | Event::ClusterUp(c)
            | Event::Cordon(c)
            | Event::Uncordon(c)
            | Event::RemoveCluster(c) => format!("{kind} {c}"),
            Event::Taint { cluster, taint } => {
                format!("{kind} {cluster} {}", Taint { added_at: None, ..taint.clone() })
            }
            Event::Untaint { cluster, key, effect } => match effect {
                Some(e) => format!("{kind} {cluster} {key}:{e}"),
                None => format!("{kind} {cluster} {key}"),
            },
            Event::Drain { cluster, grace_period } if *grace_period > 0 => {
                format!("{kind} {cluster} (evict after {})", format_seconds(*grace_period))
            }
            Event::Drain { cluster, .. } => format!("{kind} {cluster}"),
            Event::CapacityChange { cluster, capacity, allocated } => {
                let list = |l: &ResourceList| l.iter().map(|(r, q)| format!("{r}={q}")).collect::<Vec<_>>().join(",");
                let mut parts = Vec::new();
                if !capacity.is_empty() {
                    parts.push(format!("capacity {}", list(capacity)));
                }
                if !allocated.is_empty() {
                    parts.push(format!("allocated {}", list(allocated)));
                }
                format!("{kind} {cluster} {}", parts.join(" "))
            }
            Event::AddCluster(c) => format!("{kind} {}", c.name),
            Event::AddWorkload(w) => format!("{kind} {}", w.key()),
            Event::RemoveWorkload(k) => format!("{kind} {k}"),
            Event::Scale { workload, replicas } => format!("{kind} {workload} to {replicas}"),
        }
    }
}

/// A checked event at its time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// Seconds from the start of the run.
    pub at: i64,
    /// Index of the entry in the scenario's `timeline`.
    pub index: usize,
    /// The entry's label, if any.
    pub label: Option<String>,
    /// What happens.
    pub event: Event,
}

/// A checked timeline, in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// The events, in the order they apply.
    pub events: Vec<TimedEvent>,
}

/// Parses `namespace/name` (or `name`, in the `default` namespace).
pub fn parse_workload_key(text: &str) -> Result<WorkloadKey, String> {
    let (ns, name) = text.split_once('/').unwrap_or(("default", text));
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("invalid workload {text:?}: expected namespace/name"));
    }
    Ok(WorkloadKey::new(ns, name))
}

/// What the timeline checker tracks about a cluster.
#[derive(Clone, Debug, Default)]
struct ClusterFacts {
    down: bool,
    cordoned: bool,
    taints: Vec<(String, TaintEffect)>,
}

impl Timeline {
    /// Checks `entries` against the initial fleet and workloads of `input`, following the fleet
    /// through the timeline so that every reference is checked against the fleet of its time.
    /// `end` is the run's `duration`, if any. Reports every problem with its field path.
    pub fn compile(
        entries: &[TimelineEntry],
        input: &PlacementInput,
        end: Option<i64>,
    ) -> Result<Timeline, ValidationErrors> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(ValidationError { path, message });
        let mut clusters: BTreeMap<String, ClusterFacts> = input
            .clusters
            .iter()
            .map(|c| {
                let facts = ClusterFacts {
                    down: !c.ready,
                    cordoned: c.unschedulable,
                    taints: c.taints.iter().map(|t| (t.key.clone(), t.effect)).collect(),
                };
                (c.name.clone(), facts)
            })
            .collect();
        let mut removed_clusters: BTreeMap<String, usize> = BTreeMap::new();
        let mut workloads: BTreeMap<WorkloadKey, ()> = input.workloads.iter().map(|w| (w.key(), ())).collect();
        let mut removed_workloads: BTreeMap<WorkloadKey, usize> = BTreeMap::new();
        let mut events = Vec::new();
        let mut last: Option<(i64, usize)> = None;
        for (i, entry) in entries.iter().enumerate() {
            let p = format!("timeline[{i}]");
            let at = entry.at.seconds();
            if at < 0 {
                err(format!("{p}.at"), format!("negative time {at}: times are offsets from the start of the run"));
            }
            if let Some((prev, j)) = last
                && at < prev
            {
                err(
                    format!("{p}.at"),
                    format!(
                        "{} is before {} (timeline[{j}].at): entries must be in time order",
                        format_seconds(at),
                        format_seconds(prev)
                    ),
                );
            }
            if last.is_none_or(|(prev, _)| at >= prev) {
                last = Some((at, i));
            }
            if let Some(end) = end
                && at > end
            {
                err(
                    format!("{p}.at"),
                    format!("{} is after the end of the run (duration {})", format_seconds(at), format_seconds(end)),
                );
            }
            let set: Vec<&str> = EVENT_FIELDS
                .iter()
                .copied()
                .zip([
                    entry.cluster_down.is_some(),
                    entry.cluster_up.is_some(),
                    entry.taint.is_some(),
                    entry.untaint.is_some(),
                    entry.cordon.is_some(),
                    entry.uncordon.is_some(),
                    entry.drain.is_some(),
                    entry.capacity_change.is_some(),
                    entry.add_cluster.is_some(),
                    entry.remove_cluster.is_some(),
                    entry.add_workload.is_some(),
                    entry.remove_workload.is_some(),
                    entry.scale.is_some(),
                ])
                .filter_map(|(name, present)| present.then_some(name))
                .collect();
            if set.len() != 1 {
                let found = if set.is_empty() { "none".to_string() } else { set.join(", ") };
                err(p.clone(), format!("needs exactly one event ({}); found {found}", EVENT_FIELDS.join(", ")));
                continue;
            }
            let event = if let Some(c) = &entry.cluster_down {
                let path = format!("{p}.clusterDown");
                if !check_cluster_ref(path.clone(), c, &clusters, &removed_clusters, &mut err) {
                    continue;
                }
                let facts = clusters.entry(c.clone()).or_default();
                if facts.down {
                    err(path, format!("cluster {c:?} is already down"));
                }
                facts.down = true;
                Event::ClusterDown(c.clone())
            } else if let Some(c) = &entry.cluster_up {
                let path = format!("{p}.clusterUp");
                if !check_cluster_ref(path.clone(), c, &clusters, &removed_clusters, &mut err) {
                    continue;
                }
                let facts = clusters.entry(c.clone()).or_default();
                if !facts.down {
                    err(path, format!("cluster {c:?} is not down"));
                }
                facts.down = false;
                Event::ClusterUp(c.clone())
            } else if let Some(t) = &entry.taint {
                if !check_cluster_ref(format!("{p}.taint.cluster"), &t.cluster, &clusters, &removed_clusters, &mut err)
                {
                    continue;
                }
                if t.key.is_empty() {
                    err(format!("{p}.taint.key"), "taint key must not be empty".to_string());
                }
                let facts = clusters.entry(t.cluster.clone()).or_default();
                if facts.taints.contains(&(t.key.clone(), t.effect)) {
                    err(
                        format!("{p}.taint"),
                        format!("cluster {:?} already has a taint {}:{}", t.cluster, t.key, t.effect),
                    );
                }
                facts.taints.push((t.key.clone(), t.effect));
                Event::Taint {
                    cluster: t.cluster.clone(),
                    taint: Taint { key: t.key.clone(), value: t.value.clone(), effect: t.effect, added_at: None },
                }
            } else if let Some(u) = &entry.untaint {
                if !check_cluster_ref(
                    format!("{p}.untaint.cluster"),
                    &u.cluster,
                    &clusters,
                    &removed_clusters,
                    &mut err,
                ) {
                    continue;
                }
                let facts = clusters.entry(u.cluster.clone()).or_default();
                let matches = |(k, e): &(String, TaintEffect)| *k == u.key && u.effect.is_none_or(|x| x == *e);
                if !facts.taints.iter().any(matches) {
                    let what = match u.effect {
                        Some(e) => format!("{}:{e}", u.key),
                        None => u.key.clone(),
                    };
                    err(format!("{p}.untaint"), format!("cluster {:?} has no taint {what} at this time", u.cluster));
                }
                facts.taints.retain(|t| !matches(t));
                Event::Untaint { cluster: u.cluster.clone(), key: u.key.clone(), effect: u.effect }
            } else if let Some(c) = &entry.cordon {
                let path = format!("{p}.cordon");
                if !check_cluster_ref(path.clone(), c, &clusters, &removed_clusters, &mut err) {
                    continue;
                }
                let facts = clusters.entry(c.clone()).or_default();
                if facts.cordoned {
                    err(path, format!("cluster {c:?} is already cordoned"));
                }
                facts.cordoned = true;
                Event::Cordon(c.clone())
            } else if let Some(c) = &entry.uncordon {
                let path = format!("{p}.uncordon");
                if !check_cluster_ref(path.clone(), c, &clusters, &removed_clusters, &mut err) {
                    continue;
                }
                let facts = clusters.entry(c.clone()).or_default();
                if !facts.cordoned {
                    err(path, format!("cluster {c:?} is not cordoned"));
                }
                facts.cordoned = false;
                Event::Uncordon(c.clone())
            } else if let Some(d) = &entry.drain {
                if !check_cluster_ref(format!("{p}.drain.cluster"), &d.cluster, &clusters, &removed_clusters, &mut err)
                {
                    continue;
                }
                clusters.entry(d.cluster.clone()).or_default().cordoned = true;
                Event::Drain { cluster: d.cluster.clone(), grace_period: d.grace_period.seconds() }
            } else if let Some(c) = &entry.capacity_change {
                if !check_cluster_ref(
                    format!("{p}.capacityChange.cluster"),
                    &c.cluster,
                    &clusters,
                    &removed_clusters,
                    &mut err,
                ) {
                    continue;
                }
                if c.capacity.is_empty() && c.allocated.is_empty() {
                    err(format!("{p}.capacityChange"), "needs capacity or allocated".to_string());
                }
                for (field, list) in [("capacity", &c.capacity), ("allocated", &c.allocated)] {
                    if list.keys().any(|r| r.trim().is_empty()) {
                        err(format!("{p}.capacityChange.{field}"), "empty resource name".to_string());
                    }
                }
                Event::CapacityChange {
                    cluster: c.cluster.clone(),
                    capacity: c.capacity.clone(),
                    allocated: c.allocated.clone(),
                }
            } else if let Some(c) = &entry.add_cluster {
                let path = format!("{p}.addCluster");
                let one = PlacementInput { clusters: vec![c.clone()], ..PlacementInput::default() };
                if let Err(e) = validate(&one) {
                    for v in e.0 {
                        err(v.path.replacen("clusters[0]", &path, 1), v.message);
                    }
                }
                if clusters.contains_key(&c.name) {
                    err(format!("{path}.name"), format!("cluster {:?} already exists", c.name));
                }
                removed_clusters.remove(&c.name);
                let facts = ClusterFacts {
                    down: !c.ready,
                    cordoned: c.unschedulable,
                    taints: c.taints.iter().map(|t| (t.key.clone(), t.effect)).collect(),
                };
                clusters.insert(c.name.clone(), facts);
                Event::AddCluster(Box::new(c.clone()))
            } else if let Some(c) = &entry.remove_cluster {
                if !check_cluster_ref(format!("{p}.removeCluster"), c, &clusters, &removed_clusters, &mut err) {
                    continue;
                }
                clusters.remove(c);
                removed_clusters.insert(c.clone(), i);
                Event::RemoveCluster(c.clone())
            } else if let Some(w) = &entry.add_workload {
                let path = format!("{p}.addWorkload");
                let one = PlacementInput { workloads: vec![w.clone()], ..PlacementInput::default() };
                if let Err(e) = validate(&one) {
                    for v in e.0 {
                        err(v.path.replacen("workloads[0]", &path, 1), v.message);
                    }
                }
                if workloads.contains_key(&w.key()) {
                    err(format!("{path}.name"), format!("workload {} already exists", w.key()));
                }
                removed_workloads.remove(&w.key());
                workloads.insert(w.key(), ());
                Event::AddWorkload(Box::new(w.clone()))
            } else if let Some(k) = &entry.remove_workload {
                let path = format!("{p}.removeWorkload");
                let Some(key) = check_workload_ref(&path, k, &workloads, &removed_workloads, &mut err) else {
                    continue;
                };
                workloads.remove(&key);
                removed_workloads.insert(key.clone(), i);
                Event::RemoveWorkload(key)
            } else if let Some(s) = &entry.scale {
                let path = format!("{p}.scale.workload");
                let Some(key) = check_workload_ref(&path, &s.workload, &workloads, &removed_workloads, &mut err) else {
                    continue;
                };
                if s.replicas > tmc_core::validate::MAX_REPLICAS {
                    err(
                        format!("{p}.scale.replicas"),
                        format!("{} exceeds the maximum of {}", s.replicas, tmc_core::validate::MAX_REPLICAS),
                    );
                }
                Event::Scale { workload: key, replicas: s.replicas }
            } else {
                continue;
            };
            events.push(TimedEvent { at, index: i, label: entry.label.clone(), event });
        }
        if errors.is_empty() { Ok(Timeline { events }) } else { Err(ValidationErrors(errors)) }
    }
}

/// Whether the cluster an event names exists at this point of the timeline; reports it otherwise.
fn check_cluster_ref(
    path: String,
    name: &str,
    clusters: &BTreeMap<String, ClusterFacts>,
    removed: &BTreeMap<String, usize>,
    err: &mut dyn FnMut(String, String),
) -> bool {
    if clusters.contains_key(name) {
        return true;
    }
    match removed.get(name) {
        Some(j) => err(path, format!("cluster {name:?} was removed at timeline[{j}]")),
        None => err(path, format!("unknown cluster {name:?}")),
    }
    false
}

/// Resolves a workload reference, reporting an unknown or removed workload at `path`.
fn check_workload_ref(
    path: &str,
    text: &str,
    workloads: &BTreeMap<WorkloadKey, ()>,
    removed: &BTreeMap<WorkloadKey, usize>,
    err: &mut dyn FnMut(String, String),
) -> Option<WorkloadKey> {
    let key = match parse_workload_key(text) {
        Ok(k) => k,
        Err(e) => {
            err(path.to_string(), e);
            return None;
        }
    };
    if workloads.contains_key(&key) {
        return Some(key);
    }
    match removed.get(&key) {
        Some(j) => err(path.to_string(), format!("workload {key} was removed at timeline[{j}]")),
        None => err(path.to_string(), format!("unknown workload {key}")),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        for (text, secs) in
            [("0", 0), ("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172_800)]
        {
            assert_eq!(SimTime::parse(text), Ok(SimTime(secs)), "{text}");
        }
        for bad in ["", "5x", "m", "30m1h", "1h1h", "1.5m", "5 m"] {
            assert!(SimTime::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(SimTime::parse("-5m").is_err_and(|e| e.contains("negative")));
        for secs in [0, 45, 60, 5400, 90_061] {
            assert_eq!(SimTime::parse(&format_seconds(secs)), Ok(SimTime(secs)), "round trip of {secs}");
        }
        assert_eq!(format_seconds(5400), "1h30m");
    }

    #[test]
    fn workload_keys_default_the_namespace() {
        assert_eq!(parse_workload_key("shop/web"), Ok(WorkloadKey::new("shop", "web")));
        assert_eq!(parse_workload_key("web"), Ok(WorkloadKey::new("default", "web")));
        assert!(parse_workload_key("a/b/c").is_err());
        assert!(parse_workload_key("/b").is_err());
    }
}
