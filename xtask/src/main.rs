//! Developer automation for portcullis, run as `cargo xtask <task>`.
//! See <https://github.com/matklad/cargo-xtask/>.
//!
//! Each task is one module; `main` only dispatches. Tasks drive the built `portcullis`
//! binary and the system's `ip`/`iptables` as black boxes.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a developer tool prints")]

use std::env;
use std::path::PathBuf;

use anyhow::{Result, bail};

mod baseline;
mod bench_apply;
mod bench_list;
mod bench_parse;
mod bench_ports;
mod bench_scan;
mod bench_verify;
mod deps;
mod e2e;
mod fuzz;
mod kube_gen;
mod reliability;
mod soak;

fn project_root() -> PathBuf {
    let dir =
        env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    PathBuf::from(dir).parent().expect("xtask lives one level below the root").to_owned()
}

/// Builds the release `portcullis` binary (the thing every benchmark measures) and
/// returns its path.
fn release_binary(root: &std::path::Path) -> Result<PathBuf> {
    release_build(root, "portcullis", None)
}

/// Builds `package`'s release binary, or its `example`, and returns the path.
fn release_build(root: &std::path::Path, package: &str, example: Option<&str>) -> Result<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut c = std::process::Command::new(cargo);
    c.current_dir(root).args(["build", "--release", "--quiet", "-p", package]);
    if let Some(e) = example {
        c.args(["--example", e]);
    }
    if !c.status()?.success() {
        bail!("cargo build --release -p {package} {} failed", example.unwrap_or_default());
    }
    let target = env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(match example {
        Some(e) => target.join("release/examples").join(e),
        None => target.join("release").join(package),
    })
}

fn usage() -> &'static str {
    "usage: cargo xtask <task> [args]\n\
     tasks:\n  bench <what>   run a benchmark against its anchor (parse, list, apply, ports, scan, verify)\n  baseline [NNNN]  capture real iptables output for the fixtures\n  fuzz [--smoke] [--seconds N] [--runs N] [TARGET...]  run the fuzz targets\n  soak [--syn N] [--udp N] [--bin-runs N] [--doc]  scanner soak on the rig\n  reliability    run the apply fault matrix, write docs/reliability.md\n  e2e [SCENARIO] [--keep]  the end-to-end scenarios\n  deps           check the dependency direction\n"
}

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprint!("{}", usage());
        bail!("no task given");
    };
    let rest = &args[1..];
    match task.as_str() {
        "baseline" => baseline::run(&project_root(), rest),
        "deps" => deps::run(&project_root()),
        "e2e" => e2e::run(&project_root(), rest),
        "soak" => soak::run(&project_root(), rest),
        "reliability" => reliability::run(&project_root()),
        "fuzz" => fuzz::run(&project_root(), rest),
        "bench" => match rest.first().map(String::as_str) {
            Some("apply") => bench_apply::run(&rest[1..]),
            Some("list") => bench_list::run(&project_root(), &rest[1..]),
            Some("scan") => bench_scan::run(&project_root(), &rest[1..]),
            Some("verify") => bench_verify::run(&project_root(), &rest[1..]),
            Some("parse") => bench_parse::run(&project_root(), &rest[1..]),
            Some("ports") => bench_ports::run(&project_root(), &rest[1..]),
            Some(other) => bail!("unknown benchmark {other:?}"),
            None => bail!("bench needs a name"),
        },
        other => {
            eprint!("{}", usage());
            bail!("unknown task {other:?}")
        }
    }
}
