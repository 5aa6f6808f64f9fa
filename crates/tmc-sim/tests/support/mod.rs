//! Shared by the integration tests: an independent checker of every hard rule of the model.
//!
//! Each test crate uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use tmc_core::{
    Cluster, ClusterAffinity, Phase, Placement, PlacementInput, Plan, Quantity, ReplicaSchedulingType, TaintEffect,
    Workload, WorkloadKey,
    taint::{TaintVerdict, judge},
};

/// Per-replica demand as `(resource, amount)`, with `pods: 1` unless the workload names pods.
pub fn demand(w: &Workload) -> Vec<(String, Quantity)> {
    let mut d: Vec<(String, Quantity)> =
        w.resources.iter().filter(|(_, q)| !q.is_zero()).map(|(r, q)| (r.clone(), *q)).collect();
    if !w.resources.contains_key("pods") {
        d.push(("pods".to_string(), Quantity::from_units(1)));
    }
    d
}

/// `capacity - allocated` of `resource`, `None` when unlimited (`pods` not listed).
pub fn free(c: &Cluster, resource: &str) -> Option<Quantity> {
    match c.capacity.get(resource) {
        Some(total) => Some(total.saturating_sub(c.allocated.get(resource).copied().unwrap_or_default())),
        None if resource == "pods" => None,
        None => Some(Quantity::ZERO),
    }
}

/// The affinity a placement was decided under: the named group, or the workload's single affinity.
fn affinity_of<'a>(w: &'a Workload, p: &Placement) -> Option<&'a ClusterAffinity> {
    if w.cluster_affinities.is_empty() {
        assert_eq!(p.affinity_group, None, "{}: affinityGroup without clusterAffinities", p.workload);
        return w.cluster_affinity.as_ref();
    }
    if p.decisions.is_empty() {
        return None;
    }
    let group = p.affinity_group.as_deref().unwrap_or_else(|| panic!("{}: placed without affinityGroup", p.workload));
    let found = w.cluster_affinities.iter().find(|a| a.name.as_deref() == Some(group));
    Some(found.unwrap_or_else(|| panic!("{}: unknown affinityGroup {group:?}", p.workload)))
}

/// Checks every hard rule of the model on `plan`; returns the violations found.
pub fn policy_violations(input: &PlacementInput, plan: &Plan) -> Vec<String> {
    let mut v = Vec::new();
    let clusters: BTreeMap<&str, &Cluster> = input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let workloads: BTreeMap<WorkloadKey, &Workload> = input.workloads.iter().map(|w| (w.key(), w)).collect();
    let previous: BTreeMap<&WorkloadKey, BTreeMap<&str, u32>> = input
        .previous
        .iter()
        .map(|p| (&p.workload, p.decisions.iter().map(|d| (d.cluster.as_str(), d.replicas)).collect()))
        .collect();
    let keys: Vec<&WorkloadKey> = plan.placements.iter().map(|p| &p.workload).collect();
    let want: Vec<&WorkloadKey> = workloads.keys().collect();
    if keys != want {
        v.push(format!("placements {keys:?} are not one per workload, sorted: {want:?}"));
    }
    let mut used: BTreeMap<(&str, String), Quantity> = BTreeMap::new();
    for p in &plan.placements {
        let Some(w) = workloads.get(&p.workload) else { continue };
        let id = &p.workload;
        let r = w.replicas;
        let divided = w.replica_scheduling.kind == ReplicaSchedulingType::Divided;
        let mut err = |m: String| v.push(format!("{id}: {m}"));
        if p.replica_scheduling_type != w.replica_scheduling.kind || p.requested != r {
            err("type or requested does not echo the workload".into());
        }
        let names: Vec<&str> = p.decisions.iter().map(|d| d.cluster.as_str()).collect();
        if names.windows(2).any(|pair| pair[0] >= pair[1]) {
            err(format!("decisions not sorted by unique cluster: {names:?}"));
        }
        let sum: u64 = p.decisions.iter().map(|d| u64::from(d.replicas)).sum();
        if p.decisions.iter().any(|d| d.replicas == 0) {
            err("a decision has 0 replicas".into());
        }
        if p.placed != sum {
            err(format!("placed {} but decisions sum to {sum}", p.placed));
        }
        // Completeness and phase.
        let complete = if r == 0 {
            p.decisions.is_empty()
        } else if divided {
            if sum > u64::from(r) {
                err(format!("{sum} replicas placed, only {r} requested"));
            }
            sum == u64::from(r)
        } else {
            if p.decisions.iter().any(|d| d.replicas != r) {
                err(format!("a Duplicated copy lacks replicas (each cluster needs {r})"));
            }
            match w.number_of_clusters {
                Some(n) => p.decisions.len() == n as usize,
                None => !p.decisions.is_empty(),
            }
        };
        let phase = if complete {
            Phase::Scheduled
        } else if p.decisions.is_empty() {
            Phase::Unschedulable
        } else {
            Phase::PartiallyScheduled
        };
        if p.phase != phase {
            err(format!("phase {:?}, expected {phase:?}", p.phase));
        }
        // A fully placed workload is not explained (its message, if any, only reports what the
        // solver did: rebalanced or preempted replicas); the others always are.
        let explained = p.message.contains(" clusters are available");
        if (p.phase == Phase::Scheduled) == explained || (p.phase != Phase::Scheduled && p.message.is_empty()) {
            err(format!("message {:?} does not fit phase {:?}", p.message, p.phase));
        }
        if p.phase != Phase::Scheduled && !p.message.contains(&format!("/{} clusters are available", clusters.len())) {
            err(format!("message {:?} lacks the cluster count", p.message));
        }
        if let Some(n) = w.number_of_clusters
            && p.decisions.len() > n as usize
        {
            err(format!("{} clusters, numberOfClusters is {n}", p.decisions.len()));
        }
        let rs = &w.replica_scheduling;
        for d in &p.decisions {
            if divided
                && (rs.min_replicas_per_cluster.is_some_and(|m| d.replicas < m)
                    || rs.max_replicas_per_cluster.is_some_and(|m| d.replicas > m))
            {
                err(format!("{} replicas on {} break min/maxReplicasPerCluster", d.replicas, d.cluster));
            }
        }
        // Filters, per chosen cluster.
        let affinity = affinity_of(w, p);
        let prev = previous.get(id);
        for d in &p.decisions {
            let Some(c) = clusters.get(d.cluster.as_str()) else {
                err(format!("decision names unknown cluster {}", d.cluster));
                continue;
            };
            let on = &d.cluster;
            if let Some(Err(part)) = affinity.map(|a| a.check(c)) {
                err(format!("{on} fails the cluster affinity ({part:?})"));
            }
            for api in w.required_apis.iter().filter(|a| !c.api_resources.contains(a)) {
                err(format!("{on} does not serve {api}"));
            }
            for cap in w.required_capabilities.iter().filter(|k| !c.capabilities.contains(k)) {
                err(format!("{on} lacks capability {cap}"));
            }
            for s in w.spread_constraints.iter().filter(|s| c.topology_value(&s.topology_key).is_none()) {
                err(format!("{on} has no {} for spread", s.topology_key));
            }
            // Replicas that may only stay, never be added: up to the previous count there.
            let mut keep_only = c.unschedulable;
            for taint in c.effective_taints() {
                match (taint.effect, judge(&taint, &w.tolerations, input.now)) {
                    (_, TaintVerdict::Tolerated) | (TaintEffect::PreferNoSchedule, _) => {}
                    (TaintEffect::NoExecute, TaintVerdict::Untolerated) => {
                        err(format!("{on} has untolerated NoExecute taint {}", *taint));
                    }
                    _ => keep_only = true,
                }
            }
            let before = prev.and_then(|m| m.get(on.as_str())).copied().unwrap_or(0);
            if keep_only && d.replicas > before {
                err(format!("{on} admits no new replicas, got {} (previously {before})", d.replicas));
            }
            if divided
                && rs.division == tmc_core::Division::Weighted
                && !rs.weights.is_empty()
                && !rs.weights.iter().any(|e| {
                    e.cluster_names.contains(&c.name) || e.label_selector.as_ref().is_some_and(|s| s.matches(&c.labels))
                })
            {
                err(format!("{on} has static weight 0"));
            }
            for (res, q) in demand(w) {
                let total = used.entry((c.name.as_str(), res)).or_insert(Quantity::ZERO);
                *total = total.saturating_add(q.saturating_mul(u64::from(d.replicas)));
            }
        }
        // Spread.
        if !p.decisions.is_empty() {
            for s in &w.spread_constraints {
                let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
                for d in &p.decisions {
                    if let Some(value) =
                        clusters.get(d.cluster.as_str()).and_then(|c| c.topology_value(&s.topology_key))
                    {
                        *groups.entry(value).or_insert(0) += if divided { u64::from(d.replicas) } else { 1 };
                    }
                }
                let n = groups.len() as u32;
                if s.min_groups.is_some_and(|m| n < m) || s.max_groups.is_some_and(|m| n > m) {
                    err(format!("spread on {} uses {n} groups: {groups:?}", s.topology_key));
                }
                let hi = groups.values().max().copied().unwrap_or(0);
                let lo = groups.values().min().copied().unwrap_or(0);
                if s.max_skew.is_some_and(|m| hi - lo > u64::from(m)) {
                    err(format!("spread on {} has skew {}: {groups:?}", s.topology_key, hi - lo));
                }
            }
        }
    }
    // Capacity over the whole batch.
    for ((cluster, res), total) in &used {
        if let Some(room) = clusters.get(cluster).and_then(|c| free(c, res))
            && *total > room
        {
            v.push(format!("{cluster} is overcommitted on {res}: {total} placed, {room} free"));
        }
    }
    v
}
