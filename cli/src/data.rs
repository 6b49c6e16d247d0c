//! Datasets: IDX files (MNIST / Fashion-MNIST, gzipped or not) and ImageFolder trees, the class
//! list, sharding, and the conversion of one image to the VAE's input.

use anyhow::{Context, Result, anyhow, bail};
use image::{DynamicImage, GrayImage, imageops::FilterType};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Debian's `dataset-fashion-mnist` training images: the default `--data`.
pub const DEFAULT_DATA: &str = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

/// One class of the (filtered) dataset.
#[derive(Debug, Clone)]
pub struct Class {
    /// Class id as the model sees it.
    pub id: u32,
    /// Output folder name: the ImageFolder sub-folder (e.g. an ImageNet wnid) or the id.
    pub name: String,
    /// The images of this class (after `--shard` and `--limit-per-class`).
    pub items: Vec<Item>,
    /// For each of `items`, its position among the class's images before `--shard`: the key of
    /// its random streams, so that batching and sharding never change an image's noise.
    pub positions: Vec<u64>,
}

#[derive(Debug, Clone)]
pub enum Item {
    /// Image `i` of the IDX file.
    Idx(usize),
    /// An image file.
    File(PathBuf),
}

/// IDX pixel data shared with the decoding thread.
#[derive(Debug)]
pub struct IdxImages {
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

#[derive(Debug)]
pub struct Dataset {
    /// What `--data` pointed at.
    pub source: PathBuf,
    pub kind: &'static str,
    pub classes: Vec<Class>,
    pub idx: Option<Arc<IdxImages>>,
    /// Which part of the data this task took with `--shard auto` / `--classes auto`, and why.
    pub part: Option<String>,
    /// What was passed over while listing (nested folders, non-image files), for the user.
    pub notes: Vec<String>,
    /// The image shard `(i, n)` taken, from `--shard i/n` or `--shard auto`.
    pub shard: Option<(usize, usize)>,
}

/// `3`, `3,7` or `2..5` (a run of consecutive ids).
fn describe_ids(ids: &[u32]) -> String {
    match ids {
        [first, .., last] if ids.windows(2).all(|w| w[1] == w[0] + 1) => {
            format!("{first}..{}", last + 1)
        }
        _ => ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
    }
}

/// Parsed `--classes` (`a..b` or `a,b,c`).
pub fn parse_classes(spec: &str) -> Result<Vec<u32>> {
    let bad = || anyhow!("--classes `{spec}`: expected `a..b` (end exclusive) or `a,b,c`");
    if let Some((a, b)) = spec.split_once("..") {
        let (a, b): (u32, u32) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a >= b {
            return Err(bad());
        }
        return Ok((a..b).collect());
    }
    spec.split(',')
        .map(|v| v.trim().parse().map_err(|_| bad()))
        .collect()
}

/// This task's index and the number of tasks of the job array it runs in, for `--shard auto` and
/// `--classes auto`, from the environment (`env` looks a variable up), with where they came from:
///
/// - a Slurm job array: `SLURM_ARRAY_TASK_ID`; the count is `SLURM_ARRAY_TASK_COUNT` (Slurm ≥ 21.08)
///   or the range `SLURM_ARRAY_TASK_MIN..=MAX` by `SLURM_ARRAY_TASK_STEP`, and the index is the
///   task's place in that range (`--array=1-8` gives 0..8). `D3HR_SHARD_COUNT=n` instead makes the
///   task id itself the index out of `n` (to rerun some tasks of an array as a new array,
///   `--array=3,7`);
/// - a Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` out of `D3HR_SHARD_COUNT` (the Job's
///   `completions`, which Kubernetes does not put in the environment).
///
/// Refuses to guess: no array in the environment, a missing count, or task ids that are not a
/// range are errors.
pub fn task_from_env(env: impl Fn(&str) -> Option<String>) -> Result<(usize, usize, String)> {
    let num = |name: &str| -> Result<Option<usize>> {
        env(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("{name}=`{v}` is not a task number"))
            })
            .transpose()
    };
    let given_count = num("D3HR_SHARD_COUNT")?;
    if given_count == Some(0) {
        bail!("D3HR_SHARD_COUNT=0: the number of tasks must be at least 1");
    }
    let checked = |i: usize, n: usize, from: String| -> Result<(usize, usize, String)> {
        if i >= n {
            bail!("{from}: index {i} is not below the task count {n}");
        }
        Ok((i, n, from))
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        if let Some(n) = given_count {
            return checked(
                id,
                n,
                format!("SLURM_ARRAY_TASK_ID={id}, D3HR_SHARD_COUNT={n}"),
            );
        }
        let (Some(min), Some(max)) = (num("SLURM_ARRAY_TASK_MIN")?, num("SLURM_ARRAY_TASK_MAX")?)
        else {
            bail!(
                "SLURM_ARRAY_TASK_ID={id} without SLURM_ARRAY_TASK_MIN/MAX: set D3HR_SHARD_COUNT, or give --shard i/n"
            );
        };
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let span = max.checked_sub(min).map(|d| d / step + 1);
        let count = num("SLURM_ARRAY_TASK_COUNT")?;
        let from = format!("Slurm array task {id} of {min}-{max}:{step}");
        match (span, count) {
            (Some(span), Some(count)) if span != count => bail!(
                "{from}: SLURM_ARRAY_TASK_COUNT={count} tasks are not the range {min}-{max}:{step}; use --array=a-b[:s], or set D3HR_SHARD_COUNT"
            ),
            (None, _) => bail!("{from}: SLURM_ARRAY_TASK_MAX is below SLURM_ARRAY_TASK_MIN"),
            _ => {}
        }
        if id < min || (id - min) % step != 0 {
            bail!("{from}: task id {id} is not in the range; set D3HR_SHARD_COUNT");
        }
        return checked((id - min) / step, span.unwrap_or(1), from);
    }
    if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        let Some(n) = given_count else {
            bail!(
                "JOB_COMPLETION_INDEX={i} (a Kubernetes Indexed Job) without D3HR_SHARD_COUNT: set it to the Job's completions"
            );
        };
        return checked(
            i,
            n,
            format!("JOB_COMPLETION_INDEX={i}, D3HR_SHARD_COUNT={n}"),
        );
    }
    bail!(
        "no job array in the environment (SLURM_ARRAY_TASK_ID of a Slurm job array, or JOB_COMPLETION_INDEX of a Kubernetes Indexed Job with D3HR_SHARD_COUNT): give the index and count, as --shard i/n or --classes a..b"
    )
}

/// Block `i` of `n` nearly equal runs of `k` items: `[i·k/n, (i+1)·k/n)`.
pub fn block(i: usize, n: usize, k: usize) -> std::ops::Range<usize> {
    i * k / n..(i + 1) * k / n
}

/// Parsed `--shard i/n`.
pub fn parse_shard(spec: &str) -> Result<(usize, usize)> {
    let bad = || anyhow!("--shard `{spec}`: expected `i/n` with 0 <= i < n, or `auto`");
    let (i, n) = spec.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The largest IDX file accepted, compressed or not (MNIST-like data sets are well under 1 GiB).
pub const MAX_IDX_BYTES: u64 = 8 << 30;

/// The bytes of an IDX file, gunzipped when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = crate::fsx::read_regular(path, "--data", MAX_IDX_BYTES)?;
    gunzip_if_gz(&raw, &path.display().to_string())
}

/// `raw` gunzipped if it starts with the gzip magic (at most [`MAX_IDX_BYTES`] out), else as is;
/// a name ending in `.gz` without the magic is refused with the bytes that were found.
pub fn gunzip_if_gz(raw: &[u8], name: &str) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("{name}: starts like gzip but does not decompress"))?;
        if out.len() as u64 > MAX_IDX_BYTES {
            bail!("{name}: decompresses to more than {MAX_IDX_BYTES} bytes");
        }
        Ok(out)
    } else if name.ends_with(".gz") {
        bail!(
            "{name}: named .gz but is not gzip (starts with {}, gzip starts with 1f 8b)",
            head(raw)
        )
    } else {
        Ok(raw.to_vec())
    }
}

/// The first bytes of `b` in hex, for messages.
fn head(b: &[u8]) -> String {
    if b.is_empty() {
        return "nothing: the file is empty".into();
    }
    b.iter()
        .take(4)
        .map(|v| format!("{v:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The labels file next to an IDX images file: `…images-idx3-ubyte…` → `…labels-idx1-ubyte…`.
fn labels_path(images: &Path) -> Result<PathBuf> {
    let name = images
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.contains("images-idx3-ubyte") {
        bail!(
            "{}: an IDX images file must be named like `train-images-idx3-ubyte[.gz]` so that its labels file can be found",
            images.display()
        );
    }
    let base = name.replace("images-idx3-ubyte", "labels-idx1-ubyte");
    let plain = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    // Either compression of the labels goes with either of the images.
    for cand in [base.clone(), plain.clone(), format!("{plain}.gz")] {
        let p = images.with_file_name(&cand);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "{}: labels file {} (or {plain}[.gz]) not found",
        images.display(),
        images.with_file_name(&base).display()
    )
}

fn open_idx(path: &Path) -> Result<(Arc<IdxImages>, Vec<u8>)> {
    let img = read_maybe_gz(path)?;
    let lp = labels_path(path)?;
    let lab = read_maybe_gz(&lp)?;
    parse_idx(
        &img,
        &lab,
        &path.display().to_string(),
        &lp.display().to_string(),
    )
}

/// An IDX images file and its labels, checked: magic numbers, sizes (overflow-checked), no
/// empty images, one label per image.
pub fn parse_idx(
    img: &[u8],
    lab: &[u8],
    img_name: &str,
    lab_name: &str,
) -> Result<(Arc<IdxImages>, Vec<u8>)> {
    if img.len() < 16 {
        bail!(
            "{img_name}: not an IDX images file: {} bytes, shorter than the 16-byte header",
            img.len()
        );
    }
    let magic = be_u32(img, 0);
    if magic != 0x0803 {
        bail!(
            "{img_name}: not an IDX images file: magic 0x{magic:08x}, expected 0x00000803 (unsigned bytes, 3 dimensions)"
        );
    }
    let (n, rows, cols) = (
        be_u32(img, 4) as usize,
        be_u32(img, 8) as usize,
        be_u32(img, 12) as usize,
    );
    if n > 0 && (rows == 0 || cols == 0) {
        bail!("{img_name}: header says {n} images of {rows}x{cols} pixels: empty images");
    }
    let want = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .and_then(|v| v.checked_add(16));
    match want {
        Some(w) if w == img.len() => {}
        Some(w) => bail!(
            "{img_name}: header says {n} images of {rows}x{cols} ({w} bytes) but the file has {} bytes",
            img.len()
        ),
        None => bail!(
            "{img_name}: header says {n} images of {rows}x{cols}: more bytes than can be addressed"
        ),
    }
    if lab.len() < 8 {
        bail!(
            "{lab_name}: not an IDX labels file: {} bytes, shorter than the 8-byte header",
            lab.len()
        );
    }
    let magic = be_u32(lab, 0);
    if magic != 0x0801 {
        bail!(
            "{lab_name}: not an IDX labels file: magic 0x{magic:08x}, expected 0x00000801 (unsigned bytes, 1 dimension)"
        );
    }
    let count = be_u32(lab, 4) as usize;
    if count != n || lab.len() - 8 != n {
        bail!(
            "{lab_name}: header says {count} labels and the file holds {}, but {img_name} has {n} images",
            lab.len() - 8
        );
    }
    Ok((
        Arc::new(IdxImages {
            rows,
            cols,
            pixels: img[16..].to_vec(),
        }),
        lab[8..].to_vec(),
    ))
}

/// The largest class map accepted.
const MAX_CLASS_MAP: u64 = 64 << 20;

fn read_class_map(path: &Path, folders: &[String]) -> Result<Vec<(String, u32)>> {
    let bytes = crate::fsx::read_regular(path, "--class-map", MAX_CLASS_MAP)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow!("--class-map {}: not UTF-8 text ({e})", path.display()))?;
    parse_class_map(&text, &format!("--class-map {}", path.display()), folders)
}

/// A class map (`folder id` or `folder` per line, `#` comments) for these folders: every folder
/// named once, every id used once, every name safe as an output folder.
pub fn parse_class_map(text: &str, what: &str, folders: &[String]) -> Result<Vec<(String, u32)>> {
    let mut out: Vec<(String, u32)> = Vec::new();
    let mut seen: std::collections::BTreeMap<u32, (String, usize)> = Default::default();
    let mut entries = 0u32;
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{what}:{}", line_no + 1);
        let mut parts = line.split_whitespace();
        let folder = parts.next().unwrap_or_default().to_string();
        let id = match parts.next() {
            Some(v) => v
                .parse()
                .map_err(|_| anyhow!("{at}: bad class id `{v}` (expected a number 0..2^32)"))?,
            None => entries,
        };
        if let Some(extra) = parts.next() {
            bail!("{at}: unexpected `{extra}` after `{folder} {id}` (expected `folder [id]`)");
        }
        entries = entries.saturating_add(1);
        crate::fsx::safe_name(&folder, &at)?;
        if out.iter().any(|(f, _)| *f == folder) {
            bail!("{at}: folder `{folder}` is mapped twice");
        }
        if let Some((other, l)) = seen.get(&id) {
            bail!(
                "{at}: class id {id} is given to `{folder}` and to `{other}` (line {l}): each class needs its own id"
            );
        }
        seen.insert(id, (folder.clone(), line_no + 1));
        if folders.contains(&folder) {
            out.push((folder, id));
        }
    }
    for f in folders {
        if !out.iter().any(|(g, _)| g == f) {
            bail!("{what}: class folder `{f}` has no entry in the class map");
        }
    }
    Ok(out)
}

const IMAGE_EXTS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The classes of an ImageFolder tree, with a note for everything that was passed over.
fn open_folder(
    root: &Path,
    class_map: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<Vec<Class>> {
    let mut folders: Vec<String> = Vec::new();
    for e in std::fs::read_dir(root)
        .with_context(|| format!("cannot read data folder {}", root.display()))?
    {
        let e = e.with_context(|| format!("cannot read data folder {}", root.display()))?;
        if !e.path().is_dir() {
            continue;
        }
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            bail!(
                "{}: class folder name {:?} is not UTF-8",
                root.display(),
                e.file_name()
            );
        };
        if name.starts_with('.') {
            continue;
        }
        crate::fsx::safe_name(&name, &root.display().to_string())?;
        folders.push(name);
    }
    folders.sort();
    if folders.is_empty() {
        bail!(
            "{}: no class sub-folders (expected an ImageFolder tree: <data>/<class>/<image>)",
            root.display()
        );
    }
    let ids: Vec<(String, u32)> = match class_map {
        Some(p) => read_class_map(p, &folders)?,
        None => folders.iter().cloned().zip(0..).collect(),
    };
    let mut classes = Vec::new();
    for (name, id) in ids {
        let dir = root.join(&name);
        let mut files: Vec<PathBuf> = Vec::new();
        let (mut nested, mut special, mut other) = (0usize, 0usize, 0usize);
        for e in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read class folder {}", dir.display()))?
        {
            let p = e
                .with_context(|| format!("cannot read class folder {}", dir.display()))?
                .path();
            // Follows symbolic links: a link to an image counts, a link to a pipe does not.
            let Ok(meta) = std::fs::metadata(&p) else {
                special += 1;
                continue;
            };
            let is_image = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTS.contains(&e.to_lowercase().as_str()));
            if meta.is_dir() {
                nested += 1;
            } else if !meta.is_file() {
                special += usize::from(is_image);
            } else if is_image {
                files.push(p);
            } else {
                other += 1;
            }
        }
        if nested > 0 {
            notes.push(format!(
                "note: {}: {nested} sub-folder(s) ignored: only images directly in a class folder are read",
                dir.display()
            ));
        }
        if special > 0 {
            notes.push(format!(
                "warning: {}: {special} image name(s) skipped: not regular files (pipes, sockets, devices, broken links)",
                dir.display()
            ));
        }
        if other > 0 {
            notes.push(format!(
                "note: {}: {other} file(s) ignored: not {}",
                dir.display(),
                IMAGE_EXTS.join("/")
            ));
        }
        files.sort();
        classes.push(Class {
            id,
            name,
            positions: (0..files.len() as u64).collect(),
            items: files.into_iter().map(Item::File).collect(),
        });
    }
    classes.sort_by_key(|c| c.id);
    Ok(classes)
}

impl Dataset {
    /// Open `--data` (or the default) and apply `--classes`, `--shard` and `--limit-per-class`.
    pub fn open(args: &crate::cli::DataArgs) -> Result<Dataset> {
        let source = args
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        if !source.exists() {
            if args.data.is_none() {
                bail!(
                    "the default data {} is missing: install it with `apt-get install dataset-fashion-mnist`, or pass --data",
                    source.display()
                );
            }
            bail!("--data {}: no such file or folder", source.display());
        }
        let mut notes = Vec::new();
        if args.class_map.is_some() && !source.is_dir() {
            bail!("--class-map applies to an ImageFolder --data, not to an IDX file");
        }
        let (kind, mut classes, idx) = if source.is_dir() {
            (
                "imagefolder",
                open_folder(&source, args.class_map.as_deref(), &mut notes)?,
                None,
            )
        } else {
            let (images, labels) = open_idx(&source)?;
            let mut by_class: std::collections::BTreeMap<u32, Vec<Item>> = Default::default();
            for (i, &l) in labels.iter().enumerate() {
                by_class.entry(u32::from(l)).or_default().push(Item::Idx(i));
            }
            let classes = by_class
                .into_iter()
                .map(|(id, items)| Class {
                    id,
                    name: id.to_string(),
                    positions: (0..items.len() as u64).collect(),
                    items,
                })
                .collect();
            ("idx", classes, Some(images))
        };
        let auto = |spec: &Option<String>| spec.as_deref().is_some_and(|v| v.trim() == "auto");
        let (classes_auto, shard_auto) = (auto(&args.classes), auto(&args.shard));
        if classes_auto && shard_auto {
            bail!(
                "--classes auto and --shard auto both split by this task's index: use one of them"
            );
        }
        let task = if classes_auto || shard_auto {
            Some(task_from_env(|v| std::env::var(v).ok()).map_err(|e| {
                let flag = if shard_auto { "--shard" } else { "--classes" };
                anyhow!("{flag} auto: {e:#}")
            })?)
        } else {
            None
        };
        let mut part = None;
        if let (true, Some((i, n, from))) = (classes_auto, &task) {
            let k = classes.len();
            let range = block(*i, *n, k);
            if range.is_empty() {
                bail!(
                    "--classes auto: task {i} of {n} ({from}) gets no class: {} has only {k} classes, so use at most {k} tasks",
                    source.display()
                );
            }
            let ids: Vec<u32> = classes[range.clone()].iter().map(|c| c.id).collect();
            part = Some(format!(
                "class shard {i}/{n} ({from}): class{} {}",
                if ids.len() == 1 { "" } else { "es" },
                describe_ids(&ids)
            ));
            classes = classes.drain(range).collect();
        } else if let Some(spec) = &args.classes {
            let want = parse_classes(spec)?;
            for w in &want {
                if !classes.iter().any(|c| c.id == *w) {
                    bail!("--classes: class {w} is not in {}", source.display());
                }
            }
            classes.retain(|c| want.contains(&c.id));
        }
        let shard = match (&task, shard_auto) {
            (Some((i, n, from)), true) => {
                part = Some(format!("image shard {i}/{n} ({from})"));
                Some((*i, *n))
            }
            _ => args.shard.as_deref().map(parse_shard).transpose()?,
        };
        for c in &mut classes {
            // Limit first, so that the shards of a limited run partition the same images.
            if let Some(limit) = args.limit_per_class {
                c.items.truncate(limit.get());
                c.positions.truncate(limit.get());
            }
            if let Some((i, n)) = shard {
                c.items = c.items.iter().skip(i).step_by(n).cloned().collect();
                c.positions = c.positions.iter().skip(i).step_by(n).copied().collect();
            }
        }
        Ok(Dataset {
            source,
            kind,
            classes,
            idx,
            part,
            notes,
            shard,
        })
    }

    /// The ids of the classes taken, as `2..5` or `3,7`.
    pub fn class_ids(&self) -> String {
        describe_ids(&self.classes.iter().map(|c| c.id).collect::<Vec<_>>())
    }

    /// A digest of what decides the data's contents: for an IDX file its size and modification
    /// time (and its labels'), for an ImageFolder every chosen image's class, id, name, size and
    /// modification time. Cheap (no image is read) and stable between identical runs.
    pub fn fingerprint(&self) -> Result<String> {
        use std::fmt::Write as _;
        let stamp = |p: &Path| -> Result<String> {
            let m = std::fs::metadata(p).with_context(|| format!("cannot stat {}", p.display()))?;
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Ok(format!("{}:{t}", m.len()))
        };
        let mut text = String::new();
        if self.idx.is_some() {
            let _ = writeln!(text, "idx {}", stamp(&self.source)?);
            let _ = writeln!(text, "labels {}", stamp(&labels_path(&self.source)?)?);
        }
        for c in &self.classes {
            let _ = writeln!(text, "class {} {} {}", c.id, c.name, c.items.len());
            for item in &c.items {
                match item {
                    Item::Idx(i) => {
                        let _ = writeln!(text, " {i}");
                    }
                    Item::File(p) => {
                        let name = p.file_name().unwrap_or_default().to_string_lossy();
                        let _ = writeln!(text, " {name} {}", stamp(p)?);
                    }
                }
            }
        }
        Ok(crate::fsx::sha256_bytes(text.as_bytes()))
    }
}

/// The largest image file read (bytes), and the decoder's bounds: at most [`MAX_SIDE`] pixels a
/// side and [`MAX_DECODE_BYTES`] of decoded pixels.
pub const MAX_IMAGE_FILE: u64 = 256 << 20;
pub const MAX_SIDE: u32 = 1 << 15;
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

fn item_name(item: &Item) -> String {
    match item {
        Item::Idx(i) => format!("IDX image {i}"),
        Item::File(p) => p.display().to_string(),
    }
}

/// Decode an image file within bounds. Anything but a regular file is refused before it is
/// opened (opening a FIFO would block the run forever).
pub fn decode_file(p: &Path) -> Result<DynamicImage> {
    let bytes = crate::fsx::read_regular(p, "image", MAX_IMAGE_FILE)?;
    decode_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// Decode image bytes (format from the content) within the bounds above.
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage> {
    let mut r = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    r.limits(limits);
    Ok(r.decode()?)
}

/// How an image was fitted to the VAE's square input, to undo it on output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fit {
    /// Padded with black to the VAE size: crop `(x, y, w, h)` recovers the original frame.
    Pad { x: u32, y: u32, w: u32, h: u32 },
    /// Resized (short side) and center-cropped.
    Resize,
}

/// Load one image and convert it to the VAE input: `channels × size × size` in [-1, 1].
///
/// IDX images (a fixed-size dataset) no larger than the input are centred on black
/// (Fashion-MNIST's 28×28 on the 32×32 the VAE was trained with) and the frame is cropped back on
/// output; every other image is resized on the short side and center-cropped.
pub fn load(
    item: &Item,
    idx: Option<&IdxImages>,
    channels: usize,
    size: u32,
) -> Result<(Vec<f32>, Fit)> {
    let img = match item {
        Item::Idx(i) => {
            let d = idx.expect("IDX item without IDX data");
            let n = d.rows * d.cols;
            let px = d.pixels[i * n..(i + 1) * n].to_vec();
            DynamicImage::ImageLuma8(
                GrayImage::from_raw(d.cols as u32, d.rows as u32, px).expect("sizes"),
            )
        }
        Item::File(p) => decode_file(p)?,
    };
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        bail!("{}: the image is {w}x{h} pixels: empty", item_name(item));
    }
    let pad = matches!(item, Item::Idx(_)) && w <= size && h <= size;
    let (img, fit) = if pad {
        let canvas = match channels {
            1 => DynamicImage::ImageLuma8(GrayImage::new(size, size)),
            _ => DynamicImage::ImageRgb8(image::RgbImage::new(size, size)),
        };
        let (x, y) = ((size - w) / 2, (size - h) / 2);
        let mut canvas = canvas;
        let src = if channels == 1 {
            DynamicImage::ImageLuma8(img.to_luma8())
        } else {
            DynamicImage::ImageRgb8(img.to_rgb8())
        };
        image::imageops::overlay(&mut canvas, &src, i64::from(x), i64::from(y));
        (
            canvas,
            if (w, h) == (size, size) {
                Fit::Resize
            } else {
                Fit::Pad { x, y, w, h }
            },
        )
    } else {
        // Center-crop the square of the short side first, then resize it: the work is bounded by
        // the decoded area whatever the aspect ratio (resizing the short side of a 1×4,000,000
        // strip to the VAE size first would make a 32×128,000,000 image).
        let side = w.min(h);
        let square = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
        (
            square.resize_exact(size, size, FilterType::Lanczos3),
            Fit::Resize,
        )
    };
    let to_unit = |v: u8| f32::from(v) / 127.5 - 1.0;
    let data: Vec<f32> = match channels {
        1 => img.to_luma8().into_raw().into_iter().map(to_unit).collect(),
        3 => {
            // CHW from interleaved RGB.
            let rgb = img.to_rgb8();
            let n = (size * size) as usize;
            let mut out = vec![0.0f32; 3 * n];
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    out[c * n + i] = to_unit(px[c]);
                }
            }
            out
        }
        c => bail!("the VAE expects {c}-channel images; only 1 and 3 are supported"),
    };
    Ok((data, fit))
}

#[cfg(test)]
mod tests {
    use super::{block, task_from_env};

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn slurm(
        id: &str,
        min: &str,
        max: &str,
        step: &str,
        count: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("SLURM_ARRAY_TASK_ID", id.into()),
            ("SLURM_ARRAY_TASK_MIN", min.into()),
            ("SLURM_ARRAY_TASK_MAX", max.into()),
            ("SLURM_ARRAY_TASK_STEP", step.into()),
            ("SLURM_ARRAY_TASK_COUNT", count.into()),
        ]
    }

    fn task(vars: &[(&str, String)]) -> Result<(usize, usize), String> {
        let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        task_from_env(env(&v))
            .map(|(i, n, _)| (i, n))
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn slurm_arrays_give_the_place_in_the_range() {
        assert_eq!(task(&slurm("2", "0", "3", "1", "4")), Ok((2, 4)));
        assert_eq!(task(&slurm("1", "1", "8", "1", "8")), Ok((0, 8)));
        assert_eq!(task(&slurm("7", "1", "9", "2", "5")), Ok((3, 5)));
        // Slurm before 21.08 has no SLURM_ARRAY_TASK_COUNT: the range decides.
        let mut old = slurm("3", "0", "3", "1", "");
        old.retain(|(k, _)| *k != "SLURM_ARRAY_TASK_COUNT");
        assert_eq!(task(&old), Ok((3, 4)));
    }

    #[test]
    fn irregular_arrays_and_missing_variables_are_refused() {
        // --array=0,1,5: three tasks, not the range 0-5.
        let e = task(&slurm("5", "0", "5", "1", "3")).unwrap_err();
        assert!(
            e.contains("not the range") && e.contains("D3HR_SHARD_COUNT"),
            "{e}"
        );
        let e = task(&[]).unwrap_err();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
            "{e}"
        );
        let e = task(&[("SLURM_ARRAY_TASK_ID", "2".into())]).unwrap_err();
        assert!(e.contains("D3HR_SHARD_COUNT"), "{e}");
        let e = task(&[("JOB_COMPLETION_INDEX", "2".into())]).unwrap_err();
        assert!(e.contains("D3HR_SHARD_COUNT"), "{e}");
        let e = task(&[("SLURM_ARRAY_TASK_ID", "x".into())]).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_ID=`x`"), "{e}");
    }

    #[test]
    fn a_given_count_makes_the_id_the_index() {
        let k8s = [
            ("JOB_COMPLETION_INDEX", "3".to_string()),
            ("D3HR_SHARD_COUNT", "4".to_string()),
        ];
        assert_eq!(task(&k8s), Ok((3, 4)));
        // Rerunning task 7 of 16 as `sbatch --array=7` with D3HR_SHARD_COUNT=16.
        let mut rerun = slurm("7", "7", "7", "1", "1");
        rerun.push(("D3HR_SHARD_COUNT", "16".into()));
        assert_eq!(task(&rerun), Ok((7, 16)));
        let e = task(&[
            ("JOB_COMPLETION_INDEX", "4".to_string()),
            ("D3HR_SHARD_COUNT", "4".to_string()),
        ])
        .unwrap_err();
        assert!(e.contains("not below"), "{e}");
    }

    #[test]
    fn class_blocks_partition_the_classes() {
        for k in 1..30 {
            for n in 1..=k {
                let mut next = 0;
                for i in 0..n {
                    let b = block(i, n, k);
                    assert_eq!(b.start, next, "k {k} n {n} i {i}");
                    assert!(!b.is_empty() && b.len() <= k.div_ceil(n));
                    next = b.end;
                }
                assert_eq!(next, k);
            }
        }
        assert_eq!(block(0, 4, 10), 0..2);
        assert_eq!(block(3, 4, 10), 7..10);
    }
}
