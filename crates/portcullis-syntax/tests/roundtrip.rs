//! Acceptance 6 of issue 2: parse(render(r)) == r for generated rulesets, nasty comments
//! and names included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_rules::{
    Action, Address, Chain, ChainName, Counters, Family, Interface, Match, Negatable, Opt, Policy,
    Protocol, Rule, Ruleset, Table, TableName, Target, is_target_name,
};
use portcullis_syntax::{SaveOptions, parse_save_as, render_save};
use proptest::prelude::*;

/// Long names the command-line parser reserves for itself; a module option of that name
/// would be read as the base option (as iptables does).
const RESERVED: &[&str] = &[
    "append",
    "insert",
    "delete",
    "replace",
    "new-chain",
    "new",
    "delete-chain",
    "flush",
    "zero",
    "policy",
    "rename-chain",
    "table",
    "source",
    "src",
    "destination",
    "dst",
    "in-interface",
    "out-interface",
    "protocol",
    "fragment",
    "fragments",
    "match",
    "jump",
    "goto",
    "set-counters",
    "ipv4",
    "ipv6",
    "wait",
    "wait-interval",
    "verbose",
    "numeric",
    "exact",
    "comment",
];

fn nasty_text() -> impl Strategy<Value = String> {
    // Anything but newline, carriage return and NUL: quotes, backslashes, `!`, leading
    // dashes, spaces, tabs, unicode, the empty string.
    prop_oneof![
        "[^\n\r\u{0}]{0,40}",
        Just(String::new()),
        Just("!".to_owned()),
        Just("-j ACCEPT".to_owned()),
        Just(r#"it's "quoted" \ back\slash"#.to_owned()),
        Just("--comment".to_owned()),
    ]
}

fn chain_name() -> impl Strategy<Value = ChainName> {
    "[A-Za-z0-9_.@~'\"%:+=][A-Za-z0-9_.@~'\"%:+=!-]{0,27}"
        .prop_filter("not a target name", |s| !is_target_name(s))
        .prop_map(|s| ChainName::new(&s).expect("generated names are valid"))
}

fn opt() -> impl Strategy<Value = Opt> {
    (
        any::<bool>(),
        "[a-z][a-z0-9-]{0,12}".prop_filter("not reserved", |s| !RESERVED.contains(&s.as_str())),
        prop::collection::vec(nasty_text(), 0..3),
    )
        .prop_map(|(negated, name, args)| Opt { negated, name, args })
}

fn module() -> impl Strategy<Value = Match> {
    prop_oneof![
        ("x[a-z0-9_]{0,8}", prop::collection::vec(opt(), 0..4))
            .prop_map(|(name, opts)| Match { name, opts }),
        (any::<bool>(), nasty_text()).prop_map(|(negated, c)| Match {
            name: "comment".into(),
            opts: vec![Opt { negated, name: "comment".into(), args: vec![c] }],
        }),
    ]
}

fn address(family: Family) -> impl Strategy<Value = Address> {
    match family {
        Family::V4 => (any::<u32>(), any::<u32>())
            .prop_map(|(a, m)| Address::Net {
                addr: IpAddr::V4(Ipv4Addr::from(a)),
                mask: IpAddr::V4(Ipv4Addr::from(m)),
            })
            .boxed(),
        Family::V6 => (any::<u128>(), 0u32..=128)
            .prop_map(|(a, len)| Address::Net {
                addr: IpAddr::V6(Ipv6Addr::from(a)),
                mask: IpAddr::V6(Ipv6Addr::from(u128::MAX.checked_shl(128 - len).unwrap_or(0))),
            })
            .boxed(),
    }
}

fn iface() -> impl Strategy<Value = Interface> {
    "[a-z0-9][a-z0-9.@_-]{0,13}\\+?".prop_map(|s| Interface::new(&s).expect("valid interface"))
}

fn neg<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Negatable<T>> {
    (any::<bool>(), s).prop_map(|(negated, value)| Negatable { negated, value })
}

fn rule(family: Family, chains: Vec<ChainName>) -> impl Strategy<Value = Rule> {
    let action = prop_oneof![
        Just(None),
        "[A-Z]{1,10}".prop_map(|n| Some(Action::Jump(Target::new(&n)))),
        ("[A-Z]{1,10}", prop::collection::vec(opt(), 0..3))
            .prop_map(|(name, opts)| Some(Action::Jump(Target { name, opts }))),
        prop::sample::select(chains.clone()).prop_map(|c| Some(Action::Goto(c))),
        prop::sample::select(chains).prop_map(|c| Some(Action::Jump(Target::new(c.as_str())))),
    ];
    (
        prop::option::of(
            (any::<u64>(), any::<u64>()).prop_map(|(packets, bytes)| Counters { packets, bytes }),
        ),
        prop::option::of(neg(address(family))),
        prop::option::of(neg(address(family))),
        prop::option::of(neg(iface())),
        prop::option::of(neg(iface())),
        prop::option::of(neg(any::<u8>().prop_map(Protocol::Number))),
        if family == Family::V4 {
            prop::option::of(any::<bool>()).boxed()
        } else {
            Just(None).boxed()
        },
        prop::collection::vec(module(), 0..4),
        action,
    )
        .prop_map(
            |(counters, src, dst, in_iface, out_iface, proto, fragment, matches, action)| Rule {
                counters,
                src,
                dst,
                in_iface,
                out_iface,
                proto,
                fragment,
                matches,
                action,
                ..Rule::default()
            },
        )
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    (
        prop_oneof![Just(Family::V4), Just(Family::V6)],
        prop::sample::subsequence(TableName::ALL.to_vec(), 1..=5),
        prop::collection::btree_set(chain_name(), 1..4),
    )
        .prop_flat_map(|(family, tables, users)| {
            let users: Vec<ChainName> = users.into_iter().collect();
            let tables = tables
                .into_iter()
                .map(|name| {
                    let builtins = name.builtin_chains().len();
                    let users = users.clone();
                    (
                        prop::collection::vec(
                            prop::collection::vec(rule(family, users.clone()), 0..4),
                            builtins + users.len(),
                        ),
                        prop::collection::vec(
                            (any::<bool>(), any::<u64>(), any::<u64>()),
                            builtins,
                        ),
                    )
                        .prop_map(move |(rules, policies)| {
                            let mut chains: Vec<Chain> = name
                                .builtin_chains()
                                .iter()
                                .zip(&policies)
                                .map(|(c, (drop, p, b))| {
                                    let mut ch = Chain::builtin(
                                        c,
                                        if *drop { Policy::Drop } else { Policy::Accept },
                                    );
                                    ch.counters = Some(Counters { packets: *p, bytes: *b });
                                    ch
                                })
                                .collect();
                            for u in &users {
                                // User-chain counters are read and ignored, as iptables does.
                                chains.push(Chain::user(u.clone()));
                            }
                            for (c, r) in chains.iter_mut().zip(rules) {
                                c.rules = r;
                            }
                            Table { name, chains }
                        })
                })
                .collect::<Vec<_>>();
            (Just(family), tables)
        })
        .prop_map(|(family, tables)| Ruleset { family, tables })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn parse_render_is_identity(rs in ruleset()) {
        let text = render_save(&rs, SaveOptions { counters: true });
        let back = parse_save_as(&text, rs.family)
            .map_err(|e| TestCaseError::fail(format!("{}\n{text}", e.render("generated"))))?;
        prop_assert_eq!(&back, &rs, "text:\n{}", text);
    }

    /// The streaming check says valid exactly when the model does (generated rulesets are
    /// append-only, so the stream must decide them), with the same counts.
    #[test]
    fn streaming_check_agrees_with_the_model(rs in ruleset()) {
        let text = render_save(&rs, SaveOptions { counters: true });
        let model = portcullis_rules::validate(&rs)
            .is_empty()
            .then(|| (rs.tables.len(), rs.rule_count()));
        let stream = portcullis_syntax::validate_save_as(&text, rs.family).map(|s| (s.tables, s.rules));
        prop_assert_eq!(stream, model, "text:\n{}", text);
    }
}
