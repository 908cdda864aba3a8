//! The QUIC carrier as `docs/PROTOCOL.md` describes it, checked with a hand-written client (plain
//! quinn, no `switchboard::client`): what a client that breaks the rules is told, and how.

mod common;

use common::media::TestServer;
use std::sync::Arc;
use std::time::Duration;

/// A raw client: the connection and its signaling stream.
struct Raw {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

async fn raw(ts: &TestServer) -> Raw {
    let tls = switchboard::tls::client_config(&ts.ca, &[switchboard::media::quic::ALPN]).expect("TLS");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    endpoint.set_default_client_config(config);
    let conn = endpoint.connect(ts.server.quic_addr, "localhost").expect("connect").await.expect("connected");
    let (send, recv) = conn.open_bi().await.expect("signaling stream");
    Raw { conn, send, recv, _endpoint: endpoint }
}

impl Raw {
    async fn send_json(&mut self, json: &str) {
        self.send.write_all(&switchboard::media::quic::frame(json.as_bytes())).await.expect("written");
    }

    /// The next frame, as JSON, if one arrives within `limit`.
    async fn next_json(&mut self, limit: Duration) -> Option<serde_json::Value> {
        let read = async {
            let mut len = [0u8; 4];
            self.recv.read_exact(&mut len).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            self.recv.read_exact(&mut body).await.ok()?;
            serde_json::from_slice(&body).ok()
        };
        tokio::time::timeout(limit, read).await.ok().flatten()
    }

    /// How the server closed the connection.
    async fn closed(&self) -> quinn::ConnectionError {
        tokio::time::timeout(Duration::from_secs(5), self.conn.closed()).await.expect("closed within 5 s")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bidirectional_stream_gets_the_documented_close_code() {
    let ts = TestServer::start(1).await;
    let mut c = raw(&ts).await;
    c.send_json(r#"{"type":"ping","id":1}"#).await;
    let pong = c.next_json(Duration::from_secs(5)).await.expect("pong");
    assert_eq!(pong["type"], "pong");
    let (mut second, _) = tokio::time::timeout(Duration::from_secs(5), c.conn.open_bi())
        .await
        .expect("the server allows the stream to be opened")
        .expect("a second stream opens locally");
    second.write_all(b"x").await.ok();
    match c.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(1), "PROTOCOL_ERROR, as PROTOCOL.md says");
        }
        other => panic!("expected application close code 1, got {other:?}"),
    }
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_answered_message_too_large_then_closed() {
    let ts = TestServer::start(1).await;
    let mut c = raw(&ts).await;
    c.send_json(r#"{"type":"ping","id":1}"#).await;
    assert_eq!(c.next_json(Duration::from_secs(5)).await.expect("pong")["type"], "pong");
    // A frame header announcing 10 MB (the limit is limits.max_message_bytes, 64 KiB).
    c.send.write_all(&10_000_000u32.to_be_bytes()).await.expect("written");
    c.send.write_all(&[b'{'; 1024]).await.ok();
    let error = c.next_json(Duration::from_secs(5)).await.expect("the error arrives before the close");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "MessageTooLarge", "{error}");
    match c.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(2), "code 2, signaling frame too large");
        }
        other => panic!("expected application close code 2, got {other:?}"),
    }
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reason_a_server_closes_a_session_is_delivered_before_the_close() {
    let ts = TestServer::start(1).await;
    let (id, token) = ts.identity(&["voip"]).await;
    let mut c = raw(&ts).await;
    c.send_json(&format!(r#"{{"type":"register","id":1,"token":"{token}"}}"#)).await;
    assert_eq!(c.next_json(Duration::from_secs(5)).await.expect("registered")["type"], "registered");
    let path = format!("/identities/{}/:revokeAccessTokens?api-version=2023-10-01", common::encode_id(&id));
    assert_eq!(ts.api.call(reqwest::Method::POST, &path, None).await.0, 204);
    // Whatever the server says last (the revocation notice) arrives, then the close code 4.
    let mut last = None;
    while let Some(msg) = c.next_json(Duration::from_secs(5)).await {
        last = Some(msg);
    }
    let last = last.expect("the server said why before closing");
    assert!(last.to_string().contains("TokenRevoked") || last.to_string().contains("Revoked"), "{last}");
    match c.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(close.error_code, quinn::VarInt::from_u32(4)),
        other => panic!("expected application close code 4, got {other:?}"),
    }
    ts.stop().await;
}
