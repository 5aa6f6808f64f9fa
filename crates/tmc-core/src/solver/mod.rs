//! The solver: compiles the input once, then places workloads in priority order under a shared
//! capacity ledger, so a batch never overcommits a cluster.
//!
//! Pipeline per workload (see `ARCHITECTURE.md`):
//! 1. **filter** ([`filter`]): capacity-independent hard checks per cluster and affinity group;
//! 2. **fit** ([`fleet`]): how many replicas still fit on each cluster, given the batch so far;
//! 3. **score** ([`score`]): preferences and prioritizers order the feasible clusters;
//! 4. **select** ([`spread`]): choose clusters honouring `numberOfClusters` and spread group bounds;
//! 5. **divide** ([`divide`]): split replicas (Weighted, Dynamic, Aggregated), then repair skew;
//! 6. **verify**: the decision set is checked against every hard constraint before it is committed.
//!
//! Stability: previous decisions that are still valid are kept first (in priority order), so an
//! unchanged input re-solved moves nothing; only the remaining work is placed afresh.

mod divide;
mod filter;
mod fleet;
mod score;
mod spread;

use std::collections::BTreeMap;

use filter::{Admission, Check};
use fleet::{Demand, Fleet, Usage};
use spread::{Spread, select};

use crate::{
    ClusterAffinity, ClusterRejection, Decision, Division, Phase, Placement, PlacementInput, Plan, Reason,
    ReplicaSchedulingType, ValidationErrors, Workload, explain, validate::validate,
};

/// Validates `input` and places every workload. The same input always gives the same plan,
/// whatever the order of clusters and workloads in it.
pub fn solve(input: &PlacementInput) -> Result<Plan, ValidationErrors> {
    validate(input)?;
    Ok(solve_validated(input))
}

/// Places every workload of an input that [`crate::validate()`] accepted. Invalid input does not
/// panic, but the result is unspecified.
pub fn solve_validated(input: &PlacementInput) -> Plan {
    let fleet = Fleet::compile(input);
    let mut usage = fleet.empty_usage();
    let mut order: Vec<&Workload> = input.workloads.iter().collect();
    order.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key().cmp(&b.key())));
    let previous: BTreeMap<_, _> = input.previous.iter().map(|p| (p.workload.clone(), p)).collect();
    let mut contexts: Vec<WorkloadCtx<'_>> =
        order.iter().map(|w| WorkloadCtx::new(w, &fleet, previous.get(&w.key()).copied(), input.now)).collect();

    // Stage A: keep valid previous decisions, highest priority first.
    let mut kept: Vec<Option<Kept>> = Vec::with_capacity(contexts.len());
    for wc in &contexts {
        let k = wc.keep(&fleet, &usage);
        if let Some(k) = &k {
            usage.add(&k.counts, &wc.demand);
        }
        kept.push(k);
    }

    // Stage B: complete partial keeps and place everything else, highest priority first.
    let mut placements = Vec::with_capacity(contexts.len());
    for (wc, kept) in contexts.iter_mut().zip(kept) {
        // A kept decision is already in `usage`; take it out so the outcome is added exactly once.
        if let Some(k) = &kept {
            usage.remove(&k.counts, &wc.demand);
        }
        let outcome = match kept {
            Some(k) if k.complete => Outcome::kept(k),
            Some(k) => {
                let extended = wc.attempt(&fleet, &usage, k.term, &k.counts);
                let grows = k.counts.iter().all(|(c, n)| extended.counts.get(c).is_some_and(|m| m >= n));
                if grows { extended } else { Outcome { counts: k.counts, ..extended } }
            }
            None => wc.place_fresh(&fleet, &usage),
        };
        usage.add(&outcome.counts, &wc.demand);
        placements.push(wc.finish(&fleet, outcome));
    }
    placements.sort_by(|a, b| a.workload.cmp(&b.workload));
    Plan { placements }
}

/// Previous decisions accepted in stage A.
struct Kept {
    term: usize,
    counts: BTreeMap<usize, u64>,
    complete: bool,
}

/// The result of placing one workload under one affinity group.
struct Outcome {
    term: usize,
    counts: BTreeMap<usize, u64>,
    complete: bool,
    /// Clusters that could take nothing, with every reason.
    rejections: BTreeMap<usize, Vec<Reason>>,
    /// Clusters that passed every filter and had room.
    available: usize,
    /// Constraint shortfalls, as sentences.
    notes: Vec<String>,
    /// True when this outcome came from several affinity groups and none was complete.
    fell_back: bool,
}

impl Outcome {
    fn kept(k: Kept) -> Self {
        Outcome {
            term: k.term,
            counts: k.counts,
            complete: k.complete,
            rejections: BTreeMap::new(),
            available: 0,
            notes: Vec::new(),
            fell_back: false,
        }
    }

    fn placed(&self, w: &Workload) -> u64 {
        self.counts.values().sum::<u64>().min(match w.replica_scheduling.kind {
            ReplicaSchedulingType::Divided => u64::from(w.replicas),
            ReplicaSchedulingType::Duplicated => u64::MAX,
        })
    }
}

/// Everything about one workload that does not change while the batch is placed.
struct WorkloadCtx<'a> {
    w: &'a Workload,
    demand: Demand,
    terms: Vec<Option<&'a ClusterAffinity>>,
    /// `checks[term][cluster]`.
    checks: Vec<Vec<Check>>,
    spread: Spread<'a>,
    /// Previous replicas per cluster index (clusters that no longer exist are dropped).
    previous: BTreeMap<usize, u64>,
    /// The previous decisions named a cluster that no longer exists.
    previous_lost: bool,
    previous_group: Option<&'a str>,
    has_previous: bool,
}

impl<'a> WorkloadCtx<'a> {
    fn new(w: &'a Workload, fleet: &Fleet<'a>, prev: Option<&'a Placement>, now: Option<i64>) -> Self {
        let terms: Vec<Option<&ClusterAffinity>> = if w.cluster_affinities.is_empty() {
            vec![w.cluster_affinity.as_ref()]
        } else {
            w.cluster_affinities.iter().map(Some).collect()
        };
        let checks =
            terms.iter().map(|t| fleet.clusters.iter().map(|c| filter::check(w, *t, c, now)).collect()).collect();
        let mut previous = BTreeMap::new();
        let mut previous_lost = false;
        for d in prev.map(|p| p.decisions.as_slice()).unwrap_or_default() {
            match fleet.by_name.get(d.cluster.as_str()) {
                Some(&c) => {
                    previous.insert(c, u64::from(d.replicas));
                }
                None => previous_lost = true,
            }
        }
        WorkloadCtx {
            w,
            demand: fleet.demand(w),
            terms,
            checks,
            spread: Spread::new(w, fleet),
            previous,
            previous_lost,
            previous_group: prev.and_then(|p| p.affinity_group.as_deref()),
            has_previous: prev.is_some_and(|p| !p.decisions.is_empty()),
        }
    }

    fn replicas(&self) -> u64 {
        u64::from(self.w.replicas)
    }

    fn divided(&self) -> bool {
        self.w.replica_scheduling.kind == ReplicaSchedulingType::Divided
    }

    /// Static weight of cluster `c` for Weighted division: the first matching entry, else 0;
    /// equal weights when no entry is given.
    fn static_weight(&self, fleet: &Fleet<'_>, c: usize) -> u64 {
        let weights = &self.w.replica_scheduling.weights;
        if weights.is_empty() {
            return 1;
        }
        let cluster = fleet.clusters[c];
        weights
            .iter()
            .find(|e| {
                e.cluster_names.contains(&cluster.name)
                    || e.label_selector.as_ref().is_some_and(|s| s.matches(&cluster.labels))
            })
            .map_or(0, |e| u64::from(e.weight))
    }

    fn uses_static_weights(&self) -> bool {
        self.divided() && self.w.replica_scheduling.division == Division::Weighted
    }

    /// Stage A: the previous decisions, if they still satisfy every hard constraint and fit.
    fn keep(&self, fleet: &Fleet<'_>, usage: &Usage) -> Option<Kept> {
        if !self.has_previous || self.previous_lost {
            return None;
        }
        let term = match self.previous_group {
            Some(name) => self.terms.iter().position(|t| t.and_then(|t| t.name.as_deref()) == Some(name))?,
            None => (0..self.terms.len())
                .find(|&t| self.previous.keys().all(|&c| self.checks[t][c].admission != Admission::Closed))?,
        };
        let r = self.replicas();
        let rs = &self.w.replica_scheduling;
        for (&c, &n) in &self.previous {
            if self.checks[term][c].admission == Admission::Closed || fleet.fit(usage, c, &self.demand).0 < n {
                return None;
            }
            if self.divided() {
                if rs.min_replicas_per_cluster.is_some_and(|m| n < u64::from(m))
                    || rs.max_replicas_per_cluster.is_some_and(|m| n > u64::from(m))
                    || (self.uses_static_weights() && self.static_weight(fleet, c) == 0)
                {
                    return None;
                }
            } else if n != r {
                return None;
            }
        }
        let clusters = self.previous.len() as u64;
        if self.w.number_of_clusters.is_some_and(|n| clusters > u64::from(n)) {
            return None;
        }
        let sum: u64 = self.previous.values().sum();
        if self.divided() && sum > r {
            return None;
        }
        if self.spread.violation(&self.previous, self.skew_value()).is_some() {
            return None;
        }
        let complete = if self.divided() {
            sum == r
        } else {
            // Duplicated without numberOfClusters means "all feasible": look for new clusters.
            self.w.number_of_clusters.is_some_and(|n| clusters == u64::from(n))
        };
        Some(Kept { term, counts: self.previous.clone(), complete })
    }

    fn skew_value(&self) -> fn(u64) -> u64 {
        if self.divided() { |n| n } else { |_| 1 }
    }

    /// Tries each affinity group in order; the first that holds the whole request wins, else the
    /// group that placed the most (the earliest on ties).
    fn place_fresh(&self, fleet: &Fleet<'_>, usage: &Usage) -> Outcome {
        let none = BTreeMap::new();
        let mut best: Option<Outcome> = None;
        for term in 0..self.terms.len() {
            let o = self.attempt(fleet, usage, term, &none);
            if o.complete {
                return o;
            }
            if best.as_ref().is_none_or(|b| o.placed(self.w) > b.placed(self.w)) {
                best = Some(o);
            }
        }
        let mut best = best.unwrap_or_else(|| self.attempt(fleet, usage, 0, &none));
        best.fell_back = self.terms.len() > 1;
        best
    }

    /// Places the workload under affinity group `term`, keeping at least `floor` replicas on the
    /// clusters it names (the kept part of a previous decision, not counted in `usage`).
    fn attempt(&self, fleet: &Fleet<'_>, usage: &Usage, term: usize, floor: &BTreeMap<usize, u64>) -> Outcome {
        let w = self.w;
        let r = self.replicas();
        let rs = &w.replica_scheduling;
        let min_per = u64::from(rs.min_replicas_per_cluster.unwrap_or(0));
        let max_per = rs.max_replicas_per_cluster.map_or(u64::MAX, u64::from);
        let need = if self.divided() { min_per.max(1) } else { r.max(1) };
        let mut rejections: BTreeMap<usize, Vec<Reason>> = BTreeMap::new();
        let mut cands: Vec<usize> = Vec::new();
        let mut raw: BTreeMap<usize, u64> = BTreeMap::new();
        let mut weight: BTreeMap<usize, u64> = BTreeMap::new();
        for (c, check) in self.checks[term].iter().enumerate() {
            let keep_cap = match check.admission {
                Admission::Open => u64::MAX,
                Admission::KeepOnly => self.previous.get(&c).copied().unwrap_or(0),
                Admission::Closed => 0,
            };
            if keep_cap == 0 {
                rejections.insert(c, check.reasons.clone());
                continue;
            }
            let (fit, binding) = fleet.fit(usage, c, &self.demand);
            // `usage` excludes the floor, so `fit` already counts the room the kept replicas use.
            let kept_here = floor.get(&c).copied().unwrap_or(0);
            let cap = fit.min(keep_cap);
            if cap < need && kept_here == 0 {
                let mut reasons = check.reasons.clone();
                if fit < need {
                    // Name every resource that falls short, as kube-scheduler does.
                    let short = fleet.short_resources(usage, c, &self.demand, need);
                    let short = if short.is_empty() { binding.into_iter().collect() } else { short };
                    reasons.extend(
                        short.into_iter().map(|r| Reason::Insufficient { resource: fleet.resources[r].to_string() }),
                    );
                }
                rejections.insert(c, reasons);
                continue;
            }
            if self.uses_static_weights() {
                let wt = self.static_weight(fleet, c);
                if wt == 0 {
                    rejections.insert(c, vec![Reason::ZeroWeight]);
                    continue;
                }
                weight.insert(c, wt);
            }
            cands.push(c);
            raw.insert(c, cap);
        }
        let available = cands.len();
        let scores = score::score(w, fleet, usage, &self.demand, &cands, &self.previous, |c| {
            self.checks[term][c].prefer_no_schedule
        });
        let mut rank: Vec<(i64, usize)> = cands.iter().zip(&scores).map(|(&c, &s)| (s, c)).collect();
        rank.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let ranked: Vec<usize> = rank.iter().map(|&(_, c)| c).collect();
        let mut notes = Vec::new();
        let limit = w.number_of_clusters.map_or(usize::MAX, |n| n as usize);
        let initial: Vec<usize> = floor.iter().filter(|(_, n)| **n > 0).map(|(c, _)| *c).collect();

        let counts: BTreeMap<usize, u64> = if r == 0 {
            BTreeMap::new()
        } else if !self.divided() {
            let sel = select(&ranked, &self.spread, limit, &initial, true, |_| false);
            if sel.shortfalls.is_empty() {
                sel.chosen.iter().map(|&c| (c, r)).collect()
            } else {
                notes.extend(sel.shortfalls);
                BTreeMap::new()
            }
        } else {
            let caps: BTreeMap<usize, u64> = raw.iter().map(|(&c, &n)| (c, n.min(max_per).min(r))).collect();
            let aggregated = rs.division == Division::Aggregated;
            let order: Vec<usize> = if aggregated {
                let mut o = ranked.clone();
                // Fewest clusters: largest capacity first (stable, so score then name break ties).
                o.sort_by(|a, b| caps[b].cmp(&caps[a]));
                o
            } else {
                ranked.clone()
            };
            let limit = limit.min(usize::try_from(r / min_per.max(1)).unwrap_or(usize::MAX)).max(initial.len());
            let covered = |chosen: &[usize]| aggregated && chosen.iter().map(|c| caps[c]).sum::<u64>() >= r;
            let sel = select(&order, &self.spread, limit, &initial, false, covered);
            if !sel.shortfalls.is_empty() {
                notes.extend(sel.shortfalls);
                BTreeMap::new()
            } else {
                let mut chosen = sel.chosen;
                let floor_of = |c: usize| {
                    let f = floor.get(&c).copied().unwrap_or(0).max(min_per);
                    if sel.reps.contains(&c) { f.max(1) } else { f }
                };
                // Drop the least preferred optional clusters until the floors fit in the request.
                while chosen.iter().map(|&c| floor_of(c)).sum::<u64>() > r {
                    match chosen.iter().rposition(|c| !sel.reps.contains(c) && !floor.contains_key(c)) {
                        Some(i) => {
                            chosen.remove(i);
                        }
                        None => break,
                    }
                }
                if chosen.iter().map(|&c| floor_of(c)).sum::<u64>() > r {
                    notes.push(format!("{r} replicas cannot give every required cluster its minimum"));
                    BTreeMap::new()
                } else {
                    let mins: Vec<u64> = chosen.iter().map(|&c| floor_of(c)).collect();
                    let slot_caps: Vec<u64> = chosen.iter().map(|c| caps[c]).collect();
                    let split = match rs.division {
                        Division::Aggregated => divide::fill_in_order(r, &slot_caps, &mins),
                        Division::Weighted => {
                            let ws: Vec<u64> = chosen.iter().map(|c| weight[c]).collect();
                            divide::apportion(r, &ws, &slot_caps, &mins)
                        }
                        Division::Dynamic => {
                            let ws: Vec<u64> = chosen.iter().map(|c| raw[c].min(max_per)).collect();
                            divide::apportion(r, &ws, &slot_caps, &mins)
                        }
                    };
                    let mut counts: BTreeMap<usize, u64> =
                        chosen.iter().zip(split).filter(|(_, n)| *n > 0).map(|(&c, n)| (c, n)).collect();
                    self.repair_skew(&mut counts, &caps, &ranked, limit, floor, min_per);
                    counts
                }
            }
        };
        // Safety net: never commit a decision set that breaks a hard constraint.
        let counts = match self.violation(fleet, usage, &counts, &raw) {
            None => counts,
            Some(v) => {
                notes.push(v);
                BTreeMap::new()
            }
        };
        let placed: u64 = counts.values().sum();
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
        for &c in &cands {
            if !counts.contains_key(&c) {
                rejections.insert(c, vec![Reason::NotSelected]);
            }
        }
        Outcome { term, counts, complete, rejections, available, notes, fell_back: false }
    }

    /// Moves replicas from the largest to the smallest group of a skew-violating constraint;
    /// where no cluster can receive, trims the largest group (placing less, never violating).
    fn repair_skew(
        &self,
        counts: &mut BTreeMap<usize, u64>,
        caps: &BTreeMap<usize, u64>,
        ranked: &[usize],
        limit: usize,
        floor: &BTreeMap<usize, u64>,
        min_per: u64,
    ) {
        if self.spread.constraints.iter().all(|s| s.max_skew.is_none()) {
            return;
        }
        let r = self.replicas();
        let mut moves_left = 4 * (r + 1) * (self.spread.constraints.len() as u64 + 1);
        let floor_of = |c: usize| floor.get(&c).copied().unwrap_or(0).max(min_per);
        loop {
            let violated = self.spread.constraints.iter().enumerate().find_map(|(k, s)| {
                let skew = u64::from(s.max_skew?);
                let sums = self.spread.group_sums(k, counts, |n| n);
                let (&gmax, &hi) = sums.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
                let (&gmin, &lo) = sums.iter().min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))?;
                (hi - lo > skew).then_some((k, gmax, gmin))
            });
            let Some((k, gmax, gmin)) = violated else { return };
            let in_group = |c: usize, g: u32| self.spread.group(k, c) == g;
            let donor = ranked
                .iter()
                .rev()
                .copied()
                .find(|&c| in_group(c, gmax) && counts.get(&c).is_some_and(|&n| n > floor_of(c)));
            let receiver = ranked.iter().copied().find(|&c| {
                in_group(c, gmin)
                    && match counts.get(&c) {
                        Some(&n) => n < caps[&c],
                        None => counts.len() < limit && min_per <= 1 && caps[&c] > 0,
                    }
            });
            match (donor, receiver) {
                (Some(d), Some(rc)) if moves_left > 0 => {
                    moves_left -= 1;
                    *counts.entry(d).or_insert(0) -= 1;
                    *counts.entry(rc).or_insert(0) += 1;
                    if counts[&d] == 0 {
                        counts.remove(&d);
                    }
                }
                _ => {
                    // Trim the least preferred cluster of the largest group that is above its floor.
                    let victim = ranked.iter().rev().copied().find(|&c| {
                        in_group(c, gmax) && counts.get(&c).is_some_and(|&n| n > floor.get(&c).copied().unwrap_or(0))
                    });
                    let Some(v) = victim else { return };
                    let n = counts[&v];
                    let base = floor.get(&v).copied().unwrap_or(0);
                    let next = if n - 1 < min_per { base } else { n - 1 };
                    if next == 0 {
                        counts.remove(&v);
                    } else {
                        counts.insert(v, next);
                    }
                }
            }
        }
    }

    /// Why the used clusters could take no more: the resource that ran out on each, or the
    /// per-cluster maximum, summarised as sentences.
    fn exhaustion(&self, fleet: &Fleet<'_>, usage: &Usage, counts: &BTreeMap<usize, u64>, max_per: u64) -> Vec<String> {
        let mut limits: BTreeMap<String, usize> = BTreeMap::new();
        for (&c, &n) in counts {
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

    /// The first hard constraint `counts` breaks, if any.
    fn violation(
        &self,
        fleet: &Fleet<'_>,
        usage: &Usage,
        counts: &BTreeMap<usize, u64>,
        caps: &BTreeMap<usize, u64>,
    ) -> Option<String> {
        let r = self.replicas();
        let rs = &self.w.replica_scheduling;
        for (&c, &n) in counts {
            let room = fleet.fit(usage, c, &self.demand).0;
            if n > room || caps.get(&c).is_none_or(|&cap| n > cap) {
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
        if self.divided() && counts.values().sum::<u64>() > r {
            return Some("internal: more replicas than requested".to_string());
        }
        if counts.is_empty() {
            return None;
        }
        self.spread.violation(counts, self.skew_value())
    }

    /// Turns an outcome into the public [`Placement`].
    fn finish(&self, fleet: &Fleet<'_>, o: Outcome) -> Placement {
        let r = self.w.replicas;
        let placed = o.placed(self.w);
        let phase = if o.complete {
            Phase::Scheduled
        } else if o.counts.is_empty() {
            Phase::Unschedulable
        } else {
            Phase::PartiallyScheduled
        };
        let decisions = o
            .counts
            .iter()
            .map(|(&c, &n)| Decision {
                cluster: fleet.clusters[c].name.clone(),
                replicas: u32::try_from(n).unwrap_or(u32::MAX),
            })
            .collect();
        let affinity_group =
            if self.w.cluster_affinities.is_empty() { None } else { self.terms[o.term].and_then(|t| t.name.clone()) };
        let (message, unavailable) = if o.complete {
            (String::new(), Vec::new())
        } else {
            let message = explain::message(&explain::Summary {
                total: fleet.clusters.len(),
                available: o.available,
                reasons: o.rejections.values().map(Vec::as_slice),
                notes: &o.notes,
                divided: self.divided(),
                requested: u64::from(r),
                placed,
                fallback_group: o.fell_back.then(|| affinity_group.clone()).flatten(),
            });
            let unavailable = o
                .rejections
                .into_iter()
                .map(|(c, reasons)| ClusterRejection { cluster: fleet.clusters[c].name.clone(), reasons })
                .collect();
            (message, unavailable)
        };
        Placement {
            workload: self.w.key(),
            phase,
            decisions,
            replica_scheduling_type: self.w.replica_scheduling.kind,
            requested: r,
            placed,
            affinity_group,
            message,
            unavailable,
        }
    }
}
