//! The properties the fuzz targets check, shared with `tests/fuzz_regressions.rs` (both
//! include this file with `#[path]`), so a committed crash input is replayed against
//! exactly what found it. Each check takes raw bytes, ignores non-UTF-8 input (every
//! reader takes `&str`) and panics when a property fails.

use portcullis_rules::{Family, TableName};
use portcullis_syntax::{
    ListFlags, SaveOptions, detect_format, listing_to_ruleset, parse_listing, parse_restore,
    parse_rule_line, parse_rules_spec, parse_save, parse_save_as, parse_script, quote,
    quote_always, read_rulesets, render_listing, render_rule, render_rules_spec, render_save,
    ruleset_from_json, ruleset_to_json, tokenize, validate_save, validate_save_bytes,
};

/// `parse_save` (both families), `validate_save` against it, and `parse_restore`. A ruleset that parses renders
/// (`render_save -c`) to text that parses back to the same ruleset (but for the `[0:0]`
/// iptables-save prints for a builtin chain the input never declared), and from the
/// second rendering on, the text and the ruleset stay the same.
pub(crate) fn save(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // Bytes that are not UTF-8 are never shown valid (the mapped-file check).
        assert_eq!(validate_save_bytes(data), None);
        return;
    };
    assert_eq!(validate_save_bytes(data), validate_save(text), "bytes and text disagree");
    // The streaming check never says valid where the model does not (same counts).
    if let Some(sum) = validate_save(text) {
        let rs = parse_save(text).expect("validate_save said valid, parse_save refused");
        assert!(
            portcullis_rules::validate(&rs).is_empty(),
            "validate_save said valid, validate did not:\n{text}"
        );
        assert_eq!((sum.tables, sum.rules), (rs.tables.len(), rs.rule_count()));
    }
    if let Ok(rs) = parse_save(text) {
        let _ = render_save(&rs, SaveOptions::default());
        let opts = SaveOptions { counters: true };
        let out = render_save(&rs, opts);
        let rs2 = parse_save_as(&out, rs.family)
            .unwrap_or_else(|e| panic!("rendered save text does not parse: {e:?}\n{out}"));
        let mut declared = rs.clone();
        for c in declared.tables.iter_mut().flat_map(|t| &mut t.chains) {
            if c.is_builtin() && c.counters.is_none() {
                c.counters = Some(portcullis_rules::Counters::default());
            }
        }
        assert_eq!(rs2, declared, "save round trip changed the ruleset\n{out}");
        let out2 = render_save(&rs2, opts);
        let rs3 = parse_save_as(&out2, rs.family)
            .unwrap_or_else(|e| panic!("rendered save text does not parse: {e:?}\n{out2}"));
        assert_eq!(render_save(&rs3, opts), out2, "rendering is not a fixed point");
        assert_eq!(rs3, rs2, "save round trip changed the ruleset\n{out2}");
    }
    let _ = parse_save_as(text, Family::V6);
    let _ = parse_restore(text, Family::V4);
    let _ = parse_restore(text, Family::V6);
}

/// `parse_rule_line` and `parse_rules_spec`. A rule line that parses renders
/// (`render_rule`) to a line that parses back to the same rule (but for the `[p:b]`
/// counters, which `render_rule` leaves out), and the second rendering is the same text
/// and parses to the same rule.
pub(crate) fn rule_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for family in [Family::V4, Family::V6] {
        if let Ok((chain, rule)) = parse_rule_line(text, family) {
            let out = render_rule(&chain, &rule);
            let (chain2, rule2) = parse_rule_line(&out, family)
                .unwrap_or_else(|e| panic!("rendered rule does not parse: {e:?}\n{out}"));
            let uncounted = portcullis_rules::Rule { counters: None, ..rule.clone() };
            assert_eq!(
                (&chain2, &rule2),
                (&chain, &uncounted),
                "rule round trip changed the rule\n{out}"
            );
            let out2 = render_rule(&chain2, &rule2);
            let back = parse_rule_line(&out2, family).expect("a rendered rule parsed before");
            assert_eq!(out2, render_rule(&back.0, &back.1), "rendering is not a fixed point");
            assert_eq!(back, (chain2, rule2), "rule round trip changed the rule\n{out2}");
        }
    }
    if let Ok(rs) = parse_rules_spec(text, TableName::Filter, Family::V4) {
        for t in &rs.tables {
            let _ = render_rules_spec(t, true);
        }
    }
}

/// Shell scripts of iptables commands (`parse_script`) and the format-sniffing reader
/// (`read_rulesets`, which also reaches the save and `-S` parsers).
pub(crate) fn script(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = detect_format(text);
    if let Ok(out) = parse_script(text) {
        let _ = render_save(&out.v4, SaveOptions::default());
        let _ = render_save(&out.v6, SaveOptions::default());
    }
    if let Ok(input) = read_rulesets(text) {
        for rs in &input.rulesets {
            let _ = render_save(rs, SaveOptions { counters: true });
        }
    }
}

/// `iptables -L` listings: `parse_listing`, the conversion to a ruleset and rendering it.
/// A listing that parses prints (`Listing::to_text`) to text that parses. (No fixed point
/// is asserted: see "Open findings" in docs/fuzzing.md.)
pub(crate) fn listing(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(listing) = parse_listing(text) else { return };
    let printed = listing.to_text();
    if let Err(e) = parse_listing(&printed) {
        panic!("printed listing does not parse: {e:?}\n{printed}");
    }
    for table in [TableName::Filter, TableName::Nat] {
        let conv = listing_to_ruleset(&listing, table, None);
        let flags = ListFlags { table, ..ListFlags::default() };
        let _ = render_listing(&conv.ruleset, &flags);
    }
}

/// The JSON reader. A document that reads writes (`ruleset_to_json`) and reads back to
/// the same rulesets.
pub(crate) fn json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rulesets) = ruleset_from_json(text) else { return };
    let json = ruleset_to_json(&rulesets);
    let back = ruleset_from_json(&json)
        .unwrap_or_else(|e| panic!("written JSON does not read back: {e:?}\n{json}"));
    assert_eq!(back, rulesets, "JSON round trip changed the rulesets\n{json}");
    for rs in &rulesets {
        let _ = render_save(rs, SaveOptions { counters: true });
    }
}

/// The tokenizer and the output quoting, differentially: for any string without a
/// newline, `tokenize(quote(s))` and `tokenize(quote_always(s))` give exactly `[s]`, with
/// no unterminated quote. Any line tokenizes into tokens starting on character boundaries.
pub(crate) fn token_quote(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (tokens, _) = tokenize(s);
    for t in &tokens {
        assert!(t.offset < s.len() && s.is_char_boundary(t.offset), "offset {}", t.offset);
    }
    if s.contains('\n') {
        return;
    }
    for quoted in [quote(s).into_owned(), quote_always(s)] {
        let (tokens, notes) = tokenize(&quoted);
        let texts: Vec<&str> = tokens.iter().map(|t| &*t.text).collect();
        assert_eq!(texts, [s], "tokenize({quoted:?})");
        assert_eq!(notes.unterminated_quote, None, "tokenize({quoted:?})");
    }
}

/// A check: panics when its property fails on the input.
pub(crate) type Check = fn(&[u8]);

/// Every check, by fuzz target name.
pub(crate) const ALL: &[(&str, Check)] = &[
    ("parse_save", save),
    ("rule_line", rule_line),
    ("script", script),
    ("listing", listing),
    ("json", json),
    ("token_quote", token_quote),
];
