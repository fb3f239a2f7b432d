//! `portcullis scan`: nmap's port scan with nmap's flags, states and output formats.
//!
//! Argument handling: nmap spells options as one dash and several letters (`-sS`, `-Pn`,
//! `-oX FILE`). clap reads `-sS` as `-s S`, `-Pn` as `-P n` and `-T4` as `-T 4` on its own,
//! but `-oX FILE` needs two values after one short flag, which clap cannot express. So the
//! subcommand takes its arguments raw (`trailing_var_arg`), rewrites `-oN/-oX/-oG/-oJ/-oA
//! FILE` into long options (`--output-xml FILE`, ...), and parses the result with its own
//! clap parser ([`ScanArgs`]); `portcullis scan --help` shows that parser's help.
//!
//! Targets: the scanner scans what it is told (it is a scanner); the crate's own tests
//! only ever scan 198.18.0.0/15 inside namespaces they create.

use std::io::IsTerminal as _;
use std::net::{IpAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use portcullis_scan::engine::{Progress, ScanReport};
use portcullis_scan::output::{self, OutputOptions, RunInfo};
use portcullis_scan::ports::{parse_port_spec, top_ports};
use portcullis_scan::raw::have_raw_access;
use portcullis_scan::scan::{ScanConfig, scan};
use portcullis_scan::state::{Protocol, ScanType};
use portcullis_scan::targets::parse_target;
use portcullis_scan::timing::Timing;

/// Scan ports with nmap's flags, states and output formats (see `portcullis scan --help`)
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct Args {
    /// nmap-style options and targets, e.g. `-Pn -sS -F 198.18.0.2`
    #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0..)]
    argv: Vec<String>,
}

/// The scan subcommand's real parser (after `-oX FILE` and friends were rewritten).
#[derive(Debug, clap::Parser)]
#[command(
    name = "portcullis scan",
    about = "Scan TCP/UDP ports with nmap's flags, port states, reasons and output formats",
    after_help = "Examples:\n  portcullis scan -P0 -sS -F 198.18.0.2\n  portcullis scan -sU -F --reason -oX out.xml 198.18.0.2\n  portcullis scan -sS -p- -T4 198.18.0.0/30\n\n-oN/-oX/-oG/-oJ FILE write normal, XML, grepable or JSON output to FILE ('-' = stdout); -oA BASE writes BASE.nmap, BASE.xml and BASE.gnmap."
)]
struct ScanArgs {
    /// Scan type: -sS (SYN, default with CAP_NET_RAW), -sT (connect), -sA (ACK), -sU (UDP); -sSU combines
    #[arg(short = 's', value_name = "S|T|A|U")]
    scan: Vec<String>,
    /// -Pn / -P0: skip host discovery (always the case here: every target is treated as up)
    #[arg(short = 'P', value_name = "n|0")]
    ping: Option<String>,
    /// Ports: 22,80-90,T:443,U:53,http; -p- for all
    #[arg(short = 'p', value_name = "SPEC", allow_hyphen_values = true)]
    ports: Option<String>,
    /// Fast mode: nmap's 100 most common ports per protocol
    #[arg(short = 'F', conflicts_with_all = ["ports", "top_ports"])]
    fast: bool,
    /// The N most common ports per protocol (nmap-services frequencies)
    #[arg(long = "top-ports", value_name = "N", conflicts_with = "ports")]
    top_ports: Option<usize>,
    /// Timing template -T0 (paranoid) .. -T5 (insane); default -T3
    #[arg(short = 'T', value_name = "0-5", value_parser = clap::value_parser!(u8).range(0..=5))]
    timing: Option<u8>,
    /// Send at least N probes per second
    #[arg(long = "min-rate", value_name = "N")]
    min_rate: Option<f64>,
    /// Send at most N probes per second
    #[arg(long = "max-rate", value_name = "N")]
    max_rate: Option<f64>,
    /// Retransmissions of a silent probe
    #[arg(long = "max-retries", value_name = "N")]
    max_retries: Option<u8>,
    /// Skip the delayed passes that outwait the target's ICMP rate limiter (faster; REJECTed
    /// ports may then show up as silent)
    #[arg(long = "no-refill-pass")]
    no_refill_pass: bool,
    /// Show why each port has its state
    #[arg(long)]
    reason: bool,
    /// Only show open (or possibly open) ports
    #[arg(long)]
    open: bool,
    /// Scan IPv6 addresses (names resolve to IPv6)
    #[arg(short = '6')]
    ipv6: bool,
    /// Never resolve names for output (accepted for nmap compatibility; nothing is resolved)
    #[arg(short = 'n')]
    no_dns: bool,
    /// Scan only shard K of N of the port list (split one sweep across machines)
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Seed for the probe order and cookies (reproducible runs)
    #[arg(long, hide = true)]
    seed: Option<u64>,
    /// Normal output to FILE (-oN FILE)
    #[arg(long = "output-normal", value_name = "FILE", hide = true)]
    output_normal: Option<String>,
    /// XML output to FILE (-oX FILE)
    #[arg(long = "output-xml", value_name = "FILE", hide = true)]
    output_xml: Option<String>,
    /// Grepable output to FILE (-oG FILE)
    #[arg(long = "output-grepable", value_name = "FILE", hide = true)]
    output_grepable: Option<String>,
    /// JSON output to FILE (-oJ FILE)
    #[arg(long = "output-json", value_name = "FILE", hide = true)]
    output_json: Option<String>,
    /// Targets: addresses, CIDR blocks (198.18.0.0/30), ranges (198.18.0.1-5), names
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
}

/// Rewrites nmap's `-oX FILE` style options into long options clap can read.
fn rewrite_argv(argv: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(argv.len());
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let long = match a.as_str() {
            "-oN" => Some(vec!["--output-normal"]),
            "-oX" => Some(vec!["--output-xml"]),
            "-oG" => Some(vec!["--output-grepable"]),
            "-oJ" => Some(vec!["--output-json"]),
            "-oA" => Some(vec![]),
            _ => None,
        };
        match long {
            None => out.push(a.clone()),
            Some(flags) => {
                let Some(file) = it.next() else { bail!("{a} needs a file name") };
                if flags.is_empty() {
                    for (flag, ext) in [
                        ("--output-normal", "nmap"),
                        ("--output-xml", "xml"),
                        ("--output-grepable", "gnmap"),
                    ] {
                        out.push(flag.to_owned());
                        out.push(format!("{file}.{ext}"));
                    }
                } else {
                    out.push(flags[0].to_owned());
                    out.push(file.clone());
                }
            }
        }
    }
    Ok(out)
}

fn scan_types(args: &ScanArgs, raw_ok: bool) -> Result<Vec<ScanType>> {
    let mut types = Vec::new();
    for s in &args.scan {
        for c in s.chars() {
            let t = match c {
                'S' => ScanType::Syn,
                'T' => ScanType::Connect,
                'A' => ScanType::Ack,
                'U' => ScanType::Udp,
                other => bail!("unsupported scan type -s{other} (use -sS, -sT, -sA or -sU)"),
            };
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    let tcp_kinds = types.iter().filter(|t| t.protocol() == Protocol::Tcp).count();
    if tcp_kinds > 1 {
        bail!("only one TCP scan type (-sS, -sT or -sA) per run");
    }
    if types.is_empty() {
        types.push(if raw_ok { ScanType::Syn } else { ScanType::Connect });
    }
    if !raw_ok {
        if types.contains(&ScanType::Syn) {
            eprintln!(
                "portcullis scan: warning: a SYN scan needs root or CAP_NET_RAW; falling back to a connect scan (-sT)"
            );
            types = types
                .into_iter()
                .map(|t| if t == ScanType::Syn { ScanType::Connect } else { t })
                .collect();
        }
        if let Some(t) = types.iter().find(|t| matches!(t, ScanType::Ack | ScanType::Udp)) {
            bail!("-s{} needs root or CAP_NET_RAW", if *t == ScanType::Ack { 'A' } else { 'U' });
        }
    }
    Ok(types)
}

fn ports_for(args: &ScanArgs, protocol: Protocol) -> Result<Vec<u16>> {
    let mut ports = if let Some(spec) = &args.ports {
        let set = parse_port_spec(spec)?;
        match protocol {
            Protocol::Tcp => set.tcp,
            Protocol::Udp => set.udp,
        }
    } else if args.fast {
        top_ports(protocol, 100)
    } else {
        top_ports(protocol, args.top_ports.unwrap_or(1000))
    };
    if let Some(shard) = &args.shard {
        let (k, n) = shard
            .split_once('/')
            .and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
            .filter(|(k, n)| *n > 0 && (1..=*n).contains(k))
            .with_context(|| format!("--shard {shard:?}: expected K/N with 1 <= K <= N"))?;
        ports =
            ports.into_iter().enumerate().filter(|(i, _)| i % n == k - 1).map(|(_, p)| p).collect();
    }
    Ok(ports)
}

fn resolve_targets(args: &ScanArgs) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for spec in &args.targets {
        match parse_target(spec) {
            Ok(v) => out.extend(v),
            Err(e) => {
                let addrs: Vec<IpAddr> = (spec.as_str(), 0)
                    .to_socket_addrs()
                    .map_err(|_| e)
                    .with_context(|| format!("cannot resolve {spec:?}"))?
                    .map(|a| a.ip())
                    .filter(|a| a.is_ipv6() == args.ipv6)
                    .collect();
                let first = *addrs.first().with_context(|| {
                    format!("{spec:?} has no IPv{} address", if args.ipv6 { 6 } else { 4 })
                })?;
                out.push(first);
            }
        }
    }
    if let Some(bad) = out.iter().find(|a| a.is_ipv6() != args.ipv6) {
        bail!(
            "{bad} is not an IPv{} address (use -6 for IPv6 targets)",
            if args.ipv6 { 6 } else { 4 }
        );
    }
    out.dedup();
    Ok(out)
}

fn timing(args: &ScanArgs) -> Timing {
    let mut t = Timing::template(args.timing.unwrap_or(3));
    if let Some(r) = args.max_retries {
        t.max_retries = r;
    }
    if let Some(r) = args.max_rate {
        t.max_rate = Some(r);
    }
    if let Some(r) = args.min_rate {
        t = t.with_min_rate(r);
    }
    if args.no_refill_pass {
        t.icmp_refill_pass = false;
    }
    t
}

/// A progress bar on stderr, shown only on a terminal and only after the first second.
struct ProgressLine {
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl ProgressLine {
    fn new(started: Instant) -> Self {
        Self { started, bar: None, enabled: std::io::stderr().is_terminal() }
    }

    fn update(&mut self, p: Progress) {
        if !self.enabled || self.started.elapsed() < Duration::from_secs(1) {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(p.total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} ports answered, {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        bar.set_length(p.total as u64);
        bar.set_position(p.answered as u64);
        bar.set_message(format!("{} probes, pass {}", p.probes_sent, p.pass));
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn write_output(dest: &str, text: &str) -> Result<()> {
    if dest == "-" {
        super::write_stdout(text)?;
    } else {
        std::fs::write(dest, text).with_context(|| format!("writing {dest}"))?;
    }
    Ok(())
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    // No transparent huge pages: the allocator asks for them (madvise), and the first
    // touch of each one zeroes 2 MB (and may compact memory first) before the first probe.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let argv = rewrite_argv(&args.argv)?;
    let parsed =
        match ScanArgs::try_parse_from(std::iter::once("portcullis scan".to_owned()).chain(argv)) {
            Ok(p) => p,
            Err(e) => {
                let code = e.exit_code();
                e.print()?;
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(2)));
            }
        };
    if let Some(p) = &parsed.ping
        && !matches!(p.as_str(), "n" | "N" | "0")
    {
        bail!("unsupported -P{p}: only -Pn/-P0 (no host discovery) is supported");
    }
    let raw_ok = have_raw_access();
    let types = scan_types(&parsed, raw_ok)?;
    let targets = resolve_targets(&parsed)?;
    let timing = timing(&parsed);
    let opts = OutputOptions { reason: parsed.reason, open_only: parsed.open };
    let start_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let started = Instant::now();
    // Service names are needed only for the output: build them while the scan waits.
    let names = std::thread::spawn(portcullis_scan::ports::warm_up_names);
    let mut progress = ProgressLine::new(started);
    let mut reports: Vec<ScanReport> = Vec::new();
    for scan_type in types {
        let ports = ports_for(&parsed, scan_type.protocol())?;
        if ports.is_empty() {
            continue;
        }
        let cfg =
            ScanConfig { scan_type, targets: targets.clone(), ports, timing, seed: parsed.seed };
        let report = scan(&cfg, &mut |p| progress.update(p))
            .with_context(|| format!("{} scan failed", scan_type.xml_name()))?;
        reports.push(report);
    }
    progress.finish();
    let _ = names.join();
    if reports.is_empty() {
        bail!("no ports to scan");
    }
    let info = RunInfo {
        args: std::iter::once("portcullis scan".to_owned())
            .chain(args.argv.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        start_unix,
        elapsed: started.elapsed(),
    };
    let to_stdout =
        [&parsed.output_normal, &parsed.output_xml, &parsed.output_grepable, &parsed.output_json]
            .iter()
            .any(|o| o.as_deref() == Some("-"));
    if !to_stdout {
        super::write_stdout(&output::normal_screen(&reports, &info, opts))?;
    }
    if let Some(f) = &parsed.output_normal {
        write_output(f, &output::normal(&reports, &info, opts))?;
    }
    if let Some(f) = &parsed.output_xml {
        write_output(f, &output::xml(&reports, &info, opts))?;
    }
    if let Some(f) = &parsed.output_grepable {
        write_output(f, &output::grepable(&reports, &info, opts))?;
    }
    if let Some(f) = &parsed.output_json {
        write_output(f, &output::json(&reports, &info, opts))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> ScanArgs {
        let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let argv = rewrite_argv(&argv).expect("rewrite");
        ScanArgs::try_parse_from(std::iter::once("portcullis scan".to_owned()).chain(argv))
            .expect("parse")
    }

    #[test]
    fn parser_is_consistent() {
        use clap::CommandFactory as _;
        ScanArgs::command().debug_assert();
    }

    #[test]
    fn the_seed_articles_command_parses() {
        let a = parse("-P0 -sS -F 198.18.0.2");
        assert_eq!(a.ping.as_deref(), Some("0"));
        assert_eq!(scan_types(&a, true).unwrap(), [ScanType::Syn]);
        assert!(a.fast);
        assert_eq!(ports_for(&a, Protocol::Tcp).unwrap().len(), 100);
        assert_eq!(resolve_targets(&a).unwrap(), ["198.18.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn nmap_style_flags() {
        let a = parse(
            "-Pn -sSU -p- -T4 --min-rate 5000 --max-retries 1 --reason --open -oX a.xml -oG a.gnmap -oJ a.json 198.18.0.0/30",
        );
        assert_eq!(scan_types(&a, true).unwrap(), [ScanType::Syn, ScanType::Udp]);
        assert_eq!(ports_for(&a, Protocol::Udp).unwrap().len(), 65535);
        assert_eq!(a.output_xml.as_deref(), Some("a.xml"));
        assert_eq!(a.output_grepable.as_deref(), Some("a.gnmap"));
        assert_eq!(a.output_json.as_deref(), Some("a.json"));
        assert_eq!(timing(&a).max_retries, 1);
        assert_eq!(resolve_targets(&a).unwrap().len(), 4);
        let a = parse("-oA out -p 22,U:53 198.18.0.2");
        assert_eq!(a.output_normal.as_deref(), Some("out.nmap"));
        assert_eq!(ports_for(&a, Protocol::Tcp).unwrap(), [22]);
    }

    #[test]
    fn fallbacks_and_errors() {
        let a = parse("-sS 198.18.0.2");
        assert_eq!(scan_types(&a, false).unwrap(), [ScanType::Connect]);
        assert!(scan_types(&parse("-sU 198.18.0.2"), false).is_err());
        assert!(scan_types(&parse("-sST 198.18.0.2"), true).is_err());
        assert!(resolve_targets(&parse("-6 198.18.0.2")).is_err());
        let a = parse("--shard 2/3 -p 1-9 198.18.0.2");
        assert_eq!(ports_for(&a, Protocol::Tcp).unwrap(), [2, 5, 8]);
        assert!(rewrite_argv(&["-oX".to_owned()]).is_err());
    }
}
