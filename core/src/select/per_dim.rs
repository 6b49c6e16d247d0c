//! Per-dimension group sampling (ours): since the paper's loss is a sum of independent
//! per-dimension terms, every dimension keeps its own best candidate column.

use super::loss::{PaperTerms, paper_dim_loss};
use super::{Best, Config, Loss, Scratch, Targets, draw_candidate};
use crate::Error;
use core::ops::Range;

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
        let best = Self::from_results(cfg, index, loss, g)?;
        best.index.fill(u64::MAX);
        best.loss.fill(f64::INFINITY);
        best.g.fill(0.0);
        Ok(best)
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
