//! The DiT and VAE graphs: the user's, or the embedded Fashion-MNIST defaults.

use crate::cli::{Ep, Global};
use crate::fsx::{sha256, sha256_bytes};
use anyhow::{Context, Result, bail};
use d3hr_ort::{Device, GraphSource, OrtDitReplicas, OrtVae, SessionConfig};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// The default Fashion-MNIST graphs (`models/fashion_mnist/onnx/`), compiled into the binary:
/// an installed or copied `d3hr-cli` needs no file of the repository to run them.
mod embedded {
    pub const DIT: &[u8] = include_bytes!("../../models/fashion_mnist/onnx/dit.onnx");
    pub const VAE_ENCODER: &[u8] =
        include_bytes!("../../models/fashion_mnist/onnx/vae_encoder.onnx");
    pub const VAE_DECODER: &[u8] =
        include_bytes!("../../models/fashion_mnist/onnx/vae_decoder.onnx");
}

/// How an embedded graph is named in messages, records and manifests.
pub const EMBEDDED_PREFIX: &str = "embedded:fashion_mnist/";

/// One graph a command uses: the user's file, or a default the binary carries.
struct GraphFile {
    /// The file, or `embedded:fashion_mnist/<name>`.
    path: PathBuf,
    embedded: Option<&'static [u8]>,
}

impl GraphFile {
    fn source(&self) -> GraphSource<'_> {
        match self.embedded {
            Some(bytes) => GraphSource::Memory {
                name: &self.path,
                bytes,
            },
            None => GraphSource::File(&self.path),
        }
    }

    fn sha256(&self) -> Result<String> {
        match self.embedded {
            Some(bytes) => Ok(sha256_bytes(bytes)),
            None => sha256(&self.path),
        }
    }

    fn len(&self) -> Result<u64> {
        match self.embedded {
            Some(bytes) => Ok(bytes.len() as u64),
            None => Ok(std::fs::metadata(&self.path)
                .with_context(|| format!("reading {}", self.path.display()))?
                .len()),
        }
    }
}

/// The graphs a command runs: the DiT always, the VAE's encoder and decoder as the command needs
/// them (an unloaded half has no path and an empty hash).
pub struct Models {
    pub dit: OrtDitReplicas,
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

/// A DiT graph file under this size counts as small: on CPU it runs fastest as one one-thread
/// copy per core, in graph runs of [`SMALL_GRAPH_RUN`] latents (README, speed section: 1.5× one
/// two-thread session for the embedded int8 DiT on two cores, 1.1× for the fp32 one).
const SMALL_GRAPH_BYTES: u64 = 64 << 20;
/// The most DiT copies run side by side.
const MAX_REPLICAS: usize = 1024;
/// Latents per graph run of a small DiT on CPU.
const SMALL_GRAPH_RUN: usize = 8;

/// How the DiT at `path` runs: copies side by side, and latents per graph run within a copy
/// (`None`: the copy's whole share). Flags win; otherwise a small graph on CPU gets one copy per
/// thread and runs of [`SMALL_GRAPH_RUN`], anything else one copy and whole batches.
fn dit_plan(g: &Global, graph: &GraphFile) -> Result<(NonZeroUsize, Option<NonZeroUsize>)> {
    let (path, bytes) = (&graph.path, graph.len()?);
    let small = g.ep == Ep::Cpu && bytes < SMALL_GRAPH_BYTES;
    let replicas = g.replicas.unwrap_or(if small {
        NonZeroUsize::new(crate::threads(g)).unwrap_or(NonZeroUsize::MIN)
    } else {
        NonZeroUsize::MIN
    });
    // Each copy holds the graph (about twice its file size once loaded): refuse more copies
    // than memory holds before any is made.
    let need = bytes
        .saturating_mul(2)
        .saturating_mul(replicas.get() as u64);
    if let Some(avail) = crate::fsx::available_memory()
        && need > avail
    {
        bail!(
            "--replicas {replicas}: {replicas} copies of {} need about {:.1} GiB, more than the {:.1} GiB of memory available",
            path.display(),
            need as f64 / f64::from(1u32 << 30),
            avail as f64 / f64::from(1u32 << 30)
        );
    }
    if replicas.get() > MAX_REPLICAS {
        bail!("--replicas {replicas}: at most {MAX_REPLICAS} copies");
    }
    let run = g
        .dit_batch
        .or(small.then(|| NonZeroUsize::new(SMALL_GRAPH_RUN).unwrap()));
    Ok((replicas, run))
}

/// The graph of `--<name>`, or the embedded default `file` (its bytes `bytes`).
fn pick(flag: &Option<PathBuf>, name: &str, file: &str, bytes: &'static [u8]) -> Result<GraphFile> {
    let Some(p) = flag else {
        return Ok(GraphFile {
            path: PathBuf::from(format!("{EMBEDDED_PREFIX}{file}")),
            embedded: Some(bytes),
        });
    };
    if p.is_dir() {
        bail!(
            "--{name} {}: is a folder; expected an ONNX graph file",
            p.display()
        );
    }
    if p.exists() && !p.is_file() {
        bail!(
            "--{name} {}: is not a regular file (a pipe, socket or device)",
            p.display()
        );
    }
    if !p.is_file() {
        bail!("--{name} {}: no such file", p.display());
    }
    Ok(GraphFile {
        path: p.clone(),
        embedded: None,
    })
}

impl Models {
    /// Load what a command needs: the DiT, the encoder (if `encoder`), the decoder (if
    /// `decoder`).
    pub fn load(g: &Global, encoder: bool, decoder: bool, guidance: f32) -> Result<Models> {
        let cfg = session_config(g);
        let dit_graph = pick(&g.onnx, "onnx", "dit.onnx", embedded::DIT)?;
        let dit_sha256 = dit_graph.sha256()?;
        let (copies, run) = dit_plan(g, &dit_graph)?;
        let dit = OrtDitReplicas::load_source(dit_graph.source(), &cfg, copies)
            .with_context(|| "loading the DiT")?
            .with_guidance(guidance)?;
        let dit = match run {
            Some(n) => dit.with_max_batch(n),
            None => dit,
        };
        let encoder_graph = encoder
            .then(|| {
                pick(
                    &g.vae_encoder,
                    "vae-encoder",
                    "vae_encoder.onnx",
                    embedded::VAE_ENCODER,
                )
            })
            .transpose()?;
        let decoder_graph = decoder
            .then(|| {
                pick(
                    &g.vae_decoder,
                    "vae-decoder",
                    "vae_decoder.onnx",
                    embedded::VAE_DECODER,
                )
            })
            .transpose()?;
        let sha = |gf: &Option<GraphFile>| gf.as_ref().map_or(Ok(String::new()), GraphFile::sha256);
        let (encoder_sha256, decoder_sha256) = (sha(&encoder_graph)?, sha(&decoder_graph)?);
        let vae = OrtVae::load_sources(
            encoder_graph.as_ref().map(GraphFile::source),
            decoder_graph.as_ref().map(GraphFile::source),
            &cfg,
        )
        .with_context(|| "loading the VAE")?;
        let dit_path = dit_graph.path;
        let encoder_path = encoder_graph.map(|gf| gf.path);
        let decoder_path = decoder_graph.map(|gf| gf.path);
        if dit.latent_shape() != vae.latent_shape() {
            bail!(
                "the DiT {} works on latents {:?} but the VAE on {:?}",
                dit_path.display(),
                dit.latent_shape(),
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

    /// How the DiT runs: copies side by side, latents per graph run (`None`: whole shares).
    pub fn dit_layout(&self) -> (usize, Option<usize>) {
        (
            self.dit.replicas(),
            self.dit.max_batch().map(NonZeroUsize::get),
        )
    }

    /// The DiT and how it runs, for notes: `dit.onnx (2 copies, graph runs of ≤ 8 latents)`.
    pub fn dit_summary(&self) -> String {
        let (copies, run) = self.dit_layout();
        let copies = if copies == 1 {
            "1 copy".to_string()
        } else {
            format!("{copies} copies")
        };
        let run = run.map_or("whole shares".to_string(), |n| {
            format!("graph runs of ≤ {n} latents")
        });
        format!("{} ({copies}, {run})", self.dit_path.display())
    }
}

pub fn display(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map(Path::display)
        .map(|d| d.to_string())
        .unwrap_or_default()
}
