//! Shell scripts of iptables commands, as people write them and as the seed article shows
//! them (`iptables -P INPUT DROP`, `# iptables -A INPUT -p tcp --dport 22 -j ACCEPT`), run
//! against an empty model to get the ruleset they would build.

use portcullis_rules::{Command, Family, Ruleset, TableName};

use crate::args::{Parsed, parse_args};
use crate::error::{ParseError, ParseErrorKind};
use crate::token::Token;

/// The rulesets a script builds, and what was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// What the `iptables` commands built.
    pub v4: Ruleset,
    /// What the `ip6tables` commands built.
    pub v6: Ruleset,
    /// Lines that were not iptables commands or only read the ruleset (`iptables -L`),
    /// with their line numbers: passed over, never guessed at.
    pub skipped: Vec<(u32, String)>,
}

/// Whether a command word names iptables, and which family.
fn command_family(word: &str) -> Option<Family> {
    let base = word.rsplit('/').next().unwrap_or(word);
    match base {
        "iptables" | "iptables-nft" | "iptables-legacy" => Some(Family::V4),
        "ip6tables" | "ip6tables-nft" | "ip6tables-legacy" => Some(Family::V6),
        _ => None,
    }
}

/// Strips a shell prompt (`# `, `$ `, `root@host:~# `) and `sudo`.
fn strip_prompt(line: &str) -> (&str, usize) {
    let trimmed = line.trim_start();
    let mut offset = line.len() - trimmed.len();
    let mut rest = trimmed;
    for prompt in ["# ", "$ ", "#", "$"] {
        if let Some(r) = rest.strip_prefix(prompt) {
            let r2 = r.trim_start();
            offset += rest.len() - r2.len();
            rest = r2;
            break;
        }
    }
    if let Some(r) = rest.strip_prefix("sudo ") {
        let r2 = r.trim_start();
        offset += rest.len() - r2.len();
        rest = r2;
    }
    (rest, offset)
}

/// Splits one shell command line into words, POSIX style: single quotes are literal,
/// double quotes allow `\"`, `\\`, `\$` and `` \` ``, a backslash outside quotes escapes
/// the next character, `#` at the start of a word begins a comment, and `;`, `&&`, `||`
/// end a command. Returns the commands' words with byte offsets.
fn shell_words(line: &str) -> Result<Vec<Vec<Token<'static>>>, usize> {
    let mut commands = vec![Vec::new()];
    let mut cur = String::new();
    let mut start: Option<usize> = None;
    let mut quoted = false;
    let mut chars = line.char_indices().peekable();
    let flush = |cur: &mut String,
                 start: &mut Option<usize>,
                 quoted: &mut bool,
                 cmds: &mut Vec<Vec<Token<'static>>>| {
        if let Some(s) = start.take() {
            cmds.last_mut().expect("one command").push(Token {
                text: std::borrow::Cow::Owned(std::mem::take(cur)),
                quoted: *quoted,
                offset: s,
            });
        }
        *quoted = false;
    };
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut cur, &mut start, &mut quoted, &mut commands),
            '#' if start.is_none() => break,
            ';' => {
                flush(&mut cur, &mut start, &mut quoted, &mut commands);
                commands.push(Vec::new());
            }
            '&' | '|' if chars.peek().is_some_and(|(_, n)| *n == c) => {
                chars.next();
                flush(&mut cur, &mut start, &mut quoted, &mut commands);
                commands.push(Vec::new());
            }
            '\'' => {
                start.get_or_insert(i);
                quoted = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => cur.push(ch),
                        None => return Err(i),
                    }
                }
            }
            '"' => {
                start.get_or_insert(i);
                quoted = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, ch @ ('"' | '\\' | '$' | '`'))) => cur.push(ch),
                            Some((_, ch)) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(i),
                        },
                        Some((_, ch)) => cur.push(ch),
                        None => return Err(i),
                    }
                }
            }
            '\\' => {
                start.get_or_insert(i);
                if let Some((_, ch)) = chars.next() {
                    cur.push(ch);
                }
            }
            _ => {
                start.get_or_insert(i);
                cur.push(c);
            }
        }
    }
    flush(&mut cur, &mut start, &mut quoted, &mut commands);
    commands.retain(|c| !c.is_empty());
    Ok(commands)
}

/// Options that only read the ruleset; a script line using them changes nothing.
fn is_read_only(toks: &[Token<'_>]) -> bool {
    toks.iter().any(|t| {
        !t.quoted
            && (matches!(
                &*t.text,
                "--list" | "--list-rules" | "--check" | "--version" | "--help" | "-h" | "-V"
            ) || (t.text.starts_with('-')
                && !t.text.starts_with("--")
                && matches!(t.text.as_bytes().get(1), Some(b'L' | b'S' | b'C'))))
    })
}

/// Whether `text` looks like a script of iptables commands.
pub(crate) fn looks_like_script(text: &str) -> bool {
    text.lines().any(|l| {
        let (rest, _) = strip_prompt(l);
        rest.split_whitespace().next().and_then(command_family).is_some()
    })
}

/// Runs the iptables commands of a shell script against empty rulesets, as the kernel
/// would execute them on a machine with no rules, and returns what they build. Tables
/// come into being with their builtin chains (policy ACCEPT) when a command first uses
/// them.
///
/// ```
/// let script = "iptables -P INPUT DROP\niptables -F\n\
///               # iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n";
/// let out = portcullis_syntax::parse_script(script)?;
/// assert_eq!(out.v4.rule_count(), 1);
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn parse_script(text: &str) -> Result<ScriptOutcome, ParseError> {
    let mut v4 = Ruleset::new(Family::V4);
    let mut v6 = Ruleset::new(Family::V6);
    let mut skipped = Vec::new();
    let mut pending = String::new();
    let mut pending_start = 0u32;
    for (idx, raw) in text.split('\n').enumerate() {
        let no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        if let Some(at) = raw.find('\r') {
            return Err(ParseError::at(no, raw, at, ParseErrorKind::CarriageReturn));
        }
        // Backslash-newline continues a command on the next line.
        if let Some(head) = raw.strip_suffix('\\') {
            if pending.is_empty() {
                pending_start = no;
            }
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let (line_text, no) = if pending.is_empty() {
            (raw.to_owned(), no)
        } else {
            let mut full = std::mem::take(&mut pending);
            full.push_str(raw);
            (full, pending_start)
        };
        let (rest, offset) = strip_prompt(&line_text);
        if rest.is_empty() {
            continue;
        }
        let first = rest.split_whitespace().next().unwrap_or("");
        let Some(_) = command_family(first) else {
            if !line_text.trim_start().starts_with('#') {
                skipped.push((no, line_text.trim().to_owned()));
            }
            continue;
        };
        let commands = shell_words(rest).map_err(|at| {
            ParseError::at(no, &line_text, offset + at, ParseErrorKind::UnterminatedQuote)
        })?;
        for mut words in commands {
            let Some(family) = words.first().and_then(|w| command_family(&w.text)) else {
                skipped.push((no, words.iter().map(|w| &*w.text).collect::<Vec<_>>().join(" ")));
                continue;
            };
            words.remove(0);
            if is_read_only(&words) {
                skipped.push((no, line_text.trim().to_owned()));
                continue;
            }
            let place =
                |at: usize| words.get(at).map_or(line_text.trim_end().len(), |w| offset + w.offset);
            let Parsed { table, family: only, mut command } = parse_args(&words, false)
                .map_err(|(at, kind)| ParseError::at(no, &line_text, place(at), kind))?;
            if only.is_some_and(|f| f != family) {
                return Err(ParseError::at(
                    no,
                    &line_text,
                    offset,
                    ParseErrorKind::NotAllowed("-4/-6 contradicts the command's family"),
                ));
            }
            if let Command::Append { rule, .. }
            | Command::Insert { rule, .. }
            | Command::Replace { rule, .. } = &mut command
            {
                rule.origin.line = no;
            }
            let table = table.map_or(TableName::Filter, |(t, _)| t);
            let target = if family == Family::V4 { &mut v4 } else { &mut v6 };
            target
                .execute(table, command)
                .map_err(|e| ParseError::at(no, &line_text, place(1), ParseErrorKind::from(e)))?;
        }
    }
    Ok(ScriptOutcome { v4, v6, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_article() {
        let script = "\
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -P OUTPUT ACCEPT
iptables -F
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -L
";
        let out = parse_script(script).expect("the seed script parses");
        let t = out.v4.table(TableName::Filter).expect("filter");
        assert_eq!(t.chain("INPUT").and_then(|c| c.policy), Some(portcullis_rules::Policy::Drop));
        assert_eq!(out.v4.rule_count(), 1);
        assert_eq!(out.skipped, vec![(6, "iptables -L".to_owned())]);
        assert!(out.v6.tables.is_empty());
    }

    #[test]
    fn prompts_quotes_and_continuations() {
        let script = "\
# the seed's prompt
# /sbin/iptables -A INPUT -m comment --comment 'it''s \"ok\"' \\
   -j ACCEPT
$ sudo ip6tables -t filter -A INPUT -s 2001:db8::/32 -j DROP; echo done
";
        let out = parse_script(script).expect("parses");
        let rule = &out.v4.tables[0].chains[0].rules[0];
        assert_eq!(rule.matches[0].opts[0].args, ["its \"ok\""]);
        assert_eq!(rule.origin.line, 2);
        assert_eq!(out.v6.rule_count(), 1);
        assert_eq!(out.skipped, vec![(4, "echo done".to_owned())]);
    }

    #[test]
    fn errors_point_at_the_word() {
        let e = parse_script("iptables -A INPUT -p tcp --dport 22 -j ACCEPT\niptables -A INPUT -s 300.1.1.1 -j DROP\n")
            .expect_err("bad address");
        assert_eq!((e.line, e.column), (2, 22));
    }
}
