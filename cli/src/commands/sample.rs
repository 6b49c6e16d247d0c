//! `sample`: a statistics file → distilled images at any IPC.

use super::{model_identity, model_inputs, seed, selection_identity};
use anyhow::{Result, bail};
use d3hr_cli::cli::{Global, SampleArgs, SamplingArgs};
use d3hr_cli::data;
use d3hr_cli::fsx;
use d3hr_cli::identity::Identity;
use d3hr_cli::manifest::Manifest;
use d3hr_cli::models::{self, Models};
use d3hr_cli::output::OutDir;
use d3hr_cli::pipeline::{SampleJob, sample_dataset};
use d3hr_cli::progress::Reporter;
use d3hr_cli::settings::Selection;
use d3hr_cli::stats::StatsFile;
use d3hr_cli::threads;
use serde_json::json;
use std::time::Instant;

pub fn run(g: &Global, a: &SampleArgs, rep: &Reporter) -> Result<()> {
    let mut stats = StatsFile::read(&a.stats)?;
    let sel = Selection::from_args(&a.sampling, stats.meta.profile)?;
    if let Some(spec) = &a.classes {
        let want = data::parse_classes(spec)?;
        for w in &want {
            if !stats.classes.iter().any(|c| c.id == *w) {
                bail!(
                    "--classes: class {w} is not in {} (it has {})",
                    a.stats.display(),
                    describe_ids(&stats)
                );
            }
        }
        stats.classes.retain(|c| want.contains(&c.id));
    }
    let mut inputs = vec![("--stats", a.stats.as_path())];
    inputs.extend(model_inputs(g));
    fsx::check_apart(&a.out, "--out", &inputs)?;
    check_sampling_memory(
        &sel,
        &a.sampling,
        stats.meta.latent_shape,
        stats.meta.image_shape,
        threads(g),
    )?;
    warn_large_m(&sel, rep);
    let mut out = OutDir::open(&a.out, &a.run)?;
    let seed = seed(&a.run, out.recorded_seed(), rep);
    let t0 = Instant::now();
    let mut models = Models::load(g, false, true, stats.meta.guidance)?;
    if models.dit_sha256 != stats.meta.dit_sha256 {
        bail!(
            "{} was made with another DiT (sha256 {}…, file {}) than {} (sha256 {}…)",
            a.stats.display(),
            stats.meta.dit_sha256.chars().take(12).collect::<String>(),
            stats.meta.dit_file,
            models.dit_path.display(),
            models.dit_sha256.chars().take(12).collect::<String>()
        );
    }
    if models.vae.latent_shape() != stats.meta.latent_shape {
        bail!(
            "{}: latents {:?}, but the VAE decoder {} makes {:?}",
            a.stats.display(),
            stats.meta.latent_shape,
            models::display(&models.decoder_path),
            models.vae.latent_shape()
        );
    }
    let mut id = Identity::default();
    id.set("command", "sample");
    id.set("--seed", seed);
    id.set("--stats", fsx::sha256(&a.stats)?);
    id.set_opt("--classes", a.classes.as_deref());
    selection_identity(&mut id, &sel, &a.sampling);
    model_identity(&mut id, &models);
    id.0.remove("--vae-encoder");
    let names: Vec<String> = stats.classes.iter().map(|c| c.name.clone()).collect();
    out.start(&id, &names)?;
    let job = SampleJob {
        stats: &stats,
        sel: &sel,
        sampling: &a.sampling,
        seed,
        out: &out,
        run: &id,
        batch: a.batch.get(),
        threads: threads(g),
        rep,
    };
    let per_class = sample_dataset(&job, &mut models)?;
    Manifest::of_job(
        "sample",
        &job,
        &models,
        &per_class,
        json!({"total_seconds": t0.elapsed().as_secs_f64(), "stats": a.stats}),
    )
    .write(&a.out)?;
    out.finish();
    rep.result(
        json!({"event": "done", "out": a.out}),
        &format!("wrote {}", a.out.display()),
    );
    Ok(())
}

/// Memory for sampling one class, estimated before any allocation: refuse settings whose
/// buffers cannot exist on this machine, naming the flag.
pub(super) fn check_sampling_memory(
    sel: &Selection,
    s: &SamplingArgs,
    latent: [usize; 3],
    image: [usize; 3],
    threads: usize,
) -> Result<()> {
    let d: usize = latent.iter().product();
    let per_img: usize = image.iter().product();
    let side = s.resize.map_or(image[1].max(image[2]), |r| r.get());
    if side > data::MAX_SIDE as usize {
        bail!("--resize {side}: at most {} pixels a side", data::MAX_SIDE);
    }
    // Latents: g, z_T, z_0 and a search buffer per thread; decoded images as f32; one resized
    // RGB image and its PNG at a time.
    let bytes = (|| {
        let latents = d.checked_mul(4)?.checked_mul(threads.checked_add(3)?)?;
        let images = per_img.checked_mul(4)?;
        sel.ipc
            .checked_mul(latents.checked_add(images)?)?
            .checked_add(side.checked_mul(side)?.checked_mul(8)?)
    })();
    let avail = fsx::available_memory();
    match (bytes, avail) {
        (None, _) => bail!(
            "--ipc {}: the buffers for one class would not fit in the address space",
            sel.ipc
        ),
        (Some(b), Some(a)) if b as u64 > a => bail!(
            "--ipc {}{}: sampling one class needs about {:.1} GiB, more than the {:.1} GiB of memory available",
            sel.ipc,
            s.resize
                .map_or(String::new(), |r| format!(" with --resize {r}")),
            b as f64 / f64::from(1u32 << 30),
            a as f64 / f64::from(1u32 << 30)
        ),
        _ => Ok(()),
    }
}

pub(super) fn warn_large_m(sel: &Selection, rep: &Reporter) {
    if sel.m > 100_000_000 {
        rep.note(&format!(
            "warning: --m {}: every class searches this many candidate subsets; expect a long run",
            sel.m
        ));
    }
}

/// `0..10` or `0, 3, 7` for messages.
fn describe_ids(stats: &StatsFile) -> String {
    let ids: Vec<u32> = stats.classes.iter().map(|c| c.id).collect();
    let contiguous = ids.windows(2).all(|w| w[1] == w[0] + 1);
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) if contiguous => format!("classes {a}..{}", b + 1),
        _ => format!(
            "classes {}",
            ids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
