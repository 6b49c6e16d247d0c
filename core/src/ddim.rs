//! DDIM inversion (paper Eq. 3) and sampling (paper Eq. 2), η = 0, generic over a
//! [`NoisePredictor`].
//!
//! Both directions are the same deterministic update between two noise levels; only the timestep
//! at which ε is evaluated and the direction of travel differ:
//!
//! ```text
//! ẑ0     = (z − √(1−ᾱ_from) · ε) / √ᾱ_from
//! z_to   = √ᾱ_to · ẑ0 + √(1−ᾱ_to) · ε
//! ```
//!
//! Inversion (Eq. 3) goes from `t_{k−1}` up to `t_k`. The paper evaluates ε at the *source*
//! `t_{k−1}` (the standard DDIM inversion, the exact inverse of Eq. 2 in the limit of small
//! steps); the authors' released code evaluates it at the *target* `t_k`. [`InversionEps`] names
//! the choice. Sampling (Eq. 2) goes from `t_k` down to `t_{k−1}` with ε evaluated at `t_k`. A
//! [`Plan`] lists the steps, so the paper's grid and the authors' released-code grid (sampling
//! starts one grid step above the inversion end; the final step lands on `max(1, t − 20)`) are
//! both plain data.

use crate::Error;
use crate::schedule::{NoiseSchedule, Timesteps};
use crate::ziggurat;
use rand_core::Rng;

/// Largest number of steps a [`Plan`] holds.
pub const MAX_PLAN_STEPS: usize = 1024;

/// A class-conditional noise predictor ε_θ(z_t, t, c) — a DiT, or an analytic toy in tests.
///
/// One call handles a batch of `classes.len()` latents of [`latent_len`](Self::latent_len)
/// values each, laid out back to back, all at the same timestep. The implementor writes ε
/// (only the ε channels, not a learned variance) into `eps`, which has the length of `latents`.
pub trait NoisePredictor {
    /// What can go wrong inside the model.
    type Error;

    /// Values in one latent (C·H·W).
    fn latent_len(&self) -> usize;

    /// Predict ε for a batch at training step `t` (an index into the noise schedule).
    fn predict(
        &mut self,
        latents: &[f32],
        t: u32,
        classes: &[u32],
        eps: &mut [f32],
    ) -> Result<(), Self::Error>;
}

impl<P: NoisePredictor + ?Sized> NoisePredictor for &mut P {
    type Error = P::Error;
    fn latent_len(&self) -> usize {
        (**self).latent_len()
    }
    fn predict(
        &mut self,
        latents: &[f32],
        t: u32,
        classes: &[u32],
        eps: &mut [f32],
    ) -> Result<(), Self::Error> {
        (**self).predict(latents, t, classes, eps)
    }
}

/// A failed DDIM loop: bad sizes or timesteps, or the model's own error.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError<E> {
    /// Buffers or plan did not fit the schedule or the predictor.
    Core(Error),
    /// The predictor failed.
    Predictor(E),
}

impl<E: core::fmt::Display> core::fmt::Display for RunError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RunError::Core(e) => e.fmt(f),
            RunError::Predictor(e) => write!(f, "noise predictor failed: {e}"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for RunError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RunError::Core(e) => Some(e),
            RunError::Predictor(e) => Some(e),
        }
    }
}

impl<E> From<Error> for RunError<E> {
    fn from(e: Error) -> Self {
        RunError::Core(e)
    }
}

/// One DDIM update: evaluate ε at `t`, move the latent from level `from` to level `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// Timestep given to the predictor.
    pub t: u32,
    /// Noise level of the input latent (index into ᾱ).
    pub from: u32,
    /// Noise level of the output latent.
    pub to: u32,
}

/// Where an inversion step `t_{k−1} → t_k` evaluates the predictor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InversionEps {
    /// At the source `t_{k−1}`: the paper's Eq. 3,
    /// `z_{t+1} = √(ᾱ_{t+1}/ᾱ_t)·z_t + √ᾱ_{t+1}·(√(1/ᾱ_{t+1} − 1) − √(1/ᾱ_t − 1))·ε_θ(z_t, t, C)`.
    Source,
    /// At the target `t_k`, as the authors' released code does.
    Target,
}

/// The ordered steps of one DDIM pass.
#[derive(Clone)]
pub struct Plan {
    len: usize,
    steps: [Step; MAX_PLAN_STEPS],
}

impl core::fmt::Debug for Plan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.steps()).finish()
    }
}

impl Plan {
    fn from_iter(it: impl Iterator<Item = Step>) -> Result<Self, Error> {
        let mut steps = [Step::default(); MAX_PLAN_STEPS];
        let mut len = 0;
        for s in it {
            if len == MAX_PLAN_STEPS {
                return Err(Error::TooManySteps {
                    requested: len + 1,
                    max: MAX_PLAN_STEPS,
                });
            }
            steps[len] = s;
            len += 1;
        }
        if len == 0 {
            return Err(Error::ZeroSteps);
        }
        Ok(Plan { len, steps })
    }

    /// Inversion over `grid` (paper Eq. 3): `t_0 → t_1 → … → t_T`, ε evaluated where `at` says.
    ///
    /// Errors when the grid has a single point (no step).
    pub fn inversion(grid: &Timesteps, at: InversionEps) -> Result<Self, Error> {
        let t = grid.as_slice();
        Self::from_iter(t.windows(2).map(|w| Step {
            t: match at {
                InversionEps::Source => w[0],
                InversionEps::Target => w[1],
            },
            from: w[0],
            to: w[1],
        }))
    }

    /// Sampling over `grid` (paper Eq. 2): `t_T → … → t_0`, ε evaluated at the source.
    ///
    /// It visits the grid in the reverse order of [`Plan::inversion`]; with
    /// [`InversionEps::Target`] each step evaluates ε at the same timestep as its inversion step.
    pub fn sampling(grid: &Timesteps) -> Result<Self, Error> {
        let t = grid.as_slice();
        Self::from_iter(t.windows(2).rev().map(|w| Step {
            t: w[1],
            from: w[1],
            to: w[0],
        }))
    }

    /// The sampling loop of the authors' released code: ε evaluated at
    /// `t = start, start − s, …, 0` with stride `s = train_steps / inference_steps`, each step
    /// landing on `max(1, t − s)`. With DiT's grid (`1000 / 50`, start 620) that is 32 steps:
    /// 620→600, …, 40→20, 20→1 and a last 0→1.
    pub fn released_code_sampling(
        train_steps: usize,
        inference_steps: usize,
        start: u32,
    ) -> Result<Self, Error> {
        if inference_steps == 0 || train_steps == 0 {
            return Err(Error::ZeroSteps);
        }
        if inference_steps > train_steps {
            return Err(Error::GridTooFine {
                steps: inference_steps,
                train_steps,
            });
        }
        if start as usize >= train_steps {
            return Err(Error::TimestepOutOfRange {
                t: start,
                train_steps,
            });
        }
        let stride = (train_steps / inference_steps) as u32;
        let count = start / stride + 1;
        Self::from_iter((0..count).map(|k| {
            let t = start - k * stride;
            Step {
                t,
                from: t,
                to: t.saturating_sub(stride).max(1),
            }
        }))
    }

    /// The steps in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps[..self.len]
    }

    fn check(&self, schedule: &NoiseSchedule) -> Result<(), Error> {
        let n = schedule.train_steps();
        for s in self.steps() {
            for t in [s.t, s.from, s.to] {
                if t as usize >= n {
                    return Err(Error::TimestepOutOfRange { t, train_steps: n });
                }
            }
        }
        Ok(())
    }
}

/// The coefficients `(a, b)` of one DDIM update `z_to = a·z + b·ε` (Eq. 2 and Eq. 3).
///
/// Expanding `√ᾱ_to · (z − √(1−ᾱ_from)·ε)/√ᾱ_from + √(1−ᾱ_to)·ε` gives
/// `a = √(ᾱ_to/ᾱ_from)` and `b = √(1−ᾱ_to) − a·√(1−ᾱ_from)`; computed in f64.
#[inline]
pub fn step_coefficients(alpha_bar_from: f64, alpha_bar_to: f64) -> (f64, f64) {
    let a = libm::sqrt(alpha_bar_to / alpha_bar_from);
    let b = libm::sqrt(1.0 - alpha_bar_to) - a * libm::sqrt(1.0 - alpha_bar_from);
    (a, b)
}

/// Apply one DDIM update in place (η = 0). `z` and `eps` must have equal lengths; extra
/// elements of the longer slice are left alone.
#[inline]
pub fn step(z: &mut [f32], eps: &[f32], alpha_bar_from: f64, alpha_bar_to: f64) {
    let (a, b) = step_coefficients(alpha_bar_from, alpha_bar_to);
    for (zi, &ei) in z.iter_mut().zip(eps) {
        *zi = (a * f64::from(*zi) + b * f64::from(ei)) as f32;
    }
}

/// Run every step of `plan` on a batch: `latents` holds `classes.len()` latents back to back and
/// is updated in place; `eps` is scratch of the same length.
///
/// Errors before any model call when lengths or timesteps do not fit.
pub fn run<P: NoisePredictor + ?Sized>(
    predictor: &mut P,
    schedule: &NoiseSchedule,
    plan: &Plan,
    latents: &mut [f32],
    classes: &[u32],
    eps: &mut [f32],
) -> Result<(), RunError<P::Error>> {
    let want = classes.len() * predictor.latent_len();
    if latents.len() != want {
        return Err(Error::BufferLength {
            what: "latents",
            expected: want,
            got: latents.len(),
        }
        .into());
    }
    if eps.len() != want {
        return Err(Error::BufferLength {
            what: "eps scratch",
            expected: want,
            got: eps.len(),
        }
        .into());
    }
    plan.check(schedule)?;
    for s in plan.steps() {
        predictor
            .predict(latents, s.t, classes, eps)
            .map_err(RunError::Predictor)?;
        // Indices were checked against the schedule above.
        let from = schedule.alpha_bar(s.from).unwrap_or(1.0);
        let to = schedule.alpha_bar(s.to).unwrap_or(1.0);
        step(latents, eps, from, to);
    }
    Ok(())
}

/// DDIM inversion over `grid` (paper Eq. 3, ε evaluated where `at` says): clean latents at
/// `t_0` in, `z_T` out.
pub fn invert<P: NoisePredictor + ?Sized>(
    predictor: &mut P,
    schedule: &NoiseSchedule,
    grid: &Timesteps,
    at: InversionEps,
    latents: &mut [f32],
    classes: &[u32],
    eps: &mut [f32],
) -> Result<(), RunError<P::Error>> {
    let plan = Plan::inversion(grid, at)?;
    run(predictor, schedule, &plan, latents, classes, eps)
}

/// DDIM sampling over `grid` (paper Eq. 2): `z_T` in, clean latents at `t_0` out.
pub fn sample<P: NoisePredictor + ?Sized>(
    predictor: &mut P,
    schedule: &NoiseSchedule,
    grid: &Timesteps,
    latents: &mut [f32],
    classes: &[u32],
    eps: &mut [f32],
) -> Result<(), RunError<P::Error>> {
    let plan = Plan::sampling(grid)?;
    run(predictor, schedule, &plan, latents, classes, eps)
}

/// The DDPM forward process (paper Eq. 1), the mapping of the Base-DDPM ablation:
/// `z_t = √ᾱ_t · z_0 + √(1−ᾱ_t) · ε` with fresh standard-normal ε from `rng`.
pub fn ddpm_forward<R: Rng + ?Sized>(z: &mut [f32], alpha_bar_t: f64, rng: &mut R) {
    let (a, b) = (libm::sqrt(alpha_bar_t), libm::sqrt(1.0 - alpha_bar_t));
    let mut noise = [0.0f32; 256];
    for chunk in z.chunks_mut(256) {
        let noise = &mut noise[..chunk.len()];
        ziggurat::fill_f32(rng, noise);
        for (zi, &e) in chunk.iter_mut().zip(noise.iter()) {
            *zi = (a * f64::from(*zi) + b * f64::from(e)) as f32;
        }
    }
}

/// Classifier-free guidance: scale and the class id of the unconditional ("null") embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guidance {
    /// `w`; 1 means a single conditional call.
    pub scale: f32,
    /// The null class (1000 for ImageNet DiT, the number of classes in general).
    pub null_class: u32,
}

impl Guidance {
    /// Checks that the scale is finite and non-negative.
    pub fn new(scale: f32, null_class: u32) -> Result<Self, Error> {
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(Error::InvalidGuidance);
        }
        Ok(Guidance { scale, null_class })
    }

    /// Whether an unconditional pass is needed (`w ≠ 1`).
    pub fn is_active(&self) -> bool {
        self.scale != 1.0
    }
}

/// Combine conditional and unconditional predictions in place:
/// `ε = ε_uncond + w · (ε_cond − ε_uncond)`, written into `cond`.
#[inline]
pub fn combine_guidance(cond: &mut [f32], uncond: &[f32], scale: f32) {
    for (c, &u) in cond.iter_mut().zip(uncond) {
        *c = u + scale * (*c - u);
    }
}

/// A predictor wrapped with classifier-free guidance: each call runs the inner predictor once on
/// a doubled batch (conditional then null classes) and combines the halves.
///
/// The scratch buffers bound the batch: `latents` and `eps` need `2 · batch · latent_len` values,
/// `classes` `2 · batch`. With `w = 1` the inner predictor is called directly.
pub struct Guided<'s, P> {
    inner: P,
    guidance: Guidance,
    latents: &'s mut [f32],
    eps: &'s mut [f32],
    classes: &'s mut [u32],
}

impl<'s, P: NoisePredictor> Guided<'s, P> {
    /// Wrap `inner` with borrowed scratch space.
    pub fn new(
        inner: P,
        guidance: Guidance,
        latents: &'s mut [f32],
        eps: &'s mut [f32],
        classes: &'s mut [u32],
    ) -> Self {
        Guided {
            inner,
            guidance,
            latents,
            eps,
            classes,
        }
    }

    /// The wrapped predictor.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<P: NoisePredictor> NoisePredictor for Guided<'_, P> {
    type Error = RunError<P::Error>;

    fn latent_len(&self) -> usize {
        self.inner.latent_len()
    }

    fn predict(
        &mut self,
        latents: &[f32],
        t: u32,
        classes: &[u32],
        eps: &mut [f32],
    ) -> Result<(), Self::Error> {
        if !self.guidance.is_active() {
            return self
                .inner
                .predict(latents, t, classes, eps)
                .map_err(RunError::Predictor);
        }
        let (b, len) = (classes.len(), latents.len());
        if eps.len() != len {
            return Err(Error::BufferLength {
                what: "eps",
                expected: len,
                got: eps.len(),
            }
            .into());
        }
        let need = 2 * len;
        for (what, got) in [
            ("guidance latents scratch", self.latents.len()),
            ("guidance eps scratch", self.eps.len()),
        ] {
            if got < need {
                return Err(Error::BufferLength {
                    what,
                    expected: need,
                    got,
                }
                .into());
            }
        }
        if self.classes.len() < 2 * b {
            return Err(Error::BufferLength {
                what: "guidance classes scratch",
                expected: 2 * b,
                got: self.classes.len(),
            }
            .into());
        }
        let (x2, e2, c2) = (
            &mut self.latents[..need],
            &mut self.eps[..need],
            &mut self.classes[..2 * b],
        );
        x2[..len].copy_from_slice(latents);
        x2[len..].copy_from_slice(latents);
        c2[..b].copy_from_slice(classes);
        c2[b..].fill(self.guidance.null_class);
        self.inner
            .predict(x2, t, c2, e2)
            .map_err(RunError::Predictor)?;
        let (cond, uncond) = e2.split_at_mut(len);
        combine_guidance(cond, uncond, self.guidance.scale);
        eps.copy_from_slice(cond);
        Ok(())
    }
}
