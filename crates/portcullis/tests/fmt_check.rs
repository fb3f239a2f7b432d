//! `portcullis fmt` and `portcullis check` on the real baselines (issue 2, acceptance 5
//! and 7): for every fixture and backend, `fmt` prints what real iptables-save printed
//! after loading it; the seed article's command script prints what iptables-save printed
//! after running those commands; `-S` output reads back; `check` passes good files and
//! points at the line and column of a bad one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn baseline_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis-syntax/test_data/baseline")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("portcullis runs")
}

/// A chain line without its counters (`iptables -S` does not print them).
fn without_counters(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix(':').and_then(|r| r.rsplit_once(' ')) {
            Some((head, _)) => format!(":{head}\n"),
            None => format!("{l}\n"),
        })
        .collect()
}

/// Table blocks of save text by table name, `#` lines dropped (table order differs
/// between backends and is not part of the contract).
fn tables(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('*') {
            current = Some((name.to_owned(), String::new()));
        }
        if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
        if line == "COMMIT"
            && let Some((name, body)) = current.take()
        {
            out.insert(name, body);
        }
    }
    out
}

/// Every (input file, backend, real save output) of the baselines.
fn cases() -> Vec<(PathBuf, String, PathBuf)> {
    let dir = baseline_dir();
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&dir).expect("baseline dir").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        let Some(ext) = path.extension().and_then(|x| x.to_str()) else { continue };
        if ext != "rules" && ext != "sh" {
            continue;
        }
        let captures = path.with_extension("");
        for backend in ["nft", "legacy"] {
            for tool in ["iptables", "ip6tables"] {
                let save = captures.join(format!("{tool}-1.8.9-{backend}")).join("save.txt");
                if save.is_file() {
                    out.push((path.clone(), backend.to_owned(), save));
                }
            }
        }
    }
    out
}

#[test]
fn fmt_prints_what_iptables_save_printed() {
    let cases = cases();
    // Nine fixtures (two of them IPv6) on two backends.
    assert!(cases.len() >= 18, "baselines missing: {} cases", cases.len());
    let mut failures = Vec::new();
    for (input, backend, save) in &cases {
        let out = run(&["fmt", "--backend", backend, input.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got = tables(&String::from_utf8_lossy(&out.stdout));
        let want = tables(&fs::read_to_string(save).expect("save.txt"));
        if got != want {
            failures.push(format!("{} ({backend})", input.display()));
        }
    }
    assert!(failures.is_empty(), "fmt differs from real iptables-save for: {failures:#?}");
}

#[test]
fn seed_script_imports_to_what_iptables_save_printed() {
    let seed = baseline_dir().join("0009_seed.sh");
    let out = run(&["fmt", seed.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let want = fs::read_to_string(baseline_dir().join("0009_seed/iptables-1.8.9-nft/save.txt"))
        .expect("seed capture");
    assert_eq!(tables(&String::from_utf8_lossy(&out.stdout)), tables(&want));
}

#[test]
fn rules_spec_output_reads_back() {
    let dir = baseline_dir().join("0005_kitchen_sink/iptables-1.8.9-nft");
    let spec = dir.join("S.filter.txt");
    let out = run(&["fmt", spec.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = tables(&String::from_utf8_lossy(&out.stdout));
    let want = tables(&fs::read_to_string(dir.join("save.txt")).expect("save"));
    let filter = |t: &BTreeMap<String, String>| t.get("filter").map(|s| without_counters(s));
    assert_eq!(filter(&got), filter(&want));
}

#[test]
fn check_passes_good_files_and_locates_errors() {
    for (input, _, _) in cases() {
        let out = run(&["check", input.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.rules");
    fs::write(&bad, "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.300 -j DROP\nCOMMIT\n")
        .expect("write");
    let out = run(&["check", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.rules:4:13"), "{err}");
    assert!(err.contains("10.0.0.300"), "{err}");
    // A missing COMMIT, a CRLF file and an unterminated quote: each a located error.
    for (text, at) in [
        ("*filter\n-A INPUT -j ACCEPT\n", ":3:1"),
        ("*filter\r\n-A INPUT -j ACCEPT\r\nCOMMIT\r\n", ":1:8"),
        ("*filter\n-A INPUT -m comment --comment \"oops -j ACCEPT\nCOMMIT\n", ":2:31"),
    ] {
        fs::write(&bad, text).expect("write");
        let out = run(&["check", bad.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1), "{text:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(at), "{text:?}: {err}");
    }
    // Validation errors name the rule's line.
    fs::write(&bad, "*filter\n:INPUT DROP [0:0]\n-A INPUT -j NOWHERE\nCOMMIT\n").expect("write");
    let out = run(&["check", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":3"));
}

/// An open filter block of at least `bytes` bytes: chain SVC with one rule a line, after
/// `head`. Returns the text and the number of rules.
fn svc_rules(head: &str, bytes: usize) -> (String, usize) {
    let mut text = format!("{head}*filter\n:INPUT DROP [0:0]\n:SVC - [0:0]\n");
    let mut n = 0;
    while text.len() < bytes {
        n += 1;
        text.push_str(&format!(
            "-A SVC -s 198.18.{}.{}/32 -m comment --comment \"svc {n}\" -j ACCEPT\n",
            n / 250 % 250,
            n % 250
        ));
    }
    (text, n)
}

/// Files of a megabyte and more are mapped, not read (`cmd/mapped.rs`): the verdicts and
/// the located diagnostics are the same as for a small file.
#[test]
fn check_of_large_mapped_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("large.rules");
    let (text, n) = svc_rules("# a comment line\n", 3 << 20);
    let good = format!("{text}-A INPUT -j SVC\nCOMMIT\n");
    fs::write(&path, &good).expect("write");
    let out = run(&["check", path.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("ok (iptables-save, {} rules in 1 tables)", n + 1)), "{said}");

    // A bad address on the last rule line: the full parse locates it.
    let bad_line = text.lines().count() + 1;
    fs::write(&path, format!("{text}-A INPUT -s 10.0.0.300 -j SVC\nCOMMIT\n")).expect("write");
    let out = run(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("large.rules:{bad_line}:13")), "{err}");

    // A jump to a chain nobody declared: a validation error at its line.
    fs::write(&path, format!("{text}-A INPUT -j NOWHERE\nCOMMIT\n")).expect("write");
    let out = run(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!(":{bad_line}")) && err.contains("NOWHERE"), "{err}");

    // Bytes that are not UTF-8, deep in the file: refused with a clear error, no panic.
    let mut bytes = good.into_bytes();
    let at = bytes.len() - 40;
    bytes[at] = 0xff;
    fs::write(&path, &bytes).expect("write");
    let out = run(&["check", path.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UTF-8") && err.contains("large.rules"), "{err}");
}

/// A mapped file truncated by another process while `check` reads it: the access past
/// the new end faults (`SIGBUS`), and the handler turns it into a message and exit 1,
/// never a death by signal. The truncation is timed at several points of the run; at
/// least one of them lands while the file is mapped.
#[test]
fn check_survives_a_file_truncated_while_mapped() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shrinking.rules");
    let (mut text, _) = svc_rules("", 48 << 20);
    text.push_str("COMMIT\n");
    let mut hits = 0;
    for delay_ms in [10, 20, 40, 60, 80] {
        fs::write(&path, &text).expect("write");
        let child = Command::new(BIN)
            .args(["check", path.to_str().expect("utf-8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("portcullis runs");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        fs::File::options().write(true).open(&path).expect("open").set_len(0).expect("truncate");
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), None, "killed by a signal after {delay_ms} ms: {err}");
        if err.contains("could not be read while mapped") {
            assert_eq!(out.status.code(), Some(1));
            hits += 1;
        }
    }
    assert!(hits > 0, "no truncation landed while the file was mapped");
}
