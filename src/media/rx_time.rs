//! When a UDP datagram arrived, as the kernel saw it (Linux `SO_TIMESTAMPNS`), not when a busy
//! worker got round to reading it.
//!
//! It matters for what the server tells publishers. str0m stamps each RTP packet with the time
//! it is given on input, and reports those times back as transport-wide congestion control
//! feedback; the publisher's delay-based estimator reads a growing gap between send and arrival
//! times as a queue on the path, and lowers its rate. A worker fanning a packet out to 80
//! subscribers takes about a millisecond per packet, so packets that arrived together were
//! stamped a millisecond apart, more under a burst: the server's own CPU looked like a congested
//! link, and a Chromium publisher under load could cut its rate and drop its top layer. With the
//! kernel's timestamps the feedback describes the network only.
//!
//! Elsewhere (or if the option is refused) a datagram is stamped when it is read.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// A kernel timestamp further than this from the time of reading is not believed (the wall
/// clock was stepped): the datagram is stamped when read.
const MAX_AGE: Duration = Duration::from_secs(1);

/// Ask the kernel to timestamp datagrams received on `socket`. Whether it will.
pub fn enable(socket: &std::net::UdpSocket) -> bool {
    imp::enable(socket)
}

/// The instants of reading, to turn the kernel's wall-clock timestamps into `Instant`s: one pair
/// per batch of reads (the two clocks are read together once).
#[derive(Debug, Clone, Copy)]
pub struct ReadClock {
    now: Instant,
    wall: SystemTime,
}

impl ReadClock {
    /// Read both clocks.
    pub fn read() -> Self {
        Self { now: Instant::now(), wall: SystemTime::now() }
    }

    /// When the clocks were read.
    pub fn read_at(&self) -> Instant {
        self.now
    }

    /// The `Instant` a kernel wall-clock timestamp stands for, never later than the read and
    /// never more than `MAX_AGE` before it.
    pub fn arrival(&self, kernel: Option<SystemTime>) -> Instant {
        let Some(at) = kernel else { return self.now };
        match self.wall.duration_since(at) {
            Ok(age) if age <= MAX_AGE => self.now.checked_sub(age).unwrap_or(self.now),
            // From the future (clock stepped back) or too old (stepped forward): not believed.
            _ => self.now,
        }
    }
}

/// Receive one datagram: its length, its source, and the kernel's timestamp if it gave one.
/// `WouldBlock` when there is none (and tokio's readiness is cleared).
pub fn recv_from(
    socket: &tokio::net::UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    imp::recv_from(socket, buf)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::mem::{size_of, zeroed};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime};
    use tokio::io::Interest;

    pub fn enable(socket: &std::net::UdpSocket) -> bool {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size given.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        r == 0
    }

    /// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), with slack.
    const CONTROL_LEN: usize = 64;

    pub fn recv_from(
        socket: &tokio::net::UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
        socket.try_io(Interest::READABLE, || {
            // SAFETY: every pointer in `msg` points at a live local of the length given, for
            // the duration of the call; `recvmsg` writes at most those lengths. The control
            // buffer is u64-aligned, as `cmsghdr` needs.
            unsafe {
                let mut addr = socket2::SockAddrStorage::zeroed();
                let mut control = [0u64; CONTROL_LEN / 8];
                let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
                let mut msg: libc::msghdr = zeroed();
                msg.msg_name = (addr.view_as::<libc::sockaddr_storage>() as *mut libc::sockaddr_storage).cast();
                msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = CONTROL_LEN as _;
                let n = libc::recvmsg(socket.as_raw_fd(), &raw mut msg, 0);
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let from = socket2::SockAddr::new(addr, msg.msg_namelen)
                    .as_socket()
                    .ok_or_else(|| std::io::Error::other("datagram from a non-IP address"))?;
                let mut stamp = None;
                let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                        let ts = libc::CMSG_DATA(cmsg).cast::<libc::timespec>().read_unaligned();
                        stamp = wall_time(ts.tv_sec, ts.tv_nsec);
                    }
                    cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
                }
                Ok((n as usize, from, stamp))
            }
        })
    }

    fn wall_time(secs: libc::time_t, nanos: libc::c_long) -> Option<SystemTime> {
        let secs = u64::try_from(secs).ok()?;
        let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    pub fn enable(_socket: &std::net::UdpSocket) -> bool {
        false
    }

    pub fn recv_from(
        socket: &tokio::net::UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
        let (n, from) = socket.try_recv_from(buf)?;
        Ok((n, from, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_times_become_instants_before_the_read() {
        let clock = ReadClock::read();
        let at = clock.arrival(Some(clock.wall - Duration::from_millis(30)));
        assert_eq!(clock.now - at, Duration::from_millis(30));
        assert_eq!(clock.arrival(None), clock.now);
        // A stepped wall clock is not believed, either way.
        assert_eq!(clock.arrival(Some(clock.wall + Duration::from_millis(5))), clock.now);
        assert_eq!(clock.arrival(Some(clock.wall - Duration::from_secs(5))), clock.now);
    }

    #[tokio::test]
    async fn a_datagram_carries_the_time_it_arrived() {
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        std_socket.set_nonblocking(true).expect("nonblocking");
        let stamped = enable(&std_socket);
        let to = std_socket.local_addr().expect("addr");
        let socket = tokio::net::UdpSocket::from_std(std_socket).expect("tokio socket");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // The kernel turns receive timestamping on for the machine a moment after the first
        // socket asks (deferred work); until then datagrams are stamped when read.
        tokio::time::sleep(Duration::from_millis(200)).await;
        sender.send_to(b"first", to).expect("send");
        let sent = Instant::now();
        // Read it well after it arrived.
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket.readable().await.expect("readable");
        let mut buf = [0u8; 64];
        let (n, from, kernel) = recv_from(&socket, &mut buf).expect("a datagram");
        let clock = ReadClock::read();
        assert_eq!(&buf[..n], b"first");
        assert_eq!(from, sender.local_addr().expect("addr"));
        if cfg!(target_os = "linux") {
            assert!(stamped, "SO_TIMESTAMPNS is available on Linux");
            let at = clock.arrival(kernel);
            // (The two clocks are read a moment apart: allow a millisecond.)
            assert!(
                at <= sent + Duration::from_millis(1),
                "stamped on arrival, not on reading: {:?} after the send",
                at - sent
            );
            assert!(clock.now - at >= Duration::from_millis(50));
        }
        assert!(
            matches!(recv_from(&socket, &mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "nothing more"
        );
    }
}
