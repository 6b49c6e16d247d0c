//! One module per command: each takes its arguments, the global options and the reporter, and
//! does the whole command. The helpers here are shared by the commands that read data, load the
//! models or record a run identity.

pub mod distill;
pub mod inspect;
pub mod invert;
pub mod merge;
pub mod sample;

use anyhow::{Context, Result};
use d3hr_cli::cli::{DataArgs, Global, RunArgs, SamplingArgs};
use d3hr_cli::data::{self, Dataset};
use d3hr_cli::fsx;
use d3hr_cli::identity::Identity;
use d3hr_cli::models::Models;
use d3hr_cli::progress::Reporter;
use d3hr_cli::settings::{Mapper, Selection};
use serde_json::json;
use std::path::Path;

/// The run's seed: given, else the one an interrupted run recorded (`--resume`), else drawn
/// from the clock; always printed.
fn seed(run: &RunArgs, recorded: Option<u64>, rep: &Reporter) -> u64 {
    let seed = run.seed.or(recorded).unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
    });
    rep.result(
        json!({"event": "seed", "seed": seed}),
        &format!("seed: {seed}"),
    );
    seed
}

/// The model files given by flag, for the checks that outputs stay apart from inputs.
fn model_inputs(g: &Global) -> Vec<(&'static str, &Path)> {
    [
        ("--onnx", &g.onnx),
        ("--vae-encoder", &g.vae_encoder),
        ("--vae-decoder", &g.vae_decoder),
    ]
    .into_iter()
    .filter_map(|(f, p)| p.as_deref().map(|p| (f, p)))
    .collect()
}

/// The Fashion-MNIST data default belongs to the embedded model: with graphs of the user's own,
/// `--data` must say what to distill (a run with ImageNet-sized graphs would otherwise start on
/// 60,000 padded Fashion-MNIST images).
fn require_data_for_own_models(g: &Global, d: &DataArgs) -> Result<()> {
    if d.data.is_none() && (g.onnx.is_some() || g.vae_encoder.is_some()) {
        anyhow::bail!(
            "--data is required with your own models (--onnx / --vae-encoder): the Fashion-MNIST default belongs to the embedded model"
        );
    }
    Ok(())
}

fn data_inputs(d: &DataArgs) -> Vec<(&'static str, &Path)> {
    let mut v = vec![(
        "--data",
        d.data.as_deref().unwrap_or(Path::new(data::DEFAULT_DATA)),
    )];
    if let Some(m) = &d.class_map {
        v.push(("--class-map", m.as_path()));
    }
    v
}

/// The identity entries of the data choice.
fn data_identity(id: &mut Identity, d: &DataArgs, ds: &Dataset) -> Result<()> {
    id.set("--data", fsx::resolve(&ds.source).display());
    id.set("--data (contents)", ds.fingerprint()?);
    id.set_opt(
        "--class-map",
        d.class_map.as_deref().map(fsx::sha256).transpose()?,
    );
    // What `--classes` and `--shard` resolved to (`auto` takes them from a job array), so that a
    // task's output is the same bytes as the same part asked for by number.
    id.set_opt("--classes", d.classes.as_ref().map(|_| ds.class_ids()));
    id.set_opt("--shard", ds.shard.map(|(i, n)| format!("{i}/{n}")));
    id.set_opt("--limit-per-class", d.limit_per_class);
    id.set("--batch", d.batch);
    Ok(())
}

fn mapper_identity(id: &mut Identity, m: &Mapper) {
    id.set("--profile", format!("{:?}", m.profile));
    id.set("--steps", m.grid.len().saturating_sub(1));
    id.set("--guidance", m.guidance);
    id.set("--mapping", format!("{:?}", m.mapping));
    id.set("--posterior", format!("{:?}", m.posterior));
    // Every knob of the profile, named or not above.
    id.set("profile settings", format!("{m:?}"));
}

fn selection_identity(id: &mut Identity, sel: &Selection, s: &SamplingArgs) {
    id.set("--ipc", sel.ipc);
    id.set("--mode", format!("{:?}", sel.mode));
    id.set("--m", sel.m);
    id.set(
        "--lambda",
        format!(
            "{},{},{}",
            sel.lambdas.mu, sel.lambdas.sigma, sel.lambdas.gamma
        ),
    );
    id.set_opt("--resize", s.resize);
    id.set("--save-latents", s.save_latents);
    id.set("sampling settings", format!("{sel:?}"));
}

fn model_identity(id: &mut Identity, m: &Models) {
    id.set("--onnx", &m.dit_sha256);
    id.set("--vae-encoder", &m.encoder_sha256);
    id.set("--vae-decoder", &m.decoder_sha256);
}

/// A job-array task names its part of the data in every error about the data.
fn in_part<T>(ds: &Dataset, r: Result<T>) -> Result<T> {
    match &ds.part {
        Some(part) => r.with_context(|| part.clone()),
        None => r,
    }
}

/// Print what listing the data passed over.
fn data_notes(ds: &Dataset, rep: &Reporter) {
    if let Some(part) = &ds.part {
        rep.note(part);
    }
    for n in &ds.notes {
        rep.note(n);
    }
}
