//! Meetings with a lobby, over QUIC: each bypass scope against members, guests, federated,
//! invited and external identities; admitting one, all, rejecting (over signaling and REST);
//! waiting before the organizer arrives; the lobby timeout; wrong passcodes; a lobby member that
//! receives no media packet at all until it is admitted; and admissions racing leaves, rejections
//! and settings changes.

mod common;

use common::media::{Participant, TestServer, wait_signal};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientError, ClientEvent, Locator};
use switchboard::config::Bounded;
use switchboard::organization::ExternalIdPattern;
use switchboard::signaling::messages::{CallState, EndReason, ErrorCode, ServerMessage};

const WAIT: Duration = Duration::from_secs(5);

/// A meeting as the tests use it.
struct Meeting {
    id: String,
    join_id: String,
    passcode: Option<String>,
    link: String,
}

impl Meeting {
    fn by_id(&self) -> Locator {
        Locator::Meeting { join_meeting_id: self.join_id.clone(), passcode: self.passcode.clone() }
    }
}

/// A server whose organization is contoso.com (members), guest.contoso.com (guests) and
/// fabrikam.com (federated).
async fn server(tweak: impl FnOnce(&mut switchboard::config::Config)) -> TestServer {
    TestServer::start_with(2, |c| {
        let pattern = |p: &str| ExternalIdPattern::try_from(p.to_owned()).expect("valid pattern");
        c.organization.member_domains = vec![pattern("*@contoso.com")];
        c.organization.guest_domains = vec![pattern("*@guest.contoso.com")];
        c.organization.federated_domains = vec![pattern("*@fabrikam.com")];
        tweak(c);
    })
    .await
}

/// An identity with an externalId and a voip token (whose `org` claim follows the externalId).
async fn person(ts: &TestServer, external_id: &str) -> (String, String) {
    let (status, body) = ts
        .api
        .call(
            Method::POST,
            "/identities?api-version=2025-06-30",
            Some(json!({"createTokenWithScopes": ["voip"], "externalId": external_id})),
        )
        .await;
    assert!(status == 201, "{body}");
    (
        body["identity"]["id"].as_str().expect("id").to_owned(),
        body["accessToken"]["token"].as_str().expect("token").to_owned(),
    )
}

async fn create_meeting(ts: &TestServer, organizer: &str, attendees: &[&str], scope: &str, passcode: bool) -> Meeting {
    let attendees: Vec<Value> =
        attendees.iter().map(|a| json!({"identity": {"user": {"id": a}}, "role": "attendee"})).collect();
    let body = json!({
        "subject": "Weekly",
        "participants": {"organizer": {"identity": {"user": {"id": organizer}}}, "attendees": attendees},
        "lobbyBypassSettings": {"scope": scope},
        "allowedPresenters": "organizer",
        "joinMeetingIdSettings": {"isPasscodeRequired": passcode},
    });
    let (status, m) = ts.api.call(Method::POST, "/meetings", Some(body)).await;
    assert_eq!(status, 201, "{m}");
    Meeting {
        id: m["id"].as_str().expect("id").to_owned(),
        join_id: m["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join id").to_owned(),
        passcode: m["joinMeetingIdSettings"]["passcode"].as_str().map(str::to_owned),
        link: m["joinWebUrl"].as_str().expect("link").to_owned(),
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

async fn lobby_update(c: &mut Client) -> Vec<u64> {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::LobbyUpdated { .. })).await {
        Some(ServerMessage::LobbyUpdated { participants }) => participants.iter().map(|p| p.participant_id).collect(),
        other => panic!("no lobby update: {other:?}"),
    }
}

/// Wait for a lobby update that lists exactly `n` people.
async fn lobby_of(c: &mut Client, n: usize) -> Vec<u64> {
    loop {
        let ids = lobby_update(c).await;
        if ids.len() == n {
            return ids;
        }
    }
}

async fn state_change(c: &mut Client) -> (CallState, Option<EndReason>) {
    match wait_signal(c, WAIT, |m| matches!(m, ServerMessage::CallStateChanged { .. })).await {
        Some(ServerMessage::CallStateChanged { state, code, .. }) => (state, code),
        other => panic!("no call state: {other:?}"),
    }
}

/// Every bypass scope, against the organizer, a member, a guest, a federated user, an invited
/// external and an uninvited external.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bypass_scope_decides_who_waits() {
    let ts = server(|_| {}).await;
    let (organizer, o_token) = person(&ts, "olga@contoso.com").await;
    let (_, m_token) = person(&ts, "mia@contoso.com").await;
    let (_, g_token) = person(&ts, "gus@guest.contoso.com").await;
    let (_, f_token) = person(&ts, "fay@fabrikam.com").await;
    let (invited, i_token) = person(&ts, "ivo@example.org").await;
    let (_, e_token) = person(&ts, "eve@example.org").await;
    let people = [
        ("organizer", &o_token),
        ("member", &m_token),
        ("guest", &g_token),
        ("federated", &f_token),
        ("invited", &i_token),
        ("external", &e_token),
    ];
    let mut clients = Vec::new();
    for (_, token) in &people {
        let c = ts.client().await;
        c.register(token, None).await.expect("register");
        clients.push(c);
    }
    let table: [(&str, [bool; 6]); 6] = [
        //                       organizer member guest  federated invited external
        ("organizer", [true, false, false, false, false, false]),
        ("organization", [true, true, true, false, false, false]),
        ("organizationExcludingGuests", [true, true, false, false, false, false]),
        ("organizationAndFederated", [true, true, true, true, false, false]),
        ("invited", [true, false, false, false, true, false]),
        ("everyone", [true, true, true, true, true, true]),
    ];
    for (scope, direct) in table {
        let meeting = create_meeting(&ts, &organizer, &[&invited], scope, true).await;
        for (i, c) in clients.iter().enumerate() {
            let joined = c.join(None, meeting.by_id(), None).await.expect("join the meeting");
            let expected = if direct[i] { CallState::Connected } else { CallState::InLobby };
            assert_eq!(joined.state, expected, "scope {scope}: {}", people[i].0);
            if expected == CallState::InLobby {
                assert!(joined.participants.is_empty(), "someone waiting learns nothing of who is inside");
                assert!(joined.capabilities.publish.is_empty() && !joined.capabilities.receive);
            }
            c.leave().await.expect("leave");
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_lobby_waiting").await, 0.0, "everyone who waited left");
    ts.stop().await;
}

/// The organizer sees the lobby and admits one, then everyone; rejects one; the REST API does
/// the same for a trusted service. Someone who arrived before the organizer waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizers_admit_and_reject_over_signaling_and_rest() {
    let ts = server(|_| {}).await;
    let (organizer, o_token) = person(&ts, "olga@contoso.com").await;
    let meeting = create_meeting(&ts, &organizer, &[], "organization", true).await;
    // Three externals arrive before the organizer: they wait, never let in by default.
    let mut waiting = Vec::new();
    for name in ["ed", "em", "ez", "el"] {
        let (_, token) = person(&ts, &format!("{name}@example.org")).await;
        let c = ts.client().await;
        let j = c.join(Some(&token), meeting.by_id(), Some(name)).await.expect("join");
        assert_eq!(j.state, CallState::InLobby);
        waiting.push((c, j.participant_id));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (c, _) in &mut waiting {
        assert!(c.next_event_timeout(Duration::from_millis(50)).await.is_none(), "nothing happens while nobody admits");
    }
    let mut org = ts.client().await;
    let j = org.join(Some(&o_token), meeting.by_id(), Some("Olga")).await.expect("organizer joins");
    assert_eq!((j.state, j.role), (CallState::Connected, Some(switchboard::signaling::messages::Role::Presenter)));
    assert!(j.capabilities.moderate);
    let listed = lobby_of(&mut org, 4).await;
    assert_eq!(listed, waiting.iter().map(|(_, p)| *p).collect::<Vec<_>>(), "oldest first");

    // Admit one.
    org.admit_lobby(&[waiting[0].1], false).await.expect("admit");
    let (ed, ed_id) = &mut waiting[0];
    assert_eq!(state_change(ed).await, (CallState::Connected, None));
    let admitted = wait_signal(ed, WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await;
    let Some(ServerMessage::Admitted { participant_id, participants, .. }) = admitted else { panic!("admitted") };
    assert_eq!(participant_id, *ed_id);
    assert_eq!(participants.len(), 1, "the organizer is there");
    // Reject one (over REST, by identity), admit the rest over REST too.
    let lobby_path = format!("/meetings/{}/lobby", meeting.id);
    let (status, listed) = ts.api.call(Method::GET, &lobby_path, None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["value"].as_array().expect("list").len(), 3);
    let em_identity = listed["value"][0]["identity"]["user"]["id"].as_str().expect("id").to_owned();
    let (status, rejected) = ts
        .api
        .call(
            Method::POST,
            &format!("/meetings/{}/lobby:reject", meeting.id),
            Some(json!({"participants": [em_identity]})),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["value"].as_array().expect("list").len(), 1);
    let (em, _) = &mut waiting[1];
    assert_eq!(state_change(em).await, (CallState::Disconnected, Some(EndReason::LobbyRejected)));
    assert_eq!(
        code(
            em.publish(switchboard::sfu::packet::MediaKind::Audio, switchboard::sfu::packet::Codec::Opus, vec![]).await
        ),
        ErrorCode::NotJoined
    );
    let (status, body) =
        ts.api.call(Method::POST, &format!("/meetings/{}/lobby:admit", meeting.id), Some(json!({"all": true}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"].as_array().expect("list").len(), 2);
    for (c, _) in &mut waiting[2..] {
        assert_eq!(state_change(c).await, (CallState::Connected, None));
    }
    let (status, listed) = ts.api.call(Method::GET, &lobby_path, None).await;
    assert_eq!((status, listed["value"].as_array().map(Vec::len)), (200, Some(0)));
    // Only organizers and presenters manage the lobby.
    assert_eq!(code(waiting[0].0.admit_lobby(&[], true).await), ErrorCode::NotAllowed);
    let (status, _) =
        ts.api.call(Method::POST, &format!("/meetings/{}/lobby:admit", meeting.id), Some(json!({}))).await;
    assert_eq!(status, 400, "name someone or all");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_lobby_admissions_total{how=\"admitted\"}").await, 3.0);
    assert_eq!(ts.metric("switchboard_lobby_admissions_total{how=\"bypass\"}").await, 1.0);
    assert_eq!(ts.metric("switchboard_lobby_exits_total{reason=\"rejected\"}").await, 1.0);
    assert!(ts.metric("switchboard_lobby_wait_seconds_count").await >= 4.0);
    ts.stop().await;
}

/// A wait longer than the lobby timeout ends with `LobbyTimeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_times_out() {
    let ts = server(|c| c.meetings.lobby_timeout_seconds = Bounded::try_from(1).expect("in range")).await;
    let (organizer, _) = person(&ts, "olga@contoso.com").await;
    let meeting = create_meeting(&ts, &organizer, &[], "organizer", false).await;
    let (_, token) = person(&ts, "eve@example.org").await;
    let mut eve = ts.client().await;
    let started = Instant::now();
    assert_eq!(eve.join(Some(&token), meeting.by_id(), None).await.expect("join").state, CallState::InLobby);
    assert_eq!(state_change(&mut eve).await, (CallState::Disconnected, Some(EndReason::LobbyTimeout)));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Still registered: the device can join again (and wait again).
    assert_eq!(eve.join(None, meeting.by_id(), None).await.expect("join").state, CallState::InLobby);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_lobby_exits_total{reason=\"timeout\"}").await, 1.0);
    ts.stop().await;
}

/// Wrong passcodes are refused and limited per address and per meeting; a link needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passcodes_are_refused_and_rate_limited() {
    let ts = server(|c| {
        c.meetings.wrong_passcodes_per_minute_per_address = Bounded::try_from(6).expect("in range");
        c.meetings.wrong_passcodes_per_minute_per_meeting = Bounded::try_from(3).expect("in range");
    })
    .await;
    let (organizer, token) = person(&ts, "olga@contoso.com").await;
    let a = create_meeting(&ts, &organizer, &[], "everyone", true).await;
    let b = create_meeting(&ts, &organizer, &[], "everyone", true).await;
    let c = ts.client().await;
    c.register(&token, None).await.expect("register");
    let wrong = |m: &Meeting| Locator::Meeting { join_meeting_id: m.join_id.clone(), passcode: Some("nope".into()) };
    for _ in 0..3 {
        assert_eq!(code(c.join(None, wrong(&a), None).await), ErrorCode::WrongPasscode);
    }
    assert_eq!(code(c.join(None, a.by_id(), None).await), ErrorCode::RateLimited, "meeting a's budget is used");
    assert_eq!(
        code(c.join(None, Locator::Meeting { join_meeting_id: b.join_id.clone(), passcode: None }, None).await),
        ErrorCode::WrongPasscode
    );
    c.join(None, b.by_id(), None).await.expect("meeting b is fine");
    c.leave().await.expect("leave");
    assert_eq!(
        code(c.join(None, Locator::Meeting { join_meeting_id: "999999999999".into(), passcode: None }, None).await),
        ErrorCode::MeetingNotFound
    );
    assert_eq!(code(c.join(None, wrong(&b), None).await), ErrorCode::WrongPasscode);
    assert_eq!(code(c.join(None, b.by_id(), None).await), ErrorCode::RateLimited, "the address's budget (6) is used");
    // A link carries no passcode and needs none (but the address is still limited).
    let d = ts.client().await;
    d.register(&token, None).await.expect("register");
    assert_eq!(code(d.join(None, Locator::MeetingLink(a.link.clone()), None).await), ErrorCode::RateLimited);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.metric("switchboard_meeting_wrong_passcodes_total").await, 5.0);
    ts.stop().await;
}

/// Joining by link, and a meeting's live settings: a PATCH changes who bypasses from then on; a
/// DELETE ends the call and empties the lobby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_settings_changes_and_deletion() {
    let ts = server(|_| {}).await;
    let (organizer, o_token) = person(&ts, "olga@contoso.com").await;
    let meeting = create_meeting(&ts, &organizer, &[], "organizer", true).await;
    let (_, e_token) = person(&ts, "eve@example.org").await;
    let mut org = ts.client().await;
    org.join(Some(&o_token), Locator::MeetingLink(meeting.link.clone()), None).await.expect("join by link");
    let mut eve = ts.client().await;
    assert_eq!(
        eve.join(Some(&e_token), Locator::MeetingLink(meeting.link.clone()), None).await.expect("join").state,
        CallState::InLobby
    );
    eve.leave().await.expect("leave the lobby");
    assert_eq!(state_change(&mut eve).await, (CallState::Disconnected, Some(EndReason::Left)));
    let (status, body) = ts
        .api
        .call(
            Method::PATCH,
            &format!("/meetings/{}", meeting.id),
            Some(json!({"lobbyBypassSettings": {"scope": "everyone"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        eve.join(None, meeting.by_id(), None).await.expect("join").state,
        CallState::Connected,
        "everyone bypasses now"
    );
    let (_, w_token) = person(&ts, "wes@example.org").await;
    ts.api
        .call(
            Method::PATCH,
            &format!("/meetings/{}", meeting.id),
            Some(json!({"lobbyBypassSettings": {"scope": "organizer"}})),
        )
        .await;
    let mut wes = ts.client().await;
    assert_eq!(wes.join(Some(&w_token), meeting.by_id(), None).await.expect("join").state, CallState::InLobby);
    let (status, _) = ts.api.call(Method::DELETE, &format!("/meetings/{}", meeting.id), None).await;
    assert_eq!(status, 204);
    for c in [&mut org, &mut eve, &mut wes] {
        assert_eq!(state_change(c).await, (CallState::Disconnected, Some(EndReason::RoomDeleted)));
    }
    assert_eq!(code(org.join(None, meeting.by_id(), None).await), ErrorCode::MeetingNotFound);
    ts.stop().await;
}

/// While audio and video flow in the meeting, someone in the lobby receives exactly zero media
/// packets (RTP or RTCP) for 5 s and cannot subscribe; once admitted, its media starts within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_member_receives_no_media_until_admitted() {
    let ts = server(|_| {}).await;
    let (organizer, o_token) = person(&ts, "olga@contoso.com").await;
    let (_, m_token) = person(&ts, "mia@contoso.com").await;
    let (_, e_token) = person(&ts, "eve@example.org").await;
    let meeting = create_meeting(&ts, &organizer, &[], "organization", true).await;
    let mut clients = ts.clients_on_both_workers(3).await.into_iter();
    let (oc, mc, ec) = (clients.next().expect("c"), clients.next().expect("c"), clients.next().expect("c"));
    oc.join(Some(&o_token), meeting.by_id(), None).await.expect("organizer");
    mc.join(Some(&m_token), meeting.by_id(), None).await.expect("member");
    let waiting = ec.join(Some(&e_token), meeting.by_id(), None).await.expect("external");
    assert_eq!(waiting.state, CallState::InLobby);
    let mut org = Participant::new(oc, 1);
    let mut mia = Participant::new(mc, 2);
    let mut eve = Participant::new(ec, 3);
    org.publish_audio_video().await;
    mia.publish_audio_video().await;
    let tracks = [
        org.audio.as_ref().expect("a").track_id,
        org.video.as_ref().expect("v").track_id,
        mia.audio.as_ref().expect("a").track_id,
        mia.video.as_ref().expect("v").track_id,
    ];
    // The two inside subscribe to each other: media flows in the meeting.
    for t in &tracks[2..] {
        org.client.subscribe(*t, None, None).await.expect("subscribe");
    }
    for t in &tracks[..2] {
        mia.client.subscribe(*t, None, None).await.expect("subscribe");
    }
    assert_eq!(code(eve.client.subscribe(tracks[0], None, None).await), ErrorCode::InLobby);
    assert_eq!(
        code(
            eve.client
                .publish(switchboard::sfu::packet::MediaKind::Audio, switchboard::sfu::packet::Codec::Opus, vec![])
                .await
        ),
        ErrorCode::InLobby
    );
    let run = |mut p: Participant, d: Duration| {
        tokio::spawn(async move {
            p.run(d).await;
            p
        })
    };
    let (o_task, m_task) = (run(org, Duration::from_secs(9)), run(mia, Duration::from_secs(9)));
    // 5 s in the lobby while the meeting's media flows.
    let mut received = 0u32;
    let mut lobby_signals = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(ev) = tokio::time::timeout_at(deadline, eve.client.next_event()).await {
        match ev {
            Some(ClientEvent::Rtp { .. }) => received += 1,
            Some(ClientEvent::Signal(m)) => lobby_signals.push(m),
            Some(_) => {}
            None => break,
        }
    }
    let (sr, rr) = eve.client.report_stats();
    assert_eq!((received, sr, rr), (0, 0, 0), "not one RTP or RTCP packet reaches the lobby");
    assert!(lobby_signals.is_empty(), "nothing of the meeting reaches the lobby: {lobby_signals:?}");
    // Admission: media starts within a second.
    let org_admits =
        Client::connect(switchboard::client::ClientOptions::new(ts.server.quic_addr, ts.ca.clone())).await.expect("c");
    org_admits.join(Some(&o_token), meeting.by_id(), None).await.expect("the organizer's second device");
    let admitted_at = Instant::now();
    org_admits.admit_lobby(&[waiting.participant_id], false).await.expect("admit");
    let admitted = wait_signal(&mut eve.client, WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await;
    let Some(ServerMessage::Admitted { participants, .. }) = admitted else { panic!("admitted") };
    let video = participants
        .iter()
        .flat_map(|p| p.tracks.iter())
        .find(|t| t.kind == switchboard::sfu::packet::MediaKind::Video)
        .expect("the admitted one learns the tracks")
        .track_id;
    let sub = eve.client.subscribe(video, Some(0), None).await.expect("subscribe once admitted");
    let first = loop {
        match eve.client.next_event_timeout(Duration::from_secs(2)).await {
            Some(ClientEvent::Rtp { subscription, .. }) if subscription == sub.subscription_id => {
                break admitted_at.elapsed();
            }
            Some(_) => {}
            None => panic!("no media after admission"),
        }
    };
    println!("first media packet {} ms after the admit request", first.as_millis());
    assert!(first < Duration::from_secs(1), "media starts within 1 s of admission: {first:?}");
    let _ = (o_task.await, m_task.await);
    ts.stop().await;
}
