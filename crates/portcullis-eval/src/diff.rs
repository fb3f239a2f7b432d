//! Semantic diff: which rules were added, removed or moved, and which packets now get a
//! different verdict, computed with the same interval machinery as the port predictions.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_rules::view::PortRange;
use portcullis_rules::{Backend, Family, Policy, Rule, Ruleset, TableName, canonicalize};

use crate::compile::{Compiled, Cond};
use crate::engine::{Run, Verdict};
use crate::error::EvalError;
use crate::packet::{CtState, Hook, Host, Packet};
use crate::ports::Proto;

/// How a rule or chain changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A rule only in the new ruleset.
    Added,
    /// A rule only in the old ruleset.
    Removed,
    /// The same rule at another place relative to the others.
    Moved,
    /// A builtin chain's policy changed.
    Policy,
    /// A user chain only in the new ruleset.
    ChainAdded,
    /// A user chain only in the old ruleset.
    ChainRemoved,
}

impl ChangeKind {
    /// The word used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Moved => "moved",
            Self::Policy => "policy",
            Self::ChainAdded => "chain-added",
            Self::ChainRemoved => "chain-removed",
        }
    }
}

/// A change in the text of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    /// What changed.
    pub kind: ChangeKind,
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: String,
    /// 1-based position in the old chain.
    pub old_index: Option<usize>,
    /// 1-based position in the new chain.
    pub new_index: Option<usize>,
    /// Line in the old text (0 when unknown).
    pub old_line: u32,
    /// Line in the new text (0 when unknown).
    pub new_line: u32,
    /// For a policy change: the old and new policy.
    pub policies: Option<(Policy, Policy)>,
}

/// A class of packets whose verdict changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviourChange {
    /// Where the packets meet the firewall.
    pub hook: Hook,
    /// The protocol.
    pub proto: Proto,
    /// The destination ports.
    pub ports: PortRange,
    /// The peer addresses (source for INPUT and FORWARD, destination for OUTPUT), an
    /// inclusive range.
    pub peers: (IpAddr, IpAddr),
    /// The input interface (`None`: any but loopback).
    pub in_iface: Option<String>,
    /// The connection tracking state.
    pub state: CtState,
    /// The possible verdicts before.
    pub before: Vec<Verdict>,
    /// The possible verdicts after.
    pub after: Vec<Verdict>,
}

/// The difference between two rulesets of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Rule and chain changes, by table, chain and position.
    pub rules: Vec<RuleChange>,
    /// The packets whose verdict changed; empty when the two behave the same.
    pub behaviour: Vec<BehaviourChange>,
    /// Parts of the packet space that were not compared (too many uncertain paths),
    /// each described in words; empty when the comparison is complete.
    pub not_compared: Vec<String>,
}

/// What the behaviour comparison may assume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiffOptions {
    /// The host's own address: the destination of INPUT packets and the source of
    /// OUTPUT packets (`None`: unknown, so `-d`/`-s` tests on it may match either way).
    pub host: Option<IpAddr>,
}

/// Compares `old` and `new` (of the same family): the rules, then the behaviour.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Result<Diff, EvalError> {
    diff_with(old, new, &DiffOptions::default())
}

/// [`diff`] with options.
pub fn diff_with(old: &Ruleset, new: &Ruleset, opts: &DiffOptions) -> Result<Diff, EvalError> {
    let a = canonicalize(old, Backend::Nft);
    let b = canonicalize(new, Backend::Nft);
    let rules = rule_changes(&a, &b);
    let (behaviour, not_compared) = behaviour(&a, &b, opts)?;
    Ok(Diff { rules, behaviour, not_compared })
}

// ---------------------------------------------------------------------------------------
// Rules.

fn bare(r: &Rule) -> Rule {
    let mut r = r.clone();
    r.counters = None;
    r
}

/// Longest common subsequence pairs of two rule lists (quadratic; long chains fall back
/// to matching equal rules in order).
fn lcs(a: &[Rule], b: &[Rule]) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > 4_000_000 {
        let mut pairs = Vec::new();
        let mut j = 0;
        for (i, r) in a.iter().enumerate() {
            if let Some(k) = b[j..].iter().position(|x| x == r) {
                pairs.push((i, j + k));
                j += k + 1;
            }
        }
        return pairs;
    }
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i] == b[j] { t[i + 1][j + 1] + 1 } else { t[i + 1][j].max(t[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if t[i + 1][j] >= t[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn rule_changes(a: &Ruleset, b: &Ruleset) -> Vec<RuleChange> {
    let mut out = Vec::new();
    let index = |rs: &'_ Ruleset| -> HashMap<(TableName, String), usize> {
        let mut m = HashMap::new();
        for (ti, t) in rs.tables.iter().enumerate() {
            for (ci, c) in t.chains.iter().enumerate() {
                m.insert((t.name, c.name.as_str().to_owned()), ti << 32 | ci);
            }
        }
        m
    };
    let (ia, ib) = (index(a), index(b));
    fn lookup<'r>(rs: &'r Ruleset, i: Option<&usize>) -> Option<&'r portcullis_rules::Chain> {
        i.map(|&i| &rs.tables[i >> 32].chains[i & 0xffff_ffff])
    }
    let mut keys: Vec<(TableName, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rs in [a, b] {
        for t in &rs.tables {
            for c in &t.chains {
                let k = (t.name, c.name.as_str().to_owned());
                if seen.insert(k.clone()) {
                    keys.push(k);
                }
            }
        }
    }
    for key in keys {
        let ca = lookup(a, ia.get(&key));
        let cb = lookup(b, ib.get(&key));
        let (table, chain) = key;
        let change = |kind, oi: Option<usize>, ni: Option<usize>, ol: u32, nl: u32| RuleChange {
            kind,
            table,
            chain: chain.clone(),
            old_index: oi,
            new_index: ni,
            old_line: ol,
            new_line: nl,
            policies: None,
        };
        match (ca, cb) {
            (Some(x), None) if !x.is_builtin() => {
                out.push(change(ChangeKind::ChainRemoved, None, None, x.origin.line, 0));
            }
            (None, Some(y)) if !y.is_builtin() => {
                out.push(change(ChangeKind::ChainAdded, None, None, 0, y.origin.line));
            }
            _ => {}
        }
        let pa = ca.and_then(|c| c.policy).unwrap_or(Policy::Accept);
        let pb = cb.and_then(|c| c.policy).unwrap_or(Policy::Accept);
        if table.is_builtin(&chain) && pa != pb {
            let mut c = change(
                ChangeKind::Policy,
                None,
                None,
                ca.map_or(0, |c| c.origin.line),
                cb.map_or(0, |c| c.origin.line),
            );
            c.policies = Some((pa, pb));
            out.push(c);
        }
        let ra: Vec<Rule> = ca.map(|c| c.rules.iter().map(bare).collect()).unwrap_or_default();
        let rb: Vec<Rule> = cb.map(|c| c.rules.iter().map(bare).collect()).unwrap_or_default();
        let common = lcs(&ra, &rb);
        let mut in_a = vec![false; ra.len()];
        let mut in_b = vec![false; rb.len()];
        for &(i, j) in &common {
            in_a[i] = true;
            in_b[j] = true;
        }
        let mut moved_b = vec![false; rb.len()];
        for i in (0..ra.len()).filter(|&i| !in_a[i]) {
            let moved = (0..rb.len()).find(|&j| !in_b[j] && !moved_b[j] && rb[j] == ra[i]);
            match moved {
                Some(j) => {
                    moved_b[j] = true;
                    out.push(change(
                        ChangeKind::Moved,
                        Some(i + 1),
                        Some(j + 1),
                        ra[i].origin.line,
                        rb[j].origin.line,
                    ));
                }
                None => {
                    out.push(change(ChangeKind::Removed, Some(i + 1), None, ra[i].origin.line, 0))
                }
            }
        }
        for j in (0..rb.len()).filter(|&j| !in_b[j] && !moved_b[j]) {
            out.push(change(ChangeKind::Added, None, Some(j + 1), 0, rb[j].origin.line));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Behaviour.

/// The most peer classes compared (rulesets naming more address ranges are compared on
/// a sample of them).
const MAX_PEERS: usize = 512;

fn num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn ip(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Cut points of the address space: every address range any rule tests starts a class
/// and ends one.
fn peer_classes(family: Family, compiled: &[&Compiled]) -> Vec<(u128, u128)> {
    let max = match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    };
    let mut cuts: BTreeSet<u128> = BTreeSet::new();
    cuts.insert(0);
    let mut add = |lo: u128, hi: u128| {
        cuts.insert(lo);
        if hi < max {
            cuts.insert(hi + 1);
        }
    };
    for c in compiled {
        for t in &c.tables {
            for ch in &t.chains {
                for r in ch.rules() {
                    for cond in &r.conds {
                        match cond {
                            Cond::Src(_, a) | Cond::Dst(_, a) | Cond::CtOrigSrc(_, a) => {
                                if let (portcullis_rules::Address::Net { addr, mask }, Some(_)) =
                                    (a.canonical(), a.prefix_len())
                                {
                                    let m = num(mask);
                                    let span = (!m) & max;
                                    add(num(addr), num(addr) | span);
                                }
                            }
                            Cond::IpRangeSrc(_, r) | Cond::IpRangeDst(_, r) => {
                                add(num(r.lo), num(r.hi))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let cuts: Vec<u128> = cuts.into_iter().collect();
    let mut classes: Vec<(u128, u128)> = cuts
        .iter()
        .enumerate()
        .map(|(i, &lo)| (lo, cuts.get(i + 1).map_or(max, |n| n - 1)))
        .collect();
    if classes.len() > MAX_PEERS {
        let step = classes.len().div_ceil(MAX_PEERS);
        classes = classes.into_iter().step_by(step).collect();
    }
    classes
}

fn interfaces(compiled: &[&Compiled]) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = vec![None, Some("lo".into())];
    for c in compiled {
        for t in &c.tables {
            for ch in &t.chains {
                for r in ch.rules() {
                    for cond in &r.conds {
                        if let Cond::InIface(_, i) = cond {
                            let name = match i.as_str().strip_suffix('+') {
                                Some(p) => format!("{p}0"),
                                None => i.as_str().to_owned(),
                            };
                            if !out.contains(&Some(name.clone())) {
                                out.push(Some(name));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

type PortMap = Vec<(PortRange, BTreeSet<Verdict>)>;

fn port_map(c: &Compiled, hook: Hook, p: &Packet) -> Result<PortMap, EvalError> {
    let host = Host::default();
    let run = Run { compiled: c, host: &host, record: false, limit: 1 << 14 };
    let outcomes = run.eval(hook, p)?;
    let mut cuts: Vec<u32> =
        outcomes.iter().flat_map(|o| [u32::from(o.dport.lo), u32::from(o.dport.hi) + 1]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut map: PortMap = Vec::new();
    for w in cuts.windows(2) {
        let r = PortRange {
            lo: u16::try_from(w[0]).unwrap_or(u16::MAX),
            hi: u16::try_from(w[1] - 1).unwrap_or(u16::MAX),
        };
        let set: BTreeSet<Verdict> = outcomes
            .iter()
            .filter(|o| o.dport.lo <= r.lo && r.hi <= o.dport.hi)
            .map(|o| o.verdict.clone())
            .collect();
        map.push((r, set));
    }
    Ok(map)
}

fn behaviour(
    a: &Ruleset,
    b: &Ruleset,
    opts: &DiffOptions,
) -> Result<(Vec<BehaviourChange>, Vec<String>), EvalError> {
    let ca = Compiled::new(a)?;
    let cb = Compiled::new(b)?;
    let family = a.family;
    let peers = peer_classes(family, &[&ca, &cb]);
    let ifaces = interfaces(&[&ca, &cb]);
    let mut raw: Vec<BehaviourChange> = Vec::new();
    let mut skipped = Vec::new();
    'hooks: for hook in [Hook::Input, Hook::Forward, Hook::Output] {
        for state in [CtState::New, CtState::Established] {
            for proto in [Proto::Tcp, Proto::Udp] {
                for iface in &ifaces {
                    if hook == Hook::Output && iface.is_some() {
                        continue;
                    }
                    for &(lo, hi) in &peers {
                        let mut p = Packet::new(family, if proto == Proto::Tcp { 6 } else { 17 });
                        p.state = state;
                        if state == CtState::Established && proto == Proto::Tcp {
                            p.tcp_flags = portcullis_rules::view::TcpFlags::ACK;
                        }
                        p.sport = PortRange::ALL;
                        p.dport = PortRange::ALL;
                        p.in_iface.clone_from(iface);
                        match hook {
                            Hook::Output => {
                                p.dst = Some(ip(family, lo));
                                p.src = opts.host;
                            }
                            Hook::Input => {
                                p.src = Some(ip(family, lo));
                                p.dst = opts.host;
                            }
                            Hook::Forward => p.src = Some(ip(family, lo)),
                        }
                        let maps = port_map(&ca, hook, &p)
                            .and_then(|ma| Ok((ma, port_map(&cb, hook, &p)?)));
                        let (ma, mb) = match maps {
                            Ok(m) => m,
                            Err(e)
                                if matches!(
                                    e.kind,
                                    crate::error::EvalErrorKind::TooManyPaths(_)
                                ) =>
                            {
                                skipped.push(format!(
                                    "{}: too many uncertain paths (the addresses the rules name leave too many cases; give the host's address)",
                                    hook.as_str()
                                ));
                                continue 'hooks;
                            }
                            Err(e) => return Err(e),
                        };
                        for (r, before, after) in compare(&ma, &mb) {
                            raw.push(BehaviourChange {
                                hook,
                                proto,
                                ports: r,
                                peers: (ip(family, lo), ip(family, hi)),
                                in_iface: iface.clone(),
                                state,
                                before: before.into_iter().collect(),
                                after: after.into_iter().collect(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok((merge_peers(raw), skipped))
}

/// Ranges where two port maps differ, with both verdict sets.
fn compare(a: &PortMap, b: &PortMap) -> Vec<(PortRange, BTreeSet<Verdict>, BTreeSet<Verdict>)> {
    let mut cuts: Vec<u32> =
        a.iter().chain(b).flat_map(|(r, _)| [u32::from(r.lo), u32::from(r.hi) + 1]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let at = |m: &PortMap, p: u16| {
        m.iter().find(|(r, _)| r.contains(p)).map(|(_, s)| s.clone()).unwrap_or_default()
    };
    let mut out: Vec<(PortRange, BTreeSet<Verdict>, BTreeSet<Verdict>)> = Vec::new();
    for w in cuts.windows(2) {
        let lo = u16::try_from(w[0]).unwrap_or(u16::MAX);
        let hi = u16::try_from(w[1] - 1).unwrap_or(u16::MAX);
        let (x, y) = (at(a, lo), at(b, lo));
        if x == y {
            continue;
        }
        match out.last_mut() {
            Some((r, px, py)) if *px == x && *py == y && u32::from(r.hi) + 1 == u32::from(lo) => {
                r.hi = hi
            }
            _ => out.push((PortRange { lo, hi }, x, y)),
        }
    }
    out
}

/// Joins changes that differ only in adjacent peer ranges.
fn merge_peers(mut raw: Vec<BehaviourChange>) -> Vec<BehaviourChange> {
    let key = |c: &BehaviourChange| {
        (
            c.hook.as_str(),
            c.state,
            c.proto,
            c.in_iface.clone(),
            c.ports,
            c.before.clone(),
            c.after.clone(),
        )
    };
    raw.sort_by(|x, y| key(x).cmp(&key(y)).then(num(x.peers.0).cmp(&num(y.peers.0))));
    let mut out: Vec<BehaviourChange> = Vec::new();
    let mut last_key = HashMap::new();
    for c in raw {
        let k = key(&c);
        if let Some(&i) = last_key.get(&k) {
            let prev: &mut BehaviourChange = &mut out[i];
            if num(prev.peers.1).checked_add(1) == Some(num(c.peers.0)) {
                prev.peers.1 = c.peers.1;
                continue;
            }
        }
        last_key.insert(k, out.len());
        out.push(c);
    }
    out
}
