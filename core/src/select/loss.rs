//! The two losses that score a candidate: the paper's (Eq. 5–8, from per-dimension power sums)
//! and the released code's (L2 norms and a cross-dimension skewness per member), and the public
//! scorers built on them.

use super::{Config, Loss, Scratch, Sums, Targets, draw_candidate};
use crate::Error;

/// The constants of the paper's loss for one configuration (Eq. 5–8), with `λγ = 0` when Lγ is
/// dropped (n < 3).
pub(super) struct PaperTerms {
    mu: f64,
    sigma: f64,
    gamma: f64,
    /// `n / ((n − 1)(n − 2))`, the adjusted-skewness factor of Eq. 8 (0 when Lγ is dropped).
    skew_factor: f64,
    inv_n: f64,
}

impl PaperTerms {
    pub(super) fn new(cfg: &Config) -> PaperTerms {
        let n = cfg.n as f64;
        let (gamma, skew_factor) = if cfg.lambdas.gamma > 0.0 && !cfg.gamma_dropped {
            (cfg.lambdas.gamma, n / ((n - 1.0) * (n - 2.0)))
        } else {
            (0.0, 0.0)
        };
        PaperTerms {
            mu: cfg.lambdas.mu,
            sigma: cfg.lambdas.sigma,
            gamma,
            skew_factor,
            inv_n: 1.0 / n,
        }
    }

    /// `λμ·Lμ + λσ·Lσ + λγ·Lγ` of one dimension with target σ and γ, from the power sums
    /// `s1 = Σ g`, `s2 = Σ g²`, `s3 = Σ g³` of the candidate's normals (`ẑ − μ = σ g`):
    /// Lμ = σ²·mean(g)², Lσ = σ²·(rms(g) − 1)², Lγ = (n/((n−1)(n−2))·Σ g³ − γ)².
    #[inline(always)]
    fn dim(&self, sigma: f32, gamma: f32, s1: f32, s2: f32, s3: f32) -> f64 {
        let sigma = f64::from(sigma);
        let mean_g = f64::from(s1) * self.inv_n;
        let rms_g = libm::sqrt(f64::from(s2) * self.inv_n) - 1.0;
        let skew = self.skew_factor * f64::from(s3) - f64::from(gamma);
        sigma * sigma * (self.mu * mean_g * mean_g + self.sigma * rms_g * rms_g)
            + self.gamma * skew * skew
    }
}

/// The paper's loss of one dimension `d` (used by the per-dimension search).
#[inline]
pub(super) fn paper_dim_loss(
    terms: &PaperTerms,
    t: &Targets<'_>,
    d: usize,
    s1: f32,
    s2: f32,
    s3: f32,
) -> f64 {
    terms.dim(t.std[d], t.skew.map_or(0.0, |s| s[d]), s1, s2, s3)
}

/// The paper's loss summed over dimensions: [`PaperTerms::dim`] in one branch-free loop over four
/// accumulators, so that it vectorises (the sum's order is fixed: lane `d mod 4`, then the lanes).
fn paper_loss(cfg: &Config, t: &Targets<'_>, sums: &Sums<'_>) -> f64 {
    let terms = PaperTerms::new(cfg);
    let dims = cfg.dims;
    let (std, s1, s2, s3) = (
        &t.std[..dims],
        &sums.s1[..dims],
        &sums.s2[..dims],
        &sums.s3[..dims],
    );
    match t.skew {
        Some(skew) => paper_loss_lanes::<true>(&terms, std, &skew[..dims], s1, s2, s3),
        // Without a skewness target γ = 0; `std` only stands in for the unread slice.
        None => paper_loss_lanes::<false>(&terms, std, std, s1, s2, s3),
    }
}

#[inline(always)]
fn paper_loss_lanes<const SKEW: bool>(
    terms: &PaperTerms,
    std: &[f32],
    skew: &[f32],
    s1: &[f32],
    s2: &[f32],
    s3: &[f32],
) -> f64 {
    let mut acc = [0.0f64; 4];
    let body = std.len() / 4 * 4;
    let quads = std[..body]
        .chunks_exact(4)
        .zip(skew.chunks_exact(4))
        .zip(s1.chunks_exact(4))
        .zip(s2.chunks_exact(4))
        .zip(s3.chunks_exact(4));
    for ((((sd, g), a), b), c) in quads {
        for l in 0..4 {
            let gamma = if SKEW { g[l] } else { 0.0 };
            acc[l] += terms.dim(sd[l], gamma, a[l], b[l], c[l]);
        }
    }
    for k in body..std.len() {
        let gamma = if SKEW { skew[k] } else { 0.0 };
        acc[k % 4] += terms.dim(std[k], gamma, s1[k], s2[k], s3[k]);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Loss of one candidate given its normals `g` and their power sums.
pub(super) fn candidate_loss(cfg: &Config, t: &Targets<'_>, g: &[f32], sums: &Sums<'_>) -> f64 {
    match cfg.loss {
        Loss::Paper => paper_loss(cfg, t, sums),
        Loss::ReleasedCode => released_code_loss(cfg, t, g),
    }
}

/// The released code's loss (`evaluate_distribution_batch` in the authors'
/// `generation/group_sampling.py`), from the candidate's normals `g` and their power sums:
///
/// ```text
/// Lμ = ‖mean_i ẑ − μ‖₂ = √(Σ_d σ_d² · ḡ_d²)
/// Lσ = ‖std_i ẑ − σ‖₂ = √(Σ_d σ_d² · (s_d − 1)²)          (s_d: unbiased std of g_·d over i)
/// Lγ = ‖(k_1 … k_n)‖₂,  k_i = D/((D−1)(D−2)) · Σ_d ((g_id − ḡ_d)/s_d)³
/// L  = λμ·Lμ + λσ·Lσ + λγ·Lγ
/// ```
///
/// Each *dimension* is standardised by the subset's own mean and unbiased std across its `n`
/// members; `(ẑ_id − mean_i ẑ_d)/std_i ẑ_d = (g_id − ḡ_d)/s_d` for `σ_d > 0`, which is how it is
/// computed (for `σ_d = 0` the authors' code divides 0 by 0; this is the limit `σ_d → 0`). A
/// dimension whose `n` normals are all equal (`s_d = 0`) contributes 0 to every `k_i`.
///
/// Everything is computed in f64 from `g`, column by column (two passes per column, so that a
/// column of nearly equal values is still standardised exactly); the members' cube sums are kept
/// on the stack for blocks of [`MEMBER_BLOCK`] members.
pub(super) fn released_code_loss(cfg: &Config, t: &Targets<'_>, g: &[f32]) -> f64 {
    let (n, dims) = (cfg.n, cfg.dims);
    let nf = n as f64;
    let df = dims as f64;
    let c = df / ((df - 1.0) * (df - 2.0));
    let column = |d: usize| {
        let x = |i: usize| f64::from(g[i * dims + d]);
        let mean = (0..n).map(x).sum::<f64>() / nf;
        let var = (0..n).map(|i| (x(i) - mean) * (x(i) - mean)).sum::<f64>() / (nf - 1.0);
        (mean, libm::sqrt(var))
    };
    let (mut mean_sq, mut std_sq, mut skew_sq) = (0.0f64, 0.0f64, 0.0f64);
    let mut cubes = [0.0f64; MEMBER_BLOCK];
    for start in (0..n).step_by(MEMBER_BLOCK) {
        let members = start..n.min(start + MEMBER_BLOCK);
        cubes.fill(0.0);
        for d in 0..dims {
            let (m, sd) = column(d);
            if start == 0 {
                let sigma = f64::from(t.std[d]);
                mean_sq += sigma * sigma * m * m;
                std_sq += sigma * sigma * (sd - 1.0) * (sd - 1.0);
            }
            if sd > 0.0 {
                for (k, i) in members.clone().enumerate() {
                    let u = (f64::from(g[i * dims + d]) - m) / sd;
                    cubes[k] += u * u * u;
                }
            }
        }
        skew_sq += cubes[..members.len()]
            .iter()
            .map(|&s| (c * s) * (c * s))
            .sum::<f64>();
    }
    cfg.lambdas.mu * libm::sqrt(mean_sq)
        + cfg.lambdas.sigma * libm::sqrt(std_sq)
        + cfg.lambdas.gamma * libm::sqrt(skew_sq)
}

/// Members whose skewness sums [`released_code_loss`] keeps at once.
const MEMBER_BLOCK: usize = 64;

/// The loss of a given candidate: `g` holds its `n` rows of `dims` standard normals, so that its
/// latents are `ẑ_i = μ + σ ⊙ g_i`. This is the number a search compares; it lets a caller (or an
/// independent implementation) score arrays of its own.
pub fn score_normals<S: AsMut<[f32]>>(
    cfg: &Config,
    targets: &Targets<'_>,
    g: &[f32],
    scratch: &mut Scratch<S>,
) -> Result<f64, Error> {
    targets.check(cfg.dims)?;
    if g.len() != cfg.candidate_len() {
        return Err(Error::BufferLength {
            what: "candidate",
            expected: cfg.candidate_len(),
            got: g.len(),
        });
    }
    let (_, mut sums) = scratch.split(cfg)?;
    sums.accumulate(g, cfg.dims);
    Ok(candidate_loss(cfg, targets, g, &sums))
}

/// The loss of candidate `k` (regenerated), for reports and tests.
pub fn score_candidate<S: AsMut<[f32]>>(
    cfg: &Config,
    targets: &Targets<'_>,
    k: u64,
    scratch: &mut Scratch<S>,
) -> Result<f64, Error> {
    targets.check(cfg.dims)?;
    let (g, mut sums) = scratch.split(cfg)?;
    draw_candidate(cfg, k, g)?;
    sums.accumulate(g, cfg.dims);
    Ok(candidate_loss(cfg, targets, g, &sums))
}
