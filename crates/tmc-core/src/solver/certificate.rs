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
    filter::{Admission, Filters},
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
    /// `(cluster, cap)` for every cluster any affinity group admits.
    cands: Vec<(usize, f64)>,
    /// Per-replica demand as `(flat index offset = resource, amount)`.
    demand: Vec<(usize, f64)>,
    limit: f64,
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
    let relaxed: Vec<Relaxed> = contexts
        .iter()
        .zip(&values)
        .map(|(wc, &value)| {
            let r = wc.replicas();
            let divided = wc.divided();
            let max_per = wc.w.replica_scheduling.max_replicas_per_cluster.map_or(u64::MAX, u64::from);
            let mut cands: Vec<(usize, f64)> = Vec::new();
            for &f in &wc.filters {
                let mask = filters.mask(f);
                for c in mask.admitted() {
                    let keep = match mask.admission(c) {
                        Admission::Open => u64::MAX,
                        _ => count_of(&wc.previous, c),
                    };
                    let fit = fleet.fit(&empty, c, &wc.demand).0.min(keep);
                    let cap = if divided {
                        fit.min(max_per).min(r)
                    } else if fit >= r {
                        r
                    } else {
                        0
                    };
                    if cap > 0 {
                        match cands.binary_search_by_key(&c, |&(x, _)| x) {
                            Ok(i) => cands[i].1 = cands[i].1.max(cap as f64),
                            Err(i) => cands.insert(i, (c, cap as f64)),
                        }
                    }
                }
            }
            let mut limit = if divided {
                r as f64
            } else {
                (r as f64) * wc.w.number_of_clusters.map_or(cands.len() as f64, f64::from)
            };
            // No plan can meet a spread's minGroups with fewer distinct groups than that among
            // the clusters it may use, nor place more replicas than its caps allow.
            let groups_short = wc.w.spread_constraints.iter().any(|s| {
                let mut groups: Vec<Option<&str>> =
                    cands.iter().map(|&(c, _)| fleet.clusters[c].topology_value(&s.topology_key)).collect();
                groups.sort_unstable();
                groups.dedup();
                s.min_groups.is_some_and(|m| groups.len() < m as usize)
            });
            if groups_short {
                limit = 0.0;
            }
            limit = limit.min(cands.iter().map(|&(_, cap)| cap).sum());
            let demand = wc.demand.0.iter().map(|&(res, q)| (res, q as f64)).collect();
            Relaxed { value, cands, demand, limit }
        })
        .collect();

    let mut prices = vec![0.0f64; free.len()];
    let mut best = f64::INFINITY;
    let pairs: usize = relaxed.iter().map(|w| w.cands.len()).sum::<usize>().max(1);
    // Bounded work: about 4e6 pair evaluations in total, between 3 and 40 rounds.
    let rounds = (4_000_000 / pairs).clamp(3, 40);
    let mut load = vec![0.0f64; free.len()];
    let mut scratch: Vec<(f64, usize, f64)> = Vec::new();
    for _ in 0..rounds {
        load.iter_mut().for_each(|l| *l = 0.0);
        let mut value: f64 = prices.iter().zip(&free).filter(|(p, _)| **p > 0.0).map(|(p, f)| p * f).sum();
        for w in &relaxed {
            scratch.clear();
            for &(c, cap) in &w.cands {
                let base = c * nr;
                let cost: f64 = w.demand.iter().map(|&(r, q)| prices[base + r] * q).sum();
                let reduced = w.value - cost;
                if reduced > 0.0 {
                    scratch.push((reduced, c, cap));
                }
            }
            scratch.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut left = w.limit;
            for &(reduced, c, cap) in &scratch {
                if left <= 0.0 {
                    break;
                }
                let x = cap.min(left);
                left -= x;
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
