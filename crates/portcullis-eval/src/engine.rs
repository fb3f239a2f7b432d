//! The traversal: a packet class through the hooks it takes, table by table, following
//! jumps, gotos, RETURN and policies; uncertain matches fork it, port conditions that cut
//! a class split it.

use std::fmt;
use std::net::IpAddr;

use portcullis_rules::view::{PortRange, RejectWith};
use portcullis_rules::{Policy, TableName};

use crate::compile::{Act, Compiled, Field, Tri, describe, test_rule};
use crate::error::{EvalError, EvalErrorKind};
use crate::packet::{CtState, Hook, Host, Packet};

/// What finally happens to a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// It passes every table of its hooks.
    Accept,
    /// It is dropped silently.
    Drop,
    /// It is dropped and answered as `--reject-with` says.
    Reject(RejectWithKey),
    /// It is handed to user space (QUEUE, NFQUEUE): the answer is not in the ruleset.
    Queue,
    /// A target portcullis does not know ended the traversal; its name.
    Unknown(String),
}

/// [`RejectWith`] as an ordered key (its saved name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectWithKey(pub RejectWith);

impl PartialOrd for RejectWithKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RejectWithKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accept => f.write_str("ACCEPT"),
            Self::Drop => f.write_str("DROP"),
            Self::Reject(w) => write!(f, "REJECT --reject-with {}", w.0.as_str()),
            Self::Queue => f.write_str("QUEUE"),
            Self::Unknown(t) => write!(f, "{t} (unknown target)"),
        }
    }
}

/// How a rule or policy took part in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Every condition held.
    Matched,
    /// A condition failed.
    NotMatched,
    /// An uncertain condition: this path assumes it matched.
    MayMatch,
    /// An uncertain condition: this path assumes it did not match.
    MayNotMatch,
    /// An uncertain condition on a rule whose action changes nothing either way.
    MayMatchNoEffect,
    /// The chain's policy applied.
    Policy,
}

/// One rule (or policy) on a packet's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: String,
    /// The rule's 1-based position in its chain; `None` for a policy.
    pub index: Option<usize>,
    /// The rule's line in its source (0 when unknown).
    pub line: u32,
    /// How it took part.
    pub kind: StepKind,
    /// Why: the condition that failed or was uncertain, or what the rule did.
    pub why: String,
}

/// The rule or policy that decided the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: String,
    /// The rule's 1-based position; `None` for a policy.
    pub index: Option<usize>,
    /// The rule's line (0 for a policy or when unknown).
    pub line: u32,
}

/// One way a packet class can end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The source ports this outcome covers (a piece of the query's range).
    pub sport: PortRange,
    /// The destination ports this outcome covers (a piece of the query's range).
    pub dport: PortRange,
    /// The destination ports after NAT (equal to `dport` without DNAT/REDIRECT).
    pub final_dport: PortRange,
    /// The destination after NAT.
    pub final_dst: Option<IpAddr>,
    /// Whether DNAT sent the packet on to another host (it went through FORWARD).
    pub forwarded: bool,
    /// Whether the path took no uncertain branch.
    pub certain: bool,
    /// The rule or policy that decided, in the last table that decided anything: for
    /// DROP/REJECT the rule that dropped; for ACCEPT the filter table's decision when
    /// there is one.
    pub decided_by: Option<Decision>,
    /// The path, when it was recorded.
    pub path: Vec<Step>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    table: usize,
    chain: usize,
    pos: usize,
}

#[derive(Debug, Clone)]
struct State {
    pkt: Packet,
    orig_sport: PortRange,
    orig_dport: PortRange,
    dport_rewritten: bool,
    hook: Hook,
    stage: usize,
    stack: Vec<Frame>,
    path: Vec<Step>,
    certain: bool,
    decided: Option<Decision>,
    forwarded: bool,
}

const PRE: &str = "PREROUTING";
const POST: &str = "POSTROUTING";

fn stages(hook: Hook) -> &'static [(TableName, &'static str)] {
    use TableName::{Filter, Mangle, Nat, Raw, Security};
    match hook {
        Hook::Input => &[
            (Raw, PRE),
            (Mangle, PRE),
            (Nat, PRE),
            (Mangle, "INPUT"),
            (Filter, "INPUT"),
            (Security, "INPUT"),
            (Nat, "INPUT"),
        ],
        Hook::Forward => &[
            (Raw, PRE),
            (Mangle, PRE),
            (Nat, PRE),
            (Mangle, "FORWARD"),
            (Filter, "FORWARD"),
            (Security, "FORWARD"),
            (Mangle, POST),
            (Nat, POST),
        ],
        Hook::Output => &[
            (Raw, "OUTPUT"),
            (Mangle, "OUTPUT"),
            (Nat, "OUTPUT"),
            (Filter, "OUTPUT"),
            (Security, "OUTPUT"),
            (Mangle, POST),
            (Nat, POST),
        ],
    }
}

/// How far jumps may nest before the evaluator calls it a loop.
const MAX_DEPTH: usize = 64;

/// Options of one evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run<'a> {
    pub(crate) compiled: &'a Compiled,
    pub(crate) host: &'a Host,
    pub(crate) record: bool,
    pub(crate) limit: usize,
}

enum Next {
    Continue,
    Finish(Verdict),
    Stop,
}

impl Run<'_> {
    /// Evaluates `pkt` arriving at `hook`; every outcome, in no particular order.
    pub(crate) fn eval(&self, hook: Hook, pkt: &Packet) -> Result<Vec<Outcome>, EvalError> {
        let mut work = vec![State {
            orig_sport: pkt.sport,
            orig_dport: pkt.dport,
            pkt: pkt.clone(),
            dport_rewritten: false,
            hook,
            stage: 0,
            stack: Vec::new(),
            path: Vec::new(),
            certain: true,
            decided: None,
            forwarded: false,
        }];
        let mut out = Vec::new();
        // Rule tests done; bounded so that a class that splits and forks without end
        // fails fast instead of running for minutes.
        let mut steps: usize = 0;
        let budget = self.limit.saturating_mul(64);
        while let Some(mut st) = work.pop() {
            loop {
                match self.step(&mut st, &mut work)? {
                    Next::Continue => {}
                    Next::Stop => break,
                    Next::Finish(v) => {
                        out.push(Outcome {
                            verdict: v,
                            sport: st.orig_sport,
                            dport: st.orig_dport,
                            final_dport: st.pkt.dport,
                            final_dst: st.pkt.dst,
                            forwarded: st.forwarded,
                            certain: st.certain,
                            decided_by: st.decided.take(),
                            path: std::mem::take(&mut st.path),
                        });
                        break;
                    }
                }
                steps += 1;
                if work.len() + out.len() > self.limit || steps > budget {
                    return Err(EvalError::new(0, EvalErrorKind::TooManyPaths(self.limit)));
                }
            }
        }
        Ok(out)
    }

    fn step(&self, st: &mut State, work: &mut Vec<State>) -> Result<Next, EvalError> {
        let c = self.compiled;
        let Some(frame) = st.stack.last().copied() else {
            // Enter the next stage.
            let list = stages(st.hook);
            let Some(&(tname, chain)) = list.get(st.stage) else {
                return Ok(Next::Finish(Verdict::Accept));
            };
            let nat_skipped = tname == TableName::Nat && st.pkt.state != CtState::New;
            let entry =
                c.table(tname).and_then(|t| c.tables[t].by_name.get(chain).map(|ch| (t, *ch)));
            match entry {
                Some((table, chain)) if !nat_skipped => {
                    st.stack.push(Frame { table, chain, pos: 0 });
                }
                _ => st.stage += 1,
            }
            return Ok(Next::Continue);
        };
        let table = &c.tables[frame.table];
        let chain = &table.chains[frame.chain];
        let Some(rule) = c.chain_rules(frame.table, frame.chain)?.get(frame.pos) else {
            // Off the end of a chain: back to the caller, or the policy of the stage.
            st.stack.pop();
            if st.stack.is_empty() {
                return Ok(self.policy(st));
            }
            return Ok(Next::Continue);
        };
        let (tri, cond) = test_rule(rule, &st.pkt, st.hook, self.host);
        let why = |kind: StepKind, st: &State| -> String {
            if !self.record {
                return String::new();
            }
            match kind {
                StepKind::NotMatched => format!("no: {}", describe(&rule.conds[cond], c.family)),
                StepKind::MayMatch | StepKind::MayNotMatch | StepKind::MayMatchNoEffect => {
                    format!("may: {}", describe(&rule.conds[cond], c.family))
                }
                _ => {
                    let _ = st;
                    act_text(&rule.act, &table.chains)
                }
            }
        };
        let record = |st: &mut State, kind: StepKind| {
            if self.record {
                let w = why(kind, st);
                st.path.push(Step {
                    table: table.name,
                    chain: chain.name.clone(),
                    index: Some(rule.index),
                    line: rule.line,
                    kind,
                    why: w,
                });
            }
        };
        match tri {
            Tri::No => {
                record(st, StepKind::NotMatched);
                advance(st);
                Ok(Next::Continue)
            }
            Tri::Yes => {
                record(st, StepKind::Matched);
                self.act(st, work)
            }
            Tri::Maybe => {
                if matches!(rule.act, Act::None | Act::Continue) {
                    record(st, StepKind::MayMatchNoEffect);
                    advance(st);
                    return Ok(Next::Continue);
                }
                let mut other = st.clone();
                other.certain = false;
                record(&mut other, StepKind::MayNotMatch);
                advance(&mut other);
                work.push(other);
                st.certain = false;
                record(st, StepKind::MayMatch);
                self.act(st, work)
            }
            Tri::Split(field, pieces) => {
                for piece in pieces {
                    let mut s = st.clone();
                    match field {
                        Field::Sport => {
                            s.pkt.sport = piece;
                            s.orig_sport = piece;
                        }
                        Field::Dport => {
                            s.pkt.dport = piece;
                            if !s.dport_rewritten {
                                s.orig_dport = piece;
                            }
                        }
                    }
                    work.push(s);
                }
                Ok(Next::Stop)
            }
        }
    }

    fn decide(&self, st: &mut State, frame: Frame, index: Option<usize>, line: u32) {
        let t = &self.compiled.tables[frame.table];
        let d = Decision { table: t.name, chain: t.chains[frame.chain].name.clone(), index, line };
        // For ACCEPT keep the filter table's decision once there is one.
        let keep_filter = st.decided.as_ref().is_some_and(|old| old.table == TableName::Filter)
            && d.table != TableName::Filter;
        if !keep_filter {
            st.decided = Some(d);
        }
    }

    fn act(&self, st: &mut State, work: &mut Vec<State>) -> Result<Next, EvalError> {
        let frame = *st.stack.last().expect("a rule runs inside a chain");
        let c = self.compiled;
        let rule = &c.chain_rules(frame.table, frame.chain)?[frame.pos];
        let (idx, line) = (Some(rule.index), rule.line);
        Ok(match &rule.act {
            Act::None | Act::Continue => {
                advance(st);
                Next::Continue
            }
            Act::Accept => {
                self.decide(st, frame, idx, line);
                next_stage(st);
                Next::Continue
            }
            Act::Drop => {
                st.decided = None;
                self.decide(st, frame, idx, line);
                Next::Finish(Verdict::Drop)
            }
            Act::Reject(w) => {
                st.decided = None;
                self.decide(st, frame, idx, line);
                Next::Finish(Verdict::Reject(RejectWithKey(*w)))
            }
            Act::Queue => {
                st.decided = None;
                self.decide(st, frame, idx, line);
                Next::Finish(Verdict::Queue)
            }
            Act::Return => {
                st.stack.pop();
                if st.stack.is_empty() { self.policy(st) } else { Next::Continue }
            }
            Act::Jump(target) => {
                advance(st);
                if st.stack.len() >= MAX_DEPTH {
                    let name = c.tables[frame.table].chains[*target].name.clone();
                    return Err(EvalError::new(line, EvalErrorKind::Loop(name)));
                }
                st.stack.push(Frame { table: frame.table, chain: *target, pos: 0 });
                Next::Continue
            }
            Act::Goto(target) => {
                if let Some(top) = st.stack.last_mut() {
                    *top = Frame { table: frame.table, chain: *target, pos: 0 };
                }
                Next::Continue
            }
            Act::Mark(m) => {
                st.pkt.mark = match st.pkt.mark {
                    Some(mark) => Some(m.apply(mark)),
                    None if m.mask == u32::MAX => Some(m.value),
                    None => None,
                };
                advance(st);
                Next::Continue
            }
            Act::RestoreMark => {
                // A new connection has mark 0 unless this very traversal set it.
                st.pkt.mark = if st.pkt.state == CtState::New { Some(0) } else { None };
                advance(st);
                Next::Continue
            }
            Act::Notrack => {
                st.pkt.state = CtState::Untracked;
                advance(st);
                Next::Continue
            }
            Act::Dnat(addr, ports) => {
                if let Some(a) = addr {
                    st.pkt.dst = Some(*a);
                }
                if let Some(p) = ports {
                    st.pkt.dport = *p;
                    st.dport_rewritten = true;
                }
                let routed_away = st.hook == Hook::Input
                    && addr.is_some_and(|a| self.host.is_local(a) == Some(false));
                if routed_away {
                    st.hook = Hook::Forward;
                    st.forwarded = true;
                }
                next_stage(st);
                Next::Continue
            }
            Act::NatEnd => {
                next_stage(st);
                Next::Continue
            }
            Act::Unknown(name) => {
                // It may end the traversal or let the packet go on.
                let mut on = st.clone();
                on.certain = false;
                advance(&mut on);
                work.push(on);
                st.certain = false;
                st.decided = None;
                self.decide(st, frame, idx, line);
                Next::Finish(Verdict::Unknown(name.clone()))
            }
        })
    }

    fn policy(&self, st: &mut State) -> Next {
        let c = self.compiled;
        let (tname, cname) = stages(st.hook)[st.stage];
        let Some(t) = c.table(tname) else {
            next_stage(st);
            return Next::Continue;
        };
        let Some(&ch) = c.tables[t].by_name.get(cname) else {
            next_stage(st);
            return Next::Continue;
        };
        let chain = &c.tables[t].chains[ch];
        let policy = chain.policy.unwrap_or(Policy::Accept);
        if self.record {
            st.path.push(Step {
                table: tname,
                chain: cname.to_owned(),
                index: None,
                line: 0,
                kind: StepKind::Policy,
                why: format!("policy {}", policy.as_str()),
            });
        }
        let frame = Frame { table: t, chain: ch, pos: 0 };
        match policy {
            Policy::Accept => {
                self.decide(st, frame, None, 0);
                next_stage(st);
                Next::Continue
            }
            Policy::Drop => {
                st.decided = None;
                self.decide(st, frame, None, 0);
                Next::Finish(Verdict::Drop)
            }
        }
    }
}

fn advance(st: &mut State) {
    if let Some(f) = st.stack.last_mut() {
        f.pos += 1;
    }
}

fn next_stage(st: &mut State) {
    st.stack.clear();
    st.stage += 1;
}

fn act_text(a: &Act, chains: &[crate::compile::CChain]) -> String {
    let name = |i: usize| chains.get(i).map_or("?", |c| c.name.as_str());
    match a {
        Act::None => "counted (no target)".into(),
        Act::Accept => "ACCEPT".into(),
        Act::Drop => "DROP".into(),
        Act::Reject(w) => format!("REJECT --reject-with {}", w.as_str()),
        Act::Return => "RETURN".into(),
        Act::Queue => "QUEUE".into(),
        Act::Jump(t) => format!("jump to {}", name(*t)),
        Act::Goto(t) => format!("goto {}", name(*t)),
        Act::Continue => "non-terminating target, continue".into(),
        Act::Mark(m) => format!("MARK --set-xmark {}", m.saved_target()),
        Act::RestoreMark => "CONNMARK --restore-mark".into(),
        Act::Notrack => "NOTRACK (state becomes UNTRACKED)".into(),
        Act::Dnat(a, p) => format!(
            "DNAT to {}{}",
            a.map_or_else(|| "this host".to_owned(), |a| a.to_string()),
            p.map_or_else(String::new, |p| format!(":{p}"))
        ),
        Act::NatEnd => "source NAT".into(),
        Act::Unknown(n) => format!("{n} (unknown target: may end the traversal)"),
    }
}
