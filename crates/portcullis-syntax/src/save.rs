//! iptables-save / iptables-restore files, and `iptables -S` output.

use std::collections::HashMap;

use nom::bytes::complete::{take_till1, take_while1};
use nom::character::complete::{char, digit1, space0, space1};
use nom::combinator::{map_res, opt, rest};
use nom::sequence::{delimited, separated_pair};
use nom::{IResult, Parser};
use portcullis_rules::{
    Chain, ChainName, Command, Counters, Family, ModelError, Policy, Ruleset, Table, TableName,
};

use crate::args::{Parsed, parse_args};
use crate::error::{ParseError, ParseErrorKind};
use crate::token::{Token, tokenize_into};

fn number(i: &str) -> IResult<&str, u64> {
    map_res(digit1, str::parse::<u64>).parse(i)
}

/// `[packets:bytes]`.
fn counters(i: &str) -> IResult<&str, Counters> {
    delimited(char('['), separated_pair(number, char(':'), number), char(']'))
        .map(|(packets, bytes)| Counters { packets, bytes })
        .parse(i)
}

/// `:NAME POLICY [p:b]` after the colon: name, policy word, optional counters.
fn chain_line(i: &str) -> IResult<&str, (&str, &str, Option<&str>)> {
    let (i, name) = take_till1(|c: char| c == ' ' || c == '\t').parse(i)?;
    let (i, _) = space1.parse(i)?;
    let (i, policy) = take_till1(|c: char| c == ' ' || c == '\t').parse(i)?;
    let (i, _) = space0.parse(i)?;
    let (i, ctr) = opt(take_while1(|c: char| c != ' ' && c != '\t')).parse(i)?;
    Ok((i, (name, policy, ctr)))
}

/// `[p:b] ` prefix of a rule line; returns the counters and the byte length consumed.
fn rule_prefix(line: &str) -> Result<Option<(Counters, usize)>, ()> {
    if !line.starts_with('[') {
        return Ok(None);
    }
    let parsed: IResult<&str, (Counters, &str)> = (counters, rest).parse(line);
    match parsed {
        Ok((_, (c, after))) => Ok(Some((c, line.len() - after.len()))),
        Err(_) => Err(()),
    }
}

/// A line of input with its number.
struct Line<'a> {
    no: u32,
    text: &'a str,
}

fn err(line: &Line<'_>, byte: usize, kind: ParseErrorKind) -> ParseError {
    ParseError::at(line.no, line.text, byte, kind)
}

fn tok_err(
    line: &Line<'_>,
    base: usize,
    toks: &[Token<'_>],
    at: usize,
    kind: ParseErrorKind,
) -> ParseError {
    let byte = toks.get(at).map_or(line.text.trim_end().len(), |t| base + t.offset);
    err(line, byte, kind)
}

/// Tokenizes a line, turning the tokenizer's notes into errors.
fn checked_tokens<'a>(line: &Line<'a>, base: usize) -> Result<Vec<Token<'a>>, ParseError> {
    let mut toks = Vec::with_capacity(24);
    checked_tokens_into(line, base, &mut toks)?;
    Ok(toks)
}

/// [`checked_tokens`] into a vector reused from line to line.
fn checked_tokens_into<'a>(
    line: &Line<'a>,
    base: usize,
    toks: &mut Vec<Token<'a>>,
) -> Result<(), ParseError> {
    let notes = tokenize_into(&line.text[base..], toks);
    if let Some(at) = notes.carriage_return {
        return Err(err(line, base + at, ParseErrorKind::CarriageReturn));
    }
    if let Some(at) = notes.unterminated_quote {
        return Err(err(line, base + at, ParseErrorKind::UnterminatedQuote));
    }
    Ok(())
}

fn command_chain(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Append { chain, .. }
        | Command::Insert { chain, .. }
        | Command::Replace { chain, .. }
        | Command::Delete { chain, .. }
        | Command::Policy { chain, .. } => Some(chain),
        Command::Flush(c) | Command::Zero(c) | Command::DeleteChain(c) => c.as_deref(),
        _ => None,
    }
}

fn set_origin(cmd: &mut Command, line: u32) {
    match cmd {
        Command::Append { rule, .. }
        | Command::Insert { rule, .. }
        | Command::Replace { rule, .. } => {
            rule.origin.line = line;
        }
        _ => {}
    }
}

/// A table being built, with an index from chain name to position so that appending a
/// rule costs the same in a 30,000-chain table as in a small one.
struct Building {
    table: Table,
    index: HashMap<String, usize>,
}

impl Building {
    fn new(name: TableName) -> Self {
        Self { table: Table::new(name), index: HashMap::new() }
    }

    fn reindex(&mut self) {
        self.index = self
            .table
            .chains
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str().to_owned(), i))
            .collect();
    }

    fn push_chain(&mut self, chain: Chain) {
        self.index.insert(chain.name.as_str().to_owned(), self.table.chains.len());
        self.table.chains.push(chain);
    }

    /// Adds a builtin chain the command names but the block did not declare (the kernel
    /// always has its builtin chains).
    fn ensure_builtin(&mut self, chain: &str) {
        if self.table.name.is_builtin(chain) && !self.index.contains_key(chain) {
            self.push_chain(Chain::builtin(chain, Policy::Accept));
        }
    }
}

/// Runs one parsed command on the table being built, mapping model errors to the line.
fn run(b: &mut Building, cmd: Command, line: &Line<'_>, err_byte: usize) -> Result<(), ParseError> {
    if let Some(chain) = command_chain(&cmd) {
        b.ensure_builtin(chain);
    }
    let model_err = |e: ModelError| err(line, err_byte, ParseErrorKind::from(e));
    if let Command::Append { chain, rule } = cmd {
        // The common case, on the fast path.
        return match b.index.get(chain.as_str()) {
            Some(&i) => {
                b.table.chains[i].rules.push(rule);
                Ok(())
            }
            None => Err(model_err(ModelError::new(
                portcullis_rules::ModelErrorKind::UndefinedChain(chain),
            ))),
        };
    }
    // `-N` and `-P` on their fast paths too (an `iptables -S` dump of kube-proxy's nat
    // table declares 30,000 chains: re-indexing after each was quadratic); anything
    // unusual (a chain declared twice, a policy on a user chain) takes the general path,
    // which words the error.
    match cmd {
        Command::NewChain(chain)
            if !b.index.contains_key(chain.as_str())
                && !b.table.name.is_builtin(chain.as_str()) =>
        {
            b.push_chain(Chain::user(chain));
            return Ok(());
        }
        Command::Policy { ref chain, policy, counters }
            if b.table.name.is_builtin(chain) && b.index.contains_key(chain.as_str()) =>
        {
            let c = &mut b.table.chains[b.index[chain.as_str()]];
            c.policy = Some(policy);
            if counters.is_some() {
                c.counters = counters;
            }
            return Ok(());
        }
        _ => {}
    }
    let name = b.table.name;
    let mut holder = Ruleset {
        family: Family::V4,
        tables: vec![std::mem::replace(&mut b.table, Table::new(name))],
    };
    let result = holder.execute(name, cmd);
    b.table = holder.tables.pop().expect("the table is put back");
    b.reindex();
    result.map_err(model_err)
}

/// Guesses the family of a save file: the `# Generated by ip6tables-save` header, or an
/// IPv6 address or ICMPv6 match in a rule.
pub(crate) fn sniff_family(text: &str) -> Family {
    for line in text.lines().take(2000) {
        if line.starts_with('#') {
            if line.contains("ip6tables") {
                return Family::V6;
            }
            continue;
        }
        if line.starts_with("-A") || line.starts_with('[') {
            if line.contains("ipv6-icmp") || line.contains("icmpv6") || line.contains("icmp6") {
                return Family::V6;
            }
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if matches!(w, "-s" | "-d" | "--source" | "--destination")
                    && let Some(a) = words.next()
                {
                    return if a.contains(':') { Family::V6 } else { Family::V4 };
                }
            }
        }
    }
    Family::V4
}

/// A parsed line of a restore file, handed to a consumer by [`walk`].
enum Event<'a> {
    /// `*table`.
    Table(TableName),
    /// `:NAME POLICY [p:b]`.
    ChainLine { name: &'a str, policy: &'a str, counters: Option<Counters> },
    /// A command line, and the byte where a model error about it is reported.
    Command { command: Box<Command>, err_byte: usize },
    /// `COMMIT`.
    Commit,
}

/// What one line is, decided without looking at other lines (so lines can be read in
/// parallel); [`walk`] then checks the block structure in order.
pub(crate) enum Pre<'a> {
    /// A blank line, a `#` comment or an ignored `-4`/`-6` line.
    Skip,
    /// `*table`, or the error in it.
    Table(Result<TableName, ParseError>),
    /// `COMMIT`.
    Commit,
    /// A chain line.
    Chain(Result<(&'a str, &'a str, Option<Counters>), ParseError>),
    /// A command line.
    Command(Result<(Box<Command>, usize), ParseError>),
    /// A line with only white space: blank outside a table, an empty command inside.
    Whitespace,
}

/// Classifies and parses one line (everything but the block structure). `toks` is a
/// scratch vector reused from line to line.
pub(crate) fn pre_line<'a>(
    no: u32,
    raw: &'a str,
    family: Family,
    toks: &mut Vec<Token<'a>>,
) -> Pre<'a> {
    if raw.is_empty() || raw.starts_with('#') {
        return Pre::Skip;
    }
    let line = Line { no, text: raw };
    if let Some(rest) = raw.strip_prefix('*') {
        let name = rest.split([' ', '\t']).next().unwrap_or("");
        if let Some(at) = name.find('\r') {
            return Pre::Table(Err(err(&line, 1 + at, ParseErrorKind::CarriageReturn)));
        }
        return Pre::Table(
            name.parse().map_err(|_| err(&line, 1, ParseErrorKind::UnknownTable(name.to_owned()))),
        );
    }
    // A command line's carriage return is found by the tokenizer, in the same pass.
    if !raw.starts_with('-')
        && let Some(cr) = raw.find('\r')
    {
        let e = err(&line, cr, ParseErrorKind::CarriageReturn);
        return Pre::Command(Err(e));
    }
    if raw == "COMMIT" {
        return Pre::Commit;
    }
    if raw.trim().is_empty() {
        return Pre::Whitespace;
    }
    if let Some(rest) = raw.strip_prefix(':') {
        let Ok((_, (name, policy, ctr))) = chain_line(rest) else {
            return Pre::Chain(Err(err(
                &line,
                1,
                ParseErrorKind::BadChainLine("expected `:NAME POLICY [packets:bytes]'"),
            )));
        };
        let counters = match ctr {
            None => None,
            Some(c) => match counters(c) {
                Ok(("", k)) => Some(k),
                _ => {
                    let at = raw.rfind(c).unwrap_or(0);
                    return Pre::Chain(Err(err(
                        &line,
                        at,
                        ParseErrorKind::BadCounters(c.to_owned()),
                    )));
                }
            },
        };
        return Pre::Chain(Ok((name, policy, counters)));
    }
    let (prefix, base) = match rule_prefix(raw) {
        Ok(Some((c, len))) => (Some(c), len),
        Ok(None) => (None, 0),
        Err(()) => {
            let shown = raw.split_whitespace().next().unwrap_or(raw);
            return Pre::Command(Err(err(&line, 0, ParseErrorKind::BadCounters(shown.to_owned()))));
        }
    };
    if let Err(e) = checked_tokens_into(&line, base, toks) {
        return Pre::Command(Err(e));
    }
    if toks.is_empty() {
        return Pre::Whitespace;
    }
    command_line(&line, base, prefix, toks, family)
}

/// [`pre_line`] of a command line whose tokens the caller already has: `raw` starts with
/// `-` (no `[p:b]` prefix), and `toks` is its tokenizing, which noted no carriage return
/// and no open quote.
pub(crate) fn pre_tokenized<'a>(
    no: u32,
    raw: &'a str,
    family: Family,
    toks: &[Token<'_>],
) -> Pre<'a> {
    command_line(&Line { no, text: raw }, 0, None, toks, family)
}

/// The command of a tokenized command line (after its `[p:b]` prefix of `base` bytes).
fn command_line<'a>(
    line: &Line<'a>,
    base: usize,
    prefix: Option<Counters>,
    toks: &[Token<'_>],
    family: Family,
) -> Pre<'a> {
    let Parsed { family: only, mut command, .. } = match parse_args(toks, true) {
        Ok(p) => p,
        Err((at, kind)) => return Pre::Command(Err(tok_err(line, base, toks, at, kind))),
    };
    if only.is_some_and(|f| f != family) {
        return Pre::Skip;
    }
    set_origin(&mut command, line.no);
    if let Some(c) = prefix
        && let Command::Append { rule, .. }
        | Command::Insert { rule, .. }
        | Command::Replace { rule, .. } = &mut command
    {
        rule.counters = Some(c);
    }
    let err_byte = toks.get(1).map_or(line.text.trim_end().len(), |t| base + t.offset);
    Pre::Command(Ok((Box::new(command), err_byte)))
}

/// Inputs above this size are read on several threads.
const PARALLEL_BYTES: usize = 512 * 1024;

/// Runs [`pre_line`] over every line, on up to `available_parallelism` threads for large
/// inputs, and returns the results in line order.
fn pre_lines(text: &str, family: Family) -> Vec<Pre<'_>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(8);
    let line_no = |idx: usize| u32::try_from(idx + 1).unwrap_or(u32::MAX);
    if threads < 2 || text.len() < PARALLEL_BYTES {
        let mut toks = Vec::with_capacity(24);
        return text
            .split('\n')
            .enumerate()
            .map(|(i, raw)| pre_line(line_no(i), raw, family, &mut toks))
            .collect();
    }
    // Cut the text into `threads` chunks at line ends.
    let mut cuts = vec![0];
    for k in 1..threads {
        let guess = text.len() * k / threads;
        let cut = text[guess..].find('\n').map_or(text.len(), |p| guess + p + 1);
        if cut > *cuts.last().expect("starts with 0") && cut < text.len() {
            cuts.push(cut);
        }
    }
    cuts.push(text.len());
    let chunks: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    // Each chunk but the last ends with '\n', which split() would turn into an extra
    // empty line: drop it so that line numbers stay right.
    let parts: Vec<Vec<Pre<'_>>> = std::thread::scope(|scope| {
        let mut first_line = 0usize;
        let handles: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(k, chunk)| {
                let start = first_line;
                let last = k + 1 == chunks.len();
                first_line += chunk.bytes().filter(|&b| b == b'\n').count();
                let body = if last { *chunk } else { &chunk[..chunk.len() - 1] };
                scope.spawn(move || {
                    let mut toks = Vec::with_capacity(24);
                    body.split('\n')
                        .enumerate()
                        .map(|(i, raw)| pre_line(line_no(start + i), raw, family, &mut toks))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a parsing thread does not panic")).collect()
    });
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        out.extend(p);
    }
    out
}

/// Reads restore text line by line, checks its block structure and hands each line to
/// `sink` as an [`Event`].
fn walk(
    text: &str,
    family: Family,
    mut sink: impl FnMut(&Line<'_>, Event<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut open: Option<TableName> = None;
    let mut last_no = 0;
    let raws = text.split('\n');
    for ((idx, raw), pre) in raws.enumerate().zip(pre_lines(text, family)) {
        let no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        if !raw.is_empty() {
            last_no = no;
        }
        let line = Line { no, text: raw };
        match pre {
            Pre::Skip => {}
            Pre::Table(table) => {
                if let Some(t) = open {
                    return Err(err(&line, 0, ParseErrorKind::TableInsideTable(t.to_string())));
                }
                let table = table?;
                open = Some(table);
                sink(&line, Event::Table(table))?;
            }
            Pre::Whitespace => {}
            _ if open.is_none() => {
                if let Pre::Command(Err(e)) = pre
                    && matches!(e.kind, ParseErrorKind::CarriageReturn)
                {
                    return Err(e);
                }
                return Err(err(&line, 0, ParseErrorKind::OutsideTable));
            }
            Pre::Commit => {
                open = None;
                sink(&line, Event::Commit)?;
            }
            Pre::Chain(c) => {
                let (name, policy, counters) = c?;
                sink(&line, Event::ChainLine { name, policy, counters })?;
            }
            Pre::Command(c) => {
                let (command, err_byte) = c?;
                sink(&line, Event::Command { command, err_byte })?;
            }
        }
    }
    if let Some(table) = open {
        let line = Line { no: last_no.saturating_add(1), text: "" };
        return Err(err(&line, 0, ParseErrorKind::MissingCommit { table: table.to_string() }));
    }
    Ok(())
}

/// Parses an iptables-save or iptables-restore file into the ruleset it describes, as
/// iptables-restore (without `--noflush`) would load it: every table block replaces that
/// table. The family is guessed from the file (see [`parse_save_as`]).
///
/// ```
/// let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
///             -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
/// let rs = portcullis_syntax::parse_save(text)?;
/// assert_eq!(rs.rule_count(), 1);
/// assert_eq!(portcullis_syntax::render_save(&rs, Default::default()), text);
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn parse_save(text: &str) -> Result<Ruleset, ParseError> {
    parse_save_as(text, sniff_family(text))
}

/// [`parse_save`] for a known family. Lines starting with `-4` or `-6` that name the
/// other family are skipped, as iptables-restore and ip6tables-restore do.
pub fn parse_save_as(text: &str, family: Family) -> Result<Ruleset, ParseError> {
    let mut ruleset = Ruleset::new(family);
    let mut current: Option<Building> = None;
    walk(text, family, |line, event| {
        match event {
            Event::Table(name) => current = Some(Building::new(name)),
            Event::ChainLine { name, policy, counters } => {
                let table = current.as_mut().expect("walk only sends chain lines inside a table");
                declare_chain(table, line, name, policy, counters)?;
            }
            Event::Command { command, err_byte } => {
                let table = current.as_mut().expect("walk only sends commands inside a table");
                run(table, *command, line, err_byte)?;
            }
            Event::Commit => {
                let table = current.take().expect("walk only sends COMMIT inside a table").table;
                match ruleset.tables.iter_mut().find(|t| t.name == table.name) {
                    Some(slot) => *slot = table,
                    None => ruleset.tables.push(table),
                }
            }
        }
        Ok(())
    })?;
    Ok(ruleset)
}

/// The commands of a restore file, table by table, not yet run: what
/// `iptables-restore --noflush` input is, since its commands may name chains that exist
/// only in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The family the script was read for.
    pub family: Family,
    /// One entry per `*table … COMMIT` block, in order.
    pub blocks: Vec<ScriptBlock>,
}

/// One `*table … COMMIT` block of a [`Script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptBlock {
    /// The table.
    pub table: TableName,
    /// The 1-based line of `*table`.
    pub line: u32,
    /// The commands in order, each with its line. Chain lines come as
    /// [`Command::NewChain`] (user chains) or [`Command::Policy`] (builtin chains).
    pub commands: Vec<(u32, Command)>,
}

/// Parses restore input into its commands without running them (see [`Script`]).
pub fn parse_restore(text: &str, family: Family) -> Result<Script, ParseError> {
    let mut blocks: Vec<ScriptBlock> = Vec::new();
    walk(text, family, |line, event| {
        match event {
            Event::Table(table) => {
                blocks.push(ScriptBlock { table, line: line.no, commands: Vec::new() })
            }
            Event::ChainLine { name, policy, counters } => {
                let block = blocks.last_mut().expect("walk only sends chain lines inside a table");
                let command = if block.table.is_builtin(name) {
                    match policy.parse::<Policy>() {
                        Ok(policy) => Command::Policy { chain: name.to_owned(), policy, counters },
                        Err(()) if policy == "-" => return Ok(()),
                        Err(()) => return Err(bad_policy(line, name, policy)),
                    }
                } else {
                    Command::NewChain(
                        ChainName::new(name).map_err(|e| err(line, 1, ParseErrorKind::from(e)))?,
                    )
                };
                block.commands.push((line.no, command));
            }
            Event::Command { command, .. } => {
                let block = blocks.last_mut().expect("walk only sends commands inside a table");
                block.commands.push((line.no, *command));
            }
            Event::Commit => {}
        }
        Ok(())
    })?;
    Ok(Script { family, blocks })
}

fn bad_policy(line: &Line<'_>, chain: &str, policy: &str) -> ParseError {
    let at = line.text.find(policy).unwrap_or(0);
    err(
        line,
        at,
        ParseErrorKind::from(ModelError::new(portcullis_rules::ModelErrorKind::InvalidPolicy {
            chain: chain.to_owned(),
            policy: policy.to_owned(),
        })),
    )
}

/// Declares a chain from a chain line: sets a builtin chain's policy (`-` keeps it) or
/// creates a user chain (whose policy token and counters iptables ignores).
fn declare_chain(
    b: &mut Building,
    line: &Line<'_>,
    name: &str,
    policy: &str,
    counters: Option<Counters>,
) -> Result<(), ParseError> {
    if b.table.name.is_builtin(name) {
        let policy = match policy.parse::<Policy>() {
            Ok(p) => Some(p),
            Err(()) if policy == "-" => None,
            Err(()) => return Err(bad_policy(line, name, policy)),
        };
        match b.index.get(name).map(|&i| &mut b.table.chains[i]) {
            Some(c) => {
                if let Some(p) = policy {
                    c.policy = Some(p);
                }
                c.counters = counters;
            }
            None => {
                let mut c = Chain::builtin(name, policy.unwrap_or(Policy::Accept));
                c.counters = counters;
                c.origin.line = line.no;
                b.push_chain(c);
            }
        }
    } else {
        let chain = ChainName::new(name).map_err(|e| err(line, 1, ParseErrorKind::from(e)))?;
        if b.index.contains_key(name) {
            return Err(err(
                line,
                1,
                ParseErrorKind::from(ModelError::new(
                    portcullis_rules::ModelErrorKind::ChainExists(name.to_owned()),
                )),
            ));
        }
        let mut c = Chain::user(chain);
        c.origin.line = line.no;
        b.push_chain(c);
    }
    Ok(())
}

/// Parses `iptables -S` output (`-P`, `-N`, `-A` lines, `-c P B` from `-S -v`) of one
/// table into a ruleset holding that table.
pub fn parse_rules_spec(
    text: &str,
    table: TableName,
    family: Family,
) -> Result<Ruleset, ParseError> {
    let mut t = Building::new(table);
    for (idx, raw) in text.split('\n').enumerate() {
        let no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let line = Line { no, text: raw };
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let toks = checked_tokens(&line, 0)?;
        let Parsed { command, .. } =
            parse_args(&toks, true).map_err(|(at, kind)| tok_err(&line, 0, &toks, at, kind))?;
        let err_byte = toks.get(1).map_or(0, |t| t.offset);
        run(&mut t, command, &line, err_byte)?;
    }
    Ok(Ruleset { family, tables: vec![t.table] })
}

/// Parses one rule line `-A CHAIN spec…` (optionally with a `[p:b]` prefix) and returns
/// the chain name and the rule.
pub fn parse_rule_line(
    text: &str,
    family: Family,
) -> Result<(String, portcullis_rules::Rule), ParseError> {
    let _ = family;
    let line = Line { no: 1, text };
    let (prefix, base) = match rule_prefix(text) {
        Ok(Some((c, len))) => (Some(c), len),
        Ok(None) => (None, 0),
        Err(()) => return Err(err(&line, 0, ParseErrorKind::BadCounters(text.to_owned()))),
    };
    let toks = checked_tokens(&line, base)?;
    let Parsed { command, .. } =
        parse_args(&toks, true).map_err(|(at, kind)| tok_err(&line, base, &toks, at, kind))?;
    match command {
        Command::Append { chain, mut rule } => {
            if prefix.is_some() {
                rule.counters = prefix;
            }
            Ok((chain, rule))
        }
        _ => {
            Err(err(&line, base, ParseErrorKind::NotAllowed("expected an `-A CHAIN …' rule line")))
        }
    }
}
