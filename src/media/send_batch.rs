//! Datagrams queued during a worker's loop turn and sent together with one `sendmmsg` per
//! `SLOTS` of them (Linux; elsewhere one `send_to` each).
//!
//! A forwarded packet goes to many subscribers, each its own datagram: one system call each
//! cost the entry and exit, the socket lookup and the locking once per datagram. Queued, they
//! cost one call per batch. The queue is a fixed buffer (`SLOTS` datagrams of up to `SLOT`
//! bytes) allocated once: queuing copies the datagram and never allocates.

use std::net::SocketAddr;

/// Datagrams sent by one `sendmmsg` call.
pub const SLOTS: usize = 64;
/// The largest datagram queued; a larger one is sent at once.
pub const SLOT: usize = 2048;

/// What a flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    /// Not sent because the socket's buffer was full.
    pub busy: usize,
    /// Not sent for another error (logged at debug).
    pub failed: usize,
}

impl std::ops::AddAssign for Flushed {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.busy += o.busy;
        self.failed += o.failed;
    }
}

/// The queue. Not tied to a socket: `flush` takes the socket to send on.
#[derive(Debug)]
pub struct SendBatch {
    /// `SLOTS * SLOT` bytes; datagram `i` is at `i * SLOT`.
    buf: Box<[u8]>,
    queued: Vec<(u16, SocketAddr)>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self { buf: vec![0; SLOTS * SLOT].into_boxed_slice(), queued: Vec::with_capacity(SLOTS) }
    }
}

impl SendBatch {
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Queue `data` for `to`. False (and nothing queued) when the batch is full or the datagram
    /// is larger than a slot: the caller flushes, or sends it itself.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) -> bool {
        let i = self.queued.len();
        if i == SLOTS || data.len() > SLOT {
            return false;
        }
        self.buf[i * SLOT..i * SLOT + data.len()].copy_from_slice(data);
        // SLOT fits in u16, so does the length.
        self.queued.push((data.len() as u16, to));
        true
    }

    /// Send everything queued on `socket`, and empty the queue whatever happened. Datagrams
    /// the socket has no room for are dropped (and counted in `busy`), like a single send
    /// that would block.
    pub fn flush(&mut self, socket: &tokio::net::UdpSocket) -> Flushed {
        let flushed = imp::send_all(socket, &self.buf, &self.queued);
        self.queued.clear();
        flushed
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Flushed, SLOT, SLOTS};
    use std::mem::{size_of, zeroed};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    pub fn send_all(socket: &tokio::net::UdpSocket, buf: &[u8], queued: &[(u16, SocketAddr)]) -> Flushed {
        let mut out = Flushed::default();
        let mut start = 0;
        while start < queued.len() {
            match send_some(socket, buf, queued, start) {
                Ok(n) => {
                    out.sent += n;
                    start += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    out.busy += queued.len() - start;
                    break;
                }
                // The datagram at `start` failed (sendmmsg reports the error of the first
                // message it could not send): skip it, send the rest.
                Err(e) => {
                    tracing::debug!(error = %e, to = %queued[start].1, "UDP send failed");
                    out.failed += 1;
                    start += 1;
                }
            }
        }
        out
    }

    /// One `sendmmsg` of `queued[start..]`: how many went.
    fn send_some(
        socket: &tokio::net::UdpSocket,
        buf: &[u8],
        queued: &[(u16, SocketAddr)],
        start: usize,
    ) -> std::io::Result<usize> {
        let n = queued.len() - start;
        debug_assert!(n <= SLOTS);
        // SAFETY: zeroed `sockaddr_storage`, `iovec` and `mmsghdr` are valid (all-integer and
        // null-pointer structs).
        let mut addrs: [libc::sockaddr_storage; SLOTS] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; SLOTS] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { zeroed() };
        for (k, &(len, to)) in queued[start..].iter().enumerate() {
            let slot = start + k;
            iovs[k] = libc::iovec {
                // sendmmsg only reads through it.
                iov_base: buf[slot * SLOT..].as_ptr().cast_mut().cast(),
                iov_len: len as usize,
            };
            let addr_len = write_addr(&mut addrs[k], to);
            msgs[k].msg_hdr.msg_name = (&raw mut addrs[k]).cast();
            msgs[k].msg_hdr.msg_namelen = addr_len;
            msgs[k].msg_hdr.msg_iov = &raw mut iovs[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        socket.try_io(Interest::WRITABLE, || {
            // SAFETY: `msgs[..n]` point at live locals (`addrs`, `iovs`) and at `buf`, which
            // outlive the call; the kernel reads those and writes only `msg_len`.
            let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
            if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as usize) }
        })
    }

    fn write_addr(storage: &mut libc::sockaddr_storage, to: SocketAddr) -> libc::socklen_t {
        match to {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>().write(sin) };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>().write(sin6) };
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Flushed, SLOT};
    use std::net::SocketAddr;

    pub fn send_all(socket: &tokio::net::UdpSocket, buf: &[u8], queued: &[(u16, SocketAddr)]) -> Flushed {
        let mut out = Flushed::default();
        for (i, &(len, to)) in queued.iter().enumerate() {
            match socket.try_send_to(&buf[i * SLOT..i * SLOT + len as usize], to) {
                Ok(_) => out.sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => out.busy += 1,
                Err(_) => out.failed += 1,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_reaches_every_destination_in_order() {
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let v6 = std::net::UdpSocket::bind("[::1]:0").ok();
        let sender6 = tokio::net::UdpSocket::bind("[::1]:0").await.ok();
        let mut batch = SendBatch::default();
        for i in 0..SLOTS {
            let payload = vec![i as u8; 100 + i];
            assert!(batch.push(&payload, v4.local_addr().expect("addr")));
        }
        assert!(!batch.push(b"one too many", v4.local_addr().expect("addr")), "a full batch refuses");
        assert!(!SendBatch::default().push(&[0; SLOT + 1], v4.local_addr().expect("addr")), "too large");
        // (Sends are tried only once the runtime has seen the socket writable, as in the worker.)
        sender.writable().await.expect("writable");
        let flushed = batch.flush(&sender);
        assert_eq!(flushed, Flushed { sent: SLOTS, busy: 0, failed: 0 });
        assert!(batch.is_empty());
        let mut buf = [0u8; SLOT];
        for i in 0..SLOTS {
            let (n, from) = v4.recv_from(&mut buf).expect("a datagram");
            assert_eq!(from, sender.local_addr().expect("addr"));
            assert_eq!(n, 100 + i, "in order, each its own length");
            assert!(buf[..n].iter().all(|b| *b == i as u8));
        }
        if let (Some(v6), Some(sender6)) = (v6, sender6) {
            assert!(batch.push(b"six", v6.local_addr().expect("addr")));
            sender6.writable().await.expect("writable");
            assert_eq!(batch.flush(&sender6).sent, 1);
            let (n, _) = v6.recv_from(&mut buf).expect("a datagram");
            assert_eq!(&buf[..n], b"six");
        }
    }

    #[tokio::test]
    async fn a_failing_destination_does_not_stop_the_rest() {
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut batch = SendBatch::default();
        // An IPv6 destination from an IPv4 socket fails with EAFNOSUPPORT/EINVAL.
        assert!(batch.push(b"nowhere", "[::1]:9".parse().expect("addr")));
        assert!(batch.push(b"somewhere", rx.local_addr().expect("addr")));
        sender.writable().await.expect("writable");
        let flushed = batch.flush(&sender);
        assert_eq!(flushed, Flushed { sent: 1, busy: 0, failed: 1 });
        let mut buf = [0u8; 64];
        let (n, _) = rx.recv_from(&mut buf).expect("a datagram");
        assert_eq!(&buf[..n], b"somewhere");
    }
}
