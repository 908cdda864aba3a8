//! Call automation over REST (ACS Call Automation, `api-version=2024-09-15`) against a real
//! server, with QUIC clients as the people called: create a call (the target's devices ring like
//! a client's call, the server's leg is in the room), list participants, add (ring, timeout,
//! cancel), mute (their audio stops being forwarded), remove (disconnected with a reason), hang
//! up and terminate, decline.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use common::media::{Participant, TestServer, wait_signal};
use common::wav;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::call_automation::audio::dtmf::{Tone, ToneDetector, tone_packets};
use switchboard::client::Client;
use switchboard::config::Bounded;
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{CallState, EndReason, ServerMessage};

const WAIT: Duration = Duration::from_secs(5);
const V: &str = "api-version=2024-09-15";

async fn server(ring_secs: i64) -> TestServer {
    TestServer::start_with(2, |c| c.calls.ring_timeout_seconds = Bounded::try_from(ring_secs).expect("in range")).await
}

/// The app's callback receiver: a real HTTP server on loopback that records every delivery.
struct App {
    got: Mutex<Vec<(String, Bytes)>>,
    url: String,
}

async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    app.got.lock().expect("receiver lock").push((auth, body));
    StatusCode::OK
}

async fn app() -> Arc<App> {
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
    async fn events(&self, ts: &TestServer, id: &str) -> Vec<(String, Value)> {
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
    async fn wait(&self, ts: &TestServer, id: &str, name: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((_, data)) = self.events(ts, id).await.into_iter().find(|(n, _)| n == name) {
                return data;
            }
            assert!(Instant::now() < deadline, "no {name} for {id}; got {:?}", self.names(ts, id).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn names(&self, ts: &TestServer, id: &str) -> Vec<String> {
        self.events(ts, id).await.into_iter().map(|(n, _)| n).collect()
    }
}

/// Verify an ES256 JWT against a JWKS document; returns its claims.
fn verify_against_jwks(jwt: &str, jwks: &Value) -> Value {
    let mut parts = jwt.split('.');
    let (h, c, s) = (parts.next().expect("header"), parts.next().expect("claims"), parts.next().expect("sig"));
    let header: Value = serde_json::from_slice(&B64URL.decode(h).expect("b64")).expect("json");
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

fn sha256_b64url(body: &[u8]) -> String {
    B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref())
}

async fn device(ts: &TestServer, token: &str, name: &str) -> Client {
    let c = ts.client().await;
    c.register(token, Some(name)).await.expect("register");
    c
}

fn user(raw: &str) -> Value {
    json!({"rawId": raw, "communicationUser": {"id": raw}})
}

async fn incoming(c: &mut Client) -> (String, String, Option<String>) {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::IncomingCall { .. })).await {
        Some(ServerMessage::IncomingCall { call_id, caller }) => (call_id, caller.identity, caller.display_name),
        other => panic!("no incoming call: {other:?}"),
    }
}

async fn ring_ended(c: &mut Client) -> EndReason {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::IncomingCallEnded { .. })).await {
        Some(ServerMessage::IncomingCallEnded { code, .. }) => code,
        other => panic!("no end of ringing: {other:?}"),
    }
}

async fn disconnected(c: &mut Client) -> Option<EndReason> {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { state: CallState::Disconnected, .. }))
        .await
    {
        Some(ServerMessage::CallStateChanged { code, .. }) => code,
        other => panic!("not disconnected: {other:?}"),
    }
}

async fn create_call(ts: &TestServer, app: &App, targets: &[&str]) -> Value {
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

async fn get_call(ts: &TestServer, id: &str) -> (u16, Value) {
    ts.api.call(Method::GET, &format!("/calling/callConnections/{id}?{V}"), None).await
}

async fn participants(ts: &TestServer, id: &str) -> Vec<(String, bool)> {
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
async fn wait_state(ts: &TestServer, id: &str, state: &str) {
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

async fn post(ts: &TestServer, path: &str, body: Value) -> (u16, Value) {
    ts.api.call(Method::POST, &format!("/calling/callConnections/{path}?{V}"), Some(body)).await
}

/// The whole life of a call: the target rings like a client's call, answers, the connection is
/// connected and lists it; a second person is added and answers; one is muted (the other stops
/// receiving its audio), one removed (disconnected with `RemovedFromCall`); the call ends for
/// everyone on terminate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_call_add_mute_remove_terminate() {
    let ts = server(30).await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let (carol_raw, carol_token) = ts.identity(&["voip"]).await;
    let mut bob_phone = device(&ts, &bob_token, "Bob").await;
    let mut bob_laptop = device(&ts, &bob_token, "Bob").await;
    let mut carol = device(&ts, &carol_token, "Carol").await;

    let props = create_call(&ts, &app, &[&bob_raw]).await;
    let id = props["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    assert_eq!(props["callConnectionState"], "connecting");
    assert_eq!(props["callbackUri"], app.url.as_str());
    assert_eq!(props["targets"][0]["rawId"], bob_raw);
    assert_eq!(props["sourceDisplayName"], "Contoso IVR");
    let source = props["source"]["rawId"].as_str().expect("source").to_owned();
    assert!(source.starts_with("8:acs:"), "{source}");
    assert!(props["serverCallId"].as_str().is_some_and(|s| !s.is_empty()));

    // Every device of the target rings, as for a call from a client, from the service's identity.
    let (call_id, caller, name) = incoming(&mut bob_phone).await;
    assert_eq!((caller.as_str(), name.as_deref()), (source.as_str(), Some("Contoso IVR")));
    assert_eq!(incoming(&mut bob_laptop).await.0, call_id);
    let answered = bob_laptop.accept_call(&call_id).await.expect("accept");
    assert_eq!(answered.state, CallState::Connected);
    assert_eq!(answered.participants.len(), 1, "the server's leg is in the call");
    assert_eq!(answered.participants[0].identity, source);
    assert_eq!(ring_ended(&mut bob_phone).await, EndReason::AnsweredElsewhere);
    wait_state(&ts, &id, "connected").await;
    assert_eq!(participants(&ts, &id).await, vec![(bob_raw.clone(), false)]);
    let connected = app.wait(&ts, &id, "CallConnected").await;
    assert_eq!(connected["operationContext"], "ctx-create");
    assert_eq!(connected["serverCallId"], props["serverCallId"]);
    assert_eq!(connected["correlationId"], props["correlationId"]);
    let updated = app.wait(&ts, &id, "ParticipantsUpdated").await;
    assert_eq!(updated["participants"][0]["identifier"]["rawId"], bob_raw);
    let (status, one) = ts
        .api
        .call(
            Method::GET,
            &format!("/calling/callConnections/{id}/participants/{}?{V}", common::encode_id(&bob_raw)),
            None,
        )
        .await;
    assert_eq!((status, &one["identifier"]["rawId"]), (200, &json!(bob_raw)));

    // Add Carol: she rings, answers, and is listed.
    let (status, added) = post(
        &ts,
        &format!("{id}/participants:add"),
        json!({"participantToAdd": user(&carol_raw), "invitationTimeoutInSeconds": 20, "operationContext": "ctx-add"}),
    )
    .await;
    assert_eq!(status, 202, "{added}");
    assert!(added["invitationId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(added["operationContext"], "ctx-add");
    assert_eq!(added["participant"]["identifier"]["rawId"], carol_raw);
    let (carol_call, _, _) = incoming(&mut carol).await;
    assert_eq!(carol_call, call_id, "she is rung into the same call");
    carol.accept_call(&carol_call).await.expect("carol answers");
    let added_ok = app.wait(&ts, &id, "AddParticipantSucceeded").await;
    assert_eq!(
        (&added_ok["participant"]["rawId"], &added_ok["operationContext"]),
        (&json!(carol_raw), &json!("ctx-add"))
    );
    assert_eq!(added_ok["resultInformation"]["code"], 200);
    let deadline = Instant::now() + WAIT;
    while participants(&ts, &id).await.len() < 2 {
        assert!(Instant::now() < deadline, "carol is never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bob publishes audio and Carol hears it; Bob is muted by the service: nothing of his audio
    // reaches Carol any more, and he is listed as muted.
    let mut bob = Participant::new(bob_laptop, 1);
    bob.audio = Some(bob.client.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publish audio"));
    let mut carol = Participant::new(carol, 2);
    assert!(carol.wait_until(WAIT, |p| !p.announced_tracks().is_empty()).await, "carol learns of bob's audio");
    let (track, _) = carol.announced_tracks()[0];
    let sub = carol.client.subscribe(track, None, None).await.expect("subscribe");
    let (mut bob, mut carol) = run_both(bob, carol, Duration::from_millis(800)).await;
    let before = carol.received.get(&sub.subscription_id).map_or(0, Vec::len);
    assert!(before > 20, "carol hears bob before the mute: {before} packets");
    let (status, body) = post(
        &ts,
        &format!("{id}/participants:mute"),
        json!({"targetParticipants": [user(&bob_raw)], "operationContext": "ctx-mute"}),
    )
    .await;
    assert_eq!((status, &body["operationContext"]), (200, &json!("ctx-mute")), "{body}");
    assert!(
        bob.wait_until(WAIT, |p| p
            .signals
            .iter()
            .any(|m| matches!(m, ServerMessage::TrackMuted { muted: true, by: Some(_), .. })))
            .await,
        "bob is told he was muted"
    );
    // Packets forwarded before the mute took effect may still be on their way: let them land.
    carol.wait_until(Duration::from_millis(300), |_| false).await;
    carol.received.clear();
    let (bob, mut carol) = run_both(bob, carol, Duration::from_millis(800)).await;
    assert_eq!(carol.received.get(&sub.subscription_id).map_or(0, Vec::len), 0, "no audio of bob after the mute");
    assert!(participants(&ts, &id).await.contains(&(bob_raw.clone(), true)), "bob is listed as muted");

    // Remove Carol: her session is disconnected with RemovedFromCall; Bob stays.
    let (status, body) = post(
        &ts,
        &format!("{id}/participants:remove"),
        json!({"participantToRemove": user(&carol_raw), "operationContext": "ctx-rm"}),
    )
    .await;
    assert_eq!((status, &body["operationContext"]), (202, &json!("ctx-rm")), "{body}");
    assert_eq!(disconnected(&mut carol.client).await, Some(EndReason::RemovedFromCall));
    assert_eq!(participants(&ts, &id).await.into_iter().map(|p| p.0).collect::<Vec<_>>(), vec![bob_raw.clone()]);
    let (status, _) =
        post(&ts, &format!("{id}/participants:remove"), json!({"participantToRemove": user(&carol_raw)})).await;
    assert_eq!(status, 404, "she is not in the call any more");

    // Terminate: the call ends for Bob too, and the connection is gone.
    let (status, body) = post(&ts, &format!("{id}:terminate"), json!({})).await;
    assert_eq!(status, 204, "{body}");
    let mut bob_client = bob.client;
    assert_eq!(disconnected(&mut bob_client).await, Some(EndReason::HungUp));
    wait_state(&ts, &id, "gone").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ts.metric("switchboard_call_automation_operations_total{operation=\"create_call\",result=\"ok\"}").await,
        1.0
    );
    assert_eq!(ts.metric("switchboard_call_automation_operations_total{operation=\"mute\",result=\"ok\"}").await, 1.0);
    assert_eq!(ts.metric("switchboard_call_connections{state=\"connected\"}").await, 0.0);
    ts.stop().await;
}

async fn run_both(mut a: Participant, mut b: Participant, d: Duration) -> (Participant, Participant) {
    tokio::join!(
        async move {
            a.run(d).await;
            a
        },
        async move {
            b.run(d).await;
            b
        }
    )
}

/// The target declines: the connection ends (no participant ever joined). The service's leg
/// hanging up a connected 1:1 call ends it for the target (one party left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_fails_the_call_and_hang_up_ends_a_1to1_call() {
    let ts = server(30).await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let props = create_call(&ts, &app, &[&bob_raw]).await;
    let id = props["callConnectionId"].as_str().expect("id").to_owned();
    let (call, _, _) = incoming(&mut bob).await;
    bob.reject_call(&call).await.expect("decline");
    wait_state(&ts, &id, "gone").await;
    let failed = app.wait(&ts, &id, "CreateCallFailed").await;
    assert_eq!(failed["resultInformation"]["code"], 603);
    app.wait(&ts, &id, "CallDisconnected").await;
    assert_eq!(app.names(&ts, &id).await, vec!["CreateCallFailed", "CallDisconnected"], "never connected");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_calls_ended_total{reason=\"declined\"}").await, 1.0);

    // Called again, Bob answers; the service hangs up: Bob is left alone and the call ends.
    let props = create_call(&ts, &app, &[&bob_raw]).await;
    let id = props["callConnectionId"].as_str().expect("id").to_owned();
    let (call, _, _) = incoming(&mut bob).await;
    bob.accept_call(&call).await.expect("accept");
    wait_state(&ts, &id, "connected").await;
    let (status, body) = ts.api.call(Method::DELETE, &format!("/calling/callConnections/{id}?{V}"), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(disconnected(&mut bob).await, Some(EndReason::HungUp));
    wait_state(&ts, &id, "gone").await;
    assert_eq!(app.wait(&ts, &id, "CallDisconnected").await["resultInformation"]["code"], 200);
    let (status, body) = ts.api.call(Method::DELETE, &format!("/calling/callConnections/{id}?{V}"), None).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("CallConnectionNotFound")));
    ts.stop().await;
}

/// An invitation nobody answers stops ringing at its own timeout; a cancelled one stops at once;
/// the call goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_timeout_and_cancel() {
    let ts = server(30).await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let (carol_raw, carol_token) = ts.identity(&["voip"]).await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let mut carol = device(&ts, &carol_token, "Carol").await;
    let id = create_call(&ts, &app, &[&bob_raw]).await["callConnectionId"].as_str().expect("id").to_owned();
    let (call, _, _) = incoming(&mut bob).await;
    bob.accept_call(&call).await.expect("accept");
    wait_state(&ts, &id, "connected").await;

    let started = Instant::now();
    let (status, body) = post(
        &ts,
        &format!("{id}/participants:add"),
        json!({"participantToAdd": user(&carol_raw), "invitationTimeoutInSeconds": 1}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let _ = incoming(&mut carol).await;
    assert_eq!(ring_ended(&mut carol).await, EndReason::NoAnswer);
    let took = started.elapsed();
    let failed = app.wait(&ts, &id, "AddParticipantFailed").await;
    assert_eq!(
        (&failed["participant"]["rawId"], &failed["resultInformation"]["code"]),
        (&json!(carol_raw), &json!(408))
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "rang for {took:?}, not the 1 s asked"
    );
    wait_state(&ts, &id, "connected").await;

    let (status, added) =
        post(&ts, &format!("{id}/participants:add"), json!({"participantToAdd": user(&carol_raw)})).await;
    assert_eq!(status, 202, "{added}");
    let _ = incoming(&mut carol).await;
    let invitation = added["invitationId"].as_str().expect("invitationId");
    let (status, body) = post(
        &ts,
        &format!("{id}/participants:cancelAddParticipant"),
        json!({"invitationId": invitation, "operationContext": "c"}),
    )
    .await;
    assert_eq!((status, &body["invitationId"]), (202, &json!(invitation)), "{body}");
    assert_eq!(ring_ended(&mut carol).await, EndReason::Cancelled);
    let cancelled = app.wait(&ts, &id, "CancelAddParticipantSucceeded").await;
    assert_eq!((&cancelled["invitationId"], &cancelled["operationContext"]), (&json!(invitation), &json!("c")));
    let (status, _) =
        post(&ts, &format!("{id}/participants:cancelAddParticipant"), json!({"invitationId": invitation})).await;
    assert_eq!(status, 404, "nothing rings under that invitation any more");
    assert_eq!(participants(&ts, &id).await, vec![(bob_raw.clone(), false)], "the call went on");
    ts.stop().await;
}

/// Bad requests get 4xx in the ACS error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_in_the_acs_shape() {
    let ts = server(30).await;
    let (bob_raw, _) = ts.identity(&["voip"]).await;
    let path = format!("/calling/callConnections?{V}");
    for (body, target) in [
        (json!({"targets": [user(&bob_raw)]}), "callbackUri"),
        (json!({"targets": [user(&bob_raw)], "callbackUri": "not a url"}), "callbackUri"),
        (json!({"targets": [user(&bob_raw)], "callbackUri": "ftp://x/y"}), "callbackUri"),
        (json!({"targets": [user(&bob_raw)], "callbackUri": "https://not-allowed.example.com/cb"}), "callbackUri"),
        (json!({"targets": [], "callbackUri": "http://127.0.0.1:9/cb"}), "targets"),
        (
            json!({"targets": [user("8:acs:other_00000000-0000-0000-0000-000000000000")], "callbackUri": "http://127.0.0.1:9/cb"}),
            "targets",
        ),
        (
            json!({"targets": [{"phoneNumber": {"value": "+14255550123"}}], "callbackUri": "http://127.0.0.1:9/cb"}),
            "targets",
        ),
    ] {
        let (status, err) = ts.api.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["error"]["target"], target, "{body} -> {err}");
    }
    let (status, err) =
        ts.api.call(Method::POST, "/calling/callConnections?api-version=2099-01-01", Some(json!({}))).await;
    assert_eq!((status, &err["error"]["code"]), (400, &json!("UnsupportedApiVersion")));
    let missing = "00000000-0000-0000-0000-000000000000";
    let (status, err) = get_call(&ts, missing).await;
    assert_eq!((status, &err["error"]["code"]), (404, &json!("CallConnectionNotFound")));
    let (status, _) = post(&ts, &format!("{missing}:terminate"), json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = get_call(&ts, "not-a-uuid").await;
    assert_eq!(status, 404);
    // Unsigned requests are refused like every management call.
    let (status, _) = ts.api.get_public(&format!("/calling/callConnections/{missing}?{V}")).await;
    assert_eq!(status, 401);
    ts.stop().await;
}

/// The prompt of the play test at 48 kHz: a loud tone, silence, a soft tone, silence.
fn prompt_signal() -> Vec<f32> {
    let mut out = Vec::new();
    for (secs, amp) in [(0.4, 0.5f32), (0.4, 0.0), (0.4, 0.15), (0.2, 0.0)] {
        let n = (secs * 48_000.0) as usize;
        out.extend((0..n).map(|i| amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin()));
    }
    out
}

/// RMS of each 100 ms of 48 kHz audio.
fn rms_per_100ms(x: &[f32]) -> Vec<f32> {
    x.chunks(4800).filter(|c| c.len() == 4800).map(|c| (c.iter().map(|v| v * v).sum::<f32>() / 4800.0).sqrt()).collect()
}

/// Collect the RTP packets of `subscription` for `d`.
async fn collect_rtp(c: &mut Client, subscription: u64, d: Duration, into: &mut Vec<Bytes>) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, c.next_event()).await {
        if let switchboard::client::ClientEvent::Rtp { subscription: s, packet } = ev
            && s == subscription
        {
            into.push(packet);
        }
    }
}

/// `play`: the target hears the leg's Opus track, and what it decodes (with an independent Opus
/// decoder) has the loudness of the file, 100 ms by 100 ms; PlayStarted and PlayCompleted arrive
/// signed. Bad sources are refused (400) or fail (PlayFailed with an ACS code); a looped play
/// ends by cancelAllMediaOperations (PlayCanceled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_a_wav_file_that_the_participant_decodes() {
    let media = tempfile::tempdir().expect("tmp");
    let signal = prompt_signal();
    std::fs::write(media.path().join("prompt.wav"), wav(&signal, 48_000)).expect("write wav");
    std::fs::write(media.path().join("noise.wav"), b"RIFF this is not a wav file at all").expect("write");
    let dir = media.path().to_path_buf();
    let ts = TestServer::start_with(2, move |c| c.call_automation.media_dir = dir).await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let props = create_call(&ts, &app, &[&bob_raw]).await;
    let id = props["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    let (call_id, _, _) = incoming(&mut bob).await;
    bob.accept_call(&call_id).await.expect("accept");
    app.wait(&ts, &id, "CallConnected").await;

    let play = |file: &str, context: &str| {
        json!({"playSources": [{"kind": "file", "file": {"uri": file}}], "operationContext": context,
               "playTo": [user(&bob_raw)]})
    };
    // The first play publishes the leg's track; Bob subscribes to it.
    let (status, body) = post(&ts, &format!("{id}:play"), play("prompt.wav", "first")).await;
    assert_eq!(status, 202, "{body}");
    let track = match wait_signal(&mut bob, WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. })).await {
        Some(ServerMessage::TrackPublished { track }) => track,
        other => panic!("the leg publishes no track: {other:?}"),
    };
    assert_eq!(track.kind, MediaKind::Audio);
    let sub = bob.subscribe(track.track_id, None, None).await.expect("subscribe");
    let first_started = app.wait(&ts, &id, "PlayStarted").await;
    assert_eq!(first_started["operationContext"], "first");
    // The second play, queued behind the first, is heard from its first packet.
    let (status, body) = post(&ts, &format!("{id}:play"), play("prompt.wav", "second")).await;
    assert_eq!(status, 202, "{body}");
    let mut packets = Vec::new();
    collect_rtp(&mut bob, sub.subscription_id, Duration::from_millis(4000), &mut packets).await;
    let names = app.names(&ts, &id).await;
    let plays: Vec<&str> = names.iter().map(String::as_str).filter(|n| n.starts_with("Play")).collect();
    assert_eq!(plays, ["PlayStarted", "PlayCompleted", "PlayStarted", "PlayCompleted"], "{names:?}");
    let events = app.events(&ts, &id).await;
    let second: Vec<&Value> =
        events.iter().filter(|(_, d)| d["operationContext"] == "second").map(|(_, d)| d).collect();
    assert_eq!(second.len(), 2);
    assert_eq!(second[1]["resultInformation"]["code"], 200);
    assert_eq!(second[1]["callConnectionId"], id.as_str());

    // The second play's packets: from the last marker bit (each play starts a talkspurt), every
    // one of them (loopback loses nothing) in sequence.
    let frames = signal.len() / 960;
    let parsed: Vec<(u16, bool, Bytes)> = packets
        .iter()
        .map(|p| {
            let h = switchboard::rtp::RtpHeader::parse(p).expect("rtp");
            assert_eq!(h.payload_type, 111, "Opus");
            (h.seq, h.marker, p.slice(h.payload.clone()))
        })
        .collect();
    let start = parsed.iter().rposition(|(_, marker, _)| *marker).expect("the second play starts with a marker");
    let second_play = &parsed[start..];
    assert!(second_play.len() >= frames, "the whole second play arrives: {} packets", second_play.len());
    assert!(
        second_play.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1)),
        "no packet of the second play is missing or out of order"
    );
    let mut decoder = rusty_opus::OpusDecoder::new(48_000, 1).expect("decoder");
    let mut heard = Vec::new();
    let mut buf = [0.0f32; 960];
    for (_, _, payload) in second_play {
        let n = decoder.decode(payload, 960, &mut buf).expect("the packet decodes");
        heard.extend_from_slice(&buf[..n]);
    }
    let want = rms_per_100ms(&signal);
    let got = rms_per_100ms(&heard);
    // Windows wholly inside a segment (not its first or last 100 ms) must match the file's level.
    for (i, w) in want.iter().enumerate() {
        let edge = [0, 3, 4, 7, 8, 11, 12].contains(&i);
        if edge || i >= got.len() {
            continue;
        }
        let g = got[i];
        if *w < 0.01 {
            assert!(g < 0.02, "window {i}: silence in the file, {g} heard ({got:?} vs {want:?})");
        } else {
            assert!((g / w - 1.0).abs() < 0.3, "window {i}: {w} in the file, {g} heard ({got:?} vs {want:?})");
        }
    }

    // A missing file and a file that is not audio fail as ACS reports them; paths out of the
    // media directory and unknown hosts are refused at once.
    let (status, _) = post(&ts, &format!("{id}:play"), play("missing.wav", "missing")).await;
    assert_eq!(status, 202);
    let (status, _) = post(&ts, &format!("{id}:play"), play("noise.wav", "noise")).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + WAIT;
    let failed = loop {
        let failed: Vec<Value> =
            app.events(&ts, &id).await.into_iter().filter(|(n, _)| n == "PlayFailed").map(|(_, d)| d).collect();
        if failed.len() == 2 || Instant::now() > deadline {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(
        (&failed[0]["operationContext"], &failed[0]["resultInformation"]["subCode"]),
        (&json!("missing"), &json!(8565))
    );
    assert_eq!(
        (&failed[1]["operationContext"], &failed[1]["resultInformation"]["subCode"]),
        (&json!("noise"), &json!(8535))
    );
    for bad in ["../prompt.wav", "/etc/passwd", "file:///etc/passwd", "https://example.com/a.wav"] {
        let (status, body) = post(&ts, &format!("{id}:play"), play(bad, "bad")).await;
        assert_eq!((status, &body["error"]["target"]), (400, &json!("playSources")), "{bad}: {body}");
    }
    let (status, body) =
        post(&ts, &format!("{id}:play"), json!({"playSources": [{"kind": "text", "text": {"text": "hi"}}]})).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("NotSupported")), "{body}");
    let (stranger, _) = ts.identity(&["voip"]).await;
    let mut to_stranger = play("prompt.wav", "x");
    to_stranger["playTo"] = json!([user(&stranger)]);
    let (status, _) = post(&ts, &format!("{id}:play"), to_stranger).await;
    assert_eq!(status, 400, "playTo must name people in the call");

    // A looped play goes on until cancelled.
    let mut looped = play("prompt.wav", "looped");
    looped["playOptions"] = json!({"loop": true});
    let (status, _) = post(&ts, &format!("{id}:play"), looped).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let looped_events: Vec<String> = app
        .events(&ts, &id)
        .await
        .into_iter()
        .filter(|(_, d)| d["operationContext"] == "looped")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(looped_events, ["PlayStarted"], "still playing after longer than the file");
    let (status, _) = post(&ts, &format!("{id}:cancelAllMediaOperations"), json!({})).await;
    assert_eq!(status, 202);
    let canceled = app.wait(&ts, &id, "PlayCanceled").await;
    assert_eq!(canceled["operationContext"], "looped");
    assert_eq!(ts.metric("switchboard_call_automation_operations_total{operation=\"play\",result=\"ok\"}").await, 5.0);
    ts.stop().await;
}

/// A participant's RFC 4733 sender on its audio track (payload type 101, 48 kHz clock).
struct TonePad {
    track: switchboard::client::PublishedTrack,
    seq: u16,
    ts: u32,
}

impl TonePad {
    /// Send `tones` paced as RFC 4733 asks (a packet per 20 ms, tones 200 ms apart).
    async fn press(&mut self, c: &Client, tones: &[Tone]) {
        let start = tokio::time::Instant::now();
        let packets = tone_packets(tones, 0x5150, 101, self.seq, self.ts, 48_000);
        self.seq = self.seq.wrapping_add(packets.len() as u16);
        self.ts = self.ts.wrapping_add(48_000 * (tones.len() as u32 + 1));
        for (offset, packet) in packets {
            tokio::time::sleep_until(start + offset).await;
            c.send_rtp(&self.track, 0, packet).expect("send a telephone-event");
        }
    }
}

/// Wait until connection `id` has `n` events `name`; returns their data in order.
async fn wait_n(app: &App, ts: &TestServer, id: &str, name: &str, n: usize) -> Vec<Value> {
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

/// DTMF both ways: a participant's RFC 4733 tones become continuous-recognition events in order,
/// `recognize` completes on max tones and on a stop tone (and fails on silence after its prompt),
/// and `sendDtmfTones` reaches the participant as telephone-events its own detector turns back
/// into the tones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_recognition_and_sending() {
    let media = tempfile::tempdir().expect("tmp");
    std::fs::write(media.path().join("menu.wav"), wav(&prompt_signal()[..24_000], 48_000)).expect("write wav");
    let long: Vec<f32> = prompt_signal().iter().copied().cycle().take(48_000 * 4).collect();
    std::fs::write(media.path().join("long.wav"), wav(&long, 48_000)).expect("write wav");
    let dir = media.path().to_path_buf();
    let ts = TestServer::start_with(2, move |c| c.call_automation.media_dir = dir).await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let props = create_call(&ts, &app, &[&bob_raw]).await;
    let id = props["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    let (call_id, _, _) = incoming(&mut bob).await;
    bob.accept_call(&call_id).await.expect("accept");
    app.wait(&ts, &id, "CallConnected").await;
    let track = bob.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publish audio");
    let mut pad = TonePad { track, seq: 1, ts: 1000 };
    let target = json!({"targetParticipant": user(&bob_raw), "operationContext": "cont"});

    // Continuous recognition: every tone once, in order, numbered.
    let (status, body) = post(&ts, &format!("{id}:startContinuousDtmfRecognition"), target.clone()).await;
    assert_eq!(status, 200, "{body}");
    // The answer comes once the leg listens to Bob's audio: tones pressed now are heard.
    pad.press(&bob, &[Tone::One, Tone::Two, Tone::One, Tone::Pound]).await;
    let tones = wait_n(&app, &ts, &id, "ContinuousDtmfRecognitionToneReceived", 4).await;
    let got: Vec<(String, u64)> = tones
        .iter()
        .map(|d| (d["tone"].as_str().expect("tone").to_owned(), d["sequenceId"].as_u64().expect("sequenceId")))
        .collect();
    assert_eq!(got, [("one".into(), 1), ("two".into(), 2), ("one".into(), 3), ("pound".into(), 4)]);
    assert_eq!(tones[0]["operationContext"], "cont");
    let (status, _) = post(&ts, &format!("{id}:stopContinuousDtmfRecognition"), target.clone()).await;
    assert_eq!(status, 200);
    app.wait(&ts, &id, "ContinuousDtmfRecognitionStopped").await;
    pad.press(&bob, &[Tone::Nine]).await;

    // recognize: max tones.
    let recognize = |max: u32, stop: &[&str], context: &str| {
        json!({"recognizeInputType": "dtmf", "operationContext": context,
               "recognizeOptions": {"targetParticipant": user(&bob_raw), "initialSilenceTimeoutInSeconds": 5,
                   "dtmfOptions": {"maxTonesToCollect": max, "stopTones": stop, "interToneTimeoutInSeconds": 3}}})
    };
    let (status, body) = post(&ts, &format!("{id}:recognize"), recognize(3, &[], "max")).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = post(&ts, &format!("{id}:recognize"), recognize(3, &[], "again")).await;
    assert_eq!(status, 400, "one recognition per participant at a time");
    pad.press(&bob, &[Tone::Five, Tone::Six, Tone::Seven, Tone::Eight]).await;
    let done = app.wait(&ts, &id, "RecognizeCompleted").await;
    assert_eq!(done["recognitionType"], "dtmf");
    assert_eq!(done["dtmfResult"]["tones"], json!(["five", "six", "seven"]));
    assert_eq!(
        (done["resultInformation"]["code"].as_u64(), done["resultInformation"]["subCode"].as_u64()),
        (Some(200), Some(8531))
    );
    assert_eq!(done["operationContext"], "max");
    // The continuous recognition was stopped: no tone events since.
    assert_eq!(
        app.events(&ts, &id).await.iter().filter(|(n, _)| n == "ContinuousDtmfRecognitionToneReceived").count(),
        4
    );

    // recognize: a stop tone ends it (and is included).
    let (status, _) = post(&ts, &format!("{id}:recognize"), recognize(10, &["pound"], "stop")).await;
    assert_eq!(status, 202);
    pad.press(&bob, &[Tone::Nine, Tone::Pound, Tone::One]).await;
    let done = wait_n(&app, &ts, &id, "RecognizeCompleted", 2).await;
    assert_eq!(done[1]["dtmfResult"]["tones"], json!(["nine", "pound"]));
    assert_eq!(done[1]["resultInformation"]["subCode"], 8514);

    // recognize after a prompt, nobody presses: RecognizeFailed once the initial silence passes
    // (counted from the end of the prompt). The prompt publishes the leg's audio track.
    let mut with_prompt = recognize(1, &[], "silence");
    with_prompt["playPrompt"] = json!({"kind": "file", "file": {"uri": "menu.wav"}});
    with_prompt["recognizeOptions"]["initialSilenceTimeoutInSeconds"] = json!(1);
    let started = Instant::now();
    let (status, body) = post(&ts, &format!("{id}:recognize"), with_prompt).await;
    assert_eq!(status, 202, "{body}");
    let leg_track = match wait_signal(&mut bob, WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. })).await {
        Some(ServerMessage::TrackPublished { track }) => track,
        other => panic!("the leg publishes no track: {other:?}"),
    };
    let failed = app.wait(&ts, &id, "RecognizeFailed").await;
    assert!(started.elapsed() >= Duration::from_millis(1400), "the silence counts after the 0.5 s prompt");
    assert_eq!(
        (failed["resultInformation"]["subCode"].as_u64(), &failed["operationContext"]),
        (Some(8510), &json!("silence"))
    );

    // sendDtmfTones: Bob hears the leg's telephone-events and his detector finds the tones.
    let sub = bob.subscribe(leg_track.track_id, None, None).await.expect("subscribe to the leg");
    let (status, body) = post(
        &ts,
        &format!("{id}:sendDtmfTones"),
        json!({"tones": ["four", "two", "asterisk"], "targetParticipant": user(&bob_raw), "operationContext": "send"}),
    )
    .await;
    assert_eq!((status, &body["operationContext"]), (202, &json!("send")), "{body}");
    let mut packets = Vec::new();
    collect_rtp(&mut bob, sub.subscription_id, Duration::from_millis(1500), &mut packets).await;
    let mut detector = ToneDetector::new();
    let now = std::time::Instant::now();
    let heard: Vec<Tone> = packets
        .iter()
        .filter_map(|p| {
            let h = switchboard::rtp::RtpHeader::parse(p).expect("rtp");
            (h.payload_type == 101).then(|| detector.on_packet(h.timestamp, &p[h.payload.clone()], now)).flatten()
        })
        .collect();
    assert_eq!(heard, [Tone::Four, Tone::Two, Tone::Asterisk]);
    let sent = app.wait(&ts, &id, "SendDtmfTonesCompleted").await;
    assert_eq!(sent["operationContext"], "send");
    let (status, _) =
        post(&ts, &format!("{id}:sendDtmfTones"), json!({"tones": ["eleven"], "targetParticipant": user(&bob_raw)}))
            .await;
    assert_eq!(status, 400, "unknown tone names are refused");

    // interruptPrompt: a key pressed during a 4 s prompt stops it and is the recognition's tone.
    let mut interruptible = recognize(1, &[], "interrupted");
    interruptible["playPrompt"] = json!({"kind": "file", "file": {"uri": "long.wav"}});
    interruptible["recognizeOptions"]["interruptPrompt"] = json!(true);
    let started = Instant::now();
    let (status, body) = post(&ts, &format!("{id}:recognize"), interruptible).await;
    assert_eq!(status, 202, "{body}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    pad.press(&bob, &[Tone::Three]).await;
    let done = wait_n(&app, &ts, &id, "RecognizeCompleted", 3).await;
    assert_eq!(
        (&done[2]["operationContext"], &done[2]["dtmfResult"]["tones"]),
        (&json!("interrupted"), &json!(["three"]))
    );
    assert!(started.elapsed() < Duration::from_millis(2500), "long before the prompt's end");
    ts.stop().await;
}

/// The IncomingCall events the app got (they have no callConnectionId), signatures verified.
async fn incoming_events(app: &App, ts: &TestServer) -> Vec<Value> {
    let (_, jwks) = ts.api.get_public("/.well-known/jwks.json").await;
    let jwks: Value = serde_json::from_str(&jwks).expect("jwks json");
    let got = app.got.lock().expect("receiver lock").clone();
    got.iter()
        .filter_map(|(auth, body)| {
            let envelope: Value = serde_json::from_slice(body).expect("json body");
            (envelope[0]["type"] == "Microsoft.Communication.IncomingCall").then(|| {
                let claims = verify_against_jwks(auth.strip_prefix("Bearer ").expect("bearer"), &jwks);
                assert_eq!(claims["body_sha256"], sha256_b64url(body));
                envelope[0]["data"].clone()
            })
        })
        .collect()
}

async fn wait_incoming(app: &App, ts: &TestServer, n: usize) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = incoming_events(app, ts).await;
        if got.len() >= n {
            return got[n - 1].clone();
        }
        assert!(Instant::now() < deadline, "no IncomingCall #{n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls to an identity an app subscribed: the app gets IncomingCall (Event Grid fields), and
/// answers (its leg is in the call, CallConnected at the answer's callback), rejects (the caller
/// hears Declined) or redirects (the new target rings in the same call). `connect` joins a group
/// call; a room admits the service only if it lists the service identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_calls_answer_reject_redirect_and_connect() {
    let ts = server(30).await;
    let app = app().await;
    let (desk_raw, _) = ts.identity(&["voip"]).await;
    let (alice_raw, alice_token) = ts.identity(&["voip"]).await;
    let (carol_raw, carol_token) = ts.identity(&["voip"]).await;
    let sub =
        switchboard::config::IncomingCallSubscription { identity: desk_raw.clone(), callback_uri: app.url.clone() };
    ts.server.automation().listen_for_incoming(&[sub]).expect("subscribe");
    tokio::time::sleep(Duration::from_millis(500)).await; // the app's phone registers
    let mut alice = device(&ts, &alice_token, "Alice").await;
    let mut carol = device(&ts, &carol_token, "Carol").await;

    // Answer.
    let call = alice.start_call(&[&desk_raw]).await.expect("alice calls the desk");
    let event = wait_incoming(&app, &ts, 1).await;
    assert_eq!((&event["to"]["rawId"], &event["from"]["rawId"]), (&json!(desk_raw), &json!(alice_raw)));
    assert_eq!(event["callerDisplayName"], "Alice");
    assert!(event["serverCallId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(event["correlationId"].as_str().is_some_and(|s| !s.is_empty()));
    let context = event["incomingCallContext"].as_str().expect("context").to_owned();
    let (status, props) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:answer?{V}"),
            Some(json!({"incomingCallContext": context, "callbackUri": app.url, "operationContext": "answered"})),
        )
        .await;
    assert_eq!(status, 200, "{props}");
    let id = props["callConnectionId"].as_str().expect("id").to_owned();
    assert_eq!(props["source"]["rawId"], desk_raw);
    let connected = app.wait(&ts, &id, "CallConnected").await;
    assert_eq!(connected["operationContext"], "answered");
    assert!(
        wait_signal(&mut alice, WAIT, |m| matches!(
            m,
            ServerMessage::CallStateChanged { state: CallState::Connected, .. }
        ))
        .await
        .is_some(),
        "alice's call is answered"
    );
    assert_eq!(participants(&ts, &id).await, vec![(alice_raw.clone(), false)]);
    let (status, _) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:answer?{V}"),
            Some(json!({"incomingCallContext": context, "callbackUri": app.url})),
        )
        .await;
    assert_eq!(status, 400, "an answered call cannot be answered again");
    alice.hang_up(false).await.expect("hang up");
    assert_eq!(disconnected(&mut alice).await, Some(EndReason::HungUp));
    wait_state(&ts, &id, "gone").await;
    let _ = call;

    // Reject: the caller hears Declined.
    alice.start_call(&[&desk_raw]).await.expect("call again");
    let event = wait_incoming(&app, &ts, 2).await;
    let (status, body) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:reject?{V}"),
            Some(json!({"incomingCallContext": event["incomingCallContext"], "callRejectReason": "busy"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(disconnected(&mut alice).await, Some(EndReason::Declined));

    // Redirect: Carol rings in the desk's place and answers the same call.
    alice.start_call(&[&desk_raw]).await.expect("call a third time");
    let event = wait_incoming(&app, &ts, 3).await;
    let (status, body) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:redirect?{V}"),
            Some(json!({"incomingCallContext": event["incomingCallContext"], "target": user(&carol_raw)})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (carol_call, caller, _) = incoming(&mut carol).await;
    assert_eq!(caller, alice_raw);
    let joined = carol.accept_call(&carol_call).await.expect("carol answers");
    assert_eq!(joined.state, CallState::Connected);
    alice.hang_up(true).await.expect("end");

    // Garbage contexts are 400s.
    let (status, _) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:reject?{V}"),
            Some(json!({"incomingCallContext": "nope"})),
        )
        .await;
    assert_eq!(status, 400);

    // Connect to a group call: the leg joins it; a room that does not list the service is refused.
    let group = uuid::Uuid::new_v4().to_string();
    let (status, props) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:connect?{V}"),
            Some(json!({"callLocator": {"kind": "groupCallLocator", "groupCallId": group}, "callbackUri": app.url})),
        )
        .await;
    assert_eq!(status, 200, "{props}");
    let gid = props["callConnectionId"].as_str().expect("id").to_owned();
    app.wait(&ts, &gid, "CallConnected").await;
    let joined = carol.join_group(&carol_token, &group).await.expect("carol joins the group call");
    assert!(joined.participants.iter().any(|p| p.identity == props["source"]["rawId"]), "the leg is in the group call");
    let (status, room) = ts.api.call(Method::POST, "/rooms?api-version=2024-04-15", Some(json!({}))).await;
    assert_eq!(status, 201, "{room}");
    let (status, body) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:connect?{V}"),
            Some(json!({"callLocator": {"kind": "roomCallLocator", "roomId": room["id"]}, "callbackUri": app.url})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("must list the call automation identity")),
        "{body}"
    );
    let (status, _) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:connect?{V}"),
            Some(json!({"callLocator": {"kind": "serverCallLocator", "serverCallId": "x"}, "callbackUri": app.url})),
        )
        .await;
    assert_eq!(status, 400);
    ts.stop().await;
}

/// `play` from an http URL on `[call_automation] media_hosts`: fetched and played; a file over
/// `max_media_bytes` fails (PlayFailed 8536); a host not on the list is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_from_an_allowed_url() {
    let small = wav(&prompt_signal()[..9_600], 48_000);
    let big = wav(&vec![0.1; 48_000], 48_000);
    let files = axum::Router::new()
        .route("/small.wav", axum::routing::get(move || async move { small.clone() }))
        .route("/big.wav", axum::routing::get(move || async move { big.clone() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, files).await.expect("media server serves") });
    let ts = TestServer::start_with(2, |c| {
        c.call_automation.media_hosts = vec![switchboard::webhooks::HostPattern::parse("127.0.0.1").expect("pattern")];
        c.call_automation.max_media_bytes = Bounded::try_from(50_000).expect("in range");
    })
    .await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let id = create_call(&ts, &app, &[&bob_raw]).await["callConnectionId"].as_str().expect("id").to_owned();
    let (call_id, _, _) = incoming(&mut bob).await;
    bob.accept_call(&call_id).await.expect("accept");
    app.wait(&ts, &id, "CallConnected").await;
    let play = |uri: String, context: &str| json!({"playSources": [{"kind": "file", "file": {"uri": uri}}], "operationContext": context});

    let (status, body) = post(&ts, &format!("{id}:play"), play(format!("http://{addr}/small.wav"), "small")).await;
    assert_eq!(status, 202, "{body}");
    let done = app.wait(&ts, &id, "PlayCompleted").await;
    assert_eq!(done["operationContext"], "small");
    let (status, _) = post(&ts, &format!("{id}:play"), play(format!("http://{addr}/big.wav"), "big")).await;
    assert_eq!(status, 202);
    let failed = app.wait(&ts, &id, "PlayFailed").await;
    assert_eq!((&failed["operationContext"], &failed["resultInformation"]["subCode"]), (&json!("big"), &json!(8536)));
    let (status, body) =
        post(&ts, &format!("{id}:play"), play(format!("http://localhost:{}/small.wav", addr.port()), "x")).await;
    assert_eq!((status, &body["error"]["target"]), (400, &json!("playSources")), "{body}");
    ts.stop().await;
}
