//! Reading any supported input: detects the format and returns the rulesets it describes.

use portcullis_rules::{Ruleset, TableName};

use crate::error::{ParseError, ParseErrorKind};
use crate::save::{parse_rules_spec, parse_save, sniff_family};
use crate::script::{looks_like_script, parse_script};

/// The text formats portcullis reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// iptables-save output or iptables-restore input (`*table … COMMIT`).
    Save,
    /// `iptables -S` output (`-P`, `-N`, `-A` lines, no tables).
    RulesSpec,
    /// A shell script of `iptables …` commands.
    Script,
    /// `iptables -L` output.
    Listing,
    /// portcullis' JSON form of the model.
    Json,
}

impl Format {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Save => "iptables-save",
            Self::RulesSpec => "iptables -S",
            Self::Script => "iptables command script",
            Self::Listing => "iptables -L listing",
            Self::Json => "JSON",
        }
    }
}

/// Guesses the format of `text` from its first meaningful lines.
pub fn detect_format(text: &str) -> Option<Format> {
    let mut spec_lines = 0;
    for line in text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()) {
        if line.starts_with('*') {
            return Some(Format::Save);
        }
        if line.starts_with('{') || line.starts_with('[') && line.trim() == "[" {
            return Some(Format::Json);
        }
        if line.starts_with("Chain ") {
            return Some(Format::Listing);
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with("-P ") || line.starts_with("-N ") || line.starts_with("-A ") {
            spec_lines += 1;
            continue;
        }
        break;
    }
    if looks_like_script(text) {
        Some(Format::Script)
    } else if spec_lines > 0 {
        Some(Format::RulesSpec)
    } else {
        None
    }
}

/// What [`read_rulesets`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The detected format.
    pub format: Format,
    /// The rulesets: one for a save file or `-S` text, one per family for a script (only
    /// the families it touched).
    pub rulesets: Vec<Ruleset>,
    /// Lines passed over (script lines that are not iptables commands), with line numbers.
    pub skipped: Vec<(u32, String)>,
}

/// Reads save/restore text, `-S` text or a command script, whichever `text` is.
/// (`-L` listings and JSON have their own readers.)
pub fn read_rulesets(text: &str) -> Result<Input, ParseError> {
    let format = detect_format(text).ok_or_else(|| {
        let line = text.lines().next().unwrap_or("");
        ParseError::at(1, line, 0, ParseErrorKind::UnknownFormat)
    })?;
    let (rulesets, skipped) = match format {
        Format::Save => (vec![parse_save(text)?], Vec::new()),
        Format::RulesSpec => {
            (vec![parse_rules_spec(text, TableName::Filter, sniff_family(text))?], Vec::new())
        }
        Format::Script => {
            let out = parse_script(text)?;
            let mut v = Vec::new();
            if !out.v4.tables.is_empty() || out.v6.tables.is_empty() {
                v.push(out.v4);
            }
            if !out.v6.tables.is_empty() {
                v.push(out.v6);
            }
            (v, out.skipped)
        }
        Format::Listing | Format::Json => {
            let line = text.lines().next().unwrap_or("");
            return Err(ParseError::at(
                1,
                line,
                0,
                ParseErrorKind::NotAllowed("this reader takes save, -S or script text"),
            ));
        }
    };
    Ok(Input { format, rulesets, skipped })
}
