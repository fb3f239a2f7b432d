//! The sans-IO scan engine: which probe to send when, how to read what came back.
//!
//! **Architecture Invariant:** this module never touches a socket, a runtime or the clock.
//! Time is an argument (`now`, a [`Duration`] since the scan's epoch chosen by the driver),
//! randomness comes from [`EngineConfig::seed`], packets come in and go out as bytes.
//!
//! A driver loops: [`Engine::poll_transmit`] until it returns `None`, sends each
//! [`Probe`] (raw transports write it with [`Probe::emit`]), feeds every received IP packet
//! to [`Engine::handle_packet`] (or a connect result to [`Engine::handle_connect`]), and
//! sleeps until [`Engine::poll_timeout`]. When that returns `None` the scan is over and
//! [`Engine::finish`] gives the [`ScanReport`].
//!
//! Schedule. The scan runs in passes. Pass 1 probes every (host, port) once, in a random
//! order; when more than [`COMMON_PORTS`] ports are scanned, nmap's [`COMMON_PORTS`] most
//! common ones go first (as nmap moves "commonly accessible ports" to the front), so the
//! ICMP errors of REJECTed services, which start the refill clock below, come in the first
//! milliseconds of a long pass instead of at a random point of it. Each later pass probes the ports still silent once more, so a port that never
//! answers gets exactly two probes, as from nmap on a loss-free link. A target's kernel
//! rate-limits ICMP errors (1/s per peer, burst 6), so a REJECTed port can look silent:
//! with [`Timing::icmp_refill_pass`] (the default) pass 2 and later start at least one
//! second after the last ICMP error seen and after the scan's first probe, when the
//! target's bucket holds a token again; without it they start as soon as the previous
//! pass timed out (nmap's quick retransmission). Passes continue while a pass still draws
//! a new answer (an ICMP error that the limiter had swallowed, or a reply to a probe the
//! network lost), up to `--max-retries` retransmissions: a pass that draws none, with a
//! token guaranteed in the bucket, proves the remaining ports silent. A delayed pass whose
//! only news were ICMP errors also proves silent every port it probed before the first of
//! them (the token was still there), so the next pass re-probes only the rest.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use crate::payloads::udp_payload;
use crate::state::{IcmpKind, PortState, Protocol, Reason, ScanType, may_replace};
use crate::timing::{RttEstimator, Timing};
use crate::wire::{
    IcmpError, IpPacket, QuotedPorts, TcpHeader, TcpProbe, emit_udp, proto, tcp_flags,
};

/// Source ports used by one scan: `sport_base + (try number % SPORT_SPAN)`.
pub const SPORT_SPAN: u16 = 64;
/// The lowest source port the engine picks: above Linux's default ephemeral range
/// (32768–60999), so no local connection collides with a probe.
pub const SPORT_MIN: u16 = 61_000;
/// At most this many passes over silent ports (the first included).
pub const MAX_PASSES: u8 = 32;
/// Extra wait on top of the ICMP limiter's one second. The limiter counts jiffies
/// (net/ipv4/inetpeer.c `inet_peer_xrlim_allow`): a probe that reaches the target at least
/// one second after the consumption that emptied the bucket finds a token, and the
/// consumption happened before its ICMP error reached us, so one second after that arrival
/// is already enough; the margin covers a jiffies counter lagging real time by a tick
/// (10 ms at HZ=100) and clock drift.
const REFILL_MARGIN: Duration = Duration::from_millis(15);
/// With more ports than this, pass 1 probes nmap's this many most common ports first.
pub const COMMON_PORTS: usize = 1000;

/// One target host and the address the scanner sends from towards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The scanned address.
    pub addr: IpAddr,
    /// Our source address towards it (needed for checksums and to validate replies).
    pub src: IpAddr,
}

/// What to scan and how. There is deliberately no `Default`.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Kind of scan.
    pub scan_type: ScanType,
    /// Hosts.
    pub targets: Vec<Target>,
    /// Ports (of the scan type's protocol); duplicates are ignored.
    pub ports: Vec<u16>,
    /// Timing.
    pub timing: Timing,
    /// Seed for the probe order, cookies and source ports.
    pub seed: u64,
}

/// Why an [`EngineConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No target host.
    NoTargets,
    /// No port.
    NoPorts,
    /// A target and its source address are of different families.
    MixedFamilies(IpAddr),
    /// Port 0 cannot be probed.
    PortZero,
    /// More than 2^32 (host, port) pairs.
    TooMany,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoTargets => f.write_str("no target to scan"),
            Self::NoPorts => f.write_str("no port to scan"),
            Self::MixedFamilies(a) => write!(f, "source address family differs for {a}"),
            Self::PortZero => f.write_str("port 0 cannot be scanned"),
            Self::TooMany => f.write_str("more than 2^32 host and port pairs"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One probe to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Target address.
    pub dst: IpAddr,
    /// Our address.
    pub src: IpAddr,
    /// Probed port.
    pub dst_port: u16,
    /// Our source port.
    pub src_port: u16,
    /// Scan kind (what to emit).
    pub scan_type: ScanType,
    /// Try number of this (host, port), from 0.
    pub tryno: u8,
    /// How long the engine waits for an answer to this probe (a connect transport cancels
    /// its attempt after that).
    pub timeout: Duration,
    seq: u32,
    ack: u32,
    task: u32,
}

impl Probe {
    /// Writes the probe's transport header and payload (TCP segment or UDP datagram; the
    /// kernel adds the IP header) into `buf`. Returns the length, or `None` for a connect
    /// probe or a too small buffer.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let tcp = |flags| TcpProbe {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: self.seq,
            ack: self.ack,
            flags,
        };
        match self.scan_type {
            ScanType::Syn => tcp(tcp_flags::SYN).emit(buf),
            ScanType::Ack => tcp(tcp_flags::ACK).emit(buf),
            ScanType::Udp => emit_udp(
                buf,
                self.src,
                self.dst,
                self.src_port,
                self.dst_port,
                udp_payload(self.dst_port),
            ),
            ScanType::Connect => None,
        }
    }
}

/// How a connect attempt ended, as a connect transport sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectOutcome {
    /// The handshake completed.
    Connected,
    /// The socket error queue (`IP_RECVERR`) held this ICMP error from `from`.
    Icmp {
        /// The ICMP error.
        kind: IcmpKind,
        /// Who sent it.
        from: IpAddr,
    },
    /// ECONNREFUSED with no ICMP error behind it: a RST.
    Refused,
    /// Another errno, mapped like nmap's `handleConnectResult`.
    Failed(Reason),
    /// No result within the probe's timeout.
    TimedOut,
}

/// How far a scan is (for progress displays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// (host, port) pairs with an answer.
    pub answered: usize,
    /// (host, port) pairs.
    pub total: usize,
    /// Probes sent.
    pub probes_sent: u64,
    /// Current pass.
    pub pass: u8,
}

/// The recorded answer of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortResult {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// State.
    pub state: PortState,
    /// Reason.
    pub reason: Reason,
    /// TTL (hop limit) of the reply, if any.
    pub reason_ttl: Option<u8>,
    /// Sender of the reply when it is not the target (an ICMP error from a router).
    pub reason_ip: Option<IpAddr>,
}

/// Results of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReport {
    /// Address.
    pub addr: IpAddr,
    /// Every scanned port, sorted by number.
    pub ports: Vec<PortResult>,
    /// Smoothed RTT.
    pub srtt: Option<Duration>,
    /// RTT variance.
    pub rttvar: Duration,
    /// Final retransmission timeout.
    pub timeout: Duration,
    /// Whether anything at all answered.
    pub responded: bool,
}

/// The result of a finished scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReport {
    /// Kind of scan.
    pub scan_type: ScanType,
    /// The scanned ports, in ascending order.
    pub ports: Vec<u16>,
    /// Per host, in the order given.
    pub hosts: Vec<HostReport>,
    /// Probes sent.
    pub probes_sent: u64,
    /// Passes run (1 when no delayed pass was needed).
    pub passes: u8,
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    state: PortState,
    reason: Reason,
    ttl: Option<u8>,
    from: Option<IpAddr>,
}

#[derive(Debug, Clone)]
struct Host {
    target: Target,
    rtt: RttEstimator,
    responded: bool,
}

/// The scan state machine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    scan_type: ScanType,
    timing: Timing,
    secret: u64,
    rng: SplitMix,
    sport_base: u16,
    hosts: Vec<Host>,
    host_index: HashMap<IpAddr, u32>,
    ports: Vec<u16>,
    port_index: HashMap<u16, u32>,
    /// Number of (host, port) pairs; task `h * ports.len() + p` is host `h`, port `p`.
    tasks: u32,
    /// One bit per task: answered.
    answered: Vec<u64>,
    answered_count: u32,
    /// Answers, by task: only answered tasks take memory.
    answers: HashMap<u32, Answer>,
    /// This pass's probe order: a keyed permutation of the tasks, in constant memory.
    order: Feistel,
    /// Position in `order`'s domain.
    cursor: u64,
    /// Pass 1 with a common-ports bitmap (one bit per port number) walks `order` twice:
    /// common ports in sweep 0, the others in sweep 1. `None`: one sweep.
    common: Option<Vec<u64>>,
    /// Which sweep of pass 1 is running (0 or 1).
    sweep: u8,
    /// Probes awaiting an answer, in send order: (sent at, task).
    outstanding: VecDeque<(Duration, u32)>,
    /// Send time and position in its pass's order of each (task, try) probe, while it is
    /// outstanding and until it is `max_rtt_timeout` old: an answer to that try, even one
    /// after its timeout, is an RTT sample (the source port names the try, so there is
    /// no retransmission ambiguity).
    sent_at: HashMap<(u32, u8), (Duration, u64)>,
    /// Probes out of `outstanding` (timed out or answered), in send order, whose
    /// `sent_at` entry stays until it is `max_rtt_timeout` old: a later answer could not
    /// raise the timeout any further.
    expired: VecDeque<(Duration, u32, u8)>,
    pass: u8,
    pass_start: Duration,
    next_send: Duration,
    first_send: Option<Duration>,
    last_icmp: Option<Duration>,
    /// A port got its first answer during the current pass.
    news_in_pass: bool,
    /// Position in this pass's order of the earliest probe an ICMP error answered.
    first_icmp_in_pass: Option<u64>,
    /// Whether this pass's answers were all ICMP errors to this pass's probes (see
    /// [`Engine::prune_proven_silent`]).
    only_icmp_news: bool,
    probes_sent: u64,
    done: bool,
}

impl Engine {
    /// Validates `cfg` and prepares the probe order.
    pub fn new(cfg: EngineConfig) -> Result<Self, ConfigError> {
        if cfg.targets.is_empty() {
            return Err(ConfigError::NoTargets);
        }
        let mut ports = cfg.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            return Err(ConfigError::NoPorts);
        }
        if ports[0] == 0 {
            return Err(ConfigError::PortZero);
        }
        let mut hosts = Vec::new();
        let mut host_index = HashMap::new();
        for t in &cfg.targets {
            if t.addr.is_ipv4() != t.src.is_ipv4() {
                return Err(ConfigError::MixedFamilies(t.addr));
            }
            if host_index.contains_key(&t.addr) {
                continue;
            }
            host_index.insert(t.addr, hosts.len() as u32);
            hosts.push(Host { target: *t, rtt: RttEstimator::new(), responded: false });
        }
        let port_index = ports.iter().enumerate().map(|(i, p)| (*p, i as u32)).collect();
        let n = u32::try_from(hosts.len() as u64 * ports.len() as u64)
            .map_err(|_| ConfigError::TooMany)?;
        let mut rng = SplitMix(cfg.seed);
        let secret = rng.next();
        let span = u64::from(u16::MAX - SPORT_MIN - SPORT_SPAN);
        let sport_base = SPORT_MIN + (rng.next() % span) as u16;
        let order = Feistel::new(n, &mut rng);
        let common = (ports.len() > COMMON_PORTS).then(|| {
            let mut bits = vec![0u64; 1024];
            for p in crate::ports::top_ports(cfg.scan_type.protocol(), COMMON_PORTS) {
                bits[usize::from(p) / 64] |= 1 << (p % 64);
            }
            bits
        });
        Ok(Self {
            scan_type: cfg.scan_type,
            timing: cfg.timing,
            secret,
            rng,
            sport_base,
            hosts,
            host_index,
            ports,
            port_index,
            tasks: n,
            answered: vec![0; (n as usize).div_ceil(64)],
            answered_count: 0,
            answers: HashMap::new(),
            order,
            cursor: 0,
            common,
            sweep: 0,
            outstanding: VecDeque::new(),
            sent_at: HashMap::new(),
            expired: VecDeque::new(),
            pass: 1,
            pass_start: Duration::ZERO,
            next_send: Duration::ZERO,
            first_send: None,
            last_icmp: None,
            news_in_pass: false,
            first_icmp_in_pass: None,
            only_icmp_news: true,
            probes_sent: 0,
            done: false,
        })
    }

    /// The source ports this scan uses: `base..base + SPORT_SPAN`.
    pub fn sport_range(&self) -> std::ops::Range<u16> {
        self.sport_base..self.sport_base + SPORT_SPAN
    }

    /// The scan kind.
    pub fn scan_type(&self) -> ScanType {
        self.scan_type
    }

    /// How far the scan is.
    pub fn progress(&self) -> Progress {
        Progress {
            answered: self.answered_count as usize,
            total: self.tasks as usize,
            probes_sent: self.probes_sent,
            pass: self.pass,
        }
    }

    /// When the probe of `task` sent at `sent` times out, by its host's current timeout
    /// (RTT samples that arrive after sending shorten the wait, as in nmap). Probes wait
    /// in send order; with hosts of different RTTs a probe may wait for one ahead of it,
    /// at most the difference of their timeouts.
    fn due(&self, sent: Duration, task: u32) -> Duration {
        let (h, _) = self.host_port(task);
        sent + self.hosts[h].rtt.timeout(&self.timing)
    }

    fn is_answered(&self, task: u32) -> bool {
        self.answered[task as usize / 64] & (1 << (task % 64)) != 0
    }

    fn host_port(&self, task: u32) -> (usize, usize) {
        let np = self.ports.len();
        (task as usize / np, task as usize % np)
    }

    fn cookie(&self, dst: IpAddr, dport: u16, sport: u16) -> u32 {
        let mut h = std::hash::DefaultHasher::new();
        self.secret.hash(&mut h);
        dst.hash(&mut h);
        dport.hash(&mut h);
        sport.hash(&mut h);
        h.finish() as u32
    }

    fn ack_cookie(&self, seq: u32) -> u32 {
        seq.rotate_left(13) ^ (self.secret >> 32) as u32
    }

    fn make_probe(&mut self, task: u32, now: Duration) -> Probe {
        let (h, p) = self.host_port(task);
        let host = &self.hosts[h];
        let timeout = host.rtt.timeout(&self.timing);
        // One probe per task and pass: the try number is the pass's.
        let tryno = self.pass - 1;
        let src_port = self.sport_base + u16::from(tryno) % SPORT_SPAN;
        let (dst, src, dst_port) = (host.target.addr, host.target.src, self.ports[p]);
        let seq = self.cookie(dst, dst_port, src_port);
        let ack = if self.scan_type == ScanType::Ack { self.ack_cookie(seq) } else { 0 };
        self.outstanding.push_back((now, task));
        self.sent_at.insert((task, tryno), (now, self.cursor - 1));
        self.probes_sent += 1;
        self.first_send.get_or_insert(now);
        self.next_send = now + self.timing.send_interval();
        Probe {
            dst,
            src,
            dst_port,
            src_port,
            scan_type: self.scan_type,
            tryno,
            timeout,
            seq,
            ack,
            task,
        }
    }

    /// The next probe to send at `now`, if one is due. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Probe> {
        self.advance(now);
        if self.done || now < self.next_send || now < self.pass_start {
            return None;
        }
        loop {
            while self.cursor < self.order.domain() {
                let x = self.order.permute(self.cursor);
                self.cursor += 1;
                if let Ok(task) = u32::try_from(x)
                    && task < self.tasks
                    && !self.is_answered(task)
                    && self.in_sweep(task)
                {
                    return Some(self.make_probe(task, now));
                }
            }
            if !self.next_sweep() {
                break;
            }
        }
        self.advance(now);
        None
    }

    /// Whether `task` belongs to the running sweep of pass 1 (always, without sweeps).
    fn in_sweep(&self, task: u32) -> bool {
        let Some(bits) = &self.common else { return true };
        if self.pass != 1 {
            return true;
        }
        let port = self.ports[self.host_port(task).1];
        let common = bits[usize::from(port) / 64] & (1 << (port % 64)) != 0;
        common == (self.sweep == 0)
    }

    /// Starts pass 1's second sweep; false when there is none.
    fn next_sweep(&mut self) -> bool {
        if self.pass == 1 && self.common.is_some() && self.sweep == 0 {
            self.sweep = 1;
            self.cursor = 0;
            return true;
        }
        false
    }

    /// Whether the current pass still has probes to send.
    fn sending(&self) -> bool {
        self.cursor < self.order.domain()
            || (self.pass == 1 && self.common.is_some() && self.sweep == 0)
    }

    /// Ends a pass when nothing is left to send or wait for, and starts the next one or
    /// finishes.
    fn advance(&mut self, now: Duration) {
        if self.done {
            return;
        }
        // Probes whose timeout passed without an answer leave their port silent for this
        // pass.
        while let Some(&(sent, task)) = self.outstanding.front() {
            if self.is_answered(task) || self.due(sent, task) <= now {
                self.outstanding.pop_front();
                // A pass ends only when nothing is outstanding: these are this pass's.
                self.expired.push_back((sent, task, self.pass - 1));
                continue;
            }
            break;
        }
        while let Some(&(sent, task, tryno)) = self.expired.front() {
            if sent + self.timing.max_rtt_timeout > now {
                break;
            }
            self.expired.pop_front();
            self.sent_at.remove(&(task, tryno));
        }
        if self.sending() || !self.outstanding.is_empty() {
            return;
        }
        self.prune_proven_silent();
        let more = self.answered_count < self.tasks
            && (self.pass == 1 || self.news_in_pass)
            && self.pass <= self.timing.max_retries
            && self.pass < MAX_PASSES;
        if !more {
            self.done = true;
            return;
        }
        self.pass += 1;
        self.pass_start = if self.timing.icmp_refill_pass {
            let base = self.last_icmp.unwrap_or_default().max(self.first_send.unwrap_or_default());
            (base + Duration::from_secs(1) + REFILL_MARGIN).max(now)
        } else {
            now
        };
        self.news_in_pass = false;
        self.first_icmp_in_pass = None;
        self.only_icmp_news = true;
        self.order = Feistel::new(self.tasks, &mut self.rng);
        self.cursor = 0;
    }

    /// After a delayed pass (which started with a token in the target's ICMP bucket) whose
    /// only news were ICMP errors: every port probed before the earliest probe an ICMP
    /// error answered met a non-empty bucket (nothing had consumed the token yet), so had
    /// it drawn an ICMP error, that error would have come back. Those ports are proven
    /// silent and skip the next pass. With one target and an in-order link this is exact;
    /// anything else (a reply to an older try, any non-ICMP news) disables it for the pass.
    fn prune_proven_silent(&mut self) {
        let proven = match self.first_icmp_in_pass {
            Some(first)
                if self.pass >= 2
                    && self.timing.icmp_refill_pass
                    && self.only_icmp_news
                    && self.hosts.len() == 1 =>
            {
                first
            }
            _ => return,
        };
        for i in 0..proven {
            let x = self.order.permute(i);
            if let Ok(task) = u32::try_from(x)
                && task < self.tasks
                && !self.is_answered(task)
            {
                // Marked done without an answer: finish() reports the silent default.
                self.answered[task as usize / 64] |= 1 << (task % 64);
                self.answered_count += 1;
            }
        }
    }

    /// When the engine next needs [`Engine::poll_transmit`] called: `None` once the scan is
    /// finished. Always a finite deadline otherwise.
    pub fn poll_timeout(&mut self, now: Duration) -> Option<Duration> {
        self.advance(now);
        if self.done {
            return None;
        }
        let mut next = self.outstanding.front().map(|&(sent, task)| self.due(sent, task));
        if self.sending() {
            let start = self.next_send.max(self.pass_start);
            next = Some(next.map_or(start, |n| n.min(start)));
        }
        Some(next.unwrap_or(now))
    }

    /// Whether the scan is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds one received IP packet (starting at the IP header). Anything that is not a
    /// valid answer to one of our probes is ignored; malformed input never panics.
    pub fn handle_packet(&mut self, now: Duration, packet: &[u8]) {
        let Ok(ip) = IpPacket::new_checked(packet) else { return };
        match ip.protocol {
            proto::TCP => self.handle_tcp(now, &ip),
            proto::UDP => self.handle_udp(now, &ip),
            proto::ICMP if ip.src.is_ipv4() => {
                if let Ok(e) = IcmpError::new_checked_v4(ip.payload) {
                    self.handle_icmp(now, &ip, &e, false);
                }
            }
            proto::ICMPV6 if ip.src.is_ipv6() => {
                if let Ok(e) = IcmpError::new_checked_v6(ip.payload) {
                    self.handle_icmp(now, &ip, &e, true);
                }
            }
            _ => {}
        }
    }

    /// Finds the task and try number of a reply from `target:port` to our `sport`.
    fn lookup(&self, target: IpAddr, port: u16, sport: u16, our: IpAddr) -> Option<(u32, u8)> {
        let h = *self.host_index.get(&target)?;
        if self.hosts[h as usize].target.src != our {
            return None;
        }
        let p = *self.port_index.get(&port)?;
        if !self.sport_range().contains(&sport) {
            return None;
        }
        let task = h * self.ports.len() as u32 + p;
        // Try numbers stay below MAX_PASSES < SPORT_SPAN: the offset is the try number,
        // and a try not sent yet cannot be answered.
        let tryno = u8::try_from(sport - self.sport_base).ok()?;
        (tryno < self.pass).then_some((task, tryno))
    }

    fn handle_tcp(&mut self, now: Duration, ip: &IpPacket<'_>) {
        if !matches!(self.scan_type, ScanType::Syn | ScanType::Ack) {
            return;
        }
        let Ok(tcp) = TcpHeader::new_checked(ip.payload) else { return };
        let Some((task, tryno)) = self.lookup(ip.src, tcp.src_port, tcp.dst_port, ip.dst) else {
            return;
        };
        let seq = self.cookie(ip.src, tcp.src_port, tcp.dst_port);
        let f = tcp.flags;
        let answer = match self.scan_type {
            ScanType::Syn => {
                let acks_us = f & tcp_flags::ACK != 0 && tcp.ack == seq.wrapping_add(1);
                if f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK {
                    acks_us.then_some((PortState::Open, Reason::SynAck))
                } else if f & tcp_flags::RST != 0 {
                    // A RST answering a SYN acknowledges it; a bare RST must carry our seq.
                    (acks_us || (f & tcp_flags::ACK == 0 && tcp.seq == seq.wrapping_add(1)))
                        .then_some((PortState::Closed, Reason::Reset))
                } else if f & tcp_flags::SYN != 0 && f & tcp_flags::ACK == 0 {
                    Some((PortState::Open, Reason::SplitHandshakeSyn))
                } else {
                    None
                }
            }
            _ => (f & tcp_flags::RST != 0 && tcp.seq == self.ack_cookie(seq))
                .then_some((PortState::Unfiltered, Reason::Reset)),
        };
        if let Some((state, reason)) = answer {
            let a = Answer { state, reason, ttl: Some(ip.ttl), from: None };
            self.record(now, task, tryno, a, false);
        }
    }

    fn handle_udp(&mut self, now: Duration, ip: &IpPacket<'_>) {
        if self.scan_type != ScanType::Udp {
            return;
        }
        let Ok(q) = QuotedPorts::new_checked(ip.payload) else { return };
        let Some((task, tryno)) = self.lookup(ip.src, q.src_port, q.dst_port, ip.dst) else {
            return;
        };
        let a = Answer {
            state: PortState::Open,
            reason: Reason::UdpResponse,
            ttl: Some(ip.ttl),
            from: None,
        };
        self.record(now, task, tryno, a, false);
    }

    fn handle_icmp(&mut self, now: Duration, ip: &IpPacket<'_>, e: &IcmpError<'_>, v6: bool) {
        let q = &e.quoted;
        let want = match self.scan_type.protocol() {
            Protocol::Tcp => proto::TCP,
            Protocol::Udp => proto::UDP,
        };
        if q.protocol != want || self.scan_type == ScanType::Connect {
            return;
        }
        let Ok(ports) = QuotedPorts::new_checked(q.payload) else { return };
        let Some((task, tryno)) = self.lookup(q.dst, ports.dst_port, ports.src_port, q.src) else {
            return;
        };
        let ours = if want == proto::TCP {
            ports.seq == self.cookie(q.dst, ports.dst_port, ports.src_port)
        } else {
            ports.seq == udp_len_and_checksum(q.src, q.dst, ports.src_port, ports.dst_port)
        };
        if !ours {
            return;
        }
        let kind = IcmpKind { v6, icmp_type: e.icmp_type, code: e.code };
        let from_target = ip.src == q.dst;
        let Some((state, reason)) = kind.classify(self.scan_type, from_target) else { return };
        let from = (!from_target).then_some(ip.src);
        let a = Answer { state, reason, ttl: Some(ip.ttl), from };
        self.record(now, task, tryno, a, true);
    }

    /// Feeds the result of a connect attempt for `probe`.
    pub fn handle_connect(&mut self, now: Duration, probe: &Probe, outcome: ConnectOutcome) {
        if self.scan_type != ScanType::Connect || probe.task >= self.tasks {
            return;
        }
        let (answer, icmp) = match outcome {
            ConnectOutcome::Connected => ((PortState::Open, Reason::SynAck, None), false),
            ConnectOutcome::Refused => ((PortState::Closed, Reason::ConnRefused, None), false),
            ConnectOutcome::Icmp { kind, from } => {
                let from_target = from == probe.dst;
                let Some((s, r)) = kind.classify(ScanType::Connect, from_target) else { return };
                ((s, r, (!from_target).then_some(from)), true)
            }
            ConnectOutcome::Failed(r) => ((PortState::Filtered, r, None), false),
            ConnectOutcome::TimedOut => return,
        };
        let (state, reason, from) = answer;
        let a = Answer { state, reason, ttl: None, from };
        self.record(now, probe.task, probe.tryno, a, icmp);
    }

    fn record(&mut self, now: Duration, task: u32, tryno: u8, a: Answer, icmp: bool) {
        let (h, _) = self.host_port(task);
        let probe = self.sent_at.get(&(task, tryno)).copied();
        if let Some((sent, _)) = probe
            && now >= sent
        {
            self.hosts[h].rtt.sample(now - sent);
        }
        let this_pass = probe.filter(|_| tryno + 1 == self.pass);
        self.hosts[h].responded = true;
        let fresh = match self.answers.get(&task) {
            None => true,
            Some(old) => may_replace(self.scan_type, old.state, a.state),
        };
        if fresh {
            if !self.is_answered(task) {
                self.answered[task as usize / 64] |= 1 << (task % 64);
                self.answered_count += 1;
                self.news_in_pass = true;
                match this_pass {
                    Some((_, idx)) if icmp => {
                        self.first_icmp_in_pass =
                            Some(self.first_icmp_in_pass.map_or(idx, |f| f.min(idx)));
                    }
                    _ => self.only_icmp_news = false,
                }
            }
            self.answers.insert(task, a);
        }
        if icmp {
            self.last_icmp = Some(now);
            // An ICMP error that arrives after the next delayed pass was scheduled but
            // before it began consumed a token: the pass waits for the refill again.
            if self.pass > 1 && self.cursor == 0 && self.timing.icmp_refill_pass {
                self.pass_start = self.pass_start.max(now + Duration::from_secs(1) + REFILL_MARGIN);
            }
        }
    }

    /// The results. Ports still unanswered get the scan's silent state (`filtered`, or
    /// `open|filtered` for UDP) with reason `no-response`.
    pub fn finish(self) -> ScanReport {
        let np = self.ports.len();
        let protocol = self.scan_type.protocol();
        let silent = self.scan_type.silent_state();
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .map(|(h, host)| HostReport {
                addr: host.target.addr,
                ports: self
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(p, port)| {
                        let a =
                            self.answers.get(&((h * np + p) as u32)).copied().unwrap_or(Answer {
                                state: silent,
                                reason: Reason::NoResponse,
                                ttl: None,
                                from: None,
                            });
                        PortResult {
                            port: *port,
                            protocol,
                            state: a.state,
                            reason: a.reason,
                            reason_ttl: a.ttl,
                            reason_ip: a.from,
                        }
                    })
                    .collect(),
                srtt: host.rtt.srtt(),
                rttvar: host.rtt.rttvar(),
                timeout: host.rtt.timeout(&self.timing),
                responded: host.responded,
            })
            .collect();
        ScanReport {
            scan_type: self.scan_type,
            ports: self.ports,
            hosts,
            probes_sent: self.probes_sent,
            passes: self.pass,
        }
    }
}

/// Bytes 4..8 of the UDP probe `src:sport → dst:dport` (length and checksum), as an ICMP
/// error quoting it must show them. UDP has no cookie; this is what ties a quoted header
/// to the probe of its destination port (another port's probe from the same source port
/// has another payload and checksum).
fn udp_len_and_checksum(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u32 {
    let mut buf = [0u8; 1500];
    match emit_udp(&mut buf, src, dst, sport, dport, udp_payload(dport)) {
        Some(_) => u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        None => 0,
    }
}

/// SplitMix64: a small, seedable generator (no dependency, deterministic in tests).
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A keyed Feistel permutation of `0..2^(2·half)`, the smallest even power of two not
/// below `n`; walking the whole domain and skipping values `>= n` visits every task once
/// in a random order without storing the order (masscan's BlackRock idea).
#[derive(Debug, Clone)]
struct Feistel {
    half: u32,
    keys: [u64; 4],
}

impl Feistel {
    fn new(n: u32, rng: &mut SplitMix) -> Self {
        let bits = 32 - n.max(2).saturating_sub(1).leading_zeros();
        Self { half: bits.div_ceil(2), keys: [rng.next(), rng.next(), rng.next(), rng.next()] }
    }

    fn domain(&self) -> u64 {
        1 << (2 * self.half)
    }

    fn permute(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for k in self.keys {
            let mut z = (r ^ k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let f = (z ^ (z >> 32)) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half) | r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feistel_visits_every_task_once() {
        let mut rng = SplitMix(3);
        for n in [1u32, 2, 3, 5, 100, 4096, 65_535, 70_000] {
            let f = Feistel::new(n, &mut rng);
            assert!(f.domain() >= u64::from(n) && f.domain() <= 4 * u64::from(n.max(2)));
            let mut seen = vec![false; n as usize];
            for i in 0..f.domain() {
                let x = f.permute(i);
                assert!(x < f.domain());
                if x < u64::from(n) {
                    assert!(!seen[x as usize], "{x} twice for n = {n}");
                    seen[x as usize] = true;
                }
            }
            assert!(seen.iter().all(|s| *s), "n = {n}");
        }
    }
}
