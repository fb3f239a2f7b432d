//! How `verify` shows what it found: the comparison table, the --expect offences, the
//! bug report of a disagreement, and the JSON form.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use portcullis_eval::{PortState, Prediction, Proto};
use portcullis_rules::{Backend, Family};
use portcullis_scan::output::OutputOptions;
use portcullis_scan::ports::service_name;
use portcullis_scan::state::Protocol as ScanProto;

use super::{Outcome, Request, Row};

/// The options of the scan's nmap-style output.
pub(crate) fn scan_opts() -> OutputOptions {
    OutputOptions { reason: true, open_only: false }
}

fn backend_word(b: Backend) -> &'static str {
    match b {
        Backend::Nft => "nft",
        Backend::Legacy => "legacy",
    }
}

fn scan_proto(p: Proto) -> ScanProto {
    match p {
        Proto::Tcp => ScanProto::Tcp,
        Proto::Udp => ScanProto::Udp,
    }
}

/// `open (syn-ack)` or `open (syn-ack) | closed (reset)`.
pub(crate) fn predicted_words(preds: &[Prediction]) -> String {
    if preds.is_empty() {
        return "none".to_owned();
    }
    preds.iter().map(|p| format!("{} ({})", p.state, p.reason)).collect::<Vec<_>>().join(" | ")
}

fn observed_words(row: &Row) -> String {
    row.observed.as_ref().map_or_else(|| "not scanned".to_owned(), |(s, r)| format!("{s} ({r})"))
}

fn port_label(row: &Row, families: usize) -> String {
    let v6 = if families > 1 && row.family == Family::V6 { " v6" } else { "" };
    format!("{}/{}{v6}", row.port, row.proto)
}

/// A row is shown unless it agrees, is not named by --expect and is one of many alike.
fn boring_key(row: &Row) -> Option<(Family, Proto, String)> {
    if !row.agree || row.expected == Some(true) || row.predicted.len() != 1 {
        return None;
    }
    let p = row.predicted[0];
    (p.state != PortState::Open).then(|| (row.family, row.proto, observed_words(row)))
}

/// The human-readable report.
pub(crate) fn text(req: &Request, out: &Outcome) -> String {
    let mut s = String::new();
    let fams: Vec<&str> =
        req.rulesets.iter().map(|r| if r.family == Family::V4 { "IPv4" } else { "IPv6" }).collect();
    let _ = writeln!(
        s,
        "portcullis verify: {} ({}, {} backend)",
        req.name,
        fams.join(" + "),
        backend_word(out.backend)
    );
    let addrs =
        |v: &[std::net::IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        s,
        "sandbox: target {} ({}), scanner {} ({})",
        out.namespaces.0,
        addrs(&out.target),
        out.namespaces.1,
        addrs(&out.source)
    );
    let fmt_ports = |v: &[u16], proto: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" {}/{proto}", portcullis_scan::ports::format_ranges(v))
        }
    };
    let l = format!("{}{}", fmt_ports(&out.listen_tcp, "tcp"), fmt_ports(&out.listen_udp, "udp"));
    let _ = writeln!(s, "listening:{}", if l.is_empty() { " nothing".to_owned() } else { l });
    let scanned: Vec<String> = out
        .reports
        .iter()
        .map(|r| format!("{} {} ports", r.ports.len(), r.scan_type.protocol()))
        .collect();
    let _ = writeln!(
        s,
        "scanned: {} in {:.2} s\n",
        scanned.join(" + "),
        out.timings.scan.as_secs_f64()
    );

    let mut counts: BTreeMap<(Family, Proto, String), usize> = BTreeMap::new();
    for r in &out.rows {
        if let Some(k) = boring_key(r) {
            *counts.entry(k).or_default() += 1;
        }
    }
    // Like nmap: collapse a state shared by more than 25 ports.
    counts.retain(|_, n| *n > 25);
    let families = req.rulesets.len();
    let mut table = vec![(
        "PORT".to_owned(),
        "SERVICE".to_owned(),
        "PREDICTED".to_owned(),
        "OBSERVED".to_owned(),
        "AGREE".to_owned(),
    )];
    for r in &out.rows {
        if boring_key(r).is_some_and(|k| counts.contains_key(&k)) {
            continue;
        }
        let service = service_name(scan_proto(r.proto), r.port).unwrap_or("unknown");
        let agree = if r.agree { "yes" } else { "NO" };
        table.push((
            port_label(r, families),
            service.to_owned(),
            predicted_words(&r.predicted),
            observed_words(r),
            agree.to_owned(),
        ));
    }
    let w: [usize; 4] = [
        table.iter().map(|t| t.0.len()).max().unwrap_or(0),
        table.iter().map(|t| t.1.len()).max().unwrap_or(0),
        table.iter().map(|t| t.2.len()).max().unwrap_or(0),
        table.iter().map(|t| t.3.len()).max().unwrap_or(0),
    ];
    if table.len() > 1 {
        for (a, b, c, d, e) in &table {
            let _ = writeln!(
                s,
                "{a:<w0$}  {b:<w1$}  {c:<w2$}  {d:<w3$}  {e}",
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            );
        }
    }
    if !counts.is_empty() {
        let parts: Vec<String> = counts
            .iter()
            .map(|((fam, proto, words), n)| {
                let v6 = if families > 1 && *fam == Family::V6 { " IPv6" } else { "" };
                format!("{n}{v6} {proto} ports {words}")
            })
            .collect();
        let _ = writeln!(s, "Not shown (predicted and observed alike): {}", parts.join(", "));
    }
    let agree = out.rows.iter().filter(|r| r.agree).count();
    let _ = writeln!(s, "\nprediction vs observation: {agree} of {} ports agree", out.rows.len());

    if let Some(expect) = &req.expect {
        let names: Vec<String> = expect.iter().map(|(p, pr)| format!("{p}/{pr}")).collect();
        if out.offences.is_empty() {
            let _ = writeln!(
                s,
                "intent (--expect {}): met; every other port is closed or filtered",
                names.join(",")
            );
        } else {
            let _ = writeln!(
                s,
                "intent (--expect {}): NOT met, {} port(s) differ:",
                names.join(","),
                out.offences.len()
            );
            for o in &out.offences {
                let what = if o.expected_open {
                    format!("expected open, observed {}", o.observed)
                } else {
                    format!("not expected, observed {}", o.observed)
                };
                let rule = o.rule.as_deref().unwrap_or("no rule (no verdict)");
                let _ = writeln!(s, "  {}/{}: {what}; {} by {rule}", o.port, o.proto, o.verdict);
                if let Some(t) = &o.rule_text {
                    let _ = writeln!(s, "      {t}");
                }
            }
        }
    }
    if out.rows.iter().any(|r| !r.agree) {
        s.push_str(&bug_report(req, out));
    }
    if out.kept {
        let _ = writeln!(
            s,
            "\nsandbox kept. Enter it with:\n  ip netns exec {} bash    # the target (iptables -L, ss -lntu)\n  ip netns exec {} bash    # the scanner ({})\nRemove it with: portcullis verify --cleanup",
            out.namespaces.0,
            out.namespaces.1,
            addrs(&out.source)
        );
    }
    let verdict = match out.code() {
        0 => "OK",
        1 => "FAILED: the ruleset does not do what --expect says",
        _ => "INTERNAL INCONSISTENCY: prediction and observation disagree (exit 3)",
    };
    let _ = writeln!(s, "result: {verdict}");
    s
}

/// Everything a bug report of a disagreement needs.
fn bug_report(req: &Request, out: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n--- bug report: prediction and observation disagree ---");
    let _ = writeln!(
        s,
        "portcullis {} ({}), backend {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        backend_word(out.backend)
    );
    let _ = writeln!(
        s,
        "kernel: {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    );
    let _ = writeln!(
        s,
        "scanner {:?} -> target {:?}, listening tcp {:?} udp {:?}",
        out.source, out.target, out.listen_tcp, out.listen_udp
    );
    for r in out.rows.iter().filter(|r| !r.agree) {
        let _ = writeln!(
            s,
            "  {}/{} ({:?}): predicted {}, observed {}",
            r.port,
            r.proto,
            r.family,
            predicted_words(&r.predicted),
            observed_words(r)
        );
    }
    let _ = writeln!(s, "the ruleset as given ({}):", req.name);
    for rs in &req.rulesets {
        s.push_str(&portcullis_syntax::render_save(rs, portcullis_syntax::SaveOptions::default()));
    }
    if let Some(k) = &out.kernel {
        let _ = writeln!(s, "the kernel's ruleset in the target (iptables-save -c):");
        s.push_str(k);
    }
    let _ = writeln!(s, "--- end of bug report ---");
    s
}

/// The JSON report.
pub(crate) fn json(req: &Request, out: &Outcome) -> Result<String> {
    let ports: Vec<serde_json::Value> = out
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "port": r.port,
                "proto": r.proto.as_str(),
                "family": if r.family == Family::V4 { "ipv4" } else { "ipv6" },
                "service": service_name(scan_proto(r.proto), r.port),
                "listening": r.listening,
                "predicted": r.predicted.iter().map(|p| serde_json::json!({"state": p.state.as_str(), "reason": p.reason.as_str()})).collect::<Vec<_>>(),
                "observed": r.observed.as_ref().map(|(s, why)| serde_json::json!({"state": s, "reason": why})),
                "agree": r.agree,
                "expected_open": r.expected,
            })
        })
        .collect();
    let offences: Vec<serde_json::Value> = out
        .offences
        .iter()
        .map(|o| {
            serde_json::json!({
                "port": o.port,
                "proto": o.proto.as_str(),
                "family": if o.family == Family::V4 { "ipv4" } else { "ipv6" },
                "expected_open": o.expected_open,
                "observed": o.observed,
                "verdict": o.verdict,
                "rule": o.rule,
                "rule_text": o.rule_text,
            })
        })
        .collect();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let t = &out.timings;
    let v = serde_json::json!({
        "file": req.name,
        "backend": backend_word(out.backend),
        "target": out.target.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "source": out.source.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "namespaces": {"target": out.namespaces.0, "scanner": out.namespaces.1, "kept": out.kept},
        "listening": {"tcp": out.listen_tcp, "udp": out.listen_udp},
        "ports": ports,
        "agree": out.rows.iter().filter(|r| r.agree).count(),
        "disagree": out.rows.iter().filter(|r| !r.agree).count(),
        "expect": req.expect.as_ref().map(|e| e.iter().map(|(p, pr)| format!("{p}/{pr}")).collect::<Vec<_>>()),
        "offences": offences,
        "kernel_ruleset": out.kernel,
        "timings_ms": {
            "setup": ms(t.setup), "apply": ms(t.apply), "listen": ms(t.listen),
            "scan": ms(t.scan), "predict": ms(t.predict), "teardown": ms(t.teardown),
        },
        "exit": out.code(),
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_eval::{PortState, Prediction, Proto, Reason};
    use portcullis_rules::{Backend, Family};
    use portcullis_scan::output::RunInfo;

    use super::super::{Outcome, PortChoice, Request, Row, Timings};

    fn outcome(rows: Vec<Row>) -> Outcome {
        Outcome {
            rows,
            offences: Vec::new(),
            reports: Vec::new(),
            info: RunInfo { args: String::new(), start_unix: 0, elapsed: Duration::ZERO },
            backend: Backend::Legacy,
            target: vec!["198.18.0.2".parse().expect("address")],
            source: vec!["198.18.0.1".parse().expect("address")],
            namespaces: ("pcl-vt-1-0".into(), "pcl-vs-1-1".into()),
            kept: false,
            listen_tcp: vec![22],
            listen_udp: Vec::new(),
            timings: Timings::default(),
            kernel: Some("*filter\n:INPUT DROP [3:120]\nCOMMIT\n".into()),
        }
    }

    #[test]
    fn a_disagreement_prints_a_bug_report() {
        let rs = portcullis_syntax::parse_save(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        )
        .expect("parses");
        let req = Request {
            name: "seed.rules".into(),
            rulesets: vec![rs],
            backend: None,
            ports: PortChoice::Fast,
            listen: None,
            expect: None,
            src: None,
            timing: None,
            keep: false,
        };
        let row = Row {
            family: Family::V4,
            proto: Proto::Tcp,
            port: 22,
            predicted: vec![Prediction { state: PortState::Open, reason: Reason::SynAck }],
            observed: Some(("filtered".into(), "no-response".into())),
            agree: false,
            listening: true,
            expected: None,
        };
        let out = outcome(vec![row]);
        assert_eq!(out.code(), 3);
        let t = super::text(&req, &out);
        for needle in [
            "22/tcp  ssh      open (syn-ack)  filtered (no-response)  NO",
            "prediction vs observation: 0 of 1 ports agree",
            "--- bug report: prediction and observation disagree ---",
            "backend legacy",
            "22/tcp (V4): predicted open (syn-ack), observed filtered (no-response)",
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
            ":INPUT DROP [3:120]",
            "result: INTERNAL INCONSISTENCY",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        let j: serde_json::Value =
            serde_json::from_str(&super::json(&req, &out).expect("json")).expect("valid");
        assert_eq!(j["exit"], 3);
        assert_eq!(j["disagree"], 1);
        assert_eq!(j["ports"][0]["predicted"][0]["state"], "open");
        assert_eq!(j["kernel_ruleset"], "*filter\n:INPUT DROP [3:120]\nCOMMIT\n");
    }
}
