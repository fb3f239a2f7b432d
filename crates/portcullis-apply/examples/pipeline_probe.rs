//! Experiment: how much of a verified apply could hide under iptables-restore's own
//! reading of the file. `pipeline_probe NS FILE` starts `iptables-nft-restore` in NS at
//! once and feeds it the file up to its first COMMIT while this process parses the same
//! file and runs `prepare` on it (validation, guard, lock, snapshot, plan, rendering);
//! then sends the rest, computes the expected text beside the restore (as the apply
//! does), reads the result back over netlink and compares it. Prints the times.
//!
//! `PIN=1`: the child on CPU 0, this process on CPU 1 until the restore is done.
//! `LATE_EXPECTED=1`: the expected text after the restore instead of beside it.
//!
//! Not a safe apply (no intent journal, no guardian, no rollback, a failed check
//! panics): use it in a throwaway namespace only. Findings: docs/decisions-apply.md,
//! "Hiding the checks under the restore's parse".
#![allow(clippy::print_stderr, clippy::unwrap_used, missing_docs, reason = "an experiment")]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let ns = std::env::args().nth(1).unwrap();
    let file = std::env::args().nth(2).unwrap();
    let t0 = Instant::now();
    let pin = std::env::var_os("PIN").is_some();
    let one = |cpu: usize| {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).unwrap();
        set
    };
    if pin {
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one(1)).unwrap();
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let mut child = Command::new(if pin { "taskset" } else { "ip" })
        .args(if pin { &["-c", "0", "ip"][..] } else { &[][..] })
        .args(["netns", "exec", &ns, "iptables-nft-restore", "-w", "5"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let cut = text.find("\nCOMMIT\n").map_or(text.len(), |p| p + 1);
    let (head, tail) = text.split_at(cut);
    let mut checks = 0.0;
    let target = portcullis_apply::Target::new(
        Some(&ns),
        portcullis_rules::Family::V4,
        portcullis_rules::Backend::Nft,
    );
    let mut opts = portcullis_apply::ApplyOptions::from_env();
    opts.force = true;
    let rs = std::thread::scope(|s| {
        let writer = s.spawn(move || {
            stdin.write_all(head.as_bytes()).unwrap();
            stdin
        });
        let t = Instant::now();
        let rs = portcullis_syntax::parse_save(&text).unwrap();
        // What an apply does before it may commit: validation, guard, lock, snapshot,
        // plan and rendering (`prepare`); its lock is released at once here.
        drop(portcullis_apply::prepare(&rs, &target, &opts).unwrap());
        checks = t.elapsed().as_secs_f64();
        let mut stdin = writer.join().unwrap();
        stdin.write_all(tail.as_bytes()).unwrap();
        rs
    });
    let expected_text = || {
        let c = portcullis_apply::comparable(&rs, portcullis_rules::Backend::Nft);
        portcullis_syntax::render_save(&c, portcullis_syntax::SaveOptions::default())
    };
    // Beside the restore, as the apply does, or after it.
    let late = std::env::var_os("LATE_EXPECTED").is_some();
    let expected = std::thread::scope(|s| {
        let exp = (!late).then(|| s.spawn(expected_text));
        let status = child.wait().unwrap();
        assert!(status.success());
        exp.map(|e| e.join().unwrap())
    });
    let restored = t0.elapsed().as_secs_f64();
    let expected = expected.unwrap_or_else(expected_text);
    if pin {
        let mut both = one(0);
        both.set(1).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &both).unwrap();
    }
    let saved = portcullis_apply::nft_save(
        Some(&ns),
        portcullis_rules::Family::V4,
        None,
        portcullis_apply::Counters::Drop,
    )
    .unwrap();
    // A comparison of the same size as the apply's: every kernel line against the
    // expected text, through a map of the expected lines.
    let want: std::collections::HashSet<&str> = expected.lines().collect();
    let differ = saved.lines().filter(|l| l.starts_with("-A") && !want.contains(l)).count();
    std::hint::black_box(differ);
    let total = t0.elapsed().as_secs_f64();
    eprintln!(
        "checks {checks:.3}s (hidden), restore done {restored:.3}s, with read and compare {total:.3}s, {differ} kernel rules not expected"
    );
}
