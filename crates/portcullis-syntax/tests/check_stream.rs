//! The streaming check (`validate_save`) against the model (`parse_save` then
//! `validate`): whenever the stream says valid, the model agrees, with the same counts;
//! and on plain append-only files the stream decides every valid one. Over every save
//! file of the test data, mutations of each, kube-proxy-style dumps and generated text.
#![allow(clippy::print_stderr, reason = "the test prints its counts")]

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_rules::validate;
use portcullis_syntax::{parse_save, validate_save, validate_save_bytes};

#[allow(dead_code, unused_imports, reason = "the test uses part of the generator")]
#[path = "../../../xtask/src/kube_gen.rs"]
mod kube_gen;

/// The model's verdict: `Some((tables, rules))` when valid.
fn model(text: &str) -> Option<(usize, usize)> {
    let rs = parse_save(text).ok()?;
    validate(&rs).is_empty().then(|| (rs.tables.len(), rs.rule_count()))
}

/// Whether the stream runs every line of `text` (chain lines and `-A` only, each table
/// once), so that it must decide a valid file.
fn append_only(text: &str) -> bool {
    let mut tables = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(t) = line.strip_prefix('*') {
            if tables.contains(&t) {
                return false;
            }
            tables.push(t);
        }
        let cmd = line.strip_prefix('[').and_then(|l| l.split_once("] ")).map_or(line, |(_, r)| r);
        if cmd.starts_with('-') && !cmd.starts_with("-A ") && !cmd.starts_with("--append ") {
            return false;
        }
    }
    true
}

/// Checks one text; returns whether the model found it valid.
fn agree(name: &str, text: &str) -> bool {
    let full = model(text);
    let stream = validate_save(text);
    assert_eq!(validate_save_bytes(text.as_bytes()), stream, "{name}: bytes and text disagree");
    if let Some(s) = stream {
        assert_eq!(
            full,
            Some((s.tables, s.rules)),
            "{name}: the stream says valid, the model does not"
        );
    }
    if full.is_some() && append_only(text) {
        assert!(
            stream.is_some(),
            "{name}: valid and append-only, yet the stream did not decide it"
        );
    }
    full.is_some()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Variations of a valid file that break (or keep) one rule of validity each.
fn mutations(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let with = |i: usize, new: &str| {
        let mut v: Vec<&str> = lines.clone();
        v[i] = new;
        v.join("\n") + "\n"
    };
    let insert_before_commit = |extra: &[&str]| {
        let mut v: Vec<String> = Vec::new();
        let mut done = false;
        for l in &lines {
            if *l == "COMMIT" && !done {
                v.extend(extra.iter().map(|s| (*s).to_owned()));
                done = true;
            }
            v.push((*l).to_owned());
        }
        v.join("\n") + "\n"
    };
    for (i, l) in lines.iter().enumerate().take(400) {
        if l.starts_with(':') && !l.contains(" ACCEPT ") && !l.contains(" DROP ") {
            out.push(with(i, "")); // a user chain no longer declared
        }
        if let Some(at) = l.find(" -j ") {
            let rest = &l[at + 4..];
            let end = rest.find(' ').map_or(rest.len(), |e| e);
            let changed = format!("{}-j NOWHERE{}", &l[..at + 1], &rest[end..]);
            out.push(with(i, &changed));
            out.push(with(i, &format!("{} -j DNAT --to-destination 198.18.0.1", &l[..at])));
            out.push(with(i, &format!("{} -j REJECT --reject-with tcp-reset", &l[..at])));
        }
        if l.starts_with("-A ") && out.len() < 600 {
            out.push(with(i, &l.replacen("-A ", "-A OUTPUT -i lo -A ", 1)));
            out.push(with(i, &format!("{l} -m tcp --dport 70000")));
        }
    }
    out.push(insert_before_commit(&[
        ":PCL-A - [0:0]",
        ":PCL-B - [0:0]",
        "-A PCL-A -j PCL-B",
        "-A PCL-B -j PCL-A",
        "-A INPUT -j PCL-A",
    ]));
    out.push(insert_before_commit(&[
        ":PCL-A - [0:0]",
        "-A PCL-A -j MASQUERADE",
        "-A INPUT -j PCL-A",
    ]));
    out.push(insert_before_commit(&[
        ":PCL-A - [0:0]",
        "-A PCL-A -j DNAT --to-destination 198.18.0.9",
        "-A OUTPUT -j PCL-A",
    ]));
    out.push(insert_before_commit(&[":PCL-A - [0:0]", ":PCL-A - [0:0]"]));
    out.push(insert_before_commit(&["-A PCL-NOT-DECLARED -j ACCEPT"]));
    out.push(insert_before_commit(&["-A INPUT -g INPUT"]));
    out.push(insert_before_commit(&["-A INPUT -j TARPIT"]));
    out.push(insert_before_commit(&["-A INPUT -g TARPIT"]));
    out
}

#[test]
fn stream_and_model_agree_on_the_test_data() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    for dir in ["test_data", "../portcullis-eval/test_data", "../portcullis-apply/test_data"] {
        files(&root.join(dir), &mut paths);
    }
    paths.sort();
    let (mut texts, mut valid, mut mutated, mut mutated_valid) = (0, 0, 0, 0);
    for p in &paths {
        let Ok(text) = fs::read_to_string(p) else { continue };
        if !text.lines().any(|l| l.starts_with('*')) {
            continue;
        }
        texts += 1;
        let name = p.display().to_string();
        if agree(&name, &text) {
            valid += 1;
            for (k, m) in mutations(&text).iter().enumerate() {
                mutated += 1;
                mutated_valid += usize::from(agree(&format!("{name} mutation {k}"), m));
            }
        }
    }
    eprintln!(
        "{texts} save texts ({valid} valid), {mutated} mutations ({mutated_valid} still valid): stream and model agree"
    );
    assert!(texts >= 40 && valid >= 20, "the test data is where it should be");
    assert!(mutated > 1000 && mutated_valid > 50 && mutated - mutated_valid > 500);
}

#[test]
fn stream_and_model_agree_on_kube_proxy_dumps() {
    for (services, generation) in [(1, 0), (50, 0), (300, 1), (2000, 2)] {
        let text = kube_gen::kube_ruleset(kube_gen::KubeSpec { services, generation });
        assert!(agree(&format!("kube {services}"), &text), "a generated dump is valid");
        assert!(validate_save(&text).is_some());
        // Break one rule deep inside: the stream must not say valid.
        let broken = text.replacen("-j KUBE-SEP-", "-j KUBE-SEQ-", 1);
        assert!(!agree("kube broken", &broken));
        assert_eq!(validate_save(&broken), None);
    }
}

#[test]
fn bytes_that_are_not_utf8_are_never_shown_valid() {
    let text = kube_gen::kube_ruleset(kube_gen::KubeSpec { services: 2000, generation: 0 });
    assert!(validate_save_bytes(text.as_bytes()).is_some());
    // One bad byte at the start, in the middle (another worker's chunk), at the end.
    for at in [1, text.len() / 2, text.len() - 3] {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = 0xfe;
        assert_eq!(validate_save_bytes(&bytes), None, "byte {at}");
    }
}

/// Rule shapes (`src/shape.rs`): once a rule is shown valid, a later rule of the same
/// shape is checked by its free values alone. Each line below follows a valid rule of its
/// shape (learned first), with one value changed; the stream must agree with the model on
/// every one, valid or not (and, in this debug build, every shape hit is also run down
/// the full path and compared).
#[test]
fn rule_shapes_never_accept_what_the_model_refuses() {
    let head = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:SVC - [0:0]\n:SEP - [0:0]\n:MRK - [0:0]\n";
    let learned = [
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment \"a b\" -m tcp --dport 80 -j MRK",
        "-A SVC -m comment --comment x -m statistic --mode random --probability 0.5 -j SEP",
        "-A SEP -p tcp -m comment --comment x -m tcp -j DNAT --to-destination 10.2.0.1:8080",
        "-A SEP -p udp -m udp --dport 53 -j DNAT --to-destination 10.2.0.1",
        "-A PREROUTING -d 10.1.0.1/32 -j SVC",
        "-A OUTPUT -s 10.9.0.0/16 -j SVC",
    ];
    let variants = [
        // Valid values of the same shapes.
        "-A SEP ! -s 10.0.0.1/32 -d 10.1.0.2/32 -p tcp -m comment --comment \"c d\" -m tcp --dport 443 -j SVC",
        "-A SVC -m comment --comment y -m statistic --mode random --probability 0.25 -j MRK",
        "-A SVC -p tcp -m comment --comment y -m tcp -j DNAT --to-destination 10.2.0.9:1",
        "-A OUTPUT -s 10.8.0.0/16 -j SEP",
        // Invalid free values.
        "-A SVC ! -s 10.0.0.300/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j MRK",
        "-A SVC ! -s 10.0.0.0/33 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j MRK",
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 65536 -j MRK",
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j ACCEPT",
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j PREROUTING",
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j NOWHERE",
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j \"-x\"",
        "-A SVC ! -s 10.0.0.0/8 -d 10.1.0.1/32 -p tcp -m comment --comment c -m tcp --dport 80 -j \"a b\"",
        "-A SVC -m comment --comment y -m statistic --mode random --probability 1.5 -j MRK",
        "-A SVC -m comment --comment y -m statistic --mode random --probability 0.5.1 -j MRK",
        "-A SVC -p tcp -m comment --comment y -m tcp -j DNAT --to-destination 10.2.0.9:0-",
        "-A SVC -p tcp -m comment --comment y -m tcp -j DNAT --to-destination 10.2.0.9:99999",
        "-A SVC -p tcp -m comment --comment y -m tcp -j DNAT --to-destination ::1",
        "-A SEP -p udp -m udp --dport 53 -j DNAT --to-destination 10.2.0.1:53",
        "-A POSTROUTING -p tcp -m comment --comment y -m tcp -j DNAT --to-destination 10.2.0.9:1",
        "-A SVC -m comment --comment \"\" -m statistic --mode random --probability 0.5 -j SEP",
        // Other values where a free one stood: an option word, `!`, a second word.
        "-A SVC -m comment --comment -x -m statistic --mode random --probability 0.5 -j SEP",
        "-A SVC -m comment --comment ! -m statistic --mode random --probability 0.5 -j SEP",
        "-A SVC -m comment --comment a b -m statistic --mode random --probability 0.5 -j SEP",
        "-A SVC -m comment --comment \"!\" -m statistic --mode random --probability 0.5 -j SEP",
        // The -A chain: a builtin of another hook, a name the parser refuses, unknown.
        "-A POSTROUTING -d 10.1.0.1/32 -j SVC",
        "-A INPUT -d 10.1.0.1/32 -j SVC",
        "-A \"S V C\" -m comment --comment x -m statistic --mode random --probability 0.5 -j SEP",
        "-A ACCEPT -m comment --comment x -m statistic --mode random --probability 0.5 -j SEP",
        "-A NOPE -m comment --comment x -m statistic --mode random --probability 0.5 -j SEP",
        "-A SVC -m comment --comment x -m statistic --mode random --probability 0.5 -j SVC",
        // Context moved where the shape does not follow it: glued, goto.
        "-A SVC -m comment --comment x -mstatistic --mode random --probability 0.5 -j SEP",
        "-A SVC -m comment --comment x -m statistic --mode random -mfoo --probability 2 -j SEP",
        "-A SVC -m comment --comment x -m statistic --mode random --probability 0.5 -g SEP",
        "-A SVC -m comment -g SEP --comment x",
        // Addresses that are not of the family or expand into several rules.
        "-A OUTPUT -s ::1 -j SVC",
        "-A OUTPUT -s 10.8.0.1,10.8.0.2 -j SEP",
        "-A OUTPUT -s localhost -j SEP",
    ];
    let comment = "x".repeat(256);
    let long = format!(
        "-A SVC -m comment --comment {comment} -m statistic --mode random --probability 0.5 -j SEP"
    );
    let (mut valid, mut refused) = (0, 0);
    for v in variants.iter().copied().chain([long.as_str()]) {
        let text = format!("{head}{}\n{v}\nCOMMIT\n", learned.join("\n"));
        if agree(v, &text) {
            valid += 1;
            assert!(validate_save(&text).is_some(), "{v}: valid and append-only");
        } else {
            refused += 1;
            assert_eq!(validate_save(&text), None, "{v}");
        }
    }
    eprintln!("shape variants: {valid} valid, {refused} refused");
    assert!(valid >= 5 && refused >= 20, "{valid} valid, {refused} refused");
}
