//! `portcullis convert`: read any supported format, write save text, an `-L` listing or
//! JSON. Also the reader `list` uses for its FILE: every format, `-L` listings and JSON
//! included.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use portcullis_rules::{Backend, Family, Ruleset, TableName, canonicalize};
use portcullis_syntax::{
    Format, ListFlags, SaveOptions, detect_format, listing_to_ruleset, parse_listing,
    read_rulesets, render_listing, render_save, ruleset_from_json, ruleset_to_json,
};

use super::input::read_text;

/// The output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum To {
    /// iptables-save text (counters kept as `[packets:bytes]` when the input had them).
    Save,
    /// `iptables -L` output.
    Listing,
    /// portcullis' versioned JSON (docs/ruleset.schema.json).
    Json,
}

/// The `-L` flags, spelled as iptables spells them.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ListingArgs {
    /// The table (`-t` as iptables takes it; filter when not given); also the table an
    /// `-L` listing input shows (guessed from its builtin chains when not given).
    #[arg(short = 't', long = "table")]
    pub(crate) table: Option<TableName>,
    /// Numeric output: no port, protocol or user names.
    #[arg(short = 'n', long = "numeric")]
    pub(crate) numeric: bool,
    /// Verbose: counters and interfaces.
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,
    /// Exact counters (no K/M/G/T).
    #[arg(short = 'x', long = "exact")]
    pub(crate) exact: bool,
    /// A `num` column.
    #[arg(long = "line-numbers")]
    pub(crate) line_numbers: bool,
}

impl ListingArgs {
    /// `-t`, filter when not given.
    pub(crate) fn table(&self) -> TableName {
        self.table.unwrap_or(TableName::Filter)
    }

    pub(crate) fn flags(&self) -> ListFlags {
        ListFlags {
            table: self.table(),
            numeric: self.numeric,
            verbose: self.verbose,
            exact: self.exact,
            line_numbers: self.line_numbers,
            ..ListFlags::default()
        }
    }
}

/// Convert a ruleset between formats: save/restore, `-S`, command script, `-L` listing or
/// JSON in; save, listing or JSON out.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The input (any supported format, detected); `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum)]
    to: To,
    #[command(flatten)]
    listing: ListingArgs,
}

/// Reads `text` in any supported format. Diagnostics and warnings go to standard error;
/// `None` means the input did not parse.
/// `table` is the table a listing input shows (`-t`); `None` guesses it from the
/// listing's builtin chains.
pub(crate) fn read_any(name: &str, text: &str, table: Option<TableName>) -> Option<Vec<Ruleset>> {
    let format = detect_format(text);
    let result = match format {
        Some(Format::Listing) => parse_listing(text).map(|l| {
            let table = table.or_else(|| l.guess_table()).unwrap_or(TableName::Filter);
            let conv = listing_to_ruleset(&l, table, None);
            for w in &conv.warnings {
                eprintln!("warning: {name}: {w}");
            }
            vec![conv.ruleset]
        }),
        Some(Format::Json) => ruleset_from_json(text),
        _ => read_rulesets(text).map(|input| {
            for (line, skipped) in &input.skipped {
                eprintln!("note: {name}:{line}: not an iptables command, passed over: {skipped}");
            }
            input.rulesets
        }),
    };
    match result {
        Ok(rulesets) => Some(rulesets),
        Err(e) => {
            eprint!("{}", e.render(name));
            None
        }
    }
}

fn has_counters(rulesets: &[Ruleset]) -> bool {
    rulesets
        .iter()
        .flat_map(|r| &r.tables)
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .any(|r| r.counters.is_some())
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let (name, text) = read_text(args.file.as_ref())?;
    let Some(rulesets) = read_any(&name, &text, args.listing.table) else {
        return Ok(ExitCode::from(1));
    };
    let out = match args.to {
        To::Save => {
            let opts = SaveOptions { counters: has_counters(&rulesets) };
            rulesets.iter().map(|rs| render_save(rs, opts)).collect::<String>()
        }
        To::Json => ruleset_to_json(&rulesets),
        To::Listing => {
            let flags = args.listing.flags();
            let parts: Vec<String> = rulesets
                .iter()
                .map(|rs| render_listing(&canonicalize(rs, Backend::default()), &flags))
                .collect();
            parts.join("\n")
        }
    };
    super::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The ruleset of `family` among `rulesets` (the first one when none matches).
pub(crate) fn pick(rulesets: Vec<Ruleset>, family: Family) -> Option<Ruleset> {
    let mut first = None;
    for rs in rulesets {
        if rs.family == family {
            return Some(rs);
        }
        first.get_or_insert(rs);
    }
    first
}
