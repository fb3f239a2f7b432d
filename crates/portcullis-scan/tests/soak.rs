//! Soak (issue 8): back-to-back `-sS -F` and `-sU -F` scans through the library against the
//! issue 3 rig, every run exact (states and reasons), and no resource left behind: after a
//! warm-up no growth in open file descriptors (`/proc/self/fd`, counted at the start and
//! the end of each run), resident memory (`VmRSS`) within [`RSS_SLACK`] of the first
//! measured run, no thread left running (`/proc/self/task`), no child process.
//!
//! `cargo test` runs a short soak (10 + 3 runs, about 30 s). `cargo xtask soak` runs the
//! full one (200 + 50) by setting `PORTCULLIS_SOAK_SYN` and `PORTCULLIS_SOAK_UDP`;
//! `PORTCULLIS_SOAK_REPORT=PATH` writes the figures as a Markdown table there
//! (`docs/soak.md` holds one from a real run). Root only, like every rig test.
#![cfg(feature = "runtime")]
#![allow(clippy::print_stderr, reason = "the soak prints its figures")]
#![allow(clippy::disallowed_methods, reason = "the soak times its runs, as a transport does")]

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::expect::{SYN, UDP};
use common::{Rig, TARGET, rig_available};
use portcullis_scan::ports::top_ports;
use portcullis_scan::scan::ScanConfig;
use portcullis_scan::state::ScanType;
use portcullis_scan::testing::summary;
use portcullis_scan::timing::Timing;

/// Runs at the start of each phase whose resource figures are not held to the baseline
/// (lazy allocations: allocator arenas, thread-locals, the first socket buffers).
const WARM_UP: usize = 2;
/// How far the last run's RSS may lie above the first run after the warm-up.
const RSS_SLACK: u64 = 2 << 20;
/// How long a joined thread may take to vanish from `/proc/self/task` (the kernel reaps
/// it just after waking the joiner). A bounded wait for a condition, not a timing check.
const REAP_WAIT: Duration = Duration::from_secs(2);

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a count")),
        Err(_) => default,
    }
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).unwrap_or_else(|e| panic!("{path}: {e}")).count()
}

fn open_fds() -> usize {
    // The directory handle read_dir holds is counted too, the same in every sample.
    count_dir("/proc/self/fd")
}

fn threads() -> usize {
    count_dir("/proc/self/task")
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Processes whose parent is this process (zombies included).
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim);
        if ppid == Some(me.as_str()) {
            out.push(pid);
        }
    }
    out
}

/// Waits (bounded) until the thread count is back to `want`; returns the last count.
fn threads_settle(want: usize) -> usize {
    let start = Instant::now();
    loop {
        let n = threads();
        if n <= want || start.elapsed() > REAP_WAIT {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

/// The figures of one phase.
struct Phase {
    name: &'static str,
    runs: usize,
    exact: usize,
    fd_first: usize,
    fd_last: usize,
    threads_first: usize,
    threads_last: usize,
    /// RSS at the end of each run.
    rss: Vec<u64>,
    seconds: Vec<f64>,
}

impl Phase {
    fn rss_line(&self) -> String {
        let base = self.rss[WARM_UP.min(self.rss.len() - 1)];
        let last = *self.rss.last().expect("a run");
        let min = self.rss.iter().min().copied().unwrap_or(0);
        let max = self.rss.iter().max().copied().unwrap_or(0);
        format!(
            "{} → {} KiB (run {} → {}; all runs {}–{})",
            base / 1024,
            last / 1024,
            WARM_UP.min(self.rss.len() - 1) + 1,
            self.rss.len(),
            min / 1024,
            max / 1024
        )
    }

    fn row(&self) -> String {
        let mut t = self.seconds.clone();
        t.sort_by(f64::total_cmp);
        format!(
            "| {} | {} | {}/{} | {} → {} | {} → {} | {} | {:.2} s ({:.2}–{:.2}) |",
            self.name,
            self.runs,
            self.exact,
            self.runs,
            self.fd_first,
            self.fd_last,
            self.threads_first,
            self.threads_last,
            self.rss_line(),
            t[t.len() / 2],
            t[0],
            t[t.len() - 1],
        )
    }
}

/// `runs` scans of `cfg` back to back; panics at the first inexact run or leak.
fn phase(rig: &Rig, name: &'static str, cfg: &ScanConfig, expect: &str, runs: usize) -> Phase {
    let mut p = Phase {
        name,
        runs,
        exact: 0,
        fd_first: 0,
        fd_last: 0,
        threads_first: 0,
        threads_last: 0,
        rss: Vec::new(),
        seconds: Vec::new(),
    };
    let mut fd_base = None;
    let mut thread_base = None;
    for run in 1..=runs {
        let fd_start = open_fds();
        let threads_start = threads();
        let t0 = Instant::now();
        let r = rig.scan(cfg.clone());
        p.seconds.push(t0.elapsed().as_secs_f64());
        assert_eq!(summary(&r), expect, "{name} run {run} of {runs} is not exact");
        p.exact += 1;
        let threads_end = threads_settle(threads_start);
        let fd_end = open_fds();
        p.rss.push(rss_bytes());
        assert_eq!(
            threads_end, threads_start,
            "{name} run {run}: a thread outlived the scan ({threads_start} → {threads_end})"
        );
        let kids = children();
        assert!(kids.is_empty(), "{name} run {run}: child processes left: {kids:?}");
        if run > WARM_UP || run == runs {
            let base = *fd_base.get_or_insert(fd_start);
            let tbase = *thread_base.get_or_insert(threads_start);
            assert_eq!(fd_end, fd_start, "{name} run {run}: open descriptors grew during the run");
            assert_eq!(fd_end, base, "{name} run {run}: open descriptors grew since the warm-up");
            assert_eq!(threads_end, tbase, "{name} run {run}: threads grew since the warm-up");
        }
        if run == 1 {
            (p.fd_first, p.threads_first) = (fd_start, threads_start);
        }
        (p.fd_last, p.threads_last) = (fd_end, threads_end);
    }
    let base = p.rss[WARM_UP.min(runs - 1)];
    let last = *p.rss.last().expect("a run");
    eprintln!("soak: {}", p.row());
    assert!(
        last <= base + RSS_SLACK,
        "{name}: RSS grew from {:.2} to {:.2} MiB over {runs} runs (slack {:.0} MiB)",
        mib(base),
        mib(last),
        mib(RSS_SLACK)
    );
    p
}

fn fast(scan_type: ScanType) -> ScanConfig {
    ScanConfig {
        scan_type,
        targets: vec![TARGET.parse().expect("address")],
        ports: top_ports(scan_type.protocol(), 100),
        timing: Timing::template(3),
        seed: None,
    }
}

/// One test, so no other test of this binary opens descriptors or threads meanwhile.
#[test]
fn back_to_back_scans_are_exact_and_leak_nothing() {
    if !rig_available() {
        return;
    }
    let syn_runs = env_count("PORTCULLIS_SOAK_SYN", 10);
    let udp_runs = env_count("PORTCULLIS_SOAK_UDP", 3);
    assert!(syn_runs > WARM_UP && udp_runs > WARM_UP, "each phase needs runs past the warm-up");
    let rig = Rig::new(false);
    let started = Instant::now();
    let syn = phase(&rig, "-sS -F", &fast(ScanType::Syn), SYN, syn_runs);
    let udp = phase(&rig, "-sU -F", &fast(ScanType::Udp), UDP, udp_runs);
    let total = started.elapsed().as_secs_f64();
    if let Some(path) = std::env::var_os("PORTCULLIS_SOAK_REPORT") {
        let mut md = String::new();
        md.push_str(
            "| scan | runs | exact | open fds, start → end | threads, start → end | VmRSS after warm-up → last run | scan time, median (min–max) |\n",
        );
        md.push_str("|---|---|---|---|---|---|---|\n");
        for p in [&syn, &udp] {
            let _ = writeln!(md, "{}", p.row());
        }
        let _ = writeln!(
            md,
            "\n{} scans in {total:.0} s, back to back against one target; no child process \
             after any run. Warm-up: the first {WARM_UP} runs of each phase.",
            syn_runs + udp_runs
        );
        std::fs::write(&path, md).unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy()));
    }
}
