//! The bodies of the fuzz targets, kept in a library so that `tests/smoke.rs` can run them on
//! stable over pseudo-random inputs (CI), and `cargo fuzz run moments|select` (nightly) can run
//! them under libFuzzer.
//!
//! Both read arbitrary bytes as sizes and raw f32 bit patterns, so NaN, ±∞, subnormals and huge
//! values all occur. The contract checked: no panic, errors instead of out-of-range work, and the
//! documented NaN behaviour (a non-finite input poisons only its own dimension of the moments).

use d3hr_core::moments::Moments;
use d3hr_core::select::{self, Config, Lambdas, Loss, PerDimBest, Scratch, Targets};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn f32(&mut self) -> f32 {
        f32::from_bits(u32::from_le_bytes([
            self.u8(),
            self.u8(),
            self.u8(),
            self.u8(),
        ]))
    }
    /// A small finite value (so that searches actually run), or raw bits when `raw`.
    fn value(&mut self, raw: bool) -> f32 {
        if raw {
            self.f32()
        } else {
            f32::from(self.u8() as i8) / 16.0
        }
    }
}

/// Streaming moments on arbitrary data: add, merge at a split, finalize.
pub fn moments(data: &[u8]) {
    let mut b = Bytes(data);
    let dims = usize::from(b.u8() % 8) + 1;
    let rows = usize::from(b.u8() % 32);
    let split = usize::from(b.u8()) % (rows + 1);
    let xs: Vec<f32> = (0..dims * rows).map(|_| b.f32()).collect();

    let mut whole = Moments::new(dims);
    whole.add_batch(&xs).expect("whole rows");
    let mut left = Moments::new(dims);
    left.add_batch(&xs[..split * dims]).expect("left rows");
    let mut right = Moments::new(dims);
    right.add_batch(&xs[split * dims..]).expect("right rows");
    left.merge(&right).expect("same dims");
    assert_eq!(left.count(), whole.count());

    let (mut m, mut s, mut g) = (vec![0.0; dims], vec![0.0; dims], vec![0.0; dims]);
    whole
        .finalize_into(true, &mut m, &mut s, &mut g)
        .expect("lengths");
    for d in 0..dims {
        let col = xs.iter().skip(d).step_by(dims);
        let finite = col.clone().all(|x| x.is_finite() && x.abs() < 1e15);
        let sum = whole.summary(d).expect("in range");
        if finite {
            // Finite, moderate data: finite statistics, and the merge agrees.
            assert!(
                sum.mean.is_finite() && sum.std.is_finite(),
                "dim {d}: {sum:?}"
            );
            let scale = whole.m2()[d].abs().max(1.0);
            assert!(
                (left.mean()[d] - whole.mean()[d]).abs() <= 1e-6 * whole.mean()[d].abs().max(1.0)
            );
            assert!((left.m2()[d] - whole.m2()[d]).abs() <= 1e-6 * scale);
        } else if col.clone().any(|x| x.is_nan()) {
            // Documented: NaN input makes the dimension's mean NaN.
            assert!(sum.mean.is_nan());
        }
    }
}

/// Group sampling on arbitrary targets and sizes: validated or searched, never a panic.
pub fn select(data: &[u8]) {
    let mut b = Bytes(data);
    let n = usize::from(b.u8() % 6);
    let dims = usize::from(b.u8() % 12);
    let m = u64::from(b.u8() % 16);
    let loss = if b.u8() % 2 == 0 {
        Loss::Paper
    } else {
        Loss::ReleasedCode
    };
    let lambdas = Lambdas {
        mu: f64::from(b.value(b.0.first() == Some(&0))),
        sigma: 1.0,
        gamma: 0.5,
    };
    let seed = u64::from(b.u8());
    let raw = b.u8() % 4 == 0;
    let mean: Vec<f32> = (0..dims).map(|_| b.value(raw)).collect();
    let std: Vec<f32> = (0..dims).map(|_| b.value(raw).abs()).collect();
    let skew: Vec<f32> = (0..dims).map(|_| b.value(raw)).collect();
    let Ok(cfg) = Config::new(seed, n, dims, loss, lambdas) else {
        return;
    };
    let t = Targets {
        mean: &mean,
        std: &std,
        skew: Some(&skew),
    };
    let mut sc = Scratch::new(&cfg);
    match select::search_joint(&cfg, &t, 0..m, &mut sc) {
        Ok(best) => {
            if m > 0 {
                assert!(best.index < m, "{best:?}");
                assert!(!best.loss.is_nan());
            } else {
                assert!(!best.is_some());
            }
        }
        Err(_) => return,
    }
    let (mut i, mut l, mut g) = (vec![0; dims], vec![0.0; dims], vec![0.0; n * dims]);
    let mut per = PerDimBest::new(&cfg, &mut i, &mut l, &mut g).expect("lengths");
    let r = select::search_per_dim(&cfg, &t, 0..m, &mut sc, &mut per);
    assert_eq!(r.is_err(), loss == Loss::ReleasedCode);
}
