//! `distill`: every stage, data → statistics → distilled images, in one output folder.

use super::sample::{check_sampling_memory, warn_large_m};
use super::{
    data_identity, data_inputs, data_notes, in_part, mapper_identity, model_identity, model_inputs,
    require_data_for_own_models, seed, selection_identity,
};
use anyhow::Result;
use d3hr_cli::cli::{DistillArgs, Global};
use d3hr_cli::data::Dataset;
use d3hr_cli::fsx;
use d3hr_cli::identity::Identity;
use d3hr_cli::manifest::Manifest;
use d3hr_cli::models::Models;
use d3hr_cli::output::OutDir;
use d3hr_cli::pipeline::{InvertJob, SampleJob, invert_dataset, preflight, sample_dataset};
use d3hr_cli::progress::Reporter;
use d3hr_cli::settings::{Mapper, Selection};
use d3hr_cli::stats::StatsFile;
use d3hr_cli::threads;
use serde_json::json;
use std::time::Instant;

pub fn run(g: &Global, a: &DistillArgs, rep: &Reporter) -> Result<()> {
    require_data_for_own_models(g, &a.data)?;
    let mapper = Mapper::from_args(&a.profile)?;
    let sel = Selection::from_args(&a.sampling, mapper.profile)?;
    let mut inputs = data_inputs(&a.data);
    inputs.extend(model_inputs(g));
    fsx::check_apart(&a.out, "--out", &inputs)?;
    let mut out = OutDir::open(&a.out, &a.run)?;
    let seed = seed(&a.run, out.recorded_seed(), rep);
    let t0 = Instant::now();
    let ds = Dataset::open(&a.data)?;
    data_notes(&ds, rep);
    let mut models = Models::load(g, true, true, mapper.guidance)?;
    in_part(&ds, preflight(&ds, &models))?;
    check_sampling_memory(
        &sel,
        &a.sampling,
        models.vae.latent_shape(),
        models.vae.image_shape(),
        threads(g),
    )?;
    warn_large_m(&sel, rep);
    rep.note(&format!(
        "{} classes, {} images from {} ({}); DiT {}",
        ds.classes.len(),
        ds.classes.iter().map(|c| c.items.len()).sum::<usize>(),
        ds.source.display(),
        ds.kind,
        models.dit_summary()
    ));
    let mut id = Identity::default();
    id.set("command", "distill");
    id.set("--seed", seed);
    data_identity(&mut id, &a.data, &ds)?;
    mapper_identity(&mut id, &mapper);
    selection_identity(&mut id, &sel, &a.sampling);
    model_identity(&mut id, &models);
    let names: Vec<String> = ds.classes.iter().map(|c| c.name.clone()).collect();
    out.start(&id, &names)?;
    let ckpt = out.checkpoints();
    let job = InvertJob::new(&ds, &mapper, seed, &a.data, &ckpt, a.run.resume, rep, &id);
    let stats_path = a.out.join("stats.safetensors");
    // A resumed run whose statistics were finished (by this very identity) keeps them.
    let finished = a
        .run
        .resume
        .then(|| StatsFile::read_run(&stats_path).ok())
        .flatten()
        .filter(|(_, run)| run.as_ref() == Some(&id.of_statistics()));
    let (stats, invert_secs) = match finished {
        Some((stats, _)) => (stats, 0.0),
        None => {
            let (stats, secs) = in_part(&ds, invert_dataset(&job, &mut models))?;
            stats.write_run(&stats_path, Some(&id.of_statistics()))?;
            (stats, secs)
        }
    };
    let job = SampleJob {
        stats: &stats,
        sel: &sel,
        sampling: &a.sampling,
        seed,
        out: &out,
        run: &id,
        batch: a.data.batch.get(),
        threads: threads(g),
        rep,
    };
    let per_class = sample_dataset(&job, &mut models)?;
    Manifest::of_job(
        "distill",
        &job,
        &models,
        &per_class,
        json!({"invert_seconds": invert_secs, "total_seconds": t0.elapsed().as_secs_f64()}),
    )
    .write(&a.out)?;
    out.finish();
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
