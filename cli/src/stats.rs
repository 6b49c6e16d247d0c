//! The statistics file: per-class μ, σ, γ plus the exact moments (count, mean, M2, M3) that let
//! shards merge exactly, and the settings and model identity in its metadata. Safetensors.

use crate::fsx::write_atomic;
use anyhow::{Context, Result, bail};
use d3hr_core::moments::{Moments, summarize};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

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
    pub profile: crate::cli::Profile,
    pub schedule: String,
    /// Inversion grid t_0 … t_T.
    pub grid: Vec<u32>,
    pub guidance: f32,
    /// Where each inversion step evaluated ε. Files written before this field existed were
    /// made with ε at the target step, so that is what a missing field means.
    #[serde(default = "crate::cli::InversionEps::before_the_field")]
    pub inversion_eps: crate::cli::InversionEps,
    pub mapping: crate::cli::Mapping,
    pub posterior: crate::cli::Posterior,
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

/// safetensors writes its `__metadata__` map in `HashMap` order, which changes from process to
/// process; the same statistics must give the same bytes (a merge is checked with `cmp`), so the
/// header is written again with every key sorted: the same JSON, the same length, the same data
/// offsets.
fn sorted_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .filter(|n| 8 + n <= bytes.len())
        .context("safetensors wrote no header")?;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    header.sort_all_objects();
    let sorted = serde_json::to_vec(&header)?;
    if sorted.len() > n {
        bail!("the sorted safetensors header is longer than the original");
    }
    bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
    bytes[8 + sorted.len()..8 + n].fill(b' ');
    Ok(bytes)
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

    pub fn write(&self, path: &Path) -> Result<()> {
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
        let info = HashMap::from([
            ("d3hr".to_string(), serde_json::to_string(&self.meta)?),
            ("class_names".to_string(), serde_json::to_string(&names)?),
        ]);
        let bytes = safetensors::serialize(views, Some(info))?;
        write_atomic(path, &sorted_header(bytes)?)
    }

    pub fn read(path: &Path) -> Result<StatsFile> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read statistics file {}", path.display()))?;
        let ctx = || format!("{}: not a d3hr statistics file", path.display());
        let (_, header) = SafeTensors::read_metadata(&bytes).with_context(ctx)?;
        let info = header.metadata().clone().unwrap_or_default();
        let meta: Meta =
            serde_json::from_str(info.get("d3hr").with_context(ctx)?).with_context(ctx)?;
        let names: Vec<String> =
            serde_json::from_str(info.get("class_names").with_context(ctx)?).with_context(ctx)?;
        let st = SafeTensors::deserialize(&bytes).with_context(ctx)?;
        let get = |name: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let t = st
                .tensor(name)
                .with_context(|| format!("{}: tensor `{name}` missing", path.display()))?;
            if t.dtype() != dtype {
                bail!(
                    "{}: tensor `{name}` is {:?}, expected {dtype:?}",
                    path.display(),
                    t.dtype()
                );
            }
            Ok(t.data().to_vec())
        };
        let i64s = |b: Vec<u8>| -> Vec<i64> {
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let f64s = |b: Vec<u8>| -> Vec<f64> {
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
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
        if counts.len() != k
            || names.len() != k
            || mean.len() != k * d
            || m2.len() != k * d
            || m3.len() != k * d
        {
            bail!(
                "{}: inconsistent tensor sizes for {k} classes of {d} dimensions",
                path.display()
            );
        }
        let mut classes = Vec::with_capacity(k);
        for i in 0..k {
            let mut buf = Vec::with_capacity(3 * d);
            buf.extend_from_slice(&mean[i * d..(i + 1) * d]);
            buf.extend_from_slice(&m2[i * d..(i + 1) * d]);
            buf.extend_from_slice(&m3[i * d..(i + 1) * d]);
            let moments = Moments::from_parts(d, counts[i] as u64, buf).expect("3·d values");
            classes.push(ClassStats {
                id: ids[i] as u32,
                name: names[i].clone(),
                moments,
            });
        }
        Ok(StatsFile { meta, classes })
    }

    /// Fold `other` (a disjoint shard: other classes, or other images of the same classes) in.
    pub fn merge(&mut self, other: &StatsFile, other_path: &Path) -> Result<()> {
        self.meta
            .compatible(&other.meta)
            .map_err(|why| anyhow::anyhow!("{}: cannot merge: {why}", other_path.display()))?;
        for c in &other.classes {
            match self.classes.iter_mut().find(|m| m.id == c.id) {
                Some(mine) => mine.moments.merge(&c.moments)?,
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
            &m.dit_sha256[..m.dit_sha256.len().min(12)]
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
