//! The incremental placer: a long-lived fleet state and its plan, changed one workload or cluster
//! at a time.
//!
//! Every change gives the plan a full re-plan of the new state would give, with the current plan
//! as the previous decisions (`solve` of `clusters`, `workloads`, `previous = plan`, `now`).
//!
//! A workload is *settled* when a re-plan keeps it exactly as it is: fully placed, kept whole by
//! stage A (Divided: all replicas; Duplicated: `numberOfClusters` copies) and not rebalancing.
//! A change to workload `w` is placed incrementally ([`Update::Incremental`]: only `w` is
//! placed, against the capacity the others use, from a ledger kept up to date, and regrouped as
//! the improvement step would when it is new and `numberOfClusters` holds it back) when every other
//! workload is settled, or when the plan is a fixed point of re-planning and no unsettled
//! workload admits a cluster whose usage the change alters (their view is then unchanged). It
//! also needs `w` not to keep more than it had, not to preempt or rebalance, and the lowest
//! priority (the objective's weights) to stay.
//!
//! Otherwise, a workload change places again only what a re-plan could change
//! ([`Update::Partial`]): the changed workload and every unsettled one, in placement order, with
//! the full solver's stages (keep, place, improve) on top of the capacity the settled workloads
//! hold. Settled workloads stay as they are in a re-plan by definition, so this is the re-plan,
//! provided no workload placed again rebalances (its target is computed against the workloads
//! placed before it, settled ones included) or would preempt (its victims may be settled), and
//! the changed workload needs no more per replica than before (later workloads' kept replicas
//! might no longer fit). In a contended fleet that is the changed workload plus the pending
//! ones, usually a small part of the fleet. Every cluster change, and a change of the lowest
//! priority (the objective's weights), re-plans in full ([`Update::Full`]).
//!
//! The certificate after an incremental update: `objective` is exact; `bound` is the previous
//! bound plus the most the changed workload can add, still an upper bound on the optimum but
//! looser than a full re-plan's. [`Placer::replan`] recomputes it.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    extend,
    filter::Filters,
    finish,
    fleet::{ClusterTable, Fleet},
    order::{FleetCapacity, Rank},
    place::{Kept, Outcome, WorkloadCtx},
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
    /// The changed workload and the workloads that are not settled were placed again, against
    /// the capacity the settled workloads hold; the settled ones stayed as they were.
    Partial,
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
    /// ... and those workloads, in placement order.
    residents: Vec<BTreeSet<Rank>>,
    /// The fleet's capacity, which orders workloads of one priority.
    capacity: FleetCapacity,
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
            capacity: FleetCapacity::default(),
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
        if self.lowest() == lowest_before && self.replay(&key, old.as_ref()) {
            return Ok(Update::Partial);
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
        if self.lowest() == lowest_before && self.replay(key, Some(&old)) {
            return Some(Update::Partial);
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
        self.capacity = FleetCapacity::of(&self.clusters);
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
            let rank = self.capacity.rank(w);
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

    /// Places again, in placement order, every workload a re-plan could change: the workload
    /// `changed` (if it still exists; `old` is its version before the change, if it had one)
    /// and every unsettled workload, against the capacity the settled workloads hold. A re-plan
    /// keeps every settled workload exactly as it is (that is what settled means), and the
    /// workloads placed again see at their turn what they would see in a full re-plan, so the
    /// result is the full re-plan's, as long as: no workload placed again rebalances (it would
    /// compare with the settled workloads placed before it), none would preempt (its victims
    /// may be settled), and `changed` needs no more per replica than before (stage A would keep
    /// it against fewer workloads than here). Returns false, changing nothing, otherwise.
    fn replay(&mut self, changed: &WorkloadKey, old: Option<&Workload>) -> bool {
        let mut keys: BTreeSet<&WorkloadKey> = self.unsettled.iter().filter(|k| self.index.contains_key(*k)).collect();
        let current = self.index.get(changed).map(|&i| &self.workloads[i]);
        let exists = current.is_some();
        if current.is_some() {
            keys.insert(changed);
        }
        if let (Some(new), Some(old)) = (current, old) {
            let before = nano_demand(old);
            let grew =
                nano_demand(new).iter().any(|(r, q)| before.iter().find(|(x, _)| x == r).is_none_or(|x| *q > x.1));
            if grew && self.plan.get(changed).is_some_and(|p| !p.decisions.is_empty()) {
                return false;
            }
        }
        let subset: Vec<&Workload> = keys.iter().map(|k| &self.workloads[self.index[*k]]).collect();
        if subset.iter().any(|w| w.rebalance.policy != RebalancePolicy::Never) {
            return false;
        }
        let subset = self.capacity.sorted(subset);
        let fleet = Fleet::for_workloads(&self.clusters, &subset, &self.table);
        let filters = Filters::compile(&subset, &fleet.clusters, self.now);
        let contexts: Vec<WorkloadCtx<'_>> = subset
            .iter()
            .enumerate()
            // `place_all` explains what stays incomplete once, at the end.
            .map(|(i, w)| WorkloadCtx::new(i, w, &fleet, &filters, self.plan.get(&w.key())).explained_later())
            .collect();

        // What the settled workloads use: the ledger without the workloads placed again (in the
        // version the ledger holds) and without `changed`'s old replicas.
        let (nr, n_clusters) = (fleet.resources.len(), fleet.clusters.len());
        let (mut used, mut on) = self.ledger_usage(&fleet);
        let mut held: Vec<(&Workload, &Placement)> = Vec::new();
        for &key in &keys {
            let version = if key == changed { old } else { Some(&self.workloads[self.index[key]]) };
            if let (Some(w), Some(p)) = (version, self.plan.get(key)) {
                held.push((w, p));
            }
        }
        if current.is_none()
            && let (Some(w), Some(p)) = (old, self.plan.get(changed))
        {
            held.push((w, p));
        }
        for &(w, p) in &held {
            let demand = nano_demand(w);
            for d in &p.decisions {
                let Some(&c) = self.positions.get(&d.cluster) else { continue };
                for (r, name) in fleet.resources.iter().enumerate() {
                    let q = demand.iter().find(|(x, _)| x == name).map_or(0, |x| x.1);
                    used[c * nr + r] = used[c * nr + r].saturating_sub(q * u128::from(d.replicas));
                }
                on[c] = on[c].saturating_sub(1);
            }
        }

        // The changed workload may trim its previous decisions (a scale-down), by scores that
        // depend on what was kept before it: give it that view. The others keep all they have.
        let mut changed_keep = None;
        if let Some(i) = contexts.iter().position(|wc| wc.w.key() == *changed) {
            let Some(k) = self.keep(&fleet, &filters, &contexts[i], changed) else { return false };
            changed_keep = Some((i, k));
        }
        let values: Vec<f64> = contexts.iter().map(|wc| self.value(wc.w.priority)).collect();
        let base = fleet.usage_from_parts(used, on);
        let placed = super::place_all(&contexts, &fleet, &filters, base, &values, false, changed_keep);
        // The improvement step can leave a preemptor short (a trade gives its room to more
        // lower-priority replicas); whether that keeps the plan a fixed point depends on the
        // priorities of the settled workloads beside it, which only a full re-plan sees.
        let short_preemptor = contexts
            .iter()
            .zip(&placed.outcomes)
            .any(|(wc, o)| !o.complete && wc.w.preemption == Preemption::PreemptLowerPriority);
        if placed.would_preempt || short_preemptor {
            return false;
        }
        let placements: Vec<Placement> =
            contexts.iter().zip(placed.outcomes).map(|(wc, o)| finish(wc, &fleet, &filters, o)).collect();
        let most = current.map(|w| (self.value(w.priority), most_replicas(w, n_clusters)));
        let held: Vec<(Workload, Placement)> = held.into_iter().map(|(w, p)| (w.clone(), p.clone())).collect();

        // Apply: out with what the ledger held, in with the new placements.
        for (w, p) in &held {
            self.ledger(w, p, false);
            self.plan.objective -= self.value(w.priority) * p.placed as f64;
        }
        if !exists && let Ok(at) = self.plan.placements.binary_search_by(|p| p.workload.cmp(changed)) {
            self.plan.placements.remove(at);
        }
        for p in placements {
            let key = p.workload.clone();
            let w = self.workloads[self.index[&key]].clone();
            self.ledger(&w, &p, true);
            self.plan.objective += self.value(w.priority) * p.placed as f64;
            self.settle(&key, settled(&w, &p));
            match self.plan.placements.binary_search_by(|x| x.workload.cmp(&key)) {
                Ok(at) => self.plan.placements[at] = p,
                Err(at) => self.plan.placements.insert(at, p),
            }
        }
        if !exists {
            self.settle(changed, true);
        }
        // As for one workload: the old bound, plus the most the changed workload can add.
        if let Some((value, most)) = most {
            self.plan.bound += value * most as f64;
        }
        self.certify_gap();
        true
    }

    /// The whole ledger in `fleet`'s layout (its resources only): nano-units used per cluster and
    /// resource, and the number of workloads on each cluster.
    fn ledger_usage(&self, fleet: &Fleet<'_>) -> (Vec<u128>, Vec<u32>) {
        let nr = fleet.resources.len();
        let mut used = vec![0u128; fleet.clusters.len() * nr];
        for (r, name) in fleet.resources.iter().enumerate() {
            if let Some(column) = self.used.get(*name) {
                for (c, &u) in column.iter().enumerate() {
                    used[c * nr + r] = u;
                }
            }
        }
        (used, self.workloads_on.clone())
    }

    /// What stage A of a full re-plan keeps of `wc`'s previous decisions (the workload `key`): it
    /// keeps `w` against the workloads placed before it only, as they are in the plan (they are
    /// kept whole: the plan fits). `keep` looks at the previous clusters alone, so only those need
    /// that view. `None` when the ledger lacks a resident.
    fn keep(
        &self,
        fleet: &Fleet<'_>,
        filters: &Filters<'_>,
        wc: &WorkloadCtx<'_>,
        key: &WorkloadKey,
    ) -> Option<Option<Kept>> {
        if wc.previous.is_empty() {
            return Some(None);
        }
        let (nr, n_clusters) = (fleet.resources.len(), fleet.clusters.len());
        let rank = self.capacity.rank(wc.w);
        let mut used = vec![0u128; n_clusters * nr];
        let mut on = vec![0u32; n_clusters];
        for &(c, _) in &wc.previous {
            for resident in self.residents[c].range(..&rank).filter(|r| r.key != *key) {
                let u = &self.workloads[*self.index.get(&resident.key)?];
                let p = self.plan.get(&resident.key)?;
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
        Some(wc.keep(fleet, filters, &fleet.usage_from_parts(used, on)))
    }

    /// The placement of `w` (the workload `key`) and the most replicas it can hold, or `None`
    /// when a full re-plan is needed.
    fn place_in(&self, w: &Workload, key: &WorkloadKey, old: Option<&Workload>) -> Option<(Placement, u64)> {
        // The solver's fleet as this workload sees it, from the cached cluster table.
        let fleet = Fleet::for_workloads(&self.clusters, &[w], &self.table);
        let filters = Filters::compile(&[w], &fleet.clusters, self.now);
        // Explained once, at the end, as the full solve explains it.
        let wc = WorkloadCtx::new(0, w, &fleet, &filters, self.plan.get(key)).explained_later();
        let nr = fleet.resources.len();
        let n_clusters = fleet.clusters.len();
        let old_demand = old.map(nano_demand).unwrap_or_default();
        let old_of = |r: &str| old_demand.iter().find(|&&(x, _)| x == r).map_or(0, |&(_, q)| q);

        // Everything the other workloads use: the ledger without the old version of `w`.
        let (mut used, mut on) = self.ledger_usage(&fleet);
        for &(c, n) in &wc.previous {
            for (r, name) in fleet.resources.iter().enumerate() {
                let q = old_of(name);
                used[c * nr + r] = used[c * nr + r].saturating_sub(q * u128::from(n));
            }
            on[c] = on[c].saturating_sub(1);
        }
        let others = fleet.usage_from_parts(used, on);

        let kept = self.keep(&fleet, &filters, &wc, key)?;
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
        // Clusters a regroup moved the fresh placement off.
        let mut left: Vec<usize> = Vec::new();
        let outcome: Outcome = match kept {
            Some(k) if k.complete => Outcome::kept(k),
            Some(k) => extend(&wc, &fleet, &filters, &others, k),
            None => {
                // The full solve's improvement step regroups a workload without previous
                // decisions that numberOfClusters holds back; nothing else moves for it (every
                // other workload keeps its decisions there).
                let mut fresh = wc.place_fresh_unexplained(&fleet, &filters, &others);
                // The full solve preempts for a short preemptor as soon as it is placed, before
                // the improvement step could regroup it into room without evicting anyone.
                if !fresh.complete && w.preemption == Preemption::PreemptLowerPriority {
                    return None;
                }
                if wc.previous.is_empty()
                    && let Some(regrouped) = super::improve::regrouped(&wc, &fleet, &filters, &others, &fresh)
                {
                    // The full solve refuses a regroup that leaves clusters beside a short
                    // preemptor (it might preempt there on the next solve): the clusters left
                    // count as touched, so such a neighbour makes this a full re-plan.
                    left.extend(fresh.counts.iter().map(|&(c, _)| c));
                    fresh = regrouped;
                }
                fresh
            }
        };
        // Against the plan as it ends, its own replicas included, as the full solve does: an
        // extension that kept the old replicas reports them, and no attempt explained them (one
        // that placed everything by moving them explained nothing).
        let mut outcome = outcome;
        if !outcome.complete && !wc.terms.is_empty() {
            let mut usage = others.clone();
            fleet.add(&mut usage, &outcome.counts, &wc.demand);
            wc.explain_final(&fleet, &filters, &usage, &mut outcome);
        }
        if !outcome.complete && w.preemption == Preemption::PreemptLowerPriority {
            return None;
        }
        // Unsettled workloads that may use a cluster whose usage changes could change too.
        let touched = wc.previous.iter().chain(&outcome.counts).map(|&(c, _)| c).chain(left);
        if !self.untouched(key, touched) {
            return None;
        }
        Some((finish(&wc, &fleet, &filters, outcome), most_replicas(w, n_clusters)))
    }
}

/// The most replicas `w` can hold in a fleet of `n_clusters` (Duplicated: over all its copies).
fn most_replicas(w: &Workload, n_clusters: usize) -> u64 {
    let r = u64::from(w.replicas);
    match w.replica_scheduling.kind {
        ReplicaSchedulingType::Divided => r,
        ReplicaSchedulingType::Duplicated => {
            r * w.number_of_clusters.map_or(n_clusters as u64, u64::from).min(n_clusters as u64)
        }
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
