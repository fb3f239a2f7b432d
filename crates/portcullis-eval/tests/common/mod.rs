//! The namespace rig shared by the kernel and nmap tests: a target namespace holding the
//! ruleset and a scanner namespace on a veth link (198.18.0.0/24), a packet sender and
//! listeners that run inside a namespace by re-executing the test binary, and the
//! fixture rulesets.
#![allow(dead_code, reason = "each test binary uses a different part of the rig")]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use portcullis_netns::{Netns, link};
use portcullis_rules::Family;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub(crate) const HELPER_ENV: &str = "PCL_EVAL_SENDER";
pub(crate) const TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub(crate) const SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 0, 1),
    Ipv4Addr::new(198, 18, 0, 10),
    Ipv4Addr::new(198, 18, 0, 100),
    Ipv4Addr::new(198, 18, 0, 200),
];
pub(crate) const TARGET6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
pub(crate) const SOURCES6: [Ipv6Addr; 4] = [
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100),
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x200),
];

/// The addresses of the rig in one family.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub(crate) family: Family,
    pub(crate) target: IpAddr,
    pub(crate) sources: Vec<IpAddr>,
}

impl Net {
    pub(crate) fn of(family: Family) -> Self {
        match family {
            Family::V4 => Self {
                family,
                target: TARGET.into(),
                sources: SOURCES.iter().map(|a| IpAddr::V4(*a)).collect(),
            },
            Family::V6 => Self {
                family,
                target: TARGET6.into(),
                sources: SOURCES6.iter().map(|a| IpAddr::V6(*a)).collect(),
            },
        }
    }

    /// The iptables command of the family.
    pub(crate) fn iptables(&self) -> &'static str {
        self.family.command()
    }

    pub(crate) fn loopback(&self) -> IpAddr {
        match self.family {
            Family::V4 => Ipv4Addr::LOCALHOST.into(),
            Family::V6 => Ipv6Addr::LOCALHOST.into(),
        }
    }
}

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
    let ip = |s: &str| s.parse::<IpAddr>().map_err(std::io::Error::other);
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
            match (src, dst) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    pseudo.extend_from_slice(&a.octets());
                    pseudo.extend_from_slice(&b.octets());
                    pseudo.extend_from_slice(&[0, 6, 0, 20]);
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    pseudo.extend_from_slice(&a.octets());
                    pseudo.extend_from_slice(&b.octets());
                    pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
                }
                _ => return Err(std::io::Error::other("mixed families")),
            }
            pseudo.extend_from_slice(&h);
            let c = checksum(&pseudo);
            h[16..18].copy_from_slice(&c.to_be_bytes());
            let domain = if src.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
            let s = Socket::new(domain, Type::RAW, Some(Protocol::TCP))?;
            s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
            s.send_to(&h, &SockAddr::from(SocketAddr::new(dst, 0)))?;
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
            let s = if src.is_ipv4() {
                let c = checksum(&h);
                h[2..4].copy_from_slice(&c.to_be_bytes());
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?
            } else {
                // The kernel fills in the ICMPv6 checksum.
                Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?
            };
            s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
            s.send_to(&h, &SockAddr::from(SocketAddr::new(dst, 0)))?;
        }
        ["listen", "tcp", p] => {
            let l = TcpListener::bind(("::", port(p)?))?;
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                for s in l.incoming().flatten() {
                    keep.push(s);
                }
            });
        }
        ["listen", "udp", p] => {
            let s = UdpSocket::bind(("::", port(p)?))?;
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
        Self::with_family(purpose, rules, Family::V4)
    }

    /// The rig with `rules` loaded by `iptables-restore` or `ip6tables-restore`. For IPv6
    /// the link has no link-local addresses and permanent neighbour entries, and the rig
    /// waits for the multicast listener reports of the new addresses to pass, so that no
    /// neighbour discovery or MLD packet counts in the target's rules.
    pub(crate) fn with_family(purpose: &str, rules: &str, family: Family) -> Self {
        let target = Netns::create(purpose).expect("target namespace");
        let scanner = Netns::create(purpose).expect("scanner namespace");
        for ns in [&target, &scanner] {
            for knob in [
                "net.ipv6.conf.default.addr_gen_mode=1",
                "net.ipv6.conf.default.accept_ra=0",
                "net.ipv6.conf.default.router_solicitations=0",
                "net.ipv6.conf.default.dad_transmits=0",
            ] {
                let _ = ns.run("sysctl", &["-qw", knob]);
            }
        }
        let l = link(&target, &scanner, 0).expect("link");
        for s in &SOURCES[1..] {
            scanner
                .run("ip", &["addr", "add", &format!("{s}/24"), "dev", "pcl0"])
                .expect("address");
        }
        for s in &SOURCES6[1..] {
            scanner
                .run("ip", &["addr", "add", &format!("{s}/64"), "dev", "pcl0", "nodad"])
                .expect("address");
        }
        if family == Family::V6 {
            let mac = |ns: &Netns| {
                let out = ns.run("cat", &["/sys/class/net/pcl0/address"]).expect("mac");
                out.trim().to_owned()
            };
            let (tmac, smac) = (mac(&target), mac(&scanner));
            target
                .run(
                    "ip",
                    &[
                        "-6",
                        "neigh",
                        "replace",
                        &l.b_v6.to_string(),
                        "lladdr",
                        &smac,
                        "dev",
                        "pcl0",
                        "nud",
                        "permanent",
                    ],
                )
                .expect("neighbour");
            for s in &SOURCES6[1..] {
                target
                    .run(
                        "ip",
                        &[
                            "-6",
                            "neigh",
                            "replace",
                            &s.to_string(),
                            "lladdr",
                            &smac,
                            "dev",
                            "pcl0",
                            "nud",
                            "permanent",
                        ],
                    )
                    .expect("neighbour");
            }
            scanner
                .run(
                    "ip",
                    &[
                        "-6",
                        "neigh",
                        "replace",
                        &l.a_v6.to_string(),
                        "lladdr",
                        &tmac,
                        "dev",
                        "pcl0",
                        "nud",
                        "permanent",
                    ],
                )
                .expect("neighbour");
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        // ICMP errors complete, so nmap sees every reason.
        for knob in ["net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000"] {
            let _ = target.run("sysctl", &["-qw", knob]);
        }
        let restore_cmd =
            if family == Family::V4 { "iptables-restore" } else { "ip6tables-restore" };
        let mut restore = target
            .command(restore_cmd)
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

/// The fixture rulesets: the syntax crate's baseline fixtures and this crate's, with
/// their family.
pub(crate) fn fixtures() -> Vec<(String, String, Family)> {
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
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            let family = if name.contains("_v6") || text.lines().any(|l| l.contains("::")) {
                Family::V6
            } else {
                Family::V4
            };
            out.push((name, text, family));
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
