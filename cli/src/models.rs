//! The DiT and VAE graphs: the user's, or the embedded Fashion-MNIST defaults.

use crate::cli::{Ep, Global};
use crate::fsx::sha256;
use anyhow::{Context, Result, bail};
use d3hr_ort::{Device, OrtDit, OrtVae, SessionConfig};
use std::path::{Path, PathBuf};

/// Where the embedded default graphs live (the repository's `models/fashion_mnist/onnx/`).
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fashion_mnist/onnx")
}

pub struct Models {
    pub dit: Option<OrtDit>,
    pub vae: OrtVae,
    pub dit_path: PathBuf,
    pub dit_sha256: String,
    pub encoder_path: Option<PathBuf>,
    pub encoder_sha256: String,
    pub decoder_path: Option<PathBuf>,
    pub decoder_sha256: String,
}

pub fn session_config(g: &Global) -> SessionConfig {
    SessionConfig {
        device: match g.ep {
            Ep::Cpu => Device::Cpu,
            Ep::Cuda => Device::Cuda { device_id: 0 },
        },
        threads: g.threads,
        ort_lib: g.ort_lib.clone(),
    }
}

fn pick(flag: &Option<PathBuf>, name: &str, file: &str) -> Result<PathBuf> {
    let p = match flag {
        Some(p) => p.clone(),
        None => default_dir().join(file),
    };
    if !p.is_file() {
        if flag.is_some() {
            bail!("--{name} {}: no such file", p.display());
        }
        bail!(
            "the embedded default model {} is missing (pass --{name} to use your own graph)",
            p.display()
        );
    }
    Ok(p)
}

impl Models {
    /// Load what a command needs: the DiT (if `dit`), the encoder (if `encoder`), the decoder
    /// (if `decoder`).
    pub fn load(
        g: &Global,
        dit: bool,
        encoder: bool,
        decoder: bool,
        guidance: f32,
    ) -> Result<Models> {
        let cfg = session_config(g);
        let dit_path = pick(&g.onnx, "onnx", "dit.onnx")?;
        let dit_sha256 = sha256(&dit_path)?;
        let dit = if dit {
            Some(
                OrtDit::load(&dit_path, &cfg)
                    .with_context(|| "loading the DiT")?
                    .with_guidance(guidance)?,
            )
        } else {
            None
        };
        let encoder_path = encoder
            .then(|| pick(&g.vae_encoder, "vae-encoder", "vae_encoder.onnx"))
            .transpose()?;
        let decoder_path = decoder
            .then(|| pick(&g.vae_decoder, "vae-decoder", "vae_decoder.onnx"))
            .transpose()?;
        let encoder_sha256 = sha256_or_empty(&encoder_path)?;
        let decoder_sha256 = sha256_or_empty(&decoder_path)?;
        let vae = OrtVae::load(encoder_path.as_deref(), decoder_path.as_deref(), &cfg)
            .with_context(|| "loading the VAE")?;
        if let Some(d) = &dit
            && d.latent_shape() != vae.latent_shape()
        {
            bail!(
                "the DiT {} works on latents {:?} but the VAE on {:?}",
                dit_path.display(),
                d.latent_shape(),
                vae.latent_shape()
            );
        }
        Ok(Models {
            dit,
            vae,
            dit_path,
            dit_sha256,
            encoder_path,
            encoder_sha256,
            decoder_path,
            decoder_sha256,
        })
    }

    pub fn dit(&mut self) -> &mut OrtDit {
        self.dit.as_mut().expect("DiT loaded for this command")
    }
}

/// SHA-256 of an optional graph file, "" when the command does not use it.
fn sha256_or_empty(p: &Option<PathBuf>) -> Result<String> {
    p.as_deref()
        .map(sha256)
        .transpose()
        .map(Option::unwrap_or_default)
}

pub fn display(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map(Path::display)
        .map(|d| d.to_string())
        .unwrap_or_default()
}
