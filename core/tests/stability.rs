//! Value stability of selection: a fixed `(seed, n, dims, m)` must keep choosing the same
//! candidate with the same loss, and the candidate streams must keep producing the same numbers,
//! so that no refactor changes a user's distilled set unnoticed (as `rand_distr`'s
//! `tests/value_stability.rs` does for its distributions).
//!
//! The pinned numbers were produced by this crate's own code, by the commit that added this file,
//! and are not an independent reference (`tests/loss_known_answer.rs` is one). If a change here is
//! intended, say so in the commit and the changelog: users' outputs change with it.

use d3hr_core::select::{
    self, Config, Lambdas, Loss, Scratch, Targets, candidate_rng, draw_candidate,
};
use rand_core::Rng;

const SEED: u64 = 7;
const DIMS: usize = 64;

/// Deterministic targets from integer formulas (exact in f32; no RNG, no libm): μ in
/// [−0.79, 0.78], σ in [0.5, 1.5], γ in [−0.625, 0.625].
struct Fixture {
    mean: Vec<f32>,
    std: Vec<f32>,
    skew: Vec<f32>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            mean: (0..DIMS)
                .map(|d| ((d * 37 % 101) as f32 - 50.0) / 64.0)
                .collect(),
            std: (0..DIMS)
                .map(|d| 0.5 + (d * 13 % 17) as f32 / 16.0)
                .collect(),
            skew: (0..DIMS)
                .map(|d| ((d * 7 % 11) as f32 - 5.0) / 8.0)
                .collect(),
        }
    }

    fn targets(&self) -> Targets<'_> {
        Targets {
            mean: &self.mean,
            std: &self.std,
            skew: Some(&self.skew),
        }
    }
}

/// `got` equals `want` to a relative 1e-12 (the pinned values are printed with Rust's shortest
/// round-trip formatting, so today they agree exactly).
fn assert_loss(what: &str, got: f64, want: f64) {
    let rel = ((got - want) / want).abs();
    assert!(
        rel <= 1e-12,
        "{what}: loss {got:?}, pinned {want:?} (relative {rel:e})"
    );
}

fn joint(n: usize, loss: Loss, lambdas: Lambdas, targets: &Targets<'_>, m: u64) -> select::Best {
    let cfg = Config::new(SEED, n, DIMS, loss, lambdas).unwrap();
    let best = select::search_joint(&cfg, targets, 0..m, &mut Scratch::new(&cfg)).unwrap();
    // The threaded search must give the same answer (every candidate has its own stream).
    assert_eq!(
        select::threaded::search_joint(&cfg, targets, m, 3).unwrap(),
        best
    );
    best
}

#[test]
fn joint_paper_loss_is_pinned() {
    let f = Fixture::new();
    let t = f.targets();
    for (n, index, loss) in [
        (10, 546, 43.30568461397431),
        // n = 2 and n = 1: Lγ dropped (Eq. 8 undefined).
        (2, 71, 30.490675463961555),
        (1, 89, 54.762134802425905),
    ] {
        let best = joint(n, Loss::Paper, Lambdas::PAPER, &t, 2000);
        assert_eq!(best.index, index, "n = {n}");
        assert_loss(&format!("paper, n = {n}"), best.loss, loss);
    }
}

#[test]
fn joint_paper_loss_without_skew_target_is_pinned() {
    let f = Fixture::new();
    let t = Targets {
        skew: None,
        ..f.targets()
    };
    let best = joint(10, Loss::Paper, Lambdas::PAPER, &t, 2000);
    assert_eq!(best.index, 546);
    assert_loss("paper, γ = 0", best.loss, 40.02536775676715);
}

#[test]
fn joint_released_code_loss_is_pinned() {
    let f = Fixture::new();
    let t = f.targets();
    for (n, index, loss) in [(10, 706, 3.741155193638015), (2, 533, 8.777071401438791)] {
        let best = joint(n, Loss::ReleasedCode, Lambdas::RELEASED_CODE, &t, 2000);
        assert_eq!(best.index, index, "n = {n}");
        assert_loss(&format!("released code, n = {n}"), best.loss, loss);
    }
}

#[test]
fn score_candidate_is_pinned() {
    let f = Fixture::new();
    let cfg = Config::new(SEED, 10, DIMS, Loss::Paper, Lambdas::PAPER).unwrap();
    let loss = select::score_candidate(&cfg, &f.targets(), 3, &mut Scratch::new(&cfg)).unwrap();
    assert_loss("candidate 3", loss, 143.63295644371124);
}

#[test]
fn per_dim_search_is_pinned() {
    let f = Fixture::new();
    let t = f.targets();
    for (n, total, first) in [
        (
            10,
            0.3395009539249707,
            [279, 83, 185, 244, 193, 255, 258, 33, 171, 452, 50, 297],
        ),
        (
            2,
            0.13555058467071077,
            [362, 288, 126, 24, 322, 460, 243, 400, 52, 186, 431, 149],
        ),
    ] {
        let cfg = Config::new(SEED, n, DIMS, Loss::Paper, Lambdas::PAPER).unwrap();
        let r = select::threaded::search_per_dim(&cfg, &t, 500, 1).unwrap();
        assert_eq!(r.index[..12], first, "n = {n}");
        assert_loss(&format!("per-dim, n = {n}"), r.total_loss(), total);
        assert_eq!(
            select::threaded::search_per_dim(&cfg, &t, 500, 4).unwrap(),
            r
        );
        if n == 10 {
            assert_eq!(r.g[..4], [-0.8503851, -0.9268932, -0.5652239, 0.19540478]);
        }
    }
}

/// The first three outputs of [`candidate_rng`] and the first eight normals of a one-row
/// candidate, for a few `(seed, k)`.
#[test]
fn candidate_streams_are_pinned() {
    let cases: [(u64, u64, [u64; 3], [f32; 8]); 5] = [
        (
            0,
            0,
            [
                0x0b71_9499_b614_8f98,
                0x8928_d977_2537_871a,
                0x33e2_2aa9_45ce_a680,
            ],
            [
                -0.9775035,
                0.061136376,
                -0.36251327,
                -0.85557216,
                0.41866404,
                0.25526595,
                -0.09118834,
                0.8382819,
            ],
        ),
        (
            7,
            0,
            [
                0xb326_121f_ad46_6a9b,
                0x4dc3_4a8d_838e_b6a9,
                0x2625_dd15_0810_2901,
            ],
            [
                0.91662866,
                1.6872299,
                0.6472611,
                0.4398126,
                -0.11509312,
                -0.38588616,
                0.5199857,
                -1.801781,
            ],
        ),
        (
            7,
            1,
            [
                0x0909_ac49_5aac_02fe,
                0xdfe3_64f9_1fb8_e9c7,
                0x2079_0ded_1991_16aa,
            ],
            [
                0.10135936,
                0.068670064,
                -0.12922426,
                0.40547764,
                0.1251033,
                -0.085558295,
                -0.39158002,
                0.054480966,
            ],
        ),
        (
            42,
            123_456_789,
            [
                0x5997_e7d1_ef76_98f9,
                0x3ad1_5af4_b835_73bc,
                0x2d3c_44fc_702b_0082,
            ],
            [
                0.43368512,
                -0.33669746,
                -0.8099577,
                0.1303499,
                0.6667873,
                0.06628425,
                0.9404955,
                1.1108642,
            ],
        ),
        (
            u64::MAX,
            u64::MAX - 1,
            [
                0xd780_50cc_4e50_083a,
                0xa151_2d48_683f_9d10,
                0x4b8f_bd97_02b7_02ec,
            ],
            [
                0.63733006,
                0.8445431,
                -1.1019119,
                -1.2311579,
                0.0072937626,
                -0.40762907,
                0.36998242,
                0.2787154,
            ],
        ),
    ];
    for (seed, k, words, normals) in cases {
        let mut rng = candidate_rng(seed, k);
        let got: [u64; 3] = core::array::from_fn(|_| rng.next_u64());
        assert_eq!(got, words, "candidate_rng({seed}, {k})");
        let cfg = Config::new(seed, 1, 8, Loss::Paper, Lambdas::PAPER).unwrap();
        let mut g = [0.0f32; 8];
        draw_candidate(&cfg, k, &mut g).unwrap();
        assert_eq!(g, normals, "draw_candidate({seed}, {k})");
    }
}
