//! Runs the fuzz bodies on stable over pseudo-random and hand-picked hostile inputs, so CI keeps
//! them honest without libFuzzer. `cargo fuzz run moments` / `select` explores far more.

use rand_core::{Rng, SeedableRng};

fn inputs() -> Vec<Vec<u8>> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(99);
    let mut out: Vec<Vec<u8>> = (0..3000)
        .map(|i| {
            let mut v = vec![0u8; i % 700];
            rng.fill_bytes(&mut v);
            v
        })
        .collect();
    // NaN, infinities and huge values as every f32.
    for pat in [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        1e30,
        -0.0,
        f32::MIN_POSITIVE,
    ] {
        let mut v = vec![7u8, 9, 3, 1, 0, 0, 0, 0];
        for _ in 0..200 {
            v.extend_from_slice(&pat.to_le_bytes());
        }
        out.push(v);
    }
    out.push(Vec::new());
    out
}

#[test]
fn moments_never_panics() {
    for data in inputs() {
        d3hr_fuzz::moments(&data);
    }
}

#[test]
fn select_never_panics() {
    for data in inputs() {
        d3hr_fuzz::select(&data);
    }
}
