use core::fmt;

/// Why a constructor or a call with user-supplied sizes was refused.
///
/// Every public entry point that takes user input validates it and returns this error instead
/// of panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A schedule or grid with no steps.
    ZeroSteps,
    /// More steps than the fixed-capacity tables hold.
    TooManySteps {
        /// Steps requested.
        requested: usize,
        /// Capacity.
        max: usize,
    },
    /// β values outside (0, 1) or a start above the end.
    InvalidBetas,
    /// Inference steps exceed the training steps.
    GridTooFine {
        /// Inference steps requested.
        steps: usize,
        /// Training steps of the schedule.
        train_steps: usize,
    },
    /// A timestep grid that is not strictly increasing at `index`.
    NonIncreasingGrid {
        /// Position of the first offending element.
        index: usize,
    },
    /// A timestep at or beyond the number of training steps.
    TimestepOutOfRange {
        /// The timestep.
        t: u32,
        /// Training steps of the schedule.
        train_steps: usize,
    },
    /// A buffer whose length does not match what the call needs.
    BufferLength {
        /// Which buffer.
        what: &'static str,
        /// Length needed.
        expected: usize,
        /// Length passed.
        got: usize,
    },
    /// A subset size too small for the requested statistic (e.g. n < 2 for an unbiased std).
    SubsetTooSmall {
        /// The subset size.
        n: usize,
        /// The least size that works.
        need: usize,
    },
    /// Per-dimension selection needs a loss that is a sum over dimensions (the paper's loss).
    PerDimNeedsSeparableLoss,
    /// A search over zero candidates.
    NoCandidates,
    /// Guidance scale that is NaN, infinite or below zero.
    InvalidGuidance,
    /// A target mean, std or skewness that is not finite, or a negative std, at this dimension.
    InvalidTarget {
        /// Dimension index.
        dim: usize,
    },
    /// A λ weight that is NaN, infinite or negative.
    InvalidLambda,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroSteps => f.write_str("zero steps requested"),
            Error::TooManySteps { requested, max } => {
                write!(
                    f,
                    "{requested} steps requested, at most {max} are supported"
                )
            }
            Error::InvalidBetas => f.write_str("betas must lie in (0, 1) with start <= end"),
            Error::GridTooFine { steps, train_steps } => write!(
                f,
                "{steps} inference steps exceed the schedule's {train_steps} training steps"
            ),
            Error::NonIncreasingGrid { index } => {
                write!(
                    f,
                    "timestep grid is not strictly increasing at index {index}"
                )
            }
            Error::TimestepOutOfRange { t, train_steps } => write!(
                f,
                "timestep {t} is outside the schedule's 0..{train_steps} training steps"
            ),
            Error::BufferLength {
                what,
                expected,
                got,
            } => write!(f, "{what}: expected length {expected}, got {got}"),
            Error::SubsetTooSmall { n, need } => {
                write!(
                    f,
                    "subset size {n} is too small: this needs at least {need}"
                )
            }
            Error::PerDimNeedsSeparableLoss => f.write_str(
                "per-dimension selection needs the paper's loss (a sum over dimensions)",
            ),
            Error::NoCandidates => f.write_str("the search needs at least one candidate"),
            Error::InvalidGuidance => f.write_str("guidance scale must be finite and >= 0"),
            Error::InvalidTarget { dim } => write!(
                f,
                "target statistics at dimension {dim} are not finite (or the std is negative)"
            ),
            Error::InvalidLambda => f.write_str("loss weights must be finite and >= 0"),
        }
    }
}

impl core::error::Error for Error {}
