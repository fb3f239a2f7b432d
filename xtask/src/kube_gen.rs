//! A generator of kube-proxy-shaped rulesets (iptables mode), for benchmarks and tests.
//!
//! The text is what `iptables-save` prints for kube-proxy's nat and filter tables: per
//! service a `KUBE-SERVICES` jump, a `KUBE-SVC-*` chain that marks off-cluster traffic
//! and load-balances with `statistic`, and per endpoint a `KUBE-SEP-*` chain with the
//! hairpin mark and the DNAT. Three endpoints per service make 15 lines per service, so
//! 10,000 services give about 150,000 lines. Addresses come from 198.18.0.0/15 (the
//! benchmarking range); no packet is ever sent to them.

use std::fmt::Write as _;

/// How many endpoints every service has.
pub(crate) const ENDPOINTS: usize = 3;

/// The shape of the generated ruleset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KubeSpec {
    /// Number of services.
    pub(crate) services: usize,
    /// A generation number: changing it changes the endpoints of service 0 only (a pod
    /// restarted), which is the incremental benchmark's one-service change.
    pub(crate) generation: u32,
}

/// A 16-character base32 "hash" like kube-proxy's `portProtoHash`, deterministic in `seed`.
fn hash16(seed: u64) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    // splitmix64: a cheap, well-spread mix.
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let y = x.rotate_left(17) ^ 0xA5A5_5A5A_F0F0_0F0F;
    let mut out = String::with_capacity(16);
    for i in 0..16 {
        let v = if i < 12 { (x >> (5 * i)) & 31 } else { (y >> (5 * (i - 12))) & 31 };
        out.push(char::from(ALPHABET[usize::try_from(v).unwrap_or(0)]));
    }
    out
}

fn service_ip(i: usize) -> String {
    format!("198.18.{}.{}", (i / 250) % 256, i % 250 + 1)
}

fn pod_ip(i: usize, e: usize, generation: u32) -> String {
    // Service 0's pods move with the generation; every other pod is fixed.
    let g = if i == 0 { generation as usize } else { 0 };
    let n = i * ENDPOINTS + e + g * 7;
    format!("198.19.{}.{}", (n / 250) % 256, n % 250 + 1)
}

/// The ruleset as iptables-save text (`*nat` then `*filter`), in the canonical form the
/// nft backend prints, without `#` lines.
pub(crate) fn kube_ruleset(spec: KubeSpec) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    let mut svc_jumps = String::new();
    for i in 0..spec.services {
        let svc = format!("KUBE-SVC-{}", hash16(i as u64));
        let name = format!("ns{}/svc{}:http", i % 97, i);
        let port = 1024 + i % 50_000;
        let _ = writeln!(chains, ":{svc} - [0:0]");
        let _ = writeln!(
            svc_jumps,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {port} -j {svc}",
            service_ip(i)
        );
        let _ = writeln!(
            rules,
            "-A {svc} ! -s 198.19.0.0/16 -d {}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {port} -j KUBE-MARK-MASQ",
            service_ip(i)
        );
        for e in 0..ENDPOINTS {
            let g = if i == 0 { u64::from(spec.generation) } else { 0 };
            let sep =
                format!("KUBE-SEP-{}", hash16(((i * ENDPOINTS + e) as u64) << 20 | g << 48 | 1));
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let left = ENDPOINTS - e;
            if left > 1 {
                // The kernel keeps the probability as a 31-bit fraction; iptables-save
                // prints it back with 11 decimals (kube-proxy writes that form too).
                let p = (2_147_483_648.0 / left as f64).round() / 2_147_483_648.0;
                let _ = writeln!(
                    rules,
                    "-A {svc} -m comment --comment \"{name} -> {}:8080\" -m statistic --mode random --probability {p:.11} -j {sep}",
                    pod_ip(i, e, spec.generation)
                );
            } else {
                let _ = writeln!(
                    rules,
                    "-A {svc} -m comment --comment \"{name} -> {}:8080\" -j {sep}",
                    pod_ip(i, e, spec.generation)
                );
            }
            let pod = pod_ip(i, e, spec.generation);
            let _ = writeln!(
                rules,
                "-A {sep} -s {pod}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                rules,
                "-A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {pod}:8080"
            );
        }
    }
    let mut out = String::with_capacity(spec.services * 15 * 120 + 4096);
    out.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    out.push_str(":KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n");
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
    out.push_str(&svc_jumps);
    out.push_str(&rules);
    out.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    out.push_str("COMMIT\n");
    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    out.push_str(":KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n");
    out.push_str("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n");
    out.push_str("-A INPUT -j KUBE-FIREWALL\n");
    out.push_str(
        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n",
    );
    out.push_str("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A OUTPUT -j KUBE-FIREWALL\n");
    out.push_str("-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n");
    out.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    out.push_str("-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment \"kubernetes forwarding rules\" -j ACCEPT\n");
    out.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    // Every 100th service has no endpoints: kube-proxy rejects it in filter.
    for i in (0..spec.services).step_by(100) {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"ns{}/empty{i}:http has no endpoints\" -m tcp --dport {} -j REJECT --reject-with icmp-port-unreachable",
            service_ip(spec.services + i),
            i % 97,
            1024 + i % 50_000
        );
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_one_service_change() {
        let a = kube_ruleset(KubeSpec { services: 200, generation: 0 });
        let b = kube_ruleset(KubeSpec { services: 200, generation: 1 });
        let lines = a.lines().count();
        assert!(lines > 200 * 15, "{lines} lines");
        let differing = a.lines().zip(b.lines()).filter(|(x, y)| x != y).count();
        assert!(differing > 0 && differing <= 3 * ENDPOINTS + 4, "{differing} lines differ");
    }
}
