//! Traces that need no namespace: jumps, gotos, RETURN, policies, marks, NAT and
//! uncertain matches, each path pinned with expect-test (`UPDATE_EXPECT=1` refreshes).
//! The kernel test (`tests/kernel.rs`) checks the same engine against real counters.

use expect_test::{Expect, expect};
use portcullis_eval::{CtState, Hook, Host, Packet, StepKind, trace};
use portcullis_rules::Family;
use portcullis_rules::view::PortRange;

const RULES: &str = "\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 2222 -j MARK --set-mark 0x7
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 80
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A INPUT -p tcp --dport 22 -m limit --limit 3/min -j LOG
-A INPUT -p tcp --dport 22 -m recent --name ssh --rcheck -j DROP
-A INPUT -s 10.0.0.0/8 -j A
-A INPUT -m mark --mark 0x7 -j ACCEPT
-A INPUT -p tcp --dport 80 -j ACCEPT
-A INPUT -g B
-A A -p tcp --dport 22 -j ACCEPT
-A A -j RETURN
-A B -p udp -j REJECT
COMMIT
";

fn show(p: &Packet) -> String {
    let rs = portcullis_syntax::parse_save(RULES).expect("parses");
    let t = trace(&rs, Hook::Input, p, &Host::default()).expect("traces");
    let mut s = String::new();
    for o in &t.outcomes {
        s.push_str(&format!("{}{}\n", o.verdict, if o.certain { "" } else { " (uncertain)" }));
        for step in o.path.iter().filter(|s| s.kind != StepKind::NotMatched) {
            let at = step.index.map_or_else(|| "policy".to_owned(), |i| format!("#{i}"));
            s.push_str(&format!(
                "  {}/{} {at} {:?}: {}\n",
                step.table.as_str(),
                step.chain,
                step.kind,
                step.why
            ));
        }
    }
    s
}

#[track_caller]
fn check(p: &Packet, expect: Expect) {
    expect.assert_eq(&show(p));
}

fn tcp(src: &str, dport: u16) -> Packet {
    let mut p = Packet::tcp_syn(Family::V4, dport);
    p.src = Some(src.parse().expect("address"));
    p.sport = PortRange::single(40000);
    p
}

#[test]
fn jump_return_and_policy() {
    check(
        &tcp("10.1.2.3", 23),
        expect![[r#"
            DROP
              mangle/PREROUTING policy Policy: policy ACCEPT
              nat/PREROUTING policy Policy: policy ACCEPT
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #4 Matched: jump to A
              filter/A #2 Matched: RETURN
              filter/INPUT #7 Matched: goto B
              filter/INPUT policy Policy: policy DROP
        "#]],
    );
    check(
        &tcp("10.1.2.3", 22),
        expect![[r#"
        DROP (uncertain)
          mangle/PREROUTING policy Policy: policy ACCEPT
          nat/PREROUTING policy Policy: policy ACCEPT
          mangle/INPUT policy Policy: policy ACCEPT
          filter/INPUT #2 MayMatchNoEffect: may: -m limit depends on the packet rate
          filter/INPUT #3 MayMatch: may: -m recent depends on earlier packets
        ACCEPT (uncertain)
          mangle/PREROUTING policy Policy: policy ACCEPT
          nat/PREROUTING policy Policy: policy ACCEPT
          mangle/INPUT policy Policy: policy ACCEPT
          filter/INPUT #2 MayMatchNoEffect: may: -m limit depends on the packet rate
          filter/INPUT #3 MayNotMatch: may: -m recent depends on earlier packets
          filter/INPUT #4 Matched: jump to A
          filter/A #1 Matched: ACCEPT
          nat/INPUT policy Policy: policy ACCEPT
    "#]],
    );
}

#[test]
fn uncertain_matches_fork_and_logging_does_not() {
    check(
        &tcp("192.0.2.1", 22),
        expect![[r#"
            DROP (uncertain)
              mangle/PREROUTING policy Policy: policy ACCEPT
              nat/PREROUTING policy Policy: policy ACCEPT
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #2 MayMatchNoEffect: may: -m limit depends on the packet rate
              filter/INPUT #3 MayMatch: may: -m recent depends on earlier packets
            DROP (uncertain)
              mangle/PREROUTING policy Policy: policy ACCEPT
              nat/PREROUTING policy Policy: policy ACCEPT
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #2 MayMatchNoEffect: may: -m limit depends on the packet rate
              filter/INPUT #3 MayNotMatch: may: -m recent depends on earlier packets
              filter/INPUT #7 Matched: goto B
              filter/INPUT policy Policy: policy DROP
        "#]],
    );
}

#[test]
fn goto_falls_back_to_the_policy_and_marks_and_redirects_count() {
    let mut udp = Packet::new(Family::V4, 17);
    udp.src = Some("192.0.2.1".parse().expect("address"));
    udp.dport = PortRange::single(53);
    check(
        &udp,
        expect![[r#"
            REJECT --reject-with icmp-port-unreachable
              mangle/PREROUTING policy Policy: policy ACCEPT
              nat/PREROUTING policy Policy: policy ACCEPT
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #7 Matched: goto B
              filter/B #1 Matched: REJECT --reject-with icmp-port-unreachable
        "#]],
    );
    check(
        &tcp("192.0.2.1", 2222),
        expect![[r#"
            ACCEPT
              mangle/PREROUTING #1 Matched: MARK --set-xmark 0x7/0xffffffff
              mangle/PREROUTING policy Policy: policy ACCEPT
              nat/PREROUTING policy Policy: policy ACCEPT
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #5 Matched: ACCEPT
              nat/INPUT policy Policy: policy ACCEPT
        "#]],
    );
    check(
        &tcp("192.0.2.1", 8080),
        expect![[r#"
            ACCEPT
              mangle/PREROUTING policy Policy: policy ACCEPT
              nat/PREROUTING #1 Matched: DNAT to this host:80
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #6 Matched: ACCEPT
              nat/INPUT policy Policy: policy ACCEPT
        "#]],
    );
    let mut est = tcp("192.0.2.1", 9);
    est.state = CtState::Established;
    check(
        &est,
        expect![[r#"
            ACCEPT
              mangle/PREROUTING policy Policy: policy ACCEPT
              mangle/INPUT policy Policy: policy ACCEPT
              filter/INPUT #1 Matched: ACCEPT
        "#]],
    );
}
