//! Rust-side outputs against PyTorch references, and the error paths, on the committed tiny
//! graphs in `models/test_data/` (made by `models/make_test_models.py`, which also wrote the
//! PyTorch reference tensors in `reference.safetensors`).
//!
//! Needs the ONNX Runtime library (`.ci/run` installs the pinned `onnxruntime` wheel); without it
//! these tests fail with the install hint rather than pass silently.

use d3hr_core::NoisePredictor;
use d3hr_core::ddim::{self, Guidance};
use d3hr_ort::{Device, Error, GraphSource, OrtDit, OrtDitReplicas, OrtVae, SessionConfig};
use rand_core::SeedableRng;
use safetensors::SafeTensors;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/test_data")
        .join(name)
}

struct Refs(Vec<u8>);

impl Refs {
    fn load() -> Self {
        Refs(std::fs::read(data("reference.safetensors")).expect("reference tensors"))
    }
    fn f64(&self, name: &str) -> Vec<f64> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn f32(&self, name: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cpu() -> SessionConfig {
    SessionConfig::default()
}

fn dit() -> OrtDit {
    OrtDit::load(&data("tiny_dit.onnx"), &cpu()).expect("tiny DiT loads")
}

#[test]
fn dit_matches_pytorch() {
    let r = Refs::load();
    let (x, t, y, want) = (
        r.f32("dit.x"),
        r.i64("dit.t"),
        r.i64("dit.y"),
        r.f32("dit.eps"),
    );
    let mut m = dit();
    assert_eq!(m.latent_shape(), [4, 8, 8]);
    assert_eq!((m.num_classes(), m.null_class()), (10, 10));
    let d = m.latent_len();
    // One timestep per call: run each reference sample on its own.
    for i in 0..t.len() {
        let mut eps = vec![0.0f32; d];
        m.predict(
            &x[i * d..(i + 1) * d],
            t[i] as u32,
            &[y[i] as u32],
            &mut eps,
        )
        .unwrap();
        let err = max_abs(&eps, &want[i * d..(i + 1) * d]);
        assert!(err <= 1e-4, "sample {i}: max abs error {err:e}");
        assert!(
            want[i * d..(i + 1) * d].iter().any(|&v| v.abs() > 1e-3),
            "reference is trivial"
        );
    }
}

#[test]
fn vae_matches_pytorch() {
    let r = Refs::load();
    let mut vae = OrtVae::load(
        Some(&data("tiny_vae_encoder.onnx")),
        Some(&data("tiny_vae_decoder.onnx")),
        &cpu(),
    )
    .unwrap();
    assert_eq!(
        (vae.image_shape(), vae.latent_shape()),
        ([1, 32, 32], [4, 8, 8])
    );
    let (mean, logvar) = vae.posterior(&r.f32("enc.image")).unwrap();
    let (em, el) = (
        max_abs(&mean, &r.f32("enc.mean")),
        max_abs(&logvar, &r.f32("enc.logvar")),
    );
    assert!(
        em <= 1e-4 && el <= 1e-4,
        "encoder: mean {em:e}, logvar {el:e}"
    );

    // encode_mean scales by s; decode divides by it again.
    let s = vae.scaling_factor();
    let mut z = vec![0.0f32; mean.len()];
    vae.encode_mean(&r.f32("enc.image"), &mut z).unwrap();
    assert!(z.iter().zip(&mean).all(|(a, b)| (a - s * b).abs() <= 1e-6));
    let scaled: Vec<f32> = r.f32("dec.latent").iter().map(|v| v * s).collect();
    let mut img = vec![0.0f32; 2 * 32 * 32];
    vae.decode(&scaled, &mut img).unwrap();
    let err = max_abs(&img, &r.f32("dec.image"));
    assert!(err <= 1e-4, "decoder: max abs error {err:e}");
}

#[test]
fn seeded_posterior_sample_is_reproducible() {
    let r = Refs::load();
    let mut vae = OrtVae::load(Some(&data("tiny_vae_encoder.onnx")), None, &cpu()).unwrap();
    let images = r.f32("enc.image");
    let mut a = vec![0.0f32; 2 * 256];
    let mut b = a.clone();
    let mut c = a.clone();
    vae.encode_sample(&images, &mut rand_pcg::Pcg64::seed_from_u64(5), &mut a)
        .unwrap();
    vae.encode_sample(&images, &mut rand_pcg::Pcg64::seed_from_u64(5), &mut b)
        .unwrap();
    vae.encode_sample(&images, &mut rand_pcg::Pcg64::seed_from_u64(6), &mut c)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn guidance_doubles_the_batch_and_combines() {
    let r = Refs::load();
    let x = r.f32("dit.x");
    let mut plain = dit();
    let d = plain.latent_len();
    let x2 = &x[..2 * d];
    let (mut cond, mut uncond) = (vec![0.0; 2 * d], vec![0.0; 2 * d]);
    plain.predict(x2, 400, &[3, 7], &mut cond).unwrap();
    plain.predict(x2, 400, &[10, 10], &mut uncond).unwrap();
    let mut guided = dit().with_guidance(4.0).unwrap();
    let mut got = vec![0.0; 2 * d];
    guided.predict(x2, 400, &[3, 7], &mut got).unwrap();
    let want: Vec<f32> = cond
        .iter()
        .zip(&uncond)
        .map(|(c, u)| u + 4.0 * (c - u))
        .collect();
    assert!(max_abs(&got, &want) <= 1e-4);
    assert!(max_abs(&got, &cond) > 1e-3, "guidance had no effect");
    let err = dit().with_guidance(f32::NAN).err().expect("NaN refused");
    assert!(matches!(err, Error::Guidance { .. }), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "{err}");
}

/// One guidance implementation: the runtime's guided DiT gives, bit for bit, what the core's
/// [`ddim::Guided`] wrapper gives around an unguided one (same doubled batch, same combination).
#[test]
fn guided_dit_equals_the_core_guided_wrapper() {
    let r = Refs::load();
    let x = r.f32("dit.x");
    let d = dit().latent_len();
    let x2 = &x[..2 * d];
    let mut ort_guided = dit().with_guidance(4.0).unwrap();
    assert_eq!(ort_guided.guidance(), Guidance::new(4.0, 10).unwrap());
    let mut got = vec![0.0; 2 * d];
    ort_guided.predict(x2, 400, &[3, 7], &mut got).unwrap();
    let plain = dit();
    let g = Guidance::new(4.0, plain.null_class()).unwrap();
    let (mut xs, mut es, mut cs) = (vec![0.0; 4 * d], vec![0.0; 4 * d], vec![0; 4]);
    let mut core_guided = ddim::Guided::new(plain, g, &mut xs, &mut es, &mut cs);
    let mut want = vec![0.0; 2 * d];
    core_guided.predict(x2, 400, &[3, 7], &mut want).unwrap();
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn max_batch_splits_without_changing_results() {
    let r = Refs::load();
    let x = r.f32("dit.x");
    let mut whole = dit();
    let d = whole.latent_len();
    let mut a = vec![0.0; 3 * d];
    whole.predict(&x, 250, &[1, 2, 3], &mut a).unwrap();
    let mut split = dit().with_max_batch(2.try_into().unwrap());
    let mut b = vec![0.0; 3 * d];
    split.predict(&x, 250, &[1, 2, 3], &mut b).unwrap();
    assert!(max_abs(&a, &b) <= 1e-5);
}

#[test]
fn wrong_input_names_are_reported() {
    let err = OrtDit::load(&data("bad_names.onnx"), &cpu())
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Interface { .. }), "{msg}");
    assert!(
        msg.contains("bad_names.onnx")
            && msg.contains("x, t, y")
            && msg.contains("latent, timestep, label"),
        "{msg}"
    );
}

#[test]
fn truncated_model_is_an_error_not_a_crash() {
    let bytes = std::fs::read(data("tiny_dit.onnx")).unwrap();
    let dir = std::env::temp_dir().join(format!("d3hr-ort-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truncated.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = OrtDit::load(&path, &cpu()).err().expect("must fail");
    assert!(matches!(err, Error::Model { .. }), "{err}");
    assert!(err.to_string().contains("truncated.onnx"), "{err}");
    std::fs::write(&path, b"not an onnx file").unwrap();
    assert!(matches!(
        OrtDit::load(&path, &cpu()),
        Err(Error::Model { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);

    let missing = OrtDit::load(&data("no_such_model.onnx"), &cpu())
        .err()
        .expect("must fail");
    assert!(
        matches!(missing, Error::Io { .. }) && missing.to_string().contains("no_such_model.onnx")
    );
    // The I/O error is the source, not repeated in the message (`{:#}` chains print both).
    let source = std::error::Error::source(&missing).expect("the I/O error");
    assert!(
        !missing.to_string().contains(&source.to_string()),
        "{missing}"
    );
}

#[test]
fn replicas_split_the_batch_without_changing_results() {
    let r = Refs::load();
    let x = r.f32("dit.x");
    let d = dit().latent_len();
    // Five latents (the reference ones, repeated), classes mixed with the null class.
    let x5: Vec<f32> = x.iter().copied().cycle().take(5 * d).collect();
    let classes = [1, 10, 3, 9, 0];
    let two = 2.try_into().unwrap();
    let mut want = vec![0.0; 5 * d];
    let mut one = dit().with_guidance(2.0).unwrap().with_max_batch(two);
    one.predict(&x5, 300, &classes, &mut want).unwrap();
    let path = data("tiny_dit.onnx");
    let copies = |n: usize| {
        OrtDitReplicas::load(&path, &cpu(), n.try_into().unwrap())
            .unwrap()
            .with_guidance(2.0)
            .unwrap()
    };
    for n in [1, 2, 3, 7] {
        // Runs of two latents dealt out whole: the same graph runs as one copy, bit for bit.
        let mut reps = copies(n).with_max_batch(two);
        assert_eq!(reps.replicas(), n);
        assert_eq!((reps.latent_shape(), reps.num_classes()), ([4, 8, 8], 10));
        let mut got = vec![f32::NAN; 5 * d];
        reps.predict(&x5, 300, &classes, &mut got).unwrap();
        assert_eq!(got, want, "{n} copies, runs of 2");
        // Whole shares: other runs, the same values up to rounding.
        let mut got = vec![f32::NAN; 5 * d];
        copies(n).predict(&x5, 300, &classes, &mut got).unwrap();
        let err = max_abs(&got, &want);
        assert!(
            err <= 1e-5,
            "{n} copies, whole shares: max abs error {err:e}"
        );
    }
}

#[test]
fn replicas_report_an_error_from_any_part() {
    let mut reps =
        OrtDitReplicas::load(&data("tiny_dit.onnx"), &cpu(), 2.try_into().unwrap()).unwrap();
    let d = reps.latent_len();
    let mut eps = vec![0.0; 4 * d];
    // The bad class is in the second copy's half.
    let err = reps
        .predict(&vec![0.0; 4 * d], 10, &[1, 2, 3, 12], &mut eps)
        .unwrap_err();
    assert!(
        matches!(err, Error::ClassOutOfRange { class: 12, .. }),
        "{err}"
    );
    let err = reps
        .predict(&vec![0.0; 4 * d - 1], 10, &[1, 2, 3, 4], &mut eps)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Batch {
                what: "latents",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn class_out_of_range_is_refused() {
    let mut m = dit();
    let d = m.latent_len();
    let mut eps = vec![0.0; 2 * d];
    let err = m
        .predict(&vec![0.0; 2 * d], 10, &[3, 11], &mut eps)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ClassOutOfRange {
                class: 11,
                num_classes: 10,
                ..
            }
        ),
        "{err}"
    );
    // The null class itself is allowed (an unconditional prediction).
    m.predict(&vec![0.0; d], 10, &[10], &mut eps[..d]).unwrap();
}

#[test]
fn batch_of_the_wrong_shape_is_refused() {
    let mut m = dit();
    let d = m.latent_len();
    let mut eps = vec![0.0; 2 * d];
    let err = m
        .predict(&vec![0.0; 2 * d - 1], 10, &[1, 2], &mut eps)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Batch {
                what: "latents",
                ..
            }
        ),
        "{err}"
    );
    let err = m
        .predict(&vec![0.0; 2 * d], 10, &[1, 2], &mut eps[..d])
        .unwrap_err();
    assert!(matches!(err, Error::Batch { what: "eps", .. }), "{err}");

    // A graph for 3×8×8 latents reads its shape from the graph and refuses 4×8×8 batches.
    let mut three = OrtDit::load(&data("bad_shape.onnx"), &cpu()).unwrap();
    assert_eq!(three.latent_shape(), [3, 8, 8]);
    let err = three
        .predict(&vec![0.0; d], 10, &[1], &mut vec![0.0; d])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Batch {
                expected: 192,
                got: 256,
                ..
            }
        ),
        "{err}"
    );

    let mut vae = OrtVae::load(None, Some(&data("tiny_vae_decoder.onnx")), &cpu()).unwrap();
    assert!(matches!(
        vae.decode(&[0.0; 100], &mut [0.0; 1024]),
        Err(Error::Batch { .. })
    ));
    assert!(matches!(vae.posterior(&[0.0; 1024]), Err(Error::NoEncoder)));
    let mut vae = OrtVae::load(Some(&data("tiny_vae_encoder.onnx")), None, &cpu()).unwrap();
    assert!(matches!(
        vae.decode(&[0.0; 100], &mut [0.0; 1024]),
        Err(Error::NoDecoder)
    ));
    assert!(matches!(
        OrtVae::load(None, None, &cpu()),
        Err(Error::NoVaeGraph)
    ));
}

/// Library errors are typed: a missing explicit library names the path and who gave it.
#[test]
fn missing_explicit_library_is_typed() {
    let path = std::path::Path::new("/no/such/dir/libonnxruntime.so");
    let err = d3hr_ort::find_library(Some(path)).expect_err("must fail");
    assert!(
        matches!(&err, Error::LibraryFileMissing { path: p, given_by: "--ort-lib" } if p == path),
        "{err}"
    );
    assert!(
        err.to_string().contains("/no/such/dir/libonnxruntime.so"),
        "{err}"
    );
}

#[test]
fn a_dit_is_not_a_vae() {
    let err = OrtVae::load(Some(&data("tiny_dit.onnx")), None, &cpu())
        .err()
        .expect("must fail");
    assert!(matches!(err, Error::Interface { .. }), "{err}");
}

/// Asking for CUDA where it cannot be registered fails; it never silently runs on the CPU.
#[test]
fn cuda_without_cuda_fails_loudly() {
    let cfg = SessionConfig {
        device: Device::Cuda { device_id: 0 },
        ..cpu()
    };
    match OrtDit::load(&data("tiny_dit.onnx"), &cfg) {
        Err(e) => assert!(
            matches!(
                e,
                Error::Provider {
                    provider: "CUDA",
                    ..
                }
            ),
            "{e}"
        ),
        // Only acceptable on a machine that really has a working CUDA provider.
        Ok(_) => assert!(
            std::path::Path::new("/dev/nvidia0").exists(),
            "CUDA session created without a GPU"
        ),
    }
}

/// The pin in `scripts/python-env` (what CI installs) is the version the crate reports.
#[test]
fn pinned_versions_agree() {
    let script = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-env"),
    )
    .unwrap();
    let pin = format!("ORT_VERSION={}", d3hr_ort::TESTED_ORT_VERSION);
    assert!(
        script.lines().any(|l| l.trim() == pin),
        "scripts/python-env must say {pin}"
    );
}

/// The core's DDIM loops driving the ONNX DiT reproduce an independent PyTorch implementation
/// (`models/d3hr_models/diffusion.py`): inversion over the paper's grid 0, 20, …, 620, then
/// sampling back, on 4 latents (one with the null class).
#[test]
fn ddim_through_ort_matches_pytorch() {
    use d3hr_core::ddim;
    use d3hr_core::schedule::{NoiseSchedule, Timesteps};
    let r = Refs::load();
    let sched = NoiseSchedule::dit();
    let ac = r.f64("alphas_cumprod");
    assert!(
        ac.iter()
            .zip(sched.alphas_cumprod())
            .all(|(a, b)| (a - b).abs() <= 1e-12)
    );
    let grid: Vec<u32> = r.i64("ddim.grid").iter().map(|&t| t as u32).collect();
    let grid = Timesteps::from_list(&grid, 1000).unwrap();
    let classes: Vec<u32> = r.i64("ddim.y").iter().map(|&c| c as u32).collect();
    let mut z = r.f32("ddim.z0");
    let mut eps = vec![0.0; z.len()];
    let mut m = dit();
    // The reference was made by d3hr_models.diffusion.ddim_invert with ε at the target step.
    ddim::invert(
        &mut m,
        &sched,
        &grid,
        ddim::InversionEps::Target,
        &mut z,
        &classes,
        &mut eps,
    )
    .unwrap();
    let err = max_abs(&z, &r.f32("ddim.zT"));
    assert!(err <= 1e-3, "z_T: max abs error {err:e}");
    ddim::sample(&mut m, &sched, &grid, &mut z, &classes, &mut eps).unwrap();
    let want = r.f32("ddim.z0_back");
    let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let err = max_abs(&z, &want);
    assert!(
        err <= 1e-4 * scale.max(1.0) * 10.0,
        "z_0 back: max abs error {err:e} (scale {scale})"
    );
}

/// A graph given as bytes (an embedded default model) runs exactly like the same graph read from
/// its file, and errors name it by the name it was given.
#[test]
fn graphs_load_from_memory() {
    let bytes = std::fs::read(data("tiny_dit.onnx")).unwrap();
    let name = std::path::Path::new("embedded:tiny_dit.onnx");
    let mut mem = OrtDit::load_source(
        GraphSource::Memory {
            name,
            bytes: &bytes,
        },
        &cpu(),
    )
    .unwrap();
    let mut file = dit();
    let n = file.latent_len();
    let x: Vec<f32> = (0..2 * n)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let (mut a, mut b) = (vec![0.0; 2 * n], vec![0.0; 2 * n]);
    mem.predict(&x, 300, &[1, 2], &mut a).unwrap();
    file.predict(&x, 300, &[1, 2], &mut b).unwrap();
    assert_eq!(a, b);
    let enc = std::fs::read(data("tiny_vae_encoder.onnx")).unwrap();
    let dec = std::fs::read(data("tiny_vae_decoder.onnx")).unwrap();
    let vae = OrtVae::load_sources(
        Some(GraphSource::Memory {
            name: std::path::Path::new("embedded:enc.onnx"),
            bytes: &enc,
        }),
        Some(GraphSource::Memory {
            name: std::path::Path::new("embedded:dec.onnx"),
            bytes: &dec,
        }),
        &cpu(),
    );
    assert!(vae.is_ok());
    // Bytes that are not a graph: the error names the source.
    let err = OrtDit::load_source(
        GraphSource::Memory {
            name,
            bytes: b"not an onnx graph",
        },
        &cpu(),
    )
    .err()
    .expect("must fail")
    .to_string();
    assert!(err.contains("embedded:tiny_dit.onnx"), "{err}");
}
