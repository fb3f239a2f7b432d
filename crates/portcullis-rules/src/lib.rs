//! The iptables rule model of portcullis: rulesets, tables, chains, rules, matches and
//! targets; validation; and the canonical form iptables-save prints.
//!
//! This crate does no I/O and knows no text format: reading and writing iptables-save,
//! command lines and `iptables -L` listings is `portcullis-syntax`'s job.
//!
//! Principal types:
//! - [`Ruleset`] (one family) → [`Table`] ([`TableName`]) → [`Chain`] ([`ChainName`],
//!   [`Policy`]) → [`Rule`].
//! - A [`Rule`] has base fields (`-s -d -i -o -p -f`, each [`Negatable`]), an ordered list
//!   of [`Match`] modules and an [`Action`] (a [`Target`] or a goto). Modules are held
//!   generically, as ordered negatable [`Opt`]ions, so no real rule is ever refused for
//!   being unknown; [`view`] gives typed views of the common extensions.
//! - [`Command`]: the iptables commands (`-A -I -D -R -N -X -F -Z -P -E`) and
//!   [`Ruleset::execute`], which runs them as iptables would.
//! - [`validate()`] checks a ruleset; [`canonicalize`] rewrites it into what iptables-save
//!   prints after loading it, for a [`Backend`].
//!
//! ```
//! use portcullis_rules::{Action, Chain, Family, Match, Opt, Policy, Protocol, Negatable,
//!     Rule, Ruleset, TableName, Target, Command};
//!
//! let mut rs = Ruleset::new(Family::V4);
//! rs.execute(TableName::Filter, Command::Policy {
//!     chain: "INPUT".into(), policy: Policy::Drop, counters: None })?;
//! let mut tcp = Match::new("tcp");
//! tcp.opts.push(Opt::new("dport", &["22"]));
//! let rule = Rule {
//!     proto: Some(Negatable::plain(Protocol::TCP)),
//!     matches: vec![tcp],
//!     action: Some(Action::Jump(Target::new("ACCEPT"))),
//!     ..Rule::default()
//! };
//! rs.execute(TableName::Filter, Command::Append { chain: "INPUT".into(), rule })?;
//! assert_eq!(rs.rule_count(), 1);
//! assert!(portcullis_rules::validate(&rs).is_empty());
//! # Ok::<(), portcullis_rules::ModelError>(())
//! ```
#![deny(missing_docs)]

mod addr;
mod canon;
mod command;
mod error;
mod extensions;
mod names;
mod rule;
mod ruleset;
mod validate;
pub mod view;

pub use crate::{
    addr::{Address, Interface, Protocol},
    canon::{CanonOptions, canonicalize, canonicalize_rule},
    command::{Command, RuleSelector},
    error::{Location, ModelError, ModelErrorKind},
    extensions::civil_from_days,
    names::{Backend, ChainName, Family, Policy, TableName, is_target_name},
    rule::{Action, Counters, Match, Negatable, Opt, Origin, Rule, Target},
    ruleset::{Chain, Ruleset, Table},
    validate::{RuleFacts, TableCheck, rule_facts, validate},
};
