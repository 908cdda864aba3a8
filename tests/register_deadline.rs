//! A new signaling session must `register` or `join` within `[limits] register_timeout_seconds`
//! (here 1 s), over QUIC and over WebSocket: otherwise it gets `Disconnected` with
//! `RegisterTimeout` and the connection closes (QUIC code 9). Pings before registering do not
//! keep it alive; a registered session outlives the deadline.

mod common;

use common::media::TestServer;
use common::webrtc::Signal;
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientEvent};
use switchboard::config::Bounded;
use switchboard::signaling::messages::{CallState, ClientMessage, EndReason, ServerMessage};

async fn server() -> TestServer {
    TestServer::start_with(1, |c| c.limits.register_timeout_seconds = Bounded::try_from(1).expect("in range")).await
}

/// The QUIC client's events until it closes: (saw `Disconnected` with `RegisterTimeout`, close
/// reason, when it closed).
async fn until_closed(client: &mut Client, limit: Duration) -> (bool, String, Instant) {
    let mut told = false;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(ClientEvent::Signal(ServerMessage::CallStateChanged {
                state: CallState::Disconnected,
                code: Some(EndReason::RegisterTimeout),
                ..
            }))) => told = true,
            Ok(Some(ClientEvent::Closed { reason })) => return (told, reason, Instant::now()),
            Ok(Some(_)) => {}
            Ok(None) => return (told, "events ended".into(), Instant::now()),
            Err(_) => panic!("the session was not closed within {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_session_that_never_registers_is_closed_pings_do_not_help() {
    let ts = server().await;
    let started = Instant::now();
    let mut silent = ts.client().await;
    let mut pinging = ts.client().await;
    // Pings every 100 ms until the server closes the connection.
    let ping = async {
        for _ in 0..100 {
            if pinging.request(ClientMessage::Ping {}).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((_, reason, at), ()) = tokio::join!(until_closed(&mut silent, Duration::from_secs(10)), ping);
    // A client that never opened its signaling stream can only be told by the close code.
    assert!(reason.contains("code 9"), "{reason}");
    assert!(at - started >= Duration::from_millis(900), "not before the deadline: {:?}", at - started);
    let (told, reason, at) = until_closed(&mut pinging, Duration::from_secs(10)).await;
    assert!(reason.contains("code 9"), "pings did not keep it alive: {reason}");
    assert!(told, "Disconnected with RegisterTimeout came first on the open signaling stream");
    assert!(at - started < Duration::from_secs(8), "closed at the deadline, not by the pings' end");

    // A registered session is past the deadline for good.
    let (_, token) = ts.identity(&["voip"]).await;
    let registered = ts.client().await;
    registered.register(&token, None).await.expect("registers in time");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pong = registered.request(ClientMessage::Ping {}).await.expect("still open");
    assert!(matches!(pong, ServerMessage::Pong { .. }), "{pong:?}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_that_never_registers_is_closed() {
    let ts = server().await;
    let mut ws = Signal::connect(&ts.api.cs.endpoint, &ts.ca).await;
    let told = ws
        .wait_for(Duration::from_secs(10), |m| {
            matches!(
                m,
                ServerMessage::CallStateChanged {
                    state: CallState::Disconnected,
                    code: Some(EndReason::RegisterTimeout),
                    ..
                }
            )
        })
        .await;
    assert!(told.is_some(), "Disconnected with RegisterTimeout");
    assert!(ws.closed(Duration::from_secs(5)).await, "and the socket closes");
    ts.stop().await;
}
