//! The packets the evaluator follows: one packet, or a class of packets whose ports span
//! ranges (what the port predictions evaluate at once).

use std::fmt;
use std::net::IpAddr;

use portcullis_rules::Family;
use portcullis_rules::view::{PortRange, TcpFlags};

/// The connection tracking state of a packet, as `-m conntrack --ctstate` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtState {
    /// The first packet of a connection.
    New,
    /// A packet of a connection that has seen traffic both ways.
    Established,
    /// A packet related to a known connection (ICMP errors, FTP data).
    Related,
    /// A packet conntrack could not place.
    Invalid,
    /// A packet exempted from tracking (raw `-j NOTRACK` / `-j CT --notrack`).
    Untracked,
}

impl CtState {
    /// The name iptables uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Established => "ESTABLISHED",
            Self::Related => "RELATED",
            Self::Invalid => "INVALID",
            Self::Untracked => "UNTRACKED",
        }
    }

    /// Parses a state name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::New, Self::Established, Self::Related, Self::Invalid, Self::Untracked]
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a packet meets the firewall: addressed to this host, routed through it, or sent
/// by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// PREROUTING then INPUT.
    Input,
    /// PREROUTING, FORWARD, POSTROUTING.
    Forward,
    /// OUTPUT then POSTROUTING.
    Output,
}

impl Hook {
    /// `INPUT`, `FORWARD` or `OUTPUT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "INPUT",
            Self::Forward => "FORWARD",
            Self::Output => "OUTPUT",
        }
    }
}

/// A packet, or a class of packets that differ only in their ports.
///
/// Unknown fields are `None`; a rule that tests an unknown field "may match", and the
/// evaluation forks. An unknown interface is taken to be some interface other than
/// loopback (the packets portcullis reasons about come from the network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// IPv4 or IPv6.
    pub family: Family,
    /// The protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6…).
    pub proto: u8,
    /// The source address.
    pub src: Option<IpAddr>,
    /// The destination address.
    pub dst: Option<IpAddr>,
    /// The source ports of the class (one port for a single packet).
    pub sport: PortRange,
    /// The destination ports of the class.
    pub dport: PortRange,
    /// The input interface (`None`: unknown, not loopback; ignored for [`Hook::Output`]).
    pub in_iface: Option<String>,
    /// The output interface (`None`: unknown, not loopback; ignored for [`Hook::Input`]).
    pub out_iface: Option<String>,
    /// ICMP type and code, for ICMP packets.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags, for TCP packets (a SYN by default).
    pub tcp_flags: TcpFlags,
    /// Connection tracking state.
    pub state: CtState,
    /// The packet mark (`-m mark`); `None` when unknown (restored from a connection).
    pub mark: Option<u32>,
    /// Whether this is a non-first fragment (`-f`).
    pub fragment: bool,
}

impl Packet {
    /// A TCP SYN (state NEW) to `dport` from an unknown source and port.
    pub fn tcp_syn(family: Family, dport: u16) -> Self {
        Self {
            family,
            proto: 6,
            src: None,
            dst: None,
            sport: PortRange::ALL,
            dport: PortRange::single(dport),
            in_iface: None,
            out_iface: None,
            icmp: None,
            tcp_flags: TcpFlags::SYN,
            state: CtState::New,
            mark: Some(0),
            fragment: false,
        }
    }

    /// A packet of protocol `proto` (state NEW, unknown addresses and ports).
    pub fn new(family: Family, proto: u8) -> Self {
        let mut p = Self::tcp_syn(family, 0);
        p.proto = proto;
        p.dport = PortRange::ALL;
        if proto != 6 {
            p.tcp_flags = TcpFlags::NONE;
        }
        if proto == 1 || proto == 58 {
            p.icmp = Some(if proto == 1 { (8, 0) } else { (128, 0) });
        }
        p
    }

    /// Whether the protocol carries ports.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, 6 | 17 | 132 | 33 | 136)
    }
}

/// What the evaluator knows of the host whose firewall it evaluates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Host {
    /// The host's own addresses (for `-m addrtype --dst-type LOCAL` and DNAT routing);
    /// empty means unknown, and addrtype matches on unknown addresses may match.
    pub local: Vec<IpAddr>,
}

impl Host {
    /// Whether `ip` is one of the host's addresses (loopback always is); `None` when
    /// the host's addresses are not known.
    pub fn is_local(&self, ip: IpAddr) -> Option<bool> {
        if ip.is_loopback() || self.local.contains(&ip) {
            Some(true)
        } else if self.local.is_empty() {
            None
        } else {
            Some(false)
        }
    }
}
