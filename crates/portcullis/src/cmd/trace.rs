//! `portcullis trace`: one packet through a ruleset, with the verdict and the path.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use portcullis_eval::{CtState, Hook, Packet, StepKind, Verdict, trace};
use portcullis_rules::view::{PortRange, TcpFlags};
use portcullis_rules::{Family, Protocol};

use crate::cmd::eval_common::{family_of, host, pick, rule_json, rule_ref};
use crate::cmd::input::{InputArgs, load};
use crate::cmd::write_stdout;

/// Arguments of `portcullis trace`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// Protocol: tcp, udp, icmp, ipv6-icmp, or a number
    #[arg(short = 'p', long = "proto", default_value = "tcp")]
    proto: String,
    /// Destination port (TCP/UDP)
    #[arg(long)]
    dport: Option<u16>,
    /// Source port (TCP/UDP; default: unknown, any port)
    #[arg(long)]
    sport: Option<u16>,
    /// Source address (default: unknown, any address)
    #[arg(long, short = 's')]
    src: Option<IpAddr>,
    /// Destination address (default: unknown; for INPUT an address of this host)
    #[arg(long, short = 'd')]
    dst: Option<IpAddr>,
    /// Input interface (default: unknown, not loopback)
    #[arg(short = 'i', long = "in-interface")]
    in_iface: Option<String>,
    /// Output interface (FORWARD and OUTPUT)
    #[arg(short = 'o', long = "out-interface")]
    out_iface: Option<String>,
    /// Connection tracking state: NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED
    #[arg(long, default_value = "NEW")]
    state: String,
    /// Where the packet meets the firewall: input, forward or output
    #[arg(long, default_value = "input")]
    hook: String,
    /// ICMP type/code (`8`, `8/0`, `echo-request`)
    #[arg(long)]
    icmp_type: Option<String>,
    /// TCP flags set, comma-separated (default SYN; e.g. `ACK`, `SYN,ACK`)
    #[arg(long)]
    tcp_flags: Option<String>,
    /// The packet mark
    #[arg(long, default_value_t = 0)]
    mark: u32,
    /// This host's addresses (for addrtype and DNAT); the destination counts too
    #[arg(long, value_delimiter = ',')]
    local: Vec<IpAddr>,
    /// Use the IPv6 ruleset of the input
    #[arg(short = '6')]
    v6: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn flags(s: &str) -> Result<TcpFlags> {
    let mut bits = 0u8;
    for f in s.split(',') {
        bits |= match f.to_ascii_uppercase().as_str() {
            "FIN" => TcpFlags::FIN.0,
            "SYN" => TcpFlags::SYN.0,
            "RST" => TcpFlags::RST.0,
            "PSH" => TcpFlags::PSH.0,
            "ACK" => TcpFlags::ACK.0,
            "URG" => TcpFlags::URG.0,
            "NONE" => 0,
            other => bail!("unknown TCP flag `{other}'"),
        };
    }
    Ok(TcpFlags(bits))
}

fn verdict_word(v: &Verdict) -> String {
    match v {
        Verdict::Reject(_) => "REJECT".into(),
        Verdict::Unknown(t) => t.clone(),
        other => other.to_string(),
    }
}

/// Runs `portcullis trace`. Exit 0 (the verdict is in the output), 2 on bad input.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let Some(loaded) = load(&args.input)? else { return Ok(ExitCode::from(2)) };
    let rs = pick(&loaded, family_of(args.v6, &[args.src, args.dst]))?;
    let family = rs.family;
    let proto: Protocol = args.proto.parse().map_err(|e| anyhow::anyhow!("-p: {e}"))?;
    let Some(proto) = proto.number() else { bail!("-p {}: unknown protocol", args.proto) };
    let mut p = Packet::new(family, proto);
    p.src = args.src;
    p.dst = args.dst;
    p.in_iface.clone_from(&args.in_iface);
    p.out_iface.clone_from(&args.out_iface);
    p.mark = Some(args.mark);
    p.state = CtState::parse(&args.state).with_context(|| format!("--state {}", args.state))?;
    if let Some(d) = args.dport {
        p.dport = PortRange::single(d);
    }
    if let Some(s) = args.sport {
        p.sport = PortRange::single(s);
    }
    if let Some(f) = &args.tcp_flags {
        p.tcp_flags = flags(f)?;
    }
    if let Some(t) = &args.icmp_type {
        let it = portcullis_rules::view::IcmpType::parse(t, family)
            .map_err(|e| anyhow::anyhow!("--icmp-type: {e}"))?;
        p.icmp = Some((it.type_, it.code_min));
    }
    let hook = match args.hook.to_ascii_lowercase().as_str() {
        "input" => Hook::Input,
        "forward" => Hook::Forward,
        "output" => Hook::Output,
        other => bail!("--hook {other}: expected input, forward or output"),
    };
    let t = trace(rs, hook, &p, &host(&args.local, args.dst))
        .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.name))?;
    let verdicts = t.verdicts();
    let text = if args.json {
        let outcomes: Vec<_> = t
            .outcomes
            .iter()
            .map(|o| {
                let path: Vec<_> = o
                    .path
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "table": s.table.as_str(),
                            "chain": s.chain,
                            "index": s.index,
                            "line": if s.line > 0 { Some(s.line) } else { None },
                            "result": kind_word(s.kind),
                            "why": s.why,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "verdict": verdict_word(&o.verdict),
                    "reject_with": match &o.verdict { Verdict::Reject(w) => Some(w.0.as_str()), _ => None },
                    "certain": o.certain,
                    "rule": rule_json(o.decided_by.as_ref()),
                    "path": path,
                })
            })
            .collect();
        let sole = (verdicts.len() == 1).then(|| verdict_word(&verdicts[0]));
        let first = t.outcomes.first();
        let v = serde_json::json!({
            "family": if family == Family::V4 { "ipv4" } else { "ipv6" },
            "hook": hook.as_str(),
            "verdict": sole,
            "verdicts": verdicts.iter().map(verdict_word).collect::<Vec<_>>(),
            "rule": if verdicts.len() == 1 { rule_json(first.and_then(|o| o.decided_by.as_ref())) } else { serde_json::Value::Null },
            "outcomes": outcomes,
        });
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        render(&t, &verdicts)
    };
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn kind_word(k: StepKind) -> &'static str {
    match k {
        StepKind::Matched => "matched",
        StepKind::NotMatched => "not-matched",
        StepKind::MayMatch => "may-match",
        StepKind::MayNotMatch => "may-not-match",
        StepKind::MayMatchNoEffect => "may-match-no-effect",
        StepKind::Policy => "policy",
    }
}

fn render(t: &portcullis_eval::Trace, verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    if verdicts.len() == 1 {
        s.push_str(&format!("verdict: {}", verdicts[0]));
        if let Some(d) = t.outcomes.first().and_then(|o| o.decided_by.as_ref()) {
            s.push_str(&format!(" ({})", rule_ref(d)));
        }
        s.push('\n');
    } else {
        let list: Vec<String> = verdicts.iter().map(ToString::to_string).collect();
        s.push_str(&format!(
            "verdict: one of {} (matches that depend on history or outside state may match)\n",
            list.join(", ")
        ));
    }
    for (n, o) in t.outcomes.iter().enumerate() {
        if t.outcomes.len() > 1 {
            s.push_str(&format!("\noutcome {}: {}", n + 1, o.verdict));
            if let Some(d) = &o.decided_by {
                s.push_str(&format!(" ({})", rule_ref(d)));
            }
            s.push_str(if o.certain { "\n" } else { " (if the uncertain matches go this way)\n" });
        }
        for step in &o.path {
            let at = match step.index {
                Some(i) if step.line > 0 => format!("#{i} line {}", step.line),
                Some(i) => format!("#{i}"),
                None => "policy".to_owned(),
            };
            s.push_str(&format!(
                "  {:<8} {:<20} {:<14} {:<14} {}\n",
                step.table.as_str(),
                step.chain,
                at,
                kind_word(step.kind),
                step.why
            ));
        }
    }
    s
}
