//! `merge`: statistics files of disjoint shards → one, exactly.

use anyhow::{Result, bail};
use d3hr_cli::cli::MergeArgs;
use d3hr_cli::progress::Reporter;
use d3hr_cli::stats::StatsFile;
use serde_json::json;

pub fn run(a: &MergeArgs, rep: &Reporter) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!(
            "--out {}: exists (use --force to overwrite)",
            a.out.display()
        );
    }
    // The inputs must have been made the same way (the identity of their statistics); the
    // merged file carries that identity, so class shards merge to one process's bytes.
    let (mut merged, id) = StatsFile::read_run(&a.inputs[0])?;
    for p in &a.inputs[1..] {
        let (other, other_id) = StatsFile::read_run(p)?;
        // The metadata's own checks first: they name the model or setting in their words.
        merged.merge(&other, p)?;
        if let (Some(a0), Some(b)) = (&id, &other_id) {
            let diff = b.differences(a0);
            if !diff.is_empty() {
                bail!(
                    "{} was made with a different {} than {}",
                    p.display(),
                    diff.join(", a different "),
                    a.inputs[0].display()
                );
            }
        }
    }
    merged.write_run(&a.out, id.as_ref())?;
    rep.result(
        json!({"event": "done", "out": a.out, "classes": merged.classes.len()}),
        &format!(
            "wrote {} ({} classes from {} files)",
            a.out.display(),
            merged.classes.len(),
            a.inputs.len()
        ),
    );
    Ok(())
}
