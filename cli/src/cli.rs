//! The command line: clap definitions. Raw arguments become checked settings in `settings.rs`
//! before any work starts.

use crate::words::{InversionEps, Mapping, Mode, Posterior, Profile, SkewTarget};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::num::NonZeroUsize;
use std::path::PathBuf;

/// Distill an image dataset into a few highly representative images per class with a diffusion
/// model (D3HR, ICML 2025): VAE-encode → DDIM-invert with a class-conditional DiT → fit a
/// Gaussian per class → group sampling → DDIM-sample → decode.
///
/// With no model flags the embedded Fashion-MNIST models are used.
#[derive(Debug, Parser)]
#[command(
    name = "d3hr-cli",
    version,
    propagate_version = true,
    // A repeated flag takes its last value, so a wrapper's defaults can be overridden
    // (`scripts/demo --limit-per-class 6000`).
    args_override_self = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Model and runtime options, shared by every command (give them before the command).
#[derive(Debug, Args)]
pub struct Global {
    /// DiT noise-predictor graph (inputs x, t, y → eps). Default: the embedded Fashion-MNIST DiT.
    #[arg(long, global = true, value_name = "DIT.onnx")]
    pub onnx: Option<PathBuf>,
    /// VAE encoder graph (image → mean, logvar). Default: the embedded Fashion-MNIST encoder.
    #[arg(long, global = true, value_name = "ENC.onnx")]
    pub vae_encoder: Option<PathBuf>,
    /// VAE decoder graph (latent → image). Default: the embedded Fashion-MNIST decoder.
    #[arg(long, global = true, value_name = "DEC.onnx")]
    pub vae_decoder: Option<PathBuf>,
    /// Execution provider; `cuda` fails if CUDA cannot be used (no silent CPU fallback).
    #[arg(long, global = true, value_enum, default_value_t = Ep::Cpu)]
    pub ep: Ep,
    /// Threads for ONNX Runtime and for group sampling (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<NonZeroUsize>,
    /// Copies of the DiT run side by side, each with threads/N ONNX Runtime threads and its
    /// share of every batch. Default: one per thread for a small DiT graph (under 64 MB) on CPU,
    /// else 1.
    #[arg(long, global = true, value_name = "N")]
    pub replicas: Option<NonZeroUsize>,
    /// Latents per DiT graph run within each copy. Default: 8 for a small DiT graph on CPU, else
    /// a copy's whole share of the batch.
    #[arg(long, global = true, value_name = "N")]
    pub dit_batch: Option<NonZeroUsize>,
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, else the `onnxruntime` Python package).
    #[arg(long, global = true, value_name = "LIB")]
    pub ort_lib: Option<PathBuf>,
    /// No progress bars or notes on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Progress and results as JSON lines on stdout (for logs and job arrays).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ep {
    Cpu,
    Cuda,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every stage: data → statistics → distilled images.
    Distill(DistillArgs),
    /// Dataset → statistics file (per-class μ, σ, γ and exact moments; the compact distilled set).
    Invert(InvertArgs),
    /// Statistics file → distilled images at any IPC.
    Sample(SampleArgs),
    /// Merge statistics files of disjoint shards (by class or by image) into one, exactly.
    Merge(MergeArgs),
    /// Describe a statistics file or an output folder.
    Inspect(InspectArgs),
}

/// Where the images come from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// ImageFolder tree (one sub-folder per class) or an IDX images file (MNIST/Fashion-MNIST,
    /// gzipped or not; labels read from the matching `*labels-idx1-ubyte*` file next to it).
    /// Default with the embedded model: Debian's Fashion-MNIST training set (required with --onnx
    /// or --vae-encoder of your own).
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub data: Option<PathBuf>,
    /// Class-id mapping for an ImageFolder: lines `folder id` or `folder` (line number = id).
    /// Default: sorted folder names get ids 0, 1, …
    #[arg(long, value_name = "FILE")]
    pub class_map: Option<PathBuf>,
    /// Only these class ids, as `a..b` (end exclusive) or `a,b,c`. `auto`: this job-array task's
    /// block of the data's classes (task i of n takes the sorted classes [i·k/n, (i+1)·k/n); the
    /// index and count are read as for `--shard auto`).
    #[arg(long, value_name = "RANGE")]
    pub classes: Option<String>,
    /// Only image shard `i` of `n` (images whose index within their class ≡ i mod n). `auto`: i
    /// and n from a Slurm job array (SLURM_ARRAY_TASK_ID and the array's range) or a Kubernetes
    /// Indexed Job (JOB_COMPLETION_INDEX out of D3HR_SHARD_COUNT); an error outside one.
    #[arg(long, value_name = "i/n")]
    pub shard: Option<String>,
    /// Use at most this many images per class (the first ones).
    #[arg(long, value_name = "N")]
    pub limit_per_class: Option<NonZeroUsize>,
    /// Fail on the first unreadable image instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Images per model call.
    #[arg(long, default_value_t = NonZeroUsize::new(64).unwrap())]
    pub batch: NonZeroUsize,
}

/// The algorithm's knobs; a profile sets them all, each flag overrides one.
#[derive(Debug, Args, Clone)]
pub struct ProfileArgs {
    /// `paper`: the paper's equations (T = 31 on DiT's 50-step grid, ε at the source step of each
    /// inversion step as Eq. 3 prints it, skewness target 0, λ = 1, 1, 0.5). `reference`: the
    /// authors' released code (30 inversion steps with ε at the target step, sampling from one
    /// step higher, guidance 4, posterior samples, L2-norm loss, λ = 1, 1, 0.1, 1e8 candidates).
    #[arg(long, value_enum, default_value_t = Profile::Paper)]
    pub profile: Profile,
    /// Inversion steps T on the 50-step grid (paper 31, reference 30).
    #[arg(long)]
    pub steps: Option<NonZeroUsize>,
    /// Classifier-free guidance scale for inversion and sampling (paper profile 1, reference 4).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Where each inversion step t_prev → t evaluates ε: `source` (t_prev, the paper's Eq. 3;
    /// paper profile) or `target` (t, the authors' released code; reference profile).
    #[arg(long, value_enum)]
    pub inversion_eps: Option<InversionEps>,
    /// Domain mapping: `ddim` inversion (D3HR) or `ddpm` forward noising (the Base-DDPM ablation).
    #[arg(long, value_enum)]
    pub mapping: Option<Mapping>,
    /// VAE latent: the posterior `mean`, or a seeded posterior `sample`.
    #[arg(long, value_enum)]
    pub posterior: Option<Posterior>,
}

/// Group sampling and output.
#[derive(Debug, Args, Clone)]
pub struct SamplingArgs {
    /// Images per class.
    #[arg(long)]
    pub ipc: NonZeroUsize,
    /// `joint`: the paper's argmin over m subsets; `per-dim`: best candidate column per latent
    /// dimension; `random`: one subset (m = 1, the Base-RS ablation).
    #[arg(long, value_enum, default_value_t = Mode::Joint)]
    pub mode: Mode,
    /// Candidate subsets m (default: joint 100000 with the paper profile, 100000000 with the
    /// reference profile; per-dim 1000). The authors' `--m M` draws 1000·M candidates (M/10
    /// batches of 10,000), so their default M = 100000 is our `--m 100000000`. The projected
    /// search time is printed before the search starts.
    #[arg(long)]
    pub m: Option<u64>,
    /// Skewness target γ of the paper's Eq. 8: `zero` (the paper: "as Gaussian distribution is
    /// perfectly symmetric, γ = 0") or `data` (each dimension's measured skewness). The
    /// reference loss always uses 0.
    #[arg(long, value_enum, default_value_t = SkewTarget::Zero)]
    pub skew_target: SkewTarget,
    /// Loss weights λμ,λσ,λγ (default from the profile).
    #[arg(long, value_name = "MU,SIGMA,GAMMA")]
    pub lambda: Option<String>,
    /// Write images at this size (Lanczos); default: the input size (padding removed).
    #[arg(long, value_name = "PIXELS")]
    pub resize: Option<NonZeroUsize>,
    /// Also write the selected latents (z_T and z_0) as `<class>/latents.safetensors`.
    #[arg(long)]
    pub save_latents: bool,
    /// Also write every candidate's standard normals g (`m × IPC × dims`, f32; a candidate's
    /// latents are μ + σ ⊙ g) as `<class>/candidates.safetensors`, to check a selection
    /// independently. Joint and random modes; at most 2^26 values per class.
    #[arg(long)]
    pub save_candidates: bool,
}

/// Output-folder behaviour shared by the writing commands.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Seed for every random choice (default: drawn from the clock, printed and recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue an interrupted run in the same output (finished classes are kept).
    #[arg(long)]
    pub resume: bool,
    /// Write into a non-empty output, replacing what is there.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DistillArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output folder: `<out>/<class>/<k>.png`, `manifest.json`, `stats.safetensors`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct InvertArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Statistics file to write (safetensors).
    #[arg(long, value_name = "STATS.safetensors")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Statistics file from `invert` or `merge`.
    #[arg(long, value_name = "STATS.safetensors")]
    pub stats: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Only these class ids, as `a..b` or `a,b,c`.
    #[arg(long, value_name = "RANGE")]
    pub classes: Option<String>,
    /// Latents per model call while sampling and decoding.
    #[arg(long, default_value_t = NonZeroUsize::new(64).unwrap())]
    pub batch: NonZeroUsize,
    /// Output folder: `<out>/<class>/<k>.png` and `manifest.json`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Merged statistics file to write.
    #[arg(long, value_name = "STATS.safetensors")]
    pub out: PathBuf,
    /// Replace `--out` if it exists.
    #[arg(long)]
    pub force: bool,
    /// Statistics files of disjoint shards.
    #[arg(required = true, num_args = 2..)]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A statistics file or an output folder.
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "d3hr-cli",
            "distill",
            "--ipc",
            "10",
            "--out",
            "o",
            "--limit-per-class",
            "300",
            "--limit-per-class",
            "6000",
        ])
        .unwrap();
        let super::Command::Distill(d) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(d.data.limit_per_class.map(|n| n.get()), Some(6000));
    }
}
