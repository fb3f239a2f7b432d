//! `portcullis demo`: the seed article's workflow on its own example server, built in, so
//! that `make demo` shows the whole job on a fresh machine.

use std::process::ExitCode;

use anyhow::{Context, Result};
use portcullis_rules::{Backend, validate};
use portcullis_syntax::{SaveOptions, read_rulesets};

/// The seed article's commands: policy DROP, flush, allow ssh only.
pub(crate) const SEED_SCRIPT: &str = "\
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -P OUTPUT ACCEPT
iptables -F
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
";

/// Run the seed article's workflow on its example server (ssh only).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

pub(crate) fn run(_args: Args) -> Result<ExitCode> {
    println!("portcullis demo: the seed article's server, allowing ssh only");
    step(1, "the article's commands");
    print!("{SEED_SCRIPT}");

    step(2, "what iptables-save prints after running them (portcullis fmt)");
    let input = read_rulesets(SEED_SCRIPT).context("the built-in seed script parses")?;
    let text = super::fmt::canonical_text(&input.rulesets, Backend::Nft, SaveOptions::default());
    print!("{text}");

    step(3, "check (portcullis check)");
    let errors: Vec<_> = input.rulesets.iter().flat_map(validate).collect();
    for e in &errors {
        println!("error: {e}");
    }
    if !errors.is_empty() {
        return Ok(ExitCode::from(1));
    }
    println!(
        "ok: {} rule(s), no errors",
        input.rulesets.iter().map(|r| r.rule_count()).sum::<usize>()
    );
    Ok(ExitCode::SUCCESS)
}
