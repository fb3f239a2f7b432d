//! `portcullis check`: parse and validate a ruleset file.

use std::process::ExitCode;

use anyhow::Result;
use portcullis_rules::validate;
use portcullis_syntax::Format;

use super::input::{InputArgs, parse_text, read_text};
use super::mapped::Mapped;

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
    // A check is short-lived: transparent huge pages only make the allocator's arenas
    // fault in (and zero) 2 MB at a time, which nearly doubled the peak memory of a
    // kube-proxy-sized check. Failing to turn them off changes nothing else.
    let _ = nix::sys::prctl::set_thp_disable(true);
    if let Some(path) = args.input.file.as_ref().filter(|p| p.as_os_str() != "-")
        && let Some(sum) = check_mapped(path)
    {
        say_valid_save(&path.display().to_string(), sum, args.quiet);
        return Ok(ExitCode::SUCCESS);
    }
    let (name, text) = read_text(args.input.file.as_ref())?;
    // Save files, the large ones, are first checked in one streaming pass that keeps no
    // model; only a file it does not show valid is parsed in full for the diagnostics.
    if portcullis_syntax::detect_format(&text) == Some(Format::Save)
        && let Some(sum) = portcullis_syntax::validate_save(&text)
    {
        say_valid_save(&name, sum, args.quiet);
        // As below: the process ends here, the kernel takes the memory back at once.
        std::mem::forget(text);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(loaded) = parse_text(name, text) else {
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

/// The line a save file shown valid by the streaming check gets (none with `--quiet`).
fn say_valid_save(name: &str, sum: portcullis_syntax::SaveSummary, quiet: bool) {
    if !quiet {
        println!(
            "{name}: ok ({}, {} rules in {} tables)",
            Format::Save.name(),
            sum.rules,
            sum.tables
        );
    }
}

/// The streaming check of a large save file, mapped instead of read (see [`Mapped`]):
/// `Some` when it is shown valid; `None` when the file is small, not a save file, or not
/// shown valid, and the caller reads it and decides as for any input.
fn check_mapped(path: &std::path::Path) -> Option<portcullis_syntax::SaveSummary> {
    let file = std::fs::File::open(path).ok()?;
    let mapped = Mapped::new(&file)?;
    let bytes = mapped.bytes();
    // The format is told by the first lines: whole lines of the first 64 KB.
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let head = &head[..head.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)];
    let head = std::str::from_utf8(head).ok()?;
    if portcullis_syntax::detect_format(head) != Some(Format::Save) {
        return None;
    }
    portcullis_syntax::validate_save_bytes(bytes)
}
