//! Streaming per-dimension moments (paper §4.3): mean, M2 and M3 of every latent dimension in one
//! pass, with an exact merge of partial results from disjoint shards.
//!
//! Updates follow Terriberry's one-pass extension of Welford's algorithm; merging follows Chan et
//! al.'s pairwise formulas. Accumulators are f64 for f32 data.
//!
//! **NaN behaviour.** A NaN or infinite input value poisons only its own dimension: that
//! dimension's mean, M2 and M3 become NaN (or infinite) and stay so, and its finalized statistics
//! are NaN. The other dimensions and the shared count are unaffected.

use crate::Error;

/// Per-dimension statistics of a set of latents, as stored in a statistics file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Mean μ.
    pub mean: f64,
    /// Population standard deviation `√(M2/N)`.
    pub std: f64,
    /// Unbiased standard deviation `√(M2/(N−1))` (what `torch.std` returns).
    pub std_unbiased: f64,
    /// Adjusted Fisher–Pearson skewness, the estimator of paper Eq. 8:
    /// `N/((N−1)(N−2)) · Σ((x−μ)/s)³` with `s` the unbiased std, which equals
    /// `√(N(N−1))/(N−2) · (M3/N)/(M2/N)^{3/2}`. Zero when `N < 3` or the data are constant.
    pub skewness: f64,
}

/// Streaming accumulator over `dims` dimensions.
///
/// `S` is the storage of `3 · dims` f64 values: a borrowed `&mut [f64]` (no allocation) or, with
/// the `alloc` feature, a `Vec<f64>` from [`Moments::new`].
#[derive(Debug, Clone)]
pub struct Moments<S> {
    count: u64,
    dims: usize,
    /// `[mean | m2 | m3]`, each `dims` long.
    buf: S,
}

#[cfg(feature = "alloc")]
impl Moments<alloc::vec::Vec<f64>> {
    /// An empty accumulator owning its storage.
    pub fn new(dims: usize) -> Self {
        Moments {
            count: 0,
            dims,
            buf: alloc::vec![0.0; 3 * dims],
        }
    }
}

impl<S: AsRef<[f64]> + AsMut<[f64]>> Moments<S> {
    /// An empty accumulator over `storage`, which must hold `3 · dims` values; it is zeroed.
    pub fn with_storage(dims: usize, storage: S) -> Result<Self, Error> {
        let mut m = Self::from_parts(dims, 0, storage)?;
        m.buf.as_mut().fill(0.0);
        Ok(m)
    }

    /// Resume from saved state: `count` samples with the given per-dimension mean, M2 and M3
    /// laid out in `storage` as `[mean | m2 | m3]`.
    pub fn from_parts(dims: usize, count: u64, storage: S) -> Result<Self, Error> {
        let got = storage.as_ref().len();
        if got != 3 * dims {
            return Err(Error::BufferLength {
                what: "moments storage",
                expected: 3 * dims,
                got,
            });
        }
        Ok(Moments {
            count,
            dims,
            buf: storage,
        })
    }

    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of samples added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Raw state `[mean | m2 | m3]` for saving (see [`Moments::from_parts`]).
    pub fn raw(&self) -> &[f64] {
        self.buf.as_ref()
    }

    /// Per-dimension means.
    pub fn mean(&self) -> &[f64] {
        &self.buf.as_ref()[..self.dims]
    }

    /// Per-dimension sums of squared deviations `M2 = Σ(x − μ)²`.
    pub fn m2(&self) -> &[f64] {
        &self.buf.as_ref()[self.dims..2 * self.dims]
    }

    /// Per-dimension sums of cubed deviations `M3 = Σ(x − μ)³`.
    pub fn m3(&self) -> &[f64] {
        &self.buf.as_ref()[2 * self.dims..]
    }

    /// Add one sample of `dims` values (Terriberry's update).
    ///
    /// With `n` the new count and `δ = x − μ`: `μ += δ/n`;
    /// `M3 += δ³(n−1)(n−2)/n² − 3δ·M2/n`; `M2 += δ²(n−1)/n` (M3 first: it needs the old M2).
    pub fn add(&mut self, x: &[f32]) -> Result<(), Error> {
        if x.len() != self.dims {
            return Err(Error::BufferLength {
                what: "sample",
                expected: self.dims,
                got: x.len(),
            });
        }
        self.count += 1;
        let n = self.count as f64;
        let n1 = n - 1.0;
        let d = self.dims;
        let (mean, rest) = self.buf.as_mut().split_at_mut(d);
        let (m2, m3) = rest.split_at_mut(d);
        for (((&xi, mu), m2), m3) in x.iter().zip(mean).zip(m2).zip(m3) {
            let delta = f64::from(xi) - *mu;
            let delta_n = delta / n;
            let term1 = delta * delta_n * n1;
            *mu += delta_n;
            *m3 += term1 * delta_n * (n - 2.0) - 3.0 * delta_n * *m2;
            *m2 += term1;
        }
        Ok(())
    }

    /// Add every sample of a row-major batch (`rows · dims` values).
    pub fn add_batch(&mut self, batch: &[f32]) -> Result<(), Error> {
        if self.dims == 0 || !batch.len().is_multiple_of(self.dims) {
            return Err(Error::BufferLength {
                what: "batch (a multiple of dims)",
                expected: self.dims * (batch.len() / self.dims.max(1)),
                got: batch.len(),
            });
        }
        for row in batch.chunks_exact(self.dims) {
            self.add(row)?;
        }
        Ok(())
    }

    /// Fold `other` (the moments of a disjoint set of samples) into `self`, exactly:
    ///
    /// with `n = na + nb` and `δ = μb − μa`:
    /// `μ = μa + δ·nb/n`, `M2 = M2a + M2b + δ²·na·nb/n`,
    /// `M3 = M3a + M3b + δ³·na·nb·(na − nb)/n² + 3δ·(na·M2b − nb·M2a)/n`.
    pub fn merge<T: AsRef<[f64]> + AsMut<[f64]>>(
        &mut self,
        other: &Moments<T>,
    ) -> Result<(), Error> {
        if other.dims != self.dims {
            return Err(Error::BufferLength {
                what: "merged moments dims",
                expected: self.dims,
                got: other.dims,
            });
        }
        if other.count == 0 {
            return Ok(());
        }
        if self.count == 0 {
            self.count = other.count;
            self.buf.as_mut().copy_from_slice(other.buf.as_ref());
            return Ok(());
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let d = self.dims;
        let (mean, rest) = self.buf.as_mut().split_at_mut(d);
        let (m2, m3) = rest.split_at_mut(d);
        let ob = other.buf.as_ref();
        let (omean, orest) = ob.split_at(d);
        let (om2, om3) = orest.split_at(d);
        for i in 0..d {
            let delta = omean[i] - mean[i];
            let delta_n = delta / n;
            let (m2a, m2b) = (m2[i], om2[i]);
            m3[i] += om3[i]
                + delta * delta_n * delta_n * na * nb * (na - nb)
                + 3.0 * delta_n * (na * m2b - nb * m2a);
            m2[i] = m2a + m2b + delta * delta_n * na * nb;
            mean[i] += delta_n * nb;
        }
        self.count += other.count;
        Ok(())
    }

    /// The statistics of dimension `i`, or `None` when `i` is out of range.
    pub fn summary(&self, i: usize) -> Option<Summary> {
        if i >= self.dims {
            return None;
        }
        Some(summarize(
            self.count,
            self.mean()[i],
            self.m2()[i],
            self.m3()[i],
        ))
    }

    /// Write μ, σ (population or unbiased) and γ of every dimension into the given slices
    /// (each `dims` long), as f32 — the form the selection stage consumes.
    pub fn finalize_into(
        &self,
        unbiased_std: bool,
        mean: &mut [f32],
        std: &mut [f32],
        skew: &mut [f32],
    ) -> Result<(), Error> {
        for (what, got) in [
            ("mean", mean.len()),
            ("std", std.len()),
            ("skew", skew.len()),
        ] {
            if got != self.dims {
                return Err(Error::BufferLength {
                    what,
                    expected: self.dims,
                    got,
                });
            }
        }
        for i in 0..self.dims {
            let s = summarize(self.count, self.mean()[i], self.m2()[i], self.m3()[i]);
            mean[i] = s.mean as f32;
            std[i] = if unbiased_std { s.std_unbiased } else { s.std } as f32;
            skew[i] = s.skewness as f32;
        }
        Ok(())
    }
}

/// Mean, std and skewness from a count and central sums (see [`Summary`]).
pub fn summarize(count: u64, mean: f64, m2: f64, m3: f64) -> Summary {
    let n = count as f64;
    let std = if count == 0 { 0.0 } else { libm::sqrt(m2 / n) };
    let std_unbiased = if count < 2 {
        0.0
    } else {
        libm::sqrt(m2 / (n - 1.0))
    };
    let skewness = if count < 3 || m2 == 0.0 {
        // Undefined; report 0 (a symmetric target), but keep NaN from poisoned input visible.
        if m2.is_nan() || m3.is_nan() {
            f64::NAN
        } else {
            0.0
        }
    } else {
        let g1 = (m3 / n) / libm::pow(m2 / n, 1.5);
        libm::sqrt(n * (n - 1.0)) / (n - 2.0) * g1
    };
    Summary {
        count,
        mean,
        std,
        std_unbiased,
        skewness,
    }
}
