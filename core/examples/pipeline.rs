//! The whole D3HR loop — invert → fit → select → sample — on toy data with an analytic model,
//! no ONNX needed:
//!
//! `cargo run -p d3hr-core --features alloc --example pipeline`
//!
//! Each class c has "latents" drawn from `N(m_c, s²·I)`. For Gaussian data the ideal noise
//! predictor is known in closed form: `z_t ~ N(√ᾱ·m_c, (ᾱ·s² + 1 − ᾱ)·I)`, so
//! `ε*(z_t, t, c) = √(1−ᾱ)·(z_t − √ᾱ·m_c) / (ᾱ·s² + 1 − ᾱ)`. That is what a perfectly trained DiT
//! would output on this data, which makes every stage of the pipeline checkable by hand.

use d3hr_core::ddim::{self, Guidance, Guided};
use d3hr_core::moments::Moments;
use d3hr_core::schedule::{NoiseSchedule, Spacing, Timesteps};
use d3hr_core::select::{self, Best, Config, Lambdas, Loss, PerDimBest, Scratch, Targets};
use d3hr_core::{NoisePredictor, ziggurat};
use rand_core::SeedableRng;

const DIMS: usize = 64;
const CLASSES: u32 = 3;
const SPREAD: f32 = 0.5;

/// The exact ε-predictor for per-class Gaussian data (class `CLASSES` is the null class: the
/// mixture mean, 0).
struct GaussianOracle {
    schedule: NoiseSchedule,
}

fn class_mean(c: u32, d: usize) -> f32 {
    if c >= CLASSES {
        return 0.0;
    }
    ((c as f32 + 1.0) * 0.7 + d as f32 * 0.05).sin()
}

impl NoisePredictor for GaussianOracle {
    type Error = core::convert::Infallible;
    fn latent_len(&self) -> usize {
        DIMS
    }
    fn predict(
        &mut self,
        z: &[f32],
        t: u32,
        classes: &[u32],
        eps: &mut [f32],
    ) -> Result<(), Self::Error> {
        let ab = self
            .schedule
            .alpha_bar(t)
            .expect("t checked by the DDIM loop");
        let var = ab * f64::from(SPREAD * SPREAD) + 1.0 - ab;
        for (b, (zr, er)) in z.chunks(DIMS).zip(eps.chunks_mut(DIMS)).enumerate() {
            for d in 0..DIMS {
                let m = f64::from(class_mean(classes[b], d));
                er[d] = ((1.0 - ab).sqrt() * (f64::from(zr[d]) - ab.sqrt() * m) / var) as f32;
            }
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = 2025u64;
    println!("seed {seed}");
    let schedule = NoiseSchedule::dit();
    // The paper's grid: DiT's 50-step leading grid, first T = 31 steps (t = 0 … 620).
    let grid = Timesteps::new(Spacing::Leading, 1000, 50, 0)?.prefix(31)?;
    let mut oracle = GaussianOracle {
        schedule: schedule.clone(),
    };
    // Guidance 1 needs no scratch; the wrapper shows how a guided model plugs in.
    let (mut gx, mut ge, mut gc) = (vec![0.0; 0], vec![0.0; 0], vec![0; 0]);
    let mut model = Guided::new(
        &mut oracle,
        Guidance::new(1.0, CLASSES)?,
        &mut gx,
        &mut ge,
        &mut gc,
    );

    let (per_class, batch, ipc, m) = (2000usize, 100usize, 10usize, 20_000u64);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    for c in 0..CLASSES {
        // Stage 1: DDIM inversion (Eq. 3), streamed into the moments of stage 2.
        let mut moments = Moments::new(DIMS);
        let mut z = vec![0.0f32; batch * DIMS];
        let mut eps = vec![0.0f32; batch * DIMS];
        let classes = vec![c; batch];
        for _ in 0..per_class / batch {
            ziggurat::fill_f32(&mut rng, &mut z);
            for (i, v) in z.iter_mut().enumerate() {
                *v = class_mean(c, i % DIMS) + SPREAD * *v;
            }
            ddim::invert(
                &mut model,
                &schedule,
                &grid,
                ddim::InversionEps::Source,
                &mut z,
                &classes,
                &mut eps,
            )?;
            moments.add_batch(&z)?;
        }
        // Stage 2: μ, σ, γ per dimension.
        let (mut mu, mut sigma, mut gamma) = (vec![0.0; DIMS], vec![0.0; DIMS], vec![0.0; DIMS]);
        moments.finalize_into(false, &mut mu, &mut sigma, &mut gamma)?;
        let targets = Targets {
            mean: &mu,
            std: &sigma,
            skew: Some(&gamma),
        };

        // Stage 3: group sampling, joint (the paper) and per-dimension (ours).
        let cfg = Config::new(seed ^ u64::from(c), ipc, DIMS, Loss::Paper, Lambdas::PAPER)?;
        let mut scratch = Scratch::new(&cfg);
        let random = select::score_candidate(&cfg, &targets, 0, &mut scratch)?;
        let joint: Best = select::search_joint(&cfg, &targets, 0..m, &mut scratch)?;
        let (mut idx, mut loss, mut g) = (vec![0; DIMS], vec![0.0; DIMS], vec![0.0; ipc * DIMS]);
        let mut per_dim = PerDimBest::new(&cfg, &mut idx, &mut loss, &mut g)?;
        select::search_per_dim(&cfg, &targets, 0..m / 10, &mut scratch, &mut per_dim)?;
        println!(
            "class {c}: loss random {random:.4}  joint(m={m}) {:.4} [candidate {}]  per-dim(m={}) {:.6}",
            joint.loss,
            joint.index,
            m / 10,
            per_dim.total_loss()
        );

        // Stage 4: DDIM-sample each choice back (Eq. 2) and see how well the distilled set's
        // mean sits on the class mean m_c (RMS over dimensions).
        let mut report = |name: &str, g: &[f32]| -> Result<(), Box<dyn std::error::Error>> {
            let mut latents = vec![0.0f32; ipc * DIMS];
            select::to_latents(&targets, g, &mut latents)?;
            let mut eps = vec![0.0f32; ipc * DIMS];
            ddim::sample(
                &mut model,
                &schedule,
                &grid,
                &mut latents,
                &vec![c; ipc],
                &mut eps,
            )?;
            let mse = (0..DIMS)
                .map(|d| {
                    let mean = (0..ipc).map(|i| latents[i * DIMS + d]).sum::<f32>() / ipc as f32;
                    (mean - class_mean(c, d)).powi(2)
                })
                .sum::<f32>()
                / DIMS as f32;
            print!("  {name} {:.4}", mse.sqrt());
            Ok(())
        };
        let mut g = vec![0.0f32; ipc * DIMS];
        print!("class {c}: RMS(subset mean − m_c):");
        select::draw_candidate(&cfg, 0, &mut g)?;
        report("random", &g)?;
        select::draw_candidate(&cfg, joint.index, &mut g)?;
        report("joint", &g)?;
        report("per-dim", per_dim.g)?;
        println!("  (σ/√n = {:.4})", SPREAD / (ipc as f32).sqrt());
    }
    Ok(())
}
