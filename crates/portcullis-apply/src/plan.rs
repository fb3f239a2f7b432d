//! What an apply will do, table by table, and the exact iptables-restore input for it.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

use portcullis_rules::{Backend, Chain, Ruleset, Table, TableName, canonicalize};

use crate::cache::{ChainPrint, Fingerprint, Want, WantChain, canon_want};

/// How the whole input is fed to iptables-restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every table of the ruleset is flushed and reloaded.
    Full,
    /// `--noflush`: only the chains that changed are rewritten (kube-proxy's pattern).
    Incremental,
}

/// What happens to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAction {
    /// Flush the table and load it whole.
    Replace,
    /// Rewrite some chains only (`--noflush`).
    Patch {
        /// Builtin chains whose policy changes, with the new policy.
        policies: Vec<String>,
        /// Chains whose rules are rewritten (builtin: `-F` then the rules; user: the
        /// chain line, which flushes it, then the rules).
        rewrite: Vec<String>,
        /// User chains created.
        create: Vec<String>,
        /// User chains deleted (flushed, then `-X`).
        delete: Vec<String>,
    },
    /// Nothing to do.
    Unchanged,
}

/// The plan of an apply: a mode and an action per table of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Full or incremental.
    pub mode: Mode,
    /// Each table of the new ruleset, in its order, with what happens to it.
    pub tables: Vec<(TableName, TableAction)>,
}

/// Where a line of the restore input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineSource {
    /// `*table`.
    Header(TableName),
    /// A chain line, declared at this line of the user's file (0 when unknown).
    ChainLine(TableName, u32),
    /// A rule (or `-F`/`-X` command) from this line of the user's file (0 when unknown).
    Rule(TableName, u32),
    /// `COMMIT`.
    Commit(TableName),
}

impl LineSource {
    /// The table the line belongs to.
    pub fn table(self) -> TableName {
        match self {
            Self::Header(t) | Self::ChainLine(t, _) | Self::Rule(t, _) | Self::Commit(t) => t,
        }
    }
}

/// The text fed to iptables-restore, with the origin of each of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInput {
    /// The text.
    pub text: String,
    /// `sources[i]` is where line `i + 1` comes from.
    pub sources: Vec<LineSource>,
    /// Whether it must be fed with `--noflush`.
    pub noflush: bool,
}

impl RestoreInput {
    /// Where 1-based input line `line` comes from.
    pub fn source(&self, line: u32) -> Option<LineSource> {
        self.sources.get((line as usize).checked_sub(1)?).copied()
    }

    /// The tables whose block ends before input line `line`: already committed when a
    /// failure is reported at `line`.
    pub fn committed_before(&self, line: u32) -> Vec<TableName> {
        self.sources
            .iter()
            .take((line as usize).saturating_sub(1))
            .filter_map(|s| match s {
                LineSource::Commit(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    /// The tables the input touches, in order.
    pub fn tables(&self) -> Vec<TableName> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                LineSource::Header(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    /// The text of 1-based input line `line`.
    pub fn line_text(&self, line: u32) -> Option<&str> {
        self.text.lines().nth((line as usize).checked_sub(1)?)
    }

    fn push(&mut self, text: &str, src: LineSource) {
        self.text.push_str(text);
        self.text.push('\n');
        self.sources.push(src);
    }
}

/// The ruleset in the form two rulesets that the kernel holds alike share: canonical for
/// `backend`, every table with its builtin chains, chains in iptables-save order, no
/// counters.
pub fn comparable(rs: &Ruleset, backend: Backend) -> Ruleset {
    let mut c = canonicalize(rs, backend);
    for t in &mut c.tables {
        t.complete_builtins();
        t.sort_chains();
        for ch in &mut t.chains {
            ch.counters = None;
            for r in &mut ch.rules {
                r.counters = None;
            }
        }
    }
    c
}

impl Plan {
    /// Flush and reload every table of `desired`. The table with the most rules goes
    /// last: a table that fails leaves only the tables before it to roll back, so only
    /// those need a snapshot, and the big one never does.
    pub fn full(desired: &Ruleset) -> Self {
        let mut tables: Vec<(TableName, TableAction)> =
            desired.tables.iter().map(|t| (t.name, TableAction::Replace)).collect();
        let count = |n: TableName| {
            desired.table(n).map_or(0, |t| t.chains.iter().map(|c| c.rules.len()).sum::<usize>())
        };
        if let Some(big) = (0..tables.len()).max_by_key(|&i| (count(tables[i].0), i)) {
            let t = tables.remove(big);
            tables.push(t);
        }
        Self { mode: Mode::Full, tables }
    }

    /// Rewrite only what differs between `current` (what the kernel holds, as read back)
    /// and `desired`, both compared in canonical form for `backend`.
    pub fn incremental(current: &Ruleset, desired: &Ruleset, backend: Backend) -> Self {
        let cur = Fingerprint::of(&comparable(current, backend));
        Self::incremental_from(&cur, &canon_want(&comparable(desired, backend)), false)
    }

    /// The incremental plan from a fingerprint of the current state to `want`, comparing
    /// raw hashes (`by_raw`, against portcullis' own record) or canonical ones.
    pub(crate) fn incremental_from(cur: &Fingerprint, want: &Want, by_raw: bool) -> Self {
        let tables = want
            .iter()
            .map(|(t, chains)| {
                let action = match cur.tables.get(t) {
                    None => TableAction::Replace,
                    Some(c) => diff_table(c, chains, by_raw),
                };
                (*t, action)
            })
            .collect();
        Self { mode: Mode::Incremental, tables }
    }

    /// Whether the plan changes nothing.
    pub fn is_noop(&self) -> bool {
        self.tables.iter().all(|(_, a)| *a == TableAction::Unchanged)
    }

    /// The iptables-restore input that carries the plan out for `desired` (the ruleset as
    /// the user wrote it, so every line keeps its origin).
    pub fn restore_input(&self, desired: &Ruleset) -> RestoreInput {
        let mut out = RestoreInput {
            text: String::with_capacity(desired.rule_count() * 96 + 256),
            sources: Vec::with_capacity(desired.rule_count() + 64),
            noflush: self.mode == Mode::Incremental,
        };
        for (name, action) in &self.tables {
            let Some(table) = desired.table(*name) else { continue };
            match action {
                TableAction::Unchanged => {}
                TableAction::Replace => {
                    whole_table(&mut out, table, self.mode == Mode::Incremental);
                }
                TableAction::Patch { policies, rewrite, create, delete } => {
                    patch_table(&mut out, table, policies, rewrite, create, delete);
                }
            }
        }
        out
    }
}

/// The builtin chains of `table` the ruleset leaves out (they load as ACCEPT, empty).
fn missing_builtins(table: &Table) -> Vec<&'static str> {
    table.name.builtin_chains().iter().copied().filter(|b| !table.has_chain(b)).collect()
}

fn chain_line(c: &Chain) -> String {
    format!(":{} {} [0:0]", c.name, c.policy.map_or("-", |p| p.as_str()))
}

fn push_rules(out: &mut RestoreInput, t: TableName, c: &Chain) {
    for r in &c.rules {
        let line = portcullis_syntax::render_rule(c.name.as_str(), r);
        out.push(&line, LineSource::Rule(t, r.origin.line));
    }
}

fn whole_table(out: &mut RestoreInput, table: &Table, noflush: bool) {
    let t = table.name;
    let missing = missing_builtins(table);
    out.push(&format!("*{t}"), LineSource::Header(t));
    for c in &table.chains {
        out.push(&chain_line(c), LineSource::ChainLine(t, c.origin.line));
    }
    for b in &missing {
        out.push(&format!(":{b} ACCEPT [0:0]"), LineSource::ChainLine(t, 0));
    }
    if noflush {
        // With --noflush a builtin chain line does not flush the chain.
        for b in t.builtin_chains() {
            out.push(&format!("-F {b}"), LineSource::Rule(t, 0));
        }
    }
    for c in &table.chains {
        push_rules(out, t, c);
    }
    out.push("COMMIT", LineSource::Commit(t));
}

fn patch_table(
    out: &mut RestoreInput,
    table: &Table,
    policies: &[String],
    rewrite: &[String],
    create: &[String],
    delete: &[String],
) {
    let t = table.name;
    let chains: HashMap<&str, &Chain> = table.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    out.push(&format!("*{t}"), LineSource::Header(t));
    // Chain lines: new policies, and every user chain written (which flushes it).
    for name in policies {
        match chains.get(name.as_str()) {
            Some(c) => out.push(&chain_line(c), LineSource::ChainLine(t, c.origin.line)),
            None => out.push(&format!(":{name} ACCEPT [0:0]"), LineSource::ChainLine(t, 0)),
        }
    }
    for name in rewrite.iter().chain(create) {
        if let Some(c) = chains.get(name.as_str()).filter(|c| !c.is_builtin()) {
            out.push(&chain_line(c), LineSource::ChainLine(t, c.origin.line));
        }
    }
    for name in delete {
        out.push(&format!(":{name} - [0:0]"), LineSource::ChainLine(t, 0));
    }
    for name in rewrite.iter().chain(create) {
        let c = chains.get(name.as_str());
        if c.is_none_or(|c| c.is_builtin()) {
            let line = c.map_or(0, |c| c.origin.line);
            out.push(&format!("-F {name}"), LineSource::Rule(t, line));
        }
        if let Some(c) = c {
            push_rules(out, t, c);
        }
    }
    for name in delete {
        out.push(&format!("-X {name}"), LineSource::Rule(t, 0));
    }
    out.push("COMMIT", LineSource::Commit(t));
}

fn diff_table(cur: &HashMap<String, ChainPrint>, want: &[WantChain], by_raw: bool) -> TableAction {
    let (mut policies, mut rewrite, mut create, mut delete) = (vec![], vec![], vec![], vec![]);
    for c in want {
        match cur.get(&c.name) {
            None => create.push(c.name.clone()),
            Some(old) => {
                if c.builtin && old.policy != c.policy {
                    policies.push(c.name.clone());
                }
                let old_key = if by_raw { old.raw } else { old.canon };
                if old_key != c.key {
                    rewrite.push(c.name.clone());
                }
            }
        }
    }
    let wanted: HashSet<&str> = want.iter().map(|c| c.name.as_str()).collect();
    for (name, old) in cur {
        if old.policy == "-" && !wanted.contains(name.as_str()) {
            delete.push(name.clone());
        }
    }
    delete.sort();
    if policies.is_empty() && rewrite.is_empty() && create.is_empty() && delete.is_empty() {
        TableAction::Unchanged
    } else {
        TableAction::Patch { policies, rewrite, create, delete }
    }
}

fn list(out: &mut String, what: &str, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    let more =
        if names.len() > 8 { format!(" and {} more", names.len() - 8) } else { String::new() };
    let _ = write!(out, "\n    {what} ({}): {}{more}", names.len(), shown.join(" "));
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::Full => writeln!(f, "plan: full apply (each table flushed and loaded whole)")?,
            Mode::Incremental => {
                writeln!(f, "plan: incremental apply (--noflush, changed chains only)")?
            }
        }
        for (t, a) in &self.tables {
            match a {
                TableAction::Replace => writeln!(f, "  table {t}: replace")?,
                TableAction::Unchanged => writeln!(f, "  table {t}: unchanged")?,
                TableAction::Patch { policies, rewrite, create, delete } => {
                    let mut s = String::new();
                    list(&mut s, "set policy", policies);
                    list(&mut s, "rewrite", rewrite);
                    list(&mut s, "create", create);
                    list(&mut s, "delete", delete);
                    writeln!(f, "  table {t}: patch{s}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(t: &str) -> Ruleset {
        portcullis_syntax::parse_save(t).expect("parses")
    }

    #[test]
    fn incremental_touches_changed_chains_only() {
        let cur = rs(
            "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n:OLD - [0:0]\n-A INPUT -j A\n-A A -p tcp --dport 22 -j ACCEPT\n-A B -j DROP\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
        );
        let want = rs(
            "*filter\n:INPUT DROP [0:0]\n:A - [0:0]\n:B - [0:0]\n:NEW - [0:0]\n-A INPUT -j A\n-A A -p tcp -m tcp --dport 22 -j ACCEPT\n-A B -j ACCEPT\n-A NEW -j RETURN\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
        );
        let plan = Plan::incremental(&cur, &want, Backend::Nft);
        assert_eq!(
            plan.tables[0].1,
            TableAction::Patch {
                policies: vec!["INPUT".into()],
                rewrite: vec!["B".into()],
                create: vec!["NEW".into()],
                delete: vec!["OLD".into()],
            }
        );
        assert_eq!(plan.tables[1].1, TableAction::Unchanged);
        assert_eq!(plan.tables[2].1, TableAction::Replace);
        let input = plan.restore_input(&want);
        let expected = "*filter\n:INPUT DROP [0:0]\n:B - [0:0]\n:NEW - [0:0]\n:OLD - [0:0]\n-A B -j ACCEPT\n-A NEW -j RETURN\n-X OLD\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-F PREROUTING\n-F OUTPUT\nCOMMIT\n";
        assert_eq!(input.text, expected);
        assert!(input.noflush);
        assert_eq!(input.source(6), Some(LineSource::Rule(TableName::Filter, 8)));
        assert_eq!(input.committed_before(10), vec![TableName::Filter]);
        assert!(plan.to_string().contains("delete (1): OLD"), "{plan}");
    }

    #[test]
    fn full_input_keeps_origins() {
        let want =
            rs("# c\n*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n");
        let input = Plan::full(&want).restore_input(&want);
        assert!(
            input.text.starts_with("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n"),
            "{}",
            input.text
        );
        let rule_line =
            input.text.lines().position(|l| l.starts_with("-A")).expect("rule") as u32 + 1;
        assert_eq!(input.source(rule_line), Some(LineSource::Rule(TableName::Filter, 4)));
        assert!(!input.noflush);
    }
}
