//! The DiT noise predictor ε_θ(z_t, t, c) as an ONNX graph.

use crate::error::{Error, Result};
use crate::graph::{Graph, GraphSource, Port, SessionConfig};
use d3hr_core::NoisePredictor;
use d3hr_core::ddim::{Guidance, combine_guidance};
use ort::value::{TensorElementType, TensorRef};
use std::num::NonZeroUsize;
use std::path::Path;

/// A class-conditional DiT exported by `models/export_dit.py` (or `make_test_models.py`).
///
/// Interface, checked at load: inputs `x` f32 `[B,C,H,W]`, `t` i64 `[B]` (DDPM step index),
/// `y` i64 `[B]` (class id, `null_class` for the unconditional embedding); output `eps` f32
/// `[B,C,H,W]`; metadata `latent_shape` (`C,H,W`), `num_classes`, `null_class`.
///
/// With a guidance scale `w ≠ 1` every call runs one doubled batch (conditional, then null
/// classes) and combines `ε = ε_uncond + w·(ε_cond − ε_uncond)` with the core's
/// [`combine_guidance`]: the same [`Guidance`] (validation, `w = 1` meaning off) and the same
/// arithmetic as [`d3hr_core::ddim::Guided`], with owned buffers. Batches larger than
/// [`with_max_batch`](Self::with_max_batch) are split. One `OrtDit` per thread: ONNX Runtime
/// sessions are used through `&mut self`.
pub struct OrtDit {
    graph: Graph,
    latent: [usize; 3],
    num_classes: u32,
    null_class: u32,
    guidance: Guidance,
    max_batch: Option<NonZeroUsize>,
    x: Vec<f32>,
    t: Vec<i64>,
    y: Vec<i64>,
    eps: Vec<f32>,
}

impl OrtDit {
    /// Load and check a DiT graph file.
    pub fn load(path: &Path, cfg: &SessionConfig) -> Result<Self> {
        Self::load_source(GraphSource::File(path), cfg)
    }

    /// Load and check a DiT graph from a file or from memory.
    pub fn load_source(src: GraphSource<'_>, cfg: &SessionConfig) -> Result<Self> {
        let graph = Graph::open(src, cfg)?;
        let f = TensorElementType::Float32;
        let i = TensorElementType::Int64;
        graph.expect_interface(
            &[
                Port {
                    name: "x",
                    ty: f,
                    rank: 4,
                },
                Port {
                    name: "t",
                    ty: i,
                    rank: 1,
                },
                Port {
                    name: "y",
                    ty: i,
                    rank: 1,
                },
            ],
            &[Port {
                name: "eps",
                ty: f,
                rank: 4,
            }],
        )?;
        let dims = graph.meta_dims("latent_shape")?;
        graph.check_dims("x", &dims, "latent_shape")?;
        let num_classes: u32 = graph.meta_parse("num_classes")?;
        let null_class: u32 = graph.meta_parse("null_class")?;
        if num_classes == 0 || null_class < num_classes {
            return Err(Error::Metadata {
                path: graph.path.clone(),
                key: "null_class".into(),
                problem: format!(
                    "is {null_class}, but must be at least num_classes ({num_classes}) so it does not shadow a class"
                ),
            });
        }
        Ok(OrtDit {
            graph,
            latent: [dims[0], dims[1], dims[2]],
            num_classes,
            null_class,
            guidance: Guidance {
                scale: 1.0,
                null_class,
            },
            max_batch: None,
            x: Vec::new(),
            t: Vec::new(),
            y: Vec::new(),
            eps: Vec::new(),
        })
    }

    /// Classifier-free guidance scale `w` (1 = off), with the graph's null class. Errors
    /// ([`Error::Guidance`]) where [`Guidance::new`] does: unless finite and ≥ 0.
    pub fn with_guidance(mut self, scale: f32) -> Result<Self> {
        self.guidance = Guidance::new(scale, self.null_class)
            .map_err(|source| Error::Guidance { scale, source })?;
        Ok(self)
    }

    /// The guidance in use (scale 1: off).
    pub fn guidance(&self) -> Guidance {
        self.guidance
    }

    /// Split calls into graph runs of at most `n` latents (before guidance doubling).
    pub fn with_max_batch(mut self, n: NonZeroUsize) -> Self {
        self.max_batch = Some(n);
        self
    }

    /// `[C, H, W]` of one latent.
    pub fn latent_shape(&self) -> [usize; 3] {
        self.latent
    }

    /// Number of real classes.
    pub fn num_classes(&self) -> u32 {
        self.num_classes
    }

    /// The null (unconditional) class id.
    pub fn null_class(&self) -> u32 {
        self.null_class
    }

    /// The graph file.
    pub fn path(&self) -> &Path {
        &self.graph.path
    }

    /// One graph run over `self.x`/`self.t`/`self.y` into `self.eps`.
    fn run(&mut self) -> Result<()> {
        let b = self.y.len();
        let [c, h, w] = self.latent;
        let OrtDit {
            graph,
            x,
            t,
            y,
            eps,
            ..
        } = self;
        let inputs = (|| -> ort::Result<_> {
            Ok(ort::inputs![
                "x" => TensorRef::from_array_view(([b, c, h, w], &x[..]))?,
                "t" => TensorRef::from_array_view(([b], &t[..]))?,
                "y" => TensorRef::from_array_view(([b], &y[..]))?,
            ])
        })()
        .map_err(|e| graph.run_err(e))?;
        let path = graph.path.clone();
        let outputs = graph.session.run(inputs).map_err(|e| Error::Run {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let (shape, data) = outputs["eps"]
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::Run {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if data.len() != b * c * h * w {
            return Err(Error::Run {
                path,
                message: format!("output `eps` has shape {shape}, expected [{b}, {c}, {h}, {w}]"),
            });
        }
        eps.clear();
        eps.extend_from_slice(data);
        Ok(())
    }
}

impl NoisePredictor for OrtDit {
    type Error = Error;

    fn latent_len(&self) -> usize {
        self.latent.iter().product()
    }

    fn predict(&mut self, latents: &[f32], t: u32, classes: &[u32], eps: &mut [f32]) -> Result<()> {
        let d = self.latent_len();
        let [c, h, w] = self.latent;
        let detail = || format!("{} latents of [{c}, {h}, {w}]", classes.len());
        for (what, got) in [("latents", latents.len()), ("eps", eps.len())] {
            if got != classes.len() * d {
                return Err(Error::Batch {
                    path: self.graph.path.clone(),
                    what,
                    expected: classes.len() * d,
                    got,
                    detail: detail(),
                });
            }
        }
        if let Some(&bad) = classes
            .iter()
            .find(|&&k| k >= self.num_classes && k != self.null_class)
        {
            return Err(Error::ClassOutOfRange {
                path: self.graph.path.clone(),
                class: bad,
                num_classes: self.num_classes,
                null_class: self.null_class,
            });
        }
        let chunk = self
            .max_batch
            .map_or(classes.len().max(1), NonZeroUsize::get);
        let guided = self.guidance.is_active();
        for ((cls, x), out) in classes
            .chunks(chunk)
            .zip(latents.chunks(chunk * d))
            .zip(eps.chunks_mut(chunk * d))
        {
            self.x.clear();
            self.x.extend_from_slice(x);
            self.y.clear();
            self.y.extend(cls.iter().map(|&k| i64::from(k)));
            if guided {
                self.x.extend_from_slice(x);
                let null = i64::from(self.guidance.null_class);
                self.y.extend(cls.iter().map(|_| null));
            }
            self.t.clear();
            self.t.resize(self.y.len(), i64::from(t));
            self.run()?;
            if guided {
                let (cond, uncond) = self.eps.split_at_mut(x.len());
                combine_guidance(cond, uncond, self.guidance.scale);
                out.copy_from_slice(cond);
            } else {
                out.copy_from_slice(&self.eps);
            }
        }
        Ok(())
    }
}
