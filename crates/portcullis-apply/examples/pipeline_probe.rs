//! Experiment: how much of a verified apply could hide under iptables-restore's own
//! parse. `pipeline_probe NS FILE` starts `iptables-nft-restore` in NS at once and feeds it
//! the file up to its first COMMIT while this process parses, validates, guards and
//! renders the same file; then sends the rest, waits, and reads the result back over
//! netlink. Prints the times. Not a safe apply: nothing is compared or rolled back.
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
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            stdin.write_all(head.as_bytes()).unwrap();
            stdin
        });
        let t = Instant::now();
        let rs = portcullis_syntax::parse_save(&text).unwrap();
        assert!(portcullis_rules::validate(&rs).is_empty());
        let report =
            portcullis_apply::guard::check(&rs, &portcullis_apply::guard::management_paths(None));
        let input = portcullis_apply::Plan::full(&rs).restore_input(&rs);
        std::hint::black_box((&report, &input));
        checks = t.elapsed().as_secs_f64();
        let mut stdin = writer.join().unwrap();
        stdin.write_all(tail.as_bytes()).unwrap();
    });
    let status = child.wait().unwrap();
    assert!(status.success());
    let restored = t0.elapsed().as_secs_f64();
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
    std::hint::black_box(&saved);
    let total = t0.elapsed().as_secs_f64();
    eprintln!("checks {checks:.3}s (hidden), restore done {restored:.3}s, with read {total:.3}s");
}
