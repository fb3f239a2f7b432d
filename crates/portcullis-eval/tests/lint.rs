//! Acceptance 3 of issue 6: a fixture per finding code with its exact diagnostics
//! (`test_data/lint/*.expect`, refreshed with `UPDATE_EXPECT=1`), the seed article's
//! ruleset gets the loopback and ESTABLISHED findings, and its fixed version is clean.

use std::path::{Path, PathBuf};

use expect_test::expect_file;
use portcullis_eval::{
    CODES, Finding, LintOptions, lint, lint_text, locate_policies, render_findings,
};
use portcullis_rules::Family;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/lint")
}

/// What `portcullis lint` reports for `text`: CRLF first, then the lint of the text read
/// without carriage returns.
fn findings(text: &str) -> Vec<Finding> {
    let mut out = lint_text(text, Family::V4);
    let input =
        portcullis_syntax::read_rulesets(&text.replace("\r\n", "\n")).expect("fixture parses");
    out.extend(lint(&input.rulesets, &LintOptions::ssh()));
    locate_policies(&mut out, text);
    out
}

fn codes(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.code).collect()
}

#[test]
fn a_fixture_per_code_with_exact_diagnostics() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("test_data/lint")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules" || e == "sh"))
        .collect();
    files.sort();
    let mut covered = Vec::new();
    for f in &files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).expect("read");
        let found = findings(&text);
        if let Some(code) = name.split('_').next().filter(|c| c.starts_with("PCL")) {
            assert!(codes(&found).contains(&code), "{name}: no {code} in {:?}", codes(&found));
            covered.push(code.to_owned());
        }
        expect_file![f.with_extension("expect")].assert_eq(&render_findings(&found, &name, &text));
    }
    for (code, ..) in CODES {
        assert!(covered.iter().any(|c| c == code), "no fixture for {code}");
    }
}

#[test]
fn the_seed_article_locks_out_loopback_and_replies_and_its_fix_is_clean() {
    let seed = std::fs::read_to_string(dir().join("seed.sh")).expect("seed");
    let found = codes(&findings(&seed));
    assert!(found.contains(&"PCL001"), "{found:?}");
    assert!(found.contains(&"PCL002"), "{found:?}");
    assert!(!found.contains(&"PCL003"), "the seed keeps ssh open: {found:?}");
    let fixed = std::fs::read_to_string(dir().join("seed_fixed.sh")).expect("fixed seed");
    assert_eq!(codes(&findings(&fixed)), Vec::<&str>::new());
}

#[test]
fn admin_port_and_source_are_checked() {
    let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n\
                -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
                -A INPUT -s 10.0.0.0/8 -p tcp --dport 2222 -j ACCEPT\nCOMMIT\n";
    let rs = portcullis_syntax::read_rulesets(text).expect("parses").rulesets;
    let ssh = codes(&lint(&rs, &LintOptions::ssh()));
    assert!(ssh.contains(&"PCL003"), "port 22 is closed: {ssh:?}");
    let opts =
        LintOptions { admin_ports: vec![2222], admin_src: Some("10.1.2.3".parse().expect("ip")) };
    assert!(!codes(&lint(&rs, &opts)).contains(&"PCL003"));
    let outside =
        LintOptions { admin_ports: vec![2222], admin_src: Some("192.0.2.1".parse().expect("ip")) };
    assert!(codes(&lint(&rs, &outside)).contains(&"PCL003"));
}
