//! `portcullis diff A B`: rules added, removed and moved, and the change in behaviour:
//! which packets (hook, state, protocol, ports, peer addresses) now get another verdict.
//!
//! Exit codes: 0 no change in behaviour (the rules may still differ), 1 the behaviour
//! changed, 2 bad input.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Result, bail};
use portcullis_eval::{BehaviourChange, ChangeKind, Diff, DiffOptions, Hook, Verdict, diff_with};
use portcullis_rules::Family;

use crate::cmd::eval_common::pick;
use crate::cmd::input::{InputArgs, Loaded, load};
use crate::cmd::write_stdout;

/// Arguments of `portcullis diff`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The old ruleset
    #[arg(value_name = "OLD")]
    old: std::path::PathBuf,
    /// The new ruleset
    #[arg(value_name = "NEW")]
    new: std::path::PathBuf,
    /// Compare the IPv6 rulesets of the inputs
    #[arg(short = '6')]
    v6: bool,
    /// This host's address (INPUT destination, OUTPUT source); default unknown
    #[arg(long)]
    host: Option<IpAddr>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn load_file(p: &std::path::Path) -> Result<Option<Loaded>> {
    load(&InputArgs { file: Some(p.to_path_buf()) })
}

/// Runs `portcullis diff`.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let (Some(a), Some(b)) = (load_file(&args.old)?, load_file(&args.new)?) else {
        return Ok(ExitCode::from(2));
    };
    let family = if args.v6 { Some(Family::V6) } else { a.rulesets.first().map(|r| r.family) };
    let (ra, rb) = (pick(&a, family)?, pick(&b, family)?);
    if ra.family != rb.family {
        bail!("{} and {} hold rulesets of different families", a.name, b.name);
    }
    let opts = DiffOptions { host: args.host };
    let d = diff_with(ra, rb, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = if args.json { json(&d)? } else { text(&d, &a, &b) };
    write_stdout(&out)?;
    Ok(if d.behaviour.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn quote(l: &Loaded, line: u32) -> &str {
    if line == 0 {
        return "";
    }
    l.text.lines().nth(line as usize - 1).map_or("", str::trim)
}

/// `any source`, `10.0.0.0/8`, or `A-B`.
fn peers(c: &BehaviourChange) -> String {
    let (lo, hi) = c.peers;
    let (l, h, bits) = match (lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return format!("{lo}-{hi}"),
    };
    let size = h.wrapping_sub(l).wrapping_add(1);
    if l == 0 && (bits == 128 && h == u128::MAX || bits == 32 && h == u128::from(u32::MAX)) {
        return "any address".to_owned();
    }
    if size.is_power_of_two() && l % size == 0 {
        let prefix = bits - size.trailing_zeros();
        return format!("{lo}/{prefix}");
    }
    if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }
}

fn verdicts(v: &[Verdict]) -> String {
    if v.is_empty() {
        return "(none)".into();
    }
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

fn describe(c: &BehaviourChange) -> String {
    let dir = if c.hook == Hook::Output { "to" } else { "from" };
    let iface = c.in_iface.as_ref().map_or_else(String::new, |i| format!(" in on {i}"));
    format!(
        "{} {} {}/{} {dir} {}{iface}: {} -> {}",
        c.hook.as_str(),
        c.state,
        c.proto,
        c.ports,
        peers(c),
        verdicts(&c.before),
        verdicts(&c.after)
    )
}

fn text(d: &Diff, a: &Loaded, b: &Loaded) -> String {
    let mut s = String::new();
    if d.rules.is_empty() {
        s.push_str("rules: no change\n");
    } else {
        s.push_str("rules:\n");
    }
    for c in &d.rules {
        let at = format!("{}/{}", c.table.as_str(), c.chain);
        let _ = match c.kind {
            ChangeKind::Added => writeln!(
                s,
                "  + {at} #{} ({}:{}): {}",
                c.new_index.unwrap_or(0),
                b.name,
                c.new_line,
                quote(b, c.new_line)
            ),
            ChangeKind::Removed => writeln!(
                s,
                "  - {at} #{} ({}:{}): {}",
                c.old_index.unwrap_or(0),
                a.name,
                c.old_line,
                quote(a, c.old_line)
            ),
            ChangeKind::Moved => writeln!(
                s,
                "  ~ {at} #{} -> #{} ({}:{} -> {}:{}): {}",
                c.old_index.unwrap_or(0),
                c.new_index.unwrap_or(0),
                a.name,
                c.old_line,
                b.name,
                c.new_line,
                quote(b, c.new_line)
            ),
            ChangeKind::Policy => {
                let (x, y) = c.policies.map_or(("?", "?"), |(x, y)| (x.as_str(), y.as_str()));
                writeln!(s, "  policy {at}: {x} -> {y}")
            }
            ChangeKind::ChainAdded => writeln!(s, "  + chain {at}"),
            ChangeKind::ChainRemoved => writeln!(s, "  - chain {at}"),
        };
    }
    for note in &d.not_compared {
        let _ = writeln!(s, "not compared: {note}");
    }
    if d.behaviour.is_empty() {
        s.push_str("behaviour: no change in behaviour\n");
    } else {
        s.push_str("behaviour:\n");
        for c in &d.behaviour {
            let _ = writeln!(s, "  {}", describe(c));
        }
    }
    s
}

fn json(d: &Diff) -> Result<String> {
    let rules: Vec<_> = d
        .rules
        .iter()
        .map(|c| {
            serde_json::json!({
                "change": c.kind.as_str(),
                "table": c.table.as_str(),
                "chain": c.chain,
                "old_index": c.old_index,
                "new_index": c.new_index,
                "old_line": if c.old_line > 0 { Some(c.old_line) } else { None },
                "new_line": if c.new_line > 0 { Some(c.new_line) } else { None },
                "policy": c.policies.map(|(x, y)| serde_json::json!({"old": x.as_str(), "new": y.as_str()})),
            })
        })
        .collect();
    let behaviour: Vec<_> = d
        .behaviour
        .iter()
        .map(|c| {
            serde_json::json!({
                "hook": c.hook.as_str(),
                "state": c.state.as_str(),
                "proto": c.proto.as_str(),
                "ports": {"from": c.ports.lo, "to": c.ports.hi},
                "peers": {"from": c.peers.0.to_string(), "to": c.peers.1.to_string()},
                "in_interface": c.in_iface,
                "before": c.before.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "after": c.after.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = serde_json::json!({
        "rules": rules,
        "behaviour_changed": !d.behaviour.is_empty(),
        "behaviour": behaviour,
        "not_compared": d.not_compared,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
}
