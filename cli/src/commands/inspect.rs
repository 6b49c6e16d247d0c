//! `inspect`: describe a statistics file or an output folder.

use anyhow::{Result, bail};
use d3hr_cli::cli::InspectArgs;
use d3hr_cli::fsx;
use d3hr_cli::manifest;
use d3hr_cli::stats::StatsFile;
use std::path::PathBuf;

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

pub fn run(a: &InspectArgs) -> Result<()> {
    let path = a.path.as_path();
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
