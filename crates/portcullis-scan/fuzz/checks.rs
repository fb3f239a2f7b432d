//! The reply classifier check (`Engine::handle_packet` and the `wire` parsers under it)
//! on arbitrary bytes, shared by the fuzz target and `tests/fuzz_regressions.rs`.
//!
//! Input: byte 0 picks the scan type; byte 1 bit 0 picks raw mode (the rest is the
//! packet) or patch mode (bits 1.. pick a valid reply to one of the engine's probes, the
//! next byte truncates it, then `(offset, xor)` pairs patch it), so the fuzzer reaches
//! the checks behind the cookie and source-port lookups. The packet is fed twice (a
//! duplicate), then the engine is driven to its end: it must finish with one state per
//! port and host.

use std::net::IpAddr;
use std::time::Duration;

use portcullis_scan::engine::{Engine, EngineConfig, Probe, Target};
use portcullis_scan::state::ScanType;
use portcullis_scan::testing::{icmp_for, rst_for, synack_for, udp_reply_for};
use portcullis_scan::timing::Timing;
use portcullis_scan::wire::{IcmpError, IpPacket, QuotedPorts, TcpHeader, proto};

const PORTS: [u16; 3] = [22, 53, 443];
const SCAN_TYPES: [ScanType; 4] = [ScanType::Syn, ScanType::Ack, ScanType::Udp, ScanType::Connect];

fn addr(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

fn engine(scan_type: ScanType) -> (Engine, Vec<Probe>) {
    let cfg = EngineConfig {
        scan_type,
        targets: vec![
            Target { addr: addr("198.18.0.2"), src: addr("198.18.0.1") },
            Target { addr: addr("2001:2::2"), src: addr("2001:2::1") },
        ],
        ports: PORTS.to_vec(),
        timing: Timing::template(5),
        seed: 11,
    };
    let mut e = Engine::new(cfg).expect("a valid configuration");
    let mut probes = Vec::new();
    while let Some(p) = e.poll_transmit(Duration::ZERO) {
        probes.push(p);
    }
    (e, probes)
}

/// Valid answers to the first probe of each host: what a target or a router would send.
fn replies(scan_type: ScanType, probes: &[Probe]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    let mut seen = Vec::new();
    for p in probes {
        if seen.contains(&p.dst) {
            continue;
        }
        seen.push(p.dst);
        let Some(n) = p.emit(&mut buf) else { continue };
        let seg = &buf[..n];
        let (t, us) = (p.dst, p.src);
        let router = if t.is_ipv4() { addr("198.18.0.9") } else { addr("2001:2::9") };
        let (unreach, port_code, admin_code) = if t.is_ipv4() { (3, 3, 13) } else { (1, 4, 1) };
        let protocol = if scan_type == ScanType::Udp { proto::UDP } else { proto::TCP };
        if scan_type == ScanType::Udp {
            out.push(udp_reply_for(seg, t, us));
        } else {
            out.push(synack_for(seg, t, us));
            out.push(rst_for(seg, t, us));
        }
        out.push(icmp_for(seg, protocol, t, us, t, unreach, port_code));
        out.push(icmp_for(seg, protocol, t, us, router, unreach, admin_code));
    }
    out
}

/// Feeds `data` (see the module doc) to a fresh engine and drives it to its end.
pub(crate) fn classify_reply(data: &[u8]) {
    let [kind, sel, rest @ ..] = data else { return };
    let _ = IpPacket::new_checked(rest);
    let _ = IpPacket::new_quoted(rest);
    let _ = TcpHeader::new_checked(rest);
    let _ = QuotedPorts::new_checked(rest);
    let _ = IcmpError::new_checked_v4(rest);
    let _ = IcmpError::new_checked_v6(rest);

    let scan_type = SCAN_TYPES[usize::from(*kind) % SCAN_TYPES.len()];
    let (mut e, probes) = engine(scan_type);
    let all = replies(scan_type, &probes);
    let packet = if sel & 1 == 0 || all.is_empty() {
        // Raw mode; a connect scan emits no packets, so it has no replies to patch.
        rest.to_vec()
    } else {
        let mut p = all[usize::from(sel >> 1) % all.len()].clone();
        let (cut, patches) = rest.split_first().map_or((0, &[][..]), |(c, r)| (*c, r));
        if cut != 0 {
            p.truncate(usize::from(cut));
        }
        for pair in patches.chunks_exact(2) {
            if !p.is_empty() {
                let at = usize::from(pair[0]) % p.len();
                p[at] ^= pair[1];
            }
        }
        p
    };
    let now = Duration::from_millis(1);
    e.handle_packet(now, &packet);
    e.handle_packet(now, &packet);
    let progress = e.progress();
    assert!(progress.answered <= progress.total);

    let mut now = now;
    for _ in 0..100_000 {
        while e.poll_transmit(now).is_some() {}
        match e.poll_timeout(now) {
            None => {
                let r = e.finish();
                assert_eq!(r.hosts.len(), 2);
                for h in &r.hosts {
                    assert_eq!(h.ports.len(), PORTS.len());
                }
                return;
            }
            Some(t) => now = t.max(now + Duration::from_micros(1)),
        }
        assert!(now < Duration::from_secs(3600), "the engine does not finish");
    }
    panic!("the engine loops without finishing");
}
