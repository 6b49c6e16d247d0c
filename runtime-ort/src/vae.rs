//! The VAE encoder and decoder graphs.

use crate::error::{Error, Result};
use crate::graph::{Graph, GraphSource, Port, SessionConfig};
use d3hr_core::ziggurat;
use ort::value::{TensorElementType, TensorRef};
use rand_core::Rng;
use std::path::Path;

/// The VAE of the pipeline: `z0 = s · E(x)` and `x = D(z0 / s)`.
///
/// Encoder interface: input `image` f32 `[B,Ci,S,S]` in [-1, 1]; outputs `mean`, `logvar` f32
/// `[B,C,h,w]` (unscaled). Decoder: input `latent` f32 `[B,C,h,w]` (unscaled), output `image`.
/// Metadata of both: `latent_shape`, `image_shape`, `scaling_factor`; when both graphs are
/// loaded they must agree.
pub struct OrtVae {
    encoder: Option<Graph>,
    decoder: Option<Graph>,
    scaling_factor: f32,
    image: [usize; 3],
    latent: [usize; 3],
    buf: Vec<f32>,
}

struct Shapes {
    scaling_factor: f32,
    image: [usize; 3],
    latent: [usize; 3],
}

fn shapes(g: &Graph) -> Result<Shapes> {
    let l = g.meta_dims("latent_shape")?;
    let i = g.meta_dims("image_shape")?;
    let s: f32 = g.meta_parse("scaling_factor")?;
    if !(s.is_finite() && s > 0.0) {
        return Err(Error::Metadata {
            path: g.path.clone(),
            key: "scaling_factor".into(),
            problem: format!("is {s}, must be a positive number"),
        });
    }
    Ok(Shapes {
        scaling_factor: s,
        image: [i[0], i[1], i[2]],
        latent: [l[0], l[1], l[2]],
    })
}

impl OrtVae {
    /// Load the encoder file, the decoder file, or both (at least one).
    pub fn load(
        encoder: Option<&Path>,
        decoder: Option<&Path>,
        cfg: &SessionConfig,
    ) -> Result<Self> {
        Self::load_sources(
            encoder.map(GraphSource::File),
            decoder.map(GraphSource::File),
            cfg,
        )
    }

    /// [`OrtVae::load`] from files or from memory.
    pub fn load_sources(
        encoder: Option<GraphSource<'_>>,
        decoder: Option<GraphSource<'_>>,
        cfg: &SessionConfig,
    ) -> Result<Self> {
        let f = TensorElementType::Float32;
        let enc = encoder
            .map(|p| -> Result<Graph> {
                let g = Graph::open(p, cfg)?;
                g.expect_interface(
                    &[Port {
                        name: "image",
                        ty: f,
                        rank: 4,
                    }],
                    &[
                        Port {
                            name: "mean",
                            ty: f,
                            rank: 4,
                        },
                        Port {
                            name: "logvar",
                            ty: f,
                            rank: 4,
                        },
                    ],
                )?;
                Ok(g)
            })
            .transpose()?;
        let dec = decoder
            .map(|p| -> Result<Graph> {
                let g = Graph::open(p, cfg)?;
                g.expect_interface(
                    &[Port {
                        name: "latent",
                        ty: f,
                        rank: 4,
                    }],
                    &[Port {
                        name: "image",
                        ty: f,
                        rank: 4,
                    }],
                )?;
                Ok(g)
            })
            .transpose()?;
        let shapes = match (&enc, &dec) {
            (Some(e), Some(d)) => {
                let (a, b) = (shapes(e)?, shapes(d)?);
                if (a.image, a.latent) != (b.image, b.latent)
                    || a.scaling_factor != b.scaling_factor
                {
                    return Err(Error::Interface {
                        path: d.path.clone(),
                        what: format!("metadata versus the encoder {}", e.path.display()),
                        expected: format!(
                            "image {:?}, latent {:?}, scaling {}",
                            a.image, a.latent, a.scaling_factor
                        ),
                        found: format!(
                            "image {:?}, latent {:?}, scaling {}",
                            b.image, b.latent, b.scaling_factor
                        ),
                    });
                }
                a
            }
            (Some(g), None) | (None, Some(g)) => shapes(g)?,
            (None, None) => {
                return Err(Error::NoVaeGraph);
            }
        };
        if let Some(e) = &enc {
            e.check_dims("image", &shapes.image, "image_shape")?;
        }
        if let Some(d) = &dec {
            d.check_dims("latent", &shapes.latent, "latent_shape")?;
        }
        Ok(OrtVae {
            encoder: enc,
            decoder: dec,
            scaling_factor: shapes.scaling_factor,
            image: shapes.image,
            latent: shapes.latent,
            buf: Vec::new(),
        })
    }

    /// `s`, the latent scaling factor (0.18215 for Stable Diffusion's VAE).
    pub fn scaling_factor(&self) -> f32 {
        self.scaling_factor
    }

    /// `[C, S, S]` of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        self.image
    }

    /// `[C, h, w]` of one latent.
    pub fn latent_shape(&self) -> [usize; 3] {
        self.latent
    }

    fn check(
        &self,
        g: &Graph,
        what: &'static str,
        got: usize,
        per: usize,
        batch: usize,
        shape: [usize; 3],
    ) -> Result<()> {
        if got != batch * per {
            return Err(Error::Batch {
                path: g.path.clone(),
                what,
                expected: batch * per,
                got,
                detail: format!("{batch} items of {shape:?}"),
            });
        }
        Ok(())
    }

    /// Run the encoder on `images` (`B·Ci·S·S` values in [-1, 1]); returns `(mean, logvar)`
    /// unscaled, `B·C·h·w` each.
    pub fn posterior(&mut self, images: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let enc = self.encoder.as_mut().ok_or(Error::NoEncoder)?;
        let per: usize = self.image.iter().product();
        let b = images.len() / per.max(1);
        let [ci, s1, s2] = self.image;
        if images.len() != b * per || b == 0 {
            return Err(Error::Batch {
                path: enc.path.clone(),
                what: "images",
                expected: b.max(1) * per,
                got: images.len(),
                detail: format!("a whole number (≥ 1) of images of {:?}", self.image),
            });
        }
        let inputs =
            TensorRef::from_array_view(([b, ci, s1, s2], images)).map_err(|e| enc.run_err(e))?;
        let outputs = enc
            .session
            .run(ort::inputs!["image" => inputs])
            .map_err(|e| Error::Run {
                path: enc.path.clone(),
                message: e.to_string(),
            })?;
        let lat: usize = self.latent.iter().product();
        let get = |name: &str| -> Result<Vec<f32>> {
            let (_, v) = outputs[name]
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::Run {
                    path: enc.path.clone(),
                    message: e.to_string(),
                })?;
            if v.len() != b * lat {
                return Err(Error::Run {
                    path: enc.path.clone(),
                    message: format!(
                        "output `{name}` has {} values, expected {}",
                        v.len(),
                        b * lat
                    ),
                });
            }
            Ok(v.to_vec())
        };
        let mean = get("mean")?;
        let logvar = get("logvar")?;
        Ok((mean, logvar))
    }

    /// `z0 = s · mean` for a batch of images, written into `out` (`B·C·h·w`).
    pub fn encode_mean(&mut self, images: &[f32], out: &mut [f32]) -> Result<()> {
        let (mean, _) = self.posterior(images)?;
        self.scaled_into(&mean, out)
    }

    /// `z0 = s · (mean + exp(logvar/2) · n)` with standard normals `n` from `rng` (a seeded
    /// posterior sample, as the authors' code draws, but reproducible).
    pub fn encode_sample<R: Rng + ?Sized>(
        &mut self,
        images: &[f32],
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<()> {
        let mut noise = vec![0.0f32; out.len()];
        ziggurat::fill_f32(rng, &mut noise);
        self.encode_with_noise(images, &noise, out)
    }

    /// `z0 = s · (mean + exp(logvar/2) · n)` with the caller's standard normals `noise` (one per
    /// latent value, `B·C·h·w`), so that each image's noise can come from a stream of its own.
    pub fn encode_with_noise(
        &mut self,
        images: &[f32],
        noise: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let (mut mean, logvar) = self.posterior(images)?;
        if noise.len() != mean.len() {
            let per: usize = self.latent.iter().product();
            let g = self.encoder.as_ref().expect("posterior ran");
            return self.check(
                g,
                "posterior noise",
                noise.len(),
                per,
                mean.len() / per,
                self.latent,
            );
        }
        for ((m, &lv), n) in mean.iter_mut().zip(&logvar).zip(noise) {
            *m += (0.5 * lv).exp() * n;
        }
        self.scaled_into(&mean, out)
    }

    fn scaled_into(&self, z: &[f32], out: &mut [f32]) -> Result<()> {
        if out.len() != z.len() {
            let g = self
                .encoder
                .as_ref()
                .or(self.decoder.as_ref())
                .expect("loaded");
            let per: usize = self.latent.iter().product();
            return self.check(g, "latents out", out.len(), per, z.len() / per, self.latent);
        }
        for (o, &v) in out.iter_mut().zip(z) {
            *o = self.scaling_factor * v;
        }
        Ok(())
    }

    /// Decode scaled latents `z0` (`B·C·h·w`) into images (`B·Ci·S·S`, about [-1, 1]; not clamped).
    pub fn decode(&mut self, latents: &[f32], out: &mut [f32]) -> Result<()> {
        let s = self.scaling_factor;
        let (lat, img) = (self.latent, self.image);
        let per: usize = lat.iter().product();
        let per_img: usize = img.iter().product();
        let dec = self.decoder.as_mut().ok_or(Error::NoDecoder)?;
        let b = latents.len() / per;
        if b == 0 || latents.len() != b * per || out.len() != b * per_img {
            return Err(Error::Batch {
                path: dec.path.clone(),
                what: if latents.len() != b * per || b == 0 {
                    "latents"
                } else {
                    "images out"
                },
                expected: if latents.len() != b * per || b == 0 {
                    b.max(1) * per
                } else {
                    b * per_img
                },
                got: if latents.len() != b * per || b == 0 {
                    latents.len()
                } else {
                    out.len()
                },
                detail: format!("latents of {lat:?} → images of {img:?}"),
            });
        }
        self.buf.clear();
        self.buf.extend(latents.iter().map(|&v| v / s));
        let input = TensorRef::from_array_view(([b, lat[0], lat[1], lat[2]], &self.buf[..]))
            .map_err(|e| dec.run_err(e))?;
        let outputs = dec
            .session
            .run(ort::inputs!["latent" => input])
            .map_err(|e| Error::Run {
                path: dec.path.clone(),
                message: e.to_string(),
            })?;
        let (_, v) = outputs["image"]
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::Run {
                path: dec.path.clone(),
                message: e.to_string(),
            })?;
        if v.len() != out.len() {
            return Err(Error::Run {
                path: dec.path.clone(),
                message: format!(
                    "output `image` has {} values, expected {}",
                    v.len(),
                    out.len()
                ),
            });
        }
        out.copy_from_slice(v);
        Ok(())
    }
}
