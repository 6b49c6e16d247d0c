//! The statistics file: per-class μ, σ, γ plus the exact moments (count, mean, M2, M3) that let
//! shards merge exactly, and the settings and model identity in its metadata. Safetensors.

use crate::fsx::write_atomic;
use crate::identity::Identity;
use anyhow::{Context, Result, bail};
use d3hr_core::moments::{Moments, summarize};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The largest statistics file read (ImageNet-1k at 4096 dimensions is about 200 MB).
pub const MAX_STATS_BYTES: u64 = 16 << 30;
/// The largest sample count of a class (f64 counts are exact up to 2^53).
pub const MAX_COUNT: u64 = 1 << 53;
/// Bound on |μ|, σ and |γ| of a latent dimension: latents are about unit scale, and values
/// beyond this overflow to ±∞ in f32 arithmetic downstream.
pub const MAX_VALUE: f64 = 1e6;
/// Bound on latent dimensions (C·H·W) and image elements (C·H·W).
const MAX_DIMS: usize = 1 << 24;

/// Check every metadata field of a statistics file, with a message naming the file and field.
pub fn validate_meta(m: &Meta, name: &str) -> Result<()> {
    let field = |f: &str, why: String| -> Result<()> { bail!("{name}: metadata `{f}`: {why}") };
    if m.format != 1 {
        field("format", format!("{} (this d3hr reads format 1)", m.format))?;
    }
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex64(&m.dit_sha256) {
        field(
            "dit_sha256",
            format!("{:?} is not 64 hex digits", m.dit_sha256),
        )?;
    }
    if !(m.vae_encoder_sha256.is_empty() || hex64(&m.vae_encoder_sha256)) {
        field(
            "vae_encoder_sha256",
            format!("{:?} is not 64 hex digits", m.vae_encoder_sha256),
        )?;
    }
    let elems = |s: &[usize; 3]| {
        s.iter()
            .try_fold(1usize, |a, &v| a.checked_mul(v))
            .filter(|&n| n > 0 && n <= MAX_DIMS)
    };
    if elems(&m.latent_shape).is_none() {
        field(
            "latent_shape",
            format!(
                "{:?}: every size must be >= 1, at most {MAX_DIMS} in all",
                m.latent_shape
            ),
        )?;
    }
    let [c, h, w] = m.image_shape;
    if elems(&m.image_shape).is_none() || !(c == 1 || c == 3) || h > 1 << 15 || w > 1 << 15 {
        field(
            "image_shape",
            format!(
                "{:?}: expected [1 or 3, height, width], each >= 1",
                m.image_shape
            ),
        )?;
    }
    if !(m.scaling_factor.is_finite() && m.scaling_factor > 0.0) {
        field(
            "scaling_factor",
            format!("{} must be finite and > 0", m.scaling_factor),
        )?;
    }
    if m.num_classes == 0 {
        field(
            "num_classes",
            "0: the model must know at least one class".into(),
        )?;
    }
    if m.grid.len() < 2
        || m.grid.windows(2).any(|p| p[0] >= p[1])
        || m.grid
            .iter()
            .any(|&t| t as usize >= crate::settings::TRAIN_STEPS)
    {
        field(
            "grid",
            format!(
                "{:?}: expected at least 2 increasing time steps below {}",
                m.grid,
                crate::settings::TRAIN_STEPS
            ),
        )?;
    }
    if !(m.guidance.is_finite() && m.guidance >= 0.0) {
        field(
            "guidance",
            format!("{} must be finite and >= 0", m.guidance),
        )?;
    }
    if let Some(crate::data::Fit::Pad { x, y, w: fw, h: fh }) = m.fit {
        let inside =
            |o: u32, l: u32, n: usize| l > 0 && o.checked_add(l).is_some_and(|e| e as usize <= n);
        if !(inside(x, fw, w) && inside(y, fh, h)) {
            field(
                "fit",
                format!("crop {fw}x{fh} at ({x}, {y}) does not lie inside the {w}x{h} image"),
            )?;
        }
    }
    Ok(())
}

/// Rewrite a safetensors file's JSON header with sorted keys (the library writes its metadata
/// from a `HashMap`, in a different order every run): same contents, same bytes.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_slice(&bytes[8..8 + n])?;
    let mut text = serde_json::to_vec(&header)?;
    // The data that follows stays 8-byte aligned, as safetensors pads it.
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// What produced the statistics: enough to refuse mixing incompatible files and to sample later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub tool: String,
    pub format: u32,
    pub dit_sha256: String,
    pub dit_file: String,
    pub vae_encoder_sha256: String,
    pub latent_shape: [usize; 3],
    pub image_shape: [usize; 3],
    pub scaling_factor: f32,
    pub num_classes: u32,
    pub null_class: u32,
    pub profile: crate::words::Profile,
    pub schedule: String,
    /// Inversion grid t_0 … t_T.
    pub grid: Vec<u32>,
    pub guidance: f32,
    /// Where each inversion step evaluated ε. Files written before this field existed were
    /// made with ε at the target step, so that is what a missing field means.
    #[serde(default = "crate::words::InversionEps::before_the_field")]
    pub inversion_eps: crate::words::InversionEps,
    pub mapping: crate::words::Mapping,
    pub posterior: crate::words::Posterior,
    pub seed: u64,
    pub data: String,
    /// How input images were fitted to the VAE (to undo on output).
    pub fit: Option<crate::data::Fit>,
}

impl Meta {
    /// Settings that must agree for two files to merge or for a model to sample from them.
    pub fn compatible(&self, other: &Meta) -> Result<(), String> {
        let checks: [(&str, bool); 8] = [
            ("DiT model (SHA-256)", self.dit_sha256 == other.dit_sha256),
            (
                "VAE encoder (SHA-256)",
                self.vae_encoder_sha256 == other.vae_encoder_sha256,
            ),
            ("latent shape", self.latent_shape == other.latent_shape),
            ("inversion grid", self.grid == other.grid),
            ("guidance", self.guidance == other.guidance),
            (
                "inversion ε step (--inversion-eps)",
                self.inversion_eps == other.inversion_eps,
            ),
            ("mapping", self.mapping == other.mapping),
            ("posterior", self.posterior == other.posterior),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((what, _)) => Err(format!("different {what}")),
            None => Ok(()),
        }
    }
}

/// One class's moments.
#[derive(Debug, Clone)]
pub struct ClassStats {
    pub id: u32,
    pub name: String,
    pub moments: Moments<Vec<f64>>,
}

impl ClassStats {
    pub fn new(id: u32, name: String, dims: usize) -> Self {
        ClassStats {
            id,
            name,
            moments: Moments::new(dims),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StatsFile {
    pub meta: Meta,
    pub classes: Vec<ClassStats>,
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn bytes_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn bytes_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl StatsFile {
    pub fn dims(&self) -> usize {
        self.meta.latent_shape.iter().product()
    }

    /// μ, σ (population or unbiased), γ of class `i`, as f32 for the selection stage.
    pub fn targets(&self, i: usize, unbiased: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = self.dims();
        let (mut m, mut s, mut g) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        self.classes[i]
            .moments
            .finalize_into(unbiased, &mut m, &mut s, &mut g)
            .expect("lengths match dims");
        (m, s, g)
    }

    /// Write the file; `run` (the identity of the run that made it) goes into its metadata.
    pub fn write_run(&self, path: &Path, run: Option<&Identity>) -> Result<()> {
        write_atomic(path, &self.to_bytes(run)?)
    }

    /// The file's bytes: the same for the same contents.
    pub fn to_bytes(&self, run: Option<&Identity>) -> Result<Vec<u8>> {
        let d = self.dims();
        let k = self.classes.len();
        let mut finals: HashMap<&str, Vec<f32>> = HashMap::new();
        let mut raw: HashMap<&str, Vec<f64>> = HashMap::new();
        for c in &self.classes {
            for i in 0..d {
                let s = c.moments.summary(i).expect("in range");
                finals.entry("mean").or_default().push(s.mean as f32);
                finals.entry("std").or_default().push(s.std as f32);
                finals
                    .entry("std_unbiased")
                    .or_default()
                    .push(s.std_unbiased as f32);
                finals
                    .entry("skewness")
                    .or_default()
                    .push(s.skewness as f32);
            }
            raw.entry("moments.mean")
                .or_default()
                .extend_from_slice(c.moments.mean());
            raw.entry("moments.m2")
                .or_default()
                .extend_from_slice(c.moments.m2());
            raw.entry("moments.m3")
                .or_default()
                .extend_from_slice(c.moments.m3());
        }
        let ids: Vec<i64> = self.classes.iter().map(|c| i64::from(c.id)).collect();
        let counts: Vec<i64> = self
            .classes
            .iter()
            .map(|c| c.moments.count() as i64)
            .collect();
        let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("class_ids".into(), Dtype::I64, vec![k], bytes_i64(&ids)),
            ("count".into(), Dtype::I64, vec![k], bytes_i64(&counts)),
        ];
        for name in ["mean", "std", "std_unbiased", "skewness"] {
            let v = finals.remove(name).unwrap_or_default();
            blobs.push((name.into(), Dtype::F32, vec![k, d], bytes_f32(&v)));
        }
        for name in ["moments.mean", "moments.m2", "moments.m3"] {
            let v = raw.remove(name).unwrap_or_default();
            blobs.push((name.into(), Dtype::F64, vec![k, d], bytes_f64(&v)));
        }
        let views: Vec<(String, TensorView<'_>)> = blobs
            .iter()
            .map(|(n, t, s, b)| Ok((n.clone(), TensorView::new(*t, s.clone(), b)?)))
            .collect::<Result<_, safetensors::SafeTensorError>>()?;
        let names: Vec<&str> = self.classes.iter().map(|c| c.name.as_str()).collect();
        let mut info = HashMap::from([
            ("d3hr".to_string(), serde_json::to_string(&self.meta)?),
            ("class_names".to_string(), serde_json::to_string(&names)?),
        ]);
        if let Some(run) = run {
            info.insert("d3hr_run".to_string(), serde_json::to_string(run)?);
        }
        canonical_header(safetensors::serialize(views, Some(info))?)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        self.write_run(path, None)
    }

    /// Read and validate a statistics file.
    pub fn read(path: &Path) -> Result<StatsFile> {
        Ok(Self::read_run(path)?.0)
    }

    /// Read and validate a statistics file, with the run identity recorded in it (if any).
    pub fn read_run(path: &Path) -> Result<(StatsFile, Option<Identity>)> {
        let bytes = crate::fsx::read_regular(path, "statistics file", MAX_STATS_BYTES)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parse and validate the bytes of a statistics file; `name` is used in messages.
    pub fn parse(bytes: &[u8], name: &str) -> Result<(StatsFile, Option<Identity>)> {
        let ctx = || format!("{name}: not a d3hr statistics file");
        let (_, header) = SafeTensors::read_metadata(bytes).with_context(ctx)?;
        let info = header.metadata().clone().unwrap_or_default();
        let meta: Meta =
            serde_json::from_str(info.get("d3hr").with_context(ctx)?).with_context(ctx)?;
        let names: Vec<String> =
            serde_json::from_str(info.get("class_names").with_context(ctx)?)
                .with_context(|| format!("{name}: metadata `class_names`: not a list of names"))?;
        let run: Option<Identity> = info
            .get("d3hr_run")
            .map(|r| serde_json::from_str(r))
            .transpose()
            .with_context(|| format!("{name}: metadata `d3hr_run`: not a run identity"))?;
        validate_meta(&meta, name)?;
        let st = SafeTensors::deserialize(bytes).with_context(ctx)?;
        let get = |t_name: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let t = st
                .tensor(t_name)
                .with_context(|| format!("{name}: tensor `{t_name}` missing"))?;
            if t.dtype() != dtype {
                bail!(
                    "{name}: tensor `{t_name}` is {:?}, expected {dtype:?}",
                    t.dtype()
                );
            }
            Ok(t.data().to_vec())
        };
        let i64s = |b: Vec<u8>| -> Vec<i64> {
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        };
        let f64s = |b: Vec<u8>| -> Vec<f64> {
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        };
        let ids = i64s(get("class_ids", Dtype::I64)?);
        let counts = i64s(get("count", Dtype::I64)?);
        let (mean, m2, m3) = (
            f64s(get("moments.mean", Dtype::F64)?),
            f64s(get("moments.m2", Dtype::F64)?),
            f64s(get("moments.m3", Dtype::F64)?),
        );
        let d: usize = meta.latent_shape.iter().product();
        let k = ids.len();
        let kd = k.saturating_mul(d);
        if counts.len() != k
            || names.len() != k
            || mean.len() != kd
            || m2.len() != kd
            || m3.len() != kd
        {
            bail!(
                "{name}: inconsistent sizes for {k} classes of {d} dimensions: {} counts, {} names, {}/{}/{} moments",
                counts.len(),
                names.len(),
                mean.len(),
                m2.len(),
                m3.len()
            );
        }
        if k == 0 {
            bail!("{name}: holds no classes");
        }
        let mut classes: Vec<ClassStats> = Vec::with_capacity(k);
        for i in 0..k {
            let cname = &names[i];
            let at = format!("{name}: class {i} ({cname:?})");
            crate::fsx::safe_name(cname, name)?;
            let id = u32::try_from(ids[i])
                .ok()
                .filter(|&id| id < meta.num_classes)
                .with_context(|| {
                    format!(
                        "{at}: class id {} is outside the model's 0..{}",
                        ids[i], meta.num_classes
                    )
                })?;
            let count = u64::try_from(counts[i])
                .ok()
                .filter(|&n| (1..=MAX_COUNT).contains(&n))
                .with_context(|| {
                    format!("{at}: count {} is not between 1 and {MAX_COUNT}", counts[i])
                })?;
            if let Some(other) = classes.iter().find(|c| c.id == id) {
                bail!("{at}: class id {id} appears twice (also `{}`)", other.name);
            }
            if let Some(other) = classes.iter().find(|c| c.name == *cname) {
                bail!("{at}: class name appears twice (ids {} and {id})", other.id);
            }
            let rows = i * d..(i + 1) * d;
            for j in 0..d {
                let (mu, q2, q3) = (mean[rows.start + j], m2[rows.start + j], m3[rows.start + j]);
                let s = summarize(count, mu, q2, q3);
                let bad = |what: &str, v: f64| {
                    anyhow::anyhow!(
                        "{at}: dimension {j}: {what} {v:e} is not a finite value within ±{MAX_VALUE:e}"
                    )
                };
                if !(mu.is_finite() && mu.abs() <= MAX_VALUE) {
                    return Err(bad("mean", mu));
                }
                if !(q2.is_finite() && q2 >= 0.0) {
                    return Err(anyhow::anyhow!(
                        "{at}: dimension {j}: M2 {q2:e} must be finite and >= 0"
                    ));
                }
                if !q3.is_finite() {
                    return Err(bad("M3", q3));
                }
                for (what, v) in [
                    ("std", s.std),
                    ("unbiased std", s.std_unbiased),
                    ("skewness", s.skewness),
                ] {
                    if !(v.is_finite() && v.abs() <= MAX_VALUE) {
                        return Err(bad(what, v));
                    }
                }
            }
            let mut buf = Vec::with_capacity(3 * d);
            buf.extend_from_slice(&mean[rows.clone()]);
            buf.extend_from_slice(&m2[rows.clone()]);
            buf.extend_from_slice(&m3[rows]);
            let moments = Moments::from_parts(d, count, buf)?;
            classes.push(ClassStats {
                id,
                name: cname.clone(),
                moments,
            });
        }
        Ok((StatsFile { meta, classes }, run))
    }

    /// Fold `other` (a disjoint shard: other classes, or other images of the same classes) in.
    pub fn merge(&mut self, other: &StatsFile, other_path: &Path) -> Result<()> {
        self.meta
            .compatible(&other.meta)
            .map_err(|why| anyhow::anyhow!("{}: cannot merge: {why}", other_path.display()))?;
        for c in &other.classes {
            let name_taken = self
                .classes
                .iter()
                .any(|m| m.name == c.name && m.id != c.id);
            match self.classes.iter_mut().find(|m| m.id == c.id) {
                Some(mine) => {
                    if mine.name != c.name {
                        bail!(
                            "{}: class {} is named `{}` there but `{}` in the files before",
                            other_path.display(),
                            c.id,
                            c.name,
                            mine.name
                        );
                    }
                    if mine.moments.count().saturating_add(c.moments.count()) > MAX_COUNT {
                        bail!(
                            "{}: class {}: merged count exceeds {MAX_COUNT}",
                            other_path.display(),
                            c.id
                        );
                    }
                    mine.moments.merge(&c.moments)?
                }
                None if name_taken => bail!(
                    "{}: class name `{}` has id {} there but another id in the files before",
                    other_path.display(),
                    c.name,
                    c.id
                ),
                None => self.classes.push(c.clone()),
            }
        }
        self.classes.sort_by_key(|c| c.id);
        Ok(())
    }

    /// One line per class: id, name, count and the spread of μ and σ.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let m = &self.meta;
        s += &format!(
            "d3hr statistics ({}), {} classes, latent {:?}, profile {:?}, grid {}…{} ({} steps, ε at the {:?} step), guidance {}, mapping {:?}, posterior {:?}, seed {}\nDiT {} (sha256 {}…)\n",
            m.tool,
            self.classes.len(),
            m.latent_shape,
            m.profile,
            m.grid.first().unwrap_or(&0),
            m.grid.last().unwrap_or(&0),
            m.grid.len().saturating_sub(1),
            m.inversion_eps,
            m.guidance,
            m.mapping,
            m.posterior,
            m.seed,
            m.dit_file,
            m.dit_sha256.chars().take(12).collect::<String>()
        );
        for c in &self.classes {
            let d = c.moments.dims();
            let mean_abs = c.moments.mean().iter().map(|v| v.abs()).sum::<f64>() / d as f64;
            let mean_std = (0..d)
                .map(|i| summarize(c.moments.count(), 0.0, c.moments.m2()[i], 0.0).std)
                .sum::<f64>()
                / d as f64;
            s += &format!(
                "  class {:>5} {:<12} n = {:>7}  mean|μ| = {:.4}  mean σ = {:.4}\n",
                c.id,
                c.name,
                c.moments.count(),
                mean_abs,
                mean_std
            );
        }
        s
    }
}
