//! Kubernetes-style explanations of placements that are not complete.
//!
//! `0/12 clusters are available: 5 did not match cluster affinity, 4 had untolerated taint
//! {maintenance=true:NoSchedule}, 3 had insufficient nvidia.com/gpu.` Each unavailable cluster is
//! counted under its most fundamental reason (and, when that is capacity, under every resource that
//! fell short, as kube-scheduler does); the full list is in [`crate::Placement::unavailable`].

use std::collections::BTreeMap;

use crate::Reason;

/// What a message is built from.
pub(crate) struct Summary<'a, I: Iterator<Item = &'a [Reason]>> {
    pub total: usize,
    pub available: usize,
    /// Each unavailable cluster's reasons, most fundamental first.
    pub reasons: I,
    pub notes: &'a [String],
    pub divided: bool,
    pub requested: u64,
    pub placed: u64,
    pub fallback_group: Option<String>,
}

/// Builds the message.
pub(crate) fn message<'a, I: Iterator<Item = &'a [Reason]> + Clone>(s: &Summary<'a, I>) -> String {
    // Counted per distinct reason first, so each phrase is formatted once; reasons with the same
    // phrase (the parts of an affinity mismatch) are merged below.
    let mut counts: BTreeMap<&Reason, usize> = BTreeMap::new();
    for reasons in s.reasons.clone() {
        let counted: &[Reason] = match reasons {
            [Reason::NotSelected, ..] | [] => &[],
            [Reason::Insufficient { .. }, ..] => {
                let n = reasons.iter().take_while(|r| matches!(r, Reason::Insufficient { .. })).count();
                &reasons[..n]
            }
            [first, ..] => std::slice::from_ref(first),
        };
        for r in counted {
            *counts.entry(r).or_insert(0) += 1;
        }
    }
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for (r, n) in counts {
        *histogram.entry(r.phrase()).or_insert(0) += n;
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
