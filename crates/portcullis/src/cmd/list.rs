//! `portcullis list`: `iptables -L` from a file in any format, or from the live kernel
//! (this namespace or `--netns NAME`), rendered as iptables 1.8.10+ prints it but without
//! any name lookup.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use portcullis_apply::{Counters, Target, detect_backend};
use portcullis_rules::{Backend, Family, canonicalize};
use portcullis_syntax::{parse_save_as, render_listing};

use super::convert::{ListingArgs, pick, read_any};
use super::input::read_text;

/// List a ruleset as `iptables -L` does: `portcullis list [FILE] [-t TABLE] [-n] [-v] [-x]
/// [--line-numbers] [CHAIN [RULENUM]]`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `[FILE] [CHAIN [RULENUM]]`: FILE (any supported format, `-` for standard input)
    /// when the first word names an existing file or is `-`; without FILE the live
    /// ruleset is listed.
    #[arg(value_name = "FILE|CHAIN", num_args = 0..=3)]
    words: Vec<String>,
    #[command(flatten)]
    listing: ListingArgs,
    /// IPv6: list the ip6tables ruleset.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Look into this network namespace (`ip netns` name) instead of the current one.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let family = if args.ipv6 { Family::V6 } else { Family::V4 };
    let mut words = args.words.iter().map(String::as_str).peekable();
    let file = match words.peek() {
        Some(&w) if w == "-" || std::path::Path::new(w).is_file() => {
            words.next();
            Some(PathBuf::from(w))
        }
        _ => None,
    };
    let chain = words.next().map(str::to_owned);
    let rule = match words.next() {
        Some(n) => Some(
            n.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("bad rule number `{n}'"))?,
        ),
        None => None,
    };
    if let Some(extra) = words.next() {
        bail!("unexpected argument `{extra}'");
    }
    let ruleset = match (&file, &args.netns) {
        (Some(_), Some(_)) => bail!("give either FILE or --netns, not both"),
        (Some(path), None) => {
            let (name, text) = read_text(Some(path))?;
            let Some(rulesets) = read_any(&name, &text, args.listing.table) else {
                return Ok(ExitCode::from(1));
            };
            // What the kernel would list: the canonical form (`-p tcp --dport ssh` is
            // listed as the saved `-m tcp --dport 22` prints).
            let mut rs = pick(rulesets, family).context("the input holds no ruleset")?;
            rs.tables.retain(|t| t.name == args.listing.table);
            let canonical = canonicalize(&rs, Backend::default());
            std::mem::forget(rs);
            canonical
        }
        (None, netns) => {
            let netns = netns.as_deref();
            let backend = detect_backend(netns, family)?;
            let text = Target::new(netns, family, backend).save(None, Counters::Keep)?;
            parse_save_as(&text, family)
                .map_err(|e| anyhow::anyhow!("{}", e.render("iptables-save")))?
        }
    };
    let mut flags = args.listing.flags();
    flags.chain = chain.clone();
    flags.rule = rule;
    if let Some(c) = &chain {
        let exists =
            ruleset.table(flags.table).is_some_and(|t| t.has_chain(c)) || flags.table.is_builtin(c);
        if !exists {
            eprintln!("portcullis: {}: No chain/target/match by that name.", family.command());
            return Ok(ExitCode::from(1));
        }
    }
    super::write_stdout(&render_listing(&ruleset, &flags))?;
    // The process ends here: freeing a kube-proxy-sized ruleset rule by rule costs more
    // than listing it, and the OS takes the memory back at once.
    std::mem::forget(ruleset);
    Ok(ExitCode::SUCCESS)
}
