//! The error of evaluation: a ruleset the evaluator cannot run.

use std::fmt;

/// Why a ruleset cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// The 1-based line of the offending rule in its source (0 when unknown).
    pub line: u32,
    /// What went wrong.
    pub kind: EvalErrorKind,
}

/// The kinds of [`EvalError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalErrorKind {
    /// A match or target whose options the model refuses (the model's message).
    BadModule(String),
    /// `-j`/`-g` names a chain that does not exist.
    NoSuchChain(String),
    /// Jumps nest deeper than the kernel allows (a loop).
    Loop(String),
    /// Uncertain matches forked more paths than the evaluator follows.
    TooManyPaths(usize),
}

impl EvalError {
    pub(crate) fn new(line: u32, kind: EvalErrorKind) -> Self {
        Self { line, kind }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line != 0 {
            write!(f, "line {}: ", self.line)?;
        }
        match &self.kind {
            EvalErrorKind::BadModule(m) => write!(f, "{m}"),
            EvalErrorKind::NoSuchChain(c) => write!(f, "no chain called `{c}'"),
            EvalErrorKind::Loop(c) => write!(f, "jumps nest too deep (a loop through `{c}')"),
            EvalErrorKind::TooManyPaths(n) => write!(
                f,
                "more than {n} possible paths (uncertain matches fork the evaluation); \
                 give a source and destination address"
            ),
        }
    }
}

impl std::error::Error for EvalError {}
