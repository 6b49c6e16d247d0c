//! DiT forward passes per second through `d3hr-ort`, for comparison with
//! `models/bench_dit.py` (onnxruntime's Python API and PyTorch eager on the same graph, batch and
//! threads).
//!
//! ```sh
//! python models/bench_dit.py --preset S/2 --batch 8 --threads 2     # exports the graph, times Python
//! D3HR_PYTHON=$(scripts/python-env) cargo bench -p d3hr-ort --bench dit -- \
//!     models/work/bench/dit_S2_256.onnx 8 2 20
//! ```
//!
//! The small embedded Fashion-MNIST DiT, as `d3hr-cli distill` runs it on two cores by default (two
//! one-thread copies, each cutting its half of a batch of 64 into graph runs of 8), against one
//! two-thread session:
//!
//! ```sh
//! cargo bench -p d3hr-ort --bench dit -- models/fashion_mnist/onnx/dit_int8.onnx 64 2 300 2 8
//! cargo bench -p d3hr-ort --bench dit -- models/fashion_mnist/onnx/dit_int8.onnx 64 2 300 1
//! ```
//! Arguments: graph, batch, threads, timed iterations, copies of the graph (`OrtDitReplicas`,
//! default 1), latents per graph run (default: the whole part). Prints one JSON line.

use d3hr_core::NoisePredictor;
use d3hr_ort::{OrtDitReplicas, SessionConfig};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // `cargo bench` runs in runtime-ort/: relative paths are taken from the workspace root.
    let graph = args
        .first()
        .map(|p| root.join(p))
        .unwrap_or_else(|| root.join("models/work/bench/dit_S2_256.onnx"));
    let batch: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(8);
    let threads: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2);
    let iters: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(20);
    let replicas: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(1);
    let max_batch: Option<usize> = args.get(5).and_then(|v| v.parse().ok());
    if !graph.exists() {
        eprintln!(
            "{} not found: create it with `python models/bench_dit.py --preset S/2` first",
            graph.display()
        );
        return;
    }
    let cfg = SessionConfig {
        threads: threads.try_into().ok(),
        ..SessionConfig::default()
    };
    let mut dit = OrtDitReplicas::load(&graph, &cfg, replicas.try_into().expect("copies >= 1"))
        .expect("load graph");
    if let Some(n) = max_batch {
        dit = dit.with_max_batch(n.try_into().expect("latents per run >= 1"));
    }
    let d = dit.latent_len();
    let x: Vec<f32> = (0..batch * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let classes: Vec<u32> = (0..batch as u32).map(|i| i % dit.num_classes()).collect();
    let mut eps = vec![0.0f32; batch * d];
    for _ in 0..3 {
        dit.predict(&x, 500, &classes, &mut eps).expect("warm-up");
    }
    let t0 = Instant::now();
    for i in 0..iters {
        dit.predict(&x, (i * 37 % 1000) as u32, &classes, &mut eps)
            .expect("run");
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"runner\": \"d3hr-ort\", \"graph\": \"{}\", \"batch\": {batch}, \"threads\": {threads}, \
         \"replicas\": {replicas}, \"max_batch\": {}, \"iters\": {iters}, \"passes_per_s\": {:.3}, \
         \"images_per_s\": {:.2}}}",
        graph.display(),
        max_batch.map_or("null".to_string(), |n| n.to_string()),
        iters as f64 / secs,
        (iters * batch) as f64 / secs
    );
}
