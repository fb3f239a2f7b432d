//! What portcullis last applied to a namespace, per chain (kube-proxy's pattern: an
//! incremental sync diffs against what it wrote last time instead of reading the whole
//! kernel back, and checks canary chains to notice that someone flushed a table).
//!
//! The record lives in the state directory (`<key>/applied.v4`): one line per chain,
//! `table chain policy hash`, where the hash covers the chain's rules in canonical form.
//! It is removed when an apply starts and written when it succeeds, and removed by every
//! revert, so a stale record never outlives the state it describes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use portcullis_rules::{Chain, Family, Ruleset, TableName};

use crate::exec::Target;

/// One chain as recorded: builtin or not, its policy, and a hash of its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainPrint {
    pub(crate) policy: String,
    pub(crate) hash: u64,
}

/// The chains of every table of a ruleset, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Fingerprint {
    pub(crate) tables: HashMap<TableName, HashMap<String, ChainPrint>>,
}

pub(crate) fn chain_print(c: &Chain) -> ChainPrint {
    let mut h = DefaultHasher::new();
    c.rules.hash(&mut h);
    ChainPrint { policy: c.policy.map_or("-", |p| p.as_str()).to_owned(), hash: h.finish() }
}

impl Fingerprint {
    /// The fingerprint of a ruleset already in comparable form.
    pub(crate) fn of(rs: &Ruleset) -> Self {
        let tables = rs
            .tables
            .iter()
            .map(|t| {
                (
                    t.name,
                    t.chains.iter().map(|c| (c.name.as_str().to_owned(), chain_print(c))).collect(),
                )
            })
            .collect();
        Self { tables }
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        for (t, chains) in &self.tables {
            for (name, p) in chains {
                let _ = writeln!(s, "{t} {name} {} {:016x}", p.policy, p.hash);
            }
        }
        s
    }

    fn parse(text: &str) -> Option<Self> {
        let mut fp = Self::default();
        for l in text.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let [t, name, policy, hash] = f[..] else { return None };
            let t: TableName = t.parse().ok()?;
            let hash = u64::from_str_radix(hash, 16).ok()?;
            fp.tables
                .entry(t)
                .or_default()
                .insert(name.to_owned(), ChainPrint { policy: policy.to_owned(), hash });
        }
        Some(fp)
    }
}

fn path(target: &Target) -> PathBuf {
    let fam = match target.family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    };
    crate::confirm::key_dir(target.netns.as_deref()).join(format!("applied.{fam}"))
}

/// Forgets the record of `target` (an apply starts, or a revert happened).
pub(crate) fn forget(target: &Target) {
    let _ = std::fs::remove_file(path(target));
}

/// Records what was applied (in comparable form).
pub(crate) fn remember(target: &Target, applied: &Ruleset) {
    let p = path(target);
    let mut fp = load(target).unwrap_or_default();
    for (t, chains) in Fingerprint::of(applied).tables {
        fp.tables.insert(t, chains);
    }
    let _ = crate::persist::write_atomic(&p, fp.to_text().as_bytes(), 0o600);
}

/// The record of `target`, if there is one.
pub(crate) fn load(target: &Target) -> Option<Fingerprint> {
    Fingerprint::parse(&std::fs::read_to_string(path(target)).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let rs = portcullis_syntax::parse_save(
            "*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n-A INPUT -j X\n-A X -j ACCEPT\nCOMMIT\n",
        )
        .expect("parses");
        let fp = Fingerprint::of(&rs);
        assert_eq!(Fingerprint::parse(&fp.to_text()), Some(fp.clone()));
        let x = &fp.tables[&TableName::Filter]["X"];
        assert_eq!(x.policy, "-");
        assert_ne!(x.hash, fp.tables[&TableName::Filter]["INPUT"].hash);
    }
}
