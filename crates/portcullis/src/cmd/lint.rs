//! `portcullis lint`: lock-out risks, anomalies and hygiene findings, as compiler-style
//! diagnostics or JSON.
//!
//! Exit codes: 0 no errors (warnings allowed unless `--deny-warnings`), 1 errors (or an
//! input that does not parse), 2 warnings only, with `--deny-warnings`.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Result;
use portcullis_eval::{
    Finding, LintOptions, Severity, lint, lint_text, locate_policies, render_findings,
};
use portcullis_rules::Family;

use crate::cmd::input::{InputArgs, read_text};
use crate::cmd::write_stdout;

/// Arguments of `portcullis lint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// TCP port that must stay reachable (repeatable; default 22, ssh)
    #[arg(long = "admin-port")]
    admin_ports: Vec<u16>,
    /// The address the administrator connects from (default: any)
    #[arg(long)]
    admin_src: Option<IpAddr>,
    /// Print JSON
    #[arg(long)]
    json: bool,
    /// Exit 2 when there are warnings but no errors
    #[arg(long)]
    deny_warnings: bool,
}

/// Runs `portcullis lint`.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let (name, text) = read_text(args.input.file.as_ref())?;
    // CRLF is a finding of its own; the rest of the lint reads the text without it.
    let crlf = lint_text(&text, Family::V4);
    let input = match portcullis_syntax::read_rulesets(&text.replace("\r\n", "\n")) {
        Ok(i) => i,
        Err(e) => {
            eprint!("{}", e.render(&name));
            return Ok(ExitCode::from(1));
        }
    };
    let opts = LintOptions {
        admin_ports: if args.admin_ports.is_empty() { vec![22] } else { args.admin_ports.clone() },
        admin_src: args.admin_src,
    };
    let mut findings: Vec<Finding> = crlf;
    findings.extend(lint(&input.rulesets, &opts));
    locate_policies(&mut findings, &text);
    let out = if args.json { json(&findings)? } else { render_findings(&findings, &name, &text) };
    write_stdout(&out)?;
    let errors = findings.iter().any(|f| f.severity == Severity::Error);
    let warnings = findings.iter().any(|f| f.severity == Severity::Warning);
    Ok(if errors {
        ExitCode::from(1)
    } else if warnings && args.deny_warnings {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn json(findings: &[Finding]) -> Result<String> {
    let list: Vec<_> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "code": f.code,
                "severity": f.severity.as_str(),
                "family": if f.family == Family::V4 { "ipv4" } else { "ipv6" },
                "line": if f.line > 0 { Some(f.line) } else { None },
                "table": f.chain.as_ref().map(|(t, _)| t.as_str()),
                "chain": f.chain.as_ref().map(|(_, c)| c.as_str()),
                "message": f.message,
                "related": f.related.iter().map(|r| serde_json::json!({
                    "line": if r.line > 0 { Some(r.line) } else { None },
                    "note": r.note,
                })).collect::<Vec<_>>(),
                "help": f.help,
            })
        })
        .collect();
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let v = serde_json::json!({
        "findings": list,
        "errors": errors,
        "warnings": findings.len() - errors,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
}
