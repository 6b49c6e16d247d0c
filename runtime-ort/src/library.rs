//! Finding and loading the ONNX Runtime shared library.
//!
//! Order: an explicit path, then `ORT_DYLIB_PATH`, then the library inside an installed
//! `onnxruntime` or `onnxruntime-gpu` Python package (both install the `onnxruntime` module) of the
//! interpreters `$D3HR_PYTHON`, `python3` and `python`. Nothing is downloaded.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// The ONNX Runtime version this crate is tested with (pinned in `.ci/run`).
pub const TESTED_ORT_VERSION: &str = "1.31.1";

#[cfg(target_os = "windows")]
const LIB_PREFIX: &str = "onnxruntime.dll";
#[cfg(target_os = "macos")]
const LIB_PREFIX: &str = "libonnxruntime";
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
const LIB_PREFIX: &str = "libonnxruntime.so";

/// Where the library was found and how.
#[derive(Debug, Clone)]
pub struct Library {
    /// The shared library file.
    pub path: PathBuf,
    /// How it was found (`--ort-lib`, `ORT_DYLIB_PATH`, `python3 package …`).
    pub source: String,
}

/// Locate the ONNX Runtime library without loading it.
pub fn find_library(explicit: Option<&Path>) -> Result<Library> {
    let mut tried = Vec::new();
    if let Some(p) = explicit {
        return existing(p, "--ort-lib");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return existing(Path::new(&p), "ORT_DYLIB_PATH");
    }
    tried.push("ORT_DYLIB_PATH (unset)".to_string());
    let mut pythons: Vec<String> = Vec::new();
    if let Ok(p) = std::env::var("D3HR_PYTHON") {
        pythons.push(p);
    }
    pythons.extend(["python3".to_string(), "python".to_string()]);
    for py in &pythons {
        match python_package_dir(py) {
            Some(dir) => {
                let capi = dir.join("capi");
                if let Some(lib) = library_in(&capi) {
                    return Ok(Library {
                        path: lib,
                        source: format!("{py}: Python package at {}", dir.display()),
                    });
                }
                tried.push(format!("{py}: {} (no {LIB_PREFIX}*)", capi.display()));
            }
            None => tried.push(format!("{py}: no `onnxruntime` package")),
        }
    }
    Err(Error::LibraryNotFound {
        tried,
        pinned: TESTED_ORT_VERSION,
    })
}

fn existing(p: &Path, given_by: &'static str) -> Result<Library> {
    if p.is_file() {
        Ok(Library {
            path: p.to_path_buf(),
            source: given_by.to_string(),
        })
    } else {
        Err(Error::LibraryFileMissing {
            path: p.to_path_buf(),
            given_by,
        })
    }
}

/// The directory of the `onnxruntime` package of interpreter `py`, found without importing it.
fn python_package_dir(py: &str) -> Option<PathBuf> {
    let out = Command::new(py)
        .args([
            "-c",
            "import importlib.util, os\n\
             s = importlib.util.find_spec('onnxruntime')\n\
             print(os.path.dirname(s.origin) if s and s.origin else '')",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The shared library in `dir`: `libonnxruntime.so.1.31.1` (the real file) over its symlinks.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIB_PREFIX) && !n.contains("providers"))
        })
        .collect();
    // The longest name carries the full version; prefer it.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

/// Why the one load of ONNX Runtime failed, kept for the rest of the process.
enum LoadFailure {
    Load(PathBuf, Arc<ort::LoadDynamicError>),
    Init(PathBuf, Arc<ort::Error>),
}

impl LoadFailure {
    /// The error to report, every time it is asked for: a library older than the API `ort` needs
    /// is a [`Error::VersionMismatch`].
    fn to_error(&self) -> Error {
        match self {
            LoadFailure::Load(path, e) => match &**e {
                ort::LoadDynamicError::BadVersion { version_str, .. } => Error::VersionMismatch {
                    path: path.clone(),
                    found: version_str.clone(),
                    required_minor: ort::MINOR_VERSION,
                    tested: TESTED_ORT_VERSION,
                },
                _ => Error::LoadLibrary {
                    path: path.clone(),
                    source: Arc::clone(e),
                },
            },
            LoadFailure::Init(path, e) => Error::InitLibrary {
                path: path.clone(),
                source: Arc::clone(e),
            },
        }
    }
}

static ENVIRONMENT: OnceLock<
    std::result::Result<(ort::environment::Environment, Library), LoadFailure>,
> = OnceLock::new();

/// Load ONNX Runtime once per process (the first successful load wins) and return its
/// environment and where it came from.
///
/// A library that cannot be found is reported as [`Error::LibraryNotFound`] and not remembered, so
/// a later call may pass an explicit path; a library that was found but failed to load
/// ([`Error::LoadLibrary`], [`Error::VersionMismatch`]) or initialise ([`Error::InitLibrary`]) is
/// remembered, since ONNX Runtime cannot be loaded twice into one process.
pub fn environment(
    explicit: Option<&Path>,
) -> Result<(&'static ort::environment::Environment, &'static Library)> {
    let slot = match ENVIRONMENT.get() {
        Some(slot) => slot,
        None => {
            let lib = find_library(explicit)?;
            ENVIRONMENT.get_or_init(|| {
                let env = ort::init_from(&lib.path)
                    .map_err(|e| LoadFailure::Load(lib.path.clone(), Arc::new(e)))?
                    .with_name("d3hr")
                    .build()
                    .map_err(|e| LoadFailure::Init(lib.path.clone(), Arc::new(e)))?;
                Ok((env, lib))
            })
        }
    };
    match slot {
        Ok((env, lib)) => Ok((env, lib)),
        Err(failure) => Err(failure.to_error()),
    }
}
