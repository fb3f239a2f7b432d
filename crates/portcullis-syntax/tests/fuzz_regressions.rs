//! Replays every committed fuzz input (`test_data/fuzzed/<target>/*`: crashes the fuzz
//! targets found, each fixed at its root) through every fuzz check, so `cargo test` keeps
//! them fixed without libFuzzer. The checks are the fuzz targets' own
//! (`fuzz/checks.rs`); `cargo xtask fuzz` runs the targets themselves (docs/fuzzing.md).

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_fuzzed_input_passes_every_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzzed");
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    files.sort();
    assert!(files.len() >= 10, "the committed crash inputs are missing from {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("a readable input");
        for (name, check) in checks::ALL {
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(format!("{name} on {}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "fuzz checks failed:\n{}", failures.join("\n"));
}

/// Each committed input still exercises the reader it crashed: it parses far enough to
/// reach the fixed code (a regression file that no longer parses at all would test nothing).
#[test]
fn fixed_inputs_are_refused_or_round_trip() {
    use portcullis_rules::Family;
    use portcullis_syntax::{parse_listing, parse_rule_line};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzzed");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("a committed input");
    // `-j-x` is refused like `-j -x`.
    assert!(parse_rule_line(&read("rule_line/glued-dash-target"), Family::V4).is_err());
    // A match name with spaces is refused (iptables cannot load it).
    assert!(parse_rule_line(&read("rule_line/match-name-trailing-space"), Family::V4).is_err());
    // A rule jumping to chains named `Chain`, `#` or `#x` stays a rule line.
    for (file, target) in [
        ("listing/rule-to-chain-named-Chain", "Chain"),
        ("listing/rule-to-chain-named-hash", "#"),
        ("listing/rule-to-chain-named-hash-x", "#ocker0"),
    ] {
        let listing = parse_listing(&read(file)).expect("the listing parses");
        let printed = listing.to_text();
        let again = parse_listing(&printed).expect("the printed listing parses");
        assert_eq!(again.to_text(), printed, "{file}");
        let targets: Vec<&str> =
            again.chains.iter().flat_map(|c| &c.rules).map(|r| r.target.as_str()).collect();
        assert!(targets.contains(&target), "{file}: {targets:?}");
    }
}
