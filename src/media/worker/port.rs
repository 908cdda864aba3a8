//! A worker's UDP endpoint: a real socket, or (in tests) a virtual one whose datagrams a harness
//! collects and delivers over a simulated network (`harness.rs`), so the whole worker runs on a
//! virtual clock.

use crate::media::recv_batch::RecvBatch;
use crate::media::send_batch::{Flushed, SendBatch};
use std::io;
use std::net::SocketAddr;

/// How a worker gets one of its UDP endpoints.
#[derive(Debug)]
pub enum PortSetup {
    /// A bound, non-blocking socket.
    Bound(std::net::UdpSocket),
    /// No socket: what is sent is kept for the test harness.
    #[cfg(test)]
    Virtual(SocketAddr),
}

#[derive(Debug)]
pub enum UdpPort {
    /// A socket, and the datagrams queued for it this loop turn.
    Socket(tokio::net::UdpSocket, SendBatch),
    #[cfg(test)]
    Virtual { local: SocketAddr, sent: Vec<(SocketAddr, Vec<u8>)> },
}

impl UdpPort {
    /// Must run inside the worker's runtime (a socket registers with it).
    pub fn new(setup: PortSetup) -> io::Result<Self> {
        match setup {
            PortSetup::Bound(s) => Ok(UdpPort::Socket(tokio::net::UdpSocket::from_std(s)?, SendBatch::default())),
            #[cfg(test)]
            PortSetup::Virtual(local) => Ok(UdpPort::Virtual { local, sent: Vec::new() }),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            UdpPort::Socket(s, _) => s.local_addr(),
            #[cfg(test)]
            UdpPort::Virtual { local, .. } => Ok(*local),
        }
    }

    /// The socket, to read from (a virtual port is written to by the harness directly).
    pub fn socket(&self) -> Option<&tokio::net::UdpSocket> {
        match self {
            UdpPort::Socket(s, _) => Some(s),
            #[cfg(test)]
            UdpPort::Virtual { .. } => None,
        }
    }

    pub fn try_send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            UdpPort::Socket(s, _) => s.try_send_to(buf, to),
            #[cfg(test)]
            UdpPort::Virtual { sent, .. } => {
                sent.push((to, buf.to_vec()));
                Ok(buf.len())
            }
        }
    }

    /// Queue a datagram, to go with the others at `send_queued` (the end of the loop turn). A
    /// full queue is sent first; what that send did is returned.
    pub fn queue(&mut self, buf: &[u8], to: SocketAddr) -> Flushed {
        match self {
            UdpPort::Socket(s, batch) => {
                let mut done = Flushed::default();
                if batch.push(buf, to) {
                    return done;
                }
                done += batch.flush(s);
                if !batch.push(buf, to) {
                    // Larger than a slot: on its own.
                    done += match s.try_send_to(buf, to) {
                        Ok(_) => Flushed { sent: 1, ..Flushed::default() },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Flushed { busy: 1, ..Flushed::default() },
                        Err(e) => {
                            tracing::debug!(error = %e, %to, "UDP send failed");
                            Flushed { failed: 1, ..Flushed::default() }
                        }
                    };
                }
                done
            }
            #[cfg(test)]
            UdpPort::Virtual { sent, .. } => {
                sent.push((to, buf.to_vec()));
                Flushed { sent: 1, ..Flushed::default() }
            }
        }
    }

    /// Send what is queued.
    pub fn send_queued(&mut self) -> Flushed {
        match self {
            UdpPort::Socket(s, batch) if !batch.is_empty() => batch.flush(s),
            _ => Flushed::default(),
        }
    }

    /// Read what the socket has into `batch` (one `recvmmsg`): how many datagrams.
    /// `WouldBlock` when there is nothing (always, for a virtual port: the harness delivers).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        match self {
            UdpPort::Socket(s, _) => batch.recv(s),
            #[cfg(test)]
            UdpPort::Virtual { .. } => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Wait until the socket may be read (never, for a virtual port).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            UdpPort::Socket(s, _) => s.readable().await,
            #[cfg(test)]
            UdpPort::Virtual { .. } => std::future::pending().await,
        }
    }
}
