//! Hard, capacity-independent checks of clusters against workload policies.
//!
//! Workloads that share an affinity group, required APIs and capabilities, spread keys and
//! tolerations share one [`Filter`], compiled once into per-cluster admission bitsets. Reasons
//! (for explanations) are only produced for the workloads that need them, by the same code.

use std::collections::BTreeMap;

use crate::{
    Cluster, ClusterAffinity, Reason, TaintEffect, Toleration, Workload,
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

/// The parts of a workload's policy that decide admission; workloads equal on these share the
/// compiled result.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FilterKey<'a> {
    affinity: Option<&'a ClusterAffinity>,
    apis: &'a [String],
    capabilities: &'a [String],
    spread_keys: Vec<&'a str>,
    tolerations: &'a [Toleration],
}

impl<'a> FilterKey<'a> {
    /// The filter of `w` under affinity group `affinity`.
    pub fn of(w: &'a Workload, affinity: Option<&'a ClusterAffinity>) -> Self {
        FilterKey {
            affinity,
            apis: &w.required_apis,
            capabilities: &w.required_capabilities,
            spread_keys: w.spread_constraints.iter().map(|s| s.topology_key.as_str()).collect(),
            tolerations: &w.tolerations,
        }
    }

    /// Checks one cluster. With `reasons`, every failing check is recorded, most fundamental first.
    /// Returns the admission and the number of untolerated `PreferNoSchedule` taints.
    pub fn evaluate(
        &self,
        cluster: &Cluster,
        now: Option<i64>,
        mut reasons: Option<&mut Vec<Reason>>,
    ) -> (Admission, u32) {
        let mut closed = false;
        let mut keep_only = false;
        let mut note = |r: Reason| {
            if let Some(v) = reasons.as_deref_mut() {
                v.push(r);
            }
        };
        if let Some(Err(part)) = self.affinity.map(|a| a.check(cluster)) {
            note(Reason::AffinityMismatch { part });
            closed = true;
        }
        for api in self.apis {
            if !cluster.api_resources.contains(api) {
                note(Reason::MissingApi { api: api.clone() });
                closed = true;
            }
        }
        for cap in self.capabilities {
            if !cluster.capabilities.contains(cap) {
                note(Reason::MissingCapability { capability: cap.clone() });
                closed = true;
            }
        }
        for key in &self.spread_keys {
            if cluster.topology_value(key).is_none() {
                note(Reason::MissingTopologyKey { key: key.to_string() });
                closed = true;
            }
        }
        let mut prefer_no_schedule = 0;
        for taint in cluster.effective_taints() {
            match (taint.effect, judge(&taint, self.tolerations, now)) {
                (_, TaintVerdict::Tolerated) => {}
                (TaintEffect::PreferNoSchedule, _) => prefer_no_schedule += 1,
                (TaintEffect::NoExecute, TaintVerdict::Untolerated) => {
                    note(Reason::UntoleratedTaint { taint: taint.into_owned() });
                    closed = true;
                }
                (TaintEffect::NoSchedule, _) | (TaintEffect::NoExecute, TaintVerdict::ToleratedForAWhile) => {
                    note(Reason::UntoleratedTaint { taint: taint.into_owned() });
                    keep_only = true;
                }
            }
        }
        if cluster.unschedulable {
            note(Reason::Cordoned);
            keep_only = true;
        }
        let admission = if closed {
            Admission::Closed
        } else if keep_only {
            Admission::KeepOnly
        } else {
            Admission::Open
        };
        (admission, prefer_no_schedule)
    }
}

/// A compiled filter: admission of every cluster as bitsets, plus `PreferNoSchedule` counts.
pub(crate) struct Mask {
    open: Vec<u64>,
    keep: Vec<u64>,
    /// `(cluster, untolerated PreferNoSchedule taints)` for clusters that have any, sorted.
    prefer_no_schedule: Vec<(usize, u32)>,
}

impl Mask {
    fn compile(key: &FilterKey<'_>, clusters: &[&Cluster], now: Option<i64>) -> Self {
        let words = clusters.len().div_ceil(64);
        let mut mask = Mask { open: vec![0; words], keep: vec![0; words], prefer_no_schedule: Vec::new() };
        for (c, cluster) in clusters.iter().enumerate() {
            let (admission, pns) = key.evaluate(cluster, now, None);
            match admission {
                Admission::Open => mask.open[c / 64] |= 1 << (c % 64),
                Admission::KeepOnly => mask.keep[c / 64] |= 1 << (c % 64),
                Admission::Closed => {}
            }
            if pns > 0 {
                mask.prefer_no_schedule.push((c, pns));
            }
        }
        mask
    }

    /// The admission of cluster `c`.
    pub fn admission(&self, c: usize) -> Admission {
        let bit = 1u64 << (c % 64);
        if self.open[c / 64] & bit != 0 {
            Admission::Open
        } else if self.keep[c / 64] & bit != 0 {
            Admission::KeepOnly
        } else {
            Admission::Closed
        }
    }

    /// Clusters that are `Open` or `KeepOnly`, in index order.
    pub fn admitted(&self) -> impl Iterator<Item = usize> + '_ {
        self.open.iter().zip(&self.keep).enumerate().flat_map(|(i, (o, k))| {
            let mut bits = o | k;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    i * 64 + b
                })
            })
        })
    }

    /// Untolerated `PreferNoSchedule` taints on `c`.
    pub fn prefer_no_schedule(&self, c: usize) -> u32 {
        self.prefer_no_schedule.binary_search_by_key(&c, |&(x, _)| x).map_or(0, |i| self.prefer_no_schedule[i].1)
    }
}

/// All distinct filters of a batch, compiled (in parallel with the `parallel` feature).
pub(crate) struct Filters<'a> {
    keys: Vec<FilterKey<'a>>,
    masks: Vec<Mask>,
    index: BTreeMap<FilterKey<'a>, usize>,
}

impl<'a> Filters<'a> {
    /// Compiles every filter of every affinity group of `workloads`.
    pub fn compile(workloads: &[&'a Workload], clusters: &[&Cluster], now: Option<i64>) -> Self {
        let mut index: BTreeMap<FilterKey<'a>, usize> = BTreeMap::new();
        let mut keys = Vec::new();
        for w in workloads {
            for term in affinity_terms(w) {
                let key = FilterKey::of(w, term);
                if !index.contains_key(&key) {
                    index.insert(key.clone(), keys.len());
                    keys.push(key);
                }
            }
        }
        #[cfg(feature = "parallel")]
        let masks = {
            use rayon::prelude::*;
            keys.par_iter().map(|k| Mask::compile(k, clusters, now)).collect()
        };
        #[cfg(not(feature = "parallel"))]
        let masks = keys.iter().map(|k| Mask::compile(k, clusters, now)).collect();
        Filters { keys, masks, index }
    }

    /// The index of the filter of `w` under `affinity` (compiled by [`Filters::compile`]).
    pub fn find(&self, w: &'a Workload, affinity: Option<&'a ClusterAffinity>) -> usize {
        self.index.get(&FilterKey::of(w, affinity)).copied().unwrap_or(0)
    }

    /// The compiled mask of filter `i`.
    pub fn mask(&self, i: usize) -> &Mask {
        &self.masks[i]
    }

    /// The key of filter `i`, to evaluate reasons.
    pub fn key(&self, i: usize) -> &FilterKey<'a> {
        &self.keys[i]
    }
}

/// A workload's affinity groups: its `clusterAffinities` in order, or its single (optional)
/// `clusterAffinity`.
pub(crate) fn affinity_terms(w: &Workload) -> Vec<Option<&ClusterAffinity>> {
    if w.cluster_affinities.is_empty() {
        vec![w.cluster_affinity.as_ref()]
    } else {
        w.cluster_affinities.iter().map(Some).collect()
    }
}
