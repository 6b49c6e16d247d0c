//! Drives the real `d3hr-cli` binary.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> PathBuf {
    // tests/ is a workspace member; the binary is built into the shared target dir.
    let mut p = std::env::current_exe().expect("test exe path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join(format!("d3hr-cli{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn version_and_unimplemented_commands() {
    let exe = bin();
    if !exe.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "d3hr-cli"])
            .status()
            .expect("cargo build");
        assert!(st.success());
    }
    let out = Command::new(&exe).arg("--version").output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("d3hr-cli "));
    let out = Command::new(&exe).arg("distill").output().expect("run");
    assert!(
        !out.status.success(),
        "an unimplemented command must not report success"
    );
}
