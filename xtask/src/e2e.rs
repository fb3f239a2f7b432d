//! `cargo xtask e2e [SCENARIO] [--keep]`: the end-to-end suite.
//!
//! Every directory `tests/e2e/NNNN_name/` is a scenario, data only:
//! - `rules`: the ruleset (any format `portcullis` reads);
//! - `listen.txt` (optional): listeners, `22/tcp 53/udp ...` (default: what verify
//!   derives: every scanned port the ruleset accepts, and `--expect`);
//! - `args.txt` (optional): more `portcullis verify` arguments, the scan to run
//!   (`-p T:22,80,U:53`, `--src 198.18.0.77`, `--backend legacy`, `--expect 22/tcp`);
//! - `expect.txt`: the expected table, one `PORT/PROTO STATE REASON` line per scanned port
//!   (`ipv6 PORT/PROTO ...` for IPv6), and optionally `exit N` (default `exit 0`).
//!   `UPDATE_EXPECT=1` rewrites it from the run.
//!
//! `PORTCULLIS_BIN=PATH` runs that binary instead of building the debug one.
//!
//! For each scenario the built `portcullis` runs `verify --json --keep` as a black box (its
//! own sandbox: target and scanner namespaces, apply, listeners, scan, prediction); the
//! observed table must equal `expect.txt`, every port's prediction must agree with the
//! observation, and, when nmap is installed, nmap run in the same sandbox must report the
//! same state and reason on every port. Then the sandbox is removed (a guard, so also
//! when the scenario fails), and at the end no namespace or process of the run may be
//! left. Prerequisites (root, ip, iptables, nmap) are checked first: missing locally means
//! "skipping", under CI it is a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

/// A kept sandbox; dropping it kills what runs inside and deletes both namespaces.
struct Kept {
    names: Vec<String>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        for name in &self.names {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{name}.xtables.lock")));
        }
    }
}

/// One scenario's files.
struct Scenario {
    name: String,
    dir: PathBuf,
}

fn scenarios(root: &Path, filter: Option<&str>) -> Result<Vec<Scenario>> {
    let base = root.join("tests/e2e");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&base).with_context(|| format!("read {}", base.display()))? {
        let dir = entry?.path();
        if !dir.join("rules").is_file() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        if filter.is_none_or(|f| name.contains(f)) {
            out.push(Scenario { name, dir });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn words(path: &Path) -> Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// What verify reported for one port.
#[derive(Debug, Clone)]
struct Port {
    family: String,
    proto: String,
    port: u16,
    state: String,
    reason: String,
    agree: bool,
}

impl Port {
    fn line(&self) -> String {
        let fam = if self.family == "ipv6" { "ipv6 " } else { "" };
        format!("{fam}{}/{} {} {}", self.port, self.proto, self.state, self.reason)
    }
}

struct Run {
    code: i32,
    ports: Vec<Port>,
    target: Vec<String>,
    source: Vec<String>,
    scanner: String,
    text: String,
}

fn run_verify(
    exe: &Path,
    sc: &Scenario,
    keep_for_nmap: bool,
    tmp: &Path,
    pids: &mut Vec<u32>,
) -> Result<(Run, Option<Kept>)> {
    let mut cmd = Command::new(exe);
    cmd.arg("verify").arg(sc.dir.join("rules")).arg("--json");
    cmd.args(words(&sc.dir.join("args.txt"))?);
    let listen = words(&sc.dir.join("listen.txt"))?;
    if !listen.is_empty() {
        cmd.arg("--listen").arg(listen.join(","));
    }
    if keep_for_nmap {
        cmd.arg("--keep");
    }
    cmd.arg("-oX").arg(tmp.join(format!("{}.xml", sc.name)));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run portcullis verify")?;
    pids.push(child.id());
    let out = child.wait_with_output().context("wait for portcullis verify")?;
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .with_context(|| format!("verify exited {code} without a JSON report: {stderr}{stdout}"))?;
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let ns = &v["namespaces"];
    let kept = ns["kept"].as_bool().unwrap_or(false).then(|| Kept {
        names: [&ns["target"], &ns["scanner"]]
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
    });
    let mut ports = Vec::new();
    for p in v["ports"].as_array().into_iter().flatten() {
        ports.push(Port {
            family: p["family"].as_str().unwrap_or("?").to_owned(),
            proto: p["proto"].as_str().unwrap_or("?").to_owned(),
            port: p["port"].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
            state: p["observed"]["state"].as_str().unwrap_or("?").to_owned(),
            reason: p["observed"]["reason"].as_str().unwrap_or("?").to_owned(),
            agree: p["agree"].as_bool().unwrap_or(false),
        });
    }
    let run = Run {
        code,
        ports,
        target: strs(&v["target"]),
        source: strs(&v["source"]),
        scanner: ns["scanner"].as_str().unwrap_or("").to_owned(),
        text: stdout,
    };
    Ok((run, kept))
}

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

/// nmap's verdict per (proto, port) from its XML, `extraports` expanded.
fn parse_nmap_xml(xml: &str) -> BTreeMap<(String, u16), (String, String)> {
    let mut res = BTreeMap::new();
    for chunk in xml.split("<port ").skip(1) {
        let proto = attr(chunk, "protocol").unwrap_or("?").to_owned();
        let Some(port) = attr(chunk, "portid").and_then(|p| p.parse().ok()) else { continue };
        let Some(state_tag) = chunk.split("<state ").nth(1) else { continue };
        let state = attr(state_tag, "state").unwrap_or("?").to_owned();
        let reason = attr(state_tag, "reason").unwrap_or("?").to_owned();
        res.insert((proto, port), (state, reason));
    }
    for chunk in xml.split("<extraports ").skip(1) {
        let state = attr(chunk, "state").unwrap_or("?").to_owned();
        let body = chunk.split("</extraports>").next().unwrap_or("");
        for er in body.split("<extrareasons ").skip(1) {
            let reason = attr(er, "reason").unwrap_or("?").to_owned();
            let proto = attr(er, "proto").unwrap_or("?").to_owned();
            for p in expand(attr(er, "ports").unwrap_or("")) {
                res.insert((proto.clone(), p), (state.clone(), reason.clone()));
            }
        }
    }
    res
}

/// Runs nmap in the kept sandbox's scanner namespace and lists every port where it
/// differs from portcullis.
fn compare_with_nmap(run: &Run) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for (target, src) in run.target.iter().zip(&run.source) {
        let family = if target.contains(':') { "ipv6" } else { "ipv4" };
        let ports: Vec<&Port> = run.ports.iter().filter(|p| p.family == family).collect();
        if ports.is_empty() {
            continue;
        }
        let list = |proto: &str| -> String {
            ports
                .iter()
                .filter(|p| p.proto == proto)
                .map(|p| p.port.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (tcp, udp) = (list("tcp"), list("udp"));
        let mut spec = Vec::new();
        let mut kinds = Vec::new();
        if !tcp.is_empty() {
            spec.push(format!("T:{tcp}"));
            kinds.push("-sS");
        }
        if !udp.is_empty() {
            spec.push(format!("U:{udp}"));
            kinds.push("-sU");
        }
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &run.scanner,
            "nmap",
            "-n",
            "-Pn",
            "--reason",
            "-T4",
            "-e",
            "pcl0",
        ]);
        cmd.args(&kinds).args(["-S", src, "-p", &spec.join(","), "-oX", "-"]);
        if family == "ipv6" {
            cmd.arg("-6");
        }
        cmd.arg(target);
        let out = cmd.stdin(Stdio::null()).output().context("run nmap")?;
        ensure!(out.status.success(), "nmap failed: {}", String::from_utf8_lossy(&out.stderr));
        let seen = parse_nmap_xml(&String::from_utf8_lossy(&out.stdout));
        for p in &ports {
            match seen.get(&(p.proto.clone(), p.port)) {
                Some((s, r)) if *s == p.state && *r == p.reason => {}
                Some((s, r)) => bad.push(format!(
                    "{}: portcullis {} {}, nmap {s} {r}",
                    p.line(),
                    p.state,
                    p.reason
                )),
                None => bad.push(format!("{}: nmap did not report it", p.line())),
            }
        }
    }
    Ok(bad)
}

fn ruled_diff(want: &str, got: &str) -> String {
    let bar = "-".repeat(60);
    format!("expected:\n{bar}\n{want}{bar}\nobserved:\n{bar}\n{got}{bar}\n")
}

/// Runs one scenario; `Err` describes why it failed.
fn run_scenario(
    exe: &Path,
    sc: &Scenario,
    nmap: bool,
    keep: bool,
    tmp: &Path,
    pids: &mut Vec<u32>,
) -> Result<()> {
    let (run, kept) = run_verify(exe, sc, nmap || keep, tmp, pids)?;
    let kept = if keep {
        if let Some(mut k) = kept {
            println!("  kept: {}", k.names.join(" "));
            k.names.clear();
        }
        None
    } else {
        kept
    };
    let mut got = String::new();
    if run.code != 0 {
        got.push_str(&format!("exit {}\n", run.code));
    }
    for p in &run.ports {
        got.push_str(&p.line());
        got.push('\n');
    }
    let expect_path = sc.dir.join("expect.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expect_path, &got)
            .with_context(|| format!("write {}", expect_path.display()))?;
    }
    let want = std::fs::read_to_string(&expect_path)
        .with_context(|| format!("read {} (UPDATE_EXPECT=1 writes it)", expect_path.display()))?;
    let want: String = want
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    let mut problems = Vec::new();
    if want != got {
        problems.push(format!(
            "the observed table differs from expect.txt\n{}",
            ruled_diff(&want, &got)
        ));
    }
    let disagree: Vec<String> = run.ports.iter().filter(|p| !p.agree).map(Port::line).collect();
    if !disagree.is_empty() {
        problems.push(format!("prediction and observation disagree on {}", disagree.join(", ")));
    }
    if nmap && kept.is_some() {
        let bad = compare_with_nmap(&run)?;
        if !bad.is_empty() {
            problems.push(format!("nmap disagrees with portcullis-scan:\n  {}", bad.join("\n  ")));
        }
    }
    drop(kept);
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}\n--- verify's report ---\n{}", problems.join("\n"), run.text)
    }
}

fn leftovers(pids: &[u32]) -> Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output().context("ip netns list")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut left: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("pcl-v"))
        .filter(|n| pids.iter().any(|p| n.contains(&format!("-{p}-"))))
        .map(str::to_owned)
        .collect();
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().context("ps")?;
    for line in String::from_utf8_lossy(&ps.stdout).lines() {
        if line.contains("__listen") && line.contains("--deadline") && !line.contains("ps -eo") {
            left.push(format!("process: {}", line.trim()));
        }
    }
    Ok(left)
}

/// A scenario made to fail (its expected table is wrong): the suite must report it and
/// leave no namespace or listener behind, through the same guards as every scenario.
fn forced_failure(exe: &Path, nmap: bool, tmp: &Path) -> Result<()> {
    let dir = tmp.join("9999_forced_failure");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("rules"),
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
    )?;
    std::fs::write(dir.join("args.txt"), "-p T:22,23\n")?;
    std::fs::write(
        dir.join("expect.txt"),
        "22/tcp filtered no-response\n23/tcp filtered no-response\n",
    )?;
    let sc = Scenario { name: "9999_forced_failure".into(), dir };
    let mut pids = Vec::new();
    let res = run_scenario(exe, &sc, nmap, false, tmp, &mut pids);
    ensure!(res.is_err(), "a scenario with a wrong expect.txt passed");
    ensure!(!pids.is_empty(), "verify did not run");
    let left = leftovers(&pids)?;
    ensure!(left.is_empty(), "a failed scenario left {left:?}");
    println!("ok    forced failure: reported, nothing left behind (ip netns list, ps)");
    Ok(())
}

/// Entry point of `cargo xtask e2e`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let keep = args.iter().any(|a| a == "--keep");
    let filter = args.iter().find(|a| !a.starts_with("--")).map(String::as_str);
    let missing =
        portcullis_netns::missing_prerequisite(&["iptables-restore", "iptables-legacy-restore"]);
    if let Some(why) = missing {
        if std::env::var_os("CI").is_some() {
            bail!("e2e cannot run under CI: {why}");
        }
        println!("skipping e2e: {why}");
        return Ok(());
    }
    let nmap = on_path("nmap");
    if !nmap {
        if std::env::var_os("CI").is_some() {
            bail!("e2e under CI needs nmap (apt-get install nmap)");
        }
        println!("note: nmap not found; comparing with the expected tables and predictions only");
    }
    let exe = match std::env::var_os("PORTCULLIS_BIN") {
        // A binary built elsewhere (release, another target dir).
        Some(p) => PathBuf::from(p),
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(&cargo)
                .current_dir(root)
                .args(["build", "--quiet", "-p", "portcullis"])
                .status()
                .context("cargo build")?;
            ensure!(status.success(), "building portcullis failed");
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root.join("target"), PathBuf::from);
            target_dir.join("debug/portcullis")
        }
    };
    let list = scenarios(root, filter)?;
    ensure!(!list.is_empty(), "no scenario matches {filter:?}");
    let tmp = std::env::temp_dir().join(format!("portcullis-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (mut passed, mut failed) = (0, Vec::new());
    let mut pids = Vec::new();
    let started = Instant::now();
    for sc in &list {
        let t = Instant::now();
        match run_scenario(&exe, sc, nmap, keep, &tmp, &mut pids) {
            Ok(()) => {
                passed += 1;
                println!("ok    {} ({:.2} s)", sc.name, t.elapsed().as_secs_f64());
            }
            Err(e) => {
                println!("FAIL  {} ({:.2} s)\n{e:#}", sc.name, t.elapsed().as_secs_f64());
                failed.push(sc.name.clone());
            }
        }
    }
    if !keep && filter.is_none() {
        match forced_failure(&exe, nmap, &tmp) {
            Ok(()) => passed += 1,
            Err(e) => {
                println!("FAIL  forced failure: {e:#}");
                failed.push("forced failure".to_owned());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if !keep {
        // The verify processes are gone; anything of theirs still here is a leak.
        let left = leftovers(&pids)?;
        if !left.is_empty() {
            println!("left behind: {}", left.join(", "));
            failed.push("leftovers".to_owned());
        }
    }
    println!(
        "e2e: {} scenarios in {:.1} s{}",
        list.len(),
        started.elapsed().as_secs_f64(),
        if nmap { ", each compared with nmap" } else { "" }
    );
    println!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
