//! # d3hr-core
//!
//! The mathematics of D3HR — "Taming Diffusion for Dataset Distillation with High
//! Representativeness" (Zhao et al., ICML 2025) — as a small `no_std` crate with no allocation on
//! its hot paths. Modules follow the paper's stages:
//!
//! | module | paper | what it holds |
//! |---|---|---|
//! | [`schedule`] | Eq. 1 (ᾱ) | β schedules, ᾱ in f64, DDIM timestep grids |
//! | [`ddim`] | Eq. 2 (sampling), Eq. 3 (inversion) | one step, whole loops over a [`NoisePredictor`], guidance |
//! | [`moments`] | §4.3 | streaming per-dimension mean / M2 / M3 with exact merge |
//! | [`ziggurat`] | §4.4 | Marsaglia–Tsang standard-normal sampler |
//! | [`select`] | Eq. 5–8 | group sampling: score candidate subsets, keep the best |
//!
//! Nothing here knows about files or ONNX: callers pass buffers and random generators, and a model
//! is anything that implements [`NoisePredictor`]. Parallel callers split the candidate range of
//! [`select`] across their workers ([`select::split_range`]) and merge the partial results; every
//! candidate has its own random stream, so the answer does not depend on the number of workers.
//!
//! Features:
//! * `alloc` adds owned-buffer conveniences ([`moments::Moments::new`],
//!   [`select::Scratch::new`]); everything else works without it.
//! * `std` (implies `alloc`) adds `select::threaded`, group sampling on scoped threads. Threads
//!   exist only behind this feature: without it the crate starts none.
//!
//! ## Embedding it
//! Implement [`NoisePredictor`] for your model, then run the four stages. A minimal loop with a
//! toy predictor (ε ignores x, so inversion and sampling are exact inverses):
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use d3hr_core::{ddim, moments::Moments, NoisePredictor};
//! use d3hr_core::schedule::{NoiseSchedule, Spacing, Timesteps};
//! use d3hr_core::select::{self, Config, Lambdas, Loss, Scratch, Targets};
//!
//! struct Toy;
//! impl NoisePredictor for Toy {
//!     type Error = core::convert::Infallible;
//!     fn latent_len(&self) -> usize { 4 }
//!     fn predict(&mut self, _x: &[f32], t: u32, _c: &[u32], eps: &mut [f32])
//!         -> Result<(), Self::Error> {
//!         eps.iter_mut().for_each(|e| *e = (t as f32 * 0.01).sin());
//!         Ok(())
//!     }
//! }
//!
//! let schedule = NoiseSchedule::dit();
//! // The paper's grid: DiT's 50-step leading grid, first T = 31 steps (t = 0 … 620).
//! let grid = Timesteps::new(Spacing::Leading, 1000, 50, 0)?.prefix(31)?;
//! let (classes, mut eps) = ([7u32; 3], [0.0f32; 12]);
//!
//! // Stage 1 + 2: invert a batch of three latents and stream it into the moments. The paper's
//! // Eq. 3 evaluates ε at each step's source (`InversionEps::Source`); ε at the target, as the
//! // authors' code does, makes sampling retrace every step exactly, which this toy shows.
//! let mut z = [0.1, -0.2, 0.3, 0.0, 0.5, 0.1, -0.4, 0.2, 0.0, 0.3, 0.2, -0.1];
//! let x0 = z;
//! ddim::invert(&mut Toy, &schedule, &grid, ddim::InversionEps::Target, &mut z, &classes, &mut eps)?;
//! let mut m = Moments::new(4);
//! m.add_batch(&z)?;
//! let (mut mu, mut sigma, mut gamma) = ([0.0f32; 4], [0.0f32; 4], [0.0f32; 4]);
//! m.finalize_into(false, &mut mu, &mut sigma, &mut gamma)?;
//!
//! // Stage 3: group sampling, IPC 3, m = 100 candidates; regenerate the winner.
//! let cfg = Config::new(42, 3, 4, Loss::Paper, Lambdas::PAPER)?;
//! let targets = Targets { mean: &mu, std: &sigma, skew: Some(&gamma) };
//! let best = select::search_joint(&cfg, &targets, 0..100, &mut Scratch::new(&cfg))?;
//! let (mut g, mut latents) = ([0.0f32; 12], [0.0f32; 12]);
//! select::draw_candidate(&cfg, best.index, &mut g)?;
//! select::to_latents(&targets, &g, &mut latents)?;
//!
//! // Stage 4: sample back to clean latents (then decode them with your VAE).
//! ddim::sample(&mut Toy, &schedule, &grid, &mut latents, &classes, &mut eps)?;
//! // Round trip of the real latents is exact for this predictor.
//! ddim::sample(&mut Toy, &schedule, &grid, &mut z, &classes, &mut eps)?;
//! assert!(z.iter().zip(&x0).all(|(a, b)| (a - b).abs() < 1e-4));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/pipeline.rs` runs the same loop on per-class Gaussian data with the exact
//! (analytic) noise predictor and compares random, joint and per-dimension selection:
//! `cargo run --release -p d3hr-core --features alloc --example pipeline`.
//!
//! The crate has one `unsafe` module: the AVX2 fast path of [`ziggurat::fill_f32`] (table gathers
//! behind runtime CPU detection, with a scalar path that gives the same values elsewhere).
//! Everything else is checked by `#![deny(unsafe_code)]`.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod ddim;
mod error;
pub mod moments;
pub mod schedule;
pub mod select;
pub mod ziggurat;
#[rustfmt::skip]
#[allow(clippy::all)]
mod ziggurat_tables;

pub use ddim::NoisePredictor;
pub use error::Error;
