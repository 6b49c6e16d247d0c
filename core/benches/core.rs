//! Criterion benchmarks of the hot paths, each against a baseline measured in the same run:
//!
//! * `ziggurat`: `ziggurat::fill_f32` vs `rand_distr::StandardNormal` drawn one at a time
//!   (`rng.sample::<f32, _>(StandardNormal)`) from the same PCG generator, one thread.
//! * `joint_group_sampling`: `select::search_joint` at n = 10, d = 4096, split over the machine's
//!   threads, vs a naive single-thread version (rand_distr normals, materialised ẑ, scalar
//!   scoring of Eq. 5–8).
//!
//! Run: `cargo bench -p d3hr-core --bench core`. The m = 1e5 per-class timings and the per-dim vs
//! joint comparison are in the `group_sampling_report` bench.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use d3hr_core::select::{self, Config, Lambdas, Loss, Targets};
use d3hr_core::ziggurat;
use rand::RngExt;
use rand_core::SeedableRng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;
use std::hint::black_box;

mod naive {
    //! The baseline: what a straightforward port of the paper's selection does.
    include!("common/naive.rs");
}

fn bench_ziggurat(c: &mut Criterion) {
    let mut g = c.benchmark_group("ziggurat");
    let n = 4096;
    g.throughput(Throughput::Elements(n as u64));
    let mut buf = vec![0.0f32; n];
    let mut rng = Pcg64::seed_from_u64(1);
    g.bench_function("d3hr_fill_f32", |b| {
        b.iter(|| {
            ziggurat::fill_f32(&mut rng, &mut buf);
            black_box(&buf);
        })
    });
    let mut rng = Pcg64::seed_from_u64(1);
    g.bench_function("rand_distr_StandardNormal_f32", |b| {
        b.iter(|| {
            for v in buf.iter_mut() {
                *v = rng.sample(StandardNormal);
            }
            black_box(&buf);
        })
    });
    g.finish();
}

fn bench_joint(c: &mut Criterion) {
    let (n, dims, m) = (10usize, 4096usize, 200u64);
    let p = naive::Problem::new(dims);
    let targets = Targets {
        mean: &p.mean,
        std: &p.std,
        skew: Some(&p.skew),
    };
    let cfg = Config::new(7, n, dims, Loss::Paper, Lambdas::PAPER).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()) as u64;
    let mut g = c.benchmark_group("joint_group_sampling");
    g.sample_size(10);
    g.throughput(Throughput::Elements(m));
    g.bench_function(
        BenchmarkId::new("d3hr_search_joint", format!("{threads}threads")),
        |b| {
            b.iter(|| {
                black_box(
                    select::threaded::search_joint(&cfg, &targets, m, threads as usize).unwrap(),
                )
            })
        },
    );
    g.bench_function(BenchmarkId::new("naive", "1thread"), |b| {
        b.iter(|| black_box(naive::search(&p, n, m, 7)))
    });
    g.finish();
}

criterion_group!(benches, bench_ziggurat, bench_joint);
criterion_main!(benches);
