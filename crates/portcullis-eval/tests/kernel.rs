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

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use common::{Helper, Net, Rig, fixtures, ports_of};

use portcullis_eval::Compiled;
use portcullis_eval::{CtState, Hook, Host, Packet, StepKind, trace_compiled};
use portcullis_netns::Netns;
use portcullis_rules::view::{PortRange, TcpFlags};
use portcullis_rules::{Family, Ruleset, TableName};

/// Not a test: the packet sender that the tests start inside a namespace. Without the
/// environment variable it returns at once.
#[test]
fn sender_helper() {
    common::helper_main();
}

// ---------------------------------------------------------------------------------------
// Counters.

/// (table, chain, rule index or None for the policy).
type Key = (TableName, String, Option<usize>);

fn snapshot(ns: &Netns, net: &Net) -> HashMap<Key, u64> {
    let save = format!("{}-save", net.iptables());
    let text = ns.run(&save, &["-c"]).expect("iptables-save -c");
    let rs =
        portcullis_syntax::parse_save_as(&text, net.family).expect("iptables-save output parses");
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

#[derive(Debug, Clone)]
enum Probe {
    Tcp {
        flags: u8,
        src: IpAddr,
        sport: u16,
        dport: u16,
    },
    Udp {
        src: IpAddr,
        sport: u16,
        dport: u16,
    },
    Icmp {
        src: IpAddr,
        ty: u8,
        code: u8,
    },
    /// The target sends UDP from `tport` to the source's `sport` first; the source's
    /// answer is ESTABLISHED.
    UdpReply {
        src: IpAddr,
        sport: u16,
        tport: u16,
    },
}

impl Probe {
    fn packet(&self, net: &Net) -> Packet {
        let mut p = Packet::new(net.family, 0);
        p.dst = Some(net.target);
        p.in_iface = Some("pcl0".into());
        match *self {
            Self::Tcp { flags, src, sport, dport } => {
                p.proto = 6;
                p.src = Some(src);
                p.sport = PortRange::single(sport);
                p.dport = PortRange::single(dport);
                p.tcp_flags = TcpFlags(flags);
            }
            Self::Udp { src, sport, dport } => {
                p.proto = 17;
                p.src = Some(src);
                p.sport = PortRange::single(sport);
                p.dport = PortRange::single(dport);
            }
            Self::Icmp { src, ty, code } => {
                p.proto = if net.family == Family::V4 { 1 } else { 58 };
                p.src = Some(src);
                p.icmp = Some((ty, code));
                // conntrack starts connections only for queries; a lone reply is INVALID.
                let query = match net.family {
                    Family::V4 => matches!(ty, 8 | 13 | 15 | 17),
                    Family::V6 => matches!(ty, 128 | 139),
                };
                if !query {
                    p.state = CtState::Invalid;
                }
            }
            Self::UdpReply { src, sport, tport } => {
                p.proto = 17;
                p.src = Some(src);
                p.sport = PortRange::single(sport);
                p.dport = PortRange::single(tport);
                p.state = CtState::Established;
            }
        }
        p
    }
}

fn probes(text: &str, budget: usize, net: &Net) -> Vec<Probe> {
    let sources = &net.sources;
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
        let src = sources[i % sources.len()];
        out.push(Probe::Tcp { flags: 0x02, src, sport: next_sport(), dport: p });
        out.push(Probe::Udp {
            src: sources[(i + 1) % sources.len()],
            sport: next_sport(),
            dport: p,
        });
    }
    for (i, &(sport, dport)) in
        [(123, 123), (67, 68), (4, 22), (1000, 80), (53, 40001)].iter().enumerate()
    {
        let src = sources[i % sources.len()];
        out.push(Probe::Tcp { flags: 0x02, src, sport, dport });
        out.push(Probe::Udp { src, sport, dport });
    }
    for (i, &dport) in [22u16, 80, 443, 3306, 8080].iter().enumerate() {
        out.push(Probe::Tcp {
            flags: 0x10,
            src: sources[i % sources.len()],
            sport: next_sport(),
            dport,
        });
    }
    for (i, &(ty, code)) in icmp_cases(net).iter().enumerate() {
        out.push(Probe::Icmp { src: sources[i % sources.len()], ty, code });
    }
    for (i, src) in sources.iter().enumerate() {
        let i = u16::try_from(i).expect("small");
        out.push(Probe::UdpReply { src: *src, sport: 5300 + i, tport: 33000 + i });
    }
    out
}

fn icmp_cases(net: &Net) -> Vec<(u8, u8)> {
    match net.family {
        Family::V4 => vec![(8, 0), (13, 0), (0, 0), (8, 0), (13, 0)],
        // One echo request per source: a second one with the same identifier would be
        // ESTABLISHED once the first was answered.
        Family::V6 => vec![(128, 0), (129, 0), (128, 0), (129, 0)],
    }
}

/// Loads `text` into a fresh target and checks every probe. Returns (cases, mismatches).
fn check_fixture(name: &str, text: &str, family: Family, budget: usize) -> (usize, Vec<String>) {
    let net = Net::of(family);
    let rs = portcullis_syntax::parse_save_as(text, family).expect("fixture parses");
    let compiled = Compiled::new(&rs).expect("fixture compiles");
    let rig = Rig::with_family("evalk", text, family);
    let (target, scanner) = (&rig.target, &rig.scanner);
    // The scanner's kernel must not answer the target's replies (RST for SYN/ACK, port
    // unreachable for UDP): those would count in the target's INPUT too.
    let ipt = net.iptables();
    let icmp = if family == Family::V4 { "icmp" } else { "ipv6-icmp" };
    let icmp_type = if family == Family::V4 { "--icmp-type" } else { "--icmpv6-type" };
    scanner
        .run(ipt, &["-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"])
        .expect("scanner rule");
    scanner
        .run(ipt, &["-A", "OUTPUT", "-p", icmp, icmp_type, "destination-unreachable", "-j", "DROP"])
        .expect("scanner rule");

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

    let host = Host { local: vec![net.target, net.loopback()] };
    let target_ip = net.target;
    let mut from_scanner = Helper::spawn(scanner);
    let mut from_target = Helper::spawn(target);
    let mut before = snapshot(target, &net);
    let mut mismatches = Vec::new();
    let cases = probes(text, budget, &net);
    for probe in &cases {
        match probe {
            Probe::Tcp { flags, src, sport, dport } => {
                from_scanner.send(&format!("tcp {flags} {src} {sport} {target_ip} {dport}"));
            }
            Probe::Udp { src, sport, dport } => {
                from_scanner.send(&format!("udp {src} {sport} {target_ip} {dport}"));
            }
            Probe::Icmp { src, ty, code } => {
                from_scanner.send(&format!("icmp {src} {target_ip} {ty} {code}"));
            }
            Probe::UdpReply { src, sport, tport } => {
                from_target.send(&format!("udp {target_ip} {tport} {src} {sport}"));
                before = snapshot(target, &net);
                from_scanner.send(&format!("udp {src} {sport} {target_ip} {tport}"));
            }
        }
        let after = snapshot(target, &net);
        let counted: BTreeSet<Key> = delta(&before, &after).into_iter().filter(compared).collect();
        before = after;
        let t = trace_compiled(&compiled, Hook::Input, &probe.packet(&net), &host).expect("trace");
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

#[test]
fn trace_agrees_with_kernel_counters() {
    if !portcullis_netns::can_run_or_skip(
        "trace_agrees_with_kernel_counters",
        &["iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save", "sysctl"],
    ) {
        return;
    }
    let mut total = 0;
    let mut bad = Vec::new();
    for (name, text, family) in fixtures() {
        let (n, mism) = check_fixture(&name, &text, family, 120);
        eprintln!("{name}: {n} cases, {} mismatches", mism.len());
        total += n;
        bad.extend(mism);
    }
    eprintln!("{total} cases compared with the kernel");
    assert!(total >= 500, "only {total} cases");
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}
