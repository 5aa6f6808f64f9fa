//! Rough phase timing of one solve, for profiling: generation, validation, and the solve
//! itself, plus a summary of the plan.
//!
//! `cargo run --release -p tmc-benches --example phases -- [workloads] [clusters] [low|high]`
//! (set `VERBOSE=1` to print one explanation per archetype, `REPEAT=n` to solve n times,
//! `SKIP_DROP=1` not to clone the plan for timing its drop, which doubles peak memory).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use tmc_benches::Case;
use tmc_core::{Phase, Plan, solve_validated, validate};
use tmc_sim::generate::{Contention, GPU, demand_ratio};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (case, _) =
        Case::from_args(&args, Case { workloads: 10_000, clusters: 1_000, contention: Contention::High }, 0);
    let verbose = std::env::var_os("VERBOSE").is_some();

    let t = Instant::now();
    let input = case.input();
    let generate = t.elapsed();
    let t = Instant::now();
    let valid = validate(&input).is_ok();
    let validation = t.elapsed();
    // `REPEAT=n` solves n times in this process: the first solve pays for first-touch page
    // faults on fresh memory, later ones reuse what the allocator kept (like a warm benchmark loop).
    let repeat: usize = std::env::var("REPEAT").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let mut runs = Vec::with_capacity(repeat);
    let mut plan = Plan::default();
    for _ in 0..repeat {
        drop(plan);
        let t = Instant::now();
        plan = solve_validated(&input);
        runs.push(t.elapsed());
    }
    let solving = *runs.last().unwrap_or(&Duration::ZERO);
    // `SKIP_DROP=1` skips timing the drop of a clone (which doubles peak memory).
    let t = Instant::now();
    if std::env::var_os("SKIP_DROP").is_none() {
        drop(plan.clone());
    }
    let drop_time = t.elapsed();

    println!("objective {:.6e} bound {:.6e} gap {:.4}%", plan.objective, plan.bound, plan.gap * 100.0);
    let count = |phase| plan.placements.iter().filter(|p| p.phase == phase).count();
    let rejections: usize = plan.placements.iter().flat_map(|p| &p.unavailable).map(|c| c.clusters as usize).sum();
    let ratio = |r| demand_ratio(&input, r).map_or("n/a".to_string(), |x| format!("{x:.2}"));
    let pairs: usize = input.workloads.iter().map(|w| w.cluster_affinities.len().max(1) * input.clusters.len()).sum();
    println!("case {} (valid: {valid}); {pairs} (workload, affinity group, cluster) filter checks", case.id());
    println!("demand/free: cpu {} memory {} gpu {}", ratio("cpu"), ratio("memory"), ratio(GPU));
    println!("generate   {:>10.3} ms", generate.as_secs_f64() * 1e3);
    println!("validate   {:>10.3} ms", validation.as_secs_f64() * 1e3);
    for (i, run) in runs.iter().enumerate() {
        println!("solve #{:<3} {:>10.3} ms (solve_validated)", i + 1, run.as_secs_f64() * 1e3);
    }
    println!("plan drop  {:>10.3} ms (of a clone)", drop_time.as_secs_f64() * 1e3);
    println!(
        "phases: {} scheduled, {} partially, {} unschedulable; {rejections} (cluster, reason) pairs counted in `unavailable`",
        count(Phase::Scheduled),
        count(Phase::PartiallyScheduled),
        count(Phase::Unschedulable)
    );
    println!("placements/s (last solve): {:.0}", case.workloads as f64 / solving.as_secs_f64());
    // A fingerprint of the placements, to check that a speed-up leaves every plan bit for bit
    // the same (SipHash with fixed keys: stable across runs of one toolchain).
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&format!("{:?}", plan.placements), &mut hasher);
    println!("placements digest {:016x}", std::hash::Hasher::finish(&hasher));
    println!("certificate exactly: objective {:?} bound {:?} gap {:?}", plan.objective, plan.bound, plan.gap);

    // Outcome per archetype (the name prefix), with one message of a workload not fully placed.
    let mut by_kind: BTreeMap<&str, ([usize; 3], Option<&str>)> = BTreeMap::new();
    for p in &plan.placements {
        let name = p.workload.0.split('/').nth(1).unwrap_or_default();
        let kind = name.rsplit_once('-').map_or(name, |(k, _)| k);
        let e = by_kind.entry(kind).or_default();
        e.0[p.phase as usize] += 1;
        if p.phase != Phase::Scheduled && e.1.is_none() {
            e.1 = Some(&p.message);
        }
    }
    for (kind, (n, example)) in by_kind {
        println!("  {kind:<11} scheduled {:>5} partial {:>5} unschedulable {:>5}", n[0], n[1], n[2]);
        if let Some(m) = example.filter(|_| verbose) {
            println!("      e.g. {m}");
        }
    }
}
