//! The match and target text of `iptables -L`: each extension's `print()` (formats.md
//! §14.9), computed from the canonical (saved) options of the model.

use std::fmt::Write as _;

use portcullis_rules::view::icmp_type_names;
use portcullis_rules::{Action, Family, Match, Opt, Protocol, Rule, Target};

use super::services;

/// The service name `getservbyport` gives for `port`/`proto` on Debian 12.
pub(super) fn service_name(port: u16, proto: &str) -> Option<&'static str> {
    let table = match proto {
        "tcp" => services::TCP_BY_PORT,
        "udp" => services::UDP_BY_PORT,
        _ => return None,
    };
    table.binary_search_by_key(&port, |(p, _)| *p).ok().map(|i| table[i].1)
}

/// The port `getservbyname` gives for `name`/`proto`.
pub(super) fn service_port(name: &str, proto: &str) -> Option<u16> {
    services::BY_NAME
        .binary_search_by(|(n, p, _)| (*n, *p).cmp(&(name, proto)))
        .ok()
        .map(|i| services::BY_NAME[i].2)
}

/// syslog priority names as LOG prints them (`prioritynames`, first name per level).
pub(super) const LOG_LEVELS: &[&str] =
    &["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"];

/// LOG flags in print order, with their bits.
pub(super) const LOG_FLAGS: &[(&str, &str, u32)] = &[
    ("log-tcp-sequence", "tcp-sequence", 0x01),
    ("log-tcp-options", "tcp-options", 0x02),
    ("log-ip-options", "ip-options", 0x04),
    ("log-uid", "uid", 0x08),
    ("log-macdecode", "macdecode", 0x20),
];

/// TCP flag names and bits, in print order.
pub(super) const TCP_FLAGS: &[(&str, u8)] =
    &[("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20)];

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `A` or `A:B` as a range.
fn range(s: &str) -> (u64, u64) {
    match s.split_once(':') {
        Some((a, b)) => (parse_num(a).unwrap_or(0), parse_num(b).unwrap_or(0)),
        None => {
            let v = parse_num(s).unwrap_or(0);
            (v, v)
        }
    }
}

fn port(out: &mut String, p: u64, proto: &str, numeric: bool) {
    match u16::try_from(p).ok().filter(|_| !numeric).and_then(|p| service_name(p, proto)) {
        Some(name) => out.push_str(name),
        None => {
            let _ = write!(out, "{p}");
        }
    }
}

/// libxt_tcp/udp `print_ports`.
fn ports(out: &mut String, name: &str, o: &Opt, proto: &str, numeric: bool) {
    let (min, max) = range(o.arg());
    let inv = if o.negated { "!" } else { "" };
    if min != 0 || max != 0xFFFF || o.negated {
        if min == max {
            let _ = write!(out, " {name}:{inv}");
            port(out, min, proto, numeric);
        } else {
            let _ = write!(out, " {name}s:{inv}");
            port(out, min, proto, numeric);
            out.push(':');
            port(out, max, proto, numeric);
        }
    }
}

fn tcp_flag_bits(list: &str) -> u8 {
    list.split(',')
        .map(|f| match f {
            "ALL" => 0x3F,
            "NONE" => 0,
            f => TCP_FLAGS.iter().find(|(n, _)| *n == f).map_or(0, |(_, b)| *b),
        })
        .fold(0, |a, b| a | b)
}

fn tcp_flag_names(out: &mut String, bits: u8) {
    let mut first = true;
    for (name, b) in TCP_FLAGS {
        if bits & b != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
    if first {
        out.push_str("NONE");
    }
}

/// The protocol name used for service lookups of a rule (`-p`).
fn rule_proto(rule: &Rule) -> &'static str {
    match rule.proto.as_ref().and_then(|p| p.value.number()) {
        Some(6) => "tcp",
        Some(17) => "udp",
        _ => "",
    }
}

fn neg(out: &mut String, o: &Opt) {
    if o.negated {
        out.push_str(" !");
    }
}

fn icmp_type(out: &mut String, o: &Opt, table: &[(&str, u8, u8, u8)], numeric: bool) {
    let arg = o.arg();
    let (ty, min, max) = if arg == "any" {
        (255, 0, 255)
    } else {
        match arg.split_once('/') {
            Some((t, c)) => {
                let c = c.parse().unwrap_or(0);
                (t.parse().unwrap_or(0), c, c)
            }
            None => (arg.parse().unwrap_or(0), 0, 255),
        }
    };
    let named = table.iter().find(|(_, t, a, b)| (*t, *a, *b) == (ty, min, max));
    if let Some((name, ..)) = named.filter(|_| !numeric) {
        let _ = write!(out, " {}{name}", if o.negated { "!" } else { "" });
        return;
    }
    if o.negated {
        out.push_str(" !");
    }
    let _ = write!(out, "type {ty}");
    if min == max {
        let _ = write!(out, " code {min}");
    } else if min != 0 || max != 255 {
        let _ = write!(out, " codes {min}-{max}");
    }
}

/// Appends each option as ` [!] name args…` (the shape of many `print()`s).
fn plain_opts(out: &mut String, opts: &[Opt]) {
    for o in opts {
        neg(out, o);
        let _ = write!(out, " {}", o.name);
        for a in &o.args {
            let _ = write!(out, " {a}");
        }
    }
}

fn match_text(out: &mut String, m: &Match, rule: &Rule, family: Family, numeric: bool) {
    let o = |name: &str| m.opt(name);
    match m.name.as_str() {
        "tcp" | "udp" => {
            let _ = write!(out, " {}", m.name);
            for opt in &m.opts {
                match opt.name.as_str() {
                    "sport" | "source-port" => ports(out, "spt", opt, &m.name, numeric),
                    "dport" | "destination-port" => ports(out, "dpt", opt, &m.name, numeric),
                    "tcp-option" => {
                        let _ = write!(
                            out,
                            " option={}{}",
                            if opt.negated { "!" } else { "" },
                            opt.arg()
                        );
                    }
                    "tcp-flags" => {
                        let mask = tcp_flag_bits(opt.arg());
                        let comp = tcp_flag_bits(opt.args.get(1).map_or("", String::as_str));
                        let _ = write!(out, " flags:{}", if opt.negated { "!" } else { "" });
                        if numeric {
                            let _ = write!(out, "0x{mask:02X}/0x{comp:02X}");
                        } else {
                            tcp_flag_names(out, mask);
                            out.push('/');
                            tcp_flag_names(out, comp);
                        }
                    }
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        "sctp" | "dccp" | "udplite" => {
            let _ = write!(out, " {}", m.name);
            for opt in &m.opts {
                match opt.name.as_str() {
                    "sport" | "source-port" => ports(out, "spt", opt, "", true),
                    "dport" | "destination-port" => ports(out, "dpt", opt, "", true),
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        "icmp" => {
            out.push_str(" icmp");
            if let Some(t) = o("icmp-type") {
                icmp_type(out, t, icmp_type_names(Family::V4), numeric);
            }
        }
        "icmp6" => {
            out.push_str(" ipv6-icmp");
            if let Some(t) = o("icmpv6-type") {
                icmp_type(out, t, icmp_type_names(Family::V6), numeric);
            }
        }
        "multiport" => {
            for opt in &m.opts {
                let kind = match opt.name.as_str() {
                    "sports" | "source-ports" => "sports",
                    "dports" | "destination-ports" => "dports",
                    _ => "ports",
                };
                let _ = write!(out, " multiport {kind} ");
                neg(out, opt);
                let proto = rule_proto(rule);
                for (i, p) in opt.arg().split(',').enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let (a, b) = range(p);
                    port(out, a, proto, numeric);
                    if p.contains(':') {
                        out.push(':');
                        port(out, b, proto, numeric);
                    }
                }
            }
        }
        "conntrack" | "state" => plain_opts(out, &m.opts),
        "comment" => {
            let _ = write!(out, " /* {} */", o("comment").map_or("", Opt::arg));
        }
        "limit" => {
            let rate = o("limit").map_or("3/hour", Opt::arg);
            let burst = o("limit-burst").map_or("5", Opt::arg);
            let _ = write!(out, " limit: avg {rate} burst {burst}");
        }
        "hashlimit" => hashlimit(out, m),
        "recent" => recent(out, m),
        "connlimit" => {
            let dst = o("connlimit-daddr").is_some();
            let mask = o("connlimit-mask")
                .map_or(if family == Family::V6 { "128" } else { "32" }, Opt::arg);
            let (cmp, n) = match (o("connlimit-above"), o("connlimit-upto")) {
                (Some(a), _) if !a.negated => (">", a.arg()),
                (Some(a), _) => ("<=", a.arg()),
                (None, Some(u)) if u.negated => (">", u.arg()),
                (None, Some(u)) => ("<=", u.arg()),
                (None, None) => (">", "0"),
            };
            let _ = write!(out, " #conn {}/{mask} {cmp} {n}", if dst { "dst" } else { "src" });
        }
        "iprange" => {
            for opt in &m.opts {
                let which = if opt.name == "src-range" { "source" } else { "destination" };
                let _ = write!(out, " {which} IP range");
                neg(out, opt);
                let _ = write!(out, " {}", opt.arg());
            }
        }
        "mac" => {
            out.push_str(" MAC");
            if let Some(opt) = o("mac-source") {
                neg(out, opt);
                let _ = write!(out, " {}", opt.arg());
            }
        }
        "addrtype" => {
            out.push_str(" ADDRTYPE match");
            for opt in &m.opts {
                match opt.name.as_str() {
                    "src-type" | "dst-type" => {
                        let _ = write!(
                            out,
                            " {} {}{}",
                            opt.name,
                            if opt.negated { "!" } else { "" },
                            opt.arg()
                        );
                    }
                    "limit-iface-in" => out.push_str(" limit-in"),
                    "limit-iface-out" => out.push_str(" limit-out"),
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        "pkttype" => {
            if let Some(opt) = o("pkt-type") {
                let _ =
                    write!(out, " PKTTYPE {}= {}", if opt.negated { "!" } else { "" }, opt.arg());
            }
        }
        "length" => {
            if let Some(opt) = o("length") {
                let (a, b) = range(opt.arg());
                let _ = write!(out, " length {}", if opt.negated { "!" } else { "" });
                if a == b {
                    let _ = write!(out, "{a}");
                } else {
                    let _ = write!(out, "{a}:{b}");
                }
            }
        }
        "ttl" | "hl" => {
            let upper = m.name.to_ascii_uppercase();
            if let Some(opt) = m.opts.first() {
                let cmp = match (opt.name.rsplit('-').next(), opt.negated) {
                    (Some("eq"), false) => "==",
                    (Some("eq"), true) => "!=",
                    (Some("lt"), _) => "<",
                    _ => ">",
                };
                let _ = write!(out, " {upper} match {upper} {cmp} {}", opt.arg());
            }
        }
        "string" => string_text(out, m),
        "time" => time_text(out, m),
        "mark" => {
            if let Some(opt) = o("mark") {
                out.push_str(" mark match");
                neg(out, opt);
                let _ = write!(out, " {}", opt.arg());
            }
        }
        "connmark" => {
            if let Some(opt) = o("mark") {
                out.push_str(" connmark match ");
                neg(out, opt);
                let _ = write!(out, " {}", opt.arg());
            }
        }
        "dscp" => {
            for opt in &m.opts {
                let v = if opt.name == "dscp-class" {
                    dscp_class(opt.arg())
                } else {
                    parse_num(opt.arg()).unwrap_or(0)
                };
                let _ = write!(out, " DSCP match {}0x{v:02x}", if opt.negated { "!" } else { "" });
            }
        }
        "tos" => {
            if let Some(opt) = o("tos") {
                let (v, mask) = value_mask(opt.arg(), 0xff);
                let _ = write!(
                    out,
                    " tos match{}0x{v:02x}/0x{mask:02x}",
                    if opt.negated { "!" } else { "" }
                );
            }
        }
        "statistic" => {
            out.push_str(" statistic");
            let inv = m.opts.iter().any(|x| x.negated);
            match o("mode").map(Opt::arg) {
                Some("random") => {
                    let _ = write!(
                        out,
                        " mode random{} probability {}",
                        if inv { " !" } else { "" },
                        o("probability").map_or("", Opt::arg)
                    );
                }
                _ => {
                    let _ = write!(
                        out,
                        " mode nth{} every {}",
                        if inv { " !" } else { "" },
                        o("every").map_or("", Opt::arg)
                    );
                    if let Some(p) = o("packet").filter(|p| p.arg() != "0") {
                        let _ = write!(out, " packet {}", p.arg());
                    }
                }
            }
        }
        "physdev" => {
            out.push_str(" PHYSDEV match");
            for opt in &m.opts {
                neg(out, opt);
                let _ = write!(out, " --{}", opt.name);
                for a in &opt.args {
                    let _ = write!(out, " {a}");
                }
            }
        }
        "policy" => {
            out.push_str(" policy match");
            for opt in &m.opts {
                neg(out, opt);
                let arg = if opt.name == "proto" && numeric {
                    opt.arg()
                        .parse::<Protocol>()
                        .ok()
                        .and_then(|p| p.number())
                        .map_or_else(|| opt.arg().to_owned(), |n| n.to_string())
                } else {
                    opt.arg().to_owned()
                };
                let name = if opt.name == "next" { "next" } else { opt.name.as_str() };
                let _ = write!(out, " {name}");
                if !opt.args.is_empty() {
                    let _ = write!(out, " {arg}");
                }
            }
        }
        "u32" => {
            out.push_str(" u32");
            if let Some(opt) = o("u32") {
                neg(out, opt);
                let _ = write!(out, " \"{}\"", opt.arg());
            }
        }
        "helper" => {
            if let Some(opt) = o("helper") {
                neg(out, opt);
                let _ = write!(out, " helper match \"{}\"", opt.arg());
            }
        }
        "quota" => {
            if let Some(opt) = o("quota") {
                neg(out, opt);
                let _ = write!(out, " quota: {} bytes", opt.arg());
            }
        }
        "tcpmss" => {
            if let Some(opt) = o("mss") {
                let (a, b) = range(opt.arg());
                let _ = write!(out, " tcpmss match {}", if opt.negated { "!" } else { "" });
                if a == b {
                    let _ = write!(out, "{a}");
                } else {
                    let _ = write!(out, "{a}:{b}");
                }
            }
        }
        "connbytes" => {
            if let Some(opt) = o("connbytes") {
                let _ =
                    write!(out, " connbytes {}{}", if opt.negated { "! " } else { "" }, opt.arg());
            }
            if let Some(opt) = o("connbytes-mode") {
                let _ = write!(out, " connbytes mode {}", opt.arg());
            }
            if let Some(opt) = o("connbytes-dir") {
                let _ = write!(out, " connbytes direction {}", opt.arg());
            }
        }
        "ecn" => {
            out.push_str(" ECN match");
            for (name, label) in [("ecn-tcp-ece", "ECE"), ("ecn-tcp-cwr", "CWR")] {
                if let Some(opt) = o(name) {
                    neg(out, opt);
                    let _ = write!(out, " {label}");
                }
            }
            if let Some(opt) = o("ecn-ip-ect") {
                neg(out, opt);
                let _ = write!(out, " ECT={}", opt.arg());
            }
        }
        "devgroup" => {
            for opt in &m.opts {
                neg(out, opt);
                let _ = write!(out, " {} {}", opt.name, opt.arg());
            }
        }
        "cpu" => {
            if let Some(opt) = o("cpu") {
                let _ = write!(out, " cpu {}{}", if opt.negated { "! " } else { "" }, opt.arg());
            }
        }
        "esp" | "ah" => {
            let _ = write!(out, " {}", m.name);
            for opt in &m.opts {
                let key = "spi";
                let (a, b) = range(opt.arg());
                let inv = if opt.negated { "!" } else { "" };
                if a == b {
                    let _ = write!(out, " {key}:{inv}{a}");
                } else {
                    let _ = write!(out, " {key}s:{inv}{a}:{b}");
                }
            }
        }
        "rt" => {
            out.push_str(" rt");
            for opt in &m.opts {
                let inv = if opt.negated { "!" } else { "" };
                match opt.name.as_str() {
                    "rt-type" => {
                        let _ = write!(out, " type:{inv}{}", opt.arg());
                    }
                    "rt-segsleft" => {
                        let (a, b) = range(opt.arg());
                        if a == b {
                            let _ = write!(out, " segsleft:{inv}{a}");
                        } else {
                            let _ = write!(out, " segslefts:{inv}{a}:{b}");
                        }
                    }
                    "rt-len" => {
                        let _ = write!(out, " length:{inv}{}", opt.arg());
                    }
                    "rt-0-res" => out.push_str(" reserved"),
                    "rt-0-not-strict" => out.push_str(" 0-not-strict"),
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        "frag" => {
            out.push_str(" frag ");
            for opt in &m.opts {
                let inv = if opt.negated { "!" } else { "" };
                match opt.name.as_str() {
                    "fragid" => {
                        let (a, b) = range(opt.arg());
                        if a == b {
                            let _ = write!(out, " id:{inv}{a}");
                        } else {
                            let _ = write!(out, " ids:{inv}{a}:{b}");
                        }
                    }
                    "fraglen" => {
                        let _ = write!(out, " length:{inv}{}", opt.arg());
                    }
                    "fragres" => out.push_str(" reserved"),
                    "fragfirst" => out.push_str(" first"),
                    "fragmore" => out.push_str(" more"),
                    "fraglast" => out.push_str(" last"),
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        "ipv6header" => {
            out.push_str(" ipv6header");
            if let Some(opt) = o("header") {
                let _ = write!(out, " flags:{}", if opt.negated { "!" } else { "" });
                if numeric {
                    let bits = opt.arg().split(',').map(ipv6header_bit).fold(0, |a, b| a | b);
                    let _ = write!(out, "0x{bits:02X}");
                } else {
                    out.push_str(opt.arg());
                }
            }
            if o("soft").is_some() {
                out.push_str(" soft");
            }
        }
        "rpfilter" => {
            out.push_str(" rpfilter");
            for name in ["loose", "validmark", "accept-local", "invert"] {
                if o(name).is_some() {
                    let _ = write!(out, " {name}");
                }
            }
        }
        "owner" => {
            for opt in &m.opts {
                neg(out, opt);
                match opt.name.as_str() {
                    "socket-exists" => out.push_str(" owner socket exists"),
                    "uid-owner" | "gid-owner" => {
                        let label = if opt.name == "uid-owner" { "UID" } else { "GID" };
                        let id = opt.arg();
                        let shown = if !numeric && id == "0" { "root" } else { id };
                        let _ = write!(out, " owner {label} match {shown}");
                    }
                    "suppl-groups" => out.push_str(" incl. suppl. groups"),
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        "bpf" => {
            // bpf_print: no leading space, the program without its length, and a NUL
            // byte as the last instruction's separator.
            if let Some(code) = o("bytecode") {
                out.push_str("match bpf ");
                out.push_str(code.arg().split_once(',').map_or("", |(_, prog)| prog));
                out.push('\0');
            }
        }
        "set" => {
            for opt in &m.opts {
                neg(out, opt);
                match opt.name.as_str() {
                    "match-set" => {
                        let _ = write!(out, " match-set {}", opt.args.join(" "));
                    }
                    _ => plain_opts(out, std::slice::from_ref(opt)),
                }
            }
        }
        _ => {
            let _ = write!(out, " {}", m.name);
            plain_opts(out, &m.opts);
        }
    }
}

fn hashlimit(out: &mut String, m: &Match) {
    let (kind, rate) = match (m.opt("hashlimit-upto"), m.opt("hashlimit-above")) {
        (Some(r), _) => ("up to", r.arg()),
        (None, Some(r)) => ("above", r.arg()),
        (None, None) => ("up to", m.opt("hashlimit").map_or("", Opt::arg)),
    };
    let burst = m.opt("hashlimit-burst").map_or("5", Opt::arg);
    let _ = write!(out, " limit: {kind} {rate} burst {burst}");
    if let Some(mode) = m.opt("hashlimit-mode") {
        let _ = write!(out, " mode {}", mode.arg().replace(',', "-"));
    }
    for (opt, label) in [
        ("hashlimit-htable-size", "htable-size"),
        ("hashlimit-htable-max", "htable-max"),
        ("hashlimit-htable-gcinterval", "htable-gcinterval"),
        ("hashlimit-htable-expire", "htable-expire"),
        ("hashlimit-srcmask", "srcmask"),
        ("hashlimit-dstmask", "dstmask"),
    ] {
        if let Some(o) = m.opt(opt) {
            let _ = write!(out, " {label} {}", o.arg());
        }
    }
}

fn recent(out: &mut String, m: &Match) {
    if m.opts.iter().any(|o| o.negated) {
        out.push_str(" !");
    }
    out.push_str(" recent:");
    for (opt, label) in
        [("set", " SET"), ("rcheck", " CHECK"), ("update", " UPDATE"), ("remove", " REMOVE")]
    {
        if m.opt(opt).is_some() {
            out.push_str(label);
        }
    }
    if let Some(o) = m.opt("seconds") {
        let _ = write!(out, " seconds: {}", o.arg());
    }
    if m.opt("reap").is_some() {
        out.push_str(" reap");
    }
    if let Some(o) = m.opt("hitcount") {
        let _ = write!(out, " hit_count: {}", o.arg());
    }
    if m.opt("rttl").is_some() {
        out.push_str(" TTL-Match");
    }
    let _ = write!(out, " name: {}", m.opt("name").map_or("DEFAULT", Opt::arg));
    if m.opt("rsource").is_some() {
        out.push_str(" side: source");
    } else if m.opt("rdest").is_some() {
        out.push_str(" side: dest");
    }
    if let Some(o) = m.opt("mask") {
        let _ = write!(out, " mask: {}", o.arg());
    }
}

fn string_text(out: &mut String, m: &Match) {
    let (opt, hex) = match (m.opt("string"), m.opt("hex-string")) {
        (Some(o), _) => (Some(o), false),
        (None, Some(o)) => (Some(o), true),
        (None, None) => (None, false),
    };
    let _ = write!(out, " STRING match {}", if opt.is_some_and(|o| o.negated) { "!" } else { "" });
    if let Some(o) = opt {
        if hex {
            let _ = write!(out, " {}", o.arg());
        } else {
            let _ = write!(out, " \"{}\"", o.arg());
        }
    }
    if let Some(a) = m.opt("algo") {
        let _ = write!(out, " ALGO name {}", a.arg());
    }
    if let Some(f) = m.opt("from") {
        let _ = write!(out, " FROM {}", f.arg());
    }
    if let Some(t) = m.opt("to") {
        let _ = write!(out, " TO {}", t.arg());
    }
    if m.opt("icase").is_some() {
        out.push_str(" ICASE");
    }
}

fn time_text(out: &mut String, m: &Match) {
    out.push_str(" TIME");
    if let (Some(a), Some(b)) = (m.opt("timestart"), m.opt("timestop")) {
        let _ = write!(out, " from {} to {}", a.arg(), b.arg());
    }
    if let Some(d) = m.opt("weekdays") {
        let _ = write!(out, " on {}", d.arg());
    }
    if let Some(d) = m.opt("monthdays") {
        let _ = write!(out, " on {}", d.arg());
    }
    if let Some(d) = m.opt("datestart") {
        let _ = write!(out, " starting from {}", d.arg().replace('T', " "));
    }
    if let Some(d) = m.opt("datestop").filter(|d| d.arg() != "2038-01-19T03:14:07") {
        let _ = write!(out, " until date {}", d.arg().replace('T', " "));
    }
    if m.opt("kerneltz").is_none() {
        out.push_str(" UTC");
    }
    if m.opt("contiguous").is_some() {
        out.push_str(" contiguous");
    }
}

fn dscp_class(name: &str) -> u64 {
    let n = name.to_ascii_uppercase();
    match n.as_str() {
        "EF" => 0x2e,
        "BE" => 0,
        _ => {
            if let Some(cs) = n.strip_prefix("CS") {
                cs.parse::<u64>().map_or(0, |c| c << 3)
            } else if let Some(af) = n.strip_prefix("AF") {
                let v: u64 = af.parse().unwrap_or(0);
                ((v / 10) << 3) | ((v % 10) << 1)
            } else {
                0
            }
        }
    }
}

fn ipv6header_bit(name: &str) -> u8 {
    match name {
        "hop" | "hop-by-hop" | "ipv6-hop" => 0x80,
        "dst" | "ipv6-opts" => 0x40,
        "route" | "ipv6-route" => 0x20,
        "frag" | "ipv6-frag" => 0x10,
        "auth" | "ah" => 0x08,
        "esp" => 0x04,
        "none" | "ipv6-nonxt" => 0x02,
        "prot" | "protocol" => 0x01,
        _ => 0,
    }
}

/// `V/M` or `V` (mask `default`).
fn value_mask(s: &str, default: u64) -> (u64, u64) {
    match s.split_once('/') {
        Some((v, m)) => (parse_num(v).unwrap_or(0), parse_num(m).unwrap_or(default)),
        None => (parse_num(s).unwrap_or(0), default),
    }
}

/// The MARK/CONNMARK `xset` family: set / and / or / xor / xset.
fn xmark(out: &mut String, prefix: &str, v: u64, m: u64) {
    if v == 0 {
        let _ = write!(out, " {prefix} and 0x{:x}", !m & 0xffff_ffff);
    } else if v == m {
        let _ = write!(out, " {prefix} or 0x{v:x}");
    } else if m == 0 {
        let _ = write!(out, " {prefix} xor 0x{v:x}");
    } else if m == 0xffff_ffff {
        let _ = write!(out, " {prefix} set 0x{v:x}");
    } else {
        let _ = write!(out, " {prefix} xset 0x{v:x}/0x{m:x}");
    }
}

fn target_text(out: &mut String, t: &Target, family: Family, numeric: bool) {
    let o = |name: &str| t.opt(name);
    match t.name.as_str() {
        "REJECT" => {
            let default = if family == Family::V6 {
                "icmp6-port-unreachable"
            } else {
                "icmp-port-unreachable"
            };
            let _ = write!(out, " reject-with {}", o("reject-with").map_or(default, Opt::arg));
        }
        "LOG" => {
            out.push_str(" LOG");
            let level: usize = o("log-level").and_then(|l| l.arg().parse().ok()).unwrap_or(4);
            let flags: u32 =
                LOG_FLAGS.iter().filter(|(n, ..)| o(n).is_some()).map(|(.., b)| b).sum();
            if numeric {
                let _ = write!(out, " flags {flags} level {level}");
            } else {
                match LOG_LEVELS.get(level) {
                    Some(name) => {
                        let _ = write!(out, " level {name}");
                    }
                    None => {
                        let _ = write!(out, " UNKNOWN level {level}");
                    }
                }
                for (opt, label, _) in LOG_FLAGS {
                    if o(opt).is_some() {
                        let _ = write!(out, " {label}");
                    }
                }
            }
            if let Some(p) = o("log-prefix").filter(|p| !p.arg().is_empty()) {
                let _ = write!(out, " prefix \"{}\"", p.arg());
            }
        }
        "DNAT" | "SNAT" | "NETMAP" => {
            for opt in &t.opts {
                match opt.name.as_str() {
                    "to-destination" | "to-source" | "to" => {
                        let _ = write!(out, " to:{}", opt.arg());
                    }
                    other => {
                        let _ = write!(out, " {other}");
                    }
                }
            }
        }
        "MASQUERADE" | "REDIRECT" => {
            let label = if t.name == "MASQUERADE" { " masq ports: " } else { " redir ports " };
            for opt in &t.opts {
                match opt.name.as_str() {
                    "to-ports" => {
                        out.push_str(label);
                        out.push_str(opt.arg());
                    }
                    other => {
                        let _ = write!(out, " {other}");
                    }
                }
            }
        }
        "MARK" => {
            if let Some(x) = o("set-xmark") {
                let (v, m) = value_mask(x.arg(), 0xffff_ffff);
                xmark(out, "MARK", v, m);
            } else {
                plain_opts(out, &t.opts);
            }
        }
        "CONNMARK" => {
            let nf = o("nfmask").map_or(0xffff_ffff, |x| parse_num(x.arg()).unwrap_or(0));
            let ct = o("ctmask").map_or(0xffff_ffff, |x| parse_num(x.arg()).unwrap_or(0));
            let mode = if o("restore-mark").is_some() { "restore" } else { "save" };
            if let Some(x) = o("set-xmark") {
                let (v, m) = value_mask(x.arg(), 0xffff_ffff);
                xmark(out, "CONNMARK", v, m);
            } else if nf == 0xffff_ffff && ct == 0xffff_ffff {
                let _ = write!(out, " CONNMARK {mode}");
            } else if nf == ct {
                let _ = write!(out, " CONNMARK {mode} mask 0x{nf:x}");
            } else {
                let _ = write!(out, " CONNMARK {mode} nfmask 0x{nf:x} ctmask ~0x{ct:x}");
            }
        }
        "TCPMSS" => match o("set-mss") {
            Some(v) => {
                let _ = write!(out, " TCPMSS set {}", v.arg());
            }
            None => out.push_str(" TCPMSS clamp to PMTU"),
        },
        "DSCP" => {
            let v = o("set-dscp").map_or_else(
                || o("set-dscp-class").map_or(0, |c| dscp_class(c.arg())),
                |v| parse_num(v.arg()).unwrap_or(0),
            );
            let _ = write!(out, " DSCP set 0x{v:02x}");
        }
        "TOS" => {
            if let Some(x) = o("set-tos") {
                let (v, m) = value_mask(x.arg(), 0xff);
                let symbolic = [
                    ("Minimize-Delay", 0x10),
                    ("Maximize-Throughput", 0x08),
                    ("Maximize-Reliability", 0x04),
                    ("Minimize-Cost", 0x02),
                    ("Normal-Service", 0x00),
                ];
                match symbolic.iter().find(|(_, s)| *s == v).filter(|_| m == 0x3f && !numeric) {
                    Some((name, _)) => {
                        // tos_try_print_symbolic(" TOS set", …) prints " %s%s".
                        let _ = write!(out, "  TOS set{name}");
                    }
                    None => {
                        let _ = write!(out, " TOS set 0x{v:02x}/0x{m:02x}");
                    }
                }
            } else {
                plain_opts(out, &t.opts);
            }
        }
        "TTL" | "HL" => {
            let p = t.name.to_ascii_lowercase();
            for opt in &t.opts {
                let verb = match opt.name.strip_prefix(&format!("{p}-")) {
                    Some("set") => "set to",
                    Some("dec") => "decrement by",
                    _ => "increment by",
                };
                let _ = write!(out, " {} {verb} {}", t.name, opt.arg());
            }
        }
        "CHECKSUM" => out.push_str(" CHECKSUM fill"),
        "CLASSIFY" => {
            let class = o("set-class").map_or("", Opt::arg);
            let (a, b) = class.split_once(':').unwrap_or((class, "0"));
            let a = u64::from_str_radix(a, 16).unwrap_or(0);
            let b = u64::from_str_radix(b, 16).unwrap_or(0);
            let _ = write!(out, " CLASSIFY set {a:x}:{b:x}");
        }
        "TPROXY" => {
            let ip =
                o("on-ip").map_or(if family == Family::V6 { "::" } else { "0.0.0.0" }, Opt::arg);
            let port = o("on-port").map_or("0", Opt::arg);
            let _ = write!(out, " TPROXY redirect {ip}:{port}");
            if let Some(m) = o("tproxy-mark") {
                let (v, mask) = value_mask(m.arg(), 0xffff_ffff);
                let _ = write!(out, " mark 0x{v:x}/0x{mask:x}");
            }
        }
        "CT" => {
            out.push_str(" CT");
            for opt in &t.opts {
                let _ = write!(out, " {}", opt.name);
                for a in &opt.args {
                    let _ = write!(out, " {a}");
                }
            }
        }
        "NOTRACK" => out.push_str(" NOTRACK"),
        "NFQUEUE" => {
            out.push_str(" NFQUEUE");
            if let Some(n) = o("queue-num") {
                let _ = write!(out, " num {}", n.arg());
            }
            if let Some(b) = o("queue-balance") {
                let _ = write!(out, " balance {}", b.arg());
            }
            if o("queue-bypass").is_some() {
                out.push_str(" bypass");
            }
            if o("queue-cpu-fanout").is_some() {
                out.push_str(" cpu-fanout");
            }
        }
        "NFLOG" => {
            for opt in &t.opts {
                let _ = write!(out, " {}", opt.name);
                for a in &opt.args {
                    let _ = write!(out, " {}", crate::token::quote(a));
                }
            }
        }
        "CONNSECMARK" => {
            let mode = if o("save").is_some() { "save" } else { "restore" };
            let _ = write!(out, " CONNSECMARK {mode}");
        }
        "AUDIT" => {
            let _ = write!(out, " AUDIT {}", o("type").map_or("", Opt::arg));
        }
        "ACCEPT" | "DROP" | "RETURN" | "QUEUE" | "TRACE" => {}
        _ if t.opts.is_empty() => {}
        _ => plain_opts(out, &t.opts),
    }
}

/// Appends every match's and the target's `-L` text.
pub(super) fn rule_text(out: &mut String, rule: &Rule, family: Family, numeric: bool) {
    for m in &rule.matches {
        match_text(out, m, rule, family, numeric);
    }
    if let Some(Action::Jump(t)) = &rule.action {
        target_text(out, t, family, numeric);
    }
}
