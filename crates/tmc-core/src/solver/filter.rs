//! Hard, capacity-independent checks of one cluster against one workload policy.

use crate::{
    Cluster, ClusterAffinity, Reason, TaintEffect, Workload,
    taint::{TaintVerdict, judge},
};

/// Whether a cluster may take replicas of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// New and existing replicas are fine.
    Open,
    /// Existing replicas may stay, no new ones (cordon, `NoSchedule`, bounded `NoExecute` toleration).
    KeepOnly,
    /// No replicas at all.
    Closed,
}

/// The verdict for one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub admission: Admission,
    /// Every reason found, most fundamental first.
    pub reasons: Vec<Reason>,
    /// Untolerated `PreferNoSchedule` taints (each lowers the score).
    pub prefer_no_schedule: u32,
}

/// Checks `cluster` for `w` under the affinity `affinity` (the workload's or one fallback group).
pub(crate) fn check(w: &Workload, affinity: Option<&ClusterAffinity>, cluster: &Cluster, now: Option<i64>) -> Check {
    let mut reasons = Vec::new();
    let mut closed = false;
    let mut keep_only = false;
    if let Some(Err(part)) = affinity.map(|a| a.check(cluster)) {
        reasons.push(Reason::AffinityMismatch { part });
        closed = true;
    }
    for api in &w.required_apis {
        if !cluster.api_resources.contains(api) {
            reasons.push(Reason::MissingApi { api: api.clone() });
            closed = true;
        }
    }
    for cap in &w.required_capabilities {
        if !cluster.capabilities.contains(cap) {
            reasons.push(Reason::MissingCapability { capability: cap.clone() });
            closed = true;
        }
    }
    for s in &w.spread_constraints {
        if cluster.topology_value(&s.topology_key).is_none() {
            reasons.push(Reason::MissingTopologyKey { key: s.topology_key.clone() });
            closed = true;
        }
    }
    let mut prefer_no_schedule = 0;
    for taint in cluster.effective_taints() {
        match (taint.effect, judge(&taint, &w.tolerations, now)) {
            (_, TaintVerdict::Tolerated) => {}
            (TaintEffect::PreferNoSchedule, _) => prefer_no_schedule += 1,
            (TaintEffect::NoExecute, TaintVerdict::Untolerated) => {
                reasons.push(Reason::UntoleratedTaint { taint: taint.into_owned() });
                closed = true;
            }
            (TaintEffect::NoSchedule, _) | (TaintEffect::NoExecute, TaintVerdict::ToleratedForAWhile) => {
                reasons.push(Reason::UntoleratedTaint { taint: taint.into_owned() });
                keep_only = true;
            }
        }
    }
    if cluster.unschedulable {
        reasons.push(Reason::Cordoned);
        keep_only = true;
    }
    let admission = if closed {
        Admission::Closed
    } else if keep_only {
        Admission::KeepOnly
    } else {
        Admission::Open
    };
    Check { admission, reasons, prefer_no_schedule }
}
