use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong between a `.onnx` file and a prediction. Messages name the file
/// and the offending input, output, key or value; an underlying error (I/O, the library loader,
/// ONNX Runtime, the core's validation) is the [`source`](std::error::Error::source), not repeated
/// in the message, so print the chain (`{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No ONNX Runtime shared library was found.
    #[error(
        "ONNX Runtime library not found (looked at: {}).\n\
         Install it with `python3 -m pip install onnxruntime=={pinned}` (CPU) or \
         `python3 -m pip install onnxruntime-gpu=={pinned}` (CUDA), or point ORT_DYLIB_PATH at \
         libonnxruntime.so / onnxruntime.dll / libonnxruntime.dylib",
        .tried.join("; ")
    )]
    LibraryNotFound {
        /// What was searched, in order (a variable, or an interpreter and what it had).
        tried: Vec<String>,
        /// The tested ONNX Runtime version.
        pinned: &'static str,
    },
    /// `--ort-lib` or `ORT_DYLIB_PATH` names a file that does not exist.
    #[error("cannot load ONNX Runtime from {path}: {given_by} names a file that does not exist")]
    LibraryFileMissing {
        /// The path given.
        path: PathBuf,
        /// Who gave it (`--ort-lib`, `ORT_DYLIB_PATH`).
        given_by: &'static str,
    },
    /// The library is older than the ONNX Runtime API this build of `ort` needs.
    #[error(
        "ONNX Runtime at {path} is version {found}, but d3hr needs 1.{required_minor} or newer; \
         install the tested version with `python3 -m pip install onnxruntime=={tested}` \
         (or onnxruntime-gpu=={tested})"
    )]
    VersionMismatch {
        /// The library file.
        path: PathBuf,
        /// Its version string.
        found: String,
        /// The least minor version (`1.x`) the API needs.
        required_minor: u32,
        /// The tested ONNX Runtime version.
        tested: &'static str,
    },
    /// The library was found but could not be loaded (not a shared library, missing symbols or
    /// dependencies…). Remembered for the process: a second load would fail the same way.
    #[error("cannot load ONNX Runtime from {path}")]
    LoadLibrary {
        /// The library file.
        path: PathBuf,
        /// The loader's error.
        source: Arc<ort::LoadDynamicError>,
    },
    /// The library was loaded but its environment could not be created.
    #[error("cannot initialise ONNX Runtime from {path}")]
    InitLibrary {
        /// The library file.
        path: PathBuf,
        /// ONNX Runtime's error.
        source: Arc<ort::Error>,
    },
    /// The model file is missing or unreadable.
    #[error("cannot read model {path}")]
    Io {
        /// The model file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// ONNX Runtime refused the model (truncated or not an ONNX file, unsupported operator…).
    #[error("cannot load model {path}: {message}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The graph's inputs or outputs are not the ones this kind of graph must have.
    #[error("{path}: {what}: expected {expected}, found {found}")]
    Interface {
        /// The model file.
        path: PathBuf,
        /// Which part of the interface (inputs, outputs, an input's type or shape…).
        what: String,
        /// What d3hr needs.
        expected: String,
        /// What the graph declares.
        found: String,
    },
    /// A metadata property is missing or malformed.
    #[error("{path}: metadata property `{key}` {problem}")]
    Metadata {
        /// The model file.
        path: PathBuf,
        /// The property.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The requested execution provider could not be registered.
    #[error(
        "{path}: cannot use the {provider} execution provider: {message}. \
         CUDA needs the onnxruntime-gpu wheel and matching CUDA/cuDNN libraries on the library path; \
         use `--ep cpu` to run on the CPU"
    )]
    Provider {
        /// The model file.
        path: PathBuf,
        /// The provider.
        provider: &'static str,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A class id the model has no embedding for.
    #[error(
        "{path}: class id {class} is out of range: the model has {num_classes} classes (0..{num_classes}, null class {null_class})"
    )]
    ClassOutOfRange {
        /// The model file.
        path: PathBuf,
        /// The offending id.
        class: u32,
        /// Classes of the model.
        num_classes: u32,
        /// Its null class.
        null_class: u32,
    },
    /// A batch whose buffers do not have the sizes the graph needs.
    #[error("{path}: {what} holds {got} values, expected {expected} ({detail})")]
    Batch {
        /// The model file.
        path: PathBuf,
        /// Which buffer.
        what: &'static str,
        /// Values expected.
        expected: usize,
        /// Values passed.
        got: usize,
        /// The shape behind the expectation.
        detail: String,
    },
    /// ONNX Runtime failed while running the graph.
    #[error("{path}: inference failed: {message}")]
    Run {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A classifier-free guidance scale the core's [`d3hr_core::ddim::Guidance::new`] refuses.
    #[error("invalid guidance scale {scale}")]
    Guidance {
        /// The scale passed.
        scale: f32,
        /// Why the core refused it.
        source: d3hr_core::Error,
    },
    /// A VAE was asked for neither an encoder nor a decoder graph.
    #[error("a VAE needs an encoder or a decoder graph")]
    NoVaeGraph,
    /// Encoding was asked of a VAE loaded without its encoder graph.
    #[error("no VAE encoder graph was loaded (--vae-encoder)")]
    NoEncoder,
    /// Decoding was asked of a VAE loaded without its decoder graph.
    #[error("no VAE decoder graph was loaded (--vae-decoder)")]
    NoDecoder,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
