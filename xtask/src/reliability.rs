//! `cargo xtask reliability`: runs the apply fault matrix
//! (`crates/portcullis/tests/fault_matrix.rs`) and has it write `docs/reliability.md`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

pub(crate) fn run(root: &Path) -> Result<()> {
    let doc = root.join("docs/reliability.md");
    let before = std::fs::metadata(&doc).and_then(|m| m.modified()).ok();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["test", "--quiet", "-p", "portcullis", "--test", "fault_matrix"])
        .args(["--", "--nocapture"])
        .env("PCL_WRITE_RELIABILITY", "1")
        .status()
        .context("cargo test --test fault_matrix")?;
    ensure!(status.success(), "the fault matrix failed");
    // Without root the test skips (a failure under CI) and writes nothing.
    let after = std::fs::metadata(&doc).and_then(|m| m.modified()).ok();
    ensure!(after.is_some() && after != before, "the fault matrix wrote no table (skipped?)");
    eprintln!("wrote {}", doc.display());
    Ok(())
}
