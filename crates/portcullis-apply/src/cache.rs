//! What portcullis last applied to a namespace, per chain (kube-proxy's pattern: an
//! incremental sync diffs against what it wrote last time instead of reading the whole
//! kernel back, and checks canary chains to notice that someone flushed a table).
//!
//! The record lives in the state directory (`<key>/applied.v4`): one line per chain,
//! `table chain policy canon raw`. `canon` hashes the chain's rules in canonical form (what
//! the kernel prints, so the canary can compare); `raw` hashes them as the user wrote them
//! (so planning needs no canonicalisation: an unchanged file hashes the same). The record
//! is removed when an apply starts, written when it succeeds, and removed by every revert,
//! so it never outlives the state it describes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use portcullis_rules::{Backend, Family, Rule, Ruleset, TableName};

use crate::exec::Target;

/// One chain as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainPrint {
    /// The policy of a builtin chain, `-` for a user chain.
    pub(crate) policy: String,
    /// Hash of the rules in canonical form.
    pub(crate) canon: u64,
    /// Hash of the rules as written (0 when unknown: read from the kernel).
    pub(crate) raw: u64,
}

/// The chains of every table, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Fingerprint {
    pub(crate) tables: HashMap<TableName, HashMap<String, ChainPrint>>,
}

/// One chain of the new ruleset as the planner compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantChain {
    pub(crate) name: String,
    pub(crate) builtin: bool,
    pub(crate) policy: String,
    /// The hash compared: canonical or raw, depending on the plan.
    pub(crate) key: u64,
}

/// The new ruleset, table by table, chains in order (missing builtins added, empty).
pub(crate) type Want = Vec<(TableName, Vec<WantChain>)>;

/// A fast, deterministic, non-cryptographic hasher (the "Fx" hash of Firefox and rustc):
/// the record only has to tell chains apart, and SipHash was a tenth of an incremental
/// apply.
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) fn hash_rules(rules: &[Rule]) -> u64 {
    let mut h = FxHasher(0);
    rules.hash(&mut h);
    h.finish()
}

fn want_of(rs: &Ruleset) -> Want {
    rs.tables
        .iter()
        .map(|t| {
            let mut chains: Vec<WantChain> = t
                .chains
                .iter()
                .map(|c| WantChain {
                    name: c.name.as_str().to_owned(),
                    builtin: c.is_builtin(),
                    policy: c.policy.map_or("-", |p| p.as_str()).to_owned(),
                    key: hash_rules(&c.rules),
                })
                .collect();
            for b in t.name.builtin_chains() {
                if !t.has_chain(b) {
                    chains.push(WantChain {
                        name: (*b).to_owned(),
                        builtin: true,
                        policy: "ACCEPT".to_owned(),
                        key: hash_rules(&[]),
                    });
                }
            }
            (t.name, chains)
        })
        .collect()
}

/// The ruleset as written, keyed by raw hashes.
pub(crate) fn raw_want(desired: &Ruleset) -> Want {
    want_of(desired)
}

/// The raw hashes of some chains of one table (a builtin the ruleset leaves out hashes as
/// empty).
pub(crate) fn raw_want_of(
    desired: &Ruleset,
    table: TableName,
    names: &[String],
) -> HashMap<String, u64> {
    let t = desired.table(table);
    names
        .iter()
        .map(|n| {
            let rules = t.and_then(|t| t.chain(n)).map_or(&[][..], |c| &c.rules[..]);
            (n.clone(), hash_rules(rules))
        })
        .collect()
}

/// The ruleset in comparable form, keyed by canonical hashes.
pub(crate) fn canon_want(comparable: &Ruleset) -> Want {
    want_of(comparable)
}

impl Fingerprint {
    /// The fingerprint of a ruleset in comparable form (raw hashes unknown).
    pub(crate) fn of(rs: &Ruleset) -> Self {
        let tables = rs
            .tables
            .iter()
            .map(|t| {
                let chains = t
                    .chains
                    .iter()
                    .map(|c| {
                        let p = ChainPrint {
                            policy: c.policy.map_or("-", |p| p.as_str()).to_owned(),
                            canon: hash_rules(&c.rules),
                            raw: 0,
                        };
                        (c.name.as_str().to_owned(), p)
                    })
                    .collect();
                (t.name, chains)
            })
            .collect();
        Self { tables }
    }

    /// The record of a successful apply: canonical hashes from `comparable`, raw hashes
    /// from `desired` (the same ruleset as written).
    pub(crate) fn record(desired: &Ruleset, comparable: &Ruleset) -> Self {
        let mut fp = Self::of(comparable);
        for (t, chains) in raw_want(desired) {
            let Some(table) = fp.tables.get_mut(&t) else { continue };
            for c in chains {
                if let Some(p) = table.get_mut(&c.name) {
                    p.raw = c.key;
                }
            }
        }
        fp
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        for (t, chains) in &self.tables {
            for (name, p) in chains {
                let _ = writeln!(s, "{t} {name} {} {:016x} {:016x}", p.policy, p.canon, p.raw);
            }
        }
        s
    }

    fn parse(text: &str) -> Option<Self> {
        let mut fp = Self::default();
        for l in text.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let [t, name, policy, canon, raw] = f[..] else { return None };
            let t: TableName = t.parse().ok()?;
            let canon = u64::from_str_radix(canon, 16).ok()?;
            let raw = u64::from_str_radix(raw, 16).ok()?;
            let p = ChainPrint { policy: policy.to_owned(), canon, raw };
            fp.tables.entry(t).or_default().insert(name.to_owned(), p);
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

/// Writes the record of `target`, and remembers its backend.
pub(crate) fn store(target: &Target, fp: &Fingerprint) {
    let _ = crate::persist::write_atomic(&path(target), fp.to_text().as_bytes(), 0o600);
    let hint = backend_path(target.netns.as_deref(), target.family);
    let name = if target.backend == Backend::Legacy { "legacy\n" } else { "nft\n" };
    if std::fs::read_to_string(&hint).ok().as_deref() != Some(name) {
        let _ = std::fs::write(&hint, name);
    }
}

fn backend_path(netns: Option<&str>, family: Family) -> PathBuf {
    let fam = match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    };
    crate::confirm::key_dir(netns).join(format!("backend.{fam}"))
}

/// The backend of the last successful apply to `netns`/`family` (a hint: it is not
/// removed when the record is, and the caller checks it against the kernel).
pub(crate) fn recorded_backend(netns: Option<&str>, family: Family) -> Option<Backend> {
    std::fs::read_to_string(backend_path(netns, family)).ok()?.trim().parse().ok()
}

/// The record's text, to parse with [`parse_text`] or compare with a later read.
pub(crate) fn load_text(target: &Target) -> Option<String> {
    std::fs::read_to_string(path(target)).ok()
}

/// Parses a record's text.
pub(crate) fn parse_text(text: &str) -> Option<Fingerprint> {
    Fingerprint::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_raw_hashes() {
        let text = "*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n-A INPUT -j X\n-A X -p tcp --dport ssh -j ACCEPT\nCOMMIT\n";
        let rs = portcullis_syntax::parse_save(text).expect("parses");
        let c = crate::plan::comparable(&rs, Backend::Nft);
        let fp = Fingerprint::record(&rs, &c);
        assert_eq!(Fingerprint::parse(&fp.to_text()), Some(fp.clone()));
        let x = &fp.tables[&TableName::Filter]["X"];
        assert_eq!(x.policy, "-");
        // Canonical form writes the port as a number: the two hashes differ.
        assert_ne!(x.canon, x.raw);
        assert_eq!(x.raw, raw_want(&rs)[0].1.iter().find(|w| w.name == "X").expect("X").key);
        // The builtins the file leaves out are recorded too.
        assert!(fp.tables[&TableName::Filter].contains_key("FORWARD"));
    }
}
