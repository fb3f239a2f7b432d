//! A kube-proxy-scale ruleset generator for benchmarks: per service a cluster-IP rule, a
//! service chain with masquerade and load-balancing rules, and endpoint chains with DNAT,
//! in nat; reject rules for services without endpoints in filter. Deterministic.

use std::fmt::Write as _;

fn hash_name(prefix: &str, i: usize, j: usize) -> String {
    // 16 base32-ish characters, like kube-proxy's hashed chain names.
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::from(prefix);
    for _ in 0..16 {
        s.push(alphabet[(x & 31) as usize] as char);
        x = x.rotate_right(5).wrapping_add(0x1234_5678);
    }
    s
}

/// iptables-restore text for `services` services (about 15 lines each).
pub(crate) fn kube_proxy_dump(services: usize) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    let mut filter = String::new();
    for i in 0..services {
        let ns = format!("ns{}", i % 97);
        let svc = format!("svc-{i}");
        let ip = format!("10.96.{}.{}", (i / 250) % 256, i % 250 + 1);
        let port = 80 + (i % 7) * 1000;
        let comment = format!("\"{ns}/{svc}:http cluster IP\"");
        let svc_chain = hash_name("KUBE-SVC-", i, 0);
        let endpoints = if i % 10 == 9 { 0 } else { 1 + i % 3 };
        if endpoints == 0 {
            let _ = writeln!(
                filter,
                "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"{ns}/{svc}:http has no endpoints\" -m tcp --dport {port} -j REJECT --reject-with icmp-port-unreachable"
            );
            continue;
        }
        let _ = writeln!(chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment {comment} -m tcp --dport {port} -j {svc_chain}"
        );
        let _ = writeln!(
            rules,
            "-A {svc_chain} ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m comment --comment {comment} -m tcp --dport {port} -j KUBE-MARK-MASQ"
        );
        for e in 0..endpoints {
            let sep = hash_name("KUBE-SEP-", i, e + 1);
            let ep = format!("10.244.{}.{}", (i * 3 + e) / 250 % 256, (i * 3 + e) % 250 + 1);
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let left = endpoints - e;
            if left > 1 {
                let p = 1.0 / left as f64;
                let _ = writeln!(
                    rules,
                    "-A {svc_chain} -m comment --comment \"{ns}/{svc}:http -> {ep}:8080\" -m statistic --mode random --probability {p:.11} -j {sep}"
                );
            } else {
                let _ = writeln!(
                    rules,
                    "-A {svc_chain} -m comment --comment \"{ns}/{svc}:http -> {ep}:8080\" -j {sep}"
                );
            }
            let _ = writeln!(
                rules,
                "-A {sep} -s {ep}/32 -m comment --comment \"{ns}/{svc}:http\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                rules,
                "-A {sep} -p tcp -m comment --comment \"{ns}/{svc}:http\" -m tcp -j DNAT --to-destination {ep}:8080"
            );
        }
    }
    let mut out = String::with_capacity(chains.len() + rules.len() + filter.len() + 4096);
    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    out.push_str(":KUBE-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]\n");
    out.push_str("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A INPUT -j KUBE-FIREWALL\n");
    out.push_str("-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP\n");
    out.push_str(&filter);
    out.push_str("COMMIT\n");
    out.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    out.push_str(":KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n");
    out.push_str(&chains);
    out.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str(
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    out.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    out.push_str("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
    out.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    out.push_str(&rules);
    out.push_str("COMMIT\n");
    out
}
