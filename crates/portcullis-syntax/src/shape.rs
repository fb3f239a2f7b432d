//! Rule shapes: what `validate_save` remembers of a rule it has checked, so that the next
//! rule of the same shape is checked by its values alone.
//!
//! A rule's *shape* is its token sequence with some option values left out: the *free*
//! values, each of which the model checks on its own, by a test that looks at that value
//! only. A rule that the full path (`pre_line`, then `rule_facts`) showed valid stores its
//! facts under its shape; a later `-A` line of the same shape whose free values each pass
//! their test is valid with the same facts, without building the model.
//!
//! The free values, and the test each must pass (each as strict as the model's, or
//! stricter; a value that fails it only sends the rule down the full path):
//!
//! | value | where | test |
//! |---|---|---|
//! | the chain of `-A` | always | a valid chain name (`ChainName::is_valid`: stricter than the shape test of `parse_args` by the target names); the shape keeps the name of a builtin chain, since the facts depend on which |
//! | `-s`, `-d` | always | only `0-9 . /`; an `Address` of the file's family (no host name, no comma list, which expands into several rules) |
//! | `--comment` | in `-m comment` | at most 255 bytes |
//! | `--dport` | in `-m tcp`, `-m udp` | one to five digits, a `PortRange` |
//! | `--probability` | in `-m statistic` | digits and `.`, a number from 0 to 1 |
//! | `--to-destination` | after `-j DNAT` | a `NatRange` of the family; whether it holds ports is part of the shape |
//! | the chain of `-j` | the last token | a valid chain name (`ChainName::is_valid`; so not a target name: a jump to a chain) |
//!
//! Everything else, option names, modules, negations, other values, quoting, stays in
//! the shape verbatim. A value is free only where the parser reads it as a value (not
//! an option word, not `!`), so a free value never changes how the rest is read; and
//! only in the module or target the parser puts it in (`-m`, `-j`, `-g` and their long
//! forms move that context; a line with one of them glued to its value, `-mtcp`, is not
//! shaped at all).
//!
//! **Invariant** (checked on every hit in debug builds, i.e. in every test): a line that
//! the shapes accept gets the facts and jump the full path gives.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;

use portcullis_rules::view::{NatRange, PortRange};
use portcullis_rules::{Address, ChainName, Family, RuleFacts, TableName, is_target_name};

use crate::args::{is_bang, is_option_token};
use crate::token::Token;

/// At most this many shapes are remembered per worker (a kube-proxy dump has a few dozen;
/// the bound keeps a hostile file from growing the table without end).
const MAX_SHAPES: usize = 4096;

/// A free value's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Free {
    Addr,
    Comment,
    Port,
    Probability,
    NatTo,
    Jump,
}

/// What a shape stores: the facts, and the chain the rule jumps to when that is not a
/// free value (`-g CHAIN`, say).
#[derive(Debug)]
struct Known {
    facts: RuleFacts,
    jump: Option<Box<str>>,
}

/// The shapes one worker has seen, and its scratch buffers.
#[derive(Default)]
pub(crate) struct Shapes {
    /// Keyed by the shape's bytes, hashed with the Fx hash: a collision only costs a key
    /// comparison, and the table is bounded and per worker.
    known: HashMap<Vec<u8>, Known, rustc_hash::FxBuildHasher>,
    key: Vec<u8>,
    free: Vec<(Free, usize)>,
}

/// A rule found valid by its shape: the chain it is appended to, the chain it jumps or
/// goes to, and its facts.
pub(crate) struct Shaped<'a> {
    pub(crate) chain: Cow<'a, str>,
    pub(crate) jump: Option<Cow<'a, str>>,
    pub(crate) facts: RuleFacts,
}

/// A token the parser reads as a value (not an option word, not `!`).
fn is_value(t: &Token<'_>) -> bool {
    !is_option_token(t) && !is_bang(t)
}

/// The test of a free value; `Some(mark)` when it passes, with what the shape keeps of it.
fn test(kind: Free, v: &str, family: Family) -> Option<u8> {
    match kind {
        Free::Addr => {
            let plain =
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'/');
            (plain && Address::from_str(v).ok()?.family() == Some(family)).then_some(0)
        }
        Free::Comment => (v.len() <= 255).then_some(0),
        Free::Port => {
            let digits = (1..=5).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
            (digits && PortRange::parse_with(v, ':').is_ok()).then_some(0)
        }
        Free::Probability => {
            let plain =
                (1..=24).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            (plain && v.parse::<f64>().is_ok_and(|p| (0.0..=1.0).contains(&p))).then_some(0)
        }
        Free::NatTo => {
            let r = NatRange::parse(v, "--to-destination", family).ok()?;
            Some(u8::from(r.ports.is_some()))
        }
        Free::Jump => ChainName::is_valid(v).then_some(0),
    }
}

impl Shapes {
    /// Builds the shape of an `-A` line's tokens into `self.key` and lists its free
    /// values; `false` when the line is not one the shapes handle (then take the full
    /// path).
    fn shape(&mut self, table: TableName, family: Family, toks: &[Token<'_>]) -> bool {
        self.key.clear();
        self.free.clear();
        let [first, chain, ..] = toks else { return false };
        if first.quoted
            || first.text != "-A"
            || !is_value(chain)
            || !ChainName::is_valid(&chain.text)
        {
            return false;
        }
        self.key.push(table as u8);
        if table.is_builtin(&chain.text) {
            self.key.extend_from_slice(chain.text.as_bytes());
        }
        self.key.push(0xff);
        let mut module: &str = "";
        let mut target: &str = "";
        let mut i = 2;
        while i < toks.len() {
            let t = &toks[i];
            let next = toks.get(i + 1).filter(|n| is_value(n));
            let opt = if t.quoted { "" } else { &*t.text };
            // A module, target or goto glued to its letter (`-mtcp`) moves the parser's
            // context where the tracking below does not follow: not a shape.
            if let [b'-', b'm' | b'j' | b'g', _, ..] = opt.as_bytes() {
                return false;
            }
            let kind = match (opt, next) {
                (_, None) => None,
                ("-s" | "-d", _) => Some(Free::Addr),
                ("--comment", _) if module == "comment" => Some(Free::Comment),
                ("--dport", _) if matches!(module, "tcp" | "udp") => Some(Free::Port),
                ("--probability", _) if module == "statistic" => Some(Free::Probability),
                ("--to-destination", _) if target == "DNAT" => Some(Free::NatTo),
                ("-j" | "--jump", Some(n)) if i + 2 == toks.len() && !is_target_name(&n.text) => {
                    Some(Free::Jump)
                }
                _ => None,
            };
            if let Some(kind) = kind {
                self.key.extend_from_slice(opt.as_bytes());
                let Some(mark) = test(kind, &toks[i + 1].text, family) else { return false };
                self.key.extend_from_slice(&[0xfe, kind as u8, mark, 0xff]);
                self.free.push((kind, i + 1));
                i += 2;
                continue;
            }
            match (opt, next) {
                ("-m" | "--match", Some(n)) => module = &n.text,
                ("-j" | "--jump", Some(n)) => {
                    target = &n.text;
                    module = "";
                }
                ("-g" | "--goto", _) => {
                    target = "";
                    module = "";
                }
                _ => {}
            }
            self.key.push(u8::from(t.quoted));
            self.key.extend_from_slice(t.text.as_bytes());
            self.key.push(0xff);
            i += 1;
        }
        true
    }

    /// An `-A` line looked up by its shape: [`Lookup::Hit`] when a rule of its shape was
    /// shown valid; [`Lookup::Miss`] when its shape is new (take the full path, then hand
    /// the miss to [`Shapes::learn`]); [`Lookup::Unshaped`] when the shapes do not handle
    /// it.
    pub(crate) fn check<'a>(
        &mut self,
        table: TableName,
        family: Family,
        toks: &[Token<'a>],
    ) -> Lookup<'a> {
        if !self.shape(table, family, toks) {
            return Lookup::Unshaped;
        }
        let Some(known) = self.known.get(&self.key) else { return Lookup::Miss(Miss(())) };
        let jump = match self.free.iter().find(|(k, _)| *k == Free::Jump) {
            Some(&(_, at)) => Some(toks[at].text.clone()),
            None => known.jump.as_deref().map(|j| Cow::Owned(j.to_owned())),
        };
        Lookup::Hit(Shaped { chain: toks[1].text.clone(), jump, facts: known.facts })
    }

    /// Remembers the shape of the line that just missed (`toks`, as
    /// [`Shapes::check`] saw them), with what the full path found for it: its facts and
    /// the chain it jumps to.
    pub(crate) fn learn(
        &mut self,
        _: Miss,
        toks: &[Token<'_>],
        facts: RuleFacts,
        jump: Option<&str>,
    ) {
        if facts.is_invalid() || self.known.len() >= MAX_SHAPES {
            return;
        }
        let free_jump = self.free.iter().find(|(k, _)| *k == Free::Jump).map(|&(_, at)| at);
        let jump = match free_jump {
            // The full path must have read the free `-j` value as the jump.
            Some(at) => {
                if jump != Some(&*toks[at].text) {
                    return;
                }
                None
            }
            None => jump.map(Box::from),
        };
        self.known.insert(self.key.clone(), Known { facts, jump });
    }
}

/// What [`Shapes::check`] found.
pub(crate) enum Lookup<'a> {
    /// Valid by its shape.
    Hit(Shaped<'a>),
    /// A shape not seen yet: its key is kept for [`Shapes::learn`].
    Miss(Miss),
    /// Not a line the shapes handle.
    Unshaped,
}

/// A line whose shape [`Shapes::check`] has just built and not found; the only way to
/// [`Shapes::learn`], so a shape is learned from the line it was built of.
pub(crate) struct Miss(());
