//! Rulesets, tables and chains.

use crate::Family;
use crate::names::{ChainName, Policy, TableName, hook_rank};
use crate::rule::{Counters, Origin, Rule};

/// A whole ruleset of one family: what `iptables-save` prints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Ruleset {
    /// IPv4 or IPv6.
    pub family: Family,
    /// The tables, in the order they were written.
    pub tables: Vec<Table>,
}

impl Ruleset {
    /// An empty ruleset.
    pub fn new(family: Family) -> Self {
        Self { family, tables: Vec::new() }
    }

    /// The table called `name`.
    pub fn table(&self, name: TableName) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The table called `name`, mutable.
    pub fn table_mut(&mut self, name: TableName) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.name == name)
    }

    /// The table called `name`, created with its builtin chains (policy ACCEPT) when absent.
    pub fn table_or_default(&mut self, name: TableName) -> &mut Table {
        let idx = match self.tables.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                self.tables.push(Table::with_builtins(name));
                self.tables.len() - 1
            }
        };
        &mut self.tables[idx]
    }

    /// The number of rules in every table.
    pub fn rule_count(&self) -> usize {
        self.tables.iter().flat_map(|t| &t.chains).map(|c| c.rules.len()).sum()
    }
}

/// One table: its chains with their rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Table {
    /// Which table.
    pub name: TableName,
    /// Its chains, builtin and user, in the order they were declared.
    pub chains: Vec<Chain>,
}

impl Table {
    /// An empty table with no chains.
    pub fn new(name: TableName) -> Self {
        Self { name, chains: Vec::new() }
    }

    /// A table holding its builtin chains, each with policy ACCEPT and no rules: what a
    /// freshly loaded table looks like.
    pub fn with_builtins(name: TableName) -> Self {
        let chains =
            name.builtin_chains().iter().map(|c| Chain::builtin(c, Policy::Accept)).collect();
        Self { name, chains }
    }

    /// Adds the builtin chains the table lacks (policy ACCEPT), as the kernel always has
    /// them and iptables-save always prints them.
    pub fn complete_builtins(&mut self) {
        for name in self.name.builtin_chains() {
            if !self.has_chain(name) {
                self.chains.push(Chain::builtin(name, Policy::Accept));
            }
        }
    }

    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name.as_str() == name)
    }

    /// The chain called `name`, mutable.
    pub fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name.as_str() == name)
    }

    /// Whether `name` is a chain of this table (so `-j name` is a jump).
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|c| c.name.as_str() == name)
    }

    /// Sorts the chains as iptables-save prints them: builtins in hook order, then user
    /// chains by name (byte order).
    pub fn sort_chains(&mut self) {
        self.chains.sort_by(|a, b| chain_order(a).cmp(&chain_order(b)));
    }

    /// How many rules jump or go to `chain` (what `iptables -L` calls references).
    pub fn references(&self, chain: &str) -> usize {
        self.chains.iter().flat_map(|c| &c.rules).filter(|r| r.targets_chain(chain)).count()
    }
}

fn chain_order(c: &Chain) -> (u8, &[u8]) {
    match (c.policy.is_some(), hook_rank(c.name.as_str())) {
        (true, Some(rank)) => (rank, b""),
        _ => (u8::MAX, c.name.as_str().as_bytes()),
    }
}

/// A chain. Builtin chains have a policy; user chains have none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Chain {
    /// Its name.
    pub name: ChainName,
    /// The policy of a builtin chain; `None` for a user chain.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub policy: Option<Policy>,
    /// The chain-line counters (`[p:b]`), when given.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub counters: Option<Counters>,
    /// The rules in order.
    #[cfg_attr(feature = "serde", serde(default))]
    pub rules: Vec<Rule>,
    /// Where the chain was declared.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub origin: Origin,
}

impl Chain {
    /// A builtin chain with `policy`. The name must be a builtin chain name.
    pub fn builtin(name: &str, policy: Policy) -> Self {
        Self {
            name: ChainName(name.to_owned()),
            policy: Some(policy),
            counters: None,
            rules: Vec::new(),
            origin: Origin::default(),
        }
    }

    /// An empty user chain.
    pub fn user(name: ChainName) -> Self {
        Self { name, policy: None, counters: None, rules: Vec::new(), origin: Origin::default() }
    }

    /// Whether this is a builtin chain (it has a policy).
    pub fn is_builtin(&self) -> bool {
        self.policy.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Target};

    #[test]
    fn references_count_only_jumps_and_gotos_to_that_chain() {
        let mut t = Table::with_builtins(TableName::Filter);
        for name in ["A", "B"] {
            t.chains.push(Chain::user(ChainName::new(name).expect("valid")));
        }
        let goto_b = Rule {
            action: Some(Action::Goto(ChainName::new("B").expect("valid"))),
            ..Rule::default()
        };
        let jump_a = Rule { action: Some(Action::Jump(Target::new("A"))), ..Rule::default() };
        t.chains[0].rules = vec![goto_b.clone(), jump_a, goto_b];
        assert_eq!(t.references("A"), 1);
        assert_eq!(t.references("B"), 2);
        assert_eq!(t.references("INPUT"), 0);
    }
}
