//! The connect transport (`-sT`): tokio, no privileges needed.
//!
//! Each probe is a non-blocking `connect()` with `IP_RECVERR`/`IPV6_RECVERR` set, so when
//! the kernel aborts it because of an ICMP error, the error queue still says which one:
//! `REJECT --reject-with icmp-port-unreachable` is then `filtered (port-unreach)`, as in a
//! SYN scan, and not `closed (conn-refused)` as errno alone would say. Sockets close with
//! `SO_LINGER 0` (no TIME_WAIT). At most [`MAX_IN_FLIGHT`] connects run at once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::engine::{ConnectOutcome, Engine, Probe, Progress, ScanReport};
use crate::state::{IcmpKind, Reason};

/// Upper bound on simultaneous connect attempts (stays below the usual 1024 fd limit).
pub const MAX_IN_FLIGHT: usize = 512;

fn map_errno(err: &io::Error) -> ConnectOutcome {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => ConnectOutcome::Refused,
        Some(libc::EHOSTUNREACH) => ConnectOutcome::Failed(Reason::HostUnreach),
        Some(libc::ENETUNREACH) => ConnectOutcome::Failed(Reason::NetUnreach),
        Some(libc::ENOPROTOOPT) => ConnectOutcome::Failed(Reason::ProtoUnreach),
        Some(libc::EACCES) => ConnectOutcome::Failed(Reason::AdminProhibited),
        Some(libc::ENONET) => ConnectOutcome::Failed(Reason::DestUnreach),
        _ => ConnectOutcome::TimedOut,
    }
}

fn outcome_of_error(sock: &impl AsFd, err: &io::Error) -> ConnectOutcome {
    match crate::sys::recv_errqueue(sock.as_fd()) {
        Some(q) => {
            let kind = IcmpKind { v6: q.v6, icmp_type: q.icmp_type, code: q.code };
            match q.from {
                Some(from) => ConnectOutcome::Icmp { kind, from },
                None => map_errno(err),
            }
        }
        None => map_errno(err),
    }
}

async fn connect_one(p: Probe) -> ConnectOutcome {
    let addr = SocketAddr::new(p.dst, p.dst_port);
    let setup = || -> io::Result<Socket> {
        let domain = if p.dst.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.set_nonblocking(true)?;
        s.set_linger(Some(Duration::ZERO))?;
        if p.dst.is_ipv4() {
            crate::sys::setsockopt_int(s.as_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
        } else {
            crate::sys::setsockopt_int(s.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
        }
        Ok(s)
    };
    let Ok(sock) = setup() else { return ConnectOutcome::TimedOut };
    match sock.connect(&addr.into()) {
        Ok(()) => return ConnectOutcome::Connected,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return outcome_of_error(&sock, &e),
    }
    let std_stream: std::net::TcpStream = sock.into();
    let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
        return ConnectOutcome::TimedOut;
    };
    match tokio::time::timeout(p.timeout, stream.writable()).await {
        Err(_) => ConnectOutcome::TimedOut,
        Ok(Err(e)) => outcome_of_error(&stream, &e),
        Ok(Ok(())) => match stream.take_error() {
            Ok(None) => ConnectOutcome::Connected,
            Ok(Some(e)) | Err(e) => outcome_of_error(&stream, &e),
        },
    }
}

/// Drives a connect-scan `engine` to the end on a current-thread tokio runtime in the
/// calling thread's network namespace.
pub fn run(mut engine: Engine, progress: &mut dyn FnMut(Progress)) -> io::Result<ScanReport> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        #[allow(clippy::disallowed_methods, reason = "the transport owns the clock")]
        let epoch = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel::<(Probe, ConnectOutcome)>();
        let mut in_flight = 0usize;
        let mut last_progress = Duration::ZERO;
        loop {
            let now = epoch.elapsed();
            while let Ok((p, o)) = rx.try_recv() {
                in_flight -= 1;
                engine.handle_connect(now, &p, o);
            }
            while in_flight < MAX_IN_FLIGHT {
                let Some(p) = engine.poll_transmit(now) else { break };
                in_flight += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let o = connect_one(p).await;
                    let _ = tx.send((p, o));
                });
            }
            if now >= last_progress + Duration::from_millis(100) {
                last_progress = now;
                progress(engine.progress());
            }
            let Some(deadline) = engine.poll_timeout(now) else { break };
            let wait = deadline.saturating_sub(epoch.elapsed()).max(Duration::from_micros(100));
            if let Ok(Some((p, o))) = tokio::time::timeout(wait, rx.recv()).await {
                in_flight -= 1;
                engine.handle_connect(epoch.elapsed(), &p, o);
            }
        }
        Ok(engine.finish())
    })
}
