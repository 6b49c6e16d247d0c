//! # d3hr-ort (skeleton)
//!
//! The ONNX Runtime adapter — `OrtDit` implementing [`d3hr_core::NoisePredictor`], `OrtVae`,
//! CPU/CUDA execution providers — is not written yet (issue 3). This crate exists so the workspace
//! has its final shape; it exports nothing but the trait it will implement.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use d3hr_core::NoisePredictor;
