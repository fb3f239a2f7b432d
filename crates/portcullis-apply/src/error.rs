//! Errors: what iptables-restore said (parsed from its stderr, `applying.md` §1.6), and
//! everything else that can stop an apply.

use std::fmt;

use portcullis_rules::{ModelError, TableName};

/// What an `iptables-restore` failure was, parsed from its message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// A parameter or parse error (`unknown option "--dprot"`, ``Couldn't load target
    /// `X'``, `Chain 'X' does not exist`), followed by `Error occurred at line: N`. Exit 2.
    Parameter {
        /// The message, without the program prefix.
        message: String,
    },
    /// The kernel refused a rule at commit time (nft: `line 7: RULE_APPEND failed (Too
    /// many links): rule in chain B`). Exit 4.
    Kernel {
        /// The netlink operation (`RULE_APPEND`, `CHAIN_USER_ADD`, …).
        operation: String,
        /// The errno text (`Too many links`).
        reason: String,
        /// What follows, when given (`rule in chain B`).
        detail: String,
    },
    /// `line N failed` (legacy: the kernel refused the table at COMMIT, no reason given;
    /// nft: a command such as `-D` of a missing rule, with a reason).
    LineFailed {
        /// The reason, when given.
        reason: Option<String>,
    },
    /// `COMMIT expected at line N`: the input ended inside a table.
    CommitExpected,
    /// The table name was refused (`unable to initialize table 'x'`, `table name 'x'
    /// invalid`).
    BadTable(String),
    /// The xtables lock was held by another process for longer than `-w` allowed.
    LockBusy {
        /// The seconds waited, when the message says.
        waited_secs: Option<u32>,
    },
    /// The tool could not be started.
    Spawn(String),
    /// Any other message.
    Other(String),
}

/// An `iptables-restore` failure: exit code, parsed message, the line of the restore input
/// it blames (when it names one), and the raw stderr for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreFailure {
    /// The exit code (1 other, 2 parameter, 4 resource), `None` when killed by a signal.
    pub status: Option<i32>,
    /// What went wrong.
    pub kind: FailureKind,
    /// The 1-based line of the restore input the tool named.
    pub line: Option<u32>,
    /// The tool's stderr as it was.
    pub stderr: String,
}

fn number_after<'a>(s: &'a str, prefix: &str) -> Option<(u32, &'a str)> {
    let at = s.find(prefix)? + prefix.len();
    let rest = &s[at..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let n = rest[..end].parse().ok()?;
    Some((n, &rest[end..]))
}

/// The text after the `PROGRAM vX.Y.Z (backend): ` or `PROGRAM: ` prefix of a message.
fn strip_program(line: &str) -> &str {
    if let Some(i) = line.find("): ")
        && line[..i].contains(" v")
    {
        return &line[i + 3..];
    }
    if let Some(i) = line.find(": ")
        && line[..i].contains("tables")
        && !line[..i].contains(' ')
    {
        return &line[i + 2..];
    }
    line
}

impl RestoreFailure {
    pub(crate) fn spawn(e: &ApplyError) -> Self {
        Self {
            status: None,
            kind: FailureKind::Spawn(e.to_string()),
            line: None,
            stderr: String::new(),
        }
    }

    /// Parses the stderr of a failed `iptables-restore` (every shape of `applying.md`
    /// §1.6, both backends).
    pub fn parse(status: Option<i32>, stderr: &str) -> Self {
        let text = stderr.trim();
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        let mut line = None;
        let kind = if text.contains("holding the xtables lock") || text.contains("Can't lock") {
            FailureKind::LockBusy {
                waited_secs: number_after(text, "Stopped waiting after ").map(|(n, _)| n),
            }
        } else if let Some((n, _)) = number_after(text, "Error occurred at line: ") {
            line = Some(n);
            let first = lines.first().copied().unwrap_or("");
            let message = strip_program(first).trim().to_owned();
            if let Some(t) = quoted_after(&message, "unable to initialize table ") {
                FailureKind::BadTable(t)
            } else {
                FailureKind::Parameter { message }
            }
        } else if let Some(k) = lines.iter().find_map(|l| kernel_error(l)) {
            line = Some(k.0);
            k.1
        } else if let Some((n, _)) = number_after(text, "COMMIT expected at line ") {
            line = Some(n);
            FailureKind::CommitExpected
        } else if let Some((n, rest)) = lines.iter().find_map(|l| number_after(l, "line ")) {
            line = Some(n);
            let rest = rest.trim();
            if let Some(t) = quoted_after(rest, "table name ") {
                FailureKind::BadTable(t)
            } else if let Some(r) = rest.strip_prefix("failed") {
                let r = r.trim_start_matches(':').trim().trim_end_matches('.');
                FailureKind::LineFailed { reason: (!r.is_empty()).then(|| r.to_owned()) }
            } else {
                FailureKind::Other(rest.to_owned())
            }
        } else if let Some(t) = quoted_after(text, "unable to initialize table ") {
            FailureKind::BadTable(t)
        } else {
            FailureKind::Other(lines.first().map_or(String::new(), |l| strip_program(l).to_owned()))
        };
        Self { status, kind, line, stderr: stderr.to_owned() }
    }

    /// Whether the failure happened before the kernel was touched at all for this input
    /// (a parse or lock error: nothing from this input was committed by a later table).
    pub fn is_lock(&self) -> bool {
        matches!(self.kind, FailureKind::LockBusy { .. })
    }
}

/// `line N: OP failed (REASON): DETAIL`.
fn kernel_error(l: &str) -> Option<(u32, FailureKind)> {
    let (n, rest) = number_after(l, "line ")?;
    let rest = rest.strip_prefix(": ")?;
    let (op, rest) = rest.split_once(" failed (")?;
    let (reason, detail) = rest.split_once(')')?;
    if op.is_empty() || !op.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return None;
    }
    Some((
        n,
        FailureKind::Kernel {
            operation: op.to_owned(),
            reason: reason.to_owned(),
            detail: detail.trim_start_matches(':').trim().to_owned(),
        },
    ))
}

/// The name in `'x'` or `` `x' `` right after `prefix`.
fn quoted_after(s: &str, prefix: &str) -> Option<String> {
    let at = s.find(prefix)? + prefix.len();
    let rest = s[at..].trim_start_matches(['\'', '`', '"']);
    let end = rest.find(['\'', '`', '"']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The token a parameter message complains about (`"--dprot"`, `` `X' ``, `'X'`), to
/// place a column on the user's line.
pub(crate) fn blamed_token(message: &str) -> Option<String> {
    for (open, close) in [('"', '"'), ('`', '\''), ('\'', '\'')] {
        if let Some(i) = message.find(open) {
            let rest = &message[i + 1..];
            if let Some(j) = rest.find(close) {
                let tok = &rest[..j];
                if !tok.is_empty() {
                    return Some(tok.to_owned());
                }
            }
        }
    }
    None
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parameter { message } => f.write_str(message),
            Self::Kernel { operation, reason, detail } => {
                write!(f, "the kernel refused {operation} ({reason})")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            Self::LineFailed { reason: Some(r) } => write!(f, "failed: {r}"),
            Self::LineFailed { reason: None } => f.write_str(
                "the kernel refused the table at COMMIT (legacy iptables gives no reason)",
            ),
            Self::CommitExpected => f.write_str("COMMIT expected"),
            Self::BadTable(t) => write!(f, "table `{t}' refused"),
            Self::LockBusy { waited_secs: Some(s) } => {
                write!(f, "another process held the xtables lock; gave up after {s}s")
            }
            Self::LockBusy { waited_secs: None } => {
                f.write_str("another process holds the xtables lock")
            }
            Self::Spawn(e) => write!(f, "cannot run iptables-restore: {e}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl fmt::Display for RestoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iptables-restore")?;
        if let Some(l) = self.line {
            write!(f, " (input line {l})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for RestoreFailure {}

/// A place in the user's file: line, column and the line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column in characters.
    pub column: u32,
    /// The line's text (empty when the text is not known).
    pub source_line: String,
}

/// A restore failure placed in the user's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The failure as iptables-restore reported it.
    pub failure: RestoreFailure,
    /// The table whose block failed, when known.
    pub table: Option<TableName>,
    /// Where in the user's file, when the failing input line came from one.
    pub span: Option<Span>,
    /// Which tables were rolled back to their snapshot after the failure.
    pub rolled_back: Vec<TableName>,
}

impl Rejected {
    /// Renders like a compiler diagnostic (the shape of `ParseError::render`), followed by
    /// iptables-restore's own words. `source` is the text of the user's file, for the
    /// quoted line and the column of the token iptables-restore blamed.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = format!("error: {}\n", self.failure.kind);
        let span = self.span.as_ref().map(|s| placed(s, source, &self.failure.kind));
        if let Some(s) = &span {
            let num = s.line.to_string();
            let pad = " ".repeat(num.len());
            out.push_str(&format!("{pad}--> {file}:{}:{}\n", s.line, s.column));
            if !s.source_line.is_empty() {
                let caret = " ".repeat(s.column.saturating_sub(1) as usize);
                let shown = s.source_line.replace('\t', " ");
                out.push_str(&format!("{pad} |\n{num} | {shown}\n{pad} | {caret}^\n"));
            }
        } else if let Some(t) = self.table {
            out.push_str(&format!(" --> {file}: table {t}\n"));
        }
        for l in self.failure.stderr.lines().filter(|l| !l.trim().is_empty()) {
            out.push_str(&format!("  = iptables-restore: {}\n", l.trim_end()));
        }
        if !self.rolled_back.is_empty() {
            let names: Vec<&str> = self.rolled_back.iter().map(|t| t.as_str()).collect();
            out.push_str(&format!(
                "  = note: nothing changed: the table(s) {} already committed were restored\n",
                names.join(", ")
            ));
        }
        out
    }
}

/// The span with its line's text and the column of the blamed token filled in.
fn placed(span: &Span, source: &str, kind: &FailureKind) -> Span {
    let text = source.lines().nth((span.line as usize).saturating_sub(1)).unwrap_or("");
    let byte = blamed_token(&kind.to_string())
        .and_then(|tok| text.find(tok.as_str()))
        .unwrap_or_else(|| text.len() - text.trim_start().len());
    let column = u32::try_from(text[..byte].chars().count()).unwrap_or(0) + 1;
    Span { line: span.line, column, source_line: text.to_owned() }
}

/// Everything that can stop an apply, a save or a confirmation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The model refused the ruleset before the kernel was touched.
    #[error("the ruleset is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ModelError>),
    /// The lock-out guard refused the ruleset.
    #[error("refusing to apply: {0}")]
    LockOut(String),
    /// iptables-restore refused the input; every table is as it was before.
    #[error("{}", .0.failure)]
    Rejected(Box<Rejected>),
    /// iptables-restore refused the input, and restoring the snapshot failed too.
    #[error("{}; and restoring the snapshot failed: {revert}", failure.failure)]
    RevertFailed {
        /// The first failure.
        failure: Box<Rejected>,
        /// The failure of the revert.
        revert: RestoreFailure,
    },
    /// Both backends hold rules (or would after the apply); portcullis never mixes them.
    #[error(
        "the nft and the legacy backend would both hold rules in {0}; portcullis never mixes them: flush one first"
    )]
    MixedBackends(String),
    /// A tool could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{program} failed (exit {}): {}", status.map_or("signal".to_owned(), |s| s.to_string()), stderr.trim())]
    Tool {
        /// The program.
        program: String,
        /// Its exit code.
        status: Option<i32>,
        /// Its stderr.
        stderr: String,
    },
    /// The kernel's ruleset could not be read back.
    #[error("cannot read the kernel's ruleset back: {0}")]
    Readback(Box<portcullis_syntax::ParseError>),
    /// Another portcullis apply holds the namespace.
    #[error("another portcullis apply holds {0}")]
    Busy(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A confirmation problem (nothing pending, same connection…).
    #[error("{0}")]
    Confirm(String),
    /// The journal of an earlier apply that died mid-apply could not be restored.
    #[error("{0}")]
    Journal(String),
}

impl ApplyError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rc: i32, s: &str) -> RestoreFailure {
        RestoreFailure::parse(Some(rc), s)
    }

    #[test]
    fn parameter_error_both_backends() {
        for b in ["legacy", "nf_tables"] {
            let f = parse(
                2,
                &format!(
                    "iptables-restore v1.8.9 ({b}): unknown option \"--dprot\"\nError occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n"
                ),
            );
            assert_eq!(f.line, Some(3));
            assert_eq!(
                f.kind,
                FailureKind::Parameter { message: "unknown option \"--dprot\"".into() }
            );
            assert_eq!(blamed_token("unknown option \"--dprot\"").as_deref(), Some("--dprot"));
        }
    }

    #[test]
    fn undefined_target_shapes() {
        let l = parse(
            2,
            "iptables-restore v1.8.9 (legacy): Couldn't load target `NOSUCHCHAIN':No such file or directory\n\nError occurred at line: 5\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
        );
        assert_eq!(l.line, Some(5));
        assert_eq!(blamed_token(&l.kind.to_string()).as_deref(), Some("NOSUCHCHAIN"));
        let n = parse(
            2,
            "iptables-nft-restore v1.8.9 (nf_tables): Chain 'NOSUCHCHAIN' does not exist\nError occurred at line: 9\nTry `iptables-nft-restore -h' or 'iptables-nft-restore --help' for more information.\n",
        );
        assert_eq!(n.line, Some(9));
        assert_eq!(blamed_token(&n.kind.to_string()).as_deref(), Some("NOSUCHCHAIN"));
    }

    #[test]
    fn kernel_and_commit_shapes() {
        let k = parse(
            4,
            "iptables-nft-restore v1.8.9 (nf_tables): \nline 7: RULE_APPEND failed (Too many links): rule in chain B\n",
        );
        assert_eq!(k.line, Some(7));
        assert_eq!(
            k.kind,
            FailureKind::Kernel {
                operation: "RULE_APPEND".into(),
                reason: "Too many links".into(),
                detail: "rule in chain B".into()
            }
        );
        let l = parse(1, "iptables-restore: line 8 failed\n");
        assert_eq!((l.line, l.kind), (Some(8), FailureKind::LineFailed { reason: None }));
        let d = parse(
            1,
            "iptables-nft-restore: line 2 failed: Bad rule (does a matching rule exist in that chain?).\n",
        );
        assert_eq!(d.line, Some(2));
        assert!(
            matches!(d.kind, FailureKind::LineFailed { reason: Some(ref r) } if r.starts_with("Bad rule"))
        );
        let c = parse(1, "iptables-restore: COMMIT expected at line 4\n");
        assert_eq!((c.line, c.kind), (Some(4), FailureKind::CommitExpected));
    }

    #[test]
    fn table_and_lock_shapes() {
        let n = parse(2, "iptables-nft-restore: line 1 table name 'filtr' invalid\n");
        assert_eq!((n.line, n.kind), (Some(1), FailureKind::BadTable("filtr".into())));
        let l = parse(
            2,
            "iptables-restore v1.8.9 (legacy): unable to initialize table 'filtr'\n\nError occurred at line: 1\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
        );
        assert_eq!((l.line, l.kind), (Some(1), FailureKind::BadTable("filtr".into())));
        let k = parse(
            4,
            "Can't lock /run/xtables.lock: Resource temporarily unavailable\nAnother app is currently holding the xtables lock. Stopped waiting after 1s.\n",
        );
        assert_eq!(k.kind, FailureKind::LockBusy { waited_secs: Some(1) });
        let k = parse(
            4,
            "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?\n",
        );
        assert!(k.is_lock());
    }
}
