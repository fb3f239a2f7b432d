//! The commands of iptables and iptables-restore (`-A -I -D -R -N -X -F -Z -P -E`), and
//! what they do to a ruleset.

use crate::error::{Location, ModelError, ModelErrorKind};
use crate::names::{ChainName, Policy, TableName};
use crate::rule::{Counters, Rule};
use crate::ruleset::{Chain, Ruleset};

/// Which rule `-D` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSelector {
    /// By 1-based position.
    Index(usize),
    /// The first rule equal to this one.
    Spec(Box<Rule>),
}

/// One command, as a line of a restore file or an iptables invocation holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `-A CHAIN rule`.
    Append {
        /// The chain.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// `-I CHAIN [N] rule` (N is 1-based, default 1).
    Insert {
        /// The chain.
        chain: String,
        /// Where, 1-based.
        index: usize,
        /// The rule.
        rule: Rule,
    },
    /// `-R CHAIN N rule`.
    Replace {
        /// The chain.
        chain: String,
        /// Which rule, 1-based.
        index: usize,
        /// The new rule.
        rule: Rule,
    },
    /// `-D CHAIN N` or `-D CHAIN rule`.
    Delete {
        /// The chain.
        chain: String,
        /// Which rule.
        which: RuleSelector,
    },
    /// `-N CHAIN`.
    NewChain(ChainName),
    /// `-X [CHAIN]`: delete one user chain, or every user chain.
    DeleteChain(Option<String>),
    /// `-F [CHAIN]`: flush one chain, or the table.
    Flush(Option<String>),
    /// `-Z [CHAIN]`: zero counters.
    Zero(Option<String>),
    /// `-P CHAIN POLICY`, or a chain line of a restore file for a builtin chain.
    Policy {
        /// The builtin chain.
        chain: String,
        /// The policy.
        policy: Policy,
        /// Counters set with it, if any.
        counters: Option<Counters>,
    },
    /// `-E OLD NEW`.
    Rename {
        /// The chain to rename.
        old: String,
        /// Its new name.
        new: ChainName,
    },
}

impl Ruleset {
    /// Runs `cmd` on `table` as iptables would, creating the table with its builtin chains
    /// if needed.
    pub fn execute(&mut self, table: TableName, cmd: Command) -> Result<(), ModelError> {
        let loc = |chain: Option<&str>| Location {
            table: Some(table),
            chain: chain.map(str::to_owned),
            ..Location::default()
        };
        let canon = crate::canon::CanonOptions { family: Some(self.family), ..Default::default() };
        let t = self.table_or_default(table);
        let chain_mut = |t: &mut crate::Table, name: &str| -> Result<usize, ModelError> {
            t.chains.iter().position(|c| c.name.as_str() == name).ok_or_else(|| {
                ModelError::new(ModelErrorKind::UndefinedChain(name.to_owned())).at(loc(Some(name)))
            })
        };
        match cmd {
            Command::Append { chain, rule } => {
                let i = chain_mut(t, &chain)?;
                t.chains[i].rules.push(rule);
            }
            Command::Insert { chain, index, rule } => {
                let i = chain_mut(t, &chain)?;
                let rules = &mut t.chains[i].rules;
                if index == 0 || index > rules.len() + 1 {
                    return Err(no_such_rule(&chain, index).at(loc(Some(&chain))));
                }
                rules.insert(index - 1, rule);
            }
            Command::Replace { chain, index, rule } => {
                let i = chain_mut(t, &chain)?;
                let rules = &mut t.chains[i].rules;
                match rules.get_mut(index.wrapping_sub(1)) {
                    Some(slot) => *slot = rule,
                    None => return Err(no_such_rule(&chain, index).at(loc(Some(&chain)))),
                }
            }
            Command::Delete { chain, which } => {
                let i = chain_mut(t, &chain)?;
                let rules = &mut t.chains[i].rules;
                let pos = match which {
                    RuleSelector::Index(n) if n >= 1 && n <= rules.len() => n - 1,
                    RuleSelector::Index(n) => {
                        return Err(no_such_rule(&chain, n).at(loc(Some(&chain))));
                    }
                    RuleSelector::Spec(rule) => {
                        let wanted = crate::canon::canonicalize_rule(&rule, canon);
                        rules
                            .iter()
                            .position(|r| crate::canon::canonicalize_rule(r, canon) == wanted)
                            .ok_or_else(|| {
                                ModelError::new(ModelErrorKind::RuleNotFound(chain.clone()))
                                    .at(loc(Some(&chain)))
                            })?
                    }
                };
                rules.remove(pos);
            }
            Command::NewChain(name) => {
                // A builtin chain exists in the kernel whether or not the model lists it
                // yet (iptables: "Chain already exists").
                if t.has_chain(name.as_str()) || table.is_builtin(name.as_str()) {
                    return Err(ModelError::new(ModelErrorKind::ChainExists(name.to_string()))
                        .at(loc(Some(name.as_str()))));
                }
                t.chains.push(Chain::user(name));
            }
            Command::DeleteChain(Some(name)) => {
                let i = chain_mut(t, &name)?;
                if t.chains[i].is_builtin() {
                    return Err(ModelError::new(ModelErrorKind::ChainInUse(name.clone()))
                        .at(loc(Some(&name))));
                }
                if !t.chains[i].rules.is_empty() || t.references(&name) > 0 {
                    return Err(ModelError::new(ModelErrorKind::ChainInUse(name.clone()))
                        .at(loc(Some(&name))));
                }
                t.chains.remove(i);
            }
            Command::DeleteChain(None) => {
                let names: Vec<String> = t
                    .chains
                    .iter()
                    .filter(|c| !c.is_builtin())
                    .map(|c| c.name.to_string())
                    .collect();
                for name in &names {
                    if t.references(name) > 0 {
                        // iptables -X refuses a referenced chain unless its referrer goes too.
                        let referrer_is_user = t.chains.iter().any(|c| {
                            !c.is_builtin() && c.rules.iter().any(|r| r.targets_chain(name))
                        });
                        let referenced_by_builtin = t.chains.iter().any(|c| {
                            c.is_builtin() && c.rules.iter().any(|r| r.targets_chain(name))
                        });
                        if referenced_by_builtin || !referrer_is_user {
                            return Err(ModelError::new(ModelErrorKind::ChainInUse(name.clone()))
                                .at(loc(Some(name))));
                        }
                    }
                }
                t.chains.retain(|c| c.is_builtin());
            }
            Command::Flush(Some(name)) => {
                let i = chain_mut(t, &name)?;
                t.chains[i].rules.clear();
            }
            Command::Flush(None) => t.chains.iter_mut().for_each(|c| c.rules.clear()),
            Command::Zero(chain) => {
                for c in t
                    .chains
                    .iter_mut()
                    .filter(|c| chain.as_deref().is_none_or(|n| c.name.as_str() == n))
                {
                    if c.counters.is_some() {
                        c.counters = Some(Counters::default());
                    }
                    for r in &mut c.rules {
                        if r.counters.is_some() {
                            r.counters = Some(Counters::default());
                        }
                    }
                }
            }
            Command::Policy { chain, policy, counters } => {
                if !table.is_builtin(&chain) {
                    return Err(ModelError::new(ModelErrorKind::InvalidPolicy {
                        chain: chain.clone(),
                        policy: policy.as_str().to_owned(),
                    })
                    .at(loc(Some(&chain))));
                }
                let i = chain_mut(t, &chain)?;
                t.chains[i].policy = Some(policy);
                if counters.is_some() {
                    t.chains[i].counters = counters;
                }
            }
            Command::Rename { old, new } => {
                if t.has_chain(new.as_str()) {
                    return Err(ModelError::new(ModelErrorKind::ChainExists(new.to_string()))
                        .at(loc(Some(new.as_str()))));
                }
                let i = chain_mut(t, &old)?;
                if t.chains[i].is_builtin() {
                    return Err(ModelError::new(ModelErrorKind::NotBuiltin(old.clone()))
                        .at(loc(Some(&old))));
                }
                t.chains[i].name = new.clone();
                for c in &mut t.chains {
                    for r in &mut c.rules {
                        match &mut r.action {
                            Some(crate::Action::Goto(g)) if g.as_str() == old => *g = new.clone(),
                            Some(crate::Action::Jump(j)) if j.name == old => {
                                j.name = new.to_string();
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn no_such_rule(chain: &str, index: usize) -> ModelError {
    ModelError::new(ModelErrorKind::NoSuchRule { chain: chain.to_owned(), index })
}
