//! Typed views of the common match and target extensions.
//!
//! Rules hold their modules generically ([`Match`], [`Target`]: a name and ordered
//! [`Opt`]ions), so any rule iptables accepts can be held. This module reads the common
//! extensions into typed values: [`Match::view`] gives a [`MatchView`] and
//! [`Target::view`] / [`Action::view`] a [`TargetView`]. Values are parsed as iptables
//! parses them on input (ports by number or service name, ICMP type names, rates with any
//! unit spelling…), so a view of a rule and of its canonical form are equal.
//!
//! ```
//! use portcullis_rules::{Family, Match, Opt};
//! use portcullis_rules::view::{MatchView, PortRange};
//!
//! let mut tcp = Match::new("tcp");
//! tcp.opts.push(Opt::new("dport", &["ssh"]));
//! let MatchView::Tcp(t) = tcp.view(Family::V4)? else { unreachable!() };
//! assert_eq!(t.dport.map(|p| p.value), Some(PortRange::single(22)));
//! # Ok::<(), portcullis_rules::ModelError>(())
//! ```

mod values;

use std::net::IpAddr;

pub use self::values::{
    AddrTypes, CtStates, CtStatus, IcmpType, IpRange, MacAddr, MarkMask, PortRange, Rate, RateUnit,
    TcpFlags, TcpFlagsSpec, U32Range, icmp_type_names, parse_log_level, parse_number, parse_port,
    parse_u32, service_name, service_port,
};
use crate::Family;
use crate::addr::{Address, Protocol, split_once_byte};
use crate::error::{ModelError, ModelErrorKind, invalid};
use crate::names::{ChainName, is_target_name};
use crate::rule::{Action, Match, Negatable, Opt, Target};

/// A typed view of one match module.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchView {
    /// `-m tcp`.
    Tcp(TcpMatch),
    /// `-m udp`.
    Udp(UdpMatch),
    /// `-m icmp` (IPv4).
    Icmp(Negatable<IcmpType>),
    /// `-m icmp6` (IPv6).
    Icmp6(Negatable<IcmpType>),
    /// `-m multiport`.
    Multiport(MultiportMatch),
    /// `-m conntrack`.
    Conntrack(ConntrackMatch),
    /// `-m state --state LIST`.
    State(Negatable<CtStates>),
    /// `-m comment --comment TEXT`.
    Comment(String),
    /// `-m limit`.
    Limit(LimitMatch),
    /// `-m iprange`.
    IpRange(IpRangeMatch),
    /// `-m mac --mac-source ADDR`.
    Mac(Negatable<MacAddr>),
    /// `-m owner`.
    Owner(OwnerMatch),
    /// `-m set`.
    Set(SetMatch),
    /// `-m mark --mark V[/M]`.
    Mark(Negatable<MarkMask>),
    /// `-m connmark --mark V[/M]`.
    Connmark(Negatable<MarkMask>),
    /// `-m addrtype`.
    AddrType(AddrTypeMatch),
    /// `-m recent`.
    Recent(RecentMatch),
    /// A module without a typed view; its name.
    Other(String),
}

/// `-m tcp`: ports, flags, option.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpMatch {
    /// `--sport`/`--source-port`.
    pub sport: Option<Negatable<PortRange>>,
    /// `--dport`/`--destination-port`.
    pub dport: Option<Negatable<PortRange>>,
    /// `--tcp-flags MASK COMP` or `--syn`.
    pub flags: Option<Negatable<TcpFlagsSpec>>,
    /// `--tcp-option N`.
    pub option: Option<Negatable<u8>>,
}

/// `-m udp`: ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpMatch {
    /// `--sport`/`--source-port`.
    pub sport: Option<Negatable<PortRange>>,
    /// `--dport`/`--destination-port`.
    pub dport: Option<Negatable<PortRange>>,
}

/// Which ports a multiport match compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MultiportDir {
    /// `--sports`: the source port.
    Source,
    /// `--dports`: the destination port.
    Destination,
    /// `--ports`: either port.
    Either,
}

/// `-m multiport`: up to 15 ports (a range counts two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiportMatch {
    /// Which port is compared.
    pub dir: MultiportDir,
    /// Whether the list is negated.
    pub negated: bool,
    /// The ports and ranges, in order.
    pub ports: Vec<PortRange>,
}

impl MultiportMatch {
    /// Whether a packet with these ports matches (after negation).
    pub fn matches(&self, sport: u16, dport: u16) -> bool {
        let hit = self.ports.iter().any(|r| match self.dir {
            MultiportDir::Source => r.contains(sport),
            MultiportDir::Destination => r.contains(dport),
            MultiportDir::Either => r.contains(sport) || r.contains(dport),
        });
        hit != self.negated
    }
}

/// The direction of `--ctdir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtDir {
    /// `ORIGINAL`.
    Original,
    /// `REPLY`.
    Reply,
}

/// `-m conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConntrackMatch {
    /// `--ctstate`.
    pub state: Option<Negatable<CtStates>>,
    /// `--ctproto` (never 0).
    pub proto: Option<Negatable<Protocol>>,
    /// `--ctorigsrc`.
    pub orig_src: Option<Negatable<Address>>,
    /// `--ctorigdst`.
    pub orig_dst: Option<Negatable<Address>>,
    /// `--ctreplsrc`.
    pub repl_src: Option<Negatable<Address>>,
    /// `--ctrepldst`.
    pub repl_dst: Option<Negatable<Address>>,
    /// `--ctorigsrcport`.
    pub orig_src_port: Option<Negatable<PortRange>>,
    /// `--ctorigdstport`.
    pub orig_dst_port: Option<Negatable<PortRange>>,
    /// `--ctreplsrcport`.
    pub repl_src_port: Option<Negatable<PortRange>>,
    /// `--ctrepldstport`.
    pub repl_dst_port: Option<Negatable<PortRange>>,
    /// `--ctstatus`.
    pub status: Option<Negatable<CtStatus>>,
    /// `--ctexpire` in seconds.
    pub expire: Option<Negatable<U32Range>>,
    /// `--ctdir`.
    pub dir: Option<CtDir>,
}

/// `-m limit`: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitMatch {
    /// `--limit` (default `3/hour`), as the kernel stores it: `201/sec` reads as `204/sec`
    /// (see [`Rate::canonical`]).
    pub rate: Rate,
    /// `--limit-burst` (default 5).
    pub burst: u32,
}

impl LimitMatch {
    /// The default rate, `3/hour`.
    pub const DEFAULT_RATE: Rate = Rate { count: 3, unit: RateUnit::Hour };
    /// The default burst, 5.
    pub const DEFAULT_BURST: u32 = 5;
}

/// `-m iprange`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpRangeMatch {
    /// `--src-range`.
    pub src: Option<Negatable<IpRange>>,
    /// `--dst-range`.
    pub dst: Option<Negatable<IpRange>>,
}

/// `-m owner` (OUTPUT and POSTROUTING only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerMatch {
    /// `--uid-owner`, a user id or range.
    pub uid: Option<Negatable<U32Range>>,
    /// `--gid-owner`, a group id or range.
    pub gid: Option<Negatable<U32Range>>,
    /// `--socket-exists`: `Some(negated)`.
    pub socket_exists: Option<bool>,
    /// `--suppl-groups`.
    pub suppl_groups: bool,
}

/// One direction flag of `--match-set NAME src,dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetDir {
    /// `src`.
    Src,
    /// `dst`.
    Dst,
}

/// `-m set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMatch {
    /// The ipset name.
    pub name: String,
    /// The direction flags, in order.
    pub dirs: Vec<SetDir>,
    /// Whether `--match-set` is negated.
    pub negated: bool,
    /// `--return-nomatch`.
    pub return_nomatch: bool,
    /// Options other than `--match-set` and `--return-nomatch` (counters), as written.
    pub other: Vec<Opt>,
}

/// `-m addrtype`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrTypeMatch {
    /// `--src-type`.
    pub src: Option<Negatable<AddrTypes>>,
    /// `--dst-type`.
    pub dst: Option<Negatable<AddrTypes>>,
    /// `--limit-iface-in`.
    pub limit_iface_in: bool,
    /// `--limit-iface-out`.
    pub limit_iface_out: bool,
}

/// The command of a recent match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecentCommand {
    /// `--set`: add the address.
    Set,
    /// `--rcheck`: check whether the address is in the list.
    Rcheck,
    /// `--update`: check and update the last-seen time.
    Update,
    /// `--remove`: remove the address.
    Remove,
}

impl RecentCommand {
    /// The option name without `--`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Rcheck => "rcheck",
            Self::Update => "update",
            Self::Remove => "remove",
        }
    }
}

/// `-m recent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentMatch {
    /// The command, possibly negated.
    pub command: Negatable<RecentCommand>,
    /// `--seconds`.
    pub seconds: Option<u32>,
    /// `--reap`.
    pub reap: bool,
    /// `--hitcount`.
    pub hitcount: Option<u32>,
    /// `--rttl`.
    pub rttl: bool,
    /// `--name` (default `DEFAULT`).
    pub name: String,
    /// `--mask` (default all ones of the family).
    pub mask: IpAddr,
    /// `--rdest` (else `--rsource`, the default).
    pub rdest: bool,
}

/// A typed view of a rule's action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetView {
    /// `-j ACCEPT`.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j RETURN`.
    Return,
    /// `-j QUEUE`.
    Queue,
    /// `-j REJECT`.
    Reject(RejectWith),
    /// `-j LOG`.
    Log(LogTarget),
    /// `-j DNAT`.
    Dnat(NatTarget),
    /// `-j SNAT`.
    Snat(NatTarget),
    /// `-j MASQUERADE`.
    Masquerade(PortsTarget),
    /// `-j REDIRECT`.
    Redirect(PortsTarget),
    /// `-j MARK`, as `--set-xmark` (every form of MARK reduces to it).
    Mark(MarkMask),
    /// `-j CT`.
    Ct(CtTarget),
    /// `-j NOTRACK`.
    Notrack,
    /// `-j CHAIN`: jump to a user chain.
    Jump(ChainName),
    /// `-g CHAIN`: go to a user chain.
    Goto(ChainName),
    /// A target extension without a typed view; its name.
    Other(String),
}

/// What `-j REJECT` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectWith {
    /// `icmp-net-unreachable`.
    IcmpNetUnreachable,
    /// `icmp-host-unreachable`.
    IcmpHostUnreachable,
    /// `icmp-port-unreachable` (the IPv4 default).
    IcmpPortUnreachable,
    /// `icmp-proto-unreachable`.
    IcmpProtoUnreachable,
    /// `icmp-net-prohibited`.
    IcmpNetProhibited,
    /// `icmp-host-prohibited`.
    IcmpHostProhibited,
    /// `icmp-admin-prohibited`.
    IcmpAdminProhibited,
    /// `icmp6-no-route`.
    Icmp6NoRoute,
    /// `icmp6-adm-prohibited`.
    Icmp6AdmProhibited,
    /// `icmp6-addr-unreachable`.
    Icmp6AddrUnreachable,
    /// `icmp6-port-unreachable` (the IPv6 default).
    Icmp6PortUnreachable,
    /// `icmp6-policy-fail`.
    Icmp6PolicyFail,
    /// `icmp6-reject-route`.
    Icmp6RejectRoute,
    /// `tcp-reset` (needs `-p tcp`).
    TcpReset,
}

/// `(saved name, alias, value)` in libipt_REJECT's table order.
const REJECT_V4: &[(&str, &str, RejectWith)] = &[
    ("icmp-net-unreachable", "net-unreach", RejectWith::IcmpNetUnreachable),
    ("icmp-host-unreachable", "host-unreach", RejectWith::IcmpHostUnreachable),
    ("icmp-proto-unreachable", "proto-unreach", RejectWith::IcmpProtoUnreachable),
    ("icmp-port-unreachable", "port-unreach", RejectWith::IcmpPortUnreachable),
    ("icmp-net-prohibited", "net-prohib", RejectWith::IcmpNetProhibited),
    ("icmp-host-prohibited", "host-prohib", RejectWith::IcmpHostProhibited),
    ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
    ("icmp-admin-prohibited", "admin-prohib", RejectWith::IcmpAdminProhibited),
];

/// libip6t_REJECT's table.
const REJECT_V6: &[(&str, &str, RejectWith)] = &[
    ("icmp6-no-route", "no-route", RejectWith::Icmp6NoRoute),
    ("icmp6-adm-prohibited", "adm-prohibited", RejectWith::Icmp6AdmProhibited),
    ("icmp6-addr-unreachable", "addr-unreach", RejectWith::Icmp6AddrUnreachable),
    ("icmp6-port-unreachable", "port-unreach", RejectWith::Icmp6PortUnreachable),
    ("tcp-reset", "tcp-reset", RejectWith::TcpReset),
    ("icmp6-policy-fail", "policy-fail", RejectWith::Icmp6PolicyFail),
    ("icmp6-reject-route", "reject-route", RejectWith::Icmp6RejectRoute),
];

impl RejectWith {
    /// The default of `family`.
    pub fn default_for(family: Family) -> Self {
        match family {
            Family::V4 => Self::IcmpPortUnreachable,
            Family::V6 => Self::Icmp6PortUnreachable,
        }
    }

    /// Parses a `--reject-with` value for `family` as iptables does: a name or alias,
    /// case-insensitive, or a prefix of one (first in table order wins).
    pub fn parse(s: &str, family: Family) -> Result<Self, ModelError> {
        let table = match family {
            Family::V4 => REJECT_V4,
            Family::V6 => REJECT_V6,
        };
        let pre = |full: &str| {
            !s.is_empty() && full.len() >= s.len() && full[..s.len()].eq_ignore_ascii_case(s)
        };
        table
            .iter()
            .find(|(name, alias, _)| pre(name) || pre(alias))
            .map(|(_, _, w)| *w)
            .ok_or_else(|| invalid("--reject-with", s, "a reject type of the family"))
    }

    /// The name iptables-save prints.
    pub fn as_str(self) -> &'static str {
        REJECT_V4
            .iter()
            .chain(REJECT_V6)
            .find(|(_, _, w)| *w == self)
            .map_or("tcp-reset", |(name, _, _)| *name)
    }

    /// The family this reply exists in (`None` for `tcp-reset`, which exists in both).
    pub fn family(self) -> Option<Family> {
        if self == Self::TcpReset {
            None
        } else if REJECT_V4.iter().any(|(_, _, w)| *w == self) {
            Some(Family::V4)
        } else {
            Some(Family::V6)
        }
    }
}

/// `-j LOG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// `--log-level`, 0 to 7 (default 4, warning).
    pub level: u8,
    /// `--log-prefix`, at most 29 bytes (iptables cuts a longer prefix).
    pub prefix: Option<String>,
    /// `--log-tcp-sequence`.
    pub tcp_sequence: bool,
    /// `--log-tcp-options`.
    pub tcp_options: bool,
    /// `--log-ip-options`.
    pub ip_options: bool,
    /// `--log-uid`.
    pub uid: bool,
    /// `--log-macdecode`.
    pub macdecode: bool,
}

impl LogTarget {
    /// The longest prefix, in bytes.
    pub const MAX_PREFIX: usize = 29;
}

/// One address/port range of DNAT or SNAT: `[ADDR[-ADDR]][:PORT[-PORT][/BASE]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatRange {
    /// The address range, when given.
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// The port range, when given.
    pub ports: Option<PortRange>,
    /// The base port of a shifted port range (`/BASE`).
    pub base: Option<u16>,
}

impl NatRange {
    /// Parses a `--to-destination`/`--to-source` value of `family` (IPv6 addresses may be
    /// bracketed: `[2001:db8::1]:80`); ports as numbers or service names.
    pub fn parse(s: &str, option: &str, family: Family) -> Result<Self, ModelError> {
        let bad = || invalid(option, s, "[ADDR[-ADDR]][:PORT[-PORT][/BASE]]");
        let (addr_part, port_part) = match family {
            Family::V4 => match split_once_byte(s, b':') {
                Some((a, p)) => (a, Some(p)),
                None => (s, None),
            },
            Family::V6 => {
                if let Some(rest) = s.strip_prefix('[') {
                    let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
                    // `[a]-[b]:p` or `[a-b]:p`
                    let (inner, after) = match after.strip_prefix("-[") {
                        Some(r) => {
                            let (hi, after2) = r.split_once(']').ok_or_else(bad)?;
                            (format!("{inner}-{hi}"), after2)
                        }
                        None => (inner.to_owned(), after),
                    };
                    let port = match after.strip_prefix(':') {
                        Some(p) => Some(p),
                        None if after.is_empty() => None,
                        None => return Err(bad()),
                    };
                    return Self::build(&inner, port, option, family, s);
                }
                (s, None)
            }
        };
        Self::build(addr_part, port_part, option, family, s)
    }

    fn build(
        addr: &str,
        port: Option<&str>,
        option: &str,
        family: Family,
        whole: &str,
    ) -> Result<Self, ModelError> {
        let bad = || invalid(option, whole, "[ADDR[-ADDR]][:PORT[-PORT][/BASE]]");
        let addrs = if addr.is_empty() {
            None
        } else {
            let r = IpRange::parse(addr, option, family).map_err(|_| bad())?;
            Some((r.lo, r.hi))
        };
        let (ports, base) = match port {
            None => (None, None),
            Some(p) => {
                let (range, base) = match split_once_byte(p, b'/') {
                    Some((r, b)) => {
                        (r, Some(parse_port(b).ok().filter(|b| *b > 0).ok_or_else(bad)?))
                    }
                    None => (p, None),
                };
                (Some(PortRange::parse_with(range, '-')?), base)
            }
        };
        if addrs.is_none() && ports.is_none() {
            return Err(bad());
        }
        Ok(Self { addrs, ports, base })
    }

    /// The saved text for `family`.
    pub fn saved(&self, family: Family) -> String {
        let mut out = String::new();
        let v6 = family == Family::V6;
        let bracket = v6 && self.ports.is_some();
        if let Some((lo, hi)) = self.addrs {
            if bracket {
                out.push('[');
            }
            out.push_str(&lo.to_string());
            if hi != lo {
                out.push('-');
                out.push_str(&hi.to_string());
            }
            if bracket {
                out.push(']');
            }
        }
        if let Some(p) = self.ports {
            out.push(':');
            out.push_str(&p.lo.to_string());
            if p.hi != p.lo {
                out.push('-');
                out.push_str(&p.hi.to_string());
            }
            if let Some(b) = self.base {
                out.push('/');
                out.push_str(&b.to_string());
            }
        }
        out
    }
}

/// `-j DNAT` / `-j SNAT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatTarget {
    /// The `--to-destination`/`--to-source` range (iptables 1.8 takes exactly one).
    pub to: Vec<NatRange>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully`.
    pub random_fully: bool,
    /// `--persistent`.
    pub persistent: bool,
}

/// `-j MASQUERADE` / `-j REDIRECT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortsTarget {
    /// `--to-ports P[-P]`.
    pub ports: Option<PortRange>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully`.
    pub random_fully: bool,
}

/// `-j CT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CtTarget {
    /// `--notrack`.
    pub notrack: bool,
    /// `--helper NAME`.
    pub helper: Option<String>,
    /// `--timeout NAME`.
    pub timeout: Option<String>,
    /// `--ctevents LIST`.
    pub ctevents: Option<String>,
    /// `--expevents LIST`.
    pub expevents: Option<String>,
    /// `--zone`, `--zone-orig` or `--zone-reply` with its value (`mark` or a number).
    pub zone: Option<(String, String)>,
}

impl MarkMask {
    /// Applies a MARK target (`--set-xmark value/mask`) to a packet mark, as the kernel
    /// does: `(mark & !mask) ^ value`.
    pub fn apply(self, mark: u32) -> u32 {
        (mark & !self.mask) ^ self.value
    }

    /// Whether a mark matches a mark match (`mark & mask == value`, before `!`).
    pub fn matches(self, mark: u32) -> bool {
        mark & self.mask == self.value
    }
}

// ---------------------------------------------------------------------------------------
// Option names

/// The options of the conntrack match, in save order.
pub(crate) const CONNTRACK_OPTIONS: &[&str] = &[
    "ctstate",
    "ctproto",
    "ctorigsrc",
    "ctorigdst",
    "ctreplsrc",
    "ctrepldst",
    "ctorigsrcport",
    "ctorigdstport",
    "ctreplsrcport",
    "ctrepldstport",
    "ctstatus",
    "ctexpire",
    "ctdir",
];

/// The options of the match modules with a typed view, and of the modules only the
/// canonical form reads; the other known modules are in the validation specs.
const MATCH_OPTIONS: &[(&str, &[&str])] = &[
    (
        "tcp",
        &["sport", "source-port", "dport", "destination-port", "syn", "tcp-flags", "tcp-option"],
    ),
    ("udp", &["sport", "source-port", "dport", "destination-port"]),
    ("udplite", &["sport", "source-port", "dport", "destination-port"]),
    ("icmp", &["icmp-type"]),
    ("icmp6", &["icmpv6-type"]),
    ("multiport", &["sports", "source-ports", "dports", "destination-ports", "ports"]),
    ("conntrack", CONNTRACK_OPTIONS),
    ("state", &["state"]),
    ("comment", &["comment"]),
    ("limit", &["limit", "limit-burst"]),
    ("iprange", &["src-range", "dst-range"]),
    ("mac", &["mac-source"]),
    ("owner", &["uid-owner", "gid-owner", "socket-exists", "suppl-groups"]),
    (
        "set",
        &[
            "match-set",
            "set",
            "return-nomatch",
            "update-counters",
            "update-subcounters",
            "packets-eq",
            "packets-lt",
            "packets-gt",
            "bytes-eq",
            "bytes-lt",
            "bytes-gt",
        ],
    ),
    ("mark", &["mark"]),
    ("connmark", &["mark"]),
    ("addrtype", &["src-type", "dst-type", "limit-iface-in", "limit-iface-out"]),
    (
        "recent",
        &[
            "set", "rcheck", "update", "remove", "seconds", "reap", "hitcount", "rttl", "name",
            "mask", "rsource", "rdest",
        ],
    ),
    (
        "time",
        &[
            "timestart",
            "timestop",
            "monthdays",
            "weekdays",
            "datestart",
            "datestop",
            "kerneltz",
            "localtz",
            "utc",
            "contiguous",
        ],
    ),
    ("u32", &["u32"]),
    ("devgroup", &["src-group", "dst-group"]),
    ("ipv6header", &["header", "soft"]),
    (
        "policy",
        &[
            "dir",
            "pol",
            "strict",
            "reqid",
            "spi",
            "proto",
            "mode",
            "tunnel-src",
            "tunnel-dst",
            "next",
        ],
    ),
];

/// Whether the match module `module` takes the option `option` (long name without
/// `--`); `None` when portcullis does not know the module. A parser uses it to decide
/// whether an option after `-m module` belongs to that module or to the implicit
/// protocol match (`-p udp -m length --length 0:100 --dport 161`).
pub fn match_takes_option(module: &str, option: &str) -> Option<bool> {
    match MATCH_OPTIONS.iter().find(|(m, _)| *m == module) {
        Some((_, opts)) => Some(opts.contains(&option)),
        None => crate::validate::spec_takes_option(module, option),
    }
}

/// Whether target `target` takes option `option` (no leading `--`): `Some(true|false)`
/// for targets the model knows, `None` for others (an unknown extension, or a user chain,
/// which takes no option at all).
///
/// ```
/// use portcullis_rules::view::target_takes_option;
/// assert_eq!(target_takes_option("LOG", "log-prefix"), Some(true));
/// assert_eq!(target_takes_option("ACCEPT", "log-prefix"), Some(false));
/// assert_eq!(target_takes_option("KUBE-SVC-X", "hitcount"), None);
/// ```
pub fn target_takes_option(target: &str, option: &str) -> Option<bool> {
    let typed: &[&str] = match target {
        "ACCEPT" | "DROP" | "RETURN" | "QUEUE" | "NOTRACK" => &[],
        "REJECT" => &["reject-with"],
        "LOG" => &[
            "log-level",
            "log-prefix",
            "log-tcp-sequence",
            "log-tcp-options",
            "log-ip-options",
            "log-uid",
            "log-macdecode",
        ],
        "DNAT" => &["to-destination", "to", "random", "persistent", "random-fully"],
        "SNAT" => &["to-source", "to", "random", "random-fully", "persistent"],
        "MASQUERADE" | "REDIRECT" => &["to-ports", "random", "random-fully"],
        "MARK" => &["set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"],
        _ => return crate::validate::spec_target_takes_option(target, option),
    };
    Some(typed.contains(&option))
}

// ---------------------------------------------------------------------------------------
// Option helpers

fn unknown(module: &str, o: &Opt) -> ModelError {
    ModelError::new(ModelErrorKind::InvalidValue {
        option: format!("module {module}"),
        value: format!("--{}", o.name),
        expected: "an option of that module",
    })
}

fn twice(module: &str, name: &str) -> ModelError {
    ModelError::new(ModelErrorKind::Conflict(format!("--{name} given twice in {module}")))
}

fn missing(module: &str, what: &'static str) -> ModelError {
    ModelError::new(ModelErrorKind::MissingOption { module: module.to_owned(), what })
}

/// The single argument of `o`.
fn one(o: &Opt) -> Result<&str, ModelError> {
    match o.args.as_slice() {
        [a] => Ok(a),
        _ => Err(invalid(&format!("--{}", o.name), &o.args.join(" "), "exactly one argument")),
    }
}

/// `o` must take no argument.
fn flag(o: &Opt) -> Result<(), ModelError> {
    if o.args.is_empty() {
        Ok(())
    } else {
        Err(invalid(&format!("--{}", o.name), &o.args.join(" "), "no argument"))
    }
}

/// `o` must not be negated.
fn plain(o: &Opt) -> Result<(), ModelError> {
    if o.negated {
        Err(invalid(&format!("--{}", o.name), "!", "an option that cannot be negated"))
    } else {
        Ok(())
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T, module: &str, name: &str) -> Result<(), ModelError> {
    if slot.is_some() {
        return Err(twice(module, name));
    }
    *slot = Some(v);
    Ok(())
}

fn neg<T>(o: &Opt, value: T) -> Negatable<T> {
    Negatable { negated: o.negated, value }
}

fn ports(o: &Opt) -> Result<Negatable<PortRange>, ModelError> {
    let s = one(o)?;
    let r = PortRange::parse_with(s, ':').map_err(|e| rename(e, &o.name, s))?;
    Ok(neg(o, r))
}

/// Puts the option name into a value error from a generic parser.
fn rename(mut e: ModelError, name: &str, value: &str) -> ModelError {
    match &mut e.kind {
        ModelErrorKind::InvalidValue { option, .. }
        | ModelErrorKind::InvertedRange { option, .. } => {
            *option = format!("--{name}");
        }
        _ => {}
    }
    if let ModelErrorKind::InvalidValue { value: v, .. } = &mut e.kind {
        *v = value.to_owned();
    }
    e
}

fn address(o: &Opt, family: Family) -> Result<Negatable<Address>, ModelError> {
    let s = one(o)?;
    let a: Address = s.parse().map_err(|e| rename(e, &o.name, s))?;
    if a.family().is_some_and(|f| f != family) {
        return Err(ModelError::new(ModelErrorKind::WrongFamily(format!("--{} {s}", o.name))));
    }
    Ok(neg(o, a))
}

fn u32_arg(o: &Opt) -> Result<u32, ModelError> {
    let s = one(o)?;
    parse_u32(s).ok_or_else(|| invalid(&format!("--{}", o.name), s, "a number up to 4294967295"))
}

fn full_mask(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(u128::MAX)),
    }
}

/// User and group names portcullis resolves without the system databases.
const IDS: &[(&str, u32)] = &[("root", 0), ("nobody", 65534), ("nogroup", 65534)];

fn id_range(o: &Opt) -> Result<Negatable<U32Range>, ModelError> {
    let s = one(o)?;
    if let Some((_, id)) = IDS.iter().find(|(n, _)| *n == s) {
        return Ok(neg(o, U32Range { lo: *id, hi: *id }));
    }
    let sep = if s.contains('-') { '-' } else { ':' };
    let r = U32Range::parse_with(s, sep).map_err(|e| rename(e, &o.name, s))?;
    Ok(neg(o, r))
}

// ---------------------------------------------------------------------------------------
// Matches

impl Match {
    /// A typed view of this match for a ruleset of `family`; [`MatchView::Other`] for a
    /// module without one. Fails when an option is unknown, repeated, misses its value or
    /// has a value iptables refuses.
    pub fn view(&self, family: Family) -> Result<MatchView, ModelError> {
        let m = self.name.as_str();
        Ok(match m {
            "tcp" => MatchView::Tcp(tcp(self)?),
            "udp" => MatchView::Udp(udp(self)?),
            "icmp" | "icmp6" | "icmpv6" => {
                let (opt, fam) = if m == "icmp" {
                    ("icmp-type", Family::V4)
                } else {
                    ("icmpv6-type", Family::V6)
                };
                let mut t = None;
                for o in &self.opts {
                    if o.name != opt {
                        return Err(unknown(m, o));
                    }
                    let s = one(o)?;
                    set_once(&mut t, neg(o, IcmpType::parse(s, fam)?), m, &o.name)?;
                }
                let t = t.ok_or_else(|| missing(m, "a type option"))?;
                if fam == Family::V4 { MatchView::Icmp(t) } else { MatchView::Icmp6(t) }
            }
            "multiport" => MatchView::Multiport(multiport(self)?),
            "conntrack" => MatchView::Conntrack(conntrack(self, family)?),
            "state" => {
                let mut st = None;
                for o in &self.opts {
                    if o.name != "state" {
                        return Err(unknown(m, o));
                    }
                    let s = one(o)?;
                    let states = s.parse::<CtStates>().map_err(|e| rename(e, "state", s))?;
                    if states.0 & (CtStates::SNAT.0 | CtStates::DNAT.0) != 0 {
                        return Err(invalid(
                            "--state",
                            s,
                            "a comma list of INVALID, NEW, RELATED, ESTABLISHED, UNTRACKED",
                        ));
                    }
                    set_once(&mut st, neg(o, states), m, "state")?;
                }
                MatchView::State(st.ok_or_else(|| missing(m, "--state"))?)
            }
            "comment" => {
                let mut c = None;
                for o in &self.opts {
                    if o.name != "comment" {
                        return Err(unknown(m, o));
                    }
                    plain(o)?;
                    let s = one(o)?;
                    if s.len() > 255 {
                        return Err(invalid("--comment", s, "at most 255 bytes"));
                    }
                    set_once(&mut c, s.to_owned(), m, "comment")?;
                }
                MatchView::Comment(c.ok_or_else(|| missing(m, "--comment"))?)
            }
            "limit" => MatchView::Limit(limit(self)?),
            "iprange" => {
                let mut v = IpRangeMatch::default();
                for o in &self.opts {
                    let slot = match o.name.as_str() {
                        "src-range" => &mut v.src,
                        "dst-range" => &mut v.dst,
                        _ => return Err(unknown(m, o)),
                    };
                    let s = one(o)?;
                    let r = IpRange::parse(s, &format!("--{}", o.name), family)?;
                    set_once(slot, neg(o, r), m, &o.name)?;
                }
                if v.src.is_none() && v.dst.is_none() {
                    return Err(missing(m, "--src-range or --dst-range"));
                }
                MatchView::IpRange(v)
            }
            "mac" => {
                let mut v = None;
                for o in &self.opts {
                    if o.name != "mac-source" {
                        return Err(unknown(m, o));
                    }
                    set_once(&mut v, neg(o, one(o)?.parse::<MacAddr>()?), m, "mac-source")?;
                }
                MatchView::Mac(v.ok_or_else(|| missing(m, "--mac-source"))?)
            }
            "owner" => MatchView::Owner(owner(self)?),
            "set" => MatchView::Set(set(self)?),
            "mark" | "connmark" => {
                let mut v = None;
                for o in &self.opts {
                    if o.name != "mark" {
                        return Err(unknown(m, o));
                    }
                    set_once(&mut v, neg(o, MarkMask::parse(one(o)?, "--mark")?), m, "mark")?;
                }
                let v = v.ok_or_else(|| missing(m, "--mark"))?;
                if m == "mark" { MatchView::Mark(v) } else { MatchView::Connmark(v) }
            }
            "addrtype" => MatchView::AddrType(addrtype(self)?),
            "recent" => MatchView::Recent(recent(self, family)?),
            other => MatchView::Other(other.to_owned()),
        })
    }
}

fn tcp(m: &Match) -> Result<TcpMatch, ModelError> {
    let mut v = TcpMatch::default();
    for o in &m.opts {
        match o.name.as_str() {
            "sport" | "source-port" => set_once(&mut v.sport, ports(o)?, "tcp", "sport")?,
            "dport" | "destination-port" => set_once(&mut v.dport, ports(o)?, "tcp", "dport")?,
            "syn" => {
                flag(o)?;
                set_once(&mut v.flags, neg(o, TcpFlagsSpec::SYN), "tcp", "tcp-flags")?;
            }
            "tcp-flags" => {
                let [mask, comp] = o.args.as_slice() else {
                    return Err(invalid("--tcp-flags", &o.args.join(" "), "MASK COMP"));
                };
                let spec = TcpFlagsSpec { mask: mask.parse()?, comp: comp.parse()? };
                set_once(&mut v.flags, neg(o, spec), "tcp", "tcp-flags")?;
            }
            "tcp-option" => {
                let s = one(o)?;
                let n = parse_number(s, 255)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| invalid("--tcp-option", s, "a number from 0 to 255"))?;
                set_once(&mut v.option, neg(o, n), "tcp", "tcp-option")?;
            }
            _ => return Err(unknown("tcp", o)),
        }
    }
    Ok(v)
}

fn udp(m: &Match) -> Result<UdpMatch, ModelError> {
    let mut v = UdpMatch::default();
    for o in &m.opts {
        match o.name.as_str() {
            "sport" | "source-port" => set_once(&mut v.sport, ports(o)?, "udp", "sport")?,
            "dport" | "destination-port" => set_once(&mut v.dport, ports(o)?, "udp", "dport")?,
            _ => return Err(unknown("udp", o)),
        }
    }
    Ok(v)
}

/// Parses a multiport list: ports and `A:B` ranges with `A < B`, at most 15 slots.
pub fn parse_multiport_list(s: &str) -> Result<Vec<PortRange>, ModelError> {
    let mut out = Vec::new();
    let mut slots = 0usize;
    for part in s.split(',') {
        let r = match part.split_once(':') {
            Some((a, b)) => {
                let lo = parse_port(a).map_err(|e| rename(e, "ports", s))?;
                let hi = parse_port(b).map_err(|e| rename(e, "ports", s))?;
                if lo >= hi {
                    return Err(ModelError::new(ModelErrorKind::InvertedRange {
                        option: "--ports".into(),
                        value: part.to_owned(),
                    }));
                }
                slots += 2;
                PortRange { lo, hi }
            }
            None => {
                slots += 1;
                PortRange::single(parse_port(part).map_err(|e| rename(e, "ports", s))?)
            }
        };
        out.push(r);
    }
    if slots > 15 {
        return Err(invalid("--ports", s, "at most 15 ports (a range counts two)"));
    }
    Ok(out)
}

fn multiport(m: &Match) -> Result<MultiportMatch, ModelError> {
    let mut v: Option<MultiportMatch> = None;
    for o in &m.opts {
        let dir = match o.name.as_str() {
            "sports" | "source-ports" => MultiportDir::Source,
            "dports" | "destination-ports" => MultiportDir::Destination,
            "ports" => MultiportDir::Either,
            _ => return Err(unknown("multiport", o)),
        };
        let ports = parse_multiport_list(one(o)?)?;
        set_once(&mut v, MultiportMatch { dir, negated: o.negated, ports }, "multiport", "ports")?;
    }
    v.ok_or_else(|| missing("multiport", "--sports, --dports or --ports"))
}

fn conntrack(m: &Match, family: Family) -> Result<ConntrackMatch, ModelError> {
    let mut v = ConntrackMatch::default();
    let n = "conntrack";
    for o in &m.opts {
        match o.name.as_str() {
            "ctstate" => {
                let s = one(o)?;
                set_once(&mut v.state, neg(o, s.parse::<CtStates>()?), n, &o.name)?;
            }
            "ctproto" => {
                let s = one(o)?;
                let p: Protocol = s.parse().map_err(|e| rename(e, "ctproto", s))?;
                if p == Protocol::Number(0) {
                    return Err(invalid("--ctproto", s, "a protocol other than 0"));
                }
                set_once(&mut v.proto, neg(o, p), n, &o.name)?;
            }
            "ctorigsrc" => set_once(&mut v.orig_src, address(o, family)?, n, &o.name)?,
            "ctorigdst" => set_once(&mut v.orig_dst, address(o, family)?, n, &o.name)?,
            "ctreplsrc" => set_once(&mut v.repl_src, address(o, family)?, n, &o.name)?,
            "ctrepldst" => set_once(&mut v.repl_dst, address(o, family)?, n, &o.name)?,
            "ctorigsrcport" => set_once(&mut v.orig_src_port, ports(o)?, n, &o.name)?,
            "ctorigdstport" => set_once(&mut v.orig_dst_port, ports(o)?, n, &o.name)?,
            "ctreplsrcport" => set_once(&mut v.repl_src_port, ports(o)?, n, &o.name)?,
            "ctrepldstport" => set_once(&mut v.repl_dst_port, ports(o)?, n, &o.name)?,
            "ctstatus" => {
                let s = one(o)?;
                set_once(&mut v.status, neg(o, CtStatus::parse(s)?), n, &o.name)?;
            }
            "ctexpire" => {
                let s = one(o)?;
                let r = U32Range::parse_with(s, ':').map_err(|e| rename(e, "ctexpire", s))?;
                set_once(&mut v.expire, neg(o, r), n, &o.name)?;
            }
            "ctdir" => {
                plain(o)?;
                let s = one(o)?;
                let d = if s.eq_ignore_ascii_case("ORIGINAL") {
                    CtDir::Original
                } else if s.eq_ignore_ascii_case("REPLY") {
                    CtDir::Reply
                } else {
                    return Err(invalid("--ctdir", s, "ORIGINAL or REPLY"));
                };
                set_once(&mut v.dir, d, n, &o.name)?;
            }
            _ => return Err(unknown(n, o)),
        }
    }
    if v == ConntrackMatch::default() {
        return Err(missing(n, "at least one option"));
    }
    Ok(v)
}

fn limit(m: &Match) -> Result<LimitMatch, ModelError> {
    let (mut rate, mut burst) = (None, None);
    for o in &m.opts {
        plain(o)?;
        match o.name.as_str() {
            "limit" => set_once(&mut rate, Rate::parse(one(o)?)?, "limit", "limit")?,
            "limit-burst" => {
                let s = one(o)?;
                let b = parse_u32(s)
                    .filter(|b| (1..=10000).contains(b))
                    .ok_or_else(|| invalid("--limit-burst", s, "a number from 1 to 10000"))?;
                set_once(&mut burst, b, "limit", "limit-burst")?;
            }
            _ => return Err(unknown("limit", o)),
        }
    }
    Ok(LimitMatch {
        rate: rate.map_or(LimitMatch::DEFAULT_RATE, Rate::canonical),
        burst: burst.unwrap_or(LimitMatch::DEFAULT_BURST),
    })
}

fn owner(m: &Match) -> Result<OwnerMatch, ModelError> {
    let mut v = OwnerMatch::default();
    for o in &m.opts {
        match o.name.as_str() {
            "uid-owner" => set_once(&mut v.uid, id_range(o)?, "owner", &o.name)?,
            "gid-owner" => set_once(&mut v.gid, id_range(o)?, "owner", &o.name)?,
            "socket-exists" => {
                flag(o)?;
                set_once(&mut v.socket_exists, o.negated, "owner", &o.name)?;
            }
            "suppl-groups" => {
                flag(o)?;
                plain(o)?;
                if v.gid.is_none() {
                    return Err(missing("owner --suppl-groups", "--gid-owner before it"));
                }
                v.suppl_groups = true;
            }
            _ => return Err(unknown("owner", o)),
        }
    }
    if v == OwnerMatch::default() {
        return Err(missing("owner", "at least one option"));
    }
    Ok(v)
}

fn set(m: &Match) -> Result<SetMatch, ModelError> {
    let mut v: Option<SetMatch> = None;
    let mut return_nomatch = false;
    let mut other = Vec::new();
    for o in &m.opts {
        match o.name.as_str() {
            "match-set" | "set" => {
                let [name, dirs] = o.args.as_slice() else {
                    return Err(invalid("--match-set", &o.args.join(" "), "NAME src|dst[,…]"));
                };
                let dirs = dirs
                    .split(',')
                    .map(|d| match d {
                        "src" => Ok(SetDir::Src),
                        "dst" => Ok(SetDir::Dst),
                        _ => Err(invalid("--match-set", dirs, "a comma list of src and dst")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if dirs.len() > 6 {
                    return Err(invalid("--match-set", &o.args[1], "at most 6 directions"));
                }
                let sm = SetMatch {
                    name: name.clone(),
                    dirs,
                    negated: o.negated,
                    return_nomatch: false,
                    other: Vec::new(),
                };
                set_once(&mut v, sm, "set", "match-set")?;
            }
            "return-nomatch" => {
                flag(o)?;
                return_nomatch = true;
            }
            _ => other.push(o.clone()),
        }
    }
    let mut v = v.ok_or_else(|| missing("set", "--match-set"))?;
    v.return_nomatch = return_nomatch;
    v.other = other;
    Ok(v)
}

fn addrtype(m: &Match) -> Result<AddrTypeMatch, ModelError> {
    let mut v = AddrTypeMatch::default();
    for o in &m.opts {
        match o.name.as_str() {
            "src-type" | "dst-type" => {
                let s = one(o)?;
                let t: AddrTypes = s.parse().map_err(|e| rename(e, &o.name, s))?;
                let slot = if o.name == "src-type" { &mut v.src } else { &mut v.dst };
                set_once(slot, neg(o, t), "addrtype", &o.name)?;
            }
            "limit-iface-in" => {
                flag(o)?;
                v.limit_iface_in = true;
            }
            "limit-iface-out" => {
                flag(o)?;
                v.limit_iface_out = true;
            }
            _ => return Err(unknown("addrtype", o)),
        }
    }
    if v.src.is_none() && v.dst.is_none() {
        return Err(missing("addrtype", "--src-type or --dst-type"));
    }
    if v.limit_iface_in && v.limit_iface_out {
        return Err(ModelError::new(ModelErrorKind::Conflict(
            "--limit-iface-in and --limit-iface-out".into(),
        )));
    }
    Ok(v)
}

fn recent(m: &Match, family: Family) -> Result<RecentMatch, ModelError> {
    let mut command = None;
    let (mut seconds, mut hitcount, mut name, mut mask, mut side) = (None, None, None, None, None);
    let (mut reap, mut rttl) = (false, false);
    for o in &m.opts {
        match o.name.as_str() {
            "set" | "rcheck" | "update" | "remove" => {
                flag(o)?;
                let c = match o.name.as_str() {
                    "set" => RecentCommand::Set,
                    "rcheck" => RecentCommand::Rcheck,
                    "update" => RecentCommand::Update,
                    _ => RecentCommand::Remove,
                };
                set_once(&mut command, neg(o, c), "recent", "set/--rcheck/--update/--remove")?;
            }
            "seconds" => {
                let n = u32_arg(o)?;
                if n == 0 {
                    return Err(invalid("--seconds", "0", "at least 1 second"));
                }
                set_once(&mut seconds, n, "recent", "seconds")?;
            }
            "hitcount" => {
                let h = u32_arg(o)?;
                if h > 65535 {
                    return Err(invalid("--hitcount", &h.to_string(), "a count up to 65535"));
                }
                set_once(&mut hitcount, h, "recent", "hitcount")?;
            }
            "reap" => {
                flag(o)?;
                reap = true;
            }
            "rttl" => {
                flag(o)?;
                rttl = true;
            }
            "name" => set_once(&mut name, one(o)?.to_owned(), "recent", "name")?,
            "mask" => {
                let s = one(o)?;
                let ip: IpAddr = s
                    .parse()
                    .ok()
                    .filter(|ip: &IpAddr| ip.is_ipv4() == (family == Family::V4))
                    .ok_or_else(|| invalid("--mask", s, "an address mask of the family"))?;
                set_once(&mut mask, ip, "recent", "mask")?;
            }
            "rsource" | "rdest" => {
                flag(o)?;
                // The last of --rsource/--rdest wins (observed).
                side = Some(o.name == "rdest");
            }
            _ => return Err(unknown("recent", o)),
        }
    }
    let command =
        command.ok_or_else(|| missing("recent", "--set, --rcheck, --update or --remove"))?;
    if (seconds.is_some() || hitcount.is_some() || rttl)
        && matches!(command.value, RecentCommand::Set | RecentCommand::Remove)
    {
        return Err(ModelError::new(ModelErrorKind::Conflict(
            "--seconds, --hitcount and --rttl need --rcheck or --update".into(),
        )));
    }
    if reap && seconds.is_none() {
        return Err(missing("recent", "--seconds with --reap"));
    }
    Ok(RecentMatch {
        command,
        seconds,
        reap,
        hitcount,
        rttl,
        name: name.unwrap_or_else(|| "DEFAULT".to_owned()),
        mask: mask.unwrap_or_else(|| full_mask(family)),
        rdest: side.unwrap_or(false),
    })
}

// ---------------------------------------------------------------------------------------
// Targets

impl Target {
    /// A typed view of this target for a ruleset of `family`. `is_chain` says whether a
    /// name that is not a known target extension is a user chain (use
    /// [`crate::Table::has_chain`]); such a name gives [`TargetView::Jump`], any other
    /// unknown name [`TargetView::Other`].
    pub fn view(
        &self,
        family: Family,
        is_chain: impl Fn(&str) -> bool,
    ) -> Result<TargetView, ModelError> {
        let t = self.name.as_str();
        let no_opts = |v: TargetView| {
            if let Some(o) = self.opts.first() { Err(unknown(t, o)) } else { Ok(v) }
        };
        match t {
            "ACCEPT" => no_opts(TargetView::Accept),
            "DROP" => no_opts(TargetView::Drop),
            "RETURN" => no_opts(TargetView::Return),
            "QUEUE" => no_opts(TargetView::Queue),
            "NOTRACK" => no_opts(TargetView::Notrack),
            "REJECT" => {
                let mut with = None;
                for o in &self.opts {
                    if o.name != "reject-with" {
                        return Err(unknown(t, o));
                    }
                    plain(o)?;
                    set_once(&mut with, RejectWith::parse(one(o)?, family)?, t, "reject-with")?;
                }
                Ok(TargetView::Reject(with.unwrap_or_else(|| RejectWith::default_for(family))))
            }
            "LOG" => log(self).map(TargetView::Log),
            "DNAT" | "SNAT" => {
                let to_name = if t == "DNAT" { "to-destination" } else { "to-source" };
                let mut v = NatTarget::default();
                for o in &self.opts {
                    plain(o)?;
                    match o.name.as_str() {
                        n if n == to_name || n == "to" => {
                            let opt = if t == "DNAT" { "--to-destination" } else { "--to-source" };
                            if !v.to.is_empty() {
                                return Err(twice(t, to_name));
                            }
                            v.to.push(NatRange::parse(one(o)?, opt, family)?);
                        }
                        "random" => flag(o).map(|()| v.random = true)?,
                        "random-fully" => flag(o).map(|()| v.random_fully = true)?,
                        "persistent" => flag(o).map(|()| v.persistent = true)?,
                        _ => return Err(unknown(t, o)),
                    }
                }
                if v.to.is_empty() {
                    return Err(missing(t, "--to-destination or --to-source"));
                }
                if t == "DNAT" && v.random_fully {
                    return Err(invalid("--random-fully", "", "an option of SNAT, not DNAT"));
                }
                if t == "DNAT" { Ok(TargetView::Dnat(v)) } else { Ok(TargetView::Snat(v)) }
            }
            "MASQUERADE" | "REDIRECT" => {
                let mut v = PortsTarget::default();
                for o in &self.opts {
                    plain(o)?;
                    match o.name.as_str() {
                        "to-ports" => {
                            let s = one(o)?;
                            let r = PortRange::parse_with(s, '-')
                                .map_err(|e| rename(e, "to-ports", s))?;
                            set_once(&mut v.ports, r, t, "to-ports")?;
                        }
                        "random" => flag(o).map(|()| v.random = true)?,
                        "random-fully" => flag(o).map(|()| v.random_fully = true)?,
                        _ => return Err(unknown(t, o)),
                    }
                }
                if t == "MASQUERADE" {
                    Ok(TargetView::Masquerade(v))
                } else {
                    Ok(TargetView::Redirect(v))
                }
            }
            "MARK" => mark_target(self).map(TargetView::Mark),
            "CT" => {
                let mut v = CtTarget::default();
                for o in &self.opts {
                    plain(o)?;
                    match o.name.as_str() {
                        "notrack" => flag(o).map(|()| v.notrack = true)?,
                        "helper" => set_once(&mut v.helper, one(o)?.to_owned(), t, "helper")?,
                        "timeout" => set_once(&mut v.timeout, one(o)?.to_owned(), t, "timeout")?,
                        "ctevents" => set_once(&mut v.ctevents, one(o)?.to_owned(), t, "ctevents")?,
                        "expevents" => {
                            set_once(&mut v.expevents, one(o)?.to_owned(), t, "expevents")?;
                        }
                        "zone" | "zone-orig" | "zone-reply" => {
                            let z = (o.name.clone(), one(o)?.to_owned());
                            set_once(&mut v.zone, z, t, "zone")?;
                        }
                        _ => return Err(unknown(t, o)),
                    }
                }
                Ok(TargetView::Ct(v))
            }
            name if !is_target_name(name) && is_chain(name) => {
                if let Some(o) = self.opts.first() {
                    return Err(unknown(name, o));
                }
                ChainName::new(name).map(TargetView::Jump)
            }
            other => Ok(TargetView::Other(other.to_owned())),
        }
    }
}

impl Action {
    /// A typed view of the action: [`Target::view`] for `-j`, [`TargetView::Goto`] for
    /// `-g`.
    pub fn view(
        &self,
        family: Family,
        is_chain: impl Fn(&str) -> bool,
    ) -> Result<TargetView, ModelError> {
        match self {
            Self::Jump(t) => t.view(family, is_chain),
            Self::Goto(c) => Ok(TargetView::Goto(c.clone())),
        }
    }
}

fn log(t: &Target) -> Result<LogTarget, ModelError> {
    let mut v = LogTarget {
        level: 4,
        prefix: None,
        tcp_sequence: false,
        tcp_options: false,
        ip_options: false,
        uid: false,
        macdecode: false,
    };
    let mut level = None;
    for o in &t.opts {
        plain(o)?;
        match o.name.as_str() {
            "log-level" => set_once(&mut level, parse_log_level(one(o)?)?, "LOG", "log-level")?,
            "log-prefix" => {
                let s = truncate(one(o)?, LogTarget::MAX_PREFIX);
                if s.is_empty() {
                    return Err(invalid("--log-prefix", s, "a non-empty prefix"));
                }
                set_once(&mut v.prefix, s.to_owned(), "LOG", "log-prefix")?;
            }
            "log-tcp-sequence" => flag(o).map(|()| v.tcp_sequence = true)?,
            "log-tcp-options" => flag(o).map(|()| v.tcp_options = true)?,
            "log-ip-options" => flag(o).map(|()| v.ip_options = true)?,
            "log-uid" => flag(o).map(|()| v.uid = true)?,
            "log-macdecode" => flag(o).map(|()| v.macdecode = true)?,
            _ => return Err(unknown("LOG", o)),
        }
    }
    v.level = level.unwrap_or(4);
    Ok(v)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn mark_target(t: &Target) -> Result<MarkMask, ModelError> {
    let mut v = None;
    for o in &t.opts {
        plain(o)?;
        let opt = format!("--{}", o.name);
        let mm = match o.name.as_str() {
            "set-xmark" => MarkMask::parse(one(o)?, &opt)?,
            "set-mark" => {
                let m = MarkMask::parse(one(o)?, &opt)?;
                MarkMask { value: m.value, mask: m.value | m.mask }
            }
            "and-mark" => MarkMask { value: 0, mask: !u32_arg(o)? },
            "or-mark" => {
                let m = u32_arg(o)?;
                MarkMask { value: m, mask: m }
            }
            "xor-mark" => MarkMask { value: u32_arg(o)?, mask: 0 },
            _ => return Err(unknown("MARK", o)),
        };
        set_once(&mut v, mm, "MARK", "set-xmark")?;
    }
    v.ok_or_else(|| missing("MARK", "--set-xmark, --set-mark, --and-mark, --or-mark or --xor-mark"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, opts: &[(&str, bool, &[&str])]) -> Match {
        Match {
            name: name.into(),
            opts: opts
                .iter()
                .map(|(n, neg, args)| Opt {
                    negated: *neg,
                    name: (*n).into(),
                    args: args.iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
        }
    }

    fn t(name: &str, opts: &[(&str, &[&str])]) -> Target {
        Target { name: name.into(), opts: opts.iter().map(|(n, a)| Opt::new(n, a)).collect() }
    }

    #[test]
    fn tcp_view() {
        let v = m(
            "tcp",
            &[("dport", false, &["22"]), ("sport", true, &["1024:"]), ("syn", false, &[])],
        )
        .view(Family::V4)
        .unwrap();
        let MatchView::Tcp(v) = v else { panic!("{v:?}") };
        assert_eq!(v.dport, Some(Negatable::plain(PortRange::single(22))));
        assert_eq!(v.sport, Some(Negatable::not(PortRange { lo: 1024, hi: 65535 })));
        assert_eq!(v.flags, Some(Negatable::plain(TcpFlagsSpec::SYN)));
        assert!(m("tcp", &[("dport", false, &["4:3"])]).view(Family::V4).is_err());
        assert!(m("tcp", &[("dport", false, &["65536"])]).view(Family::V4).is_err());
        assert!(
            m("tcp", &[("dport", false, &["1"]), ("dport", false, &["2"])])
                .view(Family::V4)
                .is_err()
        );
        assert!(m("tcp", &[("bogus", false, &[])]).view(Family::V4).is_err());
        let v = m("tcp", &[("tcp-flags", false, &["ALL", "NONE"])]).view(Family::V4).unwrap();
        let MatchView::Tcp(v) = v else { panic!() };
        assert_eq!(v.flags.unwrap().value.to_string(), "FIN,SYN,RST,PSH,ACK,URG NONE");
    }

    #[test]
    fn udp_icmp_multiport() {
        let MatchView::Udp(u) =
            m("udp", &[("dport", false, &["domain"])]).view(Family::V4).unwrap()
        else {
            panic!()
        };
        assert_eq!(u.dport.unwrap().value, PortRange::single(53));
        let v = m("icmp", &[("icmp-type", true, &["echo-request"])]).view(Family::V4).unwrap();
        assert_eq!(
            v,
            MatchView::Icmp(Negatable::not(IcmpType { type_: 8, code_min: 0, code_max: 255 }))
        );
        let v = m("icmp6", &[("icmpv6-type", false, &["echo-request"])]).view(Family::V6).unwrap();
        assert_eq!(
            v,
            MatchView::Icmp6(Negatable::plain(IcmpType { type_: 128, code_min: 0, code_max: 255 }))
        );
        assert!(m("icmp", &[]).view(Family::V4).is_err());
        let MatchView::Multiport(mp) =
            m("multiport", &[("dports", false, &["22,http,443:500"])]).view(Family::V4).unwrap()
        else {
            panic!()
        };
        assert_eq!(mp.ports.len(), 3);
        assert!(mp.matches(1, 80));
        assert!(!mp.matches(80, 81));
        assert!(m("multiport", &[("dports", false, &["5:5"])]).view(Family::V4).is_err());
        assert!(m("multiport", &[("ports", false, &["1024:65536"])]).view(Family::V4).is_err());
        assert!(
            m("multiport", &[("ports", false, &["1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"])])
                .view(Family::V4)
                .is_err()
        );
    }

    #[test]
    fn conntrack_state_limit() {
        let v = m(
            "conntrack",
            &[
                ("ctstate", false, &["ESTABLISHED,RELATED"]),
                ("ctproto", false, &["tcp"]),
                ("ctorigsrcport", false, &[":4"]),
                ("ctdir", false, &["REPLY"]),
            ],
        )
        .view(Family::V4)
        .unwrap();
        let MatchView::Conntrack(c) = v else { panic!() };
        assert_eq!(c.state.unwrap().value, CtStates(CtStates::RELATED.0 | CtStates::ESTABLISHED.0));
        assert_eq!(c.proto.unwrap().value, Protocol::TCP);
        assert_eq!(c.orig_src_port.unwrap().value, PortRange { lo: 0, hi: 4 });
        assert_eq!(c.dir, Some(CtDir::Reply));
        assert!(m("conntrack", &[("ctstate", false, &["wrong"])]).view(Family::V4).is_err());
        assert!(m("conntrack", &[("ctproto", false, &["0"])]).view(Family::V4).is_err());
        assert!(m("conntrack", &[]).view(Family::V4).is_err());
        assert!(m("conntrack", &[("ctorigsrc", false, &["::1"])]).view(Family::V4).is_err());
        assert!(m("conntrack", &[("ctexpire", false, &["42949672956"])]).view(Family::V4).is_err());
        assert!(m("state", &[]).view(Family::V4).is_err());
        let MatchView::Limit(l) = m("limit", &[]).view(Family::V4).unwrap() else { panic!() };
        assert_eq!((l.rate.to_string(), l.burst), ("3/hour".to_owned(), 5));
    }

    #[test]
    fn other_matches() {
        assert_eq!(
            m("comment", &[("comment", false, &["hi there"])]).view(Family::V4).unwrap(),
            MatchView::Comment("hi there".into())
        );
        assert!(m("comment", &[]).view(Family::V4).is_err());
        assert!(m("comment", &[("comment", false, &[&"x".repeat(256)])]).view(Family::V4).is_err());
        let MatchView::Owner(o) =
            m("owner", &[("uid-owner", false, &["root"]), ("gid-owner", true, &["5-10"])])
                .view(Family::V4)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(o.uid.unwrap().value, U32Range { lo: 0, hi: 0 });
        assert_eq!(o.gid.unwrap(), Negatable::not(U32Range { lo: 5, hi: 10 }));
        let MatchView::Recent(r) = m("recent", &[("name", false, &["ssh"]), ("set", false, &[])])
            .view(Family::V4)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(r.name, "ssh");
        assert_eq!(r.mask.to_string(), "255.255.255.255");
        assert!(!r.rdest);
        assert!(
            m("recent", &[("set", false, &[]), ("seconds", false, &["5"])])
                .view(Family::V4)
                .is_err()
        );
        assert_eq!(
            m("mark", &[("mark", true, &["0x10/0xf0"])]).view(Family::V4).unwrap(),
            MatchView::Mark(Negatable::not(MarkMask { value: 0x10, mask: 0xf0 }))
        );
        let MatchView::Set(s) =
            m("set", &[("match-set", true, &["bl", "src,dst"])]).view(Family::V4).unwrap()
        else {
            panic!()
        };
        assert_eq!((s.name.as_str(), s.dirs.len(), s.negated), ("bl", 2, true));
        let MatchView::AddrType(a) =
            m("addrtype", &[("dst-type", false, &["LOCAL"])]).view(Family::V4).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.dst.unwrap().value, AddrTypes::LOCAL);
        let MatchView::IpRange(r) =
            m("iprange", &[("src-range", false, &["1.2.3.4-1.2.3.10"])]).view(Family::V4).unwrap()
        else {
            panic!()
        };
        assert!(r.src.unwrap().value.contains("1.2.3.5".parse().unwrap()));
        assert!(m("iprange", &[("src-range", false, &["::1-::2"])]).view(Family::V4).is_err());
        assert!(matches!(
            m("mac", &[("mac-source", false, &["00:11:22:33:44:55"])]).view(Family::V4),
            Ok(MatchView::Mac(_))
        ));
        assert_eq!(
            m("hashlimit", &[]).view(Family::V4).unwrap(),
            MatchView::Other("hashlimit".into())
        );
    }

    #[test]
    fn option_names() {
        assert_eq!(match_takes_option("tcp", "dport"), Some(true));
        assert_eq!(match_takes_option("length", "length"), Some(true));
        assert_eq!(match_takes_option("length", "dport"), Some(false));
        assert_eq!(match_takes_option("time", "weekdays"), Some(true));
        assert_eq!(match_takes_option("nosuchmodule", "x"), None);
    }

    #[test]
    fn targets() {
        let none = |_: &str| false;
        assert_eq!(t("ACCEPT", &[]).view(Family::V4, none).unwrap(), TargetView::Accept);
        assert!(t("ACCEPT", &[("x", &[])]).view(Family::V4, none).is_err());
        assert_eq!(
            t("REJECT", &[]).view(Family::V6, none).unwrap(),
            TargetView::Reject(RejectWith::Icmp6PortUnreachable)
        );
        assert_eq!(
            t("REJECT", &[("reject-with", &["port-unreach"])]).view(Family::V4, none).unwrap(),
            TargetView::Reject(RejectWith::IcmpPortUnreachable)
        );
        assert_eq!(RejectWith::parse("tcp-rst", Family::V4).unwrap().as_str(), "tcp-reset");
        assert!(RejectWith::parse("icmp6-no-route", Family::V4).is_err());
        let TargetView::Log(l) = t("LOG", &[("log-level", &["alert"]), ("log-prefix", &["x: "])])
            .view(Family::V4, none)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((l.level, l.prefix.as_deref()), (1, Some("x: ")));
        assert!(t("LOG", &[("log-level", &["bad"])]).view(Family::V4, none).is_err());
        let TargetView::Dnat(d) = t("DNAT", &[("to-destination", &["1.1.1.1:10-20/ftp"])])
            .view(Family::V4, none)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(d.to[0].saved(Family::V4), "1.1.1.1:10-20/21");
        let TargetView::Dnat(d) =
            t("DNAT", &[("to-destination", &["[dead::beef]:ssh"])]).view(Family::V6, none).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.to[0].saved(Family::V6), "[dead::beef]:22");
        assert_eq!(
            t("MARK", &[("and-mark", &["0xff"])]).view(Family::V4, none).unwrap(),
            TargetView::Mark(MarkMask { value: 0, mask: 0xffff_ff00 })
        );
        assert_eq!(
            t("MARK", &[("set-mark", &["5/0xff"])]).view(Family::V4, none).unwrap(),
            TargetView::Mark(MarkMask { value: 5, mask: 0xff })
        );
        assert_eq!(MarkMask { value: 0x4000, mask: 0x4000 }.apply(0x1), 0x4001);
        assert!(t("MARK", &[]).view(Family::V4, none).is_err());
        let TargetView::Redirect(r) =
            t("REDIRECT", &[("to-ports", &["8080-8090"])]).view(Family::V4, none).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.ports, Some(PortRange { lo: 8080, hi: 8090 }));
        assert_eq!(
            t("MYCHAIN", &[]).view(Family::V4, |n| n == "MYCHAIN").unwrap(),
            TargetView::Jump(ChainName::new("MYCHAIN").unwrap())
        );
        assert_eq!(
            t("NFQUEUE", &[]).view(Family::V4, none).unwrap(),
            TargetView::Other("NFQUEUE".into())
        );
        let g = Action::Goto(ChainName::new("X").unwrap());
        assert_eq!(
            g.view(Family::V4, none).unwrap(),
            TargetView::Goto(ChainName::new("X").unwrap())
        );
    }
}
