//! The lock-out guard: would this ruleset cut the management path?
//!
//! It follows a NEW TCP connection to the ssh port (22, and the server port of
//! `SSH_CONNECTION` when the command runs over ssh) through the filter table's INPUT
//! chain, user chains included, and says whether the ruleset accepts it. Matches it cannot
//! decide (rate limits, marks, unknown modules) make the verdict uncertain, never a
//! refusal. This is a small evaluator of its own; it can later call `portcullis-eval`.

use std::fmt;
use std::net::IpAddr;

use portcullis_rules::view::{MatchView, MultiportDir, TcpFlags};
use portcullis_rules::{
    Action, Chain, Family, Negatable, Protocol, Rule, Ruleset, Table, TableName,
};

/// One management connection to protect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementPath {
    /// The server port (22 for ssh).
    pub port: u16,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The server's address the client connects to, when known.
    pub server: Option<IpAddr>,
    /// Where this path comes from, for the explanation.
    pub why: String,
}

/// The paths to protect: ssh on port 22 from anywhere, and the connection this command
/// runs over, parsed from `SSH_CONNECTION` (`client_ip client_port server_ip server_port`).
pub fn management_paths(ssh_connection: Option<&str>) -> Vec<ManagementPath> {
    let mut paths = Vec::new();
    if let Some(s) = ssh_connection {
        let f: Vec<&str> = s.split_whitespace().collect();
        if let [client, _cport, server, sport] = f[..]
            && let Ok(port) = sport.parse::<u16>()
        {
            {
                paths.push(ManagementPath {
                    port,
                    client: client.parse().ok(),
                    server: server.parse().ok(),
                    why: format!("the ssh connection this command runs over (SSH_CONNECTION={s})"),
                });
            }
        }
    }
    if !paths.iter().any(|p| p.port == 22) {
        paths.push(ManagementPath {
            port: 22,
            client: None,
            server: None,
            why: "the ssh port".to_owned(),
        });
    }
    paths
}

/// What the ruleset does with one management path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, with the step that accepts it.
    Accepted(String),
    /// Dropped or rejected for sure, with the step that does it.
    Dropped(String),
    /// The outcome depends on matches the guard cannot decide.
    Unsure(String),
    /// The ruleset does not touch the filter table's INPUT chain, or is of the other
    /// family than the path.
    NotAffected(String),
}

/// The guard's reasoning for every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardReport {
    /// Each path with its verdict and the steps that led there.
    pub checks: Vec<(ManagementPath, Verdict, Vec<String>)>,
}

impl GuardReport {
    /// Whether some path is cut for sure.
    pub fn refuses(&self) -> bool {
        self.checks.iter().any(|(_, v, _)| matches!(v, Verdict::Dropped(_)))
    }
}

impl fmt::Display for GuardReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, verdict, steps) in &self.checks {
            let from = path.client.map_or("any address".to_owned(), |c| c.to_string());
            write!(
                f,
                "lock-out guard: a NEW tcp connection from {from} to port {} ({}): ",
                path.port, path.why
            )?;
            match verdict {
                Verdict::Accepted(by) => writeln!(f, "accepted by {by}")?,
                Verdict::Dropped(by) => writeln!(f, "CUT: dropped by {by}")?,
                Verdict::Unsure(why) => writeln!(f, "uncertain: {why}")?,
                Verdict::NotAffected(why) => writeln!(f, "not affected: {why}")?,
            }
            for s in steps {
                writeln!(f, "  - {s}")?;
            }
        }
        Ok(())
    }
}

/// Checks `ruleset` against every path.
pub fn check(ruleset: &Ruleset, paths: &[ManagementPath]) -> GuardReport {
    let checks = paths.iter().map(|p| {
        let (v, steps) = check_one(ruleset, p);
        (p.clone(), v, steps)
    });
    GuardReport { checks: checks.collect() }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Maybe(String),
}

enum Flow {
    Accept(String),
    Drop(String),
    /// Fell off the end of the chain, or RETURN.
    Return,
}

struct Walk<'a> {
    table: &'a Table,
    family: Family,
    path: &'a ManagementPath,
    steps: Vec<String>,
    maybe_accept: Vec<String>,
    maybe_drop: Vec<String>,
}

fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() { Family::V4 } else { Family::V6 }
}

fn check_one(rs: &Ruleset, path: &ManagementPath) -> (Verdict, Vec<String>) {
    if path.client.is_some_and(|c| family_of(c) != rs.family) {
        return (
            Verdict::NotAffected("the connection uses the other address family".into()),
            vec![],
        );
    }
    let Some(table) = rs.table(TableName::Filter) else {
        return (Verdict::NotAffected("the ruleset has no filter table".into()), vec![]);
    };
    let Some(input) = table.chain("INPUT") else {
        return (Verdict::NotAffected("the filter table has no INPUT chain".into()), vec![]);
    };
    let mut w = Walk {
        table,
        family: rs.family,
        path,
        steps: Vec::new(),
        maybe_accept: Vec::new(),
        maybe_drop: Vec::new(),
    };
    let flow = w.chain(input, 0);
    let verdict = match flow {
        Flow::Accept(by) if w.maybe_drop.is_empty() => Verdict::Accepted(by),
        Flow::Accept(by) => Verdict::Unsure(format!(
            "accepted by {by}, unless dropped earlier by {}",
            w.maybe_drop.join(", ")
        )),
        Flow::Drop(by) if w.maybe_accept.is_empty() => Verdict::Dropped(by),
        Flow::Drop(by) => Verdict::Unsure(format!(
            "dropped by {by}, unless accepted earlier by {}",
            w.maybe_accept.join(", ")
        )),
        Flow::Return => {
            let policy = input.policy.map_or("ACCEPT", |p| p.as_str());
            let by = format!("the policy {policy} of INPUT (no rule decides first)");
            if policy == "ACCEPT" {
                if w.maybe_drop.is_empty() {
                    Verdict::Accepted(by)
                } else {
                    Verdict::Unsure(format!("{by}, unless dropped by {}", w.maybe_drop.join(", ")))
                }
            } else if w.maybe_accept.is_empty() {
                Verdict::Dropped(by)
            } else {
                Verdict::Unsure(format!("{by}, unless accepted by {}", w.maybe_accept.join(", ")))
            }
        }
    };
    (verdict, w.steps)
}

fn describe(chain: &Chain, i: usize, r: &Rule) -> String {
    let rule = portcullis_syntax::render_rule(chain.name.as_str(), r);
    if r.origin.line > 0 {
        format!("`{rule}` (line {}, {} rule {})", r.origin.line, chain.name, i + 1)
    } else {
        format!("`{rule}` ({} rule {})", chain.name, i + 1)
    }
}

impl Walk<'_> {
    fn chain(&mut self, chain: &Chain, depth: usize) -> Flow {
        if depth > 32 {
            self.maybe_drop.push(format!("chain {} (nested too deep to follow)", chain.name));
            return Flow::Return;
        }
        for (i, r) in chain.rules.iter().enumerate() {
            let m = self.rule(r);
            if m == M::No {
                continue;
            }
            let what = describe(chain, i, r);
            let sure = m == M::Yes;
            let target: Option<&str> = match &r.action {
                Some(Action::Jump(t)) => Some(&t.name),
                Some(Action::Goto(c)) => Some(c.as_str()),
                None => None,
            };
            let Some(target) = target else { continue };
            match target {
                "ACCEPT" => {
                    if sure {
                        self.steps.push(format!("{what} accepts it"));
                        return Flow::Accept(what);
                    }
                    if let M::Maybe(why) = m {
                        self.steps.push(format!("{what} may accept it ({why})"));
                    }
                    self.maybe_accept.push(what);
                }
                "DROP" | "REJECT" => {
                    if sure {
                        self.steps.push(format!("{what} drops it"));
                        return Flow::Drop(what);
                    }
                    if let M::Maybe(why) = m {
                        self.steps.push(format!("{what} may drop it ({why})"));
                    }
                    self.maybe_drop.push(what);
                }
                "RETURN" if sure => return Flow::Return,
                name => {
                    let Some(sub) = self.table.chain(name).filter(|c| !c.is_builtin()) else {
                        continue; // LOG, MARK and other non-terminating targets.
                    };
                    if !sure {
                        // A chain that may or may not be entered: follow it, and treat
                        // what it decides as possible only.
                        match self.chain(sub, depth + 1) {
                            Flow::Accept(by) => self.maybe_accept.push(by),
                            Flow::Drop(by) => self.maybe_drop.push(by),
                            Flow::Return => {}
                        }
                        continue;
                    }
                    let goto = matches!(r.action, Some(Action::Goto(_)));
                    self.steps.push(format!(
                        "{what} {} {name}",
                        if goto { "goes to" } else { "jumps to" }
                    ));
                    match self.chain(sub, depth + 1) {
                        Flow::Return if goto => return Flow::Return,
                        Flow::Return => {}
                        decided => return decided,
                    }
                }
            }
        }
        Flow::Return
    }

    fn rule(&self, r: &Rule) -> M {
        let mut parts = vec![
            self.proto(r.proto.as_ref()),
            addr(r.src.as_ref(), self.path.client),
            addr(r.dst.as_ref(), self.path.server),
            iface(r.in_iface.as_ref()),
            match r.fragment {
                Some(false) => M::No,
                _ => M::Yes,
            },
        ];
        for m in &r.matches {
            parts.push(self.module(m));
        }
        combine(parts)
    }

    fn proto(&self, p: Option<&Negatable<Protocol>>) -> M {
        let Some(p) = p else { return M::Yes };
        let hit = match p.value.number() {
            Some(6 | 0) => M::Yes,
            Some(_) => M::No,
            None => return M::Maybe(format!("protocol {}", p.value)),
        };
        negate(hit, p.negated)
    }

    fn module(&self, m: &portcullis_rules::Match) -> M {
        let Ok(view) = m.view(self.family) else {
            return M::Maybe(format!("-m {}", m.name));
        };
        let port = self.path.port;
        match view {
            MatchView::Tcp(t) => {
                let mut parts = Vec::new();
                if let Some(d) = t.dport {
                    parts.push(negate(yes(d.value.contains(port)), d.negated));
                }
                if let Some(s) = t.sport {
                    parts.push(if s.value.is_all() != s.negated {
                        M::Yes
                    } else {
                        M::Maybe("the client's source port".into())
                    });
                }
                if let Some(fl) = t.flags {
                    parts.push(negate(yes(fl.value.matches(TcpFlags::SYN)), fl.negated));
                }
                if t.option.is_some() {
                    parts.push(M::Maybe("--tcp-option".into()));
                }
                combine(parts)
            }
            MatchView::Udp(_) | MatchView::Icmp(_) | MatchView::Icmp6(_) => M::No,
            MatchView::Multiport(mp) => match mp.dir {
                MultiportDir::Destination => {
                    negate(yes(mp.ports.iter().any(|r| r.contains(port))), mp.negated)
                }
                MultiportDir::Either
                    if !mp.negated && mp.ports.iter().any(|r| r.contains(port)) =>
                {
                    M::Yes
                }
                _ => M::Maybe("the client's source port".into()),
            },
            MatchView::Conntrack(ct) => {
                let mut parts = Vec::new();
                if let Some(s) = &ct.state {
                    parts.push(negate(
                        yes(s.value.contains(portcullis_rules::view::CtStates::NEW)),
                        s.negated,
                    ));
                }
                let other = ct.proto.is_some()
                    || ct.orig_src.is_some()
                    || ct.orig_dst.is_some()
                    || ct.repl_src.is_some()
                    || ct.repl_dst.is_some()
                    || ct.orig_src_port.is_some()
                    || ct.orig_dst_port.is_some()
                    || ct.repl_src_port.is_some()
                    || ct.repl_dst_port.is_some()
                    || ct.status.is_some()
                    || ct.expire.is_some()
                    || ct.dir.is_some();
                if other {
                    parts.push(M::Maybe("conntrack options besides --ctstate".into()));
                }
                combine(parts)
            }
            MatchView::State(s) => {
                negate(yes(s.value.contains(portcullis_rules::view::CtStates::NEW)), s.negated)
            }
            MatchView::Comment(_) => M::Yes,
            _ => M::Maybe(format!("-m {}", m.name)),
        }
    }
}

fn yes(b: bool) -> M {
    if b { M::Yes } else { M::No }
}

fn negate(m: M, negated: bool) -> M {
    match (m, negated) {
        (M::Yes, true) => M::No,
        (M::No, true) => M::Yes,
        (m, _) => m,
    }
}

fn combine(parts: Vec<M>) -> M {
    let mut maybe = Vec::new();
    for p in parts {
        match p {
            M::No => return M::No,
            M::Maybe(w) => maybe.push(w),
            M::Yes => {}
        }
    }
    if maybe.is_empty() { M::Yes } else { M::Maybe(maybe.join(", ")) }
}

fn addr(a: Option<&Negatable<portcullis_rules::Address>>, ip: Option<IpAddr>) -> M {
    let Some(a) = a else { return M::Yes };
    if a.value.is_any() {
        return negate(M::Yes, a.negated);
    }
    match ip {
        Some(ip) => negate(yes(a.value.contains(ip)), a.negated),
        None => M::Maybe(format!("address {}", a.value)),
    }
}

fn iface(i: Option<&Negatable<portcullis_rules::Interface>>) -> M {
    let Some(i) = i else { return M::Yes };
    if i.value.is_wildcard() && i.value.as_str() == "+" {
        return negate(M::Yes, i.negated);
    }
    if i.value.as_str() == "lo" {
        return negate(M::No, i.negated);
    }
    M::Maybe(format!("interface {}", i.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(text: &str) -> Ruleset {
        portcullis_syntax::parse_save(text).expect("parses")
    }

    const SEED: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -j ACCEPT\nCOMMIT\n";

    #[test]
    fn drop_policy_without_ssh_is_refused() {
        let paths = management_paths(Some("198.18.0.1 50000 198.18.0.2 22"));
        let r = check(&rs(SEED), &paths);
        assert!(r.refuses(), "{r}");
        assert!(r.to_string().contains("policy DROP of INPUT"), "{r}");
    }

    #[test]
    fn ssh_rule_and_established_are_enough() {
        let ok = "*filter\n:INPUT DROP [0:0]\n:MGMT - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -p tcp -m multiport --dports 80,443 -j ACCEPT\n-A INPUT -j MGMT\n-A MGMT -s 198.18.0.0/16 -p tcp --dport 2222 -j ACCEPT\n-A MGMT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        let paths = management_paths(Some("198.18.0.1 50000 198.18.0.2 2222"));
        let r = check(&rs(ok), &paths);
        assert!(!r.refuses(), "{r}");
        assert!(r.checks.iter().all(|(_, v, _)| matches!(v, Verdict::Accepted(_))), "{r}");
        // From outside 198.18/16 the 2222 rule does not match: cut.
        let paths = management_paths(Some("198.51.100.1 50000 198.18.0.2 2222"));
        assert!(check(&rs(ok), &paths).refuses());
    }

    #[test]
    fn explicit_drop_before_accept_and_unsure_cases() {
        let bad = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j DROP\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        assert!(check(&rs(bad), &management_paths(None)).refuses());
        let limited = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -m limit --limit 3/min -j ACCEPT\nCOMMIT\n";
        let r = check(&rs(limited), &management_paths(None));
        assert!(!r.refuses(), "{r}");
        assert!(matches!(r.checks[0].1, Verdict::Unsure(_)), "{r}");
        let nat_only = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
        assert!(matches!(
            check(&rs(nat_only), &management_paths(None)).checks[0].1,
            Verdict::NotAffected(_)
        ));
    }
}
