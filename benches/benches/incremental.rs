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

use criterion::{Criterion, criterion_group, criterion_main};
use tmc_benches::Case;
use tmc_core::{Placer, Update, solve};
use tmc_sim::generate::Contention;

fn bench_incremental(c: &mut Criterion) {
    let input = tmc_benches::settled_input(10_000, 1_000);
    let Ok(mut placer) = Placer::new(input) else { panic!("the bench input is valid") };
    let base = placer.input().workloads[4_321].clone();
    let mut group = c.benchmark_group("incremental");
    group.sample_size(50).measurement_time(Duration::from_secs(10));
    let mut up = false;
    group.bench_function("one_workload_10k_placed_1k_clusters", |b| {
        b.iter(|| {
            up = !up;
            let mut w = base.clone();
            w.replicas += u32::from(up);
            let update = placer.upsert_workload(black_box(w));
            assert!(matches!(update, Ok(Update::Incremental)), "{update:?}");
        })
    });
    let full = placer.input();
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("full_replan_10k_1k", |b| b.iter(|| solve(black_box(&full))));
    group.finish();

    let contended = Case { workloads: 10_000, clusters: 1_000, contention: Contention::Low }.input();
    let Ok(mut placer) = Placer::new(contended) else { panic!("generated inputs are valid") };
    let base = placer.input().workloads[4_321].clone();
    let mut group = c.benchmark_group("incremental");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    let mut up = false;
    group.bench_function("partial_10k_x_1k_low", |b| {
        b.iter(|| {
            up = !up;
            let mut w = base.clone();
            w.replicas += u32::from(up);
            let update = placer.upsert_workload(black_box(w));
            assert!(matches!(update, Ok(Update::Partial | Update::Incremental)), "{update:?}");
        })
    });
    group.finish();
}

criterion_group!(benches, bench_incremental);
criterion_main!(benches);
