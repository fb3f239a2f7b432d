//! `portcullis ports`: the port states a scan of this host would see, predicted from the
//! ruleset alone, in nmap's words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Result, bail};
use portcullis_eval::{Compiled, PortQuery, PortRun, PortState, Proto, predict_ports};
use portcullis_rules::view::PortRange;
use portcullis_scan::ports::{parse_port_spec, service_name, top_ports};
use portcullis_scan::state::Protocol as ScanProto;

use crate::cmd::eval_common::{family_of, host, pick};
use crate::cmd::input::{InputArgs, load};
use crate::cmd::write_stdout;

/// Arguments of `portcullis ports`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// The scanner's address (default: any source)
    #[arg(long, short = 's')]
    src: Option<IpAddr>,
    /// The scanned address of this host (default: some address of the host)
    #[arg(long, short = 'd')]
    dst: Option<IpAddr>,
    /// The interface the probes arrive on (default: some interface other than loopback)
    #[arg(short = 'i', long = "in-interface")]
    in_iface: Option<String>,
    /// Listening ports: `22,80/tcp,53/udp,8000-8010` (no suffix: tcp). A UDP listener is
    /// taken to answer the probe
    #[arg(long, value_delimiter = ',')]
    listen: Vec<String>,
    /// Ports to predict, nmap's syntax (`22,80`, `1-1024`, `T:22,U:53`); default all
    #[arg(short = 'p', conflicts_with = "fast")]
    ports: Option<String>,
    /// nmap's 100 most common ports of each protocol
    #[arg(short = 'F')]
    fast: bool,
    /// Only this protocol: tcp or udp (default both)
    #[arg(long)]
    proto: Option<String>,
    /// The scanner's source ports (default 1024-65535: a scanner picks them at random)
    #[arg(long, default_value = "1024-65535")]
    sport: String,
    /// This host's addresses (for addrtype and DNAT); the destination counts too
    #[arg(long, value_delimiter = ',')]
    local: Vec<IpAddr>,
    /// Use the IPv6 ruleset of the input
    #[arg(short = '6')]
    v6: bool,
    /// Print JSON: one object per port
    #[arg(long)]
    json: bool,
    /// Print the time of each phase to standard error (for benchmarks)
    #[arg(long, hide = true)]
    timings: bool,
}

fn range(s: &str) -> Result<PortRange> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    if lo > hi {
        bail!("port range {s}: start above end");
    }
    Ok(PortRange { lo, hi })
}

fn ranges(ports: &[u16]) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some(r) if u32::from(r.hi) + 1 == u32::from(p) => r.hi = p,
            _ => out.push(PortRange::single(p)),
        }
    }
    out
}

/// Runs `portcullis ports`. Exit 0, or 2 on bad input.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let Some(mut loaded) = load(&args.input)? else { return Ok(ExitCode::from(2)) };
    let t_read = t0.elapsed();
    let rs = pick(&loaded, family_of(args.v6, &[args.src, args.dst]))?;
    let index = loaded.rulesets.iter().position(|r| std::ptr::eq(r, rs)).unwrap_or(0);
    // The evaluator takes the ruleset itself (no copy) and compiles chains lazily.
    let rs = std::sync::Arc::new(loaded.rulesets.swap_remove(index));
    let (mut tcp, mut udp) = if args.fast {
        (ranges(&top_ports(ScanProto::Tcp, 100)), ranges(&top_ports(ScanProto::Udp, 100)))
    } else if let Some(spec) = &args.ports {
        let set = parse_port_spec(spec).map_err(|e| anyhow::anyhow!("-p: {e}"))?;
        (ranges(&set.tcp), ranges(&set.udp))
    } else {
        (vec![PortRange::ALL], vec![PortRange::ALL])
    };
    match args.proto.as_deref() {
        None => {}
        Some("tcp") => udp.clear(),
        Some("udp") => tcp.clear(),
        Some(other) => bail!("--proto {other}: expected tcp or udp"),
    }
    let (mut listen_tcp, mut listen_udp) = (Vec::new(), Vec::new());
    for item in &args.listen {
        let (ports, proto) = item.split_once('/').unwrap_or((item, "tcp"));
        let r = range(ports)?;
        match proto {
            "tcp" => listen_tcp.push(r),
            "udp" => listen_udp.push(r),
            other => bail!("--listen {item}: unknown protocol `{other}'"),
        }
    }
    let q = PortQuery {
        family: rs.family,
        src: args.src,
        dst: args.dst,
        in_iface: args.in_iface.clone(),
        sport: range(&args.sport)?,
        host: host(&args.local, args.dst),
        listen_tcp,
        listen_udp,
        tcp,
        udp,
    };
    let t1 = std::time::Instant::now();
    // Chains are compiled as packets enter them: a query that never enters most chains of
    // a large ruleset does not pay for them.
    let compiled = Compiled::lazy(rs);
    let t_compile = t1.elapsed();
    let t2 = std::time::Instant::now();
    let runs = predict_ports(&compiled, &q).map_err(|e| anyhow::anyhow!("{}: {e}", loaded.name))?;
    let t_predict = t2.elapsed();
    let text = if args.json { json(&runs)? } else { text(&runs, &args, &loaded.name) };
    write_stdout(&text)?;
    if args.timings {
        eprintln!(
            "timings: read+parse {:.1} ms, compile {:.1} ms, predict {:.1} ms, total {:.1} ms, cpu {:.0} ms",
            t_read.as_secs_f64() * 1e3,
            t_compile.as_secs_f64() * 1e3,
            t_predict.as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3,
            cpu_ms()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// CPU time (user + system) of this process so far, in milliseconds, from
/// `/proc/self/stat` (clock ticks of 10 ms); 0 where that file is missing.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 10.0
}

/// The state and reason words of a run: one prediction, or the alternatives joined
/// with `|`.
fn words(run: &PortRun) -> (String, String) {
    let mut states: Vec<&str> = run.predictions.iter().map(|p| p.state.as_str()).collect();
    let mut reasons: Vec<&str> = run.predictions.iter().map(|p| p.reason.as_str()).collect();
    states.dedup();
    reasons.sort_unstable();
    reasons.dedup();
    (states.join("|"), reasons.join("|"))
}

fn json(runs: &[PortRun]) -> Result<String> {
    let mut out = String::from("[\n");
    let mut first = true;
    for run in runs {
        let (state, reason) = words(run);
        let certain = run.predictions.len() == 1;
        for port in run.ports.lo..=run.ports.hi {
            if !first {
                out.push_str(",\n");
            }
            first = false;
            let mut v = serde_json::json!({
                "port": port,
                "proto": run.proto.as_str(),
                "state": state,
                "reason": reason,
            });
            if !certain {
                v["certain"] = serde_json::Value::Bool(false);
            }
            out.push_str(&serde_json::to_string(&v)?);
        }
    }
    out.push_str("\n]\n");
    Ok(out)
}

fn scan_proto(p: Proto) -> ScanProto {
    match p {
        Proto::Tcp => ScanProto::Tcp,
        Proto::Udp => ScanProto::Udp,
    }
}

/// nmap's normal output: collapsed states first, then one row per remaining port.
fn text(runs: &[PortRun], args: &Args, name: &str) -> String {
    let mut counts: BTreeMap<(Proto, String, String), u32> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.predictions.len() == 1) {
        let p = run.predictions[0];
        if p.state != PortState::Open {
            *counts
                .entry((run.proto, p.state.as_str().to_owned(), p.reason.as_str().to_owned()))
                .or_default() += u32::from(run.ports.hi - run.ports.lo) + 1;
        }
    }
    // nmap collapses a non-open state of more than 25 ports.
    counts.retain(|_, n| *n > 25);
    let mut s = String::new();
    let from = args.src.map_or_else(|| "any source".to_owned(), |a| a.to_string());
    let to = args.dst.map_or_else(|| "this host".to_owned(), |a| a.to_string());
    let _ = writeln!(s, "Predicted port states of {to} from {from} ({name})");
    if !counts.is_empty() {
        let parts: Vec<String> = counts
            .iter()
            .map(|((proto, state, reason), n)| format!("{n} {state} {proto} ports ({reason})"))
            .collect();
        let _ = writeln!(s, "Not shown: {}", parts.join(", "));
    }
    let mut rows = Vec::new();
    for run in runs {
        let (state, reason) = words(run);
        if run.predictions.len() == 1 {
            let p = run.predictions[0];
            let key = (run.proto, p.state.as_str().to_owned(), p.reason.as_str().to_owned());
            if counts.contains_key(&key) {
                continue;
            }
        }
        for port in run.ports.lo..=run.ports.hi {
            let service = service_name(scan_proto(run.proto), port).unwrap_or("unknown");
            rows.push((format!("{port}/{}", run.proto), state.clone(), service, reason.clone()));
        }
    }
    if rows.is_empty() {
        return s;
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(5).max(5);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(7).max(7);
    let _ = writeln!(s, "{:<w0$} {:<w1$} {:<w2$} REASON", "PORT", "STATE", "SERVICE");
    for (port, state, service, reason) in rows {
        let _ = writeln!(s, "{port:<w0$} {state:<w1$} {service:<w2$} {reason}");
    }
    s
}
