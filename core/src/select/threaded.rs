//! Group sampling spread over scoped threads (feature `std`).
//!
//! The candidates `0..m` are cut into near-equal contiguous parts ([`split_range`]), each thread
//! searches its part with its own scratch, and the parts are merged ([`Best::merge`],
//! [`PerDimBest::merge`]); since every candidate has its own stream and ties go to the lower index,
//! the answer is the same for any number of threads.

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
