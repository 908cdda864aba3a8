//! Repeatable requests against a real server: a signed POST repeated with the same
//! `Repeatability-Request-ID` (what the ACS SDKs' retry policy sends when an answer was lost) is
//! answered with the first answer and does not run twice; concurrent repeats wait for the first;
//! the same ID on a different request is refused; a malformed ID is refused. Rooms also keep
//! the ID in the store (a repeat after a restart); here both layers answer alike.

mod common;

use common::media::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const V: &str = "api-version=2024-09-15";

fn connect_body(group: &str) -> Value {
    // Nothing listens at the callback: the events' deliveries fail and are retried, which does
    // not concern the requests here.
    json!({"callLocator": {"kind": "groupCallLocator", "groupCallId": group}, "callbackUri": "http://127.0.0.1:9/cb"})
}

async fn connect(ts: &TestServer, group: &str, request_id: &str) -> (u16, Value) {
    let path = format!("/calling/callConnections:connect?{V}");
    let headers =
        [("Repeatability-Request-ID", request_id), ("Repeatability-First-Sent", "Mon, 30 Nov 2026 12:00:00 GMT")];
    let (status, _, body) = ts.api.call_with_headers(Method::POST, &path, Some(connect_body(group)), &headers).await;
    (status, body)
}

#[tokio::test]
async fn a_repeated_request_gets_the_first_answer_and_runs_once() {
    let ts = TestServer::start(1).await;
    let group = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();

    let (status, first) = connect(&ts, &group, &id).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = connect(&ts, &group, &id).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["callConnectionId"], again["callConnectionId"], "the repeat is answered, not run");
    assert_eq!(ts.metric("switchboard_http_repeatable_requests_total{outcome=\"repeat\"}").await, 1.0);

    // A new ID is a new request: the app joins a second group call.
    let other_group = uuid::Uuid::new_v4().to_string();
    let (status, second) = connect(&ts, &other_group, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(first["callConnectionId"], second["callConnectionId"]);

    // The same ID on a different request is a client bug: 409, and nothing runs.
    let (status, body) = connect(&ts, &other_group, &id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "Conflict");

    // Repeats in flight together: one runs, all get its answer.
    let third_group = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let answers = futures_util::future::join_all((0..4).map(|_| connect(&ts, &third_group, &id))).await;
    let ids: Vec<&Value> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 200, "{b}");
            &b["callConnectionId"]
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one connection for four sends: {ids:?}");

    // Three connections in all, not eight.
    let (status, _) = ts
        .api
        .call(
            Method::GET,
            &format!("/calling/callConnections/{}?{V}", first["callConnectionId"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ts.metric("switchboard_http_repeatable_requests_total{outcome=\"first\"}").await, 3.0);
    assert_eq!(ts.metric("switchboard_http_repeatable_requests_total{outcome=\"repeat\"}").await, 4.0);
    assert_eq!(ts.metric("switchboard_http_repeatable_requests_total{outcome=\"mismatch\"}").await, 1.0);

    let (status, body) = connect(&ts, &group, "two words").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["target"], "Repeatability-Request-ID");
    ts.stop().await;
}

#[tokio::test]
async fn a_repeated_room_create_makes_one_room() {
    let ts = TestServer::start(1).await;
    let id = uuid::Uuid::new_v4().to_string();
    let headers =
        [("Repeatability-Request-ID", id.as_str()), ("Repeatability-First-Sent", "Mon, 30 Nov 2026 12:00:00 GMT")];
    let create = || ts.api.call_with_headers(Method::POST, "/rooms?api-version=2024-04-15", Some(json!({})), &headers);
    let (status, _, first) = create().await;
    assert_eq!(status, 201, "{first}");
    let (status, _, again) = create().await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(first["id"], again["id"]);
    let (status, list) = ts.api.call(Method::GET, "/rooms?api-version=2024-04-15", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1), "{list}");
    ts.stop().await;
}
