//! The words of the settings: the values of `--profile`, `--inversion-eps`, `--mapping`,
//! `--posterior`, `--mode` and `--skew-target`, as the statistics file and the manifest write
//! them (kebab-case). The command line parses them (`ValueEnum`), but the file formats depend on
//! these definitions alone, not on the command line's.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Which source the algorithm's defaults follow: the paper or the authors' released code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    Paper,
    Reference,
}

/// Where each inversion step t_prev → t evaluates ε.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InversionEps {
    Source,
    Target,
}

impl InversionEps {
    /// What a statistics file without the field was made with: ε at the target step.
    pub fn before_the_field() -> InversionEps {
        InversionEps::Target
    }
}

/// The skewness target γ of the paper's Eq. 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkewTarget {
    Zero,
    Data,
}

/// The domain mapping: DDIM inversion (D3HR) or DDPM forward noising (the Base-DDPM ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    Ddim,
    Ddpm,
}

/// The VAE latent: the posterior mean, or a seeded posterior sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Posterior {
    Mean,
    Sample,
}

/// Group sampling: the paper's joint argmin, per-dimension selection, or one random subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Joint,
    PerDim,
    Random,
}
