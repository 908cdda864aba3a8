//! Datagrams read together: one `recvmmsg` fills up to `SLOTS` of them (Linux; elsewhere one
//! `recv_from` each).
//!
//! What a worker reads is mostly small and many: the subscribers' QUIC acknowledgements (about
//! one for every two datagrams sent to them) and RTCP feedback, besides the publishers' media.
//! One system call per datagram paid the entry and exit and the socket lock each time; a batch
//! pays them once. The buffer is allocated once, with the batch: reading never allocates.
//!
//! A datagram's kernel receive time (`SO_TIMESTAMPNS`, see `rx_time`) comes with it when the
//! socket was asked for timestamps.

use std::net::SocketAddr;
use std::time::SystemTime;

/// Datagrams read by one call.
pub const SLOTS: usize = 32;
/// The largest datagram read; a longer one is truncated (and so rejected by its parser).
pub const SLOT: usize = 2048;

/// One datagram read: where it is in the batch's buffer, who sent it, when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// The kernel's receive time, if the socket timestamps.
    pub kernel: Option<SystemTime>,
}

/// The buffers of a batch of reads.
#[derive(Debug)]
pub struct RecvBatch {
    /// `SLOTS * SLOT` bytes; datagram `i` is at `i * SLOT`.
    buf: Box<[u8]>,
    got: Vec<Received>,
}

impl RecvBatch {
    pub fn new() -> Self {
        Self { buf: vec![0; SLOTS * SLOT].into_boxed_slice(), got: Vec::with_capacity(SLOTS) }
    }

    /// A batch without buffers (allocates nothing), to stand in while the real one is lent out.
    pub fn empty() -> Self {
        Self { buf: Box::default(), got: Vec::new() }
    }

    /// Read what the socket has, up to `SLOTS` datagrams, replacing what the batch held: how
    /// many. `WouldBlock` when there was nothing (and the runtime's readiness is cleared).
    pub fn recv(&mut self, socket: &tokio::net::UdpSocket) -> std::io::Result<usize> {
        self.got.clear();
        if self.buf.is_empty() {
            return Ok(0);
        }
        imp::recv(socket, &mut self.buf, &mut self.got)?;
        Ok(self.got.len())
    }

    pub fn len(&self) -> usize {
        self.got.len()
    }

    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Datagram `i` of the last read.
    pub fn get(&self, i: usize) -> (&[u8], Received) {
        let r = self.got[i];
        (&self.buf[i * SLOT..i * SLOT + r.len], r)
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Received, SLOT, SLOTS};
    use std::mem::{size_of, zeroed};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime};
    use tokio::io::Interest;

    /// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), with slack, in u64s (a
    /// `cmsghdr` is u64-aligned).
    const CONTROL_WORDS: usize = 8;

    pub fn recv(socket: &tokio::net::UdpSocket, buf: &mut [u8], got: &mut Vec<Received>) -> std::io::Result<()> {
        debug_assert_eq!(buf.len(), SLOTS * SLOT);
        // SAFETY: zeroed `sockaddr_storage`, `iovec` and `mmsghdr` are valid (all-integer and
        // null-pointer structs).
        let mut addrs: [libc::sockaddr_storage; SLOTS] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; SLOTS] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { zeroed() };
        let mut control = [[0u64; CONTROL_WORDS]; SLOTS];
        for (k, chunk) in buf.chunks_exact_mut(SLOT).enumerate() {
            iovs[k] = libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: SLOT };
            let hdr = &mut msgs[k].msg_hdr;
            hdr.msg_name = (&raw mut addrs[k]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut iovs[k];
            hdr.msg_iovlen = 1;
            hdr.msg_control = control[k].as_mut_ptr().cast();
            hdr.msg_controllen = (CONTROL_WORDS * 8) as _;
        }
        let n = socket.try_io(Interest::READABLE, || {
            // SAFETY: every pointer in `msgs` points at a live local or into `buf`, of the
            // length given, for the duration of the call; the kernel writes at most those
            // lengths. MSG_DONTWAIT: the socket is non-blocking anyway, and a batch never waits
            // for its later datagrams.
            let r = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    SLOTS as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as usize) }
        })?;
        for k in 0..n {
            let hdr = &msgs[k].msg_hdr;
            // SAFETY: the kernel wrote an address of `msg_namelen` bytes into `addrs[k]`.
            let addr = unsafe {
                let mut storage = socket2::SockAddrStorage::zeroed();
                *storage.view_as::<libc::sockaddr_storage>() = addrs[k];
                socket2::SockAddr::new(storage, hdr.msg_namelen)
            };
            // A datagram from a non-IP address (impossible on a UDP socket) is skipped.
            let Some(from) = addr.as_socket() else { continue };
            // SAFETY: the kernel wrote `msg_controllen` bytes of control messages into
            // `control[k]`; the macros walk only within that.
            let kernel = unsafe { timestamp(hdr) };
            got.push(Received { len: (msgs[k].msg_len as usize).min(SLOT), from, kernel });
            // Keep datagram `i` at slot `i`: a skipped slot's successor moves down.
            let i = got.len() - 1;
            if i != k {
                buf.copy_within(k * SLOT..k * SLOT + got[i].len, i * SLOT);
            }
        }
        Ok(())
    }

    /// The `SCM_TIMESTAMPNS` in a received message's control data, if any.
    ///
    /// # Safety
    /// `hdr` is a message filled by the kernel, its control pointer and length valid.
    unsafe fn timestamp(hdr: &libc::msghdr) -> Option<SystemTime> {
        let mut stamp = None;
        // SAFETY: as the caller promises.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = libc::CMSG_DATA(cmsg).cast::<libc::timespec>().read_unaligned();
                    stamp = wall_time(ts.tv_sec, ts.tv_nsec);
                }
                cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
            }
        }
        stamp
    }

    fn wall_time(secs: libc::time_t, nanos: libc::c_long) -> Option<SystemTime> {
        let secs = u64::try_from(secs).ok()?;
        let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Received, SLOT, SLOTS};

    pub fn recv(socket: &tokio::net::UdpSocket, buf: &mut [u8], got: &mut Vec<Received>) -> std::io::Result<()> {
        for chunk in buf.chunks_exact_mut(SLOT).take(SLOTS) {
            match socket.try_recv_from(chunk) {
                Ok((len, from)) => got.push(Received { len, from, kernel: None }),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !got.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn socket(stamped: bool) -> tokio::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        if stamped {
            crate::media::rx_time::enable(&s);
        }
        tokio::net::UdpSocket::from_std(s).expect("tokio socket")
    }

    #[tokio::test]
    async fn a_batch_reads_every_datagram_in_order_with_its_sender() {
        let rx = socket(false).await;
        let to = rx.local_addr().expect("addr");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // More than one batch holds, of different lengths and senders.
        let total = SLOTS + 5;
        for i in 0..total {
            let from = if i % 2 == 0 { &a } else { &b };
            from.send_to(&vec![i as u8; 20 + i], to).expect("send");
        }
        let mut batch = RecvBatch::new();
        let mut seen = 0;
        while seen < total {
            rx.readable().await.expect("readable");
            let n = match batch.recv(&rx) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("read failed: {e}"),
            };
            assert!(n <= SLOTS);
            for k in 0..n {
                let (data, r) = batch.get(k);
                let i = seen + k;
                assert_eq!(data.len(), 20 + i, "datagram {i} whole");
                assert!(data.iter().all(|x| *x == i as u8));
                let sender = if i % 2 == 0 { &a } else { &b };
                assert_eq!(r.from, sender.local_addr().expect("addr"));
                assert!(r.kernel.is_none(), "not asked for timestamps");
            }
            seen += n;
        }
        assert_eq!(seen, total);
        assert!(matches!(batch.recv(&rx), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "nothing more");
        assert!(batch.is_empty());
        assert_eq!(RecvBatch::empty().recv(&rx).expect("an empty batch reads nothing"), 0);
    }

    #[tokio::test]
    async fn each_datagram_of_a_batch_carries_its_arrival_time() {
        let rx = socket(true).await;
        let to = rx.local_addr().expect("addr");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // (The kernel turns timestamping on a moment after the first socket asks.)
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send_to(b"early", to).expect("send");
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send_to(b"late", to).expect("send");
        rx.readable().await.expect("readable");
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&rx).expect("two datagrams"), 2);
        let (early, e) = batch.get(0);
        let (late, l) = batch.get(1);
        assert_eq!((early, late), (&b"early"[..], &b"late"[..]));
        if cfg!(target_os = "linux") {
            let (e, l) = (e.kernel.expect("stamped"), l.kernel.expect("stamped"));
            let gap = l.duration_since(e).expect("in order");
            assert!(gap >= Duration::from_millis(25), "each its own time, {gap:?} apart");
        }
    }
}
