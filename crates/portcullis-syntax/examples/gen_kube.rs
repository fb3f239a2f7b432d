//! Writes a kube-proxy-scale iptables-restore dump to standard output:
//! `cargo run --release -p portcullis-syntax --example gen_kube -- 10000 > kube.rules`.
#![allow(clippy::print_stdout, reason = "a generator prints")]

#[path = "../benches/kube.rs"]
mod kube;

fn main() {
    let services = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    print!("{}", kube::kube_proxy_dump(services));
}
