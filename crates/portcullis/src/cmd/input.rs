//! Reading a ruleset argument (`FILE` or `-`) in any supported format, with diagnostics.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use portcullis_rules::Ruleset;
use portcullis_syntax::{Format, read_rulesets};

/// A ruleset input: a file or standard input.
#[derive(Debug, clap::Args)]
pub(crate) struct InputArgs {
    /// The ruleset: iptables-save/restore text, `iptables -S` output or a script of
    /// iptables commands (detected); `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
}

/// What was read.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The name to show in diagnostics.
    pub(crate) name: String,
    /// The text.
    #[allow(dead_code, reason = "kept for commands that quote the input")]
    pub(crate) text: String,
    /// The detected format.
    pub(crate) format: Format,
    /// The rulesets.
    pub(crate) rulesets: Vec<Ruleset>,
    /// Script lines passed over.
    pub(crate) skipped: Vec<(u32, String)>,
}

/// Reads the input's text.
pub(crate) fn read_text(file: Option<&PathBuf>) -> Result<(String, String)> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p.display().to_string(), text))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
            Ok(("<stdin>".to_owned(), text))
        }
    }
}

/// Reads and parses the input; on a parse error prints the diagnostic and returns `None`.
pub(crate) fn load(args: &InputArgs) -> Result<Option<Loaded>> {
    let (name, text) = read_text(args.file.as_ref())?;
    Ok(parse_text(name, text))
}

/// Parses text read by [`read_text`]; on a parse error prints the diagnostic and returns
/// `None`.
pub(crate) fn parse_text(name: String, text: String) -> Option<Loaded> {
    match read_rulesets(&text) {
        Ok(input) => Some(Loaded {
            name,
            text,
            format: input.format,
            rulesets: input.rulesets,
            skipped: input.skipped,
        }),
        Err(e) => {
            eprint!("{}", e.render(&name));
            None
        }
    }
}
