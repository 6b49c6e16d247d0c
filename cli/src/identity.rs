//! The run identity: everything that decides an output's contents, by the flag that sets it.
//! Recorded in every checkpoint and output; `--resume` refuses any difference and names it.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Flag → value (as text). A `BTreeMap`, so that it serialises the same bytes every time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity(pub BTreeMap<String, String>);

impl Identity {
    /// Record `flag = value`.
    pub fn set(&mut self, flag: &str, value: impl ToString) {
        self.0.insert(flag.to_string(), value.to_string());
    }

    /// Record an optional flag: its value or `-` when not given.
    pub fn set_opt<T: ToString>(&mut self, flag: &str, value: Option<T>) {
        self.set(
            flag,
            value.map_or_else(|| "-".to_string(), |v| v.to_string()),
        );
    }

    /// The identity of a statistics file made by this run: what decides the statistics of each
    /// class it holds, without what only says which part of the data this process took
    /// (`--classes`, `--shard`, the listing's digest), how it was batched, which command ran, or
    /// what happens after the statistics (sampling, the decoder). So class shards merged are the
    /// same bytes as one process's file, and a merge can refuse inputs made another way.
    pub fn of_statistics(&self) -> Identity {
        const NOT_STATISTICS: &[&str] = &[
            "command",
            "--classes",
            "--shard",
            "--data (contents)",
            "--batch",
            "--vae-decoder",
            "--ipc",
            "--mode",
            "--m",
            "--lambda",
            "--resize",
            "--save-latents",
            "sampling settings",
        ];
        Identity(
            self.0
                .iter()
                .filter(|(k, _)| !NOT_STATISTICS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// SHA-256 of the canonical JSON: a short handle for per-class records.
    pub fn digest(&self) -> String {
        crate::fsx::sha256_bytes(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// One line per difference: `--limit-per-class (300, now 200)`.
    pub fn differences(&self, recorded: &Identity) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(recorded.0.keys()).collect();
        let show = |v: Option<&String>| -> String {
            match v {
                None => "not recorded".into(),
                Some(v) if v.len() > 80 => format!("{}…", v.chars().take(24).collect::<String>()),
                Some(v) => v.clone(),
            }
        };
        let differ: Vec<&String> = keys
            .into_iter()
            .filter(|k| self.0.get(*k) != recorded.0.get(*k))
            .collect();
        // The catch-all entries (every knob, unnamed) only when no named flag explains it.
        let named = differ.iter().any(|k| k.starts_with("--"));
        differ
            .into_iter()
            .filter(|k| !named || k.starts_with("--"))
            .map(|k| {
                format!(
                    "{k} ({}, now {})",
                    show(recorded.0.get(k)),
                    show(self.0.get(k))
                )
            })
            .collect()
    }

    /// Refuse to resume `what` unless it was made with exactly these settings.
    pub fn check_resume(&self, recorded: &Identity, what: &str) -> Result<()> {
        let diff = self.differences(recorded);
        if diff.is_empty() {
            return Ok(());
        }
        bail!(
            "--resume: {what} was made with a different {}; use --force or another --out",
            diff.join(", a different ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_flag_and_both_values() {
        let mut a = Identity::default();
        a.set("--limit-per-class", 300);
        a.set("--seed", 1);
        let mut b = a.clone();
        b.set("--limit-per-class", 200);
        assert_eq!(b.differences(&a), ["--limit-per-class (300, now 200)"]);
        let e = b.check_resume(&a, "out").unwrap_err().to_string();
        assert!(e.contains("--limit-per-class (300, now 200)"), "{e}");
        assert!(a.check_resume(&a.clone(), "out").is_ok());
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), b.digest());
    }
}
