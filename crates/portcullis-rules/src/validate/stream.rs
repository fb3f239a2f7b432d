//! Validation in one pass, rule by rule, keeping only the chain graph: what
//! [`validate`](super::validate) decides, for inputs too large to hold as a model.
//!
//! Each rule is checked on its own as soon as it is read ([`rule_facts`], which may run on
//! any thread); what depends on the rest of the table (the chains a jump names, the hooks
//! a user chain is reached from, jump loops) is kept as a few integers per rule in a
//! [`TableCheck`] and decided at the end of the table. The verdict is the same as
//! `validate`'s (a differential test holds them together); the diagnostics are not
//! produced: when a table is invalid, build the model and call `validate` for them.

use super::{ALL_HOOKS, Cell, Ctx, FastMap, Hooks, THIRD_PARTY_TARGETS, check_rule, hook_bit};
use crate::Family;
use crate::names::{TableName, is_target_name};
use crate::rule::{Action, Rule};

/// What checking one rule on its own found (see [`rule_facts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleFacts {
    /// A check that depends on the rule alone failed.
    invalid: bool,
    /// The hooks the rule may run from (every hook when it has no such constraint).
    may_run: u8,
    /// Whether the rule's chain reference (if any) is a goto.
    goto: bool,
}

impl RuleFacts {
    /// Whether a check that depends on the rule alone failed.
    pub fn is_invalid(&self) -> bool {
        self.invalid
    }
}

/// Checks `rule`, appended to `chain` of `table`, for everything that does not depend on
/// the table's other chains, and returns what does: the facts, and the name of the chain
/// the rule jumps or goes to (to hand to [`TableCheck::append`] with them).
///
/// ```
/// use portcullis_rules::{Action, Family, Rule, TableName, Target, rule_facts};
/// let rule = Rule { action: Some(Action::Jump(Target::new("MINE"))), ..Rule::default() };
/// let (facts, jump) = rule_facts(TableName::Filter, Family::V4, "INPUT", &rule);
/// assert!(!facts.is_invalid());
/// assert_eq!(jump, Some("MINE"));
/// ```
pub fn rule_facts<'r>(
    table: TableName,
    family: Family,
    chain: &str,
    rule: &'r Rule,
) -> (RuleFacts, Option<&'r str>) {
    let builtin = table.is_builtin(chain);
    let hooks =
        if builtin { Hooks::Known(hook_bit(chain)) } else { Hooks::Deferred(Cell::new(ALL_HOOKS)) };
    let ctx = Ctx { table, chains: None, family, chain, builtin, hooks };
    let mut errors = Vec::new();
    check_rule(&ctx, rule, &mut errors);
    let may_run = match &ctx.hooks {
        Hooks::Deferred(m) => m.get(),
        Hooks::Known(_) => ALL_HOOKS,
    };
    let (jump, goto) = match &rule.action {
        Some(Action::Goto(c)) => (Some(c.as_str()), true),
        Some(Action::Jump(t)) if !is_target_name(&t.name) => (Some(t.name.as_str()), false),
        _ => (None, false),
    };
    (RuleFacts { invalid: !errors.is_empty(), may_run, goto }, jump)
}

/// A name of at most [`Inline::MAX`] bytes, stored in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Inline {
    len: u8,
    bytes: [u8; Inline::MAX],
}

impl Inline {
    /// Room for every name the kernel takes (`ChainName::MAX_LEN`, 28) and a little more.
    const MAX: usize = 31;

    fn new(name: &str) -> Option<Self> {
        let len = u8::try_from(name.len()).ok().filter(|&l| usize::from(l) <= Self::MAX)?;
        let mut bytes = [0u8; Self::MAX];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Self { len, bytes })
    }

    fn as_str(&self) -> &str {
        // Copied from a `&str` whole, so always UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// What a name of the table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only named by a jump so far.
    Unknown,
    Builtin,
    User,
}

/// One table's chain graph, built rule by rule (see the module's documentation).
///
/// ```
/// use portcullis_rules::{Family, Rule, TableCheck, TableName, rule_facts};
/// let mut t = TableCheck::new(TableName::Filter);
/// assert!(t.declare("INPUT", true));
/// let rule = Rule::default();
/// let (facts, jump) = rule_facts(TableName::Filter, Family::V4, "INPUT", &rule);
/// assert!(t.append("INPUT", jump, facts));
/// assert_eq!(t.finish(), Some(1));
/// ```
#[derive(Debug)]
pub struct TableCheck {
    table: TableName,
    /// Chain ids by name: names of up to [`Inline::MAX`] bytes (every valid chain name)
    /// held in the table itself, so a lookup touches no other memory; longer ones apart.
    ids: FastMap<Inline, u32>,
    long_ids: FastMap<String, u32>,
    kinds: Vec<Kind>,
    /// (from chain, to name, goto).
    edges: Vec<(u32, u32, bool)>,
    /// (user chain, hooks its rule may run from), for constrained rules only.
    may_run: Vec<(u32, u8)>,
    invalid: bool,
    rules: usize,
    /// The chain of the last rule appended (the buffer reused from run to run), and its
    /// id: rules come in runs of one chain.
    last_name: String,
    last_id: Option<u32>,
}

impl TableCheck {
    /// An empty table.
    pub fn new(table: TableName) -> Self {
        Self {
            table,
            ids: FastMap::default(),
            long_ids: FastMap::default(),
            kinds: Vec::new(),
            edges: Vec::new(),
            may_run: Vec::new(),
            invalid: false,
            rules: 0,
            last_name: String::new(),
            last_id: None,
        }
    }

    fn id(&mut self, name: &str) -> u32 {
        let next = u32::try_from(self.kinds.len()).unwrap_or(u32::MAX);
        let id = match Inline::new(name) {
            Some(k) => *self.ids.entry(k).or_insert(next),
            None => match self.long_ids.get(name) {
                Some(&id) => id,
                None => *self.long_ids.entry(name.to_owned()).or_insert(next),
            },
        };
        if id == next {
            self.kinds.push(Kind::Unknown);
        }
        id
    }

    /// Declares a chain (a chain line; `builtin` when it is a builtin chain of the table,
    /// declared again or not). Returns `false` for a user chain declared twice.
    pub fn declare(&mut self, name: &str, builtin: bool) -> bool {
        let id = self.id(name) as usize;
        match (self.kinds[id], builtin) {
            (Kind::User, false) => return false,
            (_, true) => self.kinds[id] = Kind::Builtin,
            (_, false) => self.kinds[id] = Kind::User,
        }
        true
    }

    /// Adds a rule appended to `chain`. Returns `false` when `chain` is neither declared
    /// nor a builtin chain of the table (iptables-restore refuses the line).
    /// `jump` is the name [`rule_facts`] returned with `facts`.
    pub fn append(&mut self, chain: &str, jump: Option<&str>, facts: RuleFacts) -> bool {
        let from = match self.last_id {
            Some(id) if self.last_name == chain => id,
            _ => {
                let id = self.id(chain);
                self.last_name.clear();
                self.last_name.push_str(chain);
                self.last_id = Some(id);
                id
            }
        };
        match self.kinds[from as usize] {
            Kind::Unknown if self.table.is_builtin(chain) => {
                self.kinds[from as usize] = Kind::Builtin;
            }
            Kind::Unknown => return false,
            _ => {}
        }
        self.rules += 1;
        self.invalid |= facts.invalid;
        if facts.may_run != ALL_HOOKS {
            self.may_run.push((from, facts.may_run));
        }
        if let Some(name) = jump {
            let to = self.id(name);
            self.edges.push((from, to, facts.goto));
        }
        true
    }

    /// Whether the table is valid, with its number of rules: `Some(rules)` exactly when
    /// [`validate`](super::validate) finds no error in it.
    pub fn finish(mut self) -> Option<usize> {
        if self.invalid {
            return None;
        }
        let mut names: Vec<&str> = vec![""; self.kinds.len()];
        for (name, &id) in &self.ids {
            names[id as usize] = name.as_str();
        }
        for (name, &id) in &self.long_ids {
            names[id as usize] = name;
        }
        // Jumps: to a user chain, or (a jump, not a goto) to a third-party target.
        let n = self.kinds.len();
        let mut out_deg = vec![0u32; n + 1];
        for &(from, to, goto) in &self.edges {
            match self.kinds[to as usize] {
                Kind::User => out_deg[from as usize] += 1,
                Kind::Builtin => return None,
                Kind::Unknown if !goto && THIRD_PARTY_TARGETS.contains(&names[to as usize]) => {}
                Kind::Unknown => return None,
            }
        }
        // Adjacency lists of the user-chain edges (compressed rows).
        let mut start = vec![0u32; n + 1];
        for i in 0..n {
            start[i + 1] = start[i] + out_deg[i];
        }
        let mut fill = start.clone();
        let mut adj = vec![0u32; start[n] as usize];
        for &(from, to, _) in &self.edges {
            if self.kinds[to as usize] == Kind::User {
                adj[fill[from as usize] as usize] = to;
                fill[from as usize] += 1;
            }
        }
        self.edges = Vec::new();
        let next = |c: usize| &adj[start[c] as usize..start[c + 1] as usize];
        // The hooks each user chain is reached from, and loops reachable from a builtin.
        let mut hooks = vec![0u8; n];
        let builtins: Vec<usize> = (0..n).filter(|&i| self.kinds[i] == Kind::Builtin).collect();
        let mut color = vec![0u8; n]; // 0 white, 1 on the stack, 2 done
        for &b in &builtins {
            let bit = hook_bit(names[b]);
            let mut seen = vec![false; n];
            let mut stack = vec![b];
            while let Some(c) = stack.pop() {
                for &t in next(c) {
                    if !seen[t as usize] {
                        seen[t as usize] = true;
                        hooks[t as usize] |= bit;
                        stack.push(t as usize);
                    }
                }
            }
            if color[b] != 0 {
                continue;
            }
            let mut dfs: Vec<(usize, usize)> = vec![(b, 0)];
            color[b] = 1;
            while let Some(&mut (c, ref mut k)) = dfs.last_mut() {
                let Some(&t) = next(c).get(*k) else {
                    color[c] = 2;
                    dfs.pop();
                    continue;
                };
                *k += 1;
                match color[t as usize] {
                    0 => {
                        color[t as usize] = 1;
                        dfs.push((t as usize, 0));
                    }
                    1 => return None,
                    _ => {}
                }
            }
        }
        let placed = self.may_run.iter().all(|&(c, may)| hooks[c as usize] & !may == 0);
        placed.then_some(self.rules)
    }
}
