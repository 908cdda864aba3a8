//! The machine's bare cost of sending a UDP packet: `sendmmsg` of same-sized datagrams,
//! round robin to many loopback sockets, timed by the sending thread's CPU clock. What a
//! forwarding server cannot go below per egress packet on this machine (it also encrypts,
//! rewrites and decides); `loadtest media` reports the server's cost as a multiple of it.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Messages per `sendmmsg` call.
const BATCH: usize = 64;

/// CPU microseconds per packet of `size` bytes sent to `sockets` receivers, over `packets`
/// packets. `None` where it cannot be measured (not Linux, no sockets).
pub fn measure(size: usize, sockets: usize, packets: usize) -> Option<f64> {
    imp::measure(size, sockets, packets)
}

/// Receivers on loopback with room for what is sent to them (so nothing is dropped early).
fn receivers(n: usize, bytes_each: usize) -> Option<Vec<(UdpSocket, SocketAddr)>> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").ok()?;
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(bytes_each.max(1 << 20));
            let addr = s.local_addr().ok()?;
            Some((s, addr))
        })
        .collect()
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::mem::{size_of, zeroed};
    use std::os::fd::AsRawFd;

    fn thread_cpu() -> Duration {
        // SAFETY: clock_gettime writes one timespec.
        let mut ts: libc::timespec = unsafe { zeroed() };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
        Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
    }

    fn sockaddr(addr: SocketAddr) -> Option<libc::sockaddr_in> {
        let SocketAddr::V4(v4) = addr else { return None };
        // SAFETY: an all-zero sockaddr_in is valid; the fields are set below.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = v4.port().to_be();
        sa.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) };
        Some(sa)
    }

    pub fn measure(size: usize, sockets: usize, packets: usize) -> Option<f64> {
        let per_socket = packets.div_ceil(sockets.max(1)) * (size + 512);
        let rx = receivers(sockets.max(1), per_socket)?;
        let tx = UdpSocket::bind("127.0.0.1:0").ok()?;
        let _ = socket2::SockRef::from(&tx).set_send_buffer_size(4 << 20);
        let mut names: Vec<libc::sockaddr_in> = rx.iter().map(|(_, a)| sockaddr(*a)).collect::<Option<_>>()?;
        let payload = vec![0x5au8; size];
        let mut sent = 0usize;
        let start = thread_cpu();
        while sent < packets {
            let n = BATCH.min(packets - sent);
            let mut iovs: Vec<libc::iovec> = (0..n)
                .map(|_| libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: size })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = (0..n)
                .map(|i| {
                    // SAFETY: zeroed mmsghdr is valid; the pointers set point at live locals.
                    let mut m: libc::mmsghdr = unsafe { zeroed() };
                    let count = names.len();
                    let name = &mut names[(sent + i) % count];
                    m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    m.msg_hdr.msg_iov = &raw mut iovs[i];
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            // SAFETY: `msgs` holds `n` initialised headers whose buffers outlive the call.
            let r = unsafe { libc::sendmmsg(tx.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
            if r <= 0 {
                return None;
            }
            sent += r as usize;
        }
        let cpu = thread_cpu().saturating_sub(start);
        drop(rx);
        Some(cpu.as_secs_f64() * 1e6 / sent as f64)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub fn measure(_size: usize, _sockets: usize, _packets: usize) -> Option<f64> {
        let _ = receivers;
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_send_costs_something() {
        let us = super::measure(1200, 8, 2000);
        if cfg!(target_os = "linux") {
            let us = us.expect("measured on Linux");
            assert!(us > 0.0 && us < 1000.0, "{us} µs per packet");
        }
    }
}
