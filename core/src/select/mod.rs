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
//!
//! ## Layout
//! This module holds the problem (targets, weights, [`Config`], [`Scratch`]), the candidate
//! streams and [`search_joint`]; the two losses and the public scorers live in `loss.rs`, the
//! per-dimension search in `per_dim.rs`, and `threaded` (the only code that starts threads) is
//! compiled with the `std` feature alone.

mod loss;
mod per_dim;
#[cfg(feature = "std")]
pub mod threaded;

pub use loss::{score_candidate, score_normals};
pub use per_dim::{PerDimBest, search_per_dim};

use crate::Error;
use crate::ziggurat;
use core::ops::Range;
use loss::{candidate_loss, released_code_loss};
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
