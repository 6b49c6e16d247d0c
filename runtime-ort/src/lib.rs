//! # d3hr-ort
//!
//! The ONNX Runtime adapter of d3hr: [`OrtDit`] implements [`d3hr_core::NoisePredictor`] for an
//! exported DiT ([`OrtDitReplicas`]: several sessions of it side by side), [`OrtVae`] runs the
//! VAE encoder and decoder graphs. Graphs come from
//! `models/export_dit.py`, `models/export_vae.py` or `models/make_test_models.py`; their interface
//! (input/output names, element types, ranks, metadata) is checked when they are loaded, and every
//! error names the file and the mismatch.
//!
//! ONNX Runtime itself is loaded at run time (the `ort` crate's `load-dynamic`): from
//! [`SessionConfig::ort_lib`], else `ORT_DYLIB_PATH`, else the library inside the `onnxruntime` or
//! `onnxruntime-gpu` Python package of `$D3HR_PYTHON` / `python3` / `python`. See
//! [`find_library`]. [`Device::Cuda`] fails loudly when the CUDA provider cannot be registered.
//!
//! ```no_run
//! use d3hr_core::{ddim, schedule::{NoiseSchedule, Spacing, Timesteps}};
//! use d3hr_ort::{OrtDit, SessionConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut dit = OrtDit::load("dit.onnx".as_ref(), &SessionConfig::default())?.with_guidance(2.0)?;
//! let grid = Timesteps::new(Spacing::Leading, 1000, 50, 0)?.prefix(31)?;
//! let n = dit.latent_shape().iter().product::<usize>();
//! let (mut z, mut eps) = (vec![0.0f32; 2 * n], vec![0.0f32; 2 * n]);
//! ddim::invert(&mut dit, &NoiseSchedule::dit(), &grid, ddim::InversionEps::Source, &mut z, &[3, 7], &mut eps)?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dit;
mod error;
mod graph;
mod library;
mod replicas;
mod vae;

pub use d3hr_core::NoisePredictor;
pub use dit::OrtDit;
pub use error::{Error, Result};
pub use graph::{Device, GraphSource, SessionConfig};
pub use library::{Library, TESTED_ORT_VERSION, environment, find_library};
pub use replicas::OrtDitReplicas;
pub use vae::OrtVae;
