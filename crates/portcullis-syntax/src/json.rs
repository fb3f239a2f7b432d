//! The JSON form of the model: a stable, versioned serde representation of
//! [`Ruleset`]s, for tools in any language. The schema is `docs/ruleset.schema.json`;
//! `docs/listing.md` documents it.
//!
//! A document is an object `{"format": "portcullis-ruleset", "version": 1, "rulesets":
//! [...]}`; each ruleset is `{"family": "v4"|"v6", "tables": [...]}`, each table `{"name":
//! "filter", "chains": [...]}`, each chain `{"name", "policy"?, "counters"?, "rules"}`, each
//! rule holds the fields it has (`counters`, `src`, `dst`, `in_iface`, `out_iface`, `proto`,
//! `fragment`, `matches`, `action`); absent fields are omitted. Values are the strings
//! iptables-save prints (`"10.0.0.0/8"`, `"tcp"`); module options keep their order.
//! Version 1 only grows by optional fields; anything else is a new version.

use portcullis_rules::Ruleset;
use serde::{Deserialize, Serialize};

use crate::error::{ParseError, ParseErrorKind};

/// The `format` field of every document.
pub const JSON_FORMAT: &str = "portcullis-ruleset";

/// The version this crate writes and reads.
pub const JSON_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<R> {
    format: String,
    version: u32,
    rulesets: R,
}

/// The rulesets as a JSON document (pretty-printed, ending with a newline).
///
/// ```
/// use portcullis_syntax::{parse_save, ruleset_from_json, ruleset_to_json};
/// let rs = parse_save("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n")?;
/// let json = ruleset_to_json(std::slice::from_ref(&rs));
/// assert!(json.contains("\"version\": 1"));
/// assert_eq!(ruleset_from_json(&json)?, vec![rs]);
/// # Ok::<(), portcullis_syntax::ParseError>(())
/// ```
pub fn ruleset_to_json(rulesets: &[Ruleset]) -> String {
    let doc = Document { format: JSON_FORMAT.to_owned(), version: JSON_VERSION, rulesets };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// Reads a JSON document written by [`ruleset_to_json`] (or by any tool following the
/// schema). Errors carry the line and column serde_json reports.
pub fn ruleset_from_json(text: &str) -> Result<Vec<Ruleset>, ParseError> {
    let error = |e: serde_json::Error| {
        let line = u32::try_from(e.line()).unwrap_or(u32::MAX).max(1);
        let line_text = text.lines().nth(line as usize - 1).unwrap_or("");
        let byte = line_text
            .char_indices()
            .nth(e.column().saturating_sub(1))
            .map_or(line_text.len(), |(b, _)| b);
        ParseError::at(line, line_text, byte, ParseErrorKind::BadArgument(format!("JSON: {e}")))
    };
    let doc: Document<Vec<Ruleset>> = serde_json::from_str(text).map_err(error)?;
    let first = text.lines().next().unwrap_or("");
    if doc.format != JSON_FORMAT {
        return Err(ParseError::at(
            1,
            first,
            0,
            ParseErrorKind::BadArgument(format!(
                "JSON: format `{}', expected `{JSON_FORMAT}'",
                doc.format
            )),
        ));
    }
    if doc.version != JSON_VERSION {
        return Err(ParseError::at(
            1,
            first,
            0,
            ParseErrorKind::BadArgument(format!(
                "JSON: version {} is not supported (this is version {JSON_VERSION})",
                doc.version
            )),
        ));
    }
    Ok(doc.rulesets)
}
