//! The engine against a simulated target (in-memory network, simulated clock), including
//! the target's ICMP rate limiter. These are the rig's expectations without sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use portcullis_scan::engine::{Engine, EngineConfig, Probe, Target};
use portcullis_scan::ports::top_ports;
use portcullis_scan::state::{Protocol, ScanType};
use portcullis_scan::testing::{Behavior, SimTarget, run_simulated, summary};
use portcullis_scan::timing::Timing;

/// The rig's target seen from the scanner.
const TARGET: &str = "198.18.0.2";

fn engine(scan_type: ScanType, ports: Vec<u16>, seed: u64) -> Engine {
    engine_timed(scan_type, ports, Timing::template(3), seed)
}

fn engine_timed(scan_type: ScanType, ports: Vec<u16>, timing: Timing, seed: u64) -> Engine {
    let cfg = EngineConfig {
        scan_type,
        targets: vec![Target { addr: TARGET.parse().unwrap(), src: "198.18.0.1".parse().unwrap() }],
        ports,
        timing,
        seed,
    };
    Engine::new(cfg).unwrap()
}

/// The probes of pass 1, all sent at the scan's start.
fn first_pass(e: &mut Engine) -> Vec<Probe> {
    std::iter::from_fn(|| e.poll_transmit(Duration::ZERO)).collect()
}

const SYN_EXPECT: &str = "22/tcp open syn-ack\n25/tcp closed reset\n80/tcp open syn-ack\n110/tcp filtered port-unreach\n113/tcp filtered admin-prohibited\n443/tcp closed reset\n94 filtered no-response\n";

#[test]
fn syn_fast_scan_full_and_drained_bucket() {
    for seed in 0..20 {
        for drained in [false, true] {
            let mut t = SimTarget::rig(false);
            if drained {
                t.drain_icmp();
            }
            let (r, took) =
                run_simulated(engine(ScanType::Syn, top_ports(Protocol::Tcp, 100), seed), &mut t);
            assert_eq!(summary(&r), SYN_EXPECT, "seed {seed} drained {drained}");
            assert!(took < Duration::from_secs(5), "{took:?}");
            if !drained {
                // One probe per port, a second for the silent ones in the delayed pass.
                assert_eq!(r.passes, 2);
                assert_eq!(r.probes_sent, 100 + 94);
            }
        }
    }
}

#[test]
fn syn_all_ports() {
    let mut t = SimTarget::rig(false);
    t.drain_icmp();
    let (r, _) = run_simulated(engine(ScanType::Syn, (1..=65535).collect(), 7), &mut t);
    // Passes after the first delayed one skip the ports proven silent: fewer than three
    // probes per silent port although the drained bucket needs three passes.
    assert!(r.passes >= 3, "{}", r.passes);
    assert!(r.probes_sent < 65_535 + 2 * 65_529, "{}", r.probes_sent);
    assert_eq!(summary(&r), SYN_EXPECT.replace("94 filtered", "65529 filtered"),);
}

#[test]
fn udp_fast_scan_drained_bucket() {
    for seed in 0..20 {
        let mut t = SimTarget::rig(true);
        t.drain_icmp();
        let (r, _) =
            run_simulated(engine(ScanType::Udp, top_ports(Protocol::Udp, 100), seed), &mut t);
        assert_eq!(
            summary(&r),
            "53/udp open udp-response\n123/udp closed port-unreach\n137/udp filtered admin-prohibited\n161/udp closed port-unreach\n96 open|filtered no-response\n",
            "seed {seed}"
        );
    }
}

#[test]
fn ack_scan() {
    let mut t = SimTarget::rig(false);
    let (r, _) = run_simulated(engine(ScanType::Ack, top_ports(Protocol::Tcp, 100), 3), &mut t);
    assert_eq!(
        summary(&r),
        "22/tcp unfiltered reset\n25/tcp unfiltered reset\n80/tcp unfiltered reset\n110/tcp filtered port-unreach\n113/tcp filtered admin-prohibited\n443/tcp unfiltered reset\n94 filtered no-response\n"
    );
}

#[test]
fn silent_ports_get_two_probes() {
    let mut t = SimTarget::new("198.18.0.2".parse().unwrap(), HashMap::new(), Behavior::Drop);
    let (r, took) = run_simulated(engine(ScanType::Syn, (1..=100).collect(), 1), &mut t);
    assert_eq!(r.probes_sent, 200);
    assert_eq!(r.passes, 2);
    // Pass 2 starts one second after the first probe; T3's first timeout is 1 s.
    assert!(took >= Duration::from_secs(2), "{took:?}");
}

#[test]
fn refill_pass_off_sends_two_probes() {
    let mut t = SimTarget::new("198.18.0.2".parse().unwrap(), HashMap::new(), Behavior::Drop);
    let cfg = EngineConfig {
        scan_type: ScanType::Syn,
        targets: vec![Target { addr: t.addr, src: "198.18.0.1".parse().unwrap() }],
        ports: (1..=100).collect(),
        timing: Timing { icmp_refill_pass: false, ..Timing::template(4) },
        seed: 2,
    };
    let (r, _) = run_simulated(Engine::new(cfg).unwrap(), &mut t);
    assert_eq!(r.probes_sent, 200);
    assert_eq!(r.passes, 2);
}

#[test]
fn ipv6_syn_scan() {
    let addr: IpAddr = "2001:db8::2".parse().unwrap();
    let mut t = SimTarget::new(
        addr,
        [
            (22, Behavior::Open),
            (23, Behavior::Closed),
            (24, Behavior::Reject(1, 1)),
            (25, Behavior::Reject(1, 4)),
        ]
        .into(),
        Behavior::Drop,
    );
    let cfg = EngineConfig {
        scan_type: ScanType::Syn,
        targets: vec![Target { addr, src: "2001:db8::1".parse().unwrap() }],
        ports: (20..=26).collect(),
        timing: Timing::template(4),
        seed: 9,
    };
    let (r, _) = run_simulated(Engine::new(cfg).unwrap(), &mut t);
    assert_eq!(
        summary(&r),
        "22/tcp open syn-ack\n23/tcp closed reset\n24/tcp filtered admin-prohibited\n25/tcp filtered port-unreach\n3 filtered no-response\n"
    );
}

/// A lossy network: each pass that still draws new answers earns another pass, up to
/// `--max-retries`.
#[test]
fn lost_probes_are_retried_in_later_passes() {
    let mut t = SimTarget::rig(false);
    t.drop_first_probes = 3;
    let cfg = EngineConfig {
        scan_type: ScanType::Syn,
        targets: vec![Target { addr: t.addr, src: "198.18.0.1".parse().unwrap() }],
        ports: vec![22, 80, 443],
        timing: Timing::template(4),
        seed: 4,
    };
    let (r, _) = run_simulated(Engine::new(cfg).unwrap(), &mut t);
    assert_eq!(
        summary(&r),
        "22/tcp open syn-ack\n80/tcp open syn-ack\n443/tcp closed reset\n0 filtered no-response\n"
    );
    let cfg = EngineConfig {
        scan_type: ScanType::Syn,
        targets: vec![Target { addr: t.addr, src: "198.18.0.1".parse().unwrap() }],
        ports: vec![22, 80, 443],
        timing: Timing { max_retries: 0, ..Timing::template(4) },
        seed: 4,
    };
    let mut t = SimTarget::rig(false);
    t.drop_first_probes = 3;
    let (r, _) = run_simulated(Engine::new(cfg).unwrap(), &mut t);
    assert_eq!(r.probes_sent, 3, "--max-retries 0 sends one probe per port");
}

/// The connect scan's outcomes: an ICMP error read from the error queue keeps its reason
/// (filtered), ECONNREFUSED alone is a RST (closed), errno-only failures map like nmap's.
#[test]
fn connect_outcomes() {
    use portcullis_scan::engine::ConnectOutcome;
    use portcullis_scan::state::{IcmpKind, Reason};
    let target: IpAddr = TARGET.parse().unwrap();
    let ports = vec![22, 25, 110, 113, 9999, 10000];
    let mut e = engine_timed(ScanType::Connect, ports, Timing::template(4), 6);
    let now = Duration::from_millis(1);
    for p in &first_pass(&mut e) {
        let icmp = |icmp_type, code| ConnectOutcome::Icmp {
            kind: IcmpKind { v6: false, icmp_type, code },
            from: target,
        };
        let outcome = match p.dst_port {
            22 => ConnectOutcome::Connected,
            25 => ConnectOutcome::Refused,
            110 => icmp(3, 3),
            113 => icmp(3, 13),
            9999 => ConnectOutcome::Failed(Reason::HostUnreach),
            _ => ConnectOutcome::TimedOut,
        };
        e.handle_connect(now, p, outcome);
    }
    let mut t = now;
    while let Some(next) = e.poll_timeout(t) {
        t = next.max(t + Duration::from_micros(1));
        while e.poll_transmit(t).is_some() {}
    }
    assert_eq!(
        summary(&e.finish()),
        "22/tcp open syn-ack\n25/tcp closed conn-refused\n110/tcp filtered port-unreach\n113/tcp filtered admin-prohibited\n9999/tcp filtered host-unreach\n1 filtered no-response\n"
    );
}

/// The connect transport keeps a timed-out socket open a while (`connect::LINGER`) and
/// reports what it gets then as a late answer to that earlier try: the kernel's own SYN
/// retransmission, one second after `connect()`, may be what draws the target's ICMP
/// error. The engine takes it after the try timed out, and the port ends filtered with
/// its reason, not silent.
#[test]
fn connect_late_answer_to_a_timed_out_try() {
    use portcullis_scan::engine::ConnectOutcome;
    use portcullis_scan::state::IcmpKind;
    let target: IpAddr = TARGET.parse().unwrap();
    let mut e = engine(ScanType::Connect, vec![22, 110, 9999], 3);
    let first = first_pass(&mut e);
    assert_eq!(first.len(), 3);
    let late_110 = *first.iter().find(|p| p.dst_port == 110).unwrap();
    let mut t = Duration::from_millis(1);
    for p in &first {
        let o = if p.dst_port == 22 { ConnectOutcome::Connected } else { ConnectOutcome::TimedOut };
        let at = if p.dst_port == 22 { t } else { p.timeout };
        e.handle_connect(at, p, o);
    }
    let mut late = Some(late_110);
    let mut retries = 0;
    while let Some(next) = e.poll_timeout(t) {
        t = next.max(t + Duration::from_micros(1));
        // The lingering socket's answer, just after its try timed out.
        if let Some(p) = late.take_if(|p| t > p.timeout) {
            let kind = IcmpKind { v6: false, icmp_type: 3, code: 3 };
            e.handle_connect(t, &p, ConnectOutcome::Icmp { kind, from: target });
        }
        while let Some(p) = e.poll_transmit(t) {
            assert!(p.tryno >= 1);
            retries += 1;
            e.handle_connect(t + p.timeout, &p, ConnectOutcome::TimedOut);
        }
    }
    assert!(late.is_none());
    assert!(retries >= 1, "the silent port is probed again");
    assert_eq!(
        summary(&e.finish()),
        "22/tcp open syn-ack\n110/tcp filtered port-unreach\n1 filtered no-response\n"
    );
}

/// Regression (issue 8, hostile replies): an ICMP port-unreachable quoting our UDP probe
/// with its destination port changed to another probed port (same source port, this
/// probe's length and checksum) marked that other port `closed`. The quoted UDP length
/// and checksum must be those of the named port's own probe.
#[test]
fn icmp_quoting_another_udp_port_is_ignored() {
    use portcullis_scan::testing::icmp_for;
    use portcullis_scan::wire::proto;
    let (target, us): (IpAddr, IpAddr) =
        ("198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap());
    let mut e = engine(ScanType::Udp, vec![7, 53], 1);
    let probes = first_pass(&mut e);
    let p = probes.iter().find(|p| p.dst_port == 53).expect("a probe to 53");
    let mut seg = [0u8; 512];
    let n = p.emit(&mut seg).expect("a datagram");
    let mut forged = seg[..n].to_vec();
    forged[2..4].copy_from_slice(&7u16.to_be_bytes());
    e.handle_packet(
        Duration::from_millis(1),
        &icmp_for(&forged, proto::UDP, target, us, target, 3, 3),
    );
    let mut now = Duration::from_millis(1);
    while let Some(next) = e.poll_timeout(now) {
        now = next.max(now + Duration::from_micros(1));
        while e.poll_transmit(now).is_some() {}
    }
    assert_eq!(summary(&e.finish()), "2 open|filtered no-response\n");
}

/// Regression (issue 8, answers after their deadline): a target whose RTT exceeds the
/// initial timeout (1 s at `-T3`, 500 ms at `-T4`) answered every probe after it timed
/// out, the engine took no RTT sample from those late answers (though the source port
/// names their try), its timeout never grew, and the last pass's answers came after the
/// scan ended: ICMP reasons lost, or every port `filtered`. Late answers to a known try
/// are RTT samples, as in nmap, so the timeout grows to the path's RTT (up to the
/// template's maximum). An RTT longer than two initial timeouts stays indistinguishable
/// from silence: no answer arrives before the second pass times out.
#[test]
fn answers_slower_than_the_initial_timeout_count() {
    let udp_expect = "53/udp open udp-response\n123/udp closed port-unreach\n137/udp filtered admin-prohibited\n161/udp closed port-unreach\n96 open|filtered no-response\n";
    for (template, rtt_ms) in [(3u8, 1500u64), (3, 2000), (4, 800), (4, 1000)] {
        for udp in [false, true] {
            for drained in [false, true] {
                let mut t = SimTarget::rig(udp);
                t.delay = Duration::from_millis(rtt_ms / 2);
                if drained {
                    t.drain_icmp();
                }
                let st = if udp { ScanType::Udp } else { ScanType::Syn };
                let cfg = EngineConfig {
                    scan_type: st,
                    targets: vec![Target { addr: t.addr, src: "198.18.0.1".parse().unwrap() }],
                    ports: top_ports(st.protocol(), 100),
                    timing: Timing::template(template),
                    seed: 3,
                };
                let (r, _) = run_simulated(Engine::new(cfg).unwrap(), &mut t);
                let expect = if udp { udp_expect } else { SYN_EXPECT };
                assert_eq!(
                    summary(&r),
                    expect,
                    "-T{template}, RTT {rtt_ms} ms, udp {udp}, drained {drained}"
                );
            }
        }
    }
}

#[test]
fn common_ports_go_first_in_a_long_first_pass() {
    let ports: Vec<u16> = (1..=5000).collect();
    let mut e = engine(ScanType::Syn, ports.clone(), 11);
    let common: std::collections::HashSet<u16> =
        top_ports(Protocol::Tcp, portcullis_scan::engine::COMMON_PORTS)
            .into_iter()
            .filter(|p| ports.contains(p))
            .collect();
    let mut order = Vec::new();
    while let Some(p) = e.poll_transmit(Duration::ZERO) {
        order.push(p.dst_port);
    }
    assert_eq!(order.len(), 5000, "pass 1 probes every port once");
    let (head, tail) = order.split_at(common.len());
    assert!(head.iter().all(|p| common.contains(p)), "common ports first");
    assert!(tail.iter().all(|p| !common.contains(p)));
    // Still shuffled within each group.
    assert!(head.windows(2).any(|w| w[0] > w[1]));
    assert!(tail.windows(2).any(|w| w[0] > w[1]));
    // A short port list keeps one random sweep.
    let mut e = engine(ScanType::Syn, (1..=1000).collect(), 11);
    let mut n = 0;
    while e.poll_transmit(Duration::ZERO).is_some() {
        n += 1;
    }
    assert_eq!(n, 1000);
}
