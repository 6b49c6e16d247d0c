//! `invert`: data → one statistics file, with per-class checkpoints beside it while it runs.

use super::{
    data_identity, data_inputs, data_notes, in_part, mapper_identity, model_identity, model_inputs,
    require_data_for_own_models, seed,
};
use anyhow::{Context, Result, bail};
use d3hr_cli::cli::{Global, InvertArgs};
use d3hr_cli::data::Dataset;
use d3hr_cli::fsx::{self, write_atomic};
use d3hr_cli::identity::Identity;
use d3hr_cli::models::Models;
use d3hr_cli::pipeline::{InvertJob, invert_dataset, preflight};
use d3hr_cli::progress::Reporter;
use d3hr_cli::settings::Mapper;
use serde_json::json;
use std::path::Path;

pub fn run(g: &Global, a: &InvertArgs, rep: &Reporter) -> Result<()> {
    require_data_for_own_models(g, &a.data)?;
    let mapper = Mapper::from_args(&a.profile)?;
    if a.run.force && a.run.resume {
        bail!("--force and --resume contradict each other");
    }
    if a.out.as_os_str().to_string_lossy().ends_with('/') || a.out.is_dir() {
        bail!(
            "--out {}: names a folder; `invert` writes one statistics file (e.g. --out stats.safetensors)",
            a.out.display()
        );
    }
    let mut inputs = data_inputs(&a.data);
    inputs.extend(model_inputs(g));
    for (flag, p) in &inputs {
        if fsx::resolve(p) == fsx::resolve(&a.out) {
            bail!("--out {} is the same file as {flag}", a.out.display());
        }
    }
    if a.out.exists() && !a.run.force && !a.run.resume {
        bail!(
            "--out {}: exists (use --resume to continue, --force to overwrite)",
            a.out.display()
        );
    }
    let parent = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fsx::probe_writable(parent, "--out")?;
    let ckpt = a.out.with_file_name(format!(
        ".{}.d3hr-partial",
        a.out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("stats")
    ));
    let recorded: Option<Identity> = (a.run.resume && ckpt.join("run.json").exists())
        .then(|| -> Result<Identity> {
            let b = fsx::read_regular(&ckpt.join("run.json"), "run record", 1 << 20)?;
            serde_json::from_slice(&b)
                .with_context(|| format!("{}: invalid run record", ckpt.display()))
        })
        .transpose()?;
    let seed = seed(
        &a.run,
        recorded
            .as_ref()
            .and_then(|r| r.0.get("--seed")?.parse().ok()),
        rep,
    );
    let ds = Dataset::open(&a.data)?;
    data_notes(&ds, rep);
    let mut models = Models::load(g, true, false, mapper.guidance)?;
    in_part(&ds, preflight(&ds, &models))?;
    let mut id = Identity::default();
    id.set("command", "invert");
    id.set("--seed", seed);
    data_identity(&mut id, &a.data, &ds)?;
    mapper_identity(&mut id, &mapper);
    model_identity(&mut id, &models);
    id.0.remove("--vae-decoder");
    if a.run.force {
        let _ = std::fs::remove_dir_all(&ckpt);
    } else if !a.run.resume && ckpt.exists() {
        bail!(
            "an interrupted run left checkpoints in {}: use --resume to continue it, --force to start over",
            ckpt.display()
        );
    }
    if let Some(r) = &recorded {
        id.check_resume(r, &format!("{}", ckpt.display()))?;
    } else if a.run.resume && fsx::non_empty_dir(&ckpt) {
        bail!(
            "--resume: {} holds no run record (made by an older d3hr); use --force",
            ckpt.display()
        );
    }
    write_atomic(&ckpt.join("run.json"), &serde_json::to_vec_pretty(&id)?)?;
    let job = InvertJob::new(&ds, &mapper, seed, &a.data, &ckpt, a.run.resume, rep, &id);
    let (stats, secs) = in_part(&ds, invert_dataset(&job, &mut models))?;
    stats.write_run(&a.out, Some(&id.of_statistics()))?;
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
