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
//! weighted by priority) rises and the blocker either loses nothing or does not outrank the
//! workload (a lower priority never takes replicas from a higher one). A final pass extends
//! every incomplete workload into whatever room the moves left.
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
    for (wc, o) in contexts.iter().zip(outcomes.iter()) {
        if o.complete || wc.w.preemption != Preemption::PreemptLowerPriority {
            continue;
        }
        for &f in &wc.filters {
            for c in filters.mask(f).admitted() {
                guarded[c] = guarded[c].max(Some(wc.w.priority));
            }
        }
    }
    let intrudes = |x: usize, old: &Outcome, new: &Outcome| {
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
            if grown.placed() <= oi.placed() || intrudes(i, oi, &grown) {
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
                allowed &= moved.placed() >= oj.placed() || contexts[j].w.priority <= wc.w.priority;
                allowed &= !intrudes(j, oj, &moved);
                moves.push((j, moved));
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
                fleet.remove(usage, &outcomes[*x].counts, &contexts[*x].demand);
                for &(c, _) in &outcomes[*x].counts {
                    residents[c].retain(|y| y != x);
                }
                let mut old_events = std::mem::take(&mut outcomes[*x].events);
                old_events.append(&mut new.events);
                new.events = old_events;
            }
            for (x, new) in changed {
                fleet.add(usage, &new.counts, &contexts[x].demand);
                for &(c, _) in &new.counts {
                    residents[c].push(x);
                }
                outcomes[x] = new;
            }
        }
    }
    // Room the moves left: every incomplete workload that may use a cluster a blocker left grows
    // into it, in placement order.
    if freed.is_empty() {
        return;
    }
    freed.sort_unstable();
    freed.dedup();
    for (x, (wc, o)) in contexts.iter().zip(outcomes.iter_mut()).enumerate() {
        if o.complete || wc.w.rebalance.policy != RebalancePolicy::Never {
            continue;
        }
        let mask = filters.mask(wc.filters[o.term]);
        if !freed.iter().any(|&c| mask.admission(c) != Admission::Closed) {
            continue;
        }
        let mut others = usage.clone();
        fleet.remove(&mut others, &o.counts, &wc.demand);
        let kept = Kept { term: o.term, counts: o.counts.clone(), complete: false, degraded: false };
        let grown = extend(wc, fleet, filters, &others, kept);
        if grown.placed() > o.placed() && !intrudes(x, o, &grown) {
            fleet.remove(usage, &o.counts, &wc.demand);
            fleet.add(usage, &grown.counts, &wc.demand);
            let mut grown = grown;
            grown.events.append(&mut o.events);
            *o = grown;
        }
    }
}
