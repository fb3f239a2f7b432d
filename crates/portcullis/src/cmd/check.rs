//! `portcullis check`: parse and validate a ruleset file.

use std::process::ExitCode;

use anyhow::Result;
use portcullis_rules::validate;

use super::input::{InputArgs, load};

/// Check a ruleset: exit 0 when it parses and validates, else print diagnostics, exit 1.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// Print nothing when the ruleset is valid.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let Some(loaded) = load(&args.input)? else {
        return Ok(ExitCode::from(1));
    };
    let mut errors = 0;
    for rs in &loaded.rulesets {
        for e in validate(rs) {
            errors += 1;
            let line = e.location.line.map_or(String::new(), |l| format!(":{l}"));
            eprintln!("error: {}\n --> {}{line} ({})", e.kind, loaded.name, e.location);
        }
    }
    for (line, text) in &loaded.skipped {
        eprintln!("note: {}:{line}: not an iptables command, passed over: {text}", loaded.name);
    }
    let code = if errors > 0 {
        eprintln!("{}: {errors} error(s)", loaded.name);
        ExitCode::from(1)
    } else {
        if !args.quiet {
            let rules: usize = loaded.rulesets.iter().map(|r| r.rule_count()).sum();
            let tables: usize = loaded.rulesets.iter().map(|r| r.tables.len()).sum();
            println!(
                "{}: ok ({}, {rules} rules in {tables} tables)",
                loaded.name,
                loaded.format.name()
            );
        }
        ExitCode::SUCCESS
    };
    // The process ends here: freeing a kube-proxy-sized model rule by rule would cost a
    // tenth of the run, and the kernel takes the memory back at once.
    std::mem::forget(loaded);
    Ok(code)
}
