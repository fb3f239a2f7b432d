//! Validation of a whole ruleset: what iptables or the kernel would refuse.
//!
//! Checks, each error placed at its table, chain, rule number and source line:
//! - chains: policies only on builtin chains, every builtin chain with a policy, no
//!   chain declared twice;
//! - rules: address families (`-s`/`-d`, `-f` only in IPv4), `! -p 0`, `-i` on output
//!   hooks and `-o` on input hooks of builtin chains;
//! - matches and targets: every value of the common extensions ([`crate::view`]), the
//!   protocol a match or target needs (`-m tcp` needs `-p tcp`, `--reject-with tcp-reset`
//!   too), the family of icmp/icmp6;
//! - jumps and gotos to chains that do not exist or to builtin chains, and jump loops
//!   reachable from a builtin chain;
//! - targets and matches in tables and hooks where the kernel refuses them (DNAT only in
//!   nat PREROUTING/OUTPUT, REJECT only in filter INPUT/FORWARD/OUTPUT, CT only in raw,
//!   owner only on OUTPUT/POSTROUTING…). A user chain is checked against every builtin
//!   chain it is reachable from.

mod specs;
mod stream;

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

use crate::Family;
use crate::addr::Protocol;
use crate::error::{Location, ModelError, ModelErrorKind};
use crate::names::{TableName, hook_rank, is_target_name};
use crate::rule::{Action, Rule};
use crate::ruleset::{Chain, Ruleset, Table};
use crate::view::{MatchView, NatTarget, RejectWith, TargetView};

pub(crate) use self::specs::{spec_takes_option, spec_target_takes_option};
pub use self::stream::{RuleFacts, TableCheck, rule_facts};

/// Hook bits, in the order of [`hook_rank`].
const PRE: u8 = 1;
const IN: u8 = 2;
const FWD: u8 = 4;
const OUT: u8 = 8;
const POST: u8 = 16;
const ALL_HOOKS: u8 = 31;

fn hook_bit(chain: &str) -> u8 {
    hook_rank(chain).map_or(0, |r| 1 << r)
}

/// Checks `ruleset` and returns every error found (empty when it is valid).
pub fn validate(ruleset: &Ruleset) -> Vec<ModelError> {
    let mut errors = Vec::new();
    for table in &ruleset.tables {
        validate_table(table, ruleset.family, &mut errors);
    }
    errors
}

fn validate_table(table: &Table, family: Family, errors: &mut Vec<ModelError>) {
    let tname = table.name;
    let chain_loc = |chain: &str| Location {
        table: Some(tname),
        chain: Some(chain.to_owned()),
        ..Location::default()
    };
    let mut seen: FastMap<&str, ()> = FastMap::default();
    seen.reserve(table.chains.len());
    for c in &table.chains {
        let name = c.name.as_str();
        let loc =
            || Location { line: (c.origin.line > 0).then_some(c.origin.line), ..chain_loc(name) };
        if seen.insert(name, ()).is_some() {
            errors.push(ModelError::new(ModelErrorKind::ChainExists(name.to_owned())).at(loc()));
        }
        match (c.policy, tname.is_builtin(name)) {
            (Some(p), false) => errors.push(
                ModelError::new(ModelErrorKind::InvalidPolicy {
                    chain: name.to_owned(),
                    policy: p.as_str().to_owned(),
                })
                .at(loc()),
            ),
            (None, true) => errors.push(
                ModelError::new(ModelErrorKind::InvalidPolicy {
                    chain: name.to_owned(),
                    policy: "-".to_owned(),
                })
                .at(loc()),
            ),
            _ => {}
        }
    }

    let chains = Chains::new(table);
    let hooks = reachable_hooks(&chains);
    for (ci, c) in table.chains.iter().enumerate() {
        let name = c.name.as_str();
        let chain_hooks = if c.is_builtin() { hook_bit(name) } else { hooks[ci] };
        for (i, rule) in c.rules.iter().enumerate() {
            let ctx = Ctx {
                table: tname,
                chains: Some(&chains),
                family,
                chain: name,
                builtin: c.is_builtin(),
                hooks: Hooks::Known(chain_hooks),
            };
            let before = errors.len();
            check_rule(&ctx, rule, errors);
            if errors.len() > before {
                let loc = Location {
                    table: Some(tname),
                    chain: Some(name.to_owned()),
                    rule: Some(i + 1),
                    line: (rule.origin.line > 0).then_some(rule.origin.line),
                };
                for e in &mut errors[before..] {
                    e.location = loc.clone();
                }
            }
        }
    }
    find_loops(&chains, errors);
}

/// Chain names are hashed with the rustc/Firefox "Fx" hash: they are short and not
/// attacker-chosen in a way that matters here (a hostile file only slows its own
/// validation), and SipHash cost a tenth of validating a kube-proxy-sized table.
type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// The chains of a table by name, for lookups in constant time (a kube-proxy ruleset has
/// thousands of chains).
struct Chains<'a> {
    table: &'a Table,
    by_name: FastMap<&'a str, usize>,
}

impl<'a> Chains<'a> {
    fn new(table: &'a Table) -> Self {
        let mut by_name = FastMap::default();
        by_name.reserve(table.chains.len());
        for (i, c) in table.chains.iter().enumerate() {
            by_name.entry(c.name.as_str()).or_insert(i);
        }
        Self { table, by_name }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn get(&self, name: &str) -> Option<&'a Chain> {
        self.index(name).and_then(|i| self.table.chains.get(i))
    }

    fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// What a rule is checked against.
struct Ctx<'a> {
    table: TableName,
    /// The table's chains; `None` when the rule is checked on its own ([`check_rule_alone`]):
    /// jumps are then the caller's to resolve.
    chains: Option<&'a Chains<'a>>,
    family: Family,
    chain: &'a str,
    builtin: bool,
    /// The hooks the chain can be reached from (0: unreachable user chain).
    hooks: Hooks,
}

/// The hooks a rule's chain is reached from: known, or (a user chain checked before the
/// table's graph is known) collected as the hooks the rule may run from.
enum Hooks {
    Known(u8),
    Deferred(Cell<u8>),
}

impl Ctx<'_> {
    /// Whether the rule may run in `table` only and only from `allowed` hooks. With
    /// deferred hooks, the hook part is recorded for the caller and taken as met.
    fn allowed(&self, tables: &[TableName], allowed: u8) -> bool {
        if !(tables.is_empty() || tables.contains(&self.table)) {
            return false;
        }
        match &self.hooks {
            Hooks::Known(hooks) => hooks & !allowed == 0,
            Hooks::Deferred(may_run) => {
                may_run.set(may_run.get() & allowed);
                true
            }
        }
    }

    fn has_chain(&self, name: &str) -> bool {
        self.chains.is_some_and(|c| c.has(name))
    }
}

/// For each user chain, the builtin hooks it is reachable from through jumps and gotos.
/// For each chain (by index), the builtin hooks it is reachable from through jumps and
/// gotos (user chains only; builtin chains get their own hook elsewhere).
fn reachable_hooks(chains: &Chains<'_>) -> Vec<u8> {
    let n = chains.table.chains.len();
    let mut out = vec![0u8; n];
    let mut visited = vec![false; n];
    for c in chains.table.chains.iter().filter(|c| c.is_builtin()) {
        let bit = hook_bit(c.name.as_str());
        let mut stack = vec![c];
        visited.iter_mut().for_each(|v| *v = false);
        while let Some(ch) = stack.pop() {
            for r in &ch.rules {
                let Some(target) = r.chain_ref(|n| chains.has(n)) else { continue };
                let Some(i) = chains.index(target) else { continue };
                let Some(next) = chains.table.chains.get(i) else { continue };
                if next.is_builtin() || visited[i] {
                    continue;
                }
                visited[i] = true;
                out[i] |= bit;
                stack.push(next);
            }
        }
    }
    out
}

fn err(kind: ModelErrorKind) -> ModelError {
    ModelError::new(kind)
}

fn not_allowed(target: &str, allowed: &'static str) -> ModelError {
    err(ModelErrorKind::TargetNotAllowed { target: target.to_owned(), allowed })
}

/// The protocol number of `-p` when it is given and not negated.
fn proto_of(rule: &Rule) -> Option<u8> {
    rule.proto.as_ref().filter(|p| !p.negated).and_then(|p| p.value.number())
}

fn check_rule(ctx: &Ctx<'_>, rule: &Rule, errors: &mut Vec<ModelError>) {
    let family = ctx.family;
    // Base fields.
    for (flag, a) in [("-s", &rule.src), ("-d", &rule.dst)] {
        if let Some(a) = a
            && a.value.family().is_some_and(|f| f != family)
        {
            errors.push(err(ModelErrorKind::WrongFamily(format!("{flag} {}", a.value))));
        }
    }
    if family == Family::V6 && rule.fragment.is_some() {
        errors.push(err(ModelErrorKind::WrongFamily("-f is IPv4 only".into())));
    }
    if let Some(p) = &rule.proto
        && p.negated
        && p.value == Protocol::Number(0)
    {
        errors.push(crate::error::invalid("-p", "! 0", "a protocol that can be negated (not all)"));
    }
    if ctx.builtin {
        if rule.in_iface.is_some() && matches!(ctx.chain, "OUTPUT" | "POSTROUTING") {
            errors.push(not_allowed("-i", "in PREROUTING, INPUT and FORWARD"));
        }
        if rule.out_iface.is_some() && matches!(ctx.chain, "PREROUTING" | "INPUT") {
            errors.push(not_allowed("-o", "in FORWARD, OUTPUT and POSTROUTING"));
        }
    }

    // Matches.
    let proto = proto_of(rule);
    for m in &rule.matches {
        let needs: Option<(&[u8], &'static str)> = match m.name.as_str() {
            "tcp" | "tcpmss" => Some((&[6], "-p tcp")),
            "udp" => Some((&[17], "-p udp")),
            "icmp" => Some((&[1], "-p icmp")),
            "icmp6" => Some((&[58], "-p ipv6-icmp")),
            "sctp" => Some((&[132], "-p sctp")),
            "dccp" => Some((&[33], "-p dccp")),
            "udplite" => Some((&[136], "-p udplite")),
            "esp" => Some((&[50], "-p esp")),
            "ipcomp" => Some((&[108], "-p ipcomp")),
            "ah" if family == Family::V4 => Some((&[51], "-p ah")),
            "mh" => Some((&[135], "-p mobility-header")),
            "multiport" => Some((&[6, 17, 33, 132, 136], "-p tcp, udp, udplite, sctp or dccp")),
            "ecn" if m.opts.iter().any(|o| o.name.starts_with("ecn-tcp")) => Some((&[6], "-p tcp")),
            _ => None,
        };
        if let Some((protos, what)) = needs
            && !proto.is_some_and(|p| protos.contains(&p))
        {
            errors.push(err(ModelErrorKind::MissingOption { module: m.name.clone(), what }));
        }
        match (m.name.as_str(), family) {
            ("icmp", Family::V6) => {
                errors.push(err(ModelErrorKind::WrongFamily("-m icmp in IPv6 (use icmp6)".into())));
                continue;
            }
            ("icmp6", Family::V4) => {
                errors.push(err(ModelErrorKind::WrongFamily("-m icmp6 in IPv4 (use icmp)".into())));
                continue;
            }
            ("rt" | "frag" | "hbh" | "dst" | "mh" | "ipv6header" | "eui64" | "srh", Family::V4) => {
                errors
                    .push(err(ModelErrorKind::WrongFamily(format!("-m {} is IPv6 only", m.name))));
                continue;
            }
            _ => {}
        }
        match m.view(family) {
            Err(e) => errors.push(e),
            Ok(MatchView::Other(name)) => {
                if let Err(e) = specs::check_match(&name, &m.opts, family) {
                    errors.push(e);
                }
                // Modules whose values only the canonicaliser reads: it refuses what
                // iptables refuses.
                if matches!(name.as_str(), "time" | "u32" | "ipv6header")
                    && crate::extensions::canon_match(m, family).is_none()
                {
                    errors.push(crate::error::invalid(
                        &format!("-m {name}"),
                        &m.opts.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(" "),
                        "values the module accepts",
                    ));
                }
                let dir = m.opt("dir").map(|o| o.arg());
                if name == "policy" && dir == Some("in") && !ctx.allowed(&[], PRE | IN | FWD) {
                    errors.push(not_allowed(
                        "-m policy --dir in",
                        "in PREROUTING, INPUT and FORWARD",
                    ));
                }
                if name == "policy" && dir == Some("out") && !ctx.allowed(&[], OUT | POST | FWD) {
                    errors.push(not_allowed(
                        "-m policy --dir out",
                        "in OUTPUT, POSTROUTING and FORWARD",
                    ));
                }
                let hook_rule: Option<(&[TableName], u8, &'static str)> = match name.as_str() {
                    "socket" => Some((&[], PRE | IN, "in PREROUTING and INPUT")),
                    "cgroup" => Some((&[], IN | OUT | POST, "in INPUT, OUTPUT and POSTROUTING")),
                    "rpfilter" => {
                        Some((&[Raw, Mangle], PRE, "in the raw and mangle tables, in PREROUTING"))
                    }
                    "physdev"
                        if (m.opt("physdev-out").is_some()
                            || m.opt("physdev-is-out").is_some())
                            && m.opt("physdev-is-bridged").is_none() =>
                    {
                        Some((&[], ALL_HOOKS & !OUT, "outside OUTPUT unless --physdev-is-bridged"))
                    }
                    _ => None,
                };
                if let Some((tables, hooks, text)) = hook_rule
                    && !ctx.allowed(tables, hooks)
                {
                    errors.push(not_allowed(&format!("-m {name}"), text));
                }
                if name == "eui64" && !ctx.allowed(&[], PRE | IN | FWD) {
                    errors.push(not_allowed("-m eui64", "in PREROUTING, INPUT and FORWARD"));
                }
            }
            Ok(MatchView::Owner(_)) if !ctx.allowed(&[], OUT | POST) => {
                errors.push(not_allowed("-m owner", "in OUTPUT and POSTROUTING"));
            }
            Ok(MatchView::Mac(_)) if !ctx.allowed(&[], PRE | IN | FWD) => {
                errors.push(not_allowed("-m mac", "in PREROUTING, INPUT and FORWARD"));
            }
            Ok(MatchView::AddrType(a)) => {
                if a.limit_iface_in && !ctx.allowed(&[], PRE | IN | FWD) {
                    errors
                        .push(not_allowed("--limit-iface-in", "in PREROUTING, INPUT and FORWARD"));
                }
                if a.limit_iface_out && !ctx.allowed(&[], OUT | POST | FWD) {
                    errors.push(not_allowed(
                        "--limit-iface-out",
                        "in OUTPUT, POSTROUTING and FORWARD",
                    ));
                }
            }
            Ok(_) => {}
        }
    }

    // Action.
    let Some(action) = &rule.action else { return };
    let t = match action {
        Action::Goto(c) => {
            check_chain_ref(ctx, c.as_str(), errors);
            return;
        }
        Action::Jump(t) => t,
    };
    let name = t.name.as_str();
    if !is_target_name(name) && !matches!(name, "ACCEPT" | "DROP" | "RETURN" | "QUEUE") {
        if ctx.chains.is_some() && !ctx.has_chain(name) && THIRD_PARTY_TARGETS.contains(&name) {
            return;
        }
        check_chain_ref(ctx, name, errors);
        return;
    }
    if let Err(e) = specs::check_target(name, &t.opts, family) {
        errors.push(e);
        return;
    }
    let needs_proto: Option<(&[u8], &'static str)> = match name {
        "TCPOPTSTRIP" | "SYNPROXY" | "TCPMSS" => Some((&[6], "-p tcp")),
        "ECN" if t.opts.iter().any(|o| o.name.starts_with("ecn-tcp")) => Some((&[6], "-p tcp")),
        "TPROXY" => Some((&[6, 17], "-p tcp or -p udp")),
        _ => None,
    };
    if let Some((protos, what)) = needs_proto
        && !proto.is_some_and(|p| protos.contains(&p))
    {
        errors.push(err(ModelErrorKind::MissingOption { module: name.to_owned(), what }));
    }
    let view = match t.view(family, |n| ctx.has_chain(n)) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            return;
        }
    };
    use TableName::{Filter, Mangle, Nat, Raw, Security};
    let ports_need_proto = |nat_ports: bool, errors: &mut Vec<ModelError>| {
        if nat_ports && !proto.is_some_and(|p| [6, 17, 33, 132, 136].contains(&p)) {
            errors.push(err(ModelErrorKind::MissingOption {
                module: name.to_owned(),
                what: "-p tcp, udp, udplite, sctp or dccp with a port specification",
            }));
        }
    };
    let nat_ports = |v: &NatTarget| v.to.iter().any(|r| r.ports.is_some());
    match &view {
        TargetView::Dnat(v) => {
            if !ctx.allowed(&[Nat], PRE | OUT) {
                errors.push(not_allowed(name, "in the nat table, in PREROUTING and OUTPUT"));
            }
            ports_need_proto(nat_ports(v), errors);
        }
        TargetView::Snat(v) => {
            if !ctx.allowed(&[Nat], POST | IN) {
                errors.push(not_allowed(name, "in the nat table, in POSTROUTING and INPUT"));
            }
            ports_need_proto(nat_ports(v), errors);
        }
        TargetView::Masquerade(v) => {
            if !ctx.allowed(&[Nat], POST) {
                errors.push(not_allowed(name, "in the nat table, in POSTROUTING"));
            }
            ports_need_proto(v.ports.is_some(), errors);
        }
        TargetView::Redirect(v) => {
            if !ctx.allowed(&[Nat], PRE | OUT) {
                errors.push(not_allowed(name, "in the nat table, in PREROUTING and OUTPUT"));
            }
            ports_need_proto(v.ports.is_some(), errors);
        }
        TargetView::Reject(with) => {
            if !ctx.allowed(&[Filter], IN | FWD | OUT) {
                errors.push(not_allowed(name, "in the filter table, in INPUT, FORWARD and OUTPUT"));
            }
            if *with == RejectWith::TcpReset && proto != Some(6) {
                errors.push(err(ModelErrorKind::MissingOption {
                    module: "REJECT --reject-with tcp-reset".into(),
                    what: "-p tcp",
                }));
            }
        }
        TargetView::Ct(_) | TargetView::Notrack if !ctx.allowed(&[Raw], ALL_HOOKS) => {
            errors.push(not_allowed(name, "in the raw table"));
        }
        _ => {}
    }
    let rule_for: Option<(&[TableName], u8, &'static str)> = match name {
        "NETMAP" => Some((&[Nat], ALL_HOOKS, "in the nat table")),
        "TRACE" => Some((&[Raw], ALL_HOOKS, "in the raw table")),
        "TOS" | "DSCP" | "TTL" | "HL" | "ECN" | "CHECKSUM" => {
            Some((&[Mangle], ALL_HOOKS, "in the mangle table"))
        }
        "TPROXY" => Some((&[Mangle], PRE, "in the mangle table, in PREROUTING")),
        "CLASSIFY" => Some((&[], OUT | FWD | POST, "in OUTPUT, FORWARD and POSTROUTING")),
        "SECMARK" | "CONNSECMARK" => {
            Some((&[Mangle, Security], ALL_HOOKS, "in the mangle and security tables"))
        }
        "TCPMSS" if t.opt("clamp-mss-to-pmtu").is_some() => Some((
            &[],
            FWD | OUT | POST,
            "in FORWARD, OUTPUT and POSTROUTING with --clamp-mss-to-pmtu",
        )),
        _ => None,
    };
    if let Some((tables, hooks, text)) = rule_for
        && !ctx.allowed(tables, hooks)
    {
        errors.push(not_allowed(name, text));
    }
}

/// Targets of xtables-addons and other out-of-tree modules: a rule using one is not
/// reported as a jump to an undefined chain (whether the module is installed is a
/// property of the host, not of the ruleset).
const THIRD_PARTY_TARGETS: &[&str] = &[
    "ACCOUNT",
    "CHAOS",
    "DELUDE",
    "DHCPMAC",
    "DNETMAP",
    "ECHO",
    "IPMARK",
    "IPV4OPTSSTRIP",
    "JOOL",
    "JOOL_SIIT",
    "LOGMARK",
    "PROTO",
    "RAWDNAT",
    "RAWSNAT",
    "STEAL",
    "SYSRQ",
    "TARPIT",
];

fn check_chain_ref(ctx: &Ctx<'_>, name: &str, errors: &mut Vec<ModelError>) {
    // Checked on its own, the rule's jump is resolved by the caller (see `RuleFacts`).
    let Some(chains) = ctx.chains else { return };
    match chains.get(name) {
        None => errors.push(err(ModelErrorKind::UndefinedChain(name.to_owned()))),
        Some(c) if c.is_builtin() => {
            errors.push(not_allowed(name, "as a policy; builtin chains cannot be jumped to"));
        }
        Some(_) => {}
    }
}

/// Reports every cycle of jumps and gotos between user chains that is reachable from a
/// builtin chain (the kernel ignores unreachable ones, observed), once, at the rule that
/// closes it.
fn find_loops(chains: &Chains<'_>, errors: &mut Vec<ModelError>) {
    let table = chains.table;
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let names: Vec<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
    let mut color = vec![Color::White; names.len()];
    let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
    for start in 0..names.len() {
        if color[start] != Color::White || !table.chains[start].is_builtin() {
            continue;
        }
        // Iterative DFS: (chain, next rule index).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = Color::Grey;
        while let Some(&mut (ci, ref mut ri)) = stack.last_mut() {
            let rules = &table.chains[ci].rules;
            if *ri >= rules.len() {
                color[ci] = Color::Black;
                stack.pop();
                continue;
            }
            let r = *ri;
            *ri += 1;
            let Some(target) = rules[r].chain_ref(|n| chains.has(n)).and_then(|n| chains.index(n))
            else {
                continue;
            };
            match color[target] {
                Color::White => {
                    color[target] = Color::Grey;
                    stack.push((target, 0));
                }
                Color::Grey => {
                    let pos = stack.iter().position(|(c, _)| *c == target).unwrap_or(0);
                    let cycle: Vec<usize> = stack[pos..].iter().map(|(c, _)| *c).collect();
                    let mut key = cycle.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        let mut path: Vec<String> =
                            cycle.iter().map(|c| names[*c].to_owned()).collect();
                        path.push(names[target].to_owned());
                        let rule = &rules[r];
                        errors.push(err(ModelErrorKind::JumpLoop(path)).at(Location {
                            table: Some(table.name),
                            chain: Some(names[ci].to_owned()),
                            rule: Some(r + 1),
                            line: (rule.origin.line > 0).then_some(rule.origin.line),
                        }));
                    }
                }
                Color::Black => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainName, Command, Match, Negatable, Opt, Origin, Policy, Target};

    fn rule(proto: Option<u8>, matches: Vec<Match>, target: Option<&str>) -> Rule {
        Rule {
            proto: proto.map(|p| Negatable::plain(Protocol::Number(p))),
            matches,
            action: target.map(|t| Action::Jump(Target::new(t))),
            origin: Origin { line: 7 },
            ..Rule::default()
        }
    }

    fn m(name: &str, opts: &[(&str, &[&str])]) -> Match {
        Match { name: name.into(), opts: opts.iter().map(|(n, a)| Opt::new(n, a)).collect() }
    }

    fn rs(table: TableName, chains: &[&str], rules: Vec<(&str, Rule)>) -> Ruleset {
        let mut rs = Ruleset::new(Family::V4);
        for c in chains {
            rs.execute(table, Command::NewChain(ChainName::new(c).unwrap())).unwrap();
        }
        rs.table_or_default(table);
        for (chain, r) in rules {
            rs.execute(table, Command::Append { chain: chain.into(), rule: r }).unwrap();
        }
        rs
    }

    fn kinds(rs: &Ruleset) -> Vec<String> {
        validate(rs).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn valid_ruleset() {
        let r = rs(
            TableName::Filter,
            &["LOGDROP"],
            vec![
                ("INPUT", rule(Some(6), vec![m("tcp", &[("dport", &["22"])])], Some("ACCEPT"))),
                ("INPUT", rule(None, vec![], Some("LOGDROP"))),
                ("LOGDROP", rule(None, vec![], Some("LOG"))),
                ("LOGDROP", rule(None, vec![], Some("REJECT"))),
            ],
        );
        assert_eq!(kinds(&r), Vec::<String>::new());
    }

    #[test]
    fn location_and_values() {
        let r = rs(
            TableName::Filter,
            &[],
            vec![
                ("INPUT", rule(Some(6), vec![], Some("ACCEPT"))),
                ("INPUT", rule(Some(6), vec![m("tcp", &[("dport", &["65536"])])], None)),
            ],
        );
        let e = validate(&r);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].location,
            Location {
                table: Some(TableName::Filter),
                chain: Some("INPUT".into()),
                rule: Some(2),
                line: Some(7)
            }
        );
        let r = rs(
            TableName::Filter,
            &[],
            vec![("INPUT", rule(None, vec![m("tcp", &[("dport", &["1"])])], None))],
        );
        assert!(matches!(validate(&r)[0].kind, ModelErrorKind::MissingOption { .. }));
        let r = rs(
            TableName::Filter,
            &[],
            vec![("INPUT", rule(Some(6), vec![m("tcp", &[("sport", &["4:3"])])], None))],
        );
        assert!(matches!(validate(&r)[0].kind, ModelErrorKind::InvertedRange { .. }));
    }

    #[test]
    fn targets_in_wrong_place() {
        let r = rs(TableName::Filter, &[], vec![("INPUT", rule(None, vec![], Some("DNAT")))]);
        assert!(matches!(validate(&r)[0].kind, ModelErrorKind::MissingOption { .. }));
        let mut dnat = rule(Some(6), vec![], None);
        let mut t = Target::new("DNAT");
        t.opts.push(Opt::new("to-destination", &["10.0.0.1:80"]));
        dnat.action = Some(Action::Jump(t));
        let r = rs(TableName::Filter, &[], vec![("INPUT", dnat.clone())]);
        assert!(matches!(validate(&r)[0].kind, ModelErrorKind::TargetNotAllowed { .. }));
        let ok = rs(
            TableName::Nat,
            &["SVC"],
            vec![("PREROUTING", rule(None, vec![], Some("SVC"))), ("SVC", dnat.clone())],
        );
        assert_eq!(kinds(&ok), Vec::<String>::new());
        let bad = rs(
            TableName::Nat,
            &["SVC"],
            vec![("POSTROUTING", rule(None, vec![], Some("SVC"))), ("SVC", dnat)],
        );
        assert_eq!(validate(&bad).len(), 1);
        let r =
            rs(TableName::Mangle, &[], vec![("PREROUTING", rule(None, vec![], Some("REJECT")))]);
        assert_eq!(validate(&r).len(), 1);
        let r = rs(TableName::Nat, &[], vec![("PREROUTING", rule(None, vec![], Some("MARK")))]);
        // MARK is allowed in every table; it only misses its option here.
        assert!(matches!(validate(&r)[0].kind, ModelErrorKind::MissingOption { .. }));
        let r = rs(
            TableName::Filter,
            &[],
            vec![("INPUT", rule(None, vec![m("owner", &[("uid-owner", &["0"])])], None))],
        );
        assert_eq!(validate(&r).len(), 1);
        let mut reset = Target::new("REJECT");
        reset.opts.push(Opt::new("reject-with", &["tcp-reset"]));
        let mut rr = rule(None, vec![], None);
        rr.action = Some(Action::Jump(reset));
        let r = rs(TableName::Filter, &[], vec![("INPUT", rr)]);
        assert_eq!(validate(&r).len(), 1);
    }

    #[test]
    fn chains_and_loops() {
        let r = rs(TableName::Filter, &[], vec![("INPUT", rule(None, vec![], Some("NOPE")))]);
        assert!(matches!(&validate(&r)[0].kind, ModelErrorKind::UndefinedChain(c) if c == "NOPE"));
        let r = rs(
            TableName::Filter,
            &["A", "B", "C"],
            vec![
                ("INPUT", rule(None, vec![], Some("A"))),
                ("A", rule(None, vec![], Some("B"))),
                ("B", rule(None, vec![], Some("C"))),
                ("C", rule(None, vec![], Some("A"))),
            ],
        );
        let e = validate(&r);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(matches!(&e[0].kind, ModelErrorKind::JumpLoop(p) if p.len() == 4));
        let unreachable = rs(
            TableName::Filter,
            &["A", "B"],
            vec![("A", rule(None, vec![], Some("B"))), ("B", rule(None, vec![], Some("A")))],
        );
        assert_eq!(validate(&unreachable), Vec::new());
        assert_eq!(e[0].location.chain.as_deref(), Some("C"));
        let mut r = rs(TableName::Filter, &["X"], vec![]);
        let t = r.table_mut(TableName::Filter).unwrap();
        t.chains.push(Chain::builtin("PREROUTING", Policy::Accept));
        t.chains.push(Chain::user(ChainName::new("X").unwrap()));
        let e = validate(&r);
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn large_rulesets_are_fast() {
        // A kube-proxy-sized table: 5000 chains in a jump chain, 3 rules each.
        let mut rs = Ruleset::new(Family::V4);
        let t = rs.table_or_default(TableName::Nat);
        for i in 0..5000 {
            let mut c = Chain::user(ChainName::new(&format!("KUBE-SVC-{i}")).unwrap());
            let next = if i + 1 < 5000 { format!("KUBE-SVC-{}", i + 1) } else { "RETURN".into() };
            for _ in 0..2 {
                c.rules.push(rule(Some(6), vec![m("tcp", &[("dport", &["80"])])], Some("ACCEPT")));
            }
            c.rules.push(rule(None, vec![], Some(&next)));
            t.chains.push(c);
        }
        if let Some(pre) = t.chain_mut("PREROUTING") {
            pre.rules.push(rule(None, vec![], Some("KUBE-SVC-0")));
        }
        let start = std::time::Instant::now();
        let errors = validate(&rs);
        assert!(errors.is_empty(), "{:?}", errors.first());
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[test]
    fn families() {
        let mut r = rule(None, vec![], None);
        r.src = Some(Negatable::plain("2001:db8::1".parse().unwrap()));
        r.fragment = Some(false);
        let set = rs(TableName::Filter, &[], vec![("INPUT", r)]);
        assert_eq!(validate(&set).len(), 1);
        let mut v6 = set.clone();
        v6.family = Family::V6;
        assert_eq!(validate(&v6).len(), 1);
        let r = rs(
            TableName::Filter,
            &[],
            vec![("INPUT", rule(Some(1), vec![m("icmp", &[("icmp-type", &["256"])])], None))],
        );
        assert_eq!(validate(&r).len(), 1);
    }
}
