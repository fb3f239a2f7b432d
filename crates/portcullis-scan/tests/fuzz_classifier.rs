//! Acceptance 5: no panic and no hang on malformed replies. proptest feeds the reply
//! classifier arbitrary bytes and mutated real replies (bit flips, truncations, wrong
//! lengths), then checks the engine still finishes within its deadlines.

use std::net::IpAddr;
use std::time::Duration;

use portcullis_scan::engine::{Engine, EngineConfig, Probe, Target};
use portcullis_scan::state::ScanType;
use portcullis_scan::testing::{icmp_for, rst_for, synack_for, udp_reply_for};
use portcullis_scan::timing::Timing;
use portcullis_scan::wire::{IcmpError, IpPacket, TcpHeader, proto};
use proptest::prelude::*;

const T: &str = "198.18.0.2";
const US: &str = "198.18.0.1";

fn engine(scan_type: ScanType) -> (Engine, Vec<Probe>) {
    let cfg = EngineConfig {
        scan_type,
        targets: vec![Target { addr: T.parse().unwrap(), src: US.parse().unwrap() }],
        ports: vec![22, 53, 110, 443],
        timing: Timing::template(4),
        seed: 11,
    };
    let mut e = Engine::new(cfg).unwrap();
    let mut probes = Vec::new();
    while let Some(p) = e.poll_transmit(Duration::ZERO) {
        probes.push(p);
    }
    (e, probes)
}

/// Valid replies to the engine's first probe, as seeds for mutation.
fn seeds(scan_type: ScanType, probes: &[Probe]) -> Vec<Vec<u8>> {
    let (t, us): (IpAddr, IpAddr) = (T.parse().unwrap(), US.parse().unwrap());
    let mut buf = [0u8; 256];
    let mut out = Vec::new();
    for p in probes {
        let Some(n) = p.emit(&mut buf) else { continue };
        let seg = &buf[..n];
        if scan_type == ScanType::Udp {
            out.push(udp_reply_for(seg, t, us));
            out.push(icmp_for(seg, proto::UDP, t, us, t, 3, 3));
        } else {
            out.push(synack_for(seg, t, us));
            out.push(rst_for(seg, t, us));
            out.push(icmp_for(seg, proto::TCP, t, us, t, 3, 13));
        }
    }
    out
}

/// Drives the engine to its end; a hang would exceed the bounded loop.
fn finish(mut e: Engine) {
    let mut now = Duration::from_millis(1);
    for _ in 0..100_000 {
        while e.poll_transmit(now).is_some() {}
        match e.poll_timeout(now) {
            None => {
                let r = e.finish();
                assert_eq!(r.hosts[0].ports.len(), 4);
                return;
            }
            Some(t) => now = t.max(now + Duration::from_micros(1)),
        }
        assert!(now < Duration::from_secs(3600), "engine does not finish");
    }
    panic!("engine loops without finishing");
}

fn scan_type() -> impl Strategy<Value = ScanType> {
    prop_oneof![
        Just(ScanType::Syn),
        Just(ScanType::Ack),
        Just(ScanType::Udp),
        Just(ScanType::Connect)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(st in scan_type(), pkts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..8)) {
        let (mut e, _) = engine(st);
        for p in &pkts {
            e.handle_packet(Duration::from_millis(1), p);
            if let Ok(ip) = IpPacket::new_checked(p) {
                let _ = TcpHeader::new_checked(ip.payload);
                let _ = IcmpError::new_checked_v4(ip.payload);
                let _ = IcmpError::new_checked_v6(ip.payload);
            }
            let _ = IpPacket::new_quoted(p);
        }
        finish(e);
    }

    #[test]
    fn mutated_replies_never_panic(
        st in scan_type(),
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (mut e, probes) = engine(st);
        let seeds = seeds(st, &probes);
        prop_assume!(!seeds.is_empty());
        let mut pkt = seeds[which.index(seeds.len())].clone();
        for (i, x) in flips {
            let i = i.index(pkt.len());
            pkt[i] ^= x;
        }
        if truncate {
            pkt.truncate(cut.index(pkt.len() + 1));
        }
        e.handle_packet(Duration::from_millis(1), &pkt);
        finish(e);
    }
}
