//! What `trace`, `ports`, `lint` and `diff` share: choosing the ruleset of a family from
//! the input, and reading address options.

use std::net::IpAddr;

use anyhow::{Result, bail};
use portcullis_rules::{Family, Ruleset};

use crate::cmd::input::Loaded;

/// The ruleset of `family` (or the only/first one when no family is asked for).
pub(crate) fn pick(loaded: &Loaded, family: Option<Family>) -> Result<&Ruleset> {
    let found = match family {
        Some(f) => loaded.rulesets.iter().find(|r| r.family == f),
        None => loaded.rulesets.first(),
    };
    match found {
        Some(rs) => Ok(rs),
        None => match family {
            Some(Family::V6) => bail!("{} has no IPv6 ruleset", loaded.name),
            Some(Family::V4) => bail!("{} has no IPv4 ruleset", loaded.name),
            None => bail!("{} holds no ruleset", loaded.name),
        },
    }
}

/// The family the options imply: `-6`, or the family of an address given.
pub(crate) fn family_of(v6: bool, addrs: &[Option<IpAddr>]) -> Option<Family> {
    if v6 {
        return Some(Family::V6);
    }
    addrs.iter().flatten().next().map(|a| if a.is_ipv4() { Family::V4 } else { Family::V6 })
}

/// The host's addresses for addrtype and DNAT routing: `--local` plus the destination.
pub(crate) fn host(local: &[IpAddr], dst: Option<IpAddr>) -> portcullis_eval::Host {
    let mut l: Vec<IpAddr> = local.to_vec();
    if let Some(d) = dst
        && !l.contains(&d)
    {
        l.push(d);
    }
    portcullis_eval::Host { local: l }
}

/// `TABLE/CHAIN #N (line L)` or `TABLE/CHAIN policy`.
pub(crate) fn rule_ref(d: &portcullis_eval::Decision) -> String {
    match d.index {
        Some(i) if d.line > 0 => {
            format!("{}/{} rule {i} (line {})", d.table.as_str(), d.chain, d.line)
        }
        Some(i) => format!("{}/{} rule {i}", d.table.as_str(), d.chain),
        None => format!("{}/{} policy", d.table.as_str(), d.chain),
    }
}

/// The JSON of a decision.
pub(crate) fn rule_json(d: Option<&portcullis_eval::Decision>) -> serde_json::Value {
    match d {
        Some(d) => serde_json::json!({
            "table": d.table.as_str(),
            "chain": d.chain,
            "index": d.index,
            "line": if d.line > 0 { Some(d.line) } else { None },
            "policy": d.index.is_none(),
        }),
        None => serde_json::Value::Null,
    }
}
