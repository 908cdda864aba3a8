//! ACS Rooms in live calls, over QUIC: only listed participants join, only inside the validity
//! window; roles are enforced by the media plane (a consumer cannot publish; a downgrade
//! unpublishes what the new role forbids, at once); removal and deletion disconnect; presenters
//! mute and remove others.

mod common;

use common::media::{Participant, TestServer, wait_signal};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use switchboard::client::{Client, ClientError, Locator};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{
    CallState, EndReason, ErrorCode, Role, ServerMessage, TrackSource, UnpublishReason,
};

const V: &str = "api-version=2024-04-15";
const WAIT: Duration = Duration::from_secs(5);

async fn create_room(ts: &TestServer, participants: Value, extra: Value) -> String {
    let mut body = json!({ "participants": participants });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, room) = ts.api.call(Method::POST, &format!("/rooms?{V}"), Some(body)).await;
    assert_eq!(status, 201, "{room}");
    room["id"].as_str().expect("room id").to_owned()
}

async fn set_participants(ts: &TestServer, room: &str, patch: Value) {
    let (status, body) = ts
        .api
        .call(Method::PATCH, &format!("/rooms/{room}/participants?{V}"), Some(json!({ "participants": patch })))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A client that joined `room` with a fresh identity of `role` (already listed by the caller).
async fn join(ts: &TestServer, room: &str, token: &str) -> Client {
    let c = ts.client().await;
    c.join(Some(token), Locator::Room(room.to_owned()), None).await.expect("join the room");
    c
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("format")
}

/// Only listed participants join, inside the validity window; refusals are counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_participants_join_and_only_while_the_room_is_valid() {
    let ts = TestServer::start(2).await;
    let (alice, alice_token) = ts.identity(&["voip.join"]).await;
    let (_, stranger_token) = ts.identity(&["voip"]).await;
    let now = time::OffsetDateTime::now_utc();
    let room = create_room(
        &ts,
        json!({ alice.clone(): {"role": "Attendee"} }),
        json!({"validUntil": rfc3339(now + time::Duration::seconds(3))}),
    )
    .await;
    let stranger = ts.client().await;
    assert_eq!(
        code(stranger.join(Some(&stranger_token), Locator::Room(room.clone()), None).await),
        ErrorCode::NotAParticipant
    );
    assert_eq!(
        code(stranger.join(None, Locator::Room("12345678901234567".into()), None).await),
        ErrorCode::RoomNotFound
    );
    assert_eq!(code(stranger.join(None, Locator::Room("not-a-room".into()), None).await), ErrorCode::RoomNotFound);
    // A voip.join token joins a room that exists through the API.
    let a = ts.client().await;
    let joined = a.join(Some(&alice_token), Locator::Room(room.clone()), Some("Alice")).await.expect("join");
    assert_eq!(joined.role, Some(Role::Attendee));
    assert_eq!(joined.state, CallState::Connected);
    assert!(!joined.capabilities.publish.contains(&TrackSource::Screen));
    a.leave().await.expect("leave");
    // Not yet valid, and no longer valid.
    let later = create_room(
        &ts,
        json!({ alice.clone(): {} }),
        json!({"validFrom": rfc3339(now + time::Duration::hours(1)), "validUntil": rfc3339(now + time::Duration::hours(2))}),
    )
    .await;
    assert_eq!(code(a.join(None, Locator::Room(later), None).await), ErrorCode::RoomNotValidNow);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(code(a.join(None, Locator::Room(room), None).await), ErrorCode::RoomNotValidNow);
    assert_eq!(ts.metric("switchboard_joins_total{result=\"not_a_participant\"}").await, 1.0);
    assert_eq!(ts.metric("switchboard_joins_total{result=\"outside_validity\"}").await, 2.0);
    assert_eq!(ts.metric("switchboard_joins_total{result=\"room_not_found\"}").await, 1.0);
    ts.stop().await;
}

/// A consumer receives but cannot publish; an attendee cannot share its screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_a_participant_publishes() {
    let ts = TestServer::start(2).await;
    let (presenter, p_token) = ts.identity(&["voip"]).await;
    let (consumer, c_token) = ts.identity(&["voip"]).await;
    let (attendee, a_token) = ts.identity(&["voip"]).await;
    let room = create_room(
        &ts,
        json!({ presenter: {"role": "Presenter"}, consumer: {"role": "Consumer"}, attendee: {"role": "Attendee"} }),
        json!({}),
    )
    .await;
    let mut p = Participant::new(join(&ts, &room, &p_token).await, 1);
    let c = join(&ts, &room, &c_token).await;
    let a = join(&ts, &room, &a_token).await;
    assert_eq!(code(c.publish(MediaKind::Audio, Codec::Opus, vec![]).await), ErrorCode::NotAllowed);
    assert_eq!(
        code(a.publish_source(MediaKind::Video, Codec::Vp8, vec![], Some(TrackSource::Screen)).await),
        ErrorCode::NotAllowed
    );
    a.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("an attendee talks");
    assert_eq!(
        code(a.publish_source(MediaKind::Audio, Codec::Opus, vec![], Some(TrackSource::Screen)).await),
        ErrorCode::BadRequest,
        "a screen is video"
    );
    // The consumer receives the presenter's media.
    p.publish_audio_video().await;
    let video = p.video.as_ref().expect("video").track_id;
    let sub = c.subscribe(video, Some(0), None).await.expect("a consumer subscribes");
    let mut consumer = Participant::new(c, 2);
    let run = tokio::spawn(async move {
        p.run(Duration::from_millis(1500)).await;
        p
    });
    consumer.run(Duration::from_millis(1500)).await;
    let _p = run.await.expect("presenter");
    assert!(consumer.received.get(&sub.subscription_id).is_some_and(|r| r.len() > 20), "the consumer receives video");
    ts.stop().await;
}

/// Downgrading a live presenter through the API unpublishes what the new role forbids, at once:
/// its subscribers stop receiving it before the API call returns; upgrading lets it publish again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_downgrade_unpublishes_live_tracks() {
    let ts = TestServer::start(2).await;
    let (speaker, s_token) = ts.identity(&["voip"]).await;
    let (viewer, v_token) = ts.identity(&["voip"]).await;
    let room =
        create_room(&ts, json!({ speaker.clone(): {"role": "Presenter"}, viewer: {"role": "Consumer"} }), json!({}))
            .await;
    let clients = ts.clients_on_both_workers(2).await;
    let mut clients = clients.into_iter();
    let (sc, vc) = (clients.next().expect("client"), clients.next().expect("client"));
    sc.join(Some(&s_token), Locator::Room(room.clone()), None).await.expect("join");
    vc.join(Some(&v_token), Locator::Room(room.clone()), None).await.expect("join");
    let mut s = Participant::new(sc, 1);
    s.publish_audio_video().await;
    let screen = s
        .client
        .publish_source(MediaKind::Video, Codec::Vp8, vec![], Some(TrackSource::Screen))
        .await
        .expect("a presenter shares its screen");
    let mut v = Participant::new(vc, 2);
    let video = s.video.as_ref().expect("video").track_id;
    let sub_video = v.client.subscribe(video, Some(0), None).await.expect("subscribe video");
    let sub_screen = v.client.subscribe(screen.track_id, None, None).await.expect("subscribe screen");
    let screen_track = screen.clone();
    let mut screen_frames = switchboard::client::synthetic::SyntheticVideo::three_layers(99);
    let speaker_task = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        while tokio::time::Instant::now() < deadline {
            tick.tick().await;
            s.send_video_frame();
            s.send_audio();
            // The screen share: the same synthetic frames on its own track.
            let frame = screen_frames.frame(0, true, common::media::now_us());
            for packet in frame {
                let _ = s.client.send_rtp(&screen_track, 0, packet);
            }
            while let Some(ev) = s.client.next_event_timeout(Duration::from_millis(1)).await {
                s.on_event(ev);
            }
        }
        s
    });
    v.run(Duration::from_millis(1000)).await;
    let before = |v: &Participant, sub: u64| v.received.get(&sub).map_or(0, Vec::len);
    assert!(before(&v, sub_screen.subscription_id) > 10, "the screen arrives");
    assert!(before(&v, sub_video.subscription_id) > 10, "the camera arrives");

    // Packets the speaker sent after a role change returned (its marker carries the send time):
    // the server received them after the change was in force, so it must not forward them.
    // (Packets sent before may still arrive: they were in flight or queued at the client.)
    let sent_after = |v: &Participant, sub: u64, t: u64| {
        v.received.get(&sub).map_or(0, |r| r.iter().filter(|a| a.marker.sent_us > t).count())
    };
    // Presenter → Attendee: the screen share goes, the camera stays.
    set_participants(&ts, &room, json!({ speaker.clone(): {"role": "Attendee"} })).await;
    let returned = common::media::now_us();
    v.run(Duration::from_millis(800)).await;
    assert_eq!(
        sent_after(&v, sub_screen.subscription_id, returned),
        0,
        "no screen packet sent after the downgrade returned is forwarded"
    );
    assert!(sent_after(&v, sub_video.subscription_id, returned) > 10, "the camera still flows");
    assert!(v.signals.iter().any(|m| matches!(m,
        ServerMessage::TrackUnpublished { track_id, reason: Some(UnpublishReason::RoleChanged), .. } if *track_id == screen.track_id)));
    assert!(
        v.signals
            .iter()
            .any(|m| matches!(m, ServerMessage::RoleChanged { role: Role::Attendee, capabilities: None, .. }))
    );

    // Attendee → Consumer: audio and camera go too.
    set_participants(&ts, &room, json!({ speaker.clone(): {"role": "Consumer"} })).await;
    let returned = common::media::now_us();
    v.run(Duration::from_millis(800)).await;
    assert_eq!(sent_after(&v, sub_video.subscription_id, returned), 0, "no camera packet after the second downgrade");
    let s = speaker_task.await.expect("speaker");
    let own: Vec<&ServerMessage> = s.signals.iter().collect();
    assert!(own.iter().any(|m| matches!(m, ServerMessage::RoleChanged { role: Role::Consumer, capabilities: Some(c), .. } if c.publish.is_empty())));
    let unpublished = own
        .iter()
        .filter(|m| matches!(m, ServerMessage::TrackUnpublished { reason: Some(UnpublishReason::RoleChanged), .. }))
        .count();
    assert_eq!(unpublished, 3, "the speaker is told about its screen, camera and microphone");
    assert_eq!(code(s.client.publish(MediaKind::Audio, Codec::Opus, vec![]).await), ErrorCode::NotAllowed);
    // Back to Presenter: publishing works again.
    set_participants(&ts, &room, json!({ speaker: {"role": "Presenter"} })).await;
    s.client.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publishes again after the upgrade");
    assert!(ts.metric("switchboard_role_changes_total{change=\"downgrade\"}").await >= 2.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ts.stop().await;
}

/// Removing a participant through the API ends its call at once; it cannot rejoin. Deleting the
/// room ends the call for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_and_deletion_disconnect() {
    let ts = TestServer::start(2).await;
    let (alice, a_token) = ts.identity(&["voip"]).await;
    let (bob, b_token) = ts.identity(&["voip"]).await;
    let room =
        create_room(&ts, json!({ alice.clone(): {"role": "Presenter"}, bob.clone(): {"role": "Attendee"} }), json!({}))
            .await;
    let mut a = join(&ts, &room, &a_token).await;
    let mut b = join(&ts, &room, &b_token).await;
    set_participants(&ts, &room, json!({ bob: null })).await;
    let notice = wait_signal(&mut b, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { .. })).await;
    assert!(matches!(
        notice,
        Some(ServerMessage::CallStateChanged {
            state: CallState::Disconnected,
            code: Some(EndReason::RemovedFromCall),
            ..
        })
    ));
    let left = wait_signal(&mut a, WAIT, |m| matches!(m, ServerMessage::ParticipantLeft { .. })).await;
    assert!(matches!(left, Some(ServerMessage::ParticipantLeft { code: Some(EndReason::RemovedFromCall), .. })));
    assert_eq!(code(b.join(None, Locator::Room(room.clone()), None).await), ErrorCode::NotAParticipant);
    assert_eq!(code(b.publish(MediaKind::Audio, Codec::Opus, vec![]).await), ErrorCode::NotJoined, "out of the call");
    // The device stays connected: it can still join a group call.
    b.join(None, Locator::Group(common::media::group()), None).await.expect("still registered");

    let (status, _) = ts.api.call(Method::DELETE, &format!("/rooms/{room}?{V}"), None).await;
    assert_eq!(status, 204);
    let notice = wait_signal(&mut a, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { .. })).await;
    assert!(matches!(
        notice,
        Some(ServerMessage::CallStateChanged {
            state: CallState::Disconnected,
            code: Some(EndReason::RoomDeleted),
            ..
        })
    ));
    assert_eq!(code(a.join(None, Locator::Room(room), None).await), ErrorCode::RoomNotFound);
    ts.stop().await;
}

/// A presenter mutes another participant (its audio stops reaching others) and removes one;
/// an attendee may do neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presenters_mute_and_remove_others() {
    let ts = TestServer::start(2).await;
    let (pres, p_token) = ts.identity(&["voip"]).await;
    let (att, a_token) = ts.identity(&["voip"]).await;
    let (lis, l_token) = ts.identity(&["voip"]).await;
    let room = create_room(
        &ts,
        json!({ pres: {"role": "Presenter"}, att: {"role": "Attendee"}, lis: {"role": "Attendee"} }),
        json!({}),
    )
    .await;
    let mut presenter = Participant::new(join(&ts, &room, &p_token).await, 1);
    let mut talker = Participant::new(join(&ts, &room, &a_token).await, 2);
    let mut listener = Participant::new(join(&ts, &room, &l_token).await, 3);
    talker.publish_audio_video().await;
    let audio = talker.audio.as_ref().expect("audio").track_id;
    let sub = listener.client.subscribe(audio, None, None).await.expect("subscribe");
    assert!(presenter.wait_until(WAIT, |p| p.announced_tracks().len() >= 2).await);
    let talker_id = presenter
        .signals
        .iter()
        .find_map(|m| match m {
            ServerMessage::TrackPublished { track } if track.track_id == audio => Some(track.participant_id),
            _ => None,
        })
        .expect("the talker's participant ID");
    assert_eq!(
        code(
            listener
                .client
                .request(switchboard::signaling::messages::ClientMessage::MuteParticipant { participant_id: talker_id })
                .await
        ),
        ErrorCode::NotAllowed
    );
    let task = tokio::spawn(async move {
        talker.run(Duration::from_millis(2500)).await;
        talker
    });
    listener.run(Duration::from_millis(800)).await;
    let heard = listener.received.get(&sub.subscription_id).map_or(0, Vec::len);
    assert!(heard > 20, "audio arrives before the mute ({heard})");
    presenter
        .client
        .request(switchboard::signaling::messages::ClientMessage::MuteParticipant { participant_id: talker_id })
        .await
        .expect("a presenter mutes");
    let muted_at = common::media::now_us();
    listener.run(Duration::from_millis(800)).await;
    // Audio sent after the mute was answered (its marker carries the send time) is not forwarded.
    let after = listener
        .received
        .get(&sub.subscription_id)
        .map_or(0, |r| r.iter().filter(|a| a.marker.sent_us > muted_at).count());
    assert_eq!(after, 0, "a muted participant is not heard");
    let talker = task.await.expect("talker");
    assert!(talker.signals.iter().any(|m| matches!(m, ServerMessage::TrackMuted { muted: true, by: Some(_), .. })));
    presenter
        .client
        .request(switchboard::signaling::messages::ClientMessage::RemoveParticipant { participant_id: talker_id })
        .await
        .expect("a presenter removes");
    let mut tc = talker.client;
    let notice = wait_signal(&mut tc, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { .. })).await;
    assert!(matches!(notice, Some(ServerMessage::CallStateChanged { code: Some(EndReason::RemovedFromCall), .. })));
    ts.stop().await;
}
