//! The iptables-restore tokenizer (`add_param_to_argv`, `formats.md` §6) and the output
//! quoting of `xtables_save_string` (§7).

use std::borrow::Cow;

/// One token of a restore line; its text borrows from the line when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// The token's text, quotes removed and escapes resolved.
    pub text: Cow<'a, str>,
    /// Whether any part of the token was quoted (`"!"` is then a value, not syntax).
    pub quoted: bool,
    /// The byte offset of the token's first byte in the line.
    pub offset: usize,
}

/// What the tokenizer noticed beyond the tokens: conditions iptables-restore accepts but a
/// careful reader reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenNotes {
    /// Byte offset of a quote that was never closed (iptables swallows the rest of the
    /// line into the token).
    pub unterminated_quote: Option<usize>,
    /// Byte offset of a carriage return (a CRLF file: iptables then fails with a
    /// confusing message such as ``table name 'filter' invalid``).
    pub carriage_return: Option<usize>,
}

/// Splits `line` exactly as iptables-restore does: only `"` quotes; a backslash escapes the
/// next byte inside quotes only; a quote may open mid-token; a closing quote ends the
/// token; `""` is an empty token; `'` and `\` outside quotes are literal.
///
/// ```
/// use portcullis_syntax::tokenize;
/// let (tokens, _) = tokenize(r#"-m comment --comment "a \"b\" c" foo"bar baz""#);
/// let texts: Vec<&str> = tokens.iter().map(|t| &*t.text).collect();
/// assert_eq!(texts, ["-m", "comment", "--comment", r#"a "b" c"#, "foobar baz"]);
/// ```
pub fn tokenize<'a>(line: &'a str) -> (Vec<Token<'a>>, TokenNotes) {
    let mut tokens = Vec::with_capacity(24);
    let notes = tokenize_into(line, &mut tokens);
    (tokens, notes)
}

/// Byte classes of the tokenizer: separators, the quote, the carriage return (a token
/// byte, but noted), and everything else (0).
const SEP: u8 = 1;
const QUOTE: u8 = 2;
const CR: u8 = 3;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = SEP;
    t[b'\t' as usize] = SEP;
    t[b'\n' as usize] = SEP;
    t[b'"' as usize] = QUOTE;
    t[b'\r' as usize] = CR;
    t
};

/// Skips, eight bytes at a time, the bytes from `i` on that are certainly plain token
/// bytes (all above `"`, 0x22: the separators, the quote and the carriage return are all
/// at or below it); stops at or before the first byte that may not be. The exact scan
/// goes on from there.
fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // The lowest flagged byte is the first one below 0x23 (bytes of 0x80 and above,
        // UTF-8, are never flagged).
        let low = x.wrapping_sub(ONES * 0x23) & !x & HIGH;
        if low != 0 {
            return i + (low.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// [`tokenize`] into a vector the caller reuses from line to line (cleared first).
pub(crate) fn tokenize_into<'a>(line: &'a str, tokens: &mut Vec<Token<'a>>) -> TokenNotes {
    tokens.clear();
    let bytes = line.as_bytes();
    let n = bytes.len();
    let class = |i: usize| CLASS[usize::from(bytes[i])];
    let mut notes = TokenNotes::default();
    let mut i = 0;
    loop {
        // Skip separators.
        i += bytes[i..].iter().position(|&b| CLASS[usize::from(b)] != SEP).unwrap_or(n - i);
        if i >= n {
            break;
        }
        let start = i;
        // The unquoted head of the token.
        loop {
            i = skip_plain(bytes, i);
            i += bytes[i..].iter().position(|&b| CLASS[usize::from(b)] != 0).unwrap_or(n - i);
            if i < n && class(i) == CR {
                notes.carriage_return.get_or_insert(i);
                i += 1;
                continue;
            }
            break;
        }
        if i >= n || class(i) == SEP {
            tokens.push(Token {
                text: Cow::Borrowed(&line[start..i]),
                quoted: false,
                offset: start,
            });
            continue;
        }
        // A whole token `"…"` without escapes or carriage returns (most comments) is
        // borrowed as it stands.
        if i == start {
            let body = &bytes[i + 1..];
            if let Some(p) = memchr::memchr3(b'"', b'\\', b'\r', body)
                && body[p] == b'"'
            {
                tokens.push(Token {
                    text: Cow::Borrowed(&line[i + 1..i + 1 + p]),
                    quoted: true,
                    offset: start,
                });
                i += p + 2;
                continue;
            }
        }
        // A quote opens (maybe mid-token): unescape until the closing quote, which ends
        // the token whatever follows it.
        let mut buf = Vec::with_capacity(n - start);
        buf.extend_from_slice(&bytes[start..i]);
        let quote_at = i;
        i += 1;
        let mut closed = false;
        while i < n {
            // A run of plain bytes, copied at once.
            let run = bytes[i..].iter().position(|&b| matches!(b, b'"' | b'\\' | b'\r'));
            let end = run.map_or(n, |p| i + p);
            buf.extend_from_slice(&bytes[i..end]);
            i = end;
            if i >= n {
                break;
            }
            match bytes[i] {
                b'\\' if i + 1 < n => {
                    if bytes[i + 1] == b'\r' {
                        notes.carriage_return.get_or_insert(i + 1);
                    }
                    buf.push(bytes[i + 1]);
                    i += 2;
                }
                b'\\' => i += 1,
                b'"' => {
                    closed = true;
                    i += 1;
                    break;
                }
                b => {
                    // The carriage return, kept in the token.
                    notes.carriage_return.get_or_insert(i);
                    buf.push(b);
                    i += 1;
                }
            }
        }
        // Bytes were only regrouped at ASCII boundaries, so they stay UTF-8.
        let text = String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if !closed {
            // iptables keeps what the open quote swallowed, as an unquoted token.
            notes.unterminated_quote = Some(quote_at);
        }
        tokens.push(Token { text: Cow::Owned(text), quoted: closed, offset: start });
    }
    notes
}

/// Quotes `s` as `xtables_save_string` does: bare when it is non-empty and made only of
/// `[_\-0-9a-zA-Z]`, else inside `"…"` with `"`, `\` and `'` escaped by `\`.
///
/// ```
/// use portcullis_syntax::quote;
/// assert_eq!(quote("simple_comment-1"), "simple_comment-1");
/// assert_eq!(quote("it's \"x\""), r#""it\'s \"x\"""#);
/// assert_eq!(quote(""), r#""""#);
/// ```
pub fn quote(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(quote_forced(s))
}

/// [`quote`] without the bare form: always inside `"…"`.
pub(crate) fn quote_forced(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if matches!(ch, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quotes `s` always, escaping only `"` and `\`: the form of `-m string --string`,
/// `-m u32 --u32`, `-m bpf --bytecode` and a few others.
pub fn quote_always(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if matches!(ch, '"' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        tokenize(line).0.into_iter().map(|t| t.text.into_owned()).collect()
    }

    #[test]
    fn formats_md_table() {
        assert_eq!(texts(r#"--comment "a b""#), ["--comment", "a b"]);
        assert_eq!(texts("--comment 'a b'"), ["--comment", "'a", "b'"]);
        assert_eq!(texts(r"--comment a\ b"), ["--comment", r"a\", "b"]);
        assert_eq!(texts(r#"--comment "x\y""#), ["--comment", "xy"]);
        assert_eq!(texts(r#"--comment "foo"bar"#), ["--comment", "foo", "bar"]);
        assert_eq!(texts(r#"--comment foo"bar baz""#), ["--comment", "foobar baz"]);
        assert_eq!(texts(r#"--comment """#), ["--comment", ""]);
        assert_eq!(texts(r#"--comment "it\'s""#), ["--comment", "it's"]);
        assert_eq!(texts("-A\tINPUT  -j\tACCEPT"), ["-A", "INPUT", "-j", "ACCEPT"]);
        let (t, n) = tokenize("--comment \"unterminated -j ACCEPT\n");
        assert_eq!(t[1].text, "unterminated -j ACCEPT\n");
        assert!(!t[1].quoted);
        assert_eq!(n.unterminated_quote, Some(10));
    }

    #[test]
    fn quoted_flag_and_offsets() {
        let (t, _) = tokenize(r#"-m  "!" x"#);
        assert_eq!((&*t[1].text, t[1].quoted, t[1].offset), ("!", true, 4));
        assert_eq!((t[2].offset, t[2].quoted), (8, false));
    }

    proptest::proptest! {
        #[test]
        fn tokenize_inverts_quote(s in "[^\n]{0,60}") {
            let quoted = quote(&s);
            let (toks, notes) = tokenize(&quoted);
            proptest::prop_assert_eq!(notes.unterminated_quote, None);
            proptest::prop_assert_eq!(toks.len(), 1, "{} -> {:?}", quoted, toks);
            proptest::prop_assert_eq!(&toks[0].text, &s);
        }

        /// Against a byte-at-a-time reading of the same rules (no fast paths).
        #[test]
        fn tokenize_matches_the_plain_reading(s in "[a-z!#\\- \t\"\\\\\r\u{e9}]{0,40}") {
            let got: Vec<(String, bool, usize)> = tokenize(&s)
                .0
                .into_iter()
                .map(|t| (t.text.into_owned(), t.quoted, t.offset))
                .collect();
            proptest::prop_assert_eq!(got, reference(&s));
        }

        #[test]
        fn tokenize_never_panics(s in "\\PC{0,80}") {
            let _ = tokenize(&s);
        }

        #[test]
        fn carriage_return_is_the_first_one(s in "[a \"\\\\\r\t]{0,40}") {
            proptest::prop_assert_eq!(tokenize(&s).1.carriage_return, s.find('\r'));
        }
    }

    /// The rules of [`tokenize`] as a state machine over single bytes.
    fn reference(line: &str) -> Vec<(String, bool, usize)> {
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            Between,
            Bare,
            InQuotes,
            Escaped,
        }
        let mut out: Vec<(Vec<u8>, bool, usize)> = Vec::new();
        let mut st = St::Between;
        for (at, &c) in line.as_bytes().iter().enumerate() {
            let sep = matches!(c, b' ' | b'\t' | b'\n');
            st = match (st, c) {
                (St::Between, _) if sep => St::Between,
                (St::Between, b'"') => {
                    out.push((Vec::new(), false, at));
                    St::InQuotes
                }
                (St::Between, _) => {
                    out.push((vec![c], false, at));
                    St::Bare
                }
                (St::Bare, _) if sep => St::Between,
                (St::Bare, b'"') => St::InQuotes,
                (St::InQuotes, b'\\') => St::Escaped,
                (St::InQuotes, b'"') => {
                    // A closing quote ends the token.
                    if let Some(last) = out.last_mut() {
                        last.1 = true;
                    }
                    St::Between
                }
                (St::Bare | St::InQuotes | St::Escaped, _) => {
                    if let Some(last) = out.last_mut() {
                        last.0.push(c);
                    }
                    if st == St::Escaped { St::InQuotes } else { st }
                }
            };
        }
        out.into_iter()
            .map(|(t, q, at)| (String::from_utf8_lossy(&t).into_owned(), q, at))
            .collect()
    }

    #[test]
    fn crlf_noted() {
        let (_, n) = tokenize("-A INPUT -j ACCEPT\r");
        assert_eq!(n.carriage_return, Some(18));
        // The first carriage return anywhere, quoted, escaped or bare, as `find` gives.
        for line in ["a\rb \"\r\"", "\"x\\\r\" \r", "\"\r", "\r\r", "x \"a\" b\r", "no cr"] {
            assert_eq!(tokenize(line).1.carriage_return, line.find('\r'), "{line:?}");
        }
    }
}
