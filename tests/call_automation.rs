//! Call automation over REST (ACS Call Automation, `api-version=2024-09-15`) against a real
//! server, with QUIC clients as the people called: create a call (the target's devices ring like
//! a client's call, the server's leg is in the room), list participants, add (ring, timeout,
//! cancel), mute (their audio stops being forwarded), remove (disconnected with a reason), hang
//! up and terminate, decline; incoming calls for an app (answer, reject, redirect) and connect.
//! The media operations (play, DTMF) are in `call_automation_media.rs`.

mod common;

use common::automation::*;
use common::media::{Participant, TestServer, wait_signal};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{CallState, EndReason, ServerMessage};

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
    // The removal is accepted (202) and done; the connection's own list learns of it from the
    // room's events, a moment later.
    let deadline = Instant::now() + WAIT;
    while participants(&ts, &id).await.len() > 1 {
        assert!(Instant::now() < deadline, "carol is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let sub = switchboard::config::IncomingCallSubscription {
        identity: desk_raw.clone(),
        callback_uri: app.url.clone(),
        event_schema: Default::default(),
    };
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

/// Adding participants to a group call the service connected to: each invitation rings the
/// target's devices with a call ID of its own and the group's ID, and the device that accepts
/// joins the group call (everyone there sees it join). A decline, a target without devices and
/// a cancel end the invitation only; the group call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_participants_to_a_group_call() {
    let ts = server(30).await;
    let app = app().await;
    let group = uuid::Uuid::new_v4().to_string();
    let (mut bob, _) = ts.joined(&group).await;
    let (status, props) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:connect?{V}"),
            Some(json!({"callLocator": {"kind": "groupCallLocator", "groupCallId": group}, "callbackUri": app.url})),
        )
        .await;
    assert_eq!(status, 200, "{props}");
    let id = props["callConnectionId"].as_str().expect("id").to_owned();
    app.wait(&ts, &id, "CallConnected").await;
    let (carol_raw, carol_token) = ts.identity(&["voip"]).await;
    let (dave_raw, dave_token) = ts.identity(&["voip"]).await;
    let (erin_raw, _) = ts.identity(&["voip"]).await;
    let mut carol = device(&ts, &carol_token, "Carol").await;
    let mut dave = device(&ts, &dave_token, "Dave").await;
    let add = |raw: &str, context: &str| json!({"participantToAdd": user(raw), "operationContext": context});

    // Carol rings with the group's ID; accepting puts her in the group call.
    let (status, body) = post(&ts, &format!("{id}/participants:add"), add(&carol_raw, "carol")).await;
    assert_eq!(status, 202, "{body}");
    let (call_id, group_id) =
        match wait_signal(&mut carol, WAIT, |m| matches!(m, ServerMessage::IncomingCall { .. })).await {
            Some(ServerMessage::IncomingCall { call_id, caller, group_id }) => {
                assert_eq!(caller.identity, props["source"]["rawId"].as_str().expect("source"));
                (call_id, group_id)
            }
            other => panic!("carol does not ring: {other:?}"),
        };
    assert_eq!(group_id.as_deref(), Some(group.as_str()));
    let joined = carol.accept_call(&call_id).await.expect("carol answers");
    assert_eq!((joined.room.as_str(), joined.call_id), (format!("group:{group}").as_str(), None));
    assert!(joined.participants.len() >= 2, "bob and the leg are there: {:?}", joined.participants);
    let ok = app.wait(&ts, &id, "AddParticipantSucceeded").await;
    assert_eq!((&ok["participant"]["rawId"], &ok["operationContext"]), (&json!(carol_raw), &json!("carol")));
    let seen = wait_signal(
        &mut bob,
        WAIT,
        |m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.identity == carol_raw),
    )
    .await;
    assert!(seen.is_some(), "bob sees carol join the group call");
    assert!(participants(&ts, &id).await.iter().any(|(raw, _)| *raw == carol_raw));
    let (status, body) = post(&ts, &format!("{id}/participants:add"), add(&carol_raw, "again")).await;
    assert_eq!(status, 400, "carol is in the call already: {body}");

    // Dave declines; Erin has no device; both fail, and the group call goes on.
    let (status, _) = post(&ts, &format!("{id}/participants:add"), add(&dave_raw, "dave")).await;
    assert_eq!(status, 202);
    let (dave_call, _, _) = incoming(&mut dave).await;
    dave.reject_call(&dave_call).await.expect("dave declines");
    let (status, _) = post(&ts, &format!("{id}/participants:add"), add(&erin_raw, "erin")).await;
    assert_eq!(status, 202);
    let failed = wait_n(&app, &ts, &id, "AddParticipantFailed", 2).await;
    let outcome: Vec<(Value, Value)> =
        failed.iter().map(|f| (f["operationContext"].clone(), f["resultInformation"]["code"].clone())).collect();
    assert!(outcome.contains(&(json!("dave"), json!(603))), "{outcome:?}");
    assert!(outcome.contains(&(json!("erin"), json!(480))), "{outcome:?}");

    // A cancelled invitation stops ringing.
    let (status, body) = post(&ts, &format!("{id}/participants:add"), add(&dave_raw, "dave-again")).await;
    assert_eq!(status, 202, "{body}");
    incoming(&mut dave).await;
    let invitation = body["invitationId"].as_str().expect("invitationId");
    let (status, body) = post(
        &ts,
        &format!("{id}/participants:cancelAddParticipant"),
        json!({"invitationId": invitation, "operationContext": "cancel"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(ring_ended(&mut dave).await, EndReason::Cancelled);
    app.wait(&ts, &id, "CancelAddParticipantSucceeded").await;
    let (_, call) = get_call(&ts, &id).await;
    assert_eq!(call["callConnectionState"], "connected", "the group call goes on");
    ts.stop().await;
}

/// A subscription in the Event Grid schema: the app gets the IncomingCall as an Event Grid event
/// (`eventType`, `topic`, `subject`, `eventTime`, `dataVersion`, `metadataVersion`, the same
/// `data`), signed like every delivery, and answers it with its `incomingCallContext`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_in_the_event_grid_schema() {
    let ts = server(30).await;
    let app = app().await;
    let (desk_raw, _) = ts.identity(&["voip"]).await;
    let (alice_raw, alice_token) = ts.identity(&["voip"]).await;
    let sub = switchboard::config::IncomingCallSubscription {
        identity: desk_raw.clone(),
        callback_uri: app.url.clone(),
        event_schema: switchboard::webhooks::EventSchema::EventGrid,
    };
    ts.server.automation().listen_for_incoming(&[sub]).expect("subscribe");
    tokio::time::sleep(Duration::from_millis(500)).await; // the app's phone registers
    let alice = device(&ts, &alice_token, "Alice").await;
    alice.start_call(&[&desk_raw]).await.expect("alice calls the desk");
    let deadline = Instant::now() + WAIT;
    let (auth, body) = loop {
        if let Some(got) = app.got.lock().expect("receiver lock").first().cloned() {
            break got;
        }
        assert!(Instant::now() < deadline, "no IncomingCall delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, jwks) = ts.api.get_public("/.well-known/jwks.json").await;
    let claims = verify_against_jwks(
        auth.strip_prefix("Bearer ").expect("bearer"),
        &serde_json::from_str(&jwks).expect("jwks json"),
    );
    assert_eq!(claims["body_sha256"], sha256_b64url(&body));
    let events: Value = serde_json::from_slice(&body).expect("json");
    let event = &events[0];
    assert_eq!(event["eventType"], "Microsoft.Communication.IncomingCall", "{event}");
    assert_eq!(event["subject"], format!("/caller/{alice_raw}/recipient/{desk_raw}"));
    assert_eq!((&event["dataVersion"], &event["metadataVersion"]), (&json!("1.0"), &json!("1")));
    assert!(event["topic"].as_str().is_some_and(|t| t.starts_with("/communicationServices/")), "{event}");
    assert!(event["eventTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(event.get("type").is_none() && event.get("specversion").is_none(), "not a CloudEvent: {event}");
    assert_eq!((&event["data"]["to"]["rawId"], &event["data"]["from"]["rawId"]), (&json!(desk_raw), &json!(alice_raw)));
    let context = event["data"]["incomingCallContext"].as_str().expect("context");
    let (status, props) = ts
        .api
        .call(
            Method::POST,
            &format!("/calling/callConnections:answer?{V}"),
            Some(json!({"incomingCallContext": context, "callbackUri": app.url})),
        )
        .await;
    assert_eq!(status, 200, "{props}");
    let id = props["callConnectionId"].as_str().expect("id");
    app.wait(&ts, id, "CallConnected").await;
    ts.stop().await;
}
