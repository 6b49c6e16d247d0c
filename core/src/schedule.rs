//! Noise schedules and DDIM timestep grids.
//!
//! The forward process (paper Eq. 1) is `z_t = √ᾱ_t · z_0 + √(1−ᾱ_t) · ε`, with
//! `ᾱ_t = Π_{s≤t} (1 − β_s)`. Everything here is computed in f64 with explicit casts: integer
//! division in a schedule formula once turned a well-known crate's cosine schedule into zeros, and
//! the known-answer tests (`tests/known_answer.rs`, numbers from `tools/diffusers_reference.py`)
//! guard against that class of bug.

use crate::Error;

/// Largest number of training steps a [`NoiseSchedule`] holds (fixed capacity, no allocation).
pub const MAX_TRAIN_STEPS: usize = 4096;
/// Largest number of points in a [`Timesteps`] grid.
pub const MAX_GRID_POINTS: usize = 1025;

/// How β grows over the training steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BetaSchedule {
    /// β linear from `start` to `end` (DiT and DDPM: 1e-4 to 0.02 over 1000 steps).
    Linear {
        /// β of the first step.
        start: f64,
        /// β of the last step.
        end: f64,
    },
    /// √β linear from √`start` to √`end` (Stable Diffusion: 0.00085 to 0.012).
    ScaledLinear {
        /// β of the first step.
        start: f64,
        /// β of the last step.
        end: f64,
    },
    /// Nichol & Dhariwal's cosine schedule (diffusers `squaredcos_cap_v2`): β capped at 0.999.
    Cosine,
}

impl BetaSchedule {
    /// DiT's schedule: linear β from 1e-4 to 0.02.
    pub const DIT: BetaSchedule = BetaSchedule::Linear {
        start: 1e-4,
        end: 0.02,
    };
}

/// ᾱ_t for every training step `t`, in f64.
#[derive(Clone)]
pub struct NoiseSchedule {
    len: usize,
    alphas_cumprod: [f64; MAX_TRAIN_STEPS],
}

impl core::fmt::Debug for NoiseSchedule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NoiseSchedule")
            .field("train_steps", &self.len)
            .field("alpha_bar_first", &self.alphas_cumprod[0])
            .field("alpha_bar_last", &self.alphas_cumprod[self.len - 1])
            .finish()
    }
}

impl NoiseSchedule {
    /// Builds ᾱ for `train_steps` steps of `betas`.
    ///
    /// Errors: zero or too many steps, β outside (0, 1), or `start > end`.
    pub fn new(betas: BetaSchedule, train_steps: usize) -> Result<Self, Error> {
        if train_steps == 0 {
            return Err(Error::ZeroSteps);
        }
        if train_steps > MAX_TRAIN_STEPS {
            return Err(Error::TooManySteps {
                requested: train_steps,
                max: MAX_TRAIN_STEPS,
            });
        }
        if let BetaSchedule::Linear { start, end } | BetaSchedule::ScaledLinear { start, end } =
            betas
        {
            let ok = |b: f64| b > 0.0 && b < 1.0;
            if !(ok(start) && ok(end) && start <= end) {
                return Err(Error::InvalidBetas);
            }
        }
        let n = train_steps as f64;
        let mut alphas_cumprod = [0.0f64; MAX_TRAIN_STEPS];
        let mut prod = 1.0f64;
        for (i, slot) in alphas_cumprod[..train_steps].iter_mut().enumerate() {
            let i_f = i as f64;
            // linspace(a, b, N)[i] = a + (b − a)·i/(N − 1), with one point meaning `a`.
            let frac = if train_steps == 1 {
                0.0
            } else {
                i_f / (n - 1.0)
            };
            let beta = match betas {
                BetaSchedule::Linear { start, end } => start + (end - start) * frac,
                BetaSchedule::ScaledLinear { start, end } => {
                    let (a, b) = (libm::sqrt(start), libm::sqrt(end));
                    let s = a + (b - a) * frac;
                    s * s
                }
                BetaSchedule::Cosine => {
                    let abar = |t: f64| {
                        let c = libm::cos((t + 0.008) / 1.008 * core::f64::consts::FRAC_PI_2);
                        c * c
                    };
                    let b = 1.0 - abar((i_f + 1.0) / n) / abar(i_f / n);
                    if b < 0.999 { b } else { 0.999 }
                }
            };
            prod *= 1.0 - beta;
            *slot = prod;
        }
        Ok(NoiseSchedule {
            len: train_steps,
            alphas_cumprod,
        })
    }

    /// DiT's schedule: 1000 steps of linear β from 1e-4 to 0.02.
    pub fn dit() -> Self {
        // Cannot fail: constants checked by the unit test below.
        match Self::new(BetaSchedule::DIT, 1000) {
            Ok(s) => s,
            Err(_) => unreachable!("DiT schedule constants are valid"),
        }
    }

    /// Number of training steps.
    pub fn train_steps(&self) -> usize {
        self.len
    }

    /// ᾱ_t, or `None` when `t` is not a training step.
    #[inline]
    pub fn alpha_bar(&self, t: u32) -> Option<f64> {
        self.alphas_cumprod[..self.len].get(t as usize).copied()
    }

    /// All ᾱ values, step 0 first.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod[..self.len]
    }
}

/// How DDIM spreads its inference steps over the training steps (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// `t_k = k · (N / n)` with integer division (diffusers' default, DiT, D3HR): 0, 20, …, 980.
    Leading,
    /// `round(N − k · N/n) − 1`: ends on the last training step (…, 979, 999).
    Trailing,
    /// `round(linspace(0, N − 1, n))`: both ends included.
    Linspace,
}

/// A strictly increasing DDIM timestep grid `t_0 < t_1 < … < t_T`.
///
/// Inversion walks it upwards, sampling downwards. Stored increasing whatever the spacing;
/// diffusers lists the same numbers in decreasing order.
#[derive(Clone)]
pub struct Timesteps {
    len: usize,
    t: [u32; MAX_GRID_POINTS],
}

impl core::fmt::Debug for Timesteps {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for Timesteps {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// Round half to even, as numpy's `round` does (diffusers computes its grids with numpy).
#[inline]
fn round_half_even(x: f64) -> f64 {
    libm::rint(x)
}

impl Timesteps {
    /// The `steps`-point grid of `spacing` over `train_steps` training steps, plus `offset`
    /// (diffusers' `steps_offset`, 0 for DiT).
    ///
    /// Errors: zero steps, more inference than training steps, or a point beyond the schedule.
    pub fn new(
        spacing: Spacing,
        train_steps: usize,
        steps: usize,
        offset: u32,
    ) -> Result<Self, Error> {
        if steps == 0 || train_steps == 0 {
            return Err(Error::ZeroSteps);
        }
        if steps > train_steps {
            return Err(Error::GridTooFine { steps, train_steps });
        }
        if steps > MAX_GRID_POINTS {
            return Err(Error::TooManySteps {
                requested: steps,
                max: MAX_GRID_POINTS,
            });
        }
        let mut t = [0u32; MAX_GRID_POINTS];
        let (nf, sf) = (train_steps as f64, steps as f64);
        for (k, slot) in t[..steps].iter_mut().enumerate() {
            let kf = k as f64;
            let v = match spacing {
                Spacing::Leading => (k * (train_steps / steps)) as f64,
                // diffusers: round(arange(N, 0, -N/n)) - 1, read back to front.
                Spacing::Trailing => round_half_even(nf - (sf - 1.0 - kf) * (nf / sf)) - 1.0,
                // numpy's linspace is `k · step` with `step = (N − 1)/(n − 1)`; the order of
                // operations matters where a point lands on .5 (e.g. 999·15/30).
                Spacing::Linspace => {
                    let step = if steps == 1 {
                        0.0
                    } else {
                        (nf - 1.0) / (sf - 1.0)
                    };
                    round_half_even(kf * step)
                }
            };
            *slot = v as u32 + offset;
        }
        Self::checked(t, steps, train_steps)
    }

    /// An explicit grid; it must be strictly increasing and below `train_steps`.
    pub fn from_list(list: &[u32], train_steps: usize) -> Result<Self, Error> {
        if list.is_empty() {
            return Err(Error::ZeroSteps);
        }
        if list.len() > MAX_GRID_POINTS {
            return Err(Error::TooManySteps {
                requested: list.len(),
                max: MAX_GRID_POINTS,
            });
        }
        let mut t = [0u32; MAX_GRID_POINTS];
        t[..list.len()].copy_from_slice(list);
        Self::checked(t, list.len(), train_steps)
    }

    fn checked(t: [u32; MAX_GRID_POINTS], len: usize, train_steps: usize) -> Result<Self, Error> {
        for (i, w) in t[..len].windows(2).enumerate() {
            if w[1] <= w[0] {
                return Err(Error::NonIncreasingGrid { index: i + 1 });
            }
        }
        if let Some(&last) = t[..len].last()
            && last as usize >= train_steps
        {
            return Err(Error::TimestepOutOfRange {
                t: last,
                train_steps,
            });
        }
        Ok(Timesteps { len, t })
    }

    /// The first `steps + 1` points `t_0 … t_steps`: the grid of a `steps`-step inversion.
    ///
    /// The paper's T = 31 on DiT's 50-point leading grid is `leading(1000, 50).prefix(31)`,
    /// i.e. 0, 20, …, 620. Errors when the grid has fewer points.
    pub fn prefix(&self, steps: usize) -> Result<Self, Error> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        if steps + 1 > self.len {
            return Err(Error::TooManySteps {
                requested: steps,
                max: self.len.saturating_sub(1),
            });
        }
        let mut t = self.t;
        t[steps + 1..].fill(0);
        Ok(Timesteps { len: steps + 1, t })
    }

    /// The points, increasing.
    pub fn as_slice(&self) -> &[u32] {
        &self.t[..self.len]
    }

    /// Number of points (one more than the number of steps between them).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a grid has at least one point.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of DDIM steps between the points: `len() − 1`.
    pub fn steps(&self) -> usize {
        self.len - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dit_constants_are_valid() {
        let s = NoiseSchedule::dit();
        assert_eq!(s.train_steps(), 1000);
        assert!((s.alpha_bar(0).unwrap() - 0.9999).abs() < 1e-15);
        assert!(s.alpha_bar(1000).is_none());
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            NoiseSchedule::new(BetaSchedule::DIT, 0).unwrap_err(),
            Error::ZeroSteps
        );
        let bad = BetaSchedule::Linear {
            start: 0.02,
            end: 1e-4,
        };
        assert_eq!(
            NoiseSchedule::new(bad, 10).unwrap_err(),
            Error::InvalidBetas
        );
        assert_eq!(
            Timesteps::from_list(&[0, 5, 5], 10).unwrap_err(),
            Error::NonIncreasingGrid { index: 2 }
        );
        assert!(matches!(
            Timesteps::from_list(&[0, 10], 10),
            Err(Error::TimestepOutOfRange { t: 10, .. })
        ));
        assert!(matches!(
            Timesteps::new(Spacing::Leading, 10, 11, 0),
            Err(Error::GridTooFine { .. })
        ));
    }

    #[test]
    fn paper_grid_is_0_to_620() {
        let g = Timesteps::new(Spacing::Leading, 1000, 50, 0)
            .unwrap()
            .prefix(31)
            .unwrap();
        assert_eq!(g.len(), 32);
        assert_eq!(g.as_slice()[31], 620);
        assert_eq!(g.steps(), 31);
    }
}
