//! Incremental placer: one workload changed in a fleet of 1k clusters with 10k workloads placed.
//!
//! The input is [`tmc_benches::settled_input`] (every workload fully placed, so the placer's fast
//! path applies). Each iteration scales one workload up or down by one replica (alternating, so
//! the state does not drift) through `Placer::upsert_workload`; the placer is built once, outside
//! the timed loop. For comparison, `full` re-plans the same state with `solve`.
//!
//! `partial_10k_x_1k_low` does the same in a generated, contended fleet
//! (`tmc_sim::generate`, 10k workloads, 1k clusters, low contention, seed 2026), where hundreds
//! of workloads are pending: a change there places the changed workload and every pending one
//! again (`Update::Partial`), or re-plans in full.
//!
//! Run with `cargo bench -p tmc-benches --bench incremental`.

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use tmc_benches::Case;
use tmc_core::{Placer, Update, solve};
use tmc_sim::generate::Contention;

fn bench_incremental(c: &mut Criterion) {
    let input = tmc_benches::settled_input(10_000, 1_000);
    let Ok(mut placer) = Placer::new(input) else { panic!("the bench input is valid") };
    let mut group = c.benchmark_group("incremental");
    group.sample_size(50).measurement_time(Duration::from_secs(10));
    scale_back_and_forth(&mut group, "one_workload_10k_placed_1k_clusters", &mut placer, |u| u == Update::Incremental);
    let full = placer.input();
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("full_replan_10k_1k", |b| b.iter(|| solve(black_box(&full))));
    group.finish();

    let contended = Case { workloads: 10_000, clusters: 1_000, contention: Contention::Low }.input();
    let Ok(mut placer) = Placer::new(contended) else { panic!("generated inputs are valid") };
    let mut group = c.benchmark_group("incremental");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    scale_back_and_forth(&mut group, "partial_10k_x_1k_low", &mut placer, |u| {
        matches!(u, Update::Partial | Update::Incremental)
    });
    group.finish();
}

/// Benchmarks `Placer::upsert_workload` scaling workload 4,321 up and down by one replica in
/// turn (so the state does not drift), checking each update with `expected`.
fn scale_back_and_forth(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    placer: &mut Placer,
    expected: fn(Update) -> bool,
) {
    let base = placer.input().workloads[4_321].clone();
    let mut up = false;
    group.bench_function(name, |b| {
        b.iter(|| {
            up = !up;
            let mut w = base.clone();
            w.replicas += u32::from(up);
            let update = placer.upsert_workload(black_box(w));
            assert!(update.as_ref().is_ok_and(|&u| expected(u)), "{update:?}");
        })
    });
}

criterion_group!(benches, bench_incremental);
criterion_main!(benches);
