//! Port selection with nmap's syntax (`-p`, `-F`, `--top-ports`, `-p-`) and the built-in
//! services table.
//!
//! The table is nmap 7.93's `nmap-services` (tcp and udp lines), shipped inside the crate
//! so names and top-port sets do not depend on the machine (`src/nmap-services.tsv`).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use crate::state::Protocol;

const SERVICES: &str = include_str!("nmap-services.tsv");

struct Services {
    names: HashMap<(Protocol, u16), &'static str>,
    by_name: HashMap<&'static str, Vec<(Protocol, u16)>>,
}

/// The table's lines: (name, port, protocol, open frequency).
fn entries() -> impl Iterator<Item = (&'static str, u16, Protocol, &'static str)> {
    SERVICES.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let mut f = line.split('\t');
        let (name, pp, fr) = (f.next()?, f.next()?, f.next()?);
        let (port, proto) = pp.split_once('/')?;
        let port = port.parse::<u16>().ok()?;
        let proto = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some((name, port, proto, fr))
    })
}

/// Names, built on first use. A scan needs them only for its output, so the CLI builds
/// them on another thread while the scan waits for answers.
fn services() -> &'static Services {
    static S: OnceLock<Services> = OnceLock::new();
    S.get_or_init(|| {
        let mut names = HashMap::new();
        let mut by_name: HashMap<&'static str, Vec<(Protocol, u16)>> = HashMap::new();
        for (name, port, proto, _) in entries() {
            names.entry((proto, port)).or_insert(name);
            by_name.entry(name).or_default().push((proto, port));
        }
        Services { names, by_name }
    })
}

/// Ports of `protocol` sorted by descending open frequency (ties: lower port first), built
/// on first use, without the name maps: `-F` and `--top-ports` need only this before the
/// scan starts.
fn ranked(protocol: Protocol) -> &'static [u16] {
    static TCP: OnceLock<Vec<u16>> = OnceLock::new();
    static UDP: OnceLock<Vec<u16>> = OnceLock::new();
    let cell = match protocol {
        Protocol::Tcp => &TCP,
        Protocol::Udp => &UDP,
    };
    cell.get_or_init(|| {
        let mut v: Vec<(f64, u16)> = entries()
            .filter(|e| e.2 == protocol)
            .map(|(_, port, _, fr)| (fr.parse().unwrap_or(0.0), port))
            .collect();
        v.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, port)| port).collect()
    })
}

/// Builds the name tables now (e.g. on a spare thread while a scan runs), so that
/// writing the results does not wait for them.
pub fn warm_up_names() {
    let _ = services();
}

/// nmap's service name for a port, if the table has one.
pub fn service_name(protocol: Protocol, port: u16) -> Option<&'static str> {
    services().names.get(&(protocol, port)).copied()
}

/// The `n` most frequently open ports of `protocol` by nmap-services frequency (nmap's
/// `--top-ports`; `-F` is 100), in ascending order.
pub fn top_ports(protocol: Protocol, n: usize) -> Vec<u16> {
    let mut v: Vec<u16> = ranked(protocol).iter().take(n).copied().collect();
    v.sort_unstable();
    v
}

/// Ports chosen per protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet {
    /// TCP ports, ascending.
    pub tcp: Vec<u16>,
    /// UDP ports, ascending.
    pub udp: Vec<u16>,
}

/// A `-p` specification that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpecError {
    /// The offending item.
    pub item: String,
    /// What is wrong with it.
    pub kind: PortSpecErrorKind,
}

/// What is wrong with a `-p` item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortSpecErrorKind {
    /// Not a number, range or known service name.
    Invalid,
    /// A range whose start is above its end.
    Reversed,
    /// Port 0 is not scanned.
    PortZero,
    /// An empty specification.
    Empty,
}

impl std::fmt::Display for PortSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            PortSpecErrorKind::Invalid => "not a port, range or service name",
            PortSpecErrorKind::Reversed => "range start is above its end",
            PortSpecErrorKind::PortZero => "port 0 cannot be scanned",
            PortSpecErrorKind::Empty => "empty port specification",
        };
        write!(f, "invalid port specification {:?}: {what}", self.item)
    }
}

impl std::error::Error for PortSpecError {}

/// Parses nmap's `-p` syntax: comma-separated ports (`22`), ranges (`1-1024`, `-1024`,
/// `60000-`, `-` for all), service names (`http`, `ssh`), and `T:`/`U:` prefixes that
/// apply to the items after them. Items without a prefix count for both protocols.
///
/// ```
/// use portcullis_scan::ports::parse_port_spec;
/// let p = parse_port_spec("22,80-81,T:https,U:53").unwrap();
/// assert_eq!(p.tcp, [22, 80, 81, 443]);
/// assert_eq!(p.udp, [22, 53, 80, 81]);
/// ```
pub fn parse_port_spec(spec: &str) -> Result<PortSet, PortSpecError> {
    let mut tcp = BTreeSet::new();
    let mut udp = BTreeSet::new();
    let mut scope: Option<Protocol> = None;
    let err = |item: &str, kind| PortSpecError { item: item.to_owned(), kind };
    if spec.trim().is_empty() {
        return Err(err(spec, PortSpecErrorKind::Empty));
    }
    for raw in spec.split(',') {
        let mut item = raw.trim();
        for (prefix, p) in [("T:", Some(Protocol::Tcp)), ("U:", Some(Protocol::Udp))] {
            if let Some(rest) = item
                .strip_prefix(prefix)
                .or_else(|| item.strip_prefix(&prefix.to_ascii_lowercase()[..]))
            {
                scope = p;
                item = rest;
            }
        }
        if item.is_empty() {
            return Err(err(raw, PortSpecErrorKind::Invalid));
        }
        let mut add = |proto: Protocol, port: u16| {
            if scope.is_none_or(|s| s == proto) {
                match proto {
                    Protocol::Tcp => tcp.insert(port),
                    Protocol::Udp => udp.insert(port),
                };
            }
        };
        if item.starts_with(|c: char| c.is_ascii_digit()) || item.starts_with('-') {
            let (lo, hi) = match item.split_once('-') {
                None => {
                    let p =
                        item.parse::<u16>().map_err(|_| err(raw, PortSpecErrorKind::Invalid))?;
                    (p, p)
                }
                Some((a, b)) => {
                    let num = |s: &str, d: u16| {
                        if s.is_empty() {
                            Ok(d)
                        } else {
                            s.parse::<u16>().map_err(|_| err(raw, PortSpecErrorKind::Invalid))
                        }
                    };
                    (num(a, 1)?, num(b, u16::MAX)?)
                }
            };
            if lo == 0 {
                return Err(err(raw, PortSpecErrorKind::PortZero));
            }
            if lo > hi {
                return Err(err(raw, PortSpecErrorKind::Reversed));
            }
            for port in lo..=hi {
                add(Protocol::Tcp, port);
                add(Protocol::Udp, port);
            }
        } else {
            let Some(list) = services().by_name.get(item) else {
                return Err(err(raw, PortSpecErrorKind::Invalid));
            };
            for (proto, port) in list {
                add(*proto, *port);
            }
        }
    }
    Ok(PortSet { tcp: tcp.into_iter().collect(), udp: udp.into_iter().collect() })
}

/// Compresses sorted ports into nmap's range list (`"7,9,21-23"`), as in XML
/// `scaninfo/@services` and `extrareasons/@ports`.
pub fn format_ranges(ports: &[u16]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        let mut end = start;
        while i + 1 < ports.len() && ports[i + 1] == end.wrapping_add(1) && end != u16::MAX {
            i += 1;
            end = ports[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nmap 7.93's `-F` TCP set from its XML `scaninfo/@services` (docs/scanning.md §1.2).
    const NMAP_TOP100_TCP: &str = "7,9,13,21-23,25-26,37,53,79-81,88,106,110-111,113,119,135,139,143-144,179,199,389,427,443-445,465,513-515,543-544,548,554,587,631,646,873,990,993,995,1025-1029,1110,1433,1720,1723,1755,1900,2000-2001,2049,2121,2717,3000,3128,3306,3389,3986,4899,5000,5009,5051,5060,5101,5190,5357,5432,5631,5666,5800,5900,6000-6001,6646,7070,8000,8008-8009,8080-8081,8443,8888,9100,9999-10000,32768,49152-49157";

    #[test]
    fn top_100_tcp_is_nmaps() {
        assert_eq!(format_ranges(&top_ports(Protocol::Tcp, 100)), NMAP_TOP100_TCP);
    }

    #[test]
    fn top_100_udp_has_the_rig_ports() {
        let u = top_ports(Protocol::Udp, 100);
        assert_eq!(u.len(), 100);
        for p in [53, 123, 137, 161] {
            assert!(u.contains(&p), "{p}");
        }
    }

    #[test]
    fn specs() {
        assert_eq!(parse_port_spec("-").unwrap().tcp.len(), 65535);
        assert_eq!(parse_port_spec("65000-").unwrap().tcp.len(), 536);
        assert_eq!(parse_port_spec("-3").unwrap().udp, [1, 2, 3]);
        assert_eq!(parse_port_spec("U:53,T:22").unwrap(), PortSet { tcp: vec![22], udp: vec![53] });
        assert_eq!(parse_port_spec("ssh").unwrap().tcp, [22]);
        assert_eq!(parse_port_spec("0").unwrap_err().kind, PortSpecErrorKind::PortZero);
        assert_eq!(parse_port_spec("9-1").unwrap_err().kind, PortSpecErrorKind::Reversed);
        assert_eq!(parse_port_spec("nope").unwrap_err().kind, PortSpecErrorKind::Invalid);
        assert_eq!(parse_port_spec("70000").unwrap_err().kind, PortSpecErrorKind::Invalid);
        assert_eq!(service_name(Protocol::Udp, 137), Some("netbios-ns"));
    }
}
