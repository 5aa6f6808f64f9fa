//! The controller's rules between solves, shared by the simulator and the kube adapter.
//!
//! The solver decides where replicas go for one instant. This module says what that instant looks
//! like and when the next one is due: it turns a cluster's health record (heartbeats, drain) into
//! the cluster the solver sees (readiness, automatic taints with the time they appeared), adds the
//! default not-ready toleration to workloads, and computes the next time at which something
//! changes by itself (a heartbeat goes stale, a drain starts, a toleration runs out).
//!
//! Time is plain data: seconds on the caller's clock (Unix time in the controller, virtual time
//! in the simulator). Nothing here reads a clock, so the simulator replays exactly what the
//! controller would do.

use serde::{Deserialize, Serialize};

use crate::{
    Cluster, Placement, Taint, TaintEffect, Toleration, TolerationOperator, Workload,
    taint::{NOT_READY_TAINT_KEY, toleration_deadline},
};

/// Key of the automatic `NoExecute` taint of a cluster being drained (`evictAfter` has passed).
pub const DRAINING_TAINT_KEY: &str = "tmc.kcp.io/draining";

/// How the controller behaves. One value is used by both the simulator and the kube adapter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// A cluster whose last heartbeat is older than this many seconds is not ready
    /// (kcp's `--sync-target-heartbeat-threshold`, default 60).
    pub heartbeat_threshold_seconds: i64,
    /// Workloads without their own not-ready toleration get
    /// `tmc.kcp.io/not-ready:NoExecute` tolerated for this many seconds, so a short outage does not
    /// move them (Kubernetes' `DefaultTolerationSeconds`, 300). `None`: evict at once.
    pub default_not_ready_toleration_seconds: Option<i64>,
    /// Feature gate `NoExecuteEviction`: when false, the automatic taints only stop new replicas
    /// (`NoSchedule`) and nothing is ever evicted by the controller.
    pub no_execute_eviction: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            heartbeat_threshold_seconds: 60,
            default_not_ready_toleration_seconds: Some(300),
            no_execute_eviction: true,
        }
    }
}

/// What the controller knows about a cluster's health, beyond its spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterHealth {
    /// Time of the last heartbeat; `None` means none was ever received (not ready).
    pub last_heartbeat: Option<i64>,
    /// Drain: from this time on, replicas are evicted (kcp's `evictAfter`); the cluster is
    /// cordoned as soon as this is set.
    pub evict_after: Option<i64>,
}

impl ControllerConfig {
    /// The time at which a cluster with this health stops (or stopped) being ready, if it does.
    pub fn not_ready_from(&self, health: &ClusterHealth) -> Option<i64> {
        Some(health.last_heartbeat?.saturating_add(self.heartbeat_threshold_seconds))
    }

    /// The cluster as the solver must see it at `now`: stale heartbeats make it not ready (the
    /// automatic not-ready taint then carries the time readiness was lost), a drain cordons it and,
    /// once `evictAfter` has passed, adds a `tmc.kcp.io/draining:NoExecute` taint.
    pub fn observe(&self, cluster: &Cluster, health: &ClusterHealth, now: i64) -> Cluster {
        let mut seen = cluster.clone();
        match self.not_ready_from(health) {
            Some(at) if now < at => {}
            since => {
                seen.ready = false;
                seen.not_ready_since = since.or(cluster.not_ready_since);
            }
        }
        if let Some(at) = health.evict_after {
            seen.unschedulable = true;
            if now >= at {
                seen.taints.push(Taint {
                    key: DRAINING_TAINT_KEY.to_string(),
                    value: String::new(),
                    effect: TaintEffect::NoExecute,
                    added_at: Some(at),
                });
            }
        }
        if !self.no_execute_eviction {
            // Without eviction, automatic conditions only stop new replicas.
            if !seen.ready {
                seen.ready = true;
                seen.taints.push(Taint {
                    key: NOT_READY_TAINT_KEY.to_string(),
                    value: String::new(),
                    effect: TaintEffect::NoSchedule,
                    added_at: seen.not_ready_since,
                });
                seen.not_ready_since = None;
            }
            for t in seen.taints.iter_mut().filter(|t| t.key == DRAINING_TAINT_KEY) {
                t.effect = TaintEffect::NoSchedule;
            }
        }
        seen
    }

    /// The workload as the solver must see it: with the default not-ready toleration added when
    /// none of its tolerations covers the not-ready taint.
    pub fn with_defaults(&self, workload: &Workload) -> Workload {
        let mut w = workload.clone();
        let not_ready = Taint::not_ready();
        if let Some(seconds) = self.default_not_ready_toleration_seconds
            && !w.tolerations.iter().any(|t| t.tolerates(&not_ready))
        {
            w.tolerations.push(Toleration {
                key: NOT_READY_TAINT_KEY.to_string(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: Some(TaintEffect::NoExecute),
                toleration_seconds: Some(seconds),
            });
        }
        w
    }

    /// The earliest time after `now` at which the controller must act on its own: a heartbeat
    /// goes stale, a drain's `evictAfter` arrives, or a bounded toleration of a taint on a cluster
    /// holding the workload runs out. `clusters` are observed clusters ([`Self::observe`]),
    /// `workloads` have their defaults ([`Self::with_defaults`]) and `placements` are the current
    /// decisions.
    pub fn next_wakeup<'a>(
        &self,
        now: i64,
        health: impl IntoIterator<Item = &'a ClusterHealth>,
        clusters: &[Cluster],
        workloads: &[Workload],
        placements: &[Placement],
    ) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for h in health {
            if let Some(t) = self.not_ready_from(h) {
                consider(t);
            }
            if let Some(t) = h.evict_after {
                consider(t);
            }
        }
        for w in workloads {
            let Some(p) = placements.iter().find(|p| p.workload == w.key()) else { continue };
            for d in &p.decisions {
                let Some(c) = clusters.iter().find(|c| c.name == d.cluster) else { continue };
                for taint in c.effective_taints() {
                    if let Some(t) = toleration_deadline(&taint, &w.tolerations) {
                        consider(t);
                    }
                }
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decision, PlacementInput, solve};

    fn cluster(name: &str) -> Cluster {
        let mut c = Cluster { name: name.into(), ..Cluster::default() };
        c.capacity.insert("cpu".into(), crate::Quantity::from_units(10));
        c
    }

    #[test]
    fn stale_heartbeats_make_a_cluster_not_ready_from_the_threshold() {
        let cfg = ControllerConfig::default();
        let health = ClusterHealth { last_heartbeat: Some(100), evict_after: None };
        assert!(cfg.observe(&cluster("a"), &health, 159).ready);
        let seen = cfg.observe(&cluster("a"), &health, 160);
        assert!(!seen.ready);
        assert_eq!(seen.not_ready_since, Some(160));
        let never = cfg.observe(&cluster("a"), &ClusterHealth::default(), 0);
        assert!(!never.ready, "no heartbeat ever: not ready");
    }

    #[test]
    fn drain_cordons_then_evicts() {
        let cfg = ControllerConfig::default();
        let health = ClusterHealth { last_heartbeat: Some(0), evict_after: Some(30) };
        let before = cfg.observe(&cluster("a"), &health, 10);
        assert!(before.unschedulable && before.taints.is_empty());
        let after = cfg.observe(&cluster("a"), &health, 30);
        assert_eq!(after.taints[0].key, DRAINING_TAINT_KEY);
        assert_eq!(after.taints[0].added_at, Some(30));
    }

    #[test]
    fn replicas_leave_a_dead_cluster_after_the_default_toleration() {
        let cfg = ControllerConfig::default();
        let w = cfg.with_defaults(&crate::Workload::named("w"));
        assert_eq!(w.tolerations.len(), 1);
        assert_eq!(cfg.with_defaults(&w).tolerations.len(), 1, "idempotent");
        let health = [
            ClusterHealth { last_heartbeat: Some(0), evict_after: None },
            ClusterHealth { last_heartbeat: Some(1_000_000), evict_after: None },
        ];
        let previous = vec![Placement {
            workload: w.key(),
            decisions: vec![Decision { cluster: "a".into(), replicas: 1 }],
            ..Placement::default()
        }];
        let at = |now: i64| {
            let clusters =
                vec![cfg.observe(&cluster("a"), &health[0], now), cfg.observe(&cluster("b"), &health[1], now)];
            let input =
                PlacementInput { clusters, workloads: vec![w.clone()], previous: previous.clone(), now: Some(now) };
            let plan = solve(&input).unwrap_or_else(|e| panic!("{e}"));
            let wake = cfg.next_wakeup(now, &health, &input.clusters, &input.workloads, &plan.placements);
            (plan.placements[0].decisions[0].cluster.clone(), wake)
        };
        assert_eq!(at(30), ("a".to_string(), Some(60)), "healthy until the heartbeat threshold");
        assert_eq!(at(60), ("a".to_string(), Some(360)), "not ready, tolerated for 300 s");
        assert_eq!(at(359), ("a".to_string(), Some(360)));
        assert_eq!(at(360).0, "b", "evicted when the toleration runs out");
    }

    #[test]
    fn without_eviction_automatic_taints_only_block_new_replicas() {
        let cfg = ControllerConfig { no_execute_eviction: false, ..ControllerConfig::default() };
        let seen = cfg.observe(&cluster("a"), &ClusterHealth { last_heartbeat: Some(0), evict_after: Some(0) }, 100);
        assert!(seen.ready);
        assert!(seen.taints.iter().all(|t| t.effect == TaintEffect::NoSchedule), "{:?}", seen.taints);
    }
}
