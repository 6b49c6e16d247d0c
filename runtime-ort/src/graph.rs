//! One ONNX graph: loading with an execution provider, checking its interface, reading metadata.

use crate::error::{Error, Result};
use crate::library;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, ValueType};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider on this GPU. Loading fails if CUDA cannot be registered; it never
    /// falls back to the CPU silently.
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

impl Device {
    fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "CPU",
            Device::Cuda { .. } => "CUDA",
        }
    }
}

/// How graphs are loaded.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// Execution provider.
    pub device: Device,
    /// Intra-op threads (ONNX Runtime's default: one per physical core).
    pub threads: Option<NonZeroUsize>,
    /// An explicit ONNX Runtime library (otherwise see [`library::find_library`]).
    pub ort_lib: Option<PathBuf>,
}

/// Where a graph comes from: a file, or bytes the program carries (an embedded default model),
/// with the name that errors and records show for it.
#[derive(Debug, Clone, Copy)]
pub enum GraphSource<'a> {
    /// An ONNX file (external data files next to it are found by ONNX Runtime).
    File(&'a Path),
    /// A self-contained ONNX graph in memory.
    Memory {
        /// What to call it in messages, e.g. `embedded:fashion_mnist/dit.onnx`.
        name: &'a Path,
        /// The serialised graph.
        bytes: &'a [u8],
    },
}

impl GraphSource<'_> {
    /// The file, or the name of the bytes.
    pub fn name(&self) -> &Path {
        match self {
            GraphSource::File(p) => p,
            GraphSource::Memory { name, .. } => name,
        }
    }
}

impl<'a> From<&'a Path> for GraphSource<'a> {
    fn from(p: &'a Path) -> Self {
        GraphSource::File(p)
    }
}

/// A loaded graph and the file it came from.
pub(crate) struct Graph {
    pub session: Session,
    pub path: PathBuf,
    meta: HashMap<String, String>,
}

/// One declared input or output: name, element type, rank.
pub(crate) struct Port {
    pub name: &'static str,
    pub ty: TensorElementType,
    pub rank: usize,
}

impl Graph {
    pub fn open(src: GraphSource<'_>, cfg: &SessionConfig) -> Result<Graph> {
        let path = src.name().to_path_buf();
        if let GraphSource::File(p) = src {
            std::fs::metadata(p).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        let (env, _) = library::environment(cfg.ort_lib.as_deref())?;
        let model_err = |e: &dyn std::fmt::Display| Error::Model {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut builder = Session::builder(env)
            .map_err(|e| model_err(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| model_err(&e))?;
        if let Some(n) = cfg.threads {
            builder = builder
                .with_intra_threads(n.get())
                .map_err(|e| model_err(&e))?;
        }
        if let Device::Cuda { device_id } = cfg.device {
            let ep = ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure();
            builder = builder
                .with_execution_providers([ep])
                .map_err(|e| Error::Provider {
                    path: path.clone(),
                    provider: cfg.device.name(),
                    message: e.to_string().trim_end_matches('.').to_string(),
                })?;
        }
        let session = match src {
            GraphSource::File(p) => builder.commit_from_file(p),
            GraphSource::Memory { bytes, .. } => builder.commit_from_memory(bytes),
        };
        let session = session.map_err(|e| {
            let message = e.to_string().trim_end_matches('.').to_string();
            if matches!(cfg.device, Device::Cuda { .. }) && message.to_lowercase().contains("cuda")
            {
                Error::Provider {
                    path: path.clone(),
                    provider: cfg.device.name(),
                    message,
                }
            } else {
                Error::Model {
                    path: path.clone(),
                    message,
                }
            }
        })?;
        let mut meta = HashMap::new();
        if let Ok(m) = session.metadata()
            && let Ok(keys) = m.custom_keys()
        {
            for k in keys {
                if let Some(v) = m.custom(&k) {
                    meta.insert(k, v);
                }
            }
        }
        Ok(Graph {
            session,
            path,
            meta,
        })
    }

    /// Checks that the graph's inputs and outputs are exactly `inputs` and `outputs` (names in
    /// order, element types and ranks).
    pub fn expect_interface(&self, inputs: &[Port], outputs: &[Port]) -> Result<()> {
        for (what, declared, want) in [
            ("inputs", self.session.inputs(), inputs),
            ("outputs", self.session.outputs(), outputs),
        ] {
            let names: Vec<&str> = declared.iter().map(|o| o.name()).collect();
            let want_names: Vec<&str> = want.iter().map(|p| p.name).collect();
            if names != want_names {
                return Err(self.interface(what, want_names.join(", "), names.join(", ")));
            }
            for (o, p) in declared.iter().zip(want) {
                match o.dtype() {
                    ValueType::Tensor { ty, shape, .. } if *ty == p.ty && shape.len() == p.rank => {
                    }
                    other => {
                        return Err(self.interface(
                            &format!("{what} `{}`", p.name),
                            format!("a rank-{} {:?} tensor", p.rank, p.ty),
                            format!("{other:?}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The declared (static) dimensions of input `name`; `-1` marks a dynamic one.
    pub fn input_dims(&self, name: &str) -> Vec<i64> {
        self.session
            .inputs()
            .iter()
            .find(|o| o.name() == name)
            .and_then(|o| match o.dtype() {
                ValueType::Tensor { shape, .. } => Some(shape.to_vec()),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn interface(&self, what: &str, expected: String, found: String) -> Error {
        Error::Interface {
            path: self.path.clone(),
            what: what.to_string(),
            expected,
            found,
        }
    }

    fn meta_err(&self, key: &str, problem: String) -> Error {
        Error::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            problem,
        }
    }

    pub fn meta_str(&self, key: &str) -> Result<&str> {
        self.meta.get(key).map(String::as_str).ok_or_else(|| {
            self.meta_err(
                key,
                "is missing (export the graph with models/export_*.py)".into(),
            )
        })
    }

    pub fn meta_parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let s = self.meta_str(key)?;
        s.trim()
            .parse()
            .map_err(|_| self.meta_err(key, format!("is `{s}`, not a valid number")))
    }

    /// A `C,H,W` style list of positive sizes.
    pub fn meta_dims(&self, key: &str) -> Result<Vec<usize>> {
        let s = self.meta_str(key)?;
        let dims: Option<Vec<usize>> = s
            .split(',')
            .map(|d| d.trim().parse().ok().filter(|&v: &usize| v > 0))
            .collect();
        match dims {
            Some(d) if d.len() == 3 => Ok(d),
            _ => Err(self.meta_err(
                key,
                format!("is `{s}`, expected three positive sizes like `4,32,32`"),
            )),
        }
    }

    /// Checks declared static dims of `input` (after the batch axis) against `dims`.
    pub fn check_dims(&self, input: &str, dims: &[usize], source: &str) -> Result<()> {
        let declared = self.input_dims(input);
        for (i, (&d, &want)) in declared.iter().skip(1).zip(dims).enumerate() {
            if d >= 0 && d as usize != want {
                return Err(self.interface(
                    &format!("input `{input}` dimension {}", i + 1),
                    format!("{want} (from metadata `{source}`)"),
                    d.to_string(),
                ));
            }
        }
        Ok(())
    }

    pub fn run_err(&self, e: impl std::fmt::Display) -> Error {
        Error::Run {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}
