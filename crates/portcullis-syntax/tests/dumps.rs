//! Acceptance 3 of issue 2: every whole dump and extracted block of the upstream corpus
//! that is iptables/ip6tables save or restore text parses, and save-format dumps render
//! back identically once `#` lines are dropped.
#![allow(clippy::print_stderr, reason = "the test prints the corpus counts")]

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_rules::{Family, TableName};
use portcullis_syntax::{
    SaveOptions, parse_rules_spec, parse_save, render_rules_spec, render_save,
};

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join(dir)
}

fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Dumps that are exact canonical save output once `#` lines are removed.
const EXACT: &[&str] = &[
    "ipt-save__ipt-save-filter.txt",
    "ipt-save__policy-drop.txt",
    "ipt-save__wireless.txt",
    "ipt-save__fedora27-iptables",
    "ipt-save__fedora27-ip6tables",
    "ipt-restore__iptables.dump",
    "ipt-restore__ip6tables.dump",
    "firewalld-restore__ipt-save-completed.txt",
    "nft-only__0010-iptables-nft-save.txt",
];

#[test]
fn whole_dumps_round_trip() {
    let mut checked = 0;
    for name in EXACT {
        let path = data("upstream/dumps").join(name);
        let text = fs::read_to_string(&path).expect("dump is readable");
        let rs = parse_save(&text).unwrap_or_else(|e| panic!("{name}: {}", e.render(name)));
        let counters = text.lines().any(|l| l.starts_with('['));
        let out = render_save(&rs, SaveOptions { counters });
        let want = without_comments(&text);
        if out != want {
            let diff: Vec<_> =
                want.lines().zip(out.lines()).filter(|(a, b)| a != b).take(5).collect();
            panic!("{name}: rendering differs; first differing lines (want, got): {diff:#?}");
        }
        checked += 1;
    }
    eprintln!("whole dumps: {checked}/{} round-trip byte for byte", EXACT.len());
    assert_eq!(checked, EXACT.len());
}

/// Blocks that are not complete iptables text on their own, or that upstream feeds to
/// iptables-restore precisely to see it fail; each must fail here too, with this error.
const MUST_FAIL: &[(&str, &str)] = &[
    // The script appends more lines and COMMIT to this prefix before using it.
    ("ipt-restore__0016-concurrent-restores_0.01.txt", "COMMIT expected"),
    // The expected output is cut at a shell expansion inside the comment.
    ("iptables__0007-zero-counters_0.02.txt", "COMMIT expected"),
    // Upstream checks that restore fails on a table left open.
    ("nft-only__0007-mid-restore-flush_0.01.txt", "COMMIT expected"),
    // Upstream checks that malformed chain-line counters are refused.
    ("ipt-restore__0008-restore-counters_0.01.txt", "bad counters"),
    // Grep'ed lines of a dump, not a whole dump.
    ("ipt-restore__0008-restore-counters_0.03.txt", "bad argument `:foo'"),
    ("ipt-restore__0008-restore-counters_0.04.txt", "bad argument `:foo'"),
    // Upstream checks that `-t` inside a table block is refused.
    ("ipt-restore__0009-table-name-comment_0.01.txt", "`-t' is not allowed"),
];

#[test]
fn extracted_blocks_parse() {
    let index = fs::read_to_string(data("upstream/extracted").join("INDEX.tsv")).expect("index");
    let (mut parsed, mut rendered, mut expects, mut total, mut skipped, mut refused) =
        (0, 0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for row in index.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, kind, note) = (cols[0], cols[3], cols.get(4).copied().unwrap_or(""));
        if file.starts_with("ebtables") || file.starts_with("arptables") {
            continue;
        }
        if note == "has-shell-expansion" {
            skipped += 1;
            continue;
        }
        total += 1;
        let text = fs::read_to_string(data("upstream/extracted").join(file)).expect("block");
        let family = if file.starts_with("ip6tables") || text.contains("ip6") {
            Family::V6
        } else {
            Family::V4
        };
        let is_save = text.lines().any(|l| l.starts_with('*'));
        let is_expect = kind.starts_with("var:EXPECT");
        let result = if is_save && is_expect {
            portcullis_syntax::parse_save_as(&text, family).map(|rs| {
                let counters = text.lines().any(|l| l.starts_with('['));
                Some(render_save(&rs, SaveOptions { counters }))
            })
        } else if is_save {
            // Restore input, possibly for --noflush: its commands may name kernel chains.
            portcullis_syntax::parse_restore(&text, family).map(|_| None)
        } else {
            parse_rules_spec(&text, TableName::Filter, family).map(|rs| {
                let verbose = text.contains(" -c ");
                Some(render_rules_spec(&rs.tables[0], verbose))
            })
        };
        let must_fail = MUST_FAIL.iter().find(|(f, _)| *f == file);
        match (result, must_fail) {
            (Ok(out), None) => {
                parsed += 1;
                if is_expect {
                    expects += 1;
                    let want = without_comments(&text);
                    // `-S CHAIN` excerpts that upstream greps down to the rule lines.
                    let rules_only = !is_save
                        && !want.lines().any(|l| l.starts_with("-P") || l.starts_with("-N"));
                    let out = out.map(|o| {
                        if rules_only {
                            o.lines()
                                .filter(|l| l.starts_with("-A"))
                                .map(|l| format!("{l}\n"))
                                .collect()
                        } else {
                            o
                        }
                    });
                    if out.as_deref() == Some(want.as_str()) {
                        rendered += 1;
                    } else {
                        failures.push(format!(
                            "{file}: renders differently:\n{}",
                            out.unwrap_or_default()
                        ));
                    }
                }
            }
            (Err(e), Some((_, want))) if e.to_string().contains(want) => refused += 1,
            (Err(e), _) => failures.push(format!("{file}: {}", e.render(file))),
            (Ok(_), Some((_, want))) => {
                failures.push(format!("{file}: parsed, but must fail with {want}"))
            }
        }
    }
    eprintln!(
        "extracted blocks: {parsed}/{total} parse, {refused} refused as upstream expects, \
         {skipped} skipped for shell expansion; {rendered}/{expects} expected outputs render \
         back byte for byte"
    );
    assert!(failures.is_empty(), "{} blocks fail:\n{}", failures.len(), failures.join("\n"));
}
