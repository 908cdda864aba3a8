//! Webhook delivery against real HTTP receivers on loopback: order per call, signatures that
//! verify against the server's published JWKS, a receiver that is down for 10 s, rejections,
//! expiry, overflow and shutdown — each outcome counted.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use common::automation::{sha256_b64url, verify_against_jwks};
use common::{Api, test_config};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::auth::{KeyRing, SigningKey};
use switchboard::config::{Bounded, WebhooksSection};
use switchboard::webhooks::{AcsEvent, Webhooks};
use tokio_util::sync::CancellationToken;

/// One request the receiver saw.
#[derive(Clone)]
struct Got {
    authorization: String,
    body: Bytes,
    path: String,
    status: u16,
    at: Instant,
}

/// A callback receiver: records every request and answers `status` (with `Retry-After` when
/// set); with `jitter`, answers after a delay that varies per event (reorders parallel
/// deliveries); with the gate closed, holds requests until it opens.
struct Receiver {
    got: Mutex<Vec<Got>>,
    status: AtomicU16,
    retry_after: Mutex<Option<String>>,
    jitter: bool,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    fn new(status: u16, jitter: bool, gate_open: bool) -> Arc<Self> {
        Arc::new(Self {
            got: Mutex::new(Vec::new()),
            status: AtomicU16::new(status),
            retry_after: Mutex::new(None),
            jitter,
            gate: tokio::sync::watch::channel(gate_open).0,
        })
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("receiver lock").clone()
    }

    fn delivered(&self) -> Vec<Got> {
        self.got().into_iter().filter(|g| (200..300).contains(&g.status)).collect()
    }
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    if r.jitter {
        let seq = event_data(&body)["seq"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis((seq * 7919) % 23)).await;
    }
    let mut gate = r.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let status = r.status.load(Ordering::SeqCst);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    r.got.lock().expect("receiver lock").push(Got {
        authorization: auth,
        body,
        path: uri.path().to_owned(),
        status,
        at: Instant::now(),
    });
    let mut out = HeaderMap::new();
    if let Some(ra) = r.retry_after.lock().expect("lock").clone() {
        out.insert("retry-after", ra.parse().expect("header value"));
    }
    (StatusCode::from_u16(status).expect("status"), out)
}

async fn serve_receiver(listener: tokio::net::TcpListener, r: Arc<Receiver>) -> SocketAddr {
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/{*path}", axum::routing::post(receive)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
    addr
}

async fn start_receiver(r: Arc<Receiver>) -> SocketAddr {
    serve_receiver(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"), r).await
}

fn event_data(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v[0]["data"].clone()
}

fn event(call: &str, seq: u64) -> AcsEvent {
    AcsEvent {
        name: "ParticipantsUpdated",
        subject: format!("calling/callConnections/{call}"),
        data: json!({"callConnectionId": call, "serverCallId": "srv", "correlationId": "corr", "seq": seq}),
    }
}

/// Quick retries for tests.
fn fast_config() -> WebhooksSection {
    WebhooksSection {
        request_timeout_ms: Bounded::new_const(2_000),
        retry_for_seconds: Bounded::new_const(60),
        initial_backoff_ms: Bounded::new_const(50),
        max_backoff_ms: Bounded::new_const(500),
        ..WebhooksSection::default()
    }
}

fn key_ring() -> Arc<KeyRing> {
    let pem = SigningKey::generate_pem().expect("generate");
    Arc::new(KeyRing::new(SigningKey::from_pem(pem.as_bytes(), "test").expect("parse"), vec![]))
}

struct Harness {
    webhooks: Webhooks,
    registry: prometheus::Registry,
}

fn harness(config: &WebhooksSection) -> Harness {
    let registry = prometheus::Registry::new();
    let webhooks = Webhooks::new(config, key_ring(), &registry, CancellationToken::new());
    Harness { webhooks, registry }
}

/// A counter or gauge value from the registry; `label` is `(name, value)` or none.
fn metric(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).expect("metrics encode");
    let series = match label {
        Some((k, v)) => format!("{name}{{{k}=\"{v}\"}} "),
        None => format!("{name} "),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

fn outcome(h: &Harness, result: &str) -> f64 {
    metric(&h.registry, "webhook_deliveries_total", Some(("result", result)))
}

/// Poll `cond` until it holds; a generous limit only guards against hanging.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (a) The running server's dispatcher: events of each call arrive in publish order although the
/// receiver answers after varying delays, and each is signed by the key in the server's JWKS,
/// for this callback and this exact body.
#[tokio::test]
async fn server_delivers_in_order_per_call_signed_by_the_published_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = switchboard::server::start(test_config(dir.path())).await.expect("server starts");
    let api = Api::new(&running.connection_string(), &std::fs::read(&running.trust_cert).expect("CA"));
    let (status, jwks) = api.get_public("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&jwks).expect("jwks json");

    let r = Receiver::new(200, true, true);
    let addr = start_receiver(r.clone()).await;
    let webhooks = running.webhooks();
    let calls = ["call-a", "call-b", "call-c"];
    let uris: Vec<_> = calls
        .iter()
        .map(|c| webhooks.validate(&format!("http://{addr}/events/{c}?tenant=1")).expect("loopback is allowed"))
        .collect();
    assert!(webhooks.validate("https://example.com/cb").is_err(), "the default allow-list is loopback only");
    const N: u64 = 15;
    for seq in 0..N {
        for (call, uri) in calls.iter().zip(&uris) {
            webhooks.publish(uri, call, event(call, seq));
        }
    }
    wait_until("every event", Duration::from_secs(30), || r.delivered().len() == calls.len() * N as usize).await;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    for (call, uri) in calls.iter().zip(&uris) {
        let mine: Vec<Got> = r.delivered().into_iter().filter(|g| g.path == format!("/events/{call}")).collect();
        let seqs: Vec<u64> = mine.iter().map(|g| event_data(&g.body)["seq"].as_u64().expect("seq")).collect();
        assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "{call}: publish order");
        for g in &mine {
            let jwt = g.authorization.strip_prefix("Bearer ").expect("bearer token");
            let claims = verify_against_jwks(jwt, &jwks);
            assert_eq!(claims["aud"], uri.as_str());
            assert_eq!(claims["iss"], running.endpoint.as_str());
            assert_eq!(claims["body_sha256"], sha256_b64url(&g.body), "token bound to this body");
            let iat = claims["iat"].as_i64().expect("iat");
            assert!((iat - now).abs() < 60, "iat {iat} near now {now}");
            assert_eq!(claims["exp"].as_i64().expect("exp") - iat, 300);
            let envelope: Value = serde_json::from_slice(&g.body).expect("json");
            assert_eq!(envelope[0]["type"], "Microsoft.Communication.ParticipantsUpdated");
            assert_eq!(envelope[0]["source"], format!("calling/callConnections/{call}"));
        }
    }
    let (_, text) = api.get_public("/metrics").await;
    let want = format!("switchboard_webhook_deliveries_total{{result=\"delivered\"}} {}", calls.len() * N as usize);
    assert!(text.contains(&want), "{want} in:\n{text}");
    running.stop().await;
}

/// (b) A receiver that is down (nothing listening) for 10 s gets every event afterwards, in
/// order, each once.
#[tokio::test]
async fn receiver_down_for_ten_seconds_still_gets_everything_in_order() {
    let h = harness(&fast_config());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let uri = h.webhooks.validate(&format!("http://127.0.0.1:{port}/cb")).expect("valid");
    let start = Instant::now();
    for seq in 0..5 {
        h.webhooks.publish(&uri, "call-1", event("call-1", seq));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for seq in 5..10 {
        h.webhooks.publish(&uri, "call-1", event("call-1", seq));
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(start.elapsed())).await;
    assert!(metric(&h.registry, "webhook_delivery_retries_total", Some(("reason", "connection"))) > 0.0);
    wait_until("the call's front event in backoff", Duration::from_secs(5), || {
        metric(&h.registry, "webhook_retries_pending", None) == 1.0
    })
    .await;
    assert_eq!(metric(&h.registry, "webhook_queue_depth", None), 10.0);

    let r = Receiver::new(200, false, true);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind the reserved port");
    serve_receiver(listener, r.clone()).await;
    wait_until("all ten after the receiver came up", Duration::from_secs(30), || r.delivered().len() == 10).await;
    let seqs: Vec<u64> = r.got().iter().map(|g| event_data(&g.body)["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "in order, each exactly once");
    wait_until("the books to settle", Duration::from_secs(5), || outcome(&h, "delivered") == 10.0).await;
    assert_eq!(metric(&h.registry, "webhook_retries_pending", None), 0.0);
    assert_eq!(metric(&h.registry, "webhook_queue_depth", None), 0.0);
    assert_eq!(outcome(&h, "expired"), 0.0);
}

/// (c) A 4xx other than 429 is the receiver's final word: not retried, counted as rejected, and
/// the next event of the call goes out.
#[tokio::test]
async fn client_error_is_not_retried_and_is_counted() {
    let h = harness(&fast_config());
    let r = Receiver::new(400, false, true);
    let addr = start_receiver(r.clone()).await;
    let uri = h.webhooks.validate(&format!("http://{addr}/cb")).expect("valid");
    for seq in 0..3 {
        h.webhooks.publish(&uri, "call-1", event("call-1", seq));
    }
    wait_until("three rejections", Duration::from_secs(10), || outcome(&h, "rejected") == 3.0).await;
    assert_eq!(h.webhooks.queued(), 0, "nothing left to retry");
    let seqs: Vec<u64> = r.got().iter().map(|g| event_data(&g.body)["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, [0, 1, 2], "each tried exactly once");
    let retries: f64 = ["timeout", "connection", "server_error", "throttled"]
        .iter()
        .map(|reason| metric(&h.registry, "webhook_delivery_retries_total", Some(("reason", reason))))
        .sum();
    assert_eq!(retries, 0.0);
    assert_eq!(outcome(&h, "delivered"), 0.0);
}

/// (d) A receiver that keeps failing: each event is retried until `retry_for` has passed, then
/// dropped and counted as expired, and the call's next event is not blocked forever.
#[tokio::test]
async fn retries_stop_at_retry_for_and_the_event_is_counted_expired() {
    let config = WebhooksSection { retry_for_seconds: Bounded::new_const(1), ..fast_config() };
    let h = harness(&config);
    let r = Receiver::new(503, false, true);
    let addr = start_receiver(r.clone()).await;
    let uri = h.webhooks.validate(&format!("http://{addr}/cb")).expect("valid");
    h.webhooks.publish(&uri, "call-1", event("call-1", 0));
    h.webhooks.publish(&uri, "call-1", event("call-1", 1));
    wait_until("both expired", Duration::from_secs(20), || outcome(&h, "expired") == 2.0).await;
    let attempts = |seq: u64| r.got().iter().filter(|g| event_data(&g.body)["seq"] == seq).count();
    assert!(attempts(0) > 1, "retried before expiring: {} attempts", attempts(0));
    // `retry_for` counts from publishing: the second event aged while the first was retried, so
    // it gets what is left (at least one attempt), not a fresh second.
    assert!(attempts(1) >= 1, "the second event was tried, not dropped unseen");
    assert!(metric(&h.registry, "webhook_delivery_retries_total", Some(("reason", "server_error"))) >= 2.0);
    assert_eq!(outcome(&h, "delivered"), 0.0);
    assert_eq!(h.webhooks.queued(), 0);
    assert_eq!(metric(&h.registry, "webhook_retries_pending", None), 0.0);
}

/// A 429 with `Retry-After: 1` delays the next attempt by at least that second, even though
/// the configured backoff is 50 ms.
#[tokio::test]
async fn retry_after_is_respected() {
    let h = harness(&fast_config());
    let r = Receiver::new(429, false, true);
    *r.retry_after.lock().expect("lock") = Some("1".into());
    let addr = start_receiver(r.clone()).await;
    let uri = h.webhooks.validate(&format!("http://{addr}/cb")).expect("valid");
    h.webhooks.publish(&uri, "call-1", event("call-1", 0));
    wait_until("the first attempt", Duration::from_secs(10), || !r.got().is_empty()).await;
    r.status.store(200, Ordering::SeqCst);
    wait_until("delivery", Duration::from_secs(10), || outcome(&h, "delivered") == 1.0).await;
    let got = r.got();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(950), "waited {gap:?}, asked for 1 s");
    assert_eq!(metric(&h.registry, "webhook_delivery_retries_total", Some(("reason", "throttled"))), 1.0);
}

/// (f) Over the per-call cap or the total cap, events are dropped at once and counted; the
/// event being delivered counts against the caps.
#[tokio::test]
async fn overflow_is_dropped_and_counted() {
    let config = WebhooksSection {
        max_queued_per_call: Bounded::new_const(2),
        max_queued_total: Bounded::new_const(3),
        ..fast_config()
    };
    let h = harness(&config);
    let r = Receiver::new(200, false, false);
    let addr = start_receiver(r.clone()).await;
    let uri = h.webhooks.validate(&format!("http://{addr}/cb")).expect("valid");
    for seq in 0..5 {
        h.webhooks.publish(&uri, "call-a", event("call-a", seq));
    }
    assert_eq!(outcome(&h, "dropped_overflow"), 3.0, "per-call cap 2");
    for seq in 0..2 {
        h.webhooks.publish(&uri, "call-b", event("call-b", seq));
    }
    assert_eq!(outcome(&h, "dropped_overflow"), 4.0, "total cap 3");
    assert_eq!(metric(&h.registry, "webhook_queue_depth", None), 3.0);
    r.gate.send_replace(true);
    wait_until("the three kept", Duration::from_secs(10), || outcome(&h, "delivered") == 3.0).await;
    let a: Vec<Value> =
        r.got().iter().map(|g| event_data(&g.body)).filter(|d| d["callConnectionId"] == "call-a").collect();
    assert_eq!(a.iter().map(|d| d["seq"].as_u64().expect("seq")).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(metric(&h.registry, "webhook_queue_depth", None), 0.0);
}

/// Shutdown stops delivery: what is queued (the event in flight included) is counted as
/// dropped_shutdown, and so is anything published afterwards.
#[tokio::test]
async fn shutdown_counts_what_was_undelivered() {
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let webhooks = Webhooks::new(&fast_config(), key_ring(), &registry, shutdown.clone());
    let r = Receiver::new(200, false, false);
    let addr = start_receiver(r.clone()).await;
    let uri = webhooks.validate(&format!("http://{addr}/cb")).expect("valid");
    for seq in 0..3 {
        webhooks.publish(&uri, "call-1", event("call-1", seq));
    }
    shutdown.cancel();
    let dropped =
        |r: &prometheus::Registry| metric(r, "webhook_deliveries_total", Some(("result", "dropped_shutdown")));
    wait_until("the worker to notice", Duration::from_secs(10), || dropped(&registry) == 3.0).await;
    assert_eq!(webhooks.close(), 0, "already closed by the cancelled token");
    webhooks.publish(&uri, "call-1", event("call-1", 3));
    assert_eq!(dropped(&registry), 4.0);
    assert_eq!(webhooks.queued(), 0);
}
