//! Full-plan benchmarks: `tmc_core::solve` (validation included) on generated inputs.
//!
//! Cases (see [`tmc_benches::CASES`]): 1k workloads x 100 clusters at low and high contention,
//! and 10k workloads x 1k clusters at high contention. Inputs are generated once, outside the
//! timed loop; each iteration is one `solve(&input)`, including dropping the returned plan.
//! Throughput is reported in placements (workloads) per second.
//!
//! Run with `cargo bench -p tmc-benches --bench solve`.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tmc_benches::CASES;
use tmc_core::solve;

fn bench_solve(c: &mut Criterion) {
    for case in CASES {
        let input = case.input();
        let mut group = c.benchmark_group("solve");
        group.throughput(Throughput::Elements(case.workloads as u64));
        group.sampling_mode(SamplingMode::Flat);
        if case.workloads * case.clusters >= 1_000_000 {
            // Seconds per solve: the minimum of 10 samples, one solve each, after one warm-up solve.
            group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(60));
        } else {
            group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
        }
        group.bench_function(case.id(), |b| b.iter(|| solve(black_box(&input))));
        group.finish();
    }
}

criterion_group!(benches, bench_solve);
criterion_main!(benches);
