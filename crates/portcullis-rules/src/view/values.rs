//! Value types of the common extensions and their parsers: ports and port ranges (with a
//! built-in table of well-known service names), TCP flags, ICMP types, conntrack states,
//! limit rates, marks, address types. Each parser accepts what iptables accepts on input;
//! each `Display` prints what iptables-save prints.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Family;
use crate::addr::split_once_byte;
use crate::error::{ModelError, ModelErrorKind, invalid};

/// Parses an unsigned number as `strtoul(s, NULL, 0)` does for iptables: decimal, `0x` hex
/// or leading-`0` octal, no sign, no trailing garbage; `None` when it is not such a number
/// or exceeds `max`.
pub fn parse_number(s: &str, max: u64) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().filter(|n| *n <= max)
}

/// Like [`parse_number`] for a `u32`.
pub fn parse_u32(s: &str) -> Option<u32> {
    parse_number(s, u64::from(u32::MAX)).and_then(|n| u32::try_from(n).ok())
}

/// Well-known services (`/etc/services`), as iptables resolves them for port arguments.
const SERVICES: &[(&str, u16)] = &[
    ("tcpmux", 1),
    ("echo", 7),
    ("discard", 9),
    ("systat", 11),
    ("daytime", 13),
    ("netstat", 15),
    ("qotd", 17),
    ("chargen", 19),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("time", 37),
    ("whois", 43),
    ("tacacs", 49),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("auth", 113),
    ("ident", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("epmap", 135),
    ("netbios-ns", 137),
    ("netbios-dgm", 138),
    ("netbios-ssn", 139),
    ("imap2", 143),
    ("imap", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("bgp", 179),
    ("irc", 194),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("kpasswd", 464),
    ("submissions", 465),
    ("isakmp", 500),
    ("syslog", 514),
    ("printer", 515),
    ("route", 520),
    ("uucp", 540),
    ("dhcpv6-client", 546),
    ("dhcpv6-server", 547),
    ("rtsp", 554),
    ("nntps", 563),
    ("submission", 587),
    ("ipp", 631),
    ("ldaps", 636),
    ("rsync", 873),
    ("ftps-data", 989),
    ("ftps", 990),
    ("telnets", 992),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("openvpn", 1194),
    ("ms-sql-s", 1433),
    ("l2tp", 1701),
    ("pptp", 1723),
    ("radius", 1812),
    ("radius-acct", 1813),
    ("nfs", 2049),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("sip", 5060),
    ("sip-tls", 5061),
    ("postgresql", 5432),
    ("amqp", 5672),
    ("x11", 6000),
    ("http-alt", 8080),
    ("webcache", 8080),
];

/// The port of a well-known service name (`ssh` → 22), from portcullis' built-in table.
pub fn service_port(name: &str) -> Option<u16> {
    SERVICES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The first name of `port` in portcullis' built-in service table (`22` → `ssh`).
pub fn service_name(port: u16) -> Option<&'static str> {
    SERVICES.iter().find(|(_, p)| *p == port).map(|(n, _)| *n)
}

/// Parses one port as iptables does: a number from 0 to 65535 or a service name.
pub fn parse_port(s: &str) -> Result<u16, ModelError> {
    parse_number(s, 65535)
        .and_then(|n| u16::try_from(n).ok())
        .or_else(|| service_port(s))
        .ok_or_else(|| invalid("port", s, "a port number from 0 to 65535 or a service name"))
}

/// An inclusive range of ports (or of any 16-bit value): `22`, `1024:65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// The lowest port.
    pub lo: u16,
    /// The highest port.
    pub hi: u16,
}

impl PortRange {
    /// Every port, `0:65535`.
    pub const ALL: Self = Self { lo: 0, hi: u16::MAX };

    /// A single port.
    pub fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Whether the range covers every port.
    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    /// Parses `P`, `A:B`, `A:`, `:B` or `:` (`sep` is `:` for matches, `-` for
    /// `--to-ports`), ports as numbers or service names; refuses a maximum below the
    /// minimum.
    ///
    /// With `-` (target port ranges) the whole value is first tried as one port or
    /// service name (`ftp-data`), and the sides of a range must be numbers (`10-ssh` is
    /// refused), as iptables does.
    pub fn parse_with(s: &str, sep: char) -> Result<Self, ModelError> {
        if sep == '-'
            && let Ok(p) = parse_port(s)
        {
            return Ok(Self::single(p));
        }
        let split = match u8::try_from(sep) {
            Ok(b) if sep.is_ascii() => split_once_byte(s, b),
            _ => s.split_once(sep),
        };
        let Some((a, b)) = split else {
            return parse_port(s).map(Self::single);
        };
        let side = |x: &str| -> Result<u16, ModelError> {
            if sep == '-' {
                parse_number(x, 65535)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| invalid("port range", s, "numeric ports A-B"))
            } else {
                parse_port(x)
            }
        };
        let lo = if a.is_empty() { 0 } else { side(a)? };
        let hi = if b.is_empty() { u16::MAX } else { side(b)? };
        if lo > hi {
            return Err(ModelError::new(ModelErrorKind::InvertedRange {
                option: "port range".into(),
                value: s.to_owned(),
            }));
        }
        Ok(Self { lo, hi })
    }
}

impl FromStr for PortRange {
    type Err = ModelError;
    /// [`PortRange::parse_with`] with `:`.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Self::parse_with(s, ':')
    }
}

impl fmt::Display for PortRange {
    /// `22` or `1024:65535`, as iptables-save prints match port ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}:{}", self.lo, self.hi)
        }
    }
}

/// An inclusive range of 32-bit values (`--ctexpire`, `--ahspi`, uid/gid ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct U32Range {
    /// The lowest value.
    pub lo: u32,
    /// The highest value.
    pub hi: u32,
}

impl U32Range {
    /// Whether `v` is in the range.
    pub fn contains(self, v: u32) -> bool {
        self.lo <= v && v <= self.hi
    }

    /// Parses `N`, `A:B`, `A:`, `:B`, `:` (or with `sep` `-`), numbers as `strtoul`.
    pub fn parse_with(s: &str, sep: char) -> Result<Self, ModelError> {
        let num =
            |x: &str| parse_u32(x).ok_or_else(|| invalid("range", s, "numbers up to 4294967295"));
        let Some((a, b)) = s.split_once(sep) else {
            let n = num(s)?;
            return Ok(Self { lo: n, hi: n });
        };
        let lo = if a.is_empty() { 0 } else { num(a)? };
        let hi = if b.is_empty() { u32::MAX } else { num(b)? };
        if lo > hi {
            return Err(ModelError::new(ModelErrorKind::InvertedRange {
                option: "range".into(),
                value: s.to_owned(),
            }));
        }
        Ok(Self { lo, hi })
    }
}

impl fmt::Display for U32Range {
    /// `N` or `A:B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}:{}", self.lo, self.hi)
        }
    }
}

/// A set of TCP flags (the low six bits of the flags byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: Self = Self(0x01);
    /// SYN.
    pub const SYN: Self = Self(0x02);
    /// RST.
    pub const RST: Self = Self(0x04);
    /// PSH.
    pub const PSH: Self = Self(0x08);
    /// ACK.
    pub const ACK: Self = Self(0x10);
    /// URG.
    pub const URG: Self = Self(0x20);
    /// All six flags (`ALL`).
    pub const ALL: Self = Self(0x3f);
    /// No flag (`NONE`).
    pub const NONE: Self = Self(0);

    const NAMES: [(&'static str, u16); 6] =
        [("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20)];

    /// Whether every flag of `other` is set here.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl FromStr for TcpFlags {
    type Err = ModelError;
    /// A comma list of `FIN SYN RST PSH ACK URG ALL NONE` (case-insensitive, as iptables).
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let mut bits = 0u16;
        for name in s.split(',') {
            let up = name.to_ascii_uppercase();
            bits |= match up.as_str() {
                "ALL" => 0x3f,
                "NONE" => 0,
                _ => Self::NAMES.iter().find(|(n, _)| *n == up).map(|(_, b)| *b).ok_or_else(
                    || {
                        invalid(
                            "--tcp-flags",
                            s,
                            "a comma list of FIN,SYN,RST,PSH,ACK,URG,ALL,NONE",
                        )
                    },
                )?,
            };
        }
        Ok(Self(u8::try_from(bits & 0x3f).unwrap_or(0x3f)))
    }
}

impl fmt::Display for TcpFlags {
    /// `FIN,SYN,RST,ACK` in bit order, or `NONE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 & 0x3f == 0 {
            return f.write_str("NONE");
        }
        write_names(f, u16::from(self.0), &Self::NAMES)
    }
}

/// `--tcp-flags MASK COMP`: the flags in MASK are examined and must equal COMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFlagsSpec {
    /// The flags examined.
    pub mask: TcpFlags,
    /// The flags of the mask that must be set (the others must be clear).
    pub comp: TcpFlags,
}

impl TcpFlagsSpec {
    /// `--syn`: `FIN,SYN,RST,ACK SYN`.
    pub const SYN: Self = Self { mask: TcpFlags(0x17), comp: TcpFlags::SYN };

    /// Whether a segment with `flags` matches (before any `!`).
    pub fn matches(self, flags: TcpFlags) -> bool {
        flags.0 & self.mask.0 == self.comp.0
    }
}

impl fmt::Display for TcpFlagsSpec {
    /// `MASK COMP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.mask, self.comp)
    }
}

/// An ICMP or ICMPv6 type with a range of codes, as the icmp and icmp6 matches hold it.
/// For ICMP (v4) the type 255 with codes `0:255` is `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpType {
    /// The type.
    pub type_: u8,
    /// The lowest code matched.
    pub code_min: u8,
    /// The highest code matched.
    pub code_max: u8,
}

/// `(name, type, code_min, code_max)`: libxtables' ICMP names.
const ICMP_NAMES: &[(&str, u8, u8, u8)] = &[
    ("any", 255, 0, 255),
    ("echo-reply", 0, 0, 255),
    ("pong", 0, 0, 255),
    ("destination-unreachable", 3, 0, 255),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 255),
    ("redirect", 5, 0, 255),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 255),
    ("ping", 8, 0, 255),
    ("router-advertisement", 9, 0, 255),
    ("router-solicitation", 10, 0, 255),
    ("time-exceeded", 11, 0, 255),
    ("ttl-exceeded", 11, 0, 255),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 255),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 255),
    ("timestamp-reply", 14, 0, 255),
    ("address-mask-request", 17, 0, 255),
    ("address-mask-reply", 18, 0, 255),
];

/// libxtables' ICMPv6 names.
const ICMP6_NAMES: &[(&str, u8, u8, u8)] = &[
    ("destination-unreachable", 1, 0, 255),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 255),
    ("time-exceeded", 3, 0, 255),
    ("ttl-exceeded", 3, 0, 255),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 255),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 255),
    ("ping", 128, 0, 255),
    ("echo-reply", 129, 0, 255),
    ("pong", 129, 0, 255),
    ("mld-listener-query", 130, 0, 255),
    ("mld-listener-report", 131, 0, 255),
    ("mld-listener-done", 132, 0, 255),
    ("mld-listener-reduction", 132, 0, 255),
    ("router-solicitation", 133, 0, 255),
    ("router-advertisement", 134, 0, 255),
    ("neighbour-solicitation", 135, 0, 255),
    ("neighbor-solicitation", 135, 0, 255),
    ("neighbour-advertisement", 136, 0, 255),
    ("neighbor-advertisement", 136, 0, 255),
    ("redirect", 137, 0, 255),
];

/// The ICMP (V4) or ICMPv6 (V6) type names iptables knows, as
/// `(name, type, code_min, code_max)`, in libxtables' order (aliases such as `ping` follow
/// their main name, so the first entry for a type and code range is the name iptables
/// prints).
pub fn icmp_type_names(family: Family) -> &'static [(&'static str, u8, u8, u8)] {
    match family {
        Family::V4 => ICMP_NAMES,
        Family::V6 => ICMP6_NAMES,
    }
}

impl IcmpType {
    /// ICMP `any`.
    pub const ANY: Self = Self { type_: 255, code_min: 0, code_max: 255 };

    /// Parses a type name (case-insensitive), `TYPE`, `TYPE/CODE` or `TYPE/MIN:MAX` for
    /// `family` (ICMP for V4, ICMPv6 for V6).
    pub fn parse(s: &str, family: Family) -> Result<Self, ModelError> {
        let (opt, names) = match family {
            Family::V4 => ("--icmp-type", ICMP_NAMES),
            Family::V6 => ("--icmpv6-type", ICMP6_NAMES),
        };
        if let Some((_, t, lo, hi)) = names.iter().find(|(n, ..)| n.eq_ignore_ascii_case(s)) {
            return Ok(Self { type_: *t, code_min: *lo, code_max: *hi });
        }
        let bad = || invalid(opt, s, "an ICMP type name, TYPE, TYPE/CODE or TYPE/MIN:MAX");
        let byte =
            |x: &str| parse_number(x, 255).and_then(|n| u8::try_from(n).ok()).ok_or_else(bad);
        let (t, code) = match s.split_once('/') {
            Some((t, c)) => (t, Some(c)),
            None => (s, None),
        };
        let type_ = byte(t)?;
        let (code_min, code_max) = match code {
            None => (0, 255),
            Some(c) => match c.split_once(':') {
                Some((a, b)) => (byte(a)?, byte(b)?),
                None => {
                    let c = byte(c)?;
                    (c, c)
                }
            },
        };
        // iptables takes an inverted code range (it then matches nothing) and prints
        // its first code (observed: `3/5:4` is saved as `3/5`).
        Ok(Self { type_, code_min, code_max })
    }

    /// The name iptables prints for this type and code range, if it has one
    /// (`echo-request`, `port-unreachable`).
    pub fn name(self, family: Family) -> Option<&'static str> {
        icmp_type_names(family)
            .iter()
            .find(|(_, t, lo, hi)| (*t, *lo, *hi) == (self.type_, self.code_min, self.code_max))
            .map(|(n, ..)| *n)
    }

    /// Whether a packet of this type and code matches (ICMP `any` matches every packet).
    pub fn matches(self, family: Family, type_: u8, code: u8) -> bool {
        (family == Family::V4 && self.type_ == 255)
            || (self.type_ == type_ && self.code_min <= code && code <= self.code_max)
    }

    /// The saved text for `family`: `any` (V4 type 255 with every code), `TYPE`, or
    /// `TYPE/CODE` when the codes are not `0:255` (only the lowest code is printed, as
    /// iptables does: `255/255` stays `255/255`).
    pub fn saved(self, family: Family) -> String {
        if family == Family::V4 && self == Self::ANY {
            "any".to_owned()
        } else if self.code_min == 0 && self.code_max == 255 {
            self.type_.to_string()
        } else {
            format!("{}/{}", self.type_, self.code_min)
        }
    }
}

/// Writes the names of the bits set in `bits`, in table order, comma-separated.
fn write_names(f: &mut fmt::Formatter<'_>, bits: u16, names: &[(&str, u16)]) -> fmt::Result {
    let mut first = true;
    for (name, bit) in names {
        if bits & bit != 0 {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
    }
    Ok(())
}

macro_rules! bitset {
    ($(#[$doc:meta])* $name:ident, $opt:literal, [$(($flag:ident, $text:literal, $bit:expr)),* $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u16);

        impl $name {
            $(
                #[doc = concat!("`", $text, "`.")]
                pub const $flag: Self = Self($bit);
            )*
            const NAMES: &'static [(&'static str, u16)] = &[$(($text, $bit)),*];

            /// Whether every member of `other` is in this set.
            pub fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether the set is empty.
            pub fn is_empty(self) -> bool {
                self.0 == 0
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            /// A comma list of names (case-insensitive).
            fn from_str(s: &str) -> Result<Self, ModelError> {
                let mut bits = 0;
                for part in s.split(',') {
                    bits |= Self::NAMES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(part))
                        .map(|(_, b)| *b)
                        .ok_or_else(|| invalid($opt, s, concat!("a comma list of ", $(" ", $text),*)))?;
                }
                Ok(Self(bits))
            }
        }

        impl fmt::Display for $name {
            /// The names in iptables-save order, comma-separated.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_names(f, self.0, Self::NAMES)
            }
        }
    };
}

bitset!(
    /// Connection tracking states of `--ctstate`/`--state`, printed in the fixed order
    /// INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT.
    CtStates, "--ctstate", [
        (INVALID, "INVALID", 0x01),
        (NEW, "NEW", 0x02),
        (RELATED, "RELATED", 0x04),
        (ESTABLISHED, "ESTABLISHED", 0x08),
        (UNTRACKED, "UNTRACKED", 0x10),
        (SNAT, "SNAT", 0x20),
        (DNAT, "DNAT", 0x40),
    ]
);

bitset!(
    /// Connection status bits of `--ctstatus` (`NONE` is the empty set).
    CtStatus, "--ctstatus", [
        (EXPECTED, "EXPECTED", 0x01),
        (SEEN_REPLY, "SEEN_REPLY", 0x02),
        (ASSURED, "ASSURED", 0x04),
        (CONFIRMED, "CONFIRMED", 0x08),
    ]
);

impl CtStatus {
    /// Parses `NONE` or a comma list of status names.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        if s.eq_ignore_ascii_case("NONE") { Ok(Self(0)) } else { s.parse() }
    }

    /// The saved text: `NONE` for the empty set, else the names.
    pub fn saved(self) -> String {
        if self.is_empty() { "NONE".to_owned() } else { self.to_string() }
    }
}

bitset!(
    /// Route address types of the addrtype match.
    AddrTypes, "--src-type", [
        (UNSPEC, "UNSPEC", 0x0001),
        (UNICAST, "UNICAST", 0x0002),
        (LOCAL, "LOCAL", 0x0004),
        (BROADCAST, "BROADCAST", 0x0008),
        (ANYCAST, "ANYCAST", 0x0010),
        (MULTICAST, "MULTICAST", 0x0020),
        (BLACKHOLE, "BLACKHOLE", 0x0040),
        (UNREACHABLE, "UNREACHABLE", 0x0080),
        (PROHIBIT, "PROHIBIT", 0x0100),
        (THROW, "THROW", 0x0200),
        (NAT, "NAT", 0x0400),
        (XRESOLVE, "XRESOLVE", 0x0800),
    ]
);

/// The time unit of a limit rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateUnit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl RateUnit {
    /// Seconds in one unit.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86400,
        }
    }

    /// `sec`, `min`, `hour`, `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "sec",
            Self::Minute => "min",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// A rate `N/unit` as limit and hashlimit take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Events per unit.
    pub count: u32,
    /// The unit.
    pub unit: RateUnit,
}

/// `XT_LIMIT_SCALE`: the kernel stores a limit as the mean interval in 1/10000 s.
const LIMIT_SCALE: u64 = 10_000;

impl Rate {
    /// Parses `N`, `N/s`, `N/sec`, `N/second`, `N/m`, `N/min`, `N/minute`, `N/h`, `N/hour`,
    /// `N/d`, `N/day` (a unit is recognised by its first letter, as iptables does). Refuses
    /// zero and rates too fast to store.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let bad = || invalid("--limit", s, "a rate N/sec, N/min, N/hour or N/day");
        let (n, unit) = match s.split_once('/') {
            Some((n, u)) => {
                let u = u.to_ascii_lowercase();
                let u = u.as_str();
                let unit = match u.chars().next() {
                    Some('s') if "second".starts_with(u) || u == "sec" => RateUnit::Second,
                    Some('m') if "minute".starts_with(u) => RateUnit::Minute,
                    Some('h') if "hour".starts_with(u) => RateUnit::Hour,
                    Some('d') if "day".starts_with(u) => RateUnit::Day,
                    _ => return Err(bad()),
                };
                (n, unit)
            }
            None => (s, RateUnit::Second),
        };
        let count = n.parse::<u32>().ok().filter(|c| *c > 0).ok_or_else(bad)?;
        let rate = Self { count, unit };
        if rate.interval() == 0 {
            return Err(invalid("--limit", s, "a rate of at most 10000/sec"));
        }
        Ok(rate)
    }

    /// The mean interval between events in 1/10000 s, as the kernel stores it
    /// (0 when the rate is too fast).
    pub fn interval(self) -> u32 {
        let total = LIMIT_SCALE * u64::from(self.unit.seconds());
        u32::try_from(total / u64::from(self.count.max(1))).unwrap_or(u32::MAX)
    }

    /// The rate iptables-save prints for a stored interval: the largest unit in which the
    /// count is exact enough (`print_rate` in libxt_limit).
    pub fn from_interval(interval: u32) -> Self {
        let units = [RateUnit::Day, RateUnit::Hour, RateUnit::Minute, RateUnit::Second];
        let period = u64::from(interval.max(1));
        let mult = |u: RateUnit| LIMIT_SCALE * u64::from(u.seconds());
        let mut i = 1;
        while i < units.len() {
            let m = mult(units[i]);
            if period > m || m / period < m % period {
                break;
            }
            i += 1;
        }
        let unit = units[i - 1];
        let count = u32::try_from(mult(unit) / period).unwrap_or(u32::MAX);
        Self { count, unit }
    }

    /// The canonical form of this rate (what iptables-save prints after loading it).
    #[must_use]
    pub fn canonical(self) -> Self {
        Self::from_interval(self.interval())
    }

    /// Events per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.count) / f64::from(self.unit.seconds())
    }
}

impl fmt::Display for Rate {
    /// `N/sec`, `N/min`, `N/hour`, `N/day`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.as_str())
    }
}

/// A mark value with a mask, `V[/M]` (a missing mask is all ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkMask {
    /// The value.
    pub value: u32,
    /// The mask.
    pub mask: u32,
}

impl MarkMask {
    /// Parses `V` or `V/M`, numbers as `strtoul` (decimal, hex, octal).
    pub fn parse(s: &str, option: &str) -> Result<Self, ModelError> {
        let bad = || invalid(option, s, "VALUE[/MASK] with 32-bit numbers");
        let (v, m) = match s.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (s, None),
        };
        let value = parse_u32(v).ok_or_else(bad)?;
        let mask = match m {
            Some(m) => parse_u32(m).ok_or_else(bad)?,
            None => u32::MAX,
        };
        Ok(Self { value, mask })
    }

    /// The match saved form: `0xV` when the mask is all ones, else `0xV/0xM`.
    pub fn saved_match(self) -> String {
        if self.mask == u32::MAX {
            format!("{:#x}", self.value)
        } else {
            format!("{:#x}/{:#x}", self.value, self.mask)
        }
    }

    /// The target saved form, always `0xV/0xM`.
    pub fn saved_target(self) -> String {
        format!("{:#x}/{:#x}", self.value, self.mask)
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ModelError;
    /// Six colon-separated hex bytes.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || invalid("--mac-source", s, "a MAC address XX:XX:XX:XX:XX:XX");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    /// Lower-case, colon-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An inclusive range of addresses, `A-B` (iprange).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    /// The first address.
    pub lo: IpAddr,
    /// The last address.
    pub hi: IpAddr,
}

impl IpRange {
    /// Parses `A` or `A-B` of `family`.
    pub fn parse(s: &str, option: &str, family: Family) -> Result<Self, ModelError> {
        let bad = || invalid(option, s, "an address range A-B of the ruleset's family");
        // (One parse for a single address: this runs for every `--to-destination` of a
        // kube-proxy-sized ruleset.)
        let (lo, hi): (IpAddr, IpAddr) = match split_once_byte(s, b'-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let ip = s.parse().map_err(|_| bad())?;
                (ip, ip)
            }
        };
        if lo.is_ipv4() != (family == Family::V4) || hi.is_ipv4() != lo.is_ipv4() {
            return Err(bad());
        }
        Ok(Self { lo, hi })
    }

    /// Whether `ip` lies within the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.lo, self.hi, ip) {
            (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => a <= x && x <= b,
            (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => a <= x && x <= b,
            _ => false,
        }
    }
}

impl fmt::Display for IpRange {
    /// `A-B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// Syslog level names accepted by `--log-level`.
const LOG_LEVELS: &[(&str, u8)] = &[
    ("emerg", 0),
    ("panic", 0),
    ("alert", 1),
    ("crit", 2),
    ("error", 3),
    ("warning", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

/// Parses a `--log-level`: 0 to 7 or a lower-case syslog level name.
pub fn parse_log_level(s: &str) -> Result<u8, ModelError> {
    if let Some(n) = parse_number(s, 7) {
        return u8::try_from(n).map_err(|_| invalid("--log-level", s, "0 to 7"));
    }
    LOG_LEVELS
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, l)| *l)
        .ok_or_else(|| invalid("--log-level", s, "0 to 7 or a syslog level name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("10", 100), Some(10));
        assert_eq!(parse_number("0x10", 100), Some(16));
        assert_eq!(parse_number("010", 100), Some(8));
        assert_eq!(parse_number("0", 100), Some(0));
        assert_eq!(parse_number("-1", 100), None);
        assert_eq!(parse_number("101", 100), None);
        assert_eq!(parse_number("", 100), None);
        assert_eq!(parse_number("0x", 100), None);
        assert_eq!(parse_u32("4294967296"), None);
    }

    #[test]
    fn ports() {
        let r = |s: &str| s.parse::<PortRange>().map(|p| p.to_string());
        assert_eq!(r("22").unwrap(), "22");
        assert_eq!(r("ssh").unwrap(), "22");
        assert_eq!(r("1024:").unwrap(), "1024:65535");
        assert_eq!(r(":4").unwrap(), "0:4");
        assert_eq!(r("4:4").unwrap(), "4");
        assert_eq!(r(":").unwrap(), "0:65535");
        assert_eq!(r("http:https").unwrap(), "80:443");
        assert!(r("4:3").is_err());
        assert!(r("65536").is_err());
        assert!(r("-1").is_err());
        assert!(r("nosuchservice").is_err());
        assert_eq!(PortRange::parse_with("10-20", '-').unwrap(), PortRange { lo: 10, hi: 20 });
        assert_eq!(PortRange::parse_with("ftp-data", '-').unwrap(), PortRange::single(20));
        assert!(PortRange::parse_with("10-ssh", '-').is_err());
        assert!(PortRange::parse_with("ftp-ssh", '-').is_err());
    }

    #[test]
    fn tcp_flags() {
        assert_eq!("ALL".parse::<TcpFlags>().unwrap().to_string(), "FIN,SYN,RST,PSH,ACK,URG");
        assert_eq!("NONE".parse::<TcpFlags>().unwrap().to_string(), "NONE");
        assert_eq!("SYN,ACK,FIN,RST".parse::<TcpFlags>().unwrap().to_string(), "FIN,SYN,RST,ACK");
        assert!("SYN,BOGUS".parse::<TcpFlags>().is_err());
        assert!(TcpFlagsSpec::SYN.matches(TcpFlags::SYN));
        assert!(!TcpFlagsSpec::SYN.matches(TcpFlags(0x12)));
    }

    #[test]
    fn icmp() {
        let v4 = |s: &str| IcmpType::parse(s, Family::V4).map(|t| t.saved(Family::V4));
        assert_eq!(v4("echo-request").unwrap(), "8");
        assert_eq!(v4("any").unwrap(), "any");
        assert_eq!(v4("255/0:255").unwrap(), "any");
        assert_eq!(v4("3/4").unwrap(), "3/4");
        assert_eq!(v4("3/0:5").unwrap(), "3/0");
        assert_eq!(v4("8/0:255").unwrap(), "8");
        assert_eq!(v4("255/255").unwrap(), "255/255");
        assert_eq!(v4("port-unreachable").unwrap(), "3/3");
        assert!(v4("256").is_err());
        assert!(v4("bogus").is_err());
        let v6 = |s: &str| IcmpType::parse(s, Family::V6).map(|t| t.saved(Family::V6));
        assert_eq!(v6("echo-request").unwrap(), "128");
        assert_eq!(v6("mld-listener-reduction").unwrap(), "132");
        assert_eq!(v6("1/0").unwrap(), "1/0");
        assert!(IcmpType::ANY.matches(Family::V4, 3, 3));
        let t = IcmpType::parse("8", Family::V4).unwrap();
        assert_eq!(t.name(Family::V4), Some("echo-request"));
        assert_eq!(
            IcmpType::parse("3/3", Family::V4).unwrap().name(Family::V4),
            Some("port-unreachable")
        );
        assert_eq!(service_name(22), Some("ssh"));
        assert_eq!(service_name(80), Some("http"));
    }

    #[test]
    fn states_and_rates() {
        let s: CtStates = "ESTABLISHED,RELATED,new".parse().unwrap();
        assert_eq!(s.to_string(), "NEW,RELATED,ESTABLISHED");
        assert!("wrong".parse::<CtStates>().is_err());
        assert_eq!(CtStatus::parse("NONE").unwrap().saved(), "NONE");
        let r = |s: &str| Rate::parse(s).map(|r| r.canonical().to_string());
        assert_eq!(r("1/s").unwrap(), "1/sec");
        assert_eq!(r("3/minute").unwrap(), "3/min");
        assert_eq!(r("10/h").unwrap(), "10/hour");
        assert_eq!(r("2/d").unwrap(), "2/day");
        assert_eq!(r("61/min").unwrap(), "61/min");
        assert_eq!(r("1000/hour").unwrap(), "1000/hour");
        assert_eq!(r("5").unwrap(), "5/sec");
        assert!(r("0/s").is_err());
        assert!(r("1/week").is_err());
        assert!(r("20000/sec").is_err());
    }

    #[test]
    fn marks_macs_levels() {
        assert_eq!(MarkMask::parse("4294967295", "--mark").unwrap().saved_match(), "0xffffffff");
        assert_eq!(MarkMask::parse("0/0xffffffff", "--mark").unwrap().saved_match(), "0x0");
        assert_eq!(MarkMask::parse("1/0xff0", "--mark").unwrap().saved_match(), "0x1/0xff0");
        assert!(MarkMask::parse("4294967296", "--mark").is_err());
        assert_eq!(
            "aa:BB:cc:dd:ee:ff".parse::<MacAddr>().unwrap().to_string(),
            "aa:bb:cc:dd:ee:ff"
        );
        assert!("aa:bb".parse::<MacAddr>().is_err());
        assert_eq!(parse_log_level("alert").unwrap(), 1);
        assert_eq!(parse_log_level("7").unwrap(), 7);
        assert!(parse_log_level("8").is_err());
        assert!(parse_log_level("err").is_err());
        assert!(parse_log_level("Warning").is_err());
    }
}
