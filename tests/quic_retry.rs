//! QUIC address validation under load (`quic.retry_above_handshakes`) and no 0-RTT, against a
//! real server: half-open handshakes from spoofable Initials fill the worker's allowance, after
//! which a new Initial gets only a Retry packet (no larger than the Initial: no amplification, no
//! state held), while a real client still connects through the Retry; a client that tries 0-RTT
//! on a resumed session gets no early data.

mod common;

use common::media::TestServer;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientOptions};
use switchboard::config::Bounded;

fn client_crypto(ca: &[u8]) -> Arc<quinn_proto::crypto::rustls::QuicClientConfig> {
    let mut tls = switchboard::tls::client_config(ca, &[switchboard::media::quic::ALPN]).expect("client TLS");
    tls.enable_early_data = true;
    Arc::new(quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC client config"))
}

/// Send one client Initial from a fresh UDP socket and never answer what comes back: the server
/// sees a handshake that never completes (or, for a spoofed source, one it cannot complete).
/// Returns the socket and the Initial's size.
fn half_open(ca: &[u8], server: SocketAddr) -> (UdpSocket, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut endpoint = quinn_proto::Endpoint::new(Arc::new(quinn_proto::EndpointConfig::default()), None, false, None);
    let config = quinn_proto::ClientConfig::new(client_crypto(ca));
    let (_, mut conn) = endpoint.connect(Instant::now(), config, server, "localhost").expect("client connection");
    let mut buf = Vec::new();
    let t = conn.poll_transmit(Instant::now(), 1, &mut buf).expect("an Initial to send");
    socket.send_to(&buf[..t.size], server).expect("sent");
    (socket, t.size)
}

/// The first datagram the server sends back, if any within `limit`.
fn answer(socket: &UdpSocket, limit: Duration) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 2048];
    socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// A QUIC v1 long-header Retry packet (RFC 9000 17.2.5: type 0b11).
fn is_retry(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b & 0xc0 == 0xc0 && (b >> 4) & 0x3 == 0x3)
}

async fn metric(ts: &TestServer, name_and_labels: &str) -> f64 {
    let (status, text) = ts.api.get_public("/metrics").await;
    assert_eq!(status, 200);
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_new_clients_validate_their_address_first() {
    let ts = TestServer::start_with(1, |c| {
        c.quic.retry_above_handshakes = Bounded::try_from(5).expect("in range");
    })
    .await;
    let server = ts.server.quic_addr;
    // Five handshakes the server accepts and holds (it answers each with its Initial and
    // Handshake flight, never a Retry).
    let mut held = Vec::new();
    for _ in 0..5 {
        let (socket, _) = half_open(&ts.ca, server);
        let first = answer(&socket, Duration::from_secs(2)).expect("the server answers");
        assert!(!is_retry(&first), "below the threshold a handshake is accepted");
        held.push(socket);
    }
    // From now on each new Initial gets one small Retry, and nothing is held for it.
    for _ in 0..20 {
        let (socket, initial_size) = half_open(&ts.ca, server);
        let first = answer(&socket, Duration::from_secs(2)).expect("the server answers");
        assert!(is_retry(&first), "over the threshold the server asks for address validation");
        assert!(
            first.len() <= initial_size,
            "a Retry ({} B) is no larger than the Initial ({initial_size} B)",
            first.len()
        );
        assert!(answer(&socket, Duration::from_millis(100)).is_none(), "a Retry is all it gets");
    }
    // A real client still gets in: it answers the Retry with the token.
    let mut opts = ClientOptions::new(server, ts.ca.clone());
    opts.request_timeout = Duration::from_secs(5);
    let client = Client::connect(opts).await.expect("a real client connects through a Retry");
    let retried = metric(&ts, "switchboard_quic_handshakes_total{result=\"retried\"}").await;
    let accepted = metric(&ts, "switchboard_quic_handshakes_total{result=\"accepted\"}").await;
    assert!(retried >= 21.0, "retries counted: {retried}");
    assert_eq!(accepted, 6.0, "the five half-open handshakes and the real client; no state for the rest");
    drop(client);
    drop(held);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_rtt_is_never_accepted() {
    let ts = TestServer::start_with(1, |c| {
        c.quic.retry_above_handshakes = Bounded::try_from(0).expect("in range");
    })
    .await;
    let server = ts.server.quic_addr;
    let mut config = quinn::ClientConfig::new(client_crypto(&ts.ca));
    config.transport_config(Arc::new(switchboard::media::quic::transport_config(Duration::from_secs(30))));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    endpoint.set_default_client_config(config);
    // A first connection (through a Retry: retry_above_handshakes = 0 means always) gets a
    // session ticket...
    let first = endpoint.connect(server, "localhost").expect("connect").await.expect("connected");
    let (mut send, _recv) = first.open_bi().await.expect("stream");
    send.write_all(&switchboard::media::quic::frame(br#"{"type":"ping","id":1}"#)).await.expect("written");
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    // ...and the resumed connection is offered no early data.
    let connecting = endpoint.connect(server, "localhost").expect("connect");
    match connecting.into_0rtt() {
        Err(connecting) => {
            connecting.await.expect("a full handshake still connects");
        }
        Ok((conn, accepted)) => {
            assert!(!accepted.await, "the server must refuse 0-RTT data");
            drop(conn);
        }
    }
    assert!(metric(&ts, "switchboard_quic_handshakes_total{result=\"retried\"}").await >= 2.0);
    ts.stop().await;
}
