//! Label and location selectors compiled to cluster bitsets.
//!
//! Selectors in a batch are built from a small vocabulary: the same requirement
//! (`tier In [general, compute]`), label pair or location value recurs in many affinity groups and
//! preferences. Each is evaluated once against every cluster (with the model's own `matches`, so
//! the semantics are those of [`crate::selector`]) and cached as a bitset; a selector is then the
//! AND of its terms' bitsets.

use std::collections::BTreeMap;

use crate::{Cluster, LabelSelector, LabelSelectorRequirement, LocationSelector};

/// A set of clusters: cluster `c` is bit `c % 64` of word `c / 64`.
pub(crate) type Bits = Vec<u64>;

/// Whether cluster `c` is in `bits`.
pub(crate) fn bit(bits: &[u64], c: usize) -> bool {
    bits[c / 64] & (1 << (c % 64)) != 0
}

/// Which location field a value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Provider,
    Region,
    Zone,
}

/// Cached bitsets of selector terms over one fleet.
pub(crate) struct Selectors<'a> {
    clusters: Vec<&'a Cluster>,
    words: usize,
    requirements: BTreeMap<&'a LabelSelectorRequirement, Bits>,
    labels: BTreeMap<(&'a str, &'a str), Bits>,
    /// Clusters per location value.
    locations: BTreeMap<(Field, &'a str), Bits>,
}

impl<'a> Selectors<'a> {
    pub fn new(clusters: &[&'a Cluster]) -> Self {
        let words = clusters.len().div_ceil(64);
        let mut locations: BTreeMap<(Field, &'a str), Bits> = BTreeMap::new();
        for (c, cluster) in clusters.iter().enumerate() {
            let loc = &cluster.location;
            for (field, value) in
                [(Field::Provider, &loc.provider), (Field::Region, &loc.region), (Field::Zone, &loc.zone)]
            {
                if let Some(v) = value {
                    locations.entry((field, v.as_str())).or_insert_with(|| vec![0; words])[c / 64] |= 1 << (c % 64);
                }
            }
        }
        Selectors {
            clusters: clusters.to_vec(),
            words,
            requirements: BTreeMap::new(),
            labels: BTreeMap::new(),
            locations,
        }
    }

    /// Every cluster.
    pub fn all(&self) -> Bits {
        let mut bits = vec![u64::MAX; self.words];
        let rest = self.clusters.len() % 64;
        if rest != 0
            && let Some(last) = bits.last_mut()
        {
            *last = (1 << rest) - 1;
        }
        bits
    }

    /// The clusters matching `s`.
    pub fn label_selector(&mut self, s: &'a LabelSelector) -> Bits {
        let mut out = self.all();
        for (k, v) in &s.match_labels {
            let clusters = &self.clusters;
            let words = self.words;
            let set = self
                .labels
                .entry((k.as_str(), v.as_str()))
                .or_insert_with(|| set_of(words, clusters, |c| c.labels.get(k.as_str()).is_some_and(|x| x == v)));
            and(&mut out, set);
        }
        for e in &s.match_expressions {
            let clusters = &self.clusters;
            let words = self.words;
            let set = self.requirements.entry(e).or_insert_with(|| set_of(words, clusters, |c| e.matches(&c.labels)));
            and(&mut out, set);
        }
        out
    }

    /// The clusters matching `s`: each non-empty list must contain the cluster's value.
    pub fn location_selector(&self, s: &LocationSelector) -> Bits {
        let mut out = self.all();
        for (field, allowed) in [(Field::Provider, &s.providers), (Field::Region, &s.regions), (Field::Zone, &s.zones)]
        {
            if allowed.is_empty() {
                continue;
            }
            let mut any = vec![0; self.words];
            for v in allowed {
                if let Some(set) = self.locations.get(&(field, v.as_str())) {
                    any.iter_mut().zip(set).for_each(|(a, b)| *a |= b);
                }
            }
            and(&mut out, &any);
        }
        out
    }
}

/// `out &= set`.
pub(crate) fn and(out: &mut [u64], set: &[u64]) {
    out.iter_mut().zip(set).for_each(|(a, b)| *a &= b);
}

/// The clusters for which `f` holds.
pub(crate) fn set_of(words: usize, clusters: &[&Cluster], f: impl Fn(&Cluster) -> bool) -> Bits {
    let mut bits = vec![0; words];
    for (c, cluster) in clusters.iter().enumerate() {
        if f(cluster) {
            bits[c / 64] |= 1 << (c % 64);
        }
    }
    bits
}
