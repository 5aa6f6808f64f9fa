//! Incremental placer on a generated fleet: changes `n` workloads one at a time (replicas + 1)
//! and reports how many took each path (incremental, partial, full) and the median time of each.
//!
//! `cargo run --release -p tmc-benches --example placer_churn -- [workloads] [clusters] [low|high] [n]`

use std::time::{Duration, Instant};

use tmc_benches::Case;
use tmc_core::{Placer, Update};
use tmc_sim::generate::Contention;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (case, n) =
        Case::from_args(&args, Case { workloads: 10_000, clusters: 1_000, contention: Contention::Low }, 20);
    let input = case.input();
    let t = Instant::now();
    let Ok(mut placer) = Placer::new(input) else { panic!("generated inputs are valid") };
    println!("case {}: Placer::new {:.1} ms", case.id(), t.elapsed().as_secs_f64() * 1e3);
    let workloads = placer.input().workloads;
    let (mut fast, mut partial, mut full) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let mut w = workloads[(i * 7919) % workloads.len()].clone();
        w.replicas += 1;
        let t = Instant::now();
        let update = placer.upsert_workload(w);
        let took = t.elapsed();
        match update {
            Ok(Update::Incremental) => fast.push(took),
            Ok(Update::Partial) => partial.push(took),
            Ok(Update::Full) => full.push(took),
            Err(e) => panic!("{e}"),
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!("incremental: {} changes, median {:.3} ms", fast.len(), median(&mut fast));
    println!("partial:     {} changes, median {:.3} ms", partial.len(), median(&mut partial));
    println!("full:        {} changes, median {:.3} ms", full.len(), median(&mut full));
}
