//! Rendering a ruleset as `iptables -L` prints it (`formats.md` §14).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use portcullis_rules::{
    Action, Address, Chain, Family, Negatable, Policy, Protocol, Rule, Ruleset, Table,
};

use super::text::rule_text;
use super::{ListFlags, ListStyle};

/// Renders the `-L` listing of `flags.table` of `ruleset`, byte for byte as iptables
/// 1.8.10+ prints it for these flags (or 1.8.9 with [`ListStyle::NumericProt189`]).
///
/// The table's builtin chains are listed even when the ruleset lacks them (the kernel
/// always has them); chains come in iptables-save order. With `flags.chain` only that
/// chain is listed (nothing when it does not exist); with `flags.rule` only that rule's
/// line, without headers. Names are never looked up: see the module documentation.
///
/// ```
/// use portcullis_syntax::{ListFlags, parse_save, render_listing};
/// let rs = parse_save("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n")?;
/// let out = render_listing(&rs, &ListFlags { chain: Some("INPUT".into()), ..ListFlags::default() });
/// assert_eq!(out.lines().nth(2), Some("ACCEPT     tcp  --  anywhere             anywhere             tcp dpt:ssh"));
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn render_listing(ruleset: &Ruleset, flags: &ListFlags) -> String {
    let empty = Table::new(flags.table);
    let table = ruleset.table(flags.table).unwrap_or(&empty);
    // The kernel always has the builtin chains; list the missing ones as empty ACCEPT.
    let missing: Vec<Chain> = flags
        .table
        .builtin_chains()
        .iter()
        .filter(|n| !table.has_chain(n))
        .map(|n| Chain::builtin(n, Policy::Accept))
        .collect();
    let mut chains: Vec<&Chain> = table.chains.iter().chain(&missing).collect();
    chains.sort_by(|a, b| chain_order(a).cmp(&chain_order(b)));
    let refs = references(table);
    let mut w = ListingWriter::new(flags, ruleset.family);
    w.out.reserve(chains.iter().map(|c| c.rules.len() * 130 + 200).sum());
    for chain in chains {
        if w.chain(chain, refs.get(chain.name.as_str()).copied().unwrap_or(0)) {
            for (i, rule) in chain.rules.iter().enumerate() {
                w.rule(i + 1, rule);
            }
        }
    }
    w.finish()
}

/// Writes a listing chain by chain and rule by rule, for callers that stream rules
/// instead of holding a whole [`Ruleset`] (a kube-proxy-sized dump need not be kept in
/// memory to be listed). Chains must come in iptables-save order (builtins in hook order,
/// then user chains by name), as [`render_listing`] sorts them.
///
/// ```
/// use portcullis_rules::{Chain, Family, Policy, Rule};
/// use portcullis_syntax::{ListFlags, ListingWriter};
/// let flags = ListFlags::default();
/// let mut w = ListingWriter::new(&flags, Family::V4);
/// if w.chain(&Chain::builtin("INPUT", Policy::Drop), 0) {
///     w.rule(1, &Rule::default());
/// }
/// assert!(w.finish().starts_with("Chain INPUT (policy DROP)\n"));
/// ```
#[derive(Debug)]
pub struct ListingWriter<'f> {
    flags: &'f ListFlags,
    family: Family,
    out: String,
    first: bool,
}

impl<'f> ListingWriter<'f> {
    /// A writer for `flags` (its table is not looked at: the caller picks the chains).
    pub fn new(flags: &'f ListFlags, family: Family) -> Self {
        Self { flags, family, out: String::new(), first: true }
    }

    /// Starts `chain` (its rules are not looked at), `references` being how many rules of
    /// the table jump or go to it. Returns whether its rules are to be listed: false when
    /// `flags.chain` names another chain.
    pub fn chain(&mut self, chain: &Chain, references: usize) -> bool {
        if self.flags.chain.as_deref().is_some_and(|c| c != chain.name.as_str()) {
            return false;
        }
        if self.flags.rule.is_some() {
            return true;
        }
        if !self.first {
            self.out.push('\n');
        }
        self.first = false;
        push_chain_header(&mut self.out, references, chain, self.flags);
        push_column_header(&mut self.out, self.flags);
        true
    }

    /// Lists rule number `num` (1-based) of the current chain; with `flags.rule`, only
    /// that rule is printed.
    pub fn rule(&mut self, num: usize, rule: &Rule) {
        if self.flags.rule.is_none_or(|n| n == num) {
            push_rule(&mut self.out, num, rule, self.family, self.flags);
        }
    }

    /// How many bytes were written so far (to cut the output into pieces).
    pub fn written(&self) -> usize {
        self.out.len()
    }

    /// Appends rule lines another writer with the same flags rendered (for callers that
    /// render the rules of a chain on several threads).
    pub fn append(&mut self, rendered: &str) {
        self.out.push_str(rendered);
    }

    /// Takes what was written so far (to write it out while streaming).
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.out)
    }

    /// The listing.
    pub fn finish(self) -> String {
        self.out
    }
}

/// iptables-save's chain order: builtins in hook order, then user chains by name.
fn chain_order(c: &Chain) -> (u8, &str) {
    const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
    match HOOKS.iter().position(|h| *h == c.name.as_str()) {
        Some(rank) if c.is_builtin() => (rank as u8, ""),
        _ => (u8::MAX, c.name.as_str()),
    }
}

/// Pads what was written since `start` with spaces to `width` bytes (C's `%-Ns`).
fn pad_from(out: &mut String, start: usize, width: usize) {
    for _ in out.len() - start..width {
        out.push(' ');
    }
}

/// `xtables_print_num`: K/M/G/T unless `-x`; `table` pads to the column width.
fn push_num(out: &mut String, n: u64, flags: &ListFlags, table: bool) {
    if flags.exact {
        if table {
            let _ = write!(out, "{n:>8} ");
        } else {
            let _ = write!(out, "{n} ");
        }
        return;
    }
    if n <= 99_999 {
        if table {
            let _ = write!(out, "{n:>5} ");
        } else {
            let _ = write!(out, "{n} ");
        }
        return;
    }
    let mut n = n;
    for unit in ['K', 'M', 'G'] {
        n = (n + 500) / 1000;
        if n <= 9999 {
            if table {
                let _ = write!(out, "{n:>4}{unit} ");
            } else {
                let _ = write!(out, "{n}{unit} ");
            }
            return;
        }
    }
    n = (n + 500) / 1000;
    if table {
        let _ = write!(out, "{n:>4}T ");
    } else {
        let _ = write!(out, "{n}T ");
    }
}

fn push_chain_header(out: &mut String, references: usize, chain: &Chain, flags: &ListFlags) {
    let _ = write!(out, "Chain {}", chain.name);
    match chain.policy {
        Some(p) => {
            let _ = write!(out, " (policy {}", p.as_str());
            if flags.verbose {
                let k = chain.counters.unwrap_or_default();
                out.push(' ');
                push_num(out, k.packets, flags, false);
                out.push_str("packets, ");
                push_num(out, k.bytes, flags, false);
                out.push_str("bytes");
            }
            out.push_str(")\n");
        }
        None => {
            let _ = writeln!(out, " ({references} references)");
        }
    }
}

/// How many rules jump (`-j`) or go (`-g`) to each chain: one pass over the table.
fn references(table: &Table) -> HashMap<&str, usize> {
    let mut refs = HashMap::new();
    for r in table.chains.iter().flat_map(|c| &c.rules) {
        let to = match &r.action {
            Some(Action::Jump(t)) => t.name.as_str(),
            Some(Action::Goto(c)) => c.as_str(),
            None => continue,
        };
        *refs.entry(to).or_insert(0) += 1;
    }
    refs
}

fn push_column_header(out: &mut String, flags: &ListFlags) {
    if flags.line_numbers {
        out.push_str("num  ");
    }
    if flags.verbose {
        if flags.exact {
            out.push_str("    pkts      bytes ");
        } else {
            out.push_str(" pkts bytes ");
        }
    }
    out.push_str("target     prot opt");
    if flags.verbose {
        out.push_str(" in     out    ");
    }
    out.push_str(" source               destination         \n");
}

/// xtables' built-in protocol names (`xtables_chain_protos`): what 1.8.10+ prints in
/// the prot column under `-n`.
fn chain_proto_name(n: u8) -> Option<&'static str> {
    Some(match n {
        0 => "all",
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        108 => "ipcomp",
        132 => "sctp",
        135 => "mobility-header",
        136 => "udplite",
        _ => return None,
    })
}

/// The prot column: `!` or space, then `%-4s `.
fn push_proto(out: &mut String, proto: Option<&Negatable<Protocol>>, flags: &ListFlags) {
    out.push(if proto.is_some_and(|p| p.negated) { '!' } else { ' ' });
    let start = out.len();
    match proto.map(|p| &p.value) {
        None => out.push_str(if flags.numeric && flags.style == ListStyle::NumericProt189 {
            "0"
        } else {
            "all"
        }),
        Some(Protocol::Number(n)) => {
            let name = match (flags.numeric, flags.style) {
                (true, ListStyle::NumericProt189) => None,
                (true, _) => chain_proto_name(*n),
                (false, _) => Protocol::Number(*n).name(),
            };
            match name {
                Some(name) => out.push_str(name),
                None => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        Some(Protocol::Name(s)) => out.push_str(s),
    }
    pad_from(out, start, 4);
    out.push(' ');
}

/// A source or destination column: `!` or space, then `%-19s `.
fn push_addr(out: &mut String, addr: Option<&Negatable<Address>>, family: Family, numeric: bool) {
    out.push(if addr.is_some_and(|a| a.negated) { '!' } else { ' ' });
    let start = out.len();
    match addr.map(|a| &a.value) {
        None if !numeric => out.push_str("anywhere"),
        None => out.push_str(if family == Family::V6 { "::/0" } else { "0.0.0.0/0" }),
        Some(a) => {
            let a = a.canonical();
            match &a {
                Address::Net { addr: IpAddr::V4(_), .. } if a.is_any() && !numeric => {
                    out.push_str("anywhere");
                }
                Address::Net { addr: IpAddr::V6(ip), .. } if ip.is_unspecified() && !numeric => {
                    out.push_str("anywhere");
                }
                Address::Net { addr: ip, mask } => {
                    let _ = write!(out, "{ip}");
                    match (ip, a.prefix_len()) {
                        (IpAddr::V4(_), Some(32)) | (IpAddr::V6(_), Some(128)) => {}
                        (_, Some(n)) => {
                            let _ = write!(out, "/{n}");
                        }
                        (_, None) => {
                            let _ = write!(out, "/{mask}");
                        }
                    }
                }
                Address::Host(h) => out.push_str(h),
            }
        }
    }
    pad_from(out, start, 19);
    out.push(' ');
}

/// The target column: the target's name (NOTRACK is listed as the CT it is an alias
/// of), the goto chain, or nothing.
fn target_column(rule: &Rule) -> &str {
    match &rule.action {
        Some(Action::Jump(t)) if t.name == "NOTRACK" => "CT",
        Some(Action::Jump(t)) => &t.name,
        Some(Action::Goto(c)) => c.as_str(),
        None => "",
    }
}

fn push_rule(out: &mut String, num: usize, rule: &Rule, family: Family, flags: &ListFlags) {
    if flags.line_numbers {
        let _ = write!(out, "{num:<4} ");
    }
    if flags.verbose {
        let k = rule.counters.unwrap_or_default();
        push_num(out, k.packets, flags, true);
        push_num(out, k.bytes, flags, true);
    }
    let start = out.len();
    out.push_str(target_column(rule));
    pad_from(out, start, 9);
    out.push(' ');
    push_proto(out, rule.proto.as_ref(), flags);
    match (family, rule.fragment) {
        (Family::V4, Some(false)) => out.push_str("-f "),
        (Family::V4, Some(true)) => out.push_str("!f "),
        _ => out.push_str("-- "),
    }
    if flags.verbose {
        let any = if flags.numeric { "*" } else { "any" };
        // " %-6s " for in, "%-6s " for out.
        out.push(' ');
        for iface in [&rule.in_iface, &rule.out_iface] {
            let start = out.len();
            match iface {
                Some(i) => {
                    if i.negated {
                        out.push('!');
                    }
                    out.push_str(i.value.as_str());
                }
                None => out.push_str(any),
            }
            pad_from(out, start, 6);
            out.push(' ');
        }
    }
    push_addr(out, rule.src.as_ref(), family, flags.numeric);
    push_addr(out, rule.dst.as_ref(), family, flags.numeric);
    if matches!(rule.action, Some(Action::Goto(_))) {
        out.push_str("[goto] ");
    }
    if flags.style == ListStyle::Pre1411 {
        let mut text = String::new();
        rule_text(&mut text, rule, family, flags.numeric);
        if let Some(t) = text.strip_prefix(' ') {
            out.push_str(t);
            out.push(' ');
        }
    } else {
        rule_text(out, rule, family, flags.numeric);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: u64, exact: bool) -> String {
        let mut s = String::new();
        push_num(&mut s, n, &ListFlags { exact, ..ListFlags::default() }, true);
        s
    }

    #[test]
    fn counters_use_units() {
        assert_eq!(num(55000, false), "55000 ");
        assert_eq!(num(987_654, false), " 988K ");
        assert_eq!(num(3_300_000, false), "3300K ");
        assert_eq!(num(987_654_321, false), " 988M ");
        assert_eq!(num(123_456_789_012, false), " 123G ");
        assert_eq!(num(123_456_789_012, true), "123456789012 ");
        assert_eq!(num(24, true), "      24 ");
    }
}
