//! `<out>/manifest.json`: what a `distill` or `sample` run wrote, with what, and how (the tool,
//! the command line, the seed, the run identity, the models, the statistics' metadata, the
//! selection settings and every class's files with sizes and SHA-256). `--resume` and `inspect`
//! read it back.

use crate::fsx;
use crate::output::FileRecord;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The largest manifest read back (a few kB to a few MB in practice).
const MAX_BYTES: u64 = 256 << 20;

/// The manifest of the output folder `out`.
pub fn path(out: &Path) -> PathBuf {
    out.join("manifest.json")
}

/// Read the manifest file `manifest` as JSON.
pub fn read(manifest: &Path) -> Result<serde_json::Value> {
    let bytes = fsx::read_regular(manifest, "manifest", MAX_BYTES)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: invalid JSON", manifest.display()))
}

/// The files a manifest records for the class folder `name`, if it records them.
pub fn class_files(m: &serde_json::Value, name: &str) -> Option<Vec<FileRecord>> {
    m["classes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .and_then(|c| serde_json::from_value(c["files"].clone()).ok())
}

#[cfg(feature = "runtime")]
pub use writer::Manifest;

#[cfg(feature = "runtime")]
mod writer {
    use crate::fsx::write_atomic;
    use crate::identity::Identity;
    use crate::models::{self, Models};
    use crate::pipeline::SampleJob;
    use crate::settings::Selection;
    use crate::stats::StatsFile;
    use anyhow::Result;
    use serde_json::json;
    use std::num::NonZeroUsize;
    use std::path::Path;

    /// What a finished `distill` or `sample` run records.
    pub struct Manifest<'a> {
        /// `distill` or `sample`.
        pub command: &'a str,
        pub stats: &'a StatsFile,
        pub models: &'a Models,
        pub sel: &'a Selection,
        /// `--resize`.
        pub resize: Option<NonZeroUsize>,
        /// `--save-latents`.
        pub save_latents: bool,
        pub seed: u64,
        pub identity: &'a Identity,
        /// One record per class, in order.
        pub classes: &'a [serde_json::Value],
        pub timings: serde_json::Value,
    }

    impl<'a> Manifest<'a> {
        /// The manifest of a finished sampling job: its statistics, selection, output settings,
        /// seed and identity, with the command's per-class records and timings.
        pub fn of_job(
            command: &'a str,
            job: &SampleJob<'a>,
            models: &'a Models,
            classes: &'a [serde_json::Value],
            timings: serde_json::Value,
        ) -> Manifest<'a> {
            Manifest {
                command,
                stats: job.stats,
                models,
                sel: job.sel,
                resize: job.sampling.resize,
                save_latents: job.sampling.save_latents,
                seed: job.seed,
                identity: job.run,
                classes,
                timings,
            }
        }

        /// Write `<out>/manifest.json` (checked and atomic).
        pub fn write(&self, out: &Path) -> Result<()> {
            let Manifest {
                command,
                stats,
                models,
                sel,
                resize,
                save_latents,
                seed,
                identity,
                classes,
                ref timings,
            } = *self;
            let (copies, graph_batch) = models.dit_layout();
            let manifest = json!({
                "tool": format!("d3hr-cli {}", env!("CARGO_PKG_VERSION")),
                "command": command,
                "argv": std::env::args().collect::<Vec<_>>(),
                "seed": seed,
                "identity": identity,
                "models": {
                    "dit": {"file": models.dit_path, "sha256": models.dit_sha256, "copies": copies, "graph_batch": graph_batch},
                    "vae_encoder": {"file": models::display(&models.encoder_path), "sha256": models.encoder_sha256},
                    "vae_decoder": {"file": models::display(&models.decoder_path), "sha256": models.decoder_sha256},
                },
                "statistics": stats.meta,
                "selection": {
                    "ipc": sel.ipc, "mode": sel.mode, "m": sel.m, "loss": format!("{:?}", sel.loss),
                    "lambda": [sel.lambdas.mu, sel.lambdas.sigma, sel.lambdas.gamma],
                    "skew_target": if sel.skew_from_data { "data" } else { "zero" },
                    "std": if sel.unbiased_std { "unbiased" } else { "population" },
                    "resize": resize, "save_latents": save_latents, "save_candidates": sel.save_candidates,
                },
                "classes": classes,
                "timings": timings,
                "layout": "<out>/<class>/<k>.png",
            });
            write_atomic(
                &super::path(out),
                serde_json::to_string_pretty(&manifest)?.as_bytes(),
            )
        }
    }
}
