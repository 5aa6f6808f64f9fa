//! The objective of a plan and an upper bound on it, so every plan says how close to optimal it is.
//!
//! **Objective.** Replicas placed, each weighted by its workload's priority:
//! `Σ_w (1 + priority_w − lowest priority) × placed_w` (weight 1 at the lowest priority, one more
//! per priority step above it). Duplicated workloads count one replica per copy. This term comes
//! first; preferences and prioritizers then only order plans of equal objective and are not part
//! of the certificate.
//!
//! **Bound.** The Lagrangian relaxation of the capacity constraints: for prices `λ[c][r] >= 0`,
//! `Σ λ·free + Σ_w U_w(λ)`, where `U_w(λ)` is at least the largest reduced value
//! `Σ_c (value_w − Σ_r λ[c][r]·demand_w[r])·x[w][c]` over the plans `x` of workload `w` alone, is
//! at least the objective of every plan. The better `U_w` follows the workload's own rules, the
//! tighter the bound. Per workload (counted in units: a replica, or for Duplicated a whole copy):
//!
//! - it uses one affinity group, so `U_w` is the largest over its groups; within a group, the
//!   clusters and caps are the ones exact mode uses on the empty fleet (room for at least
//!   `minReplicasPerCluster`, static weight above 0, keep-only clusters up to the previous count,
//!   `maxReplicasPerCluster`; a Duplicated copy needs room for every replica);
//! - at most `replicas` units (Divided) or `numberOfClusters` copies (Duplicated), at most
//!   `numberOfClusters` clusters (Divided) and at most `maxGroups` groups of a spread key;
//! - a spread with `minGroups = m` and `maxSkew = s` puts at most `⌊units / m⌋ + s` units in a
//!   group (used groups hold between `L` and `L + s`, and `L` is at most the average);
//! - whenever anything is placed, at least `minGroups` groups are used, each within `maxSkew` of
//!   the smallest (see `force_bound`), and a workload whose candidates span fewer groups than a
//!   `minGroups` gets nothing.
//!
//! The best response is greedy (most reduced value first, within cluster, group and total caps),
//! which is optimal for those caps (they nest); when it breaks a count limit or a spread's lower
//! side, that limit is priced or bounded separately (`respond_counts`, `force_bound`) and the
//! smallest of the valid upper bounds is taken. Integrality across workloads and the remaining
//! spread rules are relaxed, which only raises the bound.
//!
//! Prices are scaled per row by the highest value density that could use it, start at zero, at
//! the prices of over-demanded pools (`pool_prices`: clusters some workloads are confined to,
//! priced at their marginal value density; also raised to the fleet-wide shortage's prices,
//! `fleet_prices`), at one price per resource in the fleet and in each of the cluster sets the
//! most workloads' filters share, found jointly (`uniform_bound`, `priced_in_pools`), and at
//! prices read off the plan (resources it fills, priced at its marginal value density), and are
//! improved by projected subgradient steps toward the plan's objective
//! (Polyak, in each row's price times its capacity, halved after a few rounds without progress,
//! more when the budget allows many rounds), then by coordinate steps that lower the prices of
//! rows the best responses leave slack, one cluster at a time (`lower_slack_prices`); the
//! smallest value seen is reported. Where the budget allows only the zero-price round (several
//! million (workload, cluster) pairs), the prices per resource and pool are tried without
//! another round (`uniform_bound`: each workload's zero-price response scaled by its reduced
//! value at the prices of the pools it is confined to).
//! Everything is summed in workload order, so the bound is deterministic.
//!
//! `gap = (bound − objective) / bound` (0 when the bound is 0).

use super::{
    filter::Filters,
    fleet::{AtMost, Fleet, UNLIMITED, Usage},
    place::{Outcome, WorkloadCtx},
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

/// One affinity group's relaxed choice set for one workload, counted in units: a replica for
/// Divided, a whole copy (all replicas on one cluster) for Duplicated.
struct Choice {
    /// `(cluster, cap in units, topology group)` per candidate, in cluster order.
    cands: Cands,
    /// Number of distinct topology groups of `cands` (1 when no group structure is used).
    groups: usize,
    /// At most this many units per topology group.
    group_cap: u64,
    /// At most this many topology groups used.
    max_groups: usize,
    /// At most this many clusters used.
    max_clusters: usize,
    /// At most this many units in total.
    limit: u64,
    /// The lower sides of the spread constraints.
    forces: Vec<Force>,
}

/// A choice set's candidates, `(cluster, cap in units, topology group)` in cluster order. Kept
/// for every workload until the bound is found, so stored without the group where every group is
/// 0 (no group structure: most workloads), a third less memory.
enum Cands {
    Plain(Vec<(u32, u32)>),
    Grouped(Vec<(u32, u32, u32)>),
}

impl Cands {
    fn new(cands: Vec<(u32, u32, u32)>) -> Self {
        if cands.iter().all(|&(_, _, g)| g == 0) {
            // A fresh allocation of exactly this size (collecting in place would keep the old one).
            let mut plain = Vec::with_capacity(cands.len());
            plain.extend(cands.iter().map(|&(c, cap, _)| (c, cap)));
            Cands::Plain(plain)
        } else {
            let mut cands = cands;
            cands.shrink_to_fit();
            Cands::Grouped(cands)
        }
    }

    fn len(&self) -> usize {
        match self {
            Cands::Plain(v) => v.len(),
            Cands::Grouped(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> (u32, u32, u32) {
        match self {
            Cands::Plain(v) => (v[i].0, v[i].1, 0),
            Cands::Grouped(v) => v[i],
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The position of cluster `c` among the candidates.
    fn position(&self, c: usize) -> Option<usize> {
        match self {
            Cands::Plain(v) => v.binary_search_by_key(&c, |&(k, _)| k as usize).ok(),
            Cands::Grouped(v) => v.binary_search_by_key(&c, |&(k, _, _)| k as usize).ok(),
        }
    }
}

/// One workload's relaxed choice sets (one per affinity group: a plan uses one of them).
struct Relaxed {
    /// Value of one unit: the replica value times the replicas in a unit.
    value: f64,
    /// Replicas per unit.
    unit: f64,
    /// Per-replica demand as `(flat index offset = resource, amount)`.
    demand: Vec<(usize, f64)>,
    choices: Vec<Choice>,
}

/// The reduced value of one unit on cluster `c` under `prices`.
fn reduced(w: &Relaxed, prices: &[f64], nr: usize, c: u32) -> f64 {
    let base = c as usize * nr;
    let cost: f64 = w.demand.iter().map(|&(r, q)| prices[base + r] * q).sum();
    w.value - cost * w.unit
}

/// Buffers one thread reuses across best responses: a round finds one per workload, and at small
/// sizes (a thousand rounds) allocating them each time took a third of the solve.
#[derive(Default)]
struct Scratch {
    /// Reduced values of the current choice set's candidates.
    rho: Vec<f64>,
    /// Sort keys of the candidates with a positive reduced value.
    keys: Vec<u128>,
    /// Units left per topology group while filling greedily.
    group_left: Vec<u64>,
    /// The greedy response of the current choice set.
    greedy: Vec<(usize, f64)>,
    /// The response of the current choice set, while `out` holds the best so far.
    current: Vec<(usize, f64)>,
    /// A spread lower side's response.
    forced: Vec<(usize, f64)>,
    /// Units per group, for [`Force::met`].
    counts: Vec<f64>,
    /// Groups seen, for the cheap check before [`force_bound`].
    seen: Vec<bool>,
    force: ForceScratch,
}

/// One workload's best response to `prices` (`None`: all zero): returns an upper bound on its
/// largest reduced value over its choice sets, and leaves in `out` the `(cluster, units)` that
/// attain it (the best choice set, the first on ties).
fn respond(w: &Relaxed, prices: Option<&[f64]>, nr: usize, s: &mut Scratch, out: &mut Vec<(usize, f64)>) -> f64 {
    out.clear();
    let mut best = 0.0;
    let mut rho = std::mem::take(&mut s.rho);
    let mut current = std::mem::take(&mut s.current);
    for ch in &w.choices {
        rho.clear();
        // At zero prices every reduced value is exactly the unit's value: no row is read.
        rho.extend(ch.cands.iter().map(|(c, _, _)| prices.map_or(w.value, |p| reduced(w, p, nr, c))));
        let v = respond_choice(ch, &rho, s, &mut current);
        if v > best {
            best = v;
            std::mem::swap(out, &mut current);
        }
    }
    s.rho = rho;
    s.current = current;
    best
}

/// Sort key of a candidate with a positive reduced value: the value's bits reversed in the high
/// half (for positive floats the bits order like the values, so this is "largest first"), the
/// candidate's position (= cluster order) in the low half for ties. Keys are distinct.
fn key(rho: f64, i: usize) -> u128 {
    (u128::from(!rho.to_bits()) << 64) | i as u128
}

fn unkey(key: u128) -> (f64, usize) {
    (f64::from_bits(!((key >> 64) as u64)), key as u64 as usize)
}

/// The best response within one choice set. Greedy (most reduced value first, within the
/// cluster, group and total caps) is optimal when it uses no more groups and clusters than
/// allowed (the caps form a laminar family). Otherwise the count limits are priced: for every
/// `μ >= 0`, `μ·limit + Σ_{best max_groups groups} (greedy value of the group at reduced values
/// − μ)` bounds the optimum (and likewise with the best `max_clusters` clusters); the smallest
/// such bound over breakpoints `μ` found by ternary search (the bound is convex in `μ`) is taken.
fn respond_choice(ch: &Choice, rho: &[f64], s: &mut Scratch, out: &mut Vec<(usize, f64)>) -> f64 {
    out.clear();
    if ch.limit == 0 {
        return 0.0;
    }
    // `out` holds the priced response when `priced`; otherwise the response is the greedy one.
    let (bound, mut priced) = respond_counts(ch, rho, s, out);
    if bound <= 0.0 {
        out.clear();
        return 0.0;
    }
    let mut best = bound;
    // The smallest reduced value greedy takes (it takes most reduced value first).
    let last = s.greedy.last().and_then(|&(c, _)| ch.cands.position(c)).map_or(0.0, |i| rho[i]);
    for f in &ch.forces {
        if f.met(&ch.cands, &s.greedy, &mut s.counts) {
            continue;
        }
        // Without skew, when enough groups hold a candidate at least as good as the worst unit
        // greedy takes, moving units there costs nothing: the bound cannot be tighter (skipping
        // a bound is always sound; this only saves the work at ties, e.g. at zero prices).
        if f.skew.is_none() {
            s.seen.clear();
            s.seen.resize(f.groups, false);
            let mut n = 0;
            for (i, &g) in f.group.iter().enumerate() {
                if rho[i] >= last && !s.seen[g as usize] {
                    s.seen[g as usize] = true;
                    n += 1;
                }
            }
            if n >= f.min {
                continue;
            }
        }
        match force_bound(ch, f, rho, &mut s.force, &mut s.forced) {
            None => {
                out.clear();
                return 0.0;
            }
            Some(v) if v <= 0.0 => {
                out.clear();
                return 0.0;
            }
            Some(v) if v < best => {
                best = v;
                std::mem::swap(out, &mut s.forced);
                priced = true;
            }
            Some(_) => {}
        }
    }
    if !priced {
        out.clear();
        out.extend_from_slice(&s.greedy);
    }
    best
}

/// [`respond_choice`] without the spread lower sides: the bound, its response (`None` when it is
/// the greedy one, as it mostly is: no copy), and the greedy response.
fn respond_counts(ch: &Choice, rho: &[f64], s: &mut Scratch, response: &mut Vec<(usize, f64)>) -> (f64, bool) {
    let keys = &mut s.keys;
    keys.clear();
    for (i, &v) in rho.iter().enumerate() {
        if v > 0.0 {
            keys.push(key(v, i));
        }
    }
    // Equal values (as at zero prices) come out in candidate order, already sorted.
    let sorted = keys.is_sorted();
    let grouped = ch.group_cap < ch.limit || ch.max_groups < ch.groups;
    let group_left = &mut s.group_left;
    group_left.clear();
    if grouped {
        group_left.resize(ch.groups, ch.group_cap);
    }
    let mut group_used = 0usize;
    // Sorting only the prefix that is taken (in growing chunks) gives the same sequence as
    // sorting everything.
    let taken = &mut s.greedy;
    taken.clear();
    let mut total = 0.0;
    let mut left = ch.limit;
    let mut start = 0;
    let mut chunk = 16;
    while left > 0 && start < keys.len() {
        let rest = &mut keys[start..];
        let k = chunk.min(rest.len());
        if !sorted {
            if k < rest.len() {
                rest.select_nth_unstable(k - 1);
            }
            rest[..k].sort_unstable();
        }
        for &key in &rest[..k] {
            if left == 0 {
                break;
            }
            let (v, i) = unkey(key);
            let (c, cap, g) = ch.cands.get(i);
            let mut x = u64::from(cap).min(left);
            if grouped {
                let gl = &mut group_left[g as usize];
                if *gl == ch.group_cap {
                    group_used += 1;
                }
                x = x.min(*gl);
                *gl -= x;
            }
            if x == 0 {
                continue;
            }
            left -= x;
            total += v * x as f64;
            taken.push((c as usize, x as f64));
        }
        start += k;
        chunk *= 4;
    }
    if group_used <= ch.max_groups && taken.len() <= ch.max_clusters {
        return (total, false);
    }
    // Greedy breaks a count limit: price the total instead.
    if !sorted {
        keys.sort_unstable();
    }
    let items: Vec<(f64, usize)> = keys.iter().map(|&k| unkey(k)).collect();
    let limit = ch.limit as f64;
    let unit_cap = |cap: u32| u64::from(cap).min(ch.group_cap).min(ch.limit) as f64;
    let mut tally = vec![0.0f64; if ch.max_groups < ch.groups { ch.groups } else { 0 }];
    let mut used = vec![0u64; tally.len()];
    let mut per: Vec<f64> = Vec::new();
    // The bound at `μ` by groups (`by_groups`) or by clusters.
    let mut bound_at = |mu: f64, by_groups: bool| -> f64 {
        if by_groups {
            fill_groups(ch, &items, mu, &mut used, &mut tally, |_, _, _| {});
            let m = ch.max_groups;
            if m < tally.len() {
                tally.select_nth_unstable_by(m, |a, b| b.total_cmp(a));
            }
            mu * limit + tally[..m.min(tally.len())].iter().sum::<f64>()
        } else {
            per.clear();
            per.extend(
                items.iter().take_while(|&&(v, _)| v > mu).map(|&(v, i)| (v - mu) * unit_cap(ch.cands.get(i).1)),
            );
            let m = ch.max_clusters;
            if m < per.len() {
                per.select_nth_unstable_by(m, |a, b| b.total_cmp(a));
            }
            mu * limit + per[..m.min(per.len())].iter().sum::<f64>()
        }
    };
    // Breakpoints: the distinct values of `items` (largest first), then `μ = 0`. The bound is
    // convex in `μ`, so unimodal along distinct breakpoints; repeated ones make it flat where it
    // is not lowest, and the search below took such a flat part for the bottom (at zero prices,
    // where every value is the same, it ended at `μ = value`: the bound of the total alone).
    let n = items.len();
    let mut mus: Vec<f64> = items.iter().map(|&(v, _)| v).collect();
    mus.dedup();
    mus.push(0.0);
    let last_mu = mus.len() - 1;
    let mu_of = |j: usize| mus[j];
    let mut best = (total, f64::NAN, false);
    for by_groups in [true, false] {
        if (by_groups && ch.max_groups >= ch.groups) || (!by_groups && ch.max_clusters >= n) {
            continue;
        }
        let (mut lo, mut hi) = (0usize, last_mu);
        while hi - lo > 2 {
            let m1 = lo + (hi - lo) / 3;
            let m2 = hi - (hi - lo) / 3;
            if bound_at(mu_of(m1), by_groups) <= bound_at(mu_of(m2), by_groups) {
                hi = m2;
            } else {
                lo = m1;
            }
        }
        for j in lo..=hi {
            let b = bound_at(mu_of(j), by_groups);
            if b < best.0 {
                best = (b, mu_of(j), by_groups);
            }
        }
    }
    let (bound, mu, by_groups) = best;
    if mu.is_nan() {
        return (total, false);
    }
    // The response at the best `μ`: what the priced bound takes.
    response.clear();
    if by_groups {
        let mut tally = vec![0.0f64; ch.groups];
        let mut used = vec![0u64; ch.groups];
        let mut picks: Vec<(usize, u32, u64)> = Vec::new();
        fill_groups(ch, &items, mu, &mut used, &mut tally, |c, g, x| picks.push((c, g, x)));
        let mut order: Vec<usize> = (0..ch.groups).collect();
        order.sort_by(|&a, &b| tally[b].total_cmp(&tally[a]).then(a.cmp(&b)));
        let mut chosen = vec![false; ch.groups];
        for &g in order.iter().take(ch.max_groups) {
            chosen[g] = true;
        }
        response.extend(picks.into_iter().filter(|&(_, g, _)| chosen[g as usize]).map(|(c, _, x)| (c, x as f64)));
    } else {
        let mut vals: Vec<(f64, usize, f64)> = items
            .iter()
            .take_while(|&&(v, _)| v > mu)
            .map(|&(v, i)| {
                let x = unit_cap(ch.cands.get(i).1);
                ((v - mu) * x, ch.cands.get(i).0 as usize, x)
            })
            .collect();
        // The best `max_clusters` (a total order: clusters are distinct), found without sorting
        // every candidate (at zero prices a workload with numberOfClusters takes a few of
        // thousands).
        let by_value = |a: &(f64, usize, f64), b: &(f64, usize, f64)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if ch.max_clusters < vals.len() {
            if ch.max_clusters > 0 {
                vals.select_nth_unstable_by(ch.max_clusters - 1, by_value);
            }
            vals.truncate(ch.max_clusters);
        }
        response.extend(vals.into_iter().map(|(_, c, x)| (c, x)));
    }
    response.sort_by_key(|&(c, _)| c);
    (bound, true)
}

/// Fills each topology group up to its cap with the candidates whose value (`items`, most
/// valuable first) exceeds `mu`: `used` and `tally` (value above `mu`) per group start from zero,
/// and `pick(cluster, group, units)` hears of every candidate that takes units.
fn fill_groups(
    ch: &Choice,
    items: &[(f64, usize)],
    mu: f64,
    used: &mut [u64],
    tally: &mut [f64],
    mut pick: impl FnMut(usize, u32, u64),
) {
    tally.iter_mut().for_each(|t| *t = 0.0);
    used.iter_mut().for_each(|u| *u = 0);
    for &(v, i) in items {
        if v <= mu {
            break;
        }
        let (c, cap, g) = ch.cands.get(i);
        let gi = g as usize;
        let x = u64::from(cap).min(ch.limit).min(ch.group_cap - used[gi]);
        used[gi] += x;
        tally[gi] += (v - mu) * x as f64;
        if x > 0 {
            pick(c as usize, g, x);
        }
    }
}

/// A spread constraint's lower side, for [`force_bound`]: whenever anything is placed, at least
/// `min` groups are used, each holding at least `need` units, and (with `skew`) every used
/// group's count lies within `skew` of the smallest.
struct Force {
    /// Local group of each candidate (the order of [`Choice::cands`]).
    group: Vec<u32>,
    groups: usize,
    min: usize,
    max: usize,
    skew: Option<u64>,
    need: u64,
}

impl Force {
    /// Whether `taken` (`(cluster, units)`, candidates in `cands` order) meets the constraint.
    /// `counts` is a buffer.
    fn met(&self, cands: &Cands, taken: &[(usize, f64)], counts: &mut Vec<f64>) -> bool {
        counts.clear();
        counts.resize(self.groups, 0.0);
        for &(c, x) in taken {
            // Candidates are in cluster order.
            if let Some(j) = cands.position(c) {
                counts[self.group[j] as usize] += x;
            }
        }
        let used = counts.iter().filter(|&&n| n > 0.0);
        let (n, lo, hi) = used.fold((0usize, f64::INFINITY, 0.0f64), |(k, lo, hi), &n| (k + 1, lo.min(n), hi.max(n)));
        n >= self.min && self.skew.is_none_or(|s| n == 0 || hi - lo <= s as f64)
    }
}

/// An upper bound on a choice set's best value among responses that place something and meet
/// `f`, with a response attaining it (`None`: no response meets `f`).
///
/// Without skew: every such response has `need` units in each of `min` distinct groups, worth at
/// most the best `need` units of each (the `min` best groups), and its other units are worth at
/// most the best positive units overall. With skew: let `L >= need` be the smallest used group's
/// count; every used group then holds between `L` and `L + skew` units, worth at most `F_g(L)`,
/// the best such count's value within the group (its best units first); at least `min` groups
/// are used and at most `max` (and `limit / L`), so `Σ best min F_g(L) + Σ positive F_g(L) of
/// the next best` bounds it, and the largest bound over `L` bounds every response.
fn force_bound(
    ch: &Choice,
    f: &Force,
    rho: &[f64],
    s: &mut ForceScratch,
    response: &mut Vec<(usize, f64)>,
) -> Option<f64> {
    response.clear();
    let n = ch.cands.len();
    let ForceScratch { order, start, next, by_group, units_to, value_to, room, positive, values } = s;
    order.clear();
    order.extend(0..n);
    order.sort_by(|&a, &b| rho[b].total_cmp(&rho[a]).then(a.cmp(&b)));
    let cap = |i: usize| u64::from(ch.cands.get(i).1).min(ch.limit);
    // Per group its candidates, best first, in one list (group `g` at `start[g]..start[g + 1]`),
    // with the units and the value of the group's candidates up to each one: the bound reads the
    // best `t` units of a group for many `t` and groups, at every price round.
    start.clear();
    start.resize(f.groups + 1, 0);
    for &g in &f.group {
        start[g as usize + 1] += 1;
    }
    for g in 0..f.groups {
        start[g + 1] += start[g];
    }
    next.clear();
    next.extend_from_slice(start);
    by_group.clear();
    by_group.resize(n, 0);
    for &i in order.iter() {
        let g = f.group[i] as usize;
        by_group[next[g]] = i;
        next[g] += 1;
    }
    units_to.clear();
    units_to.resize(n, 0);
    value_to.clear();
    value_to.resize(n, 0.0);
    room.clear();
    room.resize(f.groups, 0);
    positive.clear();
    positive.resize(f.groups, 0);
    for g in 0..f.groups {
        let (mut u, mut v) = (0u64, 0.0f64);
        for k in start[g]..start[g + 1] {
            let i = by_group[k];
            let x = cap(i);
            u += x;
            // Summed in the order the best units are taken, so a prefix is what adding them
            // one by one gives.
            v += rho[i] * x as f64;
            units_to[k] = u;
            value_to[k] = v;
            if rho[i] > 0.0 {
                positive[g] = u;
            }
        }
        room[g] = u;
    }
    let (order, start, by_group, units_to, value_to, room, positive) =
        (&*order, &*start, &*by_group, &*units_to, &*value_to, &*room, &*positive);
    // The value of the best `t` units of group `g`.
    let best_value = |g: usize, t: u64| -> f64 {
        let (from, to) = (start[g], start[g + 1]);
        if t == 0 || from == to {
            return 0.0;
        }
        let k = from + units_to[from..to].partition_point(|&u| u < t);
        if k == to {
            return value_to[to - 1];
        }
        let (before_units, before_value) = if k == from { (0, 0.0) } else { (units_to[k - 1], value_to[k - 1]) };
        if units_to[k] == t { value_to[k] } else { before_value + rho[by_group[k]] * (t - before_units) as f64 }
    };
    // The best `t` units of group `g` as `(cluster, units)`.
    let best_units = |g: usize, t: u64, out: &mut Vec<(usize, f64)>| {
        let mut left = t;
        for &i in &by_group[start[g]..start[g + 1]] {
            if left == 0 {
                break;
            }
            let x = cap(i).min(left);
            left -= x;
            out.push((ch.cands.get(i).0 as usize, x as f64));
        }
    };
    let need = f.need.max(1);
    let min = f.min.max(1);
    match f.skew {
        None => {
            values.clear();
            values.extend((0..f.groups).filter(|&g| room[g] >= need).map(|g| (best_value(g, need), g)));
            if values.len() < min || (min as u64).saturating_mul(need) > ch.limit {
                return None;
            }
            values.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut value = 0.0;
            for &(v, g) in &values[..min] {
                value += v;
                best_units(g, need, response);
            }
            // The rest: the best positive units overall.
            let mut left = ch.limit - min as u64 * need;
            for &i in order {
                if left == 0 || rho[i] <= 0.0 {
                    break;
                }
                let x = cap(i).min(left);
                left -= x;
                value += rho[i] * x as f64;
                response.push((ch.cands.get(i).0 as usize, x as f64));
            }
            Some(value)
        }
        Some(skew) => {
            let mut best: Option<(f64, u64)> = None;
            // F_g(L) and the groups a bound at `L` takes.
            let at = |l: u64, values: &mut Vec<(f64, usize)>| -> Option<(f64, usize)> {
                values.clear();
                for g in 0..f.groups {
                    if room[g] >= l {
                        let t = positive[g].clamp(l, l + skew).min(room[g]);
                        values.push((best_value(g, t), g));
                    }
                }
                if values.len() < min {
                    return None;
                }
                values.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let most = f.max.min(usize::try_from(ch.limit / l).unwrap_or(usize::MAX)).max(min);
                let mut v: f64 = values[..min].iter().map(|x| x.0).sum();
                let mut k = min;
                while k < most && k < values.len() && values[k].0 > 0.0 {
                    v += values[k].0;
                    k += 1;
                }
                Some((v, k))
            };
            for l in need..=ch.limit / min as u64 {
                if let Some((v, _)) = at(l, values)
                    && best.is_none_or(|b| v > b.0)
                {
                    best = Some((v, l));
                }
            }
            let (value, l) = best?;
            let (_, k) = at(l, values)?;
            for &(_, g) in &values[..k] {
                let t = positive[g].clamp(l, l + skew).min(room[g]);
                best_units(g, t, response);
            }
            Some(value)
        }
    }
}

/// Buffers of [`force_bound`], reused across calls.
#[derive(Default)]
struct ForceScratch {
    order: Vec<usize>,
    start: Vec<usize>,
    next: Vec<usize>,
    by_group: Vec<usize>,
    units_to: Vec<u64>,
    value_to: Vec<f64>,
    room: Vec<u64>,
    positive: Vec<u64>,
    values: Vec<(f64, usize)>,
}

/// One workload's relaxed choice sets: per affinity group, the clusters it may use with their
/// caps on the empty fleet (as exact mode counts them: at least `minReplicasPerCluster`, static
/// weight above 0, keep-only clusters up to the previous count), and the limits its spread
/// constraints and `numberOfClusters` imply. See the module docs.
fn relax(fleet: &Fleet<'_>, filters: &Filters<'_>, empty: &Usage, wc: &WorkloadCtx<'_>, value: f64) -> Relaxed {
    let r = wc.replicas();
    let divided = wc.divided();
    let max_per = wc.max_per();
    let demand = wc.demand.0.iter().map(|&(res, q)| (res, q as f64)).collect();
    let unit = if divided { 1.0 } else { r as f64 };
    let min_per = wc.min_per();
    let need = if divided { min_per.max(1) } else { r.max(1) };
    let weighted = wc.uses_static_weights();
    let choices = (0..wc.terms.len())
        .map(|t| {
            // The candidates `WorkloadCtx::survey` finds on the empty fleet, without its reasons.
            let mask = filters.mask(wc.filters[t]);
            let mut cands: Vec<(u32, u32, u32)> = Vec::with_capacity(mask.count());
            let at_most = AtMost::new(&wc.demand, r.max(need));
            for (c, open) in mask.admitted_open() {
                let keep = wc.keep_cap(c, open);
                if keep == 0 {
                    continue;
                }
                let room = fleet.fit_at_most(empty, c, &at_most).min(keep);
                if room < need || (weighted && wc.static_weight(filters, c) == 0) {
                    continue;
                }
                let cap = if divided { room.min(max_per).min(r) } else { u64::from(room >= r) };
                if cap > 0 {
                    // Caps never exceed the replica count, a u32.
                    cands.push((c as u32, u32::try_from(cap).unwrap_or(u32::MAX), 0));
                }
            }
            choice(fleet, wc, cands)
        })
        .collect();
    Relaxed { value: value * unit, unit, demand, choices }
}

/// Dense group ids of `cands` (in order of first appearance, so in cluster order) for the fleet's
/// group ids `ids` of one key (below `count`), and their number; `None` when a candidate lacks
/// the key.
fn local_groups(ids: &[Option<u32>], count: usize, cands: &[(u32, u32, u32)]) -> Option<(Vec<u32>, usize)> {
    // Sized by the key's groups, not the clusters: this runs per workload and spread constraint,
    // and clearing a cluster-sized table each time cost about 10 ms at 10k x 1k.
    let mut local = vec![u32::MAX; count];
    let mut n = 0u32;
    let mut out = Vec::with_capacity(cands.len());
    for &(c, _, _) in cands {
        let g = ids.get(c as usize).copied().flatten()? as usize;
        let slot = local.get_mut(g)?;
        if *slot == u32::MAX {
            *slot = n;
            n += 1;
        }
        out.push(*slot);
    }
    Some((out, n as usize))
}

/// Whether `cands` span at least `min` distinct values of the fleet's group ids `ids` of one
/// key (lacking the key is one more value).
fn spans_groups(ids: &[Option<u32>], cands: &[(u32, u32, u32)], min: usize) -> bool {
    // Fleet group ids are below the number of clusters; slot `ids.len()` stands for "no key".
    let mut seen = vec![0u64; (ids.len() + 1).div_ceil(64)];
    let mut n = 0;
    for &(c, _, _) in cands {
        if n >= min {
            break;
        }
        let slot = ids.get(c as usize).copied().flatten().map_or(ids.len(), |g| (g as usize).min(ids.len()));
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if seen[word] & bit == 0 {
            seen[word] |= bit;
            n += 1;
        }
    }
    n >= min
}

/// The limits of one choice set (see [`relax`]).
fn choice(fleet: &Fleet<'_>, wc: &WorkloadCtx<'_>, mut cands: Vec<(u32, u32, u32)>) -> Choice {
    let r = wc.replicas();
    let divided = wc.divided();
    let unlimited = Choice {
        cands: Cands::Plain(Vec::new()),
        groups: 1,
        group_cap: u64::MAX,
        max_groups: 1,
        max_clusters: 0,
        limit: 0,
        forces: Vec::new(),
    };
    if r == 0 || cands.is_empty() {
        return unlimited;
    }
    let n = wc.w.number_of_clusters.map(u64::from);
    // Units in total: replicas, or copies (numberOfClusters, else every candidate).
    let mut limit = if divided { r } else { n.unwrap_or(cands.len() as u64).min(cands.len() as u64) };
    let mut max_clusters = if divided { n.unwrap_or(u64::MAX) } else { u64::MAX };
    // (key groups, group cap, max groups) of the key used as the group structure.
    let mut structure: Option<(&[Option<u32>], usize, u64, u64)> = None;
    let mut folded: Vec<(&[Option<u32>], u64)> = Vec::new();
    for s in &wc.w.spread_constraints {
        let ids = fleet.groups(&s.topology_key);
        let group = |c: u32| ids.get(c as usize).copied().flatten();
        if let Some(min) = s.min_groups {
            // No plan can meet minGroups with fewer distinct groups among its clusters (a
            // cluster without the key counts as a group of its own here, which only loosens).
            if !spans_groups(ids, &cands, min as usize) {
                limit = 0;
            }
        }
        // Used groups hold counts within `[L, L + maxSkew]`, and at least minGroups `m` are used,
        // so `L <= ⌊units / m⌋` and no group holds more than `⌊limit / m⌋ + maxSkew` units.
        let group_cap = match (s.min_groups, s.max_skew) {
            (Some(m), Some(skew)) if m > 0 => (limit / u64::from(m)).saturating_add(u64::from(skew)),
            _ => u64::MAX,
        };
        let max_groups = s.max_groups.map_or(u64::MAX, u64::from);
        if s.topology_key == "cluster" {
            // One cluster per group: a cluster cap and a cluster count.
            for cand in &mut cands {
                cand.1 = cand.1.min(u32::try_from(group_cap).unwrap_or(u32::MAX));
            }
            if divided {
                max_clusters = max_clusters.min(max_groups);
            } else {
                limit = limit.min(max_groups);
            }
            continue;
        }
        // A cluster without the key is not counted in any group: only fold caps then.
        let whole = cands.iter().all(|&(c, _, _)| group(c).is_some());
        let reach = |(q, m): (u64, u64)| q.saturating_mul(m);
        if whole && structure.is_none_or(|(_, _, q, m)| reach((group_cap, max_groups)) < reach((q, m))) {
            if let Some((ids, _, q, _)) = structure {
                folded.push((ids, q));
            }
            structure = Some((ids, fleet.group_count(&s.topology_key), group_cap, max_groups));
        } else {
            folded.push((ids, group_cap));
        }
    }
    for (ids, q) in folded {
        for cand in &mut cands {
            if ids.get(cand.0 as usize).copied().flatten().is_some() {
                cand.1 = cand.1.min(u32::try_from(q).unwrap_or(u32::MAX));
            }
        }
    }
    let (mut groups, mut group_cap, mut max_groups) = (1usize, u64::MAX, u64::MAX);
    if let Some((ids, count, q, m)) = structure {
        // Every candidate has the key (checked above).
        if let Some((local, n)) = local_groups(ids, count, &cands) {
            for (cand, g) in cands.iter_mut().zip(local) {
                cand.2 = g;
            }
            groups = n;
        }
        group_cap = q;
        max_groups = m;
        limit = limit.min(q.saturating_mul(m));
    }
    cands.retain(|&(_, cap, _)| cap > 0);
    let capped: u64 = cands.iter().map(|&(_, cap, _)| u64::from(cap)).sum();
    limit = limit.min(capped);
    if limit == 0 {
        return unlimited;
    }
    // A used cluster holds at least minReplicasPerCluster replicas (one copy for Duplicated).
    let need = if divided { wc.min_per().max(1) } else { 1 };
    let forces =
        wc.w.spread_constraints
            .iter()
            .filter_map(|s| {
                let min = s.min_groups.unwrap_or(0) as usize;
                if min < 2 && s.max_skew.is_none() {
                    return None;
                }
                // Clusters without the key are in no group: no lower side is derived then.
                let key = &s.topology_key;
                let (group, groups) = local_groups(fleet.groups(key), fleet.group_count(key), &cands)?;
                Some(Force {
                    group,
                    groups,
                    min,
                    max: s.max_groups.map_or(usize::MAX, |m| m as usize),
                    skew: s.max_skew.map(u64::from),
                    need,
                })
            })
            .collect();
    Choice {
        forces,
        cands: Cands::new(cands),
        groups,
        group_cap,
        max_groups: usize::try_from(max_groups).unwrap_or(usize::MAX),
        max_clusters: usize::try_from(max_clusters).unwrap_or(usize::MAX),
        limit,
    }
}

/// Scaled prices (see [`certify`]) read off the plan: on each cluster, every resource the plan
/// fills to at least 90 % is priced at the lowest value density (value per unit of it) among the
/// workloads the plan put there, shared equally between the filled resources, so the plan's
/// marginal workloads are about indifferent there. Any prices give a valid bound; these are only
/// a starting point.
fn warm_start(
    fleet: &Fleet<'_>,
    contexts: &[WorkloadCtx<'_>],
    outcomes: &[Outcome],
    values: &[f64],
    free: &[f64],
    top: &[f64],
) -> Vec<f64> {
    let nr = fleet.resources.len();
    let mut used = vec![0.0f64; free.len()];
    let mut density = vec![f64::INFINITY; free.len()];
    for ((wc, o), &v) in contexts.iter().zip(outcomes).zip(values) {
        for &(c, n) in o.counts.iter().filter(|&&(_, n)| n > 0) {
            for &(r, q) in &wc.demand.0 {
                let i = c * nr + r;
                used[i] += q as f64 * n as f64;
                density[i] = density[i].min(v / q as f64);
            }
        }
    }
    let mut y = vec![0.0f64; free.len()];
    for c in 0..fleet.clusters.len() {
        let full = |i: &usize| top[*i] > 0.0 && density[*i].is_finite() && used[*i] >= 0.9 * free[*i];
        let n = (c * nr..(c + 1) * nr).filter(full).count();
        for i in (c * nr..(c + 1) * nr).filter(full) {
            y[i] = (density[i] / n as f64 / top[i]).min(1.0);
        }
    }
    y
}

/// What the certificate needs that does not depend on the plan: the objective's values, each
/// workload's relaxed choices, the row scales and the first round's prices. Computed while the
/// plan is being made (the placement itself runs on one core).
pub(crate) struct Prepared {
    values: Vec<f64>,
    relaxed: Vec<Relaxed>,
    free: Vec<f64>,
    top: Vec<f64>,
    /// Round 0: the better of zero prices and the pools' prices ([`pool_prices`]).
    start: Start,
    /// The bound at one price per resource ([`uniform_bound`]).
    uniform: f64,
    /// Lagrangian rounds ([`rounds`]); with one, `relaxed` is empty (nothing reads it again).
    rounds: usize,
}

/// Scaled prices and the Lagrangian's value and rows' load at them.
struct Start {
    y: Vec<f64>,
    value: f64,
    load: Vec<f64>,
}

/// The number of Lagrangian rounds for `relaxed`: about 1e6 pair evaluations in total, between
/// 1 and [`MAX_ROUNDS`]. Round 0 is at zero prices or the pools' prices (alone or raised to
/// the fleet-wide ones), whichever is best (all found by [`prepare`]), round 1 at the plan's
/// prices (`warm_start`); the subgradient steps go on from the better of the two. Where one
/// round already takes the budget (several million pairs), pools are not priced and a second
/// round could only try the plan's prices, with no step after it: the bound is the better of the
/// zero-price one and [`uniform_bound`].
fn rounds(relaxed: &[Relaxed]) -> usize {
    rounds_for(relaxed.iter().map(pairs).sum())
}

/// [`rounds`] for `pairs` (workload, cluster) pairs in all choice sets.
fn rounds_for(pairs: usize) -> usize {
    (1_000_000 / pairs.max(1)).clamp(1, MAX_ROUNDS)
}

/// The (workload, cluster) pairs of `w`'s choice sets.
fn pairs(w: &Relaxed) -> usize {
    w.choices.iter().map(|ch| ch.cands.len()).sum()
}

/// Workloads per task of [`prepare_one_round`]: each task reuses one set of response buffers.
const ONE_ROUND_CHUNK: usize = 64;

/// The most Lagrangian rounds, reached by instances of up to about 1,000 (workload, cluster)
/// pairs. Subgradient steps need many small steps to settle: at 40 x 6 the bound went from 11.9%
/// above the exact optimum after 40 rounds to 0.7% with these (a few milliseconds).
const MAX_ROUNDS: usize = 1_000;

/// Rounds without progress before the step is halved: patient when many rounds are left (the
/// Lagrangian is not smooth, so single steps often fail to improve), 2 when only a few are.
fn patience(rounds: usize) -> usize {
    (rounds / 50).clamp(2, 20)
}

/// Workloads below which a round's best responses are found on the calling thread.
const SEQUENTIAL_BELOW: usize = 64;

/// The smallest step scale tried; below it the steps stop. Smaller scales still improved bounds, by
/// less than 0.02% at 60 x 8 and 100 x 10, at twice the time.
const MIN_THETA: f64 = 0.01;

/// The plan-independent part of the certificate of `contexts` (in placement order).
pub(crate) fn prepare(fleet: &Fleet<'_>, filters: &Filters<'_>, contexts: &[WorkloadCtx<'_>]) -> Prepared {
    let values = replica_values(contexts);
    let empty = fleet.empty_usage();
    let free: Vec<f64> =
        fleet.free_flat().iter().map(|&f| if f == UNLIMITED { f64::INFINITY } else { f as f64 }).collect();
    // The admitted clusters bound the pairs from above: with fewer, more than one round follows
    // and every choice set is kept.
    let admitted: usize = contexts.iter().flat_map(|wc| wc.filters.iter()).map(|&f| filters.mask(f).count()).sum();
    if rounds_for(admitted) == 1 {
        match prepare_one_round(fleet, filters, contexts, values, free, &empty) {
            Ok(prepared) => return prepared,
            // Fewer pairs than admitted clusters suggested: the general path below.
            Err((v, f)) => return prepare_rounds(fleet, filters, contexts, v, f, &empty),
        }
    }
    prepare_rounds(fleet, filters, contexts, values, free, &empty)
}

/// [`prepare`] where one Lagrangian round is all the budget allows: each workload's choice sets
/// are built, answered at zero prices and dropped at once ([`answer_at_zero`]), so they never all
/// sit in memory (peak memory at 100k x 5k went from 3.5 GB to 0.8 GB). The same values as the
/// general path, bit for bit. Gives `values` and `free` back when the choice sets turn out to hold few
/// enough pairs for more rounds.
fn prepare_one_round(
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    contexts: &[WorkloadCtx<'_>],
    values: Vec<f64>,
    free: Vec<f64>,
    empty: &Usage,
) -> Result<Prepared, (Vec<f64>, Vec<f64>)> {
    let ZeroAnswers { summaries, totals, pairs } = answer_at_zero(fleet, filters, contexts, &values, empty);
    if rounds_for(pairs) > 1 {
        return Err((values, free));
    }
    // As `lagrangian` sums at zero prices: the responses in workload order.
    let value: f64 = totals.iter().sum();
    let uniform = uniform_bound(&summaries, &totals, &free, fleet.resources.len(), contexts, filters).bound();
    let zero = vec![0.0; free.len()];
    // With one round `certify` reads neither the rows' load nor the choice sets.
    let start = Start { y: zero.clone(), value, load: Vec::new() };
    Ok(Prepared { values, relaxed: Vec::new(), free, top: zero, start, uniform, rounds: 1 })
}

/// Every workload's best response at zero prices, found without keeping its choice sets.
struct ZeroAnswers {
    /// Each workload's [`Relaxed`] without its choice sets (value, unit and demand: all that
    /// [`uniform_bound`] reads), in workload order.
    summaries: Vec<Relaxed>,
    /// Each workload's best-response value, as [`lagrangian`] finds it at zero prices.
    totals: Vec<f64>,
    /// The (workload, cluster) pairs the choice sets held.
    pairs: usize,
}

/// [`ZeroAnswers`] of `contexts` with replica values `values`, in parallel: each task builds a
/// workload's choice sets, answers them and drops them before the next.
fn answer_at_zero(
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    contexts: &[WorkloadCtx<'_>],
    values: &[f64],
    empty: &Usage,
) -> ZeroAnswers {
    let nr = fleet.resources.len();
    let chunks: Vec<(&[WorkloadCtx<'_>], &[f64])> =
        contexts.chunks(ONE_ROUND_CHUNK).zip(values.chunks(ONE_ROUND_CHUNK)).collect();
    let parts: Vec<ZeroAnswers> = super::par_map(chunks, |(wcs, vs)| {
        let (mut s, mut out) = (Scratch::default(), Vec::new());
        let mut part = ZeroAnswers { summaries: Vec::with_capacity(wcs.len()), totals: Vec::new(), pairs: 0 };
        for (wc, &v) in wcs.iter().zip(vs) {
            let mut w = relax(fleet, filters, empty, wc, v);
            part.pairs += pairs(&w);
            part.totals.push(respond(&w, None, nr, &mut s, &mut out));
            w.choices = Vec::new();
            part.summaries.push(w);
        }
        part
    });
    let mut all = ZeroAnswers { summaries: Vec::with_capacity(contexts.len()), totals: Vec::new(), pairs: 0 };
    for part in parts {
        all.summaries.extend(part.summaries);
        all.totals.extend(part.totals);
        all.pairs += part.pairs;
    }
    all
}

/// [`prepare`] keeping every choice set, for the rounds after the first.
fn prepare_rounds(
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    contexts: &[WorkloadCtx<'_>],
    values: Vec<f64>,
    free: Vec<f64>,
    empty: &Usage,
) -> Prepared {
    let nr = fleet.resources.len();
    let relaxed: Vec<Relaxed> =
        super::par_map(contexts.iter().zip(&values).collect(), |(wc, &v)| relax(fleet, filters, empty, wc, v));

    // Prices are scaled per row (cluster and resource): `λ[i] = y[i] · top[i]`, where `top[i]` is
    // the highest value density (value per unit of the resource) of any workload that may use the
    // row, so rows only low-value workloads want and rows high-value ones compete for move alike.
    // At `y[i] = 1` no workload gains from the row any more, so `y <= 1`. Rows without a limit or
    // without free capacity are not priced (no candidate needs them).
    // Only price steps read them: none is taken where the budget allows one round.
    let mut top = vec![0.0f64; free.len()];
    let mut density: Vec<(usize, f64)> = Vec::new();
    let rounds = rounds(&relaxed);
    let stepped = rounds > 1;
    for w in relaxed.iter().filter(|_| stepped) {
        let per_replica = w.value / w.unit;
        density.clear();
        density.extend(w.demand.iter().filter(|&&(_, q)| q > 0.0).map(|&(r, q)| (r, per_replica / q)));
        for (c, _, _) in w.choices.iter().flat_map(|ch| ch.cands.iter()) {
            let base = c as usize * nr;
            for &(r, d) in &density {
                let i = base + r;
                if free[i].is_finite() && free[i] > 0.0 {
                    top[i] = top[i].max(d);
                }
            }
        }
    }
    let mut scratch = Vec::new();
    let zero = vec![0.0; free.len()];
    let (value, load, totals) = lagrangian(&relaxed, &zero, &top, &free, None, nr, &mut scratch);
    // Where priced rounds follow, they get at least as low as the pooled bound: its prices per
    // row are among their starting points, and the Lagrangian there is at most that bound.
    let uniform =
        if stepped { f64::INFINITY } else { uniform_bound(&relaxed, &totals, &free, nr, contexts, filters).bound() };
    let mut start = Start { y: zero, value, load };
    if stepped {
        // Three candidates: the pools' prices, those raised to the fleet-wide ones (where the
        // whole fleet is short of a resource, e.g. pods at 20k x 50), and the prices per pool
        // of [`uniform_bound`] (the filters' cluster sets, priced jointly: 3k x 30 from 0.80%
        // to 0.03% gap, 5k x 100 from 1.31% to 1.12%); the best one is kept.
        let units: Vec<f64> = relaxed.iter().map(max_units).collect();
        let pools = pool_prices(&relaxed, &units, &free, &top, nr);
        let fleet_wide: Vec<f64> =
            pools.iter().zip(fleet_prices(&relaxed, &units, &free, &top, nr)).map(|(&p, f)| p.max(f)).collect();
        let mut candidates = if fleet_wide == pools { vec![pools] } else { vec![pools, fleet_wide] };
        // Even where no pool is short, the fleet's own price per resource can start far lower
        // than the two above (a random small instance: 13.5 against 22). It costs a pass over
        // every choice set and the pools' search: 28 ms at 20k x 50, 37 ms at 5k x 100.
        let per_pool = uniform_bound(&relaxed, &totals, &free, nr, contexts, filters).rows;
        if !candidates.contains(&per_pool) {
            candidates.push(per_pool);
        }
        for prices in candidates.into_iter().filter(|p| p.iter().any(|&p| p > 0.0)) {
            let y: Vec<f64> = prices.iter().zip(&top).map(|(&p, &t)| if t > 0.0 { p / t } else { 0.0 }).collect();
            let (value, load, _) = lagrangian(&relaxed, &y, &top, &free, Some(&prices), nr, &mut scratch);
            if value < start.value {
                start = Start { y, value, load };
            }
        }
    }
    // With one round, `certify` reads no choice set: they are freed here, beside the placement,
    // not after it on the critical path (`phases` medians at 10k x 1k 3-10 ms lower).
    let relaxed = if stepped {
        relaxed
    } else {
        drop(relaxed);
        Vec::new()
    };
    Prepared { values, relaxed, free, top, start, uniform, rounds }
}

/// Sweeps of [`uniform_bound`]'s coordinate descent at most (it settles in two or three on the
/// generated fleets).
const UNIFORM_SWEEPS: usize = 8;

/// One workload's part in [`uniform_bound`]: the units of its largest response, a unit's value,
/// and what a unit needs of each resource charged to it.
struct UniformTerm {
    units: f64,
    value: f64,
    needs: Vec<(usize, f64)>,
}

impl UniformTerm {
    /// What a unit pays at `prices`, leaving out resource `skip`.
    fn cost(&self, prices: &[f64], skip: usize) -> f64 {
        self.needs.iter().filter(|&&(r, _)| r != skip).map(|&(r, k)| prices[r] * k).sum()
    }

    /// What a unit needs of resource `r`, where it is charged.
    fn need(&self, r: usize) -> Option<f64> {
        self.needs.iter().find(|&&(x, _)| x == r).map(|&(_, k)| k)
    }
}

/// A set of clusters priced by [`priced_in_pools`]: the workloads confined to it and its supply
/// per resource.
struct Pool {
    /// Its clusters (`None`: the whole fleet), a cluster bitset.
    clusters: Option<Vec<u64>>,
    /// Indices of the [`UniformTerm`]s of the workloads every cluster of which is in the pool.
    members: Vec<usize>,
    supply: Vec<f64>,
}

/// The lowest bound found at one price per resource and pool, where a row's price is the sum of
/// the prices of the pools that hold its cluster: a unit of a workload then pays at least the
/// prices of the pools it is confined to on every cluster it may use, so its best response is
/// at most its zero-price units times the unit's value less those prices (and the pools' prices
/// times their supply are the rows' part). Coordinate descent from zero prices, one (pool,
/// resource) at a time: with the others fixed, the best price is where the fractional knapsack
/// of the pool's members crosses its supply.
fn priced_in_pools(terms: &[UniformTerm], pools: &[Pool], zero: f64) -> (f64, Vec<f64>) {
    let nr = pools.first().map_or(0, |p| p.supply.len());
    let mut prices = vec![0.0f64; pools.len() * nr];
    // What a unit of each term pays at `prices`, kept in step with them.
    let mut cost = vec![0.0f64; terms.len()];
    let mut best = (zero, vec![0.0f64; prices.len()]);
    let mut items: Vec<(f64, f64)> = Vec::new();
    for _ in 0..UNIFORM_SWEEPS {
        let mut moved = false;
        for (i, pool) in pools.iter().enumerate() {
            for r in (0..nr).filter(|&r| pool.supply[r] > 0.0) {
                let old = prices[i * nr + r];
                items.clear();
                for &t in &pool.members {
                    let term = &terms[t];
                    let Some(k) = term.need(r) else { continue };
                    // Above this price the workload takes nothing.
                    let rest = term.value - (cost[t] - old * k);
                    if rest > 0.0 && term.units > 0.0 {
                        items.push((rest / k, term.units * k));
                    }
                }
                let demand: f64 = items.iter().map(|&(_, a)| a).sum();
                let price = if demand <= pool.supply[r] {
                    0.0
                } else {
                    items.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
                    marginal_density(&items, pool.supply[r]).map_or(0.0, |(d, _)| d)
                };
                if price != old {
                    moved = true;
                    prices[i * nr + r] = price;
                    for &t in &pool.members {
                        if let Some(k) = terms[t].need(r) {
                            cost[t] += (price - old) * k;
                        }
                    }
                }
            }
        }
        if !moved {
            break;
        }
        // The bound at these prices, with every cost summed afresh (the running ones drift).
        cost.iter_mut().for_each(|c| *c = 0.0);
        let mut value = 0.0;
        for (i, pool) in pools.iter().enumerate() {
            let p = &prices[i * nr..(i + 1) * nr];
            value += p.iter().zip(&pool.supply).map(|(p, s)| p * s).sum::<f64>();
            for &t in &pool.members {
                cost[t] += terms[t].cost(p, usize::MAX);
            }
        }
        value += terms.iter().zip(&cost).map(|(t, c)| t.units * (t.value - c).max(0.0)).sum::<f64>();
        if value < best.0 {
            best = (value, prices.clone());
        }
    }
    best
}

/// An upper bound on the Lagrangian at one price per resource, charged on every row of a cluster
/// that some workload needing the resource may open, found without a pass over the candidates.
///
/// At such prices a unit of a workload costs the same on each of its candidates, so its best
/// response is its zero-price one (`totals`, an upper bound on its value) scaled by the unit's
/// reduced value. Rows come from the workloads' filters (a superset of their candidates, which
/// only loosens); a resource that some cluster a workload admits does not limit is not charged
/// to it. The prices minimize the bound one resource at a time: with the others fixed, each step
/// is a fractional knapsack of the workloads' largest responses in that resource. Where the
/// budget allows one Lagrangian round (10k x 1k), this is as low as 37 rounds of subgradient
/// steps got.
///
/// Shortages confined to part of the fleet (a tier of clusters only some workloads may use) do
/// not show in fleet-wide prices when the rest of the fleet has room. So prices are also set per
/// *pool* ([`priced_in_pools`]): the whole fleet and the cluster sets of the filters most
/// workloads use, where the workloads confined to them (every cluster they may open is in the
/// set) over-demand a resource. Both bounds are returned ([`Uniform::bound`]: the lower).
fn uniform_bound(
    relaxed: &[Relaxed],
    totals: &[f64],
    free: &[f64],
    nr: usize,
    contexts: &[WorkloadCtx<'_>],
    filters: &Filters<'_>,
) -> Uniform {
    let zero: f64 = totals.iter().sum();
    let n_clusters = free.len() / nr.max(1);
    if nr == 0 || n_clusters == 0 {
        return Uniform { fleet_wide: zero, pooled: zero, rows: vec![0.0; free.len()] };
    }
    let words = n_clusters.div_ceil(64);
    // Per resource: the clusters some workload needing it may use, and those without a limit.
    let mut used = vec![0u64; nr * words];
    let mut unlimited = vec![0u64; nr * words];
    for (i, f) in free.iter().enumerate() {
        if !f.is_finite() {
            let (c, r) = (i / nr, i % nr);
            unlimited[r * words + c / 64] |= 1 << (c % 64);
        }
    }
    // Once per filter (keep-only clusters too, for workloads with previous decisions: they hold
    // only what such a decision put there) and resource some workload of it needs: its clusters
    // join the resource's rows, and whether every one of them limits the resource.
    let slot = |wc: &WorkloadCtx<'_>, f: usize| 2 * f + usize::from(!wc.previous.is_empty());
    let slots = contexts.iter().flat_map(|wc| wc.filters.iter().map(|&f| slot(wc, f) + 1)).max().unwrap_or(0);
    let mut wanted = vec![false; slots * nr];
    for (w, wc) in relaxed.iter().zip(contexts) {
        for &f in &wc.filters {
            for &(r, _) in w.demand.iter().filter(|&&(_, q)| q > 0.0) {
                wanted[slot(wc, f) * nr + r] = true;
            }
        }
    }
    let mut limited = vec![true; slots * nr];
    for (i, _) in wanted.iter().enumerate().filter(|&(_, &x)| x) {
        let (sl, r) = (i / nr, i % nr);
        let row = r * words..(r + 1) * words;
        let bits = filters.mask(sl / 2).usable_words(sl % 2 == 1);
        for ((u, &x), a) in used[row.clone()].iter_mut().zip(&unlimited[row]).zip(bits) {
            *u |= a;
            limited[i] &= a & x == 0;
        }
    }
    let terms: Vec<UniformTerm> = relaxed
        .iter()
        .zip(contexts)
        .zip(totals)
        .map(|((w, wc), &total)| {
            let needs = w
                .demand
                .iter()
                .filter(|&&(r, q)| q > 0.0 && wc.filters.iter().all(|&f| limited[slot(wc, f) * nr + r]))
                .map(|&(r, q)| (r, q * w.unit))
                .collect();
            let units = if w.value > 0.0 { total / w.value } else { 0.0 };
            UniformTerm { units, value: w.value, needs }
        })
        .collect();
    let supply_in = |pool: Option<&[u64]>| {
        let mut supply = vec![0.0f64; nr];
        for (i, f) in free.iter().enumerate() {
            let (c, r) = (i / nr, i % nr);
            let bit = |words: &[u64]| words[c / 64] & (1 << (c % 64)) != 0;
            if f.is_finite() && bit(&used[r * words..(r + 1) * words]) && pool.is_none_or(bit) {
                supply[r] += f;
            }
        }
        supply
    };
    let all: Vec<&UniformTerm> = terms.iter().collect();
    let fleet_wide = priced_uniformly(&all, &supply_in(None), zero);
    // Pool candidates: the cluster sets of the filters most workloads use.
    let mut ids: std::collections::BTreeMap<Vec<u64>, usize> = std::collections::BTreeMap::new();
    // Per workload, the ids of its filters' cluster sets.
    let of_workload: Vec<Vec<usize>> = contexts
        .iter()
        .map(|wc| {
            let keep = !wc.previous.is_empty();
            wc.filters
                .iter()
                .map(|&f| {
                    let n = ids.len();
                    *ids.entry(filters.mask(f).usable_words(keep).collect()).or_insert(n)
                })
                .collect()
        })
        .collect();
    let mut sets: Vec<Vec<u64>> = vec![Vec::new(); ids.len()];
    for (set, id) in ids {
        sets[id] = set;
    }
    let mut uses = vec![0usize; sets.len()];
    for &id in of_workload.iter().flatten() {
        uses[id] += 1;
    }
    let mut candidates: Vec<usize> = (0..sets.len()).collect();
    candidates.sort_by(|&a, &b| uses[b].cmp(&uses[a]).then_with(|| sets[a].cmp(&sets[b])));
    candidates.truncate(POOL_CANDIDATES);
    // The fleet first, then the candidate pools where what is confined to them over-demands
    // a resource at zero prices (elsewhere a price never rises above 0).
    let mut pools: Vec<Pool> =
        vec![Pool { clusters: None, members: (0..terms.len()).collect(), supply: supply_in(None) }];
    let mut inside = vec![false; sets.len()];
    for &candidate in &candidates {
        let set = &sets[candidate];
        for (i, other) in inside.iter_mut().zip(&sets) {
            *i = other.iter().zip(set).all(|(m, &p)| m & !p == 0);
        }
        let members: Vec<usize> =
            (0..terms.len()).filter(|&t| terms[t].units > 0.0 && of_workload[t].iter().all(|&id| inside[id])).collect();
        let supply = supply_in(Some(set));
        let short = (0..nr).any(|r| {
            let demand: f64 = members.iter().filter_map(|&t| terms[t].need(r).map(|k| terms[t].units * k)).sum();
            demand > supply[r]
        });
        if short {
            pools.push(Pool { clusters: Some(set.clone()), members, supply });
        }
    }
    let (pooled, prices) = priced_in_pools(&terms, &pools, zero);
    // The same prices per row: each row pays those of the pools that hold it and count it in
    // their supply.
    let mut rows = vec![0.0f64; free.len()];
    for (pool, p) in pools.iter().zip(prices.chunks(nr.max(1))) {
        for (i, row) in rows.iter_mut().enumerate() {
            let (c, r) = (i / nr, i % nr);
            let bit = |words: &[u64]| words[c / 64] & (1 << (c % 64)) != 0;
            if p[r] > 0.0
                && free[i].is_finite()
                && bit(&used[r * words..(r + 1) * words])
                && pool.clusters.as_deref().is_none_or(bit)
            {
                *row += p[r];
            }
        }
    }
    Uniform { fleet_wide, pooled, rows }
}

/// [`uniform_bound`]'s two bounds.
#[derive(Clone, Debug)]
struct Uniform {
    /// One price per resource on the whole fleet.
    fleet_wide: f64,
    /// One price per resource in the fleet and in each pool priced.
    pooled: f64,
    /// The prices of `pooled` per row (cluster-major).
    rows: Vec<f64>,
}

impl Uniform {
    /// The lower of the two.
    fn bound(&self) -> f64 {
        self.fleet_wide.min(self.pooled)
    }
}

/// Candidate pools of [`uniform_bound`]: the filters' cluster sets most workloads use. On the
/// generated fleets the 16 most used already give all of the gain (gap 1.35% to 1.29% at
/// 10k x 1k, 1.73% to 1.30% at 100k x 5k; 2,048 give the same), at 64 beside the placement.
const POOL_CANDIDATES: usize = 64;

/// The lowest bound at one price per resource for `terms` on `supply` (per resource), by
/// coordinate descent from zero prices (`zero`: the bound there).
fn priced_uniformly(terms: &[&UniformTerm], supply: &[f64], zero: f64) -> f64 {
    let nr = supply.len();
    let value_at = |p: &[f64]| -> f64 {
        let priced: f64 = p.iter().zip(supply).map(|(p, s)| p * s).sum();
        terms.iter().fold(priced, |sum, t| sum + t.units * (t.value - t.cost(p, usize::MAX)).max(0.0))
    };
    let mut p = vec![0.0f64; nr];
    let mut best = zero;
    let mut items: Vec<(f64, f64)> = Vec::new();
    for _ in 0..UNIFORM_SWEEPS {
        let mut moved = false;
        for r in (0..nr).filter(|&r| supply[r] > 0.0) {
            items.clear();
            for t in terms {
                let Some(&(_, k)) = t.needs.iter().find(|&&(x, _)| x == r) else { continue };
                // Above this price the workload takes nothing.
                let rest = t.value - t.cost(&p, r);
                if rest > 0.0 && t.units > 0.0 {
                    items.push((rest / k, t.units * k));
                }
            }
            // Where everything fits the price is 0, without sorting.
            let demand: f64 = items.iter().map(|&(_, a)| a).sum();
            let price = if demand <= supply[r] {
                0.0
            } else {
                // Equal densities may come in any order: only the crossing density is read.
                items.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
                marginal_density(&items, supply[r]).map_or(0.0, |(d, _)| d)
            };
            if price != p[r] {
                moved = true;
                p[r] = price;
            }
        }
        if !moved {
            break;
        }
        best = best.min(value_at(&p));
    }
    best
}

/// Largest pool, in clusters, that [`pool_prices`] prices.
const POOL_MAX_CLUSTERS: usize = 64;

/// Most pools [`pool_prices`] looks at (the smallest first).
const MAX_POOLS: usize = 1_024;

/// Most subset checks [`pool_prices`] makes (each compares at most [`POOL_MAX_CLUSTERS`]
/// clusters): the pools left once they are spent stay unpriced, so many small distinct
/// candidate sets cannot make it quadratic.
const MAX_POOL_CHECKS: usize = 2_000_000;

/// Prices (unscaled) for pools of clusters that the workloads confined to them over-demand.
///
/// A pool is a set of clusters that is some workload's whole candidate set (over its affinity
/// groups); its members are the workloads whose candidate sets lie inside it. When the members
/// want more of a resource than the pool has in total, pricing that resource on the pool's
/// clusters at the value density of the marginal member (the fractional knapsack's) takes off
/// what cannot fit: GPU workloads confined to the few GPU clusters, or workloads pinned to one
/// cluster. Per pool one resource is priced, the one whose knapsack cuts the most value; pools go
/// smallest first and skip those overlapping a priced one, since charging the same members on
/// two rows double counts (at 1k x 100 high: 3.97e6 with overlaps, 3.95e6 without, next to the
/// LP relaxation's 3.94e6). Any prices give a valid bound; these are only a starting point, and
/// mostly zero: subgradient steps from the plan's prices spread prices over every row and, at a
/// few rounds, never bring them back down.
fn pool_prices(relaxed: &[Relaxed], units: &[f64], free: &[f64], top: &[f64], nr: usize) -> Vec<f64> {
    use std::collections::BTreeMap;
    // Distinct candidate sets (sorted clusters) and the workloads that have them.
    let mut sets: BTreeMap<Vec<u32>, Vec<usize>> = BTreeMap::new();
    for (k, w) in relaxed.iter().enumerate() {
        let mut set: Vec<u32> = w.choices.iter().flat_map(|ch| ch.cands.iter().map(|(c, _, _)| c)).collect();
        set.sort_unstable();
        set.dedup();
        if !set.is_empty() && set.len() <= POOL_MAX_CLUSTERS {
            sets.entry(set).or_default().push(k);
        }
    }
    // Sets by their first cluster: a subset of a pool starts at one of the pool's clusters.
    let mut by_first: BTreeMap<u32, Vec<&Vec<u32>>> = BTreeMap::new();
    for set in sets.keys() {
        by_first.entry(set[0]).or_default().push(set);
    }
    let mut pools: Vec<&Vec<u32>> = sets.keys().collect();
    pools.sort_by_key(|s| s.len());
    pools.truncate(MAX_POOLS);

    let mut prices = vec![0.0f64; free.len()];
    let mut priced = vec![false; free.len() / nr.max(1)];
    let mut items: Vec<(f64, f64)> = Vec::new();
    let mut checks = MAX_POOL_CHECKS;
    for pool in pools {
        if pool.iter().any(|&c| priced[c as usize]) {
            continue;
        }
        let candidates = pool.iter().filter_map(|c| by_first.get(c)).map(Vec::len).sum::<usize>();
        if candidates > checks {
            break;
        }
        checks -= candidates;
        let members: Vec<usize> = pool
            .iter()
            .filter_map(|c| by_first.get(c))
            .flatten()
            .filter(|set| set.len() <= pool.len() && is_subset(set, pool))
            .flat_map(|set| sets[*set].iter().copied())
            .collect();
        // (value cut, resource, price) of the resource whose knapsack cuts the most.
        let mut best: Option<(f64, usize, f64)> = None;
        for r in 0..nr {
            let rows = pool.iter().map(|&c| c as usize * nr + r);
            if rows.clone().any(|i| !free[i].is_finite() || top[i] <= 0.0) {
                continue;
            }
            let supply: f64 = rows.map(|i| free[i]).sum();
            knapsack_items(members.iter().map(|&k| (&relaxed[k], units[k])), r, &mut items);
            let Some((price, kept)) = marginal_density(&items, supply) else { continue };
            let cut = items.iter().map(|&(d, a)| d * a).sum::<f64>() - kept;
            if best.is_none_or(|(b, _, _)| cut > b) {
                best = Some((cut, r, price));
            }
        }
        if let Some((_, r, price)) = best {
            for &c in pool {
                let i = c as usize * nr + r;
                prices[i] = price.min(top[i]);
                priced[c as usize] = true;
            }
        }
    }
    prices
}

/// Prices (unscaled) for the resources the whole fleet is short of: per resource, every row that
/// some workload may use is priced at the fractional knapsack's marginal value density over all
/// workloads and the fleet's total free amount. At 20k x 50 high pods are short fleet-wide (the
/// LP relaxation prices them at 201 on 48 of 50 clusters); no pool holds that, since small
/// pools come first and overlapping ones are skipped.
fn fleet_prices(relaxed: &[Relaxed], units: &[f64], free: &[f64], top: &[f64], nr: usize) -> Vec<f64> {
    let mut prices = vec![0.0f64; free.len()];
    let mut items: Vec<(f64, f64)> = Vec::new();
    for r in 0..nr {
        let rows = || (r..free.len()).step_by(nr.max(1)).filter(|&i| top[i] > 0.0 && free[i].is_finite());
        let supply: f64 = rows().map(|i| free[i]).sum();
        knapsack_items(relaxed.iter().zip(units.iter().copied()), r, &mut items);
        let Some(price) = marginal_density(&items, supply).map(|(price, _)| price) else { continue };
        for i in rows() {
            prices[i] = price.min(top[i]);
        }
    }
    prices
}

/// The most units `w` can place in one choice set, by count limit and candidate caps.
fn max_units(w: &Relaxed) -> f64 {
    w.choices
        .iter()
        .map(|ch| (ch.limit as f64).min(ch.cands.iter().map(|(_, cap, _)| f64::from(cap)).sum()))
        .fold(0.0, f64::max)
}

/// The fractional knapsack's items for resource `r` in `items`: for each workload of `ws` (with
/// its most units) that needs `r`, its value per unit of `r` and the most of `r` it can take.
/// Densest first; the sort is stable, so ties stay in the order of `ws`.
fn knapsack_items<'a>(ws: impl Iterator<Item = (&'a Relaxed, f64)>, r: usize, items: &mut Vec<(f64, f64)>) {
    items.clear();
    for (w, units) in ws {
        let Some(&(_, q)) = w.demand.iter().find(|&&(dr, q)| dr == r && q > 0.0) else { continue };
        items.push((w.value / w.unit / q, units * w.unit * q));
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
}

/// The fractional knapsack over `items` (`(density, amount)`, densest first) with `supply`: the
/// density of the item that does not fit whole, and the value kept; `None` when everything fits
/// (or the marginal density is 0).
fn marginal_density(items: &[(f64, f64)], supply: f64) -> Option<(f64, f64)> {
    let (mut filled, mut kept) = (0.0, 0.0);
    for &(density, amount) in items {
        if filled + amount >= supply {
            kept += density * (supply - filled);
            return (density > 0.0).then_some((density, kept));
        }
        filled += amount;
        kept += density * amount;
    }
    None
}

/// Whether sorted `a` is a subset of sorted `b`.
fn is_subset(a: &[u32], b: &[u32]) -> bool {
    let mut rest = b.iter();
    a.iter().all(|x| rest.by_ref().any(|y| y == x))
}

/// The Lagrangian's value at scaled prices `y` (`prices = y · top`, `None` where `y` is all zero),
/// the load the workloads' best responses put on each row, and each workload's best-response
/// value (in workload order).
fn lagrangian(
    relaxed: &[Relaxed],
    y: &[f64],
    top: &[f64],
    free: &[f64],
    prices: Option<&[f64]>,
    nr: usize,
    scratch: &mut Vec<Scratch>,
) -> (f64, Vec<f64>, Vec<f64>) {
    let mut load = vec![0.0f64; free.len()];
    let mut totals = Vec::with_capacity(relaxed.len());
    let mut value: f64 = y.iter().zip(top).zip(free).filter(|((y, _), _)| **y > 0.0).map(|((y, t), f)| y * t * f).sum();
    // Each workload's best response is independent given the prices; the sums below are taken in
    // workload order, so the result does not depend on how the responses are found. Workloads
    // go to the pool in a few chunks, each with its own buffers; small instances respond on the
    // calling thread (handing work to the pool costs more than their whole round).
    let size = if relaxed.len() < SEQUENTIAL_BELOW { relaxed.len() } else { relaxed.len().div_ceil(RESPONSE_CHUNKS) };
    let chunks: Vec<&[Relaxed]> = relaxed.chunks(size.max(1)).collect();
    scratch.resize_with(scratch.len().max(chunks.len()), Scratch::default);
    let answers: Vec<Answers> = super::par_map(chunks.into_iter().zip(scratch.iter_mut()).collect(), |(ws, s)| {
        let mut out = Vec::new();
        let mut a =
            Answers { totals: Vec::with_capacity(ws.len()), ends: Vec::with_capacity(ws.len()), taken: Vec::new() };
        for w in ws {
            a.totals.push(respond(w, prices, nr, s, &mut out));
            a.taken.extend_from_slice(&out);
            a.ends.push(a.taken.len());
        }
        a
    });
    let mut ws = relaxed.iter();
    for a in &answers {
        let mut from = 0;
        for (total, &end) in a.totals.iter().zip(&a.ends) {
            let Some(w) = ws.next() else { break };
            value += total;
            totals.push(*total);
            for &(c, x) in &a.taken[from..end] {
                let base = c * nr;
                for &(r, q) in &w.demand {
                    load[base + r] += q * w.unit * x;
                }
            }
            from = end;
        }
    }
    (value, load, totals)
}

/// The best responses of a chunk of workloads, in workload order: each one's value, and its
/// `(cluster, units)` in `taken` up to its end.
struct Answers {
    totals: Vec<f64>,
    ends: Vec<usize>,
    taken: Vec<(usize, f64)>,
}

/// Chunks a round's best responses are split into for the pool (a few per core).
const RESPONSE_CHUNKS: usize = 32;

/// Rounds' worth of pair evaluations [`lower_slack_prices`] may spend beyond its first full
/// round. A pair costs about 45 ns on one core; at 1k x 100 a round is about 43,000 pairs.
const SLACK_ROUNDS: usize = 6;

/// The gap below which [`lower_slack_prices`] is not run: it could not change the reported gap
/// by more than that, and at 1k x 100 low (0.013%) it cost more than the rest of the
/// certificate.
const SLACK_MIN_GAP: f64 = 1e-3;

/// Fractions of its price a slack row is tried at by [`lower_slack_prices`], lowest first.
const SLACK_PRICE_STEPS: [f64; 3] = [0.0, 0.25, 0.5];

/// Coordinate steps after the subgradient ones. A priced row (cluster and resource) that the
/// workloads' best responses leave slack pays its price for capacity nothing uses; one cluster
/// at a time, most paid first, its slack rows are lowered to the first fraction of
/// [`SLACK_PRICE_STEPS`] that lowers the Lagrangian (only the workloads that may use the cluster
/// and find it worth something at the lowered prices respond again). The lowest such fraction, not the best: a cluster that gets cheaper draws
/// responses off others and leaves them slack in turn (taking the best one at 3k x 30 ended
/// 0.7% higher). The subgradient steps move every row at once and, in the few rounds large
/// instances get, never kept a step that lowered such rows: at 3k x 30 high, pods priced
/// fleet-wide on three large clusters only a few workloads admit made 294,582 of the 422,630
/// between bound and objective.
///
/// A cluster is only tried when what its slack rows pay, the most lowering them can gain (the
/// responses' value is convex in the prices, with the load as subgradient), is at least `worth`.
/// Updates `y` and returns its Lagrangian, summed in workload order like [`lagrangian`]. Spends
/// one round's pair evaluations plus at most [`SLACK_ROUNDS`] rounds' worth on the workloads that
/// respond again. At 20k x 50, where pods are priced fleet-wide and each cluster leaves a few
/// unused, most workloads find a cluster worth nothing even at half its pod price, so counting
/// only those that respond again reaches far more clusters (gap 1.06% -> 0.92%).
fn lower_slack_prices(relaxed: &[Relaxed], y: &mut [f64], top: &[f64], free: &[f64], nr: usize, worth: f64) -> f64 {
    let mut prices: Vec<f64> = y.iter().zip(top).map(|(y, t)| y * t).collect();
    let n_clusters = free.len() / nr.max(1);
    // The workloads that may use each cluster, in workload order.
    let mut users: Vec<Vec<u32>> = vec![Vec::new(); n_clusters];
    for (i, w) in relaxed.iter().enumerate() {
        for (c, _, _) in w.choices.iter().flat_map(|ch| ch.cands.iter()) {
            let list = &mut users[c as usize];
            if list.last() != Some(&(i as u32)) {
                list.push(i as u32);
            }
        }
    }
    let pairs = |w: &Relaxed| -> usize { w.choices.iter().map(|ch| ch.cands.len()).sum() };
    // Each workload's best response at the current prices, and the load the responses put on
    // each row.
    let answers = super::par_map(relaxed.chunks(RESPONSE_CHUNK_WORKLOADS).collect(), |ws: &[Relaxed]| {
        let (mut s, mut out) = (Scratch::default(), Vec::new());
        ws.iter().map(|w| (respond(w, Some(&prices), nr, &mut s, &mut out), out.clone())).collect::<Vec<_>>()
    });
    let (mut value, mut taken): (Vec<f64>, Vec<Vec<(usize, f64)>>) = answers.into_iter().flatten().unzip();
    let mut load = vec![0.0f64; free.len()];
    let add_load = |load: &mut [f64], w: &Relaxed, response: &[(usize, f64)], sign: f64| {
        for &(c, x) in response {
            for &(r, q) in &w.demand {
                load[c * nr + r] += sign * q * w.unit * x;
            }
        }
    };
    for (w, response) in relaxed.iter().zip(&taken) {
        add_load(&mut load, w, response, 1.0);
    }
    let slack_rows = |c: usize, prices: &[f64], load: &[f64]| -> Vec<usize> {
        (c * nr..(c + 1) * nr).filter(|&i| prices[i] > 0.0 && free[i].is_finite() && load[i] < free[i]).collect()
    };
    let mut clusters: Vec<(f64, usize)> = (0..n_clusters)
        .map(|c| (slack_rows(c, &prices, &load).iter().map(|&i| prices[i] * (free[i] - load[i])).sum::<f64>(), c))
        .filter(|&(paid, _)| paid > 0.0 && paid >= worth)
        .collect();
    clusters.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = SLACK_ROUNDS * relaxed.iter().map(pairs).sum::<usize>();
    // Without spread lower sides, a response reads only the candidates of positive reduced
    // value: a workload to which `c` stays worth nothing at the lowered prices responds as
    // before (lowering only raises reduced values, so it was worth nothing before either).
    let forced: Vec<bool> = relaxed.iter().map(|w| w.choices.iter().any(|ch| !ch.forces.is_empty())).collect();
    let mut movers: Vec<u32> = Vec::new();
    for c in clusters.into_iter().map(|(_, c)| c) {
        let rows = slack_rows(c, &prices, &load);
        let old: Vec<f64> = rows.iter().map(|&i| prices[i]).collect();
        let mut lowered = false;
        for &f in &SLACK_PRICE_STEPS {
            if rows.is_empty() {
                break;
            }
            for (&i, &p) in rows.iter().zip(&old) {
                prices[i] = p * f;
            }
            movers.clear();
            movers.extend(
                users[c]
                    .iter()
                    .filter(|&&w| forced[w as usize] || reduced(&relaxed[w as usize], &prices, nr, c as u32) > 0.0),
            );
            // One try may spend at most half of what is left, so one large cluster that fails
            // cannot starve the smaller ones after it (at 3k x 30 one did, and the bound ended
            // 0.7% higher).
            let per_try: usize = movers.iter().map(|&w| pairs(&relaxed[w as usize])).sum();
            if per_try > left / 2 {
                break;
            }
            left -= per_try;
            let answers = super::par_map(movers.chunks(RESPONSE_CHUNK_WORKLOADS).collect(), |ws: &[u32]| {
                let (mut s, mut out) = (Scratch::default(), Vec::new());
                ws.iter()
                    .map(|&w| (respond(&relaxed[w as usize], Some(&prices), nr, &mut s, &mut out), out.clone()))
                    .collect::<Vec<_>>()
            });
            let mut delta: f64 = rows.iter().zip(&old).map(|(&i, &p)| (prices[i] - p) * free[i]).sum();
            for (&w, (v, _)) in movers.iter().zip(answers.iter().flatten()) {
                delta += v - value[w as usize];
            }
            if delta < 0.0 {
                lowered = true;
                for (&w, (v, response)) in movers.iter().zip(answers.into_iter().flatten()) {
                    let (wi, w) = (w as usize, &relaxed[w as usize]);
                    add_load(&mut load, w, &taken[wi], -1.0);
                    add_load(&mut load, w, &response, 1.0);
                    value[wi] = v;
                    taken[wi] = response;
                }
                break;
            }
        }
        if lowered {
            for &i in &rows {
                y[i] = prices[i] / top[i];
            }
        } else {
            for (&i, &p) in rows.iter().zip(&old) {
                prices[i] = p;
            }
        }
    }
    // The prices the responses saw (`y · top` may round differently).
    let priced: f64 = prices.iter().zip(free).filter(|(p, _)| **p > 0.0).map(|(p, f)| p * f).sum();
    value.iter().fold(priced, |sum, v| sum + v)
}

/// The share of the gap a cluster's slack rows must pay for [`lower_slack_prices`] to try them.
/// At 1k x 100 high none does, and trying every cluster cost about 15 ms per solve for 0.01
/// points of gap; at 3k x 30 three clusters pay 70% of it.
const SLACK_MIN_SHARE: f64 = 0.01;

/// Workloads per chunk when [`lower_slack_prices`] has workloads respond in parallel.
const RESPONSE_CHUNK_WORKLOADS: usize = 256;

/// The certificate of `outcomes` (in placement order), from what [`prepare`] computed for the
/// same contexts.
pub(crate) fn certify(
    prepared: &Prepared,
    fleet: &Fleet<'_>,
    contexts: &[WorkloadCtx<'_>],
    outcomes: &[Outcome],
) -> Certificate {
    let Prepared { values, relaxed, free, top, start, uniform, rounds } = prepared;
    let nr = fleet.resources.len();
    let objective: f64 = outcomes.iter().zip(values).map(|(o, v)| o.placed() as f64 * v).sum();
    let mut y = start.y.clone();
    let mut prices: Vec<f64> = y.iter().zip(top).map(|(y, t)| y * t).collect();
    let mut best = f64::INFINITY;
    let mut best_y = y.clone();
    let rounds = *rounds;
    let patience = patience(rounds);
    // The plan's prices, for round 1 (none when there is no round 1).
    let warm = (rounds > 1).then(|| warm_start(fleet, contexts, outcomes, values, free, top));
    // Step scale: halved (restarting from the best prices) after `patience` rounds without
    // progress.
    let mut theta = 1.0;
    let mut stale = 0;
    // Response buffers, kept across rounds.
    let mut scratch = Vec::new();
    let mut first = Some((start.value, start.load.clone()));
    for round in 0..rounds {
        // Round 0 was computed by `prepare`.
        let (mut value, mut load) = match first.take() {
            Some(at_start) => at_start,
            None => {
                let (value, load, _) = lagrangian(relaxed, &y, top, free, Some(&prices), nr, &mut scratch);
                (value, load)
            }
        };
        if value < best {
            best = value;
            best_y.copy_from_slice(&y);
            stale = 0;
        } else if round == 1 {
            // The plan's prices did not help: step from round 0's instead.
            y.copy_from_slice(&best_y);
            load.copy_from_slice(&start.load);
            value = best;
        } else {
            stale += 1;
            if stale >= patience {
                theta /= 2.0;
                stale = 0;
                y.copy_from_slice(&best_y);
            }
        }
        if round == 0
            && best > objective
            && let Some(warm) = &warm
        {
            y.copy_from_slice(warm);
            for ((lambda, &y), &t) in prices.iter_mut().zip(&y).zip(top) {
                *lambda = y * t;
            }
            continue;
        }
        if round + 1 == rounds {
            break;
        }
        // Projected subgradient step toward the plan's objective (Polyak, scaled by `theta`) in
        // each row's price times its capacity, `u[i] = λ[i] · free[i]` (the row's worth), where
        // `∂/∂u[i] = (free[i] − load[i]) / free[i]`: every row moves by its relative slack, so
        // rows of small clusters and scarce resources settle as fast as large ones (stepping in
        // `y` moved rows by `top[i]²`, and 1k x 100 ended 0.1% higher).
        let grad: Vec<f64> =
            top.iter().zip(free).zip(&load).map(|((&t, &f), &l)| if t > 0.0 { (f - l) / f } else { 0.0 }).collect();
        let sq: f64 = grad.iter().zip(&y).filter(|(g, y)| **g < 0.0 || **y > 0.0).map(|(g, _)| g * g).sum();
        if sq <= 0.0 || best <= objective || theta < MIN_THETA {
            break;
        }
        let step = theta * (value - objective).max(value * 1e-3) / sq;
        for (((y, g), (lambda, &t)), &f) in y.iter_mut().zip(&grad).zip(prices.iter_mut().zip(top)).zip(free) {
            if t > 0.0 {
                // `u = y · top · free`.
                *y = (*y - step * g / (t * f)).clamp(0.0, 1.0);
            }
            *lambda = *y * t;
        }
    }
    if rounds > 1 && best - objective > SLACK_MIN_GAP * best {
        let worth = SLACK_MIN_SHARE * (best - objective);
        let value = lower_slack_prices(relaxed, &mut best_y, top, free, nr, worth);
        best = best.min(value);
    }
    let bound = best.min(*uniform).max(objective);
    let gap = if bound > 0.0 { (bound - objective) / bound } else { 0.0 };
    Certificate { objective, bound, gap }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replica_values_grow_linearly_with_priority() {
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
        let contexts: Vec<_> =
            order.iter().enumerate().map(|(i, w)| super::WorkloadCtx::new(i, w, &fleet, &filters, None)).collect();
        let values = super::replica_values(&contexts);
        assert_eq!(values, vec![6.0, 1.0]);
    }

    use crate::{Cluster, ClusterAffinity, Location, PlacementInput, Quantity, SpreadConstraint, Workload, solve};

    fn cluster(name: &str, zone: &str, provider: &str, cpu: u64) -> Cluster {
        let mut c = Cluster { name: name.into(), ..Cluster::default() };
        c.location = Location { provider: Some(provider.into()), region: Some("r".into()), zone: Some(zone.into()) };
        c.capacity.insert("cpu".into(), Quantity::from_units(cpu));
        c
    }

    fn workload(replicas: u32) -> Workload {
        let mut w = Workload::named("w");
        w.replicas = replicas;
        w.resources.insert("cpu".into(), Quantity::from_units(1));
        w
    }

    /// A fixed xorshift sequence: `next(n)` draws from `0..n`.
    fn draws(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        }
    }

    /// `count` clusters `c0`.. in `zones` zones, with 1 to `cpu` cpu, 0 to 2 GPUs and, for about
    /// half of them, 1 to `pods` pods (the others do not limit pods).
    fn random_clusters(next: &mut impl FnMut(u64) -> u64, count: u64, zones: u64, cpu: u64, pods: u64) -> Vec<Cluster> {
        (0..count)
            .map(|i| {
                let mut c = cluster(&format!("c{i}"), &format!("z{}", next(zones)), "p", 1 + next(cpu));
                c.capacity.insert("nvidia.com/gpu".into(), Quantity::from_units(next(3)));
                if next(2) == 0 {
                    c.capacity.insert("pods".into(), Quantity::from_units(1 + next(pods)));
                }
                c
            })
            .collect()
    }

    fn spread(key: &str, min: Option<u32>, max: Option<u32>, skew: Option<u32>) -> SpreadConstraint {
        SpreadConstraint { topology_key: key.into(), min_groups: min, max_groups: max, max_skew: skew }
    }

    fn bound_of(clusters: Vec<Cluster>, w: Workload) -> (f64, f64) {
        let plan = solve(&PlacementInput { clusters, workloads: vec![w], ..PlacementInput::default() }).expect("valid");
        (plan.objective, plan.bound)
    }

    // In the cases below the earlier relaxation (the union of the affinity groups, no spread
    // limits) gave 10 unless noted: every replica fits somewhere on its own.

    #[test]
    fn skew_and_min_groups_bound_the_best_group() {
        // Two zones must be used, within one replica of each other; zone b has room for one, so
        // at most 1 + 2 replicas are placed.
        let mut w = workload(10);
        w.spread_constraints.push(spread("zone", Some(2), None, Some(1)));
        let (objective, bound) = bound_of(vec![cluster("a", "za", "p", 10), cluster("b", "zb", "p", 1)], w);
        assert_eq!(objective, 3.0);
        assert!(bound <= 3.0 + 1e-9, "bound {bound}");
    }

    #[test]
    fn one_affinity_group_is_used() {
        let mut w = workload(10);
        w.cluster_affinities = ["a", "b"]
            .iter()
            .map(|n| ClusterAffinity {
                name: Some(format!("g-{n}")),
                cluster_names: vec![n.to_string()],
                ..Default::default()
            })
            .collect();
        let (objective, bound) = bound_of(vec![cluster("a", "za", "p", 5), cluster("b", "zb", "q", 5)], w);
        assert_eq!(objective, 5.0);
        assert!(bound <= 5.0 + 1e-9, "bound {bound}");
    }

    #[test]
    fn number_of_clusters_caps_the_bound_at_equal_values() {
        // At most two clusters of at most two replicas: 4 of 8 replicas, whichever two clusters.
        // Every candidate has the same value (zero prices), which the count limit's search over
        // breakpoints once mistook for its bottom, leaving the bound at all 8.
        let mut w = workload(8);
        w.number_of_clusters = Some(2);
        w.replica_scheduling.max_replicas_per_cluster = Some(2);
        let clusters = ["a", "b", "c", "d"].iter().map(|n| cluster(n, "za", "p", 10)).collect();
        let (objective, bound) = bound_of(clusters, w);
        assert_eq!(objective, 4.0);
        assert!(bound <= 4.0 + 1e-9, "bound {bound}");
    }

    #[test]
    fn max_groups_is_priced() {
        let mut w = workload(10);
        w.spread_constraints.push(spread("provider", None, Some(1), None));
        let (objective, bound) = bound_of(vec![cluster("a", "za", "p", 5), cluster("b", "zb", "q", 5)], w);
        assert_eq!(objective, 5.0);
        assert!(bound <= 5.0 + 1e-9, "bound {bound}");
    }

    #[test]
    fn duplicated_skew_caps_copies_per_group() {
        // Up to three copies of 2 replicas on two providers with equal counts: provider q has room
        // for one copy, so two copies (4 replicas) at most; the earlier relaxation allowed 6.
        let mut w = workload(2);
        w.replica_scheduling.kind = crate::ReplicaSchedulingType::Duplicated;
        w.number_of_clusters = Some(3);
        w.spread_constraints.push(spread("provider", Some(2), None, Some(0)));
        let clusters = vec![cluster("a", "za", "p", 4), cluster("b", "zb", "p", 4), cluster("c", "zc", "q", 2)];
        let (objective, bound) = bound_of(clusters, w);
        assert_eq!(objective, 4.0);
        assert!(bound <= 4.0 + 1e-9, "bound {bound}");
    }

    /// The prepared round 0 of `workloads` on `clusters`: its scaled prices per (cluster,
    /// resource) row and its value, and the value at zero prices.
    fn round_zero(clusters: Vec<Cluster>, workloads: Vec<Workload>) -> (Vec<f64>, f64, f64) {
        let replicas: Vec<u32> = workloads.iter().map(|w| w.replicas).collect();
        let (prepared, ..) = prepared(clusters, workloads);
        let at_zero: f64 = prepared.values.iter().zip(replicas).map(|(v, r)| v * f64::from(r)).sum();
        (prepared.start.y.clone(), prepared.start.value, at_zero)
    }

    /// `f` of the compiled fleet, filters and contexts of `workloads` (in this order) on
    /// `clusters`.
    fn compiled<R>(
        clusters: Vec<Cluster>,
        workloads: Vec<Workload>,
        f: impl FnOnce(&super::Fleet<'_>, &super::Filters<'_>, &[super::WorkloadCtx<'_>]) -> R,
    ) -> R {
        let input = PlacementInput { clusters, workloads, ..PlacementInput::default() };
        let fleet = super::Fleet::compile(&input);
        let order: Vec<&Workload> = input.workloads.iter().collect();
        let filters = super::Filters::compile(&order, &fleet.clusters, None);
        let contexts: Vec<_> =
            order.iter().enumerate().map(|(i, w)| super::WorkloadCtx::new(i, w, &fleet, &filters, None)).collect();
        f(&fleet, &filters, &contexts)
    }

    /// What [`super::prepare`] computes for `workloads` (in this order) on `clusters`, with the
    /// fleet's resources and cluster names (rows are cluster-major).
    fn prepared(clusters: Vec<Cluster>, workloads: Vec<Workload>) -> (super::Prepared, Vec<String>, Vec<String>) {
        compiled(clusters, workloads, |fleet, filters, contexts| {
            let resources = fleet.resources.iter().map(|r| r.to_string()).collect();
            let names = fleet.clusters.iter().map(|c| c.name.to_string()).collect();
            (super::prepare(fleet, filters, contexts), resources, names)
        })
    }

    /// [`super::uniform_bound`] of `workloads` (in this order) on `clusters`, and the bound at
    /// zero prices.
    fn uniform_of(clusters: Vec<Cluster>, workloads: Vec<Workload>) -> (super::Uniform, f64) {
        compiled(clusters, workloads, |fleet, filters, contexts| {
            let prepared = super::prepare(fleet, filters, contexts);
            let (nr, relaxed, free) = (fleet.resources.len(), &prepared.relaxed, &prepared.free);
            let zero_y = vec![0.0; free.len()];
            let (zero, _, totals) = super::lagrangian(relaxed, &zero_y, &prepared.top, free, None, nr, &mut Vec::new());
            (super::uniform_bound(relaxed, &totals, free, nr, contexts, filters), zero)
        })
    }

    #[test]
    fn zero_price_answers_match_those_of_the_kept_choice_sets() {
        // Where one round is all the budget allows, `prepare` answers each workload at zero
        // prices and drops its choice sets at once. On small instances from a fixed pseudo-random
        // sequence (spreads, counts, copies, per-cluster limits, GPUs, pod limits), that gives
        // exactly what the choice sets kept for more rounds give: the same responses, pairs,
        // zero-price bound and one-price bound, bit for bit.
        let mut next = draws(0x9e37_79b9_7f4a_7c15);
        let mut positive = 0;
        for case in 0..200 {
            let count = 2 + next(8);
            let clusters = random_clusters(&mut next, count, 3, 12, 6);
            let workloads: Vec<Workload> = (0..1 + next(8))
                .map(|i| {
                    let mut w = workload(1 + next(6) as u32);
                    w.name = format!("w{i}");
                    w.priority = next(4) as i32;
                    w.resources.insert("cpu".into(), Quantity::from_units(1 + next(3)));
                    if next(3) == 0 {
                        w.resources.insert("nvidia.com/gpu".into(), Quantity::from_units(1));
                    }
                    match next(6) {
                        0 => w.replica_scheduling.kind = crate::ReplicaSchedulingType::Duplicated,
                        1 => w.number_of_clusters = Some(1 + next(3) as u32),
                        2 => w.replica_scheduling.max_replicas_per_cluster = Some(1 + next(2) as u32),
                        3 => w.replica_scheduling.min_replicas_per_cluster = Some(1 + next(2) as u32),
                        _ => {}
                    }
                    if next(2) == 0 {
                        let key = if next(2) == 0 { "zone" } else { "cluster" };
                        let min = Some(1 + next(3) as u32);
                        let max = (next(2) == 0).then(|| 2 + next(2) as u32);
                        w.spread_constraints.push(spread(key, min, max, (next(2) == 0).then_some(1)));
                    }
                    w
                })
                .collect();
            compiled(clusters, workloads, |fleet, filters, contexts| {
                let values = super::replica_values(contexts);
                let empty = fleet.empty_usage();
                let kept: Vec<super::Relaxed> =
                    contexts.iter().zip(&values).map(|(wc, &v)| super::relax(fleet, filters, &empty, wc, v)).collect();
                let nr = fleet.resources.len();
                let free: Vec<f64> = fleet
                    .free_flat()
                    .iter()
                    .map(|&f| if f == super::UNLIMITED { f64::INFINITY } else { f as f64 })
                    .collect();
                let zero = vec![0.0; free.len()];
                let (value, _, totals) = super::lagrangian(&kept, &zero, &zero, &free, None, nr, &mut Vec::new());
                let answers = super::answer_at_zero(fleet, filters, contexts, &values, &empty);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&answers.totals), bits(&totals), "case {case}: responses");
                assert_eq!(answers.pairs, kept.iter().map(super::pairs).sum::<usize>(), "case {case}: pairs");
                assert_eq!(answers.totals.iter().sum::<f64>().to_bits(), value.to_bits(), "case {case}: value");
                let uniform = |relaxed: &[super::Relaxed]| {
                    super::uniform_bound(relaxed, &totals, &free, nr, contexts, filters).bound().to_bits()
                };
                assert_eq!(uniform(&answers.summaries), uniform(&kept), "case {case}: one price per resource");
                positive += usize::from(value > 0.0);
            });
        }
        // Most instances place something, so the responses compared are not all empty.
        assert!(positive >= 150, "only {positive} of 200 instances with a positive bound");
    }

    #[test]
    fn one_round_is_prepared_without_keeping_choice_sets_and_to_the_same_values() {
        // 1,000 workloads that admit all of 600 clusters: 600,000 pairs, above what allows a
        // second round. `prepare` answers them without keeping the choice sets (no rows' load is
        // found either); the general path gives the same bound at zero prices and per resource.
        let clusters: Vec<Cluster> =
            (0..600).map(|i| cluster(&format!("c{i:03}"), &format!("z{}", i % 3), "p", 2 + i % 5)).collect();
        let workloads: Vec<Workload> = (0..1000)
            .map(|i| {
                let mut w = workload(1 + i % 4);
                w.name = format!("w{i:04}");
                w.priority = (i % 3) as i32;
                if i % 5 == 0 {
                    w.spread_constraints.push(spread("zone", Some(2), None, Some(1)));
                }
                w
            })
            .collect();
        compiled(clusters, workloads, |fleet, filters, contexts| {
            let one = super::prepare(fleet, filters, contexts);
            assert_eq!(one.rounds, 1);
            assert!(one.relaxed.is_empty() && one.start.load.is_empty(), "the one-round path was not taken");
            let free = one.free.clone();
            let all = super::prepare_rounds(fleet, filters, contexts, one.values.clone(), free, &fleet.empty_usage());
            assert_eq!(all.rounds, 1);
            assert_eq!(all.start.load.len(), one.free.len());
            assert_eq!(one.start.value.to_bits(), all.start.value.to_bits());
            assert_eq!(one.uniform.to_bits(), all.uniform.to_bits());
            // Demand exceeds supply, so the one price per resource cuts below the zero-price bound.
            assert!(one.uniform < one.start.value, "{} >= {}", one.uniform, one.start.value);
        });
    }

    #[test]
    fn uniform_prices_cut_what_the_whole_fleet_is_short_of() {
        // Three clusters with two GPUs each; five workloads of two one-GPU replicas, priorities
        // 0 to 4 (replica values 1 to 5). At most six replicas run: the best are worth
        // 2 x (5 + 4 + 3) = 24, where every workload alone would place all of its own (30).
        let clusters: Vec<Cluster> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let mut c = cluster(n, "za", "p", 100);
                c.capacity.insert("nvidia.com/gpu".into(), Quantity::from_units(2));
                c
            })
            .collect();
        let workloads = (0..5)
            .map(|p| {
                let mut w = workload(2);
                w.name = format!("w{p}");
                w.priority = p;
                w.resources.insert("nvidia.com/gpu".into(), Quantity::from_units(1));
                w
            })
            .collect();
        let (uniform, zero) = uniform_of(clusters, workloads);
        assert_eq!(zero, 30.0);
        assert!((uniform.fleet_wide - 24.0).abs() < 1e-9, "uniform bound {uniform:?}");
    }

    #[cfg(feature = "exact")]
    #[test]
    fn uniform_prices_never_cut_below_the_optimum() {
        // Small instances from a fixed pseudo-random sequence, with counts, copies, per-cluster
        // maxima and clusters that do not limit pods: the bound is never below exact mode's
        // optimum.
        let mut next = draws(0x2545_f491_4f6c_dd1d);
        let (mut cut, mut pool_cut) = (0, 0);
        for case in 0..150 {
            let count = 2 + next(3);
            let clusters = random_clusters(&mut next, count, 2, 6, 4);
            let workloads: Vec<Workload> = (0..2 + next(5))
                .map(|i| {
                    let mut w = workload(1 + next(4) as u32);
                    w.name = format!("w{i}");
                    w.priority = next(4) as i32 - 2;
                    w.resources.insert("cpu".into(), Quantity::from_units(1 + next(2)));
                    if next(3) == 0 {
                        w.resources.insert("nvidia.com/gpu".into(), Quantity::from_units(1));
                    }
                    match next(4) {
                        0 => w.replica_scheduling.kind = crate::ReplicaSchedulingType::Duplicated,
                        1 => w.number_of_clusters = Some(1 + next(2) as u32),
                        2 => w.replica_scheduling.max_replicas_per_cluster = Some(1 + next(2) as u32),
                        _ => {}
                    }
                    // Some workloads confined to part of the fleet, so that pools are priced.
                    if next(2) == 0 {
                        let names = clusters.iter().filter(|_| next(3) == 0).map(|c| c.name.clone()).collect();
                        w.cluster_affinity = Some(ClusterAffinity { cluster_names: names, ..Default::default() });
                    }
                    w
                })
                .collect();
            let input =
                PlacementInput { clusters: clusters.clone(), workloads: workloads.clone(), ..Default::default() };
            let Ok(exact) = crate::solve_exact(&input, &crate::ExactOptions::default()) else {
                panic!("case {case} did not solve: {input:?}");
            };
            let (start, ..) = prepared(clusters.clone(), workloads.clone());
            let (uniform, zero) = uniform_of(clusters, workloads);
            for bound in [uniform.fleet_wide, uniform.pooled, start.start.value] {
                assert!(exact.objective <= bound + 1e-6, "case {case}: optimum {} above {bound}", exact.objective);
            }
            // The rounds start from the pooled prices per row, where the Lagrangian is at most
            // the pooled bound.
            assert!(start.start.value <= uniform.pooled + 1e-9, "case {case}: {} above {uniform:?}", start.start.value);
            cut += usize::from(uniform.bound() < zero - 1e-9);
            pool_cut += usize::from(uniform.pooled < zero - 1e-9);
        }
        // The prices do cut somewhere, so the comparison above is not only with the zero bound.
        assert!(cut >= 75, "cut only {cut} of 150");
        assert!(pool_cut >= 75, "pools cut only {pool_cut} of 150");
    }

    fn pinned(name: &str, to: &str, priority: i32, replicas: u32) -> Workload {
        let mut w = workload(replicas);
        w.name = name.into();
        w.priority = priority;
        w.cluster_affinities = vec![ClusterAffinity { cluster_names: vec![to.into()], ..Default::default() }];
        w
    }

    #[test]
    fn pools_price_what_the_workloads_confined_to_them_over_demand() {
        // Eight replicas pinned to a cluster with room for four, and ten that may go anywhere:
        // the optimum keeps the four high-priority ones (value 3 each) and places the ten on
        // `big`, 22 in all. Zero prices bound it by 26; pricing `small`'s cpu at the marginal
        // density (3) gives 22 at once.
        let clusters = vec![cluster("small", "za", "p", 4), cluster("big", "zb", "p", 100)];
        let workloads = vec![pinned("high", "small", 2, 4), pinned("low", "small", 0, 4), workload(10)];
        let (y, value, at_zero) = round_zero(clusters, workloads);
        assert_eq!(at_zero, 26.0);
        assert!((value - 22.0).abs() < 1e-9, "round 0 bound {value}");
        // One row, `small`'s cpu: nobody is confined to `big`.
        assert_eq!(y.iter().filter(|&&y| y > 0.0).count(), 1, "scaled prices {y:?}");
    }

    #[test]
    fn one_price_per_resource_in_a_pool_cuts_what_fleet_wide_prices_miss() {
        // The instance above, bounded without a Lagrangian round: fleet-wide, cpu is plentiful
        // (104 for 18 replicas), so one price per resource leaves the zero-price bound (26). The
        // pool of `small`, to which both pinned workloads are confined, is short: priced there
        // alone, they are worth 12 instead of 16, and the bound is the optimum, 22.
        let clusters = vec![cluster("small", "za", "p", 4), cluster("big", "zb", "p", 100)];
        let workloads = vec![pinned("high", "small", 2, 4), pinned("low", "small", 0, 4), workload(10)];
        let (uniform, zero) = uniform_of(clusters, workloads);
        assert_eq!(zero, 26.0);
        assert_eq!(uniform.fleet_wide, 26.0);
        assert!((uniform.pooled - 22.0).abs() < 1e-9, "uniform bounds {uniform:?}");
    }

    #[test]
    fn a_pool_prices_only_the_resource_that_cuts_the_most() {
        // Both cpu and memory of `small` are over-demanded by what is pinned there; memory cuts
        // more (room for one replica against two). Pricing both would charge the pinned
        // workloads twice and count both rows' capacity: only memory is priced.
        let mut small = cluster("small", "za", "p", 2);
        small.capacity.insert("memory".into(), Quantity::from_units(1));
        let mut big = cluster("big", "zb", "p", 100);
        big.capacity.insert("memory".into(), Quantity::from_units(100));
        let mut workloads = vec![pinned("high", "small", 2, 4), pinned("low", "small", 0, 4)];
        for w in &mut workloads {
            w.resources.insert("memory".into(), Quantity::from_units(1));
        }
        let (y, value, at_zero) = round_zero(vec![small, big], workloads);
        let priced: Vec<usize> = (0..y.len()).filter(|&i| y[i] > 0.0).collect();
        assert_eq!(priced.len(), 1, "scaled prices {y:?}");
        // One high-priority replica fits: value 3.
        assert!((value - 3.0).abs() < 1e-9, "round 0 bound {value} (zero prices: {at_zero})");
    }

    #[test]
    fn fleet_wide_shortage_is_priced_where_pools_overlap() {
        // Six replicas pinned to `a` price its cpu as a pool; the pool {a, b} of the other two
        // overlaps it and is skipped. The fleet as a whole has 8 cpu for 18 replicas, 12 of them
        // worth 3: the optimum is 24. Pool prices alone bound it by 28; raised to the fleet-wide
        // price (3 on every cpu row) the bound is 24.
        let clusters = vec![cluster("a", "za", "p", 4), cluster("b", "zb", "p", 4)];
        let mut high = workload(6);
        high.name = "high".into();
        high.priority = 2;
        let workloads = vec![pinned("pinned", "a", 2, 6), high, workload(6)];
        let (_, value, at_zero) = round_zero(clusters, workloads);
        assert_eq!(at_zero, 42.0);
        assert!((value - 24.0).abs() < 1e-9, "round 0 bound {value}");
    }

    #[test]
    fn slack_rows_are_lowered_to_a_smaller_valid_bound() {
        // `high` (4 replicas, value 3) is pinned to `small`, which holds 4; 10 replicas may go
        // anywhere and `big` holds 100. Overpricing `big`'s cpu (y = 1, nothing is short there)
        // pays for capacity nobody needs; lowering it must lower the bound, and what is reported
        // must be the Lagrangian at the prices returned.
        let clusters = vec![cluster("big", "zb", "p", 100), cluster("small", "za", "p", 4)];
        let workloads = vec![pinned("high", "small", 2, 4), workload(10)];
        let (super::Prepared { relaxed, free, top, .. }, resources, names) = prepared(clusters, workloads);
        let nr = resources.len();
        let cpu = resources.iter().position(|r| r == "cpu").unwrap();
        let big_cpu = names.iter().position(|c| c == "big").unwrap() * nr + cpu;
        let mut y = vec![0.0; free.len()];
        y[big_cpu] = 1.0;
        let prices: Vec<f64> = y.iter().zip(&top).map(|(y, t)| y * t).collect();
        let (overpriced, ..) = super::lagrangian(&relaxed, &y, &top, &free, Some(&prices), nr, &mut Vec::new());
        let lowered = super::lower_slack_prices(&relaxed, &mut y, &top, &free, nr, 0.0);
        assert!(lowered < overpriced - 1.0, "{lowered} not below {overpriced}");
        assert!(y[big_cpu] < 1.0, "big's cpu still at y = {}", y[big_cpu]);
        // Still an upper bound: 4 x 3 + 10 x 1 = 22 is feasible.
        assert!(lowered >= 22.0 - 1e-9, "bound {lowered} below a feasible plan");
        let prices: Vec<f64> = y.iter().zip(&top).map(|(y, t)| y * t).collect();
        let (again, ..) = super::lagrangian(&relaxed, &y, &top, &free, Some(&prices), nr, &mut Vec::new());
        assert!((again - lowered).abs() < 1e-9 * again.max(1.0), "reported {lowered}, Lagrangian {again}");
    }

    #[test]
    fn subsets_of_sorted_clusters() {
        assert!(super::is_subset(&[1, 3], &[0, 1, 2, 3]));
        assert!(super::is_subset(&[], &[0]));
        assert!(!super::is_subset(&[1, 4], &[0, 1, 2, 3]));
        assert!(!super::is_subset(&[0, 1], &[1]));
    }
}
