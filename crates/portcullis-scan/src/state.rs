//! nmap's port states, reason strings, and the rules that turn a reply into them.

use std::fmt;

/// The kind of scan, nmap's `-sS`, `-sT`, `-sA`, `-sU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanType {
    /// TCP SYN ("half-open") scan, `-sS`.
    Syn,
    /// TCP connect scan, `-sT`.
    Connect,
    /// TCP ACK scan, `-sA`: maps the stateless part of a ruleset.
    Ack,
    /// UDP scan, `-sU`.
    Udp,
}

impl ScanType {
    /// nmap's name in XML `scaninfo/@type`.
    pub fn xml_name(self) -> &'static str {
        match self {
            Self::Syn => "syn",
            Self::Connect => "connect",
            Self::Ack => "ack",
            Self::Udp => "udp",
        }
    }

    /// The transport protocol this scan probes.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Udp => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }

    /// The state of a port that never answered (nmap `set_default_port_state`).
    pub fn silent_state(self) -> PortState {
        match self {
            Self::Udp => PortState::OpenFiltered,
            _ => PortState::Filtered,
        }
    }
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// nmap's six port states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortState {
    /// An application accepts connections or datagrams.
    Open,
    /// Reachable, but nothing listens.
    Closed,
    /// A filter prevents the probe from telling.
    Filtered,
    /// Reachable (ACK scan); open or closed cannot be told.
    Unfiltered,
    /// Open or filtered: silence where silence is normal for open ports.
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

/// Why a port got its state: nmap's reason strings (portreasons.cc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// SYN/ACK (also a completed connect).
    SynAck,
    /// A bare SYN (split handshake).
    SplitHandshakeSyn,
    /// RST.
    Reset,
    /// The kernel's ECONNREFUSED without an ICMP error behind it (connect scan).
    ConnRefused,
    /// A UDP datagram came back.
    UdpResponse,
    /// Nothing came back.
    NoResponse,
    /// ICMP 3/0.
    NetUnreach,
    /// ICMP 3/1 (ICMPv6 1/3 is `AddrUnreach`).
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
    /// Another ICMP destination unreachable code.
    DestUnreach,
    /// ICMP 11, ICMPv6 3.
    TimeExceeded,
    /// ICMPv6 1/0.
    NoRoute,
    /// ICMPv6 1/2.
    BeyondScope,
    /// ICMPv6 1/3.
    AddrUnreach,
    /// ICMPv6 1/6.
    RejectRoute,
    /// The user said the host is up (`-Pn`).
    UserSet,
}

impl Reason {
    /// nmap's reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SynAck => "syn-ack",
            Self::SplitHandshakeSyn => "split-handshake-syn",
            Self::Reset => "reset",
            Self::ConnRefused => "conn-refused",
            Self::UdpResponse => "udp-response",
            Self::NoResponse => "no-response",
            Self::NetUnreach => "net-unreach",
            Self::HostUnreach => "host-unreach",
            Self::ProtoUnreach => "proto-unreach",
            Self::PortUnreach => "port-unreach",
            Self::NetProhibited => "net-prohibited",
            Self::HostProhibited => "host-prohibited",
            Self::AdminProhibited => "admin-prohibited",
            Self::DestUnreach => "dest-unreach",
            Self::TimeExceeded => "time-exceeded",
            Self::NoRoute => "no-route",
            Self::BeyondScope => "beyond-scope",
            Self::AddrUnreach => "addr-unreach",
            Self::RejectRoute => "reject-route",
            Self::UserSet => "user-set",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ICMP or ICMPv6 error as received (type and code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpKind {
    /// ICMPv6 rather than ICMP.
    pub v6: bool,
    /// Type.
    pub icmp_type: u8,
    /// Code.
    pub code: u8,
}

impl IcmpKind {
    /// The state and reason nmap gives a port for this ICMP error in a scan of `scan`;
    /// `from_target` says whether the error came from the probed address itself. `None`
    /// means nmap ignores the message ("unexpected ICMP type/code").
    pub fn classify(self, scan: ScanType, from_target: bool) -> Option<(PortState, Reason)> {
        let port_unreach_state = if scan == ScanType::Udp && from_target {
            PortState::Closed
        } else {
            PortState::Filtered
        };
        let filtered = |r| Some((PortState::Filtered, r));
        if self.v6 {
            match (self.icmp_type, self.code) {
                (1, 0) => filtered(Reason::NoRoute),
                (1, 1 | 5) => filtered(Reason::AdminProhibited),
                (1, 2) => filtered(Reason::BeyondScope),
                (1, 3) => filtered(Reason::AddrUnreach),
                (1, 4) => Some((port_unreach_state, Reason::PortUnreach)),
                (1, 6) => filtered(Reason::RejectRoute),
                (3, _) => filtered(Reason::TimeExceeded),
                _ => None,
            }
        } else {
            match (self.icmp_type, self.code) {
                (3, 0) => filtered(Reason::NetUnreach),
                (3, 1) => filtered(Reason::HostUnreach),
                (3, 2) => filtered(Reason::ProtoUnreach),
                (3, 3) => Some((port_unreach_state, Reason::PortUnreach)),
                (3, 9) => filtered(Reason::NetProhibited),
                (3, 10) => filtered(Reason::HostProhibited),
                (3, 13) => filtered(Reason::AdminProhibited),
                (11, _) => filtered(Reason::TimeExceeded),
                _ => None,
            }
        }
    }
}

/// Whether an answer `new` may replace the answer `old` already recorded for a port
/// (scan_engine.cc `ultrascan_port_pspec_update`): for TCP scans `open` is sticky, a
/// `closed` port never becomes `filtered`, and `unfiltered` only yields to open/closed;
/// for UDP any answer beats silence, `closed` is final and `filtered` never becomes open.
pub fn may_replace(scan: ScanType, old: PortState, new: PortState) -> bool {
    use PortState::*;
    if scan == ScanType::Udp {
        return !matches!((old, new), (Closed, _) | (Filtered, Open));
    }
    let rank = |s| match s {
        Open => 3,
        Closed => 2,
        Unfiltered => 1,
        _ => 0,
    };
    rank(new) > rank(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_rules() {
        let k = |t, c| IcmpKind { v6: false, icmp_type: t, code: c };
        assert_eq!(
            k(3, 3).classify(ScanType::Udp, true),
            Some((PortState::Closed, Reason::PortUnreach))
        );
        assert_eq!(
            k(3, 3).classify(ScanType::Udp, false),
            Some((PortState::Filtered, Reason::PortUnreach))
        );
        assert_eq!(
            k(3, 3).classify(ScanType::Syn, true),
            Some((PortState::Filtered, Reason::PortUnreach))
        );
        assert_eq!(
            k(3, 13).classify(ScanType::Syn, true),
            Some((PortState::Filtered, Reason::AdminProhibited))
        );
        assert_eq!(k(3, 4).classify(ScanType::Syn, true), None);
        let v6 = IcmpKind { v6: true, icmp_type: 1, code: 4 };
        assert_eq!(
            v6.classify(ScanType::Udp, true),
            Some((PortState::Closed, Reason::PortUnreach))
        );
    }

    #[test]
    fn replacement_rules() {
        use PortState::*;
        assert!(!may_replace(ScanType::Syn, Open, Filtered));
        assert!(!may_replace(ScanType::Syn, Closed, Filtered));
        assert!(may_replace(ScanType::Syn, Filtered, Closed));
        assert!(may_replace(ScanType::Udp, Open, Filtered));
        assert!(!may_replace(ScanType::Udp, Closed, Open));
        assert!(!may_replace(ScanType::Udp, Filtered, Open));
    }
}
