//! One joint plan for all placements of a workspace. Pure: objects in, statuses out.
//!
//! This is the whole of the adapter's "placement logic", and it holds none of its own: it maps
//! objects to `tmc-core` types ([`crate::mapping`]), applies the controller rules of
//! [`tmc_core::controller::ControllerConfig`] (readiness from heartbeats, drain, default not-ready
//! toleration), calls [`tmc_core::solve`] once over every placement of the workspace with their
//! previous decisions, and maps the plan back to statuses, events and the next time to wake up.

use std::collections::BTreeMap;

use kube::ResourceExt;
use tmc_core::{Cluster, PlacementInput, Workload, WorkloadKey, controller::ControllerConfig, solve, validate};

use crate::{
    crd::{ClusterRegistration, WorkloadPlacement, WorkloadPlacementStatus},
    mapping::{self, WorkloadMapping, WorkloadObject},
};

/// A Kubernetes Event the controller should record for a placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// CamelCase reason (`Scheduled`, `Rescheduled`, `FailedScheduling`, `InvalidPolicy`).
    pub reason: String,
    /// Human-readable note.
    pub note: String,
}

/// The new status of one placement.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStatus {
    /// `namespace/name`.
    pub key: WorkloadKey,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The status to write.
    pub status: WorkloadPlacementStatus,
    /// Whether it differs from the current status.
    pub changed: bool,
    /// Events to record (only when something changed).
    pub events: Vec<PlannedEvent>,
}

/// The outcome of planning one workspace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkspacePlan {
    /// One entry per placement, sorted by key.
    pub statuses: Vec<PlannedStatus>,
    /// The earliest time (Unix seconds) at which the plan may change by itself.
    pub next_wakeup: Option<i64>,
    /// Clusters left out of the plan, with why.
    pub invalid_clusters: Vec<(String, String)>,
    /// The clusters as the solver saw them.
    pub clusters: Vec<Cluster>,
}

/// Everything of one workspace the plan depends on.
#[derive(Clone, Debug)]
pub struct WorkspaceSnapshot<'a> {
    /// The ClusterRegistrations of the workspace.
    pub registrations: Vec<&'a ClusterRegistration>,
    /// The WorkloadPlacements of the workspace.
    pub placements: Vec<&'a WorkloadPlacement>,
    /// Objects the placements may select (any namespace of the workspace).
    pub objects: &'a [WorkloadObject],
    /// Statuses this controller wrote that the caches may not show yet; they take precedence
    /// over the statuses in `placements`.
    pub written: &'a BTreeMap<WorkloadKey, WorkloadPlacementStatus>,
}

/// Plans every placement of a workspace at `now` (Unix seconds).
pub fn plan_workspace(snapshot: &WorkspaceSnapshot<'_>, config: &ControllerConfig, now: i64) -> WorkspacePlan {
    let mut out = WorkspacePlan::default();

    // Clusters, as the solver must see them now.
    let mut regs: Vec<&ClusterRegistration> = snapshot.registrations.clone();
    regs.sort_by_key(|r| r.name_any());
    let mut clusters = Vec::new();
    let mut wake: Option<i64> = None;
    let mut consider = |t: Option<i64>| {
        if let Some(t) = t {
            wake = Some(wake.map_or(t, |w: i64| w.min(t)));
        }
    };
    for reg in regs {
        match mapping::cluster_view(reg, config) {
            Ok(view) => {
                let observed = view.observe(now);
                let single = PlacementInput { clusters: vec![observed.clone()], ..PlacementInput::default() };
                match validate(&single) {
                    Ok(()) => {
                        consider(view.config.next_wakeup(now, [&view.health], &[], &[], &[]));
                        clusters.push(observed);
                    }
                    Err(e) => out.invalid_clusters.push((reg.name_any(), e.to_string())),
                }
            }
            Err(e) => out.invalid_clusters.push((reg.name_any(), e.to_string())),
        }
    }

    // Workloads: mapped, defaulted and validated one by one, so one bad policy does not stop
    // the others.
    let mut placements: Vec<&WorkloadPlacement> = snapshot.placements.clone();
    placements.sort_by_key(|p| (p.namespace().unwrap_or_default(), p.name_any()));
    let mut workloads: Vec<Workload> = Vec::new();
    let mut previous = Vec::new();
    let mut pending: BTreeMap<WorkloadKey, (String, String)> = BTreeMap::new();
    let current = |wp: &WorkloadPlacement| -> Option<WorkloadPlacementStatus> {
        let key = WorkloadKey::new(&wp.namespace().unwrap_or_default(), &wp.name_any());
        snapshot.written.get(&key).cloned().or_else(|| wp.status.clone())
    };
    for wp in &placements {
        let key = WorkloadKey::new(&wp.namespace().unwrap_or_default(), &wp.name_any());
        match mapping::workload_of(wp, snapshot.objects) {
            WorkloadMapping::Pending { reason, message } => {
                pending.insert(key, (reason, message));
            }
            WorkloadMapping::Ready(w) => {
                let w = config.with_defaults(w.as_ref());
                let single = PlacementInput { workloads: vec![w.clone()], ..PlacementInput::default() };
                match validate(&single) {
                    Ok(()) => {
                        if let Some(prev) = current(wp).and_then(|s| mapping::previous_placement(key, &s)) {
                            previous.push(prev);
                        }
                        workloads.push(w);
                    }
                    Err(e) => {
                        let message = e.0.iter().map(|e| e.to_string().replacen("workloads[0]", "spec", 1));
                        pending.insert(key, ("InvalidPolicy".into(), message.collect::<Vec<_>>().join("; ")));
                    }
                }
            }
        }
    }

    let input = PlacementInput { clusters, workloads, previous, now: Some(now) };
    let plan = match solve(&input) {
        Ok(plan) => plan,
        Err(e) => {
            // Unreachable when every part validated alone; never panic on it.
            for w in &input.workloads {
                pending.insert(w.key(), ("InvalidPolicy".into(), e.to_string()));
            }
            tmc_core::Plan::default()
        }
    };
    consider(config.next_wakeup(now, [], &input.clusters, &input.workloads, &plan.placements));
    out.next_wakeup = wake;

    for wp in placements {
        let namespace = wp.namespace().unwrap_or_default();
        let name = wp.name_any();
        let key = WorkloadKey::new(&namespace, &name);
        let old = current(wp);
        let generation = wp.metadata.generation;
        let status = match (plan.get(&key), pending.get(&key)) {
            (Some(p), _) => mapping::status_from_plan(p, generation, old.as_ref(), now),
            (None, Some((reason, message))) => {
                mapping::status_not_planned(reason, message, generation, old.as_ref(), now)
            }
            (None, None) => mapping::status_not_planned("Pending", "not planned yet", generation, old.as_ref(), now),
        };
        let changed = old.as_ref() != Some(&status);
        let events = if changed { events_for(old.as_ref(), &status) } else { Vec::new() };
        out.statuses.push(PlannedStatus { key, namespace, name, status, changed, events });
    }
    out.clusters = input.clusters;
    out
}

fn describe(decisions: &[tmc_core::Decision]) -> String {
    if decisions.is_empty() {
        return "no clusters".into();
    }
    decisions.iter().map(|d| format!("{}={}", d.cluster, d.replicas)).collect::<Vec<_>>().join(", ")
}

fn events_for(old: Option<&WorkloadPlacementStatus>, new: &WorkloadPlacementStatus) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    let old_decisions = old.map(|o| o.decisions.as_slice()).unwrap_or_default();
    if old_decisions != new.decisions.as_slice() {
        let reason = if old_decisions.is_empty() { "Scheduled" } else { "Rescheduled" };
        let note = if old_decisions.is_empty() {
            format!("placed on {}", describe(&new.decisions))
        } else {
            format!("moved from {} to {}", describe(old_decisions), describe(&new.decisions))
        };
        events.push(PlannedEvent { warning: false, reason: reason.into(), note });
    }
    let cond = new.condition(mapping::SCHEDULED);
    let old_cond = old.and_then(|o| o.condition(mapping::SCHEDULED));
    if let Some(c) = cond
        && c.status != "True"
        && old_cond.map(|o| (&o.reason, &o.message)) != Some((&c.reason, &c.message))
    {
        let reason = match c.reason.as_str() {
            "InvalidPolicy" => "InvalidPolicy",
            "NoSelectedWorkload" | "Pending" => "Pending",
            _ => "FailedScheduling",
        };
        events.push(PlannedEvent { warning: reason != "Pending", reason: reason.into(), note: c.message.clone() });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crd::{ClusterRegistrationSpec, ClusterRegistrationStatus, PlacementPhase, WorkloadPlacementSpec},
        mapping::time_at,
    };
    use tmc_core::Quantity;

    fn reg(name: &str, cpu: u64, heartbeat: Option<i64>) -> ClusterRegistration {
        let mut r = ClusterRegistration::new(
            name,
            ClusterRegistrationSpec {
                capacity: [("cpu".to_string(), Quantity::from_units(cpu))].into(),
                ..ClusterRegistrationSpec::default()
            },
        );
        r.status =
            Some(ClusterRegistrationStatus { last_heartbeat_time: heartbeat.map(time_at), ..Default::default() });
        r
    }

    fn wp(name: &str, replicas: u32, cpu: u64) -> WorkloadPlacement {
        let mut spec = WorkloadPlacementSpec { replicas: Some(replicas), ..WorkloadPlacementSpec::default() };
        spec.policy.resources.insert("cpu".into(), Quantity::from_units(cpu));
        let mut p = WorkloadPlacement::new(name, spec);
        p.metadata.namespace = Some("ns".into());
        p.metadata.generation = Some(1);
        p
    }

    fn plan(regs: &[ClusterRegistration], wps: &[WorkloadPlacement], now: i64) -> WorkspacePlan {
        let written = BTreeMap::new();
        let snapshot = WorkspaceSnapshot {
            registrations: regs.iter().collect(),
            placements: wps.iter().collect(),
            objects: &[],
            written: &written,
        };
        plan_workspace(&snapshot, &ControllerConfig::default(), now)
    }

    #[test]
    fn concurrent_placements_are_planned_jointly_and_never_overcommit() {
        let regs = [reg("a", 4, Some(1000)), reg("b", 4, Some(1000))];
        let wps = [wp("x", 3, 1), wp("y", 3, 1), wp("z", 3, 1)];
        let out = plan(&regs, &wps, 1010);
        let placed: u64 = out.statuses.iter().map(|s| s.status.placed_replicas).sum();
        assert_eq!(placed, 8, "8 cpus, 9 requested: {out:#?}");
        assert!(out.statuses.iter().all(|s| s.changed));
        let partial: Vec<_> =
            out.statuses.iter().filter(|s| s.status.phase == PlacementPhase::PartiallyScheduled).collect();
        assert_eq!(partial.len(), 1);
        let c = partial[0].status.condition("Scheduled").unwrap();
        assert_eq!(c.reason, "PartiallyScheduled");
        assert!(c.message.contains("clusters are available"), "{}", c.message);
        assert!(partial[0].events.iter().any(|e| e.warning && e.reason == "FailedScheduling"));
        assert_eq!(out.next_wakeup, Some(1060), "heartbeats go stale at 1000 + 60");
    }

    #[test]
    fn previous_decisions_in_status_are_kept_and_an_unchanged_plan_writes_nothing() {
        let regs = [reg("a", 8, Some(1000)), reg("b", 8, Some(1000))];
        let mut wps = [wp("x", 4, 1)];
        let first = plan(&regs, &wps, 1001);
        wps[0].status = Some(first.statuses[0].status.clone());
        let second = plan(&regs, &wps, 1002);
        assert!(!second.statuses[0].changed, "{:#?}", second.statuses[0]);
        assert!(second.statuses[0].events.is_empty());
    }

    #[test]
    fn stale_heartbeat_evicts_after_the_default_toleration() {
        let regs = [reg("a", 8, Some(1000)), reg("b", 8, Some(0))];
        let mut wps = [wp("x", 2, 1)];
        wps[0].status = Some(WorkloadPlacementStatus {
            decisions: vec![tmc_core::Decision { cluster: "b".into(), replicas: 2 }],
            ..Default::default()
        });
        // b went stale at 60; tolerated for 300 s.
        let during = plan(&regs, &wps, 359);
        assert_eq!(during.statuses[0].status.decisions[0].cluster, "b");
        assert_eq!(during.next_wakeup, Some(360));
        let after = plan(&regs, &wps, 360);
        assert_eq!(after.statuses[0].status.decisions, vec![tmc_core::Decision { cluster: "a".into(), replicas: 2 }]);
        assert_eq!(after.statuses[0].events[0].reason, "Rescheduled");
    }

    #[test]
    fn an_invalid_policy_does_not_stop_the_others() {
        let regs = [reg("a", 8, Some(1000))];
        let mut bad = wp("bad", 1, 1);
        bad.spec.policy.spread_constraints.push(tmc_core::SpreadConstraint {
            topology_key: "zone".into(),
            min_groups: Some(3),
            max_groups: Some(1),
            max_skew: None,
        });
        let out = plan(&regs, &[bad, wp("good", 1, 1)], 1001);
        let bad = &out.statuses[0];
        assert_eq!(bad.status.condition("Scheduled").unwrap().reason, "InvalidPolicy");
        assert!(bad.status.condition("Scheduled").unwrap().message.starts_with("spec.spreadConstraints"));
        assert_eq!(out.statuses[1].status.phase, PlacementPhase::Scheduled);
    }
}
