//! Soft scoring: preferences, prioritizers and `PreferNoSchedule` taints, as integers.
//!
//! A cluster's score is
//! `sum(matched preference weights) + sum(prioritizer weight * value) - 100 * untolerated PreferNoSchedule taints`,
//! where each prioritizer value is in 0..=100. Without `prioritizers` the defaults are `Steady`
//! and `LeastAllocated`, weight 1 each. Scores only order clusters; they never override a hard
//! constraint.

use super::{
    fleet::{Demand, Fleet, Usage},
    selectors::bit,
};
use crate::{Prioritizer, PrioritizerName, Workload};

/// Score points removed per untolerated `PreferNoSchedule` taint.
pub(crate) const PREFER_NO_SCHEDULE_PENALTY: i64 = 100;

const DEFAULT_PRIORITIZERS: [Prioritizer; 2] = [
    Prioritizer { name: PrioritizerName::Steady, weight: 1 },
    Prioritizer { name: PrioritizerName::LeastAllocated, weight: 1 },
];

/// Scores each cluster of `cands` for `w` given the batch's usage so far. `preferences` holds,
/// for each of `w.preferences` in order, its weight and the clusters it matches (a bitset).
#[allow(clippy::too_many_arguments)]
pub(crate) fn score(
    w: &Workload,
    fleet: &Fleet<'_>,
    usage: &Usage,
    demand: &Demand,
    cands: &[usize],
    previous: &[(usize, u64)],
    preferences: &[(i64, &[u64])],
    prefer_no_schedule: impl Fn(usize) -> u32,
) -> Vec<i64> {
    let prioritizers: &[Prioritizer] = if w.prioritizers.is_empty() { &DEFAULT_PRIORITIZERS } else { &w.prioritizers };
    let uses = |name: PrioritizerName| prioritizers.iter().any(|p| p.name == name);
    let max_on = if uses(PrioritizerName::Balance) {
        cands.iter().map(|&c| usage.workloads_on[c]).max().unwrap_or(0).max(1)
    } else {
        1
    };
    let (min_cost, max_cost) = if uses(PrioritizerName::Cost) {
        cands
            .iter()
            .filter_map(|&c| fleet.clusters[c].cost)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)))
    } else {
        (f64::INFINITY, f64::NEG_INFINITY)
    };
    // One pass per term over every candidate (integer sums, so the order of terms is free).
    let mut totals = vec![0i64; cands.len()];
    for &(weight, matches) in preferences {
        for (total, &c) in totals.iter_mut().zip(cands) {
            if bit(matches, c) {
                *total += weight;
            }
        }
    }
    for p in prioritizers {
        let weight = i64::from(p.weight);
        match p.name {
            PrioritizerName::Balance => {
                add_each(&mut totals, cands, weight, |c| {
                    100 - 100 * i64::from(usage.workloads_on[c]) / i64::from(max_on)
                });
            }
            PrioritizerName::Steady => {
                add_each(&mut totals, cands, weight, |c| {
                    if previous.binary_search_by_key(&c, |&(x, _)| x).is_ok() { 100 } else { 0 }
                });
            }
            PrioritizerName::LeastAllocated => {
                add_each(&mut totals, cands, weight, |c| fleet.least_allocated(usage, c, demand))
            }
            PrioritizerName::MostAllocated => {
                add_each(&mut totals, cands, weight, |c| 100 - fleet.least_allocated(usage, c, demand))
            }
            PrioritizerName::Cost => add_each(&mut totals, cands, weight, |c| match fleet.clusters[c].cost {
                None => 0,
                Some(_) if max_cost <= min_cost => 100,
                // Costs are validated finite and >= 0, so this stays within 0..=100.
                Some(x) => (100.0 * (max_cost - x) / (max_cost - min_cost)).round() as i64,
            }),
        }
    }
    for (total, &c) in totals.iter_mut().zip(cands) {
        *total -= PREFER_NO_SCHEDULE_PENALTY * i64::from(prefer_no_schedule(c));
    }
    totals
}

/// Adds `weight * value(c)` to the total of each candidate `c`.
fn add_each(totals: &mut [i64], cands: &[usize], weight: i64, value: impl Fn(usize) -> i64) {
    for (total, &c) in totals.iter_mut().zip(cands) {
        *total += weight * value(c);
    }
}
