//! What an iptables ruleset does: packet traces, predicted port states, lint and semantic
//! diff, over the model of [`portcullis_rules`].
//!
//! This crate depends only on the model. It reads no files, runs no processes and knows
//! no text format: the `portcullis` binary reads rulesets with `portcullis-syntax` and
//! hands them here.
//!
//! Principal entry points:
//! - [`trace`]: one packet ([`Packet`]) through the hooks it takes ([`Hook`]): raw,
//!   mangle, nat, filter, security in netfilter's order, following jumps, gotos, RETURN
//!   and policies. The answer is every possible [`Outcome`]: one when every match the
//!   packet meets is decided by the packet, several when a match depends on history or
//!   outside state (`limit`, `recent`, `set`, `owner`…), which "may match" and forks the
//!   evaluation soundly.
//! - [`predict_ports`]: what a SYN scan and a UDP scan see on every port, in nmap's
//!   vocabulary ([`PortState`], [`Reason`]), by evaluating whole port ranges at once
//!   (interval splitting) rather than one packet per port.
//! - [`lint()`]: lock-out risks, Al-Shaer anomalies, chain and hygiene findings
//!   ([`Finding`]) with stable codes.
//! - [`diff()`]: rules added, removed and moved, and the change in behaviour.
//!
//! ```
//! use portcullis_rules::{Action, Chain, Family, Match, Opt, Policy, Protocol, Negatable,
//!     Rule, Ruleset, TableName, Target, Command};
//! use portcullis_eval::{Hook, Host, Packet, Verdict, trace};
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
//!
//! let t = trace(&rs, Hook::Input, &Packet::tcp_syn(Family::V4, 22), &Host::default())?;
//! assert_eq!(t.verdicts(), vec![Verdict::Accept]);
//! let t = trace(&rs, Hook::Input, &Packet::tcp_syn(Family::V4, 23), &Host::default())?;
//! assert_eq!(t.verdicts(), vec![Verdict::Drop]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod compile;
mod diff;
mod engine;
mod error;
mod lint;
mod packet;
mod ports;
mod space;

pub use crate::{
    compile::Compiled,
    diff::{BehaviourChange, ChangeKind, Diff, DiffOptions, RuleChange, diff, diff_with},
    engine::{Decision, Outcome, RejectWithKey, Step, StepKind, Verdict},
    error::{EvalError, EvalErrorKind},
    lint::{
        CODES, Finding, LintOptions, Related, Severity, lint, lint_text, locate_policies,
        render as render_findings,
    },
    packet::{CtState, Hook, Host, Packet},
    ports::{PortQuery, PortRun, PortState, Prediction, Proto, Reason, predict, predict_ports},
};

use portcullis_rules::Ruleset;

/// Every way one packet can go through a ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The outcomes, the certain one first when there is one; each with its path.
    pub outcomes: Vec<Outcome>,
}

impl Trace {
    /// The possible verdicts, sorted, without repeats.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut v: Vec<Verdict> = self.outcomes.iter().map(|o| o.verdict.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The most paths one trace follows.
const TRACE_LIMIT: usize = 4096;

/// Traces `pkt` arriving at `hook` through `rs`, recording the path.
pub fn trace(rs: &Ruleset, hook: Hook, pkt: &Packet, host: &Host) -> Result<Trace, EvalError> {
    let c = Compiled::new(rs)?;
    trace_compiled(&c, hook, pkt, host)
}

/// [`trace`] over a ruleset compiled once.
pub fn trace_compiled(
    c: &Compiled,
    hook: Hook,
    pkt: &Packet,
    host: &Host,
) -> Result<Trace, EvalError> {
    let run = engine::Run { compiled: c, host, record: true, limit: TRACE_LIMIT };
    let mut outcomes = run.eval(hook, pkt)?;
    outcomes.sort_by_key(|o| (!o.certain, o.dport, o.sport));
    Ok(Trace { outcomes })
}
