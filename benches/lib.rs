//! Shared helpers for the criterion benches and the profiling example: the benchmark cases and
//! the generated inputs they run on.

use tmc_core::PlacementInput;
use tmc_sim::generate::{Contention, GenerateConfig, generate};

/// The seed every benchmark input is generated with, so runs compare like with like.
pub const SEED: u64 = 2026;

/// One benchmark case: a fleet size, a batch size and a contention level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// Number of clusters.
    pub clusters: usize,
    /// Number of workloads (placements per solve).
    pub workloads: usize,
    /// Demand relative to free capacity.
    pub contention: Contention,
}

impl Case {
    /// A short id such as `1k_x_100/high`.
    pub fn id(&self) -> String {
        let level = match self.contention {
            Contention::Low => "low",
            Contention::High => "high",
        };
        format!("{}_x_{}/{level}", short(self.workloads), short(self.clusters))
    }

    /// The generated input of this case (deterministic, seed [`SEED`], or the `SEED`
    /// environment variable where set: checking that a change holds beyond one input).
    pub fn input(&self) -> PlacementInput {
        let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
        generate(&GenerateConfig {
            clusters: self.clusters,
            workloads: self.workloads,
            seed,
            contention: self.contention,
        })
    }
}

/// The cases of `benches/solve.rs`: 1k workloads x 100 clusters (low and high contention) and
/// 10k workloads x 1k clusters (high contention).
pub const CASES: [Case; 3] = [
    Case { clusters: 100, workloads: 1_000, contention: Contention::Low },
    Case { clusters: 100, workloads: 1_000, contention: Contention::High },
    Case { clusters: 1_000, workloads: 10_000, contention: Contention::High },
];

fn short(n: usize) -> String {
    if n >= 1_000 && n.is_multiple_of(1_000) { format!("{}k", n / 1_000) } else { n.to_string() }
}

/// A fleet where every workload is fully placed (so the incremental placer's fast path applies):
/// `clusters` clusters with 64 cpu and 256 GiB each, `workloads` Divided workloads of 1 to 3
/// replicas requesting 100m to 400m cpu and 256 MiB per replica, priorities 0 to 3.
pub fn settled_input(workloads: usize, clusters: usize) -> PlacementInput {
    use tmc_core::{Cluster, Quantity, Workload};
    let clusters = (0..clusters)
        .map(|i| {
            let mut c = Cluster { name: format!("cluster-{i:05}"), ..Cluster::default() };
            c.labels.insert("region".into(), format!("region-{}", i % 12));
            c.capacity.insert("cpu".into(), Quantity::from_units(64));
            c.capacity.insert("memory".into(), Quantity::from_units(256 << 30));
            c
        })
        .collect();
    let workloads = (0..workloads)
        .map(|i| {
            let mut w = Workload::named(&format!("app-{i:06}"));
            w.replicas = 1 + (i % 3) as u32;
            w.priority = (i % 4) as i32;
            w.resources.insert("cpu".into(), Quantity::from_millis(100 * (1 + (i % 4) as u64)));
            w.resources.insert("memory".into(), Quantity::from_units(256 << 20));
            w
        })
        .collect();
    PlacementInput { clusters, workloads, previous: Vec::new(), now: None }
}

impl Case {
    /// The case named by example arguments `[workloads] [clusters] [low|high]` (`default` fills
    /// what is missing or unparsable), and the number at position 3 (`extra`, or its default).
    pub fn from_args(args: &[String], default: Case, extra: usize) -> (Case, usize) {
        let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
        let contention = match args.get(2).map(String::as_str) {
            Some("low") => Contention::Low,
            Some("high") => Contention::High,
            _ => default.contention,
        };
        let case = Case { workloads: arg(0, default.workloads), clusters: arg(1, default.clusters), contention };
        (case, arg(3, extra))
    }
}
