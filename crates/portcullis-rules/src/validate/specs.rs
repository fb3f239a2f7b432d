//! Option specifications of the extensions without a typed view: which options each
//! takes, what their values may be, which are required and which exclude each other. A
//! module or target not listed here is not checked.

use crate::Family;
use crate::error::{ModelError, ModelErrorKind, invalid};
use crate::rule::Opt;
use crate::view::{parse_number, parse_port};

/// What one option takes.
#[derive(Debug, Clone, Copy)]
enum Arg {
    /// No argument.
    Flag,
    /// One number (`strtoul` forms) from `min` to `max`.
    Num(u64, u64),
    /// `A`, `A:B`, `A:`, `:B` or `:` of numbers up to `max`, `A <= B`.
    Range(u64),
    /// Like `Range(65535)` with service names allowed.
    Ports,
    /// Like `Range(max)` with each side read by a parser of its own (names allowed).
    RangeWith(u64, fn(&str) -> Option<u64>),
    /// One argument of at most this many bytes.
    Len(usize),
    /// One argument from this list (case-insensitive).
    Choice(&'static [&'static str]),
    /// A comma list of names from this list (case-insensitive).
    List(&'static [&'static str]),
    /// One argument, anything.
    Text,
    /// Any number of arguments.
    Any,
}

use Arg::{Any, Choice, Flag, Len, List, Num, Ports, Range, RangeWith, Text};

const U32: u64 = u32::MAX as u64;

/// One extension: its options, the groups of which one option is required, and the
/// groups of options that exclude each other.
struct Spec {
    name: &'static str,
    opts: &'static [(&'static str, Arg)],
    required: &'static [&'static [&'static str]],
    exclusive: &'static [&'static [&'static str]],
}

const DSCP_CLASSES: &[&str] = &[
    "CS0", "CS1", "CS2", "CS3", "CS4", "CS5", "CS6", "CS7", "BE", "AF11", "AF12", "AF13", "AF21",
    "AF22", "AF23", "AF31", "AF32", "AF33", "AF41", "AF42", "AF43", "EF",
];

const MATCHES: &[Spec] = &[
    Spec {
        name: "ah",
        opts: &[("ahspi", Range(U32)), ("ahlen", Num(0, U32)), ("ahres", Flag)],
        required: &[],
        exclusive: &[],
    },
    Spec { name: "esp", opts: &[("espspi", Range(U32))], required: &[], exclusive: &[] },
    Spec {
        name: "ipcomp",
        opts: &[("ipcompspi", Range(U32)), ("compres", Flag)],
        required: &[],
        exclusive: &[],
    },
    Spec {
        name: "frag",
        opts: &[
            ("fragid", Range(U32)),
            ("fraglen", Num(0, U32)),
            ("fragres", Flag),
            ("fragfirst", Flag),
            ("fragmore", Flag),
            ("fraglast", Flag),
        ],
        required: &[],
        exclusive: &[&["fragmore", "fraglast"]],
    },
    Spec {
        name: "rt",
        opts: &[
            ("rt-type", Num(0, 255)),
            ("rt-segsleft", Range(U32)),
            ("rt-len", Num(0, U32)),
            ("rt-0-res", Flag),
            ("rt-0-addrs", Text),
            ("rt-0-not-strict", Flag),
        ],
        required: &[],
        exclusive: &[],
    },
    Spec {
        name: "mh",
        opts: &[("mh-type", RangeWith(255, crate::extensions::mh_type))],
        required: &[],
        exclusive: &[],
    },
    Spec {
        name: "dccp",
        opts: &[
            ("sport", Ports),
            ("source-port", Ports),
            ("dport", Ports),
            ("destination-port", Ports),
            ("dccp-types", Text),
            ("dccp-option", Num(0, 255)),
        ],
        required: &[],
        exclusive: &[],
    },
    Spec {
        name: "sctp",
        opts: &[
            ("sport", Ports),
            ("source-port", Ports),
            ("dport", Ports),
            ("destination-port", Ports),
            ("chunk-types", Any),
        ],
        required: &[],
        exclusive: &[],
    },
    Spec {
        name: "length",
        opts: &[("length", Range(65535))],
        required: &[&["length"]],
        exclusive: &[],
    },
    Spec { name: "tcpmss", opts: &[("mss", Range(65535))], required: &[&["mss"]], exclusive: &[] },
    Spec {
        name: "connbytes",
        opts: &[
            ("connbytes", Range(u64::MAX)),
            ("connbytes-dir", Choice(&["original", "reply", "both"])),
            ("connbytes-mode", Choice(&["packets", "bytes", "avgpkt"])),
        ],
        required: &[&["connbytes"], &["connbytes-dir"], &["connbytes-mode"]],
        exclusive: &[],
    },
    Spec {
        name: "connlimit",
        opts: &[
            ("connlimit-upto", Num(0, U32)),
            ("connlimit-above", Num(0, U32)),
            ("connlimit-mask", Num(0, 128)),
            ("connlimit-saddr", Flag),
            ("connlimit-daddr", Flag),
        ],
        required: &[&["connlimit-upto", "connlimit-above"]],
        exclusive: &[
            &["connlimit-upto", "connlimit-above"],
            &["connlimit-saddr", "connlimit-daddr"],
        ],
    },
    Spec {
        name: "hashlimit",
        opts: &[
            ("hashlimit-upto", Text),
            ("hashlimit-above", Text),
            ("hashlimit", Text),
            ("hashlimit-burst", Text),
            ("hashlimit-mode", Text),
            ("hashlimit-name", Len(255)),
            ("hashlimit-htable-size", Num(0, U32)),
            ("hashlimit-htable-max", Num(0, U32)),
            ("hashlimit-htable-gcinterval", Num(0, U32)),
            ("hashlimit-htable-expire", Num(0, U32)),
            ("hashlimit-srcmask", Num(0, 128)),
            ("hashlimit-dstmask", Num(0, 128)),
            ("hashlimit-rate-match", Flag),
            ("hashlimit-rate-interval", Num(1, U32)),
        ],
        required: &[&["hashlimit-upto", "hashlimit-above", "hashlimit"], &["hashlimit-name"]],
        exclusive: &[&["hashlimit-upto", "hashlimit-above", "hashlimit"]],
    },
    Spec {
        name: "string",
        opts: &[
            ("string", Len(128)),
            ("hex-string", Text),
            ("algo", Choice(&["bm", "kmp"])),
            ("from", Num(0, 65535)),
            ("to", Num(0, 65535)),
            ("icase", Flag),
        ],
        required: &[&["string", "hex-string"], &["algo"]],
        exclusive: &[&["string", "hex-string"]],
    },
    Spec {
        name: "cluster",
        opts: &[
            ("cluster-total-nodes", Num(1, 32)),
            ("cluster-local-node", Num(1, 32)),
            ("cluster-local-nodemask", Num(1, U32)),
            ("cluster-hash-seed", Num(0, U32)),
        ],
        required: &[
            &["cluster-total-nodes"],
            &["cluster-local-node", "cluster-local-nodemask"],
            &["cluster-hash-seed"],
        ],
        exclusive: &[&["cluster-local-node", "cluster-local-nodemask"]],
    },
    Spec {
        name: "dscp",
        opts: &[("dscp", Num(0, 0x3f)), ("dscp-class", Choice(DSCP_CLASSES))],
        required: &[&["dscp", "dscp-class"]],
        exclusive: &[&["dscp", "dscp-class"]],
    },
    Spec { name: "tos", opts: &[("tos", Text)], required: &[&["tos"]], exclusive: &[] },
    Spec {
        name: "ecn",
        opts: &[("ecn-tcp-cwr", Flag), ("ecn-tcp-ece", Flag), ("ecn-ip-ect", Num(0, 3))],
        required: &[&["ecn-tcp-cwr", "ecn-tcp-ece", "ecn-ip-ect"]],
        exclusive: &[],
    },
    Spec { name: "helper", opts: &[("helper", Text)], required: &[&["helper"]], exclusive: &[] },
    Spec { name: "cpu", opts: &[("cpu", Num(0, U32))], required: &[&["cpu"]], exclusive: &[] },
    Spec {
        name: "cgroup",
        opts: &[("cgroup", Num(0, U32)), ("path", Len(4095))],
        required: &[&["cgroup", "path"]],
        exclusive: &[&["cgroup", "path"]],
    },
    Spec {
        name: "quota",
        opts: &[("quota", Num(0, u64::MAX))],
        required: &[&["quota"]],
        exclusive: &[],
    },
    Spec {
        name: "pkttype",
        opts: &[("pkt-type", Choice(&["unicast", "broadcast", "multicast", "host", "otherhost"]))],
        required: &[&["pkt-type"]],
        exclusive: &[],
    },
    Spec {
        name: "statistic",
        opts: &[
            ("mode", Choice(&["random", "nth"])),
            ("probability", Text),
            ("every", Num(1, U32)),
            ("packet", Num(0, U32)),
        ],
        required: &[&["mode"]],
        exclusive: &[],
    },
    Spec {
        name: "ttl",
        opts: &[("ttl-eq", Num(0, 255)), ("ttl-lt", Num(0, 255)), ("ttl-gt", Num(0, 255))],
        required: &[&["ttl-eq", "ttl-lt", "ttl-gt"]],
        exclusive: &[&["ttl-eq", "ttl-lt", "ttl-gt"]],
    },
    Spec {
        name: "hl",
        opts: &[("hl-eq", Num(0, 255)), ("hl-lt", Num(0, 255)), ("hl-gt", Num(0, 255))],
        required: &[&["hl-eq", "hl-lt", "hl-gt"]],
        exclusive: &[&["hl-eq", "hl-lt", "hl-gt"]],
    },
    Spec { name: "realm", opts: &[("realm", Text)], required: &[&["realm"]], exclusive: &[] },
    Spec {
        name: "nfacct",
        opts: &[("nfacct-name", Len(31))],
        required: &[&["nfacct-name"]],
        exclusive: &[],
    },
    Spec {
        name: "connlabel",
        opts: &[("label", Text), ("set", Flag)],
        required: &[&["label"]],
        exclusive: &[],
    },
];

const TARGETS: &[Spec] = &[
    Spec {
        name: "AUDIT",
        opts: &[("type", Choice(&["accept", "drop", "reject"]))],
        required: &[&["type"]],
        exclusive: &[],
    },
    Spec {
        name: "CHECKSUM",
        opts: &[("checksum-fill", Flag)],
        required: &[&["checksum-fill"]],
        exclusive: &[],
    },
    Spec {
        name: "CLASSIFY",
        opts: &[("set-class", Text)],
        required: &[&["set-class"]],
        exclusive: &[],
    },
    Spec {
        name: "CONNMARK",
        opts: &[
            ("set-xmark", Text),
            ("set-mark", Text),
            ("and-mark", Num(0, U32)),
            ("or-mark", Num(0, U32)),
            ("xor-mark", Num(0, U32)),
            ("save-mark", Flag),
            ("restore-mark", Flag),
            ("mask", Num(0, U32)),
            ("nfmask", Num(0, U32)),
            ("ctmask", Num(0, U32)),
        ],
        required: &[&[
            "set-xmark",
            "set-mark",
            "and-mark",
            "or-mark",
            "xor-mark",
            "save-mark",
            "restore-mark",
        ]],
        exclusive: &[&[
            "set-xmark",
            "set-mark",
            "and-mark",
            "or-mark",
            "xor-mark",
            "save-mark",
            "restore-mark",
        ]],
    },
    Spec {
        name: "CONNSECMARK",
        opts: &[("save", Flag), ("restore", Flag)],
        required: &[&["save", "restore"]],
        exclusive: &[&["save", "restore"]],
    },
    Spec {
        name: "DSCP",
        opts: &[("set-dscp", Num(0, 0x3f)), ("set-dscp-class", Choice(DSCP_CLASSES))],
        required: &[&["set-dscp", "set-dscp-class"]],
        exclusive: &[&["set-dscp", "set-dscp-class"]],
    },
    Spec {
        name: "HMARK",
        opts: &[
            ("hmark-tuple", Text),
            ("hmark-src-prefix", Num(0, 128)),
            ("hmark-dst-prefix", Num(0, 128)),
            ("hmark-sport-mask", Num(0, 65535)),
            ("hmark-dport-mask", Num(0, 65535)),
            ("hmark-spi-mask", Num(0, U32)),
            ("hmark-proto-mask", Num(0, 65535)),
            ("hmark-rnd", Num(0, U32)),
            ("hmark-mod", Num(1, U32)),
            ("hmark-offset", Num(0, U32)),
        ],
        required: &[&["hmark-mod"]],
        exclusive: &[],
    },
    Spec {
        name: "IDLETIMER",
        opts: &[("timeout", Num(0, U32)), ("label", Len(27)), ("alarm", Flag)],
        required: &[&["timeout"], &["label"]],
        exclusive: &[],
    },
    Spec {
        name: "LED",
        opts: &[("led-trigger-id", Len(27)), ("led-delay", Text), ("led-always-blink", Flag)],
        required: &[&["led-trigger-id"]],
        exclusive: &[],
    },
    Spec {
        name: "NFLOG",
        opts: &[
            ("nflog-group", Num(0, 65535)),
            ("nflog-prefix", Len(127)),
            ("nflog-range", Num(0, U32)),
            ("nflog-size", Num(0, U32)),
            ("nflog-threshold", Num(1, 65535)),
        ],
        required: &[],
        exclusive: &[&["nflog-range", "nflog-size"]],
    },
    Spec {
        name: "NFQUEUE",
        opts: &[
            ("queue-num", Num(0, 65535)),
            ("queue-balance", Range(65534)),
            ("queue-bypass", Flag),
            ("queue-cpu-fanout", Flag),
        ],
        required: &[],
        exclusive: &[&["queue-num", "queue-balance"]],
    },
    Spec {
        name: "SECMARK",
        opts: &[("selctx", Len(255))],
        required: &[&["selctx"]],
        exclusive: &[],
    },
    Spec {
        name: "TEE",
        opts: &[("gateway", Text), ("oif", Len(15))],
        required: &[&["gateway"]],
        exclusive: &[],
    },
    Spec {
        name: "TOS",
        opts: &[
            ("set-tos", Text),
            ("and-tos", Num(0, 255)),
            ("or-tos", Num(0, 255)),
            ("xor-tos", Num(0, 255)),
        ],
        required: &[&["set-tos", "and-tos", "or-tos", "xor-tos"]],
        exclusive: &[&["set-tos", "and-tos", "or-tos", "xor-tos"]],
    },
    Spec {
        name: "TTL",
        opts: &[("ttl-set", Num(0, 255)), ("ttl-inc", Num(1, 255)), ("ttl-dec", Num(1, 255))],
        required: &[&["ttl-set", "ttl-inc", "ttl-dec"]],
        exclusive: &[&["ttl-set", "ttl-inc", "ttl-dec"]],
    },
    Spec {
        name: "HL",
        opts: &[("hl-set", Num(0, 255)), ("hl-inc", Num(1, 255)), ("hl-dec", Num(1, 255))],
        required: &[&["hl-set", "hl-inc", "hl-dec"]],
        exclusive: &[&["hl-set", "hl-inc", "hl-dec"]],
    },
    Spec {
        name: "ECN",
        opts: &[
            ("ecn-tcp-remove", Flag),
            ("ecn-tcp-cwr", Num(0, 1)),
            ("ecn-tcp-ece", Num(0, 1)),
            ("ecn-ip-ect", Num(0, 3)),
        ],
        required: &[&["ecn-tcp-remove", "ecn-tcp-cwr", "ecn-tcp-ece", "ecn-ip-ect"]],
        exclusive: &[],
    },
    Spec {
        name: "DNPT",
        opts: &[("src-pfx", Text), ("dst-pfx", Text)],
        required: &[&["src-pfx"], &["dst-pfx"]],
        exclusive: &[],
    },
    Spec {
        name: "SNPT",
        opts: &[("src-pfx", Text), ("dst-pfx", Text)],
        required: &[&["src-pfx"], &["dst-pfx"]],
        exclusive: &[],
    },
    Spec {
        name: "TCPOPTSTRIP",
        opts: &[(
            "strip-options",
            List(&["mss", "wscale", "sack-permitted", "sack", "timestamp", "md5"]),
        )],
        required: &[],
        exclusive: &[],
    },
    Spec {
        name: "CT",
        opts: &[
            ("notrack", Flag),
            ("helper", Len(15)),
            ("timeout", Len(31)),
            ("ctevents", Text),
            ("expevents", Text),
            ("zone", Text),
            ("zone-orig", Text),
            ("zone-reply", Text),
        ],
        required: &[],
        exclusive: &[],
    },
];

/// Whether the specified match module takes `option`; `None` for a module without a
/// specification.
pub(crate) fn spec_takes_option(module: &str, option: &str) -> Option<bool> {
    MATCHES.iter().find(|s| s.name == module).map(|s| s.opts.iter().any(|(n, _)| *n == option))
}

/// Whether the specified target takes `option`; `None` for a target without a
/// specification.
pub(crate) fn spec_target_takes_option(target: &str, option: &str) -> Option<bool> {
    TARGETS.iter().find(|s| s.name == target).map(|s| s.opts.iter().any(|(n, _)| *n == option))
}

/// Checks a match without a typed view; `Ok` when the module has no specification.
pub(super) fn check_match(name: &str, opts: &[Opt], family: Family) -> Result<(), ModelError> {
    if name == "policy" {
        return check_policy(opts);
    }
    if name == "tos"
        && let Some(o) = opts.iter().find(|o| o.name == "tos")
        && crate::extensions::tos_value(o.args.first().map_or("", String::as_str)).is_none()
    {
        return Err(invalid("--tos", &o.args.join(" "), "a TOS name or VALUE[/MASK] up to 0xff"));
    }
    let Some(spec) = MATCHES.iter().find(|s| s.name == name) else { return Ok(()) };
    check(spec, opts)?;
    let get = |n: &str| {
        opts.iter().find(|o| o.name == n).map(|o| o.args.first().map_or("", String::as_str))
    };
    match name {
        "ah" if family == Family::V4 => {
            if let Some(o) = opts.iter().find(|o| o.name != "ahspi") {
                return Err(invalid(&format!("--{}", o.name), "", "an option of ah in IPv6 only"));
            }
        }
        "statistic" => {
            let mode = get("mode").unwrap_or("");
            if let Some(p) = get("probability") {
                let ok =
                    mode == "random" && p.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v));
                if !ok {
                    return Err(invalid(
                        "--probability",
                        p,
                        "a probability from 0 to 1 with --mode random",
                    ));
                }
            }
            if mode == "nth" {
                let every = get("every").and_then(|e| parse_number(e, U32));
                let packet = get("packet").and_then(|p| parse_number(p, U32));
                match (every, packet) {
                    (Some(e), Some(p)) if p < e => {}
                    _ => {
                        return Err(ModelError::new(ModelErrorKind::MissingOption {
                            module: "statistic --mode nth".into(),
                            what: "--every N and --packet P with P < N",
                        }));
                    }
                }
            }
        }
        "connlimit" => {
            if let Some(m) = get("connlimit-mask").and_then(|m| parse_number(m, 128)) {
                let max = if family == Family::V4 { 32 } else { 128 };
                if m > max {
                    return Err(invalid(
                        "--connlimit-mask",
                        &m.to_string(),
                        "a prefix length of the family",
                    ));
                }
            }
        }
        "connlabel" => {
            if let Some(l) = get("label")
                && let Some(n) = parse_number(l, u64::MAX)
                && n > 127
            {
                return Err(invalid("--label", l, "a label bit from 0 to 127"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks a target without a typed view; `Ok` when the target has no specification.
pub(super) fn check_target(name: &str, opts: &[Opt], family: Family) -> Result<(), ModelError> {
    let Some(spec) = TARGETS.iter().find(|s| s.name == name) else { return Ok(()) };
    check(spec, opts)?;
    let get = |n: &str| {
        opts.iter().find(|o| o.name == n).map(|o| o.args.first().map_or("", String::as_str))
    };
    if matches!(name, "DNPT" | "SNPT") {
        let len = |n: &str| -> Option<u8> {
            let a: crate::Address = get(n)?.parse().ok()?;
            (a.family() == Some(Family::V6)).then(|| a.prefix_len()).flatten()
        };
        match (len("src-pfx"), len("dst-pfx")) {
            (Some(a), Some(b)) if a == b => {}
            _ => {
                return Err(ModelError::new(ModelErrorKind::Conflict(format!(
                    "{name} needs --src-pfx and --dst-pfx IPv6 prefixes of the same length"
                ))));
            }
        }
    }
    if name == "NFQUEUE"
        && let Some(b) = get("queue-balance")
    {
        let ok = range(&"--queue-balance", b, |s| parse_number(s, 65534), 65534)
            .is_ok_and(|(lo, hi)| b.contains(':') && lo < hi);
        if !ok {
            return Err(invalid("--queue-balance", b, "a range A:B with A < B <= 65534"));
        }
    }
    if name == "NFQUEUE" && get("queue-cpu-fanout").is_some() && get("queue-balance").is_none() {
        return Err(ModelError::new(ModelErrorKind::MissingOption {
            module: "NFQUEUE --queue-cpu-fanout".into(),
            what: "--queue-balance",
        }));
    }
    if name == "TEE"
        && let Some(g) = get("gateway")
        && !g.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_ipv4() == (family == Family::V4))
    {
        return Err(invalid("--gateway", g, "an address of the ruleset's family"));
    }
    if (name == "TEE" || name == "CT")
        && let Some(o) = opts.iter().find(|o| o.negated)
    {
        return Err(invalid(&format!("--{}", o.name), "!", "an option that cannot be negated"));
    }
    if name == "CT" {
        for o in opts.iter().filter(|o| o.name.starts_with("zone")) {
            let z = o.args.first().map_or("", String::as_str);
            if z != "mark" && parse_number(z, 65535).is_none() {
                return Err(invalid(&format!("--{}", o.name), z, "a zone from 0 to 65535 or mark"));
            }
        }
    }
    Ok(())
}

fn check(spec: &Spec, opts: &[Opt]) -> Result<(), ModelError> {
    let module = spec.name;
    for (i, o) in opts.iter().enumerate() {
        let Some((_, arg)) = spec.opts.iter().find(|(n, _)| *n == o.name) else {
            return Err(ModelError::new(ModelErrorKind::InvalidValue {
                option: format!("module {module}"),
                value: format!("--{}", o.name),
                expected: "an option of that module",
            }));
        };
        if opts[..i].iter().any(|p| p.name == o.name) {
            return Err(ModelError::new(ModelErrorKind::Conflict(format!(
                "--{} given twice in {module}",
                o.name
            ))));
        }
        check_arg(o, *arg)?;
    }
    for group in spec.required {
        if !opts.iter().any(|o| group.contains(&o.name.as_str())) {
            return Err(ModelError::new(ModelErrorKind::MissingOption {
                module: module.to_owned(),
                what: "one of its required options",
            }));
        }
    }
    for group in spec.exclusive {
        let given: Vec<&str> =
            opts.iter().map(|o| o.name.as_str()).filter(|n| group.contains(n)).collect();
        if given.len() > 1 {
            return Err(ModelError::new(ModelErrorKind::Conflict(format!(
                "--{} in {module}",
                given.join(" and --")
            ))));
        }
    }
    Ok(())
}

fn check_arg(o: &Opt, arg: Arg) -> Result<(), ModelError> {
    // The option as written, for messages only (built when one is needed).
    let name = Dashed(&o.name);
    let one = || match o.args.as_slice() {
        [a] => Ok(a.as_str()),
        _ => Err(invalid(&name.to_string(), &o.args.join(" "), "exactly one argument")),
    };
    match arg {
        Flag if !o.args.is_empty() => {
            Err(invalid(&name.to_string(), &o.args.join(" "), "no argument"))
        }
        Flag | Any => Ok(()),
        Num(min, max) => {
            let a = one()?;
            match parse_number(a, max) {
                Some(n) if n >= min => Ok(()),
                _ => Err(invalid(&name.to_string(), a, "a number in the option's range")),
            }
        }
        Range(max) => range(&name, one()?, |s| parse_number(s, max), max).map(|_| ()),
        RangeWith(max, num) => range(&name, one()?, num, max).map(|_| ()),
        Ports => range(&name, one()?, |s| parse_port(s).ok().map(u64::from), 65535).map(|_| ()),
        Len(n) => {
            let a = one()?;
            if a.len() > n { Err(invalid(&name.to_string(), a, "a shorter value")) } else { Ok(()) }
        }
        Choice(list) => {
            let a = one()?;
            if list.iter().any(|c| c.eq_ignore_ascii_case(a)) {
                Ok(())
            } else {
                Err(invalid(&name.to_string(), a, "one of the values the option knows"))
            }
        }
        List(list) => {
            let a = one()?;
            let ok = a.split(',').all(|p| {
                list.iter().any(|c| c.eq_ignore_ascii_case(p))
                    || parse_number(p, 255).is_some_and(|n| n >= 2)
            });
            if ok {
                Ok(())
            } else {
                Err(invalid(&name.to_string(), a, "a comma list of known names"))
            }
        }
        Text => one().map(|_| ()),
    }
}

/// An option name shown with its dashes: `--name`.
struct Dashed<'a>(&'a str);

impl std::fmt::Display for Dashed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.0)
    }
}

/// Parses a range `A[:B]` (open ends allowed) and checks `A <= B`.
fn range(
    name: &dyn std::fmt::Display,
    s: &str,
    num: impl Fn(&str) -> Option<u64>,
    max: u64,
) -> Result<(u64, u64), ModelError> {
    let bad = || invalid(&name.to_string(), s, "a number or range A:B within the option's range");
    let (lo, hi) = match s.split_once(':') {
        None => {
            let n = num(s).ok_or_else(bad)?;
            (n, n)
        }
        Some((a, b)) => (
            if a.is_empty() { 0 } else { num(a).ok_or_else(bad)? },
            if b.is_empty() { max } else { num(b).ok_or_else(bad)? },
        ),
    };
    if lo > hi {
        return Err(ModelError::new(ModelErrorKind::InvertedRange {
            option: name.to_string(),
            value: s.to_owned(),
        }));
    }
    Ok((lo, hi))
}

/// `-m policy`: `--tunnel-src`/`--tunnel-dst` need `--mode tunnel` in the same element
/// (elements are separated by `--next`), and `--strict` needs at least one element.
fn check_policy(opts: &[Opt]) -> Result<(), ModelError> {
    const ELEMENT: &[&str] = &["reqid", "spi", "proto", "mode", "tunnel-src", "tunnel-dst"];
    let mut any_element = false;
    for element in opts.split(|o| o.name == "next") {
        let tunnel = element.iter().any(|o| o.name == "tunnel-src" || o.name == "tunnel-dst");
        let mode_tunnel = element
            .iter()
            .any(|o| o.name == "mode" && o.args.first().is_some_and(|m| m == "tunnel"));
        if tunnel && !mode_tunnel {
            return Err(ModelError::new(ModelErrorKind::MissingOption {
                module: "policy --tunnel-src/--tunnel-dst".into(),
                what: "--mode tunnel",
            }));
        }
        any_element |= element.iter().any(|o| ELEMENT.contains(&o.name.as_str()));
    }
    if opts.iter().any(|o| o.name == "strict") && !any_element {
        return Err(ModelError::new(ModelErrorKind::MissingOption {
            module: "policy --strict".into(),
            what: "at least one policy element (--reqid, --spi, --proto, --mode…)",
        }));
    }
    Ok(())
}
