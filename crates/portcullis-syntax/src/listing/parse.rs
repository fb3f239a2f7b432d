//! Reading `iptables -L` output into a [`Listing`], token by token.

use super::{
    ChainHeader, ChainKind, Columns, Count, Field, ListedChain, ListedRule, Listing, Unit,
};
use crate::error::{ParseError, ParseErrorKind};

/// Parses `iptables -L` / `ip6tables -L` output in any flag combination.
///
/// Lines starting with `#` (the nft build's warnings) are skipped; a trailing `\r` is
/// dropped (listings pasted from elsewhere). Rule lines are read by tokens; only the gap
/// before the prot field is measured, to tell an empty target column.
///
/// ```
/// let text = "Chain INPUT (policy DROP)\n\
///             target     prot opt source               destination         \n\
///             ACCEPT     tcp  --  anywhere             anywhere             tcp dpt:ssh\n";
/// let listing = portcullis_syntax::parse_listing(text)?;
/// assert_eq!(listing.chains[0].rules[0].target, "ACCEPT");
/// assert_eq!(listing.chains[0].rules[0].text, " tcp dpt:ssh");
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn parse_listing(text: &str) -> Result<Listing, ParseError> {
    let mut listing = Listing::default();
    for (idx, raw) in text.split('\n').enumerate() {
        let no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || is_comment(line) {
            continue;
        }
        // `Chain NAME (`: one space. A rule jumping to a user chain named `Chain` prints
        // the target padded (`Chain      all  --  …`), so it stays a rule line.
        if let Some(rest) = line.strip_prefix("Chain ").filter(|r| !r.starts_with(' ')) {
            let header = parse_chain_header(rest, no)
                .map_err(|(at, kind)| ParseError::at(no, line, at + 6, kind))?;
            listing.chains.push(ListedChain {
                header: Some(header),
                columns: Columns::default(),
                column_header: false,
                rules: Vec::new(),
            });
            continue;
        }
        if let Some(columns) = parse_column_header(line) {
            match listing.chains.last_mut() {
                Some(c) if !c.column_header && c.rules.is_empty() => {
                    c.columns = columns;
                    c.column_header = true;
                }
                _ => {
                    return Err(ParseError::at(
                        no,
                        line,
                        0,
                        ParseErrorKind::NotAllowed("column header without a chain header"),
                    ));
                }
            }
            continue;
        }
        let columns = match listing.chains.last() {
            Some(c) if c.column_header => Some(c.columns),
            _ => None,
        };
        let rule = parse_rule(line, no, columns)
            .map_err(|(at, kind)| ParseError::at(no, line, at, kind))?;
        match listing.chains.last_mut() {
            Some(c) if c.header.is_some() && !c.column_header => {
                return Err(ParseError::at(
                    no,
                    line,
                    0,
                    ParseErrorKind::NotAllowed("rule line before the column header line"),
                ));
            }
            Some(c) if c.column_header || c.header.is_none() => c.rules.push(rule),
            _ => listing.chains.push(ListedChain {
                header: None,
                columns: infer_columns(line).unwrap_or_default(),
                column_header: false,
                rules: vec![rule],
            }),
        }
    }
    Ok(listing)
}

type Fail = (usize, ParseErrorKind);

fn bad(at: usize, what: &str) -> Fail {
    (at, ParseErrorKind::BadArgument(what.to_owned()))
}

/// `NAME (policy P)`, `NAME (policy P N packets, M bytes)`, `NAME (N references)`.
fn parse_chain_header(rest: &str, line: u32) -> Result<ChainHeader, Fail> {
    let open = rest.find(" (").ok_or_else(|| bad(rest.len(), rest))?;
    let name = &rest[..open];
    if name.is_empty() {
        return Err(bad(0, rest));
    }
    let inner = rest[open + 2..].strip_suffix(')').ok_or_else(|| bad(rest.len(), rest))?;
    let words: Vec<&str> = inner.split(' ').collect();
    let at = open + 2;
    let kind = match words.as_slice() {
        ["policy", p] => ChainKind::Builtin { policy: (*p).to_owned(), counters: None },
        ["policy", p, pk, "packets,", by, "bytes"] => {
            let packets = parse_count(pk).ok_or_else(|| bad(at, pk))?;
            let bytes = parse_count(by).ok_or_else(|| bad(at, by))?;
            ChainKind::Builtin { policy: (*p).to_owned(), counters: Some((packets, bytes)) }
        }
        [n, "references"] => ChainKind::User { references: n.parse().map_err(|_| bad(at, n))? },
        ["ERROR", "obtaining", "refs"] => ChainKind::RefsError,
        _ => return Err(bad(at, inner)),
    };
    Ok(ChainHeader { name: name.to_owned(), kind, line })
}

/// `#` alone or `# text`. iptables prints no comments, and a chain may be named `#` or
/// `#x`: a rule line jumping to it starts with the name padded by the target column
/// (`%-9s `), so `#x…` and `#` followed by two spaces are rule lines.
fn is_comment(line: &str) -> bool {
    line == "#" || (line.starts_with("# ") && !line.starts_with("#  "))
}

/// The column header line, if `line` is one.
fn parse_column_header(line: &str) -> Option<Columns> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let t = words.iter().position(|w| *w == "target")?;
    let tail = &words[t..];
    let plain = ["target", "prot", "opt", "source", "destination"];
    let via = ["target", "prot", "opt", "in", "out", "source", "destination"];
    let columns = Columns {
        num: words.first() == Some(&"num"),
        counters: words.contains(&"pkts") && words.contains(&"bytes"),
        via: tail == via,
        exact: line.contains("    pkts      bytes "),
    };
    let expected_head = usize::from(columns.num) + 2 * usize::from(columns.counters);
    (t == expected_head && (tail == plain || tail == via)).then_some(columns)
}

/// A counter: digits with an optional K/M/G/T.
fn parse_count(s: &str) -> Option<Count> {
    let (digits, unit) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], Unit::K),
        b'M' => (&s[..s.len() - 1], Unit::M),
        b'G' => (&s[..s.len() - 1], Unit::G),
        b'T' => (&s[..s.len() - 1], Unit::T),
        _ => (s, Unit::One),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Count { value: digits.parse().ok()?, unit })
}

fn is_opt(tok: &str) -> bool {
    matches!(tok, "--" | "-f" | "!f")
}

/// Columns of a rule line printed without headers (`-L CHAIN N`): leading counters mean
/// `-v` (which also shows interfaces), a single leading number means `--line-numbers`.
fn infer_columns(line: &str) -> Option<Columns> {
    let toks: Vec<&str> = line.split_ascii_whitespace().take(8).collect();
    let opt = toks.iter().position(|t| is_opt(t));
    let numeric = toks.iter().take_while(|t| parse_count(t).is_some()).count();
    // Without an opt token, the last numeric token before the prot cannot be told from
    // a target; assume the target is there.
    let before_prot = opt.map_or(numeric, |o| o.saturating_sub(1));
    let k = numeric.min(before_prot).min(3);
    let (num, counters) = (k == 1 || k == 3, k >= 2);
    // `%5llu ` ends a non-exact pkts field 5 columns after its start, `%8llu ` 8 or more.
    let exact = counters && {
        let mut cur = Cursor { line, pos: 0 };
        let field_start =
            if num { cur.next("num").map_or(0, |(at, t)| (at + t.len() + 1).max(5)) } else { 0 };
        cur.next("pkts").is_ok_and(|(at, t)| at + t.len() > field_start + 5)
    };
    Some(Columns { num, counters, via: counters, exact })
}

/// A cursor over a line's space-separated tokens that keeps byte positions.
struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn spaces(&self) -> usize {
        self.line[self.pos..].bytes().take_while(|&b| b == b' ' || b == b'\t').count()
    }

    fn peek(&self) -> Option<(usize, &'a str)> {
        let start = self.pos + self.spaces();
        let rest = &self.line[start..];
        if rest.is_empty() {
            return None;
        }
        let len = rest.find([' ', '\t']).unwrap_or(rest.len());
        Some((start, &rest[..len]))
    }

    fn next(&mut self, what: &str) -> Result<(usize, &'a str), Fail> {
        let (start, tok) = self
            .peek()
            .ok_or_else(|| (self.line.len(), ParseErrorKind::MissingArgument(what.to_owned())))?;
        self.pos = start + tok.len();
        Ok((start, tok))
    }
}

fn field(tok: &str) -> Field {
    match tok.strip_prefix('!') {
        Some(v) if !v.is_empty() => Field { negated: true, value: v.to_owned() },
        _ => Field { negated: false, value: tok.to_owned() },
    }
}

fn parse_rule(line: &str, no: u32, columns: Option<Columns>) -> Result<ListedRule, Fail> {
    let columns = match columns {
        Some(c) => c,
        None => infer_columns(line).unwrap_or_default(),
    };
    let mut cur = Cursor { line, pos: 0 };
    let mut num = None;
    let mut packets = None;
    let mut bytes = None;
    // Spaces expected before a non-empty target: none at the line start, one after the
    // counters, `%-4u ` padding after a line number alone.
    let mut expected_gap = 0;
    if columns.num {
        let (at, tok) = cur.next("num")?;
        num = Some(tok.parse::<u64>().map_err(|_| bad(at, tok))?);
        expected_gap = 4usize.saturating_sub(tok.len()) + 1;
    }
    if columns.counters {
        for slot in [&mut packets, &mut bytes] {
            let (at, tok) = cur.next("counter")?;
            *slot = Some(parse_count(tok).ok_or_else(|| bad(at, tok))?);
        }
        expected_gap = 1;
    }
    // An empty target is printed as `%-9s ` of "": ten more spaces than a named one.
    let second_is_opt = {
        let mut probe = Cursor { line, pos: cur.pos };
        probe.next("prot").is_ok() && probe.peek().is_some_and(|(_, t)| is_opt(t))
    };
    let target = if cur.spaces() >= expected_gap + 10 || second_is_opt {
        String::new()
    } else {
        cur.next("target")?.1.to_owned()
    };
    let prot = field(cur.next("prot")?.1);
    let opt = match cur.peek() {
        Some((_, t)) if is_opt(t) => {
            cur.next("opt")?;
            t.to_owned()
        }
        _ => String::new(),
    };
    let (in_iface, out_iface) = if columns.via {
        (Some(field(cur.next("in")?.1)), Some(field(cur.next("out")?.1)))
    } else {
        (None, None)
    };
    let source = field(cur.next("source")?.1);
    let destination = field(cur.next("destination")?.1);
    // `%-19s ` then the matches: skip the padding and the one separating space.
    let pad = 19usize.saturating_sub(destination.value.len()) + 1;
    let skip = cur.spaces().min(pad);
    let mut rest = &line[cur.pos + skip..];
    let goto = if let Some(r) = rest.strip_prefix("[goto] ") {
        rest = r;
        true
    } else if rest == "[goto]" {
        rest = "";
        true
    } else {
        false
    };
    Ok(ListedRule {
        line: no,
        num,
        packets,
        bytes,
        target,
        prot,
        opt,
        in_iface,
        out_iface,
        source,
        destination,
        goto,
        text: rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_target_and_negations() {
        let text = "Chain INPUT (policy DROP 1235K packets, 988M bytes)\n\
 pkts bytes target     prot opt in     out     source               destination         \n\
    0     0            all  --  !eth0  *       0.0.0.0/0            0.0.0.0/0            recent: REMOVE\n\
 988K  123G REJECT     !tcp -- *      *      !192.168.0.0/16       0.0.0.0/0           [goto] \n";
        let l = parse_listing(text).expect("parses");
        let c = &l.chains[0];
        assert!(c.columns.counters && c.columns.via && !c.columns.num);
        assert_eq!(c.rules[0].target, "");
        assert_eq!(c.rules[0].prot.value, "all");
        assert!(c.rules[0].in_iface.as_ref().is_some_and(|f| f.negated && f.value == "eth0"));
        assert_eq!(c.rules[0].text, " recent: REMOVE");
        let r = &c.rules[1];
        assert_eq!(r.packets, Some(Count { value: 988, unit: Unit::K }));
        assert!(r.prot.negated && r.source.negated && r.goto);
        assert_eq!(r.text, "");
    }

    #[test]
    fn headerless_rule_line() {
        let l = parse_listing(
            "DROP       0    --  0.0.0.0/0            0.0.0.0/0            ctstate INVALID\n",
        )
        .expect("parses");
        assert!(l.chains[0].header.is_none());
        assert_eq!(l.chains[0].rules[0].text, " ctstate INVALID");
        let l = parse_listing("       0        0 LOGDROP    all  --  any    any     anywhere             anywhere            [goto] \n")
            .expect("parses");
        let r = &l.chains[0].rules[0];
        assert!(l.chains[0].columns.via && r.goto && r.target == "LOGDROP");
    }

    #[test]
    fn blank_ip6tables_opt_column() {
        // ip6tables before 1.8.9 printed three blanks instead of `--` in the opt column.
        let line = |target: &str, prot: &str, iface: &str, src: &str, text: &str| {
            format!(
                "{:>5} {:>5} {target:<9}  {prot:<4}     {iface:<6} {:<6}  {src:<19}  {:<19} {text}\n",
                0, 0, "*", "::/0"
            )
        };
        let text = [
            "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)\n".to_owned(),
            " pkts bytes target     prot opt in     out     source               destination         \n".to_owned(),
            line("ACCEPT", "ipv6-icmp", "*", "::/0", " ipv6-icmptype 128"),
            line("", "all", "eth0", "2001:db8::/32", ""),
        ]
        .concat();
        let l = parse_listing(&text).expect("parses");
        let r = &l.chains[0].rules;
        assert_eq!((r[0].opt.as_str(), r[0].prot.value.as_str()), ("", "ipv6-icmp"));
        assert_eq!(r[0].text, " ipv6-icmptype 128");
        assert_eq!((r[1].target.as_str(), r[1].source.value.as_str()), ("", "2001:db8::/32"));
        assert_eq!(r[1].in_iface.as_ref().map(|f| f.value.as_str()), Some("eth0"));
        assert_eq!(l.to_text(), text);
    }

    #[test]
    fn a_user_chain_named_chain_is_a_target() {
        let text = "Chain INPUT (policy ACCEPT)\n\
                    target     prot opt source               destination         \n\
                    Chain      all  --  anywhere             anywhere            \n";
        let l = parse_listing(text).expect("parses");
        assert_eq!(l.chains.len(), 1);
        assert_eq!(l.chains[0].rules[0].target, "Chain");
    }

    #[test]
    fn bad_header_is_an_error() {
        let e = parse_listing("Chain INPUT (policy DROP x packets, 1 bytes)\n").expect_err("bad");
        assert_eq!(e.line, 1);
        let e =
            parse_listing("Chain INPUT (policy DROP)\nACCEPT all\n").expect_err("no column header");
        assert_eq!(e.line, 2);
    }
}
