//! The JSON form (issue 4, acceptance 4): save -> JSON -> save is the identity on every
//! fixture and every captured save file, and the output validates against
//! `docs/ruleset.schema.json`.
//!
//! The schema check is a small JSON Schema validator for the keywords the schema uses
//! (`type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`,
//! `$ref` into `$defs`, `oneOf`, `minimum`, `minLength`, `maxLength`); an unknown keyword
//! fails the test, so the schema cannot silently outgrow the checker.

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_rules::Family;
use portcullis_syntax::{
    SaveOptions, parse_save_as, render_save, ruleset_from_json, ruleset_to_json,
};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema() -> Value {
    let text = fs::read_to_string(root().join("docs/ruleset.schema.json")).expect("schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

/// Validates `v` against `s`; returns the first violation with its JSON path.
fn validate(root: &Value, s: &Value, v: &Value, path: &str) -> Result<(), String> {
    let Value::Object(s) = s else { return Err(format!("{path}: schema is not an object")) };
    for (k, want) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let name = want
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .ok_or_else(|| format!("{path}: unsupported $ref {want}"))?;
                let def = &root["$defs"][name];
                if def.is_null() {
                    return Err(format!("{path}: no $defs/{name}"));
                }
                validate(root, def, v, path)?;
            }
            "type" => {
                let ok = match want.as_str() {
                    Some("object") => v.is_object(),
                    Some("array") => v.is_array(),
                    Some("string") => v.is_string(),
                    Some("integer") => v.is_u64() || v.is_i64(),
                    Some("boolean") => v.is_boolean(),
                    _ => return Err(format!("{path}: unsupported type {want}")),
                };
                if !ok {
                    return Err(format!("{path}: {v} is not {want}"));
                }
            }
            "const" if v != want => return Err(format!("{path}: {v} is not {want}")),
            "const" => {}
            "enum" => {
                let options = want.as_array().ok_or("enum is not an array")?;
                if !options.contains(v) {
                    return Err(format!("{path}: {v} not in {want}"));
                }
            }
            "required" => {
                for name in want.as_array().ok_or("required is not an array")? {
                    let name = name.as_str().unwrap_or("");
                    if v.get(name).is_none() {
                        return Err(format!("{path}: missing {name}"));
                    }
                }
            }
            "properties" => {
                if let (Some(props), Some(obj)) = (want.as_object(), v.as_object()) {
                    for (name, value) in obj {
                        if let Some(ps) = props.get(name) {
                            validate(root, ps, value, &format!("{path}.{name}"))?;
                        }
                    }
                }
            }
            "additionalProperties" => {
                if want == &Value::Bool(false) {
                    let props = s.get("properties").and_then(Value::as_object);
                    if let Some(obj) = v.as_object() {
                        for name in obj.keys() {
                            if !props.is_some_and(|p| p.contains_key(name)) {
                                return Err(format!("{path}: unexpected field {name}"));
                            }
                        }
                    }
                } else {
                    return Err(format!("{path}: unsupported additionalProperties"));
                }
            }
            "items" => {
                if let Some(items) = v.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        validate(root, want, item, &format!("{path}[{i}]"))?;
                    }
                }
            }
            "oneOf" => {
                let matching = want
                    .as_array()
                    .ok_or("oneOf is not an array")?
                    .iter()
                    .filter(|alt| validate(root, alt, v, path).is_ok())
                    .count();
                if matching != 1 {
                    return Err(format!("{path}: {matching} alternatives of oneOf match"));
                }
            }
            "minimum" => {
                if v.as_f64().zip(want.as_f64()).is_some_and(|(x, m)| x < m) {
                    return Err(format!("{path}: {v} below {want}"));
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(s), Some(n)) = (v.as_str(), want.as_u64()) {
                    let len = s.chars().count() as u64;
                    if (k == "minLength" && len < n) || (k == "maxLength" && len > n) {
                        return Err(format!("{path}: length of {v} outside {k} {n}"));
                    }
                }
            }
            other => return Err(format!("{path}: unsupported schema keyword {other}")),
        }
    }
    Ok(())
}

/// Every save text of the baselines: fixtures (restore input) and captures.
fn save_texts() -> Vec<(String, Family, String)> {
    let dir = root().join("crates/portcullis-syntax/test_data/baseline");
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    for e in fs::read_dir(&dir).expect("baseline").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "rules") {
            paths.push(p.clone());
            for d in fs::read_dir(p.with_extension("")).expect("captures").flatten() {
                for f in ["save.txt", "save-c.txt"] {
                    if d.path().join(f).exists() {
                        paths.push(d.path().join(f));
                    }
                }
            }
        }
    }
    paths.sort();
    for p in paths {
        let name = p.display().to_string();
        let family = if name.contains("_v6") { Family::V6 } else { Family::V4 };
        out.push((name, family, fs::read_to_string(&p).expect("read")));
    }
    out
}

#[test]
fn save_json_save_is_the_identity_and_validates() {
    let schema = schema();
    let mut checked = 0;
    for (name, family, text) in save_texts() {
        let rs = parse_save_as(&text, family).unwrap_or_else(|e| panic!("{}", e.render(&name)));
        let opts = SaveOptions { counters: true };
        let json = ruleset_to_json(std::slice::from_ref(&rs));
        let doc: Value = serde_json::from_str(&json).expect("valid JSON");
        if let Err(e) = validate(&schema, &schema, &doc, "$") {
            panic!("{name}: {e}");
        }
        let back = ruleset_from_json(&json).unwrap_or_else(|e| panic!("{}", e.render(&name)));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0], rs, "{name}");
        assert_eq!(render_save(&back[0], opts), render_save(&rs, opts), "{name}");
        checked += 1;
    }
    assert!(checked >= 40, "{checked}");
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let schema = schema();
    let good: Value = serde_json::from_str(&ruleset_to_json(&[parse_save_as(
        "*filter\n:INPUT DROP [0:0]\n-A INPUT ! -s 10.0.0.0/8 -g LOGGING\n-A INPUT -j ACCEPT\n:LOGGING - [0:0]\nCOMMIT\n",
        Family::V4,
    )
    .expect("parses")]))
    .expect("json");
    assert_eq!(validate(&schema, &schema, &good, "$"), Ok(()));
    let mut bad = good.clone();
    bad["version"] = Value::from(2);
    assert!(validate(&schema, &schema, &bad, "$").is_err());
    let mut bad = good.clone();
    bad["rulesets"][0]["tables"][0]["name"] = Value::from("filters");
    assert!(validate(&schema, &schema, &bad, "$").is_err());
    let mut bad = good.clone();
    bad["rulesets"][0]["tables"][0]["chains"][0]["rules"][0]["colour"] = Value::from("red");
    assert!(validate(&schema, &schema, &bad, "$").is_err());
    let mut bad = good;
    bad["rulesets"][0]["tables"][0]["chains"][0]["rules"][0]["action"] =
        serde_json::json!({"jump": {"name": "ACCEPT"}, "goto": "X"});
    assert!(validate(&schema, &schema, &bad, "$").is_err());
}

#[test]
fn bad_json_is_a_located_error() {
    let e = ruleset_from_json("{\n  \"format\": \"portcullis-ruleset\",\n  \"version\": 1,\n  \"rulesets\": [ { \"family\": \"v5\" } ]\n}\n")
        .expect_err("bad family");
    assert_eq!(e.line, 4);
    let e =
        ruleset_from_json("{\"format\": \"portcullis-ruleset\", \"version\": 9, \"rulesets\": []}")
            .expect_err("version");
    assert!(e.to_string().contains("version 9"), "{e}");
}
