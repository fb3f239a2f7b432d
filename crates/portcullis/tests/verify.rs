//! `portcullis verify`, `init`, `allow`, `deny` and `demo` from the command line, with
//! real namespaces and real iptables (issue 7, acceptance 1, 3 and 4).
//!
//! Each test runs the built binary. Tests that need root call `can_run_or_skip` first.
//! Listener ports are unique per test (47xxx) so a test can look for its own listener
//! process in the process table.
#![allow(clippy::print_stderr, reason = "tests report what they saw")]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn portcullis(args: &[&str]) -> Output {
    Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("portcullis runs")
}

fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("portcullis runs")
}

/// Runs portcullis and returns its pid (namespace names carry it) and its output.
fn run_with_pid(args: &[&str]) -> (u32, Output) {
    let child = spawn(args);
    let pid = child.id();
    (pid, child.wait_with_output().expect("portcullis ends"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write a fixture");
    p.to_str().expect("utf-8").to_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The namespaces of `pid` still listed, and `__listen` processes with `marker` in their
/// arguments still running.
fn leftovers(pid: u32, marker: &str) -> Vec<String> {
    let ns = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let mut left: Vec<String> = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("pcl-v") && n.contains(&format!("-{pid}-")))
        .map(str::to_owned)
        .collect();
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().expect("ps");
    for line in String::from_utf8_lossy(&ps.stdout).lines() {
        if line.contains("__listen") && line.contains(marker) {
            left.push(line.trim().to_owned());
        }
    }
    left
}

/// A line the report must hold and the rule text printed under it.
type Needle<'a> = (&'a str, &'a str);

const HEAD: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";

#[test]
fn seed_ruleset_verifies_and_agrees() {
    if !portcullis_netns::can_run_or_skip("seed_ruleset_verifies_and_agrees", &["iptables-restore"])
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "seed",
        &format!("{HEAD}-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"),
    );
    let xml = dir.path().join("scan.xml");
    let o =
        portcullis(&["verify", &f, "-F", "--expect", "ssh", "-oX", xml.to_str().expect("utf-8")]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("22/tcp  ssh      open (syn-ack)  open (syn-ack)  yes"), "{out}");
    assert!(out.contains("99 tcp ports filtered (no-response)"), "{out}");
    assert!(out.contains("200 of 200 ports agree"), "{out}");
    let x = std::fs::read_to_string(&xml).expect("-oX wrote the XML");
    assert!(x.contains("<port protocol=\"tcp\" portid=\"22\"><state state=\"open\""), "{x}");
}

/// Acceptance 3: wrong rulesets against --expect exit 1 and name ports and rules.
#[test]
fn wrong_rulesets_fail_expect_naming_port_and_rule() {
    if !portcullis_netns::can_run_or_skip("wrong_rulesets_fail_expect", &["iptables-restore"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A DROP-all placed before the rule for an expected port.
    let drop_first = write(
        dir.path(),
        "drop_first",
        &format!(
            "{HEAD}-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j DROP\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
        ),
    );
    // A typo'd port: 8080 where 80 was meant.
    let typo = write(
        dir.path(),
        "typo",
        &format!(
            "{HEAD}-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\nCOMMIT\n"
        ),
    );
    // A source restriction that excludes the scanner (198.18.0.1).
    let src = write(
        dir.path(),
        "src",
        &format!("{HEAD}-A INPUT -s 198.18.5.0/24 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"),
    );
    let cases: [(&str, &str, &[Needle<'_>]); 3] = [
        (
            &drop_first,
            "22/tcp,80/tcp",
            &[(
                "80/tcp: expected open, observed filtered; DROP by filter/INPUT rule 2 (line 6)",
                "-A INPUT -j DROP",
            )],
        ),
        (
            &typo,
            "22/tcp,80/tcp",
            &[
                (
                    "80/tcp: expected open, observed filtered; DROP by filter/INPUT policy",
                    ":INPUT DROP",
                ),
                (
                    "8080/tcp: not expected, observed open; ACCEPT by filter/INPUT rule 2 (line 6)",
                    "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
                ),
            ],
        ),
        (
            &src,
            "22/tcp",
            &[(
                "22/tcp: expected open, observed filtered; DROP by filter/INPUT policy",
                ":INPUT DROP",
            )],
        ),
    ];
    for (file, expect, needles) in cases {
        let child = portcullis(&["verify", file, "-p", "T:22,80,443,8080", "--expect", expect]);
        let out = text(&child);
        assert_eq!(child.status.code(), Some(1), "{file}: {out}");
        for (line, rule) in needles {
            assert!(out.contains(line), "{file}: missing `{line}`:\n{out}");
            assert!(out.contains(rule), "{file}: missing rule `{rule}`:\n{out}");
        }
        assert!(out.contains("ports agree"), "{out}");
        // The JSON names the same offences.
        let j = json(&portcullis(&[
            "verify",
            file,
            "-p",
            "T:22,80,443,8080",
            "--expect",
            expect,
            "--json",
        ]));
        assert_eq!(j["exit"], 1);
        assert_eq!(j["disagree"], 0);
        let offences = j["offences"].as_array().expect("offences");
        assert_eq!(offences.len(), needles.len(), "{j}");
        assert!(offences.iter().all(|o| o["rule"].is_string()), "{j}");
    }
}

#[test]
fn listen_option_and_reject_variants_agree() {
    if !portcullis_netns::can_run_or_skip(
        "listen_option_and_reject_variants_agree",
        &["iptables-restore"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "rej",
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p tcp -m tcp --dport 47101 -j REJECT --reject-with tcp-reset\n\
         -A INPUT -p tcp -m tcp --dport 47102 -j REJECT --reject-with icmp-admin-prohibited\n\
         -A INPUT -p udp -m udp --dport 47103 -j DROP\nCOMMIT\n",
    );
    let o = portcullis(&[
        "verify",
        &f,
        "-p",
        "T:47100-47104,U:47100-47104",
        "--listen",
        "47100/tcp,47100/udp",
        "--json",
    ]);
    let j = json(&o);
    assert_eq!(o.status.code(), Some(0), "{j}");
    let state = |port: u64, proto: &str| {
        let p = j["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["port"] == port && p["proto"] == proto)
            .unwrap_or_else(|| panic!("{port}/{proto} missing: {j}"));
        format!(
            "{} {}",
            p["observed"]["state"].as_str().unwrap_or("?"),
            p["observed"]["reason"].as_str().unwrap_or("?")
        )
    };
    assert_eq!(state(47100, "tcp"), "open syn-ack");
    assert_eq!(state(47101, "tcp"), "closed reset");
    assert_eq!(state(47102, "tcp"), "filtered admin-prohibited");
    assert_eq!(state(47104, "tcp"), "closed reset");
    assert_eq!(state(47100, "udp"), "open udp-response");
    assert_eq!(state(47103, "udp"), "open|filtered no-response");
    assert_eq!(state(47104, "udp"), "closed port-unreach");
    assert_eq!(j["listening"]["tcp"], serde_json::json!([47100]));
}

/// Acceptance 4: a forced failure (the kernel refuses the file) leaves nothing behind.
#[test]
fn failed_apply_leaves_no_namespace_or_process() {
    if !portcullis_netns::can_run_or_skip("failed_apply_leaves_nothing", &["iptables-restore"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "noset",
        &format!(
            "{HEAD}-A INPUT -p tcp -m tcp --dport 47201 -j ACCEPT\n-A INPUT -m set --match-set pcl-no-such-set src -j ACCEPT\nCOMMIT\n"
        ),
    );
    let (pid, o) = run_with_pid(&["verify", &f, "-p", "T:47201"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("applying in the sandbox failed"), "{}", text(&o));
    let left = leftovers(pid, "47201");
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Acceptance 4: Ctrl-C in the middle of a scan removes the sandbox and the listener.
#[test]
fn interrupt_tears_the_sandbox_down() {
    if !portcullis_netns::can_run_or_skip("interrupt_tears_the_sandbox_down", &["iptables-restore"])
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "slow",
        &format!("{HEAD}-A INPUT -p tcp -m tcp --dport 47301 -j ACCEPT\nCOMMIT\n"),
    );
    // -T3 over every port: long enough to be interrupted in the middle.
    let child = spawn(&["verify", &f, "-p-", "-T3", "--listen", "47301/tcp"]);
    let pid = child.id();
    let started = Instant::now();
    while leftovers(pid, "47301").iter().all(|l| !l.contains("__listen")) {
        assert!(started.elapsed() < Duration::from_secs(60), "the listener never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(leftovers(pid, "47301").iter().any(|l| l.starts_with("pcl-vt-")), "sandbox not seen");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let o = child.wait_with_output().expect("verify ends");
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let left = leftovers(pid, "47301");
    assert!(left.is_empty(), "left behind after Ctrl-C: {left:?}");
}

#[test]
fn keep_leaves_the_sandbox_and_cleanup_removes_it() {
    if !portcullis_netns::can_run_or_skip("keep_then_cleanup", &["iptables-restore"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "k",
        &format!("{HEAD}-A INPUT -p tcp -m tcp --dport 47401 -j ACCEPT\nCOMMIT\n"),
    );
    let (pid, o) = run_with_pid(&["verify", &f, "-p", "T:47401", "--keep"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("ip netns exec pcl-vt-"), "{out}");
    let kept = leftovers(pid, "47401");
    assert!(kept.iter().any(|l| l.starts_with("pcl-vt-")), "{kept:?}");
    assert!(kept.iter().any(|l| l.starts_with("pcl-vs-")), "{kept:?}");
    assert!(kept.iter().any(|l| l.contains("__listen")), "the listener stays up: {kept:?}");
    let c = portcullis(&["verify", "--cleanup"]);
    assert!(c.status.success(), "{}", text(&c));
    let left = leftovers(pid, "47401");
    assert!(left.is_empty(), "--cleanup left {left:?}");
}

#[test]
fn init_allow_deny_edit_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("rules.v4");
    let fs = f.to_str().expect("utf-8");
    let o = portcullis(&["init", "--allow", "ssh,dns", "-o", fs]);
    assert!(o.status.success(), "{}", text(&o));
    let t = std::fs::read_to_string(&f).expect("init wrote");
    assert!(
        t.contains(":INPUT DROP [0:0]")
            && t.contains(":FORWARD DROP [0:0]")
            && t.contains(":OUTPUT ACCEPT"),
        "{t}"
    );
    assert!(t.contains("-A INPUT -i lo"), "{t}");
    assert!(t.contains("RELATED,ESTABLISHED"), "{t}");
    assert!(
        t.contains("--dport 53 -m comment --comment \"portcullis: allow dns\" -j ACCEPT"),
        "{t}"
    );
    assert!(t.contains("-p udp -m udp --dport 53"), "{t}");
    // init refuses to overwrite, allow is idempotent, deny removes.
    assert!(!portcullis(&["init", "-o", fs]).status.success());
    for _ in 0..2 {
        let o = portcullis(&["allow", "https,8080/udp", fs]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let t = std::fs::read_to_string(&f).expect("read");
    assert_eq!(t.matches("--dport 443").count(), 1, "{t}");
    assert!(t.contains("-p udp -m udp --dport 8080 -m comment --comment \"portcullis: allow 8080/udp\" -j ACCEPT"), "{t}");
    let o = portcullis(&["deny", "dns", fs]);
    assert!(o.status.success(), "{}", text(&o));
    let t = std::fs::read_to_string(&f).expect("read");
    assert!(!t.contains("--dport 53"), "{t}");
    assert!(t.contains("--dport 22"), "{t}");
    // The result still checks and lints without errors.
    let o = portcullis(&["check", fs]);
    assert!(o.status.success(), "{}", text(&o));
    let mut lint = Command::new(bin())
        .args(["lint", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("lint runs");
    lint.stdin.take().expect("stdin").write_all(t.as_bytes()).expect("feed lint");
    let o = lint.wait_with_output().expect("lint ends");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("error["),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // A policy-ACCEPT file gets an explicit DROP, first.
    let open = dir.path().join("open.v4");
    std::fs::write(
        &open,
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
    )
    .expect("write");
    let o = portcullis(&["deny", "ssh", open.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let t = std::fs::read_to_string(&open).expect("read");
    assert!(t.contains("-A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"portcullis: deny ssh\" -j DROP"), "{t}");
    assert!(!t.contains("-j ACCEPT"), "{t}");
    assert!(!portcullis(&["allow", "gopher", open.to_str().expect("utf-8")]).status.success());
}

/// Acceptance 1: the demo prints the seed's result and exits 0.
#[test]
fn demo_shows_the_seed_workflow() {
    let o = portcullis(&["demo"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("ACCEPT     tcp  --  anywhere             anywhere             tcp dpt:ssh"),
        "{out}"
    );
    assert!(out.contains("PCL001"), "{out}");
    if portcullis_netns::missing_prerequisite(&["iptables-restore"]).is_some() {
        assert!(out.contains("needs root"), "{out}");
        return;
    }
    assert!(out.contains("intent (--expect 22/tcp): met"), "{out}");
    assert!(out.contains("Not shown: 99 filtered tcp ports (no-response)"), "{out}");
    assert!(out.contains("22/tcp open  ssh"), "{out}");
}
