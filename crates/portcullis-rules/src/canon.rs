//! Canonical form: what `iptables-save` prints after a rule is applied (`formats.md` §9,
//! §10). Canonicalisation is a data transformation on the model; text is the syntax
//! crate's business.

use crate::Family;
use crate::addr::Protocol;
use crate::names::Backend;
use crate::rule::{Match, Rule};
use crate::ruleset::Ruleset;

/// What canonicalisation depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CanonOptions {
    /// The backend whose save output is the reference.
    pub backend: Backend,
    /// The family of the ruleset the rule belongs to.
    pub family: Option<Family>,
}

/// The rule as iptables-save would print it after loading it.
pub fn canonicalize_rule(rule: &Rule, opts: CanonOptions) -> Rule {
    let mut r = rule.clone();
    r.counters = None;
    for a in [&mut r.src, &mut r.dst].into_iter().flatten() {
        a.value = a.value.canonical();
    }
    if r.src.as_ref().is_some_and(|a| !a.negated && a.value.is_any()) {
        r.src = None;
    }
    if r.dst.as_ref().is_some_and(|a| !a.negated && a.value.is_any()) {
        r.dst = None;
    }
    for i in [&mut r.in_iface, &mut r.out_iface] {
        if i.as_ref().is_some_and(|x| !x.negated && x.value.as_str() == "+") {
            *i = None;
        }
    }
    if r.proto.as_ref().is_some_and(|p| !p.negated && p.value == Protocol::Number(0)) {
        r.proto = None;
    }
    let family =
        opts.family.or_else(|| r.src.as_ref().or(r.dst.as_ref()).and_then(|a| a.value.family()));
    crate::extensions::canonicalize_matches(&mut r, opts.backend, family.unwrap_or(Family::V4));
    crate::extensions::canonicalize_action(&mut r, opts.backend, family.unwrap_or(Family::V4));
    r
}

/// The whole ruleset in canonical form: every rule canonical, chains sorted as
/// iptables-save sorts them, counters kept.
pub fn canonicalize(ruleset: &Ruleset, backend: Backend) -> Ruleset {
    let opts = CanonOptions { backend, family: Some(ruleset.family) };
    let mut out = ruleset.clone();
    for t in &mut out.tables {
        t.sort_chains();
        for c in &mut t.chains {
            for r in &mut c.rules {
                let counters = r.counters;
                *r = canonicalize_rule(r, opts);
                r.counters = counters;
            }
        }
    }
    out
}

/// Whether `m` is the protocol match implied by `-p` (tcp, udp…).
pub(crate) fn is_proto_match(m: &Match) -> bool {
    matches!(m.name.as_str(), "tcp" | "udp" | "icmp" | "icmp6" | "sctp" | "dccp" | "udplite")
}
