//! Measurements of a plan against its fleet, computed independently of the solver: capacity use,
//! overcommit, utilization, pending replicas, spread, and the replicas that start, stop and move
//! between two plans.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tmc_core::{
    Cluster, Phase, Placement, PlacementInput, Plan, Quantity, ReplicaSchedulingType, Workload, resources::PODS,
};

/// Per-replica demand of a workload as `(resource, amount)`: its requests, plus one `pods` unless
/// it requests pods itself.
pub fn demand(w: &Workload) -> Vec<(String, Quantity)> {
    let mut d: Vec<(String, Quantity)> =
        w.resources.iter().filter(|(_, q)| !q.is_zero()).map(|(r, q)| (r.clone(), *q)).collect();
    if !w.resources.contains_key(PODS) {
        d.push((PODS.to_string(), Quantity::from_units(1)));
    }
    d
}

/// `capacity - allocated` of `resource` on `cluster`; `None` when unlimited (`pods` not listed).
/// A resource the cluster does not list has no room.
pub fn free(cluster: &Cluster, resource: &str) -> Option<Quantity> {
    match cluster.capacity.get(resource) {
        Some(total) => Some(total.saturating_sub(cluster.allocated.get(resource).copied().unwrap_or_default())),
        None if resource == PODS => None,
        None => Some(Quantity::ZERO),
    }
}

/// What the plan's replicas use, per cluster and resource (outside usage not included).
pub type Usage = BTreeMap<String, BTreeMap<String, Quantity>>;

/// Adds up the demand of every decision of `plan` (decisions on clusters not in the input count
/// too, so they cannot hide).
pub fn usage(input: &PlacementInput, plan: &Plan) -> Usage {
    let workloads: BTreeMap<_, &Workload> = input.workloads.iter().map(|w| (w.key(), w)).collect();
    let mut used: Usage = BTreeMap::new();
    for p in &plan.placements {
        let Some(w) = workloads.get(&p.workload) else { continue };
        let per = demand(w);
        for d in &p.decisions {
            let on = used.entry(d.cluster.clone()).or_default();
            for (r, q) in &per {
                let total = on.entry(r.clone()).or_insert(Quantity::ZERO);
                *total = total.saturating_add(q.saturating_mul(u64::from(d.replicas)));
            }
        }
    }
    used
}

/// One resource of one cluster used beyond its free capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overcommit {
    /// Cluster name.
    pub cluster: String,
    /// Resource name.
    pub resource: String,
    /// What the plan uses.
    pub used: Quantity,
    /// What was free (capacity minus allocated); zero for a cluster that is gone.
    pub free: Quantity,
}

/// Every (cluster, resource) where the plan uses more than is free. A plan must have none.
pub fn overcommit(input: &PlacementInput, used: &Usage) -> Vec<Overcommit> {
    let clusters: BTreeMap<&str, &Cluster> = input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = Vec::new();
    for (name, per) in used {
        for (resource, &q) in per {
            if q.is_zero() {
                continue;
            }
            let room = match clusters.get(name.as_str()) {
                Some(c) => free(c, resource),
                None => Some(Quantity::ZERO),
            };
            if let Some(room) = room
                && q > room
            {
                out.push(Overcommit { cluster: name.clone(), resource: resource.clone(), used: q, free: room });
            }
        }
    }
    out
}

/// `part / whole` in percent with one decimal, computed in integers (so it is the same bytes on
/// every machine); 0 when `whole` is zero.
pub fn percent(part: Quantity, whole: Quantity) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    // Round half up to the nearest tenth of a percent (saturating: absurd sizes clamp).
    let whole = whole.nanos();
    let per_mille = part.nanos().saturating_mul(1000).saturating_add(whole / 2) / whole;
    u32::try_from(per_mille).map_or(f64::from(u32::MAX), f64::from) / 10.0
}

/// Utilization of every cluster of `input` in percent, per resource it lists with a non-zero
/// capacity: `(allocated + used) / capacity`.
pub fn utilization(input: &PlacementInput, used: &Usage) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for c in &input.clusters {
        let mut per = BTreeMap::new();
        for (resource, &cap) in &c.capacity {
            if cap.is_zero() {
                continue;
            }
            let outside = c.allocated.get(resource).copied().unwrap_or_default();
            let batch = used.get(&c.name).and_then(|u| u.get(resource)).copied().unwrap_or_default();
            per.insert(resource.clone(), percent(outside.saturating_add(batch), cap));
        }
        out.insert(c.name.clone(), per);
    }
    out
}

/// Fleet-wide utilization per resource: everything used over everything listed, in percent.
pub fn fleet_utilization(input: &PlacementInput, used: &Usage) -> BTreeMap<String, f64> {
    let mut totals: BTreeMap<&str, (Quantity, Quantity)> = BTreeMap::new();
    for c in &input.clusters {
        for (resource, &cap) in &c.capacity {
            let outside = c.allocated.get(resource).copied().unwrap_or_default();
            let batch = used.get(&c.name).and_then(|u| u.get(resource)).copied().unwrap_or_default();
            let t = totals.entry(resource).or_insert((Quantity::ZERO, Quantity::ZERO));
            t.0 = t.0.saturating_add(outside.saturating_add(batch));
            t.1 = t.1.saturating_add(cap);
        }
    }
    totals
        .into_iter()
        .filter(|(_, (_, cap))| !cap.is_zero())
        .map(|(r, (u, cap))| (r.to_string(), percent(u, cap)))
        .collect()
}

/// Replicas a placement still lacks: Divided, the difference to the request; Duplicated with
/// `numberOfClusters`, the missing copies times the replicas per copy; Duplicated without it, one
/// copy's replicas when no cluster holds one.
pub fn pending(w: &Workload, p: &Placement) -> u64 {
    let r = u64::from(w.replicas);
    match w.replica_scheduling.kind {
        ReplicaSchedulingType::Divided => r.saturating_sub(p.placed),
        ReplicaSchedulingType::Duplicated => match w.number_of_clusters {
            Some(n) => u64::from(n).saturating_sub(p.decisions.len() as u64) * r,
            None if p.decisions.is_empty() => r,
            None => 0,
        },
    }
}

/// How many workloads are in each phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseCounts {
    /// Fully placed.
    pub scheduled: u64,
    /// Placed in part.
    pub partially_scheduled: u64,
    /// Not placed at all.
    pub unschedulable: u64,
}

impl PhaseCounts {
    /// Counts the phases of a plan.
    pub fn of(plan: &Plan) -> Self {
        let mut c = PhaseCounts::default();
        for p in &plan.placements {
            match p.phase {
                Phase::Scheduled => c.scheduled += 1,
                Phase::PartiallyScheduled => c.partially_scheduled += 1,
                Phase::Unschedulable => c.unschedulable += 1,
            }
        }
        c
    }
}

/// Replicas per cluster of one placement.
pub fn counts(p: &Placement) -> BTreeMap<String, u64> {
    p.decisions.iter().map(|d| (d.cluster.clone(), u64::from(d.replicas))).collect()
}

/// How one workload's replicas change between two plans.
///
/// With `before(c)` and `after(c)` the replicas on cluster `c`:
/// - `stopped` = Σ max(0, before(c) − after(c)): replicas that stop on some cluster;
/// - `started` = Σ max(0, after(c) − before(c)): replicas that start on some cluster;
/// - `moved` = min(stopped, started): replicas that stop on one cluster and start on another in
///   the same step. A scale-down, a deleted workload or a replica that cannot go anywhere stops
///   replicas without moving them; a scale-up or a new workload starts replicas without moving
///   them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Churn {
    /// Replicas that stop.
    pub stopped: u64,
    /// Replicas that start.
    pub started: u64,
    /// Replicas that move (stop here, start there).
    pub moved: u64,
}

impl Churn {
    /// The churn from `before` to `after` (replicas per cluster).
    pub fn between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Self {
        let mut c = Churn::default();
        for (cluster, &b) in before {
            c.stopped += b.saturating_sub(after.get(cluster).copied().unwrap_or(0));
        }
        for (cluster, &a) in after {
            c.started += a.saturating_sub(before.get(cluster).copied().unwrap_or(0));
        }
        c.moved = c.stopped.min(c.started);
        c
    }

    /// Adds another churn.
    pub fn add(&mut self, other: Churn) {
        self.stopped += other.stopped;
        self.started += other.started;
        self.moved += other.moved;
    }
}

/// `a=2 b=1` (or `-` when empty), the compact form of replicas per cluster.
pub fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_string();
    }
    counts.iter().map(|(c, n)| format!("{c}={n}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }

    #[test]
    fn churn_counts_moves_only_when_replicas_change_clusters() {
        let c = Churn::between(&m(&[("a", 3), ("b", 1)]), &m(&[("a", 1), ("c", 2), ("b", 1)]));
        assert_eq!(c, Churn { stopped: 2, started: 2, moved: 2 });
        let down = Churn::between(&m(&[("a", 3)]), &m(&[("a", 1)]));
        assert_eq!(down, Churn { stopped: 2, started: 0, moved: 0 }, "scale-down is no move");
        let up = Churn::between(&m(&[]), &m(&[("a", 4)]));
        assert_eq!(up, Churn { stopped: 0, started: 4, moved: 0 }, "a new workload is no move");
        let shrink_and_move = Churn::between(&m(&[("a", 4)]), &m(&[("b", 2)]));
        assert_eq!(shrink_and_move.moved, 2, "a scale-down that relocates counts the relocations");
    }

    #[test]
    fn percent_is_rounded_to_a_tenth() {
        let q = |n: u64| Quantity::from_units(n);
        assert_eq!(percent(q(1), q(3)), 33.3);
        assert_eq!(percent(q(2), q(3)), 66.7);
        assert_eq!(percent(q(3), q(3)), 100.0);
        assert_eq!(percent(q(5), q(4)), 125.0);
        assert_eq!(percent(q(1), Quantity::ZERO), 0.0);
    }

    #[test]
    fn overcommit_is_found_against_free_capacity() {
        let mut c = Cluster { name: "a".into(), ..Cluster::default() };
        c.capacity.insert("cpu".into(), Quantity::from_units(4));
        c.allocated.insert("cpu".into(), Quantity::from_units(1));
        let mut w = Workload::named("w");
        w.replicas = 4;
        w.resources.insert("cpu".into(), Quantity::from_units(1));
        let input = PlacementInput { clusters: vec![c], workloads: vec![w.clone()], ..PlacementInput::default() };
        let plan = |n: u32| Plan {
            placements: vec![Placement {
                workload: w.key(),
                decisions: vec![tmc_core::Decision { cluster: "a".into(), replicas: n }],
                ..Placement::default()
            }],
            ..Plan::default()
        };
        assert!(overcommit(&input, &usage(&input, &plan(3))).is_empty());
        let over = overcommit(&input, &usage(&input, &plan(4)));
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].resource.as_str(), over[0].free), ("cpu", Quantity::from_units(3)));
        assert_eq!(utilization(&input, &usage(&input, &plan(3)))["a"]["cpu"], 100.0);
    }
}
