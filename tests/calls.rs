//! 1:1 calls over QUIC, end to end: registered devices, ringing on every device of the callee,
//! first accept wins, decline, cancel, timeout, unreachable, hang-up, and a device that stays
//! registered after a call and is called again.

mod common;

use common::media::{Participant, TestServer, group, wait_signal};
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientError, Locator};
use switchboard::config::Bounded;
use switchboard::signaling::messages::{CallState, EndReason, ErrorCode, ServerMessage};

const WAIT: Duration = Duration::from_secs(5);

/// A server whose calls ring for `ring_secs`.
async fn server(ring_secs: i64) -> TestServer {
    TestServer::start_with(2, |c| c.calls.ring_timeout_seconds = Bounded::try_from(ring_secs).expect("in range")).await
}

/// A connected device registered with `token` under `name`.
async fn device(ts: &TestServer, token: &str, name: &str) -> Client {
    let c = ts.client().await;
    c.register(token, Some(name)).await.expect("register");
    c
}

async fn incoming(c: &mut Client) -> (String, String, Option<String>) {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::IncomingCall { .. })).await {
        Some(ServerMessage::IncomingCall { call_id, caller, .. }) => (call_id, caller.identity, caller.display_name),
        other => panic!("no incoming call: {other:?}"),
    }
}

async fn ring_ended(c: &mut Client) -> (String, EndReason) {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::IncomingCallEnded { .. })).await {
        Some(ServerMessage::IncomingCallEnded { call_id, code, .. }) => (call_id, code),
        other => panic!("no end of ringing: {other:?}"),
    }
}

async fn call_state(c: &mut Client) -> (CallState, Option<EndReason>) {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { .. })).await {
        Some(ServerMessage::CallStateChanged { state, code, .. }) => (state, code),
        other => panic!("no call state: {other:?}"),
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The callee has three devices; all ring, the second answers, the others are told it was
/// answered elsewhere; media flows both ways; hanging up ends the call for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_rings_and_the_first_accept_wins() {
    let ts = server(30).await;
    let (ada_raw, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut ada = device(&ts, &ada_token, "Ada").await;
    let mut phone = device(&ts, &bob_token, "Bob").await;
    let mut laptop = device(&ts, &bob_token, "Bob").await;
    let mut tablet = device(&ts, &bob_token, "Bob").await;
    // Ada's own second device does not ring when she calls.
    let mut ada_tablet = device(&ts, &ada_token, "Ada").await;

    let started = ada.start_call(&[&bob_raw]).await.expect("start call");
    assert_eq!(started.state, CallState::Connecting);
    let call_id = started.call_id.clone().expect("a call ID");
    assert_eq!(call_state(&mut ada).await, (CallState::Ringing, None));
    for d in [&mut phone, &mut laptop, &mut tablet] {
        assert_eq!(incoming(d).await, (call_id.clone(), ada_raw.clone(), Some("Ada".to_owned())));
    }
    let answered = laptop.accept_call(&call_id).await.expect("accept");
    assert_eq!(answered.state, CallState::Connected);
    assert_eq!(answered.participants.len(), 1);
    assert_eq!(answered.participants[0].identity, ada_raw);
    for d in [&mut phone, &mut tablet] {
        assert_eq!(ring_ended(d).await, (call_id.clone(), EndReason::AnsweredElsewhere));
    }
    assert_eq!(code(tablet.accept_call(&call_id).await), ErrorCode::AnsweredElsewhere);
    assert_eq!(call_state(&mut ada).await, (CallState::Connected, None));
    let joined = wait_signal(&mut ada, WAIT, |m| matches!(m, ServerMessage::ParticipantJoined { .. })).await;
    assert!(
        matches!(joined, Some(ServerMessage::ParticipantJoined { participant }) if participant.identity == bob_raw)
    );
    assert!(
        ada_tablet.next_event_timeout(Duration::from_millis(300)).await.is_none(),
        "the caller's devices never ring"
    );

    // Media flows as in a group call.
    let mut a = Participant::new(ada, 1);
    let mut b = Participant::new(laptop, 2);
    a.publish_audio_video().await;
    b.publish_audio_video().await;
    assert!(a.wait_until(WAIT, |p| p.announced_tracks().len() >= 2).await);
    assert!(b.wait_until(WAIT, |p| p.announced_tracks().len() >= 2).await);
    for (p, other) in [(&a, &b), (&b, &a)] {
        for track in [other.audio.as_ref().expect("audio").track_id, other.video.as_ref().expect("video").track_id] {
            p.client.subscribe(track, None, None).await.expect("subscribe");
        }
    }
    let (a, b) = tokio::join!(
        async move {
            a.run(Duration::from_secs(2)).await;
            a
        },
        async move {
            b.run(Duration::from_secs(2)).await;
            b
        }
    );
    for (name, p) in [("caller", &a), ("callee", &b)] {
        assert_eq!(p.received.len(), 2, "{name} receives audio and video");
        assert!(
            p.received.values().all(|r| r.len() > 40),
            "{name}: {:?}",
            p.received.values().map(Vec::len).collect::<Vec<_>>()
        );
    }

    // Bob hangs up: the call ends for Ada too.
    let (mut ada, mut laptop) = (a.client, b.client);
    laptop.hang_up(false).await.expect("hang up");
    assert_eq!(call_state(&mut laptop).await, (CallState::Disconnected, Some(EndReason::HungUp)));
    assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::HungUp)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_calls_ended_total{reason=\"hung_up\"}").await, 1.0);
    assert_eq!(ts.metric("switchboard_call_ring_seconds_count").await, 1.0);
    assert_eq!(ts.metric("switchboard_calls{state=\"connected\"}").await, 0.0);
    assert_eq!(ts.metric("switchboard_registered_devices").await, 5.0);
    ts.stop().await;
}

/// Declining on one device stops the others and ends a 1:1 call for the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_ends_the_call() {
    let ts = server(30).await;
    let (_, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut ada = device(&ts, &ada_token, "Ada").await;
    let mut phone = device(&ts, &bob_token, "Bob").await;
    let mut laptop = device(&ts, &bob_token, "Bob").await;
    let call = ada.start_call(&[&bob_raw]).await.expect("call").call_id.expect("id");
    let _ = incoming(&mut phone).await;
    let _ = incoming(&mut laptop).await;
    phone.reject_call(&call).await.expect("decline");
    assert_eq!(ring_ended(&mut laptop).await, (call.clone(), EndReason::Declined));
    assert_eq!(call_state(&mut ada).await, (CallState::Ringing, None));
    assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::Declined)));
    assert_eq!(code(laptop.accept_call(&call).await), ErrorCode::CallNotFound, "the call is gone");
    // Ada is out of the call and can call again.
    ada.start_call(&[&bob_raw]).await.expect("call again");
    ts.stop().await;
}

/// The caller hanging up while it rings stops every device; the caller is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_cancels_while_ringing() {
    let ts = server(30).await;
    let (_, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut ada = device(&ts, &ada_token, "Ada").await;
    let mut phone = device(&ts, &bob_token, "Bob").await;
    let mut laptop = device(&ts, &bob_token, "Bob").await;
    let call = ada.start_call(&[&bob_raw]).await.expect("call").call_id.expect("id");
    let _ = incoming(&mut phone).await;
    let _ = incoming(&mut laptop).await;
    ada.hang_up(false).await.expect("hang up");
    assert_eq!(call_state(&mut ada).await, (CallState::Ringing, None));
    assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::HungUp)));
    for d in [&mut phone, &mut laptop] {
        assert_eq!(ring_ended(d).await, (call.clone(), EndReason::Cancelled));
    }
    assert_eq!(code(phone.accept_call(&call).await), ErrorCode::CallNotFound);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_calls_ended_total{reason=\"cancelled\"}").await, 1.0);
    ts.stop().await;
}

/// Nobody answers: at the ringing timeout every device stops and the caller gets `NoAnswer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_times_out() {
    let ts = server(1).await;
    let (_, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut ada = device(&ts, &ada_token, "Ada").await;
    let mut phone = device(&ts, &bob_token, "Bob").await;
    let started = Instant::now();
    let call = ada.start_call(&[&bob_raw]).await.expect("call").call_id.expect("id");
    let _ = incoming(&mut phone).await;
    assert_eq!(call_state(&mut ada).await, (CallState::Ringing, None));
    assert_eq!(ring_ended(&mut phone).await, (call, EndReason::NoAnswer));
    assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::NoAnswer)));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "not before the timeout: {took:?}");
    ts.stop().await;
}

/// A callee with no connected device: `Unreachable` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_without_a_device_is_unreachable() {
    let ts = server(30).await;
    let (_, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, _) = ts.identity(&["voip"]).await;
    let mut ada = device(&ts, &ada_token, "Ada").await;
    let started = Instant::now();
    let joined = ada.start_call(&[&bob_raw]).await.expect("call");
    assert_eq!(joined.state, CallState::Connecting);
    assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::Unreachable)));
    assert!(started.elapsed() < Duration::from_secs(2), "at once, not after the ringing timeout");
    // Not a call between identities of this server.
    assert_eq!(
        code(ada.start_call(&["8:acs:other_00000000-0000-0000-0000-000000000000"]).await),
        ErrorCode::BadRequest
    );
    assert_eq!(code(ada.start_call(&[]).await), ErrorCode::BadRequest);
    ts.stop().await;
}

/// A device stays registered through calls and leaving them: it is called again, and calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_stays_registered_and_is_called_again() {
    let ts = server(30).await;
    let (ada_raw, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut ada = device(&ts, &ada_token, "Ada").await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    for round in 0..2 {
        let call = ada.start_call(&[&bob_raw]).await.expect("call").call_id.expect("id");
        let (ringing, caller, _) = incoming(&mut bob).await;
        assert_eq!((ringing.as_str(), caller.as_str()), (call.as_str(), ada_raw.as_str()), "round {round}");
        bob.accept_call(&call).await.expect("accept");
        assert_eq!(call_state(&mut ada).await, (CallState::Ringing, None));
        assert_eq!(call_state(&mut ada).await, (CallState::Connected, None));
        // Leaving keeps the connection; the other side is left alone and the call ends.
        ada.leave().await.expect("leave");
        assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::Left)));
        assert_eq!(call_state(&mut bob).await, (CallState::Disconnected, Some(EndReason::HungUp)));
    }
    // Bob joins a group call, leaves it, and Ada calls him back; then Bob calls Ada.
    let g = group();
    bob.join(None, Locator::Group(g), None).await.expect("join a group call without the token again");
    bob.leave().await.expect("leave");
    assert_eq!(call_state(&mut bob).await, (CallState::Disconnected, Some(EndReason::Left)));
    let call = ada.start_call(&[&bob_raw]).await.expect("call").call_id.expect("id");
    let _ = incoming(&mut bob).await;
    bob.reject_call(&call).await.expect("decline");
    assert_eq!(call_state(&mut ada).await, (CallState::Ringing, None));
    assert_eq!(call_state(&mut ada).await, (CallState::Disconnected, Some(EndReason::Declined)));
    let back = bob.start_call(&[&ada_raw]).await.expect("call back").call_id.expect("id");
    assert_eq!(incoming(&mut ada).await.0, back);
    // A callee whose connection drops ends a connected call too.
    ada.accept_call(&back).await.expect("accept");
    assert_eq!(call_state(&mut bob).await, (CallState::Ringing, None));
    assert_eq!(call_state(&mut bob).await, (CallState::Connected, None));
    ada.close().await;
    assert_eq!(call_state(&mut bob).await, (CallState::Disconnected, Some(EndReason::HungUp)));
    ts.stop().await;
}

/// Only the callees may answer or join a call, and requests need a registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_callees_answer_and_calls_need_a_registration() {
    let ts = server(30).await;
    let (_, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let (_, eve_token) = ts.identity(&["voip"]).await;
    let (_, join_only) = ts.identity(&["voip.join"]).await;
    let unregistered = ts.client().await;
    assert_eq!(code(unregistered.start_call(&[&bob_raw]).await), ErrorCode::NotRegistered);
    assert_eq!(
        code(unregistered.join(None, Locator::Group(group()), None).await),
        ErrorCode::NotRegistered,
        "a join without a token needs a registration"
    );
    let ada = device(&ts, &ada_token, "Ada").await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let eve = device(&ts, &eve_token, "Eve").await;
    let call = ada.start_call(&[&bob_raw]).await.expect("call").call_id.expect("id");
    let _ = incoming(&mut bob).await;
    assert_eq!(code(eve.accept_call(&call).await), ErrorCode::NotAllowed);
    assert_eq!(code(eve.join(None, Locator::Call(call.clone()), None).await), ErrorCode::CallNotFound);
    assert_eq!(code(eve.reject_call(&call).await), ErrorCode::NotAllowed);
    assert_eq!(code(eve.register(&bob_token, None).await), ErrorCode::IdentityMismatch);
    let listener = device(&ts, &join_only, "Joe").await;
    assert_eq!(
        code(listener.start_call(&[&bob_raw]).await),
        ErrorCode::TokenScopeInsufficient,
        "voip.join cannot call"
    );
    assert_eq!(code(ada.start_call(&[&bob_raw]).await), ErrorCode::AlreadyJoined, "one call at a time");
    bob.accept_call(&call).await.expect("bob answers");
    ts.stop().await;
}
