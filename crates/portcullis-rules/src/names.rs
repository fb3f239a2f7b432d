//! Families, backends, table names, chain names and policies.

use std::fmt;
use std::str::FromStr;

use crate::error::{ModelError, ModelErrorKind};

/// The address family of a ruleset: what `iptables` (IPv4) or `ip6tables` (IPv6) handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Family {
    /// IPv4, `iptables`.
    V4,
    /// IPv6, `ip6tables`.
    V6,
}

impl Family {
    /// `iptables` or `ip6tables`.
    pub fn command(self) -> &'static str {
        match self {
            Self::V4 => "iptables",
            Self::V6 => "ip6tables",
        }
    }
}

/// The iptables backend whose canonical form is wanted. The two save some rules
/// differently (`formats.md` §12): nft merges duplicate `-m tcp` matches and folds a
/// negated port range into its complement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Backend {
    /// `iptables-nft`, the default on current distributions.
    #[default]
    Nft,
    /// `iptables-legacy` (x_tables through libiptc).
    Legacy,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nft" => Ok(Self::Nft),
            "legacy" => Ok(Self::Legacy),
            other => Err(format!("unknown backend `{other}' (expected nft or legacy)")),
        }
    }
}

/// One of the five iptables tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TableName {
    /// `raw`: before connection tracking.
    Raw,
    /// `mangle`: packet alteration.
    Mangle,
    /// `nat`: address translation, first packet of a connection only.
    Nat,
    /// `filter`: the default table.
    Filter,
    /// `security`: SELinux marks.
    Security,
}

impl TableName {
    /// All tables, in the order a packet meets them on the INPUT path.
    pub const ALL: [Self; 5] = [Self::Raw, Self::Mangle, Self::Nat, Self::Filter, Self::Security];

    /// The name as iptables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Nat => "nat",
            Self::Mangle => "mangle",
            Self::Raw => "raw",
            Self::Security => "security",
        }
    }

    /// The builtin chains of this table, in hook order.
    pub fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            Self::Filter | Self::Security => &["INPUT", "FORWARD", "OUTPUT"],
            Self::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            Self::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            Self::Raw => &["PREROUTING", "OUTPUT"],
        }
    }

    /// Whether `chain` is a builtin chain of this table.
    pub fn is_builtin(self, chain: &str) -> bool {
        self.builtin_chains().contains(&chain)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TableName {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Ok(match s {
            "filter" => Self::Filter,
            "nat" => Self::Nat,
            "mangle" => Self::Mangle,
            "raw" => Self::Raw,
            "security" => Self::Security,
            other => return Err(ModelError::new(ModelErrorKind::UnknownTable(other.to_owned()))),
        })
    }
}

/// The hook order of builtin chain names, used to sort chains as iptables-save does.
pub(crate) fn hook_rank(chain: &str) -> Option<u8> {
    Some(match chain {
        "PREROUTING" => 0,
        "INPUT" => 1,
        "FORWARD" => 2,
        "OUTPUT" => 3,
        "POSTROUTING" => 4,
        _ => return None,
    })
}

/// Whether `name` is a known target extension (as opposed to a user chain): the target
/// names a chain may not take ("chain name may not clash with target name").
pub fn is_target_name(name: &str) -> bool {
    // A `match` compiles to a switch on the length, then one comparison: this runs for
    // every rule of a kube-proxy-sized ruleset.
    matches!(
        name,
        "ACCEPT"
            | "DROP"
            | "QUEUE"
            | "RETURN"
            | "AUDIT"
            | "CHECKSUM"
            | "CLASSIFY"
            | "CLUSTERIP"
            | "CONNMARK"
            | "CONNSECMARK"
            | "CT"
            | "DNAT"
            | "DNPT"
            | "DSCP"
            | "ECN"
            | "HL"
            | "HMARK"
            | "IDLETIMER"
            | "LED"
            | "LOG"
            | "MARK"
            | "MASQUERADE"
            | "NETMAP"
            | "NFLOG"
            | "NFQUEUE"
            | "NOTRACK"
            | "RATEEST"
            | "REDIRECT"
            | "REJECT"
            | "SECMARK"
            | "SET"
            | "SNAT"
            | "SNPT"
            | "SYNPROXY"
            | "TCPMSS"
            | "TCPOPTSTRIP"
            | "TEE"
            | "TOS"
            | "TPROXY"
            | "TRACE"
            | "TTL"
            | "ULOG"
    )
}

/// A chain name, valid by iptables' rules: 1 to 28 bytes, no leading `-` or `!`, no
/// whitespace, not a target name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ChainName(pub(crate) String);

impl ChainName {
    /// The longest name the kernel takes, in bytes.
    pub const MAX_LEN: usize = 28;

    /// Whether `name` is a valid chain name ([`ChainName::new`] without the copy).
    ///
    /// ```
    /// use portcullis_rules::ChainName;
    /// assert!(ChainName::is_valid("KUBE-SVC-PNT3R5FHIFIEO2S7"));
    /// assert!(!ChainName::is_valid("ACCEPT") && !ChainName::is_valid("-x"));
    /// ```
    pub fn is_valid(name: &str) -> bool {
        Self::problem(name).is_none()
    }

    /// What is wrong with `name` as a chain name, if anything.
    fn problem(name: &str) -> Option<&'static str> {
        if name.is_empty() {
            Some("empty")
        } else if name.len() > Self::MAX_LEN {
            Some("too long (must be under 29 chars)")
        } else if name.starts_with('-') || name.starts_with('!') {
            Some("must not start with `-' or `!'")
        } else if name.bytes().any(|b| b.is_ascii_whitespace() || b == 0x0b) {
            Some("must not contain whitespace")
        } else if is_target_name(name) {
            Some("may not clash with target name")
        } else {
            None
        }
    }

    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        match Self::problem(name) {
            Some(reason) => Err(ModelError::new(ModelErrorKind::InvalidChainName {
                name: name.to_owned(),
                reason,
            })),
            None => Ok(Self(name.to_owned())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ChainName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The policy of a builtin chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum Policy {
    /// Let the packet through.
    Accept,
    /// Drop the packet silently.
    Drop,
}

impl Policy {
    /// `ACCEPT` or `DROP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "ACCEPT",
            Self::Drop => "DROP",
        }
    }
}

impl FromStr for Policy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "ACCEPT" => Ok(Self::Accept),
            "DROP" => Ok(Self::Drop),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names() {
        assert!(ChainName::new("KUBE-SVC-ABCDEFGHIJKLMNOP").is_ok());
        assert!(ChainName::new("a.b@c~'\"").is_ok());
        assert!(ChainName::new(&"x".repeat(28)).is_ok());
        assert!(ChainName::new(&"x".repeat(29)).is_err());
        assert!(ChainName::new("-x").is_err());
        assert!(ChainName::new("!x").is_err());
        assert!(ChainName::new("a b").is_err());
        assert!(ChainName::new("LOG").is_err());
        assert!(ChainName::new("").is_err());
    }
}
