//! The incremental placer: a long-lived fleet state and its plan, changed one workload or cluster
//! at a time.
//!
//! Every change gives the plan a full re-plan of the new state would give, with the current plan
//! as the previous decisions (`solve` of `clusters`, `workloads`, `previous = plan`, `now`). When
//! the state is *settled* — every other workload fully placed, kept whole on re-plan (Divided: all
//! replicas; Duplicated: `numberOfClusters` copies) and not rebalancing — a re-plan keeps every
//! other workload exactly where it is, so only the changed workload is placed, against the
//! capacity the others use ([`Update::Incremental`]). Otherwise (cluster changes, preemption,
//! workloads waiting for capacity a change may free) the placer re-plans in full
//! ([`Update::Full`]).
//!
//! The certificate after an incremental update: `objective` is exact; `bound` is the previous
//! bound plus the most the changed workload can add, still an upper bound on the optimum but
//! looser than a full re-plan's. [`Placer::replan`] recomputes it.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    extend,
    filter::Filters,
    finish,
    fleet::{Counts, Fleet},
    place::{Outcome, WorkloadCtx},
};
use crate::{
    Cluster, Phase, Placement, PlacementInput, Plan, Preemption, RebalancePolicy, ReplicaSchedulingType,
    ValidationErrors, Workload, WorkloadKey, solve, validate::validate_workload,
};

/// How a change was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Only the changed workload was placed; every other placement stayed as it was.
    Incremental,
    /// The whole state was re-planned.
    Full,
}

/// A fleet, its workloads and their current plan, kept up to date change by change.
#[derive(Clone, Debug)]
pub struct Placer {
    clusters: Vec<Cluster>,
    workloads: Vec<Workload>,
    /// Key to index in `workloads`.
    index: BTreeMap<WorkloadKey, usize>,
    now: Option<i64>,
    plan: Plan,
    /// Workloads a re-plan could change even when nothing about them changes.
    unsettled: BTreeSet<WorkloadKey>,
    /// How many workloads have each priority (the lowest one sets the objective's weights).
    priorities: BTreeMap<i32, usize>,
}

impl Placer {
    /// Validates `input` and places it in full; `input.previous` seeds the first plan.
    pub fn new(input: PlacementInput) -> Result<Self, ValidationErrors> {
        let plan = solve(&input)?;
        let PlacementInput { clusters, workloads, now, .. } = input;
        let mut placer = Placer {
            clusters,
            workloads,
            index: BTreeMap::new(),
            now,
            plan,
            unsettled: BTreeSet::new(),
            priorities: BTreeMap::new(),
        };
        placer.reindex();
        Ok(placer)
    }

    /// The current plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The current state as a solver input, with the current plan as the previous decisions: the
    /// input a full re-plan solves.
    pub fn input(&self) -> PlacementInput {
        PlacementInput {
            clusters: self.clusters.clone(),
            workloads: self.workloads.clone(),
            previous: self.plan.placements.clone(),
            now: self.now,
        }
    }

    /// Adds a workload or replaces the one with the same key, and re-plans what it affects.
    pub fn upsert_workload(&mut self, workload: Workload) -> Result<Update, ValidationErrors> {
        validate_workload(&workload)?;
        let key = workload.key();
        let old = self.index.get(&key).map(|&i| self.workloads[i].clone());
        match old {
            Some(_) => {
                let i = self.index[&key];
                self.workloads[i] = workload;
            }
            None => {
                self.index.insert(key.clone(), self.workloads.len());
                self.workloads.push(workload);
            }
        }
        let lowest_before = self.lowest();
        if let Some(o) = &old {
            self.count_priority(o.priority, false);
        }
        self.count_priority(self.workloads[self.index[&key]].priority, true);
        let fast = self.others_settled(&key) && self.lowest() == lowest_before;
        if fast && self.place_one(&key, old.as_ref()) {
            return Ok(Update::Incremental);
        }
        self.replan();
        Ok(Update::Full)
    }

    /// Removes a workload (its replicas are released) and re-plans what that affects. `None` when
    /// there is no such workload.
    pub fn remove_workload(&mut self, key: &WorkloadKey) -> Option<Update> {
        let i = self.index.remove(key)?;
        let lowest_before = self.lowest();
        let old = self.workloads.swap_remove(i);
        if let Some(moved) = self.workloads.get(i) {
            self.index.insert(moved.key(), i);
        }
        self.count_priority(old.priority, false);
        let at = self.plan.placements.binary_search_by(|p| p.workload.cmp(key));
        if self.others_settled(key) && self.lowest() == lowest_before {
            if let Ok(at) = at {
                let gone = self.plan.placements.remove(at);
                self.plan.objective -= self.value(old.priority) * gone.placed as f64;
                self.certify_gap();
            }
            self.unsettled.remove(key);
            return Some(Update::Incremental);
        }
        self.replan();
        Some(Update::Full)
    }

    /// Adds a cluster or replaces the one with the same name, and re-plans.
    pub fn upsert_cluster(&mut self, cluster: Cluster) -> Result<Update, ValidationErrors> {
        let mut clusters = self.clusters.clone();
        match clusters.iter_mut().find(|c| c.name == cluster.name) {
            Some(c) => *c = cluster,
            None => clusters.push(cluster),
        }
        let input = PlacementInput {
            clusters,
            workloads: self.workloads.clone(),
            previous: self.plan.placements.clone(),
            now: self.now,
        };
        self.plan = solve(&input)?;
        self.clusters = input.clusters;
        self.reindex();
        Ok(Update::Full)
    }

    /// Removes a cluster (its replicas are re-placed) and re-plans. `None` when there is no such
    /// cluster.
    pub fn remove_cluster(&mut self, name: &str) -> Option<Update> {
        let i = self.clusters.iter().position(|c| c.name == name)?;
        self.clusters.remove(i);
        self.replan();
        Some(Update::Full)
    }

    /// Moves the clock (taint grace periods, not-ready timers) and re-plans.
    pub fn set_now(&mut self, now: Option<i64>) -> Update {
        self.now = now;
        self.replan();
        Update::Full
    }

    /// Re-plans the whole state with the current plan as the previous decisions, which also
    /// recomputes the certificate's bound.
    pub fn replan(&mut self) {
        let mut input = self.input();
        // Previous decisions of workloads that no longer exist are dropped.
        input.previous.retain(|p| self.index.contains_key(&p.workload));
        // The state only ever holds valid clusters and workloads with unique keys.
        self.plan = super::solve_validated(&input);
        self.reindex();
    }

    /// Rebuilds the derived indexes from `workloads` and `plan`.
    fn reindex(&mut self) {
        self.index = self.workloads.iter().enumerate().map(|(i, w)| (w.key(), i)).collect();
        self.priorities.clear();
        for w in &self.workloads {
            *self.priorities.entry(w.priority).or_default() += 1;
        }
        self.unsettled = self
            .plan
            .placements
            .iter()
            .filter(|p| self.index.get(&p.workload).is_none_or(|&i| !settled(&self.workloads[i], p)))
            .map(|p| p.workload.clone())
            .collect();
    }

    fn count_priority(&mut self, priority: i32, add: bool) {
        let n = self.priorities.entry(priority).or_default();
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.priorities.remove(&priority);
            }
        }
    }

    fn lowest(&self) -> i32 {
        self.priorities.keys().next().copied().unwrap_or(0)
    }

    /// The objective's value of one replica at `priority` (see the certificate).
    fn value(&self, priority: i32) -> f64 {
        1.0 + (f64::from(priority) - f64::from(self.lowest()))
    }

    fn others_settled(&self, key: &WorkloadKey) -> bool {
        self.unsettled.iter().all(|k| k == key)
    }

    fn certify_gap(&mut self) {
        let plan = &mut self.plan;
        plan.bound = plan.bound.max(plan.objective);
        plan.gap = if plan.bound > 0.0 { (plan.bound - plan.objective) / plan.bound } else { 0.0 };
    }

    /// Places the workload `key` against every other workload's replicas, as stage A and B of a
    /// full re-plan would in a settled state. Returns false (and changes nothing) when the result
    /// could differ from a full re-plan.
    fn place_one(&mut self, key: &WorkloadKey, old: Option<&Workload>) -> bool {
        let input = PlacementInput {
            clusters: std::mem::take(&mut self.clusters),
            workloads: std::mem::take(&mut self.workloads),
            previous: Vec::new(),
            now: self.now,
        };
        let placed = self.place_one_in(&input, key, old);
        self.clusters = input.clusters;
        self.workloads = input.workloads;
        let Some((placement, w_priority, w_max)) = placed else { return false };
        let value = self.value(w_priority);
        let old_placed = self.plan.get(key).map_or(0, |p| p.placed);
        let old_value = old.map_or(0.0, |o| self.value(o.priority));
        self.plan.objective += value * placement.placed as f64 - old_value * old_placed as f64;
        // Without the changed workload the optimum is at most the old bound; it adds at most
        // `w_max` replicas.
        self.plan.bound += value * w_max as f64;
        if settled(&self.workloads[self.index[key]], &placement) {
            self.unsettled.remove(key);
        } else {
            self.unsettled.insert(key.clone());
        }
        match self.plan.placements.binary_search_by(|p| p.workload.cmp(key)) {
            Ok(at) => self.plan.placements[at] = placement,
            Err(at) => self.plan.placements.insert(at, placement),
        }
        self.certify_gap();
        true
    }

    fn place_one_in(
        &self,
        input: &PlacementInput,
        key: &WorkloadKey,
        old: Option<&Workload>,
    ) -> Option<(Placement, i32, u64)> {
        let w = &input.workloads[*self.index.get(key)?];
        if w.rebalance.policy != RebalancePolicy::Never {
            return None;
        }
        let fleet = Fleet::compile(input);
        let filters = Filters::compile(&[w], &fleet.clusters, input.now);
        let previous = self.plan.get(key);
        let wc = WorkloadCtx::new(w, &fleet, &filters, previous);
        // Placement order: priority, then key. Stage A keeps the workloads before `w` first.
        let w_rank = (std::cmp::Reverse(w.priority), key);
        let mut before = fleet.empty_usage();
        let mut after: Vec<(Counts, super::fleet::Demand)> = Vec::new();
        for p in &self.plan.placements {
            if &p.workload == key {
                continue;
            }
            let u = &input.workloads[*self.index.get(&p.workload)?];
            let mut counts: Counts = Vec::with_capacity(p.decisions.len());
            for d in &p.decisions {
                counts.push((*fleet.by_name.get(d.cluster.as_str())?, u64::from(d.replicas)));
            }
            counts.sort_unstable();
            let demand = fleet.demand(u);
            if (std::cmp::Reverse(u.priority), &p.workload) < w_rank {
                fleet.add(&mut before, &counts, &demand);
            } else {
                after.push((counts, demand));
            }
        }
        let kept = wc.keep(&fleet, &filters, &before);
        // Later workloads keep everything in a re-plan only if `w` keeps no more than it had.
        if let Some(k) = &kept {
            let old_w = old?;
            let old_demand = fleet.demand(old_w);
            let old_counts = &wc.previous;
            for &(c, n) in &k.counts {
                let had = super::place::count_of(old_counts, c);
                for &(r, q) in &wc.demand.0 {
                    let old_q = old_demand.0.iter().find(|&&(x, _)| x == r).map_or(0, |&(_, q)| q);
                    if q.saturating_mul(u128::from(n)) > old_q.saturating_mul(u128::from(had)) {
                        return None;
                    }
                }
            }
        }
        let mut usage = before;
        for (counts, demand) in &after {
            fleet.add(&mut usage, counts, demand);
        }
        let outcome: Outcome = match kept {
            Some(k) if k.complete => Outcome::kept(k),
            Some(k) => extend(&wc, &fleet, &filters, &usage, k),
            None => wc.place_fresh(&fleet, &filters, &usage),
        };
        if !outcome.complete && w.preemption == Preemption::PreemptLowerPriority {
            return None;
        }
        let r = u64::from(w.replicas);
        let most = match w.replica_scheduling.kind {
            ReplicaSchedulingType::Divided => r,
            ReplicaSchedulingType::Duplicated => {
                r * w.number_of_clusters.map_or(fleet.clusters.len() as u64, u64::from).min(fleet.clusters.len() as u64)
            }
        };
        Some((finish(&wc, &fleet, &filters, outcome), w.priority, most))
    }
}

/// Whether a re-plan keeps `p` exactly as it is when nothing about `w` changes: fully placed, kept
/// whole by stage A, not rebalancing, and without events a re-plan would drop.
fn settled(w: &Workload, p: &Placement) -> bool {
    let complete = match w.replica_scheduling.kind {
        ReplicaSchedulingType::Divided => p.phase == Phase::Scheduled,
        ReplicaSchedulingType::Duplicated => {
            w.replicas == 0
                || w.number_of_clusters.is_some_and(|n| p.decisions.len() == n as usize)
                    && p.decisions.iter().all(|d| d.replicas == w.replicas)
        }
    };
    complete && w.rebalance.policy == RebalancePolicy::Never && p.rebalance_pending == 0 && p.message.is_empty()
}
