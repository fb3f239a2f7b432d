//! The one error type of the model.

use std::fmt;

use crate::TableName;

/// Where in a ruleset something is: table, chain and, when known, the rule's index in its
/// chain and its line in the source text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The table, when known.
    pub table: Option<TableName>,
    /// The chain, when known.
    pub chain: Option<String>,
    /// The 1-based rule number in its chain, when the error is about a rule.
    pub rule: Option<usize>,
    /// The 1-based line in the source text, when the rule came from a file.
    pub line: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(line) = self.line {
            parts.push(format!("line {line}"));
        }
        if let Some(t) = self.table {
            parts.push(format!("table {}", t.as_str()));
        }
        if let Some(c) = &self.chain {
            parts.push(format!("chain {c}"));
        }
        if let Some(r) = self.rule {
            parts.push(format!("rule {r}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// An error about the content of a ruleset: a bad value, a chain that does not exist, a
/// target in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// What went wrong.
    pub kind: ModelErrorKind,
    /// Where it went wrong, as far as known.
    pub location: Location,
}

impl ModelError {
    /// An error with no location yet.
    pub fn new(kind: ModelErrorKind) -> Self {
        Self { kind, location: Location::default() }
    }

    /// The same error, placed at `location`.
    #[must_use]
    pub fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }
}

/// The kinds of [`ModelError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// A chain name breaks iptables' rules (too long, leading `-` or `!`, whitespace,
    /// clashes with a target name, empty).
    InvalidChainName {
        /// The offending name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A table name that is none of filter, nat, mangle, raw, security.
    UnknownTable(String),
    /// A policy given to a user chain, or a policy that is not ACCEPT or DROP.
    InvalidPolicy {
        /// The chain.
        chain: String,
        /// The policy text.
        policy: String,
    },
    /// A chain that is not builtin in its table was used as if it were.
    NotBuiltin(String),
    /// A jump, goto or command names a chain that does not exist.
    UndefinedChain(String),
    /// A chain that exists already was created again.
    ChainExists(String),
    /// Chains jump to each other in a loop.
    JumpLoop(Vec<String>),
    /// A target (or a match or option, named with its leading `-`) used in a table or
    /// chain where the kernel or iptables refuses it.
    TargetNotAllowed {
        /// The target.
        target: String,
        /// Where it may be used.
        allowed: &'static str,
    },
    /// A value that does not parse or is out of range (a port of 65536, a bad address).
    InvalidValue {
        /// The option or field the value belongs to.
        option: String,
        /// The value as written.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A port or number range whose maximum is below its minimum.
    InvertedRange {
        /// The option.
        option: String,
        /// The range as written.
        value: String,
    },
    /// An option given twice, or two options that exclude each other.
    Conflict(String),
    /// A match or target lacks an option it needs.
    MissingOption {
        /// The module.
        module: String,
        /// What is missing.
        what: &'static str,
    },
    /// A rule number outside the chain.
    NoSuchRule {
        /// The chain.
        chain: String,
        /// The 1-based number asked for.
        index: usize,
    },
    /// A rule given to `-D` by specification that is not in the chain.
    RuleNotFound(String),
    /// A chain still referenced or not empty cannot be deleted.
    ChainInUse(String),
    /// A family mismatch: an IPv6 address in an IPv4 ruleset, `-f` in IPv6.
    WrongFamily(String),
}

impl fmt::Display for ModelErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidChainName { name, reason } => {
                write!(f, "invalid chain name `{name}': {reason}")
            }
            Self::UnknownTable(t) => write!(f, "unknown table `{t}'"),
            Self::InvalidPolicy { chain, policy } => {
                write!(f, "invalid policy `{policy}' for chain {chain}")
            }
            Self::NotBuiltin(c) => write!(f, "chain {c} is not a builtin chain of this table"),
            Self::UndefinedChain(c) => write!(f, "chain `{c}' does not exist"),
            Self::ChainExists(c) => write!(f, "chain `{c}' already exists"),
            Self::JumpLoop(path) => write!(f, "jump loop: {}", path.join(" -> ")),
            // Matches and rule options (`-m owner`, `-i`) are named as written.
            Self::TargetNotAllowed { target, allowed } if target.starts_with('-') => {
                write!(f, "{target} is only valid {allowed}")
            }
            Self::TargetNotAllowed { target, allowed } => {
                write!(f, "target {target} is only valid {allowed}")
            }
            Self::InvalidValue { option, value, expected } => {
                write!(f, "invalid value `{value}' for {option}: expected {expected}")
            }
            Self::InvertedRange { option, value } => {
                write!(f, "range `{value}' for {option} has its maximum below its minimum")
            }
            Self::Conflict(what) => write!(f, "conflicting options: {what}"),
            Self::MissingOption { module, what } => write!(f, "{module} needs {what}"),
            Self::NoSuchRule { chain, index } => {
                write!(f, "chain {chain} has no rule number {index}")
            }
            Self::RuleNotFound(c) => write!(f, "no matching rule in chain {c}"),
            Self::ChainInUse(c) => write!(f, "chain {c} is referenced or not empty"),
            Self::WrongFamily(what) => write!(f, "wrong address family: {what}"),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = self.location.to_string();
        if loc.is_empty() { write!(f, "{}", self.kind) } else { write!(f, "{loc}: {}", self.kind) }
    }
}

impl std::error::Error for ModelError {}

pub(crate) fn invalid(option: &str, value: &str, expected: &'static str) -> ModelError {
    ModelError::new(ModelErrorKind::InvalidValue {
        option: option.to_owned(),
        value: value.to_owned(),
        expected,
    })
}
