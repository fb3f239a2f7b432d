//! The iptables-restore tokenizer (`add_param_to_argv`, `formats.md` §6) and the output
//! quoting of `xtables_save_string` (§7).

use std::borrow::Cow;

/// One token of a restore line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token's text, quotes removed and escapes resolved.
    pub text: String,
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
/// let texts: Vec<_> = tokens.iter().map(|t| t.text.as_str()).collect();
/// assert_eq!(texts, ["-m", "comment", "--comment", r#"a "b" c"#, "foobar baz"]);
/// ```
pub fn tokenize(line: &str) -> (Vec<Token>, TokenNotes) {
    let mut tokens = Vec::new();
    let mut notes = TokenNotes::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = None::<usize>;
    let mut quoted = false;
    let mut in_quote = false;
    let mut escaped = false;
    let mut quote_at = 0;
    let bytes = line.as_bytes();
    let emit = |buf: &mut Vec<u8>,
                start: &mut Option<usize>,
                quoted: &mut bool,
                tokens: &mut Vec<Token>,
                at: usize| {
        // Bytes come from a &str and are only regrouped at ASCII boundaries, except that a
        // backslash escape may split nothing: escapes keep every byte.
        let text = String::from_utf8_lossy(buf).into_owned();
        tokens.push(Token { text, quoted: *quoted, offset: start.unwrap_or(at) });
        buf.clear();
        *start = None;
        *quoted = false;
    };
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'\r' && notes.carriage_return.is_none() {
            notes.carriage_return = Some(i);
        }
        if in_quote {
            if escaped {
                buf.push(c);
                escaped = false;
                continue;
            } else if c == b'\\' {
                escaped = true;
                continue;
            } else if c == b'"' {
                in_quote = false;
                // The closing quote ends the token, even an empty one.
                emit(&mut buf, &mut start, &mut quoted, &mut tokens, i);
                continue;
            }
            buf.push(c);
            continue;
        }
        if c == b'"' {
            in_quote = true;
            quoted = true;
            quote_at = i;
            start.get_or_insert(i);
            continue;
        }
        if matches!(c, b' ' | b'\t' | b'\n') {
            if !buf.is_empty() {
                emit(&mut buf, &mut start, &mut quoted, &mut tokens, i);
            }
            continue;
        }
        start.get_or_insert(i);
        buf.push(c);
    }
    if in_quote {
        notes.unterminated_quote = Some(quote_at);
        quoted = false;
    }
    if !buf.is_empty() {
        emit(&mut buf, &mut start, &mut quoted, &mut tokens, bytes.len());
    }
    (tokens, notes)
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
        tokenize(line).0.into_iter().map(|t| t.text).collect()
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
        assert_eq!((t[1].text.as_str(), t[1].quoted, t[1].offset), ("!", true, 4));
        assert_eq!((t[2].offset, t[2].quoted), (8, false));
    }

    #[test]
    fn crlf_noted() {
        let (_, n) = tokenize("-A INPUT -j ACCEPT\r");
        assert_eq!(n.carriage_return, Some(18));
    }
}
