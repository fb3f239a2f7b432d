//! Rendering a ruleset as `iptables -L` prints it (`formats.md` §14).

use std::fmt::Write as _;
use std::net::IpAddr;

use portcullis_rules::{Action, Address, Chain, Family, Negatable, Protocol, Rule, Ruleset, Table};

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
    let mut table = ruleset.table(flags.table).cloned().unwrap_or_else(|| Table::new(flags.table));
    table.complete_builtins();
    table.sort_chains();
    let mut out =
        String::with_capacity(table.chains.iter().map(|c| c.rules.len() * 120 + 200).sum());
    let mut first = true;
    for chain in &table.chains {
        if flags.chain.as_deref().is_some_and(|c| c != chain.name.as_str()) {
            continue;
        }
        if let Some(n) = flags.rule {
            if let Some(rule) = n.checked_sub(1).and_then(|i| chain.rules.get(i)) {
                push_rule(&mut out, n, rule, ruleset.family, flags);
            }
            continue;
        }
        if !first {
            out.push('\n');
        }
        first = false;
        push_chain_header(&mut out, &table, chain, flags);
        push_column_header(&mut out, flags);
        for (i, rule) in chain.rules.iter().enumerate() {
            push_rule(&mut out, i + 1, rule, ruleset.family, flags);
        }
    }
    out
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

fn push_chain_header(out: &mut String, table: &Table, chain: &Chain, flags: &ListFlags) {
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
            let _ = writeln!(out, " ({} references)", references(table, chain.name.as_str()));
        }
    }
}

/// How many rules jump (`-j`) or go (`-g`) to `chain`.
fn references(table: &Table, chain: &str) -> usize {
    let refers = |r: &Rule| match &r.action {
        Some(Action::Jump(t)) => t.name == chain,
        Some(Action::Goto(c)) => c.as_str() == chain,
        None => false,
    };
    table.chains.iter().flat_map(|c| &c.rules).filter(|r| refers(r)).count()
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

/// Pads `s` with spaces to `width` bytes (C's `%-Ns`).
fn push_padded(out: &mut String, s: &str, width: usize) {
    out.push_str(s);
    for _ in s.len()..width {
        out.push(' ');
    }
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

fn proto_column(proto: Option<&Negatable<Protocol>>, flags: &ListFlags) -> (bool, String) {
    let negated = proto.is_some_and(|p| p.negated);
    let p = proto.map_or(Protocol::Number(0), |p| p.value.clone());
    let text = match (&p, flags.numeric, flags.style) {
        (Protocol::Number(n), true, ListStyle::NumericProt189) => n.to_string(),
        (Protocol::Number(n), true, _) => {
            chain_proto_name(*n).map_or_else(|| n.to_string(), str::to_owned)
        }
        (Protocol::Number(n), false, _) => p.name().map_or_else(|| n.to_string(), str::to_owned),
        (Protocol::Name(s), _, _) => s.clone(),
    };
    (negated, text)
}

/// `xtables_ipmask_to_numeric` / `xtables_ip6mask_to_numeric`: nothing for a host mask,
/// `/N` for a prefix, the mask itself otherwise.
pub(super) fn mask_suffix(addr: &Address) -> String {
    match (addr, addr.prefix_len()) {
        (Address::Net { addr: IpAddr::V4(_), .. }, Some(32))
        | (Address::Net { addr: IpAddr::V6(_), .. }, Some(128)) => String::new(),
        (Address::Net { .. }, Some(n)) => format!("/{n}"),
        (Address::Net { mask, .. }, None) => format!("/{mask}"),
        (Address::Host(_), _) => String::new(),
    }
}

fn addr_column(addr: Option<&Negatable<Address>>, family: Family, numeric: bool) -> (bool, String) {
    let negated = addr.is_some_and(|a| a.negated);
    let a = addr.map_or_else(|| Address::any(family), |a| a.value.canonical());
    let text = match &a {
        Address::Net { addr: IpAddr::V4(_), .. } if a.is_any() && !numeric => "anywhere".to_owned(),
        Address::Net { addr: IpAddr::V6(ip), .. } if ip.is_unspecified() && !numeric => {
            "anywhere".to_owned()
        }
        Address::Net { addr: ip, .. } => format!("{ip}{}", mask_suffix(&a)),
        Address::Host(h) => h.clone(),
    };
    (negated, text)
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
    push_padded(out, target_column(rule), 9);
    out.push(' ');
    let (neg, prot) = proto_column(rule.proto.as_ref(), flags);
    out.push(if neg { '!' } else { ' ' });
    push_padded(out, &prot, 4);
    out.push(' ');
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
            let s = match iface {
                Some(i) => format!("{}{}", if i.negated { "!" } else { "" }, i.value),
                None => any.to_owned(),
            };
            push_padded(out, &s, 6);
            out.push(' ');
        }
    }
    for a in [&rule.src, &rule.dst] {
        let (neg, text) = addr_column(a.as_ref(), family, flags.numeric);
        out.push(if neg { '!' } else { ' ' });
        push_padded(out, &text, 19);
        out.push(' ');
    }
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
