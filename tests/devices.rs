//! Registered devices over QUIC: a registration lives as long as its token (renewed by
//! registering again), and a client that does not read its signaling is closed instead of making
//! the server buffer for it without bound.

mod common;

use common::media::{TestServer, group, wait_signal};
use std::sync::Arc;
use std::time::Duration;
use switchboard::auth::{Scopes, TokenLifetime};
use switchboard::client::{ClientEvent, Locator};
use switchboard::config::Bounded;
use switchboard::identity::IdentityId;
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{CallState, EndReason, ServerMessage};

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A token of `raw`'s identity that expires `secs` from now (lifetimes start at 60 minutes, so
/// it is issued in the past).
fn expiring_in(ts: &TestServer, raw: &str, secs: i64) -> String {
    let id = IdentityId(uuid::Uuid::parse_str(raw.rsplit('_').next().expect("uuid")).expect("uuid"));
    let lifetime = TokenLifetime::from_minutes(60).expect("valid");
    ts.server.token_issuer().issue(id, Scopes::VOIP, lifetime, unix_now() - 3600 + secs).expect("issue").token
}

/// A registration ends when its token expires, unless the device registers again with a fresh
/// token first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_lives_as_long_as_its_token_unless_renewed() {
    let ts =
        TestServer::start_with(1, |c| c.tokens.verify_leeway_seconds = Bounded::try_from(0).expect("in range")).await;
    let (raw, fresh) = ts.identity(&["voip"]).await;
    let short = expiring_in(&ts, &raw, 3);
    let mut lapsing = ts.client().await;
    lapsing.register(&short, None).await.expect("register");
    lapsing.join(None, Locator::Group(group()), None).await.expect("join while the token is good");
    let renewed = ts.client().await;
    renewed.register(&short, None).await.expect("register");
    renewed.register(&fresh, None).await.expect("renew with a fresh token of the same identity");

    let notice =
        wait_signal(&mut lapsing, Duration::from_secs(8), |m| matches!(m, ServerMessage::CallStateChanged { .. }))
            .await;
    assert!(
        matches!(
            notice,
            Some(ServerMessage::CallStateChanged {
                state: CallState::Disconnected,
                code: Some(EndReason::TokenExpired),
                ..
            })
        ),
        "{notice:?}"
    );
    let closed = loop {
        match lapsing.next_event_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Closed { reason }) => break reason,
            Some(_) => {}
            None => panic!("the expired registration's connection was not closed"),
        }
    };
    assert!(closed.contains("code 7"), "closed with the token-expired code: {closed}");
    // The renewed device outlived the first token.
    renewed.join(None, Locator::Group(group()), None).await.expect("still registered");
    ts.stop().await;
}

/// A QUIC client that never reads its signaling stream: once what the server holds for it passes
/// 16 × `max_message_bytes`, its connection is closed (code 3), and the call goes on for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_signaling_is_closed() {
    let ts =
        TestServer::start_with(1, |c| c.limits.max_message_bytes = Bounded::try_from(1024).expect("in range")).await;
    let g = group();
    let (_, token) = ts.identity(&["voip"]).await;

    // A raw QUIC client with a small receive window that joins and then never reads.
    let tls = switchboard::tls::client_config(&ts.ca, &[switchboard::media::quic::ALPN]).expect("TLS config");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS config");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(4096));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(config);
    let conn = endpoint.connect(ts.server.quic_addr, "localhost").expect("connect").await.expect("handshake");
    let (mut send, _recv_never_read) = conn.open_bi().await.expect("stream");
    let join = serde_json::json!({"type": "join", "id": 1, "token": token, "groupId": g}).to_string();
    let mut frame = (join.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(join.as_bytes());
    send.write_all(&frame).await.expect("send join");

    // Another participant makes events: every publish and unpublish is told to everyone.
    let (busy, _) = ts.joined(&g).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = tokio::spawn({
        let conn = conn.clone();
        async move { conn.closed().await }
    });
    for _ in 0..150 {
        if closed.is_finished() {
            break;
        }
        let t = busy.publish(MediaKind::Video, Codec::Vp8, common::media::three_layers()).await.expect("publish");
        busy.request(switchboard::signaling::messages::ClientMessage::Unpublish { track_id: t.track_id })
            .await
            .expect("unpublish");
    }
    let reason = tokio::time::timeout(Duration::from_secs(5), closed).await.expect("closed in time").expect("task");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(3), "closed as overloaded: {close:?}");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    // The call goes on for the one who reads.
    busy.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("the others carry on");
    ts.stop().await;
}
