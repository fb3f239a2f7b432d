//! nmap's output formats: normal (`-oN` and the screen), XML (`-oX`, valid against
//! nmap.dtd), grepable (`-oG`), and a JSON document (`-oJ`).
//!
//! All writers are pure: they take the reports and a [`RunInfo`] and return a `String`.
//! Compatibility notes: XML says `scanner="nmap"` (the DTD allows no other value) and
//! `version="7.93"`, the nmap release whose formats these are; the `args` attribute and a
//! comment name portcullis. Times are printed in UTC.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::engine::{PortResult, ScanReport};
use crate::ports::{format_ranges, service_name};
use crate::state::{PortState, Protocol, Reason};

/// The nmap release whose output formats are reproduced.
pub const NMAP_FORMAT_VERSION: &str = "7.93";

/// Facts about the run that every format prints.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The command line as typed.
    pub args: String,
    /// Start, seconds since the Unix epoch.
    pub start_unix: u64,
    /// Wall time of the scan.
    pub elapsed: Duration,
}

impl RunInfo {
    fn end_unix(&self) -> u64 {
        self.start_unix + self.elapsed.as_secs_f64().round() as u64
    }
}

/// Which ports to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputOptions {
    /// Print the REASON column (`--reason`).
    pub reason: bool,
    /// Only list open (or possibly open) ports (`--open`).
    pub open_only: bool,
}

/// One host's ports from every scan, in protocol then port order.
#[derive(Debug)]
struct HostView<'a> {
    addr: IpAddr,
    ports: Vec<&'a PortResult>,
    srtt: Option<Duration>,
    rttvar: Duration,
    timeout: Duration,
}

fn hosts(reports: &[ScanReport]) -> Vec<HostView<'_>> {
    let mut out: Vec<HostView<'_>> = Vec::new();
    for r in reports {
        for h in &r.hosts {
            let i = match out.iter().position(|v| v.addr == h.addr) {
                Some(i) => i,
                None => {
                    out.push(HostView {
                        addr: h.addr,
                        ports: Vec::new(),
                        srtt: h.srtt,
                        rttvar: h.rttvar,
                        timeout: h.timeout,
                    });
                    out.len() - 1
                }
            };
            let v = &mut out[i];
            v.ports.extend(h.ports.iter());
            if v.srtt.is_none() {
                v.srtt = h.srtt;
                v.rttvar = h.rttvar;
                v.timeout = h.timeout;
            }
        }
    }
    for v in &mut out {
        v.ports.sort_by_key(|p| (p.protocol, p.port));
    }
    out
}

/// nmap's rule (portlist.cc `isIgnoredState`): a non-open state with more than 25 ports is
/// collapsed into "Not shown"; with `--open` every state but the open ones is.
fn collapsed_states(ports: &[&PortResult], opts: OutputOptions) -> Vec<PortState> {
    let mut counts: BTreeMap<PortState, usize> = BTreeMap::new();
    for p in ports {
        *counts.entry(p.state).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|(s, n)| {
            let openish =
                matches!(s, PortState::Open | PortState::OpenFiltered | PortState::Unfiltered);
            if opts.open_only { !openish } else { *s != PortState::Open && *n > 25 }
        })
        .map(|(s, _)| s)
        .collect()
}

/// (state, protocol, reason) → ports, sorted by count descending as nmap prints them.
fn extra_groups(
    ports: &[&PortResult],
    collapsed: &[PortState],
) -> Vec<(PortState, Protocol, Reason, Vec<u16>)> {
    let mut g: BTreeMap<(PortState, Protocol, Reason), Vec<u16>> = BTreeMap::new();
    for p in ports.iter().filter(|p| collapsed.contains(&p.state)) {
        g.entry((p.state, p.protocol, p.reason)).or_default().push(p.port);
    }
    let mut v: Vec<_> = g.into_iter().map(|((s, pr, r), ports)| (s, pr, r, ports)).collect();
    v.sort_by(|a, b| {
        (a.0, std::cmp::Reverse(a.3.len()), a.2.as_str()).cmp(&(
            b.0,
            std::cmp::Reverse(b.3.len()),
            b.2.as_str(),
        ))
    });
    v
}

fn reason_text(p: &PortResult) -> String {
    let mut s = p.reason.as_str().to_owned();
    if let Some(ip) = p.reason_ip {
        let _ = write!(s, " from {ip}");
    }
    if let Some(ttl) = p.reason_ttl {
        let _ = write!(s, " ttl {ttl}");
    }
    s
}

fn service(p: &PortResult) -> &'static str {
    service_name(p.protocol, p.port).unwrap_or("unknown")
}

fn host_count(n: usize) -> String {
    let ip = if n == 1 { "IP address" } else { "IP addresses" };
    let up = if n == 1 { "host" } else { "hosts" };
    format!("{n} {ip} ({n} {up} up)")
}

/// The body of nmap's normal output for every host (shared by the screen and `-oN`).
fn normal_body(reports: &[ScanReport], opts: OutputOptions) -> String {
    let mut out = String::new();
    for h in hosts(reports) {
        let _ = writeln!(out, "Nmap scan report for {}", h.addr);
        // nmap names the host's reason only with --reason.
        let received = if opts.reason { ", received user-set" } else { "" };
        match h.srtt {
            Some(rtt) => {
                let _ = writeln!(out, "Host is up{received} ({}s latency).", format_latency(rtt));
            }
            None => {
                let _ = writeln!(out, "Host is up{received}.");
            }
        }
        let collapsed = collapsed_states(&h.ports, opts);
        let groups = extra_groups(&h.ports, &collapsed);
        let shown: Vec<&PortResult> =
            h.ports.iter().copied().filter(|p| !collapsed.contains(&p.state)).collect();
        if shown.is_empty() {
            let _ = writeln!(
                out,
                "All {} scanned ports on {} are in ignored states.",
                h.ports.len(),
                h.addr
            );
        }
        if !groups.is_empty() {
            let items: Vec<String> = groups
                .iter()
                .map(|(s, pr, r, ports)| format!("{} {s} {pr} ports ({r})", ports.len()))
                .collect();
            let _ = writeln!(out, "Not shown: {}", items.join(", "));
        }
        if !shown.is_empty() {
            let rows: Vec<[String; 4]> = shown
                .iter()
                .map(|p| {
                    [
                        format!("{}/{}", p.port, p.protocol),
                        p.state.to_string(),
                        service(p).to_owned(),
                        reason_text(p),
                    ]
                })
                .collect();
            let header = ["PORT".to_owned(), "STATE".into(), "SERVICE".into(), "REASON".into()];
            let ncol = if opts.reason { 4 } else { 3 };
            let mut width = [0usize; 4];
            for r in std::iter::once(&header).chain(rows.iter()) {
                for (w, c) in width.iter_mut().zip(r.iter()) {
                    *w = (*w).max(c.len());
                }
            }
            for r in std::iter::once(&header).chain(rows.iter()) {
                let mut line = String::new();
                for (i, c) in r.iter().take(ncol).enumerate() {
                    if i + 1 < ncol {
                        let _ = write!(line, "{c:<w$} ", w = width[i]);
                    } else {
                        line.push_str(c);
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

fn format_latency(d: Duration) -> String {
    // nmap prints %.2g-like latencies: 0.000057s, 0.0012s, 0.15s.
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return "0.0".into();
    }
    let digits = (-s.log10().floor()) as i32 + 1;
    let prec = digits.clamp(2, 9) as usize;
    format!("{s:.prec$}")
}

/// nmap's screen output.
pub fn normal_screen(reports: &[ScanReport], info: &RunInfo, opts: OutputOptions) -> String {
    let mut out = format!(
        "Starting portcullis {} (nmap {NMAP_FORMAT_VERSION} output) at {}\n",
        env!("CARGO_PKG_VERSION"),
        short_date(info.start_unix)
    );
    out.push_str(&normal_body(reports, opts));
    let n = hosts(reports).len();
    let _ = writeln!(
        out,
        "Nmap done: {} scanned in {:.2} seconds",
        host_count(n),
        info.elapsed.as_secs_f64()
    );
    out
}

/// nmap's `-oN` file.
pub fn normal(reports: &[ScanReport], info: &RunInfo, opts: OutputOptions) -> String {
    let mut out = format!(
        "# Nmap {NMAP_FORMAT_VERSION} scan initiated {} as: {}\n",
        ctime(info.start_unix),
        info.args
    );
    out.push_str(&normal_body(reports, opts));
    let n = hosts(reports).len();
    let _ = writeln!(
        out,
        "# Nmap done at {} -- {} scanned in {:.2} seconds",
        ctime(info.end_unix()),
        host_count(n),
        info.elapsed.as_secs_f64()
    );
    out
}

/// nmap's grepable `-oG` file.
pub fn grepable(reports: &[ScanReport], info: &RunInfo, opts: OutputOptions) -> String {
    let mut out = format!(
        "# Nmap {NMAP_FORMAT_VERSION} scan initiated {} as: {}\n",
        ctime(info.start_unix),
        info.args
    );
    let views = hosts(reports);
    for h in &views {
        let _ = writeln!(out, "Host: {} ()\tStatus: Up", h.addr);
        // -oG names one ignored state: the largest collapsed one.
        let collapsed = collapsed_states(&h.ports, opts);
        let ignored = collapsed
            .iter()
            .map(|s| (h.ports.iter().filter(|p| p.state == *s).count(), *s))
            .max_by_key(|(n, _)| *n);
        let items: Vec<String> = h
            .ports
            .iter()
            .filter(|p| ignored.is_none_or(|(_, s)| p.state != s))
            .map(|p| format!("{}/{}/{}//{}///", p.port, p.state, p.protocol, service(p)))
            .collect();
        let _ = write!(out, "Host: {} ()\tPorts: {}", h.addr, items.join(", "));
        if let Some((n, s)) = ignored {
            let _ = write!(out, "\tIgnored State: {s} ({n})");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "# Nmap done at {} -- {} scanned in {:.2} seconds",
        ctime(info.end_unix()),
        host_count(views.len()),
        info.elapsed.as_secs_f64()
    );
    out
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o.replace("--", "-&#45;")
}

/// nmap's XML `-oX` document (xmloutputversion 1.05, valid against nmap.dtd).
pub fn xml(reports: &[ScanReport], info: &RunInfo, opts: OutputOptions) -> String {
    let args = xml_escape(&info.args);
    let mut o = String::new();
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE nmaprun>\n");
    let _ = writeln!(
        o,
        "<!-- portcullis {} scan initiated {} as: {args} -->",
        env!("CARGO_PKG_VERSION"),
        ctime(info.start_unix)
    );
    let _ = writeln!(
        o,
        "<nmaprun scanner=\"nmap\" args=\"{args}\" start=\"{}\" startstr=\"{}\" version=\"{NMAP_FORMAT_VERSION}\" xmloutputversion=\"1.05\">",
        info.start_unix,
        ctime(info.start_unix)
    );
    for r in reports {
        let _ = writeln!(
            o,
            "<scaninfo type=\"{}\" protocol=\"{}\" numservices=\"{}\" services=\"{}\"/>",
            r.scan_type.xml_name(),
            r.scan_type.protocol(),
            r.ports.len(),
            format_ranges(&r.ports)
        );
    }
    o.push_str("<verbose level=\"0\"/>\n<debugging level=\"0\"/>\n");
    let views = hosts(reports);
    for h in &views {
        let kind = if h.addr.is_ipv4() { "ipv4" } else { "ipv6" };
        let _ = write!(
            o,
            "<host starttime=\"{}\" endtime=\"{}\"><status state=\"up\" reason=\"user-set\" reason_ttl=\"0\"/>\n<address addr=\"{}\" addrtype=\"{kind}\"/>\n<hostnames>\n</hostnames>\n<ports>",
            info.start_unix,
            info.end_unix(),
            h.addr
        );
        let collapsed = collapsed_states(&h.ports, opts);
        let groups = extra_groups(&h.ports, &collapsed);
        for s in &collapsed {
            let count = h.ports.iter().filter(|p| p.state == *s).count();
            let _ = writeln!(o, "<extraports state=\"{s}\" count=\"{count}\">");
            for (_, pr, r, ports) in groups.iter().filter(|g| g.0 == *s) {
                let _ = writeln!(
                    o,
                    "<extrareasons reason=\"{r}\" count=\"{}\" proto=\"{pr}\" ports=\"{}\"/>",
                    ports.len(),
                    format_ranges(ports)
                );
            }
            o.push_str("</extraports>\n");
        }
        for p in h.ports.iter().filter(|p| !collapsed.contains(&p.state)) {
            let ip = p.reason_ip.map(|a| format!(" reason_ip=\"{a}\"")).unwrap_or_default();
            let _ = writeln!(
                o,
                "<port protocol=\"{}\" portid=\"{}\"><state state=\"{}\" reason=\"{}\" reason_ttl=\"{}\"{ip}/><service name=\"{}\" method=\"table\" conf=\"3\"/></port>",
                p.protocol,
                p.port,
                p.state,
                p.reason,
                p.reason_ttl.unwrap_or(0),
                service(p)
            );
        }
        o.push_str("</ports>\n");
        let us = |d: Duration| d.as_micros();
        let _ = writeln!(
            o,
            "<times srtt=\"{}\" rttvar=\"{}\" to=\"{}\"/>\n</host>",
            h.srtt.map_or(0, us),
            us(h.rttvar),
            us(h.timeout)
        );
    }
    let n = views.len();
    let summary = format!(
        "Nmap done at {}; {} scanned in {:.2} seconds",
        ctime(info.end_unix()),
        host_count(n),
        info.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "<runstats><finished time=\"{}\" timestr=\"{}\" summary=\"{summary}\" elapsed=\"{:.2}\" exit=\"success\"/><hosts up=\"{n}\" down=\"0\" total=\"{n}\"/>\n</runstats>\n</nmaprun>",
        info.end_unix(),
        ctime(info.end_unix()),
        info.elapsed.as_secs_f64()
    );
    o
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON document (`-oJ`): every port of every host, with state, reason and service.
/// `--open` filters the listed ports like the other formats.
pub fn json(reports: &[ScanReport], info: &RunInfo, opts: OutputOptions) -> String {
    let mut o = String::from("{");
    let _ = write!(
        o,
        "\"scanner\":\"portcullis\",\"version\":{},\"args\":{},\"start\":{},\"elapsed\":{:.3},\"scans\":[",
        json_str(env!("CARGO_PKG_VERSION")),
        json_str(&info.args),
        info.start_unix,
        info.elapsed.as_secs_f64()
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"type\":\"{}\",\"protocol\":\"{}\",\"numservices\":{},\"probes_sent\":{},\"passes\":{}}}",
            if i > 0 { "," } else { "" },
            r.scan_type.xml_name(),
            r.scan_type.protocol(),
            r.ports.len(),
            r.probes_sent,
            r.passes
        );
    }
    o.push_str("],\"hosts\":[");
    for (i, h) in hosts(reports).iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"address\":\"{}\",\"status\":\"up\",\"srtt_us\":{},\"ports\":[",
            if i > 0 { "," } else { "" },
            h.addr,
            h.srtt.map_or(0, |d| d.as_micros())
        );
        let collapsed = if opts.open_only { collapsed_states(&h.ports, opts) } else { Vec::new() };
        let mut first = true;
        for p in h.ports.iter().filter(|p| !collapsed.contains(&p.state)) {
            let _ = write!(
                o,
                "{}{{\"port\":{},\"protocol\":\"{}\",\"state\":\"{}\",\"reason\":\"{}\",\"reason_ttl\":{},\"service\":\"{}\"",
                if first { "" } else { "," },
                p.port,
                p.protocol,
                p.state,
                p.reason,
                p.reason_ttl.map_or("null".to_owned(), |t| t.to_string()),
                service(p)
            );
            if let Some(ip) = p.reason_ip {
                let _ = write!(o, ",\"reason_ip\":\"{ip}\"");
            }
            o.push('}');
            first = false;
        }
        o.push_str("]}");
    }
    o.push_str("]}\n");
    o
}

/// (year, month 1-12, day, weekday 0=Sunday, hour, minute, second) in UTC.
fn civil(unix: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = (days + 4).rem_euclid(7) as u32;
    (y, m, d, wd, (secs / 3600) as u32, (secs / 60 % 60) as u32, (secs % 60) as u32)
}

/// `ctime(3)` style, UTC: `Thu Nov 26 01:55:59 2026`.
pub fn ctime(unix: u64) -> String {
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MO: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, wd, h, mi, s) = civil(unix);
    format!("{} {} {d:2} {h:02}:{mi:02}:{s:02} {y}", WD[wd as usize], MO[m as usize - 1])
}

fn short_date(unix: u64) -> String {
    let (y, m, d, _, h, mi, _) = civil(unix);
    format!("{y}-{m:02}-{d:02} {h:02}:{mi:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_nmap() {
        // From an nmap 7.93 run on the rig: start="1795658159" startstr="Thu Nov 26 01:55:59 2026".
        assert_eq!(ctime(1_795_658_159), "Thu Nov 26 01:55:59 2026");
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
    }

    #[test]
    fn latency() {
        assert_eq!(format_latency(Duration::from_micros(57)), "0.000057");
        assert_eq!(format_latency(Duration::from_micros(1200)), "0.0012");
    }
}
