//! The namespace rig shared by the kernel and nmap tests: a target namespace holding the
//! ruleset and a scanner namespace on a veth link (198.18.0.0/24), a packet sender and
//! listeners that run inside a namespace by re-executing the test binary, and the
//! fixture rulesets.
#![allow(dead_code, reason = "each test binary uses a different part of the rig")]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use portcullis_netns::{Netns, link};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub(crate) const HELPER_ENV: &str = "PCL_EVAL_SENDER";
pub(crate) const TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub(crate) const SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 0, 1),
    Ipv4Addr::new(198, 18, 0, 10),
    Ipv4Addr::new(198, 18, 0, 100),
    Ipv4Addr::new(198, 18, 0, 200),
];

/// The body of the `sender_helper` pseudo-test: reads commands from stdin, answers
/// `@@ ok` or `@@ err …` for each. Returns at once outside a helper process.
pub(crate) fn helper_main() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.expect("read a command");
        let reply = match command(&line) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("err {e}"),
        };
        writeln!(out, "@@ {reply}").expect("answer");
        out.flush().expect("flush");
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(u16::try_from(sum).expect("folded"))
}

fn command(line: &str) -> std::io::Result<()> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let ip = |s: &str| s.parse::<Ipv4Addr>().map_err(std::io::Error::other);
    let port = |s: &str| s.parse::<u16>().map_err(std::io::Error::other);
    match w.as_slice() {
        ["tcp", flags, src, sport, dst, dport] => {
            let (src, dst) = (ip(src)?, ip(dst)?);
            let flags = flags.parse::<u8>().map_err(std::io::Error::other)?;
            let mut h = [0u8; 20];
            h[0..2].copy_from_slice(&port(sport)?.to_be_bytes());
            h[2..4].copy_from_slice(&port(dport)?.to_be_bytes());
            h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            if flags & 0x10 != 0 {
                h[8..12].copy_from_slice(&0x0bad_beefu32.to_be_bytes());
            }
            h[12] = 5 << 4;
            h[13] = flags;
            h[14..16].copy_from_slice(&1024u16.to_be_bytes());
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&dst.octets());
            pseudo.extend_from_slice(&[0, 6, 0, 20]);
            pseudo.extend_from_slice(&h);
            let c = checksum(&pseudo);
            h[16..18].copy_from_slice(&c.to_be_bytes());
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
            s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
            s.send_to(&h, &SockAddr::from(SocketAddrV4::new(dst, 0)))?;
        }
        ["udp", src, sport, dst, dport] => {
            let s = UdpSocket::bind((ip(src)?, port(sport)?))?;
            s.send_to(b"portcullis", (ip(dst)?, port(dport)?))?;
        }
        ["icmp", src, dst, ty, code] => {
            let (src, dst) = (ip(src)?, ip(dst)?);
            let mut h = [0u8; 8];
            h[0] = ty.parse().map_err(std::io::Error::other)?;
            h[1] = code.parse().map_err(std::io::Error::other)?;
            h[4..8].copy_from_slice(&[0x12, 0x34, 0, 1]);
            let c = checksum(&h);
            h[2..4].copy_from_slice(&c.to_be_bytes());
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
            s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
            s.send_to(&h, &SockAddr::from(SocketAddrV4::new(dst, 0)))?;
        }
        ["listen", "tcp", p] => {
            let l = TcpListener::bind(("0.0.0.0", port(p)?))?;
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                for s in l.incoming().flatten() {
                    keep.push(s);
                }
            });
        }
        ["listen", "udp", p] => {
            let s = UdpSocket::bind(("0.0.0.0", port(p)?))?;
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n.max(1)], from);
                }
            });
        }
        _ => return Err(std::io::Error::other(format!("bad command `{line}'"))),
    }
    Ok(())
}

/// A helper process inside a namespace.
pub(crate) struct Helper {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    pub(crate) fn spawn(ns: &Netns) -> Self {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = ns
            .command(exe.to_str().expect("utf-8 path"))
            .args(["--exact", "sender_helper", "--nocapture", "--test-threads=1", "-q"])
            .env(HELPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the helper");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self { _child: child, stdin, stdout }
    }

    pub(crate) fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("send a command");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read the answer");
            assert!(n > 0, "the helper died on `{cmd}'");
            if let Some(answer) = line.strip_prefix("@@ ") {
                assert_eq!(answer.trim(), "ok", "`{cmd}'");
                return;
            }
        }
    }
}

/// The target and scanner namespaces, linked, the scanner with all of [`SOURCES`], and
/// the target holding `rules` (iptables-restore input).
pub(crate) struct Rig {
    pub(crate) target: Netns,
    pub(crate) scanner: Netns,
}

impl Rig {
    pub(crate) fn new(purpose: &str, rules: &str) -> Self {
        let target = Netns::create(purpose).expect("target namespace");
        let scanner = Netns::create(purpose).expect("scanner namespace");
        link(&target, &scanner, 0).expect("link");
        for s in &SOURCES[1..] {
            scanner
                .run("ip", &["addr", "add", &format!("{s}/24"), "dev", "pcl0"])
                .expect("address");
        }
        // ICMP errors complete, so nmap sees every reason.
        for knob in ["net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000"] {
            let _ = target.run("sysctl", &["-qw", knob]);
        }
        let mut restore = target
            .command("iptables-restore")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("iptables-restore runs");
        restore.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write rules");
        let out = restore.wait_with_output().expect("iptables-restore ends");
        assert!(out.status.success(), "iptables-restore: {}", String::from_utf8_lossy(&out.stderr));
        Self { target, scanner }
    }
}

/// The IPv4 fixture rulesets: the syntax crate's baseline fixtures and this crate's.
pub(crate) fn fixtures() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dirs = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/../portcullis-syntax/test_data/baseline"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/kernel"),
    ];
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_none_or(|e| e != "rules") {
                continue;
            }
            let text = std::fs::read_to_string(&f).expect("read fixture");
            if text.lines().any(|l| l.contains("::")) {
                continue;
            }
            out.push((f.file_name().expect("name").to_string_lossy().into_owned(), text));
        }
    }
    out
}

/// The ports worth probing for a ruleset: every number in its text, its neighbours and
/// some common ones.
pub(crate) fn ports_of(text: &str) -> Vec<u16> {
    let mut set = std::collections::BTreeSet::new();
    for word in text.split(|c: char| !c.is_ascii_digit()) {
        if let Ok(n) = word.parse::<u32>()
            && (1..=65534).contains(&n)
        {
            for m in [n - 1, n, n + 1] {
                if let Ok(p) = u16::try_from(m)
                    && p > 0
                {
                    set.insert(p);
                }
            }
        }
    }
    set.extend([22, 25, 53, 80, 110, 123, 143, 443, 993, 3128, 8080, 40000, 65535]);
    set.into_iter().collect()
}
