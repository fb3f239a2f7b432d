//! Prints what `iptables-nft-save` would print for a namespace, read over netlink, and
//! how long it took: `cargo run --release -p portcullis-apply --example nft_save -- NS
//! [-c]` (`-c`: with counters, as `iptables-nft-save -c`).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line example")]

use portcullis_apply::Counters;
use portcullis_rules::Family;

fn main() {
    let ns = std::env::args().nth(1);
    let counters =
        if std::env::args().any(|a| a == "-c") { Counters::Keep } else { Counters::Drop };
    let start = std::time::Instant::now();
    match portcullis_apply::nft_save(ns.as_deref(), Family::V4, None, counters) {
        Ok(text) => {
            eprintln!("read in {:?}", start.elapsed());
            print!("{text}");
        }
        Err(e) => {
            eprintln!("{e} (after {:?})", start.elapsed());
            std::process::exit(1);
        }
    }
}
