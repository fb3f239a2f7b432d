//! The two-namespace test rig of issue 3 (after `shared/tools/scan-rig.sh`), only ever on
//! 198.18.0.0/15 inside namespaces created here and removed by `Drop`, even on panic.
//!
//! Target 198.18.0.2 (`INPUT` policy DROP): lo and ESTABLISHED,RELATED accepted; tcp 22 and
//! 80 accepted with listeners; tcp 443 accepted without one; tcp 25 REJECT tcp-reset;
//! tcp 110 REJECT (icmp-port-unreachable); tcp 113 REJECT icmp-admin-prohibited; udp 53
//! accepted with a responder; udp 123 accepted without one; udp 161 REJECT; udp 137 REJECT
//! icmp-admin-prohibited. Scanner 198.18.0.1, optionally itself at `INPUT` policy DROP.
#![allow(dead_code, reason = "each test binary uses a different part of the rig")]
#![allow(clippy::print_stderr, reason = "tests say when they skip")]

use std::io::Write as _;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis_scan::engine::ScanReport;
use portcullis_scan::netns::run_in_netns;
use portcullis_scan::scan::{ScanConfig, scan};

pub(crate) const TARGET: &str = "198.18.0.2";
pub(crate) const SCANNER: &str = "198.18.0.1";

pub(crate) mod expect;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether root-only rig tests can run here; prints why not and returns false, unless
/// `CI` is set, where a missing prerequisite fails the test.
pub(crate) fn rig_available() -> bool {
    let mut missing = Vec::new();
    // SAFETY-free check for root: /proc/self/status Uid line.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        missing.push("not root".to_owned());
    }
    for tool in ["ip", "iptables-restore"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            missing.push(format!("{tool} not found"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "rig prerequisites missing under CI: {missing:?}");
    eprintln!("skipping: {}", missing.join(", "));
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace removed on drop.
#[derive(Debug)]
pub(crate) struct Netns {
    pub(crate) name: String,
    lock: PathBuf,
}

impl Netns {
    fn new() -> Self {
        let name =
            format!("pcl-scan-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        let lock = std::env::temp_dir().join(format!("{name}.xtables.lock"));
        let ns = Self { name, lock };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub(crate) fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    pub(crate) fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv).env("XTABLES_LOCKFILE", &self.lock);
        c
    }

    pub(crate) fn exec(&self, argv: &[&str]) {
        run(&mut self.command(argv));
    }

    /// Loads an iptables-restore ruleset into this namespace only.
    pub(crate) fn iptables_restore(&self, rules: &str) {
        let mut c = self.command(&["iptables-restore"]);
        let mut child =
            c.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("iptables-restore");
        child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write rules");
        let out = child.wait_with_output().expect("iptables-restore");
        assert!(out.status.success(), "iptables-restore: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_file(&self.lock);
    }
}

const TARGET_RULES: &str = include_str!("../../test_data/rig/target.rules");

/// Listener threads in the target namespace, stopped on drop.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn start_listeners(ns: &Netns) -> Listeners {
    let (tcp, udp) = run_in_netns(&ns.path(), || {
        let tcp: Vec<TcpListener> = [22, 80]
            .iter()
            .map(|p| TcpListener::bind((TARGET, *p)).expect("bind tcp listener"))
            .collect();
        let udp = UdpSocket::bind((TARGET, 53)).expect("bind udp responder");
        (tcp, udp)
    })
    .expect("enter target namespace");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for l in tcp {
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }
    udp.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
    let stop2 = Arc::clone(&stop);
    threads.push(std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let reply: &[u8] = if n == 0 { b"x" } else { &buf[..n] };
                let _ = udp.send_to(reply, from);
            }
        }
    }));
    Listeners { stop, threads }
}

/// The rig. Fields drop in order: listeners first, then the namespaces.
pub(crate) struct Rig {
    _listeners: Listeners,
    pub(crate) scanner: Netns,
    pub(crate) target: Netns,
}

impl Rig {
    /// Builds the rig; `scanner_drop` puts the scanner namespace itself at INPUT DROP.
    pub(crate) fn new(scanner_drop: bool) -> Self {
        let scanner = Netns::new();
        let target = Netns::new();
        scanner.exec(&[
            "ip",
            "link",
            "add",
            "scan0",
            "type",
            "veth",
            "peer",
            "name",
            "tgt0",
            "netns",
            &target.name,
        ]);
        scanner.exec(&["ip", "addr", "add", &format!("{SCANNER}/24"), "dev", "scan0"]);
        target.exec(&["ip", "addr", "add", &format!("{TARGET}/24"), "dev", "tgt0"]);
        scanner.exec(&["ip", "link", "set", "scan0", "up"]);
        target.exec(&["ip", "link", "set", "tgt0", "up"]);
        target.iptables_restore(TARGET_RULES);
        if scanner_drop {
            scanner.iptables_restore(
                "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
            );
        }
        let listeners = start_listeners(&target);
        Self { _listeners: listeners, scanner, target }
    }

    /// Runs a scan from the scanner namespace against the target.
    pub(crate) fn scan(&self, cfg: ScanConfig) -> ScanReport {
        for t in &cfg.targets {
            assert!(in_rig_range(*t), "tests only scan 198.18.0.0/15, not {t}");
        }
        run_in_netns(&self.scanner.path(), move || scan(&cfg, &mut |_| {}))
            .expect("enter scanner namespace")
            .expect("scan")
    }
}

/// 198.18.0.0/15, the only range the tests scan.
pub(crate) fn in_rig_range(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(_) => false,
    }
}
