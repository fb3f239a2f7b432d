//! From a [`Listing`] back to a [`Ruleset`]: the columns, and the match and target text
//! of the common extensions decoded into the canonical (saved) options. What `-L` does
//! not show is reported as a [`ListingWarning`], never guessed.

use std::collections::HashMap;
use std::fmt;

use portcullis_rules::view::icmp_type_names;
use portcullis_rules::{
    Action, Address, Chain, ChainName, Counters, Family, Interface, Match, Negatable, Opt, Policy,
    Protocol, Rule, Ruleset, Table, TableName, Target,
};

use super::text::{LOG_FLAGS, LOG_LEVELS, TCP_FLAGS, service_port};
use super::{ChainKind, Count, Field, ListedRule, Listing};

/// Something a listing could not show, or that could not be decoded: the ruleset built
/// from it lacks or approximates this.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListingWarning {
    /// Printed without `-v`: the rules' `-i`/`-o` interfaces are not shown, so the rules
    /// of this chain carry none.
    InterfacesNotShown {
        /// The chain (empty for a headerless listing).
        chain: String,
    },
    /// Counters printed with K/M/G/T: only their rounded value is known.
    CountersRounded {
        /// The 1-based input line.
        line: u32,
    },
    /// An address printed as a host or network name: kept as a name, not resolved.
    HostName {
        /// The 1-based input line.
        line: u32,
        /// The name printed.
        name: String,
    },
    /// A port, user or group printed by name that the built-in tables do not know.
    UnknownName {
        /// The 1-based input line.
        line: u32,
        /// The name printed.
        name: String,
    },
    /// Match or target text that is not decoded (an extension portcullis does not read
    /// back from `-L`, or text cut by the listing): left out of the rule.
    Undecoded {
        /// The 1-based input line.
        line: u32,
        /// The text left out.
        text: String,
    },
    /// Rule lines without a `Chain` header (`-L CHAIN N`): put in a chain named `?`.
    NoChainHeader {
        /// The 1-based input line.
        line: u32,
    },
    /// A policy other than ACCEPT or DROP.
    BadPolicy {
        /// The chain.
        chain: String,
        /// The policy printed.
        policy: String,
    },
}

impl fmt::Display for ListingWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InterfacesNotShown { chain } => {
                write!(f, "chain {chain}: listed without -v, so -i/-o interfaces are not shown")
            }
            Self::CountersRounded { line } => {
                write!(f, "line {line}: counters rounded to K/M/G/T (list with -x for exact ones)")
            }
            Self::HostName { line, name } => {
                write!(f, "line {line}: address `{name}' is a name (list with -n for numbers)")
            }
            Self::UnknownName { line, name } => write!(f, "line {line}: unknown name `{name}'"),
            Self::Undecoded { line, text } => write!(f, "line {line}: not decoded: `{text}'"),
            Self::NoChainHeader { line } => write!(f, "line {line}: rule without a chain header"),
            Self::BadPolicy { chain, policy } => write!(f, "chain {chain}: bad policy `{policy}'"),
        }
    }
}

/// A ruleset read back from a listing, and what the listing could not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The rules as far as the listing shows them, in canonical (saved) form.
    pub ruleset: Ruleset,
    /// What is missing or approximate, in input order.
    pub warnings: Vec<ListingWarning>,
}

/// The family a listing is for: IPv6 when an address or the prot column says so.
fn guess_family(listing: &Listing) -> Family {
    let v6 = listing.chains.iter().flat_map(|c| &c.rules).any(|r| {
        r.prot.value == "ipv6-icmp"
            || r.prot.value == "58"
            || r.source.value.contains(':')
            || r.destination.value.contains(':')
    });
    if v6 { Family::V6 } else { Family::V4 }
}

/// Converts a listing of `table` into a ruleset. The family is guessed from the
/// addresses and protocols when `family` is `None`.
///
/// ```
/// use portcullis_rules::TableName;
/// use portcullis_syntax::{listing_to_ruleset, parse_listing, render_rule};
/// let text = "Chain INPUT (policy DROP)\n\
///             target     prot opt source               destination         \n\
///             ACCEPT     tcp  --  anywhere             anywhere             tcp dpt:ssh\n";
/// let conv = listing_to_ruleset(&parse_listing(text)?, TableName::Filter, None);
/// let chain = &conv.ruleset.tables[0].chains[0];
/// assert_eq!(render_rule("INPUT", &chain.rules[0]), "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT");
/// assert_eq!(conv.warnings.len(), 1); // interfaces are not shown without -v
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn listing_to_ruleset(
    listing: &Listing,
    table: TableName,
    family: Option<Family>,
) -> Conversion {
    let family = family.unwrap_or_else(|| guess_family(listing));
    let mut warnings = Vec::new();
    let mut t = Table::new(table);
    let mut index: HashMap<String, usize> = HashMap::new();
    for lc in &listing.chains {
        let (name, policy, counters) = match &lc.header {
            Some(h) => match &h.kind {
                ChainKind::Builtin { policy, counters } => {
                    let p = match policy.as_str() {
                        "ACCEPT" => Policy::Accept,
                        "DROP" => Policy::Drop,
                        other => {
                            warnings.push(ListingWarning::BadPolicy {
                                chain: h.name.clone(),
                                policy: other.to_owned(),
                            });
                            Policy::Accept
                        }
                    };
                    let k = counters.map(|(p, b)| {
                        if !p.is_exact() || !b.is_exact() {
                            warnings.push(ListingWarning::CountersRounded { line: h.line });
                        }
                        Counters { packets: p.approx(), bytes: b.approx() }
                    });
                    (h.name.clone(), Some(p), k)
                }
                ChainKind::User { .. } | ChainKind::RefsError => (h.name.clone(), None, None),
            },
            None => {
                if let Some(r) = lc.rules.first() {
                    warnings.push(ListingWarning::NoChainHeader { line: r.line });
                }
                ("?".to_owned(), None, None)
            }
        };
        if !lc.columns.via && !lc.rules.is_empty() {
            warnings.push(ListingWarning::InterfacesNotShown { chain: name.clone() });
        }
        let chain_name = ChainName::new(&name)
            .unwrap_or_else(|_| ChainName::new("?").unwrap_or_else(|_| unreachable_chain_name()));
        let mut chain = match policy {
            Some(p) => Chain::builtin(chain_name.as_str(), p),
            None => Chain::user(chain_name),
        };
        chain.counters = counters;
        for r in &lc.rules {
            chain.rules.push(decode_rule(r, family, &mut warnings));
        }
        match index.get(chain.name.as_str()) {
            Some(&i) => t.chains[i].rules.extend(chain.rules),
            None => {
                index.insert(chain.name.as_str().to_owned(), t.chains.len());
                t.chains.push(chain);
            }
        }
    }
    let mut ruleset = Ruleset::new(family);
    ruleset.tables.push(t);
    Conversion { ruleset, warnings }
}

#[allow(clippy::panic, reason = "`?` is a valid chain name; this never runs")]
fn unreachable_chain_name() -> ChainName {
    panic!("`?' is a valid chain name")
}

fn counters(r: &ListedRule, warnings: &mut Vec<ListingWarning>) -> Option<Counters> {
    let (p, b): (&Count, &Count) = (r.packets.as_ref()?, r.bytes.as_ref()?);
    if !p.is_exact() || !b.is_exact() {
        warnings.push(ListingWarning::CountersRounded { line: r.line });
    }
    Some(Counters { packets: p.approx(), bytes: b.approx() })
}

fn iface(f: Option<&Field>) -> Option<Negatable<Interface>> {
    let f = f?;
    // `+` matches every interface: iptables-save drops it, so the canonical rule has none.
    if !f.negated && (f.value == "*" || f.value == "any" || f.value == "+") {
        return None;
    }
    let i = Interface::new(&f.value).ok()?;
    Some(Negatable { negated: f.negated, value: i })
}

fn address(f: &Field, line: u32, warnings: &mut Vec<ListingWarning>) -> Option<Negatable<Address>> {
    if f.value == "anywhere" && !f.negated {
        return None;
    }
    let value = match f.value.parse::<Address>() {
        Ok(a) if a.is_any() && !f.negated => return None,
        Ok(a) => a,
        Err(_) => {
            warnings.push(ListingWarning::HostName { line, name: f.value.clone() });
            Address::Host(f.value.clone())
        }
    };
    Some(Negatable { negated: f.negated, value })
}

fn decode_rule(r: &ListedRule, family: Family, warnings: &mut Vec<ListingWarning>) -> Rule {
    let mut rule = Rule { counters: counters(r, warnings), ..Rule::default() };
    rule.origin.line = r.line;
    rule.src = address(&r.source, r.line, warnings);
    rule.dst = address(&r.destination, r.line, warnings);
    rule.in_iface = iface(r.in_iface.as_ref());
    rule.out_iface = iface(r.out_iface.as_ref());
    match r.prot.value.parse::<Protocol>() {
        Ok(Protocol::Number(0)) if !r.prot.negated => {}
        Ok(p) => rule.proto = Some(Negatable { negated: r.prot.negated, value: p }),
        Err(_) => {
            warnings.push(ListingWarning::UnknownName { line: r.line, name: r.prot.value.clone() })
        }
    }
    rule.fragment = match r.opt.as_str() {
        "-f" => Some(false),
        "!f" => Some(true),
        _ => None,
    };
    let target_name = if r.target == "CT" { "CT" } else { r.target.as_str() };
    let mut target = (!target_name.is_empty() && !r.goto).then(|| Target::new(target_name));
    let mut d = Decoder { text: r.text.as_str(), line: r.line, family, warnings };
    d.decode(&mut rule, target.as_mut());
    rule.action = if r.goto {
        ChainName::new(&r.target).ok().map(Action::Goto)
    } else {
        target.map(Action::Jump)
    };
    rule
}

struct Decoder<'a, 'w> {
    text: &'a str,
    line: u32,
    family: Family,
    warnings: &'w mut Vec<ListingWarning>,
}

fn opt(name: &str, negated: bool, args: &[&str]) -> Opt {
    let mut o = Opt::new(name, args);
    o.negated = negated;
    o
}

/// Splits `!x` into (true, x).
fn bang(s: &str) -> (bool, &str) {
    match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    }
}

fn flag_names(bits: u8) -> String {
    let names: Vec<&str> =
        TCP_FLAGS.iter().filter(|(_, b)| bits & b != 0).map(|(n, _)| *n).collect();
    if names.is_empty() { "NONE".to_owned() } else { names.join(",") }
}

fn flags_to_canonical(s: &str) -> Option<String> {
    let bits = |part: &str| -> Option<u8> {
        if let Some(h) = part.strip_prefix("0x") {
            return u8::from_str_radix(h, 16).ok();
        }
        part.split(',')
            .map(|f| match f {
                "NONE" => Some(0),
                "ALL" => Some(0x3F),
                f => TCP_FLAGS.iter().find(|(n, _)| *n == f).map(|(_, b)| *b),
            })
            .try_fold(0u8, |a, b| Some(a | b?))
    };
    let (mask, comp) = s.split_once('/')?;
    Some(format!("{} {}", flag_names(bits(mask)?), flag_names(bits(comp)?)))
}

impl<'a> Decoder<'a, '_> {
    fn peek(&self) -> Option<&'a str> {
        self.text.split_ascii_whitespace().next()
    }

    fn word(&mut self) -> Option<&'a str> {
        let t = self.text.trim_start_matches([' ', '\t']);
        if t.is_empty() {
            self.text = t;
            return None;
        }
        let end = t.find([' ', '\t']).unwrap_or(t.len());
        let (w, rest) = t.split_at(end);
        self.text = rest;
        Some(w)
    }

    fn warn_rest(&mut self, from: &'a str) {
        let text = from.trim().to_owned();
        if !text.is_empty() {
            self.warnings.push(ListingWarning::Undecoded { line: self.line, text });
        }
        self.text = "";
    }

    /// A port name or number of `proto`.
    fn port(&mut self, s: &str, proto: &str) -> String {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s.to_owned();
        }
        match service_port(s, proto) {
            Some(p) => p.to_string(),
            None => {
                self.warnings
                    .push(ListingWarning::UnknownName { line: self.line, name: s.to_owned() });
                s.to_owned()
            }
        }
    }

    /// `A` or `A:B`, service names resolved.
    fn port_range(&mut self, s: &str, proto: &str) -> String {
        match s.split_once(':') {
            Some((a, b)) => format!("{}:{}", self.port(a, proto), self.port(b, proto)),
            None => self.port(s, proto),
        }
    }

    fn decode(&mut self, rule: &mut Rule, mut target: Option<&mut Target>) {
        let mut negate = false;
        while let Some(start) = Some(self.text).filter(|t| !t.trim().is_empty()) {
            let Some(w) = self.word() else { break };
            let ok = match w {
                "!" => {
                    negate = true;
                    continue;
                }
                "tcp" | "udp" => self.tcp_udp(rule, w),
                "icmp" | "ipv6-icmp" => self.icmp(rule, w, "", negate),
                "icmptype" | "ipv6-icmptype" => {
                    let proto = if w == "icmptype" { "icmp" } else { "ipv6-icmp" };
                    self.icmp(rule, proto, "type", negate)
                }
                "multiport" => self.multiport(rule),
                w if is_ct_word(w) => self.conntrack(rule, w, negate),
                "state" => {
                    let s = self.word().unwrap_or("").to_owned();
                    let mut m = Match::new("state");
                    m.opts.push(opt("state", negate, &[&s]));
                    rule.matches.push(m);
                    true
                }
                "/*" => self.comment(rule),
                "limit:" if self.peek() == Some("avg") => self.limit(rule),
                "MAC" => {
                    let (n, a) = match self.word() {
                        Some("!") => (true, self.word().unwrap_or("")),
                        other => (false, other.unwrap_or("")),
                    };
                    let a = a.to_owned();
                    let mut m = Match::new("mac");
                    m.opts.push(opt("mac-source", n, &[&a]));
                    rule.matches.push(m);
                    true
                }
                "source" | "destination" if self.text.trim_start().starts_with("IP range") => {
                    self.word();
                    self.word();
                    let (n, r) = match self.word() {
                        Some("!") => (true, self.word().unwrap_or("")),
                        other => (false, other.unwrap_or("")),
                    };
                    let r = r.to_owned();
                    let name = if w == "source" { "src-range" } else { "dst-range" };
                    push_opt(rule, "iprange", opt(name, n, &[&r]));
                    true
                }
                "mark" if self.peek() == Some("match") => {
                    self.word();
                    let (n, v) = match self.word() {
                        Some("!") => (true, self.word().unwrap_or("")),
                        other => (false, other.unwrap_or("")),
                    };
                    let v = v.to_owned();
                    let mut m = Match::new("mark");
                    m.opts.push(opt("mark", n, &[&v]));
                    rule.matches.push(m);
                    true
                }
                "owner" => self.owner(rule, negate),
                "ADDRTYPE" if self.peek() == Some("match") => self.addrtype(rule),
                "match" if self.peek() == Some("bpf") => self.bpf(rule, negate),
                "rpfilter" => {
                    let mut m = Match::new("rpfilter");
                    while let Some(f) = self
                        .peek()
                        .filter(|f| matches!(*f, "loose" | "validmark" | "accept-local" | "invert"))
                    {
                        self.word();
                        m.opts.push(opt(f, false, &[]));
                    }
                    rule.matches.push(m);
                    true
                }
                "recent:" => self.recent(rule, negate),
                "#conn" => self.connlimit(rule),
                "statistic" => self.statistic(rule),
                "PKTTYPE" => self.pkttype(rule),
                "length" => self.single(rule, "length", "length"),
                "connmark" if self.peek() == Some("match") => {
                    self.word();
                    self.mark_like(rule, "connmark")
                }
                "helper" if self.peek() == Some("match") => {
                    self.word();
                    self.helper(rule, negate)
                }
                "match-set" => {
                    let name = self.word().unwrap_or("").to_owned();
                    let dirs = self.word().unwrap_or("").to_owned();
                    let mut m = Match::new("set");
                    m.opts.push(opt("match-set", negate, &[&name, &dirs]));
                    rule.matches.push(m);
                    true
                }
                _ => match target.as_deref_mut() {
                    Some(t) => self.target(t, w, start),
                    None => false,
                },
            };
            negate = false;
            if !ok {
                self.warn_rest(start);
            }
        }
    }

    /// `match bpf PROGRAM\0`: the program without its length, ended by a NUL byte.
    fn bpf(&mut self, rule: &mut Rule, negate: bool) -> bool {
        self.word();
        let t = self.text.trim_start_matches(' ');
        let Some(end) = t.find('\0') else { return false };
        let prog = &t[..end];
        self.text = &t[end + 1..];
        let count = prog.split(',').count();
        let mut m = Match::new("bpf");
        m.opts.push(opt("bytecode", negate, &[&format!("{count},{prog}")]));
        rule.matches.push(m);
        true
    }

    fn pkttype(&mut self, rule: &mut Rule) -> bool {
        let n = match self.word() {
            Some("=") => false,
            Some("!=") => true,
            _ => return false,
        };
        let Some(t) = self.word() else { return false };
        let mut m = Match::new("pkttype");
        m.opts.push(opt("pkt-type", n, &[t]));
        rule.matches.push(m);
        true
    }

    /// `NAME [!]VALUE` for a one-option match (`length 0:100`).
    fn single(&mut self, rule: &mut Rule, module: &str, key: &str) -> bool {
        let Some(v) = self.word() else { return false };
        let (n, v) = bang(v);
        let mut m = Match::new(module);
        m.opts.push(opt(key, n, &[v]));
        rule.matches.push(m);
        true
    }

    /// `[!] VALUE` after `mark match` / `connmark match`.
    fn mark_like(&mut self, rule: &mut Rule, module: &str) -> bool {
        let (n, v) = match self.word() {
            Some("!") => (true, self.word()),
            other => (false, other),
        };
        let Some(v) = v else { return false };
        let mut m = Match::new(module);
        m.opts.push(opt("mark", n, &[v]));
        rule.matches.push(m);
        true
    }

    fn helper(&mut self, rule: &mut Rule, negate: bool) -> bool {
        let Some(h) = self.word() else { return false };
        let Some(h) = h.strip_prefix('"').and_then(|h| h.strip_suffix('"')) else { return false };
        let mut m = Match::new("helper");
        m.opts.push(opt("helper", negate, &[h]));
        rule.matches.push(m);
        true
    }

    /// `ADDRTYPE match [src-type [!]T] [dst-type [!]T] [limit-in|limit-out]`.
    fn addrtype(&mut self, rule: &mut Rule) -> bool {
        self.word();
        let mut m = Match::new("addrtype");
        while let Some(w) = self.peek() {
            match w {
                "src-type" | "dst-type" => {
                    self.word();
                    let Some(v) = self.word() else { return false };
                    let (n, v) = bang(v);
                    m.opts.push(opt(w, n, &[v]));
                }
                "limit-in" | "limit-out" => {
                    self.word();
                    let key = if w == "limit-in" { "limit-iface-in" } else { "limit-iface-out" };
                    m.opts.push(opt(key, false, &[]));
                }
                _ => break,
            }
        }
        if m.opts.is_empty() {
            return false;
        }
        rule.matches.push(m);
        true
    }

    /// `recent: SET|CHECK|UPDATE|REMOVE [seconds: N] [reap] [hit_count: N] [TTL-Match]
    /// name: N side: source|dest [mask: M]`, in the saved option order.
    fn recent(&mut self, rule: &mut Rule, negate: bool) -> bool {
        let mut m = Match::new("recent");
        let mode = match self.word() {
            Some("SET") => "set",
            Some("CHECK") => "rcheck",
            Some("UPDATE") => "update",
            Some("REMOVE") => "remove",
            _ => return false,
        };
        m.opts.push(opt(mode, negate, &[]));
        loop {
            match self.peek() {
                Some("seconds:") => {
                    self.word();
                    let Some(v) = self.word() else { return false };
                    m.opts.push(opt("seconds", false, &[v]));
                }
                Some("reap") => {
                    self.word();
                    m.opts.push(opt("reap", false, &[]));
                }
                Some("hit_count:") => {
                    self.word();
                    let Some(v) = self.word() else { return false };
                    m.opts.push(opt("hitcount", false, &[v]));
                }
                Some("TTL-Match") => {
                    self.word();
                    m.opts.push(opt("rttl", false, &[]));
                }
                Some("name:") => {
                    self.word();
                    let Some(v) = self.word() else { return false };
                    m.opts.push(opt("name", false, &[v]));
                }
                Some("mask:") => {
                    self.word();
                    let Some(v) = self.word() else { return false };
                    m.opts.push(opt("mask", false, &[v]));
                }
                Some("side:") => {
                    self.word();
                    let side = match self.word() {
                        Some("source") => "rsource",
                        Some("dest") => "rdest",
                        _ => return false,
                    };
                    // Saved after the mask, which -L prints after the side.
                    let mask = match self.peek() {
                        Some("mask:") => {
                            self.word();
                            self.word()
                        }
                        _ => None,
                    };
                    if let Some(mask) = mask {
                        m.opts.push(opt("mask", false, &[mask]));
                    }
                    m.opts.push(opt(side, false, &[]));
                }
                _ => break,
            }
        }
        rule.matches.push(m);
        true
    }

    /// `#conn src|dst/MASK >|<= N`.
    fn connlimit(&mut self, rule: &mut Rule) -> bool {
        let Some(spec) = self.word() else { return false };
        let Some((side, mask)) = spec.split_once('/') else { return false };
        let cmp = self.word();
        let Some(n) = self.word() else { return false };
        let key = match cmp {
            Some(">") => "connlimit-above",
            Some("<=") => "connlimit-upto",
            _ => return false,
        };
        let addr = match side {
            "src" => "connlimit-saddr",
            "dst" => "connlimit-daddr",
            _ => return false,
        };
        let mut m = Match::new("connlimit");
        m.opts.push(opt(key, false, &[n]));
        m.opts.push(opt("connlimit-mask", false, &[mask]));
        m.opts.push(opt(addr, false, &[]));
        rule.matches.push(m);
        true
    }

    /// `statistic mode random probability P` / `statistic mode nth every N [packet P]`.
    fn statistic(&mut self, rule: &mut Rule) -> bool {
        if self.word() != Some("mode") {
            return false;
        }
        let mut m = Match::new("statistic");
        let Some(mode) = self.word() else { return false };
        let negated = self.peek() == Some("!");
        if negated {
            self.word();
        }
        match mode {
            "random" => {
                if self.word() != Some("probability") {
                    return false;
                }
                let Some(p) = self.word() else { return false };
                m.opts.push(opt("mode", false, &["random"]));
                m.opts.push(opt("probability", negated, &[p]));
            }
            "nth" => {
                if self.word() != Some("every") {
                    return false;
                }
                let Some(every) = self.word() else { return false };
                let packet = match self.peek() {
                    Some("packet") => {
                        self.word();
                        self.word()
                    }
                    _ => None,
                };
                m.opts.push(opt("mode", false, &["nth"]));
                m.opts.push(opt("every", negated, &[every]));
                m.opts.push(opt("packet", false, &[packet.unwrap_or("0")]));
            }
            _ => return false,
        }
        rule.matches.push(m);
        true
    }

    fn tcp_udp(&mut self, rule: &mut Rule, proto: &str) -> bool {
        let mut m = Match::new(proto);
        while let Some(w) = self.peek() {
            let Some((key, val)) = w.split_once([':', '=']) else { break };
            let (n, val) = bang(val);
            let val = val.to_owned();
            let o = match key {
                "spt" | "spts" => opt("sport", n, &[&self.port_range(&val, proto)]),
                "dpt" | "dpts" => opt("dport", n, &[&self.port_range(&val, proto)]),
                "option" => opt("tcp-option", n, &[&val]),
                "flags" => match flags_to_canonical(&val) {
                    Some(f) => {
                        let (mask, comp) = f.split_once(' ').unwrap_or(("", ""));
                        opt("tcp-flags", n, &[mask, comp])
                    }
                    None => return false,
                },
                _ => break,
            };
            self.word();
            m.opts.push(o);
        }
        // Saved order: sport, dport, option, flags.
        let rank = |o: &Opt| {
            ["sport", "dport", "tcp-option", "tcp-flags"].iter().position(|n| *n == o.name)
        };
        m.opts.sort_by_key(rank);
        rule.matches.push(m);
        true
    }

    fn icmp(&mut self, rule: &mut Rule, proto: &str, glued: &str, negate: bool) -> bool {
        let v6 = proto == "ipv6-icmp";
        let table = icmp_type_names(if v6 { Family::V6 } else { Family::V4 });
        let (mut negated, ty, code) = if glued == "type" {
            let Some(t) = self.word().map(str::to_owned) else { return false };
            let code = match self.peek() {
                Some("code") => {
                    self.word();
                    self.word().map(|c| format!("/{c}"))
                }
                Some("codes") => return false,
                _ => None,
            };
            (false, t, code)
        } else {
            let Some(w) = self.word() else { return false };
            let (n, w) = bang(w);
            if let Some(rest) = w.strip_prefix("type") {
                let t = if rest.is_empty() {
                    self.word().unwrap_or("").to_owned()
                } else {
                    rest.to_owned()
                };
                let code = match self.peek() {
                    Some("code") => {
                        self.word();
                        self.word().map(|c| format!("/{c}"))
                    }
                    _ => None,
                };
                (n, t, code)
            } else {
                let Some((_, t, min, max)) = table.iter().find(|(name, ..)| *name == w) else {
                    return false;
                };
                let value = match (t, min, max) {
                    (255, 0, 255) if !v6 => ("any".to_owned(), None),
                    (t, 0, 255) => (t.to_string(), None),
                    (t, c, _) => (t.to_string(), Some(format!("/{c}"))),
                };
                (n, value.0, value.1)
            }
        };
        negated |= negate;
        let value = match (ty.as_str(), code) {
            ("255", None) if !v6 => "any".to_owned(),
            (_, code) => format!("{ty}{}", code.unwrap_or_default()),
        };
        let (name, key) = if v6 { ("icmp6", "icmpv6-type") } else { ("icmp", "icmp-type") };
        let mut m = Match::new(name);
        m.opts.push(opt(key, negated, &[&value]));
        rule.matches.push(m);
        true
    }

    fn multiport(&mut self, rule: &mut Rule) -> bool {
        let proto = match rule.proto.as_ref().and_then(|p| p.value.number()) {
            Some(17) => "udp",
            _ => "tcp",
        };
        let Some(kind) = self.word().map(str::to_owned) else { return false };
        if !matches!(kind.as_str(), "sports" | "dports" | "ports") {
            return false;
        }
        let Some(list) = self.word().map(str::to_owned) else { return false };
        let (n, list) = bang(&list);
        let ports: Vec<String> = list.split(',').map(|p| self.port_range(p, proto)).collect();
        let mut m = Match::new("multiport");
        m.opts.push(opt(&kind, n, &[&ports.join(",")]));
        rule.matches.push(m);
        true
    }

    fn conntrack(&mut self, rule: &mut Rule, first: &str, negate: bool) -> bool {
        let mut m = Match::new("conntrack");
        let mut key = first.to_owned();
        let mut n = negate;
        loop {
            let Some(v) = self.word().map(str::to_owned) else { return false };
            m.opts.push(opt(&key, n, &[&v]));
            let mut probe = Decoder {
                text: self.text,
                line: self.line,
                family: self.family,
                warnings: &mut Vec::new(),
            };
            let next = probe.word();
            let (neg_next, word) = match next {
                Some("!") => (true, probe.word()),
                other => (false, other),
            };
            match word {
                Some(w) if is_ct_word(w) => {
                    key = w.to_owned();
                    n = neg_next;
                    self.text = probe.text;
                }
                _ => break,
            }
        }
        rule.matches.push(m);
        true
    }

    fn comment(&mut self, rule: &mut Rule) -> bool {
        let t = self.text.strip_prefix(' ').unwrap_or(self.text);
        let Some(end) = t.find(" */") else { return false };
        let text = t[..end].to_owned();
        self.text = &t[end + 3..];
        let mut m = Match::new("comment");
        m.opts.push(Opt::new("comment", &[&text]));
        rule.matches.push(m);
        true
    }

    fn limit(&mut self, rule: &mut Rule) -> bool {
        self.word();
        let Some(rate) = self.word().map(str::to_owned) else { return false };
        if self.word() != Some("burst") {
            return false;
        }
        let Some(burst) = self.word().map(str::to_owned) else { return false };
        let mut m = Match::new("limit");
        m.opts.push(Opt::new("limit", &[&rate]));
        if burst != "5" {
            m.opts.push(Opt::new("limit-burst", &[&burst]));
        }
        rule.matches.push(m);
        true
    }

    fn owner(&mut self, rule: &mut Rule, negate: bool) -> bool {
        let mut n = negate;
        let mut m = Match::new("owner");
        loop {
            let kind = self.word().map(str::to_owned);
            let name = match kind.as_deref() {
                Some("UID") => "uid-owner",
                Some("GID") => "gid-owner",
                Some("socket") => {
                    self.word();
                    m.opts.push(opt("socket-exists", n, &[]));
                    ""
                }
                _ => return false,
            };
            if !name.is_empty() {
                if self.word() != Some("match") {
                    return false;
                }
                let Some(id) = self.word().map(str::to_owned) else { return false };
                let id = if id == "root" {
                    "0".to_owned()
                } else if id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    id
                } else {
                    self.warnings
                        .push(ListingWarning::UnknownName { line: self.line, name: id.clone() });
                    id
                };
                m.opts.push(opt(name, n, &[&id]));
            }
            let mut probe = Decoder {
                text: self.text,
                line: self.line,
                family: self.family,
                warnings: &mut Vec::new(),
            };
            let (pn, w) = match probe.word() {
                Some("!") => (true, probe.word()),
                other => (false, other),
            };
            if w == Some("owner") {
                self.text = probe.text;
                n = pn;
            } else {
                break;
            }
        }
        rule.matches.push(m);
        true
    }

    /// The target's text: `word` is its first word, `start` the text from there on.
    fn target(&mut self, t: &mut Target, word: &str, start: &'a str) -> bool {
        match (t.name.as_str(), word) {
            ("REJECT", "reject-with") => {
                let Some(w) = self.word().map(str::to_owned) else { return false };
                t.opts.push(Opt::new("reject-with", &[&w]));
                true
            }
            ("LOG", "LOG") => self.log(t),
            ("DNAT" | "SNAT" | "NETMAP", w) if w.starts_with("to:") => {
                let key = match t.name.as_str() {
                    "DNAT" => "to-destination",
                    "SNAT" => "to-source",
                    _ => "to",
                };
                t.opts.push(Opt::new(key, &[&w[3..]]));
                self.flags(t, &["random", "random-fully", "persistent"])
            }
            ("MASQUERADE", "masq") | ("REDIRECT", "redir") => {
                let Some(_) = self.word() else { return false };
                let Some(p) = self.word().map(str::to_owned) else { return false };
                t.opts.push(Opt::new("to-ports", &[&p]));
                self.flags(t, &["random", "random-fully"])
            }
            ("MASQUERADE" | "REDIRECT", "random" | "random-fully") => {
                t.opts.push(Opt::new(word, &[]));
                self.flags(t, &["random", "random-fully"])
            }
            ("TCPMSS", "TCPMSS") => {
                match (self.word(), self.word()) {
                    (Some("clamp"), Some("to")) if self.word() == Some("PMTU") => {
                        t.opts.push(Opt::new("clamp-mss-to-pmtu", &[]));
                    }
                    (Some("set"), Some(v)) => t.opts.push(Opt::new("set-mss", &[v])),
                    _ => return false,
                }
                true
            }
            ("NFQUEUE", "NFQUEUE") => {
                loop {
                    match self.peek() {
                        Some("num") => {
                            self.word();
                            let Some(v) = self.word() else { return false };
                            t.opts.push(Opt::new("queue-num", &[v]));
                        }
                        Some("balance") => {
                            self.word();
                            let Some(v) = self.word() else { return false };
                            t.opts.push(Opt::new("queue-balance", &[v]));
                        }
                        Some("bypass") => {
                            self.word();
                            t.opts.push(Opt::new("queue-bypass", &[]));
                        }
                        Some("cpu-fanout") => {
                            self.word();
                            t.opts.push(Opt::new("queue-cpu-fanout", &[]));
                        }
                        _ => break,
                    }
                }
                true
            }
            // NOTRACK is listed with target column CT and text NOTRACK.
            ("CT", "NOTRACK") => {
                t.name = "NOTRACK".to_owned();
                true
            }
            ("CT", "CT") => {
                while let Some(w) = self.peek() {
                    match w {
                        "notrack" => {
                            self.word();
                            t.opts.push(Opt::new("notrack", &[]));
                        }
                        "helper" | "timeout" | "zone" | "zone-orig" | "zone-reply" | "ctevents"
                        | "expevents" => {
                            self.word();
                            let Some(v) = self.word() else { return false };
                            t.opts.push(Opt::new(w, &[v]));
                        }
                        _ => break,
                    }
                }
                !t.opts.is_empty()
            }
            ("CONNMARK", "CONNMARK") => {
                let mode = match self.word() {
                    Some("restore") => "restore-mark",
                    Some("save") => "save-mark",
                    _ => return false,
                };
                let all = "0xffffffff";
                let (nf, ct) = match self.peek() {
                    Some("mask") => {
                        self.word();
                        let Some(m) = self.word() else { return false };
                        (m.to_owned(), m.to_owned())
                    }
                    _ => (all.to_owned(), all.to_owned()),
                };
                t.opts.push(Opt::new(mode, &[]));
                t.opts.push(Opt::new("nfmask", &[&nf]));
                t.opts.push(Opt::new("ctmask", &[&ct]));
                true
            }
            ("CONNSECMARK", "CONNSECMARK") => match self.word() {
                Some(m @ ("save" | "restore")) => {
                    t.opts.push(Opt::new(m, &[]));
                    true
                }
                _ => false,
            },
            ("TTL" | "HL", w) if w == t.name => {
                let p = t.name.to_ascii_lowercase();
                let key = match (self.word(), self.word()) {
                    (Some("set"), Some("to")) => format!("{p}-set"),
                    (Some("decrement"), Some("by")) => format!("{p}-dec"),
                    (Some("increment"), Some("by")) => format!("{p}-inc"),
                    _ => return false,
                };
                let Some(v) = self.word() else { return false };
                t.opts.push(Opt::new(&key, &[v]));
                true
            }
            ("DSCP", "DSCP") => {
                if self.word() != Some("set") {
                    return false;
                }
                let Some(v) = self.word() else { return false };
                t.opts.push(Opt::new("set-dscp", &[v]));
                true
            }
            ("CHECKSUM", "CHECKSUM") if self.word() == Some("fill") => {
                t.opts.push(Opt::new("checksum-fill", &[]));
                true
            }
            ("CLASSIFY", "CLASSIFY") => {
                if self.word() != Some("set") {
                    return false;
                }
                let Some((a, b)) = self.word().and_then(|v| v.split_once(':')) else {
                    return false;
                };
                let (Ok(a), Ok(b)) = (u16::from_str_radix(a, 16), u16::from_str_radix(b, 16))
                else {
                    return false;
                };
                t.opts.push(Opt::new("set-class", &[&format!("{a:04x}:{b:04x}")]));
                true
            }
            ("TPROXY", "TPROXY") => {
                if self.word() != Some("redirect") {
                    return false;
                }
                let Some((ip, port)) = self.word().and_then(|v| v.rsplit_once(':')) else {
                    return false;
                };
                t.opts.push(Opt::new("on-port", &[port]));
                t.opts.push(Opt::new("on-ip", &[ip.trim_start_matches('[').trim_end_matches(']')]));
                if self.peek() == Some("mark") {
                    self.word();
                    let Some(m) = self.word() else { return false };
                    t.opts.push(Opt::new("tproxy-mark", &[m]));
                }
                true
            }
            ("TOS", "TOS") => {
                let value = match self.word() {
                    Some("set") => self.word().map(str::to_owned),
                    Some(w) => w.strip_prefix("set").and_then(|name| {
                        let v = match name {
                            "Minimize-Delay" => 0x10,
                            "Maximize-Throughput" => 0x08,
                            "Maximize-Reliability" => 0x04,
                            "Minimize-Cost" => 0x02,
                            "Normal-Service" => 0x00,
                            _ => return None,
                        };
                        Some(format!("0x{v:02x}/0x3f"))
                    }),
                    None => None,
                };
                let Some(v) = value else { return false };
                t.opts.push(Opt::new("set-tos", &[&v]));
                true
            }
            ("MARK", "MARK") => {
                let verb = self.word().map(str::to_owned);
                let Some(v) = self.word().map(str::to_owned) else { return false };
                let num = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
                let xmark = match verb.as_deref() {
                    Some("set") => format!("{v}/0xffffffff"),
                    Some("xset") => v,
                    Some("and") => match num(&v) {
                        Some(x) => format!("0x0/{:#x}", !x),
                        None => return false,
                    },
                    Some("or") => format!("{v}/{v}"),
                    Some("xor") => format!("{v}/0x0"),
                    _ => return false,
                };
                t.opts.push(Opt::new("set-xmark", &[&xmark]));
                true
            }
            _ => {
                self.text = start;
                false
            }
        }
    }

    fn flags(&mut self, t: &mut Target, allowed: &[&str]) -> bool {
        while let Some(w) = self.peek().filter(|w| allowed.contains(w)).map(str::to_owned) {
            self.word();
            t.opts.push(Opt::new(&w, &[]));
        }
        true
    }

    fn log(&mut self, t: &mut Target) -> bool {
        let level: usize;
        let mut flags = 0u32;
        match self.word() {
            Some("flags") => {
                flags = self.word().and_then(|f| f.parse().ok()).unwrap_or(0);
                if self.word() != Some("level") {
                    return false;
                }
                level = self.word().and_then(|l| l.parse().ok()).unwrap_or(4);
            }
            Some("level") => {
                let Some(name) = self.word() else { return false };
                let Some(l) = LOG_LEVELS.iter().position(|n| *n == name) else { return false };
                level = l;
                while let Some(w) = self.peek() {
                    match LOG_FLAGS.iter().find(|(_, label, _)| *label == w) {
                        Some((.., bit)) => {
                            flags |= bit;
                            self.word();
                        }
                        None => break,
                    }
                }
            }
            _ => return false,
        }
        let rest = self.text.trim_start();
        if let Some(p) = rest.strip_prefix("prefix \"") {
            let Some(end) = p.rfind('"') else { return false };
            t.opts.push(Opt::new("log-prefix", &[&p[..end]]));
            self.text = &p[end + 1..];
        }
        if level != 4 {
            t.opts.push(Opt::new("log-level", &[&level.to_string()]));
        }
        for (opt, _, bit) in LOG_FLAGS {
            if flags & bit != 0 {
                t.opts.push(Opt::new(opt, &[]));
            }
        }
        true
    }
}

fn is_ct_word(w: &str) -> bool {
    matches!(
        w,
        "ctstate"
            | "ctproto"
            | "ctorigsrc"
            | "ctorigdst"
            | "ctreplsrc"
            | "ctrepldst"
            | "ctorigsrcport"
            | "ctorigdstport"
            | "ctreplsrcport"
            | "ctrepldstport"
            | "ctstatus"
            | "ctexpire"
            | "ctdir"
    )
}

/// Adds `o` to the last match when it is a `name` match, else to a new one.
fn push_opt(rule: &mut Rule, name: &str, o: Opt) {
    match rule.matches.last_mut() {
        Some(m) if m.name == name => m.opts.push(o),
        _ => {
            let mut m = Match::new(name);
            m.opts.push(o);
            rule.matches.push(m);
        }
    }
}
