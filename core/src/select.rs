//! Group sampling (paper §4.4, Eq. 5–8): draw `m` candidate subsets of `n` latents from the fitted
//! Gaussian `N(μ, σ²)` and keep the one whose statistics match the class best.
//!
//! ## Candidates
//! Candidate `k` is drawn from its own PCG stream, [`candidate_rng`]`(seed, k)`, as `n` rows of
//! `dims` standard normals `g` (row by row with [`ziggurat::fill_f32`]); its latents are
//! `ẑ_i = μ + σ ⊙ g_i` ([`to_latents`]). No candidate is ever stored: a search remembers the best
//! index and [`draw_candidate`] regenerates the winner. Splitting the range `0..m` between threads
//! and merging the partial [`Best`]s (ties go to the lower index) gives the same answer for any
//! number of threads.
//!
//! ## Scoring in the standardised space
//! Since `(ẑ_i − μ)/σ = g_i`, the paper's terms only need the per-dimension power sums
//! `S1 = Σ_i g_i`, `S2 = Σ_i g_i²`, `S3 = Σ_i g_i³`:
//!
//! ```text
//! Lμ (Eq. 6) = ((1/n)Σ ẑ_i − μ)²                      = σ² · (S1/n)²
//! Lσ (Eq. 7) = (√((1/n)Σ(ẑ_i − μ)²) − σ)²             = σ² · (√(S2/n) − 1)²
//! Lγ (Eq. 8) = (n/((n−1)(n−2)) Σ((ẑ_i − μ)/σ)³ − γ)²  = (n/((n−1)(n−2)) · S3 − γ)²
//! L  (Eq. 5) = Σ_d λμ·Lμ + λσ·Lσ + λγ·Lγ
//! ```
//!
//! so scoring never materialises `ẑ`. Lγ is undefined for `n < 3`; the term is then dropped and
//! [`Config::gamma_dropped`] says so.
//!
//! The released code's loss ([`Loss::ReleasedCode`]) is `λμ‖mean_i ẑ − μ‖₂ + λσ‖std_i ẑ − σ‖₂
//! + λγ‖k‖₂`, with the unbiased std over the subset; `k_i` standardises each dimension by the
//! subset's own mean and unbiased std across its `n` members and sums the cubes of member `i`
//! over the dimensions, times `D/((D−1)(D−2))` (target 0).
//!
//! ## Modes
//! * [`search_joint`]: the paper — argmin over whole subsets.
//! * [`search_per_dim`]: ours — since the paper's loss is a sum of independent per-dimension
//!   terms, choose the best candidate column separately for every dimension. For the same `m` the
//!   loss can only be lower or equal than joint mode's.
//! * random (Base-RS): candidate 0 alone, `m = 1`.

use crate::Error;
use crate::ziggurat;
use core::ops::Range;
use rand_pcg::Pcg64;

/// Per-dimension targets of one class, fitted in stage 2.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// μ.
    pub mean: &'a [f32],
    /// σ (population or unbiased, as the profile says).
    pub std: &'a [f32],
    /// γ; `None` means 0 for every dimension (a symmetric Gaussian).
    pub skew: Option<&'a [f32]>,
}

impl Targets<'_> {
    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    fn check(&self, dims: usize) -> Result<(), Error> {
        for (what, got) in [
            ("target mean", self.mean.len()),
            ("target std", self.std.len()),
            ("target skew", self.skew.map_or(dims, <[f32]>::len)),
        ] {
            if got != dims {
                return Err(Error::BufferLength {
                    what,
                    expected: dims,
                    got,
                });
            }
        }
        for d in 0..dims {
            let g = self.skew.map_or(0.0, |s| s[d]);
            let ok = self.mean[d].is_finite()
                && self.std[d].is_finite()
                && self.std[d] >= 0.0
                && g.is_finite();
            if !ok {
                return Err(Error::InvalidTarget { dim: d });
            }
        }
        Ok(())
    }
}

/// The weights λμ, λσ, λγ of Eq. 5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lambdas {
    /// Weight of the mean term.
    pub mu: f64,
    /// Weight of the standard-deviation term.
    pub sigma: f64,
    /// Weight of the skewness term.
    pub gamma: f64,
}

impl Lambdas {
    /// The paper's weights (Appendix): 1, 1, 0.5.
    pub const PAPER: Lambdas = Lambdas {
        mu: 1.0,
        sigma: 1.0,
        gamma: 0.5,
    };
    /// The released code's weights: 1, 1, 0.1.
    pub const RELEASED_CODE: Lambdas = Lambdas {
        mu: 1.0,
        sigma: 1.0,
        gamma: 0.1,
    };
}

/// Which loss scores a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Eq. 5–8: squared per-dimension mismatches summed over dimensions.
    Paper,
    /// The authors' released code: L2 norms and a cross-dimension skewness per member.
    ReleasedCode,
}

/// A validated selection problem: seed, subset size, dimensions, loss and weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    seed: u64,
    n: usize,
    dims: usize,
    loss: Loss,
    lambdas: Lambdas,
    gamma_dropped: bool,
}

impl Config {
    /// Errors: `n = 0` or `dims = 0`; the released-code loss with `n < 2` (its unbiased std) or
    /// `dims < 3` (its cross-dimension skewness); negative or non-finite λ.
    pub fn new(
        seed: u64,
        n: usize,
        dims: usize,
        loss: Loss,
        lambdas: Lambdas,
    ) -> Result<Self, Error> {
        if n == 0 {
            return Err(Error::SubsetTooSmall { n, need: 1 });
        }
        if dims == 0 {
            return Err(Error::BufferLength {
                what: "dims",
                expected: 1,
                got: 0,
            });
        }
        for l in [lambdas.mu, lambdas.sigma, lambdas.gamma] {
            if !(l.is_finite() && l >= 0.0) {
                return Err(Error::InvalidLambda);
            }
        }
        if loss == Loss::ReleasedCode {
            if n < 2 {
                return Err(Error::SubsetTooSmall { n, need: 2 });
            }
            if dims < 3 {
                return Err(Error::BufferLength {
                    what: "dims (the released-code skewness needs 3)",
                    expected: 3,
                    got: dims,
                });
            }
        }
        let gamma_dropped = loss == Loss::Paper && n < 3 && lambdas.gamma > 0.0;
        Ok(Config {
            seed,
            n,
            dims,
            loss,
            lambdas,
            gamma_dropped,
        })
    }

    /// True when the paper's Lγ was dropped because `n < 3` makes Eq. 8 undefined.
    pub fn gamma_dropped(&self) -> bool {
        self.gamma_dropped
    }

    /// Subset size (IPC).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Latent dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The seed all candidate streams derive from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// Values in one candidate (`n · dims`).
    pub fn candidate_len(&self) -> usize {
        self.n * self.dims
    }

    /// f32 scratch a search needs: one candidate plus three power sums per dimension.
    pub fn scratch_len(&self) -> usize {
        self.n * self.dims + 3 * self.dims
    }
}

/// Scratch space for the searches (`Config::scratch_len` values).
#[derive(Debug, Clone)]
pub struct Scratch<S>(S);

#[cfg(feature = "alloc")]
impl Scratch<alloc::vec::Vec<f32>> {
    /// Owned scratch for `cfg`.
    pub fn new(cfg: &Config) -> Self {
        Scratch(alloc::vec![0.0; cfg.scratch_len()])
    }
}

impl<S: AsMut<[f32]>> Scratch<S> {
    /// Borrowed scratch; checked against `cfg` when a search starts.
    pub fn with_storage(storage: S) -> Self {
        Scratch(storage)
    }

    fn split(&mut self, cfg: &Config) -> Result<(&mut [f32], Sums<'_>), Error> {
        let buf = self.0.as_mut();
        let need = cfg.scratch_len();
        if buf.len() < need {
            return Err(Error::BufferLength {
                what: "selection scratch",
                expected: need,
                got: buf.len(),
            });
        }
        let (g, rest) = buf[..need].split_at_mut(cfg.candidate_len());
        let (s1, rest) = rest.split_at_mut(cfg.dims);
        let (s2, s3) = rest.split_at_mut(cfg.dims);
        Ok((g, Sums { s1, s2, s3 }))
    }
}

struct Sums<'a> {
    s1: &'a mut [f32],
    s2: &'a mut [f32],
    s3: &'a mut [f32],
}

impl Sums<'_> {
    /// Power sums over the `n` rows of `g` (row-major, `dims` per row).
    fn accumulate(&mut self, g: &[f32], dims: usize) {
        let mut rows = g.chunks_exact(dims);
        if let Some(first) = rows.next() {
            for (d, &x) in first.iter().enumerate() {
                self.s1[d] = x;
                self.s2[d] = x * x;
                self.s3[d] = x * x * x;
            }
        }
        for row in rows {
            self.add_row(row);
        }
    }

    #[inline]
    fn add_row(&mut self, row: &[f32]) {
        for (((&x, s1), s2), s3) in row
            .iter()
            .zip(self.s1.iter_mut())
            .zip(self.s2.iter_mut())
            .zip(self.s3.iter_mut())
        {
            let x2 = x * x;
            *s1 += x;
            *s2 += x2;
            *s3 += x2 * x;
        }
    }

    /// [`Sums::add_row`] of `a` then of `b` (the same additions in the same order), in one pass
    /// over the sums.
    #[inline]
    fn add_rows2(&mut self, a: &[f32], b: &[f32]) {
        for ((((&x, &y), s1), s2), s3) in a
            .iter()
            .zip(b)
            .zip(self.s1.iter_mut())
            .zip(self.s2.iter_mut())
            .zip(self.s3.iter_mut())
        {
            let (x2, y2) = (x * x, y * y);
            *s1 = *s1 + x + y;
            *s2 = *s2 + x2 + y2;
            *s3 = *s3 + x2 * x + y2 * y;
        }
    }
}

/// The random stream of candidate `k`: a PCG-XSL-RR 128/64 generator whose state and stream are
/// both derived from `(seed, k)` by SplitMix64 finalisers, so neighbouring candidates share
/// neither.
pub fn candidate_rng(seed: u64, k: u64) -> Pcg64 {
    let a = splitmix(seed ^ splitmix(k));
    let b = splitmix(a ^ 0x6a09_e667_f3bc_c909);
    let c = splitmix(b ^ k);
    let state = (u128::from(a) << 64) | u128::from(b);
    let stream = (u128::from(c) << 64) | u128::from(k);
    Pcg64::new(state, stream)
}

#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Regenerate candidate `k`'s standard normals `g` (`n` rows of `dims`, row-major) into `g`.
pub fn draw_candidate(cfg: &Config, k: u64, g: &mut [f32]) -> Result<(), Error> {
    if g.len() != cfg.candidate_len() {
        return Err(Error::BufferLength {
            what: "candidate",
            expected: cfg.candidate_len(),
            got: g.len(),
        });
    }
    let mut rng = candidate_rng(cfg.seed, k);
    for row in g.chunks_exact_mut(cfg.dims) {
        ziggurat::fill_f32(&mut rng, row);
    }
    Ok(())
}

/// `ẑ_i = μ + σ ⊙ g_i` for every row of `g`, written into `out` (both `n · dims`).
pub fn to_latents(targets: &Targets<'_>, g: &[f32], out: &mut [f32]) -> Result<(), Error> {
    let dims = targets.dims();
    if dims == 0 || g.len() != out.len() || !g.len().is_multiple_of(dims) {
        return Err(Error::BufferLength {
            what: "latents out",
            expected: g.len(),
            got: out.len(),
        });
    }
    targets.check(dims)?;
    for (grow, orow) in g.chunks_exact(dims).zip(out.chunks_exact_mut(dims)) {
        for d in 0..dims {
            orow[d] = targets.mean[d] + targets.std[d] * grow[d];
        }
    }
    Ok(())
}

/// The best candidate seen: its index and loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    /// Candidate index (`u64::MAX` when none was scored).
    pub index: u64,
    /// Its loss (`+∞` when none was scored).
    pub loss: f64,
}

impl Best {
    /// Nothing scored yet.
    pub const NONE: Best = Best {
        index: u64::MAX,
        loss: f64::INFINITY,
    };

    /// The better of two: lower loss, ties to the lower index. A NaN loss counts as `+∞`.
    #[inline]
    pub fn merge(self, other: Best) -> Best {
        let key = |b: &Best| {
            if b.loss.is_nan() {
                f64::INFINITY
            } else {
                b.loss
            }
        };
        let (a, b) = (key(&self), key(&other));
        if b < a || (b == a && other.index < self.index) {
            other
        } else {
            self
        }
    }

    /// Whether a candidate was scored.
    pub fn is_some(&self) -> bool {
        self.index != u64::MAX
    }
}

/// The constants of the paper's loss for one configuration (Eq. 5–8), with `λγ = 0` when Lγ is
/// dropped (n < 3).
struct PaperTerms {
    mu: f64,
    sigma: f64,
    gamma: f64,
    /// `n / ((n − 1)(n − 2))`, the adjusted-skewness factor of Eq. 8 (0 when Lγ is dropped).
    skew_factor: f64,
    inv_n: f64,
}

impl PaperTerms {
    fn new(cfg: &Config) -> PaperTerms {
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
fn paper_dim_loss(terms: &PaperTerms, t: &Targets<'_>, d: usize, s1: f32, s2: f32, s3: f32) -> f64 {
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
fn candidate_loss(cfg: &Config, t: &Targets<'_>, g: &[f32], sums: &Sums<'_>) -> f64 {
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
fn released_code_loss(cfg: &Config, t: &Targets<'_>, g: &[f32]) -> f64 {
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
    let (mut mean_sq, mut std_sq) = (0.0f64, 0.0f64);
    for d in 0..dims {
        let sigma = f64::from(t.std[d]);
        let (m, sd) = column(d);
        mean_sq += sigma * sigma * m * m;
        std_sq += sigma * sigma * (sd - 1.0) * (sd - 1.0);
    }
    let mut skew_sq = 0.0f64;
    let mut cubes = [0.0f64; MEMBER_BLOCK];
    for start in (0..n).step_by(MEMBER_BLOCK) {
        let members = start..n.min(start + MEMBER_BLOCK);
        cubes.fill(0.0);
        for d in 0..dims {
            let (m, sd) = column(d);
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

/// Joint group sampling (the paper): score candidates `range` and return the best.
///
/// An empty range returns [`Best::NONE`]. Merge the results of disjoint ranges with
/// [`Best::merge`]; the merged answer equals one search over their union.
pub fn search_joint<S: AsMut<[f32]>>(
    cfg: &Config,
    targets: &Targets<'_>,
    range: Range<u64>,
    scratch: &mut Scratch<S>,
) -> Result<Best, Error> {
    targets.check(cfg.dims)?;
    let dims = cfg.dims;
    let (g, mut sums) = scratch.split(cfg)?;
    let mut best = Best::NONE;
    for k in range {
        let mut rng = candidate_rng(cfg.seed, k);
        let loss = match cfg.loss {
            Loss::Paper => {
                // Stream the rows, two at a time after the first: they stay in cache, and the
                // sums are read and written once per pair.
                let (a, rest) = g.split_at_mut(dims);
                let b_len = dims.min(rest.len());
                let b = &mut rest[..b_len];
                ziggurat::fill_f32(&mut rng, a);
                sums.accumulate(a, dims);
                let mut left = cfg.n - 1;
                while left >= 2 {
                    ziggurat::fill_f32(&mut rng, a);
                    ziggurat::fill_f32(&mut rng, b);
                    sums.add_rows2(a, b);
                    left -= 2;
                }
                if left == 1 {
                    ziggurat::fill_f32(&mut rng, a);
                    sums.add_row(a);
                }
                candidate_loss(cfg, targets, &[], &sums)
            }
            Loss::ReleasedCode => {
                for row in g.chunks_exact_mut(dims) {
                    ziggurat::fill_f32(&mut rng, row);
                }
                released_code_loss(cfg, targets, g)
            }
        };
        best = best.merge(Best { index: k, loss });
    }
    Ok(best)
}

/// The result of a per-dimension search: for every dimension, the winning candidate, its
/// per-dimension loss and its column of `n` standard normals.
#[derive(Debug)]
pub struct PerDimBest<'a> {
    n: usize,
    /// Winning candidate per dimension (`u64::MAX`: none yet).
    pub index: &'a mut [u64],
    /// Its per-dimension loss.
    pub loss: &'a mut [f64],
    /// The selected normals, `n` rows of `dims` (row-major), like a candidate.
    pub g: &'a mut [f32],
}

impl<'a> PerDimBest<'a> {
    /// Wrap caller storage for `cfg` and reset it: `index` and `loss` `dims` long, `g`
    /// `n · dims`.
    pub fn new(
        cfg: &Config,
        index: &'a mut [u64],
        loss: &'a mut [f64],
        g: &'a mut [f32],
    ) -> Result<Self, Error> {
        Self::check_lengths(cfg, index, loss, g)?;
        index.fill(u64::MAX);
        loss.fill(f64::INFINITY);
        g.fill(0.0);
        Ok(PerDimBest {
            n: cfg.n,
            index,
            loss,
            g,
        })
    }

    /// Wrap the results of an earlier search (e.g. one thread's part) without resetting them,
    /// to [`merge`](Self::merge) them into another.
    pub fn from_results(
        cfg: &Config,
        index: &'a mut [u64],
        loss: &'a mut [f64],
        g: &'a mut [f32],
    ) -> Result<Self, Error> {
        Self::check_lengths(cfg, index, loss, g)?;
        Ok(PerDimBest {
            n: cfg.n,
            index,
            loss,
            g,
        })
    }

    fn check_lengths(cfg: &Config, index: &[u64], loss: &[f64], g: &[f32]) -> Result<(), Error> {
        for (what, expected, got) in [
            ("per-dim index", cfg.dims, index.len()),
            ("per-dim loss", cfg.dims, loss.len()),
            ("per-dim normals", cfg.candidate_len(), g.len()),
        ] {
            if expected != got {
                return Err(Error::BufferLength {
                    what,
                    expected,
                    got,
                });
            }
        }
        Ok(())
    }

    /// The total loss: the sum of the per-dimension losses.
    pub fn total_loss(&self) -> f64 {
        self.loss.iter().sum()
    }

    /// Fold in the result of a disjoint range: per dimension the lower loss, ties to the lower
    /// index.
    pub fn merge(&mut self, other: &PerDimBest<'_>) -> Result<(), Error> {
        if other.index.len() != self.index.len() || other.n != self.n {
            return Err(Error::BufferLength {
                what: "merged per-dim result",
                expected: self.index.len(),
                got: other.index.len(),
            });
        }
        let dims = self.index.len();
        for d in 0..dims {
            let a = Best {
                index: self.index[d],
                loss: self.loss[d],
            };
            let b = Best {
                index: other.index[d],
                loss: other.loss[d],
            };
            if a.merge(b) != a {
                self.index[d] = b.index;
                self.loss[d] = b.loss;
                for i in 0..self.n {
                    self.g[i * dims + d] = other.g[i * dims + d];
                }
            }
        }
        Ok(())
    }
}

/// Per-dimension group sampling (ours): for every dimension keep the candidate column with the
/// lowest per-dimension paper loss, over candidates `range`. Needs [`Loss::Paper`].
pub fn search_per_dim<S: AsMut<[f32]>>(
    cfg: &Config,
    targets: &Targets<'_>,
    range: Range<u64>,
    scratch: &mut Scratch<S>,
    best: &mut PerDimBest<'_>,
) -> Result<(), Error> {
    if cfg.loss != Loss::Paper {
        return Err(Error::PerDimNeedsSeparableLoss);
    }
    if best.n != cfg.n || best.index.len() != cfg.dims {
        return Err(Error::BufferLength {
            what: "per-dim result",
            expected: cfg.dims,
            got: best.index.len(),
        });
    }
    targets.check(cfg.dims)?;
    let dims = cfg.dims;
    let terms = PaperTerms::new(cfg);
    let (g, mut sums) = scratch.split(cfg)?;
    for k in range {
        draw_candidate(cfg, k, g)?;
        sums.accumulate(g, dims);
        for d in 0..dims {
            let l = paper_dim_loss(&terms, targets, d, sums.s1[d], sums.s2[d], sums.s3[d]);
            // Ranges are scanned upwards, so a strict `<` keeps ties on the lower index.
            if l < best.loss[d] {
                best.loss[d] = l;
                best.index[d] = k;
                for i in 0..cfg.n {
                    best.g[i * dims + d] = g[i * dims + d];
                }
            }
        }
    }
    Ok(())
}

/// The `part`-th of `parts` contiguous, near-equal slices of `0..m` (for spreading a search over
/// threads or jobs). Parts beyond `parts` are empty.
pub fn split_range(m: u64, parts: u64, part: u64) -> Range<u64> {
    if parts == 0 || part >= parts {
        return m..m;
    }
    let (q, r) = (m / parts, m % parts);
    let start = part * q + part.min(r);
    let len = q + u64::from(part < r);
    start..start + len
}

/// Group sampling spread over scoped threads (feature `std`).
///
/// The candidates `0..m` are cut into near-equal contiguous parts ([`split_range`]), each thread
/// searches its part with its own scratch, and the parts are merged ([`Best::merge`],
/// [`PerDimBest::merge`]); since every candidate has its own stream and ties go to the lower index,
/// the answer is the same for any number of threads.
#[cfg(feature = "std")]
pub mod threaded {
    use super::{Best, Config, Error, PerDimBest, Scratch, Targets, split_range};
    use alloc::vec;
    use alloc::vec::Vec;
    use core::ops::Range;

    /// Run `part` on each of `threads` near-equal slices of `0..m` (0 threads counts as 1), one
    /// scoped thread per slice; the results in slice order.
    fn on_threads<T: Send>(
        m: u64,
        threads: usize,
        part: impl Fn(Range<u64>) -> Result<T, Error> + Sync,
    ) -> Result<Vec<T>, Error> {
        let th = threads.max(1) as u64;
        let part = &part;
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..th)
                .map(|p| s.spawn(move || part(split_range(m, th, p))))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("selection thread panicked"))
                .collect()
        })
    }

    /// [`super::search_joint`] over `0..m` on `threads` threads (0 counts as 1).
    pub fn search_joint(
        cfg: &Config,
        targets: &Targets<'_>,
        m: u64,
        threads: usize,
    ) -> Result<Best, Error> {
        let parts = on_threads(m, threads, |range| {
            super::search_joint(cfg, targets, range, &mut Scratch::new(cfg))
        })?;
        Ok(parts.into_iter().fold(Best::NONE, Best::merge))
    }

    /// The owned result of a per-dimension search (see [`PerDimBest`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct PerDim {
        /// Winning candidate per dimension.
        pub index: Vec<u64>,
        /// Its per-dimension loss.
        pub loss: Vec<f64>,
        /// The selected normals, `n` rows of `dims` (row-major).
        pub g: Vec<f32>,
    }

    impl PerDim {
        fn empty(cfg: &Config) -> PerDim {
            PerDim {
                index: vec![0; cfg.dims()],
                loss: vec![0.0; cfg.dims()],
                g: vec![0.0; cfg.candidate_len()],
            }
        }

        /// The paper's loss of the selected columns: the sum of the per-dimension losses.
        pub fn total_loss(&self) -> f64 {
            self.loss.iter().sum()
        }
    }

    /// [`super::search_per_dim`] over `0..m` on `threads` threads (0 counts as 1).
    pub fn search_per_dim(
        cfg: &Config,
        targets: &Targets<'_>,
        m: u64,
        threads: usize,
    ) -> Result<PerDim, Error> {
        let parts = on_threads(m, threads, |range| {
            let mut r = PerDim::empty(cfg);
            let mut best = PerDimBest::new(cfg, &mut r.index, &mut r.loss, &mut r.g)?;
            super::search_per_dim(cfg, targets, range, &mut Scratch::new(cfg), &mut best)?;
            Ok(r)
        })?;
        let mut out = PerDim::empty(cfg);
        let mut acc = PerDimBest::new(cfg, &mut out.index, &mut out.loss, &mut out.g)?;
        for mut p in parts {
            acc.merge(&PerDimBest::from_results(
                cfg,
                &mut p.index,
                &mut p.loss,
                &mut p.g,
            )?)?;
        }
        Ok(out)
    }
}
