//! Addresses with masks, interfaces and protocols: the values of the base rule fields.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::Family;
use crate::error::{ModelError, invalid};

/// An address with its mask, as `-s`/`-d` hold it. The address is kept as written; the
/// canonical form (see [`Address::canonical`]) applies the mask as the kernel does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
pub enum Address {
    /// A numeric address and mask of the same family.
    Net {
        /// The address.
        addr: IpAddr,
        /// The mask, contiguous or not.
        mask: IpAddr,
    },
    /// A host name as written in a command (iptables resolves it when the rule is added;
    /// a saved file never holds one).
    Host(String),
}

impl Address {
    /// The address that matches everything in `family` (`0.0.0.0/0`, `::/0`).
    pub fn any(family: Family) -> Self {
        match family {
            Family::V4 => Self::Net {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                mask: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            },
            Family::V6 => Self::Net {
                addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                mask: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            },
        }
    }

    /// A single host address with a full mask.
    pub fn host(addr: IpAddr) -> Self {
        let mask = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        };
        Self::Net { addr, mask }
    }

    /// The family of a numeric address; `None` for a host name.
    pub fn family(&self) -> Option<Family> {
        match self {
            Self::Net { addr: IpAddr::V4(_), .. } => Some(Family::V4),
            Self::Net { addr: IpAddr::V6(_), .. } => Some(Family::V6),
            Self::Host(_) => None,
        }
    }

    /// The address with the mask applied, as the kernel stores it
    /// (`10.11.12.13/8` becomes `10.0.0.0/8`).
    #[must_use]
    pub fn canonical(&self) -> Self {
        match self {
            Self::Net { addr: IpAddr::V4(a), mask: IpAddr::V4(m) } => Self::Net {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from(*a) & u32::from(*m))),
                mask: IpAddr::V4(*m),
            },
            Self::Net { addr: IpAddr::V6(a), mask: IpAddr::V6(m) } => Self::Net {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from(*a) & u128::from(*m))),
                mask: IpAddr::V6(*m),
            },
            other => other.clone(),
        }
    }

    /// Whether the mask is zero, so the address matches everything.
    pub fn is_any(&self) -> bool {
        match self {
            Self::Net { mask, .. } => mask_bits(*mask) == 0,
            Self::Host(_) => false,
        }
    }

    /// The prefix length when the mask is contiguous.
    pub fn prefix_len(&self) -> Option<u8> {
        match self {
            Self::Net { mask, .. } => prefix_of(*mask),
            Self::Host(_) => None,
        }
    }

    /// Whether `ip` lies inside this network (false for host names and other families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::Net { addr: IpAddr::V4(a), mask: IpAddr::V4(m) }, IpAddr::V4(x)) => {
                let m = u32::from(*m);
                u32::from(*a) & m == u32::from(x) & m
            }
            (Self::Net { addr: IpAddr::V6(a), mask: IpAddr::V6(m) }, IpAddr::V6(x)) => {
                let m = u128::from(*m);
                u128::from(*a) & m == u128::from(x) & m
            }
            _ => false,
        }
    }
}

fn mask_bits(mask: IpAddr) -> u32 {
    match mask {
        IpAddr::V4(m) => u32::from(m).count_ones(),
        IpAddr::V6(m) => u128::from(m).count_ones(),
    }
}

fn prefix_of(mask: IpAddr) -> Option<u8> {
    match mask {
        IpAddr::V4(m) => {
            let m = u32::from(m);
            let ones = m.leading_ones();
            (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
        }
        IpAddr::V6(m) => {
            let m = u128::from(m);
            let ones = m.leading_ones();
            (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
        }
    }
}

fn mask_from_prefix(family: Family, len: u8) -> IpAddr {
    match family {
        Family::V4 => {
            IpAddr::V4(Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)))
        }
        Family::V6 => {
            IpAddr::V6(Ipv6Addr::from(u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)))
        }
    }
}

impl fmt::Display for Address {
    /// The iptables-save form: `10.0.0.0/8`, `10.0.12.0/255.0.255.0`, `2001:db8::/32`,
    /// `0:babe::/0:ffff::`. IPv4 always carries a prefix, `/32` included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net { addr, mask } => match prefix_of(*mask) {
                Some(len) => write!(f, "{addr}/{len}"),
                None => write!(f, "{addr}/{mask}"),
            },
            Self::Host(h) => f.write_str(h),
        }
    }
}

/// `s.split_once(sep)` for an ASCII `sep`, by a byte search: the value parsers of a
/// kube-proxy-sized ruleset run it for every address, range and NAT destination, and
/// `str`'s char searcher costs several times more on values this short.
pub(crate) fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    debug_assert!(sep.is_ascii());
    let at = s.bytes().position(|c| c == sep)?;
    Some((&s[..at], &s[at + 1..]))
}

impl FromStr for Address {
    type Err = ModelError;

    /// Reads `ADDR`, `ADDR/LEN` or `ADDR/MASK` (IPv4 or IPv6), or a host name.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let (host, mask) = match split_once_byte(s, b'/') {
            Some((h, m)) => (h, Some(m)),
            None => (s, None),
        };
        let Ok(addr) = host.parse::<IpAddr>() else {
            let hostname_ok = mask.is_none()
                && host.bytes().any(|b| b.is_ascii_alphabetic())
                && !host.contains(':')
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            return if hostname_ok {
                Ok(Self::Host(host.to_owned()))
            } else {
                Err(invalid("address", s, "an IPv4 or IPv6 address with an optional mask"))
            };
        };
        let family = if addr.is_ipv4() { Family::V4 } else { Family::V6 };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let mask = match mask {
            None => mask_from_prefix(family, max),
            Some(m) => match m.parse::<u8>() {
                Ok(len) if len <= max => mask_from_prefix(family, len),
                Ok(_) => return Err(invalid("address", s, "a prefix length within the family")),
                Err(_) => match m.parse::<IpAddr>() {
                    Ok(mask) if mask.is_ipv4() == addr.is_ipv4() => mask,
                    _ => return Err(invalid("address", s, "a prefix length or a mask")),
                },
            },
        };
        Ok(Self::Net { addr, mask })
    }
}

impl From<Address> for String {
    fn from(a: Address) -> Self {
        a.to_string()
    }
}

impl TryFrom<String> for Address {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        s.parse()
    }
}

/// The protocol of `-p`. Numbers and names of the built-in table compare equal
/// (`-p 6` is `-p tcp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
pub enum Protocol {
    /// A protocol number, 0 (`all`) to 255.
    Number(u8),
    /// A name from the machine's `/etc/protocols` that portcullis does not know.
    Name(String),
}

/// xtables' built-in protocol names (`xtables_chain_protos`) and the usual
/// `/etc/protocols` names, first name of a number wins when printing.
const PROTOCOLS: &[(&str, u8)] = &[
    ("all", 0),
    ("tcp", 6),
    ("udp", 17),
    ("icmp", 1),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("sctp", 132),
    ("udplite", 136),
    ("esp", 50),
    ("ah", 51),
    ("mobility-header", 135),
    ("ipv6-mh", 135),
    ("mh", 135),
    ("dccp", 33),
    ("ipcomp", 108),
    ("igmp", 2),
    ("ipencap", 4),
    ("egp", 8),
    ("gre", 47),
    ("ipv6", 41),
    ("rsvp", 46),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("l2tp", 115),
    ("isis", 124),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ggp", 3),
    ("st", 5),
    ("pup", 12),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("idrp", 45),
    ("skip", 57),
    ("rspf", 73),
    ("vmtp", 81),
    ("ax.25", 93),
    ("fc", 133),
];

impl Protocol {
    /// TCP.
    pub const TCP: Self = Self::Number(6);
    /// UDP.
    pub const UDP: Self = Self::Number(17);
    /// ICMP.
    pub const ICMP: Self = Self::Number(1);
    /// ICMPv6.
    pub const ICMPV6: Self = Self::Number(58);

    /// The protocol number, when known.
    pub fn number(&self) -> Option<u8> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Name(_) => None,
        }
    }

    /// The name iptables-save prints for this protocol.
    pub fn name(&self) -> Option<&'static str> {
        let n = self.number()?;
        PROTOCOLS.iter().find(|(_, num)| *num == n).map(|(name, _)| *name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.name()) {
            (_, Some(name)) => f.write_str(name),
            (Self::Number(n), None) => write!(f, "{n}"),
            (Self::Name(s), None) => f.write_str(s),
        }
    }
}

impl FromStr for Protocol {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        if let Ok(n) = s.parse::<u8>() {
            return Ok(Self::Number(n));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("-p", s, "a protocol name or a number from 0 to 255"));
        }
        // Compared without a lowercase copy: this runs for every `-p` of a ruleset.
        if let Some((_, n)) = PROTOCOLS.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
            return Ok(Self::Number(*n));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._+".contains(&b)) {
            Ok(Self::Name(s.to_owned()))
        } else {
            Err(invalid("-p", s, "a protocol name or a number from 0 to 255"))
        }
    }
}

impl From<Protocol> for String {
    fn from(p: Protocol) -> Self {
        p.to_string()
    }
}

impl TryFrom<String> for Protocol {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        s.parse()
    }
}

/// An interface name as `-i`/`-o` take it: at most 15 bytes, `+` as a wildcard suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct Interface(String);

impl Interface {
    /// The longest interface name, in bytes (`IFNAMSIZ` - 1).
    pub const MAX_LEN: usize = 15;

    /// Checks and wraps an interface name.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        if name.is_empty()
            || name.len() > Self::MAX_LEN
            || name.starts_with(['-', '!'])
            || name.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
        {
            return Err(invalid(
                "interface",
                name,
                "1 to 15 bytes, no whitespace or `/', not starting with `-' or `!'",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name ends in the wildcard `+`.
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with('+')
    }

    /// Whether an interface called `name` matches this one (`eth+` matches `eth0`).
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('+') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Interface> for String {
    fn from(i: Interface) -> Self {
        i.0
    }
}

impl TryFrom<String> for Interface {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        Self::new(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn canon(input: &str, expect: &str) {
        let a: Address = input.parse().expect("parses");
        assert_eq!(a.canonical().to_string(), expect, "{input}");
    }

    #[test]
    fn addresses() {
        canon("10.1.2.3", "10.1.2.3/32");
        canon("10.11.12.13/8", "10.0.0.0/8");
        canon("10.11.12.13/255.0.0.0", "10.0.0.0/8");
        canon("10.11.12.13/255.0.255.0", "10.0.12.0/255.0.255.0");
        canon("0.0.0.0", "0.0.0.0/32");
        canon("0.0.0.0/0", "0.0.0.0/0");
        canon("2001:db8::1", "2001:db8::1/128");
        canon("2001:db8::/32", "2001:db8::/32");
        canon("0:babe::/0:ffff::", "0:babe::/0:ffff::");
        assert!("10.0.0.0/33".parse::<Address>().is_err());
        assert!("10.0.0.0/x".parse::<Address>().is_err());
        assert_eq!("localhost".parse::<Address>(), Ok(Address::Host("localhost".into())));
    }

    #[test]
    fn protocols() {
        assert_eq!("6".parse::<Protocol>().unwrap(), Protocol::TCP);
        assert_eq!("TCP".parse::<Protocol>().unwrap().to_string(), "tcp");
        assert_eq!("47".parse::<Protocol>().unwrap().to_string(), "gre");
        assert_eq!("icmpv6".parse::<Protocol>().unwrap().to_string(), "ipv6-icmp");
        assert_eq!("250".parse::<Protocol>().unwrap().to_string(), "250");
        assert!("300".parse::<Protocol>().is_err());
    }
}
