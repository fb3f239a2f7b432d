//! Predicted port states: what a SYN scan (TCP) or a UDP scan sees for every port, in
//! nmap's vocabulary, computed over whole port ranges at once.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use portcullis_rules::Family;
use portcullis_rules::view::{PortRange, RejectWith, TcpFlags};

use crate::compile::{Compiled, classify};
use crate::engine::{Outcome, Run, Verdict};
use crate::error::EvalError;
use crate::packet::{CtState, Hook, Host, Packet};

/// A transport protocol a scan probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (a SYN scan).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// nmap's port states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortState {
    /// An application answers.
    Open,
    /// Reachable, nothing listens.
    Closed,
    /// A filter keeps the probe from telling.
    Filtered,
    /// Reachable; open or closed cannot be told (ACK scan).
    Unfiltered,
    /// Silence where silence is normal for open ports (UDP).
    OpenFiltered,
    /// Closed or filtered.
    ClosedFiltered,
}

impl PortState {
    /// nmap's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Filtered => "filtered",
            Self::Unfiltered => "unfiltered",
            Self::OpenFiltered => "open|filtered",
            Self::ClosedFiltered => "closed|filtered",
        }
    }
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a port gets its state: nmap's reason strings, plus `forwarded` and `queued` for
/// the packets the ruleset hands elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// A SYN/ACK.
    SynAck,
    /// A RST.
    Reset,
    /// A UDP datagram came back.
    UdpResponse,
    /// Nothing came back.
    NoResponse,
    /// ICMP 3/0.
    NetUnreach,
    /// ICMP 3/1.
    HostUnreach,
    /// ICMP 3/2.
    ProtoUnreach,
    /// ICMP 3/3, ICMPv6 1/4.
    PortUnreach,
    /// ICMP 3/9.
    NetProhibited,
    /// ICMP 3/10.
    HostProhibited,
    /// ICMP 3/13, ICMPv6 1/1 and 1/5.
    AdminProhibited,
    /// ICMPv6 1/0.
    NoRoute,
    /// ICMPv6 1/3.
    AddrUnreach,
    /// ICMPv6 1/6.
    RejectRoute,
    /// DNAT sent the probe to another host: its answer is not in this ruleset.
    Forwarded,
    /// QUEUE/NFQUEUE or an unknown target: the answer is not in the ruleset.
    Queued,
}

impl Reason {
    /// nmap's reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SynAck => "syn-ack",
            Self::Reset => "reset",
            Self::UdpResponse => "udp-response",
            Self::NoResponse => "no-response",
            Self::NetUnreach => "net-unreach",
            Self::HostUnreach => "host-unreach",
            Self::ProtoUnreach => "proto-unreach",
            Self::PortUnreach => "port-unreach",
            Self::NetProhibited => "net-prohibited",
            Self::HostProhibited => "host-prohibited",
            Self::AdminProhibited => "admin-prohibited",
            Self::NoRoute => "no-route",
            Self::AddrUnreach => "addr-unreach",
            Self::RejectRoute => "reject-route",
            Self::Forwarded => "forwarded",
            Self::Queued => "queued",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A predicted state with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prediction {
    /// The state.
    pub state: PortState,
    /// The reason.
    pub reason: Reason,
}

/// What a scan of `proto` port(s) sees when the firewall's verdict is `v` and an
/// application does (`listening`) or does not listen. For UDP, a listener is taken to
/// answer the probe.
pub fn predict(proto: Proto, v: &Verdict, listening: bool) -> Vec<Prediction> {
    use PortState::{Closed, Filtered, Open, OpenFiltered};
    let one = |state, reason| vec![Prediction { state, reason }];
    // Where the answer is not in the ruleset, a probe may see anything (silence is
    // open|filtered for UDP).
    let anything = |reason| {
        let silent = if proto == Proto::Udp { OpenFiltered } else { Filtered };
        [Open, Closed, Filtered, silent]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|state| Prediction { state, reason })
            .collect()
    };
    match (v, proto) {
        (Verdict::Accept, Proto::Tcp) if listening => one(Open, Reason::SynAck),
        (Verdict::Accept, Proto::Tcp) => one(Closed, Reason::Reset),
        (Verdict::Accept, Proto::Udp) if listening => one(Open, Reason::UdpResponse),
        (Verdict::Accept, Proto::Udp) => one(Closed, Reason::PortUnreach),
        (Verdict::Drop, Proto::Tcp) => one(Filtered, Reason::NoResponse),
        (Verdict::Drop, Proto::Udp) => one(OpenFiltered, Reason::NoResponse),
        (Verdict::Reject(w), _) => {
            let reason = match w.0 {
                RejectWith::TcpReset => return one(Closed, Reason::Reset),
                RejectWith::IcmpNetUnreachable => Reason::NetUnreach,
                RejectWith::IcmpHostUnreachable => Reason::HostUnreach,
                RejectWith::IcmpProtoUnreachable => Reason::ProtoUnreach,
                RejectWith::IcmpPortUnreachable | RejectWith::Icmp6PortUnreachable => {
                    Reason::PortUnreach
                }
                RejectWith::IcmpNetProhibited => Reason::NetProhibited,
                RejectWith::IcmpHostProhibited => Reason::HostProhibited,
                RejectWith::IcmpAdminProhibited
                | RejectWith::Icmp6AdmProhibited
                | RejectWith::Icmp6PolicyFail => Reason::AdminProhibited,
                RejectWith::Icmp6NoRoute => Reason::NoRoute,
                RejectWith::Icmp6AddrUnreachable => Reason::AddrUnreach,
                RejectWith::Icmp6RejectRoute => Reason::RejectRoute,
                _ => Reason::Queued,
            };
            // nmap: a port unreachable from the target closes a UDP port; every other
            // ICMP error (and port unreachable for TCP) means filtered.
            let state = if proto == Proto::Udp && reason == Reason::PortUnreach {
                Closed
            } else {
                Filtered
            };
            one(state, reason)
        }
        (Verdict::Queue | Verdict::Unknown(_), _) => anything(Reason::Queued),
    }
}

/// Which ports to predict and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortQuery {
    /// The ruleset's family.
    pub family: Family,
    /// The scanner's address (`None`: any source).
    pub src: Option<IpAddr>,
    /// The scanned address (`None`: some address of the host).
    pub dst: Option<IpAddr>,
    /// The interface the probes arrive on (`None`: some interface other than loopback).
    pub in_iface: Option<String>,
    /// The scanner's source ports (a real scanner picks them at random).
    pub sport: PortRange,
    /// What the evaluator knows of the host.
    pub host: Host,
    /// TCP ports with a listener.
    pub listen_tcp: Vec<PortRange>,
    /// UDP ports with a listener that answers.
    pub listen_udp: Vec<PortRange>,
    /// TCP ports to predict.
    pub tcp: Vec<PortRange>,
    /// UDP ports to predict.
    pub udp: Vec<PortRange>,
}

/// A run of consecutive ports of one protocol with the same predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRun {
    /// The protocol.
    pub proto: Proto,
    /// The ports.
    pub ports: PortRange,
    /// The possible predictions, sorted; more than one when uncertain matches or targets
    /// leave the answer open.
    pub predictions: Vec<Prediction>,
}

/// The most paths one port query follows.
const LIMIT: usize = 1 << 20;

/// Predicts the state of every port `q` asks for. Runs are sorted by protocol and port;
/// ports not asked for are absent.
pub fn predict_ports(c: &Compiled, q: &PortQuery) -> Result<Vec<PortRun>, EvalError> {
    let run = Run { compiled: c, host: &q.host, record: false, limit: LIMIT };
    let mut runs = Vec::new();
    for (proto, asked, listen) in
        [(Proto::Tcp, &q.tcp, &q.listen_tcp), (Proto::Udp, &q.udp, &q.listen_udp)]
    {
        let mut records = Vec::new();
        for r in asked {
            let mut p = Packet::new(q.family, proto.number());
            p.src = q.src;
            p.dst = q.dst;
            p.in_iface.clone_from(&q.in_iface);
            p.sport = q.sport;
            p.dport = *r;
            for o in run.eval(Hook::Input, &p)? {
                outcome_records(proto, &o, listen, &mut records);
            }
        }
        let records = check_replies(&run, q, proto, records)?;
        runs.extend(merge(proto, records));
    }
    Ok(runs)
}

/// A predicted answer on a range of ports, with the conntrack state the host's answer
/// leaves with (`None`: no answer of this host's to check, or one not checked).
type Record = (PortRange, Prediction, Option<CtState>);

/// The state of the host's own answer: replies of an accepted connection are
/// ESTABLISHED; what REJECT sends and the kernel's ICMP errors are RELATED.
fn reply_state(v: &Verdict, p: Prediction, rewritten: bool) -> Option<CtState> {
    if rewritten || p.reason == Reason::NoResponse {
        return None;
    }
    match (v, p.reason) {
        (Verdict::Accept, Reason::SynAck | Reason::Reset | Reason::UdpResponse) => {
            Some(CtState::Established)
        }
        (Verdict::Accept | Verdict::Reject(_), _) => Some(CtState::Related),
        _ => None,
    }
}

fn outcome_records(proto: Proto, o: &Outcome, listen: &[PortRange], out: &mut Vec<Record>) {
    let rewritten = o.final_dport != o.dport;
    let push = |out: &mut Vec<Record>, r: PortRange, preds: Vec<Prediction>| {
        out.extend(preds.into_iter().map(|p| (r, p, reply_state(&o.verdict, p, rewritten))));
    };
    if o.forwarded {
        let preds = predict(proto, &Verdict::Unknown(String::new()), false)
            .into_iter()
            .map(|p| Prediction { reason: Reason::Forwarded, ..p })
            .collect();
        push(out, o.dport, preds);
        return;
    }
    if o.final_dport != o.dport {
        // DNAT/REDIRECT moved the port: the listener that counts is on the new one.
        match classify(o.final_dport, listen) {
            Ok(l) => push(out, o.dport, predict(proto, &o.verdict, l)),
            Err(_) => {
                push(out, o.dport, predict(proto, &o.verdict, true));
                push(out, o.dport, predict(proto, &o.verdict, false));
            }
        }
        return;
    }
    let pieces = match classify(o.dport, listen) {
        Ok(_) => vec![o.dport],
        Err(pieces) => pieces,
    };
    for piece in pieces {
        let l = listen.iter().any(|r| r.contains(piece.lo));
        push(out, piece, predict(proto, &o.verdict, l));
    }
}

/// The ICMP type and code of an ICMP answer with `reason`.
fn icmp_of(family: Family, reason: Reason) -> (u8, u8) {
    match family {
        Family::V4 => match reason {
            Reason::NetUnreach => (3, 0),
            Reason::HostUnreach => (3, 1),
            Reason::ProtoUnreach => (3, 2),
            Reason::NetProhibited => (3, 9),
            Reason::HostProhibited => (3, 10),
            Reason::AdminProhibited => (3, 13),
            _ => (3, 3),
        },
        Family::V6 => match reason {
            Reason::NoRoute => (1, 0),
            Reason::AdminProhibited => (1, 1),
            Reason::AddrUnreach => (1, 3),
            Reason::RejectRoute => (1, 6),
            _ => (1, 4),
        },
    }
}

/// The host's answers leave through OUTPUT: an answer that OUTPUT drops never reaches
/// the scanner, which then sees silence.
fn check_replies(
    run: &Run<'_>,
    q: &PortQuery,
    proto: Proto,
    records: Vec<Record>,
) -> Result<Vec<(PortRange, Prediction)>, EvalError> {
    let silent = Prediction {
        state: if proto == Proto::Tcp { PortState::Filtered } else { PortState::OpenFiltered },
        reason: Reason::NoResponse,
    };
    let mut out = Vec::with_capacity(records.len());
    for (r, p, state) in records {
        let Some(state) = state else {
            out.push((r, p));
            continue;
        };
        let icmp = !matches!(p.reason, Reason::SynAck | Reason::Reset | Reason::UdpResponse);
        let mut reply = Packet::new(q.family, proto.number());
        reply.src = q.dst;
        reply.dst = q.src;
        reply.out_iface.clone_from(&q.in_iface);
        reply.state = state;
        if icmp {
            reply.proto = if q.family == Family::V4 { 1 } else { 58 };
            reply.icmp = Some(icmp_of(q.family, p.reason));
            reply.tcp_flags = TcpFlags::NONE;
            reply.sport = PortRange::ALL;
            reply.dport = PortRange::ALL;
        } else {
            reply.sport = r;
            reply.dport = q.sport;
            reply.tcp_flags = match p.reason {
                Reason::SynAck => TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0),
                Reason::Reset => TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0),
                _ => TcpFlags::NONE,
            };
        }
        for o in run.eval(Hook::Output, &reply)? {
            let piece = if icmp { r } else { o.sport };
            out.push((piece, if o.verdict == Verdict::Accept { p } else { silent }));
        }
    }
    Ok(out)
}

/// Unions overlapping records into runs of equal prediction sets.
fn merge(proto: Proto, records: Vec<(PortRange, Prediction)>) -> Vec<PortRun> {
    let mut cuts: Vec<u32> =
        records.iter().flat_map(|(r, _)| [u32::from(r.lo), u32::from(r.hi) + 1]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    if cuts.is_empty() {
        return Vec::new();
    }
    let mut sets: Vec<BTreeSet<Prediction>> = vec![BTreeSet::new(); cuts.len() - 1];
    for (r, p) in &records {
        let a = cuts.partition_point(|&c| c < u32::from(r.lo));
        let b = cuts.partition_point(|&c| c <= u32::from(r.hi));
        for s in &mut sets[a..b] {
            s.insert(*p);
        }
    }
    let mut runs: Vec<PortRun> = Vec::new();
    for (i, set) in sets.into_iter().enumerate() {
        if set.is_empty() {
            continue;
        }
        let lo = u16::try_from(cuts[i]).unwrap_or(u16::MAX);
        let hi = u16::try_from(cuts[i + 1] - 1).unwrap_or(u16::MAX);
        let predictions: Vec<Prediction> = set.into_iter().collect();
        match runs.last_mut() {
            Some(last)
                if last.predictions == predictions
                    && u32::from(last.ports.hi) + 1 == u32::from(lo) =>
            {
                last.ports.hi = hi;
            }
            _ => runs.push(PortRun { proto, ports: PortRange { lo, hi }, predictions }),
        }
    }
    runs
}
