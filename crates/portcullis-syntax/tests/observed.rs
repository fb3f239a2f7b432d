//! Canonicalisation and validation against rules observed with real iptables 1.8.9, both
//! backends (`test_data/observed/`): every accepted rule must canonicalise to what that
//! backend saved and pass validation; every refused rule must be refused by the parser or
//! by validation (a few backend differences are listed below). Whole restore files
//! (`test_data/observed/restore/`) check the ruleset-level rules: jumps, loops, hooks of
//! user chains, policies.

#![allow(clippy::print_stderr, reason = "the tests report their counts and every mismatch")]

use std::fs;
use std::path::Path;

use portcullis_rules::{
    Backend, CanonOptions, Chain, ChainName, Family, Ruleset, TableName, canonicalize_rule,
    validate,
};
use portcullis_syntax::{parse_rule_line, parse_save, render_rule};

/// Rules the nft backend accepts although legacy and the kernel checks portcullis models
/// refuse them; portcullis follows legacy.
const NFT_ACCEPTS: &[&str] =
    &["! -p tcp -m tcp --dport 1", "-m limit --limit 1/sec --limit-burst 0"];

/// Rules the nft backend refuses and legacy accepts; portcullis follows legacy.
const NFT_REFUSES: &[&str] = &["! -s 1.2.3.4/0"];

/// Known differences outside `portcullis-rules`, with the reason.
const KNOWN: &[(&str, &str)] = &[
    // recent's save() prints the name without quotes; the renderer quotes it.
    ("-m recent --name \"a b\" --set", "renderer quotes a name with a space"),
    // iptables refuses a second -i/-p; the parser keeps the last one.
    ("-i eth+ ! -i lo", "parser accepts a repeated -i"),
    ("-p tcp -p udp", "parser accepts a repeated -p"),
    // iptables hands the last --mark to the mark match, which then has it twice.
    (
        "-m connmark --mark 1 -m mark --mark 2 -m connmark --mark 3",
        "iptables dispatches an option to another match that knows its name",
    ),
];

fn refusal(table: TableName, text: &str, family: Family) -> Option<String> {
    let (chain, rule) = match parse_rule_line(text, family) {
        Ok(x) => x,
        Err(e) => return Some(format!("parser: {e}")),
    };
    let mut rs = Ruleset::new(family);
    let t = rs.table_or_default(table);
    if !t.has_chain(&chain) {
        t.chains.push(Chain::user(ChainName::new(&chain).ok()?));
    }
    t.chain_mut(&chain)?.rules.push(rule);
    validate(&rs).first().map(|e| format!("validate: {e}"))
}

#[test]
fn observed_rules() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/observed/iptables-1.8.9.txt");
    let text = fs::read_to_string(path).expect("observed rules");
    let (mut checked, mut failures, mut known) = (0, Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(';').collect();
        let [table, chain, fam, rule, nft, legacy] = f.as_slice() else {
            panic!("line {}: malformed", i + 1);
        };
        let table: TableName = table.parse().expect("table");
        let family = if *fam == "6" { Family::V6 } else { Family::V4 };
        let input = format!("-A {chain} {rule}");
        if let Some((_, why)) = KNOWN.iter().find(|(r, _)| r == rule) {
            known.push(format!("{}: {rule}: {why}", i + 1));
            continue;
        }
        for (backend, saved) in [(Backend::Nft, nft), (Backend::Legacy, legacy)] {
            checked += 1;
            if backend == Backend::Nft && NFT_REFUSES.contains(rule) {
                continue;
            }
            let refused = refusal(table, &input, family);
            if *saved == "FAIL" {
                if refused.is_none() {
                    failures.push(format!("{}: {backend:?}: accepted: {input}", i + 1));
                }
                continue;
            }
            if let Some(why) = refused {
                if !(backend == Backend::Nft && NFT_ACCEPTS.contains(rule)) {
                    failures.push(format!("{}: {backend:?}: refused ({why}): {input}", i + 1));
                }
                continue;
            }
            let Ok((ch, r)) = parse_rule_line(&input, family) else { continue };
            let opts = CanonOptions { backend, family: Some(family) };
            let got = render_rule(&ch, &canonicalize_rule(&r, opts));
            let want = if saved.is_empty() {
                format!("-A {chain}")
            } else {
                format!("-A {chain} {saved}")
            };
            if got != want {
                failures.push(format!(
                    "{}: {backend:?}\n  in   {input}\n  want {want}\n  got  {got}",
                    i + 1
                ));
            }
            // What iptables saved is canonical: canonicalising it changes nothing.
            if let Ok((ch, r)) = parse_rule_line(&want, family) {
                let again = render_rule(&ch, &canonicalize_rule(&r, opts));
                if again != want {
                    failures.push(format!(
                        "{}: {backend:?}: saved form not a fixed point\n  want {want}\n  got  {again}",
                        i + 1
                    ));
                }
            }
        }
    }
    eprintln!("observed: {}/{checked} rule×backend cases agree", checked - failures.len());
    for k in &known {
        eprintln!("  known difference, not checked: {k}");
    }
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(failures.is_empty(), "{} disagreements with real iptables", failures.len());
}

/// Restore files that one backend accepts and the other refuses; either outcome is taken.
/// (`:X DROP` for a user chain: nft ignores the policy, legacy refuses it; the parser
/// follows nft and drops it.)
const RESTORE_NFT_ONLY: &[&str] = &["4-filter-user-policy.rules"];

#[test]
fn observed_restore_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/observed/restore");
    let index = fs::read_to_string(dir.join("EXPECTED.txt")).expect("EXPECTED.txt");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in index.lines() {
        let [name, nft, legacy] = line.split(';').collect::<Vec<_>>()[..] else {
            panic!("malformed EXPECTED.txt line {line}");
        };
        n += 1;
        let text = fs::read_to_string(dir.join(name)).expect("restore file");
        let refused = match parse_save(&text) {
            Err(e) => Some(format!("parser: {e}")),
            Ok(mut rs) => {
                if name.starts_with("6-") {
                    rs.family = Family::V6;
                }
                validate(&rs).first().map(ToString::to_string)
            }
        };
        let want_refused = legacy == "FAIL";
        if nft != legacy {
            if !RESTORE_NFT_ONLY.contains(&name) {
                failures.push(format!("{name}: backends differ ({nft}/{legacy}) but not listed"));
            }
            continue;
        }
        match (&refused, want_refused) {
            (Some(why), false) => failures.push(format!("{name}: refused: {why}")),
            (None, true) => failures.push(format!("{name}: accepted, iptables refuses it")),
            _ => {}
        }
    }
    eprintln!("observed restore files: {}/{n} agree", n - failures.len());
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(failures.is_empty());
}

/// The baseline fixtures (`test_data/baseline/*.rules`) were all loaded by real iptables
/// on both backends, so they must validate.
#[test]
fn baseline_fixtures_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/baseline");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("baseline dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    files.sort();
    let mut errors = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let text = fs::read_to_string(path).expect("fixture");
        let family = if name.contains("_v6") { Family::V6 } else { Family::V4 };
        match portcullis_syntax::parse_save_as(&text, family) {
            Ok(rs) => errors.extend(validate(&rs).iter().map(|e| format!("{name}: {e}"))),
            Err(e) => errors.push(format!("{name}: parse error {e}")),
        }
    }
    eprintln!("baseline fixtures: {} files, {} validation errors", files.len(), errors.len());
    for e in &errors {
        eprintln!("  {e}");
    }
    assert!(errors.is_empty());
}

/// Parser differences from iptables found by the observed rules (now fixed).
#[test]
fn parser_implicit_match_after_other_module() {
    let (_, r) =
        parse_rule_line("-A INPUT -p udp -m length --length 0:100 --dport 161", Family::V4)
            .expect("parses");
    let names: Vec<&str> = r.matches.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["length", "udp"]);
}

#[test]
fn parser_refuses_repeated_base_options() {
    assert!(parse_rule_line("-A INPUT -i eth+ ! -i lo", Family::V4).is_err());
    assert!(parse_rule_line("-A INPUT -p tcp -p udp", Family::V4).is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const TOKENS: &[&str] = &[
        "-p",
        "tcp",
        "udp",
        "icmp",
        "6",
        "!",
        "-m",
        "tcp",
        "udp",
        "multiport",
        "conntrack",
        "state",
        "limit",
        "comment",
        "recent",
        "mark",
        "owner",
        "time",
        "u32",
        "hashlimit",
        "string",
        "--dport",
        "--sport",
        "--dports",
        "--ctstate",
        "--state",
        "--limit",
        "--comment",
        "--set",
        "--name",
        "--mark",
        "--uid-owner",
        "--weekdays",
        "--u32",
        "--hashlimit-upto",
        "--hashlimit-name",
        "--string",
        "--algo",
        "22",
        "1:2",
        ":",
        "0x10",
        "NEW,ESTABLISHED",
        "5/min",
        "x",
        "Mon",
        "bm",
        "-j",
        "ACCEPT",
        "REJECT",
        "LOG",
        "MARK",
        "DNAT",
        "--reject-with",
        "--log-prefix",
        "--set-mark",
        "--to-destination",
        "1.2.3.4:80",
        "-s",
        "10.0.0.0/8",
        "-i",
        "eth0",
        "-g",
        "X",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Whatever the parser accepts, canonicalisation and validation take without
        /// panicking, and canonicalisation is idempotent.
        #[test]
        fn parsed_rules_canonicalise_and_validate(
            prefix in prop::sample::select(&["", "-p tcp ", "-p udp -m udp ", "-p tcp -m conntrack "][..]),
            toks in prop::collection::vec(prop::sample::select(TOKENS), 0..14),
            v6 in any::<bool>(),
        ) {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let line = format!("-A INPUT {prefix}{}", toks.join(" "));
            if let Ok((chain, rule)) = parse_rule_line(&line, family) {
                for backend in [Backend::Nft, Backend::Legacy] {
                    let opts = CanonOptions { backend, family: Some(family) };
                    let once = canonicalize_rule(&rule, opts);
                    prop_assert_eq!(&canonicalize_rule(&once, opts), &once);
                    let text = render_rule(&chain, &once);
                    if let Ok((_, back)) = parse_rule_line(&text, family) {
                        prop_assert_eq!(render_rule(&chain, &canonicalize_rule(&back, opts)), text);
                    }
                }
                let mut rs = Ruleset::new(family);
                if let Some(c) = rs.table_or_default(TableName::Filter).chain_mut(&chain) {
                    c.rules.push(rule);
                }
                let _ = validate(&rs);
            }
        }
    }
}
