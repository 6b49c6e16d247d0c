//! Group sampling: the fast scorer against a naive materialise-and-score reference, the argmin
//! checked by brute force, per-dimension vs joint, and thread-count independence.

use d3hr_core::Error;
use d3hr_core::select::{
    self, Best, Config, Lambdas, Loss, PerDimBest, Scratch, Targets, draw_candidate, split_range,
};
use proptest::prelude::*;

#[derive(Debug)]
struct Problem {
    mean: Vec<f32>,
    std: Vec<f32>,
    skew: Vec<f32>,
}

impl Problem {
    fn targets(&self) -> Targets<'_> {
        Targets {
            mean: &self.mean,
            std: &self.std,
            skew: Some(&self.skew),
        }
    }
}

fn problem(dims: usize) -> impl Strategy<Value = Problem> {
    (
        prop::collection::vec(-3.0f32..3.0, dims),
        prop::collection::vec(0.1f32..2.0, dims),
        prop::collection::vec(-1.0f32..1.0, dims),
    )
        .prop_map(|(mean, std, skew)| Problem { mean, std, skew })
}

/// ẑ = μ + σ·g for candidate k, in f64.
fn latents(cfg: &Config, p: &Problem, k: u64) -> Vec<Vec<f64>> {
    let (n, dims) = (cfg.n(), cfg.dims());
    let mut g = vec![0.0f32; n * dims];
    draw_candidate(cfg, k, &mut g).unwrap();
    g.chunks(dims)
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(d, &v)| f64::from(p.mean[d]) + f64::from(p.std[d]) * f64::from(v))
                .collect()
        })
        .collect()
}

/// Paper Eq. 6–8 for one dimension, computed from the latents as written in the paper.
fn naive_paper_dim(z: &[Vec<f64>], p: &Problem, d: usize, l: Lambdas) -> f64 {
    let n = z.len() as f64;
    let (mu, sigma, gamma) = (
        f64::from(p.mean[d]),
        f64::from(p.std[d]),
        f64::from(p.skew[d]),
    );
    let mean = z.iter().map(|r| r[d]).sum::<f64>() / n;
    let l_mu = (mean - mu).powi(2);
    let l_sigma = ((z.iter().map(|r| (r[d] - mu).powi(2)).sum::<f64>() / n).sqrt() - sigma).powi(2);
    let mut loss = l.mu * l_mu + l.sigma * l_sigma;
    if z.len() >= 3 {
        let s3 = z.iter().map(|r| ((r[d] - mu) / sigma).powi(3)).sum::<f64>();
        loss += l.gamma * (n / ((n - 1.0) * (n - 2.0)) * s3 - gamma).powi(2);
    }
    loss
}

/// The released code's `evaluate_distribution_batch` (generation/group_sampling.py), transcribed
/// on the latents: `torch.mean`/`torch.std` over the members (dim 1), `skewness_batch`
/// standardising each dimension by the members' mean and unbiased std and summing the cubes over
/// the dimensions (dim 2) with factor D/((D−1)(D−2)), then `torch.norm` over the members.
fn naive_released(z: &[Vec<f64>], p: &Problem, l: Lambdas) -> f64 {
    let n = z.len() as f64;
    let dims = z[0].len();
    let df = dims as f64;
    let (mut md, mut sd) = (0.0, 0.0);
    let mut col_mean = vec![0.0; dims];
    let mut col_std = vec![0.0; dims];
    for d in 0..dims {
        let mean = z.iter().map(|r| r[d]).sum::<f64>() / n;
        let std = (z.iter().map(|r| (r[d] - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        md += (mean - f64::from(p.mean[d])).powi(2);
        sd += (std - f64::from(p.std[d])).powi(2);
        col_mean[d] = mean;
        col_std[d] = std;
    }
    let mut sk = 0.0;
    for r in z {
        let s = df / ((df - 1.0) * (df - 2.0))
            * (0..dims)
                .map(|d| ((r[d] - col_mean[d]) / col_std[d]).powi(3))
                .sum::<f64>();
        sk += s * s;
    }
    l.mu * md.sqrt() + l.sigma * sd.sqrt() + l.gamma * sk.sqrt()
}

fn naive_loss(cfg: &Config, p: &Problem, k: u64, l: Lambdas) -> f64 {
    let z = latents(cfg, p, k);
    match cfg.loss() {
        Loss::Paper => (0..cfg.dims()).map(|d| naive_paper_dim(&z, p, d, l)).sum(),
        Loss::ReleasedCode => naive_released(&z, p, l),
    }
}

fn case() -> impl Strategy<Value = (usize, usize, u64, u64, bool, Problem)> {
    (1usize..7, 3usize..12, 1u64..40, any::<u64>(), any::<bool>()).prop_flat_map(
        |(n, dims, m, seed, released)| {
            (
                Just(n),
                Just(dims),
                Just(m),
                Just(seed),
                Just(released),
                problem(dims),
            )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The selected subset's loss is the minimum over all m candidates, by brute force with
    /// the naive reference, and the fast loss equals the naive one.
    #[test]
    fn joint_selects_brute_force_minimum((n, dims, m, seed, released, p) in case()) {
        let (loss, lambdas) = if released && n >= 2 {
            (Loss::ReleasedCode, Lambdas::RELEASED_CODE)
        } else {
            (Loss::Paper, Lambdas::PAPER)
        };
        let cfg = Config::new(seed, n, dims, loss, lambdas).unwrap();
        let mut scratch = Scratch::new(&cfg);
        let best = select::search_joint(&cfg, &p.targets(), 0..m, &mut scratch).unwrap();
        let naive: Vec<f64> = (0..m).map(|k| naive_loss(&cfg, &p, k, lambdas)).collect();
        let min = naive.iter().cloned().fold(f64::INFINITY, f64::min);
        let chosen = naive[best.index as usize];
        prop_assert!(chosen <= min * (1.0 + 1e-5) + 1e-9, "chose {} ({}) but min is {}", best.index, chosen, min);
        prop_assert!((best.loss - chosen).abs() <= 1e-4 * (1.0 + chosen), "fast {} vs naive {}", best.loss, chosen);
        let again = select::score_candidate(&cfg, &p.targets(), best.index, &mut scratch).unwrap();
        prop_assert!((again - best.loss).abs() <= 1e-9 * (1.0 + again));
    }

    /// Per-dimension selection picks, for each dimension, the brute-force best column, and its
    /// total is never above the joint winner's loss on the same candidates.
    #[test]
    fn per_dim_is_columnwise_argmin_and_beats_joint((n, dims, m, seed, _r, p) in case()) {
        let cfg = Config::new(seed, n, dims, Loss::Paper, Lambdas::PAPER).unwrap();
        let mut scratch = Scratch::new(&cfg);
        let (mut idx, mut loss, mut g) = (vec![0; dims], vec![0.0; dims], vec![0.0; n * dims]);
        let mut best = PerDimBest::new(&cfg, &mut idx, &mut loss, &mut g).unwrap();
        select::search_per_dim(&cfg, &p.targets(), 0..m, &mut scratch, &mut best).unwrap();
        let joint = select::search_joint(&cfg, &p.targets(), 0..m, &mut scratch).unwrap();
        prop_assert!(best.total_loss() <= joint.loss * (1.0 + 1e-9) + 1e-12);
        let zs: Vec<Vec<Vec<f64>>> = (0..m).map(|k| latents(&cfg, &p, k)).collect();
        for d in 0..dims {
            let per: Vec<f64> = zs.iter().map(|z| naive_paper_dim(z, &p, d, Lambdas::PAPER)).collect();
            let min = per.iter().cloned().fold(f64::INFINITY, f64::min);
            let k = best.index[d] as usize;
            prop_assert!(per[k] <= min * (1.0 + 1e-5) + 1e-9);
            let mut cand = vec![0.0f32; n * dims];
            draw_candidate(&cfg, k as u64, &mut cand).unwrap();
            for i in 0..n {
                prop_assert_eq!(best.g[i * dims + d], cand[i * dims + d]);
            }
        }
    }

    #[test]
    fn split_range_covers_exactly(m in 0u64..10_000, parts in 1u64..17) {
        let mut next = 0;
        for part in 0..parts {
            let r = split_range(m, parts, part);
            prop_assert_eq!(r.start, next);
            next = r.end;
        }
        prop_assert_eq!(next, m);
    }
}

/// Same seed → same answer for 1 and N threads (joint and per-dimension).
#[test]
fn same_result_for_any_thread_count() {
    let (n, dims, m) = (10, 256, 600u64);
    let p = Problem {
        mean: (0..dims).map(|d| (d as f32 * 0.1).sin()).collect(),
        std: (0..dims).map(|d| 0.5 + (d % 7) as f32 * 0.1).collect(),
        skew: (0..dims).map(|d| ((d % 5) as f32 - 2.0) * 0.1).collect(),
    };
    let cfg = Config::new(42, n, dims, Loss::Paper, Lambdas::PAPER).unwrap();
    let joint = |threads: usize| -> Best {
        select::threaded::search_joint(&cfg, &p.targets(), m, threads).unwrap()
    };
    let one = joint(1);
    assert!(one.is_some());
    let plain = select::search_joint(&cfg, &p.targets(), 0..m, &mut Scratch::new(&cfg)).unwrap();
    assert_eq!(one, plain, "threaded vs one plain search");
    for t in [2, 3, 7] {
        assert_eq!(joint(t), one, "{t} threads");
    }

    let per_dim = |threads: usize| -> (Vec<u64>, Vec<f32>) {
        let r = select::threaded::search_per_dim(&cfg, &p.targets(), m, threads).unwrap();
        (r.index, r.g)
    };
    let one = per_dim(1);
    for t in [2, 5] {
        assert_eq!(per_dim(t), one, "{t} threads");
    }
}

#[test]
fn gamma_term_dropped_below_three() {
    assert!(
        Config::new(0, 2, 8, Loss::Paper, Lambdas::PAPER)
            .unwrap()
            .gamma_dropped()
    );
    assert!(
        !Config::new(0, 3, 8, Loss::Paper, Lambdas::PAPER)
            .unwrap()
            .gamma_dropped()
    );
    let no_gamma = Lambdas {
        gamma: 0.0,
        ..Lambdas::PAPER
    };
    assert!(
        !Config::new(0, 1, 8, Loss::Paper, no_gamma)
            .unwrap()
            .gamma_dropped()
    );
    assert_eq!(
        Config::new(0, 1, 8, Loss::ReleasedCode, Lambdas::RELEASED_CODE),
        Err(Error::SubsetTooSmall { n: 1, need: 2 })
    );
}

#[test]
fn invalid_input_is_an_error() {
    assert!(Config::new(0, 0, 8, Loss::Paper, Lambdas::PAPER).is_err());
    assert!(Config::new(0, 3, 0, Loss::Paper, Lambdas::PAPER).is_err());
    let bad = Lambdas {
        mu: f64::NAN,
        ..Lambdas::PAPER
    };
    assert_eq!(
        Config::new(0, 3, 8, Loss::Paper, bad),
        Err(Error::InvalidLambda)
    );
    let cfg = Config::new(0, 3, 2, Loss::Paper, Lambdas::PAPER).unwrap();
    let mut sc = Scratch::new(&cfg);
    let t = Targets {
        mean: &[0.0, f32::NAN],
        std: &[1.0, 1.0],
        skew: None,
    };
    assert_eq!(
        select::search_joint(&cfg, &t, 0..4, &mut sc),
        Err(Error::InvalidTarget { dim: 1 })
    );
    let t = Targets {
        mean: &[0.0],
        std: &[1.0],
        skew: None,
    };
    assert!(matches!(
        select::search_joint(&cfg, &t, 0..4, &mut sc),
        Err(Error::BufferLength { .. })
    ));
    let t = Targets {
        mean: &[0.0, 0.0],
        std: &[1.0, 1.0],
        skew: None,
    };
    let mut small = Scratch::with_storage(vec![0.0f32; 3]);
    assert!(matches!(
        select::search_joint(&cfg, &t, 0..4, &mut small),
        Err(Error::BufferLength { .. })
    ));
    let released = Config::new(0, 3, 4, Loss::ReleasedCode, Lambdas::RELEASED_CODE).unwrap();
    let (mut a, mut b, mut c) = (vec![0; 4], vec![0.0; 4], vec![0.0; 12]);
    let mut best = PerDimBest::new(&released, &mut a, &mut b, &mut c).unwrap();
    let t4 = Targets {
        mean: &[0.0; 4],
        std: &[1.0; 4],
        skew: None,
    };
    let mut sc = Scratch::new(&released);
    assert_eq!(
        select::search_per_dim(&released, &t4, 0..3, &mut sc, &mut best),
        Err(Error::PerDimNeedsSeparableLoss)
    );
    assert_eq!(
        select::search_joint(&cfg, &t, 5..5, &mut Scratch::new(&cfg)),
        Ok(Best::NONE)
    );
}

#[test]
fn latents_are_mean_plus_std_times_normals() {
    let t = Targets {
        mean: &[1.0, -2.0],
        std: &[0.5, 3.0],
        skew: None,
    };
    let mut out = [0.0f32; 4];
    select::to_latents(&t, &[2.0, 1.0, -1.0, 0.0], &mut out).unwrap();
    assert_eq!(out, [2.0, 1.0, 0.5, -2.0]);
}
