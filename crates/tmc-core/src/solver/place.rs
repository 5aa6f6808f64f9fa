//! Placing one workload: candidates, scores, selection, division, skew repair and verification;
//! keeping and trimming previous decisions; and the rebalance move toward today's placement.

use std::collections::BTreeMap;

use super::{
    divide,
    filter::{Admission, Filters},
    fleet::{AtMost, Counts, Demand, Fleet, Usage},
    score,
    selectors::bit,
    spread::{Spread, select},
};
use crate::{ClusterAffinity, Division, Placement, RebalancePolicy, ReplicaSchedulingType, Workload};

/// Previous decisions accepted in stage A.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    pub term: usize,
    pub counts: Counts,
    /// Nothing left to add (Divided: all replicas; Duplicated: `numberOfClusters` reached).
    pub complete: bool,
    /// Some previous replicas were dropped because they no longer fit or are no longer allowed.
    pub degraded: bool,
}

/// Why a cluster that passed the filters takes no replicas; turned into
/// [`Reason`](crate::Reason)s only when the placement is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// Too little of a set of resources (`Insufficient` each): see [`NoRoomList::short`].
    Short(u32),
    /// Room, but a keep-only cluster may not hold more than it held (no extra reason).
    Kept,
    /// `replicaScheduling.weights` gives it weight 0.
    ZeroWeight,
}

/// The admitted clusters that take no replicas of one outcome, and why, in cluster order.
///
/// Compact because an incomplete outcome keeps it until it is explained (at 100k workloads x
/// 5k clusters, tens of millions of entries): 8 bytes a cluster, and each distinct set of short
/// resources stored once.
#[derive(Clone, Debug, Default)]
pub(crate) struct NoRoomList {
    /// `(cluster, code)`: code 0 is [`NoRoom::Kept`], 1 [`NoRoom::ZeroWeight`], `2 + i`
    /// [`NoRoom::Short`] of set `i`.
    entries: Vec<(u32, u32)>,
    /// The distinct sets of short resources, as ranges of `resources`.
    sets: Vec<(u32, u32)>,
    resources: Vec<u32>,
}

impl NoRoomList {
    const KEPT: u32 = 0;
    const ZERO_WEIGHT: u32 = 1;

    /// Cluster indices and set counts fit in 32 bits (they index in-memory clusters and resources).
    fn index(n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn push(&mut self, c: usize, why: NoRoom) {
        let code = match why {
            NoRoom::Kept => Self::KEPT,
            NoRoom::ZeroWeight => Self::ZERO_WEIGHT,
            NoRoom::Short(set) => set.saturating_add(2),
        };
        self.entries.push((Self::index(c), code));
    }

    /// Records that cluster `c` is short of `resources`.
    fn push_short(&mut self, c: usize, resources: impl Iterator<Item = usize>) {
        let from = self.resources.len();
        self.resources.extend(resources.map(Self::index));
        let new = &self.resources[from..];
        // Clusters fall short of a handful of distinct sets: find this one among them.
        let found = self.sets.iter().position(|&(a, b)| self.resources[a as usize..b as usize] == *new);
        let set = match found {
            Some(i) => {
                self.resources.truncate(from);
                i
            }
            None => {
                self.sets.push((Self::index(from), Self::index(self.resources.len())));
                self.sets.len() - 1
            }
        };
        self.push(c, NoRoom::Short(Self::index(set)));
    }

    /// The clusters and why, in cluster order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, NoRoom)> + '_ {
        self.entries.iter().map(|&(c, code)| {
            let why = match code {
                Self::KEPT => NoRoom::Kept,
                Self::ZERO_WEIGHT => NoRoom::ZeroWeight,
                set => NoRoom::Short(set - 2),
            };
            (c as usize, why)
        })
    }

    /// The resources (fleet indices) a cluster is short of (empty unless [`NoRoom::Short`]).
    pub fn short(&self, why: Option<NoRoom>) -> &[u32] {
        match why {
            Some(NoRoom::Short(set)) => {
                self.sets.get(set as usize).map_or(&[], |&(a, b)| &self.resources[a as usize..b as usize])
            }
            _ => &[],
        }
    }

    fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.sets.shrink_to_fit();
        self.resources.shrink_to_fit();
    }
}

/// The result of placing one workload under one affinity group.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    pub term: usize,
    pub counts: Counts,
    pub complete: bool,
    /// Clusters that passed the filters but had no room (or weight 0), with the reasons.
    pub no_room: NoRoomList,
    /// Clusters that passed every filter and had room, sorted.
    pub candidates: Vec<usize>,
    /// Constraint shortfalls, as sentences (shown when the placement is not complete).
    pub notes: Vec<String>,
    /// Things that happened to the workload (preemption, rebalancing), always shown.
    pub events: Vec<String>,
    /// True when this outcome came from several affinity groups and none was complete.
    pub fell_back: bool,
    /// Rebalance moves left for later rounds.
    pub rebalance_pending: u64,
}

impl Outcome {
    /// An outcome that is exactly a kept decision.
    pub fn kept(k: Kept) -> Self {
        Outcome { term: k.term, counts: k.counts, complete: k.complete, ..Outcome::default() }
    }

    /// Drops what only the explanation of an incomplete outcome needs (a complete one has none):
    /// kept for every workload, it would grow with workloads × clusters. An incomplete one keeps
    /// it without spare capacity.
    pub fn compact_explanation(&mut self) {
        if self.complete {
            self.no_room = NoRoomList::default();
            self.candidates = Vec::new();
        } else {
            self.no_room.shrink_to_fit();
            self.candidates.shrink_to_fit();
        }
    }

    /// Replicas placed (Duplicated: summed over clusters).
    pub fn placed(&self) -> u64 {
        self.counts.iter().map(|&(_, n)| n).sum()
    }
}

/// The replicas of `c` in `counts` (sorted by cluster).
pub(crate) fn count_of(counts: &[(usize, u64)], c: usize) -> u64 {
    counts.binary_search_by_key(&c, |&(x, _)| x).map_or(0, |i| counts[i].1)
}

pub(crate) fn set_count(counts: &mut Counts, c: usize, n: u64) {
    match counts.binary_search_by_key(&c, |&(x, _)| x) {
        Ok(i) if n == 0 => {
            counts.remove(i);
        }
        Ok(i) => counts[i].1 = n,
        Err(i) if n > 0 => counts.insert(i, (c, n)),
        Err(_) => {}
    }
}

/// Where one workload could go under one affinity group, before selection.
pub(crate) struct Survey {
    /// Admitted clusters with room (and weight), sorted.
    pub candidates: Vec<usize>,
    /// Replicas that fit, per cluster index, counted as far as placing the workload can use
    /// (at least its replica count); 0 for non-candidates.
    pub room: Vec<u64>,
    /// Static weight per cluster index for Weighted division (0 elsewhere); empty for any other
    /// division.
    pub weight: Vec<u64>,
    /// Admitted clusters without room or with weight 0, and why.
    pub no_room: NoRoomList,
}

/// Topology groups tried first in turn, at most, when a placement under maxGroups falls short.
const GROUP_TRIALS: usize = 4;

/// Everything about one workload that does not change while the batch is placed.
#[derive(Clone)]
pub(crate) struct WorkloadCtx<'a> {
    pub w: &'a Workload,
    pub demand: Demand,
    pub terms: Vec<Option<&'a ClusterAffinity>>,
    /// The compiled filter of each term.
    pub filters: Vec<usize>,
    spread: Spread<'a>,
    /// Previous replicas per cluster index (clusters that no longer exist are dropped).
    pub previous: Counts,
    previous_group: Option<&'a str>,
    /// The compiled cluster sets of each preference and each `replicaScheduling.weights` entry.
    preferences: Vec<usize>,
    weight_entries: Vec<usize>,
    /// Under `numberOfClusters`, whether a Divided placement the best-ranked clusters cannot hold
    /// also tries the clusters with the most room first (as under `maxGroups`). Off in the
    /// greedy pass: taking the roomiest clusters early leaves later workloads of the same pool
    /// short (5k x 100 high fell from 1.69% to 2.64% gap). The improvement step's regroup
    /// trials turn it on, where only room the whole plan left free is taken.
    pub roomy: bool,
    /// Whether placing it finds the no-room reasons of an incomplete outcome at once. Off for
    /// the workloads [`super::place_all`] places: it explains every incomplete outcome once,
    /// against the final plan, after the improvement step, so surveying for reasons while
    /// placing (on the one core the greedy pass runs on) would be thrown away.
    pub explained: bool,
}

impl<'a> WorkloadCtx<'a> {
    /// The workload as the next solve sees it once `counts` is its decision: they are its
    /// previous replicas, which it keeps and which the Steady prioritizer favours when it extends
    /// them. Checks that a plan is a fixed point of its re-solve extend with this.
    pub fn as_decided(&self, counts: &Counts) -> WorkloadCtx<'a> {
        let mut decided = self.clone();
        decided.previous.clone_from(counts);
        decided
    }

    /// The context of `w`, the `i`-th workload `filters` were compiled for, with its previous
    /// placement `prev`.
    pub fn new(
        i: usize,
        w: &'a Workload,
        fleet: &'a Fleet<'a>,
        filters: &Filters<'a>,
        prev: Option<&'a Placement>,
    ) -> Self {
        let terms = super::filter::affinity_terms(w);
        let filter_ids = filters.of_workload(i).to_vec();
        debug_assert_eq!(filter_ids, terms.iter().map(|t| filters.find(w, *t)).collect::<Vec<_>>());
        let mut previous = Counts::new();
        for d in prev.map(|p| p.decisions.as_slice()).unwrap_or_default() {
            // A cluster that no longer exists holds nothing any more.
            if let Some(c) = fleet.index_of(&d.cluster) {
                set_count(&mut previous, c, u64::from(d.replicas));
            }
        }
        WorkloadCtx {
            w,
            demand: fleet.demand(w),
            terms,
            filters: filter_ids,
            spread: Spread::new(w, fleet),
            previous,
            previous_group: prev.and_then(|p| p.affinity_group.as_deref()),
            preferences: w.preferences.iter().map(|p| filters.preference_id(p)).collect(),
            weight_entries: w.replica_scheduling.weights.iter().map(|e| filters.weight_entry_id(e)).collect(),
            roomy: false,
            explained: true,
        }
    }

    /// The same workload, with [`WorkloadCtx::explained`] off.
    pub fn explained_later(self) -> Self {
        WorkloadCtx { explained: false, ..self }
    }

    /// How many replicas admitted cluster `c` may hold: any number where it is `Open`, at most the
    /// previous ones where it only keeps (0 where nothing ran there).
    pub fn keep_cap(&self, c: usize, open: bool) -> u64 {
        if open { u64::MAX } else { count_of(&self.previous, c) }
    }

    /// Whether the workload, holding `counts`, could place more on cluster `c` were there room:
    /// below its maxReplicasPerCluster there (Divided) or without a copy there (Duplicated).
    pub fn may_take_more(&self, counts: &[(usize, u64)], c: usize) -> bool {
        let here = count_of(counts, c);
        if self.divided() {
            self.w.replica_scheduling.max_replicas_per_cluster.is_none_or(|m| here < u64::from(m))
        } else {
            here == 0
        }
    }

    /// `replicaScheduling.minReplicasPerCluster` (0 when unset).
    pub fn min_per(&self) -> u64 {
        u64::from(self.w.replica_scheduling.min_replicas_per_cluster.unwrap_or(0))
    }

    /// `replicaScheduling.maxReplicasPerCluster` (`u64::MAX` when unset).
    pub fn max_per(&self) -> u64 {
        self.w.replica_scheduling.max_replicas_per_cluster.map_or(u64::MAX, u64::from)
    }

    pub fn replicas(&self) -> u64 {
        u64::from(self.w.replicas)
    }

    pub fn divided(&self) -> bool {
        self.w.replica_scheduling.kind == ReplicaSchedulingType::Divided
    }

    pub fn uses_static_weights(&self) -> bool {
        self.divided() && self.w.replica_scheduling.division == Division::Weighted
    }

    /// Static weight of cluster `c` for Weighted division: the first matching entry, else 0;
    /// equal weights when no entry is given.
    pub fn static_weight(&self, filters: &Filters<'_>, c: usize) -> u64 {
        let weights = &self.w.replica_scheduling.weights;
        if weights.is_empty() {
            return 1;
        }
        weights
            .iter()
            .zip(&self.weight_entries)
            .find(|&(_, &id)| bit(filters.weight_entry(id), c))
            .map_or(0, |(e, _)| u64::from(e.weight))
    }

    fn skew_value(&self) -> fn(u64) -> u64 {
        if self.divided() { |n| n } else { |_| 1 }
    }

    /// Scores `clusters` for this workload under `term`, given `usage`.
    pub fn scores(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        term: usize,
        clusters: &[usize],
    ) -> Vec<i64> {
        let mask = filters.mask(self.filters[term]);
        let preferences: Vec<(i64, &[u64])> = self
            .w
            .preferences
            .iter()
            .zip(&self.preferences)
            .map(|(p, &id)| (i64::from(p.weight), filters.preference(id)))
            .collect();
        score::score(self.w, fleet, usage, &self.demand, clusters, &self.previous, &preferences, |c| {
            mask.prefer_no_schedule(c)
        })
    }

    /// Stage A: the part of the previous decisions that is still valid: clusters that still admit
    /// the workload and still hold its replicas (fewer where capacity shrank). What no longer fits
    /// is placed again in stage B, so only what must move moves. After a scale-down the kept part
    /// is trimmed on the least preferred clusters first. `None` when nothing valid remains or the
    /// remainder breaks a spread constraint.
    pub fn keep(&self, fleet: &Fleet<'_>, filters: &Filters<'_>, usage: &Usage) -> Option<Kept> {
        if self.previous.is_empty() {
            return None;
        }
        let term = match self.previous_group {
            Some(name) => self.terms.iter().position(|t| t.and_then(|t| t.name.as_deref()) == Some(name))?,
            // The group that admits the most previous clusters (the earliest on ties).
            None => {
                let admitted = |t: usize| {
                    let mask = filters.mask(self.filters[t]);
                    self.previous.iter().filter(|&&(c, _)| mask.admission(c) != Admission::Closed).count()
                };
                let best =
                    (0..self.terms.len()).map(|t| (admitted(t), t)).max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))?;
                (best.0 > 0).then_some(best.1)?
            }
        };
        let mask = filters.mask(self.filters[term]);
        let r = self.replicas();
        let max_per = self.max_per();
        let mut counts = Counts::new();
        for &(c, n) in &self.previous {
            if mask.admission(c) == Admission::Closed {
                continue;
            }
            let fit = fleet.fit(usage, c, &self.demand).0;
            let keep = if self.divided() {
                if self.uses_static_weights() && self.static_weight(filters, c) == 0 {
                    0
                } else {
                    n.min(fit).min(max_per)
                }
            } else if fit >= n.min(r) {
                // A Duplicated copy keeps its current footprint (shrunk on a scale-down); growing
                // it after a scale-up waits for stage B, so it never displaces other workloads'
                // kept replicas.
                n.min(r)
            } else {
                0
            };
            if keep > 0 {
                counts.push((c, keep));
            }
        }
        if counts.is_empty() {
            return None;
        }
        let degraded = counts != self.previous;
        if self.w.number_of_clusters.is_some_and(|n| counts.len() as u64 > u64::from(n)) {
            return None;
        }
        if self.divided() && counts.iter().map(|&(_, n)| n).sum::<u64>() > r {
            self.trim(fleet, filters, usage, term, &mut counts);
        }
        let min_per = self.min_per();
        counts.retain(|&(_, n)| !self.divided() || n >= min_per);
        if counts.is_empty() {
            return None;
        }
        if self.spread.violation(&counts, self.skew_value()).is_some() {
            return None;
        }
        let sum: u64 = counts.iter().map(|&(_, n)| n).sum();
        let complete = if self.divided() {
            sum == r
        } else {
            // Duplicated without numberOfClusters means "all feasible": look for new clusters.
            self.w.number_of_clusters.is_some_and(|n| counts.len() as u64 == u64::from(n))
                && counts.iter().all(|&(_, n)| n == r)
        };
        Some(Kept { term, counts, complete, degraded })
    }

    /// Scale-down: removes replicas from the least preferred clusters until the request is met; a
    /// cluster that would drop below `minReplicasPerCluster` is emptied instead.
    fn trim(&self, fleet: &Fleet<'_>, filters: &Filters<'_>, usage: &Usage, term: usize, counts: &mut Counts) {
        let r = self.replicas();
        let min_per = self.min_per();
        let clusters: Vec<usize> = counts.iter().map(|&(c, _)| c).collect();
        let scores = self.scores(fleet, filters, usage, term, &clusters);
        let mut worst_first: Vec<(i64, usize)> = scores.into_iter().zip(clusters).collect();
        worst_first.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        for (_, c) in worst_first {
            let sum: u64 = counts.iter().map(|&(_, n)| n).sum();
            if sum <= r {
                break;
            }
            let n = count_of(counts, c);
            let cut = (sum - r).min(n);
            let left = if n - cut > 0 && n - cut < min_per { 0 } else { n - cut };
            set_count(counts, c, left);
        }
    }

    /// Tries each affinity group in order; the first that holds the whole request wins, else the
    /// group that placed the most (the earliest on ties), extended from its own outcome until it
    /// stops growing.
    pub fn place_fresh(&self, fleet: &Fleet<'_>, filters: &Filters<'_>, usage: &Usage) -> Outcome {
        let mut best = self.place_fresh_unexplained(fleet, filters, usage);
        if !self.terms.is_empty() {
            self.explain(fleet, filters, usage, &[], &mut best);
        }
        best
    }

    /// [`WorkloadCtx::place_fresh`] without the no-room reasons, for trials that may be dropped
    /// ([`WorkloadCtx::explain`] adds them to the one kept).
    pub fn place_fresh_unexplained(&self, fleet: &Fleet<'_>, filters: &Filters<'_>, usage: &Usage) -> Outcome {
        let mut best: Option<Outcome> = None;
        for term in 0..self.terms.len() {
            // Only the group kept is explained (below), under the same usage.
            let o = self.attempt_unexplained(fleet, filters, usage, term, &[]);
            if o.complete {
                return o;
            }
            if best.as_ref().is_none_or(|b| o.placed() > b.placed()) {
                best = Some(o);
            }
        }
        let mut best = best.unwrap_or_default();
        // Placing from scratch is a heuristic that extending its own result can beat (a spread
        // with maxSkew 0 repaired by dropping a short zone leaves room on the others). The next
        // solve keeps this outcome and extends it, as its previous decision (which the Steady
        // prioritizer favours), so extend it here the same way until it stops growing: otherwise
        // the plan would not be a fixed point of its re-solve (a preemptor would take the rest
        // then).
        if !best.complete && best.placed() > 0 {
            let mut steady = self.clone();
            loop {
                steady.previous.clone_from(&best.counts);
                let grown = steady.attempt_unexplained(fleet, filters, usage, best.term, &best.counts);
                if grown.placed() <= best.placed() {
                    break;
                }
                best = grown;
            }
        }
        best.fell_back = self.terms.len() > 1;
        best
    }

    /// The clusters of affinity group `term` with room for the workload under `usage` (its
    /// `candidates`, with their `room`, counted as far as placing it can use, and static
    /// `weight`), and those admitted but without room or with weight 0, with the reasons.
    /// Clusters in `floor` stay candidates whatever their room. Without `reasons` the no-room
    /// list stays empty: most placements are complete and never explain it, and naming the short
    /// resources costs more than finding that a cluster has no room.
    pub fn survey(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        term: usize,
        floor: &[(usize, u64)],
        reasons: bool,
    ) -> Survey {
        let r = self.replicas();
        let rs = &self.w.replica_scheduling;
        let mask = filters.mask(self.filters[term]);
        let min_per = self.min_per();
        let max_per = self.max_per();
        let need = if self.divided() { min_per.max(1) } else { r.max(1) };
        // How far room is counted on each cluster: every use of it below is bounded by this (the
        // replica count, or, for Dynamic division, whose weights are the room, maxReplicasPerCluster).
        let fit_limit = match (self.divided(), rs.division) {
            (true, Division::Dynamic) => max_per,
            _ => r,
        }
        .max(r)
        .max(need);
        let n_clusters = fleet.clusters.len();
        let mut no_room = NoRoomList::default();
        let mut cands: Vec<usize> = Vec::with_capacity(mask.count());
        // Dense per-cluster room and weight of the candidates (0 elsewhere).
        let mut raw = vec![0u64; n_clusters];
        let mut weight = if self.uses_static_weights() { vec![0u64; n_clusters] } else { Vec::new() };
        let at_most = AtMost::new(&self.demand, fit_limit);
        for (c, open) in mask.admitted_open() {
            let keep_cap = self.keep_cap(c, open);
            if keep_cap == 0 {
                continue;
            }
            // `usage` excludes the floor, so `fit` already counts the room the kept replicas use.
            let fit = fleet.fit_at_most(usage, c, &at_most);
            let cap = fit.min(keep_cap);
            if cap < need && count_of(floor, c) == 0 {
                if !reasons {
                    continue;
                }
                if fit < need {
                    // Name every resource that falls short, as kube-scheduler does (the binding
                    // one when none is short alone).
                    let mut short = fleet.short_resources(usage, c, &self.demand, need).peekable();
                    if short.peek().is_some() {
                        no_room.push_short(c, short);
                    } else {
                        no_room.push_short(c, fleet.fit(usage, c, &self.demand).1.into_iter());
                    }
                } else {
                    no_room.push(c, NoRoom::Kept);
                }
                continue;
            }
            if self.uses_static_weights() {
                let wt = self.static_weight(filters, c);
                if wt == 0 {
                    no_room.push(c, NoRoom::ZeroWeight);
                    continue;
                }
                weight[c] = wt;
            }
            cands.push(c);
            raw[c] = cap;
        }
        Survey { candidates: cands, room: raw, weight, no_room }
    }

    /// Places the workload under affinity group `term`, keeping at least `floor` replicas on the
    /// clusters it names (a kept previous decision, not counted in `usage`).
    pub fn attempt(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        term: usize,
        floor: &[(usize, u64)],
    ) -> Outcome {
        let mut o = self.attempt_unexplained(fleet, filters, usage, term, floor);
        self.explain(fleet, filters, usage, floor, &mut o);
        o
    }

    /// Adds the no-room reasons to `o`, an outcome of [`WorkloadCtx::attempt_unexplained`] under
    /// the same `usage` and `floor`, when it is incomplete (only those are explained).
    pub fn explain(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        floor: &[(usize, u64)],
        o: &mut Outcome,
    ) {
        if !o.complete && self.explained {
            o.no_room = self.survey(fleet, filters, usage, o.term, floor, true).no_room;
        }
    }

    /// Explains `o`, an incomplete outcome, against `usage`, the final plan's (its own replicas
    /// included): the clusters with room for it and those without, and why, as a placement of it
    /// against the others' usage would find them (its own clusters count as candidates).
    pub fn explain_final(&self, fleet: &Fleet<'_>, filters: &Filters<'_>, usage: &Usage, o: &mut Outcome) {
        if o.complete {
            return;
        }
        let survey = self.survey(fleet, filters, usage, o.term, &o.counts, true);
        o.no_room = survey.no_room;
        o.candidates = survey.candidates;
        o.compact_explanation();
    }

    /// [`WorkloadCtx::attempt`] without the no-room reasons.
    fn attempt_unexplained(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        term: usize,
        floor: &[(usize, u64)],
    ) -> Outcome {
        let w = self.w;
        let r = self.replicas();
        let rs = &w.replica_scheduling;
        let min_per = self.min_per();
        let max_per = self.max_per();
        let Survey { candidates: mut cands, room: raw, weight, .. } =
            self.survey(fleet, filters, usage, term, floor, false);
        let scores = self.scores(fleet, filters, usage, term, &cands);
        let limit = w.number_of_clusters.map_or(usize::MAX, |n| n as usize);
        // Without spread constraints (and for any division but Aggregated, which reorders all
        // candidates by capacity), selection reads only a prefix of the ranking: each cluster it
        // reads is chosen, or is one of the `floor` clusters chosen first. Only that prefix is
        // sorted; the order of what it reads is the same.
        let prefix = if self.spread.constraints.is_empty() && !(self.divided() && rs.division == Division::Aggregated) {
            let chosen = if self.divided() {
                limit.min(usize::try_from(r / min_per.max(1)).unwrap_or(usize::MAX)).max(floor.len())
            } else {
                limit
            };
            chosen.max(floor.len()).saturating_add(floor.len())
        } else {
            usize::MAX
        };
        let ranked = rank(&scores, &cands, prefix);
        let mut notes = Vec::new();
        let initial: Vec<usize> = floor.iter().map(|&(c, _)| c).collect();

        let mut counts: Counts = if r == 0 {
            Counts::new()
        } else if !self.divided() {
            let copies = |order: &[usize], notes: &mut Vec<String>| {
                let sel = select(order, &self.spread, limit, &initial, true, None);
                if sel.shortfalls.is_empty() {
                    let mut counts: Counts = sel.chosen.iter().map(|&c| (c, r)).collect();
                    counts.sort_unstable();
                    counts
                } else {
                    notes.extend(sel.shortfalls);
                    Counts::new()
                }
            };
            let mut counts = copies(&ranked, &mut notes);
            // As for Divided below: under maxGroups, the best-ranked group can hold fewer copies
            // than another.
            if let Some(n) = w.number_of_clusters.map(|n| n as usize).filter(|&n| counts.len() < n) {
                for first in self.group_first_orders(&ranked, counts.len() as u64, |_| 1) {
                    if counts.len() == n {
                        break;
                    }
                    let mut group_notes = Vec::new();
                    let grouped = copies(&first, &mut group_notes);
                    if grouped.len() > counts.len() {
                        counts = grouped;
                        notes = group_notes;
                    }
                }
            }
            counts
        } else {
            let mut caps = raw.clone();
            for c in &cands {
                caps[*c] = caps[*c].min(max_per).min(r);
            }
            let aggregated = rs.division == Division::Aggregated;
            // The ranking with the largest capacity first (stable, so score then name break ties).
            let by_capacity = || {
                // The whole ranking: `ranked` may hold only the prefix that selection reads.
                let mut o = if ranked.len() < cands.len() { rank(&scores, &cands, usize::MAX) } else { ranked.clone() };
                o.sort_by(|a, b| caps[*b].cmp(&caps[*a]));
                o
            };
            let fewest: Vec<usize>;
            // Aggregated wants the fewest clusters: largest capacity first.
            let order: &[usize] = if aggregated {
                fewest = by_capacity();
                &fewest
            } else {
                &ranked
            };
            let limit = limit.min(usize::try_from(r / min_per.max(1)).unwrap_or(usize::MAX)).max(initial.len());
            let cap_of = |c: usize| caps[c];
            let cover: Option<(u64, &dyn Fn(usize) -> u64)> = if aggregated { Some((r, &cap_of)) } else { None };
            // Selection and division over the clusters in `order`, with the notes on why nothing
            // could be placed.
            let split_over = |order: &[usize], notes: &mut Vec<String>| -> Counts {
                let sel = select(order, &self.spread, limit, &initial, false, cover);
                if !sel.shortfalls.is_empty() {
                    notes.extend(sel.shortfalls);
                    Counts::new()
                } else {
                    let mut chosen = sel.chosen;
                    let floor_of = |c: usize| {
                        let f = count_of(floor, c).max(min_per);
                        if sel.reps.contains(&c) { f.max(1) } else { f }
                    };
                    // Drop the least preferred optional clusters until the floors fit in the request.
                    while chosen.iter().map(|&c| floor_of(c)).sum::<u64>() > r {
                        match chosen.iter().rposition(|c| !sel.reps.contains(c) && count_of(floor, *c) == 0) {
                            Some(i) => {
                                chosen.remove(i);
                            }
                            None => break,
                        }
                    }
                    if chosen.iter().map(|&c| floor_of(c)).sum::<u64>() > r {
                        notes.push(format!("{r} replicas cannot give every required cluster its minimum"));
                        Counts::new()
                    } else {
                        let mins: Vec<u64> = chosen.iter().map(|&c| floor_of(c)).collect();
                        let slot_caps: Vec<u64> = chosen.iter().map(|&c| caps[c]).collect();
                        let split = match rs.division {
                            Division::Aggregated => divide::fill_in_order(r, &slot_caps, &mins),
                            Division::Weighted => {
                                let ws: Vec<u64> = chosen.iter().map(|&c| weight[c]).collect();
                                divide::apportion(r, &ws, &slot_caps, &mins)
                            }
                            Division::Dynamic => {
                                let ws: Vec<u64> = chosen.iter().map(|&c| raw[c].min(max_per)).collect();
                                divide::apportion(r, &ws, &slot_caps, &mins)
                            }
                        };
                        let mut counts: Counts =
                            chosen.iter().zip(split).filter(|(_, n)| *n > 0).map(|(&c, n)| (c, n)).collect();
                        counts.sort_unstable();
                        self.repair_skew(&mut counts, &caps, &ranked, limit, floor, min_per);
                        counts
                    }
                }
            };
            let mut counts = split_over(order, &mut notes);
            // Under maxGroups (or numberOfClusters, when `roomy`), the best-ranked clusters can
            // hold fewer replicas than others: when they cannot hold the request, the clusters
            // with the most room go first instead, and that is kept when it places more.
            let placed_of = |counts: &Counts| counts.iter().map(|&(_, n)| n).sum::<u64>();
            let limited = self.spread.constraints.iter().any(|s| s.max_groups.is_some())
                || (self.roomy && w.number_of_clusters.is_some());
            if !aggregated && placed_of(&counts) < r && limited {
                let mut room_notes = Vec::new();
                let roomier = split_over(&by_capacity(), &mut room_notes);
                if placed_of(&roomier) > placed_of(&counts) {
                    counts = roomier;
                    notes = room_notes;
                }
            }
            // Both orders start from single clusters, so under maxGroups they can settle in a
            // group that holds fewer replicas than another (an Aggregated workload limited to one
            // provider takes the best-scored provider's one cluster, while another provider has
            // two).
            if placed_of(&counts) < r {
                for first in self.group_first_orders(order, placed_of(&counts), |c| caps[c]) {
                    if placed_of(&counts) == r {
                        break;
                    }
                    let mut group_notes = Vec::new();
                    let grouped = split_over(&first, &mut group_notes);
                    if placed_of(&grouped) > placed_of(&counts) {
                        counts = grouped;
                        notes = group_notes;
                    }
                }
            }
            counts
        };
        // Safety net: never commit a decision set that breaks a hard constraint.
        if let Some(v) = self.violation(fleet, usage, &counts, &raw) {
            notes.push(v);
            counts.clear();
        }
        let placed: u64 = counts.iter().map(|&(_, n)| n).sum();
        let complete = if r == 0 {
            true
        } else if self.divided() {
            placed == r
        } else {
            match w.number_of_clusters {
                Some(n) => counts.len() == n as usize,
                None => !counts.is_empty(),
            }
        };
        if !complete
            && !self.divided()
            && notes.is_empty()
            && let Some(n) = w.number_of_clusters
        {
            notes.push(format!(
                "numberOfClusters needs {n} clusters, {} can hold a copy of {r} replica{}",
                counts.len(),
                if r == 1 { "" } else { "s" }
            ));
        }
        if self.divided() && !complete && placed > 0 {
            notes.extend(self.exhaustion(fleet, usage, &counts, max_per));
        }
        cands.sort_unstable();
        Outcome { term, counts, complete, candidates: cands, notes, ..Outcome::default() }
    }

    /// Under the first spread constraint with maxGroups, the orders that try each topology group
    /// first (its clusters first, in `order`, then the rest), for the groups whose clusters could
    /// hold more than `placed` units (`cap` per cluster): the roomiest group first, at most
    /// [`GROUP_TRIALS`] of them. Empty without maxGroups.
    fn group_first_orders(&self, order: &[usize], placed: u64, cap: impl Fn(usize) -> u64) -> Vec<Vec<usize>> {
        let Some(k) = self.spread.constraints.iter().position(|s| s.max_groups.is_some()) else {
            return Vec::new();
        };
        let mut per_group: BTreeMap<u32, u64> = BTreeMap::new();
        for &c in order {
            let units = per_group.entry(self.spread.group(k, c)).or_default();
            *units = units.saturating_add(cap(c));
        }
        let mut room: Vec<(u64, u32)> = per_group.into_iter().map(|(g, units)| (units, g)).collect();
        room.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        room.iter()
            .filter(|&&(units, _)| units > placed)
            .take(GROUP_TRIALS)
            .map(|&(_, g)| {
                let (mut first, rest): (Vec<usize>, Vec<usize>) =
                    order.iter().partition(|&&c| self.spread.group(k, c) == g);
                first.extend(rest);
                first
            })
            .collect()
    }

    /// Moves replicas from the largest to the smallest group of a skew-violating constraint;
    /// where no cluster can receive, or a move would only swap which group is larger (an odd
    /// total over two groups with `maxSkew: 0`), trims the largest group (placing less, never
    /// violating). Neither a move nor a trim empties the last cluster of a group that a
    /// `minGroups` needs while another choice exists.
    fn repair_skew(
        &self,
        counts: &mut Counts,
        caps: &[u64],
        ranked: &[usize],
        limit: usize,
        floor: &[(usize, u64)],
        min_per: u64,
    ) {
        if self.spread.constraints.iter().all(|s| s.max_skew.is_none()) {
            return;
        }
        let r = self.replicas();
        let mut moves_left = 4 * (r + 1) * (self.spread.constraints.len() as u64 + 1);
        let floor_of = |c: usize| count_of(floor, c).max(min_per);
        loop {
            let violated = self.spread.constraints.iter().enumerate().find_map(|(k, s)| {
                let skew = u64::from(s.max_skew?);
                let sums = self.spread.group_sums(k, counts, |n| n);
                let (&gmax, &hi) = sums.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
                let (&gmin, &lo) = sums.iter().min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))?;
                (hi - lo > skew).then_some((k, gmax, gmin, hi - lo))
            });
            let Some((k, gmax, gmin, gap)) = violated else {
                self.refill(counts, caps, ranked, limit, min_per);
                return;
            };
            let in_group = |c: usize, g: u32| self.spread.group(k, c) == g;
            // Whether taking one replica off `c` keeps every minGroups (it can only break one by
            // emptying the last cluster of a group).
            let keeps_groups = |counts: &Counts, c: usize| count_of(counts, c) > 1 || !self.spread.needs(counts, c);
            let donor = ranked
                .iter()
                .rev()
                .copied()
                .find(|&c| in_group(c, gmax) && count_of(counts, c) > floor_of(c) && keeps_groups(counts, c));
            let receiver = ranked.iter().copied().find(|&c| {
                in_group(c, gmin)
                    && match count_of(counts, c) {
                        // A new cluster must not open a group beyond any constraint's maxGroups.
                        0 => counts.len() < limit && min_per <= 1 && caps[c] > 0 && self.spread.may_join(counts, c),
                        n => n < caps[c],
                    }
            });
            match (donor, receiver) {
                // With a gap of one, a move only makes the smallest group the largest.
                (Some(d), Some(rc)) if moves_left > 0 && gap > 1 => {
                    moves_left -= 1;
                    let (dn, rn) = (count_of(counts, d), count_of(counts, rc));
                    set_count(counts, d, dn - 1);
                    set_count(counts, rc, rn + 1);
                }
                _ => {
                    // Trim the least preferred cluster of the largest group that is above its
                    // floor, one whose group a minGroups does not need if there is one.
                    let above_floor = |c: usize| in_group(c, gmax) && count_of(counts, c) > count_of(floor, c);
                    let victim = ranked
                        .iter()
                        .rev()
                        .copied()
                        .find(|&c| above_floor(c) && keeps_groups(counts, c))
                        .or_else(|| ranked.iter().rev().copied().find(|&c| above_floor(c)));
                    let Some(v) = victim else {
                        self.refill(counts, caps, ranked, limit, min_per);
                        return;
                    };
                    let n = count_of(counts, v);
                    let next = if n - 1 < min_per { count_of(floor, v) } else { n - 1 };
                    set_count(counts, v, next);
                }
            }
        }
    }

    /// After trimming: adds single replicas back, most preferred cluster first, wherever every
    /// spread constraint still holds, so trimming never leaves placeable replicas behind.
    fn refill(&self, counts: &mut Counts, caps: &[u64], ranked: &[usize], limit: usize, min_per: u64) {
        let r = self.replicas();
        loop {
            let mut added = false;
            for &c in ranked {
                if counts.iter().map(|&(_, n)| n).sum::<u64>() >= r {
                    return;
                }
                let n = count_of(counts, c);
                let fits = if n == 0 {
                    counts.len() < limit && min_per <= 1 && caps[c] > 0 && self.spread.may_join(counts, c)
                } else {
                    n < caps[c]
                };
                if !fits {
                    continue;
                }
                set_count(counts, c, n + 1);
                if self.spread.violation(counts, |n| n).is_some() {
                    set_count(counts, c, n);
                } else {
                    added = true;
                }
            }
            if !added {
                return;
            }
        }
    }

    /// Why the used clusters could take no more: the resource that ran out on each, or the
    /// per-cluster maximum, summarised as sentences.
    fn exhaustion(&self, fleet: &Fleet<'_>, usage: &Usage, counts: &[(usize, u64)], max_per: u64) -> Vec<String> {
        let mut limits: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for &(c, n) in counts {
            let (fit, binding) = fleet.fit(usage, c, &self.demand);
            let limit = if n >= max_per {
                "reached maxReplicasPerCluster".to_string()
            } else if n >= fit {
                format!("ran out of {}", binding.map_or("capacity", |b| fleet.resources[b]))
            } else {
                continue;
            };
            *limits.entry(limit).or_insert(0) += 1;
        }
        limits
            .into_iter()
            .map(|(what, n)| format!("{n} used cluster{} {what}", if n == 1 { "" } else { "s" }))
            .collect()
    }

    /// The first hard constraint `counts` breaks, if any. `room[c]` bounds each cluster (its
    /// capacity for this workload, including what a kept decision holds).
    pub fn violation(&self, fleet: &Fleet<'_>, usage: &Usage, counts: &[(usize, u64)], room: &[u64]) -> Option<String> {
        let r = self.replicas();
        let rs = &self.w.replica_scheduling;
        for &(c, n) in counts {
            if n > fleet.fit(usage, c, &self.demand).0 || room.get(c).is_none_or(|&cap| n > cap) {
                return Some(format!("internal: {} would be overcommitted", fleet.clusters[c].name));
            }
            if self.divided()
                && (rs.min_replicas_per_cluster.is_some_and(|m| n < u64::from(m))
                    || rs.max_replicas_per_cluster.is_some_and(|m| n > u64::from(m)))
            {
                return Some(format!("internal: {} breaks the per-cluster replica bounds", fleet.clusters[c].name));
            }
            if !self.divided() && n != r {
                return Some("internal: a Duplicated decision lacks replicas".to_string());
            }
        }
        if self.w.number_of_clusters.is_some_and(|m| counts.len() > m as usize) {
            return Some("internal: too many clusters".to_string());
        }
        if self.divided() && counts.iter().map(|&(_, n)| n).sum::<u64>() > r {
            return Some("internal: more replicas than requested".to_string());
        }
        if counts.is_empty() {
            return None;
        }
        self.spread.violation(counts, self.skew_value())
    }

    /// Whether cluster `c`, which `counts` does not use, may join it: below `numberOfClusters`
    /// and within every spread constraint's `maxGroups`.
    pub fn may_open(&self, counts: &[(usize, u64)], c: usize) -> bool {
        self.w.number_of_clusters.is_none_or(|m| counts.len() < m as usize) && self.spread.may_join(counts, c)
    }

    /// For a placement that must start in several topology groups at once: under the first
    /// spread constraint with `minGroups` above 1, one cluster in each of `minGroups` groups,
    /// those with the most room (`room` per cluster) first, among `clusters`. Empty when they
    /// span fewer groups.
    pub fn group_targets(&self, clusters: impl Iterator<Item = usize>, room: impl Fn(usize) -> u64) -> Vec<usize> {
        let Some((k, m)) = self
            .spread
            .constraints
            .iter()
            .enumerate()
            .find_map(|(k, s)| s.min_groups.filter(|&m| m > 1).map(|m| (k, m as usize)))
        else {
            return Vec::new();
        };
        // Per group, its roomiest cluster (ties: the first).
        let mut best: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
        for c in clusters {
            let r = room(c);
            let e = best.entry(self.spread.group(k, c)).or_insert((r, c));
            if r > e.0 {
                *e = (r, c);
            }
        }
        best.remove(&u32::MAX);
        let mut picks: Vec<(u64, usize)> = best.into_values().collect();
        if picks.len() < m {
            return Vec::new();
        }
        picks.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        picks.into_iter().take(m).map(|(_, c)| c).collect()
    }

    /// Whether a placement needs clusters in several topology groups at once (a spread's
    /// `minGroups` above 1).
    pub fn needs_several_groups(&self) -> bool {
        self.w.spread_constraints.iter().any(|s| s.min_groups.is_some_and(|m| m > 1))
    }

    /// The spread constraint `counts` breaks, if any.
    pub fn spread_violation(&self, counts: &[(usize, u64)]) -> Option<String> {
        if counts.is_empty() { None } else { self.spread.violation(counts, self.skew_value()) }
    }

    /// Total preference points of a decision set (for `OnRecovery`): matched preference weights
    /// times the replicas on each cluster.
    fn preference_points(&self, fleet: &Fleet<'_>, counts: &[(usize, u64)]) -> i64 {
        counts
            .iter()
            .map(|&(c, n)| {
                let cluster = fleet.clusters[c];
                self.w
                    .preferences
                    .iter()
                    .filter(|p| {
                        p.label_selector.as_ref().is_none_or(|s| s.matches(&cluster.labels))
                            && p.location_selector.as_ref().is_none_or(|s| s.matches(cluster))
                    })
                    .map(|p| i64::from(p.weight))
                    .sum::<i64>()
                    .saturating_mul(i64::try_from(n).unwrap_or(i64::MAX))
            })
            .fold(0i64, i64::saturating_add)
    }

    /// Where the rebalance policy would move a complete kept decision: the placement the
    /// workload would get today, when it differs, fits and the policy prefers it. `None` to keep
    /// the current decisions.
    ///
    /// Today's placement is computed against `placed`, the usage of the workloads placed before
    /// this one in this solve (as a fresh greedy solve would see it), so an unchanged input never
    /// moves; the move must then fit `usage`, which also holds later workloads' kept decisions.
    pub fn rebalance_target(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        placed: &Usage,
        kept: &Kept,
    ) -> Option<Outcome> {
        let policy = self.w.rebalance.policy;
        if policy == RebalancePolicy::Never {
            return None;
        }
        // Today's placement as a new workload would get it: without the Steady bonus for where it is.
        let fresh = WorkloadCtx { previous: Counts::new(), ..self.clone() };
        let ideal = fresh.place_fresh(fleet, filters, placed);
        if !ideal.complete || ideal.counts == kept.counts {
            return None;
        }
        if ideal.counts.iter().any(|&(c, n)| n > fleet.fit(usage, c, &self.demand).0) {
            // Later workloads' kept replicas stand in the way; they are not displaced for this.
            return None;
        }
        let better = match policy {
            RebalancePolicy::Never => false,
            RebalancePolicy::Always => true,
            RebalancePolicy::OnRecovery => {
                ideal.term < kept.term
                    || self.preference_points(fleet, &ideal.counts) > self.preference_points(fleet, &kept.counts)
            }
        };
        better.then_some(ideal)
    }

    /// Rebalance of a complete kept decision: moves toward its [`WorkloadCtx::rebalance_target`]
    /// within `maxMovesPerRound` replica moves. Returns `None` to keep the current decisions.
    pub fn rebalance(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        usage: &Usage,
        placed: &Usage,
        kept: &Kept,
    ) -> Option<Outcome> {
        let ideal = self.rebalance_target(fleet, filters, usage, placed, kept)?;
        let moves = moves_between(&kept.counts, &ideal.counts);
        let budget = self.w.rebalance.max_moves_per_round.map_or(u64::MAX, u64::from);
        if moves <= budget {
            return Some(Outcome {
                events: vec![format!("rebalanced: {moves} replica{} moved", if moves == 1 { "" } else { "s" })],
                ..ideal
            });
        }
        if budget == 0 || ideal.term != kept.term {
            // Partial moves across affinity groups would mix groups; wait for a larger budget.
            return None;
        }
        // Partial move: take replicas off the clusters the ideal shrinks (least preferred
        // first) and add them where it grows (most preferred first).
        let mut counts = kept.counts.clone();
        let clusters: Vec<usize> = kept.counts.iter().chain(&ideal.counts).map(|&(c, _)| c).collect();
        let scores = self.scores(fleet, filters, usage, kept.term, &clusters);
        let score_of = |c: usize| clusters.iter().position(|&x| x == c).map_or(0, |i| scores[i]);
        let mut shrink: Vec<usize> =
            kept.counts.iter().filter(|&&(c, n)| count_of(&ideal.counts, c) < n).map(|&(c, _)| c).collect();
        shrink.sort_by(|a, b| score_of(*a).cmp(&score_of(*b)).then(b.cmp(a)));
        let mut grow: Vec<usize> =
            ideal.counts.iter().filter(|&&(c, n)| count_of(&kept.counts, c) < n).map(|&(c, _)| c).collect();
        grow.sort_by(|a, b| score_of(*b).cmp(&score_of(*a)).then(a.cmp(b)));
        let step = if self.divided() { 1 } else { self.replicas().max(1) };
        let mut moved = 0u64;
        'outer: for &to in &grow {
            while count_of(&counts, to) < count_of(&ideal.counts, to) {
                if moved + step > budget {
                    break 'outer;
                }
                let Some(&from) = shrink.iter().find(|&&c| count_of(&counts, c) > count_of(&ideal.counts, c)) else {
                    break 'outer;
                };
                let (f, t) = (count_of(&counts, from), count_of(&counts, to));
                set_count(&mut counts, from, f - step);
                set_count(&mut counts, to, t + step);
                moved += step;
            }
        }
        let min_per = self.min_per();
        let room: Vec<u64> = (0..fleet.clusters.len()).map(|c| fleet.fit(usage, c, &self.demand).0).collect();
        if moved == 0
            || counts.iter().any(|&(_, n)| n < min_per)
            || self.violation(fleet, usage, &counts, &room).is_some()
        {
            return None;
        }
        Some(Outcome {
            term: kept.term,
            counts,
            complete: true,
            events: vec![format!("rebalancing: {moved} of {moves} replica moves done this round")],
            rebalance_pending: moves - moved,
            ..Outcome::default()
        })
    }
}

/// The first `prefix` of `cands` by `scores` (parallel to it): highest score first, ties by
/// cluster index.
fn rank(scores: &[i64], cands: &[usize], prefix: usize) -> Vec<usize> {
    // One integer key per candidate (the score's order reversed in the high half, the cluster in
    // the low half) sorts fastest; 64-bit keys when scores and clusters fit in 32 bits each
    // (almost always), else 128-bit ones.
    let small = cands.iter().all(|&c| u32::try_from(c).is_ok()) && scores.iter().all(|&s| i32::try_from(s).is_ok());
    if small {
        let keys =
            scores.iter().zip(cands).map(|(&s, &c)| (u64::from(!((s as i32 as u32) ^ (1 << 31))) << 32) | c as u64);
        sorted_prefix(keys.collect(), prefix).into_iter().map(|k| (k as u32) as usize).collect()
    } else {
        let keys = scores.iter().zip(cands).map(|(&s, &c)| (u128::from(!((s as u64) ^ (1 << 63))) << 64) | c as u128);
        sorted_prefix(keys.collect(), prefix).into_iter().map(|k| (k as u64) as usize).collect()
    }
}

/// The `prefix` smallest of `keys`, sorted.
fn sorted_prefix<K: Ord>(mut keys: Vec<K>, prefix: usize) -> Vec<K> {
    if prefix < keys.len() {
        if prefix == 0 {
            keys.clear();
        } else {
            keys.select_nth_unstable(prefix - 1);
            keys.truncate(prefix);
        }
    }
    keys.sort_unstable();
    keys
}

/// Replicas that must start somewhere new to go from `from` to `to`.
pub(crate) fn moves_between(from: &[(usize, u64)], to: &[(usize, u64)]) -> u64 {
    to.iter().map(|&(c, n)| n.saturating_sub(count_of(from, c))).sum()
}

#[cfg(test)]
mod tests {
    use super::{NoRoom, NoRoomList};

    #[test]
    fn no_room_lists_store_each_set_of_short_resources_once() {
        let mut list = NoRoomList::default();
        list.push_short(3, [0, 2].into_iter());
        list.push(4, NoRoom::Kept);
        list.push_short(7, [0, 2].into_iter());
        list.push_short(9, [1].into_iter());
        list.push(11, NoRoom::ZeroWeight);
        assert_eq!(list.sets.len(), 2);
        assert_eq!(list.resources, [0, 2, 1]);
        let got: Vec<(usize, NoRoom)> = list.iter().collect();
        assert_eq!(
            got,
            [
                (3, NoRoom::Short(0)),
                (4, NoRoom::Kept),
                (7, NoRoom::Short(0)),
                (9, NoRoom::Short(1)),
                (11, NoRoom::ZeroWeight)
            ]
        );
        assert_eq!(list.short(Some(NoRoom::Short(0))), [0, 2]);
        assert_eq!(list.short(Some(NoRoom::Short(1))), [1]);
        assert_eq!(list.short(Some(NoRoom::Kept)), [] as [u32; 0]);
        assert_eq!(list.short(Some(NoRoom::Short(5))), [] as [u32; 0]);
        assert_eq!(list.short(None), [] as [u32; 0]);
    }
}
