//! Call automation test helpers: the app's callback receiver (a real HTTP server on loopback
//! that records every delivery and checks each one's signature against the server's JWKS), the
//! REST calls and the client-side waits the call automation tests share.

use super::media::{TestServer, wait_signal};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::client::Client;
use switchboard::config::Bounded;
use switchboard::signaling::messages::{CallState, EndReason, ServerMessage};

pub const WAIT: Duration = Duration::from_secs(5);
pub const V: &str = "api-version=2024-09-15";

pub async fn server(ring_secs: i64) -> TestServer {
    TestServer::start_with(2, |c| c.calls.ring_timeout_seconds = Bounded::try_from(ring_secs).expect("in range")).await
}

/// The app's callback receiver: a real HTTP server on loopback that records every delivery.
pub struct App {
    pub got: Mutex<Vec<(String, Bytes)>>,
    pub url: String,
}

pub async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    app.got.lock().expect("receiver lock").push((auth, body));
    StatusCode::OK
}

pub async fn app() -> Arc<App> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Arc::new(App { got: Mutex::new(Vec::new()), url: format!("http://{addr}/callbacks") });
    let router = axum::Router::new().route("/callbacks", axum::routing::post(receive)).with_state(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.expect("receiver serves") });
    app
}

impl App {
    /// Every event delivered for connection `id`, in arrival order, after checking its signature
    /// against the server's published keys: (type without prefix, data).
    pub async fn events(&self, ts: &TestServer, id: &str) -> Vec<(String, Value)> {
        let (status, jwks) = ts.api.get_public("/.well-known/jwks.json").await;
        assert_eq!(status, 200);
        let jwks: Value = serde_json::from_str(&jwks).expect("jwks json");
        let got = self.got.lock().expect("receiver lock").clone();
        let mut out = Vec::new();
        for (auth, body) in got {
            let envelope: Value = serde_json::from_slice(&body).expect("json body");
            let event = &envelope[0];
            if event["data"]["callConnectionId"] != id {
                continue;
            }
            let claims = verify_against_jwks(auth.strip_prefix("Bearer ").expect("a bearer token"), &jwks);
            assert_eq!(claims["aud"], self.url.as_str(), "the token is for this callback");
            assert_eq!(claims["body_sha256"], sha256_b64url(&body), "the token is bound to this body");
            assert_eq!(event["subject"], format!("calling/callConnections/{id}"));
            let kind = event["type"].as_str().expect("type");
            let name = kind.strip_prefix("Microsoft.Communication.").expect("an ACS event type");
            out.push((name.to_owned(), event["data"].clone()));
        }
        out
    }

    /// Wait until connection `id` got an event `name`; returns its data.
    pub async fn wait(&self, ts: &TestServer, id: &str, name: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((_, data)) = self.events(ts, id).await.into_iter().find(|(n, _)| n == name) {
                return data;
            }
            assert!(Instant::now() < deadline, "no {name} for {id}; got {:?}", self.names(ts, id).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn names(&self, ts: &TestServer, id: &str) -> Vec<String> {
        self.events(ts, id).await.into_iter().map(|(n, _)| n).collect()
    }
}

/// Verify an ES256 JWT against a JWKS document; returns its claims.
pub fn verify_against_jwks(jwt: &str, jwks: &Value) -> Value {
    let mut parts = jwt.split('.');
    let (h, c, s) = (parts.next().expect("header"), parts.next().expect("claims"), parts.next().expect("sig"));
    assert!(parts.next().is_none(), "three parts");
    let header: Value = serde_json::from_slice(&B64URL.decode(h).expect("b64")).expect("json");
    assert_eq!(header["alg"], "ES256");
    let kid = header["kid"].as_str().expect("kid header");
    let jwk = jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == kid).expect("kid is in the JWKS");
    let mut point = vec![4u8];
    point.extend(B64URL.decode(jwk["x"].as_str().expect("x")).expect("b64"));
    point.extend(B64URL.decode(jwk["y"].as_str().expect("y")).expect("b64"));
    let sig = B64URL.decode(s).expect("b64");
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .expect("signature verifies with the published key");
    serde_json::from_slice(&B64URL.decode(c).expect("b64")).expect("claims json")
}

pub fn sha256_b64url(body: &[u8]) -> String {
    B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref())
}

pub async fn device(ts: &TestServer, token: &str, name: &str) -> Client {
    let c = ts.client().await;
    c.register(token, Some(name)).await.expect("register");
    c
}

pub fn user(raw: &str) -> Value {
    json!({"rawId": raw, "communicationUser": {"id": raw}})
}

pub async fn incoming(c: &mut Client) -> (String, String, Option<String>) {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::IncomingCall { .. })).await {
        Some(ServerMessage::IncomingCall { call_id, caller, .. }) => (call_id, caller.identity, caller.display_name),
        other => panic!("no incoming call: {other:?}"),
    }
}

pub async fn ring_ended(c: &mut Client) -> EndReason {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::IncomingCallEnded { .. })).await {
        Some(ServerMessage::IncomingCallEnded { code, .. }) => code,
        other => panic!("no end of ringing: {other:?}"),
    }
}

pub async fn disconnected(c: &mut Client) -> Option<EndReason> {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { state: CallState::Disconnected, .. }))
        .await
    {
        Some(ServerMessage::CallStateChanged { code, .. }) => code,
        other => panic!("not disconnected: {other:?}"),
    }
}

pub async fn create_call(ts: &TestServer, app: &App, targets: &[&str]) -> Value {
    let body = json!({
        "targets": targets.iter().map(|t| user(t)).collect::<Vec<_>>(),
        "callbackUri": app.url,
        "operationContext": "ctx-create",
        "sourceDisplayName": "Contoso IVR",
    });
    let (status, props) = ts.api.call(Method::POST, &format!("/calling/callConnections?{V}"), Some(body)).await;
    assert_eq!(status, 201, "{props}");
    props
}

pub async fn get_call(ts: &TestServer, id: &str) -> (u16, Value) {
    ts.api.call(Method::GET, &format!("/calling/callConnections/{id}?{V}"), None).await
}

pub async fn participants(ts: &TestServer, id: &str) -> Vec<(String, bool)> {
    let (status, body) =
        ts.api.call(Method::GET, &format!("/calling/callConnections/{id}/participants?{V}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|p| {
            (p["identifier"]["rawId"].as_str().expect("rawId").to_owned(), p["isMuted"].as_bool().expect("isMuted"))
        })
        .collect()
}

/// Poll until the connection reports `state` (or 404 for `"gone"`).
pub async fn wait_state(ts: &TestServer, id: &str, state: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get_call(ts, id).await;
        let now = if status == 404 {
            "gone".to_owned()
        } else {
            body["callConnectionState"].as_str().unwrap_or("?").to_owned()
        };
        if now == state {
            return;
        }
        assert!(Instant::now() < deadline, "connection {id} is {now} ({status} {body}), not {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn post(ts: &TestServer, path: &str, body: Value) -> (u16, Value) {
    ts.api.call(Method::POST, &format!("/calling/callConnections/{path}?{V}"), Some(body)).await
}

/// Wait until connection `id` has `n` events `name`; returns their data in order.
pub async fn wait_n(app: &App, ts: &TestServer, id: &str, name: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: Vec<Value> = app.events(ts, id).await.into_iter().filter(|(e, _)| e == name).map(|(_, d)| d).collect();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} {name} of {n}; got {:?}", got.len(), app.names(ts, id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
