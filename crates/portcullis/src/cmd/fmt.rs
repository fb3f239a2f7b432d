//! `portcullis fmt`: print a ruleset in canonical iptables-save form.

use std::process::ExitCode;

use anyhow::Result;
use portcullis_rules::{Backend, Ruleset, canonicalize};
use portcullis_syntax::{SaveOptions, render_save};

use super::input::{InputArgs, load};

/// Print a ruleset as iptables-save prints it after loading it.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// The iptables backend whose canonical form to print.
    #[arg(long, default_value = "nft", value_parser = clap::value_parser!(Backend))]
    backend: Backend,
    /// Print `[packets:bytes]` before rules that carry counters.
    #[arg(short = 'c', long)]
    counters: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let Some(loaded) = load(&args.input)? else {
        return Ok(ExitCode::from(1));
    };
    let out =
        canonical_text(&loaded.rulesets, args.backend, SaveOptions { counters: args.counters });
    super::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The rulesets as iptables-save prints them after loading them: canonical rules, every
/// builtin chain present, chains in iptables-save's order.
pub(crate) fn canonical_text(rulesets: &[Ruleset], backend: Backend, opts: SaveOptions) -> String {
    let mut out = String::new();
    for rs in rulesets {
        let mut rs = canonicalize(rs, backend);
        for t in &mut rs.tables {
            t.complete_builtins();
            t.sort_chains();
        }
        out.push_str(&render_save(&rs, opts));
    }
    out
}
