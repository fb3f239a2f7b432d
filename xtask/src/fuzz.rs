//! `cargo xtask fuzz [--smoke] [--seconds N] [--runs N] [TARGET...]`: builds the
//! cargo-fuzz targets of `crates/*/fuzz` on the stable toolchain (libFuzzer through
//! `libfuzzer-sys`, SanitizerCoverage through stable `-C` flags, no `-Z` flag and no
//! cargo-fuzz binary needed) and runs each one, seeded from the crates' test data and the
//! committed regression files, with no hang over 1 s and no more than 2 GiB of memory.
//!
//! `--max-len BYTES` bounds the inputs libFuzzer builds (default 32 KiB; a long campaign
//! runs faster with 4096). `cargo xtask fuzz --minimize TARGET FILE` shrinks a crashing
//! input. `--list` names the targets.
//! See `docs/fuzzing.md`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The coverage instrumentation `cargo fuzz build --sanitizer none` asks rustc for, all
/// of it stable; debug assertions and overflow checks as cargo-fuzz's default build.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// Seconds per target of `--smoke` (seven targets: about a minute in all).
const SMOKE_SECONDS: u64 = 8;
/// Seconds per target when neither `--seconds` nor `--runs` is given.
const DEFAULT_SECONDS: u64 = 60;
/// Largest input libFuzzer builds (the biggest seeds are a few tens of KiB).
const MAX_LEN: usize = 32 * 1024;

/// Where a target's seeds come from.
#[derive(Clone, Copy, Debug)]
enum Seeds {
    /// Every file of the crate's `test_data` (up to `MAX_LEN`).
    Files,
    /// Every distinct line of the crate's `test_data` files.
    Lines,
    /// The files of the fuzz crate's `seeds/<target>/`.
    Committed,
    /// Every (scan type, mode) header of the reply classifier's input.
    ScanHeaders,
}

#[derive(Debug)]
struct Target {
    name: &'static str,
    /// The crate directory, relative to the root; the fuzz crate is its `fuzz/`.
    krate: &'static str,
    seeds: Seeds,
}

const TARGETS: &[Target] = &[
    Target { name: "parse_save", krate: "crates/portcullis-syntax", seeds: Seeds::Files },
    Target { name: "rule_line", krate: "crates/portcullis-syntax", seeds: Seeds::Lines },
    Target { name: "script", krate: "crates/portcullis-syntax", seeds: Seeds::Files },
    Target { name: "listing", krate: "crates/portcullis-syntax", seeds: Seeds::Files },
    Target { name: "json", krate: "crates/portcullis-syntax", seeds: Seeds::Committed },
    Target { name: "token_quote", krate: "crates/portcullis-syntax", seeds: Seeds::Lines },
    Target { name: "classify_reply", krate: "crates/portcullis-scan", seeds: Seeds::ScanHeaders },
];

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
enum Budget {
    Seconds(u64),
    Runs(u64),
}

/// What one run reported.
#[derive(Debug, Default)]
struct Stats {
    execs: u64,
    cov: u64,
    ft: u64,
    corpus: u64,
    /// libFuzzer's `stat::peak_rss_mb`.
    rss_mb: u64,
    secs: f64,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut budget = Budget::Seconds(DEFAULT_SECONDS);
    let mut names = Vec::new();
    let mut minimize = None;
    let mut max_len = MAX_LEN;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => budget = Budget::Seconds(SMOKE_SECONDS),
            "--seconds" => {
                budget = Budget::Seconds(it.next().context("--seconds N")?.parse()?);
            }
            "--runs" => budget = Budget::Runs(it.next().context("--runs N")?.parse()?),
            "--max-len" => max_len = it.next().context("--max-len BYTES")?.parse()?,
            "--minimize" => {
                let target = it.next().context("--minimize TARGET FILE")?;
                let file = it.next().context("--minimize TARGET FILE")?;
                minimize = Some((target.clone(), PathBuf::from(file)));
            }
            "--list" => {
                for t in TARGETS {
                    println!("{}", t.name);
                }
                return Ok(());
            }
            flag if flag.starts_with('-') => bail!("unknown flag {flag:?}"),
            name => names.push(name.to_owned()),
        }
    }
    if let Some((target, file)) = minimize {
        let t = find(&target)?;
        let bins = build(root, &[t])?;
        return minimize_crash(root, &bins[0], t, &file, max_len);
    }
    let targets: Vec<&Target> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names.iter().map(|n| find(n)).collect::<Result<_>>()?
    };
    let bins = build(root, &targets)?;
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for (t, bin) in targets.iter().zip(&bins) {
        match fuzz_one(root, bin, t, budget, max_len) {
            Ok(stats) => table.push((t.name, stats)),
            Err(e) => {
                eprintln!("fuzz {}: {e:#}", t.name);
                failures.push(t.name);
            }
        }
    }
    println!(
        "{:<16} {:>12} {:>9} {:>7} {:>7} {:>7} {:>8}",
        "target", "executions", "exec/s", "cov", "ft", "corpus", "rss MB"
    );
    for (name, s) in &table {
        let rate = if s.secs > 0.0 { s.execs as f64 / s.secs } else { 0.0 };
        println!(
            "{name:<16} {:>12} {:>9.0} {:>7} {:>7} {:>7} {:>8}",
            s.execs, rate, s.cov, s.ft, s.corpus, s.rss_mb
        );
    }
    if !failures.is_empty() {
        bail!("fuzz targets failed: {} (inputs under target/fuzz/artifacts/)", failures.join(", "));
    }
    Ok(())
}

fn find(name: &str) -> Result<&'static Target> {
    TARGETS.iter().find(|t| t.name == name).with_context(|| {
        let all: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        format!("unknown fuzz target {name:?} (targets: {})", all.join(", "))
    })
}

fn fuzz_dir(root: &Path) -> PathBuf {
    root.join("target/fuzz")
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("rustc -vV runs")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names the host")
}

/// Builds the targets' binaries, one cargo invocation per fuzz crate. `--target` is
/// explicit so the flags reach only the fuzzed code, not build scripts.
fn build(root: &Path, targets: &[&Target]) -> Result<Vec<PathBuf>> {
    if Command::new("c++").arg("--version").stdout(Stdio::null()).status().is_err() {
        bail!("libfuzzer-sys compiles libFuzzer with a C++ compiler: install g++ (Debian `g++`)");
    }
    let host = host_triple()?;
    let crates: BTreeSet<&str> = targets.iter().map(|t| t.krate).collect();
    for krate in crates {
        let mut cmd = Command::new(env_cargo());
        cmd.args(["build", "--release", "--target", &host, "--manifest-path"])
            .arg(root.join(krate).join("fuzz/Cargo.toml"))
            .env("RUSTFLAGS", RUSTFLAGS)
            .env("CARGO_TARGET_DIR", fuzz_dir(root))
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        for t in targets.iter().filter(|t| t.krate == krate) {
            cmd.args(["--bin", t.name]);
        }
        let status = cmd.status().context("cargo build of the fuzz targets runs")?;
        if !status.success() {
            bail!("building the fuzz targets of {krate} failed");
        }
    }
    Ok(targets.iter().map(|t| fuzz_dir(root).join(&host).join("release").join(t.name)).collect())
}

fn env_cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The committed crash inputs of a target, replayed first by every run.
fn regressions(root: &Path, t: &Target) -> PathBuf {
    root.join(t.krate).join("test_data/fuzzed").join(t.name)
}

fn libfuzzer_flags(root: &Path, t: &Target, max_len: usize) -> Vec<String> {
    let artifacts = fuzz_dir(root).join("artifacts").join(t.name);
    vec![
        "-timeout=1".to_owned(),
        "-rss_limit_mb=2048".to_owned(),
        format!("-max_len={max_len}"),
        format!("-artifact_prefix={}/", artifacts.display()),
    ]
}

fn fuzz_one(root: &Path, bin: &Path, t: &Target, budget: Budget, max_len: usize) -> Result<Stats> {
    let corpus = fuzz_dir(root).join("corpus").join(t.name);
    let seeds = fuzz_dir(root).join("seeds").join(t.name);
    let logs = fuzz_dir(root).join("logs");
    let artifacts = fuzz_dir(root).join("artifacts").join(t.name);
    for d in [&corpus, &logs, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write_seeds(root, t, &seeds)?;
    let log = logs.join(format!("{}.log", t.name));
    let mut cmd = Command::new(bin);
    cmd.args(libfuzzer_flags(root, t, max_len)).arg("-print_final_stats=1");
    match budget {
        Budget::Seconds(s) => cmd.arg(format!("-max_total_time={s}")),
        Budget::Runs(n) => cmd.arg(format!("-runs={n}")),
    };
    cmd.arg(&corpus).arg(&seeds);
    let reg = regressions(root, t);
    if reg.is_dir() {
        cmd.arg(&reg);
    }
    cmd.stdout(Stdio::null()).stderr(fs::File::create(&log)?);
    println!("fuzz {}: {budget:?} (log {})", t.name, log.display());
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("{} runs", bin.display()))?;
    let secs = start.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
        bail!(
            "{} exited with {status}; minimise with `cargo xtask fuzz --minimize {} FILE`",
            t.name,
            t.name
        );
    }
    let mut stats = parse_stats(&text);
    stats.secs = secs;
    Ok(stats)
}

/// Reads the last status line (`#N ... cov: C ft: F corp: K/...`) and the final stats.
fn parse_stats(text: &str) -> Stats {
    let mut s = Stats::default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let mut words = line.split_whitespace();
        words.find(|w| *w == key)?;
        words.next()?.split('/').next()?.parse().ok()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                s.execs = n;
            }
            s.cov = field(line, "cov:").unwrap_or(s.cov);
            s.ft = field(line, "ft:").unwrap_or(s.ft);
            s.corpus = field(line, "corp:").unwrap_or(s.corpus);
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            s.execs = n.trim().parse().unwrap_or(s.execs);
        }
        if let Some(n) = line.strip_prefix("stat::peak_rss_mb:") {
            s.rss_mb = n.trim().parse().unwrap_or(s.rss_mb);
        }
    }
    s
}

/// Writes the target's seed corpus afresh (a read-only input dir for libFuzzer).
fn write_seeds(root: &Path, t: &Target, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    let test_data = root.join(t.krate).join("test_data");
    let mut n = 0usize;
    let mut put = |bytes: &[u8]| -> Result<()> {
        n += 1;
        fs::write(dir.join(format!("seed-{n:05}")), bytes)?;
        Ok(())
    };
    match t.seeds {
        Seeds::Files => {
            for f in files_under(&test_data)? {
                let bytes = fs::read(&f)?;
                if bytes.len() <= MAX_LEN {
                    put(&bytes)?;
                }
            }
        }
        Seeds::Lines => {
            let mut lines = BTreeSet::new();
            for f in files_under(&test_data)? {
                let text = String::from_utf8_lossy(&fs::read(&f)?).into_owned();
                for l in text.lines().filter(|l| !l.trim().is_empty()) {
                    lines.insert(l.to_owned());
                }
            }
            for l in &lines {
                put(l.as_bytes())?;
            }
        }
        Seeds::Committed => {
            for f in files_under(&root.join(t.krate).join("fuzz/seeds").join(t.name))? {
                put(&fs::read(&f)?)?;
            }
        }
        Seeds::ScanHeaders => {
            for kind in 0..4u8 {
                for sel in 0..16u8 {
                    put(&[kind, sel])?;
                    put(&[kind, sel, 0])?;
                }
            }
        }
    }
    Ok(())
}

/// Every file below `dir`, sorted (none when it does not exist).
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Shrinks a crashing input with libFuzzer's `-minimize_crash`, writing `FILE.min`.
fn minimize_crash(root: &Path, bin: &Path, t: &Target, file: &Path, max_len: usize) -> Result<()> {
    let out = file.with_extension("min");
    let status = Command::new(bin)
        .args(libfuzzer_flags(root, t, max_len))
        .args(["-minimize_crash=1", "-max_total_time=60"])
        .arg(format!("-exact_artifact_path={}", out.display()))
        .arg(file)
        .status()
        .context("the fuzz target runs")?;
    if !out.exists() {
        bail!("minimising failed ({status}): does {} crash {}?", file.display(), t.name);
    }
    println!("minimised input: {}", out.display());
    Ok(())
}
