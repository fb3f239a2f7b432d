//! Reading an iptables-nft ruleset straight from the kernel, over netlink.
//!
//! `iptables-nft-save` takes a second on kube-proxy's 110,000 rules: it asks the kernel
//! for each of the 40,000 chains in a request of its own and decodes every answer through
//! libxtables. This module makes the same per-chain requests (a whole-table dump costs
//! the kernel quadratic time) on one socket per core, and decodes the nf_tables
//! expressions that iptables-nft 1.8 writes back into the text `iptables-nft-save`
//! prints, byte for byte (tested against the real tool, `tests/nft_read.rs`): 0.3-0.45 s.
//!
//! It decodes only what it knows exactly: the address, interface and protocol matches,
//! tcp/udp ports and flags, `mark`, `limit`, and the xt matches `comment`, `statistic`,
//! `conntrack` (`--ctstate`/`--state`), `addrtype`, `multiport`, `tcp`, `udp`, `icmp`,
//! `limit`; the verdicts, and the xt targets `DNAT`, `SNAT`, `MASQUERADE`, `MARK`,
//! `REJECT`, `LOG`. Anything else (another module, an expression iptables-nft did not
//! write, a revision or a field it does not expect, a table changed during the read,
//! IPv6) is [`NftReadError::Unsupported`] or another error, and the caller reads the
//! kernel with the tool instead: the reader never guesses.

mod netlink;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use portcullis_rules::{Family, TableName};

use crate::exec::Counters;

use self::netlink::{Attrs, GETCHAIN, GETGEN, GETRULE, Socket, be32, be64, string};

/// Why the kernel could not be read over netlink; the caller falls back to the tool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NftReadError {
    /// A system call failed.
    #[error("netlink: {0}")]
    Io(String),
    /// The kernel answered with an error (errno).
    #[error("netlink: the kernel answered errno {0}")]
    Kernel(i32),
    /// The ruleset changed during the dump.
    #[error("netlink: the ruleset changed during the dump")]
    Interrupted,
    /// A reply did not have the layout netlink promises.
    #[error("netlink: malformed reply")]
    Malformed,
    /// Something this reader does not decode exactly (named).
    #[error("not decoded here: {0}")]
    Unsupported(String),
}

impl From<nix::Error> for NftReadError {
    fn from(e: nix::Error) -> Self {
        Self::Io(e.to_string())
    }
}

fn unsupported(what: impl Into<String>) -> NftReadError {
    NftReadError::Unsupported(what.into())
}

const NFPROTO_IPV4: u8 = 2;

/// The tables in the order `iptables-nft-save` prints them.
const TABLE_ORDER: [TableName; 5] =
    [TableName::Mangle, TableName::Security, TableName::Raw, TableName::Filter, TableName::Nat];

const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// What `iptables-nft-save` prints for `tables` (every table when `None`) of the
/// namespace `netns`, with `-c` when `counters` is [`Counters::Keep`], without its `#`
/// comment lines, read over netlink.
///
/// ```no_run
/// use portcullis_rules::Family;
/// use portcullis_apply::Counters;
/// let text = portcullis_apply::nft_save(Some("pcl-demo"), Family::V4, None, Counters::Drop)?;
/// assert!(text.contains("COMMIT\n"));
/// # Ok::<(), portcullis_apply::NftReadError>(())
/// ```
pub fn nft_save(
    netns: Option<&str>,
    family: Family,
    tables: Option<&[TableName]>,
    counters: Counters,
) -> Result<String, NftReadError> {
    let mut out = String::new();
    for t in nft_tables(netns, family, tables, counters)? {
        let _ = writeln!(out, "*{}", t.name.as_str());
        for c in &t.chains {
            match c.builtin {
                Some((policy, pk, by)) => {
                    let _ = writeln!(out, ":{} {policy} [{pk}:{by}]", c.name);
                }
                None => {
                    let _ = writeln!(out, ":{} - [0:0]", c.name);
                }
            }
        }
        for c in &t.chains {
            out.push_str(&c.rules);
        }
        out.push_str("COMMIT\n");
    }
    Ok(out)
}

/// One table as read from the kernel: its chains in `iptables-nft-save`'s order.
#[derive(Debug)]
pub(crate) struct KernelTable {
    pub(crate) name: TableName,
    pub(crate) chains: Vec<KernelChain>,
}

/// One chain as read from the kernel.
#[derive(Debug)]
pub(crate) struct KernelChain {
    pub(crate) name: String,
    /// A builtin chain's policy and counters; `None` for a user chain.
    pub(crate) builtin: Option<(&'static str, u64, u64)>,
    /// Its rules as `-A` lines, each ending in a newline.
    pub(crate) rules: String,
}

/// The tables `tables` (every one when `None`) of the namespace, read over netlink and
/// decoded (see [`consistent`]).
pub(crate) fn nft_tables(
    netns: Option<&str>,
    family: Family,
    tables: Option<&[TableName]>,
    counters: Counters,
) -> Result<Vec<KernelTable>, NftReadError> {
    if family != Family::V4 {
        return Err(unsupported("IPv6"));
    }
    consistent(netns, |sock| read(sock, netns, tables, counters))
}

/// The chains `names` of `table`, each as `iptables-nft -t TABLE -S CHAIN` prints it
/// (`-P NAME POLICY` or `-N NAME`, then its `-A` lines), `None` for a chain that does
/// not exist; read over netlink (one request for the chain, one dump of its rules). The
/// same decoder as [`nft_save`], with the same refusals.
///
/// ```no_run
/// use portcullis_rules::{Family, TableName};
/// let names = ["INPUT".to_owned()];
/// let specs = portcullis_apply::nft_list_chains(None, Family::V4, TableName::Filter, &names)?;
/// assert!(specs[0].as_deref().is_some_and(|s| s.starts_with("-P INPUT ")));
/// # Ok::<(), portcullis_apply::NftReadError>(())
/// ```
pub fn nft_list_chains(
    netns: Option<&str>,
    family: Family,
    table: TableName,
    names: &[String],
) -> Result<Vec<Option<String>>, NftReadError> {
    if family != Family::V4 {
        return Err(unsupported("IPv6"));
    }
    let t = cstring(table.as_str());
    consistent(netns, |sock| {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let mut head = None;
            // NFTA_CHAIN_TABLE 1, NAME 3, HOOK 4, POLICY 5.
            let n = cstring(name);
            let got = sock.request(GETCHAIN, NFPROTO_IPV4, false, &[(1, &t), (3, &n)], |body| {
                let a = Attrs::new(body).table::<6>()?;
                if string(a[3])? != name {
                    return Err(unsupported("another chain in a chain's answer"));
                }
                head = Some(if a[4].is_some() {
                    hook_of(name)?;
                    format!("-P {name} {}\n", policy(a[5])?)
                } else {
                    format!("-N {name}\n")
                });
                Ok(())
            });
            match got {
                // ENOENT: no such chain (or table).
                Err(NftReadError::Kernel(2)) => {
                    out.push(None);
                    continue;
                }
                other => other?,
            }
            let mut text = head.ok_or(NftReadError::Malformed)?;
            let rules = rules_of(sock, &[(table, name.as_str())], Counters::Drop)?;
            text.push_str(rules.first().map_or("", String::as_str));
            out.push(Some(text));
        }
        Ok(out)
    })
}

/// Runs `read` on a netlink socket in the namespace until the ruleset's generation is
/// the same before and after it (three tries). A dump interrupted by a change is read
/// again on a new socket (the old one still holds the rest of that dump).
fn consistent<T>(
    netns: Option<&str>,
    mut read: impl FnMut(&mut Socket) -> Result<T, NftReadError>,
) -> Result<T, NftReadError> {
    let mut sock = Socket::open(netns)?;
    for _ in 0..3 {
        let before = generation(&mut sock)?;
        match read(&mut sock) {
            Err(NftReadError::Interrupted) => sock = Socket::open(netns)?,
            got => {
                let got = got?;
                if generation(&mut sock)? == before {
                    return Ok(got);
                }
            }
        }
    }
    Err(NftReadError::Interrupted)
}

fn generation(sock: &mut Socket) -> Result<u32, NftReadError> {
    let mut id = None;
    sock.request(GETGEN, 0, false, &[], |body| {
        let [_, gen_id] = Attrs::new(body).table::<2>()?;
        id = Some(be32(gen_id)?);
        Ok(())
    })?;
    id.ok_or(NftReadError::Malformed)
}

/// `s` with its terminating NUL, as netlink string attributes are sent.
fn cstring(s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len() + 1);
    cstring_into(&mut b, s);
    b
}

/// [`cstring`] into a buffer that is reused (one per chain read).
fn cstring_into(buf: &mut Vec<u8>, s: &str) {
    buf.clear();
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// The hook number of a base chain: iptables knows only its five builtin names.
fn hook_of(name: &str) -> Result<usize, NftReadError> {
    HOOKS.iter().position(|h| *h == name).ok_or_else(|| unsupported(format!("base chain {name}")))
}

/// A base chain's `NFTA_CHAIN_POLICY` as iptables prints it.
fn policy(a: Option<&[u8]>) -> Result<&'static str, NftReadError> {
    match a.map(|p| be32(Some(p))).transpose()? {
        Some(0) => Ok("DROP"),
        Some(1) | None => Ok("ACCEPT"),
        Some(p) => Err(unsupported(format!("chain policy {p}"))),
    }
}

fn read(
    sock: &mut Socket,
    netns: Option<&str>,
    only: Option<&[TableName]>,
    counters: Counters,
) -> Result<Vec<KernelTable>, NftReadError> {
    // Per table: the builtin chains by hook (policy and counters), the user chains.
    type Chains = ([Option<(&'static str, u64, u64)>; 5], Vec<String>);
    let mut tables: HashMap<TableName, Chains> = HashMap::new();
    let wanted = |name: &str| -> Option<TableName> {
        let t: TableName = name.parse().ok()?;
        only.is_none_or(|o| o.contains(&t)).then_some(t)
    };
    let mut foreign = None;
    sock.request(GETCHAIN, NFPROTO_IPV4, true, &[], |body| {
        // NFTA_CHAIN_TABLE 1, NAME 3, HOOK 4, POLICY 5, COUNTERS 8.
        let a = Attrs::new(body).table::<9>()?;
        let table = string(a[1])?;
        let Some(t) = wanted(table) else {
            if table.parse::<TableName>().is_err() {
                foreign.get_or_insert_with(|| table.to_owned());
            }
            return Ok(());
        };
        let name = string(a[3])?;
        let (base, user) = tables.entry(t).or_default();
        if a[4].is_some() {
            let (mut pk, mut by) = (0, 0);
            if let Some(c) = a[8] {
                let [_, bytes, packets] = Attrs::new(c).table::<3>()?;
                (by, pk) = (be64(bytes)?, be64(packets)?);
            }
            base[hook_of(name)?] = Some((policy(a[5])?, pk, by));
        } else {
            user.push(name.to_owned());
        }
        Ok(())
    })?;
    if let Some(t) = foreign {
        // iptables-nft-save warns about tables it does not know; let it.
        return Err(unsupported(format!("table {t}")));
    }
    // The tables and their chains in the order of the output: per table the builtins by
    // hook, then the user chains by name; the rules are read next.
    let mut out: Vec<KernelTable> = tables
        .into_iter()
        .map(|(name, (base, mut user))| {
            user.sort();
            let builtins = base.into_iter().enumerate().filter_map(|(hook, b)| {
                b.map(|b| KernelChain {
                    name: HOOKS[hook].to_owned(),
                    builtin: Some(b),
                    rules: String::new(),
                })
            });
            let users = user.into_iter().map(|name| KernelChain {
                name,
                builtin: None,
                rules: String::new(),
            });
            KernelTable { name, chains: builtins.chain(users).collect() }
        })
        .collect();
    out.sort_by_key(|t| TABLE_ORDER.iter().position(|o| *o == t.name));
    let jobs: Vec<(usize, usize)> = out
        .iter()
        .enumerate()
        .flat_map(|(t, table)| (0..table.chains.len()).map(move |c| (t, c)))
        .collect();
    // One dump per chain, as iptables-nft-save does: the kernel resumes a dump by
    // counting past what it sent, so a whole table's dump costs quadratic time (2.4 s of
    // system time for kube-proxy's 110,000 rules, against 0.6 s for per-chain dumps).
    // The chains are dealt round robin (a like share of big and small chains each) to a
    // few sockets, each on its own thread.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let mut sockets = vec![];
    for _ in 1..workers.min(jobs.len()) {
        sockets.push(Socket::open(netns)?);
    }
    let ways = sockets.len() + 1;
    let shares: Vec<Vec<(TableName, &str)>> = (0..ways)
        .map(|k| {
            let mine = jobs.iter().skip(k).step_by(ways);
            mine.map(|&(t, c)| (out[t].name, out[t].chains[c].name.as_str())).collect()
        })
        .collect();
    let done: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares[1..]
            .iter()
            .zip(sockets.iter_mut())
            .map(|(part, sock)| s.spawn(move || rules_of(sock, part, counters)))
            .collect();
        let mut all = vec![rules_of(sock, &shares[0], counters)?];
        for h in handles {
            let part = h.join().map_err(|_| NftReadError::Io("reader thread panicked".into()))?;
            all.push(part?);
        }
        Ok::<_, NftReadError>(all)
    })?;
    drop(shares);
    for (k, texts) in done.into_iter().enumerate() {
        for (i, text) in texts.into_iter().enumerate() {
            let (t, c) = jobs[k + i * ways];
            out[t].chains[c].rules = text;
        }
    }
    Ok(out)
}

/// The rules of each chain of `part`, as `-A` lines (after `[packets:bytes] ` with
/// `counters`).
fn rules_of(
    sock: &mut Socket,
    part: &[(TableName, &str)],
    counters: Counters,
) -> Result<Vec<String>, NftReadError> {
    let mut out = Vec::with_capacity(part.len());
    let mut line = String::new();
    let (mut t, mut c) = (Vec::new(), Vec::new());
    for &(table, chain) in part {
        cstring_into(&mut t, table.as_str());
        cstring_into(&mut c, chain);
        let mut text = String::new();
        sock.request(GETRULE, NFPROTO_IPV4, true, &[(1, &t), (2, &c)], |body| {
            // NFTA_RULE_TABLE 1, CHAIN 2, EXPRESSIONS 4, USERDATA 7.
            let a = Attrs::new(body).table::<8>()?;
            if string(a[1])? != table.as_str() || string(a[2])? != chain {
                return Err(unsupported("a rule of another chain in a chain's dump"));
            }
            if a[7].is_some() {
                return Err(unsupported("rule user data"));
            }
            line.clear();
            let (packets, bytes) = decode_rule(a[4].unwrap_or(&[]), &mut line)?;
            if counters == Counters::Keep {
                let _ = write!(text, "[{packets}:{bytes}] ");
            }
            text.push_str("-A ");
            text.push_str(chain);
            text.push_str(&line);
            text.push('\n');
            Ok(())
        })?;
        out.push(text);
    }
    Ok(out)
}

/// What register 1 holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    Nothing,
    Meta(u32),
    Payload { base: u32, offset: u32, len: u32 },
}

const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_L4PROTO: u32 = 16;
const BASE_NETWORK: u32 = 1;
const BASE_TRANSPORT: u32 = 2;

#[derive(Default)]
struct Rule {
    src: Option<(Ipv4Addr, Ipv4Addr, bool)>,
    dst: Option<(Ipv4Addr, Ipv4Addr, bool)>,
    iif: Option<(String, bool)>,
    oif: Option<(String, bool)>,
    proto: Option<(u8, bool)>,
    /// Matches in order; `None` marks where the tcp/udp ports match goes.
    matches: Vec<Option<String>>,
    ports: Option<Ports>,
    target: Option<String>,
}

#[derive(Default)]
struct Ports {
    sport: Option<(u16, u16, bool)>,
    dport: Option<(u16, u16, bool)>,
    /// `--tcp-flags`: mask, comparison, inverted.
    flags: Option<(u8, u8, bool)>,
}

/// Appends a rule's matches and target (after its `-A CHAIN`) to `line`; returns its
/// counters (packets, bytes).
fn decode_rule(exprs: &[u8], line: &mut String) -> Result<(u64, u64), NftReadError> {
    let mut r = Rule::default();
    let mut counted = (0, 0);
    let mut reg = Loaded::Nothing;
    let mut mask: Option<Vec<u8>> = None;
    for e in Attrs::new(exprs) {
        let (_, elem) = e?;
        // NFTA_EXPR_NAME 1, DATA 2.
        let [_, name, data] = Attrs::new(elem).table::<3>()?;
        let name = string(name)?;
        let d = Attrs::new(data.unwrap_or(&[]));
        if r.target.is_some() {
            return Err(unsupported(format!("expression {name} after the target")));
        }
        match name {
            "counter" => {
                // NFTA_COUNTER_BYTES 1, PACKETS 2.
                let [_, bytes, packets] = d.table::<3>()?;
                counted = (be64(packets)?, be64(bytes)?);
            }
            "meta" => {
                // NFTA_META_DREG 1, KEY 2, SREG 3.
                let [_, dreg, key, sreg] = d.table::<4>()?;
                if sreg.is_some() || be32(dreg)? != 1 {
                    return Err(unsupported("meta set"));
                }
                reg = Loaded::Meta(be32(key)?);
                mask = None;
            }
            "payload" => {
                // NFTA_PAYLOAD_DREG 1, BASE 2, OFFSET 3, LEN 4, SREG 5.
                let a = d.table::<6>()?;
                if a[5].is_some() || be32(a[1])? != 1 {
                    return Err(unsupported("payload write"));
                }
                reg = Loaded::Payload { base: be32(a[2])?, offset: be32(a[3])?, len: be32(a[4])? };
                mask = None;
            }
            "bitwise" => {
                // NFTA_BITWISE_SREG 1, DREG 2, LEN 3, MASK 4, XOR 5, OP 6, DATA 7.
                let a = d.table::<8>()?;
                if be32(a[1])? != 1 || be32(a[2])? != 1 || a[7].is_some() {
                    return Err(unsupported("bitwise"));
                }
                if a[6].map(|o| be32(Some(o))).transpose()?.is_some_and(|o| o != 0) {
                    return Err(unsupported("bitwise shift"));
                }
                let xor = value(a[5])?;
                if xor.iter().any(|&b| b != 0) || mask.is_some() {
                    return Err(unsupported("bitwise xor"));
                }
                mask = Some(value(a[4])?.to_vec());
            }
            "cmp" => {
                // NFTA_CMP_SREG 1, OP 2, DATA 3.
                let [_, sreg, op, data] = d.table::<4>()?;
                if be32(sreg)? != 1 {
                    return Err(unsupported("cmp register"));
                }
                let neq = match be32(op)? {
                    0 => false,
                    1 => true,
                    o => return Err(unsupported(format!("cmp op {o}"))),
                };
                cmp(&mut r, reg, mask.take(), value(data)?, neq)?;
                reg = Loaded::Nothing;
            }
            "range" => {
                // NFTA_RANGE_SREG 1, OP 2, FROM_DATA 3, TO_DATA 4.
                let [_, sreg, op, from, to] = d.table::<5>()?;
                if be32(sreg)? != 1 || mask.is_some() {
                    return Err(unsupported("range register"));
                }
                let neq = match be32(op)? {
                    0 => false,
                    1 => true,
                    o => return Err(unsupported(format!("range op {o}"))),
                };
                let (from, to) = (port(value(from)?)?, port(value(to)?)?);
                let Loaded::Payload { base: BASE_TRANSPORT, offset, len: 2 } = reg else {
                    return Err(unsupported("range on something else than a port"));
                };
                set_ports(&mut r, offset, (from, to, neq))?;
                reg = Loaded::Nothing;
            }
            "immediate" => {
                // NFTA_IMMEDIATE_DREG 1, DATA 2; NFTA_DATA_VERDICT 2; NFTA_VERDICT_CODE 1,
                // CHAIN 2.
                let [_, dreg, data] = d.table::<3>()?;
                if be32(dreg)? != 0 {
                    return Err(unsupported("immediate data"));
                }
                let [_, _, verdict] = Attrs::new(data.unwrap_or(&[])).table::<3>()?;
                let [_, code, chain] =
                    Attrs::new(verdict.ok_or(NftReadError::Malformed)?).table::<3>()?;
                r.target = Some(match be32(code)? as i32 {
                    0 => " -j DROP".to_owned(),
                    1 => " -j ACCEPT".to_owned(),
                    -5 => " -j RETURN".to_owned(),
                    -3 => format!(" -j {}", string(chain)?),
                    -4 => format!(" -g {}", string(chain)?),
                    c => return Err(unsupported(format!("verdict {c}"))),
                });
            }
            "limit" => {
                // NFTA_LIMIT_RATE 1, UNIT 2, BURST 3, TYPE 4, FLAGS 5: iptables-nft's
                // native form of `-m limit`, read back as libxt_limit's rate.
                let a = d.table::<6>()?;
                let (rate, unit, burst) = (be64(a[1])?, be64(a[2])?, be32(a[3])?);
                let kind = a[4].map(|t| be32(Some(t))).transpose()?.unwrap_or(0);
                let flags = a[5].map(|t| be32(Some(t))).transpose()?.unwrap_or(0);
                if kind != 0 || flags != 0 || rate == 0 {
                    return Err(unsupported("limit of bytes or inverted"));
                }
                let avg =
                    u32::try_from(10_000 * unit / rate).map_err(|_| unsupported("limit rate"))?;
                r.matches.push(Some(limit_text(avg, burst)?));
            }
            "match" | "target" => {
                // NFTA_MATCH_NAME 1, REV 2, INFO 3 (the same for targets).
                let [_, xname, rev, info] = d.table::<4>()?;
                let (xname, rev, info) = (string(xname)?, be32(rev)?, info.unwrap_or(&[]));
                if name == "match" {
                    r.matches.push(Some(xt_match(xname, rev, info)?));
                } else {
                    r.target = Some(xt_target(xname, rev, info)?);
                }
            }
            other => return Err(unsupported(format!("expression {other}"))),
        }
    }
    if reg != Loaded::Nothing || mask.is_some() {
        return Err(unsupported("a load nothing compares"));
    }
    render(&r, line)?;
    Ok(counted)
}

/// The bytes of an `NFTA_DATA_VALUE` inside a data attribute.
fn value(a: Option<&[u8]>) -> Result<&[u8], NftReadError> {
    let [_, v] = Attrs::new(a.ok_or(NftReadError::Malformed)?).table::<2>()?;
    v.ok_or(NftReadError::Malformed)
}

fn port(b: &[u8]) -> Result<u16, NftReadError> {
    match b {
        &[a, b] => Ok(u16::from_be_bytes([a, b])),
        _ => Err(NftReadError::Malformed),
    }
}

fn cmp(
    r: &mut Rule,
    reg: Loaded,
    mask: Option<Vec<u8>>,
    v: &[u8],
    neq: bool,
) -> Result<(), NftReadError> {
    match reg {
        Loaded::Meta(META_L4PROTO) if mask.is_none() && v.len() == 1 => set_proto(r, v[0], neq),
        Loaded::Payload { base: BASE_NETWORK, offset: 9, len: 1 } if mask.is_none() => {
            set_proto(r, v[0], neq)
        }
        Loaded::Meta(key @ (META_IIFNAME | META_OIFNAME)) if mask.is_none() => {
            let name = ifname(v)?;
            let slot = if key == META_IIFNAME { &mut r.iif } else { &mut r.oif };
            if slot.replace((name, neq)).is_some() {
                return Err(unsupported("two interface matches"));
            }
            Ok(())
        }
        Loaded::Meta(META_MARK) => {
            let word = |b: &[u8]| -> Result<u32, NftReadError> {
                b.try_into().map(u32::from_ne_bytes).map_err(|_| NftReadError::Malformed)
            };
            let mark = word(v)?;
            let m = mask.as_deref().map(word).transpose()?.unwrap_or(u32::MAX);
            let mut text = String::from(" -m mark");
            if neq {
                text.push_str(" !");
            }
            text.push_str(" --mark");
            print_mark(&mut text, mark, m);
            r.matches.push(Some(text));
            Ok(())
        }
        Loaded::Payload { base: BASE_NETWORK, offset: off @ (12 | 16), len } => {
            let len = len as usize;
            if v.len() != len || len == 0 || len > 4 {
                return Err(NftReadError::Malformed);
            }
            let mut addr = [0u8; 4];
            addr[..len].copy_from_slice(v);
            let m: [u8; 4] = match mask {
                Some(m) => m.as_slice().try_into().map_err(|_| unsupported("address mask"))?,
                None => {
                    let mut m = [0u8; 4];
                    m[..len].fill(0xff);
                    m
                }
            };
            let slot = if off == 12 { &mut r.src } else { &mut r.dst };
            if slot.replace((Ipv4Addr::from(addr), Ipv4Addr::from(m), neq)).is_some() {
                return Err(unsupported("two address matches"));
            }
            Ok(())
        }
        Loaded::Payload { base: BASE_TRANSPORT, offset: 13, len: 1 }
            if r.proto == Some((6, false)) =>
        {
            let m = match mask.as_deref() {
                Some(&[m]) => m,
                None => 0xff,
                Some(_) => return Err(NftReadError::Malformed),
            };
            let &[c] = v else { return Err(NftReadError::Malformed) };
            ports_of(r)?;
            let p = r.ports.as_mut().expect("just made");
            if p.flags.replace((m, c, neq)).is_some() {
                return Err(unsupported("tcp flags matched twice"));
            }
            Ok(())
        }
        Loaded::Payload { base: BASE_TRANSPORT, offset, len: 2 } if mask.is_none() => {
            let p = port(v)?;
            set_ports(r, offset, (p, p, neq))
        }
        Loaded::Payload { base: BASE_TRANSPORT, offset: 0, len: 4 } if mask.is_none() && !neq => {
            let &[s0, s1, d0, d1] = v else { return Err(NftReadError::Malformed) };
            let (s, d) = (u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1]));
            set_ports(r, 0, (s, s, false))?;
            set_ports(r, 2, (d, d, false))
        }
        _ => Err(unsupported(format!(
            "a comparison iptables-nft does not write ({reg:?}, mask {mask:?}, {} bytes)",
            v.len()
        ))),
    }
}

fn set_proto(r: &mut Rule, p: u8, neq: bool) -> Result<(), NftReadError> {
    if r.proto.replace((p, neq)).is_some() {
        return Err(unsupported("two protocol matches"));
    }
    Ok(())
}

fn set_ports(r: &mut Rule, offset: u32, range: (u16, u16, bool)) -> Result<(), NftReadError> {
    ports_of(r)?;
    let ports = r.ports.as_mut().expect("just made");
    let slot = match offset {
        0 => &mut ports.sport,
        2 => &mut ports.dport,
        _ => return Err(unsupported("transport header field")),
    };
    if slot.replace(range).is_some() {
        return Err(unsupported("a port matched twice"));
    }
    Ok(())
}

/// Makes the rule's native tcp/udp match (where the first port or flag test stands).
fn ports_of(r: &mut Rule) -> Result<(), NftReadError> {
    match r.proto {
        Some((6 | 17, false)) => {}
        _ => return Err(unsupported("ports without -p tcp or -p udp")),
    }
    if r.ports.is_none() {
        r.ports = Some(Ports::default());
        r.matches.push(None);
    }
    Ok(())
}

/// An interface name as iptables-nft compares it: with its NUL for an exact name, without
/// for a `+` wildcard.
fn ifname(v: &[u8]) -> Result<String, NftReadError> {
    let (text, exact) = match v.iter().position(|&b| b == 0) {
        Some(i) if v[i..].iter().all(|&b| b == 0) => (&v[..i], true),
        Some(_) => return Err(unsupported("interface name")),
        None => (v, false),
    };
    let name = std::str::from_utf8(text).map_err(|_| unsupported("interface name"))?;
    if name.is_empty() || name.len() >= 16 || name.bytes().any(|b| b <= b' ') {
        return Err(unsupported("interface name"));
    }
    Ok(if exact { name.to_owned() } else { format!("{name}+") })
}

fn print_mark(out: &mut String, mark: u32, mask: u32) {
    if mask == u32::MAX {
        let _ = write!(out, " 0x{mark:x}");
    } else {
        let _ = write!(out, " 0x{mark:x}/0x{mask:x}");
    }
}

fn proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        50 => "esp",
        51 => "ah",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

fn mask_text(mask: Ipv4Addr) -> String {
    let m = u32::from(mask);
    if m.leading_ones() + m.trailing_zeros() == 32 {
        m.leading_ones().to_string()
    } else {
        mask.to_string()
    }
}

fn render(r: &Rule, out: &mut String) -> Result<(), NftReadError> {
    for (letter, a) in [('s', &r.src), ('d', &r.dst)] {
        if let Some((addr, mask, inv)) = a {
            let bang = if *inv { " !" } else { "" };
            let _ = write!(out, "{bang} -{letter} {addr}/{}", mask_text(*mask));
        }
    }
    for (letter, i) in [('i', &r.iif), ('o', &r.oif)] {
        if let Some((name, inv)) = i {
            let bang = if *inv { " !" } else { "" };
            let _ = write!(out, "{bang} -{letter} {name}");
        }
    }
    if let Some((p, inv)) = r.proto {
        let name = proto_name(p).ok_or_else(|| unsupported(format!("protocol {p}")))?;
        let bang = if inv { " !" } else { "" };
        let _ = write!(out, "{bang} -p {name}");
    }
    for m in &r.matches {
        match m {
            Some(text) => out.push_str(text),
            None => {
                let ports = r.ports.as_ref().expect("placed with the ports");
                let name = if r.proto == Some((6, false)) { "tcp" } else { "udp" };
                let _ = write!(out, " -m {name}");
                for (opt, range) in [("sport", ports.sport), ("dport", ports.dport)] {
                    if let Some((lo, hi, inv)) = range {
                        print_ports(out, opt, lo, hi, inv);
                    }
                }
                if let Some((mask, cmp, inv)) = ports.flags {
                    print_tcp_flags(out, mask, cmp, inv);
                }
            }
        }
    }
    if let Some(t) = &r.target {
        out.push_str(t);
    }
    Ok(())
}

fn ne32(info: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(info[at..at + 4].try_into().expect("four bytes"))
}

fn ipv4_at(info: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(&info[at..at + 4]).expect("four bytes"))
}

fn ne16(info: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(info[at..at + 2].try_into().expect("two bytes"))
}

/// The info block of an xt extension: its C struct, padded to 8 bytes (`XT_ALIGN`).
fn sized(name: &str, info: &[u8], size: usize) -> Result<(), NftReadError> {
    if info.len() == (size + 7) & !7 {
        Ok(())
    } else {
        Err(unsupported(format!("{name} info of {} bytes", info.len())))
    }
}

fn xt_match(name: &str, rev: u32, info: &[u8]) -> Result<String, NftReadError> {
    let mut out = String::new();
    match (name, rev) {
        ("comment", 0) => {
            sized(name, info, 256)?;
            let text = info.split(|&b| b == 0).next().unwrap_or(&[]);
            let text = std::str::from_utf8(text).map_err(|_| unsupported("comment bytes"))?;
            out.push_str(" -m comment --comment ");
            out.push_str(&portcullis_syntax::quote(text));
        }
        ("statistic", 0) => {
            // struct xt_statistic_info: u16 mode, u16 flags, u32 probability/every,
            // u32 packet, u32 count, a kernel pointer.
            sized(name, info, 24)?;
            let (mode, flags) = (ne16(info, 0), ne16(info, 2));
            if flags & !1 != 0 {
                return Err(unsupported("statistic flags"));
            }
            let bang = if flags & 1 != 0 { " !" } else { "" };
            match mode {
                0 => {
                    let p = f64::from(ne32(info, 4)) / f64::from(0x8000_0000u32);
                    let _ = write!(out, " -m statistic --mode random{bang} --probability {p:.11}");
                }
                1 => {
                    let (every, packet) = (ne32(info, 4), ne32(info, 8));
                    let _ = write!(
                        out,
                        " -m statistic --mode nth{bang} --every {} --packet {packet}",
                        u64::from(every) + 1
                    );
                }
                m => return Err(unsupported(format!("statistic mode {m}"))),
            }
        }
        ("conntrack", 3) => {
            // struct xt_conntrack_mtinfo3: 8 addresses (128 bytes), u32 expires min/max,
            // u16 l4proto and four ports, u16 match_flags @146, invert_flags @148,
            // state_mask @150, status_mask, four high ports: 164 bytes.
            sized(name, info, 164)?;
            let (flags, invert, states) = (ne16(info, 146), ne16(info, 148), ne16(info, 150));
            // XT_CONNTRACK_STATE 1, XT_CONNTRACK_STATE_ALIAS 1 << 13.
            let alias = flags & (1 << 13) != 0;
            if flags & !(1 | (1 << 13)) != 0 || flags & 1 == 0 || invert & !1 != 0 {
                return Err(unsupported("conntrack options other than --ctstate"));
            }
            out.push_str(if alias { " -m state" } else { " -m conntrack" });
            if invert & 1 != 0 {
                out.push_str(" !");
            }
            out.push_str(if alias { " --state" } else { " --ctstate" });
            let names = [
                (1u16, "INVALID"),
                (1 << 3, "NEW"),
                (1 << 2, "RELATED"),
                (1 << 1, "ESTABLISHED"),
                (1 << 8, "UNTRACKED"),
                (1 << 6, "SNAT"),
                (1 << 7, "DNAT"),
            ];
            if states & !names.iter().fold(0, |a, (b, _)| a | b) != 0 {
                return Err(unsupported("conntrack state bits"));
            }
            let mut sep = ' ';
            for (bit, n) in names {
                if states & bit != 0 {
                    out.push(sep);
                    out.push_str(n);
                    sep = ',';
                }
            }
        }
        ("addrtype", 1) => {
            // struct xt_addrtype_info_v1: u16 source, u16 dest, u32 flags.
            sized(name, info, 8)?;
            let (src, dst, flags) = (ne16(info, 0), ne16(info, 2), ne32(info, 4));
            if flags & !15 != 0 {
                return Err(unsupported("addrtype flags"));
            }
            out.push_str(" -m addrtype");
            for (types, inv, opt) in [(src, 1, "--src-type"), (dst, 2, "--dst-type")] {
                if types == 0 {
                    continue;
                }
                if flags & inv != 0 {
                    out.push_str(" !");
                }
                let _ = write!(out, " {opt} ");
                let names = [
                    "UNSPEC",
                    "UNICAST",
                    "LOCAL",
                    "BROADCAST",
                    "ANYCAST",
                    "MULTICAST",
                    "BLACKHOLE",
                    "UNREACHABLE",
                    "PROHIBIT",
                    "THROW",
                    "NAT",
                    "XRESOLVE",
                ];
                if types >> names.len() != 0 {
                    return Err(unsupported("addrtype type bits"));
                }
                let list: Vec<&str> =
                    (0..names.len()).filter(|i| types & (1 << i) != 0).map(|i| names[i]).collect();
                out.push_str(&list.join(","));
            }
            if flags & 4 != 0 {
                out.push_str(" --limit-iface-in");
            }
            if flags & 8 != 0 {
                out.push_str(" --limit-iface-out");
            }
        }
        ("tcp" | "udp", 0) => {
            // struct xt_tcp: u16 spts[2], u16 dpts[2], u8 option, flg_mask, flg_cmp,
            // invflags; struct xt_udp: the ports, u8 invflags.
            sized(name, info, if name == "tcp" { 12 } else { 10 })?;
            let inv = info[if name == "tcp" { 11 } else { 8 }];
            let _ = write!(out, " -m {name}");
            let ports = [(ne16(info, 0), ne16(info, 2)), (ne16(info, 4), ne16(info, 6))];
            for (i, (opt, (lo, hi))) in ["sport", "dport"].into_iter().zip(ports).enumerate() {
                if (lo, hi) != (0, u16::MAX) {
                    print_ports(&mut out, opt, lo, hi, inv & (1 << i) != 0);
                }
            }
            if name == "tcp" {
                let (option, mask, cmp) = (info[8], info[9], info[10]);
                if inv & !15 != 0 {
                    return Err(unsupported("tcp invflags"));
                }
                if option != 0 || inv & 8 != 0 {
                    let bang = if inv & 8 != 0 { " !" } else { "" };
                    let _ = write!(out, "{bang} --tcp-option {option}");
                }
                if mask != 0 || inv & 4 != 0 {
                    print_tcp_flags(&mut out, mask, cmp, inv & 4 != 0);
                }
            } else if inv & !3 != 0 {
                return Err(unsupported("udp invflags"));
            }
        }
        ("multiport", 1) => {
            // struct xt_multiport_v1: u8 flags, u8 count, u16 ports[15], u8 pflags[15],
            // u8 invert.
            sized(name, info, 48)?;
            let (flags, count, invert) = (info[0], usize::from(info[1]), info[47]);
            let opt = match flags {
                0 => "--sports",
                1 => "--dports",
                2 => "--ports",
                f => return Err(unsupported(format!("multiport flags {f}"))),
            };
            if count == 0 || count > 15 || invert > 1 {
                return Err(unsupported("multiport count"));
            }
            out.push_str(" -m multiport");
            if invert == 1 {
                out.push_str(" !");
            }
            let _ = write!(out, " {opt} ");
            let mut i = 0;
            while i < count {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", ne16(info, 2 + 2 * i));
                if info[32 + i] != 0 {
                    i += 1;
                    if i >= count {
                        return Err(unsupported("multiport range"));
                    }
                    let _ = write!(out, ":{}", ne16(info, 2 + 2 * i));
                }
                i += 1;
            }
        }
        ("icmp", 0) => {
            // struct ipt_icmp: u8 type, u8 code[2], u8 invflags.
            sized(name, info, 4)?;
            if info[3] & !1 != 0 {
                return Err(unsupported("icmp invflags"));
            }
            out.push_str(" -m icmp");
            if info[3] & 1 != 0 {
                out.push_str(" !");
            }
            if info[0] == 0xff {
                out.push_str(" --icmp-type any");
            } else {
                let _ = write!(out, " --icmp-type {}", info[0]);
                if info[1] != 0 || info[2] != 0xff {
                    let _ = write!(out, "/{}", info[1]);
                }
            }
        }
        ("limit", 0) => {
            // struct xt_rateinfo: u32 avg, u32 burst, then kernel-private fields.
            sized(name, info, 40)?;
            out = limit_text(ne32(info, 0), ne32(info, 4))?;
        }
        _ => return Err(unsupported(format!("match {name} revision {rev}"))),
    }
    Ok(out)
}

/// `-m limit` as libxt_limit prints it: the rate in the largest unit that keeps it exact
/// enough, the burst when it is not the default 5.
fn limit_text(avg: u32, burst: u32) -> Result<String, NftReadError> {
    const SCALE: u32 = 10_000;
    if avg == 0 {
        return Err(unsupported("limit of an infinite rate"));
    }
    let rates = [
        ("day", SCALE * 24 * 60 * 60),
        ("hour", SCALE * 60 * 60),
        ("min", SCALE * 60),
        ("sec", SCALE),
    ];
    let mut i = 1;
    while i < rates.len() && !(avg > rates[i].1 || rates[i].1 / avg < rates[i].1 % avg) {
        i += 1;
    }
    let (unit, mult) = rates[i - 1];
    let mut out = format!(" -m limit --limit {}/{unit}", mult / avg);
    if burst != 5 {
        let _ = write!(out, " --limit-burst {burst}");
    }
    Ok(out)
}

fn print_ports(out: &mut String, opt: &str, lo: u16, hi: u16, inv: bool) {
    let bang = if inv { " !" } else { "" };
    if lo == hi {
        let _ = write!(out, "{bang} --{opt} {lo}");
    } else {
        let _ = write!(out, "{bang} --{opt} {lo}:{hi}");
    }
}

/// `--tcp-flags MASK COMP` as libxt_tcp prints it.
fn print_tcp_flags(out: &mut String, mask: u8, cmp: u8, inv: bool) {
    let names = [(1u8, "FIN"), (2, "SYN"), (4, "RST"), (8, "PSH"), (16, "ACK"), (32, "URG")];
    let list = |flags: u8| -> String {
        let v: Vec<&str> = names.iter().filter(|(b, _)| flags & b != 0).map(|(_, n)| *n).collect();
        if v.is_empty() { "NONE".to_owned() } else { v.join(",") }
    };
    let bang = if inv { " !" } else { "" };
    let _ = write!(out, "{bang} --tcp-flags {} {}", list(mask), list(cmp));
}

/// `NF_NAT_RANGE_*` flags.
const MAP_IPS: u32 = 1;
const PROTO_SPECIFIED: u32 = 2;
const PROTO_RANDOM: u32 = 4;
const PERSISTENT: u32 = 8;
const PROTO_RANDOM_FULLY: u32 = 16;

fn xt_target(name: &str, rev: u32, info: &[u8]) -> Result<String, NftReadError> {
    let mut out = format!(" -j {name}");
    match (name, rev) {
        ("MARK", 2) => {
            sized(name, info, 8)?;
            let _ = write!(out, " --set-xmark 0x{:x}/0x{:x}", ne32(info, 0), ne32(info, 4));
        }
        ("LOG", 0) => {
            // struct xt_log_info: u8 level, u8 logflags, char prefix[30].
            sized(name, info, 32)?;
            let (level, flags) = (info[0], info[1]);
            if flags & !0x2f != 0 {
                return Err(unsupported("LOG flags"));
            }
            let prefix = info[2..].split(|&b| b == 0).next().unwrap_or(&[]);
            let prefix = std::str::from_utf8(prefix).map_err(|_| unsupported("LOG prefix"))?;
            if !prefix.is_empty() {
                out.push_str(" --log-prefix ");
                out.push_str(&portcullis_syntax::quote(prefix));
            }
            if level != 4 {
                let _ = write!(out, " --log-level {level}");
            }
            for (bit, opt) in [
                (1u8, "--log-tcp-sequence"),
                (2, "--log-tcp-options"),
                (4, "--log-ip-options"),
                (8, "--log-uid"),
                (0x20, "--log-macdecode"),
            ] {
                if flags & bit != 0 {
                    out.push(' ');
                    out.push_str(opt);
                }
            }
        }
        ("REJECT", 0) => {
            sized(name, info, 4)?;
            // enum ipt_reject_with, in order.
            let with = [
                "icmp-net-unreachable",
                "icmp-host-unreachable",
                "icmp-proto-unreachable",
                "icmp-port-unreachable",
                "echo-reply",
                "icmp-net-prohibited",
                "icmp-host-prohibited",
                "tcp-reset",
                "icmp-admin-prohibited",
            ];
            let w = with
                .get(ne32(info, 0) as usize)
                .ok_or_else(|| unsupported("REJECT --reject-with"))?;
            let _ = write!(out, " --reject-with {w}");
        }
        ("MASQUERADE", 0) => {
            // struct nf_nat_ipv4_multi_range_compat with one range: u32 rangesize, u32
            // flags, two addresses, two ports (network order).
            sized(name, info, 20)?;
            let flags = ne32(info, 4);
            if ne32(info, 0) != 1
                || flags & !(PROTO_SPECIFIED | PROTO_RANDOM | PROTO_RANDOM_FULLY) != 0
            {
                return Err(unsupported("MASQUERADE range"));
            }
            if flags & PROTO_SPECIFIED != 0 {
                let (lo, hi) = (port(&info[16..18])?, port(&info[18..20])?);
                let _ = write!(out, " --to-ports {lo}");
                if hi != lo {
                    let _ = write!(out, "-{hi}");
                }
            }
            nat_flags(&mut out, flags & !PERSISTENT);
        }
        ("SNAT" | "DNAT", 0) => {
            sized(name, info, 20)?;
            if ne32(info, 0) != 1 {
                return Err(unsupported("NAT ranges"));
            }
            let flags = ne32(info, 4);
            let (lo, hi) = (port(&info[16..18])?, port(&info[18..20])?);
            nat_range(&mut out, name, flags, ipv4_at(info, 8), ipv4_at(info, 12), lo, hi)?;
        }
        ("SNAT" | "DNAT", 1 | 2) => {
            // struct nf_nat_range2: u32 flags, two 16-byte addresses, two ports, and (2)
            // a base port.
            sized(name, info, if rev == 1 { 40 } else { 44 })?;
            let flags = ne32(info, 0);
            if info[8..20].iter().chain(&info[24..36]).any(|&b| b != 0)
                || (rev == 2 && ne16(info, 40) != 0)
            {
                return Err(unsupported("NAT range"));
            }
            let (lo, hi) = (port(&info[36..38])?, port(&info[38..40])?);
            nat_range(&mut out, name, flags, ipv4_at(info, 4), ipv4_at(info, 20), lo, hi)?;
        }
        _ => return Err(unsupported(format!("target {name} revision {rev}"))),
    }
    Ok(out)
}

fn nat_range(
    out: &mut String,
    name: &str,
    flags: u32,
    lo: Ipv4Addr,
    hi: Ipv4Addr,
    plo: u16,
    phi: u16,
) -> Result<(), NftReadError> {
    if flags & !(MAP_IPS | PROTO_SPECIFIED | PROTO_RANDOM | PERSISTENT | PROTO_RANDOM_FULLY) != 0
        || flags & MAP_IPS == 0
    {
        return Err(unsupported(format!("{name} range flags {flags}")));
    }
    let opt = if name == "SNAT" { "--to-source" } else { "--to-destination" };
    let _ = write!(out, " {opt} {lo}");
    if hi != lo {
        let _ = write!(out, "-{hi}");
    }
    if flags & PROTO_SPECIFIED != 0 {
        let _ = write!(out, ":{plo}");
        if phi != plo {
            let _ = write!(out, "-{phi}");
        }
    }
    nat_flags(out, flags);
    Ok(())
}

fn nat_flags(out: &mut String, flags: u32) {
    if flags & PROTO_RANDOM != 0 {
        out.push_str(" --random");
    }
    if flags & PROTO_RANDOM_FULLY != 0 {
        out.push_str(" --random-fully");
    }
    if flags & PERSISTENT != 0 {
        out.push_str(" --persistent");
    }
}

#[cfg(test)]
mod tests;
