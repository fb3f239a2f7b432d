//! Acceptance 2 and 3: on the same rig, nmap (where installed) gives the same states, and
//! our `-oG` lines are byte-identical to nmap's. `-sT` differs only where nmap reports an
//! ICMP port-unreachable REJECT as `closed` (errno ECONNREFUSED) and we, reading the
//! socket error queue, report `filtered` like a SYN scan. Each comparison uses a fresh rig
//! and runs nmap first, so nmap meets a full ICMP bucket (it loses ICMP answers otherwise,
//! docs/scanning.md §1.4).
#![cfg(feature = "runtime")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Rig, TARGET, rig_available};
use portcullis_scan::output::{self, OutputOptions, RunInfo};
use portcullis_scan::ports::top_ports;
use portcullis_scan::scan::ScanConfig;
use portcullis_scan::state::ScanType;
use portcullis_scan::timing::Timing;

fn nmap_available() -> bool {
    let ok = Command::new("nmap").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI needs nmap installed");
        #[allow(clippy::print_stderr, reason = "a skipped test says so")]
        {
            eprintln!("skipping: nmap not installed");
        }
    }
    ok
}

/// The `Host: … Ports: …` line of a grepable output.
fn ports_line(gnmap: &str) -> String {
    gnmap.lines().find(|l| l.contains("\tPorts: ")).unwrap_or_default().to_owned()
}

fn nmap_ports_line(rig: &Rig, flag: &str) -> String {
    let out = rig
        .scanner
        .command(&["nmap", "-n", "-Pn", flag, "-F", "-T4", "-oG", "-", TARGET])
        .output()
        .expect("run nmap");
    assert!(out.status.success(), "nmap: {}", String::from_utf8_lossy(&out.stderr));
    ports_line(&String::from_utf8_lossy(&out.stdout))
}

fn our_ports_line(rig: &Rig, scan_type: ScanType) -> String {
    let report = rig.scan(ScanConfig {
        scan_type,
        targets: vec![TARGET.parse().expect("address")],
        ports: top_ports(scan_type.protocol(), 100),
        timing: Timing::template(3),
        seed: None,
    });
    let info = RunInfo { args: String::new(), start_unix: 0, elapsed: Duration::ZERO };
    ports_line(&output::grepable(&[report], &info, OutputOptions::default()))
}

fn compare(flag: &str, scan_type: ScanType, adjust_nmap: impl Fn(String) -> String) {
    if !rig_available() || !nmap_available() {
        return;
    }
    let rig = Rig::new(false);
    let theirs = adjust_nmap(nmap_ports_line(&rig, flag));
    let ours = our_ports_line(&rig, scan_type);
    assert_eq!(ours, theirs, "{flag}");
}

#[test]
fn syn_scan_matches_nmap() {
    compare("-sS", ScanType::Syn, |l| l);
}

#[test]
fn ack_scan_matches_nmap() {
    compare("-sA", ScanType::Ack, |l| l);
}

#[test]
fn udp_scan_matches_nmap() {
    compare("-sU", ScanType::Udp, |l| l);
}

/// nmap -sT: `110/closed` (REJECT icmp-port-unreachable seen as ECONNREFUSED) where we say
/// filtered (port-unreach), which then joins the ignored filtered ports.
#[test]
fn connect_scan_matches_nmap_except_icmp_port_unreachable() {
    compare("-sT", ScanType::Connect, |l| {
        assert!(l.contains("110/closed/tcp//pop3///, "), "nmap -sT reports 110 closed: {l}");
        l.replace("110/closed/tcp//pop3///, ", "").replace("filtered (95)", "filtered (96)")
    });
}
