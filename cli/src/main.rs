//! `d3hr-cli`: distill an image dataset with D3HR. See `d3hr-cli --help`.

use anyhow::{Context, Result, bail};
use clap::Parser;
use d3hr_cli::cli::{self, Cli, Command, Global, RunArgs, SamplingArgs};
use d3hr_cli::data::{self, Dataset};
use d3hr_cli::fsx::{self, write_atomic};
use d3hr_cli::identity::Identity;
use d3hr_cli::manifest::{self, Manifest};
use d3hr_cli::models::{self, Models};
use d3hr_cli::output::OutDir;
use d3hr_cli::pipeline::{
    InvertJob, Sampled, invert_dataset, preflight, sample_class, write_class,
};
use d3hr_cli::progress::{Reporter, err_line, out_line, stdout_failed};
use d3hr_cli::settings::{Mapper, Selection};
use d3hr_cli::stats::StatsFile;
use d3hr_cli::threads;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rep = Reporter::new(cli.global.quiet, cli.global.json);
    let result = run(&cli, &rep);
    if let Err(e) = &result {
        if cli.global.json {
            out_line(&json!({"event": "error", "message": format!("{e:#}")}).to_string());
        }
        err_line(&format!("error: {e:#}"));
    }
    if cli.global.json && stdout_failed() {
        err_line(
            "error: --json: could not write every line to stdout (closed pipe or full device)",
        );
        return ExitCode::FAILURE;
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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

fn data_inputs(d: &cli::DataArgs) -> Vec<(&'static str, &Path)> {
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
fn data_identity(id: &mut Identity, d: &cli::DataArgs, ds: &Dataset) -> Result<()> {
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

/// Memory for sampling one class, estimated before any allocation: refuse settings whose
/// buffers cannot exist on this machine, naming the flag.
fn check_sampling_memory(
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

fn warn_large_m(sel: &Selection, rep: &Reporter) {
    if sel.m > 100_000_000 {
        rep.note(&format!(
            "warning: --m {}: every class searches this many candidate subsets; expect a long run",
            sel.m
        ));
    }
}

fn distill(g: &Global, a: &cli::DistillArgs, rep: &Reporter) -> Result<()> {
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
    let mut models = Models::load(g, true, true, true, mapper.guidance)?;
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
    let per_class = sample_all(
        g,
        &stats,
        &mut models,
        &sel,
        &a.sampling,
        seed,
        &out,
        &id,
        a.data.batch.get(),
        rep,
    )?;
    Manifest {
        command: "distill",
        stats: &stats,
        models: &models,
        sel: &sel,
        resize: a.sampling.resize,
        save_latents: a.sampling.save_latents,
        seed,
        identity: &id,
        classes: &per_class,
        timings: json!({
            "invert_seconds": invert_secs, "total_seconds": t0.elapsed().as_secs_f64()
        }),
    }
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

fn invert(g: &Global, a: &cli::InvertArgs, rep: &Reporter) -> Result<()> {
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
    let mut models = Models::load(g, true, true, false, mapper.guidance)?;
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

fn sample(g: &Global, a: &cli::SampleArgs, rep: &Reporter) -> Result<()> {
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
    let mut models = Models::load(g, true, false, true, stats.meta.guidance)?;
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
    let per_class = sample_all(
        g,
        &stats,
        &mut models,
        &sel,
        &a.sampling,
        seed,
        &out,
        &id,
        a.batch.get(),
        rep,
    )?;
    Manifest {
        command: "sample",
        stats: &stats,
        models: &models,
        sel: &sel,
        resize: a.sampling.resize,
        save_latents: a.sampling.save_latents,
        seed,
        identity: &id,
        classes: &per_class,
        timings: json!({
            "total_seconds": t0.elapsed().as_secs_f64(), "stats": a.stats
        }),
    }
    .write(&a.out)?;
    out.finish();
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

#[allow(clippy::too_many_arguments)]
fn sample_all(
    g: &Global,
    stats: &StatsFile,
    models: &mut Models,
    sel: &Selection,
    s: &SamplingArgs,
    seed: u64,
    out: &OutDir,
    id: &Identity,
    batch: usize,
    rep: &Reporter,
) -> Result<Vec<serde_json::Value>> {
    if let Some(secs) = d3hr_cli::pipeline::projected_search_seconds(stats, sel, threads(g))? {
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
        if let Some(files) = out.done(&c.name, id) {
            per_class.push(json!({"id": c.id, "name": c.name, "resumed": true, "files": files}));
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

fn merge(a: &cli::MergeArgs, rep: &Reporter) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!(
            "--out {}: exists (use --force to overwrite)",
            a.out.display()
        );
    }
    // The inputs must have been made the same way (the identity of their statistics); the
    // merged file carries that identity, so class shards merge to one process's bytes.
    let (mut merged, id) = StatsFile::read_run(&a.inputs[0])?;
    for p in &a.inputs[1..] {
        let (other, other_id) = StatsFile::read_run(p)?;
        // The metadata's own checks first: they name the model or setting in their words.
        merged.merge(&other, p)?;
        if let (Some(a0), Some(b)) = (&id, &other_id) {
            let diff = b.differences(a0);
            if !diff.is_empty() {
                bail!(
                    "{} was made with a different {} than {}",
                    p.display(),
                    diff.join(", a different "),
                    a.inputs[0].display()
                );
            }
        }
    }
    merged.write_run(&a.out, id.as_ref())?;
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
        let manifest = manifest::path(path);
        if !manifest.exists() {
            bail!(
                "{}: no manifest.json (not a d3hr output folder?)",
                path.display()
            );
        }
        let m = manifest::read(&manifest)?;
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
            let name = d
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let recorded = manifest::class_files(&m, &name);
            // An image counts when it is a non-empty regular file and, where the manifest
            // records it, has the recorded size and hash.
            let (mut good, mut bad) = (0usize, 0usize);
            for e in std::fs::read_dir(&d)?.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "png") {
                    continue;
                }
                let file = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let meta = std::fs::symlink_metadata(&p).ok();
                let intact = meta.is_some_and(|m| m.is_file() && m.len() > 0)
                    && recorded.as_ref().is_none_or(|files| {
                        files
                            .iter()
                            .any(|f| f.name == file && fsx::sha256(&p).is_ok_and(|h| h == f.sha256))
                    });
                if intact {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
            if bad > 0 {
                out!(
                    "  {name}: {good} images, {bad} damaged (empty, not a file, or not as the manifest records)"
                );
            } else {
                out!("  {name}: {good} images");
            }
        }
        return Ok(());
    }
    let stats = StatsFile::read(path)?;
    out!("{}", stats.describe().trim_end());
    Ok(())
}
