//! DDIM steps and loops: exact round trips, the paper's two-line form, the released-code plan,
//! guidance and error paths.

use d3hr_core::NoisePredictor;
use d3hr_core::ddim::{self, Guidance, Guided, InversionEps, Plan, RunError, Step};
use d3hr_core::schedule::{NoiseSchedule, Spacing, Timesteps};
use proptest::prelude::*;

/// ε depends on the timestep, the class and the position, never on x: then a DDIM step is an
/// affine map whose inverse is the step back, and inversion followed by sampling is exact.
struct XFree {
    dims: usize,
    calls: usize,
}

impl NoisePredictor for XFree {
    type Error = &'static str;
    fn latent_len(&self) -> usize {
        self.dims
    }
    fn predict(
        &mut self,
        x: &[f32],
        t: u32,
        c: &[u32],
        eps: &mut [f32],
    ) -> Result<(), Self::Error> {
        assert_eq!(x.len(), c.len() * self.dims);
        self.calls += 1;
        for (b, chunk) in eps.chunks_mut(self.dims).enumerate() {
            for (i, e) in chunk.iter_mut().enumerate() {
                *e = (0.013 * t as f32 + 0.7 * c[b] as f32 + i as f32).sin();
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn inversion_then_sampling_is_identity(
        steps in 1usize..60,
        prefix in 1usize..60,
        dims in 1usize..40,
        batch in 1usize..4,
        seed in any::<u64>(),
    ) {
        let grid = Timesteps::new(Spacing::Leading, 1000, steps.max(2), 0).unwrap();
        let grid = grid.prefix(prefix.min(grid.len() - 1)).unwrap();
        let sched = NoiseSchedule::dit();
        let mut p = XFree { dims, calls: 0 };
        let mut state = seed;
        let x0: Vec<f32> = (0..dims * batch).map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        }).collect();
        let classes: Vec<u32> = (0..batch as u32).collect();
        let mut x = x0.clone();
        let mut eps = vec![0.0; x.len()];
        // With ε at the target step, each inversion step is the exact inverse of its sampling step.
        ddim::invert(&mut p, &sched, &grid, InversionEps::Target, &mut x, &classes, &mut eps).unwrap();
        prop_assert!(x.iter().zip(&x0).any(|(a, b)| a != b) || grid.steps() == 0);
        ddim::sample(&mut p, &sched, &grid, &mut x, &classes, &mut eps).unwrap();
        prop_assert_eq!(p.calls, 2 * grid.steps());
        for (a, b) in x.iter().zip(&x0) {
            prop_assert!((a - b).abs() <= 2e-4 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
    }

    /// The fused coefficients equal the paper's two-line form (predict ẑ0, then re-noise).
    #[test]
    fn step_matches_two_line_form(
        z in -5.0f32..5.0, e in -5.0f32..5.0, from in 0u32..1000, to in 0u32..1000,
    ) {
        let s = NoiseSchedule::dit();
        let (af, at) = (s.alpha_bar(from).unwrap(), s.alpha_bar(to).unwrap());
        let x0 = (f64::from(z) - (1.0 - af).sqrt() * f64::from(e)) / af.sqrt();
        let want = at.sqrt() * x0 + (1.0 - at).sqrt() * f64::from(e);
        let mut zz = [z];
        ddim::step(&mut zz, &[e], af, at);
        prop_assert!((f64::from(zz[0]) - want).abs() <= 1e-5 * (1.0 + want.abs()));
    }
}

#[test]
fn released_code_sampling_plan() {
    let plan = Plan::released_code_sampling(1000, 50, 620).unwrap();
    let steps = plan.steps();
    assert_eq!(steps.len(), 32);
    assert_eq!(
        steps[0],
        Step {
            t: 620,
            from: 620,
            to: 600
        }
    );
    assert_eq!(
        steps[30],
        Step {
            t: 20,
            from: 20,
            to: 1
        }
    );
    assert_eq!(
        steps[31],
        Step {
            t: 0,
            from: 0,
            to: 1
        }
    );
    // The inversion it pairs with ends one grid step lower, at 600.
    let inv = Timesteps::new(Spacing::Leading, 1000, 50, 0)
        .unwrap()
        .prefix(30)
        .unwrap();
    let inv = Plan::inversion(&inv, InversionEps::Target).unwrap();
    assert_eq!(inv.steps().len(), 30);
    assert_eq!(
        inv.steps()[29],
        Step {
            t: 600,
            from: 580,
            to: 600
        }
    );
}

#[test]
fn sampling_plan_reverses_inversion() {
    let g = Timesteps::new(Spacing::Leading, 1000, 50, 0)
        .unwrap()
        .prefix(31)
        .unwrap();
    let inv = Plan::inversion(&g, InversionEps::Target).unwrap();
    let smp = Plan::sampling(&g).unwrap();
    assert_eq!(inv.steps().len(), 31);
    for (a, b) in inv.steps().iter().zip(smp.steps().iter().rev()) {
        assert_eq!((a.t, a.from, a.to), (b.t, b.to, b.from));
    }
}

/// The paper's Eq. 3 evaluates ε_θ(z_t, t, C) at the source step of each inversion step:
/// `z_{t+1} = √(ᾱ_{t+1}/ᾱ_t)·z_t + √ᾱ_{t+1}·(√(1/ᾱ_{t+1} − 1) − √(1/ᾱ_t − 1))·ε_θ(z_t, t, C)`.
/// A predictor that records its timesteps, and the update written as Eq. 3 prints it.
#[test]
fn source_inversion_is_eq3_as_printed() {
    struct Recorder(Vec<u32>);
    impl NoisePredictor for Recorder {
        type Error = ();
        fn latent_len(&self) -> usize {
            3
        }
        fn predict(&mut self, x: &[f32], t: u32, _: &[u32], eps: &mut [f32]) -> Result<(), ()> {
            self.0.push(t);
            for (e, &v) in eps.iter_mut().zip(x) {
                *e = (0.01 * t as f32).cos() * v + 0.3;
            }
            Ok(())
        }
    }
    let g = Timesteps::new(Spacing::Leading, 1000, 50, 0)
        .unwrap()
        .prefix(31)
        .unwrap();
    let sched = NoiseSchedule::dit();
    let x0 = [0.4f32, -1.2, 2.0];
    for at in [InversionEps::Source, InversionEps::Target] {
        let mut rec = Recorder(Vec::new());
        let mut x = x0;
        ddim::invert(&mut rec, &sched, &g, at, &mut x, &[0], &mut [0.0; 3]).unwrap();
        let t = g.as_slice();
        let want_ts: Vec<u32> = match at {
            InversionEps::Source => t[..t.len() - 1].to_vec(),
            InversionEps::Target => t[1..].to_vec(),
        };
        assert_eq!(rec.0, want_ts, "{at:?}");
        // Eq. 3 term by term in f64, ε at the recorded step.
        let mut z: Vec<f64> = x0.iter().map(|&v| f64::from(v)).collect();
        for (w, &te) in t.windows(2).zip(&want_ts) {
            let (a0, a1) = (
                sched.alpha_bar(w[0]).unwrap(),
                sched.alpha_bar(w[1]).unwrap(),
            );
            for v in z.iter_mut() {
                let e = f64::from((0.01 * te as f32).cos() * (*v as f32) + 0.3);
                *v = (a1 / a0).sqrt() * *v
                    + a1.sqrt() * ((1.0 / a1 - 1.0).sqrt() - (1.0 / a0 - 1.0).sqrt()) * e;
            }
        }
        for (a, b) in x.iter().zip(&z) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{at:?}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn guidance_combines_a_doubled_batch() {
    struct ByClass;
    impl NoisePredictor for ByClass {
        type Error = ();
        fn latent_len(&self) -> usize {
            2
        }
        fn predict(&mut self, _: &[f32], _: u32, c: &[u32], eps: &mut [f32]) -> Result<(), ()> {
            for (b, e) in eps.chunks_mut(2).enumerate() {
                e.fill(c[b] as f32);
            }
            Ok(())
        }
    }
    let (mut xs, mut es, mut cs) = (vec![0.0; 8], vec![0.0; 8], vec![0; 4]);
    let g = Guidance::new(4.0, 10).unwrap();
    let mut p = Guided::new(ByClass, g, &mut xs, &mut es, &mut cs);
    let mut eps = [0.0f32; 4];
    p.predict(&[0.0; 4], 5, &[2, 3], &mut eps).unwrap();
    // uncond = 10, cond = 2 → 10 + 4·(2 − 10) = −22; cond = 3 → −18.
    assert_eq!(eps, [-22.0, -22.0, -18.0, -18.0]);
    // Too small scratch is an error, not a panic.
    let mut eps = [0.0f32; 6];
    assert!(matches!(
        p.predict(&[0.0; 6], 5, &[1, 2, 3], &mut eps),
        Err(RunError::Core(d3hr_core::Error::BufferLength { .. }))
    ));
    assert!(Guidance::new(f32::NAN, 0).is_err());
    assert!(Guidance::new(-1.0, 0).is_err());
}

#[test]
fn errors_instead_of_panics() {
    let sched = NoiseSchedule::dit();
    let g = Timesteps::new(Spacing::Leading, 1000, 10, 0).unwrap();
    let mut p = XFree { dims: 3, calls: 0 };
    let mut x = vec![0.0; 5];
    let mut e = vec![0.0; 5];
    let r = ddim::invert(
        &mut p,
        &sched,
        &g,
        InversionEps::Source,
        &mut x,
        &[0, 1],
        &mut e,
    );
    assert!(matches!(
        r,
        Err(RunError::Core(d3hr_core::Error::BufferLength {
            what: "latents",
            ..
        }))
    ));
    assert_eq!(p.calls, 0);

    struct Failing;
    impl NoisePredictor for Failing {
        type Error = &'static str;
        fn latent_len(&self) -> usize {
            1
        }
        fn predict(
            &mut self,
            _: &[f32],
            _: u32,
            _: &[u32],
            _: &mut [f32],
        ) -> Result<(), Self::Error> {
            Err("boom")
        }
    }
    let r = ddim::sample(&mut Failing, &sched, &g, &mut [0.0], &[0], &mut [0.0]);
    assert_eq!(r, Err(RunError::Predictor("boom")));

    // A schedule with fewer steps than the grid's timesteps.
    let short = NoiseSchedule::new(d3hr_core::schedule::BetaSchedule::DIT, 100).unwrap();
    let r = ddim::invert(
        &mut p,
        &short,
        &g,
        InversionEps::Source,
        &mut [0.0; 3],
        &[0],
        &mut [0.0; 3],
    );
    assert!(matches!(
        r,
        Err(RunError::Core(d3hr_core::Error::TimestepOutOfRange { .. }))
    ));
    let one = Timesteps::from_list(&[5], 1000).unwrap();
    assert!(Plan::inversion(&one, InversionEps::Source).is_err());
    assert!(Plan::inversion(&one, InversionEps::Target).is_err());
}

#[test]
fn ddpm_forward_moves_towards_noise() {
    use rand_core::SeedableRng;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
    let mut z = vec![3.0f32; 20_000];
    ddim::ddpm_forward(&mut z, 0.25, &mut rng);
    let n = z.len() as f64;
    let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = z
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    // √0.25·3 = 1.5 and variance 1 − 0.25.
    assert!((mean - 1.5).abs() < 0.03, "{mean}");
    assert!((var - 0.75).abs() < 0.03, "{var}");
}
