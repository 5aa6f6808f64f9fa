//! The order workloads are placed in: highest priority first; within one priority, smaller
//! replicas first; ties by `namespace/name`.
//!
//! A replica's *size* is the largest share of the fleet's capacity (summed over every cluster)
//! of any resource it requests, its dominant share as in dominant resource fairness. Why smaller
//! first: the objective counts replicas weighted by priority, so within one priority every
//! replica is worth the same whatever it requests, and placing the ones that need least first
//! is the value-density greedy of a knapsack. On the generated high-contention scenarios it took
//! the certified gap at 1k x 100 from 1.08% to 0.97%, 5k x 100 from 5.84% to 1.70% and
//! 10k x 1k from 3.69% to 1.88%, and the small random instances from 99.72% to 99.79% of the
//! exact optimum (`BENCHMARKS.md`).
//!
//! The size reads capacity, not what is allocated, so the order only changes when a workload's
//! requests or the fleet's clusters do (the incremental placer re-plans in full on every cluster
//! change).

use std::{cmp::Reverse, collections::BTreeMap};

use crate::{Cluster, Workload, WorkloadKey};

/// A workload's position in the placement order: ranks sort in placement order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    priority: Reverse<i32>,
    /// The bits of the (non-negative) dominant share, which sort like the share.
    size: u64,
    /// `namespace/name`.
    pub key: WorkloadKey,
}

/// The fleet's total capacity per resource, which replica sizes are shares of.
#[derive(Clone, Debug, Default)]
pub(crate) struct FleetCapacity {
    totals: BTreeMap<String, u128>,
}

impl FleetCapacity {
    /// The summed capacity of `clusters`, per resource.
    pub fn of<'a>(clusters: impl IntoIterator<Item = &'a Cluster>) -> Self {
        let mut totals: BTreeMap<String, u128> = BTreeMap::new();
        for c in clusters {
            for (r, q) in &c.capacity {
                let t = totals.entry(r.clone()).or_default();
                *t = t.saturating_add(q.nanos());
            }
        }
        FleetCapacity { totals }
    }

    /// The dominant share of one replica of `w`: the largest `request / total capacity` over the
    /// resources it requests (infinite for a resource no cluster has, so such workloads, which
    /// cannot be placed, come last).
    fn size(&self, w: &Workload) -> f64 {
        w.resources
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .map(|(r, q)| match self.totals.get(r) {
                Some(&t) if t > 0 => q.nanos() as f64 / t as f64,
                _ => f64::INFINITY,
            })
            .fold(0.0, f64::max)
    }

    /// The rank of `w` in the placement order.
    pub fn rank(&self, w: &Workload) -> Rank {
        Rank { priority: Reverse(w.priority), size: self.size(w).to_bits(), key: w.key() }
    }

    /// `workloads` in placement order.
    pub fn sorted<'a>(&self, workloads: impl IntoIterator<Item = &'a Workload>) -> Vec<&'a Workload> {
        let mut order: Vec<&Workload> = workloads.into_iter().collect();
        // The rank (with its `namespace/name` key) is built once per workload, not once per
        // comparison.
        order.sort_by_cached_key(|w| self.rank(w));
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quantity;

    fn cluster(cpu: &str, memory: &str) -> Cluster {
        let mut c = Cluster { name: "c".into(), ..Cluster::default() };
        c.capacity.insert("cpu".into(), Quantity::parse(cpu).unwrap());
        c.capacity.insert("memory".into(), Quantity::parse(memory).unwrap());
        c
    }

    fn workload(name: &str, priority: i32, cpu: &str, memory: &str) -> Workload {
        let mut w = Workload::named(name);
        w.priority = priority;
        w.resources.insert("cpu".into(), Quantity::parse(cpu).unwrap());
        w.resources.insert("memory".into(), Quantity::parse(memory).unwrap());
        w
    }

    fn names(order: &[&Workload]) -> Vec<String> {
        order.iter().map(|w| w.name.clone()).collect()
    }

    #[test]
    fn priority_first_then_the_dominant_share_then_the_name() {
        // 20 cpu and 40Gi in all: 1 cpu is 5%, 1Gi 2.5%.
        let fleet = FleetCapacity::of(&[cluster("8", "16Gi"), cluster("12", "24Gi")]);
        let ws = [
            workload("big-cpu", 0, "2", "1Gi"),    // 10%
            workload("big-memory", 0, "1", "6Gi"), // 15%
            workload("small", 0, "500m", "1Gi"),   // 2.5%
            workload("b-tie", 0, "1", "1Gi"),      // 5%
            workload("a-tie", 0, "1", "2Gi"),      // 5%
            workload("important", 10, "4", "8Gi"), // 20%
        ];
        let order = fleet.sorted(&ws);
        assert_eq!(names(&order), ["important", "small", "a-tie", "b-tie", "big-cpu", "big-memory"]);
    }

    #[test]
    fn a_resource_no_cluster_has_sorts_last_within_its_priority() {
        let fleet = FleetCapacity::of(&[cluster("8", "16Gi")]);
        let mut gpu = workload("gpu", 0, "100m", "100Mi");
        gpu.resources.insert("nvidia.com/gpu".into(), Quantity::from_units(1));
        let ws = [gpu, workload("huge", 0, "8", "16Gi"), workload("low", -1, "1m", "1Mi")];
        assert_eq!(names(&fleet.sorted(&ws)), ["huge", "gpu", "low"]);
    }
}
