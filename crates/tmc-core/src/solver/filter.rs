//! Hard, capacity-independent checks of clusters against workload policies.
//!
//! Workloads that share an affinity group, required APIs and capabilities, spread keys and
//! tolerations share one filter ([`FilterKey`]), compiled once into per-cluster admission
//! bitsets. Reasons (for explanations) are only produced for the workloads that need them, by
//! the same code.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use super::selectors::{Bits, Selectors, bit, set_of};
use crate::{
    AffinityMismatch, Cluster, ClusterAffinity, LabelSelector, LocationSelector, Preference, Reason, TaintEffect,
    Toleration, Workload,
    taint::{TaintVerdict, judge},
};

/// A hash map with a fixed hasher (no per-process random keys), for lookups of deep keys such as
/// affinity groups and filters, which a `BTreeMap` would compare field by field many times.
/// Never iterated, so its order cannot leak into results.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// A small multiply-and-rotate hasher (the FxHash scheme): these keys are not attacker-chosen
/// lookups across a trust boundary, and SipHash's cost showed in profiles. Fixed, so lookups
/// behave the same in every run.
#[derive(Default)]
struct FoldHasher(u64);

impl FoldHasher {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// Untolerated `PreferNoSchedule` taints per cluster, shared with the list of tolerations it
    /// comes from (`None` where no cluster has any).
    prefer_no_schedule: Option<Arc<[u32]>>,
}

impl Mask {
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

    /// The `Open` clusters, and the `KeepOnly` ones too when `keep`, as bitset words.
    pub fn usable_words(&self, keep: bool) -> impl Iterator<Item = u64> + '_ {
        self.open.iter().zip(&self.keep).map(move |(&o, &k)| if keep { o | k } else { o })
    }

    /// The open clusters that are also in `bits` (a cluster bitset of the same length), in order.
    pub fn open_in<'b>(&'b self, bits: &'b [u64]) -> impl Iterator<Item = usize> + 'b {
        self.open.iter().zip(bits).enumerate().flat_map(|(i, (&o, &b))| {
            let mut bits = o & b;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    i * 64 + b
                })
            })
        })
    }

    /// Clusters that are `Open` or `KeepOnly`, in index order, each with whether it is `Open`.
    pub fn admitted_open(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.open.iter().zip(&self.keep).enumerate().flat_map(|(i, (&o, &k))| {
            let mut bits = o | k;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    (i * 64 + b, o & (1 << b) != 0)
                })
            })
        })
    }

    /// The number of clusters that are `Open` or `KeepOnly`.
    pub fn count(&self) -> usize {
        self.open.iter().zip(&self.keep).map(|(o, k)| (o | k).count_ones() as usize).sum()
    }

    /// Untolerated `PreferNoSchedule` taints on `c`.
    pub fn prefer_no_schedule(&self, c: usize) -> u32 {
        self.prefer_no_schedule.as_ref().map_or(0, |counts| counts[c])
    }
}

/// How a list of tolerations fares against one taint profile (a distinct set of taints).
#[derive(Clone)]
struct TaintOutcome {
    admission: Admission,
    prefer_no_schedule: u32,
    reasons: Vec<Reason>,
}

/// How one list of tolerations fares on the fleet.
struct TolerationPart {
    /// Outcome per taint profile.
    outcomes: Vec<TaintOutcome>,
    closed: Bits,
    keep: Bits,
    /// Untolerated `PreferNoSchedule` counts per cluster (`None` where all are 0).
    prefer_no_schedule: Option<Arc<[u32]>>,
}

/// A filter resolved to the indices of its cached parts.
struct Resolved {
    affinity: usize,
    apis: Vec<usize>,
    capabilities: Vec<usize>,
    spread_keys: Vec<usize>,
    tolerations: usize,
}

/// How one affinity group matches the fleet: the clusters it admits, and the sets each of its
/// parts requires (or, for `exclude`, rejects), from which a cluster's mismatch is read.
#[derive(Default)]
struct AffinityPart {
    ok: Bits,
    excluded: Option<Bits>,
    listed: Option<Bits>,
    labels: Option<Bits>,
    location: Option<Bits>,
}

impl AffinityPart {
    /// Why cluster `c` fails the group: its first failing part, in the order of
    /// [`ClusterAffinity::check`].
    fn mismatch(&self, c: usize) -> Option<AffinityMismatch> {
        let lacks = |b: &Option<Bits>| b.as_ref().is_some_and(|b| !bit(b, c));
        if bit(&self.ok, c) {
            None
        } else if self.excluded.as_ref().is_some_and(|b| bit(b, c)) {
            Some(AffinityMismatch::Excluded)
        } else if lacks(&self.listed) {
            Some(AffinityMismatch::NotInClusterNames)
        } else if lacks(&self.labels) {
            Some(AffinityMismatch::Labels)
        } else if lacks(&self.location) {
            Some(AffinityMismatch::Location)
        } else {
            None
        }
    }
}

/// Per-cluster results of each part of a filter, computed once per distinct part and shared by
/// every filter that uses it: the affinity group, each API, capability and spread key, and each
/// list of tolerations (against each distinct taint profile of the fleet).
struct Parts<'a> {
    words: usize,
    /// Per affinity group: the clusters that match, and why each other one does not.
    affinity: Vec<AffinityPart>,
    affinity_ids: Map<Option<&'a ClusterAffinity>, usize>,
    /// Clusters serving each API, having each capability, having each spread key.
    sets: Vec<Bits>,
    api_ids: BTreeMap<&'a str, usize>,
    capability_ids: BTreeMap<&'a str, usize>,
    spread_key_ids: BTreeMap<&'a str, usize>,
    /// Cluster to taint profile, and per profile an uncordoned cluster with only its taints and
    /// readiness (all that a list of tolerations is judged against).
    profile_of: Vec<usize>,
    profiles: Vec<Cluster>,
    /// Per toleration list: outcome per profile, the closed and keep-only clusters, and the
    /// untolerated `PreferNoSchedule` counts.
    tolerations: Vec<TolerationPart>,
    toleration_ids: Map<&'a [Toleration], usize>,
    cordoned: Bits,
    /// Cluster names by index (sorted, so a name's index is found by binary search).
    names: Vec<&'a str>,
    selectors: Selectors<'a>,
}

impl<'a> Parts<'a> {
    /// The index of the cluster called `name`.
    fn index_of(&self, name: &str) -> Option<usize> {
        self.names.binary_search(&name).ok()
    }

    /// Empty parts over `clusters`, sized for about `filters` distinct filters.
    fn new(clusters: &[&'a Cluster], filters: usize) -> Self {
        debug_assert!(clusters.windows(2).all(|w| w[0].name <= w[1].name), "clusters must be sorted by name");
        let words = clusters.len().div_ceil(64);
        let mut by_profile: BTreeMap<(&[crate::Taint], bool, Option<i64>), usize> = BTreeMap::new();
        let mut profiles = Vec::new();
        let mut profile_of = Vec::with_capacity(clusters.len());
        let mut cordoned = vec![0; words];
        for (c, cluster) in clusters.iter().enumerate() {
            let key = (cluster.taints.as_slice(), cluster.ready, cluster.not_ready_since);
            let id = *by_profile.entry(key).or_insert_with(|| {
                profiles.push(Cluster {
                    taints: cluster.taints.clone(),
                    ready: cluster.ready,
                    not_ready_since: cluster.not_ready_since,
                    ..Cluster::default()
                });
                profiles.len() - 1
            });
            profile_of.push(id);
            if cluster.unschedulable {
                cordoned[c / 64] |= 1 << (c % 64);
            }
        }
        Parts {
            words,
            affinity: Vec::new(),
            // Growing would hash every deep key again.
            affinity_ids: Map::with_capacity_and_hasher(filters, Default::default()),
            sets: Vec::new(),
            api_ids: BTreeMap::new(),
            capability_ids: BTreeMap::new(),
            spread_key_ids: BTreeMap::new(),
            profile_of,
            profiles,
            tolerations: Vec::new(),
            toleration_ids: Map::default(),
            cordoned,
            names: clusters.iter().map(|c| c.name.as_str()).collect(),
            selectors: Selectors::new(clusters),
        }
    }

    /// How `affinity` matches the fleet, from cached selector bitsets.
    fn affinity_part(&mut self, affinity: &'a ClusterAffinity) -> AffinityPart {
        let names = |list: &[String]| {
            let mut bits = vec![0u64; self.words];
            for name in list {
                if let Some(c) = self.index_of(name) {
                    bits[c / 64] |= 1 << (c % 64);
                }
            }
            bits
        };
        let excluded = (!affinity.exclude.is_empty()).then(|| names(&affinity.exclude));
        let listed = (!affinity.cluster_names.is_empty()).then(|| names(&affinity.cluster_names));
        let labels = affinity.label_selector.as_ref().map(|s| self.selectors.label_selector(s));
        let location = affinity.location_selector.as_ref().map(|s| self.selectors.location_selector(s));
        let mut ok = self.selectors.all();
        for (w, word) in ok.iter_mut().enumerate() {
            let required = |b: &Option<Bits>| b.as_ref().map_or(u64::MAX, |b| b[w]);
            *word &=
                !excluded.as_ref().map_or(0, |b| b[w]) & required(&listed) & required(&labels) & required(&location);
        }
        AffinityPart { ok, excluded, listed, labels, location }
    }

    fn set_id(
        sets: &mut Vec<Bits>,
        ids: &mut BTreeMap<&'a str, usize>,
        name: &'a str,
        make: impl FnOnce() -> Bits,
    ) -> usize {
        *ids.entry(name).or_insert_with(|| {
            sets.push(make());
            sets.len() - 1
        })
    }

    /// Resolves `key` to its parts, computing the ones not cached yet.
    fn resolve(&mut self, key: &FilterKey<'a>, clusters: &[&Cluster], now: Option<i64>) -> Resolved {
        let words = self.words;
        let affinity = match self.affinity_ids.get(&key.affinity) {
            Some(&id) => id,
            None => {
                let part = match key.affinity {
                    Some(a) => self.affinity_part(a),
                    None => AffinityPart { ok: self.selectors.all(), ..AffinityPart::default() },
                };
                self.affinity.push(part);
                self.affinity_ids.insert(key.affinity, self.affinity.len() - 1);
                self.affinity.len() - 1
            }
        };
        let apis = key
            .apis
            .iter()
            .map(|api| {
                Self::set_id(&mut self.sets, &mut self.api_ids, api, || {
                    set_of(words, clusters, |c| c.api_resources.contains(api))
                })
            })
            .collect();
        let capabilities = key
            .capabilities
            .iter()
            .map(|cap| {
                Self::set_id(&mut self.sets, &mut self.capability_ids, cap, || {
                    set_of(words, clusters, |c| c.capabilities.contains(cap))
                })
            })
            .collect();
        let spread_keys = key
            .spread_keys
            .iter()
            .map(|k| {
                Self::set_id(&mut self.sets, &mut self.spread_key_ids, k, || {
                    set_of(words, clusters, |c| c.topology_value(k).is_some())
                })
            })
            .collect();
        let tolerations = match self.toleration_ids.get(key.tolerations) {
            Some(&id) => id,
            None => {
                let only_taints = FilterKey {
                    affinity: None,
                    apis: &[],
                    capabilities: &[],
                    spread_keys: Vec::new(),
                    tolerations: key.tolerations,
                };
                let outcomes: Vec<TaintOutcome> = self
                    .profiles
                    .iter()
                    .map(|cluster| {
                        let mut reasons = Vec::new();
                        let (admission, prefer_no_schedule) = only_taints.evaluate(cluster, now, Some(&mut reasons));
                        TaintOutcome { admission, prefer_no_schedule, reasons }
                    })
                    .collect();
                let mut closed = vec![0; words];
                let mut keep = vec![0; words];
                let mut pns = vec![0; self.profile_of.len()];
                for (c, &p) in self.profile_of.iter().enumerate() {
                    match outcomes[p].admission {
                        Admission::Closed => closed[c / 64] |= 1 << (c % 64),
                        Admission::KeepOnly => keep[c / 64] |= 1 << (c % 64),
                        Admission::Open => {}
                    }
                    pns[c] = outcomes[p].prefer_no_schedule;
                }
                let pns = pns.iter().any(|&n| n > 0).then(|| Arc::from(pns));
                self.tolerations.push(TolerationPart { outcomes, closed, keep, prefer_no_schedule: pns });
                self.toleration_ids.insert(key.tolerations, self.tolerations.len() - 1);
                self.tolerations.len() - 1
            }
        };
        Resolved { affinity, apis, capabilities, spread_keys, tolerations }
    }

    /// Combines the cached parts of a resolved filter into its mask.
    fn mask(&self, key: &Resolved) -> Mask {
        let mut ok = self.affinity[key.affinity].ok.clone();
        for &set in key.apis.iter().chain(&key.capabilities).chain(&key.spread_keys) {
            ok.iter_mut().zip(&self.sets[set]).for_each(|(a, b)| *a &= b);
        }
        let TolerationPart { closed, keep, prefer_no_schedule: pns, .. } = &self.tolerations[key.tolerations];
        let mut open = vec![0; self.words];
        let mut keep_only = vec![0; self.words];
        for w in 0..self.words {
            let admitted = ok[w] & !closed[w];
            let restricted = keep[w] | self.cordoned[w];
            open[w] = admitted & !restricted;
            keep_only[w] = admitted & restricted;
        }
        Mask { open, keep: keep_only, prefer_no_schedule: pns.clone() }
    }

    /// Every reason cluster `c` fails `key`, in the order of [`FilterKey::evaluate`].
    #[cfg(debug_assertions)]
    fn reasons(&self, key: &FilterKey<'a>, parts: &Resolved, c: usize) -> Vec<Reason> {
        let mut reasons = Vec::new();
        self.reasons_into(key, parts, c, &mut reasons);
        reasons
    }

    /// Appends every reason cluster `c` fails `key` to `reasons`, in the order of
    /// [`FilterKey::evaluate`].
    fn reasons_into(&self, key: &FilterKey<'a>, parts: &Resolved, c: usize, reasons: &mut Vec<Reason>) {
        if let Some(part) = self.affinity[parts.affinity].mismatch(c) {
            reasons.push(Reason::AffinityMismatch { part });
        }
        for (api, &set) in key.apis.iter().zip(&parts.apis) {
            if !bit(&self.sets[set], c) {
                reasons.push(Reason::MissingApi { api: api.clone() });
            }
        }
        for (cap, &set) in key.capabilities.iter().zip(&parts.capabilities) {
            if !bit(&self.sets[set], c) {
                reasons.push(Reason::MissingCapability { capability: cap.clone() });
            }
        }
        for (k, &set) in key.spread_keys.iter().zip(&parts.spread_keys) {
            if !bit(&self.sets[set], c) {
                reasons.push(Reason::MissingTopologyKey { key: k.to_string() });
            }
        }
        reasons.extend(self.tolerations[parts.tolerations].outcomes[self.profile_of[c]].reasons.iter().cloned());
        if bit(&self.cordoned, c) {
            reasons.push(Reason::Cordoned);
        }
    }
}

/// The first reason [`Parts::reasons_into`] would give, as indices into the filter's parts: cheap
/// to find and count for every cluster, turned into a [`Reason`] once per distinct code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ReasonCode {
    Affinity(AffinityMismatch),
    /// Position in the filter's required APIs.
    Api(u32),
    /// Position in the filter's required capabilities.
    Capability(u32),
    /// Position in the filter's spread keys.
    TopologyKey(u32),
    /// The first taint reason of the filter's tolerations against this taint profile.
    Taint(u32),
    Cordoned,
}

impl<'a> Parts<'a> {
    /// The first reason cluster `c` fails `key`, if any; the same as the first of
    /// [`Parts::reasons_into`].
    fn first_reason(&self, parts: &Resolved, c: usize) -> Option<ReasonCode> {
        if let Some(part) = self.affinity[parts.affinity].mismatch(c) {
            return Some(ReasonCode::Affinity(part));
        }
        let missing = |sets: &[usize]| sets.iter().position(|&set| !bit(&self.sets[set], c));
        let position = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(i) = missing(&parts.apis) {
            return Some(ReasonCode::Api(position(i)));
        }
        if let Some(i) = missing(&parts.capabilities) {
            return Some(ReasonCode::Capability(position(i)));
        }
        if let Some(i) = missing(&parts.spread_keys) {
            return Some(ReasonCode::TopologyKey(position(i)));
        }
        let profile = self.profile_of[c];
        if !self.tolerations[parts.tolerations].outcomes[profile].reasons.is_empty() {
            return Some(ReasonCode::Taint(position(profile)));
        }
        if bit(&self.cordoned, c) {
            return Some(ReasonCode::Cordoned);
        }
        None
    }

    /// Counts the first reason ([`Parts::first_reason`]) of every cluster in `rest`: word by
    /// word where the parts are cluster sets, cluster by cluster for taints and cordons.
    /// `count(code, n)` hears each code found with its number of clusters (a code may be heard
    /// more than once); clusters without a reason are not counted.
    fn first_reason_counts(&self, parts: &Resolved, mut rest: Bits, mut count: impl FnMut(ReasonCode, u32)) {
        // Takes the clusters of `rest` in `hit` (per word) and counts them under `code`.
        let mut take = |rest: &mut Bits, hit: &dyn Fn(usize) -> u64, code: ReasonCode| {
            let mut n = 0;
            for (w, word) in rest.iter_mut().enumerate() {
                let x = *word & hit(w);
                n += x.count_ones();
                *word &= !x;
            }
            if n > 0 {
                count(code, n);
            }
        };
        let a = &self.affinity[parts.affinity];
        // The order of `AffinityPart::mismatch`, on clusters the group does not admit.
        if let Some(b) = &a.excluded {
            take(&mut rest, &|w| !a.ok[w] & b[w], ReasonCode::Affinity(AffinityMismatch::Excluded));
        }
        for (b, part) in [
            (&a.listed, AffinityMismatch::NotInClusterNames),
            (&a.labels, AffinityMismatch::Labels),
            (&a.location, AffinityMismatch::Location),
        ] {
            if let Some(b) = b {
                take(&mut rest, &|w| !a.ok[w] & !b[w], ReasonCode::Affinity(part));
            }
        }
        let position = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        for (i, &set) in parts.apis.iter().enumerate() {
            take(&mut rest, &|w| !self.sets[set][w], ReasonCode::Api(position(i)));
        }
        for (i, &set) in parts.capabilities.iter().enumerate() {
            take(&mut rest, &|w| !self.sets[set][w], ReasonCode::Capability(position(i)));
        }
        for (i, &set) in parts.spread_keys.iter().enumerate() {
            take(&mut rest, &|w| !self.sets[set][w], ReasonCode::TopologyKey(position(i)));
        }
        let outcomes = &self.tolerations[parts.tolerations].outcomes;
        for (w, &word) in rest.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let c = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let profile = self.profile_of[c];
                if !outcomes[profile].reasons.is_empty() {
                    count(ReasonCode::Taint(position(profile)), 1);
                } else if bit(&self.cordoned, c) {
                    count(ReasonCode::Cordoned, 1);
                }
            }
        }
    }

    /// The reason a [`ReasonCode`] of `key` stands for.
    fn reason_of(&self, key: &FilterKey<'a>, parts: &Resolved, code: ReasonCode) -> Reason {
        let at = |i: u32| i as usize;
        match code {
            ReasonCode::Affinity(part) => Reason::AffinityMismatch { part },
            ReasonCode::Api(i) => Reason::MissingApi { api: key.apis[at(i)].clone() },
            ReasonCode::Capability(i) => Reason::MissingCapability { capability: key.capabilities[at(i)].clone() },
            ReasonCode::TopologyKey(i) => Reason::MissingTopologyKey { key: key.spread_keys[at(i)].to_string() },
            ReasonCode::Taint(profile) => self.tolerations[parts.tolerations].outcomes[at(profile)].reasons[0].clone(),
            ReasonCode::Cordoned => Reason::Cordoned,
        }
    }
}

/// The selectors of a preference.
type PreferenceKey<'a> = (Option<&'a LabelSelector>, Option<&'a LocationSelector>);

/// All distinct filters of a batch, compiled from shared parts.
pub(crate) struct Filters<'a> {
    keys: Vec<(FilterKey<'a>, Resolved)>,
    masks: Vec<Mask>,
    index: Map<FilterKey<'a>, usize>,
    parts: Parts<'a>,
    sets: ScoringSets<'a>,
    /// The filter ids of the compiled workloads' affinity groups, flat: workload `i`'s are
    /// `ids[starts[i]..starts[i + 1]]`, as `(starts, ids)`.
    by_workload: (Vec<usize>, Vec<usize>),
}

/// The cluster sets scoring and Weighted division read, compiled once per distinct entry.
struct ScoringSets<'a> {
    /// The clusters each distinct preference matches (both selectors), for scoring.
    preferences: Vec<Bits>,
    preference_ids: Map<PreferenceKey<'a>, usize>,
    /// The clusters each distinct `replicaScheduling.weights` entry matches (by name or label).
    weight_entries: Vec<Bits>,
    weight_entry_ids: Map<WeightKey<'a>, usize>,
}

impl<'a> ScoringSets<'a> {
    /// The sets of every preference and weight entry of `workloads` over `clusters` (sorted by
    /// name), with selector caches of their own.
    fn compile(workloads: &[&'a Workload], clusters: &[&'a Cluster]) -> Self {
        // Built on first use: a batch without preferences or weights needs none.
        let mut selectors: Option<Selectors<'a>> = None;
        let words = clusters.len().div_ceil(64);
        let index_of = |name: &str| clusters.binary_search_by(|c| c.name.as_str().cmp(name)).ok();
        let mut preferences = Vec::new();
        let mut preference_ids = Map::default();
        for p in workloads.iter().flat_map(|w| &w.preferences) {
            let key = (p.label_selector.as_ref(), p.location_selector.as_ref());
            preference_ids.entry(key).or_insert_with(|| {
                let selectors = selectors.get_or_insert_with(|| Selectors::new(clusters));
                let mut bits = match key.0 {
                    Some(s) => selectors.label_selector(s),
                    None => selectors.all(),
                };
                if let Some(s) = key.1 {
                    super::selectors::and(&mut bits, &selectors.location_selector(s));
                }
                #[cfg(debug_assertions)]
                for (c, cluster) in clusters.iter().enumerate() {
                    let matches =
                        key.0.is_none_or(|s| s.matches(&cluster.labels)) && key.1.is_none_or(|s| s.matches(cluster));
                    debug_assert_eq!(bit(&bits, c), matches, "{}", cluster.name);
                }
                preferences.push(bits);
                preferences.len() - 1
            });
        }
        let mut weight_entries = Vec::new();
        let mut weight_entry_ids = Map::default();
        for e in workloads.iter().flat_map(|w| &w.replica_scheduling.weights) {
            let key: WeightKey<'a> = (&e.cluster_names, e.label_selector.as_ref());
            weight_entry_ids.entry(key).or_insert_with(|| {
                let mut bits = match key.1 {
                    Some(s) => selectors.get_or_insert_with(|| Selectors::new(clusters)).label_selector(s),
                    None => vec![0; words],
                };
                for name in key.0 {
                    if let Some(c) = index_of(name) {
                        bits[c / 64] |= 1 << (c % 64);
                    }
                }
                #[cfg(debug_assertions)]
                for (c, cluster) in clusters.iter().enumerate() {
                    let matches = key.0.contains(&cluster.name) || key.1.is_some_and(|s| s.matches(&cluster.labels));
                    debug_assert_eq!(bit(&bits, c), matches, "{}", cluster.name);
                }
                weight_entries.push(bits);
                weight_entries.len() - 1
            });
        }
        ScoringSets { preferences, preference_ids, weight_entries, weight_entry_ids }
    }
}

/// The cluster-matching parts of a `replicaScheduling.weights` entry.
type WeightKey<'a> = (&'a [String], Option<&'a LabelSelector>);

impl<'a> Filters<'a> {
    /// Batches from this many workloads compile their filters and scoring sets in parallel.
    const PARALLEL_FROM: usize = 64;

    /// Compiles every filter of every affinity group of `workloads`.
    pub fn compile(workloads: &[&'a Workload], clusters: &[&'a Cluster], now: Option<i64>) -> Self {
        let filters = || {
            // One filter per workload is typical; growing would hash every deep key again.
            let mut index: Map<FilterKey<'a>, usize> =
                Map::with_capacity_and_hasher(workloads.len(), Default::default());
            let mut keys = Vec::new();
            let mut parts = Parts::new(clusters, workloads.len());
            // The filter of each workload's each group, in order: contexts take them from here
            // instead of hashing the deep keys again.
            let mut starts = Vec::with_capacity(workloads.len() + 1);
            let mut ids = Vec::with_capacity(workloads.len());
            for w in workloads {
                starts.push(ids.len());
                for term in affinity_terms(w) {
                    let key = FilterKey::of(w, term);
                    let id = match index.get(&key) {
                        Some(&id) => id,
                        None => {
                            let resolved = parts.resolve(&key, clusters, now);
                            index.insert(key.clone(), keys.len());
                            keys.push((key, resolved));
                            keys.len() - 1
                        }
                    };
                    ids.push(id);
                }
            }
            starts.push(ids.len());
            (index, keys, parts, (starts, ids))
        };
        let sets = || ScoringSets::compile(workloads, clusters);
        // The scoring sets need nothing the filters compute: in a large batch they are found on
        // the other core; for a few workloads (the incremental placer) handing them over would
        // cost more than it saves.
        let ((index, keys, parts, by_workload), sets) =
            if workloads.len() >= Self::PARALLEL_FROM { super::join(filters, sets) } else { (filters(), sets()) };
        let masks: Vec<Mask> = super::par_map(keys.iter().collect(), |(_, r)| parts.mask(r));
        #[cfg(debug_assertions)]
        for ((key, resolved), mask) in keys.iter().zip(&masks) {
            for (c, cluster) in clusters.iter().enumerate() {
                let mut reasons = Vec::new();
                let (admission, pns) = key.evaluate(cluster, now, Some(&mut reasons));
                debug_assert_eq!((mask.admission(c), mask.prefer_no_schedule(c)), (admission, pns), "{}", cluster.name);
                debug_assert_eq!(parts.reasons(key, resolved, c), reasons, "{}", cluster.name);
            }
        }
        Filters { keys, masks, index, parts, sets, by_workload }
    }

    /// The id of a `replicaScheduling.weights` entry of a compiled workload, for
    /// [`Filters::weight_entry`].
    pub fn weight_entry_id(&self, e: &crate::ClusterWeight) -> usize {
        self.sets.weight_entry_ids.get(&(e.cluster_names.as_slice(), e.label_selector.as_ref())).copied().unwrap_or(0)
    }

    /// The clusters weight entry `id` matches.
    pub fn weight_entry(&self, id: usize) -> &[u64] {
        &self.sets.weight_entries[id]
    }

    /// The id of preference `p` of a compiled workload, for [`Filters::preference`].
    pub fn preference_id(&self, p: &Preference) -> usize {
        self.sets.preference_ids.get(&(p.label_selector.as_ref(), p.location_selector.as_ref())).copied().unwrap_or(0)
    }

    /// The clusters preference `id` matches.
    pub fn preference(&self, id: usize) -> &[u64] {
        &self.sets.preferences[id]
    }

    /// The filter ids of the affinity groups (in order) of the `i`-th workload passed to
    /// [`Filters::compile`].
    pub fn of_workload(&self, i: usize) -> &[usize] {
        let (starts, ids) = &self.by_workload;
        match (starts.get(i), starts.get(i + 1)) {
            (Some(&a), Some(&b)) => &ids[a..b],
            _ => &[],
        }
    }

    /// The index of the filter of `w` under `affinity` (compiled by [`Filters::compile`]).
    pub fn find(&self, w: &'a Workload, affinity: Option<&'a ClusterAffinity>) -> usize {
        self.index.get(&FilterKey::of(w, affinity)).copied().unwrap_or(0)
    }

    /// The compiled mask of filter `i`.
    pub fn mask(&self, i: usize) -> &Mask {
        &self.masks[i]
    }

    /// Appends every reason cluster `c` fails filter `i` to `reasons`, most fundamental first.
    pub fn reasons_into(&self, i: usize, c: usize, reasons: &mut Vec<Reason>) {
        let (key, resolved) = &self.keys[i];
        self.parts.reasons_into(key, resolved, c, reasons);
    }
}

impl Filters<'_> {
    /// The first reason cluster `c` fails filter `i`, as a code for [`Filters::reason_of`].
    pub fn first_reason(&self, i: usize, c: usize) -> Option<ReasonCode> {
        self.parts.first_reason(&self.keys[i].1, c)
    }

    /// [`Parts::first_reason_counts`] of filter `i` over the clusters in `clusters`.
    pub fn first_reason_counts(&self, i: usize, clusters: Bits, count: impl FnMut(ReasonCode, u32)) {
        self.parts.first_reason_counts(&self.keys[i].1, clusters, count);
    }

    /// Every cluster of the fleet the filters were compiled for, as a set.
    pub fn all_clusters(&self) -> Bits {
        self.parts.selectors.all()
    }

    /// The reason `code` (from [`Filters::first_reason`] of filter `i`) stands for.
    pub fn reason_of(&self, i: usize, code: ReasonCode) -> Reason {
        let (key, resolved) = &self.keys[i];
        self.parts.reason_of(key, resolved, code)
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
