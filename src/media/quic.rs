//! QUIC on a media worker: the worker drives `quinn-proto` itself (no task per connection), so
//! forwarding a packet to a subscriber queues a datagram on that connection and marks it dirty;
//! one `poll_transmit` pass per loop turn sends everything. Signaling arrives on the first
//! bidirectional stream as `u32` big-endian length-prefixed JSON frames; media is RoQ datagrams
//! (flow ID varint, then an RTP or RTCP packet).

use super::bwe::LossBasedEstimator;
use super::command::SessionInput;
use super::ids::{SessionId, SubscriptionId, TrackId};
use crate::lean_queue;
use bytes::Bytes;
use quinn_proto::{ConnectionHandle, StreamId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ALPN protocol of Switchboard's QUIC transport.
pub const ALPN: &[u8] = b"switchboard/1";
/// Application error codes used when the server closes a QUIC connection.
pub mod close_code {
    pub const NORMAL: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const MESSAGE_TOO_LARGE: u32 = 2;
    pub const OVERLOADED: u32 = 3;
    pub const TOKEN_REVOKED: u32 = 4;
    pub const SERVER_SHUTDOWN: u32 = 5;
    pub const POLICY: u32 = 6;
    pub const TOKEN_EXPIRED: u32 = 7;
    /// The client did not read its messages fast enough.
    pub const NOT_KEEPING_UP: u32 = 8;
    /// The session neither registered nor joined within `[limits] register_timeout_seconds`.
    pub const NOT_REGISTERED: u32 = 9;
    /// The server hit a bug in this session and ended it (`crate::panics`).
    pub const INTERNAL_ERROR: u32 = 10;
}

/// Which media a flow ID of a session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The client publishes layer `layer` of `track` on this flow.
    Publish { track: TrackId, layer: u8 },
    /// The server sends `subscription` (of `track`) on this flow.
    Subscribe { track: TrackId, subscription: SubscriptionId },
}

/// One QUIC connection on a worker.
pub struct QuicConn {
    pub conn: quinn_proto::Connection,
    pub handle: ConnectionHandle,
    pub remote: SocketAddr,
    pub session: Option<SessionId>,
    pub signal: Option<StreamId>,
    /// Bytes of the signaling stream not yet assembled into frames.
    pub frame_buf: Vec<u8>,
    /// Signaling bytes waiting for stream flow control.
    pub pending_out: Vec<u8>,
    pub inbox: Option<lean_queue::Sender<SessionInput>>,
    pub flows: HashMap<u64, Flow>,
    /// The earliest deadline of this connection in the worker's timer heap (armed only when earlier).
    pub timeout: Option<Instant>,
    pub dirty: bool,
    pub bwe: LossBasedEstimator,
    pub estimate_bps: Option<u64>,
    /// The last combined estimate toward this client (its retransmission budget follows it).
    pub last_estimate_bps: Option<u64>,
    /// What this subscriber may be sent again (NACKs).
    pub retransmits: crate::sfu::nack::RetransmitBudget,
    /// Counted in the worker's handshakes in progress (until connected or gone).
    pub handshaking: bool,
    /// The server is closing this connection with (code, reason) once the signaling stream's
    /// queued bytes are delivered (`Worker::close_after_flush`).
    pub closing: Option<(u32, String)>,
    /// The signaling stream was finished for `closing`; the close follows its acknowledgement.
    pub finishing: bool,
    /// When a packet from the client last arrived (`None`: not since the connection started).
    /// A receiving client acknowledges media within a few tens of milliseconds.
    pub last_heard: Option<Instant>,
    /// Close as `closing` once the next signaling message (the error that says why) is queued.
    pub close_after_next_message: Option<(u32, String)>,
}

impl QuicConn {
    pub fn new(conn: quinn_proto::Connection, handle: ConnectionHandle) -> Self {
        Self {
            remote: conn.remote_address(),
            conn,
            handle,
            session: None,
            signal: None,
            frame_buf: Vec::new(),
            pending_out: Vec::new(),
            inbox: None,
            flows: HashMap::new(),
            timeout: None,
            dirty: false,
            bwe: LossBasedEstimator::default(),
            estimate_bps: None,
            last_estimate_bps: None,
            retransmits: crate::sfu::nack::RetransmitBudget::default(),
            handshaking: true,
            closing: None,
            finishing: false,
            close_after_next_message: None,
            last_heard: None,
        }
    }
}

/// A signaling frame whose declared length exceeds the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signaling frame of {0} bytes exceeds the limit")]
pub struct FrameTooLarge(pub usize);

/// Split complete `u32`-length-prefixed frames off the front of `buf`.
pub fn take_frames(buf: &mut Vec<u8>, max: usize, mut on_frame: impl FnMut(Bytes)) -> Result<(), FrameTooLarge> {
    let mut start = 0;
    while buf.len() - start >= 4 {
        let len = u32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]]) as usize;
        if len > max {
            return Err(FrameTooLarge(len));
        }
        if buf.len() - start - 4 < len {
            break;
        }
        on_frame(Bytes::copy_from_slice(&buf[start + 4..start + 4 + len]));
        start += 4 + len;
    }
    buf.drain(..start);
    Ok(())
}

/// Prefix `json` with its length.
pub fn frame(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    Bytes::from(out)
}

/// Server-side QUIC configuration. `tls_held` counts the connections holding TLS handshake
/// state (`switchboard_quic_tls_sessions`; see `quic_tls`).
pub fn server_config(
    mut tls: rustls::ServerConfig,
    idle_timeout: Duration,
    tls_held: prometheus::IntGauge,
) -> Result<quinn_proto::ServerConfig, super::quic_tls::QuicTlsError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = super::quic_tls::ServerCrypto::new(tls, tls_held)?;
    let mut config = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(idle_timeout)));
    Ok(config)
}

/// Bytes of datagrams a connection may have waiting to be sent (`datagram_send_buffer_size`).
pub const DATAGRAM_SEND_BUFFER: usize = 256 * 1024;

/// Transport settings shared by the server and the client library.
pub fn transport_config(idle_timeout: Duration) -> quinn_proto::TransportConfig {
    let mut t = quinn_proto::TransportConfig::default();
    t.max_idle_timeout(quinn_proto::IdleTimeout::try_from(idle_timeout).ok());
    // One signaling stream; room for a second only so that opening one gets the documented
    // application close (code 1, PROTOCOL_ERROR) rather than a transport STREAM_LIMIT_ERROR
    // (0x4, which a client could mistake for application code 4, TOKEN_REVOKED).
    t.max_concurrent_bidi_streams(quinn_proto::VarInt::from_u32(2));
    t.max_concurrent_uni_streams(quinn_proto::VarInt::from_u32(0));
    t.datagram_receive_buffer_size(Some(1 << 20));
    // About 100 ms of a busy subscriber's media: older datagrams are dropped, not delayed.
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    t.enable_segmentation_offload(false);
    t
}

/// `count` UDP sockets sharing one port (`SO_REUSEPORT`), one per worker. The port is first
/// bound exclusively for a moment: if another process (say a second Switchboard run by the
/// same user) already holds it, binding fails instead of silently splitting the clients.
pub fn bind_worker_sockets(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let probe = std::net::UdpSocket::bind(addr)?;
    let addr = probe.local_addr()?;
    drop(probe);
    (0..count.max(1)).map(|_| bind_shared(addr)).collect()
}

/// A UDP socket on `addr` that other workers can bind too (`SO_REUSEPORT`).
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Bigger buffers absorb the bursts of a large fan-out (the kernel may cap them).
    let _ = socket.set_send_buffer_size(4 << 20);
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_and_limits() {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let one = frame(b"{\"a\":1}");
        let two = frame(b"{}");
        buf.extend_from_slice(&one[..3]);
        take_frames(&mut buf, 100, |f| got.push(f)).expect("ok");
        assert!(got.is_empty());
        buf.extend_from_slice(&one[3..]);
        buf.extend_from_slice(&two);
        buf.extend_from_slice(&[0, 0]);
        take_frames(&mut buf, 100, |f| got.push(f)).expect("ok");
        assert_eq!(got, vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{}")]);
        assert_eq!(buf, vec![0, 0]);
        buf.extend_from_slice(&[1, 0]);
        assert_eq!(take_frames(&mut buf, 100, |_| {}), Err(FrameTooLarge(256)));
    }

    #[test]
    fn a_port_held_by_another_process_is_refused() {
        let sockets = bind_worker_sockets("127.0.0.1:0".parse().expect("addr"), 2).expect("bind");
        let addr = sockets[0].local_addr().expect("addr");
        assert_eq!(sockets[1].local_addr().expect("addr"), addr);
        // A second server on the same port must not share it.
        assert!(bind_worker_sockets(addr, 2).is_err());
    }

    #[test]
    fn reuseport_sockets_share_a_port() {
        let a = bind_shared("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let port = a.local_addr().expect("addr").port();
        let b = bind_shared(SocketAddr::from(([127, 0, 0, 1], port))).expect("second bind on the same port");
        assert_eq!(b.local_addr().expect("addr").port(), port);
    }
}
