//! Raw arguments → checked settings, before any work starts.

use crate::cli::{ProfileArgs, SamplingArgs};
use crate::words::{InversionEps, Mapping, Mode, Posterior, Profile, SkewTarget};
use anyhow::{Result, bail};
use d3hr_core::ddim::{self, Plan};
use d3hr_core::schedule::{NoiseSchedule, Spacing, Timesteps};
use d3hr_core::select::{Lambdas, Loss};

/// DiT's grid: 50 leading steps over 1000 training steps (t = 0, 20, …, 980).
pub const TRAIN_STEPS: usize = 1000;
pub const GRID_STEPS: usize = 50;

/// The domain-mapping settings (stage 1–2), recorded in the statistics file.
#[derive(Debug, Clone)]
pub struct Mapper {
    pub profile: Profile,
    pub grid: Timesteps,
    pub guidance: f32,
    pub inversion_eps: InversionEps,
    pub mapping: Mapping,
    pub posterior: Posterior,
}

impl Mapper {
    pub fn from_args(p: &ProfileArgs) -> Result<Mapper> {
        let (steps, guidance, inversion_eps, posterior) = match p.profile {
            Profile::Paper => (31, 1.0, InversionEps::Source, Posterior::Mean),
            Profile::Reference => (30, 4.0, InversionEps::Target, Posterior::Sample),
        };
        let steps = p.steps.map_or(steps, |s| s.get());
        let full = Timesteps::new(Spacing::Leading, TRAIN_STEPS, GRID_STEPS, 0)?;
        if steps >= full.len() {
            bail!(
                "--steps {steps}: at most {} steps fit DiT's 50-step grid",
                full.len() - 1
            );
        }
        let guidance = p.guidance.unwrap_or(guidance);
        if !(guidance.is_finite() && guidance >= 0.0) {
            bail!("--guidance {guidance}: must be a finite number >= 0");
        }
        Ok(Mapper {
            profile: p.profile,
            grid: full.prefix(steps)?,
            guidance,
            inversion_eps: p.inversion_eps.unwrap_or(inversion_eps),
            mapping: p.mapping.unwrap_or(Mapping::Ddim),
            posterior: p.posterior.unwrap_or(posterior),
        })
    }

    pub fn schedule() -> NoiseSchedule {
        NoiseSchedule::dit()
    }

    /// The core's name for [`Mapper::inversion_eps`].
    pub fn eps_at(&self) -> ddim::InversionEps {
        match self.inversion_eps {
            InversionEps::Source => ddim::InversionEps::Source,
            InversionEps::Target => ddim::InversionEps::Target,
        }
    }
}

/// The sampling plan for statistics made on `grid`: the same grid back down (paper), or the
/// released code's loop from one grid step above the inversion end.
pub fn sampling_plan(profile: Profile, grid: &Timesteps) -> Result<Plan> {
    Ok(match profile {
        Profile::Paper => Plan::sampling(grid)?,
        Profile::Reference => {
            let stride = (TRAIN_STEPS / GRID_STEPS) as u32;
            let last = *grid.as_slice().last().unwrap_or(&0);
            Plan::released_code_sampling(TRAIN_STEPS, GRID_STEPS, last + stride)?
        }
    })
}

/// Group-sampling settings (stage 3).
#[derive(Debug, Clone)]
pub struct Selection {
    pub ipc: usize,
    pub mode: Mode,
    pub m: u64,
    pub loss: Loss,
    pub lambdas: Lambdas,
    /// Paper loss: γ target from the data (else 0, as the paper says).
    pub skew_from_data: bool,
    /// σ target: unbiased (released code) or population.
    pub unbiased_std: bool,
    /// Keep every candidate's normals for an independent check (`--save-candidates`).
    pub save_candidates: bool,
}

impl Selection {
    pub fn from_args(s: &SamplingArgs, profile: Profile) -> Result<Selection> {
        let (loss, lambdas, unbiased) = match profile {
            Profile::Paper => (Loss::Paper, Lambdas::PAPER, false),
            Profile::Reference => (Loss::ReleasedCode, Lambdas::RELEASED_CODE, true),
        };
        let lambdas = match &s.lambda {
            None => lambdas,
            Some(spec) => {
                let v: Vec<f64> = spec
                    .split(',')
                    .map(|x| x.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        anyhow::anyhow!("--lambda `{spec}`: expected three numbers MU,SIGMA,GAMMA")
                    })?;
                if v.len() != 3 || v.iter().any(|x| !x.is_finite() || *x < 0.0) {
                    bail!("--lambda `{spec}`: expected three finite numbers >= 0");
                }
                Lambdas {
                    mu: v[0],
                    sigma: v[1],
                    gamma: v[2],
                }
            }
        };
        // Per-dimension selection needs a loss that is a sum over dimensions: the paper's.
        let loss = if s.mode == Mode::PerDim {
            Loss::Paper
        } else {
            loss
        };
        let m = match (s.mode, profile) {
            (Mode::Random, _) => 1,
            (Mode::Joint, Profile::Paper) => s.m.unwrap_or(100_000),
            // The authors' default `--m 100000` draws 1000 × 100000 candidates.
            (Mode::Joint, Profile::Reference) => s.m.unwrap_or(100_000_000),
            (Mode::PerDim, _) => s.m.unwrap_or(1_000),
        };
        if m == 0 {
            bail!("--m 0: at least one candidate is needed");
        }
        if loss == Loss::ReleasedCode && s.ipc.get() < 2 {
            bail!(
                "--ipc 1 with the reference profile's loss: its unbiased std needs at least 2 images per class (use --profile paper)"
            );
        }
        if s.skew_target == SkewTarget::Data && loss != Loss::Paper {
            bail!(
                "--skew-target data: the reference profile's loss has no skewness target (its skewness term aims at 0); use it with --profile paper or --mode per-dim"
            );
        }
        if s.save_candidates && s.mode == Mode::PerDim {
            bail!(
                "--save-candidates: joint and random modes only (per-dim keeps no whole candidates)"
            );
        }
        Ok(Selection {
            ipc: s.ipc.get(),
            mode: s.mode,
            m,
            loss,
            lambdas,
            skew_from_data: s.skew_target == SkewTarget::Data,
            unbiased_std: unbiased,
            save_candidates: s.save_candidates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn distill(args: &[&str]) -> crate::cli::DistillArgs {
        let mut argv = vec!["d3hr-cli", "distill", "--ipc", "10", "--out", "o"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Distill(d) => d,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Each profile is its source: the paper's Eq. 3 (ε at the source step) and γ = 0; the
    /// released code's ε at the target step and its 1000 × 100000 candidates.
    #[test]
    fn profiles_follow_their_sources() {
        let p = distill(&[]);
        let (map, sel) = (
            Mapper::from_args(&p.profile).unwrap(),
            Selection::from_args(&p.sampling, p.profile.profile).unwrap(),
        );
        assert_eq!(map.inversion_eps, InversionEps::Source);
        assert!(!sel.skew_from_data);
        assert_eq!((sel.loss, sel.m), (Loss::Paper, 100_000));

        let r = distill(&["--profile", "reference"]);
        let (map, sel) = (
            Mapper::from_args(&r.profile).unwrap(),
            Selection::from_args(&r.sampling, r.profile.profile).unwrap(),
        );
        assert_eq!(map.inversion_eps, InversionEps::Target);
        assert_eq!((sel.loss, sel.m), (Loss::ReleasedCode, 100_000_000));

        let o = distill(&[
            "--inversion-eps",
            "target",
            "--skew-target",
            "data",
            "--m",
            "7",
        ]);
        let (map, sel) = (
            Mapper::from_args(&o.profile).unwrap(),
            Selection::from_args(&o.sampling, o.profile.profile).unwrap(),
        );
        assert_eq!(map.inversion_eps, InversionEps::Target);
        assert!(sel.skew_from_data);
        assert_eq!(sel.m, 7);
    }
}
