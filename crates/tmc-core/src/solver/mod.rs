//! The solver: compiles the input once, then places workloads in priority order under a shared
//! capacity ledger, so a batch never overcommits a cluster.
//!
//! Pipeline (see `ARCHITECTURE.md`):
//! 1. **compile** ([`fleet`], [`filter`]): clusters, resources and topology groups are indexed
//!    once; every distinct filter (affinity group, APIs, capabilities, spread keys, tolerations)
//!    is compiled once into per-cluster admission bitsets, shared by the workloads that use it;
//! 2. **keep** (stage A): previous decisions that still satisfy every hard constraint and fit are
//!    reserved first, in placement order ([`order`]: highest priority first, then smaller
//!    replicas) and trimmed after a scale-down;
//! 3. **place** (stage B), in placement order: complete partial keeps (scale-up), rebalance
//!    where the policy asks, place everything else ([`place`]: fit, score, select, divide, repair
//!    skew, verify), and preempt lower-priority replicas where allowed;
//! 4. **explain**: every placement that is not complete gets a message and per-cluster reasons,
//!    found against the plan as it ends (after the improvement step's moves).
//!
//! Stability: an unchanged input re-solved with its plan as `previous` moves nothing.

mod certificate;
mod divide;
#[cfg(feature = "exact")]
pub mod exact;
mod filter;
mod fleet;
mod improve;
mod order;
mod place;
pub mod placer;
mod score;
mod selectors;
mod spread;

use std::collections::BTreeMap;

use filter::{Admission, Filters};
use fleet::{Counts, Fleet, Usage};
use place::{Kept, NoRoom, Outcome, WorkloadCtx, count_of};
use selectors::Bits;

use crate::{
    ClusterRejection, Decision, Phase, Placement, PlacementInput, Plan, Preemption, Reason, ReasonCount,
    ValidationErrors, Workload, WorkloadKey, explain, validate::validate,
};

/// Maps `items` in order, in parallel where the `parallel` feature is on; the result is the same
/// either way.
pub(crate) fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        // One item gains nothing from the pool, and handing it over from a thread outside the
        // pool costs microseconds (the incremental placer compiles one workload at a time).
        if items.len() <= 1 {
            return items.into_iter().map(f).collect();
        }
        items.into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        items.into_iter().map(f).collect()
    }
}

/// Runs `a` and `b`, in parallel where the `parallel` feature is on.
pub(crate) fn join<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    #[cfg(feature = "parallel")]
    {
        rayon::join(a, b)
    }
    #[cfg(not(feature = "parallel"))]
    {
        (a(), b())
    }
}

/// Validates `input` and places every workload. The same input always gives the same plan,
/// whatever the order of clusters and workloads in it.
pub fn solve(input: &PlacementInput) -> Result<Plan, ValidationErrors> {
    validate(input)?;
    Ok(solve_validated(input))
}

/// Places every workload of an input that [`crate::validate()`] accepted. Invalid input does not
/// panic, but the result is unspecified.
pub fn solve_validated(input: &PlacementInput) -> Plan {
    solve_explained(input, None).0
}

/// Every cluster the workload `key` does not use in `solve(input)`'s plan, with every reason the
/// solver found, most fundamental first (a cluster that passed every filter and had room but was
/// not chosen: [`Reason::NotSelected`]). Empty when the workload is fully placed; `None` when it
/// is not a workload of `input`.
///
/// The plan itself only counts reasons ([`Placement::unavailable`]): listing each cluster for each
/// workload that is not fully placed would cost clusters × such workloads entries. This solves
/// `input` again, so the reasons are exactly those of that plan, capacity included.
pub fn cluster_rejections(
    input: &PlacementInput,
    key: &WorkloadKey,
) -> Result<Option<Vec<ClusterRejection>>, ValidationErrors> {
    validate(input)?;
    Ok(solve_explained(input, Some(key)).1)
}

/// The plan, and the per-cluster reasons of the workload `detail` (if it is one).
fn solve_explained(input: &PlacementInput, detail: Option<&WorkloadKey>) -> (Plan, Option<Vec<ClusterRejection>>) {
    let (fleet, order) = join(|| Fleet::compile(input), || placement_order(input));
    let filters = Filters::compile(&order, &fleet.clusters, input.now);
    let previous: BTreeMap<_, _> = input.previous.iter().map(|p| (p.workload.clone(), p)).collect();
    let contexts: Vec<WorkloadCtx<'_>> = par_map(order.iter().enumerate().collect(), |(i, w)| {
        // `place_all` explains what stays incomplete once, at the end.
        WorkloadCtx::new(i, w, &fleet, &filters, previous.get(&w.key()).copied()).explained_later()
    });

    // Placement runs on one core; the plan-independent part of the certificate uses the others
    // meanwhile.
    let values = certificate::replica_values(&contexts);
    let (Placed { outcomes, .. }, (prepared, ranks)) = join(
        || place_all(&contexts, &fleet, &filters, fleet.empty_usage(), &values, true, None),
        || (certificate::prepare(&fleet, &filters, &contexts), key_ranks(&order)),
    );
    let certificate = certificate::certify(&prepared, &fleet, &contexts, &outcomes);
    let detail = detail.and_then(|key| {
        let i = contexts.iter().position(|wc| wc.w.key() == *key)?;
        let o = &outcomes[i];
        Some(if o.complete { Vec::new() } else { rejections(&contexts[i], &fleet, &filters, o) })
    });

    // Explanations are independent per workload; build them in parallel where available.
    let finish = |(_, wc, o): (usize, &WorkloadCtx<'_>, Outcome)| finish(wc, &fleet, &filters, o);
    // In `namespace/name` order, as the plan lists them.
    let mut ranked: Vec<_> = ranks.into_iter().zip(&contexts).zip(outcomes).map(|((r, wc), o)| (r, wc, o)).collect();
    ranked.sort_unstable_by_key(|&(r, _, _)| r);
    // Freed first: freeing it beside the explanations, which allocate, contends for the
    // allocator (up to 50 ms at 10k x 1k).
    drop(prepared);
    let placements: Vec<Placement> = par_map(ranked, finish);
    let plan = Plan { placements, objective: certificate.objective, bound: certificate.bound, gap: certificate.gap };
    (plan, detail)
}

/// Each workload's position in `namespace/name` order, for workloads in placement order. Found
/// beside the placement, where a core is free, rather than by sorting the plan after it (3 ms at
/// 10k workloads on the critical path).
fn key_ranks(order: &[&Workload]) -> Vec<usize> {
    let keys: Vec<WorkloadKey> = order.iter().map(|w| w.key()).collect();
    let mut by_key: Vec<usize> = (0..keys.len()).collect();
    // Keys are unique (validated); ties would only keep placement order.
    by_key.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut ranks = vec![0; keys.len()];
    for (rank, &i) in by_key.iter().enumerate() {
        ranks[i] = rank;
    }
    ranks
}

/// What [`place_all`] did.
struct Placed {
    /// One outcome per context, in placement order (fewer when `would_preempt`).
    outcomes: Vec<Outcome>,
    /// A workload would have preempted, which the caller did not allow; the outcomes are
    /// incomplete.
    would_preempt: bool,
}

/// Stages A and B and the improvement step for `contexts` (in placement order), on top of `base`:
/// what every workload not among them uses (nothing, for a full solve). `values` are the
/// objective's per-replica values. When `may_preempt` is false and a workload would preempt
/// (only the caller could reach the victims), the pass stops and says so. `given_keep` is what
/// stage A keeps of one context, when the caller knows it better (it saw other workloads).
fn place_all(
    contexts: &[WorkloadCtx<'_>],
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    base: Usage,
    values: &[f64],
    may_preempt: bool,
    mut given_keep: Option<(usize, Option<Kept>)>,
) -> Placed {
    // Stage A: keep valid previous decisions, highest priority first.
    let mut usage = base;
    let mut kept: Vec<Option<Kept>> = Vec::with_capacity(contexts.len());
    for (i, wc) in contexts.iter().enumerate() {
        let k = match given_keep.take_if(|(at, _)| *at == i) {
            Some((_, k)) => k,
            None => wc.keep(fleet, filters, &usage),
        };
        if let Some(k) = &k {
            fleet.add(&mut usage, &k.counts, &wc.demand);
        }
        kept.push(k);
    }

    // Stage B: everything else, highest priority first.
    // What the workloads placed so far in stage B use (without later workloads' kept decisions).
    let mut placed = fleet.empty_usage();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(contexts.len());
    let mut events: Vec<Vec<String>> = vec![Vec::new(); contexts.len()];
    let mut would_preempt = false;
    for i in 0..contexts.len() {
        let wc = &contexts[i];
        // A kept decision is already in `usage`; take it out so the outcome is added exactly once.
        let k = kept[i].take();
        if let Some(k) = &k {
            fleet.remove(&mut usage, &k.counts, &wc.demand);
        }
        let floor: Counts = k.as_ref().filter(|k| !k.complete).map(|k| k.counts.clone()).unwrap_or_default();
        let mut outcome = match k {
            Some(k) if k.complete => match wc.rebalance(fleet, filters, &usage, &placed, &k) {
                Some(moved) => moved,
                None => Outcome::kept(k),
            },
            Some(k) => extend(wc, fleet, filters, &usage, k),
            None => wc.place_fresh(fleet, filters, &usage),
        };
        if !outcome.complete && wc.w.preemption == Preemption::PreemptLowerPriority {
            if !may_preempt {
                would_preempt = true;
                break;
            }
            let victims = Victims { contexts, first: i + 1, priority: wc.w.priority };
            if let Some(better) =
                preempt(wc, fleet, filters, &mut usage, &mut kept, &victims, &floor, &outcome, &mut events)
            {
                outcome = better;
            }
        }
        fleet.add(&mut usage, &outcome.counts, &wc.demand);
        fleet.add(&mut placed, &outcome.counts, &wc.demand);
        outcome.compact_explanation();
        outcomes.push(outcome);
    }
    for (o, e) in outcomes.iter_mut().zip(events) {
        o.events.extend(e);
    }
    if !would_preempt {
        improve::improve(contexts, fleet, filters, values, &mut usage, &mut outcomes);
        // Explanations describe the plan as it ends: an incomplete workload explained while it
        // was placed saw the usage of that moment, which the improvement step may have changed
        // since (a regroup moving a workload off a cluster left the explanation of a later one
        // saying the cluster had no room). The incremental placer explains a workload it places
        // against the same final usage of the others, so the two agree.
        let usage = &usage;
        par_map(contexts.iter().zip(outcomes.iter_mut()).filter(|(_, o)| !o.complete).collect(), |(wc, o)| {
            wc.explain_final(fleet, filters, usage, o)
        });
    }
    Placed { outcomes, would_preempt }
}

/// The workloads in placement order ([`order`]): highest priority first, then smaller replicas,
/// ties by `namespace/name`.
fn placement_order(input: &PlacementInput) -> Vec<&Workload> {
    order::FleetCapacity::of(&input.clusters).sorted(&input.workloads)
}

/// The score each cluster that admits the workload `key` gets, as the solver ranks clusters for
/// it, against the capacity the rest of `plan` uses (its own replicas left out) and with `plan`'s
/// decisions as the previous ones. Higher is preferred. Clusters the workload's affinity group
/// (the one in `plan`, else the first) does not admit are left out. `None` when `key` is not a
/// workload of `input`.
///
/// For tools that explain a placement; the solver itself computes scores on the fly.
pub fn cluster_scores(input: &PlacementInput, plan: &Plan, key: &crate::WorkloadKey) -> Option<Vec<(String, i64)>> {
    let w = input.workloads.iter().find(|w| w.key() == *key)?;
    let fleet = Fleet::compile(input);
    let by_key: BTreeMap<_, _> = input.workloads.iter().map(|w| (w.key(), w)).collect();
    let order = vec![w];
    let filters = Filters::compile(&order, &fleet.clusters, input.now);
    let own = plan.get(key);
    let wc = WorkloadCtx::new(0, w, &fleet, &filters, own);
    let mut usage = fleet.empty_usage();
    for p in plan.placements.iter().filter(|p| p.workload != *key) {
        let Some(other) = by_key.get(&p.workload) else { continue };
        let counts: Counts =
            p.decisions.iter().filter_map(|d| fleet.index_of(&d.cluster).map(|c| (c, u64::from(d.replicas)))).collect();
        fleet.add(&mut usage, &counts, &fleet.demand(other));
    }
    let term = own
        .and_then(|p| p.affinity_group.as_deref())
        .and_then(|g| wc.terms.iter().position(|t| t.and_then(|t| t.name.as_deref()) == Some(g)))
        .unwrap_or(0);
    let clusters: Vec<usize> = filters.mask(wc.filters[term]).admitted().collect();
    let scores = wc.scores(&fleet, &filters, &usage, term, &clusters);
    Some(clusters.into_iter().zip(scores).map(|(c, s)| (fleet.clusters[c].name.clone(), s)).collect())
}

/// Scale-up or a partly kept decision: extend it without moving what is kept. When a change took
/// replicas away and extending cannot place everything, but a fresh placement can place more, the
/// kept replicas move too: moving is then required to place the workload.
fn extend(wc: &WorkloadCtx<'_>, fleet: &Fleet<'_>, filters: &Filters<'_>, usage: &Usage, k: Kept) -> Outcome {
    let degraded = k.degraded;
    let extended = wc.attempt(fleet, filters, usage, k.term, &k.counts);
    let grows = k.counts.iter().all(|&(c, n)| count_of(&extended.counts, c) >= n);
    let kept = if grows { extended } else { Outcome { counts: k.counts, complete: k.complete, ..extended } };
    // What was kept can fall short of a spread's minGroups after preemption took replicas.
    let r = wc.replicas();
    let valid =
        wc.spread_violation(&kept.counts).is_none() && (wc.divided() || kept.counts.iter().all(|&(_, n)| n == r));
    // Only a decision that lost replicas to a change may move the rest; an unchanged one only grows.
    if valid && (kept.complete || !degraded) {
        return kept;
    }
    let fresh = wc.place_fresh(fleet, filters, usage);
    if !valid || fresh.placed() > kept.placed() { fresh } else { kept }
}

/// The workloads a preemptor may displace: those after it in placement order with strictly lower
/// priority.
struct Victims<'c, 'a> {
    contexts: &'c [WorkloadCtx<'a>],
    first: usize,
    priority: i32,
}

/// Preemption: displaces the fewest lower-priority kept replicas that let `wc` place more, then
/// re-places `wc`. Victims keep what is left and are re-placed in their own turn. Returns the new
/// outcome, or `None` (and changes nothing) when displacing does not help.
///
/// A preemptor takes back at most what it would place were every later workload not there: what
/// a solve without those decisions gives it, placing it first. Placement is a heuristic and not
/// monotone in free capacity (a spread can be repaired on a fuller fleet and not on an emptier
/// one), so without that cap the next solve could preempt where this one placed the preemptor
/// first and got less, and a plan would not be a fixed point of its re-solve.
#[allow(clippy::too_many_arguments)]
fn preempt(
    wc: &WorkloadCtx<'_>,
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    usage: &mut Usage,
    kept: &mut [Option<Kept>],
    victims: &Victims<'_, '_>,
    floor: &[(usize, u64)],
    before: &Outcome,
    events: &mut [Vec<String>],
) -> Option<Outcome> {
    let mask = filters.mask(wc.filters[before.term]);
    let r = wc.replicas();
    // Victim positions, lowest priority first (reverse placement order).
    let candidates: Vec<usize> = (victims.first..victims.contexts.len())
        .rev()
        .filter(|&j| victims.contexts[j].w.priority < victims.priority && kept[j].is_some())
        .collect();
    if candidates.is_empty() {
        return None;
    }
    // The most it may take back: its placement with no later workload placed.
    let mut alone = usage.clone();
    for (j, k) in kept.iter().enumerate().skip(victims.first) {
        if let Some(k) = k {
            fleet.remove(&mut alone, &k.counts, &victims.contexts[j].demand);
        }
    }
    let cap = if floor.is_empty() {
        wc.place_fresh(fleet, filters, &alone)
    } else {
        wc.attempt(fleet, filters, &alone, before.term, floor)
    };
    // What preemption gains is counted in replicas (Divided) or clusters (Duplicated, which
    // preempts for the clusters numberOfClusters asks, one without it).
    let size = |o: &Outcome| if wc.divided() { o.placed() } else { o.counts.len() as u64 };
    let wanted = if wc.divided() { r } else { u64::from(wc.w.number_of_clusters.unwrap_or(1)) };
    let mut deficit = size(&cap).min(wanted).saturating_sub(size(before));
    if deficit == 0 {
        return None;
    }
    // Cost of each open cluster: victim replicas to evict (lowest priority first) for the gain.
    struct Plan {
        cluster: usize,
        evictions: Vec<(usize, u64)>,
        gain: u64,
    }
    let mut plans: Vec<Plan> = Vec::new();
    for c in mask.admitted().filter(|&c| mask.admission(c) == Admission::Open) {
        let before_fit = fleet.fit(usage, c, &wc.demand).0;
        // Room beyond maxReplicasPerCluster would not be used.
        let max_per = wc.max_per();
        let want = if wc.divided() { before_fit.saturating_add(deficit).min(max_per) } else { r };
        if before_fit >= want {
            continue;
        }
        let mut trial = usage.clone();
        let mut evictions = Vec::new();
        'victims: for &j in &candidates {
            let vc = &victims.contexts[j];
            let Some(k) = kept[j].as_ref() else { continue };
            let mut n = count_of(&k.counts, c);
            let mut taken = 0;
            // A Duplicated victim loses its whole copy on the cluster, never part of it.
            let step = if vc.divided() { 1 } else { n.max(1) };
            while n > 0 {
                fleet.remove(&mut trial, &[(c, step)], &vc.demand);
                // `remove` also lowers the workload count; the victim keeps the cluster while it
                // still has replicas there.
                n -= step;
                taken += step;
                if n > 0 {
                    trial.workloads_on[c] += 1;
                }
                if fleet.fit(&trial, c, &wc.demand).0 >= want {
                    evictions.push((j, taken));
                    break 'victims;
                }
            }
            if taken > 0 {
                evictions.push((j, taken));
            }
        }
        let gain = fleet.fit(&trial, c, &wc.demand).0.min(want) - before_fit;
        let needed = if wc.divided() { gain > 0 } else { fleet.fit(&trial, c, &wc.demand).0 >= r };
        if needed && !evictions.is_empty() {
            plans.push(Plan { cluster: c, evictions, gain });
        }
    }
    // Fewest evictions per replica gained first; ties by cluster order.
    plans.sort_by(|a, b| {
        let ea: u64 = a.evictions.iter().map(|e| e.1).sum();
        let eb: u64 = b.evictions.iter().map(|e| e.1).sum();
        (u128::from(ea) * u128::from(b.gain))
            .cmp(&(u128::from(eb) * u128::from(a.gain)))
            .then(a.cluster.cmp(&b.cluster))
    });
    let saved_usage = usage.clone();
    let saved_kept: Vec<(usize, Option<Kept>)> = candidates.iter().map(|&j| (j, kept[j].clone())).collect();
    let mut applied: Vec<(usize, usize, u64)> = Vec::new();
    for plan in plans {
        if deficit == 0 {
            break;
        }
        for &(j, n) in &plan.evictions {
            let vc = &victims.contexts[j];
            let Some(k) = kept[j].as_mut() else { continue };
            let have = count_of(&k.counts, plan.cluster);
            // Never leave a victim below its minimum on a cluster: take the rest as well.
            let min_per = vc.min_per();
            let n = if vc.divided() && have - n.min(have) >= min_per { n.min(have) } else { have };
            fleet.remove(usage, &k.counts, &vc.demand);
            place_set(&mut k.counts, plan.cluster, have - n);
            fleet.add(usage, &k.counts, &vc.demand);
            k.complete = false;
            applied.push((j, plan.cluster, n));
        }
        deficit = deficit.saturating_sub(if wc.divided() { plan.gain } else { 1 });
    }
    let after = if floor.is_empty() {
        wc.place_fresh(fleet, filters, usage)
    } else {
        wc.attempt(fleet, filters, usage, before.term, floor)
    };
    if after.placed() <= before.placed() || size(&after) > size(&cap) || applied.is_empty() {
        *usage = saved_usage;
        for (j, k) in saved_kept {
            kept[j] = k;
        }
        return None;
    }
    let mut after = after;
    for (j, c, n) in applied {
        // Only replicas that run (the victim's previous decision) are evicted. The improvement
        // step also takes back room that this solve gave a later workload (see
        // `improve::preempt_as_next_solve`); nothing runs there yet, so nothing is reported.
        let n = n.min(count_of(&victims.contexts[j].previous, c));
        if n == 0 {
            continue;
        }
        let victim = victims.contexts[j].w.key();
        let cluster = &fleet.clusters[c].name;
        after.events.push(format!("preempted {n} replica{} of {victim} on {cluster}", if n == 1 { "" } else { "s" }));
        events[j].push(format!(
            "{n} replica{} on {cluster} preempted by {}",
            if n == 1 { "" } else { "s" },
            wc.w.key()
        ));
    }
    Some(after)
}

fn place_set(counts: &mut Counts, c: usize, n: u64) {
    if let Ok(i) = counts.binary_search_by_key(&c, |&(x, _)| x) {
        if n == 0 {
            counts.remove(i);
        } else {
            counts[i].1 = n;
        }
    }
}

/// How the solver saw a cluster that an incomplete outcome does not use.
enum Unused {
    /// It passed every filter and had room, but was not chosen.
    NotSelected,
    /// `replicaScheduling.weights` gives it weight 0.
    ZeroWeight,
    /// A filter rejects it, or it had no room (then [`NoRoom`] says why).
    Rejected(Option<NoRoom>),
    /// Admitted, with no recorded reason.
    Unexplained,
}

/// Calls `f` for every cluster `o` does not use, in cluster order, with how the solver saw it.
/// With `all` false, the clusters the filter does not admit for this workload (closed, or
/// keep-only without its replicas) are skipped and returned as a set instead: each of them is
/// `Rejected(None)`, and a caller can count them word by word.
fn for_each_unused(
    wc: &WorkloadCtx<'_>,
    filters: &Filters<'_>,
    o: &Outcome,
    n: usize,
    all: bool,
    mut f: impl FnMut(usize, Unused),
) -> Bits {
    let mask = filters.mask(wc.filters[o.term]);
    let admitted = |c: usize, open: bool| open || count_of(&wc.previous, c) > 0;
    let clusters: Box<dyn Iterator<Item = (usize, bool)>> = if all {
        Box::new((0..n).map(|c| match mask.admission(c) {
            Admission::Open => (c, true),
            Admission::KeepOnly => (c, admitted(c, false)),
            Admission::Closed => (c, false),
        }))
    } else {
        Box::new(mask.admitted_open().map(|(c, open)| (c, admitted(c, open))).filter(|&(_, admitted)| admitted))
    };
    let mut skipped = if all { Bits::new() } else { filters.all_clusters() };
    let mut capacity = o.no_room.iter().peekable();
    for (c, admitted) in clusters {
        if !all {
            skipped[c / 64] &= !(1 << (c % 64));
        }
        while capacity.next_if(|&(x, _)| x < c).is_some() {}
        let no_room = capacity.next_if(|&(x, _)| x == c).map(|(_, why)| why);
        if count_of(&o.counts, c) > 0 {
            continue;
        }
        if o.candidates.binary_search(&c).is_ok() {
            f(c, Unused::NotSelected);
            continue;
        }
        f(
            c,
            match no_room {
                Some(NoRoom::ZeroWeight) => Unused::ZeroWeight,
                None if admitted => Unused::Unexplained,
                _ => Unused::Rejected(no_room),
            },
        );
    }
    if !all {
        // A cluster holding replicas is never reported, admitted or not.
        for &(c, _) in &o.counts {
            skipped[c / 64] &= !(1 << (c % 64));
        }
    }
    skipped
}

/// What one unused cluster is counted under: see [`Placement::unavailable`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Counted {
    Filter(filter::ReasonCode),
    Insufficient(u32),
    ZeroWeight,
    NotSelected,
}

/// Counts per [`Counted`]: a short list searched linearly (clusters usually fail for a handful of
/// reasons), a map beyond that.
#[derive(Default)]
struct Tally {
    few: Vec<(Counted, u32)>,
    many: BTreeMap<Counted, u32>,
}

impl Tally {
    fn add(&mut self, what: Counted) {
        self.add_n(what, 1);
    }

    /// Counts cluster `c`, unused by `o` (of filter `filter`) as `unused` says.
    fn add_unused(&mut self, filters: &Filters<'_>, filter: usize, o: &Outcome, c: usize, unused: Unused) {
        match unused {
            Unused::NotSelected => self.add(Counted::NotSelected),
            Unused::ZeroWeight => self.add(Counted::ZeroWeight),
            Unused::Unexplained => {}
            Unused::Rejected(no_room) => match filters.first_reason(filter, c) {
                Some(code) => self.add(Counted::Filter(code)),
                None => o.no_room.short(no_room).iter().for_each(|&r| self.add(Counted::Insufficient(r))),
            },
        }
    }

    fn add_n(&mut self, what: Counted, n: u32) {
        if let Some(e) = self.few.iter_mut().find(|e| e.0 == what) {
            e.1 += n;
        } else if self.few.len() < 16 {
            self.few.push((what, n));
        } else {
            *self.many.entry(what).or_insert(0) += n;
        }
    }
}

/// [`Placement::unavailable`] of an incomplete outcome. No per-cluster reason is built: each
/// cluster adds one to a small code (see [`filter::ReasonCode`]), and only the distinct codes
/// become [`Reason`]s.
fn reason_counts(wc: &WorkloadCtx<'_>, fleet: &Fleet<'_>, filters: &Filters<'_>, o: &Outcome) -> Vec<ReasonCount> {
    let filter = wc.filters[o.term];
    let n = fleet.clusters.len();
    let mut tally = Tally::default();
    // The admitted clusters one by one; those the filter does not admit, by first reason, found
    // word by word.
    let closed = for_each_unused(wc, filters, o, n, false, |c, unused| tally.add_unused(filters, filter, o, c, unused));
    filters.first_reason_counts(filter, closed, |code, k| tally.add_n(Counted::Filter(code), k));
    let counts = summarize(fleet, filters, filter, tally);
    #[cfg(debug_assertions)]
    {
        // The same counts, cluster by cluster.
        let mut by_cluster = Tally::default();
        for_each_unused(wc, filters, o, n, true, |c, unused| by_cluster.add_unused(filters, filter, o, c, unused));
        debug_assert_eq!(counts, summarize(fleet, filters, filter, by_cluster), "{}", wc.w.key());
    }
    counts
}

/// The [`ReasonCount`]s of a tally of filter `filter`'s outcome, most clusters first.
fn summarize(fleet: &Fleet<'_>, filters: &Filters<'_>, filter: usize, tally: Tally) -> Vec<ReasonCount> {
    // Different codes can stand for the same reason (one taint in several taint profiles).
    let mut counts: BTreeMap<Reason, u32> = BTreeMap::new();
    for (what, n) in tally.few.into_iter().chain(tally.many) {
        let reason = match what {
            Counted::Filter(code) => filters.reason_of(filter, code),
            Counted::Insufficient(r) => Reason::Insufficient { resource: fleet.resources[r as usize].to_string() },
            Counted::ZeroWeight => Reason::ZeroWeight,
            Counted::NotSelected => Reason::NotSelected,
        };
        *counts.entry(reason).or_insert(0) += n;
    }
    let mut counts: Vec<ReasonCount> =
        counts.into_iter().map(|(reason, clusters)| ReasonCount { reason, clusters }).collect();
    counts.sort_by(|a, b| b.clusters.cmp(&a.clusters).then_with(|| a.reason.cmp(&b.reason)));
    counts
}

/// Every cluster an incomplete outcome does not use, with every reason found, most fundamental
/// first.
fn rejections(wc: &WorkloadCtx<'_>, fleet: &Fleet<'_>, filters: &Filters<'_>, o: &Outcome) -> Vec<ClusterRejection> {
    let filter = wc.filters[o.term];
    let mut out = Vec::new();
    for_each_unused(wc, filters, o, fleet.clusters.len(), true, |c, unused| {
        let reasons = match unused {
            Unused::NotSelected => vec![Reason::NotSelected],
            Unused::ZeroWeight => vec![Reason::ZeroWeight],
            Unused::Unexplained => Vec::new(),
            Unused::Rejected(no_room) => {
                let mut reasons = Vec::new();
                filters.reasons_into(filter, c, &mut reasons);
                reasons.extend(
                    o.no_room
                        .short(no_room)
                        .iter()
                        .map(|&r| Reason::Insufficient { resource: fleet.resources[r as usize].to_string() }),
                );
                reasons
            }
        };
        out.push(ClusterRejection { cluster: fleet.clusters[c].name.clone(), reasons });
    });
    out
}

/// Turns an outcome into the public [`Placement`], with counts of the reasons clusters were not
/// used when the placement is not complete.
fn finish(wc: &WorkloadCtx<'_>, fleet: &Fleet<'_>, filters: &Filters<'_>, o: Outcome) -> Placement {
    let w = wc.w;
    let placed = o.placed();
    let phase = if o.complete {
        Phase::Scheduled
    } else if o.counts.is_empty() {
        Phase::Unschedulable
    } else {
        Phase::PartiallyScheduled
    };
    let decisions = o
        .counts
        .iter()
        .map(|&(c, n)| Decision {
            cluster: fleet.clusters[c].name.clone(),
            replicas: u32::try_from(n).unwrap_or(u32::MAX),
        })
        .collect();
    let affinity_group =
        if w.cluster_affinities.is_empty() { None } else { wc.terms[o.term].and_then(|t| t.name.clone()) };
    let events = o.events.iter().map(|e| format!(" {e}.")).collect::<String>();
    let (message, unavailable) = if o.complete {
        (events.trim_start().to_string(), Vec::new())
    } else {
        let unavailable = reason_counts(wc, fleet, filters, &o);
        let fallback_group = o.fell_back.then(|| affinity_group.clone()).flatten();
        let mut message = explain::message(&explain::Summary {
            total: fleet.clusters.len(),
            available: o.candidates.len(),
            counts: &unavailable,
            notes: &o.notes,
            divided: wc.divided(),
            requested: wc.replicas(),
            placed,
            fallback_group,
        });
        message.push_str(&events);
        (message, unavailable)
    };
    Placement {
        workload: w.key(),
        phase,
        decisions,
        replica_scheduling_type: w.replica_scheduling.kind,
        requested: w.replicas,
        placed,
        affinity_group,
        message,
        rebalance_pending: o.rebalance_pending,
        unavailable,
    }
}
