//! Acceptance 4 of issue 6: behaviour-equal rewrites diff as no change in behaviour; a
//! one-port change reports exactly that port.

use std::net::IpAddr;

use portcullis_eval::{ChangeKind, Diff, Hook, Proto, Verdict, diff};
use portcullis_rules::Ruleset;
use portcullis_rules::view::PortRange;

fn rs(body: &str) -> Ruleset {
    let text = format!(
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         {body}COMMIT\n"
    );
    portcullis_syntax::parse_save(&text).expect("parses")
}

fn kinds(d: &Diff) -> Vec<ChangeKind> {
    d.rules.iter().map(|c| c.kind).collect()
}

#[test]
fn splitting_a_multiport_changes_no_behaviour() {
    let a = rs("-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT\n");
    let b = rs("-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp --dport 80 -j ACCEPT\n\
                -A INPUT -p tcp --dport 443 -j ACCEPT\n");
    let d = diff(&a, &b).expect("diff");
    assert_eq!(d.behaviour, vec![]);
    assert_eq!(
        kinds(&d),
        vec![ChangeKind::Removed, ChangeKind::Added, ChangeKind::Added, ChangeKind::Added]
    );
}

#[test]
fn reordering_disjoint_rules_changes_no_behaviour() {
    let a = rs(
        "-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -p udp --dport 53 -j ACCEPT\n\
                -A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n",
    );
    let b = rs(
        "-A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n-A INPUT -p tcp --dport 22 -j ACCEPT\n\
                -A INPUT -s 10.0.0.0/8 -p udp --dport 53 -j ACCEPT\n",
    );
    let d = diff(&a, &b).expect("diff");
    assert_eq!(d.behaviour, vec![]);
    assert_eq!(kinds(&d), vec![ChangeKind::Moved]);
    assert_eq!((d.rules[0].old_index, d.rules[0].new_index), (Some(5), Some(3)));
}

#[test]
fn a_one_port_change_reports_exactly_that_port() {
    let a = rs(
        "-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -p udp --dport 53 -j ACCEPT\n",
    );
    let b = rs(
        "-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -p udp --dport 53 -j ACCEPT\n\
                -A INPUT -p tcp --dport 8080 -j ACCEPT\n",
    );
    let d = diff(&a, &b).expect("diff");
    assert_eq!(kinds(&d), vec![ChangeKind::Added]);
    assert_eq!(d.behaviour.len(), 1, "{:#?}", d.behaviour);
    let c = &d.behaviour[0];
    assert_eq!((c.hook, c.proto, c.ports), (Hook::Input, Proto::Tcp, PortRange::single(8080)));
    assert_eq!(c.peers, ("0.0.0.0".parse::<IpAddr>().unwrap(), "255.255.255.255".parse().unwrap()));
    assert_eq!((c.before.clone(), c.after.clone()), (vec![Verdict::Drop], vec![Verdict::Accept]));
}

#[test]
fn a_source_restriction_reports_the_sources_that_lost_access() {
    let a = rs("-A INPUT -p tcp --dport 22 -j ACCEPT\n");
    let b = rs("-A INPUT -s 198.18.0.0/15 -p tcp --dport 22 -j ACCEPT\n");
    let d = diff(&a, &b).expect("diff");
    let lost: Vec<(IpAddr, IpAddr)> = d.behaviour.iter().map(|c| c.peers).collect();
    assert_eq!(
        lost,
        vec![
            ("0.0.0.0".parse().unwrap(), "198.17.255.255".parse().unwrap()),
            ("198.20.0.0".parse().unwrap(), "255.255.255.255".parse().unwrap()),
        ]
    );
    assert!(
        d.behaviour
            .iter()
            .all(|c| c.ports == PortRange::single(22) && c.after == vec![Verdict::Drop])
    );
}

#[test]
fn reordering_overlapping_rules_is_a_behaviour_change() {
    let a = rs(
        "-A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j REJECT\n-A INPUT -p tcp --dport 22 -j ACCEPT\n",
    );
    let b = rs(
        "-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j REJECT\n",
    );
    let d = diff(&a, &b).expect("diff");
    assert_eq!(d.behaviour.len(), 1, "{:#?}", d.behaviour);
    let c = &d.behaviour[0];
    assert_eq!(c.peers, ("10.0.0.0".parse::<IpAddr>().unwrap(), "10.255.255.255".parse().unwrap()));
    assert_eq!(c.after, vec![Verdict::Accept]);
}

#[test]
fn a_policy_change_is_reported_and_changes_behaviour() {
    let a = rs("-A INPUT -p tcp --dport 22 -j ACCEPT\n");
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
                -A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    let b = portcullis_syntax::parse_save(text).expect("parses");
    let d = diff(&a, &b).expect("diff");
    assert_eq!(kinds(&d), vec![ChangeKind::Policy]);
    assert!(d.behaviour.iter().any(|c| c.proto == Proto::Udp && c.ports == PortRange::ALL));
}
