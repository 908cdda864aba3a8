//! A worker's UDP endpoint: a real socket, or (in tests) a virtual one whose datagrams a harness
//! collects and delivers over a simulated network (`harness.rs`), so the whole worker runs on a
//! virtual clock.

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
    Socket(tokio::net::UdpSocket),
    #[cfg(test)]
    Virtual {
        local: SocketAddr,
        sent: Vec<(SocketAddr, Vec<u8>)>,
    },
}

impl UdpPort {
    /// Must run inside the worker's runtime (a socket registers with it).
    pub fn new(setup: PortSetup) -> io::Result<Self> {
        match setup {
            PortSetup::Bound(s) => Ok(UdpPort::Socket(tokio::net::UdpSocket::from_std(s)?)),
            #[cfg(test)]
            PortSetup::Virtual(local) => Ok(UdpPort::Virtual { local, sent: Vec::new() }),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            UdpPort::Socket(s) => s.local_addr(),
            #[cfg(test)]
            UdpPort::Virtual { local, .. } => Ok(*local),
        }
    }

    /// The socket, to read from (a virtual port is written to by the harness directly).
    pub fn socket(&self) -> Option<&tokio::net::UdpSocket> {
        match self {
            UdpPort::Socket(s) => Some(s),
            #[cfg(test)]
            UdpPort::Virtual { .. } => None,
        }
    }

    pub fn try_send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            UdpPort::Socket(s) => s.try_send_to(buf, to),
            #[cfg(test)]
            UdpPort::Virtual { sent, .. } => {
                sent.push((to, buf.to_vec()));
                Ok(buf.len())
            }
        }
    }

    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            UdpPort::Socket(s) => s.try_recv_from(buf),
            #[cfg(test)]
            UdpPort::Virtual { .. } => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Wait until the socket may be read (never, for a virtual port).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            UdpPort::Socket(s) => s.readable().await,
            #[cfg(test)]
            UdpPort::Virtual { .. } => std::future::pending().await,
        }
    }
}
