//! An in-memory network for testing the engine: reply builders and a simulated target with
//! a firewall and Linux's ICMP rate limiter (token bucket, 1 s per message, burst 6).
//!
//! Public so that doc examples, integration tests and benches can use it; not meant for
//! production use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::engine::{Engine, Probe, ScanReport};
use crate::wire::{QuotedPorts, TcpHeader, emit_udp, proto, tcp_flags, transport_checksum};

/// Wraps a transport `payload` into an IPv4 or IPv6 header (TTL/hop limit 64).
pub fn ip_packet(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload.len()) as u16;
            let mut v = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
            v[2..4].copy_from_slice(&total.to_be_bytes());
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(payload);
            v
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut v = vec![0x60, 0, 0, 0];
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            v.extend_from_slice(&[protocol, 64]);
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(payload);
            v
        }
        _ => Vec::new(),
    }
}

fn tcp_reply(probe: &[u8], from: IpAddr, to: IpAddr, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let Ok(p) = TcpHeader::new_checked(probe) else { return Vec::new() };
    let mut seg = [0u8; 20];
    seg[0..2].copy_from_slice(&p.dst_port.to_be_bytes());
    seg[2..4].copy_from_slice(&p.src_port.to_be_bytes());
    seg[4..8].copy_from_slice(&seq.to_be_bytes());
    seg[8..12].copy_from_slice(&ack.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let sum = transport_checksum(from, to, proto::TCP, &seg).unwrap_or(0);
    seg[16..18].copy_from_slice(&sum.to_be_bytes());
    ip_packet(from, to, proto::TCP, &seg)
}

/// The SYN-ACK a listening port sends for the TCP segment `probe` (no IP header).
pub fn synack_for(probe: &[u8], target: IpAddr, us: IpAddr) -> Vec<u8> {
    let seq = TcpHeader::new_checked(probe).map_or(0, |p| p.seq);
    tcp_reply(probe, target, us, tcp_flags::SYN | tcp_flags::ACK, 0x0102_0304, seq.wrapping_add(1))
}

/// The RST a closed port sends: RST-ACK for a SYN, a bare RST with `seq = ack` for an ACK.
pub fn rst_for(probe: &[u8], target: IpAddr, us: IpAddr) -> Vec<u8> {
    let Ok(p) = TcpHeader::new_checked(probe) else { return Vec::new() };
    if p.flags & tcp_flags::SYN != 0 {
        tcp_reply(probe, target, us, tcp_flags::RST | tcp_flags::ACK, 0, p.seq.wrapping_add(1))
    } else {
        tcp_reply(probe, target, us, tcp_flags::RST, p.ack, 0)
    }
}

/// An ICMP (or ICMPv6) error from `from` quoting the probe `segment` sent `us → target`.
pub fn icmp_for(
    segment: &[u8],
    protocol: u8,
    target: IpAddr,
    us: IpAddr,
    from: IpAddr,
    icmp_type: u8,
    code: u8,
) -> Vec<u8> {
    let quoted = ip_packet(us, target, protocol, segment);
    let mut body = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
    let keep = if from.is_ipv4() { 28.min(quoted.len()) } else { quoted.len() };
    body.extend_from_slice(&quoted[..keep]);
    let icmp_proto = if from.is_ipv4() { proto::ICMP } else { proto::ICMPV6 };
    ip_packet(from, us, icmp_proto, &body)
}

/// A UDP answer to the UDP `probe` datagram.
pub fn udp_reply_for(probe: &[u8], target: IpAddr, us: IpAddr) -> Vec<u8> {
    let Ok(p) = QuotedPorts::new_checked(probe) else { return Vec::new() };
    let mut buf = [0u8; 16];
    let n = emit_udp(&mut buf, target, us, p.dst_port, p.src_port, b"ok").unwrap_or(0);
    ip_packet(target, us, proto::UDP, &buf[..n])
}

/// What a simulated port does with a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// A listener: SYN-ACK, RST to an ACK, a datagram back for UDP.
    Open,
    /// No listener: RST (TCP), ICMP port unreachable (UDP, rate-limited).
    Closed,
    /// DROP.
    Drop,
    /// REJECT with an ICMP type/code (rate-limited).
    Reject(u8, u8),
    /// REJECT --reject-with tcp-reset.
    TcpReset,
}

/// A simulated target host: per-port behaviour and the kernel's ICMP token bucket.
#[derive(Debug, Clone)]
pub struct SimTarget {
    /// The target's address.
    pub addr: IpAddr,
    /// Behaviour per port; others use `default`.
    pub ports: HashMap<u16, Behavior>,
    /// Behaviour of unlisted ports.
    pub default: Behavior,
    /// One-way delay (a reply arrives after twice this).
    pub delay: Duration,
    /// ICMP bucket content in milliseconds (1000 per message, at most 6000).
    pub icmp_tokens_ms: u64,
    last_refill: Duration,
    /// ICMP errors suppressed by the limiter.
    pub icmp_suppressed: u32,
    /// Probes received.
    pub probes: u64,
    /// This many of the next probes are lost on the way (a lossy network).
    pub drop_first_probes: u32,
}

impl SimTarget {
    /// A target with a full ICMP bucket.
    pub fn new(addr: IpAddr, ports: HashMap<u16, Behavior>, default: Behavior) -> Self {
        Self {
            addr,
            ports,
            default,
            delay: Duration::from_micros(50),
            icmp_tokens_ms: 6000,
            last_refill: Duration::ZERO,
            icmp_suppressed: 0,
            probes: 0,
            drop_first_probes: 0,
        }
    }

    /// The issue 3 rig's target 198.18.0.2 (docs/scanning.md §4.1): its TCP ports, or
    /// with `udp` its UDP ports; everything else DROPped; a full ICMP bucket.
    pub fn rig(udp: bool) -> Self {
        let addr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 2));
        let ports: HashMap<u16, Behavior> = if udp {
            [
                (53, Behavior::Open),
                (123, Behavior::Closed),
                (161, Behavior::Reject(3, 3)),
                (137, Behavior::Reject(3, 13)),
            ]
            .into()
        } else {
            [
                (22, Behavior::Open),
                (80, Behavior::Open),
                (443, Behavior::Closed),
                (25, Behavior::TcpReset),
                (110, Behavior::Reject(3, 3)),
                (113, Behavior::Reject(3, 13)),
            ]
            .into()
        };
        Self::new(addr, ports, Behavior::Drop)
    }

    /// Empties the ICMP bucket, as a scan right before would have.
    pub fn drain_icmp(&mut self) {
        self.icmp_tokens_ms = 0;
    }

    fn icmp_allowed(&mut self, now: Duration) -> bool {
        let elapsed = (now.saturating_sub(self.last_refill)).as_millis() as u64;
        self.icmp_tokens_ms = (self.icmp_tokens_ms + elapsed).min(6000);
        self.last_refill = now;
        if self.icmp_tokens_ms >= 1000 {
            self.icmp_tokens_ms -= 1000;
            true
        } else {
            self.icmp_suppressed += 1;
            false
        }
    }

    /// The reply (an IP packet) to a probe sent at `now`, if any.
    pub fn answer(
        &mut self,
        now: Duration,
        us: IpAddr,
        protocol: u8,
        seg: &[u8],
    ) -> Option<Vec<u8>> {
        self.probes += 1;
        if self.drop_first_probes > 0 {
            self.drop_first_probes -= 1;
            return None;
        }
        let Ok(q) = QuotedPorts::new_checked(seg) else { return None };
        let b = self.ports.get(&q.dst_port).copied().unwrap_or(self.default);
        let t = self.addr;
        let v6 = t.is_ipv6();
        let port_unreach = if v6 { (1, 4) } else { (3, 3) };
        let icmp = |s: &mut Self, (ty, code): (u8, u8)| {
            s.icmp_allowed(now).then(|| icmp_for(seg, protocol, t, us, t, ty, code))
        };
        match (b, protocol) {
            (Behavior::Drop, _) => None,
            (Behavior::Open, proto::TCP) => {
                let syn = TcpHeader::new_checked(seg).is_ok_and(|h| h.flags & tcp_flags::SYN != 0);
                Some(if syn { synack_for(seg, t, us) } else { rst_for(seg, t, us) })
            }
            (Behavior::Open, _) => Some(udp_reply_for(seg, t, us)),
            (Behavior::Closed | Behavior::TcpReset, proto::TCP) => Some(rst_for(seg, t, us)),
            (Behavior::Closed | Behavior::TcpReset, _) => icmp(self, port_unreach),
            (Behavior::Reject(ty, code), _) => icmp(self, (ty, code)),
        }
    }
}

/// Runs `engine` against `target` in simulated time until it finishes; returns the report
/// and the simulated duration. Replies are delivered after `2 * target.delay`.
pub fn run_simulated(engine: Engine, target: &mut SimTarget) -> (ScanReport, Duration) {
    run_simulated_with(engine, target, &mut |x| {
        x.reply.map(|r| (x.arrival, r)).into_iter().collect()
    })
}

/// An IP packet reaching the scanner at a simulated time.
pub type Arrival = (Duration, Vec<u8>);

/// One probe on the simulated network and the target's answer to it, handed to the
/// `network` of [`run_simulated_with`].
#[derive(Debug)]
pub struct Exchange<'a> {
    /// When the probe left.
    pub sent: Duration,
    /// The probe.
    pub probe: &'a Probe,
    /// The transport segment sent (TCP header or UDP datagram, no IP header).
    pub segment: &'a [u8],
    /// The target's answer (an IP packet), if it gave one.
    pub reply: Option<Vec<u8>>,
    /// When that answer would reach the scanner.
    pub arrival: Duration,
}

/// Like [`run_simulated`], with a `network` between the engine and the target: for each
/// probe it gets the target's answer and returns the IP packets the scanner receives
/// instead, each with its arrival time (past times arrive at once). It can drop, delay,
/// duplicate, corrupt or forge. The loop is bounded (ten million steps), so a scan that
/// never ends shows as a simulated duration, not a hang.
pub fn run_simulated_with(
    mut engine: Engine,
    target: &mut SimTarget,
    network: &mut dyn FnMut(Exchange<'_>) -> Vec<Arrival>,
) -> (ScanReport, Duration) {
    let mut now = Duration::ZERO;
    let mut in_flight: Vec<Arrival> = Vec::new();
    let mut buf = [0u8; 1500];
    let protocol = match engine.scan_type().protocol() {
        crate::state::Protocol::Tcp => proto::TCP,
        crate::state::Protocol::Udp => proto::UDP,
    };
    for _ in 0..10_000_000u64 {
        while let Some(p) = engine.poll_transmit(now) {
            if let Some(n) = p.emit(&mut buf) {
                let reply = target.answer(now + target.delay, p.src, protocol, &buf[..n]);
                let x = Exchange {
                    sent: now,
                    probe: &p,
                    segment: &buf[..n],
                    reply,
                    arrival: now + 2 * target.delay,
                };
                in_flight.extend(network(x));
            }
        }
        let Some(next) = engine.poll_timeout(now) else { break };
        let arrival = in_flight.iter().map(|(t, _)| *t).min();
        let step = arrival.map_or(next, |a| a.min(next)).max(now);
        now = if step == now { now + Duration::from_micros(1) } else { step };
        let (mut due, rest): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|(t, _)| *t <= now);
        in_flight = rest;
        // In arrival order (a stable sort keeps the network's order for equal times).
        due.sort_by_key(|(t, _)| *t);
        for (_, pkt) in due {
            engine.handle_packet(now, &pkt);
        }
    }
    (engine.finish(), now)
}

/// `"port/proto state reason"` lines for the first host's ports that are not silent,
/// then one line counting the silent ones: a compact, exact picture for tests.
pub fn summary(r: &ScanReport) -> String {
    let silent = r.scan_type.silent_state();
    let mut s = String::new();
    let mut quiet = 0;
    for p in &r.hosts[0].ports {
        if p.state == silent && p.reason.as_str() == "no-response" {
            quiet += 1;
        } else {
            s.push_str(&format!("{}/{} {} {}\n", p.port, p.protocol, p.state, p.reason));
        }
    }
    s.push_str(&format!("{quiet} {silent} no-response\n"));
    s
}
