//! The client's UDP socket, with a switch that silences it: after [`MutableSocket::mute`] every
//! datagram the client sends is dropped before the network, as if its network had gone away.
//! Load tests and soak runs use it to make a client vanish without a `CONNECTION_CLOSE`, which
//! only the server's idle timeout then notices.

use quinn::{AsyncUdpSocket, UdpPoller};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

pub(crate) struct MutableSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    muted: AtomicBool,
}

impl MutableSocket {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>) -> Self {
        MutableSocket { inner, muted: AtomicBool::new(false) }
    }

    /// Drop everything sent from now on.
    pub(crate) fn mute(&self) {
        self.muted.store(true, Ordering::Relaxed);
    }
}

impl fmt::Debug for MutableSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutableSocket").field("muted", &self.muted).finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for MutableSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
        if self.muted.load(Ordering::Relaxed) {
            // Sent, as far as quinn can tell: the datagram is lost on the way.
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
