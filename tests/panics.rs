//! The panic policy (`switchboard::panics`), against the real binary with panics injected by
//! `SWITCHBOARD_DEBUG_PANIC` (debug builds only): a media worker that panics takes the process
//! down with a clear log line and SIGABRT (never a half-dead server); a session that panics ends
//! alone, leaves its call and is counted; a request whose handler panics gets 500.

mod common;

use common::webrtc::Signal;
use common::{ServerProcess, wait_timeout};
use reqwest::Method;
use serde_json::json;
use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;
use switchboard::signaling::messages::{ClientMessage, JoinAt, ServerMessage};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn a_media_worker_panic_aborts_the_process_with_a_clear_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = ServerProcess::start(dir.path(), &[("SWITCHBOARD_DEBUG_PANIC", "worker")]);
    // The injected panic fires 2 s after the worker starts.
    let status = wait_timeout(server.child_mut(), Duration::from_secs(20)).expect("the server stops by itself");
    assert_eq!(status.signal(), Some(6), "ended by SIGABRT: {status:?}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).expect("log");
    assert!(
        log.contains("media worker 0 panicked (injected by SWITCHBOARD_DEBUG_PANIC=worker); aborting"),
        "the log says which worker panicked and why the process stopped:\n{log}"
    );
}

async fn identity_token(api: &common::Api) -> String {
    let (status, body) = api
        .call(Method::POST, "/identities?api-version=2023-10-01", Some(json!({"createTokenWithScopes": ["voip"]})))
        .await;
    assert_eq!(status, 201, "{body}");
    body["accessToken"]["token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_or_request_that_panics_ends_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(dir.path(), &[("SWITCHBOARD_DEBUG_PANIC", "session,http")]);
    let api = server.api();
    let ca = std::fs::read(&server.ca_path).expect("CA");
    let group = uuid::Uuid::new_v4().to_string();
    let mut alice = Signal::connect(&server.endpoint, &ca).await;
    let mut bob = Signal::connect(&server.endpoint, &ca).await;
    for s in [&mut alice, &mut bob] {
        let token = identity_token(&api).await;
        let r =
            s.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(&group), display_name: None }).await;
        assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
    }

    alice.send_text(r#"{"type":"debugPanic"}"#).await;
    assert!(alice.closed(WAIT).await, "the session that panicked is closed");
    let left = bob.wait_for(WAIT, |m| matches!(m, ServerMessage::ParticipantLeft { .. })).await;
    assert!(left.is_some(), "the others see it leave the call");
    let r = bob.request(ClientMessage::Ping {}).await;
    assert!(matches!(r, ServerMessage::Pong { .. }), "other sessions go on: {r:?}");

    let (status, body) = api.get_public("/debug/panic").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("InternalError"), "{body}");
    let (status, metrics) = api.get_public("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("switchboard_panics_total{site=\"session\"} 1"), "{metrics}");
    assert!(metrics.contains("switchboard_panics_total{site=\"http\"} 1"), "{metrics}");
    drop(server);
}
