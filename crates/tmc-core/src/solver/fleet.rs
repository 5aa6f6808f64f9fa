//! The compiled fleet: clusters indexed by name, resources indexed densely, free capacity as flat
//! integer arrays, topology groups per spread key, and the running usage of the batch.
//!
//! Amounts are exact integers. Each resource gets its own unit (the largest power of ten of
//! nano-units that divides every amount of that resource in the input), so typical amounts such
//! as millicores and bytes fit in 64 bits and the hot divisions stay cheap; nothing is rounded.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Cluster, PlacementInput, Quantity, Workload, resources::PODS};

/// "No limit" for a resource a cluster does not enforce (`pods` where not listed).
pub(crate) const UNLIMITED: u128 = u128::MAX;

/// Clusters sorted by name with dense resource arrays.
pub(crate) struct Fleet<'a> {
    /// Clusters, sorted by name; a cluster's index is its identity inside the solver.
    pub clusters: Vec<&'a Cluster>,
    /// Resource names; a resource's index addresses the arrays below.
    pub resources: Vec<&'a str>,
    res_index: BTreeMap<&'a str, usize>,
    /// Nano-units per scaled unit, per resource.
    unit: Vec<u128>,
    /// `capacity - allocated`, scaled, at `[cluster * resources.len() + resource]`. A resource the
    /// cluster does not list is 0, except `pods`, which is [`UNLIMITED`] where not listed.
    free: Vec<u128>,
    /// Capacity with the same layout and conventions (for scoring).
    capacity: Vec<u128>,
    /// Topology group id of every cluster per spread key used by any workload (`None`: the
    /// cluster lacks the key), and the number of groups. Ids follow the sorted values, so they do
    /// not depend on input order.
    topology: BTreeMap<&'a str, (Vec<Option<u32>>, usize)>,
}

/// The cluster side of a fleet in nano-units, owned, for callers that build many small fleets
/// over the same clusters ([`Fleet::for_workloads`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterTable {
    /// Per resource, capacity and free amount of each cluster (in the given order). A resource
    /// a cluster does not list is 0, except `pods`, which is [`UNLIMITED`] there.
    columns: BTreeMap<String, (Vec<u128>, Vec<u128>)>,
}

impl ClusterTable {
    /// The table of `clusters`, in their order.
    pub fn new(clusters: &[Cluster]) -> Self {
        let names: BTreeSet<&str> = clusters
            .iter()
            .flat_map(|c| c.capacity.keys().chain(c.allocated.keys()).map(String::as_str))
            .chain([PODS])
            .collect();
        let columns = names
            .into_iter()
            .map(|name| {
                let (cap, free) = clusters
                    .iter()
                    .map(|c| match c.capacity.get(name) {
                        Some(total) => {
                            let alloc = c.allocated.get(name).copied().unwrap_or_default();
                            (total.nanos(), total.saturating_sub(alloc).nanos())
                        }
                        None if name == PODS => (UNLIMITED, UNLIMITED),
                        None => (0, 0),
                    })
                    .unzip();
                (name.to_string(), (cap, free))
            })
            .collect();
        ClusterTable { columns }
    }
}

/// Per-replica demand of a workload: `(resource index, scaled amount)` for every non-zero amount,
/// always including `pods` (1 unless the workload requests another amount).
#[derive(Clone, Debug, Default)]
pub(crate) struct Demand(pub Vec<(usize, u128)>);

/// `want` replicas of a demand, for [`Fleet::fit_at_most`] on many clusters: per resource, the
/// per-replica amount and the amount `want` replicas need (`None` beyond 128 bits).
pub(crate) struct AtMost {
    want: u64,
    /// `(resource, amount, amount of want replicas)`; the last is [`UNLIMITED`] beyond 128 bits,
    /// which no limited amount reaches.
    rows: Vec<(usize, u128, u128)>,
}

impl AtMost {
    pub fn new(demand: &Demand, want: u64) -> Self {
        let rows =
            demand.0.iter().map(|&(r, q)| (r, q, q.checked_mul(u128::from(want)).unwrap_or(UNLIMITED))).collect();
        AtMost { want, rows }
    }
}

/// Replicas per cluster, sorted by cluster index, no zero entries.
pub(crate) type Counts = Vec<(usize, u64)>;

/// What the batch has used so far.
#[derive(Clone)]
pub(crate) struct Usage {
    used: Vec<u128>,
    /// `free - used` (saturating) per row, [`UNLIMITED`] where the fleet sets no limit: what the
    /// room checks read, kept in step with `used` so each check loads one amount.
    left: Vec<u128>,
    /// Workloads of this batch with replicas on each cluster (for `Balance`).
    pub workloads_on: Vec<u32>,
}

impl Usage {
    /// The amount used at flat index `i` (`cluster * resources + resource`), scaled.
    #[cfg(feature = "exact")]
    pub fn used(&self, i: usize) -> u128 {
        self.used[i]
    }
}

/// `a / b` for a non-zero `b`, in 64-bit arithmetic when both fit (the common case after
/// scaling), which is much cheaper than a 128-bit division.
#[inline]
fn div(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a / b),
        _ => a / b,
    }
}

/// [`Quantity::per_mille_of`] on raw amounts, in 64-bit arithmetic when that is exact (the
/// amounts are small enough that no scaling or saturation happens).
#[inline]
fn per_mille(part: u128, total: u128) -> u64 {
    match (u64::try_from(part), u64::try_from(total)) {
        (Ok(a), Ok(b)) if b != 0 && a <= u64::MAX / 1000 => (a * 1000 / b).min(1000),
        _ => Quantity::from_nanos(part).per_mille_of(Quantity::from_nanos(total)),
    }
}

/// Topology group ids of every cluster per key (`None`: the cluster lacks the key), and their
/// number. Ids follow the sorted values, so they do not depend on input order.
fn topology<'a>(clusters: &[&'a Cluster], keys: BTreeSet<&'a str>) -> BTreeMap<&'a str, (Vec<Option<u32>>, usize)> {
    keys.into_iter()
        .map(|key| {
            let values: Vec<Option<&str>> = clusters.iter().map(|c| c.topology_value(key)).collect();
            let ids: BTreeMap<&str, u32> =
                values.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().zip(0..).collect();
            (key, (values.iter().map(|v| v.map(|v| ids[v])).collect(), ids.len()))
        })
        .collect()
}

fn pow10_unit(values: impl Iterator<Item = u128>) -> u128 {
    let mut unit = 1_000_000_000u128;
    for v in values {
        while unit > 1 && v % unit != 0 {
            unit /= 10;
        }
    }
    unit
}

impl<'a> Fleet<'a> {
    /// Indexes the input's clusters, every resource name and every spread key it mentions.
    pub fn compile(input: &'a PlacementInput) -> Self {
        let mut clusters: Vec<&Cluster> = input.clusters.iter().collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let mut names: BTreeSet<&str> = BTreeSet::from([PODS]);
        for c in &clusters {
            names.extend(c.capacity.keys().map(String::as_str));
            names.extend(c.allocated.keys().map(String::as_str));
        }
        for w in &input.workloads {
            names.extend(w.resources.keys().map(String::as_str));
        }
        let resources: Vec<&str> = names.into_iter().collect();
        let res_index = resources.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        let unit: Vec<u128> = resources
            .iter()
            .map(|r| {
                let amounts = clusters
                    .iter()
                    .flat_map(|c| c.capacity.get(*r).into_iter().chain(c.allocated.get(*r)))
                    .chain(input.workloads.iter().filter_map(|w| w.resources.get(*r)))
                    .map(|q| q.nanos())
                    .chain((*r == PODS).then_some(1_000_000_000));
                pow10_unit(amounts)
            })
            .collect();
        let nr = resources.len();
        let mut free = Vec::with_capacity(clusters.len() * nr);
        let mut capacity = Vec::with_capacity(clusters.len() * nr);
        for c in &clusters {
            for (r, name) in resources.iter().enumerate() {
                match c.capacity.get(*name) {
                    Some(total) => {
                        let alloc = c.allocated.get(*name).copied().unwrap_or_default();
                        free.push(total.saturating_sub(alloc).nanos() / unit[r]);
                        capacity.push(total.nanos() / unit[r]);
                    }
                    None if *name == PODS => {
                        free.push(UNLIMITED);
                        capacity.push(UNLIMITED);
                    }
                    None => {
                        free.push(0);
                        capacity.push(0);
                    }
                }
            }
        }
        let keys: BTreeSet<&str> =
            input.workloads.iter().flat_map(|w| w.spread_constraints.iter().map(|s| s.topology_key.as_str())).collect();
        let topology = topology(&clusters, keys);
        Fleet { clusters, resources, res_index, unit, free, capacity, topology }
    }

    /// The fleet one or a few workloads see, built from a [`ClusterTable`] of `clusters` (sorted
    /// by name, as the table was built) without re-reading every cluster: only the resources the
    /// workloads request (and `pods`), all in nano-units.
    pub fn for_workloads(clusters: &'a [Cluster], workloads: &[&'a Workload], table: &ClusterTable) -> Self {
        debug_assert!(clusters.windows(2).all(|w| w[0].name <= w[1].name), "clusters must be sorted by name");
        let clusters: Vec<&Cluster> = clusters.iter().collect();
        let mut names: BTreeSet<&str> = BTreeSet::from([PODS]);
        for w in workloads {
            names.extend(w.resources.keys().map(String::as_str));
        }
        let resources: Vec<&str> = names.into_iter().collect();
        let res_index = resources.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        let nr = resources.len();
        let n = clusters.len();
        let mut free = vec![0u128; n * nr];
        let mut capacity = vec![0u128; n * nr];
        for (r, name) in resources.iter().enumerate() {
            match table.columns.get(*name) {
                Some((cap, fr)) => {
                    for c in 0..n {
                        capacity[c * nr + r] = cap[c];
                        free[c * nr + r] = fr[c];
                    }
                }
                None if *name == PODS => {
                    for c in 0..n {
                        capacity[c * nr + r] = UNLIMITED;
                        free[c * nr + r] = UNLIMITED;
                    }
                }
                None => {}
            }
        }
        let keys: BTreeSet<&str> =
            workloads.iter().flat_map(|w| w.spread_constraints.iter().map(|s| s.topology_key.as_str())).collect();
        let topology = topology(&clusters, keys);
        Fleet { clusters, resources, res_index, unit: vec![1; nr], free, capacity, topology }
    }

    /// The index of the cluster called `name` (clusters are sorted by name).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.clusters.binary_search_by(|c| c.name.as_str().cmp(name)).ok()
    }

    /// Free capacity per cluster and resource, flat (`[cluster * resources + resource]`), scaled.
    pub fn free_flat(&self) -> &[u128] {
        &self.free
    }

    /// Number of resources.
    fn nr(&self) -> usize {
        self.resources.len()
    }

    /// The topology groups of spread key `key` (every key of the input was compiled).
    pub fn groups(&self, key: &str) -> &[Option<u32>] {
        self.topology.get(key).map_or(&[], |(ids, _)| ids.as_slice())
    }

    /// The number of topology groups of spread key `key` (group ids are below it).
    pub fn group_count(&self, key: &str) -> usize {
        self.topology.get(key).map_or(0, |&(_, n)| n)
    }

    /// The per-replica demand of `w`.
    pub fn demand(&self, w: &Workload) -> Demand {
        let mut d: Vec<(usize, u128)> = w
            .resources
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .filter_map(|(name, q)| self.res_index.get(name.as_str()).map(|&i| (i, q.nanos() / self.unit[i])))
            .collect();
        if !w.resources.contains_key(PODS)
            && let Some(&pods) = self.res_index.get(PODS)
        {
            d.push((pods, Quantity::from_units(1).nanos() / self.unit[pods]));
            d.sort_by_key(|(i, _)| *i);
        }
        Demand(d)
    }

    /// How many more replicas of `demand` fit on cluster `c`, and the resource that limits it.
    pub fn fit(&self, usage: &Usage, c: usize, demand: &Demand) -> (u64, Option<usize>) {
        let base = c * self.nr();
        let mut best = (u64::MAX, None);
        for &(r, q) in &demand.0 {
            let avail = usage.left[base + r];
            if avail == UNLIMITED {
                continue;
            }
            let n = u64::try_from(div(avail, q)).unwrap_or(u64::MAX);
            if n < best.0 {
                best = (n, Some(r));
            }
        }
        best
    }

    /// `min(fit, at.want)`: how many more replicas of `at`'s demand fit on cluster `c`, counting
    /// only up to `want`. Cheaper than [`Fleet::fit`]: a resource with room for `want` replicas
    /// needs no division.
    pub fn fit_at_most(&self, usage: &Usage, c: usize, at: &AtMost) -> u64 {
        let base = c * self.nr();
        let mut best = at.want;
        for &(r, q, need) in &at.rows {
            let avail = usage.left[base + r];
            // Room for `want` leaves `best` (at most `want`) as it is; so does no limit.
            if need <= avail {
                continue;
            }
            best = best.min(u64::try_from(div(avail, q)).unwrap_or(u64::MAX));
            if best == 0 {
                // No resource can lower it further (common on full clusters).
                break;
            }
        }
        best
    }

    /// The resources of which cluster `c` cannot hold `need` more replicas.
    pub fn short_resources<'s>(
        &'s self,
        usage: &'s Usage,
        c: usize,
        demand: &'s Demand,
        need: u64,
    ) -> impl Iterator<Item = usize> + 's {
        let base = c * self.nr();
        demand
            .0
            .iter()
            .filter(move |&&(r, q)| {
                let avail = usage.left[base + r];
                avail != UNLIMITED && div(avail, q) < u128::from(need)
            })
            .map(|&(r, _)| r)
    }

    /// Average free fraction (0..=100) of the requested resources on `c` after one more replica,
    /// like kube-scheduler's LeastAllocated; unlimited resources count as fully free.
    pub fn least_allocated(&self, usage: &Usage, c: usize, demand: &Demand) -> i64 {
        if demand.0.is_empty() {
            return 100;
        }
        let base = c * self.nr();
        let mut sum = 0u128;
        for &(r, q) in &demand.0 {
            let cap = self.capacity[base + r];
            sum += if cap == UNLIMITED || cap == 0 {
                if cap == 0 { 0 } else { 1000 }
            } else {
                // A limited capacity means a limited free amount: `left` is `free - used` here.
                let after = usage.left[base + r].saturating_sub(q);
                per_mille(after, cap).into()
            };
        }
        // ⌊⌊sum / len⌋ / 10⌋ = ⌊sum / (10 len)⌋: one division.
        i64::try_from(div(sum, 10 * demand.0.len() as u128)).unwrap_or(100)
    }

    /// Whether cluster `c` holds `add` (a demand times a count) once `remove` (another, held
    /// there now) leaves it: per resource, what is left plus what `remove` frees covers `add`.
    pub fn exchange_fits(&self, usage: &Usage, c: usize, add: (&Demand, u64), remove: (&Demand, u64)) -> bool {
        let base = c * self.nr();
        add.0.0.iter().all(|&(r, q)| {
            let left = usage.left[base + r];
            if left == UNLIMITED {
                return true;
            }
            let freed =
                remove.0.0.iter().find(|&&(x, _)| x == r).map_or(0, |&(_, p)| p.saturating_mul(u128::from(remove.1)));
            left.saturating_add(freed) >= q.saturating_mul(u128::from(add.1))
        })
    }

    /// A fresh, empty usage.
    pub fn empty_usage(&self) -> Usage {
        Usage { used: vec![0; self.free.len()], left: self.free.clone(), workloads_on: vec![0; self.clusters.len()] }
    }

    /// A usage from its parts, in this fleet's layout (`used[cluster * resources + resource]`,
    /// scaled; `workloads_on[cluster]`).
    pub fn usage_from_parts(&self, used: Vec<u128>, workloads_on: Vec<u32>) -> Usage {
        let left = self.free.iter().zip(&used).map(|(&free, &used)| Self::left(free, used)).collect();
        Usage { used, left, workloads_on }
    }

    /// What is left of `free` after `used` ([`UNLIMITED`] stays unlimited).
    fn left(free: u128, used: u128) -> u128 {
        if free == UNLIMITED { UNLIMITED } else { free.saturating_sub(used) }
    }

    /// Adds `counts` replicas of `demand` to `usage`.
    pub fn add(&self, usage: &mut Usage, counts: &[(usize, u64)], demand: &Demand) {
        for &(c, n) in counts {
            let base = c * self.nr();
            for &(r, q) in &demand.0 {
                let i = base + r;
                usage.used[i] = usage.used[i].saturating_add(q.saturating_mul(u128::from(n)));
                usage.left[i] = Self::left(self.free[i], usage.used[i]);
            }
            usage.workloads_on[c] += 1;
        }
    }

    /// Undoes [`Fleet::add`].
    pub fn remove(&self, usage: &mut Usage, counts: &[(usize, u64)], demand: &Demand) {
        for &(c, n) in counts {
            let base = c * self.nr();
            for &(r, q) in &demand.0 {
                let i = base + r;
                usage.used[i] = usage.used[i].saturating_sub(q.saturating_mul(u128::from(n)));
                usage.left[i] = Self::left(self.free[i], usage.used[i]);
            }
            usage.workloads_on[c] = usage.workloads_on[c].saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_the_largest_exact_power_of_ten() {
        assert_eq!(pow10_unit([500_000_000u128, 2_000_000_000].into_iter()), 100_000_000);
        assert_eq!(pow10_unit([3u128].into_iter()), 1);
        assert_eq!(pow10_unit(std::iter::empty()), 1_000_000_000);
    }
}
