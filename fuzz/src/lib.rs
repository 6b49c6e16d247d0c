//! The bodies of the fuzz targets, kept in a library so that `tests/smoke.rs` can run them on
//! stable over pseudo-random inputs (CI), and `cargo fuzz run <target>` (nightly) can run them
//! under libFuzzer.
//!
//! `moments` and `select` read arbitrary bytes as sizes and raw f32 bit patterns, so NaN, ±∞,
//! subnormals and huge values all occur. The contract checked: no panic, errors instead of
//! out-of-range work, and the documented NaN behaviour (a non-finite input poisons only its own
//! dimension of the moments).
//!
//! `idx`, `stats` and `class_map` feed arbitrary bytes to the CLI's readers of those files (the
//! `d3hr-cli` library without its model runtime). The contract: no panic, and what is accepted
//! is consistent (sizes that add up, ids and names unique and safe as output folders, statistics
//! that round-trip byte for byte).

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
            // Tolerances relative to the data's scale, not to the mean: data of 5.9e13 with a
            // mean near zero differ by rounding steps of the data, not of the mean.
            let big = col.clone().fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
            let n = rows as f64;
            let tol_mean = 1e-9 * big + f64::MIN_POSITIVE;
            let tol_m2 = 1e-9 * whole.m2()[d].abs() + 1e-12 * n * big * big + f64::MIN_POSITIVE;
            let (dm, dm2) = (
                (left.mean()[d] - whole.mean()[d]).abs(),
                (left.m2()[d] - whole.m2()[d]).abs(),
            );
            assert!(
                dm <= tol_mean,
                "dim {d}: merged mean off by {dm:e} (data scale {big:e})"
            );
            assert!(
                dm2 <= tol_m2,
                "dim {d}: merged M2 off by {dm2:e} (data scale {big:e})"
            );
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

/// The IDX reader: images and labels split from `data`; what it accepts can be loaded.
pub fn idx(data: &[u8]) {
    use d3hr_cli::data::{Item, gunzip_if_gz, load, parse_idx};
    let mut b = Bytes(data);
    let cut = usize::from(b.u8()) | (usize::from(b.u8()) << 8);
    let flags = b.u8();
    let rest = b.0;
    let cut = cut.min(rest.len());
    let (img, lab) = rest.split_at(cut);
    // Sometimes through the gzip path (with a name that claims gzip).
    let (img, lab) = if flags & 1 == 1 {
        let (Ok(i), Ok(l)) = (gunzip_if_gz(img, "x.gz"), gunzip_if_gz(lab, "y")) else {
            return;
        };
        (i, l)
    } else {
        (img.to_vec(), lab.to_vec())
    };
    let Ok((images, labels)) = parse_idx(&img, &lab, "images", "labels") else {
        return;
    };
    assert_eq!(
        labels.len() * images.rows * images.cols,
        images.pixels.len()
    );
    let channels = if flags & 2 == 0 { 1 } else { 3 };
    let size = 1 + u32::from(flags >> 3) % 40;
    for i in 0..labels.len().min(3) {
        let (px, _) = load(&Item::Idx(i), Some(&images), channels, size).expect("valid IDX image");
        assert_eq!(px.len(), channels * (size * size) as usize);
        assert!(px.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}

/// The statistics reader: what it accepts is valid everywhere downstream and round-trips to the
/// same bytes.
pub fn stats(data: &[u8]) {
    use d3hr_cli::stats::StatsFile;
    let Ok((st, run)) = StatsFile::parse(data, "fuzz.st") else {
        return;
    };
    let _ = st.describe();
    for (i, c) in st.classes.iter().enumerate() {
        d3hr_cli::fsx::safe_name(&c.name, "fuzz").expect("accepted names are safe");
        assert!(c.moments.count() >= 1);
        let (m, s, g) = st.targets(i, i % 2 == 0);
        assert!(m.iter().chain(&s).chain(&g).all(|v| v.is_finite()));
    }
    let bytes = st.to_bytes(run.as_ref()).expect("serialises");
    let (again, run2) = StatsFile::parse(&bytes, "again").expect("own output reads back");
    assert_eq!(run, run2);
    assert_eq!(again.to_bytes(run2.as_ref()).expect("serialises"), bytes);
}

/// The class-map reader: folders from the first line, the map from the rest.
pub fn class_map(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, map) = text.split_once('\n').unwrap_or((&text, ""));
    let folders: Vec<String> = first
        .split_whitespace()
        .filter(|f| d3hr_cli::fsx::safe_name(f, "fuzz").is_ok())
        .map(str::to_string)
        .collect();
    let Ok(ids) = d3hr_cli::data::parse_class_map(map, "fuzz", &folders) else {
        return;
    };
    assert_eq!(ids.len(), {
        let mut f = folders.clone();
        f.sort();
        f.dedup();
        f.len()
    });
    for (k, (name, id)) in ids.iter().enumerate() {
        d3hr_cli::fsx::safe_name(name, "fuzz").expect("accepted names are safe");
        assert!(ids[..k].iter().all(|(n, i)| n != name && i != id));
    }
}
