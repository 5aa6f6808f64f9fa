//! Fast solver against exact mode on generated inputs: objectives, the fast plan's certified
//! bound, and the time of each.
//!
//! `cargo run --release -p tmc-benches --example exact_vs_fast -- [workloads] [clusters] [low|high] [max-variables]`
//! (`--features highs` and `SOLVER=highs` to solve with HiGHS).

use std::time::Instant;

use tmc_benches::Case;
use tmc_core::{ExactOptions, solve_exact, solve_validated};
use tmc_sim::generate::Contention;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (case, max_variables) =
        Case::from_args(&args, Case { workloads: 1_000, clusters: 100, contention: Contention::High }, 1_000_000);
    let input = case.input();
    let t = Instant::now();
    let fast = solve_validated(&input);
    let fast_time = t.elapsed();
    println!(
        "case {}: fast objective {} bound {:.1} gap {:.3}% in {:.3} ms",
        case.id(),
        fast.objective,
        fast.bound,
        fast.gap * 100.0,
        fast_time.as_secs_f64() * 1e3
    );
    #[allow(unused_mut)]
    let mut options = ExactOptions { max_variables, ..ExactOptions::default() };
    // Built with `--features highs`, `SOLVER=highs` solves with HiGHS instead of microlp.
    #[cfg(feature = "highs")]
    if std::env::var("SOLVER").is_ok_and(|s| s == "highs") {
        options.solver = tmc_core::ExactSolver::Highs;
    }
    let t = Instant::now();
    match solve_exact(&input, &options) {
        Ok(exact) => {
            let exact_time = t.elapsed();
            if std::env::var_os("VERBOSE").is_some() {
                for (f, e) in fast.placements.iter().zip(&exact.placements) {
                    if f.decisions != e.decisions {
                        let w = input.workloads.iter().find(|w| w.key() == f.workload);
                        let show = |p: &tmc_core::Placement| {
                            p.decisions
                                .iter()
                                .map(|d| format!("{}:{}", d.cluster, d.replicas))
                                .collect::<Vec<_>>()
                                .join(",")
                        };
                        println!(
                            "{} p{} {:?} {:?} r{}: fast {} [{}] exact {} [{}]",
                            f.workload,
                            w.map_or(0, |w| w.priority),
                            f.replica_scheduling_type,
                            w.map(|w| w.replica_scheduling.division),
                            f.requested,
                            f.placed,
                            show(f),
                            e.placed,
                            show(e)
                        );
                    }
                }
            }
            println!(
                "exact objective {} in {:.3} ms: fast reaches {:.3}% of the optimum, {:.0}x faster",
                exact.objective,
                exact_time.as_secs_f64() * 1e3,
                100.0 * fast.objective / exact.objective.max(f64::MIN_POSITIVE),
                exact_time.as_secs_f64() / fast_time.as_secs_f64().max(1e-9)
            );
        }
        Err(e) => println!("exact: {e} (after {:.3} s)", t.elapsed().as_secs_f64()),
    }
}
