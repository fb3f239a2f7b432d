//! `cargo xtask deps`: the dependency direction of `docs/architecture.md`, checked with
//! `cargo tree -i` for every forbidden edge (style.md §2.3): the pure crates stay pure.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

/// (crate, dependency it must not have, why).
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("portcullis-rules", "nom", "the model knows no text format"),
    ("portcullis-rules", "portcullis-syntax", "the model is the bottom layer"),
    ("portcullis-eval", "portcullis-syntax", "eval depends only on the model"),
    ("portcullis-eval", "portcullis-apply", "eval depends only on the model"),
    ("portcullis-eval", "nom", "eval depends only on the model"),
    ("portcullis-scan", "portcullis-rules", "the scanner knows no rules"),
    ("portcullis-rules", "tokio", "libraries below the binary are synchronous"),
    ("portcullis-syntax", "tokio", "libraries below the binary are synchronous"),
    ("portcullis-eval", "tokio", "libraries below the binary are synchronous"),
    ("portcullis-apply", "tokio", "libraries below the binary are synchronous"),
    ("portcullis-rules", "anyhow", "libraries return typed errors"),
    ("portcullis-syntax", "anyhow", "libraries return typed errors"),
    ("portcullis-eval", "anyhow", "libraries return typed errors"),
    ("portcullis-apply", "anyhow", "libraries return typed errors"),
    ("portcullis-scan", "anyhow", "libraries return typed errors"),
    ("portcullis-netns", "anyhow", "libraries return typed errors"),
    ("portcullis-rules", "pnet", "only the scanner touches raw packets"),
    ("portcullis-syntax", "pnet", "only the scanner touches raw packets"),
    ("portcullis-eval", "pnet", "only the scanner touches raw packets"),
    ("portcullis-apply", "pnet", "only the scanner touches raw packets"),
];

pub(crate) fn run(root: &Path) -> Result<()> {
    let mut broken = Vec::new();
    for (krate, dep, why) in FORBIDDEN {
        // `cargo tree -i DEP` prints the paths to DEP when it is in the crate's normal
        // dependency graph; otherwise it prints nothing (exit 0, "nothing to print", when
        // DEP is elsewhere in the workspace) or fails (101, "did not match any packages").
        let out = Command::new(env!("CARGO"))
            .current_dir(root)
            .args(["tree", "--quiet", "-e", "normal", "-p", krate, "-i", dep])
            .stderr(Stdio::null())
            .output()?;
        if out.status.success() && !out.stdout.is_empty() {
            broken.push(format!("{krate} depends on {dep}: {why}"));
        }
    }
    if !broken.is_empty() {
        bail!("forbidden dependency edges:\n  {}", broken.join("\n  "));
    }
    println!("dependency direction: {} forbidden edges absent", FORBIDDEN.len());
    Ok(())
}
