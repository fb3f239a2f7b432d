//! Our writers against nmap 7.93's own files for the same states (`test_data/nmap/`,
//! captured on the issue 3 rig with `nmap -n -Pn -s? -F --reason -oA`). The reports come
//! from the engine against the simulated rig target, so this runs anywhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portcullis_scan::engine::{Engine, EngineConfig, ScanReport, Target};
use portcullis_scan::output::{self, OutputOptions, RunInfo};
use portcullis_scan::ports::top_ports;
use portcullis_scan::state::ScanType;
use portcullis_scan::testing::{SimTarget, run_simulated};
use portcullis_scan::timing::Timing;

fn data(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/nmap").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rig_report(scan_type: ScanType, ports: Vec<u16>) -> ScanReport {
    let mut sim = SimTarget::rig(scan_type == ScanType::Udp);
    let addr = sim.addr;
    let cfg = EngineConfig {
        scan_type,
        targets: vec![Target { addr, src: "198.18.0.1".parse().unwrap() }],
        ports,
        timing: Timing::template(4),
        seed: 5,
    };
    run_simulated(Engine::new(cfg).unwrap(), &mut sim).0
}

fn info() -> RunInfo {
    RunInfo {
        args: "portcullis scan -n -Pn -sS -F --reason 198.18.0.2".into(),
        start_unix: 1_795_658_159,
        elapsed: Duration::from_millis(1234),
    }
}

const REASON: OutputOptions = OutputOptions { reason: true, open_only: false };

fn cases() -> Vec<(&'static str, ScanReport)> {
    vec![
        ("syn", rig_report(ScanType::Syn, top_ports(ScanType::Syn.protocol(), 100))),
        ("ack", rig_report(ScanType::Ack, top_ports(ScanType::Ack.protocol(), 100))),
        ("udp", rig_report(ScanType::Udp, top_ports(ScanType::Udp.protocol(), 100))),
        ("small", rig_report(ScanType::Syn, vec![22, 25, 80, 110, 113, 443])),
    ]
}

/// Lines nmap and we print identically: everything but headers, latency and MAC lines.
fn comparable(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            !l.starts_with('#') && !l.starts_with("Host is up") && !l.starts_with("MAC Address")
        })
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn normal_output_matches_nmap() {
    for (name, report) in cases() {
        let ours = output::normal(std::slice::from_ref(&report), &info(), REASON);
        assert_eq!(comparable(&ours), comparable(&data(&format!("{name}.nmap"))), "{name}");
    }
}

#[test]
fn grepable_output_matches_nmap() {
    for (name, report) in cases() {
        let ours = output::grepable(std::slice::from_ref(&report), &info(), REASON);
        assert_eq!(comparable(&ours), comparable(&data(&format!("{name}.gnmap"))), "{name}");
    }
}

fn ports_element(xml: &str) -> &str {
    let a = xml.find("<ports>").expect("<ports>");
    let b = xml.find("</ports>").expect("</ports>");
    &xml[a..b]
}

#[test]
fn xml_ports_match_nmap() {
    for (name, report) in cases() {
        let ours = output::xml(std::slice::from_ref(&report), &info(), REASON);
        let theirs = data(&format!("{name}.xml"));
        assert_eq!(ports_element(&ours), ports_element(&theirs), "{name}");
    }
}

fn dtd() -> Option<PathBuf> {
    ["/usr/share/nmap/nmap.dtd"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Every XML we write validates against nmap.dtd (xmllint from libxml2-utils; the DTD from
/// nmap's package). Skipped when either is missing, except under `CI`.
#[test]
fn xml_validates_against_nmap_dtd() {
    let xmllint = Command::new("xmllint").arg("--version").output().is_ok();
    let Some(dtd) = dtd().filter(|_| xmllint) else {
        assert!(std::env::var_os("CI").is_none(), "CI needs xmllint and nmap's nmap.dtd");
        #[allow(clippy::print_stderr, reason = "a skipped test says so")]
        {
            eprintln!("skipping: xmllint or nmap.dtd not installed");
        }
        return;
    };
    let dir = std::env::temp_dir().join(format!("pcl-scan-xml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = Vec::new();
    for (name, report) in cases() {
        all.push(report.clone());
        for (suffix, opts) in
            [("reason", REASON), ("open", OutputOptions { reason: false, open_only: true })]
        {
            let f = dir.join(format!("{name}-{suffix}.xml"));
            std::fs::write(&f, output::xml(std::slice::from_ref(&report), &info(), opts)).unwrap();
            let out = Command::new("xmllint")
                .arg("--noout")
                .arg("--dtdvalid")
                .arg(&dtd)
                .arg(&f)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // Several scans in one document (-sSU) too.
    let f = dir.join("combined.xml");
    std::fs::write(&f, output::xml(&all[..3], &info(), REASON)).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--dtdvalid")
        .arg(&dtd)
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "combined: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_lists_every_port() {
    let (_, report) = cases().remove(0);
    let j = output::json(std::slice::from_ref(&report), &info(), REASON);
    assert_eq!(j.matches("\"port\":").count(), 100);
    assert!(j.contains("{\"port\":110,\"protocol\":\"tcp\",\"state\":\"filtered\",\"reason\":\"port-unreach\",\"reason_ttl\":64,\"service\":\"pop3\"}"));
    let open = output::json(
        std::slice::from_ref(&report),
        &info(),
        OutputOptions { reason: false, open_only: true },
    );
    assert_eq!(open.matches("\"port\":").count(), 2);
}

/// Without `--reason` nmap prints neither the REASON column nor the host's reason.
#[test]
fn normal_output_without_reason() {
    let (_, report) = cases().remove(0);
    let text = output::normal(std::slice::from_ref(&report), &info(), OutputOptions::default());
    assert!(text.contains("\nHost is up ("), "{text}");
    assert!(text.contains("\nPORT    STATE  SERVICE\n22/tcp  open   ssh\n"), "{text}");
}
