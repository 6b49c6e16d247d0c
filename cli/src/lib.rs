//! The `d3hr-cli` library: the command line's definitions, the readers of every input file
//! (images folder, IDX, statistics, class map, manifest) and the writers of every output, so that
//! the binary, the tests and the fuzz targets (`fuzz/`) share one implementation.
//!
//! The readers build without the model runtime (`default-features = false`); the stages that run
//! the models need the `runtime` feature (on by default).

pub mod cli;
pub mod data;
pub mod fsx;
pub mod identity;
pub mod manifest;
#[cfg(feature = "runtime")]
pub mod models;
pub mod output;
#[cfg(feature = "runtime")]
pub mod pipeline;
#[cfg(feature = "runtime")]
pub mod progress;
pub mod settings;
pub mod stats;
pub mod words;

/// Threads for ONNX Runtime and group sampling: `--threads`, else every core.
pub fn threads(g: &cli::Global) -> usize {
    g.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.get(),
    )
}
