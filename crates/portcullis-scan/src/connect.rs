//! The connect transport (`-sT`): tokio, no privileges needed.
//!
//! Each probe is a non-blocking `connect()` with `IP_RECVERR`/`IPV6_RECVERR` set, so when
//! the kernel aborts it because of an ICMP error, the error queue still says which one:
//! `REJECT --reject-with icmp-port-unreachable` is then `filtered (port-unreach)`, as in a
//! SYN scan, and not `closed (conn-refused)` as errno alone would say. Sockets close with
//! `SO_LINGER 0` (no TIME_WAIT). At most [`MAX_IN_FLIGHT`] connects run at once.
//!
//! A socket whose probe timed out is kept open for [`LINGER`] more (at most
//! [`MAX_LINGERING`] at once), and what it gets then is still reported, as an answer to that
//! earlier try. The kernel retransmits an unanswered SYN by itself one second after
//! `connect()`, so a probe with the initial one-second timeout races that retransmission:
//! closing the socket at the timeout would let the retransmission spend the target's ICMP
//! token (a REJECTed port's error) on a socket nobody reads, and the engine's delayed pass,
//! which counts on that token, would then find the port silent.

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

/// The ICMP error queued on `sock` by IP_RECVERR, if any.
fn queued_icmp(sock: &impl AsFd) -> Option<ConnectOutcome> {
    let q = crate::sys::recv_errqueue(sock.as_fd())?;
    let kind = IcmpKind { v6: q.v6, icmp_type: q.icmp_type, code: q.code };
    Some(ConnectOutcome::Icmp { kind, from: q.from? })
}

fn outcome_of_error(sock: &impl AsFd, err: &io::Error) -> ConnectOutcome {
    queued_icmp(sock).unwrap_or_else(|| map_errno(err))
}

/// What a finished connect attempt reports, and its socket when it timed out (to linger).
async fn connect_one(p: Probe) -> (ConnectOutcome, Option<tokio::net::TcpStream>) {
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
    let Ok(sock) = setup() else { return (ConnectOutcome::TimedOut, None) };
    match sock.connect(&addr.into()) {
        Ok(()) => return (ConnectOutcome::Connected, None),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return (outcome_of_error(&sock, &e), None),
    }
    let std_stream: std::net::TcpStream = sock.into();
    let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
        return (ConnectOutcome::TimedOut, None);
    };
    match tokio::time::timeout(p.timeout, settle(&stream)).await {
        Ok(o) => (o, None),
        Err(_) => (ConnectOutcome::TimedOut, Some(stream)),
    }
}

/// Waits until the connect on `stream` ends, and says how.
async fn settle(stream: &tokio::net::TcpStream) -> ConnectOutcome {
    match stream.writable().await {
        Err(e) => outcome_of_error(stream, &e),
        Ok(()) => match stream.take_error() {
            Ok(None) => ConnectOutcome::Connected,
            Ok(Some(e)) | Err(e) => outcome_of_error(stream, &e),
        },
    }
}

/// How long a timed-out connect socket stays open to catch a late answer: past the
/// kernel's first SYN retransmission (one second after `connect()`) and its round trip.
pub const LINGER: Duration = Duration::from_secs(1);
/// At most this many timed-out sockets linger at once (with [`MAX_IN_FLIGHT`], below the
/// usual 1024 fd limit); beyond it a timed-out socket closes at once.
pub const MAX_LINGERING: usize = 256;

/// A connect result for the driver: `late` when it came from a lingering socket, after
/// the probe had already been reported timed out.
struct Done {
    probe: Probe,
    outcome: ConnectOutcome,
    late: bool,
}

/// Hands `d` to the engine; a first report frees its in-flight slot.
fn feed(engine: &mut Engine, in_flight: &mut usize, now: Duration, d: Done) {
    if !d.late {
        *in_flight -= 1;
    }
    engine.handle_connect(now, &d.probe, d.outcome);
}

/// Drives a connect-scan `engine` to the end on a current-thread tokio runtime in the
/// calling thread's network namespace.
pub fn run(mut engine: Engine, progress: &mut dyn FnMut(Progress)) -> io::Result<ScanReport> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        #[allow(clippy::disallowed_methods, reason = "the transport owns the clock")]
        let epoch = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
        let lingering = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING));
        let mut in_flight = 0usize;
        let mut last_progress = Duration::ZERO;
        loop {
            let now = epoch.elapsed();
            while let Ok(d) = rx.try_recv() {
                feed(&mut engine, &mut in_flight, now, d);
            }
            while in_flight < MAX_IN_FLIGHT {
                let Some(probe) = engine.poll_transmit(now) else { break };
                in_flight += 1;
                let tx = tx.clone();
                let lingering = lingering.clone();
                tokio::spawn(async move {
                    let (outcome, stream) = connect_one(probe).await;
                    let _ = tx.send(Done { probe, outcome, late: false });
                    let Some(stream) = stream else { return };
                    let Ok(_permit) = lingering.try_acquire_owned() else { return };
                    if let Ok(outcome) = tokio::time::timeout(LINGER, settle(&stream)).await {
                        let _ = tx.send(Done { probe, outcome, late: true });
                    }
                });
            }
            if now >= last_progress + Duration::from_millis(100) {
                last_progress = now;
                progress(engine.progress());
            }
            let Some(deadline) = engine.poll_timeout(now) else { break };
            let wait = deadline.saturating_sub(epoch.elapsed()).max(Duration::from_micros(100));
            if let Ok(Some(d)) = tokio::time::timeout(wait, rx.recv()).await {
                feed(&mut engine, &mut in_flight, epoch.elapsed(), d);
            }
        }
        Ok(engine.finish())
    })
}
