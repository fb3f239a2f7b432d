//! `iptables -L` listings: read them in every flag combination, convert them to a
//! [`Ruleset`](portcullis_rules::Ruleset) with explicit warnings for what `-L` cannot show,
//! and render a ruleset exactly as iptables 1.8.10+ lists it.
//!
//! Reading is by tokens, not columns (`formats.md` §14.13): an empty target column is told
//! by the width of the gap before the prot field, `!` may be glued to prot, addresses and
//! interfaces, the prot column may be a name or a number (1.8.9 prints numbers under
//! `-n`), the ip6tables `opt` column may be blank, counters may carry K/M/G/T, a long
//! target or address overflows its column, and `-L CHAIN N` prints a rule with no header.
//! The match and target text is kept as printed (NUL bytes included) and decoded only by
//! [`listing_to_ruleset`].
//!
//! Rendering never does DNS: addresses are numeric (`anywhere` for a zero mask without
//! `-n`), port names come from a built-in copy of Debian's `/etc/services`, protocol names
//! from the built-in protocol table, and user 0 / group 0 print as `root`.

mod decode;
mod parse;
mod render;
mod reprint;
mod services;
mod text;

pub use self::decode::{Conversion, ListingWarning, listing_to_ruleset};
pub use self::parse::parse_listing;
pub use self::render::{ListingWriter, render_listing};

use portcullis_rules::TableName;

/// What `iptables -L` was asked for: the table, the flags and the optional chain and rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFlags {
    /// `-t TABLE` (filter by default).
    pub table: TableName,
    /// `-n`: numeric addresses, ports, protocols, ICMP types, TCP flags, LOG levels.
    pub numeric: bool,
    /// `-v`: counters and the `in`/`out` columns.
    pub verbose: bool,
    /// `-x`: exact counters instead of K/M/G/T (only visible with `-v`).
    pub exact: bool,
    /// `--line-numbers`: the `num` column.
    pub line_numbers: bool,
    /// `-L CHAIN`: only this chain.
    pub chain: Option<String>,
    /// `-L CHAIN N`: only rule N of the chain, with no header lines.
    pub rule: Option<usize>,
    /// Which iptables version's output to reproduce.
    pub style: ListStyle,
}

impl Default for ListFlags {
    fn default() -> Self {
        Self {
            table: TableName::Filter,
            numeric: false,
            verbose: false,
            exact: false,
            line_numbers: false,
            chain: None,
            rule: None,
            style: ListStyle::default(),
        }
    }
}

/// The iptables version whose `-L` layout is reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ListStyle {
    /// iptables 1.8.10 and later: under `-n` the prot column shows the built-in protocol
    /// names (`all`, `tcp`, `udp`, `icmp`, `ipv6-icmp`, …) and numbers only for the rest.
    #[default]
    Current,
    /// iptables 1.8.9: under `-n` the prot column is always a number (netfilter bugzilla
    /// #1729). Everything else is as [`ListStyle::Current`].
    NumericProt189,
    /// iptables before 1.4.11 (the seed article's 2006 output): each match and target
    /// printed its text followed by a space instead of preceded by one, so the text
    /// starts one column earlier and the line ends with a space.
    Pre1411,
}

/// A whole `iptables -L` output, as printed: chains with their header and rule lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// The chains in the order printed. `-L CHAIN N` output (one rule line, no header)
    /// gives one chain with no header.
    pub chains: Vec<ListedChain>,
}

impl Listing {
    /// The table a listing shows, told by its builtin chains (those with a policy):
    /// `None` when it has none or they fit no table. INPUT, FORWARD and OUTPUT alone are
    /// taken as filter (security has the same chains).
    pub fn guess_table(&self) -> Option<TableName> {
        let builtins: Vec<&str> = self
            .chains
            .iter()
            .filter_map(|c| c.header.as_ref())
            .filter(|h| matches!(h.kind, ChainKind::Builtin { .. }))
            .map(|h| h.name.as_str())
            .collect();
        if builtins.is_empty() {
            return None;
        }
        [TableName::Filter, TableName::Nat, TableName::Mangle, TableName::Raw, TableName::Security]
            .into_iter()
            .find(|t| {
                builtins.iter().all(|b| t.is_builtin(b))
                    && (builtins.len() == t.builtin_chains().len() || builtins.len() == 1)
            })
            .or_else(|| {
                TableName::ALL.into_iter().find(|t| builtins.iter().all(|b| t.is_builtin(b)))
            })
    }
}

/// One chain of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedChain {
    /// `Chain NAME (…)`, absent for `-L CHAIN N` output.
    pub header: Option<ChainHeader>,
    /// Which optional columns the rule lines have (from the column header line, or
    /// inferred from the rule line when there is none).
    pub columns: Columns,
    /// Whether the column header line was printed.
    pub column_header: bool,
    /// The rule lines.
    pub rules: Vec<ListedRule>,
}

/// The `Chain NAME (…)` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHeader {
    /// The chain name.
    pub name: String,
    /// Builtin with a policy, or user chain with references.
    pub kind: ChainKind,
    /// The 1-based line of the input.
    pub line: u32,
}

/// What the parentheses of a chain header say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainKind {
    /// `(policy DROP)` or, with `-v`, `(policy DROP 1235K packets, 988M bytes)`.
    Builtin {
        /// The policy as printed (`ACCEPT`, `DROP`).
        policy: String,
        /// Packets and bytes, with `-v`.
        counters: Option<(Count, Count)>,
    },
    /// `(N references)`.
    User {
        /// How many rules jump or go to the chain.
        references: u64,
    },
    /// `(ERROR obtaining refs)` (legacy, when the count cannot be read).
    RefsError,
}

/// Which optional columns a listing has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Columns {
    /// `num` (`--line-numbers`).
    pub num: bool,
    /// `pkts bytes` (`-v`).
    pub counters: bool,
    /// `in out` (`-v`).
    pub via: bool,
    /// `-x` with `-v`: counters in full, in the wider `%8llu` columns.
    pub exact: bool,
}

/// The unit suffix of a counter printed without `-x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// No suffix: the exact value.
    One,
    /// `K`: thousands, rounded.
    K,
    /// `M`: millions, rounded.
    M,
    /// `G`: billions, rounded.
    G,
    /// `T`: trillions, rounded.
    T,
}

/// A counter as printed: `55000`, `988K`, `123G`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Count {
    /// The digits printed.
    pub value: u64,
    /// The suffix printed.
    pub unit: Unit,
}

impl Count {
    /// Whether the printed value is the exact count.
    pub fn is_exact(&self) -> bool {
        self.unit == Unit::One
    }

    /// The count as far as the print tells: exact, or the middle of the rounded range.
    pub fn approx(&self) -> u64 {
        let scale: u64 = match self.unit {
            Unit::One => 1,
            Unit::K => 1_000,
            Unit::M => 1_000_000,
            Unit::G => 1_000_000_000,
            Unit::T => 1_000_000_000_000,
        };
        self.value.saturating_mul(scale)
    }
}

/// A value that may be printed with a glued `!`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field {
    /// Whether `!` was printed.
    pub negated: bool,
    /// The text without the `!`.
    pub value: String,
}

/// One rule line, field by field, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    /// The 1-based line of the input.
    pub line: u32,
    /// `num`, with `--line-numbers`.
    pub num: Option<u64>,
    /// `pkts`, with `-v`.
    pub packets: Option<Count>,
    /// `bytes`, with `-v`.
    pub bytes: Option<Count>,
    /// The target column; empty for a rule with no target.
    pub target: String,
    /// The prot column: a name or a number.
    pub prot: Field,
    /// The opt column: `--`, `-f`, `!f`, or empty (ip6tables before 1.8.9).
    pub opt: String,
    /// The `in` column, with `-v` (`any`/`*` for any).
    pub in_iface: Option<Field>,
    /// The `out` column, with `-v`.
    pub out_iface: Option<Field>,
    /// The source column.
    pub source: Field,
    /// The destination column.
    pub destination: Field,
    /// `[goto]` was printed.
    pub goto: bool,
    /// The match and target text as printed after the address columns (normally starting
    /// with a space), kept byte for byte.
    pub text: String,
}
