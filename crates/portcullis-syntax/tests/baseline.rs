//! Real baselines (issue 2, acceptance 4 and 5): for every fixture under
//! `test_data/baseline/`, what `portcullis fmt` prints equals what real iptables-save
//! printed after loading the fixture, per backend; and the seed article's command script,
//! imported with `parse_script`, gives exactly what iptables-save printed after running it.
//!
//! The captures come from `cargo xtask baseline` (iptables 1.8.9, nft and legacy, in a
//! throwaway namespace); each lives in `NNNN_name/<cmd>-<version>-<backend>/save.txt`.
//!
//! Table order is not compared: it is the kernel's (nft) or `/proc/net/ip_tables_names`
//! (legacy), not a property of the ruleset (formats.md §2.4). Tables are compared one by
//! one, line by line; a table iptables prints that the fixture never named must be empty
//! (builtin chains with policy ACCEPT and no rules: legacy prints every loaded table).

#![allow(clippy::print_stderr, reason = "the tests report what they compared and every mismatch")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use portcullis_rules::{Backend, Family, Ruleset, canonicalize};
use portcullis_syntax::{SaveOptions, parse_rules_spec, parse_save_as, parse_script, render_save};

fn baseline_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/baseline")
}

/// Fixture files with the given extension, sorted.
fn fixtures(ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(baseline_dir())
        .expect("baseline dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The captures of a fixture: (backend, directory).
fn captures(fixture: &Path) -> Vec<(Backend, PathBuf)> {
    let dir = fixture.with_extension("");
    let mut v: Vec<(Backend, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask baseline)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let backend = if name.ends_with("-nft") {
                Backend::Nft
            } else if name.ends_with("-legacy") {
                Backend::Legacy
            } else {
                return None;
            };
            Some((backend, p))
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(!v.is_empty(), "no captures for {}", fixture.display());
    v
}

fn family_of(fixture: &Path) -> Family {
    let stem = fixture.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem.ends_with("_v6") { Family::V6 } else { Family::V4 }
}

/// What `portcullis fmt --backend B` prints for a ruleset.
fn fmt(rs: &Ruleset, backend: Backend) -> String {
    let mut rs = canonicalize(rs, backend);
    for t in &mut rs.tables {
        t.complete_builtins();
        t.sort_chains();
    }
    render_save(&rs, SaveOptions::default())
}

/// Save text split into tables: name -> lines between `*name` and `COMMIT`.
fn tables(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(t) = line.strip_prefix('*') {
            current = Some(t.to_owned());
            out.entry(t.to_owned()).or_default();
        } else if line == "COMMIT" {
            current = None;
        } else if let Some(t) = &current {
            out.get_mut(t).expect("table").push(line.to_owned());
        }
    }
    out
}

/// A table iptables printed although nobody asked for it.
fn is_empty_table(lines: &[String]) -> bool {
    lines.iter().all(|l| l.starts_with(':') && l.ends_with(" ACCEPT [0:0]"))
}

#[derive(Default)]
struct Tally {
    matching: usize,
    mismatches: Vec<String>,
}

impl Tally {
    /// Compares one capture with our rendering, table by table, line by line.
    fn compare(&mut self, what: &str, want_text: &str, got_text: &str) {
        let want = tables(want_text);
        let got = tables(got_text);
        for (name, want_lines) in &want {
            let Some(got_lines) = got.get(name) else {
                if !is_empty_table(want_lines) {
                    self.mismatches.push(format!("{what}: table {name} missing from ours"));
                }
                continue;
            };
            let n = want_lines.len().max(got_lines.len());
            for i in 0..n {
                let w = want_lines.get(i).map_or("<nothing>", String::as_str);
                let g = got_lines.get(i).map_or("<nothing>", String::as_str);
                if w == g {
                    if w.starts_with("-A ") {
                        self.matching += 1;
                    }
                } else {
                    self.mismatches.push(format!("{what} *{name}\n  want {w}\n  got  {g}"));
                }
            }
        }
        for name in got.keys().filter(|n| !want.contains_key(*n)) {
            self.mismatches.push(format!("{what}: table {name} printed by us, not by iptables"));
        }
    }

    fn report(&self, title: &str) {
        if !self.mismatches.is_empty() {
            eprintln!("{title}: {} mismatches", self.mismatches.len());
            for m in &self.mismatches {
                eprintln!("{m}");
            }
        }
        eprintln!("{title}: {} rule lines identical", self.matching);
    }
}

/// Rule lines of the captures, over all fixtures and both backends (every fixture rule
/// appears once per backend). All of them must be reproduced byte for byte.
const RULE_LINES: usize = 494;

#[test]
fn fmt_equals_real_iptables_save() {
    let mut tally = Tally::default();
    let mut distinct = std::collections::BTreeSet::new();
    let mut fixtures_seen = 0;
    for fixture in fixtures("rules") {
        let name = fixture.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        let text = fs::read_to_string(&fixture).expect("fixture");
        let rs = parse_save_as(&text, family_of(&fixture))
            .unwrap_or_else(|e| panic!("{}", e.render(&name)));
        fixtures_seen += 1;
        for (backend, dir) in captures(&fixture) {
            let want = fs::read_to_string(dir.join("save.txt")).expect("save.txt");
            for line in want.lines().filter(|l| l.starts_with("-A ")) {
                distinct.insert((family_of(&fixture), line.to_owned()));
            }
            let got = fmt(&rs, backend);
            tally.compare(&format!("{name} ({backend:?})"), &want, &got);
        }
    }
    tally.report("baseline save");
    assert!(fixtures_seen >= 8, "fixtures missing");
    // Acceptance 4 of issue 2: at least 150 distinct rules over all five tables, both families.
    assert!(distinct.len() >= 150, "only {} distinct rules in the baselines", distinct.len());
    let families: std::collections::BTreeSet<_> = distinct.iter().map(|(f, _)| *f).collect();
    assert_eq!(families.len(), 2, "both families");
    assert!(tally.mismatches.is_empty(), "{} lines differ (listed above)", tally.mismatches.len());
    assert_eq!(tally.matching, RULE_LINES, "rule lines compared");
}

#[test]
fn baselines_cover_all_five_tables() {
    let mut seen = std::collections::BTreeSet::new();
    for fixture in fixtures("rules") {
        for (_, dir) in captures(&fixture) {
            let save = fs::read_to_string(dir.join("save.txt")).expect("save.txt");
            for (table, lines) in tables(&save) {
                if lines.iter().any(|l| l.starts_with("-A ")) {
                    seen.insert(table);
                }
            }
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["filter", "mangle", "nat", "raw", "security"]
    );
}

/// Acceptance 5 of issue 2: the seed article's command script, imported, prints exactly
/// what iptables-save printed after running it (both backends).
#[test]
fn seed_script_equals_real_iptables_save() {
    let scripts = fixtures("sh");
    assert!(!scripts.is_empty());
    for script in scripts {
        let name = script.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        let text = fs::read_to_string(&script).expect("script");
        let out = parse_script(&text).unwrap_or_else(|e| panic!("{}", e.render(&name)));
        for (backend, dir) in captures(&script) {
            let want = fs::read_to_string(dir.join("save.txt")).expect("save.txt");
            let got = fmt(&out.v4, backend);
            let mut tally = Tally::default();
            tally.compare(&format!("{name} ({backend:?})"), &want, &got);
            tally.report(&name);
            assert!(tally.mismatches.is_empty(), "{name} ({backend:?}) differs");
            assert!(tally.matching > 0);
        }
    }
}

/// `iptables -S` captures read back with `parse_rules_spec` to the same rules as the save
/// capture of the same table.
#[test]
fn rules_spec_captures_agree_with_save() {
    let mut checked = 0;
    for fixture in fixtures("rules") {
        let family = family_of(&fixture);
        for (_, dir) in captures(&fixture) {
            let save = fs::read_to_string(dir.join("save.txt")).expect("save.txt");
            let from_save = parse_save_as(&save, family).expect("capture parses");
            for t in &from_save.tables {
                let path = dir.join(format!("S.{}.txt", t.name));
                let text = fs::read_to_string(&path).expect("S capture");
                let spec = parse_rules_spec(&text, t.name, family)
                    .unwrap_or_else(|e| panic!("{}", e.render(&path.display().to_string())));
                let spec_table = spec.table(t.name).expect("table");
                for (a, b) in t.chains.iter().zip(&spec_table.chains) {
                    assert_eq!(a.name, b.name, "{}", path.display());
                    assert_eq!(a.rules, b.rules, "{} chain {}", path.display(), a.name);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}
