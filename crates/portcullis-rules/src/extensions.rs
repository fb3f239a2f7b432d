//! Per-extension knowledge for canonicalisation: option order, defaults, value forms.
//!
//! Every function here rewrites the options of one module into exactly what that
//! extension's `save()` prints (`formats.md` §9, §10). A module whose options do not
//! parse is left as written: canonicalisation never fails, validation reports the error.

use std::net::IpAddr;

use crate::Family;
use crate::addr::{Address, Protocol};
use crate::names::Backend;
use crate::rule::{Action, Match, Negatable, Opt, Rule, Target};
use crate::view::{
    AddrTypes, CtStates, CtStatus, IcmpType, LimitMatch, MacAddr, MarkMask, MatchView, PortRange,
    TargetView, TcpFlagsSpec, U32Range, parse_multiport_list, parse_number, parse_port, parse_u32,
};

/// Rewrites every match of `rule` into its saved form.
pub(crate) fn canonicalize_matches(rule: &mut Rule, backend: Backend, family: Family) {
    for m in &mut rule.matches {
        if let Some(opts) = canon_match(m, family) {
            m.opts = opts;
        }
    }
    if backend == Backend::Nft {
        merge_nft(rule, "tcp", family);
        merge_nft(rule, "udp", family);
    }
}

/// Rewrites the target of `rule` into its saved form.
pub(crate) fn canonicalize_action(rule: &mut Rule, backend: Backend, family: Family) {
    if let Some(Action::Jump(t)) = &mut rule.action
        && let Some(opts) = canon_target(t, backend, family)
    {
        t.opts = opts;
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn opt(negated: bool, name: &str, args: &[String]) -> Opt {
    Opt { negated, name: name.to_owned(), args: args.to_vec() }
}

fn opt1(negated: bool, name: &str, arg: impl Into<String>) -> Opt {
    Opt { negated, name: name.to_owned(), args: vec![arg.into()] }
}

fn flag(name: &str) -> Opt {
    Opt { negated: false, name: name.to_owned(), args: Vec::new() }
}

/// Sorts `opts` stably by the position of their name in `order` (unknown names last).
fn reorder(mut opts: Vec<Opt>, order: &[&str]) -> Vec<Opt> {
    opts.sort_by_key(|o| order.iter().position(|n| *n == o.name).unwrap_or(order.len()));
    opts
}

/// Renames every option called `from` to `to`.
fn alias(opts: &mut [Opt], from: &str, to: &str) {
    for o in opts.iter_mut().filter(|o| o.name == from) {
        o.name = to.to_owned();
    }
}

/// The single argument of an option.
fn arg(o: &Opt) -> Option<&str> {
    match o.args.as_slice() {
        [a] => Some(a.as_str()),
        _ => None,
    }
}

/// Parses `A`, `A:B`, `A:`, `:B`, `:` with `num` for each side and `max` for an open
/// upper end; `None` when a side does not parse or the range is inverted.
fn range(s: &str, max: u64, num: impl Fn(&str) -> Option<u64>) -> Option<(u64, u64)> {
    let (lo, hi) = match s.split_once(':') {
        None => {
            let n = num(s)?;
            (n, n)
        }
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { num(a)? };
            let hi = if b.is_empty() { max } else { num(b)? };
            (lo, hi)
        }
    };
    (lo <= hi && hi <= max).then_some((lo, hi))
}

fn range_text(lo: u64, hi: u64) -> String {
    if lo == hi { lo.to_string() } else { format!("{lo}:{hi}") }
}

/// Canonicalises the range option `o`: `None` when it does not parse, `Some(None)` when it
/// is dropped (full range, not negated, and `drop_full`), else the new option.
fn range_opt(
    o: &Opt,
    max: u64,
    drop_full: bool,
    num: impl Fn(&str) -> Option<u64>,
) -> Option<Option<Opt>> {
    let (lo, hi) = range(arg(o)?, max, num)?;
    if drop_full && !o.negated && lo == 0 && hi == max {
        return Some(None);
    }
    Some(Some(opt1(o.negated, &o.name, range_text(lo, hi))))
}

/// A mobility header type: a number or one of libip6t_mh's names.
pub(crate) fn mh_type(s: &str) -> Option<u64> {
    const NAMES: [(&str, &str); 8] = [
        ("binding-refresh-request", "brr"),
        ("home-test-init", "hoti"),
        ("careof-test-init", "coti"),
        ("home-test", "hot"),
        ("careof-test", "cot"),
        ("binding-update", "bu"),
        ("binding-acknowledgement", "ba"),
        ("binding-error", "be"),
    ];
    parse_number(s, 255).or_else(|| {
        let i = NAMES.iter().position(|(n, a)| *n == s || *a == s)?;
        u64::try_from(i).ok()
    })
}

fn port_num(s: &str) -> Option<u64> {
    parse_port(s).ok().map(u64::from)
}

fn u32_num(s: &str) -> Option<u64> {
    parse_u32(s).map(u64::from)
}

/// Applies [`range_opt`] to every option called one of `names`, keeping the others.
fn ranges(
    m: &Match,
    names: &[&str],
    max: u64,
    drop_full: bool,
    num: impl Fn(&str) -> Option<u64> + Copy,
) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        if names.contains(&o.name.as_str()) {
            if let Some(n) = range_opt(o, max, drop_full, num)? {
                out.push(n);
            }
        } else {
            out.push(o.clone());
        }
    }
    Some(out)
}

fn ports_opt(out: &mut Vec<Opt>, name: &str, p: Option<Negatable<PortRange>>) {
    if let Some(p) = p
        && (p.negated || !p.value.is_all())
    {
        out.push(opt1(p.negated, name, p.value.to_string()));
    }
}

fn hex2(v: u64) -> String {
    format!("0x{v:02x}")
}

/// An address as conntrack and ipvs print it: the address as given, then `/LEN` (or
/// `/MASK`) unless the mask is full.
fn addr_unmasked(s: &str) -> Option<String> {
    let a: Address = s.parse().ok()?;
    let Address::Net { addr, mask } = a else { return Some(s.to_owned()) };
    let full = match mask {
        IpAddr::V4(m) => u32::from(m) == u32::MAX,
        IpAddr::V6(m) => u128::from(m) == u128::MAX,
    };
    if full {
        return Some(addr.to_string());
    }
    let text = Address::Net { addr, mask }.to_string();
    Some(text)
}

// ---------------------------------------------------------------------------------------
// Matches

/// The saved options of `m`, or `None` to keep them as written.
pub(crate) fn canon_match(m: &Match, family: Family) -> Option<Vec<Opt>> {
    match m.name.as_str() {
        "tcp" => {
            let MatchView::Tcp(v) = m.view(family).ok()? else { return None };
            Some(tcp_opts(v.sport, v.dport, v.option, v.flags))
        }
        "udp" => {
            let MatchView::Udp(v) = m.view(family).ok()? else { return None };
            Some(tcp_opts(v.sport, v.dport, None, None))
        }
        "icmp" | "icmp6" => {
            let (name, fam) = if m.name == "icmp" {
                ("icmp-type", Family::V4)
            } else {
                ("icmpv6-type", Family::V6)
            };
            let [o] = m.opts.as_slice() else { return None };
            (o.name == name).then_some(())?;
            let t = IcmpType::parse(arg(o)?, fam).ok()?;
            Some(vec![opt1(o.negated, name, t.saved(fam))])
        }
        "multiport" => {
            let [o] = m.opts.as_slice() else { return None };
            let name = match o.name.as_str() {
                "sports" | "source-ports" => "sports",
                "dports" | "destination-ports" => "dports",
                "ports" => "ports",
                _ => return None,
            };
            let list = parse_multiport_list(arg(o)?).ok()?;
            let text = list.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
            Some(vec![opt1(o.negated, name, text)])
        }
        "conntrack" => conntrack(m),
        "state" => {
            let [o] = m.opts.as_slice() else { return None };
            let s: CtStates = arg(o)?.parse().ok()?;
            Some(vec![opt1(o.negated, "state", s.to_string())])
        }
        "limit" => {
            let MatchView::Limit(v) = m.view(family).ok()? else { return None };
            let mut out = vec![opt1(false, "limit", v.rate.canonical().to_string())];
            if v.burst != LimitMatch::DEFAULT_BURST {
                out.push(opt1(false, "limit-burst", v.burst.to_string()));
            }
            Some(out)
        }
        "mark" | "connmark" => {
            let [o] = m.opts.as_slice() else { return None };
            let mm = MarkMask::parse(arg(o)?, "--mark").ok()?;
            Some(vec![opt1(o.negated, "mark", mm.saved_match())])
        }
        "mac" => {
            let [o] = m.opts.as_slice() else { return None };
            let mac: MacAddr = arg(o)?.parse().ok()?;
            Some(vec![opt1(o.negated, "mac-source", mac.to_string())])
        }
        "iprange" => {
            let mut out = Vec::new();
            for o in &m.opts {
                let r = crate::view::IpRange::parse(arg(o)?, &o.name, family).ok()?;
                out.push(opt1(o.negated, &o.name, r.to_string()));
            }
            Some(reorder(out, &["src-range", "dst-range"]))
        }
        "addrtype" => {
            let mut out = Vec::new();
            for o in &m.opts {
                if o.name == "src-type" || o.name == "dst-type" {
                    let t: AddrTypes = arg(o)?.parse().ok()?;
                    out.push(opt1(o.negated, &o.name, t.to_string()));
                } else {
                    out.push(o.clone());
                }
            }
            Some(reorder(out, &["src-type", "dst-type", "limit-iface-in", "limit-iface-out"]))
        }
        "owner" => owner(m),
        "recent" => recent(m, family),
        "connlimit" => connlimit(m, family),
        "hashlimit" => hashlimit(m, family),
        "comment" => None,
        "ah" => Some(reorder(
            ranges(m, &["ahspi"], u64::from(u32::MAX), true, u32_num)?,
            &["ahspi", "ahlen", "ahres"],
        )),
        "esp" => ranges(m, &["espspi"], u64::from(u32::MAX), true, u32_num),
        "ipcomp" => ranges(m, &["ipcompspi"], u64::from(u32::MAX), true, u32_num),
        "frag" => Some(reorder(
            ranges(m, &["fragid"], u64::from(u32::MAX), true, u32_num)?,
            &["fragid", "fraglen", "fragres", "fragfirst", "fragmore", "fraglast"],
        )),
        "rt" => Some(reorder(
            ranges(m, &["rt-segsleft"], u64::from(u32::MAX), true, u32_num)?,
            &["rt-type", "rt-segsleft", "rt-len", "rt-0-res", "rt-0-addrs", "rt-0-not-strict"],
        )),
        "ecn" => Some(reorder(m.opts.clone(), &["ecn-tcp-ece", "ecn-tcp-cwr", "ecn-ip-ect"])),
        "socket" => Some(reorder(m.opts.clone(), &["transparent", "nowildcard", "restore-skmark"])),
        "pkttype" => {
            let [o] = m.opts.as_slice() else { return None };
            Some(vec![opt1(o.negated, "pkt-type", arg(o)?.to_ascii_lowercase())])
        }
        "policy" => Some(policy(m)),
        "sctp" => {
            let mut out = Vec::new();
            for o in &m.opts {
                match (o.name.as_str(), o.args.as_slice()) {
                    ("sport" | "source-port" | "dport" | "destination-port", [a]) => {
                        let name = if o.name.starts_with('s') { "sport" } else { "dport" };
                        let r: PortRange = a.parse().ok()?;
                        out.push(opt1(o.negated, name, r.to_string()));
                    }
                    ("chunk-types", [mode, list]) => {
                        let list = sorted_names(list, SCTP_CHUNKS).unwrap_or_else(|| list.clone());
                        out.push(opt(o.negated, "chunk-types", &[mode.clone(), list]));
                    }
                    _ => out.push(o.clone()),
                }
            }
            Some(reorder(out, &["sport", "dport", "chunk-types"]))
        }
        "mh" => ranges(m, &["mh-type"], 255, true, mh_type),
        "dccp" => {
            let mut opts = m.opts.clone();
            alias(&mut opts, "source-port", "sport");
            alias(&mut opts, "destination-port", "dport");
            let m2 = Match { name: m.name.clone(), opts };
            let mut out = ranges(&m2, &["sport", "dport"], 65535, false, port_num)?;
            for o in out.iter_mut().filter(|o| o.name == "dccp-types") {
                if let Some(list) = arg(o).and_then(|a| sorted_names(a, DCCP_TYPES)) {
                    o.args = vec![list];
                }
            }
            Some(reorder(out, &["sport", "dport", "dccp-types", "dccp-option"]))
        }
        "tcpmss" => ranges(m, &["mss"], 65535, false, |s| parse_number(s, 65535)),
        "length" => ranges(m, &["length"], 65535, false, |s| parse_number(s, 65535)),
        "connbytes" => connbytes(m),
        "dscp" => {
            let [o] = m.opts.as_slice() else { return None };
            Some(vec![opt1(o.negated, "dscp", hex2(dscp_value(&o.name, arg(o)?, "dscp")?))])
        }
        "tos" => {
            let [o] = m.opts.as_slice() else { return None };
            (o.name == "tos").then_some(())?;
            let (v, mask) = tos_value(arg(o)?)?;
            Some(vec![opt1(o.negated, "tos", format!("{}/{}", hex2(v), hex2(mask)))])
        }
        "ipvs" => ipvs(m),
        "string" => string(m),
        "cluster" => cluster(m),
        "rateest" => rateest(m),
        "time" => time(m),
        "statistic" => statistic(m),
        "u32" => {
            let [o] = m.opts.as_slice() else { return None };
            Some(vec![opt1(o.negated, "u32", u32_hex(arg(o)?)?)])
        }
        "physdev" => Some(reorder(
            m.opts.clone(),
            &["physdev-is-in", "physdev-in", "physdev-is-out", "physdev-out", "physdev-is-bridged"],
        )),
        "rpfilter" => {
            Some(reorder(m.opts.clone(), &["loose", "validmark", "accept-local", "invert"]))
        }
        "realm" => {
            let [o] = m.opts.as_slice() else { return None };
            let mm = MarkMask::parse(arg(o)?, "--realm").ok()?;
            Some(vec![opt1(o.negated, "realm", mm.saved_match())])
        }
        "devgroup" => {
            let mut out = Vec::new();
            for o in &m.opts {
                let mm = MarkMask::parse(arg(o)?, "--src-group").ok()?;
                out.push(opt1(o.negated, &o.name, mm.saved_match()));
            }
            Some(reorder(out, &["src-group", "dst-group"]))
        }
        "ipv6header" => {
            let mut out = Vec::new();
            for o in &m.opts {
                if o.name == "header" {
                    let mut names: Vec<&str> =
                        arg(o)?.split(',').map(ipv6_header_name).collect::<Option<_>>()?;
                    names.sort_by_key(|n| IPV6_HEADERS.iter().position(|h| h == n));
                    names.dedup();
                    out.push(opt1(o.negated, "header", names.join(",")));
                } else {
                    out.push(o.clone());
                }
            }
            Some(reorder(out, &["header", "soft"]))
        }
        _ => None,
    }
}

fn tcp_opts(
    sport: Option<Negatable<PortRange>>,
    dport: Option<Negatable<PortRange>>,
    option: Option<Negatable<u8>>,
    flags: Option<Negatable<TcpFlagsSpec>>,
) -> Vec<Opt> {
    let mut out = Vec::new();
    ports_opt(&mut out, "sport", sport);
    ports_opt(&mut out, "dport", dport);
    if let Some(o) = option {
        out.push(opt1(o.negated, "tcp-option", o.value.to_string()));
    }
    if let Some(f) = flags {
        out.push(opt(
            f.negated,
            "tcp-flags",
            &[f.value.mask.to_string(), f.value.comp.to_string()],
        ));
    }
    out
}

/// iptables-nft turns tcp/udp port and flag matches into native expressions and reads
/// them back as one match: duplicate matches merge (later options win) at the position
/// of the first, and a negated range starting at 0 comes back as its complement
/// (`! --sport 0:9520` → `--sport 9521:65535`). A tcp match with `--tcp-option` stays an
/// xtables match and is not merged.
fn merge_nft(rule: &mut Rule, name: &str, family: Family) {
    // A match with no port or flag option has no native form and stays an xtables match
    // (observed: `-m tcp -m tcp --dport 5` is kept as two matches).
    let merges = |m: &Match| m.name == name && !m.opts.is_empty() && m.opt("tcp-option").is_none();
    let idx: Vec<usize> =
        rule.matches.iter().enumerate().filter(|(_, m)| merges(m)).map(|(i, _)| i).collect();
    let Some(&first) = idx.first() else { return };
    let (mut sport, mut dport, mut flags) = (None, None, None);
    for &i in &idx {
        match rule.matches[i].view(family) {
            Ok(MatchView::Tcp(v)) => {
                sport = v.sport.or(sport);
                dport = v.dport.or(dport);
                flags = v.flags.or(flags);
            }
            Ok(MatchView::Udp(v)) => {
                sport = v.sport.or(sport);
                dport = v.dport.or(dport);
            }
            _ => return,
        }
    }
    let fold = |p: Option<Negatable<PortRange>>| {
        p.map(|p| match p.value {
            PortRange { lo: 0, hi } if p.negated && hi > 0 && hi < u16::MAX => {
                Negatable::plain(PortRange { lo: hi + 1, hi: u16::MAX })
            }
            _ => p,
        })
    };
    rule.matches[first].opts = tcp_opts(fold(sport), fold(dport), None, flags);
    for &i in idx.iter().skip(1).rev() {
        rule.matches.remove(i);
    }
}

fn conntrack(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        let a = arg(o)?;
        let v = match o.name.as_str() {
            "ctstate" => a.parse::<CtStates>().ok()?.to_string(),
            "ctproto" => match a.parse::<Protocol>().ok()? {
                Protocol::Number(n) => n.to_string(),
                Protocol::Name(n) => n,
            },
            "ctorigsrc" | "ctorigdst" | "ctreplsrc" | "ctrepldst" => addr_unmasked(a)?,
            "ctorigsrcport" | "ctorigdstport" | "ctreplsrcport" | "ctrepldstport" => {
                a.parse::<PortRange>().ok()?.to_string()
            }
            "ctstatus" => CtStatus::parse(a).ok()?.saved(),
            "ctexpire" => U32Range::parse_with(a, ':').ok()?.to_string(),
            "ctdir" => a.to_ascii_uppercase(),
            _ => return None,
        };
        out.push(opt1(o.negated, &o.name, v));
    }
    Some(reorder(out, crate::view::CONNTRACK_OPTIONS))
}

fn owner(m: &Match) -> Option<Vec<Opt>> {
    let MatchView::Owner(_) = m.view(Family::V4).ok()? else { return None };
    let mut out = Vec::new();
    for o in &m.opts {
        match o.name.as_str() {
            "uid-owner" | "gid-owner" => {
                let MatchView::Owner(v) = (Match { name: "owner".into(), opts: vec![o.clone()] })
                    .view(Family::V4)
                    .ok()?
                else {
                    return None;
                };
                let r = v.uid.or(v.gid)?.value;
                let text =
                    if r.lo == r.hi { r.lo.to_string() } else { format!("{}-{}", r.lo, r.hi) };
                out.push(opt1(o.negated, &o.name, text));
            }
            _ => out.push(o.clone()),
        }
    }
    Some(reorder(out, &["socket-exists", "uid-owner", "gid-owner", "suppl-groups"]))
}

fn recent(m: &Match, family: Family) -> Option<Vec<Opt>> {
    let MatchView::Recent(v) = m.view(family).ok()? else { return None };
    let mut out = vec![Opt {
        negated: v.command.negated,
        name: v.command.value.as_str().to_owned(),
        args: Vec::new(),
    }];
    if let Some(s) = v.seconds {
        out.push(opt1(false, "seconds", s.to_string()));
    }
    if v.reap {
        out.push(flag("reap"));
    }
    if let Some(h) = v.hitcount {
        out.push(opt1(false, "hitcount", h.to_string()));
    }
    if v.rttl {
        out.push(flag("rttl"));
    }
    out.push(opt1(false, "name", v.name));
    out.push(opt1(false, "mask", v.mask.to_string()));
    out.push(flag(if v.rdest { "rdest" } else { "rsource" }));
    Some(out)
}

fn connlimit(m: &Match, family: Family) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    let (mut mask, mut side) = (None, None);
    for o in &m.opts {
        match o.name.as_str() {
            "connlimit-upto" | "connlimit-above" => {
                // A negated limit is saved as the other kind (observed:
                // `! --connlimit-above 5` is `--connlimit-upto 5`).
                let name = match (o.name.as_str(), o.negated) {
                    ("connlimit-upto", true) => "connlimit-above",
                    ("connlimit-above", true) => "connlimit-upto",
                    (n, _) => n,
                };
                out.push(opt1(false, name, parse_u32(arg(o)?)?.to_string()));
            }
            "connlimit-mask" => mask = Some(parse_number(arg(o)?, 128)?),
            "connlimit-saddr" | "connlimit-daddr" => side = Some(o.name.clone()),
            _ => return None,
        }
    }
    let default_mask = if family == Family::V4 { 32 } else { 128 };
    out.push(opt1(false, "connlimit-mask", mask.unwrap_or(default_mask).to_string()));
    out.push(flag(side.as_deref().unwrap_or("connlimit-saddr")));
    Some(out)
}

const HASHLIMIT_ORDER: &[&str] = &[
    "hashlimit-upto",
    "hashlimit-above",
    "hashlimit",
    "hashlimit-burst",
    "hashlimit-mode",
    "hashlimit-name",
    "hashlimit-htable-size",
    "hashlimit-htable-max",
    "hashlimit-htable-gcinterval",
    "hashlimit-htable-expire",
    "hashlimit-srcmask",
    "hashlimit-dstmask",
    "hashlimit-rate-match",
    "hashlimit-rate-interval",
];

fn hashlimit(m: &Match, family: Family) -> Option<Vec<Opt>> {
    let full_mask = if family == Family::V4 { 32 } else { 128 };
    let mut out = Vec::new();
    let mut packets = true;
    for o in &m.opts {
        let n = match o.name.as_str() {
            "hashlimit" | "hashlimit-upto" | "hashlimit-above" => {
                let name = if o.name == "hashlimit" { "hashlimit-upto" } else { &o.name };
                let a = arg(o)?;
                let text = match hashlimit_bytes(a.strip_suffix("/s").unwrap_or("")) {
                    Some(b) => {
                        packets = false;
                        format!("{}/s", bytes_text(b))
                    }
                    None => hashlimit_rate(a)?,
                };
                opt1(o.negated, name, text)
            }
            "hashlimit-burst" => match hashlimit_bytes(arg(o)?) {
                Some(b) if !arg(o)?.bytes().all(|c| c.is_ascii_digit()) => {
                    opt1(false, "hashlimit-burst", bytes_text(b))
                }
                _ => opt1(false, "hashlimit-burst", parse_u32(arg(o)?)?.to_string()),
            },
            "hashlimit-mode" => {
                const MODES: [&str; 4] = ["srcip", "srcport", "dstip", "dstport"];
                let given: Vec<&str> = arg(o)?.split(',').collect();
                if given.iter().any(|g| !MODES.contains(g)) {
                    return None;
                }
                let list: Vec<&str> = MODES.into_iter().filter(|m| given.contains(m)).collect();
                opt1(false, "hashlimit-mode", list.join(","))
            }
            // Defaults are not printed (observed): the full masks, gcinterval 1000.
            "hashlimit-srcmask" | "hashlimit-dstmask"
                if parse_number(arg(o)?, 128)? == full_mask =>
            {
                continue;
            }
            "hashlimit-htable-gcinterval" if parse_number(arg(o)?, u64::MAX)? == 1000 => continue,
            _ => o.clone(),
        };
        out.push(n);
    }
    if packets && !out.iter().any(|o| o.name == "hashlimit-burst") {
        out.push(opt1(false, "hashlimit-burst", "5"));
    }
    Some(reorder(out, HASHLIMIT_ORDER))
}

/// `XT_HASHLIMIT_SCALE_v2`: hashlimit (revision 2 and later) stores a packet rate as the
/// mean interval in millionths of a second.
const HASHLIMIT_SCALE: u64 = 1_000_000;

/// A packet rate `N[/unit]` in the form hashlimit prints (`1/s` → `1/sec`).
fn hashlimit_rate(s: &str) -> Option<String> {
    let r = crate::view::Rate::parse(s).ok()?;
    let total = HASHLIMIT_SCALE * u64::from(r.unit.seconds());
    let period = (total / u64::from(r.count)).max(1);
    let units = [(86_400u64, "day"), (3600, "hour"), (60, "min"), (1, "sec")];
    let mut i = 1;
    while i < units.len() {
        let mult = HASHLIMIT_SCALE * units[i].0;
        if period > mult || mult / period < mult % period {
            break;
        }
        i += 1;
    }
    let (secs, name) = units[i - 1];
    Some(format!("{}/{name}", HASHLIMIT_SCALE * secs / period))
}

/// A byte amount `N`, `Nb`, `Nkb`, `Nmb` in bytes; `None` for a plain packet count.
fn hashlimit_bytes(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (n, mult) = if let Some(n) = lower.strip_suffix("kb") {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("mb") {
        (n, 1024 * 1024)
    } else if let Some(n) = lower.strip_suffix('b') {
        (n, 1)
    } else {
        return None;
    };
    n.parse::<u64>().ok()?.checked_mul(mult)
}

/// Bytes in the largest unit that divides them (`1024` → `1kb`).
fn bytes_text(b: u64) -> String {
    if b != 0 && b.is_multiple_of(1024 * 1024) {
        format!("{}mb", b / (1024 * 1024))
    } else if b != 0 && b.is_multiple_of(1024) {
        format!("{}kb", b / 1024)
    } else {
        format!("{b}b")
    }
}

fn connbytes(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        if o.name == "connbytes" {
            // A single number is a lower bound (`--connbytes 1000` is `1000:`).
            let a = arg(o)?;
            let a = if a.contains(':') { a.to_owned() } else { format!("{a}:") };
            let (lo, hi) = range(&a, u64::MAX, |s| parse_number(s, u64::MAX))?;
            let text = if hi == u64::MAX { lo.to_string() } else { format!("{lo}:{hi}") };
            out.push(opt1(o.negated, "connbytes", text));
        } else {
            out.push(o.clone());
        }
    }
    Some(reorder(out, &["connbytes", "connbytes-mode", "connbytes-dir"]))
}

const DSCP_CLASSES: &[(&str, u64)] = &[
    ("CS0", 0x00),
    ("CS1", 0x08),
    ("CS2", 0x10),
    ("CS3", 0x18),
    ("CS4", 0x20),
    ("CS5", 0x28),
    ("CS6", 0x30),
    ("CS7", 0x38),
    ("BE", 0x00),
    ("AF11", 0x0a),
    ("AF12", 0x0c),
    ("AF13", 0x0e),
    ("AF21", 0x12),
    ("AF22", 0x14),
    ("AF23", 0x16),
    ("AF31", 0x1a),
    ("AF32", 0x1c),
    ("AF33", 0x1e),
    ("AF41", 0x22),
    ("AF42", 0x24),
    ("AF43", 0x26),
    ("EF", 0x2e),
];

/// The DSCP value of `--{base}` (a number up to 0x3f) or `--{base}-class` (a class name).
fn dscp_value(name: &str, a: &str, base: &str) -> Option<u64> {
    if name == base {
        parse_number(a, 0x3f)
    } else if name.strip_prefix(base) == Some("-class") {
        DSCP_CLASSES.iter().find(|(n, _)| n.eq_ignore_ascii_case(a)).map(|(_, v)| *v)
    } else {
        None
    }
}

const TOS_NAMES: &[(&str, u64)] = &[
    ("Minimize-Delay", 0x10),
    ("Maximize-Throughput", 0x08),
    ("Maximize-Reliability", 0x04),
    ("Minimize-Cost", 0x02),
    ("Normal-Service", 0x00),
];

/// A TOS value and mask: a symbolic name (mask 0x3f) or `V[/M]` (mask 0xff).
pub(crate) fn tos_value(a: &str) -> Option<(u64, u64)> {
    if let Some((_, v)) = TOS_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(a)) {
        return Some((*v, 0x3f));
    }
    match a.split_once('/') {
        Some((v, m)) => Some((parse_number(v, 255)?, parse_number(m, 255)?)),
        None => Some((parse_number(a, 255)?, 0xff)),
    }
}

fn ipvs(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        let n = match o.name.as_str() {
            "vproto" => {
                let p = arg(o)?.parse::<Protocol>().ok()?;
                opt1(o.negated, "vproto", p.number()?.to_string())
            }
            "vport" | "vportctl" => opt1(o.negated, &o.name, parse_port(arg(o)?).ok()?.to_string()),
            "vaddr" => opt1(o.negated, "vaddr", addr_unmasked(arg(o)?)?),
            _ => o.clone(),
        };
        out.push(n);
    }
    Some(reorder(out, &["ipvs", "vproto", "vaddr", "vport", "vdir", "vmethod", "vportctl"]))
}

fn string(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        match o.name.as_str() {
            "from" if parse_number(arg(o)?, 65535)? == 0 => {}
            "to" if parse_number(arg(o)?, 65535)? == 65535 => {}
            // The pattern is stored as bytes and printed as text when every byte is
            // printable, else as one hex block (observed: `|41 42|` → `"AB"`).
            "hex-string" => {
                let bytes = hex_pattern(arg(o)?)?;
                if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
                    let text: String = bytes.iter().map(|b| char::from(*b)).collect();
                    out.push(opt1(o.negated, "string", text));
                } else {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    out.push(opt1(o.negated, "hex-string", format!("|{hex}|")));
                }
            }
            _ => out.push(o.clone()),
        }
    }
    Some(reorder(out, &["string", "hex-string", "algo", "from", "to", "icase"]))
}

/// The bytes of a `--hex-string` pattern: text with `|hex bytes|` blocks.
fn hex_pattern(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (i, part) in s.split('|').enumerate() {
        if i % 2 == 0 {
            out.extend_from_slice(part.as_bytes());
        } else {
            let digits: Vec<u8> = part.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if !digits.len().is_multiple_of(2) {
                return None;
            }
            for pair in digits.chunks(2) {
                let text = std::str::from_utf8(pair).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
            }
        }
    }
    // An odd number of `|` leaves a block open.
    s.matches('|').count().is_multiple_of(2).then_some(out)
}

fn cluster(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        match o.name.as_str() {
            "cluster-local-node" => {
                let n = parse_number(arg(o)?, 32).filter(|n| *n >= 1)?;
                let mask = 1u64.checked_shl(u32::try_from(n - 1).ok()?)?;
                out.push(opt1(o.negated, "cluster-local-nodemask", format!("0x{mask:08x}")));
            }
            "cluster-local-nodemask" => {
                let v = parse_u32(arg(o)?)?;
                out.push(opt1(o.negated, "cluster-local-nodemask", format!("0x{v:08x}")));
            }
            "cluster-hash-seed" => {
                let v = parse_u32(arg(o)?)?;
                out.push(opt1(false, "cluster-hash-seed", format!("0x{v:08x}")));
            }
            _ => out.push(o.clone()),
        }
    }
    Some(reorder(out, &["cluster-local-nodemask", "cluster-total-nodes", "cluster-hash-seed"]))
}

/// A rateest bit rate (`8bit`, `5kbit`, `1mbit`, `2kbps`…) in bit/s.
fn bit_rate(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "bps" => 8,
        "kbps" => 8_000,
        "mbps" => 8_000_000,
        "gbps" => 8_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn rateest(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        match (o.name.as_str(), o.args.as_slice()) {
            ("rateest-bps" | "rateest-bps1" | "rateest-bps2", [a]) => {
                out.push(opt1(o.negated, &o.name, format!("{}bit", bit_rate(a)?)));
            }
            _ => out.push(o.clone()),
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Targets

/// The saved options of `t`, or `None` to keep them as written.
fn canon_target(t: &Target, backend: Backend, family: Family) -> Option<Vec<Opt>> {
    let view = || t.view(family, |_| false).ok();
    match t.name.as_str() {
        "REJECT" => {
            let TargetView::Reject(w) = view()? else { return None };
            Some(vec![opt1(false, "reject-with", w.as_str())])
        }
        "LOG" => {
            let TargetView::Log(l) = view()? else { return None };
            let mut out = Vec::new();
            if let Some(p) = l.prefix {
                out.push(opt1(false, "log-prefix", p));
            }
            if l.level != 4 {
                out.push(opt1(false, "log-level", l.level.to_string()));
            }
            for (on, name) in [
                (l.tcp_sequence, "log-tcp-sequence"),
                (l.tcp_options, "log-tcp-options"),
                (l.ip_options, "log-ip-options"),
                (l.uid, "log-uid"),
                (l.macdecode, "log-macdecode"),
            ] {
                if on {
                    out.push(flag(name));
                }
            }
            Some(out)
        }
        "MARK" => {
            let TargetView::Mark(mm) = view()? else { return None };
            Some(vec![opt1(false, "set-xmark", mm.saved_target())])
        }
        "CONNMARK" => connmark_target(t),
        "DNAT" | "SNAT" => {
            let (TargetView::Dnat(v) | TargetView::Snat(v)) = view()? else { return None };
            let to = if t.name == "DNAT" { "to-destination" } else { "to-source" };
            let mut out: Vec<Opt> = v.to.iter().map(|r| opt1(false, to, r.saved(family))).collect();
            for (on, name) in [
                (v.random, "random"),
                (v.random_fully, "random-fully"),
                (v.persistent, "persistent"),
            ] {
                if on {
                    out.push(flag(name));
                }
            }
            Some(out)
        }
        "MASQUERADE" | "REDIRECT" => {
            let (TargetView::Masquerade(v) | TargetView::Redirect(v)) = view()? else {
                return None;
            };
            let mut out = Vec::new();
            if let Some(p) = v.ports {
                let text =
                    if p.lo == p.hi { p.lo.to_string() } else { format!("{}-{}", p.lo, p.hi) };
                out.push(opt1(false, "to-ports", text));
            }
            for (on, name) in [(v.random, "random"), (v.random_fully, "random-fully")] {
                if on {
                    out.push(flag(name));
                }
            }
            Some(out)
        }
        "NETMAP" => {
            let [o] = t.opts.as_slice() else { return None };
            let a: Address = arg(o)?.parse().ok()?;
            a.family().filter(|f| *f == family)?;
            Some(vec![opt1(false, "to", a.canonical().to_string())])
        }
        "TPROXY" => tproxy(t, family),
        "CLASSIFY" => {
            // A tc class handle MAJOR:MINOR in hex, printed as %04x:%04x (observed).
            let [o] = t.opts.as_slice() else { return None };
            let (maj, min) = arg(o)?.split_once(':')?;
            let hex = |x: &str| u16::from_str_radix(x, 16).ok();
            Some(vec![opt1(false, "set-class", format!("{:04x}:{:04x}", hex(maj)?, hex(min)?))])
        }
        "DSCP" => {
            let [o] = t.opts.as_slice() else { return None };
            Some(vec![opt1(false, "set-dscp", hex2(dscp_value(&o.name, arg(o)?, "set-dscp")?))])
        }
        "TOS" => {
            let [o] = t.opts.as_slice() else { return None };
            let a = arg(o)?;
            let (v, mask) = match o.name.as_str() {
                "set-tos" => tos_value(a)?,
                "and-tos" => (0, !parse_number(a, 255)? & 0xff),
                "or-tos" => {
                    let v = parse_number(a, 255)?;
                    (v, v)
                }
                "xor-tos" => (parse_number(a, 255)?, 0),
                _ => return None,
            };
            Some(vec![opt1(false, "set-tos", format!("{}/{}", hex2(v), hex2(mask)))])
        }
        "NFQUEUE" => nfqueue(t),
        "NFLOG" => nflog(t, backend),
        "SYNPROXY" => {
            Some(reorder(t.opts.clone(), &["sack-perm", "timestamp", "wscale", "mss", "ecn"]))
        }
        "TTL" | "HL" | "TCPMSS" => {
            let mut out = Vec::new();
            for o in &t.opts {
                match o.args.as_slice() {
                    [a] => out.push(opt1(o.negated, &o.name, parse_number(a, 65535)?.to_string())),
                    _ => out.push(o.clone()),
                }
            }
            Some(out)
        }
        "CT" => {
            let mut out = Vec::new();
            for o in &t.opts {
                match (o.name.as_str(), o.args.as_slice()) {
                    ("ctevents", [a]) => {
                        out.push(opt1(false, "ctevents", sorted_names(a, CT_EVENTS)?));
                    }
                    ("expevents", [a]) => {
                        out.push(opt1(false, "expevents", sorted_names(a, &["new"])?));
                    }
                    _ => out.push(o.clone()),
                }
            }
            Some(reorder(
                out,
                &[
                    "notrack",
                    "helper",
                    "timeout",
                    "ctevents",
                    "expevents",
                    "zone-orig",
                    "zone-reply",
                    "zone",
                ],
            ))
        }
        _ => None,
    }
}

fn connmark_target(t: &Target) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    let (mut nfmask, mut ctmask) = (None, None);
    let mut mode = None;
    for o in &t.opts {
        let a = || arg(o);
        match o.name.as_str() {
            "set-xmark" => {
                out.push(opt1(false, "set-xmark", MarkMask::parse(a()?, "").ok()?.saved_target()))
            }
            "set-mark" => {
                let m = MarkMask::parse(a()?, "").ok()?;
                let mm = MarkMask { value: m.value, mask: m.value | m.mask };
                out.push(opt1(false, "set-xmark", mm.saved_target()));
            }
            "and-mark" => {
                let mm = MarkMask { value: 0, mask: !parse_u32(a()?)? };
                out.push(opt1(false, "set-xmark", mm.saved_target()));
            }
            "or-mark" => {
                let v = parse_u32(a()?)?;
                out.push(opt1(false, "set-xmark", MarkMask { value: v, mask: v }.saved_target()));
            }
            "xor-mark" => {
                let v = parse_u32(a()?)?;
                out.push(opt1(false, "set-xmark", MarkMask { value: v, mask: 0 }.saved_target()));
            }
            "save-mark" | "restore-mark" => mode = Some(o.name.clone()),
            "mask" => {
                let v = parse_u32(a()?)?;
                nfmask = Some(v);
                ctmask = Some(v);
            }
            "nfmask" => nfmask = Some(parse_u32(a()?)?),
            "ctmask" => ctmask = Some(parse_u32(a()?)?),
            _ => return None,
        }
    }
    if let Some(mode) = mode {
        out.push(flag(&mode));
        out.push(opt1(false, "nfmask", format!("{:#x}", nfmask.unwrap_or(u32::MAX))));
        out.push(opt1(false, "ctmask", format!("{:#x}", ctmask.unwrap_or(u32::MAX))));
    } else if nfmask.is_some() || ctmask.is_some() {
        return None;
    }
    Some(out)
}

fn nfqueue(t: &Target) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    let mut has_queue = false;
    for o in &t.opts {
        match o.name.as_str() {
            "queue-num" => {
                has_queue = true;
                out.push(opt1(false, "queue-num", parse_number(arg(o)?, 65535)?.to_string()));
            }
            "queue-balance" => {
                has_queue = true;
                let (lo, hi) = range(arg(o)?, 65534, |s| parse_number(s, 65535))?;
                (lo < hi).then_some(())?;
                out.push(opt1(false, "queue-balance", format!("{lo}:{hi}")));
            }
            _ => out.push(o.clone()),
        }
    }
    if !has_queue {
        out.insert(0, opt1(false, "queue-num", "0"));
    }
    Some(reorder(out, &["queue-num", "queue-balance", "queue-bypass", "queue-cpu-fanout"]))
}

fn nflog(t: &Target, backend: Backend) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &t.opts {
        match o.name.as_str() {
            "nflog-group" => {
                let g = parse_number(arg(o)?, 65535)?;
                if g != 0 {
                    out.push(opt1(false, "nflog-group", g.to_string()));
                }
            }
            "nflog-prefix" if backend == Backend::Legacy => {
                out.push(opt1(false, "nflog-prefix", crate::view::truncate(arg(o)?, 63)));
            }
            // iptables-nft has no expression for a copy range and drops it (observed).
            "nflog-range" if backend == Backend::Nft => {}
            _ => out.push(o.clone()),
        }
    }
    Some(reorder(
        out,
        &["nflog-prefix", "nflog-group", "nflog-size", "nflog-range", "nflog-threshold"],
    ))
}

/// TPROXY prints `--on-port`, `--on-ip` (default the any address) and `--tproxy-mark`
/// (default `0x0/0x0`; a lone value gets a full mask), always all three (observed).
fn tproxy(t: &Target, family: Family) -> Option<Vec<Opt>> {
    let (mut port, mut ip, mut mark) = (None, None, None);
    for o in &t.opts {
        let a = arg(o)?;
        match o.name.as_str() {
            "on-port" => port = Some(parse_port(a).ok()?),
            "on-ip" => {
                let addr: IpAddr = a.parse().ok()?;
                (addr.is_ipv4() == (family == Family::V4)).then_some(())?;
                ip = Some(addr);
            }
            "tproxy-mark" => mark = Some(MarkMask::parse(a, "--tproxy-mark").ok()?),
            _ => return None,
        }
    }
    let any = match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    Some(vec![
        opt1(false, "on-port", port?.to_string()),
        opt1(false, "on-ip", ip.unwrap_or(any).to_string()),
        opt1(false, "tproxy-mark", mark.unwrap_or(MarkMask { value: 0, mask: 0 }).saved_target()),
    ])
}

/// ipv6header names in the order ip6tables-save prints them (mask bits, high to low).
const IPV6_HEADERS: [&str; 8] =
    ["hop-by-hop", "ipv6-opts", "ipv6-route", "ipv6-frag", "ah", "esp", "ipv6-nonxt", "protocol"];

/// The name ip6tables-save prints for an ipv6header `--header` element (the
/// `/etc/protocols` name of the header's protocol number, observed).
fn ipv6_header_name(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "hop-by-hop" | "hop" | "0" => "hop-by-hop",
        "dst" | "ipv6-opts" | "60" => "ipv6-opts",
        "route" | "ipv6-route" | "43" => "ipv6-route",
        "frag" | "ipv6-frag" | "44" => "ipv6-frag",
        "auth" | "ah" | "51" => "ah",
        "esp" | "50" => "esp",
        "none" | "ipv6-nonxt" | "59" => "ipv6-nonxt",
        "prot" | "protocol" | "255" => "protocol",
        _ => return None,
    })
}

/// A u32 expression with every number printed as lower-case hex (`0>>22&0x3C` →
/// `0x0>>0x16&0x3c`), as libxt_u32 prints it.
fn u32_hex(expr: &str) -> Option<String> {
    let mut out = String::with_capacity(expr.len() + 16);
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            let hex = b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X'));
            i += if hex { 2 } else { 0 };
            while i < b.len() && (b[i].is_ascii_hexdigit() && (hex || b[i].is_ascii_digit())) {
                i += 1;
            }
            let n = parse_number(&expr[start..i], u64::from(u32::MAX))?;
            out.push_str(&format!("{n:#x}"));
        } else if b[i].is_ascii_whitespace() {
            i += 1;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    Some(out)
}

fn statistic(m: &Match) -> Option<Vec<Opt>> {
    let mut out = Vec::new();
    for o in &m.opts {
        match o.name.as_str() {
            "probability" => {
                let p: f64 = arg(o)?.parse().ok()?;
                if !(0.0..=1.0).contains(&p) {
                    return None;
                }
                // Stored as a 31-bit fraction, printed with %.11f.
                let scale = f64::from(0x8000_0000_u32);
                let stored = (p * scale).round();
                out.push(opt1(o.negated, "probability", format!("{:.11}", stored / scale)));
            }
            "every" | "packet" => {
                out.push(opt1(o.negated, &o.name, parse_u32(arg(o)?)?.to_string()));
            }
            _ => out.push(o.clone()),
        }
    }
    Some(reorder(out, &["mode", "probability", "every", "packet"]))
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `-m time`: times as `HH:MM:SS`, month days ascending, week days in Mon..Sun order,
/// dates in full UTC form, `--datestop` always printed (default 2038-01-19T03:14:07).
fn time(m: &Match) -> Option<Vec<Opt>> {
    let (mut start, mut stop, mut monthdays, mut weekdays) = (None, None, None, None);
    let (mut datestart, mut datestop) = (None, None);
    let mut flags = Vec::new();
    for o in &m.opts {
        match o.name.as_str() {
            "timestart" => start = Some((o.negated, daytime(arg(o)?)?)),
            "timestop" => stop = Some((o.negated, daytime(arg(o)?)?)),
            "monthdays" => {
                let mut days = 0u32;
                for d in arg(o)?.split(',') {
                    let n = dec(d, 31).filter(|n| *n >= 1)?;
                    days |= 1 << n;
                }
                // A negated list is saved as its complement (observed for weekdays).
                monthdays = Some(if o.negated { !days & 0xffff_fffe } else { days });
            }
            "weekdays" => {
                let mut days = 0u8;
                for d in arg(o)?.split(',') {
                    let i = match dec(d, 7) {
                        Some(n) if n >= 1 => usize::try_from(n - 1).ok()?,
                        _ => WEEKDAYS.iter().position(|w| *w == d)?,
                    };
                    days |= 1 << i;
                }
                weekdays = Some(if o.negated { !days & 0x7f } else { days });
            }
            "datestart" => datestart = Some(date(arg(o)?)?),
            "datestop" => datestop = Some(date(arg(o)?)?),
            // --localtz is the old name of --kerneltz; --utc is the default.
            "kerneltz" | "localtz" => flags.push(flag("kerneltz")),
            "utc" => {}
            "contiguous" => flags.push(flag("contiguous")),
            _ => return None,
        }
    }
    let mut out = Vec::new();
    let (s, e) = (start.unwrap_or((false, 0)), stop.unwrap_or((false, 86399)));
    if s.1 != 0 || e.1 != 86399 {
        out.push(opt1(s.0, "timestart", hms(s.1)));
        out.push(opt1(e.0, "timestop", hms(e.1)));
    }
    if let Some(days) = monthdays
        && days != 0xffff_fffe
    {
        let list: Vec<String> =
            (1..=31).filter(|d| days & (1 << d) != 0).map(|d| d.to_string()).collect();
        out.push(opt1(false, "monthdays", list.join(",")));
    }
    if let Some(days) = weekdays
        && days != 0x7f
    {
        let list: Vec<&str> = WEEKDAYS
            .iter()
            .enumerate()
            .filter(|(i, _)| days & (1 << i) != 0)
            .map(|(_, w)| *w)
            .collect();
        out.push(opt1(false, "weekdays", list.join(",")));
    }
    if let Some(d) = datestart.filter(|d| *d != 0) {
        out.push(opt1(false, "datestart", civil(d)));
    }
    out.push(opt1(false, "datestop", civil(datestop.unwrap_or(i64::from(i32::MAX)))));
    flags.dedup();
    out.extend(reorder(flags, &["kerneltz", "contiguous"]));
    Some(out)
}

/// A decimal number up to `max` (dates and times are decimal: `09` is nine).
fn dec(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n <= max)
}

/// Seconds since midnight of `HH:MM[:SS]`.
fn daytime(s: &str) -> Option<u32> {
    let mut parts = s.split(':');
    let h = dec(parts.next()?, 23)?;
    let m = dec(parts.next()?, 59)?;
    let sec = match parts.next() {
        Some(x) => dec(x, 59)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    u32::try_from(h * 3600 + m * 60 + sec).ok()
}

fn hms(t: u32) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// Seconds since the epoch (UTC) of `YYYY[-MM[-DD[Thh[:mm[:ss]]]]]`.
fn date(s: &str) -> Option<i64> {
    let (day, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = day.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo = d.next().map_or(Some(1), |x| dec(x, 12).filter(|n| *n >= 1))?;
    let da = d.next().map_or(Some(1), |x| dec(x, 31).filter(|n| *n >= 1))?;
    if d.next().is_some() || !(1970..=2038).contains(&y) {
        return None;
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut p = t.split(':');
            let h = dec(p.next()?, 23)?;
            let mi = p.next().map_or(Some(0), |x| dec(x, 59))?;
            let se = p.next().map_or(Some(0), |x| dec(x, 59))?;
            i64::try_from(h * 3600 + mi * 60 + se).ok()?
        }
    };
    let days = days_from_civil(y, i64::try_from(mo).ok()?, i64::try_from(da).ok()?);
    Some(days * 86400 + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month 1–12, day 1–31)` of a count of days since
/// 1970-01-01 (H. Hinnant's `civil_from_days`; negative counts are days before it).
///
/// ```
/// assert_eq!(portcullis_rules::civil_from_days(0), (1970, 1, 1));
/// assert_eq!(portcullis_rules::civil_from_days(-1), (1969, 12, 31));
/// assert_eq!(portcullis_rules::civil_from_days(20_783), (2026, 11, 26));
/// ```
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDThh:mm:ss` (UTC) of seconds since the epoch.
fn civil(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A comma list of names from `table`, in table order; `None` when a name is unknown.
fn sorted_names(list: &str, table: &[&str]) -> Option<String> {
    let mut idx: Vec<usize> = list
        .split(',')
        .map(|n| table.iter().position(|t| t.eq_ignore_ascii_case(n)))
        .collect::<Option<_>>()?;
    idx.sort_unstable();
    idx.dedup();
    Some(idx.iter().map(|i| table[*i]).collect::<Vec<_>>().join(","))
}

/// CT `--ctevents` names in bit order.
const CT_EVENTS: &[&str] = &[
    "new",
    "related",
    "destroy",
    "reply",
    "assured",
    "protoinfo",
    "helper",
    "mark",
    "natseqinfo",
    "secmark",
];

/// DCCP packet types in number order.
const DCCP_TYPES: &[&str] = &[
    "REQUEST", "RESPONSE", "DATA", "ACK", "DATAACK", "CLOSEREQ", "CLOSE", "RESET", "SYNC",
    "SYNCACK", "INVALID",
];

/// SCTP chunk types in number order (0–14, I_DATA 64, ASCONF_ACK 128, RE_CONFIG 130,
/// PAD 132, FORWARD_TSN 192, ASCONF 193, I_FORWARD_TSN 194).
const SCTP_CHUNKS: &[&str] = &[
    "DATA",
    "INIT",
    "INIT_ACK",
    "SACK",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "ABORT",
    "SHUTDOWN",
    "SHUTDOWN_ACK",
    "ERROR",
    "COOKIE_ECHO",
    "COOKIE_ACK",
    "ECN_ECNE",
    "ECN_CWR",
    "SHUTDOWN_COMPLETE",
    "I_DATA",
    "ASCONF_ACK",
    "RE_CONFIG",
    "PAD",
    "FORWARD_TSN",
    "ASCONF",
    "I_FORWARD_TSN",
];

/// `-m policy`: `--dir`, `--pol`, `--strict`, then each element's options in save order
/// (`--reqid --spi --proto --mode --tunnel-dst --tunnel-src`), elements separated by
/// `--next`.
fn policy(m: &Match) -> Vec<Opt> {
    const HEAD: &[&str] = &["dir", "pol", "strict"];
    const ELEMENT: &[&str] = &["reqid", "spi", "proto", "mode", "tunnel-dst", "tunnel-src"];
    let head: Vec<Opt> =
        m.opts.iter().filter(|o| HEAD.contains(&o.name.as_str())).cloned().collect();
    let mut out = reorder(head, HEAD);
    let rest: Vec<Opt> =
        m.opts.iter().filter(|o| !HEAD.contains(&o.name.as_str())).cloned().collect();
    for (i, element) in rest.split(|o| o.name == "next").enumerate() {
        if i > 0 {
            out.push(flag("next"));
        }
        out.extend(reorder(element.to_vec(), ELEMENT));
    }
    out
}

#[cfg(test)]
mod civil_tests {
    use super::{civil_from_days, days_from_civil};

    #[test]
    fn civil_from_days_inverts_days_from_civil() {
        // About ±2,200 years around the epoch, leap centuries included.
        for days in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{days}: {y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(1900, 3, 1) - 1), (1900, 2, 28));
    }
}
