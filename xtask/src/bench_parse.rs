//! `cargo xtask bench parse`: parse + validate of a kube-proxy-scale dump by
//! `portcullis check`, against `iptables-restore --test` (nft and legacy) on the same
//! file in a throwaway namespace. Medians of repeated runs, throughput, peak memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portcullis_netns::Netns;

use crate::kube_gen::{KubeSpec, kube_ruleset};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `cmd` `runs` times with `input` on stdin (or none), returns the median time.
fn time_runs(
    runs: usize,
    mut make: impl FnMut() -> Command,
    input: Option<&Path>,
) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut cmd = make();
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(p) = input {
            cmd.stdin(std::fs::File::open(p)?);
        }
        let t0 = Instant::now();
        let out = cmd.output().context("benchmark command runs")?;
        let dt = t0.elapsed();
        if !out.status.success() {
            bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        times.push(dt);
    }
    Ok(median(times))
}

/// Peak resident set size of one run, in KiB, from GNU time.
fn peak_rss_kib(bin: &Path, file: &Path) -> Result<u64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin)
        .args(["check", "--quiet"])
        .arg(file)
        .stdout(Stdio::null())
        .output()
        .context("/usr/bin/time runs (Debian package `time`)")?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines().last().and_then(|l| l.trim().parse().ok()).context("GNU time prints the peak RSS")
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut services = 10_000;
    let mut runs = 10;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--services" => services = it.next().context("--services N")?.parse()?,
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let bin = crate::release_binary(root)?;
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("kube-{services}.rules"));
    let text = kube_ruleset(KubeSpec { services, generation: 0 });
    std::fs::write(&file, &text)?;
    let lines = text.lines().count();
    let mb = text.len() as f64 / 1e6;
    println!("input: {} ({lines} lines, {mb:.1} MB)", file.display());

    let ours = time_runs(
        runs,
        || {
            let mut c = Command::new(&bin);
            c.args(["check", "--quiet"]).arg(&file);
            c
        },
        None,
    )?;
    let rss = peak_rss_kib(&bin, &file)?;

    let ns = Netns::create("benchparse")?;
    let mut anchors = Vec::new();
    for restore in ["iptables-nft-restore", "iptables-legacy-restore"] {
        let t = time_runs(
            runs,
            || {
                let mut c = ns.command(restore);
                c.arg("--test");
                c
            },
            Some(&file),
        )?;
        anchors.push((restore, t));
    }
    drop(ns);

    let secs = ours.as_secs_f64();
    println!(
        "portcullis check (parse + validate): median {:.1} ms, {:.0} MB/s, peak RSS {:.1} MB ({:.2}x the file)",
        secs * 1e3,
        mb / secs,
        rss as f64 / 1024.0,
        rss as f64 * 1024.0 / text.len() as f64
    );
    for (name, t) in &anchors {
        println!(
            "{name} --test: median {:.1} ms -> portcullis is {:.1}x faster",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / secs
        );
    }
    Ok(())
}
