//! Spread constraints: topology groups, cluster selection that honours group bounds, and the
//! skew check and repair for divided replicas.

use std::collections::BTreeMap;

use super::fleet::Fleet;
use crate::{SpreadConstraint, Workload};

/// The topology groups of every cluster for each of a workload's spread constraints.
pub(crate) struct Spread<'w> {
    pub constraints: &'w [SpreadConstraint],
    /// `groups[k][c]`: the group id of cluster `c` under constraint `k` (`None`: lacks the key).
    groups: Vec<Vec<Option<u32>>>,
}

impl<'w> Spread<'w> {
    /// Interns each constraint's topology values (sorted, so ids do not depend on input order).
    pub fn new(w: &'w Workload, fleet: &Fleet<'_>) -> Self {
        let groups = w
            .spread_constraints
            .iter()
            .map(|s| {
                let values: Vec<Option<&str>> =
                    fleet.clusters.iter().map(|c| c.topology_value(&s.topology_key)).collect();
                let mut ids: BTreeMap<&str, u32> = values.iter().flatten().map(|v| (*v, 0)).collect();
                for (i, id) in ids.values_mut().enumerate() {
                    *id = i as u32;
                }
                values.iter().map(|v| v.map(|v| ids[v])).collect()
            })
            .collect();
        Spread { constraints: &w.spread_constraints, groups }
    }

    /// The group of cluster `c` under constraint `k` (clusters lacking the key never get here:
    /// the filter closes them; they map to a group of their own to stay total).
    pub fn group(&self, k: usize, c: usize) -> u32 {
        self.groups[k][c].unwrap_or(u32::MAX)
    }

    /// Sums `value(c)` per group of constraint `k` over the clusters in `counts` with a non-zero count.
    pub fn group_sums(
        &self,
        k: usize,
        counts: &BTreeMap<usize, u64>,
        value: impl Fn(u64) -> u64,
    ) -> BTreeMap<u32, u64> {
        let mut sums = BTreeMap::new();
        for (&c, &n) in counts.iter().filter(|(_, n)| **n > 0) {
            *sums.entry(self.group(k, c)).or_insert(0) += value(n);
        }
        sums
    }

    /// Checks group bounds and skew for a decision set; `value` maps a cluster's replicas to what
    /// skew compares (replicas for Divided, 1 per cluster for Duplicated). Returns the violation.
    pub fn violation(&self, counts: &BTreeMap<usize, u64>, value: impl Fn(u64) -> u64 + Copy) -> Option<String> {
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

/// Result of [`select`].
pub(crate) struct Selection {
    /// Chosen clusters, in the order chosen.
    pub chosen: Vec<usize>,
    /// Clusters chosen to reach `minGroups` (each must receive at least one replica).
    pub reps: Vec<usize>,
    /// Why `minGroups` could not be reached, per constraint.
    pub shortfalls: Vec<String>,
}

/// Chooses clusters from `order` (most preferred first), starting with `initial`:
/// first one cluster per new group until every `minGroups` is met, then more in order while
/// `maxGroups`, `limit` and (for Duplicated, `dup_skew`) the skew bound allow, until `covered`.
pub(crate) fn select(
    order: &[usize],
    spread: &Spread<'_>,
    limit: usize,
    initial: &[usize],
    dup_skew: bool,
    covered: impl Fn(&[usize]) -> bool,
) -> Selection {
    let k_count = spread.constraints.len();
    let mut counts: Vec<BTreeMap<u32, u64>> = vec![BTreeMap::new(); k_count];
    let mut chosen: Vec<usize> = Vec::new();
    let mut is_chosen = BTreeMap::new();
    let add = |c: usize,
               counts: &mut Vec<BTreeMap<u32, u64>>,
               chosen: &mut Vec<usize>,
               is_chosen: &mut BTreeMap<usize, ()>| {
        for (k, ck) in counts.iter_mut().enumerate() {
            *ck.entry(spread.group(k, c)).or_insert(0) += 1;
        }
        chosen.push(c);
        is_chosen.insert(c, ());
    };
    for &c in initial {
        add(c, &mut counts, &mut chosen, &mut is_chosen);
    }
    let admissible = |c: usize, counts: &[BTreeMap<u32, u64>]| {
        spread.constraints.iter().enumerate().all(|(k, s)| {
            let g = spread.group(k, c);
            let current = counts[k].get(&g).copied();
            if current.is_none() && s.max_groups.is_some_and(|m| counts[k].len() >= m as usize) {
                return false;
            }
            if dup_skew && let Some(skew) = s.max_skew {
                let after = current.unwrap_or(0) + 1;
                let hi = counts[k].values().copied().max().unwrap_or(0).max(after);
                let lo =
                    counts[k].iter().filter(|(gg, _)| **gg != g).map(|(_, v)| *v).min().unwrap_or(after).min(after);
                if hi - lo > u64::from(skew) {
                    return false;
                }
            }
            true
        })
    };
    // Phase 1: reach every minGroups, preferring clusters that open a new group for the most
    // deficient constraints.
    let mut reps = Vec::new();
    loop {
        let deficient: Vec<usize> = (0..k_count)
            .filter(|&k| spread.constraints[k].min_groups.is_some_and(|m| counts[k].len() < m as usize))
            .collect();
        if deficient.is_empty() || chosen.len() >= limit {
            break;
        }
        let mut best: Option<(usize, usize)> = None;
        for &c in order {
            if is_chosen.contains_key(&c) || !admissible(c, &counts) {
                continue;
            }
            let gain = deficient.iter().filter(|&&k| !counts[k].contains_key(&spread.group(k, c))).count();
            if gain > 0 && best.is_none_or(|(_, g)| gain > g) {
                best = Some((c, gain));
            }
        }
        match best {
            Some((c, _)) => {
                add(c, &mut counts, &mut chosen, &mut is_chosen);
                reps.push(c);
            }
            None => break,
        }
    }
    let mut shortfalls = Vec::new();
    for (k, s) in spread.constraints.iter().enumerate() {
        if let Some(min) = s.min_groups
            && counts[k].len() < min as usize
        {
            let mut eligible: Vec<u32> = order.iter().map(|&c| spread.group(k, c)).collect();
            eligible.sort_unstable();
            eligible.dedup();
            shortfalls.push(format!(
                "spread on {} needs at least {min} groups, {} eligible{}",
                s.topology_key,
                eligible.len(),
                if chosen.len() >= limit { format!(" within the limit of {limit} clusters") } else { String::new() }
            ));
        }
    }
    if !shortfalls.is_empty() {
        return Selection { chosen, reps, shortfalls };
    }
    // Phase 2: add in preference order. Only the Duplicated skew bound can make a cluster
    // admissible again after others join, so only then is another pass needed.
    loop {
        let mut progress = false;
        for &c in order {
            if chosen.len() >= limit || covered(&chosen) {
                break;
            }
            if !is_chosen.contains_key(&c) && admissible(c, &counts) {
                add(c, &mut counts, &mut chosen, &mut is_chosen);
                progress = true;
            }
        }
        if !progress || !dup_skew {
            break;
        }
    }
    Selection { chosen, reps, shortfalls }
}
