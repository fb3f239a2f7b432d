//! Canonical form: what `iptables-save` prints after a rule is applied (`formats.md` §9,
//! §10). Canonicalisation is a data transformation on the model; text is the syntax
//! crate's business.

use crate::Family;
use crate::addr::Protocol;
use crate::names::Backend;
use crate::rule::Rule;
use crate::ruleset::Ruleset;

/// What canonicalisation depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CanonOptions {
    /// The backend whose save output is the reference.
    pub backend: Backend,
    /// The family of the ruleset the rule belongs to.
    pub family: Option<Family>,
}

/// The rule as iptables-save would print it after loading it.
pub fn canonicalize_rule(rule: &Rule, opts: CanonOptions) -> Rule {
    let mut r = rule.clone();
    r.counters = None;
    for a in [&mut r.src, &mut r.dst].into_iter().flatten() {
        a.value = a.value.canonical();
    }
    if r.src.as_ref().is_some_and(|a| !a.negated && a.value.is_any()) {
        r.src = None;
    }
    if r.dst.as_ref().is_some_and(|a| !a.negated && a.value.is_any()) {
        r.dst = None;
    }
    for i in [&mut r.in_iface, &mut r.out_iface] {
        if i.as_ref().is_some_and(|x| !x.negated && x.value.as_str() == "+") {
            *i = None;
        }
    }
    if r.proto.as_ref().is_some_and(|p| !p.negated && p.value == Protocol::Number(0)) {
        r.proto = None;
    }
    let family =
        opts.family.or_else(|| r.src.as_ref().or(r.dst.as_ref()).and_then(|a| a.value.family()));
    crate::extensions::canonicalize_matches(&mut r, opts.backend, family.unwrap_or(Family::V4));
    crate::extensions::canonicalize_action(&mut r, opts.backend, family.unwrap_or(Family::V4));
    r
}

/// The whole ruleset in canonical form: every rule canonical, chains sorted as
/// iptables-save sorts them, counters kept.
pub fn canonicalize(ruleset: &Ruleset, backend: Backend) -> Ruleset {
    let opts = CanonOptions { backend, family: Some(ruleset.family) };
    let mut out = ruleset.clone();
    for t in &mut out.tables {
        t.sort_chains();
        for c in &mut t.chains {
            for r in &mut c.rules {
                let counters = r.counters;
                *r = canonicalize_rule(r, opts);
                r.counters = counters;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, ChainName, Match, Negatable, Opt, Target};

    /// A tiny reader for test rules: `-p P`, `-s A`, `-d A`, `-i I`, `-o I`, `-m M`,
    /// `[!] --opt args…`, `-j T [--opt args…]`, `-g C`. Arguments run to the next token
    /// that starts with `-` (numbers like `-1` are not used here) or is `!`.
    fn rule(text: &str) -> Rule {
        let toks: Vec<&str> = text.split_whitespace().collect();
        let mut r = Rule::default();
        let mut i = 0;
        let mut neg = false;
        let mut in_target = false;
        while i < toks.len() {
            let t = toks[i];
            i += 1;
            let mut take = || {
                let v = toks[i];
                i += 1;
                v
            };
            match t {
                "!" => neg = true,
                "-p" => r.proto = Some(Negatable { negated: neg, value: take().parse().unwrap() }),
                "-s" => r.src = Some(Negatable { negated: neg, value: take().parse().unwrap() }),
                "-d" => r.dst = Some(Negatable { negated: neg, value: take().parse().unwrap() }),
                "-i" => {
                    r.in_iface = Some(Negatable {
                        negated: neg,
                        value: crate::Interface::new(take()).unwrap(),
                    });
                }
                "-m" => r.matches.push(Match::new(take())),
                "-j" => {
                    r.action = Some(Action::Jump(Target::new(take())));
                    in_target = true;
                }
                "-g" => r.action = Some(Action::Goto(ChainName::new(take()).unwrap())),
                opt => {
                    let name = opt.strip_prefix("--").unwrap();
                    let mut args = Vec::new();
                    while i < toks.len() && !toks[i].starts_with('-') && toks[i] != "!" {
                        args.push(toks[i].to_owned());
                        i += 1;
                    }
                    let o = Opt { negated: neg, name: name.to_owned(), args };
                    match (&mut r.action, in_target) {
                        (Some(Action::Jump(t)), true) => t.opts.push(o),
                        _ => r.matches.last_mut().unwrap().opts.push(o),
                    }
                }
            }
            if t != "!" {
                neg = false;
            }
        }
        r
    }

    fn render(r: &Rule) -> String {
        let mut out = Vec::new();
        let bang = |n: bool| if n { "! " } else { "" };
        if let Some(a) = &r.src {
            out.push(format!("{}-s {}", bang(a.negated), a.value));
        }
        if let Some(a) = &r.dst {
            out.push(format!("{}-d {}", bang(a.negated), a.value));
        }
        if let Some(p) = &r.proto {
            out.push(format!("{}-p {}", bang(p.negated), p.value));
        }
        let opts = |out: &mut Vec<String>, opts: &[Opt]| {
            for o in opts {
                let mut s = format!("{}--{}", bang(o.negated), o.name);
                for a in &o.args {
                    s.push(' ');
                    s.push_str(a);
                }
                out.push(s);
            }
        };
        for m in &r.matches {
            out.push(format!("-m {}", m.name));
            opts(&mut out, &m.opts);
        }
        match &r.action {
            Some(Action::Jump(t)) => {
                out.push(format!("-j {}", t.name));
                opts(&mut out, &t.opts);
            }
            Some(Action::Goto(c)) => out.push(format!("-g {c}")),
            None => {}
        }
        out.join(" ")
    }

    #[track_caller]
    fn check(backend: Backend, family: Family, input: &str, expect: &str) {
        let opts = CanonOptions { backend, family: Some(family) };
        assert_eq!(render(&canonicalize_rule(&rule(input), opts)), expect, "input: {input}");
    }

    #[track_caller]
    fn both(input: &str, expect: &str) {
        check(Backend::Nft, Family::V4, input, expect);
        check(Backend::Legacy, Family::V4, input, expect);
    }

    #[test]
    fn tcp_udp() {
        both("-p tcp -m tcp --sport 1024:", "-p tcp -m tcp --sport 1024:65535");
        both("-p tcp -m tcp --sport :", "-p tcp -m tcp");
        both("-p tcp -m tcp ! --sport :", "-p tcp -m tcp ! --sport 0:65535");
        both("-p tcp -m tcp --dport :4", "-p tcp -m tcp --dport 0:4");
        both("-p tcp -m tcp --dport 4:4", "-p tcp -m tcp --dport 4");
        both("-p tcp -m tcp --syn", "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN");
        both(
            "-p tcp -m tcp --tcp-flags ALL NONE",
            "-p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE",
        );
        both(
            "-p tcp -m tcp --dport ssh --tcp-option 2 --source-port http",
            "-p tcp -m tcp --sport 80 --dport 22 --tcp-option 2",
        );
        both("-p 6 -m tcp --dport 1", "-p tcp -m tcp --dport 1");
        both("-p udp -m udp --dport domain", "-p udp -m udp --dport 53");
        // nft merges duplicate matches and folds a negated range from 0.
        check(
            Backend::Nft,
            Family::V4,
            "-p tcp -m tcp --dport 22 -m comment --comment x -m tcp ! --sport 0:1000",
            "-p tcp -m tcp --sport 1001:65535 --dport 22 -m comment --comment x",
        );
        check(
            Backend::Legacy,
            Family::V4,
            "-p tcp -m tcp --dport 22 -m comment --comment x -m tcp ! --sport 0:1000",
            "-p tcp -m tcp --dport 22 -m comment --comment x -m tcp ! --sport 0:1000",
        );
        check(
            Backend::Nft,
            Family::V4,
            "-p tcp -m tcp --tcp-option 2 -m tcp --dport 5",
            "-p tcp -m tcp --tcp-option 2 -m tcp --dport 5",
        );
    }

    #[test]
    fn other_matches() {
        both("-p icmp -m icmp --icmp-type echo-request", "-p icmp -m icmp --icmp-type 8");
        both("-p icmp -m icmp --icmp-type 255/0:255", "-p icmp -m icmp --icmp-type any");
        check(
            Backend::Nft,
            Family::V6,
            "-p icmpv6 -m icmp6 --icmpv6-type echo-request",
            "-p ipv6-icmp -m icmp6 --icmpv6-type 128",
        );
        both(
            "-m conntrack --ctstate ESTABLISHED,RELATED",
            "-m conntrack --ctstate RELATED,ESTABLISHED",
        );
        both(
            "-m conntrack --ctdir ORIGINAL --ctproto tcp --ctorigdstport :4 --ctstate NEW",
            "-m conntrack --ctstate NEW --ctproto 6 --ctorigdstport 0:4 --ctdir ORIGINAL",
        );
        both("-m state --state ESTABLISHED,NEW", "-m state --state NEW,ESTABLISHED");
        both("-m limit --limit 1/s --limit-burst 5", "-m limit --limit 1/sec");
        both("-m limit --limit 10/h --limit-burst 7", "-m limit --limit 10/hour --limit-burst 7");
        both("-m limit", "-m limit --limit 3/hour");
        both(
            "-p tcp -m multiport --destination-ports 22,http,443:500",
            "-p tcp -m multiport --dports 22,80,443:500",
        );
        both("-m mark --mark 4294967295", "-m mark --mark 0xffffffff");
        both("-m connmark --mark 0/0xffffffff", "-m connmark --mark 0x0");
        both(
            "-m recent --name ssh --set",
            "-m recent --set --name ssh --mask 255.255.255.255 --rsource",
        );
        both(
            "-m connlimit --connlimit-above 10 --connlimit-daddr",
            "-m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-daddr",
        );
        both(
            "-m owner --gid-owner 5:10 --uid-owner root",
            "-m owner --uid-owner 0 --gid-owner 5-10",
        );
        both(
            "-m addrtype --dst-type LOCAL --src-type BROADCAST,UNICAST",
            "-m addrtype --src-type UNICAST,BROADCAST --dst-type LOCAL",
        );
        both("-m mac --mac-source AA:BB:CC:DD:EE:FF", "-m mac --mac-source aa:bb:cc:dd:ee:ff");
        both("-p esp -m esp --espspi 0:4294967295", "-p esp -m esp");
        both("-m tos --tos Minimize-Delay", "-m tos --tos 0x10/0x3f");
        both("-m dscp --dscp-class EF", "-m dscp --dscp 0x2e");
        both(
            "-m connbytes --connbytes 1000: --connbytes-dir original --connbytes-mode packets",
            "-m connbytes --connbytes 1000 --connbytes-mode packets --connbytes-dir original",
        );
        both("-m unknownmod --zzz 1 --aaa", "-m unknownmod --zzz 1 --aaa");
        both(
            "-m time --weekdays Fri,Mon --timestop 18:00 --timestart 9:00",
            "-m time --timestart 09:00:00 --timestop 18:00:00 --weekdays Mon,Fri --datestop 2038-01-19T03:14:07",
        );
        both(
            "-m time --datestart 2001-02-03T04:05:06 --datestop 2012-09-08T09:06:05 --monthdays 5,1 --kerneltz",
            "-m time --monthdays 1,5 --datestart 2001-02-03T04:05:06 --datestop 2012-09-08T09:06:05 --kerneltz",
        );
        both(
            "-m statistic --mode random --probability 0.5",
            "-m statistic --mode random --probability 0.50000000000",
        );
        both(
            "-m u32 --u32 0>>22&0x3C@12>>26&0x3C@0=0x47455420",
            "-m u32 --u32 0x0>>0x16&0x3c@0xc>>0x1a&0x3c@0x0=0x47455420",
        );
        both("-m devgroup --src-group 1", "-m devgroup --src-group 0x1");
        check(
            Backend::Nft,
            Family::V6,
            "-m ipv6header --header frag --soft",
            "-m ipv6header --header ipv6-frag --soft",
        );
        // Invalid values are left as written.
        both("-p tcp -m tcp --dport 70000", "-p tcp -m tcp --dport 70000");
    }

    #[test]
    fn targets() {
        both("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable");
        check(
            Backend::Nft,
            Family::V6,
            "-j REJECT",
            "-j REJECT --reject-with icmp6-port-unreachable",
        );
        both(
            "-j REJECT --reject-with port-unreach",
            "-j REJECT --reject-with icmp-port-unreachable",
        );
        both("-j LOG --log-level warning", "-j LOG");
        both(
            "-j LOG --log-uid --log-level debug --log-prefix x",
            "-j LOG --log-prefix x --log-level 7 --log-uid",
        );
        both("-j MARK --set-mark 0x1", "-j MARK --set-xmark 0x1/0xffffffff");
        both("-j MARK --and-mark 0xff", "-j MARK --set-xmark 0x0/0xffffff00");
        both("-j MARK --or-mark 0x4000", "-j MARK --set-xmark 0x4000/0x4000");
        both(
            "-j CONNMARK --save-mark --mask 0xff",
            "-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff",
        );
        both(
            "-j CONNMARK --restore-mark",
            "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        );
        both("-p tcp -j DNAT --to 1.2.3.4:http", "-p tcp -j DNAT --to-destination 1.2.3.4:80");
        both("-p udp -j REDIRECT --to-ports 512-512", "-p udp -j REDIRECT --to-ports 512");
        both("-j NETMAP --to 1.2.3.4", "-j NETMAP --to 1.2.3.4/32");
        both("-j TOS --and-tos 0x12", "-j TOS --set-tos 0x00/0xed");
        both("-j DSCP --set-dscp-class EF", "-j DSCP --set-dscp 0x2e");
        both("-j NFQUEUE --queue-bypass", "-j NFQUEUE --queue-num 0 --queue-bypass");
        both("-j NFQUEUE --queue-balance 4:", "-j NFQUEUE --queue-balance 4:65534");
        both("-j NFLOG --nflog-group 0", "-j NFLOG");
        both("-j MYCHAIN", "-j MYCHAIN");
        both("-g MYCHAIN", "-g MYCHAIN");
    }

    #[test]
    fn base_fields() {
        both("-s 10.11.12.13/8 -d 0.0.0.0/0 -p all -j ACCEPT", "-s 10.0.0.0/8 -j ACCEPT");
        both("! -s 0.0.0.0 -j ACCEPT", "! -s 0.0.0.0/32 -j ACCEPT");
        both("-i + -p tcp", "-p tcp");
    }
}

#[cfg(test)]
mod delete_tests {
    use crate::{Action, Command, Family, Rule, RuleSelector, Ruleset, TableName, Target};

    #[test]
    fn delete_by_spec_uses_the_ruleset_family() {
        let mut rs = Ruleset::new(Family::V6);
        let mut saved = Target::new("REJECT");
        saved.opts.push(crate::Opt::new("reject-with", &["icmp6-port-unreachable"]));
        let rule = Rule { action: Some(Action::Jump(saved)), ..Rule::default() };
        rs.execute(TableName::Filter, Command::Append { chain: "INPUT".into(), rule }).unwrap();
        let spec = Rule { action: Some(Action::Jump(Target::new("REJECT"))), ..Rule::default() };
        let del =
            Command::Delete { chain: "INPUT".into(), which: RuleSelector::Spec(Box::new(spec)) };
        rs.execute(TableName::Filter, del).unwrap();
        assert_eq!(rs.rule_count(), 0);
    }
}
