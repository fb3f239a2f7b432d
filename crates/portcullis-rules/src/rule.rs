//! Rules: base fields, matches, a target; and the generic module layer that holds any
//! match or target with its ordered, negatable options.

use std::hash::{Hash, Hasher};

use crate::addr::{Address, Interface, Protocol};
use crate::names::ChainName;

/// Packet and byte counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// A value that may be negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Negatable<T> {
    /// Whether the value is preceded by `!`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "std::ops::Not::not"))]
    pub negated: bool,
    /// The value.
    pub value: T,
}

impl<T> Negatable<T> {
    /// A value without `!`.
    pub fn plain(value: T) -> Self {
        Self { negated: false, value }
    }

    /// A value with `!`.
    pub fn not(value: T) -> Self {
        Self { negated: true, value }
    }
}

/// Where a rule or chain came from in its source text. It never takes part in equality
/// or hashing: two rules are the same rule wherever they were written.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Origin {
    /// The 1-based line of the source text, 0 when the rule was built in memory.
    pub line: u32,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Origin {}

impl Hash for Origin {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// One option of a match or target module, in the order written: `! --dport 22` is
/// `Opt { negated: true, name: "dport", args: ["22"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Opt {
    /// Whether the option is preceded by `!`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "std::ops::Not::not"))]
    pub negated: bool,
    /// The option's long name without the leading `--`.
    pub name: String,
    /// The option's arguments, unquoted.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub args: Vec<String>,
}

impl Opt {
    /// An option with arguments.
    pub fn new(name: &str, args: &[&str]) -> Self {
        Self {
            negated: false,
            name: name.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// The first argument, or `""` for a flag.
    pub fn arg(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }
}

/// A match module (`-m NAME --opt …`) with its options in order. Any module is held,
/// known or not; typed views of the common ones are in [`crate::view`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Match {
    /// The module name (`tcp`, `conntrack`, `comment`…).
    pub name: String,
    /// Its options in the order they were written.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub opts: Vec<Opt>,
}

impl Match {
    /// A match with no options yet.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), opts: Vec::new() }
    }

    /// The first option called `name`.
    pub fn opt(&self, name: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.name == name)
    }
}

/// What a rule does when it matches: a target module with options (`-j REJECT
/// --reject-with tcp-reset`, `-j ACCEPT`, `-j SOME_CHAIN`) or a goto (`-g CHAIN`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Action {
    /// `-j NAME [options]`: a verdict, a target extension or a jump to a user chain.
    Jump(Target),
    /// `-g CHAIN`: continue in CHAIN and do not come back.
    Goto(ChainName),
}

/// The target of `-j`: its name and options. Whether the name is a user chain or a target
/// extension depends on the chains of the table; [`crate::view::TargetView`] decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Target {
    /// `ACCEPT`, `DROP`, `REJECT`, `LOG`, a user chain…
    pub name: String,
    /// The target's options in order.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub opts: Vec<Opt>,
}

impl Target {
    /// A target with no options.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), opts: Vec::new() }
    }

    /// The first option called `name`.
    pub fn opt(&self, name: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.name == name)
    }
}

/// One rule of a chain. Fields print in this order: `-s -d -i -o -p -f`, the matches, then
/// the action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Rule {
    /// `[pkts:bytes]` or `-c P B`, when given.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub counters: Option<Counters>,
    /// `-s`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub src: Option<Negatable<Address>>,
    /// `-d`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub dst: Option<Negatable<Address>>,
    /// `-i`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub in_iface: Option<Negatable<Interface>>,
    /// `-o`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub out_iface: Option<Negatable<Interface>>,
    /// `-p`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub proto: Option<Negatable<Protocol>>,
    /// `-f` (IPv4 only): `Some(false)` for `-f`, `Some(true)` for `! -f`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub fragment: Option<bool>,
    /// The match modules in order.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub matches: Vec<Match>,
    /// `-j`/`-g`; `None` for a rule that only counts.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub action: Option<Action>,
    /// Where the rule was written.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub origin: Origin,
}

impl Rule {
    /// The first match module called `name`.
    pub fn find_match(&self, name: &str) -> Option<&Match> {
        self.matches.iter().find(|m| m.name == name)
    }

    /// The target name of `-j`, if any.
    pub fn target_name(&self) -> Option<&str> {
        match &self.action {
            Some(Action::Jump(t)) => Some(&t.name),
            _ => None,
        }
    }

    /// Whether this rule jumps or goes to the chain called `chain`.
    pub fn targets_chain(&self, chain: &str) -> bool {
        self.chain_ref(|n| n == chain) == Some(chain)
    }

    /// The chain this rule jumps or goes to, when `is_chain` says its target is a chain.
    pub fn chain_ref(&self, is_chain: impl Fn(&str) -> bool) -> Option<&str> {
        match &self.action {
            Some(Action::Goto(c)) => Some(c.as_str()),
            Some(Action::Jump(t)) if is_chain(&t.name) => Some(&t.name),
            _ => None,
        }
    }
}
