#!/usr/bin/env python3
"""Regenerates services.rs from /etc/services (Debian 12, netbase 6.4 for the committed
copy): the first name per (port, tcp|udp), as getservbyport returns it, and every name and
alias per (name, proto), as getservbyname accepts them. Usage:
    python3 gen_services.py /etc/services > services.rs
"""
import sys

tcp, udp, names = {}, {}, {}
for line in open(sys.argv[1] if len(sys.argv) > 1 else "/etc/services"):
    line = line.split("#")[0].strip()
    if not line:
        continue
    parts = line.split()
    port, proto = parts[1].split("/")
    port = int(port)
    table = {"tcp": tcp, "udp": udp}.get(proto)
    if table is not None and port not in table:
        table[port] = parts[0]
    for n in [parts[0]] + parts[2:]:
        names.setdefault((n, proto), port)

out = [
    "//! The services table `iptables -L` uses to print port names, built in so output never",
    "//! depends on the machine's `/etc/services`.",
    "//!",
    "//! Generated from Debian 12's `/etc/services` (package netbase 6.4), which is what the",
    "//! captured baselines were printed with: for each protocol, the first name listed for a",
    "//! port (what `getservbyport` returns), and every name and alias (what `getservbyname`",
    "//! accepts). Regenerate with `gen_services.py` beside this file.",
    "",
]
for label, table in (("TCP", tcp), ("UDP", udp)):
    out.append(f'/// `getservbyport(port, "{label.lower()}")`: (port, name), sorted by port.')
    out.append(f"pub(crate) const {label}_BY_PORT: &[(u16, &str)] = &[")
    out += [f'    ({p}, "{table[p]}"),' for p in sorted(table)]
    out += ["];", ""]
out.append("/// `getservbyname(name, proto)`: (name, protocol, port), sorted by name and protocol.")
out.append("pub(crate) const BY_NAME: &[(&str, &str, u16)] = &[")
out += [f'    ("{n}", "{p}", {names[(n, p)]}),' for (n, p) in sorted(names) if p in ("tcp", "udp")]
out.append("];")
print("\n".join(out))
