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
//! Nothing here knows about files, threads or ONNX: callers pass buffers and random generators,
//! and a model is anything that implements [`NoisePredictor`]. Parallel callers split the candidate
//! range of [`select`] across threads and merge the partial results; every candidate has its own
//! random stream, so the answer does not depend on the number of threads.
//!
//! The `alloc` feature adds owned-buffer conveniences ([`moments::Moments::new`],
//! [`select::Scratch::new`]); everything else works without it.
//!
//! ## The whole loop with a toy model
//! `examples/pipeline.rs` runs invert → fit → select → sample with an analytic predictor:
//! `cargo run -p d3hr-core --features alloc --example pipeline`.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

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
