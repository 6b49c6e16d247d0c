//! The output folder of `distill` and `sample`: what d3hr owns in it, what a run recorded, which
//! classes are verifiably done.
//!
//! Layout: `<out>/<class>/<k>.png`, `manifest.json`, `stats.safetensors` (distill), and while a
//! run is in flight `.d3hr/` with `run.json` (the run identity and its planned classes),
//! `done/<class>.json` (a finished class: its files with sizes and SHA-256), the inversion
//! checkpoints and the staging folders.

use crate::cli::RunArgs;
use crate::fsx::{self, RESERVED, child, safe_name, write_atomic};
use crate::identity::Identity;
use crate::manifest;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `.d3hr/run.json`: what the run in this folder is, and which class folders it writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub identity: Identity,
    pub classes: Vec<String>,
}

/// One written file of a class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `.d3hr/done/<class>.json`: a class is done when this exists, names this run, and every file
/// it lists is there with its size and hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneRecord {
    pub run: String,
    pub files: Vec<FileRecord>,
}

/// The largest record read back (they are a few kB to a few MB).
const MAX_RECORD: u64 = 256 << 20;

pub struct OutDir {
    pub path: PathBuf,
    resume: bool,
    force: bool,
    /// What an earlier run recorded here (run.json, else the manifest).
    recorded: Option<RunRecord>,
    /// Per-class records of a finished earlier run (from its manifest).
    manifest_done: Vec<(String, DoneRecord)>,
    /// Entries to remove before a `--force` run.
    owned: Vec<PathBuf>,
}

fn meta_dir(out: &Path) -> PathBuf {
    out.join(".d3hr")
}

/// Read what a finished or interrupted run recorded in `out`.
/// An earlier run's record, and the per-class records of its manifest.
type Records = (Option<RunRecord>, Vec<(String, DoneRecord)>);

fn read_records(out: &Path) -> Result<Records> {
    let run = meta_dir(out).join("run.json");
    let manifest = manifest::path(out);
    let mut done = Vec::new();
    let mut from_manifest = None;
    if manifest.exists() {
        let m = manifest::read(&manifest)?;
        if let Some(id) = m.get("identity") {
            let identity: Identity = serde_json::from_value(id.clone())
                .with_context(|| format!("{}: invalid `identity`", manifest.display()))?;
            let digest = identity.digest();
            let mut classes = Vec::new();
            for c in m["classes"].as_array().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                safe_name(&name, &manifest.display().to_string())?;
                if let Some(files) = c.get("files") {
                    let files: Vec<FileRecord> = serde_json::from_value(files.clone())
                        .with_context(|| format!("{}: invalid `files`", manifest.display()))?;
                    done.push((
                        name.clone(),
                        DoneRecord {
                            run: digest.clone(),
                            files,
                        },
                    ));
                }
                classes.push(name);
            }
            from_manifest = Some(RunRecord { identity, classes });
        }
    }
    if run.exists() {
        let bytes = fsx::read_regular(&run, "run record", MAX_RECORD)?;
        let r: RunRecord = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: invalid run record", run.display()))?;
        for c in &r.classes {
            safe_name(c, &run.display().to_string())?;
        }
        return Ok((Some(r), done));
    }
    Ok((from_manifest, done))
}

impl OutDir {
    /// Check `--out` against `--force` / `--resume` before anything is loaded; nothing is
    /// written or removed yet.
    pub fn open(out: &Path, run: &RunArgs) -> Result<OutDir> {
        if run.force && run.resume {
            bail!("--force and --resume contradict each other");
        }
        if out.exists() && !out.is_dir() {
            bail!("--out {}: exists and is not a folder", out.display());
        }
        let non_empty = fsx::non_empty_dir(out);
        if non_empty && !run.force && !run.resume {
            bail!(
                "--out {}: folder is not empty (use --resume to continue a run, --force to overwrite)",
                out.display()
            );
        }
        let (recorded, manifest_done) = if non_empty {
            read_records(out)?
        } else {
            (None, Vec::new())
        };
        if run.resume && non_empty && recorded.is_none() {
            bail!(
                "--resume: {} holds no record of a d3hr run (made by an older version, or not by d3hr); use --force or another --out",
                out.display()
            );
        }
        let mut owned = Vec::new();
        if run.force && non_empty {
            let mut known: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
            known.push(".d3hr".into());
            if let Some(r) = &recorded {
                known.extend(r.classes.iter().cloned());
            }
            if let Ok((Some(m), _)) = read_records_manifest_only(out) {
                known.extend(m.classes);
            }
            let mut unknown = Vec::new();
            for e in std::fs::read_dir(out)
                .with_context(|| format!("--out {}: cannot list", out.display()))?
            {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if known.contains(&name) {
                    owned.push(e.path());
                } else {
                    unknown.push(name);
                }
            }
            if !unknown.is_empty() {
                unknown.sort();
                unknown.truncate(5);
                bail!(
                    "--force: {} holds entries d3hr did not write ({}); remove them yourself or choose another --out",
                    out.display(),
                    unknown.join(", ")
                );
            }
        }
        Ok(OutDir {
            path: out.to_path_buf(),
            resume: run.resume,
            force: run.force,
            recorded,
            manifest_done,
            owned,
        })
    }

    /// The seed an earlier run recorded (so that `--resume` without `--seed` continues it).
    pub fn recorded_seed(&self) -> Option<u64> {
        let r = self.recorded.as_ref()?;
        r.identity.0.get("--seed")?.parse().ok()
    }

    /// Start the run: refuse a `--resume` of other settings (naming each), clear a `--force`d
    /// output, check that the folder is writable, record the run. Call after every other check.
    pub fn start(&mut self, identity: &Identity, classes: &[String]) -> Result<()> {
        for c in classes {
            safe_name(c, "class list")?;
        }
        if self.resume
            && let Some(r) = &self.recorded
        {
            identity.check_resume(&r.identity, &format!("{}", self.path.display()))?;
        }
        if self.force {
            for p in &self.owned {
                let meta = std::fs::symlink_metadata(p)?;
                if meta.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                }
                .with_context(|| format!("--force: cannot remove {}", p.display()))?;
            }
            self.owned.clear();
        }
        fsx::probe_writable(&self.path, "--out")?;
        let mut all = classes.to_vec();
        if let Some(r) = &self.recorded {
            // A resumed run owns what the first one planned too.
            for c in &r.classes {
                if !all.contains(c) {
                    all.push(c.clone());
                }
            }
        }
        let rec = RunRecord {
            identity: identity.clone(),
            classes: all,
        };
        write_atomic(
            &meta_dir(&self.path).join("run.json"),
            &serde_json::to_vec_pretty(&rec)?,
        )?;
        self.recorded = Some(rec);
        Ok(())
    }

    /// The inversion checkpoints' folder.
    pub fn checkpoints(&self) -> PathBuf {
        meta_dir(&self.path).join("invert")
    }

    /// The staging folder of class `name`.
    pub fn staging(&self, name: &str) -> Result<PathBuf> {
        child(&meta_dir(&self.path), &format!("staging-{name}"), "class")
    }

    /// The files of class `name` when an earlier run of this identity finished it and every
    /// file is intact; `None` means: (re)make it.
    pub fn done(&self, name: &str, identity: &Identity) -> Option<Vec<FileRecord>> {
        if !self.resume {
            return None;
        }
        let digest = identity.digest();
        let rec = child(
            &meta_dir(&self.path).join("done"),
            &format!("{name}.json"),
            "",
        )
        .ok()
        .and_then(|p| fsx::read_regular(&p, "record", MAX_RECORD).ok())
        .and_then(|b| serde_json::from_slice::<DoneRecord>(&b).ok())
        .or_else(|| {
            self.manifest_done
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r.clone())
        })?;
        if rec.run != digest || rec.files.is_empty() {
            return None;
        }
        let dir = child(&self.path, name, "class").ok()?;
        for f in &rec.files {
            let p = child(&dir, &f.name, "file").ok()?;
            let m = std::fs::symlink_metadata(&p).ok()?;
            if !m.is_file() || m.len() != f.bytes || fsx::sha256(&p).ok()? != f.sha256 {
                return None;
            }
        }
        Some(rec.files)
    }

    /// Record class `name` as done with these files (after they are in place).
    pub fn mark_done(&self, name: &str, identity: &Identity, files: &[FileRecord]) -> Result<()> {
        let p = child(
            &meta_dir(&self.path).join("done"),
            &format!("{name}.json"),
            "class",
        )?;
        let rec = DoneRecord {
            run: identity.digest(),
            files: files.to_vec(),
        };
        write_atomic(&p, &serde_json::to_vec_pretty(&rec)?)
    }

    /// Remove the in-flight records once the manifest is written.
    pub fn finish(&self) {
        let _ = std::fs::remove_dir_all(meta_dir(&self.path));
    }
}

fn read_records_manifest_only(out: &Path) -> Result<(Option<RunRecord>, ())> {
    let manifest = out.join("manifest.json");
    if !manifest.exists() {
        return Ok((None, ()));
    }
    let bytes = fsx::read_regular(&manifest, "manifest", MAX_RECORD)?;
    let m: serde_json::Value = serde_json::from_slice(&bytes)?;
    let mut classes = Vec::new();
    for c in m["classes"].as_array().into_iter().flatten() {
        if let Some(n) = c["name"].as_str()
            && safe_name(n, "manifest").is_ok()
        {
            classes.push(n.to_string());
        }
    }
    Ok((
        Some(RunRecord {
            identity: Identity::default(),
            classes,
        }),
        (),
    ))
}
