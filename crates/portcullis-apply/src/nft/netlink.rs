//! Just enough netlink to dump nf_tables chains and rules: one socket, one request per
//! dump, the attributes of each reply walked in place (no copies).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

use super::NftReadError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_GETCHAIN`.
pub(crate) const GETCHAIN: u16 = 4;
/// `NFT_MSG_GETRULE`.
pub(crate) const GETRULE: u16 = 7;
/// `NFT_MSG_GETGEN`.
pub(crate) const GETGEN: u16 = 16;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A netlink socket for nf_tables, opened in a network namespace.
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens the socket in the namespace `netns` (`/run/netns/NAME`) or the current one.
    /// Only a short-lived thread enters the namespace: a socket belongs to the namespace
    /// it was created in, whichever thread uses it afterwards.
    pub(crate) fn open(netns: Option<&str>) -> Result<Self, NftReadError> {
        let make = || -> Result<OwnedFd, NftReadError> {
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkNetFilter,
            )?;
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 0))?;
            Ok(fd)
        };
        let fd = match netns {
            None => make()?,
            Some(name) => std::thread::scope(|s| {
                s.spawn(|| {
                    let ns = File::open(Path::new("/run/netns").join(name))
                        .map_err(|e| NftReadError::Io(e.to_string()))?;
                    setns(&ns, CloneFlags::CLONE_NEWNET)?;
                    make()
                })
                .join()
                .map_err(|_| NftReadError::Io("namespace thread panicked".to_owned()))?
            })?,
        };
        // 128 KiB: the kernel sizes each dump message by the largest read it has seen,
        // up to 32 KiB; smaller reads measured slower here.
        Ok(Self { fd, seq: 0, buf: vec![0; 1 << 17] })
    }

    /// Sends one request of `msg_type` for `family` with `attrs` (type, payload) and hands
    /// every reply's payload (after the `nfgenmsg` header) to `each`, until the dump (or
    /// the single answer) ends.
    pub(crate) fn request(
        &mut self,
        msg_type: u16,
        family: u8,
        dump: bool,
        attrs: &[(u16, &[u8])],
        mut each: impl FnMut(&[u8]) -> Result<(), NftReadError>,
    ) -> Result<(), NftReadError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(64);
        msg.extend_from_slice(&[0; 16]);
        msg.extend_from_slice(&[family, 0, 0, 0]);
        for (ty, payload) in attrs {
            let len = u16::try_from(4 + payload.len()).map_err(|_| NftReadError::Malformed)?;
            msg.extend_from_slice(&len.to_ne_bytes());
            msg.extend_from_slice(&ty.to_ne_bytes());
            msg.extend_from_slice(payload);
            while msg.len() % 4 != 0 {
                msg.push(0);
            }
        }
        let total = u32::try_from(msg.len()).map_err(|_| NftReadError::Malformed)?;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        msg[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg_type).to_ne_bytes());
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        msg[6..8].copy_from_slice(&flags.to_ne_bytes());
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        let raw = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        send(raw, &msg, MsgFlags::empty())?;
        loop {
            let n = recv(raw, &mut self.buf, MsgFlags::empty())?;
            let mut data = &self.buf[..n];
            if n == 0 {
                return Err(NftReadError::Malformed);
            }
            while data.len() >= 16 {
                let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
                if len < 16 || len > data.len() {
                    return Err(NftReadError::Malformed);
                }
                let ty = u16::from_ne_bytes([data[4], data[5]]);
                let fl = u16::from_ne_bytes([data[6], data[7]]);
                let mseq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
                let body = &data[16..len];
                data = &data[align(len).min(data.len())..];
                if mseq != seq {
                    continue;
                }
                if fl & NLM_F_DUMP_INTR != 0 {
                    return Err(NftReadError::Interrupted);
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return if code == 0 { Ok(()) } else { Err(NftReadError::Kernel(-code)) };
                    }
                    _ => {
                        each(body.get(4..).ok_or(NftReadError::Malformed)?)?;
                        if !dump {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes of one nested block, in order: `(type, payload)`.
#[derive(Clone)]
pub(crate) struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The attributes by type (`0..N`; higher types are left out), each the last of its
    /// type.
    pub(crate) fn table<const N: usize>(self) -> Result<[Option<&'a [u8]>; N], NftReadError> {
        let mut out = [None; N];
        for a in self {
            let (ty, payload) = a?;
            if let Some(slot) = out.get_mut(usize::from(ty)) {
                *slot = Some(payload);
            }
        }
        Ok(out)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), NftReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        if self.data.len() < 4 {
            self.data = &[];
            return Some(Err(NftReadError::Malformed));
        }
        let len = usize::from(u16::from_ne_bytes([self.data[0], self.data[1]]));
        let ty = u16::from_ne_bytes([self.data[2], self.data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.data.len() {
            self.data = &[];
            return Some(Err(NftReadError::Malformed));
        }
        let payload = &self.data[4..len];
        self.data = &self.data[align(len).min(self.data.len())..];
        Some(Ok((ty, payload)))
    }
}

/// A big-endian `u32` attribute.
pub(crate) fn be32(a: Option<&[u8]>) -> Result<u32, NftReadError> {
    match a {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(NftReadError::Malformed),
    }
}

/// A big-endian `u64` attribute.
pub(crate) fn be64(a: Option<&[u8]>) -> Result<u64, NftReadError> {
    let b: [u8; 8] = a.and_then(|b| b.try_into().ok()).ok_or(NftReadError::Malformed)?;
    Ok(u64::from_be_bytes(b))
}

/// A NUL-terminated string attribute.
pub(crate) fn string(a: Option<&[u8]>) -> Result<&str, NftReadError> {
    let b = a.ok_or(NftReadError::Malformed)?;
    let b = b.split(|&c| c == 0).next().unwrap_or(b);
    std::str::from_utf8(b).map_err(|_| NftReadError::Malformed)
}
