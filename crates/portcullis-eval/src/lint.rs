//! Lint: lock-out risks, Al-Shaer anomalies, unused and unreachable chains, targets in the
//! wrong place and hygiene, each a [`Finding`] with a stable code.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_rules::view::{PortRange, TargetView, TcpFlags};
use portcullis_rules::{Family, Policy, Ruleset, TableName};

use crate::compile::{Act, Compiled};
use crate::engine::{Outcome, Run, Verdict};
use crate::packet::{CtState, Hook, Host, Packet};
use crate::space::{self, Ifaces, Space};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Certainly wrong, or a lock-out risk: `portcullis lint` exits 1.
    Error,
    /// Probably unintended: exit 2 with `--deny-warnings`.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Another place a finding points at (the other rule of a pair, the rule that drops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// Its line in the source (0 when unknown).
    pub line: u32,
    /// What it is to the finding.
    pub note: String,
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The stable code, `PCL001`…
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The family of the ruleset it is about.
    pub family: Family,
    /// The line of the rule or chain it is about (0 when the finding has no line).
    pub line: u32,
    /// The table and chain, when it is about one.
    pub chain: Option<(TableName, String)>,
    /// What is wrong, in one line.
    pub message: String,
    /// Other places involved.
    pub related: Vec<Related>,
    /// A one-line suggestion.
    pub help: String,
}

/// Every code [`lint`] can emit, with its severity and a short name.
pub const CODES: &[(&str, Severity, &str)] = &[
    ("PCL001", Severity::Error, "loopback traffic dropped"),
    ("PCL002", Severity::Error, "replies (ESTABLISHED,RELATED) dropped"),
    ("PCL003", Severity::Error, "no path for ssh or the admin port"),
    ("PCL004", Severity::Warning, "IPv6 ruleset missing while IPv4 is closed"),
    ("PCL005", Severity::Warning, "IPv6 wide open while IPv4 is closed"),
    ("PCL006", Severity::Warning, "FORWARD open on a host"),
    ("PCL010", Severity::Error, "shadowed rule"),
    ("PCL011", Severity::Error, "redundant rule"),
    ("PCL012", Severity::Warning, "generalization"),
    ("PCL013", Severity::Warning, "correlation"),
    ("PCL020", Severity::Warning, "unused chain"),
    ("PCL021", Severity::Warning, "unreachable chain"),
    ("PCL022", Severity::Error, "rule after an unconditional verdict"),
    ("PCL030", Severity::Warning, "comment over 255 bytes"),
    ("PCL031", Severity::Error, "target in the wrong table or chain"),
    ("PCL040", Severity::Warning, "CRLF line endings"),
    ("PCL050", Severity::Error, "ruleset cannot be evaluated"),
    ("PCL051", Severity::Warning, "lock-out checks could not finish"),
];

fn severity(code: &str) -> Severity {
    CODES.iter().find(|(c, ..)| *c == code).map_or(Severity::Error, |(_, s, _)| *s)
}

/// What the lint should assume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintOptions {
    /// TCP ports that must stay reachable (ssh: 22).
    pub admin_ports: Vec<u16>,
    /// Where the administrator connects from (`None`: some address).
    pub admin_src: Option<IpAddr>,
}

impl LintOptions {
    /// ssh (22) from some address.
    pub fn ssh() -> Self {
        Self { admin_ports: vec![22], admin_src: None }
    }
}

struct Out {
    findings: Vec<Finding>,
}

impl Out {
    #[allow(clippy::too_many_arguments, reason = "one place builds every finding")]
    fn push(
        &mut self,
        code: &'static str,
        family: Family,
        line: u32,
        chain: Option<(TableName, &str)>,
        message: String,
        related: Vec<Related>,
        help: String,
    ) {
        self.findings.push(Finding {
            code,
            severity: severity(code),
            family,
            line,
            chain: chain.map(|(t, c)| (t, c.to_owned())),
            message,
            related,
            help,
        });
    }
}

/// Lints the rulesets of one input (one per family). Findings are sorted by family, line
/// and code.
pub fn lint(rulesets: &[Ruleset], opts: &LintOptions) -> Vec<Finding> {
    let mut out = Out { findings: Vec::new() };
    let mut closed = HashMap::new();
    for rs in rulesets {
        let compiled = match Compiled::new(rs) {
            Ok(c) => c,
            Err(e) => {
                out.push(
                    "PCL050",
                    rs.family,
                    e.line,
                    None,
                    format!("cannot evaluate the ruleset: {}", e.kind_text()),
                    Vec::new(),
                    "fix the rule so iptables would accept it".into(),
                );
                continue;
            }
        };
        let is_closed = lockout(rs, &compiled, opts, &mut out);
        closed.insert(rs.family, is_closed);
        forward_open(rs, &compiled, is_closed, &mut out);
        for t in &rs.tables {
            chains(rs, t, &mut out);
            targets(rs, t, &mut out);
            comments(rs, t, &mut out);
        }
        anomalies(rs, &compiled, &mut out);
    }
    if closed.get(&Family::V4) == Some(&true) {
        match closed.get(&Family::V6) {
            None => out.push(
                "PCL004",
                Family::V4,
                0,
                None,
                "IPv4 INPUT is closed but there is no IPv6 ruleset: IPv6 stays wide open".into(),
                Vec::new(),
                "add the same rules for ip6tables (ICMPv6 must stay open for neighbour discovery)"
                    .into(),
            ),
            Some(false) => {
                let line = rulesets
                    .iter()
                    .find(|r| r.family == Family::V6)
                    .and_then(|r| r.table(TableName::Filter))
                    .and_then(|t| t.chain("INPUT"))
                    .map_or(0, |c| c.origin.line);
                out.push(
                    "PCL005",
                    Family::V6,
                    line,
                    Some((TableName::Filter, "INPUT")),
                    "IPv6 INPUT accepts every new connection while IPv4 INPUT is closed".into(),
                    Vec::new(),
                    "close IPv6 INPUT the way IPv4 is closed".into(),
                );
            }
            Some(true) => {}
        }
    }
    out.findings.sort_by(|a, b| (a.family, a.line, a.code).cmp(&(b.family, b.line, b.code)));
    out.findings
}

/// Findings about the text itself: CRLF line endings (iptables-restore reads `\r` as part
/// of the last word of each line).
pub fn lint_text(text: &str, family: Family) -> Vec<Finding> {
    let lines: Vec<usize> = text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| l.ends_with('\r'))
        .map(|(i, _)| i + 1)
        .collect();
    let Some(first) = lines.first() else { return Vec::new() };
    vec![Finding {
        code: "PCL040",
        severity: severity("PCL040"),
        family,
        line: u32::try_from(*first).unwrap_or(u32::MAX),
        chain: None,
        message: format!(
            "{} line(s) end in CRLF: iptables-restore takes the `\\r` as part of the last word",
            lines.len()
        ),
        related: Vec::new(),
        help: "convert the file to LF line endings (dos2unix)".into(),
    }]
}

impl crate::error::EvalError {
    fn kind_text(&self) -> String {
        let mut s = self.to_string();
        if let Some(rest) = s.strip_prefix(&format!("line {}: ", self.line)) {
            s = rest.to_owned();
        }
        s
    }
}

// ---------------------------------------------------------------------------------------
// Lock-out.

fn loopback(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

fn input_outcomes(c: &Compiled, p: &Packet) -> Result<Vec<Outcome>, crate::error::EvalError> {
    let host = Host::default();
    let run = Run { compiled: c, host: &host, record: false, limit: 1 << 16 };
    run.eval(Hook::Input, p)
}

/// The first outcome that does not accept.
fn first_drop(outcomes: &[Outcome]) -> Option<&Outcome> {
    outcomes
        .iter()
        .filter(|o| !matches!(o.verdict, Verdict::Accept))
        .min_by_key(|o| (!o.certain, o.dport.lo))
}

fn decided_line(rs: &Ruleset, o: &Outcome) -> (u32, String) {
    match &o.decided_by {
        Some(d) if d.index.is_some() => {
            (d.line, format!("{}/{} rule {}", d.table.as_str(), d.chain, d.index.unwrap_or(0)))
        }
        Some(d) => {
            let line =
                rs.table(d.table).and_then(|t| t.chain(&d.chain)).map_or(0, |c| c.origin.line);
            (line, format!("the policy of {}/{}", d.table.as_str(), d.chain))
        }
        None => (0, "a rule".into()),
    }
}

/// Whether filter INPUT denies by default: policy DROP, or a last rule that drops or
/// rejects every packet.
fn default_deny(rs: &Ruleset, c: &Compiled) -> bool {
    let Some(t) = c.table(TableName::Filter) else { return false };
    let table = &c.tables[t];
    let Some(&ch) = table.by_name.get("INPUT") else { return false };
    let chain = &table.chains[ch];
    let _ = rs;
    chain.policy == Some(Policy::Drop)
        || chain
            .rules()
            .last()
            .is_some_and(|r| r.conds.is_empty() && matches!(r.act, Act::Drop | Act::Reject(_)))
}

/// Runs the lock-out checks; returns whether INPUT is closed (it denies by default).
fn lockout(rs: &Ruleset, c: &Compiled, opts: &LintOptions, out: &mut Out) -> bool {
    let f = rs.family;
    if !default_deny(rs, c) {
        return false;
    }
    let mut probe = Packet::new(f, 6);
    probe.tcp_flags = TcpFlags::SYN;
    probe.sport = PortRange::ALL;
    probe.dport = PortRange::ALL;
    let input = (TableName::Filter, "INPUT");
    let mut lo = probe.clone();
    lo.in_iface = Some("lo".into());
    lo.src = Some(loopback(f));
    lo.dst = Some(loopback(f));
    let mut est = probe.clone();
    est.state = CtState::Established;
    est.tcp_flags = TcpFlags::ACK;
    let admin: Vec<Packet> = opts
        .admin_ports
        .iter()
        .map(|&port| {
            let mut a = probe.clone();
            a.src = opts.admin_src;
            a.dport = PortRange::single(port);
            a
        })
        .collect();
    let all =
        std::iter::once(&probe).chain([&lo, &est]).chain(&admin).map(|p| input_outcomes(c, p));
    let results: Result<Vec<Vec<Outcome>>, _> = all.collect();
    let Ok(mut results) = results else {
        let line =
            rs.table(TableName::Filter).and_then(|t| t.chain("INPUT")).map_or(0, |c| c.origin.line);
        out.push(
            "PCL051",
            f,
            line,
            Some(input),
            "the lock-out checks could not finish: uncertain matches fork into too many paths"
                .into(),
            Vec::new(),
            "check loopback, ESTABLISHED and the admin port with `portcullis trace`".into(),
        );
        return true;
    };
    let admin_out = results.split_off(3);
    let est_out = results.pop().unwrap_or_default();
    let lo_out = results.pop().unwrap_or_default();
    let new_from_outside = results.pop().unwrap_or_default();
    let drop_line = first_drop(&new_from_outside).map_or(0, |o| decided_line(rs, o).0);

    if let Some(o) = first_drop(&lo_out) {
        let (line, what) = decided_line(rs, o);
        out.push(
            "PCL001",
            f,
            line,
            Some(input),
            format!(
                "loopback traffic is dropped by {what}: local services cannot talk to each other"
            ),
            Vec::new(),
            format!("add `-A INPUT -i lo -j ACCEPT` as the first INPUT rule{}", before(line)),
        );
    }

    // Show a typical ephemeral port when one is dropped.
    let ephemeral =
        est_out.iter().find(|o| o.verdict != Verdict::Accept && o.dport.contains(49152));
    if let Some(o) = ephemeral.or_else(|| first_drop(&est_out)) {
        let (line, what) = decided_line(rs, o);
        out.push(
            "PCL002",
            f,
            line,
            Some(input),
            format!(
                "replies to this host's own connections (ESTABLISHED) are dropped by {what}{}",
                if o.dport == PortRange::ALL {
                    String::new()
                } else if o.dport.contains(49152) {
                    " (e.g. to tcp port 49152)".to_owned()
                } else {
                    format!(" (e.g. to tcp port {})", o.dport.lo)
                }
            ),
            Vec::new(),
            format!(
                "add `-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT` near the top of INPUT{}",
                before(line)
            ),
        );
    }

    for (&port, outcomes) in opts.admin_ports.iter().zip(&admin_out) {
        if !outcomes.iter().any(|o| o.verdict == Verdict::Accept) {
            let (line, what) =
                outcomes.first().map_or((drop_line, "the ruleset".into()), |o| decided_line(rs, o));
            let from = opts.admin_src.map_or_else(|| "any source".to_owned(), |a| a.to_string());
            out.push(
                "PCL003",
                f,
                line,
                Some(input),
                format!("new connections to tcp port {port} (ssh/admin) from {from} are refused by {what}: applying this locks you out"),
                Vec::new(),
                format!(
                    "add `-A INPUT -p tcp --dport {port}{} -j ACCEPT`{}",
                    opts.admin_src.map_or_else(String::new, |a| format!(" -s {a}")),
                    before(line)
                ),
            );
        }
    }
    true
}

fn before(line: u32) -> String {
    if line > 0 { format!(" (before line {line})") } else { String::new() }
}

fn forward_open(rs: &Ruleset, c: &Compiled, input_closed: bool, out: &mut Out) {
    if !input_closed {
        return;
    }
    let has_nat =
        rs.table(TableName::Nat).is_some_and(|t| t.chains.iter().any(|c| !c.rules.is_empty()));
    if has_nat {
        return;
    }
    let mut p = Packet::new(rs.family, 6);
    p.sport = PortRange::ALL;
    p.dport = PortRange::ALL;
    let host = Host::default();
    let run = Run { compiled: c, host: &host, record: false, limit: 1 << 16 };
    let outcomes = run.eval(Hook::Forward, &p).unwrap_or_default();
    if !outcomes.is_empty() && outcomes.iter().all(|o| o.verdict == Verdict::Accept && o.certain) {
        let line = rs
            .table(TableName::Filter)
            .and_then(|t| t.chain("FORWARD"))
            .map_or(0, |c| c.origin.line);
        out.push(
            "PCL006",
            rs.family,
            line,
            Some((TableName::Filter, "FORWARD")),
            "FORWARD accepts every packet while INPUT is closed: if this host routes, it routes anything".into(),
            Vec::new(),
            "set `-P FORWARD DROP` unless this host is meant to be a router".into(),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Chains and targets.

/// The names of a table's chains, for constant-time "is this target a chain" tests.
fn chain_names(t: &portcullis_rules::Table) -> HashSet<&str> {
    t.chains.iter().map(|c| c.name.as_str()).collect()
}

fn chain_refs(t: &portcullis_rules::Table) -> HashMap<&str, Vec<&str>> {
    let names = chain_names(t);
    let mut refs: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in &t.chains {
        for r in &c.rules {
            if let Some(target) = r.chain_ref(|n| names.contains(n)) {
                refs.entry(target).or_default().push(c.name.as_str());
            }
        }
    }
    refs
}

/// The builtin chains each chain is reachable from.
fn roots(t: &portcullis_rules::Table) -> HashMap<String, HashSet<String>> {
    let names = chain_names(t);
    let by_name: HashMap<&str, &portcullis_rules::Chain> =
        t.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for b in t.chains.iter().filter(|c| c.is_builtin()) {
        let mut todo = vec![b.name.as_str()];
        let mut seen = HashSet::new();
        while let Some(c) = todo.pop() {
            if !seen.insert(c) {
                continue;
            }
            out.entry(c.to_owned()).or_default().insert(b.name.as_str().to_owned());
            if let Some(chain) = by_name.get(c) {
                for r in &chain.rules {
                    if let Some(next) = r.chain_ref(|n| names.contains(n)) {
                        todo.push(next);
                    }
                }
            }
        }
    }
    out
}

fn chains(rs: &Ruleset, t: &portcullis_rules::Table, out: &mut Out) {
    let refs = chain_refs(t);
    let reach = roots(t);
    for c in t.chains.iter().filter(|c| !c.is_builtin()) {
        let name = c.name.as_str();
        if !refs.contains_key(name) {
            out.push(
                "PCL020",
                rs.family,
                c.origin.line,
                Some((t.name, name)),
                format!("chain {name} is never jumped to: its rules never run"),
                Vec::new(),
                format!("jump to it (`-j {name}`) or delete it (`-X {name}`)"),
            );
        } else if !reach.contains_key(name) {
            out.push(
                "PCL021",
                rs.family,
                c.origin.line,
                Some((t.name, name)),
                format!("chain {name} is only reached from chains that never run"),
                Vec::new(),
                "jump to it from a builtin chain or delete it".into(),
            );
        }
    }
}

fn targets(rs: &Ruleset, t: &portcullis_rules::Table, out: &mut Out) {
    let reach = roots(t);
    let names = chain_names(t);
    for c in &t.chains {
        let from = reach.get(c.name.as_str()).cloned().unwrap_or_default();
        for r in &c.rules {
            let Some(a) = &r.action else { continue };
            let Ok(v) = a.view(rs.family, |n| names.contains(n)) else { continue };
            let (name, table, hooks): (&str, TableName, &[&str]) = match v {
                TargetView::Reject(_) => {
                    ("REJECT", TableName::Filter, &["INPUT", "FORWARD", "OUTPUT"])
                }
                TargetView::Dnat(_) => ("DNAT", TableName::Nat, &["PREROUTING", "OUTPUT"]),
                TargetView::Redirect(_) => ("REDIRECT", TableName::Nat, &["PREROUTING", "OUTPUT"]),
                TargetView::Snat(_) => ("SNAT", TableName::Nat, &["POSTROUTING", "INPUT"]),
                TargetView::Masquerade(_) => ("MASQUERADE", TableName::Nat, &["POSTROUTING"]),
                _ => continue,
            };
            let wrong_table = t.name != table;
            let wrong_hook = from.iter().any(|b| !hooks.contains(&b.as_str()));
            if wrong_table || wrong_hook {
                let where_ = if wrong_table {
                    format!("the {} table", t.name.as_str())
                } else {
                    let mut bad: Vec<&str> =
                        from.iter().map(String::as_str).filter(|b| !hooks.contains(b)).collect();
                    bad.sort_unstable();
                    format!("{} (reached from {})", c.name.as_str(), bad.join(", "))
                };
                out.push(
                    "PCL031",
                    rs.family,
                    r.origin.line,
                    Some((t.name, c.name.as_str())),
                    format!("{name} is not allowed in {where_}: the kernel refuses the ruleset"),
                    Vec::new(),
                    format!(
                        "use {name} only in the {} table's {} chains",
                        table.as_str(),
                        hooks.join("/")
                    ),
                );
            }
        }
    }
}

fn comments(rs: &Ruleset, t: &portcullis_rules::Table, out: &mut Out) {
    for c in &t.chains {
        for r in &c.rules {
            for m in r.matches.iter().filter(|m| m.name == "comment") {
                let text = m.opt("comment").map_or("", portcullis_rules::Opt::arg);
                if text.len() > 255 {
                    out.push(
                        "PCL030",
                        rs.family,
                        r.origin.line,
                        Some((t.name, c.name.as_str())),
                        format!("comment of {} bytes: the kernel keeps at most 255", text.len()),
                        Vec::new(),
                        "shorten the comment to 255 bytes".into(),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Anomalies (Al-Shaer & Hamed), per chain with set semantics.

/// Chains longer than this are not compared pairwise (kube-proxy's service chains).
const MAX_PAIRWISE: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Ends this chain's evaluation when it matches; the key compares actions.
    Terminal(String),
    /// Lets evaluation go on (LOG, a jump that may return, MARK…).
    Passing,
}

fn kind(a: &Act, chain_names: &[String]) -> Kind {
    match a {
        Act::Accept => Kind::Terminal("ACCEPT".into()),
        Act::Drop => Kind::Terminal("DROP".into()),
        Act::Reject(w) => Kind::Terminal(format!("REJECT --reject-with {}", w.as_str())),
        Act::Return => Kind::Terminal("RETURN".into()),
        Act::Queue => Kind::Terminal("QUEUE".into()),
        Act::Goto(c) => {
            Kind::Terminal(format!("goto {}", chain_names.get(*c).map_or("?", String::as_str)))
        }
        Act::Dnat(..) | Act::NatEnd => Kind::Terminal(format!("{a:?}")),
        _ => Kind::Passing,
    }
}

fn verb(k: &Kind) -> String {
    match k {
        Kind::Terminal(s) => s.clone(),
        Kind::Passing => "continue".into(),
    }
}

fn anomalies(rs: &Ruleset, c: &Compiled, out: &mut Out) {
    for t in &c.tables {
        let names: Vec<String> = t.chains.iter().map(|ch| ch.name.clone()).collect();
        for ch in &t.chains {
            if ch.rules().len() > MAX_PAIRWISE {
                continue;
            }
            let mut ifaces = Ifaces::default();
            for r in ch.rules() {
                for cond in &r.conds {
                    if let crate::compile::Cond::InIface(_, i)
                    | crate::compile::Cond::OutIface(_, i) = cond
                    {
                        ifaces.add(i);
                    }
                }
            }
            let all = space::everything(rs.family, &ifaces);
            let spaces: Vec<Option<Space>> = ch
                .rules()
                .iter()
                .map(|r| space::rule_space(&r.conds, rs.family, &ifaces))
                .collect();
            let kinds: Vec<Kind> = ch.rules().iter().map(|r| kind(&r.act, &names)).collect();
            let at = Some((t.name, ch.name.as_str()));
            let mut flagged = vec![false; ch.rules().len()];
            for j in 0..ch.rules().len() {
                let rj = &ch.rules()[j];
                let Some(sj) = &spaces[j] else { continue };
                if sj.is_empty() {
                    continue;
                }
                // Earlier terminal rules, in order.
                let earlier: Vec<usize> = (0..j)
                    .filter(|&i| matches!(kinds[i], Kind::Terminal(_)) && spaces[i].is_some())
                    .collect();
                if let Some(&i) = earlier
                    .iter()
                    .find(|&&i| spaces[i].as_ref().is_some_and(|s| space::subset(&all, s)))
                {
                    if !flagged[i] {
                        let ri = &ch.rules()[i];
                        out.push(
                            "PCL022",
                            rs.family,
                            rj.line,
                            at,
                            format!("this rule is never reached: rule {} ({}) before it matches every packet", ri.index, verb(&kinds[i])),
                            vec![Related { line: ri.line, note: format!("rule {} ends the chain for every packet", ri.index) }],
                            format!("move this rule before line {} or delete it", ri.line),
                        );
                    }
                    flagged[j] = true;
                    continue;
                }
                // Covered by the union of earlier terminal rules?
                let mut cover: Space = Vec::new();
                let mut touching = Vec::new();
                for &i in &earlier {
                    let si = spaces[i].as_ref().expect("filtered");
                    if space::intersects(si, sj) {
                        cover.extend(si.iter().cloned());
                        touching.push(i);
                    }
                }
                let covered = !touching.is_empty() && space::subset(sj, &cover);
                if covered {
                    let differ: Vec<usize> =
                        touching.iter().copied().filter(|&i| kinds[i] != kinds[j]).collect();
                    let related = |list: &[usize], note: &str| -> Vec<Related> {
                        list.iter()
                            .map(|&i| Related {
                                line: ch.rules()[i].line,
                                note: format!(
                                    "rule {} ({}) {note}",
                                    ch.rules()[i].index,
                                    verb(&kinds[i])
                                ),
                            })
                            .collect()
                    };
                    if differ.is_empty() {
                        let names = lines(&touching, ch);
                        out.push(
                            "PCL011",
                            rs.family,
                            rj.line,
                            at,
                            format!("redundant rule: {names} before it already {} every packet it matches, with the same action ({})", if touching.len() == 1 { "matches" } else { "match" }, verb(&kinds[j])),
                            related(&touching, "matches first, with the same action"),
                            "delete this rule".into(),
                        );
                    } else {
                        let names = lines(&differ, ch);
                        out.push(
                            "PCL010",
                            rs.family,
                            rj.line,
                            at,
                            format!("shadowed rule: it never matches; {names} before it {} every packet it would, with another action than its {}", if differ.len() == 1 { "takes" } else { "take" }, verb(&kinds[j])),
                            related(&differ, "matches first, with another action"),
                            format!("move this rule before line {} or delete it", ch.rules()[differ[0]].line),
                        );
                    }
                    flagged[j] = true;
                    continue;
                }
                if let Kind::Terminal(_) = &kinds[j] {
                    let catch_all = space::subset(&all, sj);
                    for &i in &touching {
                        if kinds[i] == kinds[j] || flagged[i] {
                            continue;
                        }
                        let si = spaces[i].as_ref().expect("filtered");
                        let ri = &ch.rules()[i];
                        if space::subset(si, sj) {
                            if !catch_all {
                                out.push(
                                    "PCL012",
                                    rs.family,
                                    rj.line,
                                    at,
                                    format!("generalization: this rule ({}) matches everything rule {} (line {}, {}) matches and more", verb(&kinds[j]), ri.index, ri.line, verb(&kinds[i])),
                                    vec![Related { line: ri.line, note: format!("rule {}, the exception before it", ri.index) }],
                                    "fine if the earlier rule is a deliberate exception; otherwise narrow this rule".into(),
                                );
                            }
                        } else if !space::subset(sj, si)
                            && !catch_all
                            && space::common_field(&ch.rules()[i].conds, &rj.conds)
                        {
                            out.push(
                                "PCL013",
                                rs.family,
                                rj.line,
                                at,
                                format!("correlation: this rule ({}) and rule {} (line {}, {}) overlap, and their order decides the overlap", verb(&kinds[j]), ri.index, ri.line, verb(&kinds[i])),
                                vec![Related { line: ri.line, note: format!("rule {} takes the packets both match", ri.index) }],
                                "split the rules so they do not overlap, or confirm the order".into(),
                            );
                        }
                    }
                }
            }
            redundant_later(rs, ch, &spaces, &kinds, &mut flagged, at, out);
        }
    }
}

fn lines(list: &[usize], ch: &crate::compile::CChain) -> String {
    let v: Vec<String> = list
        .iter()
        .map(|&i| format!("{} (line {})", ch.rules()[i].index, ch.rules()[i].line))
        .collect();
    if v.len() == 1 { format!("rule {}", v[0]) } else { format!("rules {}", v.join(", ")) }
}

/// A rule is also redundant when a later rule with the same action matches all it
/// matches and nothing between acts otherwise on those packets, or when the chain's
/// policy does the same and nothing after it matches its packets.
#[allow(clippy::too_many_arguments, reason = "the per-chain analysis state")]
fn redundant_later(
    rs: &Ruleset,
    ch: &crate::compile::CChain,
    spaces: &[Option<Space>],
    kinds: &[Kind],
    flagged: &mut [bool],
    at: Option<(TableName, &str)>,
    out: &mut Out,
) {
    let n = ch.rules().len();
    for j in 0..n {
        if flagged[j] {
            continue;
        }
        let (Some(sj), Kind::Terminal(_)) = (&spaces[j], &kinds[j]) else { continue };
        if sj.is_empty() {
            continue;
        }
        // Some(Some(k)): a later rule does the same; Some(None): nothing later touches it.
        let mut found = None;
        let mut k = j + 1;
        loop {
            if k == n {
                found = Some(None);
                break;
            }
            let Some(sk) = &spaces[k] else { break };
            if kinds[k] == kinds[j] && space::subset(sj, sk) {
                found = Some(Some(k));
                break;
            }
            if space::intersects(sj, sk) && kinds[k] != kinds[j] {
                break;
            }
            k += 1;
        }
        let policy_same = ch.policy.is_some_and(|p| {
            matches!((p, &kinds[j]), (Policy::Accept, Kind::Terminal(s)) if s == "ACCEPT")
                || matches!((p, &kinds[j]), (Policy::Drop, Kind::Terminal(s)) if s == "DROP")
        });
        let rj = &ch.rules()[j];
        match found {
            Some(Some(k)) => {
                let rk = &ch.rules()[k];
                flagged[j] = true;
                out.push(
                    "PCL011",
                    rs.family,
                    rj.line,
                    at,
                    format!("redundant rule: rule {} (line {}) later does the same ({}) to every packet this rule matches, and nothing between decides otherwise", rk.index, rk.line, verb(&kinds[k])),
                    vec![Related { line: rk.line, note: format!("rule {}, which does the same", rk.index) }],
                    "delete this rule".into(),
                );
            }
            Some(None) if policy_same => {
                flagged[j] = true;
                out.push(
                    "PCL011",
                    rs.family,
                    rj.line,
                    at,
                    format!("redundant rule: no later rule matches its packets and the chain's policy does the same ({})", verb(&kinds[j])),
                    Vec::new(),
                    "delete this rule".into(),
                );
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rendering.

/// A policy set by a command script (`iptables -P INPUT DROP`) has no line in the model:
/// points findings about a chain that have no line at the last line of `text` that sets
/// that chain's policy.
pub fn locate_policies(findings: &mut [Finding], text: &str) {
    for f in findings.iter_mut().filter(|f| f.line == 0) {
        let Some((_, chain)) = &f.chain else { continue };
        let cmd = if f.family == Family::V4 { "iptables " } else { "ip6tables " };
        let needle = format!("-P {chain} ");
        let found = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with(cmd) && l.contains(&needle))
            .map(|(i, _)| i + 1)
            .last();
        if let Some(line) = found {
            f.line = u32::try_from(line).unwrap_or(0);
        }
    }
}

/// Renders findings like compiler diagnostics, quoting the lines of `text` (the input
/// named `name`), followed by a summary line.
pub fn render(findings: &[Finding], name: &str, text: &str) -> String {
    use fmt::Write as _;
    let src: Vec<&str> = text.split('\n').collect();
    let quote = |line: u32| src.get(line as usize - 1).map(|l| l.trim_end_matches('\r'));
    let mut s = String::new();
    for f in findings {
        let fam = match f.family {
            Family::V4 => "",
            Family::V6 => " (IPv6)",
        };
        let _ = writeln!(s, "{}[{}]: {}{fam}", f.severity, f.code, f.message);
        if f.line > 0 {
            let w = f.line.to_string().len();
            let _ = writeln!(s, "{:w$}--> {name}:{}", "", f.line);
            if let Some(l) = quote(f.line) {
                let _ = writeln!(s, "{:w$} |", "");
                let _ = writeln!(s, "{} | {l}", f.line);
                let _ = writeln!(s, "{:w$} |", "");
            }
        } else {
            let _ = writeln!(s, " --> {name}");
        }
        for r in &f.related {
            match (r.line, quote(r.line.max(1))) {
                (0, _) | (_, None) => {
                    let _ = writeln!(s, "  = note: {}", r.note);
                }
                (line, Some(l)) => {
                    let _ = writeln!(s, "  = note: line {line}: {}: {}", r.note, l.trim());
                }
            }
        }
        let _ = writeln!(s, "  = help: {}", f.help);
        s.push('\n');
    }
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    if findings.is_empty() {
        let _ = writeln!(s, "{name}: no findings");
    } else {
        let _ = writeln!(s, "{name}: {errors} error(s), {warnings} warning(s)");
    }
    s
}
