//! Known-answer tests of both group-sampling losses (`select::score_normals`).
//!
//! The cases in `data/loss_known_answers.txt` were written by an independent numpy implementation
//! of the paper's loss (Eq. 5–8) and of the released code's `evaluate_distribution_batch`:
//!
//!     target/py/bin/python tests/oracle/oracle.py --known-answers core/tests/data/loss_known_answers.txt
//!
//! The file's header describes the format. Inputs are float32 values; the answers were computed in
//! float64 on `z = μ + σ ⊙ g`.

use d3hr_core::select::{self, Config, Lambdas, Loss, Scratch, Targets};

const DATA: &str = include_str!("data/loss_known_answers.txt");

struct Case {
    name: String,
    loss: Loss,
    skew_data: bool,
    n: usize,
    d: usize,
    lambdas: Lambdas,
    mu: Vec<f32>,
    sigma: Vec<f32>,
    gamma: Vec<f32>,
    g: Vec<f32>,
    want: f64,
}

fn floats(rest: &[&str], what: &str, expect: usize, case: &str) -> Vec<f32> {
    let v: Vec<f32> = rest
        .iter()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{case}: bad {what} value `{s}`"))
        })
        .collect();
    assert_eq!(v.len(), expect, "{case}: {what} has {} values", v.len());
    v
}

/// Parse the file: the declared case count and the cases.
fn parse() -> (usize, Vec<Case>) {
    let mut declared = None;
    let mut cases: Vec<Case> = Vec::new();
    for line in DATA.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "cases" => declared = Some(f[1].parse::<usize>().expect("case count")),
            "case" => {
                assert_eq!(f.len(), 14, "malformed case line: {line}");
                let key = |i: usize, k: &str| {
                    assert_eq!(f[i], k, "case line: expected `{k}` at token {i}: {line}");
                    f[i + 1]
                };
                let name = f[1].to_string();
                let loss = match key(2, "loss") {
                    "paper" => Loss::Paper,
                    "reference" => Loss::ReleasedCode,
                    other => panic!("{name}: unknown loss {other}"),
                };
                let skew_data = match key(4, "skew") {
                    "zero" => false,
                    "data" => true,
                    other => panic!("{name}: unknown skew target {other}"),
                };
                let n = key(6, "n").parse().expect("n");
                let d = key(8, "d").parse().expect("d");
                assert_eq!(f[10], "lambda", "{line}");
                let lam = |i: usize| f[i].parse::<f64>().expect("lambda");
                cases.push(Case {
                    name,
                    loss,
                    skew_data,
                    n,
                    d,
                    lambdas: Lambdas {
                        mu: lam(11),
                        sigma: lam(12),
                        gamma: lam(13),
                    },
                    mu: Vec::new(),
                    sigma: Vec::new(),
                    gamma: Vec::new(),
                    g: Vec::new(),
                    want: f64::NAN,
                });
            }
            key @ ("mu" | "sigma" | "gamma" | "g" | "want") => {
                let c = cases.last_mut().expect("a value line before any case line");
                let (d, n, name) = (c.d, c.n, c.name.clone());
                match key {
                    "mu" => c.mu = floats(&f[1..], key, d, &name),
                    "sigma" => c.sigma = floats(&f[1..], key, d, &name),
                    "gamma" => c.gamma = floats(&f[1..], key, d, &name),
                    "g" => c.g = floats(&f[1..], key, n * d, &name),
                    _ => {
                        assert_eq!(f.len(), 2, "{name}: malformed want line");
                        c.want = f[1].parse().expect("want");
                    }
                }
            }
            other => panic!("unknown record `{other}` in line: {line}"),
        }
    }
    (declared.expect("a `cases N` record"), cases)
}

#[test]
fn losses_match_the_independent_implementation() {
    let (declared, cases) = parse();
    assert_eq!(cases.len(), declared, "the file declares {declared} cases");
    let mut checked = 0;
    let mut worst = 0.0f64;
    for c in &cases {
        assert!(
            !c.mu.is_empty() && !c.sigma.is_empty() && !c.gamma.is_empty() && !c.g.is_empty(),
            "{}: incomplete case",
            c.name
        );
        assert!(c.want.is_finite(), "{}: no answer", c.name);
        let cfg = Config::new(0, c.n, c.d, c.loss, c.lambdas)
            .unwrap_or_else(|e| panic!("{}: Config::new: {e:?}", c.name));
        let use_gamma = c.loss == Loss::Paper && c.skew_data;
        let targets = Targets {
            mean: &c.mu,
            std: &c.sigma,
            skew: use_gamma.then_some(&c.gamma[..]),
        };
        let got = select::score_normals(&cfg, &targets, &c.g, &mut Scratch::new(&cfg))
            .unwrap_or_else(|e| panic!("{}: score_normals: {e:?}", c.name));
        let err = (got - c.want).abs() / c.want.abs().max(1e-9);
        worst = worst.max(err);
        assert!(
            err <= 1e-6,
            "{}: got {got:.17e}, want {:.17e}, relative error {err:.3e}",
            c.name,
            c.want
        );
        checked += 1;
    }
    assert_eq!(checked, declared, "checked {checked} of {declared} cases");
    eprintln!("{checked} loss known answers, worst relative error {worst:.2e}");
}
