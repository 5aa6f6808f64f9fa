//! Spread constraints: topology groups, cluster selection that honours group bounds, and the
//! skew check and repair for divided replicas.

use std::collections::BTreeMap;

use super::fleet::Fleet;
use crate::{SpreadConstraint, Workload};

/// The topology groups of every cluster for each of a workload's spread constraints.
#[derive(Clone)]
pub(crate) struct Spread<'w> {
    pub constraints: &'w [SpreadConstraint],
    /// `groups[k][c]`: the group id of cluster `c` under constraint `k` (`None`: lacks the key),
    /// shared with every workload spreading over the same key.
    groups: Vec<&'w [Option<u32>]>,
    /// Per constraint: one more than the largest group id (the slot of clusters lacking the key).
    slots: Vec<usize>,
}

impl<'w> Spread<'w> {
    /// The spread of `w`, with group ids compiled once per key by the fleet.
    pub fn new(w: &'w Workload, fleet: &'w Fleet<'_>) -> Self {
        let groups: Vec<&[Option<u32>]> = w.spread_constraints.iter().map(|s| fleet.groups(&s.topology_key)).collect();
        let slots = w.spread_constraints.iter().map(|s| fleet.group_count(&s.topology_key)).collect();
        Spread { constraints: &w.spread_constraints, groups, slots }
    }

    /// The group of cluster `c` under constraint `k` (clusters lacking the key never get here:
    /// the filter closes them; they map to a group of their own to stay total).
    pub fn group(&self, k: usize, c: usize) -> u32 {
        self.groups[k].get(c).copied().flatten().unwrap_or(u32::MAX)
    }

    /// A dense index of the group of cluster `c` under constraint `k`, below `slots(k) + 1`
    /// (clusters lacking the key share the last slot), one to one with [`Spread::group`].
    fn slot(&self, k: usize, c: usize) -> usize {
        match self.group(k, c) {
            u32::MAX => self.slots[k],
            g => g as usize,
        }
    }

    /// Sums `value(c)` per group of constraint `k` over the clusters in `counts` with a non-zero count.
    pub fn group_sums(&self, k: usize, counts: &[(usize, u64)], value: impl Fn(u64) -> u64) -> BTreeMap<u32, u64> {
        let mut sums = BTreeMap::new();
        for &(c, n) in counts.iter().filter(|(_, n)| *n > 0) {
            *sums.entry(self.group(k, c)).or_insert(0) += value(n);
        }
        sums
    }

    /// Whether cluster `c` can be added to `counts` without exceeding any `maxGroups`.
    pub fn may_join(&self, counts: &[(usize, u64)], c: usize) -> bool {
        self.constraints.iter().enumerate().all(|(k, s)| {
            let Some(max) = s.max_groups else { return true };
            let g = self.group(k, c);
            let used = self.group_sums(k, counts, |n| n);
            used.contains_key(&g) || used.len() < max as usize
        })
    }

    /// Whether `c` holds the only replicas of its group under a constraint whose `minGroups`
    /// would no longer hold without that group.
    pub fn needs(&self, counts: &[(usize, u64)], c: usize) -> bool {
        self.constraints.iter().enumerate().any(|(k, s)| {
            let Some(min) = s.min_groups else { return false };
            let g = self.group(k, c);
            let alone = counts.iter().all(|&(o, n)| o == c || n == 0 || self.group(k, o) != g);
            alone && self.group_sums(k, counts, |n| n).len() <= min as usize
        })
    }

    /// Checks group bounds and skew for a decision set; `value` maps a cluster's replicas to what
    /// skew compares (replicas for Divided, 1 per cluster for Duplicated). Returns the violation.
    pub fn violation(&self, counts: &[(usize, u64)], value: impl Fn(u64) -> u64 + Copy) -> Option<String> {
        for (k, s) in self.constraints.iter().enumerate() {
            let sums = self.group_sums(k, counts, value);
            let used = sums.len() as u64;
            if let Some(min) = s.min_groups
                && used < u64::from(min)
            {
                return Some(format!("spread on {} uses {used} groups, needs at least {min}", s.topology_key));
            }
            if let Some(max) = s.max_groups
                && used > u64::from(max)
            {
                return Some(format!("spread on {} uses {used} groups, allows at most {max}", s.topology_key));
            }
            if let Some(skew) = s.max_skew {
                let hi = sums.values().max().copied().unwrap_or(0);
                let lo = sums.values().min().copied().unwrap_or(0);
                if hi - lo > u64::from(skew) {
                    return Some(format!("spread on {} has skew {}, allows {skew}", s.topology_key, hi - lo));
                }
            }
        }
        None
    }
}

/// Clusters chosen per group of one constraint, dense by group slot.
#[derive(Clone)]
struct Tally {
    count: Vec<u64>,
    /// Slots with a non-zero count.
    used: Vec<usize>,
    /// The largest count (0 when none).
    hi: u64,
}

impl Tally {
    fn new(slots: usize) -> Self {
        Tally { count: vec![0; slots], used: Vec::new(), hi: 0 }
    }

    fn add(&mut self, g: usize) {
        if self.count[g] == 0 {
            self.used.push(g);
        }
        self.count[g] += 1;
        self.hi = self.hi.max(self.count[g]);
    }
}

/// Result of [`select`].
pub(crate) struct Selection {
    /// Chosen clusters, in the order chosen.
    pub chosen: Vec<usize>,
    /// Clusters chosen to reach `minGroups` (each must receive at least one replica).
    pub reps: Vec<usize>,
    /// Why `minGroups` could not be reached, per constraint.
    pub shortfalls: Vec<String>,
}

/// How many other first choices [`select`] tries when its greedy pass cannot reach every
/// `minGroups`: enough for the group combinations real fleets have, bounded so a hopeless
/// request stays linear in the fleet.
const RETRIES: usize = 32;

/// A selection in progress: the clusters chosen so far and their groups per constraint.
#[derive(Clone)]
struct Chooser<'s, 'w> {
    spread: &'s Spread<'w>,
    /// Per constraint: clusters chosen per group.
    tallies: Vec<Tally>,
    chosen: Vec<usize>,
    is_chosen: Vec<bool>,
    /// Clusters chosen to reach `minGroups`.
    reps: Vec<usize>,
    /// What the chosen clusters cover (see `cover` in [`select`]).
    covered: u64,
    dup_skew: bool,
}

impl Chooser<'_, '_> {
    fn add(&mut self, c: usize, cap: Option<&dyn Fn(usize) -> u64>) {
        for (k, t) in self.tallies.iter_mut().enumerate() {
            t.add(self.spread.slot(k, c));
        }
        self.chosen.push(c);
        self.is_chosen[c] = true;
        if let Some(cap) = cap {
            self.covered = self.covered.saturating_add(cap(c));
        }
    }

    /// Whether `c` may join without exceeding a `maxGroups` or (for Duplicated) the skew bound.
    fn admissible(&self, c: usize) -> bool {
        self.spread.constraints.iter().enumerate().all(|(k, s)| {
            let t = &self.tallies[k];
            let g = self.spread.slot(k, c);
            let current = t.count[g];
            if current == 0 && s.max_groups.is_some_and(|m| t.used.len() >= m as usize) {
                return false;
            }
            if self.dup_skew
                && let Some(skew) = s.max_skew
            {
                let after = current + 1;
                let hi = t.hi.max(after);
                let lo = t.used.iter().filter(|&&gg| gg != g).map(|&gg| t.count[gg]).min().unwrap_or(after).min(after);
                if hi - lo > u64::from(skew) {
                    return false;
                }
            }
            true
        })
    }

    /// The constraints whose `minGroups` is not reached yet.
    fn deficient(&self) -> Vec<usize> {
        (0..self.tallies.len())
            .filter(|&k| self.spread.constraints[k].min_groups.is_some_and(|m| self.tallies[k].used.len() < m as usize))
            .collect()
    }

    /// How many of the `deficient` constraints cluster `c` opens a new group for.
    fn gain(&self, deficient: &[usize], c: usize) -> usize {
        deficient.iter().filter(|&&k| self.tallies[k].count[self.spread.slot(k, c)] == 0).count()
    }

    /// Greedily adds, in `order`, the admissible cluster that opens a new group for the most
    /// deficient constraints, until every `minGroups` is reached (true) or no cluster helps.
    fn reach_min_groups(&mut self, order: &[usize], limit: usize, cap: Option<&dyn Fn(usize) -> u64>) -> bool {
        loop {
            let deficient = self.deficient();
            if deficient.is_empty() {
                return true;
            }
            if self.chosen.len() >= limit {
                return false;
            }
            let mut best: Option<(usize, usize)> = None;
            for &c in order {
                if self.is_chosen[c] || !self.admissible(c) {
                    continue;
                }
                let gain = self.gain(&deficient, c);
                if gain > 0 && best.is_none_or(|(_, g)| gain > g) {
                    best = Some((c, gain));
                    // The first cluster in order with the largest possible gain wins: stop there.
                    if gain == deficient.len() {
                        break;
                    }
                }
            }
            let Some((c, _)) = best else { return false };
            self.add(c, cap);
            self.reps.push(c);
        }
    }
}

/// Whether `order` spans at least `minGroups` groups of every constraint (else no selection
/// from it can reach them).
fn enough_groups(order: &[usize], spread: &Spread<'_>) -> bool {
    spread
        .constraints
        .iter()
        .enumerate()
        .all(|(k, s)| s.min_groups.is_none_or(|min| groups_in(order, spread, k) >= min as usize))
}

/// How many groups of constraint `k` the clusters of `order` span.
fn groups_in(order: &[usize], spread: &Spread<'_>, k: usize) -> usize {
    let mut seen = vec![false; spread.slots[k] + 1];
    order.iter().filter(|&&c| !std::mem::replace(&mut seen[spread.slot(k, c)], true)).count()
}

/// Chooses clusters from `order` (most preferred first), starting with `initial`:
/// first one cluster per new group until every `minGroups` is met, then more in order while
/// `maxGroups`, `limit` and (for Duplicated, `dup_skew`) the skew bound allow, until `covered`.
///
/// The first pass is greedy. A cluster it picks early can close groups that a later `minGroups`
/// needs (a `maxGroups` of 1 on zones pins the zone of the first pick), so when it falls short,
/// the first pick is retried with each other combination of groups, in order of preference.
pub(crate) fn select(
    order: &[usize],
    spread: &Spread<'_>,
    limit: usize,
    initial: &[usize],
    dup_skew: bool,
    cover: Option<(u64, &dyn Fn(usize) -> u64)>,
) -> Selection {
    let k_count = spread.constraints.len();
    let n = order.iter().chain(initial).max().map_or(0, |m| m + 1);
    let target = cover.map(|(t, _)| t);
    let cap = cover.map(|(_, cap)| cap);
    if k_count == 0 {
        // No spread: take clusters in order until the limit or the cover target is reached.
        let mut chosen: Vec<usize> = Vec::with_capacity(order.len().min(limit));
        let mut is_chosen = vec![false; n];
        let mut covered = 0u64;
        for &c in initial.iter().chain(order) {
            if is_chosen[c] {
                continue;
            }
            if chosen.len() >= limit.max(initial.len()) || target.is_some_and(|t| covered >= t) {
                break;
            }
            is_chosen[c] = true;
            chosen.push(c);
            if let Some(cap) = cap {
                covered = covered.saturating_add(cap(c));
            }
        }
        return Selection { chosen, reps: Vec::new(), shortfalls: Vec::new() };
    }
    let mut base = Chooser {
        spread,
        tallies: (0..k_count).map(|k| Tally::new(spread.slots[k] + 1)).collect(),
        chosen: Vec::with_capacity(order.len().min(limit)),
        is_chosen: vec![false; n],
        reps: Vec::new(),
        covered: 0,
        dup_skew,
    };
    for &c in initial {
        base.add(c, cap);
    }
    // Phase 1: reach every minGroups, preferring clusters that open a new group for the most
    // deficient constraints.
    let mut sel = base.clone();
    // Another first pick can only help where a pick closes groups to later ones: a maxGroups
    // (or, for Duplicated, a skew bound) makes clusters inadmissible, or the limit on clusters
    // ran out before every minGroups was reached.
    let closing = spread.constraints.iter().any(|s| s.max_groups.is_some() || (dup_skew && s.max_skew.is_some()));
    if !sel.reach_min_groups(order, limit, cap)
        && base.chosen.len() < limit
        && (closing || sel.chosen.len() >= limit)
        && enough_groups(order, spread)
    {
        let deficient = base.deficient();
        // One retry per combination of groups (over every constraint) a first pick can have.
        let combination = |c: usize| (0..k_count).map(|k| spread.slot(k, c)).collect::<Vec<_>>();
        let mut tried: std::collections::BTreeSet<Vec<usize>> =
            sel.reps.first().map(|&c| combination(c)).into_iter().collect();
        let firsts =
            order.iter().copied().filter(|&c| !base.is_chosen[c] && base.admissible(c) && base.gain(&deficient, c) > 0);
        for c in firsts {
            if tried.len() > RETRIES {
                break;
            }
            if !tried.insert(combination(c)) {
                continue;
            }
            let mut retry = base.clone();
            retry.add(c, cap);
            retry.reps.push(c);
            if retry.reach_min_groups(order, limit, cap) {
                sel = retry;
                break;
            }
        }
    }
    let mut shortfalls = Vec::new();
    for (k, s) in spread.constraints.iter().enumerate() {
        if let Some(min) = s.min_groups
            && sel.tallies[k].used.len() < min as usize
        {
            shortfalls.push(format!(
                "spread on {} needs at least {min} groups, {} eligible{}",
                s.topology_key,
                groups_in(order, spread, k),
                if sel.chosen.len() >= limit {
                    format!(" within the limit of {limit} clusters")
                } else {
                    String::new()
                }
            ));
        }
    }
    if !shortfalls.is_empty() {
        return Selection { chosen: sel.chosen, reps: sel.reps, shortfalls };
    }
    // Phase 2: add in preference order. Only the Duplicated skew bound can make a cluster
    // admissible again after others join, so only then is another pass needed.
    loop {
        let mut progress = false;
        for &c in order {
            if sel.chosen.len() >= limit || target.is_some_and(|t| sel.covered >= t) {
                break;
            }
            if !sel.is_chosen[c] && sel.admissible(c) {
                sel.add(c, cap);
                progress = true;
            }
        }
        if !progress || !dup_skew {
            break;
        }
    }
    Selection { chosen: sel.chosen, reps: sel.reps, shortfalls }
}
