//! One-shot measurements for the README: group sampling at ImageNet DiT's latent size
//! (n = 10, d = 4·32·32 = 4096), timed with `Instant` over the whole run.
//!
//! * joint (the paper) at m = 1e3, 1e4, 1e5, split over the machine's threads: seconds per class;
//! * per-dim (ours) at m = 1e2, 1e3, same threads: loss relative to joint at m = 1e5;
//! * random (Base-RS, m = 1);
//! * the naive single-thread baseline at m = 1e3, for the speed-up;
//! * interleaved speed-ups: seven rounds that each time ours and then the baseline back to back
//!   (Ziggurat `fill_f32` vs `rand_distr` normals from the same `Pcg64`, one thread; joint search
//!   on all threads vs the naive single-thread search, per candidate), reported as the median,
//!   lowest and highest round ratio. On a VM whose speed drifts between runs this is steadier than
//!   timing the two sides minutes apart. Each Ziggurat round also times the generator alone (its
//!   `u64`s written to a buffer, two per f32 value pair): the baseline over that time is the
//!   ceiling of any fill that draws one word per two values from this generator.
//!
//! Run: `cargo bench -p d3hr-core --bench group_sampling_report`

use d3hr_core::select::{self, Best, Config, Lambdas, Loss, Scratch, Targets};
use d3hr_core::ziggurat;
use rand::RngExt;
use rand_core::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;
use std::hint::black_box;
use std::time::Instant;

mod naive {
    include!("common/naive.rs");
}

fn threads() -> u64 {
    std::thread::available_parallelism().map_or(1, |t| t.get()) as u64
}

fn joint(cfg: &Config, t: &Targets<'_>, m: u64) -> Best {
    select::threaded::search_joint(cfg, t, m, threads() as usize).unwrap()
}

fn per_dim(cfg: &Config, t: &Targets<'_>, m: u64) -> f64 {
    select::threaded::search_per_dim(cfg, t, m, threads() as usize)
        .unwrap()
        .total_loss()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes every bench target
    }
    let (n, dims) = (10usize, 4096usize);
    let p = naive::Problem::new(dims);
    let t = Targets {
        mean: &p.mean,
        std: &p.std,
        skew: Some(&p.skew),
    };
    let cfg = Config::new(7, n, dims, Loss::Paper, Lambdas::PAPER).unwrap();
    println!(
        "group sampling, n = {n}, d = {dims}, paper loss (λ = 1, 1, 0.5), {} threads",
        threads()
    );
    println!("| mode | m | seconds | loss |");
    println!("|---|---:|---:|---:|");

    let mut sc = Scratch::new(&cfg);
    let random = select::score_candidate(&cfg, &t, 0, &mut sc).unwrap();
    println!("| random (Base-RS) | 1 | - | {random:.3} |");
    let mut joint_secs = Vec::new();
    let mut joint_1e5 = f64::NAN;
    for m in [1_000u64, 10_000, 100_000] {
        let t0 = Instant::now();
        let b = joint(&cfg, &t, m);
        let s = t0.elapsed().as_secs_f64();
        println!("| joint | {m} | {s:.3} | {:.3} |", b.loss);
        joint_secs.push(s);
        joint_1e5 = b.loss;
    }
    for m in [100u64, 1_000] {
        let t0 = Instant::now();
        let l = per_dim(&cfg, &t, m);
        let s = t0.elapsed().as_secs_f64();
        println!(
            "| per-dim | {m} | {s:.3} | {l:.3} ({:.2} % of joint at m = 1e5) |",
            100.0 * l / joint_1e5
        );
    }
    let m_naive = 1_000u64;
    let t0 = Instant::now();
    let (_, nl) = naive::search(&p, n, m_naive, 7);
    let s = t0.elapsed().as_secs_f64();
    println!("| naive joint, 1 thread | {m_naive} | {s:.3} | {nl:.3} |");
    println!();
    // Per candidate: joint at m = 1e4 (long enough to time well) against the naive run.
    let per_joint = joint_secs[1] / 10_000.0;
    let per_naive = s / m_naive as f64;
    println!(
        "joint seconds per class at m = 1e5: {:.2} (paper: 0.22 s on an A100); \
         per candidate: joint {:.1} µs, naive {:.1} µs, speed-up {:.1}x",
        joint_secs[2],
        per_joint * 1e6,
        per_naive * 1e6,
        per_naive / per_joint
    );
    println!();
    interleaved(&cfg, &t, &p);
}

/// Seconds of `f`, run once.
fn time(f: impl FnOnce()) -> f64 {
    let t0 = Instant::now();
    f();
    t0.elapsed().as_secs_f64()
}

/// Median, lowest and highest of the round ratios.
fn summary(mut r: Vec<f64>) -> (f64, f64, f64) {
    r.sort_by(f64::total_cmp);
    (r[r.len() / 2], r[0], r[r.len() - 1])
}

fn interleaved(cfg: &Config, t: &Targets<'_>, p: &naive::Problem) {
    const ROUNDS: usize = 7;
    let mut buf = vec![0.0f32; 4096];
    let reps = 10_000;
    let mut words = vec![0u64; buf.len() / 2];
    let (mut a, mut b, mut c) = (
        Pcg64::seed_from_u64(1),
        Pcg64::seed_from_u64(1),
        Pcg64::seed_from_u64(1),
    );
    let (mut zig, mut ceiling) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let ours = time(|| {
            for _ in 0..reps {
                ziggurat::fill_f32(&mut a, &mut buf);
                black_box(&buf);
            }
        });
        let base = time(|| {
            for _ in 0..reps {
                for v in buf.iter_mut() {
                    *v = b.sample(StandardNormal);
                }
                black_box(&buf);
            }
        });
        let gen_only = time(|| {
            for _ in 0..reps {
                for w in words.iter_mut() {
                    *w = c.next_u64();
                }
                black_box(&words);
            }
        });
        let per = |s: f64| s / (reps * buf.len()) as f64 * 1e9;
        println!(
            "ziggurat round: fill_f32 {:.2} ns/value, rand_distr {:.2} ns/value, {:.2}x; \
             Pcg64 words alone {:.2} ns/value (ceiling {:.2}x)",
            per(ours),
            per(base),
            base / ours,
            per(gen_only),
            base / gen_only
        );
        zig.push(base / ours);
        ceiling.push(base / gen_only);
    }
    let (m_ours, m_naive) = (4_000u64, 200u64);
    let mut joint_r = Vec::new();
    for round in 0..ROUNDS as u64 {
        let ours = time(|| {
            black_box(joint(cfg, t, m_ours));
        }) / m_ours as f64;
        let base = time(|| {
            black_box(naive::search(p, cfg.n(), m_naive, 7 + round));
        }) / m_naive as f64;
        println!(
            "joint round: ours {:.1} µs/candidate ({} threads), naive {:.1} µs/candidate, {:.2}x",
            ours * 1e6,
            threads(),
            base * 1e6,
            base / ours
        );
        joint_r.push(base / ours);
    }
    let (zm, zlo, zhi) = summary(zig);
    let (cm, clo, chi) = summary(ceiling);
    let (jm, jlo, jhi) = summary(joint_r);
    println!(
        "interleaved speed-ups over {ROUNDS} rounds: ziggurat fill_f32 vs rand_distr median {zm:.2}x \
         (range {zlo:.2}-{zhi:.2}), generator-only ceiling median {cm:.2}x (range {clo:.2}-{chi:.2}); \
         joint vs naive median {jm:.2}x (range {jlo:.2}-{jhi:.2})"
    );
}
