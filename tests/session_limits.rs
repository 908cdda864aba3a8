//! `media.max_sessions_per_worker` counts every session on a worker, QUIC and WebSocket alike:
//! a WebSocket session over the limit is told `ServiceUnavailable` and closed (1013, try again
//! later), a QUIC connection over it is refused, and a place freed is taken again.

mod common;

use common::media::TestServer;
use common::webrtc::Signal;
use std::time::Duration;
use switchboard::client::{Client, ClientOptions};
use switchboard::config::Bounded;
use switchboard::signaling::messages::{ClientMessage, ErrorCode, ServerMessage};

const WAIT: Duration = Duration::from_secs(5);

/// Whether a WebSocket session was refused as full right after the upgrade.
async fn refused(s: &mut Signal) -> bool {
    match s.next(Duration::from_millis(700)).await {
        Some(ServerMessage::Error { code: ErrorCode::ServiceUnavailable, .. }) => true,
        None => false,
        Some(other) => panic!("unexpected message: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_quic_sessions_share_the_per_worker_limit() {
    let ts = TestServer::start_with(1, |c| {
        c.media.max_sessions_per_worker = Bounded::try_from(2).expect("in range");
    })
    .await;
    let (_, token) = ts.identity(&["voip"]).await;
    let mut first = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let mut second = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    assert!(!refused(&mut first).await && !refused(&mut second).await, "two sessions fit");
    let r = second.request(ClientMessage::Register { token: token.clone(), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Registered { .. }), "{r:?}");

    // The worker is full: a third WebSocket session is refused with a reason, then closed...
    let mut third = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    assert!(refused(&mut third).await, "a third WebSocket session is refused");
    assert!(third.closed(WAIT).await, "and closed");
    // ...and so is a QUIC connection: the two WebSocket sessions count.
    let quic = Client::connect(ClientOptions::new(ts.server.quic_addr, ts.ca.clone())).await;
    assert!(quic.is_err(), "a QUIC connection is refused while WebSocket sessions fill the worker");

    // A place freed is taken again.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut again = Signal::connect(&ts.server.endpoint, &ts.ca).await;
        if !refused(&mut again).await {
            let r = again.request(ClientMessage::Register { token: token.clone(), display_name: None }).await;
            assert!(matches!(r, ServerMessage::Registered { .. }), "{r:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed place is never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ts.stop().await;
}
