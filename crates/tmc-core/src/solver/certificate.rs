//! The objective of a plan and an upper bound on it, so every plan says how close to optimal it is.
//!
//! **Objective.** Replicas placed, each weighted by its workload's priority:
//! `Σ_w (1 + priority_w − lowest priority) × placed_w` (weight 1 at the lowest priority, one more
//! per priority step above it). Duplicated workloads count one replica per copy. This term comes
//! first; preferences and prioritizers then only order plans of equal objective and are not part
//! of the certificate.
//!
//! **Bound.** The Lagrangian relaxation of the capacity constraints: for prices `λ[c][r] >= 0`,
//! `Σ λ·free + Σ_w max_x Σ_c (value_w − Σ_r λ[c][r]·demand_w[r])·x[w][c]`, where each workload
//! alone chooses `x` within its own limits (admitted clusters, per-cluster caps, its replica total),
//! is at least the optimum of every plan (and of the LP relaxation). Spread, affinity fallback
//! order and integrality are relaxed, which only raises the bound. Prices are improved by projected
//! subgradient steps toward the plan's own objective; the smallest value seen is reported.
//!
//! `gap = (bound − objective) / bound` (0 when the bound is 0).

use super::{
    filter::Filters,
    fleet::{Fleet, UNLIMITED},
    place::{Outcome, WorkloadCtx, count_of},
};

/// Objective, bound and gap of a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Certificate {
    pub objective: f64,
    pub bound: f64,
    pub gap: f64,
}

/// Value per replica of each workload, in placement order: `1 + priority − lowest priority`.
pub(crate) fn replica_values(contexts: &[WorkloadCtx<'_>]) -> Vec<f64> {
    let lowest = contexts.iter().map(|wc| wc.w.priority).min().unwrap_or(0);
    contexts.iter().map(|wc| 1.0 + (f64::from(wc.w.priority) - f64::from(lowest))).collect()
}

/// One workload's relaxed choice set: candidate clusters with caps, and its total limit.
struct Relaxed {
    value: f64,
    /// `(cluster, cap)` for every cluster any affinity group admits with a positive cap.
    cands: Vec<(u32, u32)>,
    /// Per-replica demand as `(flat index offset = resource, amount)`.
    demand: Vec<(usize, f64)>,
    limit: f64,
}

/// One workload's best response to `prices`: `(reduced value, cluster, replicas)` in the order
/// taken, most reduced value first (ties by cluster), until its limit is reached.
fn respond(w: &Relaxed, prices: &[f64], nr: usize) -> Vec<(f64, usize, f64)> {
    if w.limit.is_nan() || w.limit <= 0.0 {
        return Vec::new();
    }
    // One integer key per candidate with a positive reduced value: the value's bits reversed in
    // the high half (for positive floats the bits order like the values, so this is "largest
    // first"), the candidate's position (= cluster order) in the low half for ties.
    let mut keys: Vec<u128> = Vec::new();
    for (i, &(c, _)) in w.cands.iter().enumerate() {
        let base = c as usize * nr;
        let cost: f64 = w.demand.iter().map(|&(r, q)| prices[base + r] * q).sum();
        let reduced = w.value - cost;
        if reduced > 0.0 {
            keys.push((u128::from(!reduced.to_bits()) << 64) | i as u128);
        }
    }
    // The keys are distinct, so sorting only the prefix that is taken (in growing chunks) gives
    // the same sequence as sorting everything.
    let mut taken = Vec::new();
    let mut left = w.limit;
    let mut start = 0;
    let mut chunk = 16;
    while left > 0.0 && start < keys.len() {
        let rest = &mut keys[start..];
        let k = chunk.min(rest.len());
        if k < rest.len() {
            rest.select_nth_unstable(k - 1);
        }
        rest[..k].sort_unstable();
        for &key in &rest[..k] {
            if left <= 0.0 {
                break;
            }
            let reduced = f64::from_bits(!((key >> 64) as u64));
            let (c, cap) = w.cands[key as u64 as usize];
            let x = f64::from(cap).min(left);
            left -= x;
            taken.push((reduced, c as usize, x));
        }
        start += k;
        chunk *= 4;
    }
    taken
}

/// The certificate of `outcomes` (in placement order).
pub(crate) fn certify(
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    contexts: &[WorkloadCtx<'_>],
    outcomes: &[Outcome],
) -> Certificate {
    let values = replica_values(contexts);
    let objective: f64 = outcomes.iter().zip(&values).map(|(o, v)| o.placed() as f64 * v).sum();
    let empty = fleet.empty_usage();
    let nr = fleet.resources.len();
    let free: Vec<f64> =
        fleet.free_flat().iter().map(|&f| if f == UNLIMITED { f64::INFINITY } else { f as f64 }).collect();
    let relax = |(wc, &value): (&WorkloadCtx<'_>, &f64)| {
        let r = wc.replicas();
        let divided = wc.divided();
        let max_per = wc.w.replica_scheduling.max_replicas_per_cluster.map_or(u64::MAX, u64::from);
        // The union of the groups' admissions: a cluster any group opens is open; one only kept
        // by some groups holds at most the previous replicas (caps grow with that limit, so this
        // is the largest cap any group gives).
        let (mut open, mut keep_only) = (Vec::new(), Vec::new());
        for &f in &wc.filters {
            let (o, k) = filters.mask(f).words();
            if open.is_empty() {
                open = o.to_vec();
                keep_only = k.to_vec();
            } else {
                open.iter_mut().zip(o).for_each(|(a, b)| *a |= b);
                keep_only.iter_mut().zip(k).for_each(|(a, b)| *a |= b);
            }
        }
        let mut cands: Vec<(u32, u32)> = Vec::new();
        for (i, (&o, &k)) in open.iter().zip(&keep_only).enumerate() {
            let mut bits = o | k;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                let c = i * 64 + b as usize;
                let keep = if o & (1 << b) != 0 { u64::MAX } else { count_of(&wc.previous, c) };
                let cap = if divided {
                    fleet.fit_at_most(&empty, c, &wc.demand, keep.min(max_per).min(r))
                } else if keep >= r && fleet.fit_at_most(&empty, c, &wc.demand, r) >= r {
                    r
                } else {
                    0
                };
                if cap > 0 {
                    // Caps never exceed the replica count, a u32.
                    cands.push((c as u32, u32::try_from(cap).unwrap_or(u32::MAX)));
                }
            }
        }
        let mut limit =
            if divided { r as f64 } else { (r as f64) * wc.w.number_of_clusters.map_or(cands.len() as f64, f64::from) };
        // No plan can meet a spread's minGroups with fewer distinct groups than that among
        // the clusters it may use, nor place more replicas than its caps allow.
        let groups_short = wc.w.spread_constraints.iter().any(|s| {
            let Some(min) = s.min_groups else { return false };
            // Group ids stand for the distinct topology values (`None`: the key is missing).
            let ids = fleet.groups(&s.topology_key);
            let mut groups: Vec<Option<u32>> = cands.iter().map(|&(c, _)| ids[c as usize]).collect();
            groups.sort_unstable();
            groups.dedup();
            groups.len() < min as usize
        });
        if groups_short {
            limit = 0.0;
        }
        limit = limit.min(cands.iter().map(|&(_, cap)| f64::from(cap)).sum());
        let demand = wc.demand.0.iter().map(|&(res, q)| (res, q as f64)).collect();
        Relaxed { value, cands, demand, limit }
    };
    let relaxed: Vec<Relaxed> = super::par_map(contexts.iter().zip(&values).collect(), relax);

    let mut prices = vec![0.0f64; free.len()];
    let mut best = f64::INFINITY;
    let pairs: usize = relaxed.iter().map(|w| w.cands.len()).sum::<usize>().max(1);
    // Bounded work: about 4e6 pair evaluations in total, between 3 and 40 rounds.
    let rounds = (4_000_000 / pairs).clamp(3, 40);
    let mut load = vec![0.0f64; free.len()];
    for _ in 0..rounds {
        load.iter_mut().for_each(|l| *l = 0.0);
        let mut value: f64 = prices.iter().zip(&free).filter(|(p, _)| **p > 0.0).map(|(p, f)| p * f).sum();
        // Each workload's best response is independent given the prices; the sums below are
        // taken in workload order, so the result does not depend on how the responses are found.
        let responses = super::par_map(relaxed.iter().collect(), |w| respond(w, &prices, nr));
        for (w, response) in relaxed.iter().zip(&responses) {
            for &(reduced, c, x) in response {
                value += reduced * x;
                let base = c * nr;
                for &(r, q) in &w.demand {
                    load[base + r] += q * x;
                }
            }
        }
        best = best.min(value);
        // Projected subgradient step toward the plan's objective (Polyak).
        let grad: Vec<f64> = free.iter().zip(&load).map(|(f, l)| if f.is_finite() { f - l } else { 0.0 }).collect();
        let norm: f64 = grad.iter().zip(&prices).filter(|(g, p)| **g < 0.0 || **p > 0.0).map(|(g, _)| g * g).sum();
        if norm <= 0.0 || best <= objective {
            break;
        }
        let step = (value - objective).max(value * 1e-3) / norm;
        for (p, g) in prices.iter_mut().zip(&grad) {
            *p = (*p - step * g).max(0.0);
        }
    }
    let bound = best.max(objective);
    let gap = if bound > 0.0 { (bound - objective) / bound } else { 0.0 };
    Certificate { objective, bound, gap }
}

#[cfg(test)]
mod tests {
    #[test]
    fn level_weights_make_priorities_lexicographic() {
        use crate::{PlacementInput, Workload};
        let mut low = Workload::named("low");
        low.replicas = 10;
        let mut high = Workload::named("high");
        high.priority = 5;
        high.replicas = 3;
        let input = PlacementInput { workloads: vec![low, high], ..PlacementInput::default() };
        let fleet = super::Fleet::compile(&input);
        let order: Vec<&Workload> = vec![&input.workloads[1], &input.workloads[0]];
        let filters = super::Filters::compile(&order, &fleet.clusters, None);
        let contexts: Vec<_> = order.iter().map(|w| super::WorkloadCtx::new(w, &fleet, &filters, None)).collect();
        let values = super::replica_values(&contexts);
        assert_eq!(values, vec![6.0, 1.0]);
    }
}
