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

    /// The generated input of this case (deterministic, seed [`SEED`]).
    pub fn input(&self) -> PlacementInput {
        generate(&GenerateConfig {
            clusters: self.clusters,
            workloads: self.workloads,
            seed: SEED,
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
