//! The bound on a call connection's media queue, against a real server: plays are queued up to
//! `MAX_QUEUED_MEDIA`, the next is refused with 400 `TooManyMediaOperations` (before its file is
//! read), and once `cancelAllMediaOperations` ends them the queue takes plays again.

mod common;

use common::media::TestServer;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard::call_automation::MAX_QUEUED_MEDIA;

const V: &str = "api-version=2024-09-15";

/// Five seconds of a quiet tone (long enough to still play while the queue fills), 16 kHz.
fn long_tone() -> Vec<u8> {
    let samples: Vec<f32> =
        (0..16_000 * 5).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.1).collect();
    common::wav(&samples, 16_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_media_queue_refuses_more_until_it_drains() {
    let media = tempfile::tempdir().expect("tmp");
    std::fs::write(media.path().join("long.wav"), long_tone()).expect("write wav");
    let dir = media.path().to_path_buf();
    let ts = TestServer::start_with(1, move |c| c.call_automation.media_dir = dir).await;
    let group = uuid::Uuid::new_v4().to_string();
    let body = json!({"callLocator": {"kind": "groupCallLocator", "groupCallId": group}, "callbackUri": "http://127.0.0.1:9/cb"});
    let (status, props) = ts.api.call(Method::POST, &format!("/calling/callConnections:connect?{V}"), Some(body)).await;
    assert_eq!(status, 200, "{props}");
    let id = props["callConnectionId"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, p) = ts.api.call(Method::GET, &format!("/calling/callConnections/{id}?{V}"), None).await;
        if p["callConnectionState"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "the connection never connected: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let play_path = format!("/calling/callConnections/{id}:play?{V}");
    let play = || {
        let body = json!({"playSources": [{"kind": "file", "file": {"uri": "long.wav"}}]});
        ts.api.call(Method::POST, &play_path, Some(body))
    };
    for n in 0..MAX_QUEUED_MEDIA {
        let (status, body) = play().await;
        assert_eq!(status, 202, "play {n}: {body}");
    }
    let (status, body) = play().await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "TooManyMediaOperations");
    let (status, body) = ts
        .api
        .call(Method::POST, &format!("/calling/callConnections/{id}:cancelAllMediaOperations?{V}"), Some(json!({})))
        .await;
    assert_eq!(status, 202, "{body}");
    // The cancel reaches the leg's task after the answer: its slots come back soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = play().await;
        if status == 202 {
            break;
        }
        assert_eq!(body["error"]["code"], "TooManyMediaOperations", "{body}");
        assert!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused =
        ts.metric("switchboard_call_automation_operations_total{operation=\"play\",result=\"too_many_queued\"}").await;
    assert!(refused >= 1.0, "refusals are counted: {refused}");
    ts.stop().await;
}
