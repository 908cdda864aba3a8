//! Every error answers the request that caused it: an `error` carries the request's `id` whenever
//! the message had a readable numeric one, also when the message was not understood (unknown
//! type, a missing or wrongly typed field) or not read at all (rate limited). A client that waits
//! for the answer to its id (as the SDK does) is never left waiting.

mod common;

use common::media::TestServer;
use common::webrtc::Signal;
use std::time::Duration;
use switchboard::config::Bounded;
use switchboard::signaling::messages::{ErrorCode, ServerMessage};

async fn error_for(s: &mut Signal, text: &str) -> (Option<u64>, ErrorCode) {
    s.send_text(text).await;
    match s.next(Duration::from_secs(5)).await {
        Some(ServerMessage::Error { id, code, .. }) => (id, code),
        other => panic!("expected an error for {text}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_id_of_the_request_they_answer() {
    let ts =
        TestServer::start_with(1, |c| c.limits.messages_per_second_per_session = Bounded::try_from(5).unwrap()).await;
    let mut s = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    assert_eq!(error_for(&mut s, r#"{"type":"noSuchThing","id":7}"#).await, (Some(7), ErrorCode::BadRequest));
    assert_eq!(
        error_for(&mut s, r#"{"type":"register","id":8}"#).await,
        (Some(8), ErrorCode::BadRequest),
        "missing token"
    );
    assert_eq!(error_for(&mut s, r#"{"type":"register","id":9,"token":42}"#).await, (Some(9), ErrorCode::BadRequest));
    assert_eq!(error_for(&mut s, r#"{"id":10}"#).await, (Some(10), ErrorCode::BadRequest), "no type");
    // Without a readable numeric id there is nothing to echo.
    assert_eq!(error_for(&mut s, r#"{"type":"ping","id":"eleven"}"#).await.0, None);
    assert_eq!(error_for(&mut s, "not json").await.0, None);
    // Over the rate: the refused message's id is answered too.
    let mut limited = None;
    for id in 100..140 {
        s.send_text(&format!(r#"{{"type":"ping","id":{id}}}"#)).await;
    }
    while let Some(msg) = s.next(Duration::from_millis(500)).await {
        if let ServerMessage::Error { id, code: ErrorCode::RateLimited, .. } = msg {
            limited = Some(id);
        }
    }
    let id = limited.expect("some pings were rate limited");
    assert!(id.is_some_and(|id| (100..140).contains(&id)), "a RateLimited error names its request: {id:?}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_errors_say_what_is_wrong_without_internal_detail() {
    use switchboard::signaling::messages::{ClientMessage, JoinAt};
    let ts = TestServer::start(1).await;
    let (_, token) = ts.identity(&["voip"]).await;
    let mut s = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let group = common::media::group();
    let r = s.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(&group), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
    for sdp in
        ["v=0\r\nthis is not SDP\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n", ""]
    {
        let text = serde_json::json!({"type": "offer", "id": 3, "sdp": sdp}).to_string();
        s.send_text(&text).await;
        match s.next(Duration::from_secs(5)).await {
            Some(ServerMessage::Error { id: Some(3), message, .. }) => {
                assert!(!message.contains("0x") && !message.contains("Pointer"), "internal detail leaked: {message}");
                assert!(message.to_lowercase().contains("sdp"), "the message says the SDP is at fault: {message}");
            }
            other => panic!("expected an error answering the offer, got {other:?}"),
        }
    }
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_message_is_answered_then_closed_with_1009() {
    let ts = TestServer::start_with(1, |c| c.limits.max_message_bytes = Bounded::try_from(4096).unwrap()).await;
    for size in [5_000, 20_000] {
        let mut s = Signal::connect(&ts.server.endpoint, &ts.ca).await;
        let text = format!(r#"{{"type":"ping","id":77,"pad":"{}"}}"#, "x".repeat(size));
        s.send_text(&text).await;
        let (error, close) = s.next_and_close(Duration::from_secs(5)).await;
        match error {
            Some(ServerMessage::Error { code: ErrorCode::MessageTooLarge, id, .. }) => {
                // Up to twice the limit the message is read, and its id answered.
                assert_eq!(id, (size < 8192).then_some(77), "size {size}");
            }
            other => panic!("expected MessageTooLarge for {size} bytes, got {other:?}"),
        }
        assert_eq!(close, Some(1009), "a proper close frame for {size} bytes");
    }
    ts.stop().await;
}
