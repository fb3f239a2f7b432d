//! Acceptance 1 of issue 6: the trace agrees with the kernel.
//!
//! Each fixture ruleset is loaded with `iptables-restore` into a throwaway target
//! namespace; a second namespace sends real packets to it (TCP SYN and ACK, UDP, ICMP,
//! and UDP replies that conntrack sees as ESTABLISHED), one at a time. After each packet
//! the per-rule counters are read back with `iptables-save -c`, and the rules (and
//! policies) that counted it must be exactly the rules one of the trace's outcomes says
//! matched. Rules in chains that the target's own replies also traverse (OUTPUT,
//! POSTROUTING) are left out of the comparison, since the replies count there too.
#![allow(clippy::print_stderr, reason = "the test reports what it compared")]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use portcullis_eval::Compiled;
use portcullis_eval::{CtState, Hook, Host, Packet, StepKind, trace_compiled};
use portcullis_netns::{Netns, link};
use portcullis_rules::view::{PortRange, TcpFlags};
use portcullis_rules::{Family, Ruleset, TableName};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const HELPER_ENV: &str = "PCL_EVAL_SENDER";

// ---------------------------------------------------------------------------------------
// The sender, run inside a namespace by re-executing this test binary.

/// Not a test: the packet sender that the tests start inside a namespace. Without the
/// environment variable it returns at once.
#[test]
fn sender_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.expect("read a command");
        let reply = match send(&line) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("err {e}"),
        };
        writeln!(out, "@@ {reply}").expect("answer");
        out.flush().expect("flush");
    }
}

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn send(line: &str) -> std::io::Result<()> {
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
            let c = checksum(&pseudo, 0);
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
            let c = checksum(&h, 0);
            h[2..4].copy_from_slice(&c.to_be_bytes());
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
            s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
            s.send_to(&h, &SockAddr::from(SocketAddrV4::new(dst, 0)))?;
        }
        _ => return Err(std::io::Error::other(format!("bad command `{line}'"))),
    }
    Ok(())
}

struct Helper {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(ns: &Netns) -> Self {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = ns
            .command(exe.to_str().expect("utf-8 path"))
            .args(["--exact", "sender_helper", "--nocapture", "--test-threads=1", "-q"])
            .env(HELPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the sender");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self { _child: child, stdin, stdout }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("send a command");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read the answer");
            assert!(n > 0, "the sender died on `{cmd}'");
            if let Some(answer) = line.strip_prefix("@@ ") {
                assert_eq!(answer.trim(), "ok", "sending `{cmd}'");
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Counters.

/// (table, chain, rule index or None for the policy).
type Key = (TableName, String, Option<usize>);

fn snapshot(ns: &Netns) -> HashMap<Key, u64> {
    let text = ns.run("iptables-save", &["-c"]).expect("iptables-save -c");
    let rs = portcullis_syntax::parse_save(&text).expect("iptables-save output parses");
    let mut m = HashMap::new();
    for t in &rs.tables {
        for c in &t.chains {
            let name = c.name.as_str().to_owned();
            if let Some(k) = c.counters {
                m.insert((t.name, name.clone(), None), k.packets);
            }
            for (i, r) in c.rules.iter().enumerate() {
                m.insert((t.name, name.clone(), Some(i + 1)), r.counters.map_or(0, |k| k.packets));
            }
        }
    }
    m
}

fn delta(before: &HashMap<Key, u64>, after: &HashMap<Key, u64>) -> BTreeSet<Key> {
    after
        .iter()
        .filter(|(k, v)| **v > before.get(*k).copied().unwrap_or(0))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Chains reachable from the given builtin chains.
fn reachable(rs: &Ruleset, roots: &[(TableName, &str)]) -> HashSet<(TableName, String)> {
    let mut seen = HashSet::new();
    let mut todo: Vec<(TableName, String)> =
        roots.iter().map(|(t, c)| (*t, (*c).to_owned())).collect();
    while let Some((t, c)) = todo.pop() {
        if !seen.insert((t, c.clone())) {
            continue;
        }
        let Some(table) = rs.table(t) else { continue };
        let Some(chain) = table.chain(&c) else { continue };
        for r in &chain.rules {
            if let Some(next) = r.chain_ref(|n| table.has_chain(n)) {
                todo.push((t, next.to_owned()));
            }
        }
    }
    seen
}

// ---------------------------------------------------------------------------------------
// The rig.

const TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 0, 1),
    Ipv4Addr::new(198, 18, 0, 10),
    Ipv4Addr::new(198, 18, 0, 100),
    Ipv4Addr::new(198, 18, 0, 200),
];

#[derive(Debug, Clone)]
enum Probe {
    Tcp {
        flags: u8,
        src: Ipv4Addr,
        sport: u16,
        dport: u16,
    },
    Udp {
        src: Ipv4Addr,
        sport: u16,
        dport: u16,
    },
    Icmp {
        src: Ipv4Addr,
        ty: u8,
        code: u8,
    },
    /// The target sends UDP from `tport` to the source's `sport` first; the source's
    /// answer is ESTABLISHED.
    UdpReply {
        src: Ipv4Addr,
        sport: u16,
        tport: u16,
    },
}

impl Probe {
    fn packet(&self) -> Packet {
        let mut p = Packet::new(Family::V4, 0);
        p.dst = Some(IpAddr::V4(TARGET));
        p.in_iface = Some("pcl0".into());
        match *self {
            Self::Tcp { flags, src, sport, dport } => {
                p.proto = 6;
                p.src = Some(src.into());
                p.sport = PortRange::single(sport);
                p.dport = PortRange::single(dport);
                p.tcp_flags = TcpFlags(flags);
            }
            Self::Udp { src, sport, dport } => {
                p.proto = 17;
                p.src = Some(src.into());
                p.sport = PortRange::single(sport);
                p.dport = PortRange::single(dport);
            }
            Self::Icmp { src, ty, code } => {
                p.proto = 1;
                p.src = Some(src.into());
                p.icmp = Some((ty, code));
                // conntrack starts connections only for queries; a lone reply is INVALID.
                if !matches!(ty, 8 | 13 | 15 | 17) {
                    p.state = CtState::Invalid;
                }
            }
            Self::UdpReply { src, sport, tport } => {
                p.proto = 17;
                p.src = Some(src.into());
                p.sport = PortRange::single(sport);
                p.dport = PortRange::single(tport);
                p.state = CtState::Established;
            }
        }
        p
    }
}

/// The ports worth probing for a ruleset: every number in its text, its neighbours and
/// some common ones.
fn ports_of(text: &str) -> Vec<u16> {
    let mut set = BTreeSet::new();
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

fn probes(text: &str, budget: usize) -> Vec<Probe> {
    let ports = ports_of(text);
    let mut out = Vec::new();
    let mut sport = 20000u16;
    let mut next_sport = || {
        sport += 1;
        sport
    };
    // Spread the budget over the ports, rotating sources and protocols.
    let stride = (ports.len() * 2 / budget.max(1)).max(1);
    for (i, &p) in ports.iter().enumerate().step_by(stride) {
        let src = SOURCES[i % SOURCES.len()];
        out.push(Probe::Tcp { flags: 0x02, src, sport: next_sport(), dport: p });
        out.push(Probe::Udp {
            src: SOURCES[(i + 1) % SOURCES.len()],
            sport: next_sport(),
            dport: p,
        });
    }
    for (i, &(sport, dport)) in
        [(123, 123), (67, 68), (4, 22), (1000, 80), (53, 40001)].iter().enumerate()
    {
        let src = SOURCES[i % SOURCES.len()];
        out.push(Probe::Tcp { flags: 0x02, src, sport, dport });
        out.push(Probe::Udp { src, sport, dport });
    }
    for (i, &dport) in [22u16, 80, 443, 3306, 8080].iter().enumerate() {
        out.push(Probe::Tcp {
            flags: 0x10,
            src: SOURCES[i % SOURCES.len()],
            sport: next_sport(),
            dport,
        });
    }
    for (i, &(ty, code)) in [(8, 0), (13, 0), (0, 0), (8, 0), (13, 0)].iter().enumerate() {
        out.push(Probe::Icmp { src: SOURCES[i % SOURCES.len()], ty, code });
    }
    for (i, src) in SOURCES.iter().enumerate() {
        let i = u16::try_from(i).expect("small");
        out.push(Probe::UdpReply { src: *src, sport: 5300 + i, tport: 33000 + i });
    }
    out
}

/// Loads `text` into a fresh target and checks every probe. Returns (cases, mismatches).
fn check_fixture(name: &str, text: &str, budget: usize) -> (usize, Vec<String>) {
    let rs = portcullis_syntax::parse_save(text).expect("fixture parses");
    let compiled = Compiled::new(&rs).expect("fixture compiles");
    let target = Netns::create("evalk").expect("target namespace");
    let scanner = Netns::create("evalk").expect("scanner namespace");
    link(&target, &scanner, 0).expect("link");
    for s in &SOURCES[1..] {
        scanner.run("ip", &["addr", "add", &format!("{s}/24"), "dev", "pcl0"]).expect("address");
    }
    // The scanner's kernel must not answer the target's replies (RST for SYN/ACK, port
    // unreachable for UDP): those would count in the target's INPUT too.
    scanner
        .run("iptables", &["-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"])
        .expect("scanner rule");
    scanner
        .run(
            "iptables",
            &["-A", "OUTPUT", "-p", "icmp", "--icmp-type", "destination-unreachable", "-j", "DROP"],
        )
        .expect("scanner rule");
    let mut restore = target
        .command("iptables-restore")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iptables-restore runs");
    restore.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write rules");
    let out = restore.wait_with_output().expect("iptables-restore ends");
    assert!(
        out.status.success(),
        "{name}: iptables-restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let input_side = reachable(
        &rs,
        &[
            (TableName::Raw, "PREROUTING"),
            (TableName::Mangle, "PREROUTING"),
            (TableName::Nat, "PREROUTING"),
            (TableName::Mangle, "INPUT"),
            (TableName::Filter, "INPUT"),
            (TableName::Security, "INPUT"),
            (TableName::Nat, "INPUT"),
        ],
    );
    let output_side = reachable(
        &rs,
        &[
            (TableName::Raw, "OUTPUT"),
            (TableName::Mangle, "OUTPUT"),
            (TableName::Nat, "OUTPUT"),
            (TableName::Filter, "OUTPUT"),
            (TableName::Security, "OUTPUT"),
            (TableName::Mangle, "POSTROUTING"),
            (TableName::Nat, "POSTROUTING"),
        ],
    );
    let compared = |k: &Key| {
        let c = (k.0, k.1.clone());
        input_side.contains(&c) && !output_side.contains(&c)
    };

    let host = Host { local: vec![IpAddr::V4(TARGET), IpAddr::V4(Ipv4Addr::LOCALHOST)] };
    let mut from_scanner = Helper::spawn(&scanner);
    let mut from_target = Helper::spawn(&target);
    let mut before = snapshot(&target);
    let mut mismatches = Vec::new();
    let cases = probes(text, budget);
    for probe in &cases {
        match probe {
            Probe::Tcp { flags, src, sport, dport } => {
                from_scanner.send(&format!("tcp {flags} {src} {sport} {TARGET} {dport}"));
            }
            Probe::Udp { src, sport, dport } => {
                from_scanner.send(&format!("udp {src} {sport} {TARGET} {dport}"));
            }
            Probe::Icmp { src, ty, code } => {
                from_scanner.send(&format!("icmp {src} {TARGET} {ty} {code}"));
            }
            Probe::UdpReply { src, sport, tport } => {
                from_target.send(&format!("udp {TARGET} {tport} {src} {sport}"));
                before = snapshot(&target);
                from_scanner.send(&format!("udp {src} {sport} {TARGET} {tport}"));
            }
        }
        let after = snapshot(&target);
        let counted: BTreeSet<Key> = delta(&before, &after).into_iter().filter(compared).collect();
        before = after;
        let t = trace_compiled(&compiled, Hook::Input, &probe.packet(), &host).expect("trace");
        let agrees = t.outcomes.iter().any(|o| {
            let mut expect = BTreeSet::new();
            let mut unsure = BTreeSet::new();
            for s in &o.path {
                let key = (s.table, s.chain.clone(), s.index);
                match s.kind {
                    StepKind::Matched | StepKind::MayMatch | StepKind::Policy => {
                        expect.insert(key);
                    }
                    StepKind::MayMatchNoEffect => {
                        unsure.insert(key);
                    }
                    _ => {}
                }
            }
            let expect: BTreeSet<Key> = expect.into_iter().filter(compared).collect();
            let got: BTreeSet<Key> = counted.difference(&unsure).cloned().collect();
            expect == got
        });
        if !agrees {
            let first = t.outcomes.first().map(|o| {
                o.path
                    .iter()
                    .filter(|s| s.kind != StepKind::NotMatched)
                    .map(|s| format!("{}/{}/{:?}:{:?}", s.table.as_str(), s.chain, s.index, s.kind))
                    .collect::<Vec<_>>()
            });
            mismatches.push(format!(
                "{name}: {probe:?}: kernel counted {counted:?}, trace ({} outcomes) says {first:?}",
                t.outcomes.len()
            ));
        }
    }
    (cases.len(), mismatches)
}

fn fixtures() -> Vec<(String, String)> {
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
            // IPv4 fixtures only: the rig sends IPv4.
            if text.lines().any(|l| l.contains("-6 ") || l.contains("::")) {
                continue;
            }
            out.push((f.file_name().expect("name").to_string_lossy().into_owned(), text));
        }
    }
    out
}

#[test]
fn trace_agrees_with_kernel_counters() {
    if !portcullis_netns::can_run_or_skip(
        "trace_agrees_with_kernel_counters",
        &["iptables-restore", "iptables-save"],
    ) {
        return;
    }
    let mut total = 0;
    let mut bad = Vec::new();
    for (name, text) in fixtures() {
        let (n, mism) = check_fixture(&name, &text, 120);
        eprintln!("{name}: {n} cases, {} mismatches", mism.len());
        total += n;
        bad.extend(mism);
    }
    eprintln!("{total} cases compared with the kernel");
    assert!(total >= 500, "only {total} cases");
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}
