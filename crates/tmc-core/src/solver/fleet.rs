//! The compiled fleet: clusters indexed by name, resources indexed densely, free capacity as
//! vectors, and the running usage of the batch being planned.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Cluster, PlacementInput, Quantity, Workload, resources::PODS};

/// Clusters sorted by name with dense resource vectors.
pub(crate) struct Fleet<'a> {
    /// Clusters, sorted by name; a cluster's index is its identity inside the solver.
    pub clusters: Vec<&'a Cluster>,
    /// Name to index.
    pub by_name: BTreeMap<&'a str, usize>,
    /// Resource names; a resource's index addresses the vectors below.
    pub resources: Vec<&'a str>,
    res_index: BTreeMap<&'a str, usize>,
    /// `capacity - allocated` per cluster and resource. A resource the cluster does not list is 0,
    /// except `pods`, which is unlimited where not listed.
    pub free: Vec<Vec<Quantity>>,
    /// Capacity with the same conventions (for scoring).
    pub capacity: Vec<Vec<Quantity>>,
}

/// Per-replica demand of a workload: `(resource index, amount)` for every non-zero amount,
/// always including `pods` (1 unless the workload requests another amount).
#[derive(Clone, Debug)]
pub(crate) struct Demand(pub Vec<(usize, Quantity)>);

/// What the batch has used so far.
#[derive(Clone)]
pub(crate) struct Usage {
    /// Per cluster and resource.
    pub used: Vec<Vec<Quantity>>,
    /// Workloads of this batch with replicas on each cluster (for `Balance`).
    pub workloads_on: Vec<u32>,
}

impl<'a> Fleet<'a> {
    /// Indexes the input's clusters and every resource name it mentions.
    pub fn compile(input: &'a PlacementInput) -> Self {
        let mut clusters: Vec<&Cluster> = input.clusters.iter().collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = clusters.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
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
        let mut free = Vec::with_capacity(clusters.len());
        let mut capacity = Vec::with_capacity(clusters.len());
        for c in &clusters {
            let mut f = Vec::with_capacity(resources.len());
            let mut cap = Vec::with_capacity(resources.len());
            for r in &resources {
                match c.capacity.get(*r) {
                    Some(total) => {
                        let alloc = c.allocated.get(*r).copied().unwrap_or_default();
                        f.push(total.saturating_sub(alloc));
                        cap.push(*total);
                    }
                    None if *r == PODS => {
                        f.push(Quantity::MAX);
                        cap.push(Quantity::MAX);
                    }
                    None => {
                        f.push(Quantity::ZERO);
                        cap.push(Quantity::ZERO);
                    }
                }
            }
            free.push(f);
            capacity.push(cap);
        }
        Fleet { clusters, by_name, resources, res_index, free, capacity }
    }

    /// The per-replica demand of `w`.
    pub fn demand(&self, w: &Workload) -> Demand {
        let mut d: Vec<(usize, Quantity)> = w
            .resources
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .filter_map(|(name, q)| self.res_index.get(name.as_str()).map(|&i| (i, *q)))
            .collect();
        if !w.resources.contains_key(PODS)
            && let Some(&pods) = self.res_index.get(PODS)
        {
            d.push((pods, Quantity::from_units(1)));
            d.sort_by_key(|(i, _)| *i);
        }
        Demand(d)
    }

    /// How many more replicas of `demand` fit on cluster `c`, and the resource that limits it.
    pub fn fit(&self, usage: &Usage, c: usize, demand: &Demand) -> (u64, Option<usize>) {
        let mut best = (u64::MAX, None);
        for &(r, q) in &demand.0 {
            let avail = self.free[c][r].saturating_sub(usage.used[c][r]);
            let n = avail.fits(q);
            if n < best.0 {
                best = (n, Some(r));
            }
        }
        best
    }

    /// The resources of which cluster `c` cannot hold `need` more replicas.
    pub fn short_resources(&self, usage: &Usage, c: usize, demand: &Demand, need: u64) -> Vec<usize> {
        demand
            .0
            .iter()
            .filter(|&&(r, q)| self.free[c][r].saturating_sub(usage.used[c][r]).fits(q) < need)
            .map(|&(r, _)| r)
            .collect()
    }

    /// A fresh, empty usage.
    pub fn empty_usage(&self) -> Usage {
        Usage {
            used: vec![vec![Quantity::ZERO; self.resources.len()]; self.clusters.len()],
            workloads_on: vec![0; self.clusters.len()],
        }
    }
}

impl Usage {
    /// Adds `replicas` of `demand` on every `(cluster, replicas)` in `counts`.
    pub fn add(&mut self, counts: &BTreeMap<usize, u64>, demand: &Demand) {
        for (&c, &n) in counts {
            for &(r, q) in &demand.0 {
                self.used[c][r] = self.used[c][r].saturating_add(q.saturating_mul(n));
            }
            self.workloads_on[c] += 1;
        }
    }

    /// Undoes [`Usage::add`].
    pub fn remove(&mut self, counts: &BTreeMap<usize, u64>, demand: &Demand) {
        for (&c, &n) in counts {
            for &(r, q) in &demand.0 {
                self.used[c][r] = self.used[c][r].saturating_sub(q.saturating_mul(n));
            }
            self.workloads_on[c] = self.workloads_on[c].saturating_sub(1);
        }
    }
}
