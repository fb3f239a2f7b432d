//! `portcullis verify FILE`: prove a ruleset in a sandbox before the real server is
//! touched.
//!
//! A target namespace gets FILE (through `portcullis-apply`, `--backend nft|legacy`) and
//! listeners; a scanner namespace on a veth link scans it with `portcullis-scan` (SYN and
//! UDP, in-process: the scan threads enter the scanner namespace with
//! `portcullis_scan::netns::run_in_netns`, so no process is started per scan);
//! `portcullis-eval` predicts the same ports for the same source, destination, interface
//! and listeners. One table compares the two. See docs/verify.md for the decisions.
//!
//! Exit codes: 0 every port agrees (and matches `--expect`); 1 the observed ports differ
//! from `--expect`; 3 prediction and observation disagree (an internal inconsistency,
//! reported with everything a bug report needs); 2 bad input or the sandbox could not be
//! built.

pub(crate) mod report;
pub(crate) mod sandbox;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use portcullis_apply::{ApplyOptions, Target};
use portcullis_eval::{
    Compiled, Decision, Host, Packet, PortQuery, PortState, Prediction, Proto, Reason, Verdict,
    predict_ports, trace_compiled,
};
use portcullis_rules::view::PortRange;
use portcullis_rules::{Backend, Family, Ruleset};
use portcullis_scan::engine::ScanReport;
use portcullis_scan::output::RunInfo;
use portcullis_scan::ports::{parse_port_spec, top_ports};
use portcullis_scan::scan::{ScanConfig, scan};
use portcullis_scan::state::{Protocol as ScanProto, ScanType};
use portcullis_scan::timing::Timing;

use crate::cmd::input::{InputArgs, load};
use sandbox::Sandbox;

/// The most listeners per protocol (each is a socket and a thread in `__listen`).
pub(crate) const MAX_LISTENERS: usize = 400;

/// Prove a ruleset in a sandbox: apply, listen, scan, predict, compare
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every port agrees (and matches --expect); 1 observed ports \
differ from --expect; 3 prediction and observation disagree (a bug: the report says what to send); \
2 bad input or no sandbox.\n\nExamples:\n  portcullis verify rules.v4\n  portcullis verify rules.v4 \
--expect 22/tcp,80/tcp,53/udp\n  portcullis verify rules.v4 -p- --src 198.18.7.7 --keep\n  \
portcullis verify --cleanup"
)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// Ports with a listener (TCP accept, UDP echo): `22,80/tcp,53/udp` (no suffix: tcp).
    /// Default: every scanned port the ruleset accepts from the scanner, and --expect
    #[arg(long, value_delimiter = ',')]
    listen: Vec<String>,
    /// The ports meant to be open from the scanner: `22/tcp,80/tcp,53/udp` or service names
    /// (ssh, http, https, smtp, pop3, dns, proxy); every other port must be closed or filtered
    #[arg(long, value_delimiter = ',')]
    expect: Vec<String>,
    /// Ports to scan, nmap's syntax (`22,80`, `1-1024`, `T:22,U:53`, `-` for all)
    #[arg(short = 'p', allow_hyphen_values = true, conflicts_with = "fast")]
    ports: Option<String>,
    /// nmap's 100 most common ports of each protocol (the default)
    #[arg(short = 'F')]
    fast: bool,
    /// Scan from this address: the sandbox gives the scanner this address
    #[arg(long)]
    src: Option<IpAddr>,
    /// iptables backend in the sandbox: nft or legacy (default: the host's)
    #[arg(long)]
    backend: Option<String>,
    /// nmap timing template of the scan, -T0..-T5 (default: the sandbox's own, see
    /// docs/verify.md)
    #[arg(short = 'T', value_parser = clap::value_parser!(u8).range(0..=5))]
    timing: Option<u8>,
    /// Leave the sandbox up for inspection and print how to enter it
    #[arg(long)]
    keep: bool,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
    /// Write the scan as nmap XML to FILE (also spelled `-oX FILE`, as nmap does)
    #[arg(long = "output-xml", value_name = "FILE")]
    output_xml: Option<PathBuf>,
    /// Remove sandboxes left behind by crashed or --keep runs (pcl-* namespaces whose
    /// process is gone) and exit
    #[arg(long, exclusive = true)]
    cleanup: bool,
}

/// nmap spells its XML output `-oX FILE`, one dash and two letters, which clap cannot
/// read: on the `verify` subcommand, `-oX` becomes `--output-xml` before parsing.
pub(crate) fn nmap_style_args(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = args.collect();
    let sub = out.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-'));
    if sub.is_some_and(|i| out[i + 1] == "verify") {
        for a in &mut out {
            if a == "-oX" {
                *a = "--output-xml".into();
            }
        }
    }
    out
}

/// Which ports to scan.
#[derive(Debug, Clone)]
pub(crate) enum PortChoice {
    /// nmap's `-F`.
    Fast,
    /// An explicit list per protocol.
    List { tcp: Vec<u16>, udp: Vec<u16> },
}

/// One port (of one protocol) meant to be open.
pub(crate) type PortProto = (u16, Proto);

/// Everything a verify run needs, from the command line or from `demo`.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The file's name for messages.
    pub(crate) name: String,
    /// The rulesets (one per family).
    pub(crate) rulesets: Vec<Ruleset>,
    /// The backend.
    pub(crate) backend: Option<Backend>,
    /// The ports to scan.
    pub(crate) ports: PortChoice,
    /// Explicit listeners (`None`: the accepted ports and `expect`).
    pub(crate) listen: Option<Vec<PortProto>>,
    /// The intended open ports.
    pub(crate) expect: Option<Vec<PortProto>>,
    /// The scanner's address.
    pub(crate) src: Option<IpAddr>,
    /// nmap timing template (`None`: [`sandbox_timing`]).
    pub(crate) timing: Option<u8>,
    /// Leave the sandbox up.
    pub(crate) keep: bool,
}

/// One compared port.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) family: Family,
    pub(crate) proto: Proto,
    pub(crate) port: u16,
    pub(crate) predicted: Vec<Prediction>,
    /// nmap's state and reason words as the scan saw them.
    pub(crate) observed: Option<(String, String)>,
    pub(crate) agree: bool,
    pub(crate) listening: bool,
    /// `Some(true)` when --expect names the port.
    pub(crate) expected: Option<bool>,
}

/// A port whose observed state contradicts --expect.
#[derive(Debug, Clone)]
pub(crate) struct Offence {
    pub(crate) family: Family,
    pub(crate) proto: Proto,
    pub(crate) port: u16,
    pub(crate) expected_open: bool,
    pub(crate) observed: String,
    /// `filter/INPUT rule 3 (line 7)` or `filter/INPUT policy`.
    pub(crate) rule: Option<String>,
    /// The rule's text (`-A INPUT ...`) or `:INPUT DROP`.
    pub(crate) rule_text: Option<String>,
    /// The verdict the trace reached.
    pub(crate) verdict: String,
}

/// Wall time of each phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timings {
    pub(crate) setup: Duration,
    pub(crate) apply: Duration,
    pub(crate) listen: Duration,
    pub(crate) scan: Duration,
    pub(crate) predict: Duration,
    pub(crate) teardown: Duration,
}

/// What a verify run found.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) rows: Vec<Row>,
    pub(crate) offences: Vec<Offence>,
    pub(crate) reports: Vec<ScanReport>,
    pub(crate) info: RunInfo,
    pub(crate) backend: Backend,
    pub(crate) target: Vec<IpAddr>,
    pub(crate) source: Vec<IpAddr>,
    pub(crate) namespaces: (String, String),
    pub(crate) kept: bool,
    pub(crate) listen_tcp: Vec<u16>,
    pub(crate) listen_udp: Vec<u16>,
    pub(crate) timings: Timings,
    /// The kernel's ruleset as the target held it, read when a port disagreed.
    pub(crate) kernel: Option<String>,
}

impl Outcome {
    /// The exit code: 3 on a disagreement, 1 on an --expect offence, else 0.
    pub(crate) fn code(&self) -> u8 {
        if self.rows.iter().any(|r| !r.agree) {
            3
        } else if !self.offences.is_empty() {
            1
        } else {
            0
        }
    }
}

fn parse_backend(s: &str) -> Result<Backend> {
    match s {
        "nft" => Ok(Backend::Nft),
        "legacy" => Ok(Backend::Legacy),
        other => bail!("--backend {other}: expected nft or legacy"),
    }
}

fn parse_listen(items: &[String]) -> Result<Vec<PortProto>> {
    let mut out = Vec::new();
    for item in items.iter().filter(|s| !s.is_empty()) {
        let (ports, proto) = item.split_once('/').unwrap_or((item, "tcp"));
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => bail!("--listen {item}: unknown protocol `{other}'"),
        };
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let (lo, hi): (u16, u16) = (
            a.parse().with_context(|| format!("--listen {item}"))?,
            b.parse().with_context(|| format!("--listen {item}"))?,
        );
        if lo == 0 || lo > hi {
            bail!("--listen {item}: not a port or range");
        }
        out.extend((lo..=hi).map(|p| (p, proto)));
    }
    Ok(out)
}

/// Runs `portcullis verify`.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    if args.cleanup {
        let removed = sandbox::cleanup_leftovers()?;
        if removed.is_empty() {
            println!("no leftover sandboxes");
        } else {
            println!("removed {} leftover namespace(s): {}", removed.len(), removed.join(" "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.input.file.is_none() {
        bail!("verify needs a ruleset FILE (or --cleanup)");
    }
    let xml = args.output_xml.clone();
    let Some(loaded) = load(&args.input)? else { return Ok(ExitCode::from(2)) };
    let ports = match &args.ports {
        Some(spec) => {
            let set = parse_port_spec(spec).map_err(|e| anyhow::anyhow!("-p {spec}: {e}"))?;
            PortChoice::List { tcp: set.tcp, udp: set.udp }
        }
        None => PortChoice::Fast,
    };
    let expect = if args.expect.is_empty() {
        None
    } else {
        Some(
            super::init::parse_items(&args.expect)?.into_iter().map(|(p, pr, _)| (p, pr)).collect(),
        )
    };
    let req = Request {
        name: loaded.name.clone(),
        rulesets: loaded.rulesets,
        backend: args.backend.as_deref().map(parse_backend).transpose()?,
        ports,
        listen: if args.listen.is_empty() { None } else { Some(parse_listen(&args.listen)?) },
        expect,
        src: args.src,
        timing: args.timing,
        keep: args.keep,
    };
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-restore"]) {
        bail!("verify builds network namespaces and needs root: {why}");
    }
    let out = execute(&req)?;
    if let Some(path) = &xml {
        let text = portcullis_scan::output::xml(&out.reports, &out.info, report::scan_opts());
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let text = if args.json { report::json(&req, &out)? } else { report::text(&req, &out) };
    super::write_stdout(&text)?;
    Ok(ExitCode::from(out.code()))
}

fn scan_ports(choice: &PortChoice, expect: Option<&[PortProto]>) -> (Vec<u16>, Vec<u16>) {
    let (mut tcp, mut udp) = match choice {
        PortChoice::Fast => (top_ports(ScanProto::Tcp, 100), top_ports(ScanProto::Udp, 100)),
        PortChoice::List { tcp, udp } => (tcp.clone(), udp.clone()),
    };
    for &(p, proto) in expect.unwrap_or(&[]) {
        match proto {
            Proto::Tcp => tcp.push(p),
            Proto::Udp => udp.push(p),
        }
    }
    for v in [&mut tcp, &mut udp] {
        v.sort_unstable();
        v.dedup();
        v.retain(|p| *p != 0);
    }
    (tcp, udp)
}

/// The scan timing inside the sandbox: the two namespaces share one kernel over a veth
/// pair, so a reply takes microseconds and nothing is lost on the way: nmap's -T5
/// timeouts (max 500 ms) with one more retry. The delayed pass that outwaits an ICMP rate
/// limiter is off: the sandbox switches the target's limiter off (`unlimit_icmp`), and
/// the pass alone would cost 0.8 s of a 0.65 s run.
pub(crate) fn sandbox_timing() -> Timing {
    let mut t = Timing::template(5);
    t.max_retries = 3;
    t.max_rtt_timeout = Duration::from_millis(500);
    t.icmp_refill_pass = false;
    t
}

/// Consecutive runs of sorted ports.
pub(crate) fn ranges(ports: &[u16]) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some(r) if u32::from(r.hi) + 1 == u32::from(p) => r.hi = p,
            _ => out.push(PortRange::single(p)),
        }
    }
    out
}

fn query(
    family: Family,
    sb: &Sandbox,
    listen: (&[u16], &[u16]),
    scan: (&[u16], &[u16]),
) -> PortQuery {
    let v6 = family == Family::V6;
    let dst = sb.target_addr(v6);
    PortQuery {
        family,
        src: Some(sb.source(v6)),
        dst: Some(dst),
        in_iface: Some("pcl0".to_owned()),
        sport: PortRange { lo: 1024, hi: 65535 },
        host: Host { local: vec![dst, sb.target_addr(!v6)] },
        listen_tcp: ranges(listen.0),
        listen_udp: ranges(listen.1),
        tcp: ranges(scan.0),
        udp: ranges(scan.1),
    }
}

fn probe(family: Family, proto: Proto, port: u16, sb: &Sandbox) -> Packet {
    let v6 = family == Family::V6;
    let mut p = match proto {
        Proto::Tcp => Packet::tcp_syn(family, port),
        Proto::Udp => {
            let mut p = Packet::new(family, 17);
            p.dport = PortRange::single(port);
            p
        }
    };
    p.src = Some(sb.source(v6));
    p.dst = Some(sb.target_addr(v6));
    p.in_iface = Some("pcl0".to_owned());
    p.sport = PortRange { lo: 1024, hi: 65535 };
    p
}

/// Ports (per protocol) where a listener would make the port open, with the port the
/// listener must bind when NAT moves it (REDIRECT 80 -> 8080 binds 8080).
fn accepted_ports(
    c: &Compiled,
    family: Family,
    sb: &Sandbox,
    scan: (&[u16], &[u16]),
) -> Result<(Vec<u16>, Vec<u16>)> {
    let all = [PortRange::ALL];
    let mut q = query(family, sb, (&[], &[]), scan);
    q.listen_tcp = all.to_vec();
    q.listen_udp = all.to_vec();
    let runs = predict_ports(c, &q).map_err(|e| anyhow::anyhow!("predict: {e}"))?;
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    let host = Host { local: q.host.local.clone() };
    for run in runs.iter().filter(|r| r.predictions.iter().any(|p| p.state == PortState::Open)) {
        for port in run.ports.lo..=run.ports.hi {
            let list = if run.proto == Proto::Tcp { &mut tcp } else { &mut udp };
            if list.len() >= MAX_LISTENERS {
                break;
            }
            // Where NAT moves the port, listen on the port it lands on.
            let t = trace_compiled(
                c,
                portcullis_eval::Hook::Input,
                &probe(family, run.proto, port, sb),
                &host,
            )
            .map_err(|e| anyhow::anyhow!("trace: {e}"))?;
            let finals: BTreeSet<u16> = t
                .outcomes
                .iter()
                .filter(|o| !o.forwarded && o.final_dport.lo == o.final_dport.hi)
                .map(|o| o.final_dport.lo)
                .collect();
            if finals.is_empty() {
                list.push(port);
            }
            list.extend(finals);
        }
    }
    Ok((tcp, udp))
}

fn rule_text(rs: &Ruleset, d: &Decision) -> Option<String> {
    let table = rs.table(d.table)?;
    let chain = table.chains.iter().find(|c| c.name.as_str() == d.chain)?;
    match d.index {
        Some(i) => {
            chain.rules.get(i.checked_sub(1)?).map(|r| portcullis_syntax::render_rule(&d.chain, r))
        }
        None => chain.policy.map(|p| format!(":{} {}", d.chain, p.as_str())),
    }
}

fn verdict_word(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "ACCEPT".to_owned(),
        Verdict::Drop => "DROP".to_owned(),
        Verdict::Reject(_) => "REJECT".to_owned(),
        Verdict::Queue => "QUEUE".to_owned(),
        Verdict::Unknown(s) => s.clone(),
    }
}

fn agrees(preds: &[Prediction], state: &str, reason: &str) -> bool {
    preds.iter().any(|p| {
        p.state.as_str() == state
            && (p.reason.as_str() == reason
                || matches!(p.reason, Reason::Forwarded | Reason::Queued))
    })
}

/// Lowers ICMP rate limits in the target, so every REJECT and closed UDP port answers.
fn unlimit_icmp(sb: &Sandbox) -> Result<()> {
    let path = sb.target_path();
    portcullis_scan::netns::run_in_netns(&path, || {
        for (file, value) in [
            ("/proc/sys/net/ipv4/icmp_ratelimit", "0"),
            ("/proc/sys/net/ipv4/icmp_msgs_per_sec", "1000000"),
            ("/proc/sys/net/ipv6/icmp/ratelimit", "0"),
        ] {
            let _ = std::fs::write(file, value);
        }
    })
    .context("enter the target namespace")
}

/// Builds the sandbox, applies, listens, scans, predicts and compares. The sandbox is
/// gone when this returns (unless `keep`).
pub(crate) fn execute(req: &Request) -> Result<Outcome> {
    if req.rulesets.is_empty() {
        bail!("{} holds no ruleset", req.name);
    }
    let t0 = Instant::now();
    let start_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    sandbox::handle_signals();
    let mut timings = Timings::default();
    let mut sb = Sandbox::create(req.src)?;
    let has_v6 = req.rulesets.iter().any(|r| r.family == Family::V6);
    unlimit_icmp(&sb)?;
    if has_v6 {
        sb.pin_neighbours()?;
    }
    timings.setup = t0.elapsed();

    let t = Instant::now();
    let backend = match req.backend {
        Some(b) => b,
        None => portcullis_apply::host_default_backend(Family::V4),
    };
    let opts = ApplyOptions {
        incremental: false,
        force: true,
        ssh_connection: None,
        verify: false,
        lock_wait: Duration::from_secs(10),
        readback_netlink: true,
    };
    for rs in &req.rulesets {
        let target = Target::new(Some(sb.target.name()), rs.family, backend);
        if let Err(e) = portcullis_apply::apply(rs, &target, &opts) {
            let detail = match &e {
                portcullis_apply::ApplyError::Rejected(r) => {
                    r.render(&req.name, &render_for_errors(rs))
                }
                other => other.to_string(),
            };
            bail!("{}: applying in the sandbox failed: {detail}", req.name);
        }
    }
    timings.apply = t.elapsed();

    let t = Instant::now();
    let (scan_tcp, scan_udp) = scan_ports(&req.ports, req.expect.as_deref());
    let mut compiled = Vec::new();
    for rs in &req.rulesets {
        compiled.push(Compiled::new(rs).map_err(|e| anyhow::anyhow!("{}: {e}", req.name))?);
    }
    let (mut listen_tcp, mut listen_udp) = (Vec::new(), Vec::new());
    match &req.listen {
        Some(l) => {
            for &(p, proto) in l {
                if proto == Proto::Tcp { listen_tcp.push(p) } else { listen_udp.push(p) }
            }
        }
        None => {
            for (rs, c) in req.rulesets.iter().zip(&compiled) {
                let (t, u) = accepted_ports(c, rs.family, &sb, (&scan_tcp, &scan_udp))?;
                listen_tcp.extend(t);
                listen_udp.extend(u);
            }
            for &(p, proto) in req.expect.as_deref().unwrap_or(&[]) {
                if proto == Proto::Tcp { listen_tcp.push(p) } else { listen_udp.push(p) }
            }
        }
    }
    for v in [&mut listen_tcp, &mut listen_udp] {
        v.sort_unstable();
        v.dedup();
        v.truncate(MAX_LISTENERS);
    }
    let deadline = if req.keep { Duration::from_secs(3600) } else { Duration::from_secs(600) };
    sb.listen(&listen_tcp, &listen_udp, deadline)?;
    timings.listen = t.elapsed();

    let t = Instant::now();
    let targets: Vec<IpAddr> =
        req.rulesets.iter().map(|r| sb.target_addr(r.family == Family::V6)).collect();
    let sources: Vec<IpAddr> =
        req.rulesets.iter().map(|r| sb.source(r.family == Family::V6)).collect();
    let timing = req.timing.map_or_else(sandbox_timing, Timing::template);
    let reports = scan_in(&sb, &targets, &scan_tcp, &scan_udp, timing)?;
    timings.scan = t.elapsed();

    let t = Instant::now();
    let mut rows = Vec::new();
    let mut offences = Vec::new();
    for (rs, c) in req.rulesets.iter().zip(&compiled) {
        let family = rs.family;
        let dst = sb.target_addr(family == Family::V6);
        let q = query(family, &sb, (&listen_tcp, &listen_udp), (&scan_tcp, &scan_udp));
        let runs = predict_ports(c, &q).map_err(|e| anyhow::anyhow!("predict: {e}"))?;
        for report in &reports {
            let proto = if report.scan_type == ScanType::Udp { Proto::Udp } else { Proto::Tcp };
            let listening = if proto == Proto::Tcp { &listen_tcp } else { &listen_udp };
            let Some(host) = report.hosts.iter().find(|h| h.addr == dst) else { continue };
            for pr in &host.ports {
                let predicted = runs
                    .iter()
                    .find(|r| r.proto == proto && r.ports.lo <= pr.port && pr.port <= r.ports.hi)
                    .map(|r| r.predictions.clone())
                    .unwrap_or_default();
                let (state, reason) = (pr.state.as_str().to_owned(), pr.reason.as_str().to_owned());
                let agree = agrees(&predicted, &state, &reason);
                let expected = req.expect.as_ref().map(|e| e.contains(&(pr.port, proto)));
                if let Some(exp) = expected {
                    let open = state == "open";
                    if exp != open {
                        offences.push(offence(rs, c, &sb, family, proto, pr.port, exp, &state)?);
                    }
                }
                rows.push(Row {
                    family,
                    proto,
                    port: pr.port,
                    predicted,
                    observed: Some((state, reason)),
                    agree,
                    listening: listening.binary_search(&pr.port).is_ok(),
                    expected,
                });
            }
        }
    }
    let kernel = if rows.iter().any(|r| !r.agree) {
        Some(kernel_rules(&sb, &req.rulesets, backend))
    } else {
        None
    };
    timings.predict = t.elapsed();

    let namespaces = (sb.target.name().to_owned(), sb.scanner.name().to_owned());
    let info = RunInfo {
        args: format!("portcullis verify {}", req.name),
        start_unix,
        elapsed: timings.scan,
    };
    let t = Instant::now();
    if req.keep {
        sb.keep();
    } else {
        drop(sb);
    }
    timings.teardown = t.elapsed();
    Ok(Outcome {
        rows,
        offences,
        reports,
        info,
        backend,
        target: targets,
        source: sources,
        namespaces,
        kept: req.keep,
        listen_tcp,
        listen_udp,
        timings,
        kernel,
    })
}

fn render_for_errors(rs: &Ruleset) -> String {
    portcullis_syntax::render_save(rs, portcullis_syntax::SaveOptions::default())
}

#[allow(clippy::too_many_arguments, reason = "one port's full context")]
fn offence(
    rs: &Ruleset,
    c: &Compiled,
    sb: &Sandbox,
    family: Family,
    proto: Proto,
    port: u16,
    expected_open: bool,
    observed: &str,
) -> Result<Offence> {
    let host = Host { local: vec![sb.target_addr(false), sb.target_addr(true)] };
    let t = trace_compiled(c, portcullis_eval::Hook::Input, &probe(family, proto, port, sb), &host)
        .map_err(|e| anyhow::anyhow!("trace: {e}"))?;
    let first = t.outcomes.first();
    let decided = first.and_then(|o| o.decided_by.as_ref());
    Ok(Offence {
        family,
        proto,
        port,
        expected_open,
        observed: observed.to_owned(),
        rule: decided.map(crate::cmd::eval_common::rule_ref),
        rule_text: decided.and_then(|d| rule_text(rs, d)),
        verdict: first.map_or_else(|| "?".to_owned(), |o| verdict_word(&o.verdict)),
    })
}

/// The target's live ruleset (for a bug report).
fn kernel_rules(sb: &Sandbox, rulesets: &[Ruleset], backend: Backend) -> String {
    let mut out = String::new();
    for rs in rulesets {
        let target = Target::new(Some(sb.target.name()), rs.family, backend);
        match target.save(None, portcullis_apply::Counters::Keep) {
            Ok(t) => out.push_str(&t),
            Err(e) => out.push_str(&format!("# {}-save failed: {e}\n", rs.family.command())),
        }
    }
    out
}

/// Runs the TCP SYN and the UDP scan side by side inside the scanner namespace.
fn scan_in(
    sb: &Sandbox,
    targets: &[IpAddr],
    tcp: &[u16],
    udp: &[u16],
    timing: Timing,
) -> Result<Vec<ScanReport>> {
    let mut jobs = Vec::new();
    if !tcp.is_empty() {
        jobs.push(ScanConfig {
            scan_type: ScanType::Syn,
            targets: targets.to_vec(),
            ports: tcp.to_vec(),
            timing,
            seed: None,
        });
    }
    if !udp.is_empty() {
        jobs.push(ScanConfig {
            scan_type: ScanType::Udp,
            targets: targets.to_vec(),
            ports: udp.to_vec(),
            timing,
            seed: None,
        });
    }
    let results = portcullis_scan::netns::run_in_netns(&sb.scanner_path(), move || {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|cfg| std::thread::spawn(move || (cfg.scan_type, scan(&cfg, &mut |_| {}))))
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    })
    .context("enter the scanner namespace")?;
    let mut reports = Vec::new();
    for r in results {
        let (kind, res) = r.map_err(|_| anyhow::anyhow!("a scan thread panicked"))?;
        reports.push(res.with_context(|| format!("{} scan failed", kind.xml_name()))?);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(Into::into).collect()
    }

    #[test]
    fn ox_is_rewritten_on_verify_only() {
        let got = nmap_style_args(os(&["portcullis", "verify", "f", "-oX", "x.xml"]).into_iter());
        assert_eq!(got, os(&["portcullis", "verify", "f", "--output-xml", "x.xml"]));
        let scan = os(&["portcullis", "scan", "-oX", "x.xml", "198.18.0.2"]);
        assert_eq!(nmap_style_args(scan.clone().into_iter()), scan);
    }

    #[test]
    fn listen_items_and_ranges() {
        let l = parse_listen(&["22".into(), "53/udp".into(), "8000-8002/tcp".into()]).unwrap();
        assert_eq!(
            l,
            [
                (22, Proto::Tcp),
                (53, Proto::Udp),
                (8000, Proto::Tcp),
                (8001, Proto::Tcp),
                (8002, Proto::Tcp)
            ]
        );
        assert!(parse_listen(&["22/sctp".into()]).is_err());
        assert!(parse_listen(&["0".into()]).is_err());
        assert!(parse_listen(&["9-8".into()]).is_err());
        let r = ranges(&[1, 2, 3, 7, 9, 10]);
        assert_eq!(
            r,
            [PortRange { lo: 1, hi: 3 }, PortRange::single(7), PortRange { lo: 9, hi: 10 }]
        );
    }

    #[test]
    fn expected_ports_join_the_scan() {
        let (tcp, udp) = scan_ports(
            &PortChoice::List { tcp: vec![80, 22], udp: vec![] },
            Some(&[(3128, Proto::Tcp), (53, Proto::Udp), (22, Proto::Tcp)]),
        );
        assert_eq!(tcp, [22, 80, 3128]);
        assert_eq!(udp, [53]);
        let (tcp, udp) = scan_ports(&PortChoice::Fast, None);
        assert_eq!((tcp.len(), udp.len()), (100, 100));
    }

    #[test]
    fn agreement_needs_state_and_reason() {
        let p = |state, reason| Prediction { state, reason };
        let open = [p(PortState::Open, Reason::SynAck)];
        assert!(agrees(&open, "open", "syn-ack"));
        assert!(!agrees(&open, "open", "reset"));
        assert!(!agrees(&open, "filtered", "no-response"));
        assert!(!agrees(&[], "open", "syn-ack"));
        // Forwarded: the answer is not in the ruleset, only the state counts.
        let fwd = [p(PortState::Filtered, Reason::Forwarded)];
        assert!(agrees(&fwd, "filtered", "no-response"));
        assert!(!agrees(&fwd, "open", "syn-ack"));
    }

    #[test]
    fn exit_codes_rank_disagreement_over_intent() {
        let row = |agree| Row {
            family: Family::V4,
            proto: Proto::Tcp,
            port: 22,
            predicted: Vec::new(),
            observed: None,
            agree,
            listening: false,
            expected: None,
        };
        let offence = Offence {
            family: Family::V4,
            proto: Proto::Tcp,
            port: 22,
            expected_open: true,
            observed: "filtered".into(),
            rule: None,
            rule_text: None,
            verdict: "DROP".into(),
        };
        let mut out = Outcome {
            rows: vec![row(true)],
            offences: Vec::new(),
            reports: Vec::new(),
            info: RunInfo { args: String::new(), start_unix: 0, elapsed: Duration::ZERO },
            backend: Backend::Nft,
            target: Vec::new(),
            source: Vec::new(),
            namespaces: (String::new(), String::new()),
            kept: false,
            listen_tcp: Vec::new(),
            listen_udp: Vec::new(),
            timings: Timings::default(),
            kernel: None,
        };
        assert_eq!(out.code(), 0);
        out.offences.push(offence);
        assert_eq!(out.code(), 1);
        out.rows.push(row(false));
        assert_eq!(out.code(), 3);
    }
}
