//! `portcullis demo`: the seed article's workflow on its own example server, built in, so
//! that `make demo` shows the whole job on a fresh machine: the article's commands, the
//! ruleset they leave (written to a file), `iptables -L`, the lint, a sandbox
//! verification and the scan as nmap prints it.
//!
//! The sandbox steps need root (network namespaces). Without root the demo prints the
//! static steps, says plainly that the sandbox steps were skipped and why, and still
//! exits 0: what it could show succeeded, and `make demo` is also run by people trying
//! the tool as a normal user. Any real failure (the seed does not parse, the sandbox
//! cannot be built as root, a port disagrees) exits non-zero.

use std::process::ExitCode;

use anyhow::{Context, Result};
use portcullis_eval::{LintOptions, Proto, lint, locate_policies, render_findings};
use portcullis_rules::{Backend, validate};
use portcullis_scan::output::{self, OutputOptions};
use portcullis_syntax::{ListFlags, SaveOptions, read_rulesets, render_listing};

use super::verify::{self, PortChoice, Request};

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

    step(2, "the ruleset they leave, as iptables-save prints it (portcullis fmt)");
    let input = read_rulesets(SEED_SCRIPT).context("the built-in seed script parses")?;
    let text = super::fmt::canonical_text(&input.rulesets, Backend::Nft, SaveOptions::default());
    let dir = std::env::temp_dir().join("portcullis-demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let file = dir.join("seed.rules");
    std::fs::write(&file, &text).with_context(|| format!("write {}", file.display()))?;
    print!("{text}");
    println!("(written to {})", file.display());

    step(3, "what `iptables -L` shows (portcullis list)");
    for rs in &input.rulesets {
        print!("{}", render_listing(rs, &ListFlags::default()));
    }

    step(4, "check and lint (portcullis check, portcullis lint)");
    let errors: Vec<_> = input.rulesets.iter().flat_map(validate).collect();
    for e in &errors {
        println!("error: {e}");
    }
    if !errors.is_empty() {
        return Ok(ExitCode::from(1));
    }
    println!(
        "check: {} rule(s), no errors",
        input.rulesets.iter().map(portcullis_rules::Ruleset::rule_count).sum::<usize>()
    );
    let mut findings =
        lint(&input.rulesets, &LintOptions { admin_ports: vec![22], admin_src: None });
    locate_policies(&mut findings, &text);
    let name = file.display().to_string();
    if findings.is_empty() {
        println!("lint: no findings");
    } else {
        print!("{}", render_findings(&findings, &name, &text));
        println!("(the article forgets loopback and replies; `portcullis init` writes them in)");
    }

    step(5, "verify in a sandbox, expecting only 22/tcp open (portcullis verify --expect 22/tcp)");
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-restore"]) {
        println!("skipped: the sandbox needs root and iptables ({why}).");
        println!("Run `sudo make demo` (or `sudo portcullis demo`) to see steps 5 and 6.");
        return Ok(ExitCode::SUCCESS);
    }
    let req = Request {
        name: name.clone(),
        rulesets: input.rulesets.clone(),
        backend: None,
        ports: PortChoice::Fast,
        listen: None,
        expect: Some(vec![(22, Proto::Tcp)]),
        src: None,
        timing: None,
        keep: false,
    };
    let out = verify::execute(&req)?;
    print!("{}", verify::report::text(&req, &out));

    step(6, "the scan as nmap prints it (portcullis scan -Pn -sS -F, from the sandbox's scanner)");
    let tcp: Vec<_> = out
        .reports
        .iter()
        .filter(|r| r.scan_type == portcullis_scan::state::ScanType::Syn)
        .cloned()
        .collect();
    print!(
        "{}",
        output::normal_screen(&tcp, &out.info, OutputOptions { reason: false, open_only: false })
    );
    Ok(ExitCode::from(out.code()))
}
