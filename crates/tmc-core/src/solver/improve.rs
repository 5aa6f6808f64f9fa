//! The improvement step after the greedy pass: make room for workloads that are not fully placed
//! by moving a workload that was placed fresh in this solve elsewhere.
//!
//! The greedy pass places workloads one at a time, so an early workload can fill the only
//! clusters a later one may use while it could have gone elsewhere. For each workload that is not
//! fully placed (highest priority first), the step tries a few *blockers*: workloads placed fresh
//! in this solve (no previous decisions, so nothing running moves) with replicas on clusters the
//! workload admits. Workloads that rebalance neither move nor grow here (the next solve would
//! move them toward their own best placement). A trial takes the blocker out, extends the workload (it only grows) and
//! places the blocker again from scratch. It is kept when the certified objective (replicas
//! weighted by priority) rises, even when a blocker of higher priority ends with fewer replicas:
//! the objective weighs priorities linearly, and a workload that may not preempt has no claim on
//! lower-priority replicas (one that may is never left short next to them, see below). Trading a
//! higher-priority Duplicated copy for more lower-priority replicas is what took the fast solver
//! from 92.8% to 100% of the exact optimum at 30 x 5 (`exact_vs_fast`). A final pass extends
//! every incomplete workload (and every Duplicated one that takes all clusters) into whatever
//! room the moves left.
//!
//! The plan must be a fixed point of the next solve, which keeps it and then preempts and
//! rebalances by its rules. So a trial is refused when it leaves a workload that may preempt
//! short next to lower-priority replicas it could displace, lower priorities never move onto
//! clusters where a short preemptor could place more, and fresh workloads that rebalance go
//! where the next solve would move them once the moves have changed what is placed before them.
//!
//! Work is bounded: a few blockers per workload and a trial budget inversely proportional to the
//! fleet size (a trial costs about one placement over the fleet), so large fleets pay little. Deterministic: fixed orders, ties by index.

use super::{
    extend,
    filter::{Admission, Filters},
    fleet::{Fleet, Usage},
    place::{Kept, Outcome, WorkloadCtx, count_of},
};
use crate::{Preemption, RebalancePolicy};

/// A trial's gain, the grown outcome and the blockers' new outcomes.
type Trial = (f64, Outcome, Vec<(usize, Outcome)>);

/// The improvement step's budget, in cluster visits (trials x clusters).
const TRIAL_CLUSTER_VISITS: usize = 30_000;

/// Blockers tried per workload.
const BLOCKERS_PER_WORKLOAD: usize = 4;

/// Moves fresh placements out of the way of incomplete ones where that raises the objective.
/// `usage` is the whole plan's usage and is kept in step with `outcomes`.
pub(crate) fn improve(
    contexts: &[WorkloadCtx<'_>],
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    values: &[f64],
    usage: &mut Usage,
    outcomes: &mut [Outcome],
) {
    let n = contexts.len();
    // Per cluster, the highest priority of an incomplete workload that may preempt there (any
    // affinity group). Replicas of a lower priority moved or grown onto such a cluster would be
    // preempted on the next solve, so they may not go there.
    let mut guarded: Vec<Option<i32>> = vec![None; fleet.clusters.len()];
    let guard = |guarded: &mut [Option<i32>], wc: &WorkloadCtx<'_>, o: &Outcome| {
        if o.complete || wc.w.preemption != Preemption::PreemptLowerPriority {
            return;
        }
        for &f in &wc.filters {
            for c in filters.mask(f).admitted().filter(|&c| wc.may_take_more(&o.counts, c)) {
                guarded[c] = guarded[c].max(Some(wc.w.priority));
            }
        }
    };
    // Every incomplete preemptor's clusters, from scratch.
    let guard_all = |guarded: &mut [Option<i32>], outcomes: &[Outcome]| {
        guarded.iter_mut().for_each(|g| *g = None);
        for (wc, o) in contexts.iter().zip(outcomes) {
            guard(guarded, wc, o);
        }
    };
    guard_all(&mut guarded, outcomes);
    let intrudes = |guarded: &[Option<i32>], x: usize, old: &Outcome, new: &Outcome| {
        new.counts
            .iter()
            .any(|&(c, _)| count_of(&old.counts, c) == 0 && guarded[c].is_some_and(|p| p > contexts[x].w.priority))
    };
    // A trial costs about one placement over the fleet, so the budget is in cluster visits: about
    // 30,000 (300 trials at 100 clusters, 30 at 1,000), at least 16 trials.
    let mut budget = (TRIAL_CLUSTER_VISITS / fleet.clusters.len().max(1)).max(16);
    // What the workloads that may not move (they had previous decisions) use: a workload that
    // cannot grow even with every movable one gone is not worth a trial.
    let mut fixed = fleet.empty_usage();
    for (wc, o) in contexts.iter().zip(outcomes.iter()) {
        if !wc.previous.is_empty() {
            fleet.add(&mut fixed, &o.counts, &wc.demand);
        }
    }
    // Clusters blockers left.
    let mut freed: Vec<usize> = Vec::new();
    // The first workload (in placement order) whose outcome changed.
    let mut first_changed = n;
    // Workloads with replicas on each cluster, by placement index.
    let mut residents: Vec<Vec<usize>> = vec![Vec::new(); fleet.clusters.len()];
    for (j, o) in outcomes.iter().enumerate() {
        for &(c, _) in &o.counts {
            residents[c].push(j);
        }
    }
    for i in 0..n {
        if budget == 0 {
            break;
        }
        let wc = &contexts[i];
        // A rebalancing workload's placement is compared with its own best one on the next
        // solve; growing it here would make it move then.
        if outcomes[i].complete || wc.w.rebalance.policy != RebalancePolicy::Never {
            continue;
        }
        budget -= 1;
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
        // Blockers: fresh workloads on the clusters `i` admits, most replicas there first.
        let mut weight: Vec<(u64, usize)> = Vec::new();
        for c in mask.admitted() {
            for &j in &residents[c] {
                // Only fresh workloads move, and not those that rebalance: they would move back
                // toward their own best placement on the next solve.
                let movable =
                    contexts[j].previous.is_empty() && contexts[j].w.rebalance.policy == RebalancePolicy::Never;
                if j == i || !movable {
                    continue;
                }
                let here = count_of(&outcomes[j].counts, c);
                match weight.iter_mut().find(|(_, x)| *x == j) {
                    Some(e) => e.0 += here,
                    None => weight.push((here, j)),
                }
            }
        }
        weight.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // Trials: the first blocker, then the first two, ... (several workloads may share the
        // cluster `i` needs).
        let blockers: Vec<usize> = weight.iter().take(BLOCKERS_PER_WORKLOAD).map(|&(_, j)| j).collect();
        let mut best: Option<Trial> = None;
        for k in 1..=blockers.len() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let set = &blockers[..k];
            let oi = &outcomes[i];
            let mut trial = usage.clone();
            for &j in set {
                fleet.remove(&mut trial, &outcomes[j].counts, &contexts[j].demand);
            }
            fleet.remove(&mut trial, &oi.counts, &wc.demand);
            let kept = Kept { term: oi.term, counts: oi.counts.clone(), complete: false, degraded: false };
            let grown = extend(wc, fleet, filters, &trial, kept);
            if grown.placed() <= oi.placed() || intrudes(&guarded, i, oi, &grown) {
                continue;
            }
            fleet.add(&mut trial, &grown.counts, &wc.demand);
            let mut gain = values[i] * (grown.placed() as f64 - oi.placed() as f64);
            let mut allowed = true;
            let mut moves = Vec::with_capacity(k);
            // Blockers go back in placement order.
            let mut order = set.to_vec();
            order.sort_unstable();
            for j in order {
                let oj = &outcomes[j];
                let moved = contexts[j].place_fresh(fleet, filters, &trial);
                fleet.add(&mut trial, &moved.counts, &contexts[j].demand);
                gain += values[j] * (moved.placed() as f64 - oj.placed() as f64);
                allowed &= !intrudes(&guarded, j, oj, &moved);
                moves.push((j, moved));
            }
            // An incomplete workload that may preempt would, on the next solve, take the
            // replicas of lower priorities on clusters where it could place more: the plan
            // would not be stable. The moved and grown workloads are checked on all their
            // clusters, the others on the clusters this trial changes.
            let priority_on = |c: usize| {
                let stayed =
                    residents[c].iter().filter(|x| !set.contains(x) && **x != i).map(|&x| contexts[x].w.priority);
                let arrived = moves
                    .iter()
                    .map(|(x, o)| (*x, o))
                    .chain(std::iter::once((i, &grown)))
                    .filter(|(_, o)| count_of(&o.counts, c) > 0)
                    .map(|(x, _)| contexts[x].w.priority);
                stayed.chain(arrived).min()
            };
            let changed = moves.iter().map(|(x, o)| (*x, o)).chain(std::iter::once((i, &grown)));
            allowed &= changed.clone().all(|(x, o)| {
                !may_preempt(&contexts[x], o) || {
                    let admitted = filters.mask(contexts[x].filters[o.term]).admitted();
                    !admitted.into_iter().any(|c| exposed(&contexts[x], filters, o, c, priority_on(c)))
                }
            });
            if allowed {
                let mut touched: Vec<usize> = set
                    .iter()
                    .map(|&j| &outcomes[j])
                    .chain(std::iter::once(oi))
                    .chain(changed.map(|(_, o)| o))
                    .flat_map(|o| o.counts.iter().map(|&(c, _)| c))
                    .collect();
                touched.sort_unstable();
                touched.dedup();
                allowed = (0..n).filter(|x| *x != i && !set.contains(x)).all(|x| {
                    let o = &outcomes[x];
                    !may_preempt(&contexts[x], o)
                        || !touched.iter().any(|&c| exposed(&contexts[x], filters, o, c, priority_on(c)))
                });
            }
            if allowed && gain > 0.0 && best.as_ref().is_none_or(|b| gain > b.0) {
                best = Some((gain, grown, moves));
            }
        }
        if let Some((_, grown, moves)) = best {
            let mut changed: Vec<(usize, Outcome)> = moves;
            for (j, moved) in &mut changed {
                moved.events.push(format!("moved to make room for {}", wc.w.key()));
                freed.extend(outcomes[*j].counts.iter().map(|&(c, _)| c));
            }
            if !wc.previous.is_empty() {
                fleet.remove(&mut fixed, &outcomes[i].counts, &wc.demand);
                fleet.add(&mut fixed, &grown.counts, &wc.demand);
            }
            changed.push((i, grown));
            for (x, new) in &mut changed {
                first_changed = first_changed.min(*x);
                fleet.remove(usage, &outcomes[*x].counts, &contexts[*x].demand);
                for &(c, _) in &outcomes[*x].counts {
                    residents[c].retain(|y| y != x);
                }
                let mut old_events = std::mem::take(&mut outcomes[*x].events);
                old_events.append(&mut new.events);
                new.events = old_events;
            }
            for (x, new) in changed {
                // A blocker left incomplete may preempt on the next solve: guard its clusters too.
                guard(&mut guarded, &contexts[x], &new);
                fleet.add(usage, &new.counts, &contexts[x].demand);
                for &(c, _) in &new.counts {
                    residents[c].push(x);
                }
                outcomes[x] = new;
            }
        }
    }
    // Room the moves left: every incomplete workload (or Duplicated one that takes every cluster)
    // that may use a cluster a blocker left grows into it, in placement order.
    if freed.is_empty() {
        return;
    }
    freed.sort_unstable();
    freed.dedup();
    // The guards as they stand now: a preemptor a trial completed no longer takes anything.
    guard_all(&mut guarded, outcomes);
    for x in 0..n {
        let (wc, o) = (&contexts[x], &outcomes[x]);
        // A Duplicated workload without numberOfClusters wants every cluster with room: the next
        // solve extends it into the freed ones whatever its rebalance policy, so it grows here.
        let every_cluster = !wc.divided() && wc.w.number_of_clusters.is_none();
        if !(every_cluster || !o.complete && wc.w.rebalance.policy == RebalancePolicy::Never) {
            continue;
        }
        let mask = filters.mask(wc.filters[o.term]);
        if !freed.iter().any(|&c| mask.admission(c) != Admission::Closed) {
            continue;
        }
        let mut others = usage.clone();
        fleet.remove(&mut others, &o.counts, &wc.demand);
        let kept = Kept { term: o.term, counts: o.counts.clone(), complete: false, degraded: false };
        let mut grown = extend(wc, fleet, filters, &others, kept);
        if grown.placed() > o.placed() && !intrudes(&guarded, x, o, &grown) {
            fleet.remove(usage, &o.counts, &wc.demand);
            fleet.add(usage, &grown.counts, &wc.demand);
            let completes = grown.complete && !o.complete && wc.w.preemption == Preemption::PreemptLowerPriority;
            grown.events.append(&mut outcomes[x].events);
            outcomes[x] = grown;
            first_changed = first_changed.min(x);
            if completes {
                guard_all(&mut guarded, outcomes);
            }
        }
    }
    follow_rebalance_targets(contexts, fleet, filters, usage, outcomes, first_changed);
}

/// A fresh workload that rebalances was placed where it would go against the workloads placed
/// before it, which is where the next solve measures its rebalance target. Moves above can change
/// what is before it; each such workload goes now where the next solve would move it, in
/// placement order (a move changes what is before the later ones).
fn follow_rebalance_targets(
    contexts: &[WorkloadCtx<'_>],
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    usage: &mut Usage,
    outcomes: &mut [Outcome],
    first_changed: usize,
) {
    if first_changed >= contexts.len() {
        return;
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
            }
        }
        fleet.add(&mut before, &outcomes[x].counts, &wc.demand);
    }
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
