//! The netlink reader of iptables-nft rulesets (`portcullis_apply::nft_save`) against
//! the real `iptables-nft-save`, in throwaway namespaces: where it decodes, it prints what
//! the tool prints byte for byte; where it does not, it says so (and the applier asks the
//! tool), never something else.
#![allow(clippy::print_stderr, reason = "tests print notes on stderr")]

use std::path::{Path, PathBuf};

use portcullis_apply::{Counters, NftReadError, Target, nft_list_chains, nft_save};
use portcullis_netns::{Netns, can_run_or_skip};
use portcullis_rules::{Backend, Family, TableName};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join(name)
}

fn target(ns: &Netns) -> Target {
    let mut t = Target::new(Some(ns.name()), Family::V4, Backend::Nft);
    t.lockfile = Some(ns.lockfile().to_path_buf());
    t
}

/// Loads `file` with the real iptables-nft-restore into `ns`.
fn load(ns: &Netns, file: &Path) {
    let input = std::fs::File::open(file).expect("rules file");
    let out = ns
        .command("iptables-nft-restore")
        .args(["-w", "5"])
        .stdin(input)
        .output()
        .expect("iptables-nft-restore runs");
    assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

/// What the tool prints, without its `#` lines.
fn tool(t: &Target, table: Option<TableName>) -> String {
    let text = t.save(table, Counters::Drop).expect("iptables-nft-save runs");
    text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect()
}

/// Whether the host's iptables-nft is the version the decoder was written against
/// (1.8.9, Debian 12): there every case must decode. Another version may write other
/// expressions; there the reader may decline, but what it decodes must still be exact.
fn known_version() -> bool {
    #[allow(clippy::disallowed_methods, reason = "asks the host's iptables for its version")]
    let out = std::process::Command::new("iptables-nft").arg("-V").output();
    let known = out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("v1.8.9 "));
    if !known {
        eprintln!("iptables-nft is not 1.8.9: the reader may decline what it cannot decode");
    }
    known
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}:\n  tool:   {x}\n  reader: {y}", i + 1);
        }
    }
    format!("lengths {} and {} lines", a.lines().count(), b.lines().count())
}

#[test]
fn decoder_cases_print_what_iptables_nft_save_prints() {
    if !can_run_or_skip("decoder_cases_print_what_iptables_nft_save_prints", &["iptables-nft-save"])
    {
        return;
    }
    let ns = Netns::create("nftread").expect("namespace");
    load(&ns, &data("nft_read/decoder_cases.rules"));
    let t = target(&ns);
    let want = tool(&t, None);
    let got = match nft_save(Some(ns.name()), Family::V4, None, Counters::Drop) {
        Err(NftReadError::Unsupported(why)) if !known_version() => {
            eprintln!("declined: {why}");
            return;
        }
        other => other.expect("every case decodes"),
    };
    assert_eq!(got, want, "{}", first_difference(&want, &got));
    assert_eq!(want.lines().filter(|l| l.starts_with("-A ")).count(), 53, "{want}");
    for table in [TableName::Filter, TableName::Nat, TableName::Mangle, TableName::Raw] {
        let want = tool(&t, Some(table));
        let got =
            nft_save(Some(ns.name()), Family::V4, Some(&[table]), Counters::Drop).expect("decodes");
        assert_eq!(got, want, "{table:?}: {}", first_difference(&want, &got));
    }
    // With counters (`-c`), after traffic through lo so that some are not zero.
    ns.run("ip", &["link", "set", "lo", "up"]).expect("lo up");
    // Answered or not (nat OUTPUT sends it elsewhere), it passes the rules.
    let _ = ns.command("ping").args(["-c", "3", "-i", "0.2", "-W", "1", "127.0.0.1"]).output();
    let want = t.save(None, Counters::Keep).expect("iptables-nft-save -c runs");
    let want: String =
        want.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert!(want.lines().any(|l| l.starts_with('[') && !l.starts_with("[0:0]")), "{want}");
    let got = nft_save(Some(ns.name()), Family::V4, None, Counters::Keep).expect("decodes");
    assert_eq!(got, want, "with counters: {}", first_difference(&want, &got));
    // A table the namespace does not have is absent, as with the tool.
    let got = nft_save(Some(ns.name()), Family::V4, Some(&[TableName::Security]), Counters::Drop)
        .expect("reads");
    assert_eq!(got, "");
    // Chain by chain, as `iptables -S CHAIN` prints them; a missing chain is None.
    let names: Vec<String> = ["INPUT", "zz", "aa", "FORWARD", "nosuch"].map(String::from).into();
    let specs =
        nft_list_chains(Some(ns.name()), Family::V4, TableName::Filter, &names).expect("decodes");
    for (name, got) in names.iter().zip(&specs) {
        let out = ns.command("iptables-nft").args(["-w", "5", "-S", name]).output().expect("runs");
        if name == "nosuch" {
            assert!(!out.status.success());
            assert_eq!(got, &None);
        } else {
            assert_eq!(
                got.as_deref(),
                Some(String::from_utf8_lossy(&out.stdout).as_ref()),
                "{name}"
            );
        }
    }
    let nat =
        nft_list_chains(Some(ns.name()), Family::V4, TableName::Nat, &names[..1]).expect("decodes");
    assert_eq!(nat[0].as_deref(), Some("-P INPUT ACCEPT\n"));
}

#[test]
fn what_it_does_not_decode_it_leaves_to_the_tool() {
    if !can_run_or_skip("what_it_does_not_decode_it_leaves_to_the_tool", &["iptables-nft-save"]) {
        return;
    }
    let cases = std::fs::read_to_string(data("nft_read/left_to_the_tool.rules")).expect("reads");
    let (head, rest) = cases.split_once("-A ").expect("rules");
    for rule in rest.split("-A ").map(|r| format!("-A {}", r.trim_end_matches("COMMIT\n"))) {
        let ns = Netns::create("nftread").expect("namespace");
        let file = std::env::temp_dir().join(format!("{}.rules", ns.name()));
        std::fs::write(&file, format!("{head}{rule}COMMIT\n")).expect("writes");
        load(&ns, &file);
        let _ = std::fs::remove_file(&file);
        match nft_save(Some(ns.name()), Family::V4, None, Counters::Drop) {
            Err(NftReadError::Unsupported(why)) => eprintln!("{}: {why}", rule.trim()),
            other => panic!("{}: expected Unsupported, got {other:?}", rule.trim()),
        }
    }
}

#[test]
fn every_v4_fixture_decodes_exactly_or_not_at_all() {
    if !can_run_or_skip("every_v4_fixture_decodes_exactly_or_not_at_all", &["iptables-nft-save"]) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("../portcullis-syntax/test_data/baseline"), root.join("test_data")] {
        for e in std::fs::read_dir(&dir).expect("fixture dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "rules") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let (mut exact, mut left) = (Vec::new(), Vec::new());
    for f in &files {
        let text = std::fs::read_to_string(f).expect("reads");
        if text.contains(":INPUT") && text.contains("::") {
            continue; // an IPv6 file
        }
        let ns = Netns::create("nftread").expect("namespace");
        load(&ns, f);
        let want = tool(&target(&ns), None);
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        match nft_save(Some(ns.name()), Family::V4, None, Counters::Drop) {
            Ok(got) => {
                assert_eq!(got, want, "{name}: {}", first_difference(&want, &got));
                exact.push(name);
            }
            Err(NftReadError::Unsupported(why)) => left.push(format!("{name}: {why}")),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    eprintln!("decoded exactly: {exact:?}\nleft to iptables-nft-save: {left:#?}");
    if !known_version() {
        return;
    }
    assert!(exact.iter().any(|n| n.contains("kube")), "the kube-proxy fixture decodes: {left:?}");
    assert!(exact.len() >= 3, "decoded: {exact:?}, left: {left:?}");
}

/// The applier reads back over netlink when every rule decodes, through the tool when
/// one does not, and finds no drift either way.
#[test]
fn apply_reads_back_over_netlink_where_it_can() {
    if !can_run_or_skip("apply_reads_back_over_netlink_where_it_can", &["iptables-nft-restore"]) {
        return;
    }
    let mut opts = portcullis_apply::ApplyOptions::from_env();
    opts.ssh_connection = None;
    opts.force = true;
    let known = known_version();
    for (file, label) in [
        ("0101_kube_small.rules", "read back (netlink)"),
        ("nft_read/left_to_the_tool.rules", "read back (iptables-save)"),
    ] {
        let ns = Netns::create("nftread").expect("namespace");
        let text = std::fs::read_to_string(data(file)).expect("reads");
        let rs = portcullis_syntax::parse_save(&text).expect("parses");
        let applied = portcullis_apply::apply(&rs, &target(&ns), &opts).expect("applies");
        portcullis_apply::forget_namespace(Some(ns.name()));
        assert!(applied.drift.is_empty(), "{file}: {:?}", applied.drift);
        let steps: Vec<&str> = applied.timings.iter().map(|(s, _)| *s).collect();
        let read_back = |s: &&str| s.starts_with("read back (");
        assert!(
            steps.contains(&label) || !known && steps.iter().any(read_back),
            "{file}: {steps:?}"
        );
    }
}
