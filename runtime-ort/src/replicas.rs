//! Several sessions of one DiT graph behind one noise predictor, run side by side.

use crate::dit::OrtDit;
use crate::error::{Error, Result};
use crate::graph::{GraphSource, SessionConfig};
use d3hr_core::NoisePredictor;
use std::num::NonZeroUsize;
use std::path::Path;

/// `n` copies of one DiT graph, each its own ONNX Runtime session, that split every batch into
/// `n` contiguous parts and predict them at the same time, one thread per copy.
///
/// Why: a small DiT (the embedded Fashion-MNIST one: 16 tokens, 4 M parameters) is hundreds of
/// small kernels per call, and ONNX Runtime's intra-op threads meet at a barrier after each. On
/// two cores, two one-thread sessions on halves of the batch outrun one two-thread session on
/// all of it (1.1× fp32, 1.5× int8 in graph runs of 8; README, speed section). A large graph
/// keeps its cores busy inside each kernel and gains little, at `n` times the weights' memory:
/// use one copy there.
///
/// Each copy gets `threads / n` intra-op threads (at least one). With one copy this is exactly
/// an [`OrtDit`]. With [`with_max_batch`](Self::with_max_batch) the batch is first cut into graph
/// runs of that many latents and whole runs are dealt out to the copies, so every run holds the
/// same latents whatever `n` is and the result does not depend on the number of copies (it can
/// depend, in the last bits, on the run size: a dynamically quantized graph scales activations
/// per run). Without it each copy runs its whole share of `⌈B / n⌉` latents.
pub struct OrtDitReplicas {
    dits: Vec<OrtDit>,
    max_batch: Option<NonZeroUsize>,
}

impl OrtDitReplicas {
    /// Load `n` sessions of the graph at `path`, sharing `cfg.threads` (default: the available
    /// parallelism) between them.
    pub fn load(path: &Path, cfg: &SessionConfig, n: NonZeroUsize) -> Result<Self> {
        Self::load_source(GraphSource::File(path), cfg, n)
    }

    /// [`OrtDitReplicas::load`] from a file or from memory.
    pub fn load_source(src: GraphSource<'_>, cfg: &SessionConfig, n: NonZeroUsize) -> Result<Self> {
        let mut each = cfg.clone();
        if n.get() > 1 {
            let total = cfg
                .threads
                .or_else(|| std::thread::available_parallelism().ok())
                .unwrap_or(NonZeroUsize::MIN);
            each.threads =
                Some(NonZeroUsize::new(total.get() / n.get()).unwrap_or(NonZeroUsize::MIN));
        }
        let dits = (0..n.get())
            .map(|_| OrtDit::load_source(src, &each))
            .collect::<Result<Vec<_>>>()?;
        Ok(OrtDitReplicas {
            dits,
            max_batch: None,
        })
    }

    /// Classifier-free guidance scale `w` for every copy (see [`OrtDit::with_guidance`]).
    pub fn with_guidance(self, scale: f32) -> Result<Self> {
        let dits = self
            .dits
            .into_iter()
            .map(|d| d.with_guidance(scale))
            .collect::<Result<Vec<_>>>()?;
        Ok(OrtDitReplicas { dits, ..self })
    }

    /// Graph runs of at most `n` latents, dealt out whole to the copies.
    pub fn with_max_batch(self, n: NonZeroUsize) -> Self {
        let dits = self.dits.into_iter().map(|d| d.with_max_batch(n)).collect();
        OrtDitReplicas {
            dits,
            max_batch: Some(n),
        }
    }

    /// Number of copies.
    pub fn replicas(&self) -> usize {
        self.dits.len()
    }

    /// Latents per graph run (`None`: each copy runs its whole share).
    pub fn max_batch(&self) -> Option<NonZeroUsize> {
        self.max_batch
    }

    /// The first copy; every copy is the same graph.
    fn first(&self) -> &OrtDit {
        &self.dits[0]
    }

    /// `[C, H, W]` of one latent.
    pub fn latent_shape(&self) -> [usize; 3] {
        self.first().latent_shape()
    }

    /// Number of real classes.
    pub fn num_classes(&self) -> u32 {
        self.first().num_classes()
    }

    /// The null (unconditional) class id.
    pub fn null_class(&self) -> u32 {
        self.first().null_class()
    }

    /// The graph file.
    pub fn path(&self) -> &Path {
        self.first().path()
    }
}

impl NoisePredictor for OrtDitReplicas {
    type Error = Error;

    fn latent_len(&self) -> usize {
        self.first().latent_len()
    }

    fn predict(&mut self, latents: &[f32], t: u32, classes: &[u32], eps: &mut [f32]) -> Result<()> {
        let d = self.latent_len();
        let n = classes.len();
        // Sizes are checked by each copy; a mismatch here would only mis-cut the parts.
        if self.dits.len() == 1 || n < 2 || latents.len() != n * d || eps.len() != n * d {
            return self.dits[0].predict(latents, t, classes, eps);
        }
        let per = share(n, self.max_batch, self.dits.len());
        let mut parts = self
            .dits
            .iter_mut()
            .zip(classes.chunks(per))
            .zip(latents.chunks(per * d).zip(eps.chunks_mut(per * d)));
        let ((dit0, cls0), (x0, out0)) = parts.next().expect("n >= 2 latents make a first part");
        std::thread::scope(|s| {
            let others: Vec<_> = parts
                .map(|((dit, cls), (x, out))| s.spawn(move || dit.predict(x, t, cls, out)))
                .collect();
            let first = dit0.predict(x0, t, cls0, out0);
            others
                .into_iter()
                .map(|h| h.join().expect("a DiT copy's thread panicked"))
                .fold(first, Result::and)
        })
    }
}

/// Latents per copy when `n` are dealt out to `copies`: whole graph runs of `run` latents when a
/// run size is set (so the runs are the ones a single copy would make), else `⌈n / copies⌉`.
fn share(n: usize, run: Option<NonZeroUsize>, copies: usize) -> usize {
    let run = run.map_or(1, NonZeroUsize::get);
    n.div_ceil(run).div_ceil(copies) * run
}

#[cfg(test)]
mod tests {
    use super::share;
    use std::num::NonZeroUsize;

    #[test]
    fn shares_are_whole_runs_and_as_even_as_runs_allow() {
        let r = |k| NonZeroUsize::new(k);
        assert_eq!(share(64, r(8), 2), 32);
        assert_eq!(share(64, r(8), 3), 24);
        assert_eq!(share(10, r(8), 2), 8);
        assert_eq!(share(5, None, 2), 3);
        for n in 1..100 {
            for run in 1..10 {
                for copies in 1..8 {
                    let s = share(n, r(run), copies);
                    assert_eq!(s % run, 0, "n {n}, run {run}, copies {copies}");
                    assert!(s * copies >= n, "n {n}, run {run}, copies {copies}: {s}");
                    assert!(
                        (s - run) * copies < n,
                        "n {n}, run {run}, copies {copies}: {s}"
                    );
                }
            }
        }
    }
}
