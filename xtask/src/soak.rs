//! `cargo xtask soak`: the scanner soak of issue 8, full length.
//!
//! 1. The library soak (`crates/portcullis-scan/tests/soak.rs`) with `--syn N` (default
//!    200) back-to-back `-sS -F` scans and `--udp N` (default 50) `-sU -F` scans on the
//!    issue 3 rig: every run exact, no descriptor, memory, thread or process growth.
//!    `cargo test` runs the same test with 10 + 3 runs.
//! 2. `--bin-runs N` (default 3) runs of `portcullis scan -sS -F` and of `-sU -F` through
//!    the binary (the debug build `cargo test` made, or `PORTCULLIS_BIN`) on the bench
//!    rig: every run exact (`-oG` ports line, ICMP reasons in `-oX`), exit status 0, and no
//!    process left in the scanner namespace afterwards.
//!
//! `--doc` writes the figures into `docs/soak.md` between its figure markers.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::bench_scan::{self, Tool};

const BEGIN: &str = "<!-- soak figures: begin (cargo xtask soak --doc) -->";
const END: &str = "<!-- soak figures: end -->";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn library_soak(root: &Path, syn: usize, udp: usize, report: &Path) -> Result<String> {
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["test", "--quiet", "-p", "portcullis-scan", "--test", "soak", "--", "--nocapture"])
        .env("PORTCULLIS_SOAK_SYN", syn.to_string())
        .env("PORTCULLIS_SOAK_UDP", udp.to_string())
        .env("PORTCULLIS_SOAK_REPORT", report)
        .status()
        .context("cargo test --test soak")?;
    ensure!(status.success(), "the library soak failed");
    // Without root the test skips (a failure under CI) and writes no report.
    std::fs::read_to_string(report).context("the soak wrote no figures (skipped?)")
}

fn portcullis_bin(root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PORTCULLIS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["build", "--quiet", "-p", "portcullis"])
        .status()
        .context("cargo build")?;
    ensure!(status.success(), "building portcullis failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("debug/portcullis"))
}

/// The binary's rig, made before the long library soak: it starts its listeners from a
/// copy of this xtask binary, which another `cargo xtask` may rebuild meanwhile.
struct BinaryRig {
    bin: PathBuf,
    dir: PathBuf,
    rig: bench_scan::Rig,
}

fn binary_rig(root: &Path) -> Result<BinaryRig> {
    let bin = portcullis_bin(root)?;
    let dir = std::env::temp_dir().join(format!("pcl-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rig = bench_scan::rig(&dir)?;
    Ok(BinaryRig { bin, dir, rig })
}

fn binary_soak(b: BinaryRig, runs: usize) -> Result<String> {
    let BinaryRig { bin, dir, rig } = b;
    let mut md =
        String::from("| binary | runs | exact | processes left in the scanner namespace |\n");
    md.push_str("|---|---|---|---|\n");
    for row in bench_scan::rows() {
        if row.tool != Tool::Portcullis
            || !matches!(row.name, "portcullis -sS -F" | "portcullis -sU -F")
        {
            continue;
        }
        eprintln!("soak: {} x{runs}", row.name);
        let out = bench_scan::run_row(&rig, &bin, &row, runs, std::time::Duration::ZERO, &dir)?;
        // Read from outside the namespace (inside, `ip` would list itself); only reads /proc.
        let pids = Command::new("ip")
            .args(["netns", "pids", rig.scanner.name()])
            .output()
            .context("ip netns pids")?;
        ensure!(pids.status.success(), "ip netns pids: {}", String::from_utf8_lossy(&pids.stderr));
        let left: Vec<String> =
            String::from_utf8_lossy(&pids.stdout).split_whitespace().map(str::to_owned).collect();
        md.push_str(&format!(
            "| `{}` | {} | {}/{} | {} |\n",
            row.name,
            out.times.len(),
            out.right,
            out.times.len(),
            left.len()
        ));
        ensure!(out.right == out.times.len(), "{}: {}/{} runs exact", row.name, out.right, runs);
        ensure!(left.is_empty(), "{}: processes left in the scanner namespace: {left:?}", row.name);
    }
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(md)
}

fn write_doc(root: &Path, figures: &str) -> Result<()> {
    let path = root.join("docs/soak.md");
    let doc = std::fs::read_to_string(&path).context("docs/soak.md")?;
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        bail!("docs/soak.md lacks the figure markers");
    };
    let new = format!("{}{BEGIN}\n{figures}{}", &doc[..b], &doc[e..]);
    std::fs::write(&path, new).context("writing docs/soak.md")
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let (mut syn, mut udp, mut bin_runs, mut doc) = (200, 50, 3, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut count = |flag: &str| -> Result<usize> {
            Ok(it.next().with_context(|| format!("{flag} N"))?.parse()?)
        };
        match a.as_str() {
            "--syn" => syn = count("--syn")?,
            "--udp" => udp = count("--udp")?,
            "--bin-runs" => bin_runs = count("--bin-runs")?,
            "--doc" => doc = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-restore"]) {
        if std::env::var_os("CI").is_some() {
            bail!("soak cannot run under CI: {why}");
        }
        println!("skipping soak: {why}");
        return Ok(());
    }
    let binary = if bin_runs > 0 { Some(binary_rig(root)?) } else { None };
    let report = std::env::temp_dir().join(format!("pcl-soak-{}.md", std::process::id()));
    let mut figures = library_soak(root, syn, udp, &report)?;
    let _ = std::fs::remove_file(&report);
    if let Some(b) = binary {
        figures.push('\n');
        figures.push_str(&binary_soak(b, bin_runs)?);
    }
    println!("{figures}");
    if doc {
        write_doc(root, &figures)?;
    }
    println!("soak: passed");
    Ok(())
}
