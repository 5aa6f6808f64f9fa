//! Kubernetes-style explanations of placements that are not complete.
//!
//! `0/12 clusters are available: 5 did not match cluster affinity, 4 had untolerated taint
//! {maintenance=true:NoSchedule}, 3 had insufficient nvidia.com/gpu.` Each unavailable cluster is
//! counted under its most fundamental reason (and, when that is capacity, under every resource that
//! fell short, as kube-scheduler does). The same counts are in [`crate::Placement::unavailable`];
//! every reason of every cluster comes from [`crate::cluster_rejections`].

use std::collections::BTreeMap;

use crate::{Reason, ReasonCount};

/// What a message is built from.
pub(crate) struct Summary<'a> {
    pub total: usize,
    pub available: usize,
    /// Unused clusters per reason, as in [`crate::Placement::unavailable`].
    pub counts: &'a [ReasonCount],
    pub notes: &'a [String],
    pub divided: bool,
    pub requested: u64,
    pub placed: u64,
    pub fallback_group: Option<String>,
}

/// Builds the message.
pub(crate) fn message(s: &Summary<'_>) -> String {
    // Reasons with the same phrase (the parts of an affinity mismatch) are merged; feasible
    // clusters that were not selected are already in `available`.
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for count in s.counts.iter().filter(|n| n.reason != Reason::NotSelected) {
        *histogram.entry(count.reason.phrase()).or_insert(0) += count.clusters as usize;
    }
    let mut parts: Vec<(String, usize)> = histogram.into_iter().collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    if let Some(group) = &s.fallback_group {
        out.push_str(&format!("no cluster affinity group could hold all replicas; using group {group:?}: "));
    }
    out.push_str(&format!("{}/{} clusters are available", s.available, s.total));
    if parts.is_empty() {
        out.push('.');
    } else {
        let list: Vec<String> = parts.iter().map(|(phrase, n)| format!("{n} {phrase}")).collect();
        out.push_str(&format!(": {}.", list.join(", ")));
    }
    for note in s.notes {
        out.push_str(&format!(" {note}."));
    }
    if s.divided && s.placed > 0 && s.placed < s.requested {
        out.push_str(&format!(" Placed {}/{} replicas.", s.placed, s.requested));
    }
    out
}
