//! The improvement step after the greedy pass: make room for workloads that are not fully placed
//! by moving workloads that were placed fresh in this solve.
//!
//! The greedy pass places workloads one at a time, so an early workload can fill the only
//! clusters a later one may use while it could have gone elsewhere. Only workloads placed fresh
//! in this solve (no previous decisions, so nothing running moves) and that do not rebalance
//! (the next solve would move them toward their own best placement) ever move; workloads that
//! rebalance do not grow here either. Two kinds of move, in rounds (trades, then shifts, twice at
//! most, each round with its own budgets; the second only when the first changed something):
//!
//! - **Trades.** For each workload that is not fully placed (highest priority first), the step
//!   tries a few *blockers*: movable workloads with replicas on clusters the workload admits and
//!   is short of room on, those that free the most room for it first (in its replicas, of the
//!   resource that binds it on each cluster). A trial takes the blockers out, extends the
//!   workload (it only grows) and places the blockers again from scratch. It is kept when the
//!   certified objective (replicas weighted by priority) rises, even when a blocker of higher
//!   priority ends with fewer replicas: the objective weighs priorities linearly, and a workload
//!   that may not preempt has no claim on lower-priority replicas (one that may is never left
//!   short next to them, see below). Trading a
//!   higher-priority Duplicated copy for more lower-priority replicas is what took the fast
//!   solver from 92.8% to 100% of the exact optimum at 30 x 5 (`exact_vs_fast`). A blocker that
//!   comes back with fewer replicas may in turn take out a few lower-valued movable workloads
//!   where it is short of room and place them again after itself (one level deep, from a budget
//!   of its own): at 20k x 50 this took the gap from 0.92% to 0.73%, at 1k x 100 from 0.88% to
//!   0.73%.
//! - **Shifts.** For each workload still not fully placed, on a few clusters it may grow on, single
//!   units of complete movable workloads (a replica, or a whole Duplicated copy) move to other
//!   clusters they admit until the workload fits there; where no cluster has room for a unit, two
//!   units are exchanged between clusters short of different resources (a CPU-heavy replica for
//!   a memory-heavy one). Nobody loses a replica, so a shift that grows the workload is kept. It
//!   rearranges several workloads at once, which trades cannot: Dynamic division spreads each
//!   workload over every cluster with room and leaves capacity in fragments. A workload with
//!   nothing placed that must start in several topology groups at once (a spread's `minGroups`)
//!   gets room on the roomiest cluster of each of that many groups in one trial, in its current
//!   affinity group or, failing that, a later one (40 x 6 went from 98.5% to 99.8% of the exact
//!   optimum). Weighted workloads keep the split their weights give and Aggregated ones keep
//!   their clusters. Shifts took 60 x 8 from 97.9% to 99.8% of the exact optimum and 100 x 10
//!   from 97.1% to 98.5%.
//!
//! After the rounds, **regroups**: a Divided workload held back by `numberOfClusters` (short, on
//! as many clusters as it may use) is placed again from scratch with the clusters that have the
//! most room tried first, and kept when it places more (the greedy pass ranks by score alone
//! there, and can leave it on slivers of its best-scored clusters next to an empty one).
//!
//! A final pass does, in placement order, what the next solve does first: every incomplete
//! workload (and every Duplicated one that takes all clusters) is extended as its own previous
//! decision wherever one more unit fits (placing is not monotone in free capacity, so a workload
//! that stopped short when it was placed can extend on the fuller fleet; nor is extending, so it
//! extends again until that gains nothing), then a preemptor still
//! short preempts where it could place more with the later workloads gone, again while that
//! gains (a preemption sized per cluster can gain less than it evicted for).
//!
//! The plan must be a fixed point of the next solve, which keeps it and then preempts and
//! rebalances by its rules. So a move is refused when it leaves a workload that may preempt
//! short next to lower-priority replicas it could displace, lower priorities never move onto
//! clusters where a short preemptor could place more, every moved workload keeps its hard
//! constraints, and fresh workloads that rebalance go where the next solve would move them once
//! the moves have changed what is placed before them.
//!
//! Work is bounded by budgets in cluster visits: a trial costs about one placement over the
//! fleet, and ranking a workload's blockers one visit per eight residents weighed. Once eight
//! workloads in a row of one affinity group's filter gained nothing from trades, the round skips
//! that filter's others (they share clusters and blockers). A workload with `numberOfClusters`
//! weighs blockers only on the clusters a trial could grow it on. Trades get
//! 120,000 visits' worth up to 100 clusters and proportionally fewer on larger fleets (1,200
//! trials at 100 clusters, at least 16: 16 at 1,000); a workload that gains earns back what it
//! spent, up to four times that much in all. Shifts get 200,000 visits up to 100
//! clusters and proportionally fewer on larger fleets, and one target cluster at most 20,000 of
//! them; a kept shift earns back what its target spent. Deterministic: fixed orders, ties by
//! index.

use std::collections::BTreeMap;

use super::{
    Victims, extend,
    filter::{Admission, Filters},
    fleet::{AtMost, Counts, Demand, Fleet, Usage},
    place::{Kept, Outcome, WorkloadCtx, count_of, set_count},
};
use crate::{Division, Preemption, RebalancePolicy};

/// A trial's gain, the grown outcome and the blockers' new outcomes.
type Trial = (f64, Outcome, Vec<(usize, Outcome)>);

/// The trades' budget up to 100 clusters, in cluster visits (trials x clusters); larger fleets
/// get proportionally fewer.
const TRIAL_CLUSTER_VISITS: usize = 120_000;

/// Residents whose room a blocker ranking weighs per cluster visit of the budget.
const RESIDENTS_PER_VISIT: usize = 8;

/// Blockers tried per workload.
const BLOCKERS_PER_WORKLOAD: usize = 4;

/// Workloads in a row of one affinity group's filter whose trades all failed, after which the
/// round skips the rest of that filter's: they share clusters and blockers and fail alike (at
/// 5k x 100, 0 of 39 GPU workloads gained while the budget ran out before the batch), so the
/// budget goes to later workloads.
const FAILED_TRADES_PER_FILTER: usize = 8;

/// The shift pass's budget at 100 clusters or fewer, in cluster visits (destination and exchange
/// checks, and a fleet's worth per target cluster and per extension).
const SHIFT_CLUSTER_VISITS: usize = 200_000;

/// The part of the shift pass's budget one target cluster may spend.
const SHIFT_VISITS_PER_TARGET: usize = 20_000;

/// The regroup trials' budget, in cluster visits (a trial places one workload over the fleet):
/// 1,000 trials at 1,000 clusters, 200 at 5,000.
const REGROUP_CLUSTER_VISITS: usize = 1_000_000;

/// Trials in a row whose blockers found nothing to displace, after which they stop trying for
/// the round (see `displace`).
const DISPLACE_FAILURES: usize = 32;

/// What successful trades may earn back in one round, in multiples of the round's trade budget.
/// At 5k x 100 the first round used it all (more did not help there).
const TRADE_REFUNDS: usize = 4;

/// Rounds of trades and shifts at most.
const IMPROVE_ROUNDS: usize = 2;

/// Clusters the shift pass frees room on per incomplete workload.
const SHIFT_TARGETS_PER_WORKLOAD: usize = 4;

/// Units moved off one cluster for one workload at most.
const MAX_SHIFTS_PER_CLUSTER: usize = 64;

/// The plan as the improvement step changes it, and the indexes its checks read, kept in step.
struct Board<'s> {
    contexts: &'s [WorkloadCtx<'s>],
    fleet: &'s Fleet<'s>,
    filters: &'s Filters<'s>,
    /// Per cluster, the highest priority of an incomplete workload that may preempt there (any
    /// affinity group). Replicas of a lower priority moved or grown onto such a cluster would be
    /// preempted on the next solve, so they may not go there.
    guarded: Vec<Option<i32>>,
    /// Workloads with replicas on each cluster, by placement index, with their units there.
    residents: Vec<Vec<(usize, u64)>>,
    /// Whether each workload may move ([`Board::movable`]), by placement index.
    movable: Vec<bool>,
    /// What one replica of each workload needs of each resource (`nr` entries per workload): the
    /// blocker rankings read it for every resident of a cluster.
    demands: Vec<u128>,
    /// The workloads that may preempt, by placement index: only they can be left exposed.
    preemptors: Vec<usize>,
    /// Clusters moved workloads left.
    freed: Vec<usize>,
    /// The first workload (in placement order) whose outcome changed.
    first_changed: usize,
    /// Whose outcome changed.
    changed: Vec<bool>,
}

impl Board<'_> {
    /// Guards the clusters where `x`, left with `o`, may preempt on the next solve.
    fn guard(&mut self, x: usize, o: &Outcome) {
        let wc = &self.contexts[x];
        if o.complete || wc.w.preemption != Preemption::PreemptLowerPriority {
            return;
        }
        for &f in &wc.filters {
            for c in self.filters.mask(f).admitted().filter(|&c| wc.may_take_more(&o.counts, c)) {
                self.guarded[c] = self.guarded[c].max(Some(wc.w.priority));
            }
        }
    }

    /// Every incomplete preemptor's clusters, from scratch.
    fn guard_all(&mut self, outcomes: &[Outcome]) {
        self.guarded.iter_mut().for_each(|g| *g = None);
        for (x, o) in outcomes.iter().enumerate() {
            self.guard(x, o);
        }
    }

    /// Whether `new` puts workload `x` (before: `old`) on a cluster it did not use where a
    /// short preemptor of higher priority could place more.
    fn intrudes(&self, x: usize, old: &Outcome, new: &Outcome) -> bool {
        let priority = self.contexts[x].w.priority;
        new.counts.iter().any(|&(c, _)| count_of(&old.counts, c) == 0 && self.guarded[c].is_some_and(|p| p > priority))
    }

    /// Whether the plan stays a fixed point of the next solve, which keeps it and then preempts
    /// by its rules, when `changed` (placement index, new outcome) replace their outcomes: no
    /// changed workload intrudes on a guarded cluster, and no workload that may preempt is left
    /// short next to lower-priority replicas it could displace. The changed workloads are checked
    /// on all their clusters, the others on the clusters the change touches.
    fn keeps_fixed_point(&self, outcomes: &[Outcome], changed: &[(usize, &Outcome)]) -> bool {
        if changed.iter().any(|&(x, o)| self.intrudes(x, &outcomes[x], o)) {
            return false;
        }
        let is_changed = |x: usize| changed.iter().any(|&(y, _)| y == x);
        let priority_on = |c: usize| {
            let stayed =
                self.residents[c].iter().filter(|&&(x, _)| !is_changed(x)).map(|&(x, _)| self.contexts[x].w.priority);
            let arrived =
                changed.iter().filter(|(_, o)| count_of(&o.counts, c) > 0).map(|&(x, _)| self.contexts[x].w.priority);
            stayed.chain(arrived).min()
        };
        let exposed_on =
            |x: usize, o: &Outcome, c: usize| exposed(&self.contexts[x], self.filters, o, c, priority_on(c));
        let changed_hold = changed.iter().all(|&(x, o)| {
            !may_preempt(&self.contexts[x], o)
                || !self.filters.mask(self.contexts[x].filters[o.term]).admitted().any(|c| exposed_on(x, o, c))
        });
        if !changed_hold {
            return false;
        }
        let mut touched: Vec<usize> =
            changed.iter().flat_map(|&(x, o)| outcomes[x].counts.iter().chain(&o.counts).map(|&(c, _)| c)).collect();
        touched.sort_unstable();
        touched.dedup();
        self.preemptors.iter().copied().filter(|&x| !is_changed(x)).all(|x| {
            let o = &outcomes[x];
            !may_preempt(&self.contexts[x], o) || !touched.iter().any(|&c| exposed_on(x, o, c))
        })
    }

    /// Replaces the outcomes of `changed` (placement index, new outcome), keeping `usage`, the
    /// residents and the guards in step. Each changed workload's earlier events come first.
    fn commit(&mut self, usage: &mut Usage, outcomes: &mut [Outcome], mut changed: Vec<(usize, Outcome)>) {
        for (x, new) in &mut changed {
            self.first_changed = self.first_changed.min(*x);
            self.changed[*x] = true;
            self.fleet.remove(usage, &outcomes[*x].counts, &self.contexts[*x].demand);
            for &(c, _) in &outcomes[*x].counts {
                self.residents[c].retain(|(y, _)| y != x);
            }
            let mut old_events = std::mem::take(&mut outcomes[*x].events);
            old_events.append(&mut new.events);
            new.events = old_events;
        }
        for (x, new) in changed {
            // A workload left incomplete may preempt on the next solve: guard its clusters too.
            self.guard(x, &new);
            self.fleet.add(usage, &new.counts, &self.contexts[x].demand);
            for &(c, n) in &new.counts {
                self.residents[c].push((x, n));
            }
            outcomes[x] = new;
        }
    }

    /// Whether workload `j` may be moved: fresh (nothing of it runs yet) and not rebalancing (it
    /// would move back toward its own best placement on the next solve).
    fn movable(&self, j: usize) -> bool {
        self.movable[j]
    }

    /// What one replica of workload `j` needs of resource `r`.
    fn demand_of(&self, j: usize, r: usize) -> u128 {
        self.demands[j * self.fleet.resources.len() + r]
    }
}

/// Moves fresh placements out of the way of incomplete ones where that raises the objective.
/// `usage` is the whole plan's usage and is kept in step with `outcomes`.
pub(crate) fn improve<'s>(
    contexts: &'s [WorkloadCtx<'s>],
    fleet: &'s Fleet<'s>,
    filters: &'s Filters<'s>,
    values: &[f64],
    usage: &mut Usage,
    outcomes: &mut [Outcome],
) {
    let n = contexts.len();
    let mut board = Board {
        contexts,
        fleet,
        filters,
        guarded: vec![None; fleet.clusters.len()],
        residents: vec![Vec::new(); fleet.clusters.len()],
        movable: contexts
            .iter()
            .map(|wc| wc.previous.is_empty() && wc.w.rebalance.policy == RebalancePolicy::Never)
            .collect(),
        demands: contexts.iter().flat_map(|wc| (0..fleet.resources.len()).map(|r| demand_of(wc, r))).collect(),
        preemptors: (0..n).filter(|&x| contexts[x].w.preemption == Preemption::PreemptLowerPriority).collect(),
        freed: Vec::new(),
        first_changed: n,
        changed: vec![false; n],
    };
    board.guard_all(outcomes);
    for (j, o) in outcomes.iter().enumerate() {
        for &(c, n) in &o.counts {
            board.residents[c].push((j, n));
        }
    }
    // Trades and shifts open room for each other, so a round that changed something is followed
    // by another, with budgets of its own: when the rounds shared them, the first spent them at
    // 5k x 100 and the room it opened went unused (gap 1.12%; 1.03% with these budgets and the
    // refunds below). A trial re-places workloads over fleet-sized state, so larger fleets get
    // proportionally fewer visits: 120,000 up to 100 clusters, 12,000 at 1,000 (the floor of 16
    // trials then).
    let trials = (TRIAL_CLUSTER_VISITS * 100 / fleet.clusters.len().max(100) / fleet.clusters.len().max(1)).max(16);
    // Shifts read fleet-sized state per target, so larger fleets get proportionally fewer
    // visits: 200,000 up to 100 clusters, 20,000 at 1,000.
    let visits = SHIFT_CLUSTER_VISITS * 100 / fleet.clusters.len().max(100);
    for _ in 0..IMPROVE_ROUNDS {
        // What successful trades may earn back (see `trade`): only where trades keep paying off.
        let mut refunds = trials * TRADE_REFUNDS;
        let traded = trade(&mut board, values, usage, outcomes, &mut trials.clone(), &mut refunds);
        let shifted = shift(&mut board, usage, outcomes, &mut visits.clone());
        if !traded && !shifted {
            break;
        }
    }
    let mut regroups = REGROUP_CLUSTER_VISITS / fleet.clusters.len().max(1);
    regroup(&mut board, usage, outcomes, &mut regroups);
    settle(&mut board, usage, outcomes);
    // A rebalancing workload that follows its target can leave room an incomplete workload
    // grows into on the next solve, which extends it before the rebalancing one moves (and so
    // moves that one's target): grow and follow again while the following moves anything.
    let mut moved = follow_rebalance_targets(contexts, fleet, filters, usage, outcomes, board.first_changed);
    for _ in 0..FOLLOW_ROUNDS {
        let Some(grown) = moved.and_then(|_| grow_into_room(contexts, fleet, filters, usage, outcomes)) else {
            break;
        };
        moved = follow_rebalance_targets(contexts, fleet, filters, usage, outcomes, grown);
    }
}

/// Rounds of growing into room that rebalancing workloads left and following their targets
/// again, at most.
const FOLLOW_ROUNDS: usize = 4;

/// Outcome `o` of workload `wc` extended as its own previous decision on top of `others`, as the
/// next solve extends what it keeps, and again until an extension gains nothing: extending is
/// not monotone either (a Weighted split under maxSkew 0 extended from 2 + 2 can stop at 4 + 4
/// where one from 4 + 4 reaches 5 + 5), and the next solve extends from what this leaves.
/// A copy of `o` when nothing gains.
fn extended_fully(
    wc: &WorkloadCtx<'_>,
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    others: &Usage,
    o: &Outcome,
) -> Outcome {
    let mut grown = o.clone();
    loop {
        // A Duplicated workload that takes every cluster is complete and still grows onto
        // clusters with room.
        let kept = Kept { term: grown.term, counts: grown.counts.clone(), complete: false, degraded: false };
        let again = extend(&wc.as_decided(&grown.counts), fleet, filters, others, kept);
        if again.placed() <= grown.placed() {
            return grown;
        }
        grown = again;
        if grown.complete {
            return grown;
        }
    }
}

/// Every incomplete workload that does not rebalance grows, in placement order, where one more
/// unit fits on a cluster it may grow on, extended as its own previous decision until that gains
/// nothing (as the next solve would extend it). Returns the first that grew.
fn grow_into_room(
    contexts: &[WorkloadCtx<'_>],
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    usage: &mut Usage,
    outcomes: &mut [Outcome],
) -> Option<usize> {
    let mut first = None;
    let mut rooms: BTreeMap<RoomKey, Vec<u64>> = BTreeMap::new();
    for (x, wc) in contexts.iter().enumerate() {
        let o = &outcomes[x];
        if o.complete || wc.w.rebalance.policy != RebalancePolicy::Never {
            continue;
        }
        let key = (wc.demand.0.clone(), unit_of(wc));
        let room = rooms.entry(key).or_insert_with(|| room_bits(fleet, usage, &wc.demand, unit_of(wc)));
        if !filters.mask(wc.filters[o.term]).open_in(room).any(|c| may_grow_on(wc, filters, o, c)) {
            continue;
        }
        let mut others = usage.clone();
        fleet.remove(&mut others, &o.counts, &wc.demand);
        let mut grown = extended_fully(wc, fleet, filters, &others, o);
        if grown.placed() > o.placed() {
            rooms.clear();
            fleet.remove(usage, &o.counts, &wc.demand);
            fleet.add(usage, &grown.counts, &wc.demand);
            grown.events.append(&mut outcomes[x].events);
            outcomes[x] = grown;
            first = first.or(Some(x));
        }
    }
    first
}

/// Blocker trials: for each incomplete workload, takes up to a few blockers out, grows the
/// workload and places the blockers again from scratch; keeps the best trial that raises the
/// certified objective.
fn trade(
    board: &mut Board<'_>,
    values: &[f64],
    usage: &mut Usage,
    outcomes: &mut [Outcome],
    budget: &mut usize,
    refunds: &mut usize,
) -> bool {
    // A spent budget (large fleets spend it in the first round) skips building `fixed` below.
    if *budget == 0 {
        return false;
    }
    // What blockers making room in turn may spend (see `displace`): as much as the trials, so
    // they cannot starve them (charged to the trials, they spent the budget at 5k x 100 before
    // most short workloads were reached: gap 1.03% -> 1.42%); and none for the rest of the
    // round once `DISPLACE_FAILURES` trials in a row found nothing to displace (at 3k x 30 they
    // doubled the solve for a gap of 0.028% instead of 0.034%).
    let mut displacing = *budget;
    let mut displace_failures = 0;
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    let n = contexts.len();
    let mut changed = false;
    // What the workloads that may not move (they had previous decisions, or are not placed
    // here: the Placer's settled ones) use: a workload that cannot grow even with every movable
    // one gone is not worth a trial.
    let mut fixed = usage.clone();
    for (wc, o) in contexts.iter().zip(outcomes.iter()) {
        if wc.previous.is_empty() {
            fleet.remove(&mut fixed, &o.counts, &wc.demand);
        }
    }
    // Each blocker's entry in `weight`, by workload (`NONE` between workloads).
    const NONE: usize = usize::MAX;
    let mut slot = vec![NONE; n];
    // Workloads in a row, per affinity group's filter, whose trials all failed.
    let mut failed: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..n {
        if *budget == 0 {
            break;
        }
        let wc = &contexts[i];
        // A rebalancing workload's placement is compared with its own best one on the next
        // solve; growing it here would make it move then.
        if outcomes[i].complete || wc.w.rebalance.policy != RebalancePolicy::Never {
            continue;
        }
        let filter = wc.filters[outcomes[i].term];
        let before = *budget;
        if failed.get(&filter).is_some_and(|&k| k >= FAILED_TRADES_PER_FILTER) {
            continue;
        }
        *budget -= 1;
        let mut alone = fixed.clone();
        if !wc.previous.is_empty() {
            fleet.remove(&mut alone, &outcomes[i].counts, &wc.demand);
        }
        let kept =
            Kept { term: outcomes[i].term, counts: outcomes[i].counts.clone(), complete: false, degraded: false };
        if extend(wc, fleet, filters, &alone, kept).placed() <= outcomes[i].placed() {
            continue;
        }
        let mask = filters.mask(wc.filters[outcomes[i].term]);
        let missing = wc.replicas().saturating_sub(outcomes[i].placed());
        // Blockers: fresh workloads on the clusters `i` admits and is short of room on, most room
        // freed there first (in replicas of `i`, of the resource that binds it on each cluster).
        let mut weight: Vec<(f64, usize)> = Vec::new();
        let mut examined = 0;
        let short: Vec<(usize, usize)> = mask
            .admitted()
            .filter_map(|c| {
                let (fit, binding) = fleet.fit(usage, c, &wc.demand);
                binding.filter(|_| fit < missing).map(|b| (c, b))
            })
            .collect();
        for (c, b) in within_cluster_count(wc, fleet, &alone, &outcomes[i].counts, short) {
            let per = demand_of(wc, b);
            examined += board.residents[c].len();
            for &(j, here) in &board.residents[c] {
                if j == i || !board.movable(j) {
                    continue;
                }
                let freed = (here as f64) * (board.demand_of(j, b) as f64) / (per.max(1) as f64);
                match slot[j] {
                    NONE => {
                        slot[j] = weight.len();
                        weight.push((freed, j));
                    }
                    s => weight[s].0 += freed,
                }
            }
        }
        for &(_, j) in &weight {
            slot[j] = NONE;
        }
        // Examining a resident costs about an eighth of what a trial's cluster visit does.
        *budget = budget.saturating_sub(examined / (RESIDENTS_PER_VISIT * fleet.clusters.len().max(1)));
        weight.retain(|&(freed, _)| freed > 0.0);
        weight.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // Trials: the first blocker, then the first two, ... (several workloads may share the
        // cluster `i` needs).
        let blockers: Vec<usize> = weight.iter().take(BLOCKERS_PER_WORKLOAD).map(|&(_, j)| j).collect();
        let mut best: Option<Trial> = None;
        for k in 1..=blockers.len() {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let set = &blockers[..k];
            let oi = &outcomes[i];
            let mut trial = usage.clone();
            for &j in set {
                fleet.remove(&mut trial, &outcomes[j].counts, &contexts[j].demand);
            }
            fleet.remove(&mut trial, &oi.counts, &wc.demand);
            let kept = Kept { term: oi.term, counts: oi.counts.clone(), complete: false, degraded: false };
            let grown = extend(wc, fleet, filters, &trial, kept);
            if grown.placed() <= oi.placed() || board.intrudes(i, oi, &grown) {
                continue;
            }
            fleet.add(&mut trial, &grown.counts, &wc.demand);
            let grew = values[i] * (grown.placed() as f64 - oi.placed() as f64);
            // Blockers go back in placement order.
            let mut order = set.to_vec();
            order.sort_unstable();
            let mut moves = Vec::with_capacity(k);
            let mut spent = 0;
            let displace = (displacing > 0 && displace_failures < DISPLACE_FAILURES).then_some(&mut spent);
            let gain = grew + place_blockers(board, values, outcomes, trial, &order, i, displace, &mut moves);
            if spent > 0 {
                // Workloads displaced come in `moves` beside the blockers.
                displace_failures = if moves.len() > k { 0 } else { displace_failures + 1 };
            }
            displacing = displacing.saturating_sub(spent);
            if gain <= 0.0 || best.as_ref().is_some_and(|b| gain <= b.0) {
                continue;
            }
            let changed: Vec<(usize, &Outcome)> =
                moves.iter().map(|(x, o)| (*x, o)).chain(std::iter::once((i, &grown))).collect();
            if board.keeps_fixed_point(outcomes, &changed) {
                best = Some((gain, grown, moves));
            }
        }
        if best.is_some() {
            // A workload that gained earns back what its ranking and trials cost: at 5k x 100
            // the short batch workloads gained in about half their trades while the budget ran
            // out before most of them (gap 1.64% -> 1.31%); where trades fail (3k x 30,
            // 20k x 50) nothing is refunded and the time stays the same.
            let back = (before - *budget).min(*refunds);
            *refunds -= back;
            *budget += back;
            failed.remove(&filter);
        } else if !blockers.is_empty() {
            *failed.entry(filter).or_default() += 1;
        }
        if let Some((_, grown, mut moves)) = best {
            for (j, moved) in &mut moves {
                moved.events.push(format!("moved to make room for {}", wc.w.key()));
                board.freed.extend(outcomes[*j].counts.iter().map(|&(c, _)| c));
            }
            if !wc.previous.is_empty() {
                fleet.remove(&mut fixed, &outcomes[i].counts, &wc.demand);
                fleet.add(&mut fixed, &grown.counts, &wc.demand);
            }
            moves.push((i, grown));
            board.commit(usage, outcomes, moves);
            changed = true;
        }
    }
    changed
}

/// Places the blockers of a trade for workload `i` (`order`, in placement order) again from
/// scratch on `trial`, which holds the trade without them. Pushes their new outcomes, and those
/// of the workloads they displaced, to `moves` and returns the change in objective. With
/// `spent` (budget units, added to), a blocker left with fewer replicas than it had may
/// [`displace`] lower-valued workloads.
#[allow(clippy::too_many_arguments)]
fn place_blockers(
    board: &Board<'_>,
    values: &[f64],
    outcomes: &[Outcome],
    mut trial: Usage,
    order: &[usize],
    i: usize,
    mut spent: Option<&mut usize>,
    moves: &mut Vec<(usize, Outcome)>,
) -> f64 {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    let mut gain = 0.0;
    // The workloads the trial took out or moved: nothing displaces them again.
    let mut busy: Vec<usize> = order.iter().copied().chain(std::iter::once(i)).collect();
    for &j in order {
        let mut moved = contexts[j].place_fresh(fleet, filters, &trial);
        if let Some(spent) = spent.as_deref_mut()
            && moved.placed() < outcomes[j].placed()
        {
            let mut weighed = 0;
            let found = displace(board, values, outcomes, &mut trial, j, &moved, &busy, &mut weighed);
            // About a trial, plus the residents weighed (as when blockers are ranked).
            *spent += 1 + weighed / (RESIDENTS_PER_VISIT * fleet.clusters.len().max(1));
            if let Some((better, displaced)) = found {
                moved = better;
                for (x, o) in displaced {
                    gain += values[x] * (o.placed() as f64 - outcomes[x].placed() as f64);
                    busy.push(x);
                    moves.push((x, o));
                }
            }
        }
        fleet.add(&mut trial, &moved.counts, &contexts[j].demand);
        gain += values[j] * (moved.placed() as f64 - outcomes[j].placed() as f64);
        moves.push((j, moved));
    }
    gain
}

/// Blocker `j` of a trade came back with fewer replicas (`moved`) than it had: it makes room in
/// turn, one level deep. Lower-valued movable workloads on the clusters it admits and is short
/// of room on (most room freed first, at most [`BLOCKERS_PER_WORKLOAD`], none of `busy`) are
/// taken out, `j` is placed again and they are placed again after it, from scratch; kept when
/// that raises the objective. Trades at 5k x 100 moved a priority-1,000 Aggregated workload off
/// the one cluster the regulated workloads may use, and it came back smaller: the clusters it
/// could go to were full of low-priority batch replicas that only it, not the trade, could
/// displace.
///
/// `trial` holds the trade so far without `j`; when kept, it also holds the displaced
/// workloads' new placements (not `j`'s, which the caller adds), and `j`'s new outcome and
/// theirs are returned. `weighed` counts the residents weighed.
#[allow(clippy::too_many_arguments)]
fn displace(
    board: &Board<'_>,
    values: &[f64],
    outcomes: &[Outcome],
    trial: &mut Usage,
    j: usize,
    moved: &Outcome,
    busy: &[usize],
    weighed: &mut usize,
) -> Option<(Outcome, Vec<(usize, Outcome)>)> {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    let wj = &contexts[j];
    let missing = wj.replicas().saturating_sub(moved.placed());
    // Room each resident would free for `j`, in replicas of `j` of the resource that binds it.
    let mut freed: Vec<(usize, f64)> = Vec::new();
    for c in filters.mask(wj.filters[moved.term]).admitted() {
        let (fit, binding) = fleet.fit(trial, c, &wj.demand);
        let Some(b) = binding.filter(|_| fit < missing) else {
            continue;
        };
        let per = demand_of(wj, b).max(1) as f64;
        *weighed += board.residents[c].len();
        for &(x, here) in &board.residents[c] {
            if board.movable(x) && values[x] < values[j] && !busy.contains(&x) {
                freed.push((x, here as f64 * board.demand_of(x, b) as f64 / per));
            }
        }
    }
    freed.sort_by_key(|&(x, _)| x);
    let mut weight: Vec<(f64, usize)> = Vec::new();
    for (x, f) in freed {
        match weight.last_mut() {
            Some(last) if last.1 == x => last.0 += f,
            _ => weight.push((f, x)),
        }
    }
    weight.retain(|&(f, _)| f > 0.0);
    weight.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut set: Vec<usize> = weight.iter().take(BLOCKERS_PER_WORKLOAD).map(|&(_, x)| x).collect();
    if set.is_empty() {
        return None;
    }
    let mut after = trial.clone();
    for &x in &set {
        fleet.remove(&mut after, &outcomes[x].counts, &contexts[x].demand);
    }
    let better = wj.place_fresh(fleet, filters, &after);
    if better.placed() <= moved.placed() {
        return None;
    }
    let mut gain = values[j] * (better.placed() as f64 - moved.placed() as f64);
    fleet.add(&mut after, &better.counts, &wj.demand);
    set.sort_unstable();
    let mut displaced = Vec::with_capacity(set.len());
    for x in set {
        let again = contexts[x].place_fresh(fleet, filters, &after);
        fleet.add(&mut after, &again.counts, &contexts[x].demand);
        gain += values[x] * (again.placed() as f64 - outcomes[x].placed() as f64);
        displaced.push((x, again));
    }
    if gain <= 0.0 {
        return None;
    }
    fleet.remove(&mut after, &better.counts, &wj.demand);
    *trial = after;
    Some((better, displaced))
}

/// The clusters of `short` (`(cluster, binding resource)` pairs, in cluster order) whose blockers
/// a trade for `wc` weighs. With `numberOfClusters`, a trial can only grow the workload on the
/// clusters it uses plus as many new ones as the count leaves, so only those are weighed: the
/// used ones, then the new ones with the most room for it once the movable workloads are gone
/// (`alone`), ties by cluster. Weighing every admitted cluster ranked first the blockers spread
/// thinly over clusters the workload could never add, and cost a fleet's worth of residents per
/// workload (at 5k x 100 each short batch workload took about 20 trials' worth of the budget).
fn within_cluster_count(
    wc: &WorkloadCtx<'_>,
    fleet: &Fleet<'_>,
    alone: &Usage,
    counts: &[(usize, u64)],
    short: Vec<(usize, usize)>,
) -> Vec<(usize, usize)> {
    let Some(limit) = wc.w.number_of_clusters else {
        return short;
    };
    let (mut used, mut new): (Vec<_>, Vec<_>) = short.into_iter().partition(|&(c, _)| count_of(counts, c) > 0);
    let mut new: Vec<(u64, usize, usize)> =
        new.drain(..).map(|(c, b)| (fleet.fit(alone, c, &wc.demand).0, c, b)).collect();
    new.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    used.extend(new.into_iter().take((limit as usize).saturating_sub(counts.len())).map(|(_, c, b)| (c, b)));
    used
}

/// Regroup trials: a fresh Divided workload held back by `numberOfClusters` (short, on as many
/// clusters as it may use) is placed again from scratch with the clusters that have the most room
/// tried first ([`WorkloadCtx::roomy`]), and kept when it places more. The greedy pass ranks by
/// score alone there, so a workload can end on slivers of room on its best-scored clusters while
/// a cluster it admits holds it all (10k x 1k: low-priority batch workloads on five clusters with
/// a few replicas each, next to an empty cluster with room for all 28). Nobody else moves, so a
/// kept trial raises the objective; it lands nowhere a short preemptor guards.
fn regroup(board: &mut Board<'_>, usage: &mut Usage, outcomes: &mut [Outcome], budget: &mut usize) {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    for i in 0..contexts.len() {
        if *budget == 0 {
            break;
        }
        let (wc, o) = (&contexts[i], &outcomes[i]);
        if !held_by_count(wc, o) || !board.movable(i) {
            continue;
        }
        *budget -= 1;
        let mut others = usage.clone();
        fleet.remove(&mut others, &o.counts, &wc.demand);
        let Some(mut regrouped) = regrouped(wc, fleet, filters, &others, o) else {
            continue;
        };
        if !board.keeps_fixed_point(outcomes, &[(i, &regrouped)]) {
            continue;
        }
        if !wc.terms.is_empty() {
            wc.explain(fleet, filters, &others, &[], &mut regrouped);
        }
        board.freed.extend(o.counts.iter().map(|&(c, _)| c));
        board.commit(usage, outcomes, vec![(i, regrouped)]);
    }
}

/// Whether `o` leaves `wc` short with as many clusters as `numberOfClusters` allows, Divided and
/// not Aggregated (which already takes the roomiest clusters): what [`regrouped`] may improve.
fn held_by_count(wc: &WorkloadCtx<'_>, o: &Outcome) -> bool {
    let held = wc.w.number_of_clusters.is_some_and(|n| o.counts.len() >= n as usize);
    held && !o.complete && wc.divided() && wc.w.replica_scheduling.division != Division::Aggregated
}

/// A [`regroup`] trial for `wc`, a fresh workload that does not rebalance, left with `o`
/// (`others`: the usage without it): its placement from scratch with the roomiest clusters
/// tried first, when that places more; unexplained. The incremental placer places a single
/// fresh workload the same way, as the full solve's improvement step would leave it.
pub(crate) fn regrouped(
    wc: &WorkloadCtx<'_>,
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    others: &Usage,
    o: &Outcome,
) -> Option<Outcome> {
    if !held_by_count(wc, o) || wc.w.rebalance.policy != RebalancePolicy::Never {
        return None;
    }
    // It can place more only on a cluster it does not use with room for more than its smallest
    // share (it is short, so its own clusters are full for it). Such a cluster's usage is the
    // same with or without it.
    let smallest = o.counts.iter().map(|&(_, n)| n).min().unwrap_or(0);
    let more = AtMost::new(&wc.demand, smallest + 1);
    let roomier = |c: usize| count_of(&o.counts, c) == 0 && fleet.fit_at_most(others, c, &more) > smallest;
    if !wc.filters.iter().any(|&f| filters.mask(f).admitted_open().any(|(c, open)| open && roomier(c))) {
        return None;
    }
    let mut roomy = wc.clone();
    roomy.roomy = true;
    let regrouped = roomy.place_fresh_unexplained(fleet, filters, others);
    (regrouped.placed() > o.placed()).then_some(regrouped)
}

/// Replica shifts: for each incomplete workload, frees room on a cluster it may grow on by moving
/// single replicas (Divided) or whole copies (Duplicated) of complete fresh workloads to other
/// clusters they admit, then grows it. Nobody loses a replica, so a kept shift raises the
/// objective; it rearranges several workloads at once where the greedy pass left capacity in
/// fragments (Dynamic division spreads a workload over every cluster with room).
///
/// Weighted workloads keep the split their weights give and Aggregated ones their clusters (they
/// only shift between clusters they already use); every move keeps the moved workload's hard
/// constraints and the plan a fixed point of the next solve.
fn shift(board: &mut Board<'_>, usage: &mut Usage, outcomes: &mut [Outcome], budget: &mut usize) -> bool {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    let mut grew = false;
    for i in 0..contexts.len() {
        if *budget == 0 {
            break;
        }
        let (wc, oi) = (&contexts[i], &outcomes[i]);
        if oi.complete || wc.w.rebalance.policy != RebalancePolicy::Never {
            continue;
        }
        // Room on one cluster cannot start a placement that needs several groups at once: room
        // is made on one cluster in each group it needs together.
        if oi.placed() == 0 && wc.needs_several_groups() {
            grew |= shift_into_groups(board, usage, outcomes, budget, i);
            continue;
        }
        let mask = filters.mask(wc.filters[oi.term]);
        // Clusters `i` already uses first (growing there opens no cluster), then those it may
        // open.
        let (used, unused): (Vec<usize>, Vec<usize>) = mask
            .admitted()
            .filter(|&c| mask.admission(c) == Admission::Open && wc.may_take_more(&oi.counts, c))
            .filter(|&c| count_of(&oi.counts, c) > 0 || wc.may_open(&oi.counts, c))
            .partition(|&c| count_of(&oi.counts, c) > 0);
        let mut tried = 0;
        for c in used.into_iter().chain(unused) {
            if *budget == 0 || tried == SHIFT_TARGETS_PER_WORKLOAD || outcomes[i].complete {
                break;
            }
            let oi = &outcomes[i];
            let here = count_of(&oi.counts, c);
            // Units of `i` wanted on `c`: what is missing (within maxReplicasPerCluster), and the
            // least that helps (minReplicasPerCluster on a new cluster).
            let (want, need) = if wc.divided() {
                let missing = wc.replicas().saturating_sub(oi.placed()).min(wc.max_per().saturating_sub(here));
                (missing, if here == 0 { wc.min_per().max(1) } else { 1 })
            } else {
                (wc.replicas(), wc.replicas())
            };
            if want < need || here == 0 && board.guarded[c].is_some_and(|p| p > wc.w.priority) {
                continue;
            }
            // `i` stays in `trial` while room is made, so nothing moves into the room it holds.
            let mut trial = usage.clone();
            // A kept shift earns back what it spent: at 5k x 100 the regulated workloads, which
            // come first and gain from most of their shifts, spent the budget before the
            // workloads after them were reached.
            let before = *budget;
            *budget = budget.saturating_sub(fleet.clusters.len());
            // One target may spend a part of the budget only.
            let mut allowed = (*budget).min(SHIFT_VISITS_PER_TARGET);
            let mut shifted = Vec::new();
            let made = make_room(board, outcomes, &mut trial, &mut allowed, &mut shifted, i, c, want, need);
            *budget -= (*budget).min(SHIFT_VISITS_PER_TARGET) - allowed;
            if !made || shifted.is_empty() {
                continue;
            }
            tried += 1;
            fleet.remove(&mut trial, &oi.counts, &wc.demand);
            let kept = Kept { term: oi.term, counts: oi.counts.clone(), complete: false, degraded: false };
            let grown = extend(wc, fleet, filters, &trial, kept);
            *budget = budget.saturating_sub(fleet.clusters.len());
            if grown.placed() > oi.placed() && keep_shift(board, usage, outcomes, i, shifted, grown) {
                grew = true;
                *budget = before;
            }
        }
    }
    grew
}

/// Keeps a shift: the moved workloads take their `shifted` counts and workload `i` the `grown`
/// outcome, when the plan stays a fixed point. Returns whether it was kept.
fn keep_shift(
    board: &mut Board<'_>,
    usage: &mut Usage,
    outcomes: &mut [Outcome],
    i: usize,
    shifted: Vec<(usize, Counts)>,
    grown: Outcome,
) -> bool {
    let key = board.contexts[i].w.key();
    let mut moves: Vec<(usize, Outcome)> = shifted
        .into_iter()
        .map(|(j, counts)| {
            let mut moved = Outcome { counts, events: Vec::new(), ..outcomes[j].clone() };
            moved.events.push(format!("replicas moved to make room for {key}"));
            (j, moved)
        })
        .collect();
    let changed: Vec<(usize, &Outcome)> =
        moves.iter().map(|(x, o)| (*x, o)).chain(std::iter::once((i, &grown))).collect();
    if !board.keeps_fixed_point(outcomes, &changed) {
        return false;
    }
    // Units left the target clusters and, in exchanges, others: others may grow into what `i`
    // does not use (the final pass).
    board.freed.extend(moves.iter().flat_map(|(j, _)| outcomes[*j].counts.iter().map(|&(x, _)| x)));
    moves.push((i, grown));
    board.commit(usage, outcomes, moves);
    true
}

/// A shift for a workload with nothing placed that must start in several topology groups at
/// once (a spread's `minGroups`): room is made on the roomiest open cluster of each of that many
/// groups, one trial for all, and the workload is placed from scratch on the result, under the
/// first of its affinity groups (its current one first) where that works.
fn shift_into_groups(
    board: &mut Board<'_>,
    usage: &mut Usage,
    outcomes: &mut [Outcome],
    budget: &mut usize,
    i: usize,
) -> bool {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    let (wc, current) = (&contexts[i], outcomes[i].term);
    // Its current affinity group first, then the others in order: with nothing placed, any
    // group may start it (at 40 x 6 exact mode starts one in its third group).
    let terms = std::iter::once(current).chain((0..wc.terms.len()).filter(move |&t| t != current));
    for term in terms {
        if *budget == 0 {
            break;
        }
        let mask = filters.mask(wc.filters[term]);
        let open = mask
            .admitted()
            .filter(|&c| mask.admission(c) == Admission::Open && board.guarded[c].is_none_or(|p| p <= wc.w.priority));
        let targets = wc.group_targets(open, |c| fleet.fit(usage, c, &wc.demand).0);
        if targets.is_empty() {
            continue;
        }
        let (want, need) = if wc.divided() {
            let per = wc.replicas().div_ceil(targets.len() as u64).min(wc.max_per());
            (per.max(wc.min_per()), wc.min_per().max(1))
        } else {
            (wc.replicas(), wc.replicas())
        };
        let mut trial = usage.clone();
        let mut shifted = Vec::new();
        let mut made = true;
        for &c in &targets {
            *budget = budget.saturating_sub(fleet.clusters.len());
            let mut allowed = (*budget).min(SHIFT_VISITS_PER_TARGET);
            made &= make_room(board, outcomes, &mut trial, &mut allowed, &mut shifted, i, c, want, need);
            *budget -= (*budget).min(SHIFT_VISITS_PER_TARGET) - allowed;
            if !made {
                break;
            }
        }
        if !made || shifted.is_empty() {
            continue;
        }
        let kept = Kept { term, counts: Counts::new(), complete: false, degraded: false };
        let grown = extend(wc, fleet, filters, &trial, kept);
        *budget = budget.saturating_sub(fleet.clusters.len());
        if grown.placed() > 0 && keep_shift(board, usage, outcomes, i, shifted, grown) {
            return true;
        }
    }
    false
}

/// Moves units of complete movable workloads off cluster `c` until `want` more replicas of
/// workload `i` (placed in `trial`) fit there, or nothing more can move. Each step frees the resource
/// that binds `i` on `c`: a resident's unit moves to another cluster with room, or, where none has
/// room, is exchanged with a unit of another workload there that needs less of that resource
/// (clusters full of one resource and short of another trade). Returns the moved workloads' new
/// counts in `shifted` (which may hold earlier moves of the same trial) and whether at least
/// `need` more fit. `trial` holds the moves.
#[allow(clippy::too_many_arguments)]
fn make_room(
    board: &Board<'_>,
    outcomes: &[Outcome],
    trial: &mut Usage,
    budget: &mut usize,
    shifted: &mut Vec<(usize, Counts)>,
    i: usize,
    c: usize,
    want: u64,
    need: u64,
) -> bool {
    let (contexts, fleet) = (board.contexts, board.fleet);
    let demand = &contexts[i].demand;
    for _ in 0..MAX_SHIFTS_PER_CLUSTER {
        let (fit, binding) = fleet.fit(trial, c, demand);
        let Some(b) = binding.filter(|_| fit < want) else {
            break;
        };
        // What a unit of resident `j` (on `c` or elsewhere) needs of the binding resource.
        let need_of = |j: usize| -> u128 {
            let wj = &contexts[j];
            demand_of(wj, b).saturating_mul(u128::from(unit_of(wj)))
        };
        // Residents of `c` that may move, most of the binding resource per unit first.
        let mut movers: Vec<(u128, usize)> = board.residents[c]
            .iter()
            .filter(|&&(j, _)| j != i && outcomes[j].complete && board.movable(j))
            .map(|&(j, _)| (need_of(j), j))
            .filter(|&(q, _)| q > 0)
            .collect();
        movers.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        let mut step: Option<Vec<(usize, Counts, Counts)>> = None;
        // A move to a cluster with room.
        for &(_, j) in &movers {
            let counts = counts_in(shifted, outcomes, j);
            let wj = &contexts[j];
            // The first cluster with room only: when the move there breaks a constraint, the next
            // resident is tried (trying every cluster did worse at 1k x 100: gap 4.42% against 4.22%).
            let to = targets(board, outcomes, j, counts).find(|&to| {
                *budget = budget.saturating_sub(1);
                to != c && fleet.fit(trial, to, &wj.demand).0 >= unit_of(wj)
            });
            if let Some(after) = to.and_then(|to| move_unit(board, outcomes, j, counts, c, to)) {
                step = Some(vec![(j, counts.clone(), after)]);
                break;
            }
        }
        // An exchange: `j` leaves `c` for `to`, and `k` comes from `to` to `c`, needing less.
        if step.is_none() {
            'found: for &(qj, j) in &movers {
                let counts_j = counts_in(shifted, outcomes, j);
                let wj = &contexts[j];
                for to in targets(board, outcomes, j, counts_j) {
                    if *budget == 0 {
                        break 'found;
                    }
                    if to == c {
                        continue;
                    }
                    let Some(after_j) = move_unit(board, outcomes, j, counts_j, c, to) else {
                        continue;
                    };
                    // Only movable residents count against the budget, so the Placer's partial
                    // path (which sees no settled workloads) spends it as a full re-plan does.
                    for &(k, _) in board.residents[to].iter().filter(|&&(k, _)| board.movable(k)) {
                        *budget = budget.saturating_sub(1);
                        let wk = &contexts[k];
                        if k == i || k == j || !outcomes[k].complete || need_of(k) >= qj {
                            continue;
                        }
                        let (uj, uk) = (unit_of(wj), unit_of(wk));
                        if !fleet.exchange_fits(trial, to, (&wj.demand, uj), (&wk.demand, uk))
                            || !fleet.exchange_fits(trial, c, (&wk.demand, uk), (&wj.demand, uj))
                        {
                            continue;
                        }
                        let counts_k = counts_in(shifted, outcomes, k);
                        if let Some(after_k) = move_unit(board, outcomes, k, counts_k, to, c) {
                            step = Some(vec![(j, counts_j.clone(), after_j), (k, counts_k.clone(), after_k)]);
                            break 'found;
                        }
                    }
                }
            }
        }
        let Some(step) = step else {
            break;
        };
        for (j, before, after) in step {
            fleet.remove(trial, &before, &contexts[j].demand);
            fleet.add(trial, &after, &contexts[j].demand);
            match shifted.iter_mut().find(|(x, _)| *x == j) {
                Some(e) => e.1 = after,
                None => shifted.push((j, after)),
            }
        }
    }
    fleet.fit(trial, c, demand).0 >= need
}

/// What one replica of `wc` needs of resource `r` (0 when it does not ask for it).
fn demand_of(wc: &WorkloadCtx<'_>, r: usize) -> u128 {
    wc.demand.0.iter().find(|&&(x, _)| x == r).map_or(0, |&(_, q)| q)
}

/// Workload `j`'s counts during a trial: as moved so far (`shifted`), else as in the plan.
fn counts_in<'c>(shifted: &'c [(usize, Counts)], outcomes: &'c [Outcome], j: usize) -> &'c Counts {
    shifted.iter().find(|(x, _)| *x == j).map_or(&outcomes[j].counts, |(_, k)| k)
}

/// The replicas a unit of workload `wc` moves: one (Divided) or a whole copy (Duplicated).
fn unit_of(wc: &WorkloadCtx<'_>) -> u64 {
    if wc.divided() { 1 } else { wc.replicas() }
}

/// Where the units of a workload may move under its division's own rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Nowhere: a Weighted workload keeps the split its weights give, and a Duplicated one
    /// without `numberOfClusters` wants a copy on every cluster with room (it would take back a
    /// cluster it left).
    Nowhere,
    /// Between the clusters it uses (Aggregated: as few clusters as possible).
    Own,
    /// To any cluster its affinity group admits.
    Anywhere,
}

/// How far the units of `wc` may move.
fn reach(wc: &WorkloadCtx<'_>) -> Reach {
    if !wc.divided() {
        return if wc.w.number_of_clusters.is_some() { Reach::Anywhere } else { Reach::Nowhere };
    }
    match wc.w.replica_scheduling.division {
        Division::Weighted => Reach::Nowhere,
        Division::Aggregated => Reach::Own,
        Division::Dynamic => Reach::Anywhere,
    }
}

/// The clusters a unit of workload `j` (holding `counts`) may move to, before room and hard
/// constraints are checked: for Divided, the clusters it uses, then (with [`Reach::Anywhere`])
/// the other clusters its affinity group admits; for Duplicated, the admitted clusters without a
/// copy. None for [`Reach::Nowhere`].
fn targets<'b>(
    board: &'b Board<'_>,
    outcomes: &[Outcome],
    j: usize,
    counts: &'b Counts,
) -> impl Iterator<Item = usize> + 'b {
    let wj = &board.contexts[j];
    let reach = reach(wj);
    let mask = board.filters.mask(wj.filters[outcomes[j].term]);
    let own = counts.iter().map(|&(c, _)| c).take(if reach != Reach::Nowhere && wj.divided() { usize::MAX } else { 0 });
    let others = mask
        .admitted()
        .take(if reach == Reach::Anywhere { usize::MAX } else { 0 })
        .filter(move |&c| count_of(counts, c) == 0);
    own.chain(others)
}

/// Workload `j`'s counts after one unit moves from cluster `from` to `to` (room aside), or `None`
/// when the move breaks a hard constraint (admission, per-cluster bounds, a Duplicated copy per
/// cluster, `numberOfClusters`, spread) or its division's rules ([`Reach`]: the exchanges move
/// residents that [`targets`] did not list), or puts `j` on a guarded cluster it did not use.
fn move_unit(
    board: &Board<'_>,
    outcomes: &[Outcome],
    j: usize,
    counts: &Counts,
    from: usize,
    to: usize,
) -> Option<Counts> {
    let wj = &board.contexts[j];
    let unit = unit_of(wj);
    let (here, there) = (count_of(counts, from), count_of(counts, to));
    let mask = board.filters.mask(wj.filters[outcomes[j].term]);
    let reaches = match reach(wj) {
        Reach::Nowhere => false,
        Reach::Own => there > 0,
        Reach::Anywhere => true,
    };
    if from == to || here < unit || !reaches || mask.admission(to) != Admission::Open {
        return None;
    }
    if wj.divided() {
        // A Divided cluster keeps none or at least minReplicasPerCluster, and at most the maximum.
        let (min_per, max_per) = (wj.min_per(), wj.max_per());
        if here > 1 && here - 1 < min_per || there + 1 > max_per || there == 0 && min_per > 1 {
            return None;
        }
    } else if there > 0 {
        return None;
    }
    if count_of(&outcomes[j].counts, to) == 0 && board.guarded[to].is_some_and(|p| p > wj.w.priority) {
        return None;
    }
    let mut after = counts.clone();
    set_count(&mut after, from, here - unit);
    set_count(&mut after, to, there + unit);
    let too_many = wj.w.number_of_clusters.is_some_and(|m| after.len() > m as usize);
    (!too_many && wj.spread_violation(&after).is_none()).then_some(after)
}

/// The last pass, in placement order, does what the next solve (which keeps every decision)
/// would do first: every incomplete workload (and Duplicated one that takes every cluster) grows
/// into room it may use, and a preemptor still short then takes back room from later,
/// lower-priority replicas.
///
/// Room the moves left is one reason to grow. The other is that placing is a heuristic and not
/// monotone in free capacity: a workload that stopped short when it was placed can extend on the
/// fuller fleet the later workloads leave (a spread with maxSkew 0 repaired another way), and a
/// preemptor placed alone before them can then reach more. So an incomplete workload is checked
/// on every cluster it admits (one capacity check each, an extension only where one more unit
/// fits); a Duplicated one that takes every cluster fills clusters monotonically and is checked
/// on freed clusters only.
fn settle(board: &mut Board<'_>, usage: &mut Usage, outcomes: &mut [Outcome]) {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    board.freed.sort_unstable();
    board.freed.dedup();
    // The guards as they stand now: a preemptor a trial completed no longer takes anything.
    board.guard_all(outcomes);
    // What the workloads before `x` use: where a preemptor's placement is capped, as if every
    // later workload were gone (see `super::preempt`).
    let mut before = fleet.empty_usage();
    // Clusters with room for one more unit under `usage`, by demand and unit (short workloads
    // share a few demands, and most of their clusters are full); cleared when `usage` changes.
    let mut rooms: BTreeMap<RoomKey, Vec<u64>> = BTreeMap::new();
    for x in 0..contexts.len() {
        let (wc, o) = (&contexts[x], &outcomes[x]);
        // A Duplicated workload without numberOfClusters wants every cluster with room: the next
        // solve extends it into the freed ones whatever its rebalance policy, so it grows here.
        let every_cluster = !wc.divided() && wc.w.number_of_clusters.is_none();
        let short = !o.complete && wc.w.rebalance.policy == RebalancePolicy::Never;
        let grows = if short {
            let key = (wc.demand.0.clone(), unit_of(wc));
            let room = rooms.entry(key).or_insert_with(|| room_bits(fleet, usage, &wc.demand, unit_of(wc)));
            filters.mask(wc.filters[o.term]).open_in(room).any(|c| may_grow_on(wc, filters, o, c))
        } else if every_cluster {
            let mask = filters.mask(wc.filters[o.term]);
            board.freed.iter().any(|&c| {
                mask.admission(c) != Admission::Closed
                    && wc.may_take_more(&o.counts, c)
                    && fleet.fit(usage, c, &wc.demand).0 >= unit_of(wc)
            })
        } else {
            false
        };
        if grows {
            let mut others = usage.clone();
            fleet.remove(&mut others, &o.counts, &wc.demand);
            let mut grown = extended_fully(wc, fleet, filters, &others, o);
            // The next solve extends it into every cluster with room whatever the guards say
            // (they are this step's), so it grows here too.
            if grown.placed() > o.placed() {
                rooms.clear();
                let intrudes = !every_cluster && board.intrudes(x, o, &grown);
                fleet.remove(usage, &o.counts, &wc.demand);
                fleet.add(usage, &grown.counts, &wc.demand);
                let completes = grown.complete && !o.complete && wc.w.preemption == Preemption::PreemptLowerPriority;
                grown.events.append(&mut outcomes[x].events);
                outcomes[x] = grown;
                board.first_changed = board.first_changed.min(x);
                board.changed[x] = true;
                if completes {
                    board.guard_all(outcomes);
                }
                // A short preemptor placed before it guards a cluster it grew onto: the next
                // solve gives that preemptor its turn first, with these replicas kept, so it
                // gets it now (the guard only says it may take more there, not that it can).
                if intrudes {
                    let priority = wc.w.priority;
                    for p in 0..x {
                        if may_preempt(&contexts[p], &outcomes[p]) && contexts[p].w.priority > priority {
                            preempt_as_next_solve(board, usage, outcomes, p);
                            rooms.clear();
                        }
                    }
                    before = fleet.empty_usage();
                    for j in 0..x {
                        fleet.add(&mut before, &outcomes[j].counts, &contexts[j].demand);
                    }
                }
            }
        }
        // Still short, it preempts: the next solve, too, extends what it keeps first. Until it
        // stops gaining: a preemption sized per cluster can gain less than it evicted for (a
        // spread with maxSkew 0 uses one replica of three freed), the victims take the rest
        // back, and the next solve would preempt again from the larger placement.
        while may_preempt(&contexts[x], &outcomes[x])
            && has_room_alone(&contexts[x], filters, fleet, &before, &outcomes[x])
        {
            let placed = outcomes[x].placed();
            preempt_as_next_solve(board, usage, outcomes, x);
            rooms.clear();
            if outcomes[x].placed() <= placed {
                break;
            }
        }
        fleet.add(&mut before, &outcomes[x].counts, &contexts[x].demand);
    }
}

/// A demand per replica and the replicas in one unit of it.
type RoomKey = (Vec<(usize, u128)>, u64);

/// The clusters (a bitset) with room under `usage` for one more `unit` of `demand`.
fn room_bits(fleet: &Fleet<'_>, usage: &Usage, demand: &Demand, unit: u64) -> Vec<u64> {
    let n = fleet.clusters.len();
    let one_more = AtMost::new(demand, unit);
    let mut bits = vec![0u64; n.div_ceil(64)];
    for c in (0..n).filter(|&c| fleet.fit_at_most(usage, c, &one_more) >= unit) {
        bits[c / 64] |= 1 << (c % 64);
    }
    bits
}

/// Whether the workload, left with `o`, may take one more unit on open cluster `c` by its own
/// rules: within `maxReplicasPerCluster`, a static weight above 0 (Weighted), and when `c` is
/// new, within `numberOfClusters` and every spread's `maxGroups`.
fn may_grow_on(wc: &WorkloadCtx<'_>, filters: &Filters<'_>, o: &Outcome, c: usize) -> bool {
    wc.may_take_more(&o.counts, c)
        && (!wc.uses_static_weights() || wc.static_weight(filters, c) > 0)
        && (count_of(&o.counts, c) > 0 || wc.may_open(&o.counts, c))
}

/// Whether the workload, left with `o`, could place one more unit on some open cluster of its
/// affinity group (keep-only ones keep replicas and take none) under `alone`, a usage without
/// its own replicas (so the room must exceed them), where it may grow ([`may_grow_on`]).
fn has_room_alone(wc: &WorkloadCtx<'_>, filters: &Filters<'_>, fleet: &Fleet<'_>, alone: &Usage, o: &Outcome) -> bool {
    let mask = filters.mask(wc.filters[o.term]);
    mask.admitted().any(|c| {
        mask.admission(c) == Admission::Open
            && fleet.fit(alone, c, &wc.demand).0 >= count_of(&o.counts, c) + unit_of(wc)
            && may_grow_on(wc, filters, o, c)
    })
}

/// What the next solve does for short preemptor `x`, which keeps every decision: it takes back
/// room from later, lower-priority replicas ([`super::preempt`]) where that lets it place more.
/// The moves can have freed room that it reaches that way only (a lower-priority copy holds the
/// other half of what its skew needs), so it does so now; the victims keep what is left, grown
/// where they still fit, and are visited again in their own turn.
fn preempt_as_next_solve(board: &mut Board<'_>, usage: &mut Usage, outcomes: &mut [Outcome], x: usize) {
    let (contexts, fleet, filters) = (board.contexts, board.fleet, board.filters);
    let (wc, o) = (&contexts[x], &outcomes[x]);
    let mut kept: Vec<Option<Kept>> = outcomes
        .iter()
        .enumerate()
        .map(|(j, oj)| {
            (j > x && !oj.counts.is_empty()).then(|| Kept {
                term: oj.term,
                counts: oj.counts.clone(),
                complete: oj.complete,
                degraded: false,
            })
        })
        .collect();
    let mut others = usage.clone();
    fleet.remove(&mut others, &o.counts, &wc.demand);
    let victims = Victims { contexts, first: x + 1, priority: wc.w.priority };
    let mut events = vec![Vec::new(); contexts.len()];
    let decided = wc.as_decided(&o.counts);
    let Some(better) =
        super::preempt(&decided, fleet, filters, &mut others, &mut kept, &victims, &o.counts, o, &mut events)
    else {
        return;
    };
    // `others` now holds every victim's remaining replicas; each grows where it still fits, as
    // it would in its turn on the next solve.
    fleet.add(&mut others, &better.counts, &wc.demand);
    let mut changed = vec![(x, better)];
    for (j, k) in kept.into_iter().enumerate() {
        let Some(k) = k.filter(|k| k.counts != outcomes[j].counts) else { continue };
        fleet.remove(&mut others, &k.counts, &contexts[j].demand);
        let mut regrown = extend(&contexts[j].as_decided(&outcomes[j].counts), fleet, filters, &others, k);
        fleet.add(&mut others, &regrown.counts, &contexts[j].demand);
        regrown.events.append(&mut events[j]);
        board.freed.extend(outcomes[j].counts.iter().map(|&(c, _)| c));
        changed.push((j, regrown));
    }
    board.commit(usage, outcomes, changed);
    board.guard_all(outcomes);
}

/// A fresh workload that rebalances was placed where it would go against the workloads placed
/// before it, which is where the next solve measures its rebalance target. Moves above can change
/// what is before it; each such workload goes now where the next solve would move it, in
/// placement order (a move changes what is before the later ones). Returns the first that
/// moved.
fn follow_rebalance_targets(
    contexts: &[WorkloadCtx<'_>],
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    usage: &mut Usage,
    outcomes: &mut [Outcome],
    first_changed: usize,
) -> Option<usize> {
    let mut moved = None;
    if first_changed >= contexts.len() {
        return moved;
    }
    let mut before = fleet.empty_usage();
    for (x, wc) in contexts.iter().enumerate() {
        let o = &outcomes[x];
        if x > first_changed && o.complete && wc.previous.is_empty() && wc.w.rebalance.policy != RebalancePolicy::Never
        {
            let mut others = usage.clone();
            fleet.remove(&mut others, &o.counts, &wc.demand);
            let kept = Kept { term: o.term, counts: o.counts.clone(), complete: true, degraded: false };
            // Nothing runs yet, so the whole move is free: no maxMovesPerRound to respect.
            if let Some(mut target) = wc.rebalance_target(fleet, filters, &others, &before, &kept) {
                fleet.remove(usage, &o.counts, &wc.demand);
                fleet.add(usage, &target.counts, &wc.demand);
                target.events.append(&mut outcomes[x].events);
                outcomes[x] = target;
                moved = moved.or(Some(x));
            }
        }
        fleet.add(&mut before, &outcomes[x].counts, &wc.demand);
    }
    moved
}

/// Whether workload `wc`, left with outcome `o`, may preempt on the next solve: it is incomplete
/// and its policy allows it.
fn may_preempt(wc: &WorkloadCtx<'_>, o: &Outcome) -> bool {
    !o.complete && wc.w.preemption == Preemption::PreemptLowerPriority
}

/// Whether workload `wc`, left with outcome `o`, would preempt on cluster `c` on the next solve
/// (as far as can be told without trying): it is incomplete and may preempt, `c` is open to it,
/// it could place more there, and a lower priority than its own (`lowest` on `c`) holds replicas
/// there.
fn exposed(wc: &WorkloadCtx<'_>, filters: &Filters<'_>, o: &Outcome, c: usize, lowest: Option<i32>) -> bool {
    may_preempt(wc, o)
        && lowest.is_some_and(|p| p < wc.w.priority)
        && filters.mask(wc.filters[o.term]).admission(c) == Admission::Open
        && wc.may_take_more(&o.counts, c)
}
