//! `cargo xtask bench verify [--runs N] [-- VERIFY ARGS]`: the wall time of `portcullis
//! verify` on the seed article's ruleset with `-F`, and where it goes.
//!
//! Builds `portcullis` (release; `PORTCULLIS_BIN=PATH` uses that binary instead), writes the seed's ruleset, then runs `portcullis verify
//! SEED --json` N times back to back (default 10). Wall time is measured here, from fork to
//! exit: sandbox setup and teardown included. verify's JSON gives the phases (setup:
//! namespaces, veth, sysctls; apply: iptables-restore in the target; listen: deriving the
//! listeners and starting them; scan: SYN and UDP scans side by side; predict: eval and
//! comparison; teardown: killing the listener, deleting the namespaces); "process" is the
//! rest (exec, parsing, output). Prints the median, min and max of each. Every run must
//! exit 0 (all 200 ports agree, 22/tcp open): a fast wrong answer is not a result.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

const SEED: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";

const PHASES: [&str; 6] = ["setup", "apply", "listen", "scan", "predict", "teardown"];

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (median, v[0], v[n - 1])
}

/// Entry point.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut runs = 10usize;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs N")?.parse().context("--runs N")?,
            "--" => extra.extend(it.by_ref().cloned()),
            other => anyhow::bail!("unknown option {other:?} (--runs N, -- VERIFY ARGS)"),
        }
    }
    ensure!(runs > 0, "--runs must be at least 1");
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-restore"]) {
        anyhow::bail!("bench verify needs root and iptables: {why}");
    }
    let exe = match std::env::var_os("PORTCULLIS_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => crate::release_binary(root)?,
    };
    let seed =
        std::env::temp_dir().join(format!("portcullis-bench-seed-{}.rules", std::process::id()));
    std::fs::write(&seed, SEED)?;
    let mut walls = Vec::new();
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len() + 1];
    for i in 0..runs {
        let t = Instant::now();
        let out = Command::new(&exe)
            .arg("verify")
            .arg(&seed)
            .args(["-F", "--json"])
            .args(&extra)
            .stdin(Stdio::null())
            .output()
            .context("run portcullis verify")?;
        let wall = t.elapsed();
        ensure!(
            out.status.success(),
            "run {i}: verify exited {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("verify's JSON")?;
        ensure!(v["agree"].as_u64() == Some(200), "run {i}: not every one of 200 ports agreed");
        let mut sum = 0.0;
        for (k, name) in PHASES.iter().enumerate() {
            let ms = v["timings_ms"][name].as_f64().unwrap_or(0.0);
            sum += ms;
            phases[k].push(ms);
        }
        let wall_ms = wall.as_secs_f64() * 1000.0;
        phases[PHASES.len()].push(wall_ms - sum);
        walls.push(wall_ms);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&seed);
    println!(
        "portcullis verify SEED -F {}: {runs} runs (release build, wall from fork to exit)",
        extra.join(" ")
    );
    println!("{:<10} {:>10} {:>10} {:>10}", "phase", "median ms", "min ms", "max ms");
    for (k, name) in PHASES.iter().chain(std::iter::once(&"process")).enumerate() {
        let (m, lo, hi) = stats(phases[k].clone());
        println!("{name:<10} {m:>10.1} {lo:>10.1} {hi:>10.1}");
    }
    let (m, lo, hi) = stats(walls);
    println!("{:<10} {m:>10.1} {lo:>10.1} {hi:>10.1}", "wall");
    println!("median wall {:.2} s (budget 2 s)", m / 1000.0);
    Ok(())
}
