//! Parse + validate of save/restore text in one streaming pass, in bounded memory:
//! the verdict of [`parse_save`](crate::parse_save) followed by
//! [`portcullis_rules::validate`], without building the model.
//!
//! The text is cut into chunks at line ends; worker threads parse each chunk's lines and
//! check each rule on its own ([`portcullis_rules::rule_facts`]), and this thread folds
//! the results in line order into the block structure and one
//! [`portcullis_rules::TableCheck`] per table. A rule's memory is given back as soon as it
//! is checked, so a 16 MB kube-proxy dump is checked in a few megabytes beyond its text.
//!
//! Only a proof of validity is computed: `Some` means `parse_save` succeeds and `validate`
//! finds nothing, with the same table and rule counts (a differential test over every file
//! of the test data holds the two together). `None` means "not shown valid here": the file
//! is invalid, or uses what only the full parser runs (restore commands other than chain
//! lines and `-A`, such as `-I`, `-D`, `-R`, `-N`, `-X`, `-F`, `-Z`, `-P`, `-E`, which
//! change rules already read; an invalid table block that a later block of the same table
//! replaces). Then parse it with `parse_save` and `validate` it for the verdict and the
//! diagnostics.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use portcullis_rules::{
    ChainName, Command, Family, Policy, RuleFacts, TableCheck, TableName, rule_facts,
};

use crate::save::{Pre, pre_line, pre_tokenized, sniff_family};
use crate::shape::{Lookup, Shapes};
use crate::token::{Token, TokenNotes, tokenize_into};

/// What [`validate_save`] says of a valid file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveSummary {
    /// The family the file was read as.
    pub family: Family,
    /// The tables it holds.
    pub tables: usize,
    /// The rules in them.
    pub rules: usize,
}

/// Shows that save/restore `text` parses and validates, as `parse_save` then `validate`
/// would decide, in one streaming pass: `Some` with its size when it is valid; `None`
/// when it is not shown valid (invalid, or using what only the full parser runs: see the
/// module documentation). The family is guessed as [`parse_save`](crate::parse_save) does.
///
/// ```
/// let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
/// assert_eq!(portcullis_syntax::validate_save(text).map(|s| s.rules), Some(1));
/// let bad = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j NOWHERE\nCOMMIT\n";
/// assert_eq!(portcullis_syntax::validate_save(bad), None);
/// ```
pub fn validate_save(text: &str) -> Option<SaveSummary> {
    validate_save_as(text, sniff_family(text))
}

/// [`validate_save`] for a known family.
pub fn validate_save_as(text: &str, family: Family) -> Option<SaveSummary> {
    validate_bytes_as(text.as_bytes(), family)
}

/// [`validate_save`] of bytes that are not known to be UTF-8 yet (a mapped file, say):
/// each chunk is checked for UTF-8 on the worker that reads it, so the check costs no
/// serial pass over the text. Text that is not UTF-8 is not shown valid (`None`).
///
/// ```
/// let text = b"*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
/// assert_eq!(portcullis_syntax::validate_save_bytes(text).map(|s| s.rules), Some(1));
/// assert_eq!(portcullis_syntax::validate_save_bytes(b"*filter\n-A INPUT -j \xff\n"), None);
/// ```
pub fn validate_save_bytes(bytes: &[u8]) -> Option<SaveSummary> {
    // The family is guessed from the first 2000 lines, as `parse_save` does.
    let head = memchr::memchr_iter(b'\n', bytes).nth(1999).map_or(bytes.len(), |at| at + 1);
    let family = sniff_family(std::str::from_utf8(&bytes[..head]).ok()?);
    validate_bytes_as(bytes, family)
}

fn validate_bytes_as(text: &[u8], family: Family) -> Option<SaveSummary> {
    let chunks = chunks(text);
    let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8);
    let mut fold = Fold::new(family);
    if threads < 2 || chunks.len() < 2 {
        let (mut shapes, mut items) = (Shapes::default(), Vec::new());
        for c in &chunks {
            read_chunk(c, family, &mut shapes, &mut items)?;
            fold.items(&mut items)?;
        }
        return fold.finish();
    }
    // The workers fold too: after reading a chunk, a worker takes the fold and folds
    // every chunk that is next in line, so no third thread competes for the cores.
    // Item vectors go back to a pool once folded, so that their memory is faulted in
    // once (a fresh vector a chunk made a fifth of the run the kernel zeroing pages).
    let queue: Mutex<Queue<'_>> = Mutex::new(Queue::default());
    let folder = Mutex::new((fold, 0usize));
    let next = AtomicUsize::new(0);
    // How many chunks are folded: workers stay at most `AHEAD` chunks in front of it, so
    // that memory stays flat whatever the relative speeds.
    let folded = (Mutex::new(0usize), Condvar::new());
    let stop = AtomicBool::new(false);
    let halt = || {
        stop.store(true, Ordering::Relaxed);
        let (count, cv) = &folded;
        drop(lock(count));
        cv.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.min(chunks.len()) {
            let (next, chunks, folded, stop) = (&next, &chunks, &folded, &stop);
            let (queue, folder, halt) = (&queue, &folder, &halt);
            scope.spawn(move || {
                let mut shapes = Shapes::default();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = chunks.get(k) else { break };
                    {
                        let (count, cv) = folded;
                        let mut done = lock(count);
                        while k >= *done + AHEAD && !stop.load(Ordering::Relaxed) {
                            done = cv.wait(done).unwrap_or_else(PoisonError::into_inner);
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut buf = lock(queue).pool.pop().unwrap_or_default();
                    let items = read_chunk(c, family, &mut shapes, &mut buf).map(|()| buf);
                    let bad = items.is_none();
                    lock(queue).read.insert(k, items);
                    // Fold what is next in line: this chunk, the ones it was waiting for,
                    // or nothing. Whoever adds the chunk a gap waited for folds past it.
                    let mut f = lock(folder);
                    let (fold, taken) = &mut *f;
                    loop {
                        // (Its own statement: the queue's lock must not live on into the
                        // body, which takes it again.)
                        let ready = lock(queue).read.remove(taken);
                        let Some(items) = ready else { break };
                        let Some(mut items) = items else {
                            halt();
                            break;
                        };
                        if fold.items(&mut items).is_none() {
                            halt();
                            break;
                        }
                        lock(queue).pool.push(items);
                        *taken += 1;
                        let (count, cv) = folded;
                        *lock(count) = *taken;
                        cv.notify_all();
                    }
                    drop(f);
                    if bad {
                        break;
                    }
                }
            });
        }
    });
    let (fold, taken) = folder.into_inner().unwrap_or_else(PoisonError::into_inner);
    if stop.load(Ordering::Relaxed) || taken != chunks.len() {
        return None;
    }
    fold.finish()
}

/// Locks `m`; a poisoned lock (a worker panicked, which it does not) is taken as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Chunks read and not folded yet (`None` for a chunk not shown valid), and emptied item
/// vectors for reuse.
#[derive(Default)]
struct Queue<'a> {
    read: BTreeMap<usize, Option<Vec<Item<'a>>>>,
    pool: Vec<Vec<Item<'a>>>,
}

/// How many chunks workers may read ahead of the fold.
const AHEAD: usize = 16;

/// A piece of the text that starts at a line start, with the table in force there.
struct Chunk<'a> {
    /// Whole lines; UTF-8 is checked by the worker that reads them.
    text: &'a [u8],
    /// The table of the `*table` line last seen before the chunk, if any (`None` also
    /// when that line names no table: the fold then refuses the file anyway).
    table: Option<TableName>,
}

/// About this many bytes a chunk: small enough to keep memory flat, large enough that
/// handing chunks around costs nothing.
const CHUNK_BYTES: usize = 256 * 1024;

/// Cuts `text` into chunks at line ends, each with the table in force at its start.
fn chunks(bytes: &[u8]) -> Vec<Chunk<'_>> {
    // Table lines, found with one vectorised pass over the text: `*` is rare elsewhere.
    let mut tables: Vec<(usize, Option<TableName>)> = Vec::new();
    for at in memchr::memchr_iter(b'*', bytes) {
        if at == 0 || bytes[at - 1] == b'\n' {
            let rest = &bytes[at + 1..];
            let end = rest.iter().position(|b| matches!(b, b'\n' | b' ' | b'\t'));
            let name = std::str::from_utf8(&rest[..end.unwrap_or(rest.len())]);
            tables.push((at, name.ok().and_then(|n| n.parse().ok())));
        }
    }
    let mut out = Vec::with_capacity(bytes.len() / CHUNK_BYTES + 1);
    let mut start = 0;
    let mut t = 0;
    let mut table = None;
    while start < bytes.len() {
        let guess = (start + CHUNK_BYTES).min(bytes.len());
        let end = memchr::memchr(b'\n', &bytes[guess..]).map_or(bytes.len(), |p| guess + p + 1);
        while t < tables.len() && tables[t].0 < start {
            table = tables[t].1;
            t += 1;
        }
        out.push(Chunk { text: &bytes[start..end], table });
        start = end;
    }
    out
}

/// One line, read and (for a rule) checked on its own.
enum Item<'a> {
    /// `*table`.
    Table(TableName),
    /// `COMMIT`.
    Commit,
    /// A chain line, checked on its own (see [`chain_item`]): its name and whether it
    /// names a builtin chain of the table.
    Chain { name: &'a str, builtin: bool },
    /// An `-A` line: its chain, the chain it jumps or goes to, and what its check found.
    Rule { chain: Cow<'a, str>, jump: Option<Cow<'a, str>>, facts: RuleFacts },
}

/// Reads a chunk's lines; `None` when one of them is refused or is a command the stream
/// does not run.
fn read_chunk<'a>(
    chunk: &Chunk<'a>,
    family: Family,
    shapes: &mut Shapes,
    items: &mut Vec<Item<'a>>,
) -> Option<()> {
    let mut table = chunk.table;
    // Cut at line ends, so each chunk is UTF-8 exactly when the whole text is.
    let text = std::str::from_utf8(chunk.text).ok()?;
    items.clear();
    let mut toks = Vec::with_capacity(24);
    let bytes = text.as_bytes();
    let mut start = 0;
    let lines = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    for end in lines {
        let raw = &text[start..end];
        start = end + 1;
        // A rule of a shape already shown valid is checked by its free values alone; a
        // rule of a new shape keeps its tokens and its shape for the full path.
        let mut tokenized = false;
        let mut miss = None;
        if let Some(t) = table
            && raw.starts_with("-A ")
            && tokenize_into(raw, &mut toks) == TokenNotes::default()
        {
            tokenized = true;
            match shapes.check(t, family, &toks) {
                Lookup::Hit(s) => {
                    #[cfg(debug_assertions)]
                    same_as_full_path(raw, t, family, &s);
                    items.push(Item::Rule { chain: s.chain, jump: s.jump, facts: s.facts });
                    continue;
                }
                Lookup::Miss(m) => miss = Some(m),
                Lookup::Unshaped => {}
            }
        }
        if let Some((name, policy)) = plain_chain_line(raw) {
            #[cfg(debug_assertions)]
            if let Pre::Chain(Ok((n, p, _))) = pre_line(1, raw, family, &mut Vec::new()) {
                assert_eq!((name, policy), (n, p), "{raw}");
            } else {
                panic!("the plain chain line reader accepted what the parser refuses: {raw}");
            }
            items.push(chain_item(table, name, policy)?);
            continue;
        }
        // Line numbers only serve diagnostics, which the full parser gives.
        let pre = if tokenized {
            pre_tokenized(1, raw, family, &toks)
        } else {
            pre_line(1, raw, family, &mut toks)
        };
        let item = match pre {
            Pre::Skip | Pre::Whitespace => continue,
            Pre::Table(t) => {
                let t = t.ok()?;
                table = Some(t);
                Item::Table(t)
            }
            Pre::Commit => Item::Commit,
            Pre::Chain(c) => {
                let (name, policy, _) = c.ok()?;
                chain_item(table, name, policy)?
            }
            Pre::Command(c) => match &*c.ok()?.0 {
                Command::Append { chain, rule } => {
                    let (facts, jump) = rule_facts(table?, family, chain, rule);
                    if facts.is_invalid() {
                        return None;
                    }
                    if let Some(m) = miss {
                        shapes.learn(m, &toks, facts, jump);
                    }
                    // The names, borrowed from the text when they were written bare (the
                    // model's copies are freed here, on this thread).
                    Item::Rule {
                        chain: from_line(&toks, chain),
                        jump: jump.map(|j| from_line(&toks, j)),
                        facts,
                    }
                }
                _ => return None,
            },
        };
        items.push(item);
    }
    Some(())
}

/// The invariant of [`crate::shape`], checked on every line the shapes accept in debug
/// builds: the full path finds the same chain, jump and facts.
#[cfg(debug_assertions)]
fn same_as_full_path(raw: &str, table: TableName, family: Family, s: &crate::shape::Shaped<'_>) {
    let mut toks = Vec::new();
    let Pre::Command(Ok((cmd, _))) = pre_line(1, raw, family, &mut toks) else {
        panic!("a rule shape accepted a line the full path refuses: {raw}");
    };
    let Command::Append { chain, rule } = &*cmd else {
        panic!("a rule shape accepted a line that is not -A: {raw}");
    };
    let (facts, jump) = rule_facts(table, family, chain, rule);
    assert_eq!(
        (chain.as_str(), jump, facts),
        (&*s.chain, s.jump.as_deref(), s.facts),
        "a rule shape disagrees with the full path on: {raw}"
    );
}

/// A chain line in its plain form, `:NAME POLICY [P:B]` with single spaces, read without
/// the parser (a kube-proxy dump has tens of thousands); `None` for anything else, which
/// `pre_line` reads. What `pre_line` accepts of these lines, exactly: its words, counters
/// of two decimal `u64`s, and whatever follows them (ignored, as there).
fn plain_chain_line(raw: &str) -> Option<(&str, &str)> {
    let rest = raw.strip_prefix(':')?;
    if rest.bytes().any(|b| matches!(b, b'\t' | b'\r')) || rest.starts_with(' ') {
        return None;
    }
    let mut words = rest.split(' ');
    let name = words.next().filter(|n| !n.is_empty())?;
    let policy = words.next().filter(|p| !p.is_empty())?;
    if let Some(c) = words.next().filter(|c| !c.is_empty()) {
        let (p, b) = c.strip_prefix('[')?.strip_suffix(']')?.split_once(':')?;
        // Digits only (`parse` would take a `+`), and within `u64`.
        let number = |n: &str| n.bytes().all(|d| d.is_ascii_digit()) && n.parse::<u64>().is_ok();
        if !number(p) || !number(b) {
            return None;
        }
    } else if rest.len() > name.len() + 1 + policy.len() {
        // More spaces after the policy: leave that to the parser.
        return None;
    }
    Some((name, policy))
}

/// A chain line of `table` checked on its own, on the worker: a builtin chain's policy, a
/// user chain's name. `None` when it is refused (or no table is open: the fold refuses
/// that line too).
fn chain_item<'a>(table: Option<TableName>, name: &'a str, policy: &str) -> Option<Item<'a>> {
    let builtin = table?.is_builtin(name);
    let ok = if builtin {
        policy == "-" || policy.parse::<Policy>().is_ok()
    } else {
        ChainName::is_valid(name)
    };
    ok.then_some(Item::Chain { name, builtin })
}

/// `name` as a slice of the line when a bare token of the line spells it.
fn from_line<'a>(toks: &[Token<'a>], name: &str) -> Cow<'a, str> {
    toks.iter()
        .find_map(|t| match &t.text {
            Cow::Borrowed(s) if *s == name => Some(Cow::Borrowed(*s)),
            _ => None,
        })
        .unwrap_or_else(|| Cow::Owned(name.to_owned()))
}

/// The block structure and the tables, folded in line order.
struct Fold {
    family: Family,
    open: Option<(TableName, TableCheck)>,
    /// Each table's rule count when its last block was valid.
    done: BTreeMap<TableName, usize>,
}

impl Fold {
    fn new(family: Family) -> Self {
        Self { family, open: None, done: BTreeMap::new() }
    }

    /// Folds `items` in, leaving the vector empty for reuse.
    fn items(&mut self, items: &mut Vec<Item<'_>>) -> Option<()> {
        for item in items.drain(..) {
            match item {
                Item::Table(t) => {
                    if self.open.is_some() {
                        return None;
                    }
                    self.open = Some((t, TableCheck::new(t)));
                }
                Item::Commit => {
                    let (t, check) = self.open.take()?;
                    // A later block of the same table replaces this one, as in the kernel.
                    self.done.insert(t, check.finish()?);
                }
                Item::Chain { name, builtin } => {
                    let (_, check) = self.open.as_mut()?;
                    if !check.declare(name, builtin) {
                        return None;
                    }
                }
                Item::Rule { chain, jump, facts } => {
                    let (_, check) = self.open.as_mut()?;
                    if !check.append(&chain, jump.as_deref(), facts) {
                        return None;
                    }
                }
            }
        }
        Some(())
    }

    fn finish(self) -> Option<SaveSummary> {
        if self.open.is_some() {
            return None;
        }
        Some(SaveSummary {
            family: self.family,
            tables: self.done.len(),
            rules: self.done.values().sum(),
        })
    }
}
