//! The incremental placer: a long-lived fleet state and its plan, changed one workload or cluster
//! at a time.
//!
//! Every change gives the plan a full re-plan of the new state would give, with the current plan
//! as the previous decisions (`solve` of `clusters`, `workloads`, `previous = plan`, `now`).
//!
//! A workload is *settled* when a re-plan keeps it exactly as it is: fully placed, kept whole by
//! stage A (Divided: all replicas; Duplicated: `numberOfClusters` copies) and not rebalancing.
//! A change to workload `w` is placed incrementally ([`Update::Incremental`]: only `w` is
//! placed, against the capacity the others use, from a ledger kept up to date) when every other
//! workload is settled, or when the plan is a fixed point of re-planning and no unsettled
//! workload admits a cluster whose usage the change alters (their view is then unchanged). It
//! also needs `w` not to keep more than it had, not to preempt or rebalance, and the lowest
//! priority (the objective's weights) to stay. Otherwise, and for every cluster change, the
//! placer re-plans in full ([`Update::Full`]). In a contended fleet pending workloads usually
//! admit most clusters, so most changes there are full re-plans: freed capacity must go to them.
//!
//! The certificate after an incremental update: `objective` is exact; `bound` is the previous
//! bound plus the most the changed workload can add, still an upper bound on the optimum but
//! looser than a full re-plan's. [`Placer::replan`] recomputes it.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
};

use super::{
    extend,
    filter::Filters,
    finish,
    fleet::{ClusterTable, Fleet, Usage},
    place::{Outcome, WorkloadCtx},
};
use crate::{
    Cluster, Phase, Placement, PlacementInput, Plan, Preemption, Quantity, RebalancePolicy, ReplicaSchedulingType,
    ValidationErrors, Workload, WorkloadKey, resources::PODS, solve, validate::validate_workload,
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
    /// The ledger of the plan, so a change does not revisit every workload: per resource, the
    /// nano-units every placement uses on each cluster (by position in `clusters`, which is
    /// sorted by name like the solver's fleet)...
    used: BTreeMap<String, Vec<u128>>,
    /// ... the number of workloads with replicas on each cluster ...
    workloads_on: Vec<u32>,
    /// ... and those workloads, in placement order (priority, then key).
    residents: Vec<BTreeSet<(Reverse<i32>, WorkloadKey)>>,
    /// Cluster name to position in `clusters`.
    positions: BTreeMap<String, usize>,
    /// Capacity and free amounts of `clusters`, compiled once.
    table: ClusterTable,
    /// Re-planning the unchanged state gives the plan back (always so when every workload is
    /// settled; checked by a second solve after a full re-plan otherwise).
    fixed: bool,
    /// For each unsettled workload, the clusters any of its affinity groups admits (positions).
    admits: BTreeMap<WorkloadKey, Vec<usize>>,
    /// Per cluster, how many unsettled workloads admit it: a change that touches such a cluster
    /// may change them, so it is re-planned in full.
    blocked: Vec<u32>,
}

/// Per-replica demand in nano-units, as the solver counts it: every non-zero request, and one
/// pod unless the workload requests another amount.
fn nano_demand(w: &Workload) -> Vec<(&str, u128)> {
    let mut d: Vec<(&str, u128)> =
        w.resources.iter().filter(|(_, q)| !q.is_zero()).map(|(r, q)| (r.as_str(), q.nanos())).collect();
    if !w.resources.contains_key(PODS) {
        d.push((PODS, Quantity::from_units(1).nanos()));
    }
    d
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
            used: BTreeMap::new(),
            workloads_on: Vec::new(),
            residents: Vec::new(),
            positions: BTreeMap::new(),
            table: ClusterTable::default(),
            fixed: false,
            admits: BTreeMap::new(),
            blocked: Vec::new(),
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
        let fast = (self.others_settled(&key) || self.fixed) && self.lowest() == lowest_before;
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
        let touched: Vec<usize> = at
            .ok()
            .map(|at| {
                self.plan.placements[at]
                    .decisions
                    .iter()
                    .filter_map(|d| self.positions.get(&d.cluster).copied())
                    .collect()
            })
            .unwrap_or_default();
        if self.untouched(key, touched) && self.lowest() == lowest_before {
            if let Ok(at) = at {
                let gone = self.plan.placements.remove(at);
                self.ledger(&old, &gone, false);
                self.plan.objective -= self.value(old.priority) * gone.placed as f64;
                self.certify_gap();
            }
            self.settle(key, true);
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

    /// Rebuilds the derived indexes and the ledger from `clusters`, `workloads` and `plan`.
    fn reindex(&mut self) {
        self.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        self.positions = self.clusters.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        self.table = ClusterTable::new(&self.clusters);
        self.used.clear();
        self.workloads_on = vec![0; self.clusters.len()];
        self.residents = vec![BTreeSet::new(); self.clusters.len()];
        self.index = self.workloads.iter().enumerate().map(|(i, w)| (w.key(), i)).collect();
        for p in std::mem::take(&mut self.plan.placements) {
            if let Some(&i) = self.index.get(&p.workload) {
                let w = self.workloads[i].clone();
                self.ledger(&w, &p, true);
            }
            self.plan.placements.push(p);
        }
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
        self.blocked = vec![0; self.clusters.len()];
        self.admits.clear();
        self.fixed = self.unsettled.is_empty();
        if self.fixed {
            return;
        }
        let unsettled: Vec<&Workload> =
            self.unsettled.iter().filter_map(|k| self.index.get(k).map(|&i| &self.workloads[i])).collect();
        let fleet = Fleet::for_workloads(&self.clusters, &unsettled, &self.table);
        let filters = Filters::compile(&unsettled, &fleet.clusters, self.now);
        let admits: BTreeMap<WorkloadKey, Vec<usize>> =
            unsettled.iter().map(|w| (w.key(), admitted(w, &filters))).collect();
        for list in admits.values() {
            for &c in list {
                self.blocked[c] += 1;
            }
        }
        // Only worth a second solve when some cluster is free of unsettled workloads: a change
        // elsewhere re-plans in full anyway.
        if self.blocked.iter().all(|&b| b > 0) {
            return;
        }
        self.fixed = super::solve_validated(&self.input()).placements == self.plan.placements;
        self.admits = admits;
    }

    /// Adds (or removes) the replicas of placement `p` of workload `w` to (from) the ledger.
    fn ledger(&mut self, w: &Workload, p: &Placement, add: bool) {
        let demand = nano_demand(w);
        let n_clusters = self.clusters.len();
        for d in &p.decisions {
            let Some(&c) = self.positions.get(&d.cluster) else { continue };
            let n = u128::from(d.replicas);
            for &(r, q) in &demand {
                let column = self.used.entry(r.to_string()).or_insert_with(|| vec![0; n_clusters]);
                column[c] = if add { column[c].saturating_add(q * n) } else { column[c].saturating_sub(q * n) };
            }
            let rank = (Reverse(w.priority), p.workload.clone());
            if add {
                self.workloads_on[c] += 1;
                self.residents[c].insert(rank);
            } else {
                self.workloads_on[c] = self.workloads_on[c].saturating_sub(1);
                self.residents[c].remove(&rank);
            }
        }
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

    /// Whether changing `key`'s replicas on `clusters` leaves every other unsettled workload's
    /// view unchanged (none of them admits any of those clusters). Needs a fixed-point plan.
    fn untouched(&self, key: &WorkloadKey, clusters: impl IntoIterator<Item = usize>) -> bool {
        if self.others_settled(key) {
            return true;
        }
        if !self.fixed {
            return false;
        }
        let own = self.admits.get(key);
        clusters.into_iter().all(|c| {
            let mine = u32::from(own.is_some_and(|l| l.binary_search(&c).is_ok()));
            self.blocked.get(c).is_none_or(|&b| b <= mine)
        })
    }

    /// Marks `key` settled or not after an incremental change; an unsettled result may not be a
    /// fixed point, so later changes re-plan in full until a full re-plan shows it is.
    fn settle(&mut self, key: &WorkloadKey, is_settled: bool) {
        if let Some(list) = self.admits.remove(key) {
            for c in list {
                self.blocked[c] = self.blocked[c].saturating_sub(1);
            }
        }
        if is_settled {
            self.unsettled.remove(key);
        } else {
            self.unsettled.insert(key.clone());
            self.fixed = false;
        }
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
        let Some(&i) = self.index.get(key) else { return false };
        let w = self.workloads[i].clone();
        if w.rebalance.policy != RebalancePolicy::Never {
            return false;
        }
        let placed = self.place_in(&w, key, old);
        let Some((placement, most)) = placed else { return false };
        let w = &w;
        let value = self.value(w.priority);
        if let (Some(o), Some(before)) = (old, self.plan.get(key).cloned()) {
            self.ledger(o, &before, false);
            self.plan.objective -= self.value(o.priority) * before.placed as f64;
        }
        self.ledger(w, &placement, true);
        self.plan.objective += value * placement.placed as f64;
        // Without the changed workload the optimum is at most the old bound; it adds at most
        // `most` replicas.
        self.plan.bound += value * most as f64;
        self.settle(key, settled(w, &placement));
        match self.plan.placements.binary_search_by(|p| p.workload.cmp(key)) {
            Ok(at) => self.plan.placements[at] = placement,
            Err(at) => self.plan.placements.insert(at, placement),
        }
        self.certify_gap();
        true
    }

    /// The placement of `w` (the workload `key`) and the most replicas it can hold, or `None`
    /// when a full re-plan is needed.
    fn place_in(&self, w: &Workload, key: &WorkloadKey, old: Option<&Workload>) -> Option<(Placement, u64)> {
        // The solver's fleet as this workload sees it, from the cached cluster table.
        let fleet = Fleet::for_workloads(&self.clusters, &[w], &self.table);
        let filters = Filters::compile(&[w], &fleet.clusters, self.now);
        let wc = WorkloadCtx::new(w, &fleet, &filters, self.plan.get(key));
        let nr = fleet.resources.len();
        let n_clusters = fleet.clusters.len();
        let old_demand = old.map(nano_demand).unwrap_or_default();
        let old_of = |r: &str| old_demand.iter().find(|&&(x, _)| x == r).map_or(0, |&(_, q)| q);

        // Everything the other workloads use: the ledger without the old version of `w`.
        let mut used = vec![0u128; n_clusters * nr];
        for (r, name) in fleet.resources.iter().enumerate() {
            if let Some(column) = self.used.get(*name) {
                for (c, &u) in column.iter().enumerate() {
                    used[c * nr + r] = u;
                }
            }
        }
        let mut on = self.workloads_on.clone();
        for &(c, n) in &wc.previous {
            for (r, name) in fleet.resources.iter().enumerate() {
                let q = old_of(name);
                used[c * nr + r] = used[c * nr + r].saturating_sub(q * u128::from(n));
            }
            on[c] = on[c].saturating_sub(1);
        }
        let others = Usage::from_parts(used, on);

        // Stage A keeps `w` against the workloads placed before it only; `keep` looks at `w`'s
        // previous clusters alone, so only those need that view.
        let rank = (Reverse(w.priority), key.clone());
        let kept = if wc.previous.is_empty() {
            None
        } else {
            let mut used = vec![0u128; n_clusters * nr];
            let mut on = vec![0u32; n_clusters];
            for &(c, _) in &wc.previous {
                for resident in self.residents[c].range(..&rank).filter(|(_, k)| k != key) {
                    let u = &self.workloads[*self.index.get(&resident.1)?];
                    let p = self.plan.get(&resident.1)?;
                    let name = &fleet.clusters[c].name;
                    let n = p.decisions.iter().find(|d| &d.cluster == name).map_or(0, |d| u128::from(d.replicas));
                    for (r, q) in nano_demand(u) {
                        if let Some(i) = fleet.resources.iter().position(|x| *x == r) {
                            used[c * nr + i] += q * n;
                        }
                    }
                    on[c] += 1;
                }
            }
            wc.keep(&fleet, &filters, &Usage::from_parts(used, on))
        };
        // Later workloads keep everything in a re-plan only if `w` keeps no more than it had.
        if let Some(k) = &kept {
            for &(c, n) in &k.counts {
                let had = super::place::count_of(&wc.previous, c);
                for (r, q) in nano_demand(w) {
                    if q.saturating_mul(u128::from(n)) > old_of(r).saturating_mul(u128::from(had)) {
                        return None;
                    }
                }
            }
        }
        let outcome: Outcome = match kept {
            Some(k) if k.complete => Outcome::kept(k),
            Some(k) => extend(&wc, &fleet, &filters, &others, k),
            None => wc.place_fresh(&fleet, &filters, &others),
        };
        if !outcome.complete && w.preemption == Preemption::PreemptLowerPriority {
            return None;
        }
        // Unsettled workloads that may use a cluster whose usage changes could change too.
        let touched = wc.previous.iter().chain(&outcome.counts).map(|&(c, _)| c);
        if !self.untouched(key, touched) {
            return None;
        }
        let r = u64::from(w.replicas);
        let most = match w.replica_scheduling.kind {
            ReplicaSchedulingType::Divided => r,
            ReplicaSchedulingType::Duplicated => {
                r * w.number_of_clusters.map_or(n_clusters as u64, u64::from).min(n_clusters as u64)
            }
        };
        Some((finish(&wc, &fleet, &filters, outcome), most))
    }
}

/// The clusters (positions) any affinity group of `w` admits, sorted.
fn admitted(w: &Workload, filters: &Filters<'_>) -> Vec<usize> {
    let mut list: Vec<usize> = super::filter::affinity_terms(w)
        .into_iter()
        .flat_map(|t| filters.mask(filters.find(w, t)).admitted().collect::<Vec<_>>())
        .collect();
    list.sort_unstable();
    list.dedup();
    list
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
