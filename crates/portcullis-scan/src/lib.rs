//! A port scanner with nmap's port states, reasons and output formats, built to check
//! Linux firewalls quickly and get the same answer every time.
//!
//! The crate has two layers (quinn style):
//!
//! * [`engine`], sans-IO: which probe to send when ([`engine::Engine::poll_transmit`]),
//!   what a reply means ([`engine::Engine::handle_packet`]), retransmissions, RTT
//!   estimation, SYN cookies, and the delayed passes that outwait a target's ICMP rate
//!   limiter. It never reads the clock or touches a socket, so it is tested with packets
//!   made in memory. [`wire`] holds the checked packet views it reads replies with.
//! * transports (feature `runtime`, default): [`raw`] sends SYN/ACK/UDP probes through a
//!   raw L3 socket and reads replies on AF_PACKET in a receiver thread (before the local
//!   netfilter sees them); [`connect`] runs a tokio connect scan that reads the socket
//!   error queue so ICMP rejects keep their reason. [`scan`] picks one and drives the
//!   engine.
//!
//! Around them: [`ports`] (`-p` syntax, `-F`/`--top-ports` from a built-in copy of
//! nmap-services), [`targets`] (addresses, CIDR blocks, ranges), [`timing`] (`-T0`..`-T5`),
//! [`output`] (normal, XML, grepable, JSON).
//!
//! The crate scans whatever address it is given; its own tests only ever scan addresses in
//! 198.18.0.0/15 inside network namespaces they create.
//!
//! # Example
//!
//! The engine with an in-memory "network": a SYN to port 22 answered by a SYN-ACK.
//!
//! ```
//! use std::time::Duration;
//! use portcullis_scan::engine::{Engine, EngineConfig, Target};
//! use portcullis_scan::state::{PortState, ScanType};
//! use portcullis_scan::timing::Timing;
//!
//! let target = Target { addr: "198.18.0.2".parse()?, src: "198.18.0.1".parse()? };
//! let cfg = EngineConfig {
//!     scan_type: ScanType::Syn,
//!     targets: vec![target],
//!     ports: vec![22],
//!     timing: Timing::template(4),
//!     seed: 1,
//! };
//! let mut engine = Engine::new(cfg)?;
//! let probe = engine.poll_transmit(Duration::ZERO).expect("a probe is due");
//! let mut seg = [0u8; 64];
//! let n = probe.emit(&mut seg).expect("a SYN");
//! // The target answers SYN-ACK, acknowledging our cookie.
//! let reply = portcullis_scan::testing::synack_for(&seg[..n], target.addr, target.src);
//! engine.handle_packet(Duration::from_millis(1), &reply);
//! while let Some(t) = engine.poll_timeout(Duration::from_secs(5)) {
//!     while engine.poll_transmit(t).is_some() {}
//! }
//! let report = engine.finish();
//! assert_eq!(report.hosts[0].ports[0].state, PortState::Open);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod engine;
pub mod output;
mod payloads;
pub mod ports;
pub mod state;
pub mod targets;
pub mod testing;
pub mod timing;
pub mod wire;

#[cfg(feature = "runtime")]
pub mod connect;
#[cfg(feature = "runtime")]
pub mod netns;
#[cfg(feature = "runtime")]
pub mod raw;
#[cfg(feature = "runtime")]
pub mod scan;
#[cfg(feature = "runtime")]
mod sys;

pub use payloads::udp_payload;
