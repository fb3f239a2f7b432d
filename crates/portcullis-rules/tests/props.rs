//! Properties of views, canonicalisation and validation on arbitrary rules: no panics,
//! canonicalisation is idempotent, and a canonical rule views the same as the original.

use portcullis_rules::{
    Action, Backend, CanonOptions, ChainName, Command, Family, Match, Negatable, Opt, Protocol,
    Rule, Ruleset, TableName, Target, canonicalize_rule, validate,
};
use proptest::prelude::*;

const MATCHES: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "multiport",
    "conntrack",
    "state",
    "comment",
    "limit",
    "iprange",
    "mac",
    "owner",
    "set",
    "mark",
    "connmark",
    "addrtype",
    "recent",
    "connlimit",
    "hashlimit",
    "ah",
    "esp",
    "frag",
    "rt",
    "mh",
    "dccp",
    "sctp",
    "length",
    "tcpmss",
    "connbytes",
    "dscp",
    "tos",
    "ipvs",
    "string",
    "cluster",
    "rateest",
    "statistic",
    "policy",
    "unknown",
];

const TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "DNAT",
    "SNAT",
    "MASQUERADE",
    "REDIRECT",
    "MARK",
    "CONNMARK",
    "CT",
    "NOTRACK",
    "NETMAP",
    "TPROXY",
    "DSCP",
    "TOS",
    "NFQUEUE",
    "NFLOG",
    "TTL",
    "HMARK",
    "CHAIN1",
];

const OPTS: &[&str] = &[
    "sport",
    "dport",
    "source-port",
    "syn",
    "tcp-flags",
    "tcp-option",
    "icmp-type",
    "icmpv6-type",
    "dports",
    "sports",
    "ports",
    "ctstate",
    "ctproto",
    "ctorigsrc",
    "ctorigsrcport",
    "ctstatus",
    "ctexpire",
    "ctdir",
    "state",
    "comment",
    "limit",
    "limit-burst",
    "src-range",
    "dst-range",
    "mac-source",
    "uid-owner",
    "gid-owner",
    "suppl-groups",
    "socket-exists",
    "match-set",
    "mark",
    "src-type",
    "dst-type",
    "limit-iface-in",
    "set",
    "rcheck",
    "update",
    "seconds",
    "hitcount",
    "name",
    "mask",
    "rsource",
    "rdest",
    "reap",
    "connlimit-above",
    "connlimit-mask",
    "hashlimit-upto",
    "hashlimit-name",
    "ahspi",
    "espspi",
    "fragid",
    "mh-type",
    "length",
    "mss",
    "connbytes",
    "connbytes-mode",
    "connbytes-dir",
    "dscp",
    "dscp-class",
    "tos",
    "vproto",
    "vport",
    "vaddr",
    "string",
    "algo",
    "from",
    "to",
    "cluster-local-node",
    "rateest-bps",
    "mode",
    "every",
    "packet",
    "probability",
    "strict",
    "reject-with",
    "log-level",
    "log-prefix",
    "log-uid",
    "to-destination",
    "to-source",
    "to-ports",
    "random",
    "set-mark",
    "set-xmark",
    "and-mark",
    "or-mark",
    "xor-mark",
    "save-mark",
    "restore-mark",
    "nfmask",
    "ctmask",
    "notrack",
    "zone",
    "on-port",
    "on-ip",
    "tproxy-mark",
    "set-dscp",
    "set-dscp-class",
    "set-tos",
    "and-tos",
    "queue-num",
    "queue-balance",
    "queue-bypass",
    "nflog-group",
    "nflog-prefix",
    "nflog-range",
    "ttl-set",
    "hmark-mod",
    "next",
    "bogus",
];

fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,6}",
        "[0-9]{1,4}",
        "[0-9]{1,3}",
        "[0-9]{0,5}:[0-9]{0,5}",
        "[0-9]{1,5}-[0-9]{1,5}",
        "0x[0-9a-f]{1,9}(/0x[0-9a-f]{1,9})?",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,2})?(-[0-9.]{7,15})?",
        "\\[?[0-9a-f:]{2,12}\\]?(:[0-9]{1,5})?",
        "[A-Za-z,_-]{0,24}",
        "[0-9]{1,5}/(s|sec|min|m|hour|h|day|d|week)",
        "(ssh|http|ftp-data|domain|echo-request|ESTABLISHED,RELATED|NEW|LOCAL|SYN,ACK|ALL|NONE|src,dst|tcp|any|255/0:255|port-unreach|tcp-reset|alert|debug)",
        ".{0,40}",
    ]
}

fn opt() -> impl Strategy<Value = Opt> {
    (any::<bool>(), prop::sample::select(OPTS), prop::collection::vec(arg(), 0..3))
        .prop_map(|(negated, name, args)| Opt { negated, name: name.to_owned(), args })
}

/// Option names that belong to each common module, so that generated matches are valid
/// often enough to exercise the canonical forms.
const MODULE_OPTS: &[(&str, &[&str])] = &[
    ("tcp", &["sport", "dport", "syn", "tcp-flags", "tcp-option", "source-port"]),
    ("udp", &["sport", "dport", "destination-port"]),
    ("icmp", &["icmp-type"]),
    ("icmp6", &["icmpv6-type"]),
    ("multiport", &["dports", "sports", "ports"]),
    (
        "conntrack",
        &["ctstate", "ctproto", "ctorigsrc", "ctorigsrcport", "ctstatus", "ctexpire", "ctdir"],
    ),
    ("state", &["state"]),
    ("limit", &["limit", "limit-burst"]),
    ("mark", &["mark"]),
    ("connmark", &["mark"]),
    (
        "recent",
        &["set", "rcheck", "update", "seconds", "hitcount", "name", "rsource", "rdest", "reap"],
    ),
    ("addrtype", &["src-type", "dst-type", "limit-iface-in"]),
    ("owner", &["uid-owner", "gid-owner", "socket-exists", "suppl-groups"]),
    ("iprange", &["src-range", "dst-range"]),
    ("connlimit", &["connlimit-above", "connlimit-upto", "connlimit-mask", "connlimit-saddr"]),
    ("length", &["length"]),
    ("dscp", &["dscp", "dscp-class"]),
];

fn module_opt(names: &'static [&'static str]) -> impl Strategy<Value = Opt> {
    (any::<bool>(), prop::sample::select(names), prop::collection::vec(arg(), 0..2))
        .prop_map(|(negated, name, args)| Opt { negated, name: name.to_owned(), args })
}

fn a_match() -> impl Strategy<Value = Match> {
    prop_oneof![
        (prop::sample::select(MATCHES), prop::collection::vec(opt(), 0..5))
            .prop_map(|(name, opts)| Match { name: name.to_owned(), opts }),
        prop::sample::select(MODULE_OPTS).prop_flat_map(|(name, names)| {
            prop::collection::vec(module_opt(names), 0..4)
                .prop_map(move |opts| Match { name: name.to_owned(), opts })
        }),
    ]
}

fn a_rule() -> impl Strategy<Value = Rule> {
    (
        prop::option::of((any::<bool>(), prop::sample::select(&[0u8, 1, 6, 17, 58, 132][..]))),
        prop::collection::vec(a_match(), 0..4),
        prop::option::of((prop::sample::select(TARGETS), prop::collection::vec(opt(), 0..4))),
    )
        .prop_map(|(proto, matches, target)| Rule {
            proto: proto.map(|(n, p)| Negatable { negated: n, value: Protocol::Number(p) }),
            matches,
            action: target.map(|(name, opts)| Action::Jump(Target { name: name.to_owned(), opts })),
            ..Rule::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn canonicalisation_is_idempotent_and_total(
        rule in a_rule(),
        v6 in any::<bool>(),
        legacy in any::<bool>(),
    ) {
        let family = if v6 { Family::V6 } else { Family::V4 };
        let backend = if legacy { Backend::Legacy } else { Backend::Nft };
        let opts = CanonOptions { backend, family: Some(family) };
        let once = canonicalize_rule(&rule, opts);
        let twice = canonicalize_rule(&once, opts);
        prop_assert_eq!(&once, &twice);
        // Views never panic, and a match that views before canonicalisation views the same
        // after it (canonicalisation keeps the meaning).
        for m in &rule.matches {
            let _ = m.view(family);
        }
        if let Some(a) = &rule.action {
            let _ = a.view(family, |n| n == "CHAIN1");
        }
        if backend == Backend::Legacy {
            for (before, after) in rule.matches.iter().zip(&once.matches) {
                if let Ok(v) = before.view(family) {
                    prop_assert_eq!(Ok(v), after.view(family), "{:?} -> {:?}", before, after);
                }
            }
        }
    }

    #[test]
    fn validation_is_total(rule in a_rule(), v6 in any::<bool>()) {
        let family = if v6 { Family::V6 } else { Family::V4 };
        for table in TableName::ALL {
            let mut rs = Ruleset::new(family);
            rs.execute(table, Command::NewChain(ChainName::new("CHAIN1").unwrap())).unwrap();
            let chain = table.builtin_chains()[0];
            rs.execute(table, Command::Append { chain: chain.into(), rule: rule.clone() }).unwrap();
            rs.execute(table, Command::Append { chain: "CHAIN1".into(), rule: rule.clone() }).unwrap();
            for e in validate(&rs) {
                prop_assert!(e.location.table.is_some());
                let _ = e.to_string();
            }
        }
    }
}
