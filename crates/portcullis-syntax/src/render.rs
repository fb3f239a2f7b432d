//! Writing the model as iptables-save text, `iptables -S` text and single rule lines.

use std::fmt::Write as _;

use portcullis_rules::{Action, Chain, Match, Opt, Rule, Ruleset, Table, Target};

use crate::token::{quote, quote_always, quote_forced};

/// Options of [`render_save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveOptions {
    /// Print `[packets:bytes]` before every rule that has counters (`iptables-save -c`).
    pub counters: bool,
}

/// How a module option's value is quoted on output.
fn quoting(module: &str, opt: &str) -> Quoting {
    match (module, opt) {
        ("comment", "comment")
        | ("LOG", "log-prefix")
        | ("NFLOG", "nflog-prefix")
        | ("ULOG", "ulog-prefix")
        | ("helper", "helper")
        | ("cgroup", "path")
        | ("nfacct", "nfacct-name") => Quoting::SaveString,
        ("string", "string" | "hex-string")
        | ("u32", "u32")
        | ("bpf", "bytecode")
        | ("connlabel", "label")
        | ("LED", "led-trigger-id") => Quoting::Always,
        _ => Quoting::IfNeeded,
    }
}

enum Quoting {
    SaveString,
    Always,
    IfNeeded,
}

/// A chain or target name: printed raw as iptables-save does, except that a name holding
/// a `"` is quoted so that the line reads back (iptables itself would not read it back).
fn push_name(out: &mut String, name: &str) {
    if name.contains('"') {
        out.push_str(&quote(name));
    } else {
        out.push_str(name);
    }
}

/// Whether a bare value would read back as syntax (`!`, an option) rather than a value.
fn looks_like_syntax(value: &str) -> bool {
    value == "!" || (value.starts_with('-') && value.len() > 1)
}

fn push_value(out: &mut String, module: &str, opt: &str, value: &str) {
    out.push(' ');
    match quoting(module, opt) {
        // iptables prints `--comment -x` bare and cannot read it back; quote it.
        Quoting::SaveString | Quoting::IfNeeded if looks_like_syntax(value) => {
            out.push_str(&quote_forced(value));
        }
        Quoting::SaveString => out.push_str(&quote(value)),
        Quoting::Always => out.push_str(&quote_always(value)),
        Quoting::IfNeeded => {
            let needs =
                value.is_empty() || value.bytes().any(|b| b.is_ascii_whitespace() || b == b'"');
            if needs {
                out.push_str(&quote(value));
            } else {
                out.push_str(value);
            }
        }
    }
}

fn push_opts(out: &mut String, module: &str, opts: &[Opt]) {
    for o in opts {
        if o.negated {
            out.push_str(" !");
        }
        out.push_str(" --");
        out.push_str(&o.name);
        for a in &o.args {
            push_value(out, module, &o.name, a);
        }
    }
}

fn push_match(out: &mut String, m: &Match) {
    out.push_str(" -m ");
    out.push_str(&m.name);
    push_opts(out, &m.name, &m.opts);
}

fn push_target(out: &mut String, t: &Target) {
    out.push_str(" -j ");
    push_name(out, &t.name);
    push_opts(out, &t.name, &t.opts);
}

/// Appends the rule specification (everything after `-A CHAIN`), each part preceded by a
/// space. With `counters_inline`, `-c P B` goes before the action, as `iptables -S -v`
/// prints it.
pub(crate) fn push_rule_spec(out: &mut String, rule: &Rule, counters_inline: bool) {
    let neg = |out: &mut String, n: bool| {
        if n {
            out.push_str(" !");
        }
    };
    if let Some(a) = &rule.src {
        neg(out, a.negated);
        let _ = write!(out, " -s {}", a.value);
    }
    if let Some(a) = &rule.dst {
        neg(out, a.negated);
        let _ = write!(out, " -d {}", a.value);
    }
    if let Some(i) = &rule.in_iface {
        neg(out, i.negated);
        let _ = write!(out, " -i {}", i.value);
    }
    if let Some(i) = &rule.out_iface {
        neg(out, i.negated);
        let _ = write!(out, " -o {}", i.value);
    }
    if let Some(p) = &rule.proto {
        neg(out, p.negated);
        let _ = write!(out, " -p {}", p.value);
    }
    if let Some(negated) = rule.fragment {
        neg(out, negated);
        out.push_str(" -f");
    }
    for m in &rule.matches {
        push_match(out, m);
    }
    if counters_inline && let Some(c) = rule.counters {
        let _ = write!(out, " -c {} {}", c.packets, c.bytes);
    }
    match &rule.action {
        Some(Action::Jump(t)) => push_target(out, t),
        Some(Action::Goto(c)) => {
            out.push_str(" -g ");
            push_name(out, c.as_str());
        }
        None => {}
    }
}

/// One rule as iptables-save prints it: `-A CHAIN …` (no counters, no newline).
///
/// ```
/// use portcullis_rules::Family;
/// use portcullis_syntax::{parse_rule_line, render_rule};
/// let (chain, rule) = parse_rule_line("-A INPUT -p tcp --dport 22 -j ACCEPT", Family::V4)?;
/// assert_eq!(render_rule(&chain, &rule), "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT");
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn render_rule(chain: &str, rule: &Rule) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("-A ");
    push_name(&mut out, chain);
    push_rule_spec(&mut out, rule, false);
    out
}

fn push_chain_line(out: &mut String, c: &Chain) {
    let counters = c.counters.unwrap_or_default();
    let policy = c.policy.map_or("-", |p| p.as_str());
    let _ = writeln!(out, ":{} {} [{}:{}]", c.name, policy, counters.packets, counters.bytes);
}

fn push_table(out: &mut String, t: &Table, opts: SaveOptions) {
    let _ = writeln!(out, "*{}", t.name);
    for c in &t.chains {
        push_chain_line(out, c);
    }
    for c in &t.chains {
        for r in &c.rules {
            if opts.counters
                && let Some(k) = r.counters
            {
                let _ = write!(out, "[{}:{}] ", k.packets, k.bytes);
            }
            out.push_str("-A ");
            push_name(out, c.name.as_str());
            push_rule_spec(out, r, false);
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
}

/// The ruleset as iptables-save text, tables and chains in the order they are held, with
/// no `#` lines (so the output is stable). Canonicalise first
/// ([`portcullis_rules::canonicalize`]) for exactly what iptables-save prints.
pub fn render_save(ruleset: &Ruleset, opts: SaveOptions) -> String {
    let mut out = String::with_capacity(ruleset.rule_count() * 80 + 256);
    for t in &ruleset.tables {
        push_table(&mut out, t, opts);
    }
    out
}

/// One table as `iptables -S` prints it: `-P` lines for builtin chains, `-N` lines for
/// user chains, then the rules. With `verbose`, counters as `-c P B` (`-S -v`).
pub fn render_rules_spec(table: &Table, verbose: bool) -> String {
    let mut out = String::new();
    for c in table.chains.iter().filter(|c| c.is_builtin()) {
        let policy = c.policy.map_or("ACCEPT", |p| p.as_str());
        let _ = write!(out, "-P {} {}", c.name, policy);
        if verbose {
            let k = c.counters.unwrap_or_default();
            let _ = write!(out, " -c {} {}", k.packets, k.bytes);
        }
        out.push('\n');
    }
    for c in table.chains.iter().filter(|c| !c.is_builtin()) {
        out.push_str("-N ");
        push_name(&mut out, c.name.as_str());
        out.push('\n');
    }
    for c in &table.chains {
        for r in &c.rules {
            out.push_str("-A ");
            push_name(&mut out, c.name.as_str());
            push_rule_spec(&mut out, r, verbose);
            out.push('\n');
        }
    }
    out
}
