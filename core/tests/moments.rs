//! Streaming moments: merge at every split point equals the sequential pass, and the finalized
//! statistics equal a two-pass computation.

use d3hr_core::moments::{Moments, summarize};
use proptest::prelude::*;

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale.max(1.0)
}

/// Two-pass reference: mean first, then central sums; the adjusted skewness by its definition
/// `N/((N−1)(N−2)) Σ((x−μ)/s)³` with the unbiased `s` (paper Eq. 8).
fn two_pass(xs: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let m2: f64 = xs.iter().map(|x| (x - mean).powi(2)).sum();
    let s = (m2 / (n - 1.0)).sqrt();
    let skew = if xs.len() < 3 || s == 0.0 {
        0.0
    } else {
        n / ((n - 1.0) * (n - 2.0)) * xs.iter().map(|x| ((x - mean) / s).powi(3)).sum::<f64>()
    };
    (mean, s, skew)
}

fn data() -> impl Strategy<Value = (usize, Vec<f32>)> {
    (1usize..5, 0usize..40).prop_flat_map(|(dims, rows)| {
        (
            Just(dims),
            prop::collection::vec(
                prop_oneof![-1e3f32..1e3f32, -1.0f32..1.0f32, 100.0f32..100.5],
                dims * rows,
            ),
        )
    })
}

fn acc(dims: usize, xs: &[f32]) -> Moments<Vec<f64>> {
    let mut m = Moments::with_storage(dims, vec![0.0; 3 * dims]).unwrap();
    m.add_batch(xs).unwrap();
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn merge_at_every_split_equals_sequential((dims, xs) in data()) {
        let whole = acc(dims, &xs);
        let rows = xs.len() / dims;
        for split in 0..=rows {
            let (a, b) = xs.split_at(split * dims);
            let mut left = acc(dims, a);
            left.merge(&acc(dims, b)).unwrap();
            prop_assert_eq!(left.count(), whole.count());
            for d in 0..dims {
                let scale_m2 = whole.m2()[d].abs() + 1.0;
                prop_assert!(close(left.mean()[d], whole.mean()[d], whole.mean()[d].abs()));
                prop_assert!(close(left.m2()[d], whole.m2()[d], scale_m2 * 1e3));
                let scale_m3 = whole.m3()[d].abs() + scale_m2.powf(1.5) + 1.0;
                prop_assert!(close(left.m3()[d], whole.m3()[d], scale_m3 * 1e3),
                    "split {} dim {}: {} vs {}", split, d, left.m3()[d], whole.m3()[d]);
            }
        }
    }

    #[test]
    fn statistics_equal_two_pass((dims, xs) in data()) {
        let m = acc(dims, &xs);
        let rows = xs.len() / dims;
        prop_assume!(rows >= 3);
        for d in 0..dims {
            let col: Vec<f64> = xs.iter().skip(d).step_by(dims).map(|&v| f64::from(v)).collect();
            let (mean, s, skew) = two_pass(&col);
            let got = m.summary(d).unwrap();
            prop_assert!(close(got.mean, mean, mean.abs() * 10.0));
            prop_assert!((got.std_unbiased - s).abs() <= 1e-7 * (1.0 + s));
            // Skewness is ill-conditioned when the spread is tiny relative to the mean.
            if s > 1e-3 * (1.0 + mean.abs()) {
                prop_assert!((got.skewness - skew).abs() <= 1e-6 * (1.0 + skew.abs()),
                    "dim {}: {} vs {}", d, got.skewness, skew);
            }
        }
    }
}

#[test]
fn known_small_sample() {
    // 1, 2, 3, 10: mean 4, M2 = 9 + 4 + 1 + 36 = 50, M3 = −27 − 8 − 1 + 216 = 180.
    let m = acc(1, &[1.0, 2.0, 3.0, 10.0]);
    let s = m.summary(0).unwrap();
    assert_eq!(s.mean, 4.0);
    assert!((m.m2()[0] - 50.0).abs() < 1e-12);
    assert!((m.m3()[0] - 180.0).abs() < 1e-12);
    assert!((s.std - (50.0f64 / 4.0).sqrt()).abs() < 1e-12);
    // G1 = √(N(N−1))/(N−2) · (M3/N)/(M2/N)^1.5
    let g1 = (4.0f64 * 3.0).sqrt() / 2.0 * (180.0 / 4.0) / (50.0f64 / 4.0).powf(1.5);
    assert!((s.skewness - g1).abs() < 1e-12);
}

#[test]
fn nan_poisons_only_its_dimension() {
    let m = acc(2, &[1.0, 1.0, f32::NAN, 2.0, 3.0, 4.0]);
    assert_eq!(m.count(), 3);
    assert!(m.summary(0).unwrap().mean.is_nan());
    assert!(m.summary(0).unwrap().skewness.is_nan());
    let s1 = m.summary(1).unwrap();
    assert!((s1.mean - 7.0 / 3.0).abs() < 1e-12);
    assert!(s1.skewness.is_finite());
}

#[test]
fn shapes_are_checked() {
    let mut m = Moments::with_storage(3, vec![0.0; 9]).unwrap();
    assert!(m.add(&[1.0, 2.0]).is_err());
    assert!(m.add_batch(&[1.0; 4]).is_err());
    assert!(Moments::with_storage(3, vec![0.0; 8]).is_err());
    let other = Moments::with_storage(2, vec![0.0; 6]).unwrap();
    assert!(m.merge(&other).is_err());
    let (mut a, mut b, mut c) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; 2]);
    assert!(m.finalize_into(true, &mut a, &mut b, &mut c).is_err());
    assert_eq!(summarize(0, 0.0, 0.0, 0.0).std, 0.0);
}
