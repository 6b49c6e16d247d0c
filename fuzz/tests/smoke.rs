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

#[test]
fn moments_tolerance_follows_the_data_scale() {
    // The kind of input `cargo fuzz run moments` failed on in its first minute with the old
    // oracle (tolerance relative to the mean): data near ±5.9e13 whose mean is near zero; the
    // merge at split 1 is a rounding step of the data off, which the old oracle rejected.
    let mut v = vec![0u8, 6, 1];
    for x in [
        59000570000000.0f32,
        -59005580000000.0,
        -59005364000000.0,
        59005430000000.0,
        59004957000000.0,
        -59000010000000.0,
    ] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    for split in 0..=6u8 {
        v[2] = split;
        d3hr_fuzz::moments(&v);
    }
}

#[test]
fn idx_never_panics() {
    for data in inputs() {
        d3hr_fuzz::idx(&data);
    }
    // Well-formed headers with hostile sizes: overflow, empty images, mismatched labels.
    for (n, r, c) in [
        (u32::MAX, u32::MAX, u32::MAX),
        (2, 0, 0),
        (1, 1, 4),
        (1, 4, 1),
        (3, 2, 2),
    ] {
        let mut img = vec![0, 0, 8, 3];
        for v in [n, r, c] {
            img.extend_from_slice(&v.to_be_bytes());
        }
        img.extend(std::iter::repeat_n(
            200u8,
            (r as usize * c as usize).min(64) * 3,
        ));
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&n.to_be_bytes());
        lab.extend([0u8, 1, 2]);
        let cut = img.len() as u16;
        for flags in [0u8, 2, 0xfe] {
            let mut data = cut.to_le_bytes().to_vec();
            data.push(flags);
            data.extend_from_slice(&img);
            data.extend_from_slice(&lab);
            d3hr_fuzz::idx(&data);
        }
    }
}

#[test]
fn stats_never_panics() {
    for data in inputs() {
        d3hr_fuzz::stats(&data);
    }
}

#[test]
fn class_map_never_panics() {
    for data in inputs() {
        d3hr_fuzz::class_map(&data);
    }
    for text in [
        "a b c\na 0\nb 1\nc 2\n",
        "a b\na 1\nb 1\n",
        "a b\na\na\n",
        "a b\n../x 3\na 0\nb 1\n",
        "a\n# c\n\na 4294967295\n",
        "a\na 4294967296\n",
        "a\na 1 2\n",
    ] {
        d3hr_fuzz::class_map(text.as_bytes());
    }
}

/// The committed seeds (`fuzz/seeds/<target>/`, also the starting corpus of `cargo fuzz run`),
/// each whole and with every byte position overwritten in turn by hostile values.
fn seeds_and_mutants(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let seed = std::fs::read(e.unwrap().path()).unwrap();
        let step = (seed.len() / 200).max(1);
        for at in (0..seed.len()).step_by(step) {
            for v in [0x00, 0xff, b'9'] {
                let mut m = seed.clone();
                m[at] = v;
                out.push(m);
            }
        }
        out.push(seed);
    }
    out
}

#[test]
fn seeds_are_accepted_and_mutants_never_panic() {
    let seed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/stats/one-class.st"),
    )
    .unwrap();
    assert!(d3hr_cli::stats::StatsFile::parse(&seed, "seed").is_ok());
    for (target, body) in [
        ("stats", d3hr_fuzz::stats as fn(&[u8])),
        ("idx", d3hr_fuzz::idx),
        ("class_map", d3hr_fuzz::class_map),
    ] {
        for m in seeds_and_mutants(target) {
            body(&m);
        }
    }
}
