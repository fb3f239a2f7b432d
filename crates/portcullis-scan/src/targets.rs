//! Target specifications: addresses, CIDR blocks and ranges, as nmap reads them. Host names
//! are resolved by the transport (`resolve_targets`), not here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many addresses come out of one specification.
pub const MAX_EXPANSION: u128 = 1 << 20;

/// A target specification that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    /// The specification.
    pub spec: String,
    /// What is wrong with it.
    pub kind: TargetErrorKind,
}

/// What is wrong with a target specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetErrorKind {
    /// Not an address, block or range (maybe a host name).
    NotAnAddress,
    /// A prefix length beyond the address size.
    BadPrefix,
    /// A range whose start is above its end.
    Reversed,
    /// More than [`MAX_EXPANSION`] addresses.
    TooLarge,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            TargetErrorKind::NotAnAddress => "not an address, CIDR block or range",
            TargetErrorKind::BadPrefix => "prefix length out of range",
            TargetErrorKind::Reversed => "range start is above its end",
            TargetErrorKind::TooLarge => "expands to too many addresses",
        };
        write!(f, "invalid target {:?}: {what}", self.spec)
    }
}

impl std::error::Error for TargetError {}

/// Expands one specification: `198.18.0.2`, `198.18.0.0/30`, `198.18.0.1-5` (last-octet
/// range), `198.18.0.1-198.18.0.9`, `2001:db8::1`, `2001:db8::/126`.
///
/// ```
/// use portcullis_scan::targets::parse_target;
/// let v = parse_target("198.18.0.4/31").unwrap();
/// assert_eq!(v.len(), 2);
/// assert_eq!(parse_target("198.18.0.1-3").unwrap().len(), 3);
/// ```
pub fn parse_target(spec: &str) -> Result<Vec<IpAddr>, TargetError> {
    let err = |kind| TargetError { spec: spec.to_owned(), kind };
    let s = spec.trim();
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(vec![a]);
    }
    if let Some((addr, len)) = s.split_once('/') {
        let a: IpAddr = addr.parse().map_err(|_| err(TargetErrorKind::NotAnAddress))?;
        let len: u32 = len.parse().map_err(|_| err(TargetErrorKind::BadPrefix))?;
        let bits = if a.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return Err(err(TargetErrorKind::BadPrefix));
        }
        let host_bits = bits - len;
        if host_bits >= 21 {
            return Err(err(TargetErrorKind::TooLarge));
        }
        let n = 1u128 << host_bits;
        let base = to_u128(a) & !(n - 1);
        return Ok((0..n).map(|i| from_u128(base + i, a.is_ipv4())).collect());
    }
    if let Some((a, b)) = s.split_once('-') {
        let start: IpAddr = a.parse().map_err(|_| err(TargetErrorKind::NotAnAddress))?;
        let end: IpAddr = match (b.parse::<IpAddr>(), start) {
            (Ok(e), _) if e.is_ipv4() == start.is_ipv4() => e,
            (Err(_), IpAddr::V4(v4)) => {
                let last: u8 = b.parse().map_err(|_| err(TargetErrorKind::NotAnAddress))?;
                let o = v4.octets();
                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], last))
            }
            _ => return Err(err(TargetErrorKind::NotAnAddress)),
        };
        let (lo, hi) = (to_u128(start), to_u128(end));
        if lo > hi {
            return Err(err(TargetErrorKind::Reversed));
        }
        if hi - lo >= MAX_EXPANSION {
            return Err(err(TargetErrorKind::TooLarge));
        }
        return Ok((lo..=hi).map(|i| from_u128(i, start.is_ipv4())).collect());
    }
    Err(err(TargetErrorKind::NotAnAddress))
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(x: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from(x as u32)) } else { IpAddr::V6(Ipv6Addr::from(x)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_target("198.18.0.0/30").unwrap().len(), 4);
        assert_eq!(parse_target("198.18.0.9-198.18.1.0").unwrap().len(), 248);
        assert_eq!(parse_target("2001:db8::/127").unwrap().len(), 2);
        assert_eq!(parse_target("198.18.0.5-1").unwrap_err().kind, TargetErrorKind::Reversed);
        assert_eq!(parse_target("10.0.0.0/8").unwrap_err().kind, TargetErrorKind::TooLarge);
        assert_eq!(parse_target("example").unwrap_err().kind, TargetErrorKind::NotAnAddress);
        assert_eq!(parse_target("1.2.3.4/33").unwrap_err().kind, TargetErrorKind::BadPrefix);
    }
}
