//! Sets of packets as unions of boxes over the header fields a rule can test: what the
//! anomaly lints compare. A rule whose matches this algebra cannot express exactly is
//! "opaque" and takes part in no anomaly claim.

use std::net::IpAddr;

use portcullis_rules::view::{CtStates, PortRange};
use portcullis_rules::{Address, Family, Interface};

use crate::compile::{Cond, Field};

/// A sorted list of disjoint inclusive intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Set(Vec<(u128, u128)>);

impl Set {
    pub(crate) fn range(lo: u128, hi: u128) -> Self {
        Self(vec![(lo, hi)])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn from_ranges(mut v: Vec<(u128, u128)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Self(out)
    }

    fn intersect(&self, o: &Self) -> Self {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < o.0.len() {
            let (a, b) = (self.0[i], o.0[j]);
            let lo = a.0.max(b.0);
            let hi = a.1.min(b.1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self(out)
    }

    fn minus(&self, o: &Self) -> Self {
        let mut out = Vec::new();
        for &(lo, hi) in &self.0 {
            let mut cur = lo;
            let mut done = false;
            for &(blo, bhi) in &o.0 {
                if bhi < cur || blo > hi {
                    continue;
                }
                if blo > cur {
                    out.push((cur, blo - 1));
                }
                if bhi >= hi {
                    done = true;
                    break;
                }
                cur = bhi + 1;
            }
            if !done {
                out.push((cur, hi));
            }
        }
        Self(out)
    }

    fn subset(&self, o: &Self) -> bool {
        self.minus(o).is_empty()
    }
}

const DIMS: usize = 10;
const SRC: usize = 0;
const DST: usize = 1;
const PROTO: usize = 2;
const SPORT: usize = 3;
const DPORT: usize = 4;
const IN: usize = 5;
const OUT: usize = 6;
const STATE: usize = 7;
const ICMP: usize = 8;
const FLAGS: usize = 9;

/// A product of one set per dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PBox([Set; DIMS]);

impl PBox {
    fn intersect(&self, o: &Self) -> Option<Self> {
        let mut out = self.clone();
        for d in 0..DIMS {
            out.0[d] = self.0[d].intersect(&o.0[d]);
            if out.0[d].is_empty() {
                return None;
            }
        }
        Some(out)
    }

    fn subset(&self, o: &Self) -> bool {
        (0..DIMS).all(|d| self.0[d].subset(&o.0[d]))
    }

    /// `self \ o` as disjoint boxes.
    fn minus(&self, o: &Self) -> Vec<Self> {
        if self.intersect(o).is_none() {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        let mut rest = self.clone();
        for d in 0..DIMS {
            let outside = rest.0[d].minus(&o.0[d]);
            if !outside.is_empty() {
                let mut piece = rest.clone();
                piece.0[d] = outside;
                out.push(piece);
            }
            rest.0[d] = rest.0[d].intersect(&o.0[d]);
        }
        out
    }
}

/// A union of boxes.
pub(crate) type Space = Vec<PBox>;

/// The most boxes a difference may grow to before the analysis gives up on a rule.
const MAX_BOXES: usize = 4096;

pub(crate) fn intersects(a: &Space, b: &Space) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.intersect(y).is_some()))
}

/// `a \ b`, or `None` when the difference grows too large to follow.
pub(crate) fn minus(a: &Space, b: &Space) -> Option<Space> {
    let mut cur = a.clone();
    for y in b {
        let mut next = Vec::new();
        for x in &cur {
            next.extend(x.minus(y));
            if next.len() > MAX_BOXES {
                return None;
            }
        }
        cur = next;
        if cur.is_empty() {
            break;
        }
    }
    Some(cur)
}

pub(crate) fn subset(a: &Space, b: &Space) -> bool {
    // Fast path: each box inside one box of b.
    if a.iter().all(|x| b.iter().any(|y| x.subset(y))) {
        return true;
    }
    minus(a, b).is_some_and(|r| r.is_empty())
}

/// The interface names a chain mentions, as a finite universe: each exact name, one
/// stand-in per wildcard prefix, and one for "any other interface".
#[derive(Debug, Clone, Default)]
pub(crate) struct Ifaces(Vec<String>);

impl Ifaces {
    pub(crate) fn add(&mut self, i: &Interface) {
        let name = match i.as_str().strip_suffix('+') {
            Some(prefix) => format!("{prefix}\u{1}"),
            None => i.as_str().to_owned(),
        };
        if !self.0.contains(&name) {
            self.0.push(name);
        }
    }

    fn len(&self) -> u128 {
        self.0.len() as u128 + 1
    }

    fn set(&self, i: &Interface, negated: bool) -> Set {
        let other = "\u{2}";
        let members: Vec<(u128, u128)> = self
            .0
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(other))
            .enumerate()
            .filter(|(_, n)| {
                let hit = match i.as_str().strip_suffix('+') {
                    Some(prefix) => *n != other && n.starts_with(prefix) || prefix.is_empty(),
                    None => i.as_str() == *n,
                };
                hit != negated
            })
            .map(|(k, _)| (k as u128, k as u128))
            .collect();
        Set::from_ranges(members)
    }
}

fn full(family: Family, ifaces: &Ifaces) -> PBox {
    let amax = match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    };
    PBox([
        Set::range(0, amax),
        Set::range(0, amax),
        Set::range(0, 255),
        Set::range(0, 65535),
        Set::range(0, 65535),
        Set::range(0, ifaces.len() - 1),
        Set::range(0, ifaces.len() - 1),
        Set::range(0, 4),
        Set::range(0, 65535),
        Set::range(0, 63),
    ])
}

/// The whole packet space.
pub(crate) fn everything(family: Family, ifaces: &Ifaces) -> Space {
    vec![full(family, ifaces)]
}

fn ip_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn addr_set(a: &Address) -> Option<Set> {
    let Address::Net { addr, .. } = a.canonical() else { return None };
    let len = a.prefix_len()?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let lo = ip_num(addr);
    let span = if u32::from(len) >= bits { 0 } else { (1u128 << (bits - u32::from(len))) - 1 };
    Some(Set::range(lo, lo + span))
}

fn ports(ranges: &[PortRange]) -> Set {
    Set::from_ranges(ranges.iter().map(|r| (u128::from(r.lo), u128::from(r.hi))).collect())
}

fn states(s: CtStates) -> Option<Set> {
    if s.0 & (CtStates::SNAT.0 | CtStates::DNAT.0) != 0 {
        return None;
    }
    let bits = [
        CtStates::NEW,
        CtStates::ESTABLISHED,
        CtStates::RELATED,
        CtStates::INVALID,
        CtStates::UNTRACKED,
    ];
    Some(Set::from_ranges(
        bits.iter()
            .enumerate()
            .filter(|(_, b)| s.contains(**b))
            .map(|(k, _)| (k as u128, k as u128))
            .collect(),
    ))
}

/// The packets a rule's conditions match, or `None` when they are opaque to this algebra.
pub(crate) fn rule_space(conds: &[Cond], family: Family, ifaces: &Ifaces) -> Option<Space> {
    let top = full(family, ifaces);
    let mut b = top.clone();
    let mut either: Option<Set> = None;
    let restrict = |b: &mut PBox, d: usize, s: Set, negated: bool| {
        let s = if negated { top.0[d].minus(&s) } else { s };
        b.0[d] = b.0[d].intersect(&s);
    };
    for c in conds {
        match c {
            Cond::Src(n, a) => restrict(&mut b, SRC, addr_set(a)?, *n),
            Cond::Dst(n, a) => restrict(&mut b, DST, addr_set(a)?, *n),
            Cond::InIface(n, i) => restrict(&mut b, IN, ifaces.set(i, false), *n),
            Cond::OutIface(n, i) => restrict(&mut b, OUT, ifaces.set(i, false), *n),
            Cond::Proto(n, Some(p)) => {
                restrict(&mut b, PROTO, Set::range(u128::from(*p), u128::from(*p)), *n)
            }
            Cond::Port(Field::Sport, n, r) => restrict(&mut b, SPORT, ports(&[*r]), *n),
            Cond::Port(Field::Dport, n, r) => restrict(&mut b, DPORT, ports(&[*r]), *n),
            Cond::Multiport(m) => {
                use portcullis_rules::view::MultiportDir;
                match m.dir {
                    MultiportDir::Source => restrict(&mut b, SPORT, ports(&m.ports), m.negated),
                    MultiportDir::Destination => {
                        restrict(&mut b, DPORT, ports(&m.ports), m.negated)
                    }
                    MultiportDir::Either if m.negated => {
                        // Neither port in the list.
                        restrict(&mut b, SPORT, ports(&m.ports), true);
                        restrict(&mut b, DPORT, ports(&m.ports), true);
                    }
                    MultiportDir::Either => {
                        if either.is_some() {
                            return None;
                        }
                        either = Some(ports(&m.ports));
                    }
                }
            }
            Cond::TcpFlags(n, spec) => {
                let hits: Vec<(u128, u128)> = (0u8..64)
                    .filter(|f| spec.matches(portcullis_rules::view::TcpFlags(*f)) != *n)
                    .map(|f| (u128::from(f), u128::from(f)))
                    .collect();
                b.0[FLAGS] = b.0[FLAGS].intersect(&Set::from_ranges(hits));
            }
            Cond::Icmp(n, t) => {
                let s = if family == Family::V4 && t.type_ == 255 {
                    Set::range(0, 65535)
                } else {
                    let base = u128::from(t.type_) << 8;
                    Set::range(base + u128::from(t.code_min), base + u128::from(t.code_max))
                };
                restrict(&mut b, ICMP, s, *n);
            }
            Cond::State(n, s) => restrict(&mut b, STATE, states(*s)?, *n),
            Cond::IpRangeSrc(n, r) => {
                restrict(&mut b, SRC, Set::range(ip_num(r.lo), ip_num(r.hi)), *n)
            }
            Cond::IpRangeDst(n, r) => {
                restrict(&mut b, DST, Set::range(ip_num(r.lo), ip_num(r.hi)), *n)
            }
            _ => return None,
        }
    }
    if b.0.iter().any(Set::is_empty) {
        return Some(Vec::new());
    }
    Some(match either {
        None => vec![b],
        Some(list) => {
            let mut s = b.clone();
            s.0[SPORT] = s.0[SPORT].intersect(&list);
            let mut d = b;
            d.0[DPORT] = d.0[DPORT].intersect(&list);
            [s, d].into_iter().filter(|x| x.0.iter().all(|s| !s.is_empty())).collect()
        }
    })
}

/// The header field a condition tests, for deciding whether two rules are about the same
/// thing (only those can be correlated).
fn field_of(c: &Cond) -> Option<usize> {
    Some(match c {
        Cond::Src(..) | Cond::IpRangeSrc(..) => SRC,
        Cond::Dst(..) | Cond::IpRangeDst(..) => DST,
        Cond::Proto(..) => PROTO,
        Cond::Port(Field::Sport, ..) => SPORT,
        Cond::Port(Field::Dport, ..) | Cond::Multiport(_) => DPORT,
        Cond::InIface(..) => IN,
        Cond::OutIface(..) => OUT,
        Cond::State(..) => STATE,
        Cond::Icmp(..) => ICMP,
        Cond::TcpFlags(..) => FLAGS,
        _ => return None,
    })
}

/// Whether two rules test at least one header field in common.
pub(crate) fn common_field(a: &[Cond], b: &[Cond]) -> bool {
    a.iter().filter_map(field_of).any(|f| b.iter().filter_map(field_of).any(|g| g == f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_algebra() {
        let a = Set::from_ranges(vec![(0, 10), (20, 30)]);
        let b = Set::range(5, 25);
        assert_eq!(a.intersect(&b), Set::from_ranges(vec![(5, 10), (20, 25)]));
        assert_eq!(a.minus(&b), Set::from_ranges(vec![(0, 4), (26, 30)]));
        assert!(Set::range(21, 22).subset(&a));
        assert!(!b.subset(&a));
        assert_eq!(Set::from_ranges(vec![(0, 3), (4, 9)]), Set::range(0, 9));
        assert!(Set::range(0, 5).minus(&Set::range(0, 5)).is_empty());
    }

    #[test]
    fn box_difference_covers_exactly() {
        let ifaces = Ifaces::default();
        let all = everything(Family::V4, &ifaces);
        let mut tcp22 = full(Family::V4, &ifaces);
        tcp22.0[PROTO] = Set::range(6, 6);
        tcp22.0[DPORT] = Set::range(22, 22);
        let rest = minus(&all, &vec![tcp22.clone()]).expect("small");
        assert!(!intersects(&rest, &vec![tcp22.clone()]));
        let back: Space = rest.into_iter().chain([tcp22]).collect();
        assert!(subset(&all, &back));
    }
}
