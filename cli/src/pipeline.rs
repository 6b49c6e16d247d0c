//! The stages: data → statistics (VAE encode, DDIM inversion or DDPM mapping, streaming moments),
//! statistics → images (group sampling, DDIM sampling, VAE decode, PNG).

use crate::cli::SamplingArgs;
use crate::data::{self, Class, Dataset, Fit};
use crate::fsx::{child, sha256_bytes, write_atomic};
use crate::identity::Identity;
use crate::models::Models;
use crate::output::{FileRecord, OutDir};
use crate::progress::Reporter;
use crate::settings::{Mapper, Selection, sampling_plan};
use crate::stats::{ClassStats, Meta, StatsFile};
use crate::words::{Mapping, Mode, Posterior};
use anyhow::{Context, Result, bail};
use d3hr_core::select::{self, Config, Targets};
use d3hr_core::{ddim, ziggurat};
use rand_core::SeedableRng;
use rand_pcg::Pcg64;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// A seed for one purpose of one class, from the run's seed (SplitMix64 finaliser).
pub fn derive_seed(seed: u64, purpose: u64, class: u32, index: u64) -> u64 {
    let mut z =
        seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(class) << 32) ^ index;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const PURPOSE_POSTERIOR: u64 = 1;
const PURPOSE_DDPM: u64 = 2;
const PURPOSE_SELECT: u64 = 3;

/// Stage 1–2 of one run: which data, which settings, where the per-class checkpoints go.
pub struct InvertJob<'a> {
    pub ds: &'a Dataset,
    pub mapper: &'a Mapper,
    pub seed: u64,
    /// Images per model call.
    pub batch: usize,
    /// Fail on an unreadable image instead of skipping it.
    pub strict: bool,
    pub ckpt_dir: &'a Path,
    pub resume: bool,
    pub rep: &'a Reporter,
    /// The run's identity, recorded in every checkpoint and checked on `--resume`.
    pub run: &'a Identity,
}

impl<'a> InvertJob<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ds: &'a Dataset,
        mapper: &'a Mapper,
        seed: u64,
        data: &crate::cli::DataArgs,
        ckpt_dir: &'a Path,
        resume: bool,
        rep: &'a Reporter,
        run: &'a Identity,
    ) -> Self {
        InvertJob {
            ds,
            mapper,
            seed,
            batch: data.batch.get(),
            strict: data.strict,
            ckpt_dir,
            resume,
            rep,
            run,
        }
    }
}

/// One batch from the image-loading thread: pixels, the class positions of the images that
/// loaded, and how they were fitted.
type Loaded = (Vec<f32>, Vec<u64>, Option<Fit>);

/// Everything about the data that would fail a class mid-run, checked before the first model
/// call: no class without images, no id beyond the DiT's classes, every name safe as an output
/// folder.
pub fn preflight(ds: &Dataset, models: &Models) -> Result<()> {
    if ds.classes.is_empty() {
        bail!("{}: no classes to work on", ds.source.display());
    }
    for class in &ds.classes {
        crate::fsx::safe_name(&class.name, &ds.source.display().to_string())?;
        check_class(ds, class, models)?;
    }
    Ok(())
}

/// A class the DiT knows, with images.
fn check_class(ds: &Dataset, class: &Class, models: &Models) -> Result<()> {
    let num_classes = models.dit.num_classes();
    if class.id >= num_classes {
        bail!(
            "class `{}` has id {} but the DiT {} knows only {num_classes} classes (0..{num_classes})",
            class.name,
            class.id,
            models.dit_path.display()
        );
    }
    if class.items.is_empty() {
        bail!(
            "class `{}` (id {}) has no images in {}",
            class.name,
            class.id,
            ds.source.display()
        );
    }
    Ok(())
}

/// Statistics of one class from its images. Images are decoded on a worker thread so the model
/// never waits for them.
fn invert_class(
    job: &InvertJob<'_>,
    class: &Class,
    models: &mut Models,
    bar: &mut crate::progress::Stage,
) -> Result<(ClassStats, Option<Fit>)> {
    let InvertJob {
        ds,
        mapper,
        seed,
        batch,
        strict,
        rep,
        ..
    } = *job;
    let [c, s, _] = models.vae.image_shape();
    let d: usize = models.vae.latent_shape().iter().product();
    check_class(ds, class, models)?;
    let schedule = Mapper::schedule();
    let t_end = *mapper.grid.as_slice().last().unwrap_or(&0);
    let alpha_end = schedule.alpha_bar(t_end).unwrap_or(1.0);
    let mut stats = ClassStats::new(class.id, class.name.clone(), d);
    let mut fit = None;
    let idx = ds.idx.clone();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = mpsc::sync_channel::<Result<Loaded>>(2);
        let (items, positions) = (&class.items, &class.positions);
        scope.spawn(move || {
            for (chunk, pos) in items.chunks(batch).zip(positions.chunks(batch)) {
                let mut images = Vec::with_capacity(chunk.len() * c * (s * s));
                let mut loaded = Vec::with_capacity(chunk.len());
                let mut fit = None;
                for (item, &p) in chunk.iter().zip(pos) {
                    match data::load(item, idx.as_deref(), c, s as u32) {
                        Ok((px, f)) => {
                            images.extend_from_slice(&px);
                            loaded.push(p);
                            fit = Some(f);
                        }
                        Err(e) if !strict => {
                            // Reported by path and skipped (`--strict` makes this fatal).
                            let _ = tx.send(Err(e.context("skipped")));
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.context("unreadable image (--strict)")));
                            return;
                        }
                    }
                }
                if tx.send(Ok((images, loaded, fit))).is_err() {
                    return;
                }
            }
        });
        let mut z = Vec::new();
        let mut eps = Vec::new();
        for msg in rx {
            let (images, positions, f) = match msg {
                Ok(v) => v,
                Err(e) if !strict => {
                    rep.note(&format!("warning: {e:#}"));
                    bar.inc(1);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let n = positions.len();
            if n == 0 {
                continue;
            }
            // Every image draws its noise from its own stream, keyed by its position in its
            // class: batching, sharding and skipped images leave the other images' noise alone.
            let image_rng = |purpose: u64, p: u64| {
                Pcg64::seed_from_u64(derive_seed(seed, purpose, class.id, p))
            };
            fit = fit.or(f);
            z.resize(n * d, 0.0);
            match mapper.posterior {
                Posterior::Mean => models.vae.encode_mean(&images, &mut z)?,
                Posterior::Sample => {
                    let mut noise = vec![0.0f32; n * d];
                    for (row, &p) in noise.chunks_exact_mut(d).zip(&positions) {
                        ziggurat::fill_f32(&mut image_rng(PURPOSE_POSTERIOR, p), row);
                    }
                    models.vae.encode_with_noise(&images, &noise, &mut z)?
                }
            }
            match mapper.mapping {
                Mapping::Ddim => {
                    eps.resize(n * d, 0.0);
                    let classes = vec![class.id; n];
                    ddim::invert(
                        &mut models.dit,
                        &schedule,
                        &mapper.grid,
                        mapper.eps_at(),
                        &mut z,
                        &classes,
                        &mut eps,
                    )
                    .map_err(|e| {
                        anyhow::anyhow!("DDIM inversion of class `{}`: {e}", class.name)
                    })?;
                }
                Mapping::Ddpm => {
                    for (row, &p) in z.chunks_exact_mut(d).zip(&positions) {
                        ddim::ddpm_forward(row, alpha_end, &mut image_rng(PURPOSE_DDPM, p));
                    }
                }
            }
            stats.moments.add_batch(&z)?;
            bar.inc(n as u64);
        }
        Ok(())
    })?;
    if stats.moments.count() == 0 {
        bail!(
            "class `{}` (id {}): none of its {} images could be read",
            class.name,
            class.id,
            class.items.len()
        );
    }
    Ok((stats, fit))
}

/// The statistics file's metadata for this run.
pub fn meta(models: &Models, mapper: &Mapper, seed: u64, ds: &Dataset, fit: Option<Fit>) -> Meta {
    let dit = &models.dit;
    Meta {
        tool: format!("d3hr-cli {}", env!("CARGO_PKG_VERSION")),
        format: 1,
        dit_sha256: models.dit_sha256.clone(),
        dit_file: models.dit_path.display().to_string(),
        vae_encoder_sha256: models.encoder_sha256.clone(),
        latent_shape: models.vae.latent_shape(),
        image_shape: models.vae.image_shape(),
        scaling_factor: models.vae.scaling_factor(),
        num_classes: dit.num_classes(),
        null_class: dit.null_class(),
        profile: mapper.profile,
        schedule: "linear beta 1e-4..0.02, 1000 steps (DiT)".into(),
        grid: mapper.grid.as_slice().to_vec(),
        guidance: mapper.guidance,
        inversion_eps: mapper.inversion_eps,
        mapping: mapper.mapping,
        posterior: mapper.posterior,
        seed,
        data: ds.source.display().to_string(),
        fit,
    }
}

/// Stage 1–2 over every class of the job's data, with a checkpoint per class so an interrupted
/// run resumes at the class in flight.
pub fn invert_dataset(job: &InvertJob<'_>, models: &mut Models) -> Result<(StatsFile, f64)> {
    let InvertJob {
        ds,
        mapper,
        seed,
        ckpt_dir,
        resume,
        rep,
        run,
        ..
    } = *job;
    let total: u64 = ds.classes.iter().map(|c| c.items.len() as u64).sum();
    let mut bar = rep.stage("invert", "img", total);
    let mut classes = Vec::new();
    let mut fit = None;
    for class in &ds.classes {
        let ckpt = ckpt_dir.join(format!("class-{}.safetensors", class.id));
        let want = meta(models, mapper, seed, ds, fit);
        if resume && ckpt.exists() {
            let (done, done_run) = StatsFile::read_run(&ckpt)?;
            run.check_resume(
                &done_run.unwrap_or_default(),
                &format!("checkpoint {}", ckpt.display()),
            )?;
            if !matches!(&done.classes[..], [c] if c.id == class.id && c.name == class.name) {
                bail!(
                    "{}: checkpoint does not hold class `{}` (id {}) alone; rerun with --force",
                    ckpt.display(),
                    class.name,
                    class.id
                );
            }
            if let Err(why) = done.meta.compatible(&want).and_then(|_| {
                if done.meta.seed == seed {
                    Ok(())
                } else {
                    Err("different seed".into())
                }
            }) {
                bail!(
                    "{}: checkpoint from other settings ({why}); rerun with --force instead of --resume",
                    ckpt.display()
                );
            }
            fit = fit.or(done.meta.fit);
            rep.note(&format!(
                "class {}: kept from the checkpoint (--resume)",
                class.name
            ));
            classes.extend(done.classes);
            bar.inc(class.items.len() as u64);
            continue;
        }
        bar.set_message(&format!("class {}", class.name));
        let (stats, f) = invert_class(job, class, models, &mut bar)?;
        fit = fit.or(f);
        let one = StatsFile {
            meta: meta(models, mapper, seed, ds, fit),
            classes: vec![stats],
        };
        one.write_run(&ckpt, Some(run))?;
        classes.extend(one.classes);
    }
    let secs = bar.finish();
    Ok((
        StatsFile {
            meta: meta(models, mapper, seed, ds, fit),
            classes,
        },
        secs,
    ))
}

/// What stage 3–4 decided for one class.
pub struct Sampled {
    pub z_t: Vec<f32>,
    pub z_0: Vec<f32>,
    pub images: Vec<f32>,
    pub loss: f64,
    pub candidate: serde_json::Value,
    pub gamma_dropped: bool,
    /// Every candidate's normals (`m × n × dims`), with `--save-candidates`.
    pub candidates: Option<Vec<f32>>,
}

/// Largest number of values `--save-candidates` writes for one class (256 MiB of f32).
pub const MAX_SAVED_CANDIDATE_VALUES: u64 = 1 << 26;

/// The targets of class `i` as a selection sees them.
fn class_targets<'a>(
    sel: &Selection,
    mean: &'a [f32],
    std: &'a [f32],
    skew: &'a [f32],
) -> Targets<'a> {
    Targets {
        mean,
        std,
        skew: sel.skew_from_data.then_some(skew),
    }
}

/// The projected wall time of one class's joint search over `sel.m` candidates on `threads`
/// threads, from timing the first candidates of class 0 on one thread (at most ~0.2 s of work).
/// `None` for searches too small to be worth a note.
pub fn projected_search_seconds(
    stats: &StatsFile,
    sel: &Selection,
    threads: usize,
) -> Result<Option<f64>> {
    if sel.mode != Mode::Joint || sel.m < 100_000 || stats.classes.is_empty() {
        return Ok(None);
    }
    let (mean, std, skew) = stats.targets(0, sel.unbiased_std);
    let targets = class_targets(sel, &mean, &std, &skew);
    let cfg = Config::new(0, sel.ipc, stats.dims(), sel.loss, sel.lambdas)?;
    let mut scratch = select::Scratch::new(&cfg);
    let t0 = std::time::Instant::now();
    let mut done = 0u64;
    while done < sel.m && (done < 64 || t0.elapsed().as_secs_f64() < 0.2) {
        select::search_joint(&cfg, &targets, done..done + 64, &mut scratch)?;
        done += 64;
    }
    let per = t0.elapsed().as_secs_f64() / done as f64;
    Ok(Some(per * sel.m as f64 / threads.max(1) as f64))
}

/// Group sampling (threads over the candidate range), DDIM sampling, decoding, for class `i`.
pub fn sample_class(
    stats: &StatsFile,
    i: usize,
    models: &mut Models,
    sel: &Selection,
    seed: u64,
    threads: usize,
    batch: usize,
) -> Result<Sampled> {
    let class = &stats.classes[i];
    let d = stats.dims();
    let (mean, std, skew) = stats.targets(i, sel.unbiased_std);
    let targets = class_targets(sel, &mean, &std, &skew);
    let cfg = Config::new(
        derive_seed(seed, PURPOSE_SELECT, class.id, 0),
        sel.ipc,
        d,
        sel.loss,
        sel.lambdas,
    )?;
    let candidates = if sel.save_candidates {
        let m = if sel.mode == Mode::Random { 1 } else { sel.m };
        let values = m.saturating_mul(cfg.candidate_len() as u64);
        if sel.mode == Mode::PerDim || values > MAX_SAVED_CANDIDATE_VALUES {
            bail!(
                "--save-candidates: {m} candidates × {} values = {values} values, more than {MAX_SAVED_CANDIDATE_VALUES} (lower --m)",
                cfg.candidate_len()
            );
        }
        let mut all = vec![0.0f32; values as usize];
        for (k, g) in all.chunks_exact_mut(cfg.candidate_len()).enumerate() {
            select::draw_candidate(&cfg, k as u64, g)?;
        }
        Some(all)
    } else {
        None
    };
    let mut g = vec![0.0f32; sel.ipc * d];
    let (loss, candidate) = match sel.mode {
        Mode::Joint | Mode::Random => {
            let m = if sel.mode == Mode::Random { 1 } else { sel.m };
            let best = select::threaded::search_joint(&cfg, &targets, m, threads)?;
            select::draw_candidate(&cfg, best.index, &mut g)?;
            (best.loss, json!(best.index))
        }
        Mode::PerDim => {
            let best = select::threaded::search_per_dim(&cfg, &targets, sel.m, threads)?;
            g.copy_from_slice(&best.g);
            let loss = best.total_loss();
            let distinct = {
                let mut v = best.index;
                v.sort_unstable();
                v.dedup();
                v.len()
            };
            (
                loss,
                json!({"per_dim": true, "distinct_candidates": distinct}),
            )
        }
    };
    let mut z_t = vec![0.0f32; sel.ipc * d];
    select::to_latents(&targets, &g, &mut z_t)?;
    let mut z_0 = z_t.clone();
    let plan = sampling_plan(
        stats.meta.profile,
        &d3hr_core::schedule::Timesteps::from_list(&stats.meta.grid, crate::settings::TRAIN_STEPS)?,
    )?;
    let schedule = Mapper::schedule();
    let dit = &mut models.dit;
    let mut eps = vec![0.0f32; batch.min(sel.ipc) * d];
    for chunk in z_0.chunks_mut(batch * d) {
        let n = chunk.len() / d;
        let eps = &mut eps[..n * d];
        ddim::run(dit, &schedule, &plan, chunk, &vec![class.id; n], eps)
            .map_err(|e| anyhow::anyhow!("DDIM sampling of class `{}`: {e}", class.name))?;
    }
    let per_img: usize = models.vae.image_shape().iter().product();
    let mut images = vec![0.0f32; sel.ipc * per_img];
    for (zc, ic) in z_0
        .chunks(batch * d)
        .zip(images.chunks_mut(batch * per_img))
    {
        models.vae.decode(zc, ic)?;
    }
    Ok(Sampled {
        z_t,
        z_0,
        images,
        loss,
        candidate,
        gamma_dropped: cfg.gamma_dropped(),
        candidates,
    })
}

/// Stage 3–4 of one run: which statistics, which selection, where the images go.
pub struct SampleJob<'a> {
    pub stats: &'a StatsFile,
    pub sel: &'a Selection,
    /// The output settings (`--resize`, `--save-latents`).
    pub sampling: &'a SamplingArgs,
    pub seed: u64,
    pub out: &'a OutDir,
    /// The run's identity, recorded in every class's done record.
    pub run: &'a Identity,
    /// Latents per model call.
    pub batch: usize,
    /// Threads for the group-sampling search.
    pub threads: usize,
    pub rep: &'a Reporter,
}

/// Stage 3–4 over every class of the job's statistics: each class's images written and marked
/// done, classes an interrupted run finished kept. One manifest record per class.
pub fn sample_dataset(job: &SampleJob<'_>, models: &mut Models) -> Result<Vec<serde_json::Value>> {
    let SampleJob {
        stats,
        sel,
        sampling: s,
        seed,
        out,
        run: id,
        batch,
        threads,
        rep,
    } = *job;
    if let Some(secs) = projected_search_seconds(stats, sel, threads)? {
        let k = stats.classes.len() as f64;
        rep.note(&format!(
            "group sampling: {} candidates per class, projected {} per class and {} for {} classes on {} threads (--m sets fewer)",
            sel.m,
            human_seconds(secs),
            human_seconds(secs * k),
            stats.classes.len(),
            threads
        ));
    }
    let mut bar = rep.stage("sample", "class", stats.classes.len() as u64);
    let mut per_class = Vec::new();
    let mut warned = false;
    for i in 0..stats.classes.len() {
        let c = &stats.classes[i];
        if let Some(files) = out.done(&c.name, id) {
            per_class.push(json!({"id": c.id, "name": c.name, "resumed": true, "files": files}));
            bar.inc(1);
            continue;
        }
        bar.set_message(&format!("class {}", c.name));
        let t = Instant::now();
        let sampled = sample_class(stats, i, models, sel, seed, threads, batch)?;
        if sampled.gamma_dropped && !warned {
            rep.note(&format!(
                "note: IPC {} < 3: the skewness term (Eq. 8) is undefined and was dropped",
                sel.ipc
            ));
            warned = true;
        }
        let (_, files) = write_class(
            &out.path,
            &out.staging(&c.name)?,
            &c.name,
            &sampled,
            models.vae.image_shape(),
            stats.meta.fit,
            s.resize.map(|r| r.get() as u32),
            models.vae.latent_shape(),
            s.save_latents,
        )?;
        out.mark_done(&c.name, id, &files)?;
        per_class.push(json!({
            "id": c.id, "name": c.name, "count": c.moments.count(), "loss": sampled.loss,
            "candidate": sampled.candidate, "seconds": t.elapsed().as_secs_f64(), "files": files
        }));
        bar.inc(1);
    }
    bar.finish();
    Ok(per_class)
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

/// Convert one decoded image (`C×S×S` in about [-1, 1]) to 8-bit, undo the input padding, resize.
pub fn to_image(
    px: &[f32],
    shape: [usize; 3],
    fit: Option<Fit>,
    resize: Option<u32>,
) -> image::DynamicImage {
    let [c, h, w] = shape;
    let q = |v: f32| (((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut img = if c == 1 {
        image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w as u32, h as u32, px.iter().map(|&v| q(v)).collect())
                .expect("sizes"),
        )
    } else {
        let n = h * w;
        let mut rgb = Vec::with_capacity(3 * n);
        for i in 0..n {
            for ch in 0..3 {
                rgb.push(q(px[ch.min(c - 1) * n + i]));
            }
        }
        image::DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(w as u32, h as u32, rgb).expect("sizes"),
        )
    };
    if let Some(Fit::Pad { x, y, w, h }) = fit {
        img = img.crop_imm(x, y, w, h);
    }
    if let Some(r) = resize {
        img = img.resize_exact(r, r, image::imageops::FilterType::Lanczos3);
    }
    img
}

#[allow(clippy::too_many_arguments)]
/// Write one class's images into `<out>/<name>/` atomically: each file encoded in memory and
/// written with a checked, synced write into a staging folder, which is renamed into place. The
/// files written, with sizes and hashes, are returned for the class's done record.
pub fn write_class(
    out: &Path,
    staging: &Path,
    name: &str,
    s: &Sampled,
    shape: [usize; 3],
    fit: Option<Fit>,
    resize: Option<u32>,
    latent_shape: [usize; 3],
    save_latents: bool,
) -> Result<(PathBuf, Vec<FileRecord>)> {
    let dest = child(out, name, "class")?;
    let _ = std::fs::remove_dir_all(staging);
    std::fs::create_dir_all(staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let mut files = Vec::new();
    let mut put = |file: String, bytes: &[u8]| -> Result<()> {
        write_atomic(&staging.join(&file), bytes)?;
        files.push(FileRecord {
            name: file,
            bytes: bytes.len() as u64,
            sha256: sha256_bytes(bytes),
        });
        Ok(())
    };
    let per: usize = shape.iter().product();
    for (k, px) in s.images.chunks(per).enumerate() {
        let img = to_image(px, shape, fit, resize);
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .with_context(|| format!("cannot encode image {k} of class `{name}`"))?;
        put(format!("{k}.png"), &png)?;
    }
    if save_latents {
        let n = s.z_t.len() / latent_shape.iter().product::<usize>();
        let shp = vec![n, latent_shape[0], latent_shape[1], latent_shape[2]];
        let (a, b): (Vec<u8>, Vec<u8>) = (
            s.z_t.iter().flat_map(|v| v.to_le_bytes()).collect(),
            s.z_0.iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        let views = vec![
            (
                "z_0",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shp.clone(), &b)?,
            ),
            (
                "z_T",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shp, &a)?,
            ),
        ];
        put(
            "latents.safetensors".into(),
            &safetensors::serialize(views, None)?,
        )?;
    }
    if let Some(all) = &s.candidates {
        let n = s.z_t.len() / latent_shape.iter().product::<usize>();
        let d: usize = latent_shape.iter().product();
        let m = all.len() / (n * d);
        let bytes: Vec<u8> = all.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![m, n, d], &bytes)?;
        put(
            "candidates.safetensors".into(),
            &safetensors::serialize(vec![("g", view)], None)?,
        )?;
    }
    if let Ok(m) = std::fs::symlink_metadata(&dest) {
        if m.is_dir() {
            std::fs::remove_dir_all(&dest)
        } else {
            std::fs::remove_file(&dest)
        }
        .with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    std::fs::rename(staging, &dest)
        .with_context(|| format!("cannot move {} into place", dest.display()))?;
    Ok((dest, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value stability of the per-image seeds: the posterior, DDPM and selection streams of a run
    /// derive from these, so a change here changes every user's output for the same `--seed`.
    #[test]
    fn derive_seed_is_pinned() {
        for (seed, purpose, class, index, want) in [
            (0, PURPOSE_POSTERIOR, 0, 0, 0xe220_a839_7b1d_cdaf),
            (0, PURPOSE_SELECT, 0, 0, 0x06c4_5d18_8009_454f),
            (7, PURPOSE_POSTERIOR, 0, 0, 0xf75f_04cb_b5a1_a1dd),
            (7, PURPOSE_DDPM, 3, 4, 0x793c_4448_6e68_d6e3),
            (7, PURPOSE_SELECT, 999, 0, 0xa4eb_f6b5_5e79_9ad3),
            (42, PURPOSE_SELECT, 17, 5, 0x0f65_c605_52be_09ab),
            (
                u64::MAX,
                PURPOSE_DDPM,
                u32::MAX,
                u64::MAX,
                0xe572_9d72_8266_be68,
            ),
        ] {
            assert_eq!(
                derive_seed(seed, purpose, class, index),
                want,
                "derive_seed({seed}, {purpose}, {class}, {index})"
            );
        }
    }
}
