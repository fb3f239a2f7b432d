//! `portcullis __listen` (hidden): TCP and UDP listeners for the `verify` sandbox. It
//! accepts TCP connections and echoes UDP datagrams on the given ports, on IPv4 and IPv6,
//! until it is killed or its deadline passes (it never outlives a sandbox for long).

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Listen on ports until killed (used inside verify's sandbox).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TCP ports to accept connections on, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tcp: Vec<u16>,
    /// UDP ports to echo datagrams on, comma-separated.
    #[arg(long, value_delimiter = ',')]
    udp: Vec<u16>,
    /// Exit after this many seconds whatever happens.
    #[arg(long, default_value_t = 600)]
    deadline: u64,
}

fn tcp_loop(l: TcpListener) {
    for conn in l.incoming() {
        // Accept, then close: the scanner saw the handshake complete.
        drop(conn);
    }
}

fn udp_loop(s: UdpSocket) {
    let mut buf = [0u8; 2048];
    while let Ok((n, peer)) = s.recv_from(&mut buf) {
        let _ = s.send_to(&buf[..n], peer);
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let v4 = |p: u16| SocketAddr::from((Ipv4Addr::UNSPECIFIED, p));
    let v6 = |p: u16| SocketAddr::from((Ipv6Addr::UNSPECIFIED, p));
    // A dual-stack IPv6 socket (the default in a fresh namespace) serves both families;
    // without IPv6, an IPv4 socket does.
    for &p in &args.tcp {
        let l = TcpListener::bind(v6(p))
            .or_else(|_| TcpListener::bind(v4(p)))
            .with_context(|| format!("listen on tcp/{p}"))?;
        thread::spawn(move || tcp_loop(l));
    }
    for &p in &args.udp {
        let s = UdpSocket::bind(v6(p))
            .or_else(|_| UdpSocket::bind(v4(p)))
            .with_context(|| format!("listen on udp/{p}"))?;
        thread::spawn(move || udp_loop(s));
    }
    // Tell the parent the sockets are bound.
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let end = Instant::now() + Duration::from_secs(args.deadline);
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(200));
    }
    Ok(ExitCode::SUCCESS)
}
