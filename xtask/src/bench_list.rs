//! `cargo xtask bench list [--services N] [--runs N]`: `portcullis list -n -v` against
//! `iptables -L -n -v` on a kube-proxy-scale ruleset (10,000 services, about 150,000
//! lines) loaded in a throwaway namespace with the system's iptables.
//!
//! Three timings, each the best of `--runs` wall-clock runs, listing both the nat and
//! the filter table as iptables needs one call per table:
//! - `iptables -t nat -L -n -v` + `iptables -t filter -L -n -v` in the namespace;
//! - `portcullis list FILE -n -v` for both tables, FILE being that namespace's
//!   `iptables-save -c` (the acceptance figure: listing a saved ruleset);
//! - `portcullis list --netns NS -n -v` for both tables, which reads the live kernel
//!   through `iptables-save -c` first (so it includes that cost).
//!
//! Before timing, the outputs are compared: portcullis must print what iptables prints,
//! up to iptables 1.8.9's numeric prot column under `-n`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portcullis_netns::Netns;

use crate::kube_gen::{KubeSpec, kube_ruleset};

fn portcullis_bin(root: &Path) -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["build", "--release", "-q", "-p", "portcullis"])
        .current_dir(root)
        .status()
        .context("cargo build --release -p portcullis")?;
    if !status.success() {
        bail!("building portcullis failed");
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    Ok(target.join("release/portcullis"))
}

/// Runs `cmd` and returns its stdout; fails on a non-zero exit.
fn output(mut cmd: Command) -> Result<Vec<u8>> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn best_of(runs: usize, mut f: impl FnMut() -> Result<usize>) -> Result<(Duration, usize)> {
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        bytes = f()?;
        best = best.min(t.elapsed());
    }
    Ok((best, bytes))
}

/// iptables 1.8.9 prints the prot column as a number under -n; 1.8.10+ as the built-in
/// name. Normalises that one column so the outputs can be compared.
fn name_numeric_prot(text: &str) -> String {
    let names = [("0", "all"), ("1", "icmp"), ("6", "tcp"), ("17", "udp")];
    text.split_inclusive('\n')
        .map(|line| {
            for (num, name) in names {
                let pat = format!(" {num:<4} -- ");
                if let Some(at) = line.find(&pat) {
                    let mut l = line.to_owned();
                    l.replace_range(at..at + pat.len(), &format!(" {name:<4} -- "));
                    return l;
                }
            }
            line.to_owned()
        })
        .collect()
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut services = 10_000;
    let mut runs = 3;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--services" => services = it.next().context("--services N")?.parse()?,
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables"]) {
        bail!("bench list needs root and iptables: {why}");
    }
    let bin = portcullis_bin(root)?;
    let text = kube_ruleset(KubeSpec { services, generation: 0 });
    let lines = text.lines().count();
    let ns = Netns::create("benchlist")?;
    let mut child = ns.command("iptables-restore").stdin(Stdio::piped()).spawn()?;
    child.stdin.take().context("stdin")?.write_all(text.as_bytes())?;
    if !child.wait()?.success() {
        bail!("iptables-restore refused the generated ruleset");
    }
    let version = String::from_utf8(output({
        let mut c = ns.command("iptables");
        c.arg("--version");
        c
    })?)?;
    let saved = output({
        let mut c = ns.command("iptables-save");
        c.arg("-c");
        c
    })?;
    let file = std::env::temp_dir().join(format!("{}.save", ns.name()));
    std::fs::write(&file, &saved)?;
    let file_s = file.to_str().context("temp path")?.to_owned();
    println!(
        "ruleset: {services} services, {lines} lines, {:.1} MB loaded with {}",
        saved.len() as f64 / 1e6,
        version.trim()
    );

    let tables = ["nat", "filter"];
    let iptables = |table: &str| -> Result<Vec<u8>> {
        let mut c = ns.command("iptables");
        c.args(["-t", table, "-L", "-n", "-v"]);
        output(c)
    };
    let ours_file = |table: &str| -> Result<Vec<u8>> {
        let mut c = Command::new(&bin);
        c.args(["list", &file_s, "-t", table, "-n", "-v"]);
        output(c)
    };
    let ours_live = |table: &str| -> Result<Vec<u8>> {
        let mut c = Command::new(&bin);
        c.args(["list", "--netns", ns.name(), "-t", table, "-n", "-v"]);
        output(c)
    };
    for t in tables {
        let real = name_numeric_prot(&String::from_utf8(iptables(t)?)?);
        let from_file = String::from_utf8(ours_file(t)?)?;
        let live = String::from_utf8(ours_live(t)?)?;
        if real != from_file || real != live {
            let diff = real.lines().zip(from_file.lines()).find(|(a, b)| a != b);
            bail!("portcullis list -t {t} -n -v differs from iptables -L: {diff:?}");
        }
    }
    println!("outputs identical (iptables 1.8.9's numeric prot column normalised)");

    let all = |f: &dyn Fn(&str) -> Result<Vec<u8>>| -> Result<usize> {
        let mut n = 0;
        for t in tables {
            n += f(t)?.len();
        }
        Ok(n)
    };
    let (t_ipt, n_ipt) = best_of(runs, || all(&iptables))?;
    let (t_file, _) = best_of(runs, || all(&ours_file))?;
    let (t_live, _) = best_of(runs, || all(&ours_live))?;
    let _ = std::fs::remove_file(&file);
    println!(
        "iptables -L -n -v (nat + filter):          {:>8.1} ms  ({:.1} MB printed)",
        ms(t_ipt),
        n_ipt as f64 / 1e6
    );
    println!(
        "portcullis list FILE -n -v (nat + filter):  {:>8.1} ms  {:.1}x faster",
        ms(t_file),
        t_ipt.as_secs_f64() / t_file.as_secs_f64()
    );
    println!(
        "portcullis list --netns -n -v (nat+filter): {:>8.1} ms  {:.1}x faster (reads the kernel: netlink, or iptables-save -c)",
        ms(t_live),
        t_ipt.as_secs_f64() / t_live.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
