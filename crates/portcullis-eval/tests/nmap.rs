//! Acceptance 2 of issue 6: predicted port states agree with a real scan.
//!
//! For the scanner rig of issue 3 and every fixture (IPv4 and IPv6), the ruleset is loaded into a
//! throwaway target namespace with listeners on a few TCP and UDP ports, nmap scans it
//! (`-sS` and `-sU`) from a second namespace, and every port's state and reason must be
//! one the prediction allows. Ports the ruleset hands elsewhere (DNAT to another host,
//! NFQUEUE) are compared on the state only.
#![allow(clippy::print_stderr, reason = "the test reports what it compared")]

mod common;

use common::{Helper, Net, Rig, fixtures, ports_of};
use portcullis_eval::{Compiled, Host, PortQuery, Proto, Reason, predict_ports};
use portcullis_netns::Netns;
use portcullis_rules::Family;
use portcullis_rules::view::PortRange;

/// Not a test: the helper the tests start inside a namespace.
#[test]
fn sender_helper() {
    common::helper_main();
}

const LISTEN_TCP: [u16; 4] = [22, 80, 3306, 8080];
const LISTEN_UDP: [u16; 2] = [53, 5353];

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

fn expand(list: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
            out.extend(a..=b);
        }
    }
    out
}

/// nmap's verdict per port: (port, state, reason).
fn nmap(scanner: &Netns, net: &Net, kind: &str, ports: &str) -> Vec<(u16, String, String)> {
    let src = net.sources[0].to_string();
    let target = net.target.to_string();
    let mut args = vec!["-n", "-Pn", kind, "--reason", "-T4", "-e", "pcl0", "-S", &src];
    if net.family == Family::V6 {
        args.push("-6");
    }
    args.extend(["-p", ports, "-oX", "-", &target]);
    let out = scanner.run("nmap", &args).expect("nmap runs");
    let mut res = Vec::new();
    for chunk in out.split("<port ").skip(1) {
        let Some(port) = attr(chunk, "portid").and_then(|p| p.parse().ok()) else { continue };
        let Some(state_tag) = chunk.split("<state ").nth(1) else { continue };
        let state = attr(state_tag, "state").unwrap_or("?").to_owned();
        let reason = attr(state_tag, "reason").unwrap_or("?").to_owned();
        res.push((port, state, reason));
    }
    for chunk in out.split("<extraports ").skip(1) {
        let state = attr(chunk, "state").unwrap_or("?").to_owned();
        let body = chunk.split("</extraports>").next().unwrap_or("");
        for er in body.split("<extrareasons ").skip(1) {
            let reason = attr(er, "reason").unwrap_or("?").to_owned();
            for p in expand(attr(er, "ports").unwrap_or("")) {
                res.push((p, state.clone(), reason.clone()));
            }
        }
    }
    res
}

fn spec(ports: &[u16]) -> String {
    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn predicted_ports_agree_with_nmap() {
    if !portcullis_netns::can_run_or_skip(
        "predicted_ports_agree_with_nmap",
        &["iptables-restore", "nmap", "sysctl"],
    ) {
        return;
    }
    let mut total = 0;
    let mut bad = Vec::new();
    for (name, text, family) in fixtures() {
        let net = Net::of(family);
        let rig = Rig::with_family("evaln", &text, family);
        let mut helper = Helper::spawn(&rig.target);
        for p in LISTEN_TCP {
            helper.send(&format!("listen tcp {p}"));
        }
        for p in LISTEN_UDP {
            helper.send(&format!("listen udp {p}"));
        }
        let mut ports = ports_of(&text);
        ports.extend(LISTEN_TCP);
        ports.extend(LISTEN_UDP);
        ports.sort_unstable();
        ports.dedup();
        let stride = ports.len().div_ceil(250);
        let ports: Vec<u16> = ports.into_iter().step_by(stride).collect();
        let ranges: Vec<PortRange> = ports.iter().map(|p| PortRange::single(*p)).collect();

        let rs = portcullis_syntax::parse_save_as(&text, family).expect("fixture parses");
        let q = PortQuery {
            family,
            src: Some(net.sources[0]),
            dst: Some(net.target),
            in_iface: Some("pcl0".into()),
            sport: PortRange { lo: 1024, hi: 65535 },
            host: Host { local: vec![net.target, net.loopback()] },
            listen_tcp: LISTEN_TCP.iter().map(|p| PortRange::single(*p)).collect(),
            listen_udp: LISTEN_UDP.iter().map(|p| PortRange::single(*p)).collect(),
            tcp: ranges.clone(),
            udp: ranges,
        };
        let compiled = Compiled::new(&rs).expect("compiles");
        let runs = predict_ports(&compiled, &q).expect("predicts");
        let mut n = 0;
        for (proto, kind) in [(Proto::Tcp, "-sS"), (Proto::Udp, "-sU")] {
            let seen = nmap(&rig.scanner, &net, kind, &spec(&ports));
            assert!(!seen.is_empty(), "{name}: nmap {kind} reported nothing");
            for (port, state, reason) in seen {
                n += 1;
                let Some(run) = runs
                    .iter()
                    .find(|r| r.proto == proto && r.ports.lo <= port && port <= r.ports.hi)
                else {
                    bad.push(format!("{name}: {port}/{proto}: no prediction"));
                    continue;
                };
                let ok = run.predictions.iter().any(|p| {
                    p.state.as_str() == state
                        && (p.reason.as_str() == reason
                            || matches!(p.reason, Reason::Forwarded | Reason::Queued))
                });
                if !ok {
                    let want: Vec<String> = run
                        .predictions
                        .iter()
                        .map(|p| format!("{}/{}", p.state, p.reason))
                        .collect();
                    bad.push(format!(
                        "{name}: {port}/{proto}: nmap {state}/{reason}, predicted {}",
                        want.join(" or ")
                    ));
                }
            }
        }
        eprintln!("{name}: {n} port states compared with nmap");
        total += n;
    }
    eprintln!("{total} port states compared with nmap");
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}
