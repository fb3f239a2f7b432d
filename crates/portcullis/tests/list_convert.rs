//! `portcullis list` and `portcullis convert` (issue 4, CLI): listings of files in any
//! format, of a live namespace with real iptables, and conversions between the formats.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn baseline(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis-syntax/test_data/baseline").join(rel)
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = bin();
    c.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("portcullis runs");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    }
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

const CAPTURE: &str = "0005_kitchen_sink/iptables-1.8.9-nft";

#[test]
fn list_of_a_save_file_equals_real_iptables() {
    let save = baseline(CAPTURE).join("save-c.txt");
    let save = save.to_str().expect("path");
    for (args, file) in [
        (&[][..], "L.filter.txt"),
        (&["-v", "-x"], "L.filter.v.x.txt"),
        (&["-v", "--line-numbers"], "L.filter.v.line-numbers.txt"),
        (&["-t", "nat", "-v"], "L.nat.v.txt"),
        (&["INPUT"], "L.filter.INPUT.txt"),
        (&["-t", "nat", "PREROUTING", "4", "-v", "-x"], "L.nat.PREROUTING.4.v.x.txt"),
    ] {
        let mut all = vec!["list", save];
        all.extend_from_slice(args);
        let want = fs::read_to_string(baseline(CAPTURE).join(file)).expect("capture");
        assert_eq!(stdout(&run(&all, None)), want, "{args:?}");
    }
}

#[test]
fn list_of_an_unknown_chain_fails_like_iptables() {
    let save = baseline(CAPTURE).join("save-c.txt");
    let o = run(&["list", save.to_str().expect("path"), "NO_SUCH_CHAIN"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No chain/target/match by that name"));
}

#[test]
fn convert_between_all_formats() {
    let fixture = fs::read_to_string(baseline("0002_web_mail_dns.rules")).expect("fixture");
    // restore input -> JSON -> listing equals the listing of the canonical save capture.
    let json = stdout(&run(&["convert", "--to", "json"], Some(&fixture)));
    assert!(json.contains("\"format\": \"portcullis-ruleset\""));
    let listed = stdout(&run(&["convert", "--to", "listing", "-v", "-x"], Some(&json)));
    let want =
        fs::read_to_string(baseline("0002_web_mail_dns/iptables-1.8.9-nft/L.filter.v.x.txt"))
            .expect("capture");
    assert_eq!(listed, want);
    // a real listing -> save: the rules come back, with a warning for what -L hides.
    let listing = fs::read_to_string(baseline("0002_web_mail_dns/iptables-1.8.9-nft/L.filter.txt"))
        .expect("capture");
    let o = run(&["convert", "--to", "save"], Some(&listing));
    let save = stdout(&o);
    assert!(save.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"), "{save}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("interfaces are not shown"));
    // -S text -> save.
    let spec = fs::read_to_string(baseline("0002_web_mail_dns/iptables-1.8.9-nft/S.filter.txt"))
        .expect("capture");
    let from_spec = stdout(&run(&["convert", "--to", "save"], Some(&spec)));
    let want = fs::read_to_string(baseline("0002_web_mail_dns/iptables-1.8.9-nft/save.txt"))
        .expect("capture");
    assert_eq!(from_spec, want);
    // save -> json -> save is the identity.
    let json = stdout(&run(&["convert", "--to", "json"], Some(&want)));
    assert_eq!(stdout(&run(&["convert", "--to", "save"], Some(&json))), want);
}

#[test]
fn bad_input_is_a_diagnostic_not_a_panic() {
    let o =
        run(&["convert", "--to", "save"], Some("Chain INPUT (policy DROP x packets, 0 bytes)\n"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error:") && err.contains("<stdin>:1:"), "{err}");
}

/// The live kernel: rules loaded with real iptables into a throwaway namespace, listed by
/// `portcullis list --netns` and by `iptables -L` there. iptables here may be 1.8.9, which
/// prints the prot column as a number under -n; the comparison normalises only that column
/// of the real output (number -> name) and says so.
#[test]
fn list_of_a_live_namespace_equals_iptables() {
    if !portcullis_netns::can_run_or_skip("list_of_a_live_namespace_equals_iptables", &["iptables"])
    {
        return;
    }
    let ns = portcullis_netns::Netns::create("list").expect("namespace");
    let fixture = fs::read(baseline("0003_nat_gateway.rules")).expect("fixture");
    let mut child = ns.command("iptables-restore").stdin(Stdio::piped()).spawn().expect("restore");
    child.stdin.take().expect("stdin").write_all(&fixture).expect("write");
    assert!(child.wait().expect("restore").success());
    for flags in [
        &["-v", "-x"][..],
        &["-t", "nat", "-v", "--line-numbers"],
        &["-n", "-v", "-x", "--line-numbers"],
    ] {
        let mut args = vec!["list", "--netns", ns.name()];
        args.extend_from_slice(flags);
        let ours = stdout(&run(&args, None));
        let mut real_args = vec!["-L"];
        real_args.extend_from_slice(flags);
        let real = ns.run("iptables", &real_args).expect("iptables -L");
        let real = if flags.contains(&"-n") { name_numeric_prot(&real) } else { real };
        assert_eq!(ours, real, "{flags:?}");
    }
}

/// iptables 1.8.9 under -n prints `0`/`6`/`17` in the prot column; 1.8.10+ prints the
/// built-in names. Rewrites that one column of rule lines (the token before `--`/`-f`).
fn name_numeric_prot(text: &str) -> String {
    let names = [("0", "all"), ("1", "icmp"), ("6", "tcp"), ("17", "udp")];
    text.split_inclusive('\n')
        .map(|line| {
            for (num, name) in names {
                for opt in ["--", "-f", "!f"] {
                    let pat = format!(" {num:<4} {opt} ");
                    if let Some(at) = line.find(&pat) {
                        let mut l = line.to_owned();
                        l.replace_range(at..at + pat.len(), &format!(" {name:<4} {opt} "));
                        return l;
                    }
                }
            }
            line.to_owned()
        })
        .collect()
}
