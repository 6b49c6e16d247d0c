//! `d3hr-cli`: distill an image dataset with D3HR. See `d3hr-cli --help`.

mod cli;
mod data;
mod fsx;
mod models;
mod pipeline;
mod progress;
mod settings;
mod stats;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::{Cli, Command, Global, RunArgs, SamplingArgs};
use data::Dataset;
use fsx::{non_empty_dir, write_atomic};
use models::Models;
use pipeline::{InvertJob, Sampled, invert_dataset, sample_class, write_class};
use progress::Reporter;
use serde_json::json;
use settings::{Mapper, Selection};
use stats::StatsFile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rep = Reporter::new(cli.global.quiet, cli.global.json);
    match run(&cli, &rep) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.global.json {
                println!("{}", json!({"event": "error", "message": format!("{e:#}")}));
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Print to stdout; a closed pipe (`d3hr-cli inspect … | head`) ends the output quietly.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }};
}

fn run(cli: &Cli, rep: &Reporter) -> Result<()> {
    match &cli.command {
        Command::Distill(a) => distill(&cli.global, a, rep),
        Command::Invert(a) => invert(&cli.global, a, rep),
        Command::Sample(a) => sample(&cli.global, a, rep),
        Command::Merge(a) => merge(a, rep),
        Command::Inspect(a) => inspect(&a.path),
    }
}

pub fn threads(g: &Global) -> usize {
    g.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.get(),
    )
}

/// The run's seed: given, or drawn from the clock; always printed.
fn seed(run: &RunArgs, rep: &Reporter) -> u64 {
    let seed = run.seed.unwrap_or_else(|| {
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

/// Refuse a non-empty output folder unless `--force` or `--resume`.
fn check_out_dir(out: &Path, run: &RunArgs) -> Result<()> {
    if run.force && run.resume {
        bail!("--force and --resume contradict each other");
    }
    if out.exists() && !out.is_dir() {
        bail!("--out {}: exists and is not a folder", out.display());
    }
    if non_empty_dir(out) && !run.force && !run.resume {
        bail!(
            "--out {}: folder is not empty (use --resume to continue a run, --force to overwrite)",
            out.display()
        );
    }
    if run.force {
        let _ = std::fs::remove_dir_all(out.join(".d3hr"));
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

fn distill(g: &Global, a: &cli::DistillArgs, rep: &Reporter) -> Result<()> {
    let mapper = Mapper::from_args(&a.profile)?;
    let sel = Selection::from_args(&a.sampling, mapper.profile)?;
    check_out_dir(&a.out, &a.run)?;
    let seed = seed(&a.run, rep);
    let t0 = Instant::now();
    let ds = Dataset::open(&a.data)?;
    if let Some(part) = &ds.part {
        rep.note(part);
    }
    let mut models = Models::load(g, true, true, true, mapper.guidance)?;
    rep.note(&format!(
        "{} classes, {} images from {} ({}); DiT {}",
        ds.classes.len(),
        ds.classes.iter().map(|c| c.items.len()).sum::<usize>(),
        ds.source.display(),
        ds.kind,
        models.dit_summary()
    ));
    let ckpt = a.out.join(".d3hr").join("invert");
    let job = InvertJob::new(&ds, &mapper, seed, &a.data, &ckpt, a.run.resume, rep);
    let (stats, invert_secs) = invert_dataset(&job, &mut models)?;
    stats.write(&a.out.join("stats.safetensors"))?;
    let per_class = sample_all(
        g,
        &stats,
        &mut models,
        &sel,
        &a.sampling,
        seed,
        &a.out,
        a.run.resume,
        a.data.batch.get(),
        rep,
    )?;
    let _ = std::fs::remove_dir_all(a.out.join(".d3hr"));
    write_manifest(
        &a.out,
        "distill",
        &stats,
        &models,
        &sel,
        &a.sampling,
        seed,
        &per_class,
        json!({
            "invert_seconds": invert_secs, "total_seconds": t0.elapsed().as_secs_f64()
        }),
    )?;
    rep.result(
        json!({"event": "done", "out": a.out, "seconds": t0.elapsed().as_secs_f64()}),
        &format!(
            "wrote {} ({:.1} s)",
            a.out.display(),
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn invert(g: &Global, a: &cli::InvertArgs, rep: &Reporter) -> Result<()> {
    let mapper = Mapper::from_args(&a.profile)?;
    if a.out.exists() && !a.run.force && !a.run.resume {
        bail!(
            "--out {}: exists (use --resume to continue, --force to overwrite)",
            a.out.display()
        );
    }
    let seed = seed(&a.run, rep);
    let ds = Dataset::open(&a.data)?;
    if let Some(part) = &ds.part {
        rep.note(part);
    }
    let mut models = Models::load(g, true, true, false, mapper.guidance)?;
    let ckpt = a.out.with_file_name(format!(
        ".{}.d3hr-partial",
        a.out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("stats")
    ));
    if a.run.force {
        let _ = std::fs::remove_dir_all(&ckpt);
    } else if !a.run.resume && ckpt.exists() {
        bail!(
            "an interrupted run left checkpoints in {}: use --resume to continue it, --force to start over",
            ckpt.display()
        );
    }
    let job = InvertJob::new(&ds, &mapper, seed, &a.data, &ckpt, a.run.resume, rep);
    let (stats, secs) = match &ds.part {
        // A job-array task names its part of the data in every error.
        Some(part) => invert_dataset(&job, &mut models).with_context(|| part.clone())?,
        None => invert_dataset(&job, &mut models)?,
    };
    stats.write(&a.out)?;
    let _ = std::fs::remove_dir_all(&ckpt);
    rep.result(
        json!({"event": "done", "out": a.out, "classes": stats.classes.len(), "seconds": secs}),
        &format!(
            "wrote {} ({} classes, {:.1} s)",
            a.out.display(),
            stats.classes.len(),
            secs
        ),
    );
    Ok(())
}

fn sample(g: &Global, a: &cli::SampleArgs, rep: &Reporter) -> Result<()> {
    let mut stats = StatsFile::read(&a.stats)?;
    let sel = Selection::from_args(&a.sampling, stats.meta.profile)?;
    if let Some(spec) = &a.classes {
        let want = data::parse_classes(spec)?;
        stats.classes.retain(|c| want.contains(&c.id));
    }
    check_out_dir(&a.out, &a.run)?;
    let seed = seed(&a.run, rep);
    let t0 = Instant::now();
    let mut models = Models::load(g, true, false, true, stats.meta.guidance)?;
    if models.dit_sha256 != stats.meta.dit_sha256 {
        bail!(
            "{} was made with another DiT (sha256 {}…, file {}) than {} (sha256 {}…)",
            a.stats.display(),
            &stats.meta.dit_sha256[..12.min(stats.meta.dit_sha256.len())],
            stats.meta.dit_file,
            models.dit_path.display(),
            &models.dit_sha256[..12]
        );
    }
    let per_class = sample_all(
        g,
        &stats,
        &mut models,
        &sel,
        &a.sampling,
        seed,
        &a.out,
        a.run.resume,
        a.batch.get(),
        rep,
    )?;
    let _ = std::fs::remove_dir_all(a.out.join(".d3hr"));
    write_manifest(
        &a.out,
        "sample",
        &stats,
        &models,
        &sel,
        &a.sampling,
        seed,
        &per_class,
        json!({
            "total_seconds": t0.elapsed().as_secs_f64(), "stats": a.stats
        }),
    )?;
    rep.result(
        json!({"event": "done", "out": a.out}),
        &format!("wrote {}", a.out.display()),
    );
    Ok(())
}

/// `42 s`, `9.5 min`, `3.2 h`.
fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[allow(clippy::too_many_arguments)]
fn sample_all(
    g: &Global,
    stats: &StatsFile,
    models: &mut Models,
    sel: &Selection,
    s: &SamplingArgs,
    seed: u64,
    out: &Path,
    resume: bool,
    batch: usize,
    rep: &Reporter,
) -> Result<Vec<serde_json::Value>> {
    if let Some(secs) = pipeline::projected_search_seconds(stats, sel, threads(g))? {
        let k = stats.classes.len() as f64;
        rep.note(&format!(
            "group sampling: {} candidates per class, projected {} per class and {} for {} classes on {} threads (--m sets fewer)",
            sel.m,
            human_seconds(secs),
            human_seconds(secs * k),
            stats.classes.len(),
            threads(g)
        ));
    }
    let mut bar = rep.stage("sample", "class", stats.classes.len() as u64);
    let mut per_class = Vec::new();
    let mut warned = false;
    for i in 0..stats.classes.len() {
        let c = &stats.classes[i];
        let dest = out.join(&c.name);
        if resume && dest.join(format!("{}.png", sel.ipc - 1)).exists() {
            per_class.push(json!({"id": c.id, "name": c.name, "resumed": true}));
            bar.inc(1);
            continue;
        }
        bar.set_message(&format!("class {}", c.name));
        let t = Instant::now();
        let sampled: Sampled = sample_class(stats, i, models, sel, seed, threads(g), batch)?;
        if sampled.gamma_dropped && !warned {
            rep.note(&format!(
                "note: IPC {} < 3: the skewness term (Eq. 8) is undefined and was dropped",
                sel.ipc
            ));
            warned = true;
        }
        write_class(
            out,
            &c.name,
            &sampled,
            models.vae.image_shape(),
            stats.meta.fit,
            s.resize.map(|r| r.get() as u32),
            models.vae.latent_shape(),
            s.save_latents,
        )?;
        per_class.push(json!({
            "id": c.id, "name": c.name, "count": c.moments.count(), "loss": sampled.loss,
            "candidate": sampled.candidate, "seconds": t.elapsed().as_secs_f64()
        }));
        bar.inc(1);
    }
    bar.finish();
    Ok(per_class)
}

#[allow(clippy::too_many_arguments)]
fn write_manifest(
    out: &Path,
    command: &str,
    stats: &StatsFile,
    models: &Models,
    sel: &Selection,
    s: &SamplingArgs,
    seed: u64,
    per_class: &[serde_json::Value],
    timings: serde_json::Value,
) -> Result<()> {
    let (copies, graph_batch) = models.dit_layout();
    let manifest = json!({
        "tool": format!("d3hr-cli {}", env!("CARGO_PKG_VERSION")),
        "command": command,
        "argv": std::env::args().collect::<Vec<_>>(),
        "seed": seed,
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
            "resize": s.resize, "save_latents": s.save_latents, "save_candidates": s.save_candidates,
        },
        "classes": per_class,
        "timings": timings,
        "layout": "<out>/<class>/<k>.png",
    });
    write_atomic(
        &out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )
}

fn merge(a: &cli::MergeArgs, rep: &Reporter) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!(
            "--out {}: exists (use --force to overwrite)",
            a.out.display()
        );
    }
    let mut merged = StatsFile::read(&a.inputs[0])?;
    for p in &a.inputs[1..] {
        let other = StatsFile::read(p)?;
        merged.merge(&other, p)?;
    }
    merged.write(&a.out)?;
    rep.result(
        json!({"event": "done", "out": a.out, "classes": merged.classes.len()}),
        &format!(
            "wrote {} ({} classes from {} files)",
            a.out.display(),
            merged.classes.len(),
            a.inputs.len()
        ),
    );
    Ok(())
}

fn inspect(path: &Path) -> Result<()> {
    if path.is_dir() {
        let manifest = path.join("manifest.json");
        if !manifest.exists() {
            bail!(
                "{}: no manifest.json (not a d3hr output folder?)",
                path.display()
            );
        }
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)
            .with_context(|| format!("{}: invalid JSON", manifest.display()))?;
        out!("{}: {} (seed {})", path.display(), m["tool"], m["seed"]);
        out!("selection: {}", m["selection"]);
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        dirs.sort();
        for d in dirs {
            let n = std::fs::read_dir(&d)?
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
                })
                .count();
            out!(
                "  {}: {n} images",
                d.file_name().unwrap_or_default().to_string_lossy()
            );
        }
        return Ok(());
    }
    let stats = StatsFile::read(path)?;
    out!("{}", stats.describe().trim_end());
    Ok(())
}
