//! The few system calls socket2 does not wrap. Each `unsafe` block is a plain libc call on
//! a file descriptor the caller owns, with pointers to live, correctly sized values.
#![allow(unsafe_code, reason = "thin libc wrappers; every block has a SAFETY comment")]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    value: i32,
) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor for the duration of the borrow; the option
    // value points to a live `c_int` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Moves the calling thread into the network namespace behind `fd` (`setns(2)`).
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid descriptor; setns only reads it and changes the calling
    // thread's namespace, which affects no memory of this process.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// An ICMP error taken from a socket's error queue (`IP_RECVERR`/`IPV6_RECVERR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueuedIcmp {
    pub(crate) v6: bool,
    pub(crate) icmp_type: u8,
    pub(crate) code: u8,
    pub(crate) from: Option<std::net::IpAddr>,
}

/// Reads one message from the socket's error queue (`recvmsg(MSG_ERRQUEUE)`), returning
/// the ICMP error it carries, if any. Never blocks.
pub(crate) fn recv_errqueue(fd: BorrowedFd<'_>) -> Option<QueuedIcmp> {
    let mut data = [0u8; 64];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: an all-zero msghdr is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg points to live buffers whose sizes are given; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        return None;
    }
    // SAFETY: CMSG_* walk the control buffer recvmsg filled, bounded by msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points into `control`.
        let (level, ty) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        let v4 = level == libc::IPPROTO_IP && ty == libc::IP_RECVERR;
        let v6 = level == libc::IPPROTO_IPV6 && ty == libc::IPV6_RECVERR;
        if v4 || v6 {
            // SAFETY: for IP_RECVERR/IPV6_RECVERR the data is a sock_extended_err followed
            // by the offender's sockaddr (ip(7)); read_unaligned copes with alignment.
            let ee: libc::sock_extended_err =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            let icmp_origin = if v6 { libc::SO_EE_ORIGIN_ICMP6 } else { libc::SO_EE_ORIGIN_ICMP };
            if ee.ee_origin != icmp_origin {
                return None;
            }
            // SAFETY: SO_EE_OFFENDER points just past `ee` inside the same cmsg data.
            let off = unsafe { libc::SO_EE_OFFENDER(libc::CMSG_DATA(cmsg).cast()) };
            let from = offender(off, v6);
            return Some(QueuedIcmp { v6, icmp_type: ee.ee_type, code: ee.ee_code, from });
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    None
}

fn offender(sa: *const libc::sockaddr, v6: bool) -> Option<std::net::IpAddr> {
    if sa.is_null() {
        return None;
    }
    if v6 {
        // SAFETY: for IPV6_RECVERR the offender is a sockaddr_in6 (possibly unaligned).
        let s: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(sa.cast()) };
        (i32::from(s.sin6_family) == libc::AF_INET6)
            .then(|| std::net::Ipv6Addr::from(s.sin6_addr.s6_addr).into())
    } else {
        // SAFETY: for IP_RECVERR the offender is a sockaddr_in (possibly unaligned).
        let s: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(sa.cast()) };
        (i32::from(s.sin_family) == libc::AF_INET)
            .then(|| std::net::Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)).into())
    }
}

/// Waits until `a` or `b` is readable or `timeout` passes (`poll(2)`); returns whether
/// each is readable. EINTR counts as a timeout.
pub(crate) fn poll_readable(
    a: BorrowedFd<'_>,
    b: BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd: a.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `fds` is a live array of two pollfd values and its length is passed; both
    // descriptors stay open for the duration of the borrows.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok((false, false)) } else { Err(e) };
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}
