//! Parse errors with line, column and a compiler-style rendering.

use std::fmt;

use portcullis_rules::ModelError;

/// An error in iptables text, placed at a line and column of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (physical lines, comments and blank lines included).
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// The text of the offending line, for rendering.
    pub source_line: String,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A `"` that is never closed. iptables-restore would swallow the rest of the line,
    /// newline included.
    UnterminatedQuote,
    /// A carriage return: the file has CRLF line ends, which iptables-restore refuses with
    /// confusing messages.
    CarriageReturn,
    /// The input ended inside a table block.
    MissingCommit {
        /// The open table.
        table: String,
    },
    /// `*name` with a name that is not a table.
    UnknownTable(String),
    /// A rule, chain line or COMMIT outside a `*table` block.
    OutsideTable,
    /// `*table` while another table block is open.
    TableInsideTable(String),
    /// A token that makes no sense where it stands (iptables: "Bad argument").
    BadArgument(String),
    /// An option iptables does not know here.
    UnknownOption(String),
    /// An option written before the module that takes it is loaded (by a later `-m`, or
    /// implicitly by a later `-p`): iptables refuses it there, and read again after
    /// printing, where `-p` and the matches come first, it would move to that module.
    OptionBeforeItsModule {
        /// The option, with its dashes.
        option: String,
        /// The module that takes it.
        module: String,
    },
    /// An option lacks its argument.
    MissingArgument(String),
    /// A line gives no command (`-A`, `-I`, …).
    NoCommand,
    /// Two commands on one line.
    TwoCommands,
    /// `!` where it cannot stand (twice, or before `-m`/`-j`).
    BadNegation(&'static str),
    /// A malformed `[packets:bytes]` or `-c` value.
    BadCounters(String),
    /// A malformed chain line (`:NAME POLICY [p:b]`).
    BadChainLine(&'static str),
    /// `-t` inside a restore file, where the table is already set.
    TableOption,
    /// A command that is not allowed in this kind of input.
    NotAllowed(&'static str),
    /// The model refused a value (bad address, invalid chain name, undefined chain…).
    Model(Box<ModelError>),
    /// Input that is not in any format portcullis reads.
    UnknownFormat,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnterminatedQuote => f.write_str("unterminated quote"),
            Self::CarriageReturn => {
                f.write_str("carriage return (CRLF line ends); iptables-restore refuses them")
            }
            Self::MissingCommit { table } => {
                write!(f, "table {table} is not closed: COMMIT expected")
            }
            Self::UnknownTable(t) => write!(f, "unknown table `{t}'"),
            Self::OutsideTable => {
                f.write_str("outside a table: `*filter' (or another table) expected first")
            }
            Self::TableInsideTable(t) => {
                write!(f, "`*{t}' inside an open table: COMMIT expected first")
            }
            Self::BadArgument(a) => write!(f, "bad argument `{a}'"),
            Self::UnknownOption(o) => write!(f, "unknown option `{o}'"),
            Self::OptionBeforeItsModule { option, module } => write!(
                f,
                "unknown option `{option}' here: it belongs to module `{module}', loaded only after it (by a later -m or -p)"
            ),
            Self::MissingArgument(o) => write!(f, "option `{o}' requires an argument"),
            Self::NoCommand => f.write_str("no command given (expected -A, -I, -N, -P, …)"),
            Self::TwoCommands => f.write_str("only one command per line"),
            Self::BadNegation(why) => write!(f, "misplaced `!': {why}"),
            Self::BadCounters(c) => write!(f, "bad counters `{c}': expected [packets:bytes]"),
            Self::BadChainLine(why) => write!(f, "bad chain line: {why}"),
            Self::TableOption => f.write_str("`-t' is not allowed inside a table block"),
            Self::NotAllowed(what) => write!(f, "{what}"),
            Self::Model(e) => write!(f, "{}", e.kind),
            Self::UnknownFormat => f.write_str("not iptables-save, -S, command script or -L text"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)
    }
}

impl std::error::Error for ParseError {}

impl From<ModelError> for ParseErrorKind {
    fn from(e: ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

impl ParseError {
    /// Builds an error at a byte offset of `line_text`.
    pub(crate) fn at(line: u32, line_text: &str, byte: usize, kind: ParseErrorKind) -> Self {
        let byte = byte.min(line_text.len());
        let prefix = line_text.get(..byte).unwrap_or(line_text);
        let column = u32::try_from(prefix.chars().count()).unwrap_or(u32::MAX).saturating_add(1);
        Self { line, column, kind, source_line: line_text.trim_end_matches('\n').to_owned() }
    }

    /// Renders the error like a compiler diagnostic:
    ///
    /// ```text
    /// error: bad argument `foo'
    ///  --> rules.v4:7:18
    ///   |
    /// 7 | -A INPUT -p tcp foo -j ACCEPT
    ///   |                 ^
    /// ```
    pub fn render(&self, file: &str) -> String {
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        let shown: String = self.source_line.replace('\r', "\u{240d}").replace('\t', " ");
        let caret_pad = " ".repeat(self.column.saturating_sub(1) as usize);
        format!(
            "error: {kind}\n{pad}--> {file}:{line}:{col}\n{pad} |\n{num} | {shown}\n{pad} | {caret_pad}^\n",
            kind = self.kind,
            line = self.line,
            col = self.column,
        )
    }
}
