//! Reading the kernel back after an apply and telling what differs from the ruleset.
//!
//! Whole tables are compared as text: the ruleset in canonical form, rendered line by line,
//! against the lines `iptables-save` prints, chain by chain. Only a chain whose text
//! differs is parsed and compared as a model, so a rendering difference that means the
//! same rule is not reported. This keeps the read-back of a 150,000-line ruleset close to
//! the cost of `iptables-save` itself.

use std::collections::{HashMap, HashSet};

use portcullis_rules::{Backend, Chain, Family, Ruleset, Table, TableName};
use portcullis_syntax::{parse_rules_spec, render_rule};

use crate::apply::Drift;
use crate::error::ApplyError;
use crate::nft::KernelTable;
use crate::plan::comparable;

/// One chain as the kernel should print it.
#[derive(Debug, Clone)]
pub(crate) struct ExpectedChain {
    name: String,
    policy: &'static str,
    lines: Vec<String>,
}

/// Tables as the kernel should print them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    tables: Vec<(TableName, Vec<ExpectedChain>)>,
}

/// The expected text of `tables` of `want` (a ruleset in comparable form).
pub(crate) fn expected(want: &Ruleset, tables: &[TableName]) -> Expected {
    let tables = want
        .tables
        .iter()
        .filter(|t| tables.contains(&t.name))
        .map(|t| {
            let chains = t
                .chains
                .iter()
                .map(|c| ExpectedChain {
                    name: c.name.as_str().to_owned(),
                    policy: c.policy.map_or("-", |p| p.as_str()),
                    lines: c.rules.iter().map(|r| render_rule(c.name.as_str(), r)).collect(),
                })
                .collect();
            (t.name, chains)
        })
        .collect();
    Expected { tables }
}

/// One chain of iptables-save output.
#[derive(Debug, Default)]
pub(crate) struct SavedChain<'a> {
    policy: &'a str,
    lines: Vec<&'a str>,
}

impl SavedChain<'_> {
    /// The chain as `iptables -S` would print it.
    pub(crate) fn spec(&self, chain: &str) -> String {
        let mut text = if self.policy == "-" {
            format!("-N {chain}\n")
        } else {
            format!("-P {chain} {}\n", self.policy)
        };
        for l in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        text
    }
}

/// iptables-save text by table: the chain names in order, and each chain's lines.
pub(crate) type SavedIndex<'a> =
    HashMap<TableName, (Vec<&'a str>, HashMap<&'a str, SavedChain<'a>>)>;

/// Indexes iptables-save text: table → chain → policy and `-A` lines, chains in order.
pub(crate) fn index(text: &str) -> SavedIndex<'_> {
    let mut out: SavedIndex<'_> = HashMap::new();
    let mut current: Option<TableName> = None;
    for l in text.lines() {
        if let Some(name) = l.strip_prefix('*') {
            current = name.trim().parse().ok();
            continue;
        }
        let Some(t) = current else { continue };
        let entry = out.entry(t).or_default();
        if let Some(rest) = l.strip_prefix(':') {
            let mut f = rest.split(' ');
            let (Some(name), Some(policy)) = (f.next(), f.next()) else { continue };
            entry.0.push(name);
            entry.1.entry(name).or_default().policy = policy;
        } else if let Some(rest) = l.strip_prefix("-A ") {
            let name = rest.split(' ').next().unwrap_or("");
            entry.1.entry(name).or_default().lines.push(l);
        }
    }
    out
}

/// Indexes tables read over netlink as [`index`] does iptables-save text.
pub(crate) fn index_kernel(tables: &[KernelTable]) -> SavedIndex<'_> {
    let mut out: SavedIndex<'_> = HashMap::new();
    for t in tables {
        let entry = out.entry(t.name).or_default();
        entry.1.reserve(t.chains.len());
        for c in &t.chains {
            entry.0.push(c.name.as_str());
            let policy = c.builtin.map_or("-", |b| b.0);
            entry
                .1
                .insert(c.name.as_str(), SavedChain { policy, lines: c.rules.lines().collect() });
        }
    }
    out
}

/// Compares the expected tables with iptables-save output; differences go to `out`.
pub(crate) fn compare_save(
    exp: &Expected,
    save_text: &str,
    family: Family,
    backend: Backend,
    out: &mut Vec<Drift>,
) -> Result<(), ApplyError> {
    compare_index(exp, &index(save_text), family, backend, out)
}

/// Compares the expected tables with the kernel's, indexed; differences go to `out`.
pub(crate) fn compare_index(
    exp: &Expected,
    saved: &SavedIndex<'_>,
    family: Family,
    backend: Backend,
    out: &mut Vec<Drift>,
) -> Result<(), ApplyError> {
    let empty = (Vec::new(), HashMap::new());
    for (t, chains) in &exp.tables {
        let (order, got) = saved.get(t).unwrap_or(&empty);
        for c in chains {
            let Some(g) = got.get(c.name.as_str()) else {
                out.push(drift(*t, &c.name, "chain missing in the kernel"));
                continue;
            };
            let mut note = None;
            if g.policy != c.policy {
                note =
                    Some(format!("policy {} in the kernel, {} in the ruleset", g.policy, c.policy));
            }
            let same_text = g.lines.len() == c.lines.len()
                && g.lines.iter().zip(&c.lines).all(|(a, b)| *a == b);
            if same_text && note.is_none() {
                continue;
            }
            let kernel =
                if same_text { c.lines.clone() } else { reparse(*t, &c.name, g, family, backend)? };
            if kernel == c.lines && note.is_none() {
                continue;
            }
            out.push(line_drift(*t, &c.name, &c.lines, &kernel, note));
        }
        let wanted: HashSet<&str> = chains.iter().map(|c| c.name.as_str()).collect();
        for name in order {
            if !wanted.contains(name) {
                out.push(drift(*t, name, "chain in the kernel but not in the ruleset"));
            }
        }
    }
    Ok(())
}

/// The kernel's lines of one chain, parsed and rendered in canonical form.
fn reparse(
    table: TableName,
    chain: &str,
    g: &SavedChain<'_>,
    family: Family,
    backend: Backend,
) -> Result<Vec<String>, ApplyError> {
    let mut text = if g.policy == "-" {
        format!("-N {chain}\n")
    } else {
        format!("-P {chain} {}\n", g.policy)
    };
    for l in &g.lines {
        text.push_str(l);
        text.push('\n');
    }
    let rs =
        parse_rules_spec(&text, table, family).map_err(|e| ApplyError::Readback(Box::new(e)))?;
    let rs = comparable(&rs, backend);
    Ok(rs
        .table(table)
        .and_then(|t| t.chain(chain))
        .map(|c| c.rules.iter().map(|r| render_rule(chain, r)).collect())
        .unwrap_or_default())
}

fn drift(table: TableName, chain: &str, note: &str) -> Drift {
    Drift {
        table,
        chain: chain.to_owned(),
        missing: vec![],
        unexpected: vec![],
        note: Some(note.to_owned()),
    }
}

fn line_drift(
    table: TableName,
    chain: &str,
    want: &[String],
    got: &[String],
    note: Option<String>,
) -> Drift {
    let (ws, gs): (HashSet<&String>, HashSet<&String>) =
        (want.iter().collect(), got.iter().collect());
    let missing: Vec<String> = want.iter().filter(|r| !gs.contains(r)).cloned().collect();
    let unexpected: Vec<String> = got.iter().filter(|r| !ws.contains(r)).cloned().collect();
    let note = note.or_else(|| {
        (missing.is_empty() && unexpected.is_empty() && want != got)
            .then(|| "rule order differs".to_owned())
    });
    Drift { table, chain: chain.to_owned(), missing, unexpected, note }
}

/// Compares some chains of a table in comparable form (`want`) with the same chains as
/// read from the kernel (`got`, comparable).
pub(crate) fn compare_chains(want: &Table, got: &Table, names: &[String], out: &mut Vec<Drift>) {
    let w: HashMap<&str, &Chain> = want.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    let g: HashMap<&str, &Chain> = got.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    let render = |c: &Chain| -> Vec<String> {
        c.rules.iter().map(|r| render_rule(c.name.as_str(), r)).collect()
    };
    for n in names {
        let Some(wc) = w.get(n.as_str()) else { continue };
        let Some(gc) = g.get(n.as_str()) else {
            out.push(drift(want.name, n, "chain missing in the kernel"));
            continue;
        };
        let note = (wc.policy != gc.policy).then(|| {
            let p = |c: &Chain| c.policy.map_or("-", |p| p.as_str());
            format!("policy {} in the kernel, {} in the ruleset", p(gc), p(wc))
        });
        if wc.rules == gc.rules && note.is_none() {
            continue;
        }
        out.push(line_drift(want.name, n, &render(wc), &render(gc), note));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textual_compare_finds_rewrites_and_ignores_equal_forms() {
        let rs = portcullis_syntax::parse_save(
            "*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A X -m comment --comment \"a b\" -j RETURN\nCOMMIT\n",
        )
        .expect("parses");
        let want = comparable(&rs, Backend::Nft);
        let exp = expected(&want, &[TableName::Filter]);
        // What iptables-save prints for it, plus a rewritten rule and a stray chain.
        let same = "# Generated\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A X -m comment --comment \"a b\" -j RETURN\nCOMMIT\n";
        let mut out = Vec::new();
        compare_save(&exp, same, Family::V4, Backend::Nft, &mut out).expect("compares");
        assert!(out.is_empty(), "{out:?}");
        let other = same
            .replace("--dport 22", "--dport 23")
            .replace(":X - [0:0]\n", ":X - [0:0]\n:Y - [0:0]\n");
        compare_save(&exp, &other, Family::V4, Backend::Nft, &mut out).expect("compares");
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].missing, vec!["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT".to_owned()]);
        assert_eq!(
            out[0].unexpected,
            vec!["-A INPUT -p tcp -m tcp --dport 23 -j ACCEPT".to_owned()]
        );
        assert_eq!(out[1].chain, "Y");
    }
}
