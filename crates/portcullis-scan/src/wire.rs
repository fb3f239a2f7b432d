//! Packet views and probe builders (smoltcp style): pure functions over byte slices.
//!
//! Every parser takes untrusted bytes and goes through a `new_checked` constructor that
//! validates lengths once, so no accessor can panic afterwards. Checksums of received
//! packets are deliberately **not** verified: on veth and loopback the kernel hands over
//! replies with unfinished (CHECKSUM_PARTIAL) checksums, see `docs/scanning.md` §3.2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A packet was too short or malformed for the view asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("truncated or malformed packet")
    }
}

impl std::error::Error for Truncated {}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// IP protocol numbers used by the scanner.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// A checked view of an IP packet (version 4 or 6) and its transport payload.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Transport protocol number (IPv6: the first next-header, extension headers are not
    /// followed).
    pub protocol: u8,
    /// The transport header and payload, cut to the length the IP header announces.
    pub payload: &'a [u8],
}

impl<'a> IpPacket<'a> {
    /// Parses an IPv4 or IPv6 header. For quoted packets inside ICMP errors (where the
    /// payload is cut short) use [`IpPacket::new_quoted`].
    pub fn new_checked(b: &'a [u8]) -> Result<Self, Truncated> {
        Self::parse(b, false)
    }

    /// Like [`IpPacket::new_checked`], but tolerates a payload shorter than the header's
    /// length field, as in the quote of an ICMP error.
    pub fn new_quoted(b: &'a [u8]) -> Result<Self, Truncated> {
        Self::parse(b, true)
    }

    fn parse(b: &'a [u8], quoted: bool) -> Result<Self, Truncated> {
        let first = *b.first().ok_or(Truncated)?;
        match first >> 4 {
            4 => {
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 || b.len() < ihl {
                    return Err(Truncated);
                }
                let total = usize::from(be16(b, 2));
                let end = if quoted {
                    total.clamp(ihl, b.len())
                } else {
                    // Some drivers pad short frames; trust the header's length when sane.
                    if total < ihl || total > b.len() {
                        return Err(Truncated);
                    }
                    total
                };
                let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
                let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
                Ok(Self {
                    src: src.into(),
                    dst: dst.into(),
                    ttl: b[8],
                    protocol: b[9],
                    payload: &b[ihl..end],
                })
            }
            6 => {
                if b.len() < 40 {
                    return Err(Truncated);
                }
                let plen = usize::from(be16(b, 4));
                let end = if quoted {
                    (40 + plen).min(b.len())
                } else {
                    if 40 + plen > b.len() {
                        return Err(Truncated);
                    }
                    40 + plen
                };
                let mut s = [0u8; 16];
                s.copy_from_slice(&b[8..24]);
                let mut d = [0u8; 16];
                d.copy_from_slice(&b[24..40]);
                Ok(Self {
                    src: Ipv6Addr::from(s).into(),
                    dst: Ipv6Addr::from(d).into(),
                    ttl: b[7],
                    protocol: b[6],
                    payload: &b[40..end],
                })
            }
            _ => Err(Truncated),
        }
    }
}

/// A checked view of a TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flag bits, see [`tcp_flags`].
    pub flags: u8,
    /// Window.
    pub window: u16,
}

impl TcpHeader {
    /// Parses a full TCP header (20 bytes at least, data offset checked).
    pub fn new_checked(b: &[u8]) -> Result<Self, Truncated> {
        if b.len() < 20 {
            return Err(Truncated);
        }
        let off = usize::from(b[12] >> 4) * 4;
        if off < 20 || off > b.len() {
            return Err(Truncated);
        }
        Ok(Self {
            src_port: be16(b, 0),
            dst_port: be16(b, 2),
            seq: be32(b, 4),
            ack: be32(b, 8),
            flags: b[13],
            window: be16(b, 14),
        })
    }
}

/// The first 8 bytes of a transport header (ports and, for TCP, the sequence number): all
/// an ICMPv4 error is required to quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedPorts {
    /// Source port of the quoted (our) packet.
    pub src_port: u16,
    /// Destination port of the quoted packet.
    pub dst_port: u16,
    /// TCP sequence number of the quoted packet (UDP: length and checksum, unused).
    pub seq: u32,
}

impl QuotedPorts {
    /// Parses the first 8 bytes of a TCP or UDP header.
    pub fn new_checked(b: &[u8]) -> Result<Self, Truncated> {
        if b.len() < 8 {
            return Err(Truncated);
        }
        Ok(Self { src_port: be16(b, 0), dst_port: be16(b, 2), seq: be32(b, 4) })
    }
}

/// An ICMP or ICMPv6 error message with the header it quotes.
#[derive(Debug, Clone, Copy)]
pub struct IcmpError<'a> {
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// The quoted IP packet (our probe), possibly cut short.
    pub quoted: IpPacket<'a>,
}

impl<'a> IcmpError<'a> {
    /// Parses an ICMP (IPv4) error message. Non-error types are rejected.
    pub fn new_checked_v4(b: &'a [u8]) -> Result<Self, Truncated> {
        if b.len() < 8 {
            return Err(Truncated);
        }
        if !matches!(b[0], 3 | 11 | 12) {
            return Err(Truncated);
        }
        let quoted = IpPacket::new_quoted(&b[8..])?;
        Ok(Self { icmp_type: b[0], code: b[1], quoted })
    }

    /// Parses an ICMPv6 error message (types 1 to 4). Informational types are rejected.
    pub fn new_checked_v6(b: &'a [u8]) -> Result<Self, Truncated> {
        if b.len() < 8 {
            return Err(Truncated);
        }
        if !(1..=4).contains(&b[0]) {
            return Err(Truncated);
        }
        let quoted = IpPacket::new_quoted(&b[8..])?;
        Ok(Self { icmp_type: b[0], code: b[1], quoted })
    }
}

/// The Internet checksum accumulator (RFC 1071).
#[derive(Debug, Default, Clone, Copy)]
struct Checksum(u32);

impl Checksum {
    fn add(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(2);
        for c in &mut chunks {
            self.0 += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.0 += u32::from(*last) << 8;
        }
    }

    fn finish(self) -> u16 {
        let mut s = self.0;
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

/// Computes the transport checksum of `segment` (with its checksum field zeroed) over the
/// IPv4 or IPv6 pseudo-header. Mixed address families give `None`.
pub fn transport_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> Option<u16> {
    let mut c = Checksum::default();
    let len = u32::try_from(segment.len()).ok()?;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            c.add(&s.octets());
            c.add(&d.octets());
            c.add(&[0, protocol]);
            c.add(&u16::try_from(len).ok()?.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            c.add(&s.octets());
            c.add(&d.octets());
            c.add(&len.to_be_bytes());
            c.add(&[0, 0, 0, protocol]);
        }
        _ => return None,
    }
    c.add(segment);
    let sum = c.finish();
    // UDP transmits an all-zero checksum as all ones.
    Some(if sum == 0 && protocol == proto::UDP { 0xffff } else { sum })
}

/// The fields of a TCP probe to build with [`TcpProbe::emit`].
#[derive(Debug, Clone, Copy)]
pub struct TcpProbe {
    /// Our address (the pseudo-header needs the source the kernel will use).
    pub src: IpAddr,
    /// The target.
    pub dst: IpAddr,
    /// Our source port.
    pub src_port: u16,
    /// The probed port.
    pub dst_port: u16,
    /// Sequence number (the SYN cookie).
    pub seq: u32,
    /// Acknowledgement number (zero for SYN probes).
    pub ack: u32,
    /// Flags, see [`tcp_flags`].
    pub flags: u8,
}

impl TcpProbe {
    /// Length of the emitted segment: 20-byte header plus the 4-byte MSS option nmap sends.
    pub const LEN: usize = 24;

    /// Writes the TCP segment (header, MSS 1460 option, checksum) into `buf` and returns its
    /// length; `None` when `buf` is shorter than [`TcpProbe::LEN`] or the families differ.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let b = buf.get_mut(..Self::LEN)?;
        b[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        b[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..12].copy_from_slice(&self.ack.to_be_bytes());
        b[12] = ((Self::LEN / 4) as u8) << 4;
        b[13] = self.flags;
        b[14..16].copy_from_slice(&1024u16.to_be_bytes());
        b[16..18].copy_from_slice(&[0, 0]);
        b[18..20].copy_from_slice(&[0, 0]);
        b[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
        let sum = transport_checksum(self.src, self.dst, proto::TCP, b)?;
        b[16..18].copy_from_slice(&sum.to_be_bytes());
        Some(Self::LEN)
    }
}

/// Writes a UDP datagram (header, `payload`, checksum) into `buf`; returns its length, or
/// `None` when `buf` is too short or the families differ.
pub fn emit_udp(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Option<usize> {
    let len = 8 + payload.len();
    let b = buf.get_mut(..len)?;
    b[0..2].copy_from_slice(&src_port.to_be_bytes());
    b[2..4].copy_from_slice(&dst_port.to_be_bytes());
    b[4..6].copy_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    b[6..8].copy_from_slice(&[0, 0]);
    b[8..].copy_from_slice(payload);
    let sum = transport_checksum(src, dst, proto::UDP, b)?;
    b[6..8].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 SYN-ACK from 198.18.0.2:22 to 198.18.0.1:61000 as the rig delivers it (its
    /// checksum is the unfinished partial one veth delivers).
    const SYNACK: &str =
        "4500002c000040004006f2cac6120002c61200010016ee48a1b2c3d41234567960122000d8e40000020405b4";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn parses_synack() {
        let b = hex(SYNACK);
        let ip = IpPacket::new_checked(&b).unwrap();
        assert_eq!(ip.src, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(ip.protocol, proto::TCP);
        assert_eq!(ip.ttl, 64);
        let tcp = TcpHeader::new_checked(ip.payload).unwrap();
        assert_eq!((tcp.src_port, tcp.dst_port), (22, 61000));
        assert_eq!(tcp.flags, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(tcp.ack, 0x1234_5679);
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let b = hex(SYNACK);
        for n in 0..b.len() {
            let _ = IpPacket::new_checked(&b[..n]).map(|ip| TcpHeader::new_checked(ip.payload));
        }
        assert!(IpPacket::new_checked(&b[..19]).is_err());
    }

    #[test]
    fn tcp_checksum_verifies() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: IpAddr = "198.18.0.2".parse().unwrap();
        let p = TcpProbe { src, dst, src_port: 61000, dst_port: 22, seq: 7, ack: 0, flags: 2 };
        let mut buf = [0u8; 64];
        let n = p.emit(&mut buf).unwrap();
        // Summing a segment that includes its own checksum gives zero.
        assert_eq!(transport_checksum(src, dst, proto::TCP, &buf[..n]), Some(0));
        let src6: IpAddr = "2001:db8::1".parse().unwrap();
        let dst6: IpAddr = "2001:db8::2".parse().unwrap();
        let n = emit_udp(&mut buf, src6, dst6, 61000, 53, b"abc").unwrap();
        assert_eq!(transport_checksum(src6, dst6, proto::UDP, &buf[..n]), Some(0xffff));
    }
}
