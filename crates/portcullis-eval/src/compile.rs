//! A ruleset turned into the evaluator's form: chains by index, targets resolved, every
//! match read once into a [`Cond`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use portcullis_rules::view::{
    AddrTypes, ConntrackMatch, CtDir, CtStates, IcmpType, IpRange, MarkMask, MatchView,
    MultiportDir, MultiportMatch, PortRange, RejectWith, TargetView, TcpFlagsSpec,
};
use portcullis_rules::{Address, Family, Interface, Match, Policy, Rule, Ruleset, TableName};

use crate::error::{EvalError, EvalErrorKind};
use crate::packet::{CtState, Hook, Host, Packet};

/// Which port field a split cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Sport,
    Dport,
}

/// One condition of a rule, ready to test.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Src(bool, Address),
    Dst(bool, Address),
    InIface(bool, Interface),
    OutIface(bool, Interface),
    /// `None`: a protocol name portcullis does not know.
    Proto(bool, Option<u8>),
    /// `-f` (true) or `! -f` (false).
    Fragment(bool),
    Port(Field, bool, PortRange),
    Multiport(MultiportMatch),
    TcpFlags(bool, TcpFlagsSpec),
    Icmp(bool, IcmpType),
    State(bool, CtStates),
    CtProto(bool, Option<u8>),
    CtOrigSrc(bool, Address),
    CtDir(CtDir),
    Mark(bool, MarkMask),
    IpRangeSrc(bool, IpRange),
    IpRangeDst(bool, IpRange),
    AddrTypeSrc(bool, AddrTypes),
    AddrTypeDst(bool, AddrTypes),
    /// A match the packet alone does not decide; the text says why.
    Maybe(String),
}

/// What a rule does when it matches.
#[derive(Debug, Clone)]
pub(crate) enum Act {
    /// No target: the rule only counts.
    None,
    Accept,
    Drop,
    Reject(RejectWith),
    Return,
    Queue,
    Jump(usize),
    Goto(usize),
    /// A target that does not end the traversal (LOG, NFLOG, TCPMSS…).
    Continue,
    Mark(MarkMask),
    /// `CONNMARK --restore-mark`: the packet mark becomes the connection's.
    RestoreMark,
    Notrack,
    /// DNAT/REDIRECT: the new address (`None` keeps or does not know it) and ports.
    Dnat(Option<IpAddr>, Option<PortRange>),
    /// SNAT/MASQUERADE/NETMAP: the nat table's traversal ends.
    NatEnd,
    /// A target portcullis does not know: it may end the traversal or not.
    Unknown(String),
}

#[derive(Debug)]
pub(crate) struct CRule {
    /// 1-based position in its chain.
    pub(crate) index: usize,
    pub(crate) line: u32,
    pub(crate) conds: Vec<Cond>,
    pub(crate) act: Act,
}

#[derive(Debug)]
pub(crate) struct CChain {
    pub(crate) name: String,
    pub(crate) policy: Option<Policy>,
    compiled: OnceLock<Result<Vec<CRule>, EvalError>>,
}

impl CChain {
    /// The compiled rules of a chain whose compilation already succeeded (every chain of
    /// a [`Compiled::new`]); empty otherwise.
    pub(crate) fn rules(&self) -> &[CRule] {
        self.compiled.get().and_then(|r| r.as_ref().ok()).map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug)]
pub(crate) struct CTable {
    pub(crate) name: TableName,
    pub(crate) chains: Vec<CChain>,
    pub(crate) by_name: HashMap<String, usize>,
}

/// A ruleset compiled for evaluation. [`Compiled::new`] compiles every rule at once and
/// reports the first rule it cannot read; [`Compiled::lazy`] compiles a chain the first
/// time a packet enters it, so a query that never enters most chains of a large ruleset
/// (kube-proxy's per-service chains) never pays for them.
#[derive(Debug)]
pub struct Compiled {
    pub(crate) family: Family,
    pub(crate) tables: Vec<CTable>,
    /// The ruleset the chains of a lazy compilation are read from.
    source: Option<Arc<Ruleset>>,
}

impl Compiled {
    /// Compiles every rule of `rs`. Fails on a module whose options the model refuses or
    /// a jump to a missing chain.
    pub fn new(rs: &Ruleset) -> Result<Self, EvalError> {
        let c = Self::skeleton(rs, None);
        for (t, table) in rs.tables.iter().enumerate() {
            for (ch, chain) in table.chains.iter().enumerate() {
                let rules = compile_chain(&chain.rules, rs.family, &c.tables[t].by_name)?;
                let _ = c.tables[t].chains[ch].compiled.set(Ok(rules));
            }
        }
        Ok(c)
    }

    /// Takes `rs` without compiling any rule yet; errors surface when a packet enters the
    /// chain that holds the faulty rule.
    pub fn lazy(rs: Arc<Ruleset>) -> Self {
        Self::skeleton(&rs.clone(), Some(rs))
    }

    fn skeleton(rs: &Ruleset, source: Option<Arc<Ruleset>>) -> Self {
        let tables = rs
            .tables
            .iter()
            .map(|t| CTable {
                name: t.name,
                by_name: t
                    .chains
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.as_str().to_owned(), i))
                    .collect(),
                chains: t
                    .chains
                    .iter()
                    .map(|c| CChain {
                        name: c.name.as_str().to_owned(),
                        policy: c.policy,
                        compiled: OnceLock::new(),
                    })
                    .collect(),
            })
            .collect();
        Self { family: rs.family, tables, source }
    }

    /// The compiled rules of chain `chain` of table `table`, compiling them on first use.
    pub(crate) fn chain_rules(&self, table: usize, chain: usize) -> Result<&[CRule], EvalError> {
        let t = &self.tables[table];
        let ch = &t.chains[chain];
        let compiled = ch.compiled.get_or_init(|| match &self.source {
            Some(rs) => {
                compile_chain(&rs.tables[table].chains[chain].rules, self.family, &t.by_name)
            }
            None => Ok(Vec::new()),
        });
        match compiled {
            Ok(r) => Ok(r),
            Err(e) => Err(e.clone()),
        }
    }

    pub(crate) fn table(&self, name: TableName) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }
}

fn compile_chain(
    source: &[Rule],
    family: Family,
    by_name: &HashMap<String, usize>,
) -> Result<Vec<CRule>, EvalError> {
    let mut rules = Vec::with_capacity(source.len());
    for (i, r) in source.iter().enumerate() {
        let line = r.origin.line;
        let conds = conds(r, family).map_err(|e| EvalError::new(line, e))?;
        let act = action(r, family, by_name).map_err(|e| EvalError::new(line, e))?;
        rules.push(CRule { index: i + 1, line, conds, act });
    }
    Ok(rules)
}

fn bad(e: impl std::fmt::Display) -> EvalErrorKind {
    EvalErrorKind::BadModule(e.to_string())
}

/// The conditions of a rule, in the order the kernel tests them (base fields, then the
/// matches as written).
pub(crate) fn conds(r: &Rule, family: Family) -> Result<Vec<Cond>, EvalErrorKind> {
    let mut out = Vec::new();
    if let Some(a) = &r.src
        && (!a.value.is_any() || a.negated)
    {
        out.push(Cond::Src(a.negated, a.value.clone()));
    }
    if let Some(a) = &r.dst
        && (!a.value.is_any() || a.negated)
    {
        out.push(Cond::Dst(a.negated, a.value.clone()));
    }
    if let Some(i) = &r.in_iface {
        out.push(Cond::InIface(i.negated, i.value.clone()));
    }
    if let Some(i) = &r.out_iface {
        out.push(Cond::OutIface(i.negated, i.value.clone()));
    }
    if let Some(p) = &r.proto
        && (p.value.number() != Some(0) || p.negated)
    {
        out.push(Cond::Proto(p.negated, p.value.number()));
    }
    if let Some(f) = r.fragment {
        out.push(Cond::Fragment(!f));
    }
    for m in &r.matches {
        match_conds(m, family, &mut out)?;
    }
    Ok(out)
}

fn match_conds(m: &Match, family: Family, out: &mut Vec<Cond>) -> Result<(), EvalErrorKind> {
    if m.name == "comment" {
        // A comment never affects matching (its length is the lint's business).
        return Ok(());
    }
    let v = m.view(family).map_err(|e| bad(format!("-m {}: {e}", m.name)))?;
    match v {
        MatchView::Tcp(t) => {
            if let Some(p) = t.sport {
                out.push(Cond::Port(Field::Sport, p.negated, p.value));
            }
            if let Some(p) = t.dport {
                out.push(Cond::Port(Field::Dport, p.negated, p.value));
            }
            if let Some(f) = t.flags {
                out.push(Cond::TcpFlags(f.negated, f.value));
            }
            if t.option.is_some() {
                out.push(Cond::Maybe("--tcp-option depends on the packet's TCP options".into()));
            }
        }
        MatchView::Udp(u) => {
            if let Some(p) = u.sport {
                out.push(Cond::Port(Field::Sport, p.negated, p.value));
            }
            if let Some(p) = u.dport {
                out.push(Cond::Port(Field::Dport, p.negated, p.value));
            }
        }
        MatchView::Icmp(t) | MatchView::Icmp6(t) => out.push(Cond::Icmp(t.negated, t.value)),
        MatchView::Multiport(mp) => out.push(Cond::Multiport(mp)),
        MatchView::State(s) => out.push(Cond::State(s.negated, s.value)),
        MatchView::Conntrack(c) => conntrack_conds(&c, out),
        MatchView::Comment(_) => {}
        MatchView::Mark(mm) => out.push(Cond::Mark(mm.negated, mm.value)),
        MatchView::IpRange(r) => {
            if let Some(s) = r.src {
                out.push(Cond::IpRangeSrc(s.negated, s.value));
            }
            if let Some(d) = r.dst {
                out.push(Cond::IpRangeDst(d.negated, d.value));
            }
        }
        MatchView::AddrType(a) => {
            if let Some(s) = a.src {
                out.push(Cond::AddrTypeSrc(s.negated, s.value));
            }
            if let Some(d) = a.dst {
                out.push(Cond::AddrTypeDst(d.negated, d.value));
            }
        }
        MatchView::Limit(_) => out.push(Cond::Maybe("-m limit depends on the packet rate".into())),
        MatchView::Recent(_) => {
            out.push(Cond::Maybe("-m recent depends on earlier packets".into()));
        }
        MatchView::Set(s) => {
            out.push(Cond::Maybe(format!("-m set depends on the contents of set {}", s.name)));
        }
        MatchView::Owner(_) => {
            out.push(Cond::Maybe("-m owner depends on the sending socket".into()));
        }
        MatchView::Connmark(_) => {
            out.push(Cond::Maybe("-m connmark depends on the connection's mark".into()));
        }
        MatchView::Mac(_) => out.push(Cond::Maybe("-m mac depends on the sender's MAC".into())),
        _ => out
            .push(Cond::Maybe(format!("-m {} depends on what portcullis does not model", m.name))),
    }
    Ok(())
}

fn conntrack_conds(c: &ConntrackMatch, out: &mut Vec<Cond>) {
    if let Some(s) = &c.state {
        out.push(Cond::State(s.negated, s.value));
    }
    if let Some(p) = &c.proto {
        out.push(Cond::CtProto(p.negated, p.value.number()));
    }
    if let Some(a) = &c.orig_src {
        out.push(Cond::CtOrigSrc(a.negated, a.value.clone()));
    }
    if let Some(d) = c.dir {
        out.push(Cond::CtDir(d));
    }
    let others = c.orig_dst.is_some()
        || c.repl_src.is_some()
        || c.repl_dst.is_some()
        || c.orig_src_port.is_some()
        || c.orig_dst_port.is_some()
        || c.repl_src_port.is_some()
        || c.repl_dst_port.is_some()
        || c.status.is_some()
        || c.expire.is_some();
    if others {
        out.push(Cond::Maybe(
            "-m conntrack tuple, status or expiry options depend on the connection".into(),
        ));
    }
}

/// Targets that never end a traversal.
const CONTINUING: &[&str] = &[
    "NFLOG",
    "ULOG",
    "TRACE",
    "CONNMARK",
    "TCPMSS",
    "TOS",
    "DSCP",
    "TTL",
    "HL",
    "CLASSIFY",
    "SET",
    "AUDIT",
    "CHECKSUM",
    "IDLETIMER",
    "LED",
    "SECMARK",
    "CONNSECMARK",
    "TEE",
    "ECN",
    "HMARK",
    "RATEEST",
    "CT",
];

fn action(r: &Rule, family: Family, chains: &HashMap<String, usize>) -> Result<Act, EvalErrorKind> {
    let Some(a) = &r.action else { return Ok(Act::None) };
    let chain = |name: &str| {
        chains.get(name).copied().ok_or_else(|| EvalErrorKind::NoSuchChain(name.to_owned()))
    };
    let v = a.view(family, |n| chains.contains_key(n)).map_err(bad)?;
    Ok(match v {
        TargetView::Accept => Act::Accept,
        TargetView::Drop => Act::Drop,
        TargetView::Return => Act::Return,
        TargetView::Queue => Act::Queue,
        TargetView::Reject(w) => Act::Reject(w),
        TargetView::Log(_) => Act::Continue,
        TargetView::Mark(m) => Act::Mark(m),
        TargetView::Notrack => Act::Notrack,
        TargetView::Ct(ct) => {
            if ct.notrack {
                Act::Notrack
            } else {
                Act::Continue
            }
        }
        TargetView::Dnat(n) => {
            let first = n.to.first();
            let addr = first.and_then(|r| r.addrs).and_then(|(a, b)| (a == b).then_some(a));
            let known = first.is_some_and(|r| r.addrs.is_none()) || addr.is_some();
            let ports = first.and_then(|r| r.ports);
            if known {
                Act::Dnat(addr, ports)
            } else {
                Act::Unknown("DNAT to an address range".into())
            }
        }
        TargetView::Redirect(p) => Act::Dnat(None, p.ports),
        TargetView::Snat(_) | TargetView::Masquerade(_) => Act::NatEnd,
        TargetView::Jump(c) => Act::Jump(chain(c.as_str())?),
        TargetView::Goto(c) => Act::Goto(chain(c.as_str())?),
        TargetView::Other(name) => match name.as_str() {
            "CONNMARK" if a_opts(r).contains(&"restore-mark") => Act::RestoreMark,
            n if CONTINUING.contains(&n) => Act::Continue,
            "NFQUEUE" => Act::Queue,
            "NETMAP" => Act::NatEnd,
            "TARPIT" => Act::Drop,
            _ => Act::Unknown(name),
        },
        _ => Act::Unknown(a_name(r)),
    })
}

fn a_opts(r: &Rule) -> Vec<&str> {
    match &r.action {
        Some(portcullis_rules::Action::Jump(t)) => t.opts.iter().map(|o| o.name.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn a_name(r: &Rule) -> String {
    r.target_name().unwrap_or("?").to_owned()
}

/// The answer of one condition or rule for a packet class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tri {
    Yes,
    No,
    Maybe,
    /// The class must be split along a port field into these pieces first.
    Split(Field, Vec<PortRange>),
}

fn flip(t: Tri, neg: bool) -> Tri {
    match (t, neg) {
        (Tri::Yes, true) => Tri::No,
        (Tri::No, true) => Tri::Yes,
        (t, _) => t,
    }
}

fn yes(b: bool) -> Tri {
    if b { Tri::Yes } else { Tri::No }
}

/// Whether `p` lies inside the union `set`, outside it, or across a boundary (then the
/// pieces of `p` cut at the boundaries).
pub(crate) fn classify(p: PortRange, set: &[PortRange]) -> Result<bool, Vec<PortRange>> {
    let mut cuts: Vec<u32> = Vec::new();
    for r in set {
        for c in [u32::from(r.lo), u32::from(r.hi) + 1] {
            if c > u32::from(p.lo) && c <= u32::from(p.hi) {
                cuts.push(c);
            }
        }
    }
    if cuts.is_empty() {
        return Ok(set.iter().any(|r| r.contains(p.lo)));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut lo = u32::from(p.lo);
    for c in cuts {
        pieces.push(range(lo, c - 1));
        lo = c;
    }
    pieces.push(range(lo, u32::from(p.hi)));
    Err(pieces)
}

fn range(lo: u32, hi: u32) -> PortRange {
    let cut = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    PortRange { lo: cut(lo), hi: cut(hi) }
}

fn ports(p: PortRange, set: &[PortRange], field: Field) -> Tri {
    match classify(p, set) {
        Ok(b) => yes(b),
        Err(pieces) => Tri::Split(field, pieces),
    }
}

fn addr(a: &Address, ip: Option<IpAddr>) -> Tri {
    match ip {
        Some(ip) => yes(a.contains(ip)),
        None if a.is_any() => Tri::Yes,
        None => Tri::Maybe,
    }
}

fn iface(i: &Interface, name: Option<&str>) -> Tri {
    match name {
        Some(n) => yes(i.matches(n)),
        // An unknown interface is not loopback: `lo` cannot match it, anything else may.
        None if i.as_str() == "+" => Tri::Yes,
        None if i.as_str() == "lo" => Tri::No,
        None => Tri::Maybe,
    }
}

fn state_bit(s: CtState) -> CtStates {
    match s {
        CtState::New => CtStates::NEW,
        CtState::Established => CtStates::ESTABLISHED,
        CtState::Related => CtStates::RELATED,
        CtState::Invalid => CtStates::INVALID,
        CtState::Untracked => CtStates::UNTRACKED,
    }
}

/// The route type of an address as the addrtype match sees it, or `None` when unknown.
fn addr_type(ip: Option<IpAddr>, host: &Host, dst_on_input: bool) -> Option<AddrTypes> {
    let Some(ip) = ip else {
        // A packet that reaches INPUT was addressed to this host.
        return dst_on_input.then_some(AddrTypes::LOCAL);
    };
    if ip.is_multicast() {
        return Some(AddrTypes::MULTICAST);
    }
    if ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        return Some(AddrTypes::BROADCAST);
    }
    match host.is_local(ip) {
        Some(true) => Some(AddrTypes::LOCAL),
        Some(false) => Some(AddrTypes::UNICAST),
        None => None,
    }
}

/// Tests one condition.
pub(crate) fn test(c: &Cond, p: &Packet, hook: Hook, host: &Host) -> Tri {
    let in_if = if hook == Hook::Output { Some("") } else { p.in_iface.as_deref() };
    let out_if = if hook == Hook::Input { Some("") } else { p.out_iface.as_deref() };
    match c {
        Cond::Src(n, a) => flip(addr(a, p.src), *n),
        Cond::Dst(n, a) => flip(addr(a, p.dst), *n),
        Cond::InIface(n, i) => flip(iface(i, in_if), *n),
        Cond::OutIface(n, i) => flip(iface(i, out_if), *n),
        Cond::Proto(n, Some(proto)) => flip(yes(p.proto == *proto), *n),
        Cond::Proto(_, None) => Tri::Maybe,
        Cond::Fragment(f) => yes(p.fragment == *f),
        Cond::Port(field, n, r) => {
            let have = if *field == Field::Sport { p.sport } else { p.dport };
            flip(ports(have, std::slice::from_ref(r), *field), *n)
        }
        Cond::Multiport(m) => {
            let t = match m.dir {
                MultiportDir::Source => ports(p.sport, &m.ports, Field::Sport),
                MultiportDir::Destination => ports(p.dport, &m.ports, Field::Dport),
                MultiportDir::Either => match ports(p.sport, &m.ports, Field::Sport) {
                    Tri::Yes => Tri::Yes,
                    Tri::No => ports(p.dport, &m.ports, Field::Dport),
                    other => other,
                },
            };
            flip(t, m.negated)
        }
        Cond::TcpFlags(n, spec) => flip(yes(spec.matches(p.tcp_flags)), *n),
        Cond::Icmp(n, t) => match p.icmp {
            Some((ty, code)) => flip(yes(t.matches(p.family, ty, code)), *n),
            None => Tri::Maybe,
        },
        Cond::State(n, set) => {
            if set.contains(state_bit(p.state)) {
                flip(Tri::Yes, *n)
            } else if set.0 & (CtStates::SNAT.0 | CtStates::DNAT.0) != 0 {
                Tri::Maybe
            } else {
                flip(Tri::No, *n)
            }
        }
        Cond::CtProto(n, proto) => match (p.state, proto) {
            (CtState::New | CtState::Established, Some(proto)) => flip(yes(p.proto == *proto), *n),
            (CtState::Untracked | CtState::Invalid, _) => yes(*n),
            _ => Tri::Maybe,
        },
        Cond::CtOrigSrc(n, a) => match p.state {
            CtState::New => flip(addr(a, p.src), *n),
            CtState::Untracked | CtState::Invalid => yes(*n),
            _ => Tri::Maybe,
        },
        Cond::CtDir(d) => match p.state {
            CtState::New => yes(*d == CtDir::Original),
            CtState::Untracked | CtState::Invalid => Tri::No,
            _ => Tri::Maybe,
        },
        Cond::Mark(n, m) => match p.mark {
            Some(mark) => flip(yes(m.matches(mark)), *n),
            None => Tri::Maybe,
        },
        Cond::IpRangeSrc(n, r) => match p.src {
            Some(ip) => flip(yes(r.contains(ip)), *n),
            None => Tri::Maybe,
        },
        Cond::IpRangeDst(n, r) => match p.dst {
            Some(ip) => flip(yes(r.contains(ip)), *n),
            None => Tri::Maybe,
        },
        Cond::AddrTypeSrc(n, types) => match addr_type(p.src, host, false) {
            Some(t) => flip(yes(types.0 & t.0 != 0), *n),
            None => Tri::Maybe,
        },
        Cond::AddrTypeDst(n, types) => match addr_type(p.dst, host, hook == Hook::Input) {
            Some(t) => flip(yes(types.0 & t.0 != 0), *n),
            None => Tri::Maybe,
        },
        Cond::Maybe(_) => Tri::Maybe,
    }
}

/// The result of a whole rule, with the index of the condition that decided it (the
/// first that failed, the first uncertain one, or the one to split on).
pub(crate) fn test_rule(r: &CRule, p: &Packet, hook: Hook, host: &Host) -> (Tri, usize) {
    let mut maybe = None;
    for (i, c) in r.conds.iter().enumerate() {
        match test(c, p, hook, host) {
            Tri::Yes => {}
            Tri::No => return (Tri::No, i),
            Tri::Maybe => {
                if maybe.is_none() {
                    maybe = Some(i);
                }
            }
            split @ Tri::Split(..) => return (split, i),
        }
    }
    match maybe {
        Some(i) => (Tri::Maybe, i),
        None => (Tri::Yes, usize::MAX),
    }
}

/// A one-line description of a condition, for trace paths.
pub(crate) fn describe(c: &Cond, family: Family) -> String {
    let not = |n: bool| if n { "! " } else { "" };
    match c {
        Cond::Src(n, a) => format!("{}-s {a}", not(*n)),
        Cond::Dst(n, a) => format!("{}-d {a}", not(*n)),
        Cond::InIface(n, i) => format!("{}-i {i}", not(*n)),
        Cond::OutIface(n, i) => format!("{}-o {i}", not(*n)),
        Cond::Proto(n, Some(p)) => {
            format!("{}-p {}", not(*n), portcullis_rules::Protocol::Number(*p))
        }
        Cond::Proto(n, None) => format!("{}-p (unknown protocol name)", not(*n)),
        Cond::Fragment(f) => format!("{}-f", not(!*f)),
        Cond::Port(Field::Sport, n, r) => format!("{}--sport {r}", not(*n)),
        Cond::Port(Field::Dport, n, r) => format!("{}--dport {r}", not(*n)),
        Cond::Multiport(m) => {
            let list: Vec<String> = m.ports.iter().map(ToString::to_string).collect();
            let opt = match m.dir {
                MultiportDir::Source => "--sports",
                MultiportDir::Destination => "--dports",
                MultiportDir::Either => "--ports",
            };
            format!("{}{opt} {}", not(m.negated), list.join(","))
        }
        Cond::TcpFlags(n, s) => format!("{}--tcp-flags {:?}", not(*n), s),
        Cond::Icmp(n, t) => format!("{}--icmp-type {}", not(*n), t.saved(family)),
        Cond::State(n, s) => format!("{}--ctstate {s}", not(*n)),
        Cond::CtProto(n, p) => format!("{}--ctproto {p:?}", not(*n)),
        Cond::CtOrigSrc(n, a) => format!("{}--ctorigsrc {a}", not(*n)),
        Cond::CtDir(d) => format!("--ctdir {d:?}"),
        Cond::Mark(n, m) => format!("{}--mark {}", not(*n), m.saved_match()),
        Cond::IpRangeSrc(n, r) => format!("{}--src-range {r}", not(*n)),
        Cond::IpRangeDst(n, r) => format!("{}--dst-range {r}", not(*n)),
        Cond::AddrTypeSrc(n, t) => format!("{}--src-type {t}", not(*n)),
        Cond::AddrTypeDst(n, t) => format!("{}--dst-type {t}", not(*n)),
        Cond::Maybe(why) => why.clone(),
    }
}
