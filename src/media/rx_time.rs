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
//! The timestamps are read with the datagrams (`recv_batch`). Elsewhere (or if the option is
//! refused) a datagram is stamped when it is read.

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

#[cfg(target_os = "linux")]
mod imp {
    use std::mem::size_of;
    use std::os::fd::AsRawFd;

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
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn enable(_socket: &std::net::UdpSocket) -> bool {
        false
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
        let mut batch = crate::media::recv_batch::RecvBatch::new();
        assert_eq!(batch.recv(&socket).expect("a datagram"), 1);
        let clock = ReadClock::read();
        let (data, got) = batch.get(0);
        let kernel = got.kernel;
        assert_eq!(data, b"first");
        assert_eq!(got.from, sender.local_addr().expect("addr"));
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
        assert!(matches!(batch.recv(&socket), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "nothing more");
    }
}
