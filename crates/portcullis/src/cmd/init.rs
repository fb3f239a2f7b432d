//! `portcullis init`, `allow` and `deny`: the seed article's workflow, ufw-simple.
//!
//! `init` writes a starting ruleset like the seed's (INPUT and FORWARD policy DROP, OUTPUT
//! ACCEPT) plus what the article forgets and the lint demands: loopback and
//! ESTABLISHED,RELATED. `allow` and `deny` edit such a file in place: `allow` appends an
//! ACCEPT rule per port (before nothing: INPUT's policy is DROP, so appending is enough),
//! `deny` removes the ACCEPT rules for the port and, when the policy would not already
//! drop it, appends a DROP rule. Every added rule carries a `-m comment` naming the
//! service, and the file is replaced atomically (temporary file, fsync, rename).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use portcullis_eval::Proto;
use portcullis_rules::{Action, Backend, Family, Policy, TableName, canonicalize};
use portcullis_syntax::{SaveOptions, parse_rule_line, read_rulesets, render_save};

/// The services of the seed article's "commonly allowed ports" table, plus ssh.
pub(crate) const SERVICES: &[(&str, &[(u16, Proto)])] = &[
    ("ssh", &[(22, Proto::Tcp)]),
    ("http", &[(80, Proto::Tcp)]),
    ("https", &[(443, Proto::Tcp)]),
    ("smtp", &[(25, Proto::Tcp)]),
    ("pop3", &[(110, Proto::Tcp)]),
    ("dns", &[(53, Proto::Tcp), (53, Proto::Udp)]),
    ("proxy", &[(3128, Proto::Tcp)]),
];

/// The ports of `item`: a service name from [`SERVICES`], `PORT` (TCP) or `PORT/PROTO`,
/// each with the name to put in the rule's comment.
pub(crate) fn parse_item(item: &str) -> Result<Vec<(u16, Proto, String)>> {
    let item = item.trim();
    if let Some((_, ports)) = SERVICES.iter().find(|(n, _)| n.eq_ignore_ascii_case(item)) {
        let name = item.to_ascii_lowercase();
        return Ok(ports.iter().map(|&(p, pr)| (p, pr, name.clone())).collect());
    }
    let (port, proto) = item.split_once('/').unwrap_or((item, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => bail!("{item}: unknown protocol `{other}' (tcp or udp)"),
    };
    let Ok(port) = port.parse::<u16>() else {
        let names: Vec<&str> = SERVICES.iter().map(|(n, _)| *n).collect();
        bail!("{item}: not a port, PORT/PROTO or service ({})", names.join(", "));
    };
    if port == 0 {
        bail!("{item}: port 0 cannot be allowed");
    }
    Ok(vec![(port, proto, format!("{port}/{proto}"))])
}

/// Every item of a comma-separated list, in order, without repeats.
pub(crate) fn parse_items(items: &[String]) -> Result<Vec<(u16, Proto, String)>> {
    let mut out: Vec<(u16, Proto, String)> = Vec::new();
    for item in items.iter().flat_map(|s| s.split(',')).filter(|s| !s.trim().is_empty()) {
        for p in parse_item(item)? {
            if !out.iter().any(|q| q.0 == p.0 && q.1 == p.1) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Write a starting ruleset like the seed's, with loopback and ESTABLISHED,RELATED
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Services or ports to allow: ssh,http,https,smtp,pop3,dns,proxy or PORT/PROTO
    /// (default ssh)
    #[arg(long, value_delimiter = ',', default_value = "ssh")]
    allow: Vec<String>,
    /// Where to write it (`-` or nothing: standard output)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE when it exists
    #[arg(long)]
    force: bool,
}

/// Allow (or deny) a service or port in a ruleset file, in place
#[derive(Debug, clap::Args)]
pub(crate) struct EditArgs {
    /// A service (ssh, http, https, smtp, pop3, dns, proxy), PORT or PORT/PROTO; several
    /// separated by commas
    #[arg(value_name = "SERVICE|PORT/PROTO", required = true)]
    what: String,
    /// The ruleset file to edit (iptables-save form; other forms are rewritten into it)
    #[arg(value_name = "FILE", default_value = "rules.v4")]
    file: PathBuf,
}

fn comment(name: &str) -> String {
    format!("-m comment --comment \"portcullis: allow {name}\"")
}

fn rule_for(port: u16, proto: Proto, name: &str) -> String {
    format!("-A INPUT -p {proto} -m {proto} --dport {port} {} -j ACCEPT", comment(name))
}

/// The text `init` writes.
pub(crate) fn starting_ruleset(items: &[(u16, Proto, String)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Written by `portcullis init`: the seed article's server, plus loopback");
    let _ =
        writeln!(s, "# and replies to this host's own connections. Apply: portcullis apply FILE");
    s.push_str("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    s.push_str(
        "-A INPUT -i lo -m comment --comment \"portcullis: loopback\" -j ACCEPT\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"portcullis: replies\" -j ACCEPT\n",
    );
    for (port, proto, name) in items {
        s.push_str(&rule_for(*port, *proto, name));
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

/// Writes `data` to `path` atomically (a temporary file beside it, fsync, rename).
fn write_atomic(path: &Path, data: &str) -> Result<()> {
    let mode = std::fs::metadata(path).map_or(0o644, |m| {
        use std::os::unix::fs::PermissionsExt as _;
        m.permissions().mode() & 0o7777
    });
    portcullis_apply::persist::write_atomic(path, data.as_bytes(), mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `portcullis init`.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let items = parse_items(&args.allow)?;
    let text = starting_ruleset(&items);
    match args.output.as_deref() {
        None => super::write_stdout(&text)?,
        Some(p) if p.as_os_str() == "-" => super::write_stdout(&text)?,
        Some(p) => {
            if p.exists() && !args.force {
                bail!("{} exists (pass --force to replace it)", p.display());
            }
            write_atomic(p, &text)?;
            let names: Vec<&str> = items.iter().map(|i| i.2.as_str()).collect();
            eprintln!("wrote {} (allows {})", p.display(), names.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `rule` is an INPUT rule accepting exactly `port/proto` (what allow adds).
fn accepts_port(rs_rule: &portcullis_rules::Rule, port: u16, proto: Proto) -> bool {
    let target = match &rs_rule.action {
        Some(Action::Jump(t)) => t.name.as_str(),
        _ => return false,
    };
    if target != "ACCEPT" || rs_rule.src.is_some() || rs_rule.in_iface.is_some() {
        return false;
    }
    let p = rs_rule.proto.as_ref().map(|p| p.value.to_string());
    if p.as_deref() != Some(proto.as_str()) {
        return false;
    }
    let port = port.to_string();
    rs_rule.matches.iter().any(|m| {
        m.name == proto.as_str()
            && m.opts.iter().any(|o| {
                !o.negated
                    && matches!(o.name.as_str(), "dport" | "destination-port")
                    && o.args == [port.clone()]
            })
    })
}

fn edit(args: &EditArgs, allow: bool) -> Result<ExitCode> {
    let items = parse_items(std::slice::from_ref(&args.what))?;
    let text = std::fs::read_to_string(&args.file).with_context(|| {
        format!("cannot read {} (create it with `portcullis init -o FILE`)", args.file.display())
    })?;
    let input = match read_rulesets(&text) {
        Ok(i) => i,
        Err(e) => {
            eprint!("{}", e.render(&args.file.display().to_string()));
            return Ok(ExitCode::from(2));
        }
    };
    let Some(mut rs) = input.rulesets.into_iter().find(|r| r.family == Family::V4) else {
        bail!("{} holds no IPv4 ruleset", args.file.display());
    };
    let mut changes = Vec::new();
    for (port, proto, name) in &items {
        let input_chain = rs
            .table_mut(TableName::Filter)
            .and_then(|t| t.chains.iter_mut().find(|c| c.name.as_str() == "INPUT"));
        let Some(chain) = input_chain else {
            bail!("{} has no filter/INPUT chain", args.file.display())
        };
        let policy_drops = matches!(chain.policy, Some(Policy::Drop));
        let before = chain.rules.len();
        chain.rules.retain(|r| !accepts_port(r, *port, *proto));
        let removed = before - chain.rules.len();
        if allow {
            let (_, rule) = parse_rule_line(&rule_for(*port, *proto, name), Family::V4)
                .map_err(|e| anyhow::anyhow!("internal rule for {name}: {e:?}"))?;
            chain.rules.push(rule);
            changes.push(format!("allowed {port}/{proto} ({name})"));
        } else {
            if !policy_drops {
                let line = format!(
                    "-A INPUT -p {proto} -m {proto} --dport {port} -m comment --comment \"portcullis: deny {name}\" -j DROP"
                );
                let (_, rule) = parse_rule_line(&line, Family::V4)
                    .map_err(|e| anyhow::anyhow!("internal rule for {name}: {e:?}"))?;
                // A DROP must come before any broader ACCEPT: put it first.
                chain.rules.insert(0, rule);
            }
            changes
                .push(format!("denied {port}/{proto} ({name}): {removed} ACCEPT rule(s) removed"));
        }
    }
    let out = render_save(&canonicalize(&rs, Backend::Nft), SaveOptions::default());
    write_atomic(&args.file, &out)?;
    for c in changes {
        eprintln!("{}: {c}", args.file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `portcullis allow`.
pub(crate) fn run_allow(args: EditArgs) -> Result<ExitCode> {
    edit(&args, true)
}

/// Runs `portcullis deny`.
pub(crate) fn run_deny(args: EditArgs) -> Result<ExitCode> {
    edit(&args, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse() {
        let v = parse_items(&["ssh,dns".into(), "8080/udp".into(), "22".into()]).unwrap();
        let ports: Vec<(u16, Proto)> = v.iter().map(|i| (i.0, i.1)).collect();
        assert_eq!(
            ports,
            [(22, Proto::Tcp), (53, Proto::Tcp), (53, Proto::Udp), (8080, Proto::Udp)]
        );
        assert!(parse_item("gopher").is_err());
        assert!(parse_item("22/sctp").is_err());
        assert!(parse_item("0").is_err());
    }

    #[test]
    fn starting_ruleset_parses_and_validates() {
        let text = starting_ruleset(&parse_items(&["ssh,http".into()]).unwrap());
        let rs = portcullis_syntax::parse_save(&text).unwrap();
        assert!(portcullis_rules::validate(&rs).is_empty());
        assert_eq!(rs.rule_count(), 4);
    }
}
