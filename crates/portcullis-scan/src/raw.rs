//! The raw transport for SYN, ACK and UDP scans (Linux).
//!
//! Probes leave through a raw L4 socket (`SOCK_RAW`, `IPPROTO_TCP`/`IPPROTO_UDP`): the
//! kernel routes, resolves neighbours and writes the IP header. Replies are read on an
//! `AF_PACKET` socket in a dedicated thread, which sees them before the scanner host's own
//! netfilter INPUT chain, so a scanner behind `INPUT DROP` still gets every answer.
//! Checksums of replies are not checked (veth delivers them unfinished); replies are
//! validated by address, ports and the SYN cookie instead. Every wait has a deadline: the
//! receiver `poll`s the socket together with a wake-up pipe (and a 200 ms timeout), so it
//! stops as soon as the scan ends instead of at its next receive timeout.

use std::io::{self, Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::engine::{Engine, Probe, Progress};
use crate::state::ScanType;

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: i32 = 263;
const PACKET_IGNORE_OUTGOING: i32 = 23;
/// Upper bound of one receiver wait; the wake-up pipe normally ends it much sooner.
const RECV_POLL: Duration = Duration::from_millis(200);

/// The address this host sends from towards `dst` (a route lookup; nothing is sent).
pub fn source_for(dst: IpAddr) -> io::Result<IpAddr> {
    let any: IpAddr =
        if dst.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
    s.connect(SocketAddr::new(dst, 9))?;
    Ok(s.local_addr()?.ip())
}

/// Whether this process may open raw sockets (root or CAP_NET_RAW).
pub fn have_raw_access() -> bool {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).is_ok()
}

struct Senders {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

impl Senders {
    fn open(scan: ScanType, need_v4: bool, need_v6: bool) -> io::Result<Self> {
        let proto = if scan == ScanType::Udp { Protocol::UDP } else { Protocol::TCP };
        let open = |d| -> io::Result<Socket> {
            let s = Socket::new(d, Type::RAW, Some(proto))?;
            s.set_send_buffer_size(4 << 20)?;
            Ok(s)
        };
        Ok(Self {
            v4: if need_v4 { Some(open(Domain::IPV4)?) } else { None },
            v6: if need_v6 { Some(open(Domain::IPV6)?) } else { None },
        })
    }

    fn send(&self, p: &Probe, seg: &[u8]) -> io::Result<()> {
        let sock = if p.dst.is_ipv4() { &self.v4 } else { &self.v6 };
        let Some(sock) = sock else { return Ok(()) };
        let addr = SockAddr::from(SocketAddr::new(p.dst, 0));
        for _ in 0..100 {
            match sock.send_to(seg, &addr) {
                Ok(_) => return Ok(()),
                // The qdisc is full: give it a moment rather than lose the probe.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    thread::sleep(Duration::from_micros(200));
                }
                // A local firewall refused it, or the kernel has no neighbour or route for
                // the target: the probe is lost, as on the wire; the target stays silent.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(
                            libc::EPERM
                                | libc::EACCES
                                | libc::EHOSTUNREACH
                                | libc::ENETUNREACH
                                | libc::EHOSTDOWN
                                | libc::EADDRNOTAVAIL
                        )
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Opens the AF_PACKET receive socket: cooked (`SOCK_DGRAM`, the L3 packet without the
/// link header) on every interface of the current namespace, our own outgoing frames
/// ignored.
fn open_receiver() -> io::Result<Socket> {
    let proto = Protocol::from(i32::from(ETH_P_ALL.to_be()));
    let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto))?;
    // Best effort: older kernels lack PACKET_IGNORE_OUTGOING; the engine ignores our own
    // probes anyway (wrong direction).
    let _ = crate::sys::setsockopt_int(s.as_fd(), SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    if crate::sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 32 << 20)
        .is_err()
    {
        s.set_recv_buffer_size(8 << 20)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Drives `engine` to the end with raw sockets, in the calling thread's network namespace.
/// `progress` is called about every 100 ms.
pub fn run(
    mut engine: Engine,
    progress: &mut dyn FnMut(Progress),
) -> io::Result<crate::engine::ScanReport> {
    let rx_sock = open_receiver()?;
    let need_v4 = true;
    let need_v6 = true;
    let senders = Senders::open(engine.scan_type(), need_v4, need_v6)
        .or_else(|_| Senders::open(engine.scan_type(), true, false))?;
    let stop = Arc::new(AtomicBool::new(false));
    // Writing to `wake_tx` ends the receiver's current wait at once.
    let (mut wake_tx, wake_rx) = std::os::unix::net::UnixStream::pair()?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let receiver = {
        let stop = Arc::clone(&stop);
        let mut sock = rx_sock;
        thread::Builder::new().name("scan-rx".into()).spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                match sock.read(&mut buf) {
                    Ok(n) => {
                        // Only IP packets: version nibble 4 or 6.
                        if n > 0
                            && matches!(buf[0] >> 4, 4 | 6)
                            && tx.send(buf[..n].to_vec()).is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let (_, woken) =
                            crate::sys::poll_readable(sock.as_fd(), wake_rx.as_fd(), RECV_POLL)?;
                        if woken {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?
    };
    #[allow(clippy::disallowed_methods, reason = "the transport owns the clock")]
    let epoch = Instant::now();
    let mut seg = [0u8; 1500];
    let mut last_progress = Duration::ZERO;
    let result = (|| -> io::Result<()> {
        loop {
            let now = epoch.elapsed();
            while let Ok(pkt) = rx.try_recv() {
                engine.handle_packet(now, &pkt);
            }
            let mut burst = 0;
            while burst < 512 {
                let Some(p) = engine.poll_transmit(now) else { break };
                if let Some(n) = p.emit(&mut seg) {
                    senders.send(&p, &seg[..n])?;
                }
                burst += 1;
            }
            if now >= last_progress + Duration::from_millis(100) {
                last_progress = now;
                progress(engine.progress());
            }
            if burst == 512 {
                continue;
            }
            let Some(deadline) = engine.poll_timeout(now) else { return Ok(()) };
            let now = epoch.elapsed();
            if deadline > now {
                match rx.recv_timeout(deadline - now) {
                    Ok(pkt) => engine.handle_packet(epoch.elapsed(), &pkt),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(io::Error::other("receiver thread stopped"));
                    }
                }
            }
        }
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = wake_tx.write_all(&[1]);
    let rx_result = receiver.join().map_err(|_| io::Error::other("receiver thread panicked"))?;
    result?;
    rx_result?;
    Ok(engine.finish())
}
