//! Parses and validates a save file, for measuring time and peak memory:
//! `/usr/bin/time -v target/release/examples/parse_file kube.rules`.
#![allow(clippy::print_stdout, reason = "a measuring tool prints")]

fn main() {
    let path = std::env::args().nth(1).expect("usage: parse_file FILE");
    let text = std::fs::read_to_string(&path).expect("readable file");
    if std::env::var_os("LINES").is_some() {
        // Each rule line on its own, for comparison with the whole-file parser.
        let t0 = std::time::Instant::now();
        let n = text
            .lines()
            .filter(|l| l.starts_with("-A"))
            .map(|l| portcullis_syntax::parse_rule_line(l, portcullis_rules::Family::V4))
            .filter(Result::is_ok)
            .count();
        println!("{n} rule lines parsed one by one in {:?}", t0.elapsed());
        return;
    }
    let t0 = std::time::Instant::now();
    let rs = portcullis_syntax::parse_save(&text).expect("file parses");
    let t1 = std::time::Instant::now();
    let errors = if std::env::var_os("PARSE_ONLY").is_some() {
        Vec::new()
    } else {
        portcullis_rules::validate(&rs)
    };
    let t2 = std::time::Instant::now();
    println!(
        "{} rules, {} errors; parse {:?}, validate {:?}",
        rs.rule_count(),
        errors.len(),
        t1 - t0,
        t2 - t1
    );
}
