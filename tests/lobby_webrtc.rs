//! A WebRTC (webrtc-rs) member of a meeting's lobby receives no packet at all, counted at the
//! socket: every WebRTC packet of the test goes through a counting UDP relay (the server announces
//! the relay as its candidate), and while someone else in the meeting receives SRTP through it, not
//! one packet goes to the one waiting. After admission its media flows through the same relay.

mod common;

use common::media::{Participant, TestServer};
use common::relay::UdpRelay;
use common::webrtc::{RsPeer, Signal};
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::client::Locator;
use switchboard::signaling::messages::{CallState, ClientMessage, ErrorCode, JoinAt, ServerMessage};

/// Join over WebSocket, answer the server's offers for `subscribe`d tracks, and connect.
async fn subscribe_and_connect(sig: &mut Signal, peer: &mut RsPeer, track: u64) {
    let r = sig.request(ClientMessage::Subscribe { track_id: track, preferred_layer: Some(0), max_height: None }).await;
    assert!(matches!(r, ServerMessage::Subscribed { .. }), "{r:?}");
    let Some(ServerMessage::Offer { sdp, offer_id }) =
        sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Offer { .. })).await
    else {
        panic!("the server offers the subscription")
    };
    let answer = peer.answer(sdp).await;
    let r = sig.request(ClientMessage::Answer { sdp: answer, offer_id: Some(offer_id) }).await;
    assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
    assert!(peer.connected(Duration::from_secs(10)).await, "connects through the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_lobby_member_gets_no_packet_at_the_socket_until_admitted() {
    let ts = TestServer::start_with(1, |c| c.webrtc.public_ips = vec!["127.0.0.2".parse().expect("ip")]).await;
    let port = ts.server.webrtc_addrs()[0].port();
    let relay =
        UdpRelay::start(SocketAddr::from(([127, 0, 0, 2], port)), SocketAddr::from(([127, 0, 0, 1], port))).await;

    let (organizer, o_token) = ts.identity(&["voip"]).await;
    let (member, m_token) = ts.identity(&["voip"]).await;
    let (_, e_token) = ts.identity(&["voip"]).await;
    let body = json!({
        "participants": {
            "organizer": {"identity": {"user": {"id": organizer}}},
            "attendees": [{"identity": {"user": {"id": member}}, "role": "attendee"}],
        },
        "lobbyBypassSettings": {"scope": "invited"},
        "joinMeetingIdSettings": {"isPasscodeRequired": true},
    });
    let (status, m) = ts.api.call(Method::POST, "/meetings", Some(body)).await;
    assert_eq!(status, 201, "{m}");
    let meeting_id = m["id"].as_str().expect("id").to_owned();
    let join_id = m["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join id").to_owned();
    let passcode = m["joinMeetingIdSettings"]["passcode"].as_str().expect("passcode").to_owned();

    // The organizer publishes video over QUIC for the whole test.
    let oc = ts.client().await;
    oc.join(
        Some(&o_token),
        Locator::Meeting { join_meeting_id: join_id.clone(), passcode: Some(passcode.clone()) },
        None,
    )
    .await
    .expect("organizer");
    let mut org = Participant::new(oc, 1);
    org.publish_audio_video().await;
    let video = org.video.as_ref().expect("video").track_id;
    let org_task = tokio::spawn(async move {
        org.run(Duration::from_secs(14)).await;
        org
    });

    // An invited member joins over WebRTC and receives the organizer's video through the relay.
    let mut m_sig = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let at = JoinAt::meeting(&join_id, Some(&passcode));
    let r = m_sig.request(ClientMessage::Join { token: Some(m_token), at: at.clone(), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Joined { state: CallState::Connected, .. }), "{r:?}");
    let mut m_peer = RsPeer::new().await;
    subscribe_and_connect(&mut m_sig, &mut m_peer, video).await;

    // An external joins over WebRTC and waits; what it tries to negotiate is refused.
    let mut e_sig = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let r = e_sig.request(ClientMessage::Join { token: Some(e_token), at, display_name: None }).await;
    let ServerMessage::Joined { state: CallState::InLobby, participant_id, .. } = r else {
        panic!("in the lobby: {r:?}")
    };
    let mut e_peer = RsPeer::new().await;
    let _audio = e_peer
        .add_sendonly_track(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio, "audio/opus", 48_000, 2, 0x2222)
        .await;
    let offer = e_peer.offer().await;
    let r = e_sig.request(ClientMessage::Offer { sdp: offer, sources: Default::default() }).await;
    assert!(matches!(r, ServerMessage::Error { code: ErrorCode::InLobby, .. }), "{r:?}");
    let r = e_sig.request(ClientMessage::Subscribe { track_id: video, preferred_layer: None, max_height: None }).await;
    assert!(matches!(r, ServerMessage::Error { code: ErrorCode::InLobby, .. }), "{r:?}");

    // Five seconds: the member receives SRTP through the relay; nothing goes to anyone else.
    let members: Vec<SocketAddr> = relay.clients().iter().map(|(a, _)| *a).collect();
    assert_eq!(members.len(), 1, "only the member has sent through the relay");
    let before = relay.clients()[0].1.media();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = relay.clients()[0].1.media() - before;
    assert!(during > 100, "the member received SRTP through the relay meanwhile ({during})");
    assert_eq!(relay.clients().len(), 1, "the one waiting never got an address to send to");
    assert_eq!(relay.media_to_others(&members), 0, "no SRTP or SRTCP reached anyone else");
    assert!(e_peer.received.try_recv().is_err(), "the waiting peer decoded nothing");
    while let Some(m) = e_sig.next(Duration::from_millis(50)).await {
        assert!(matches!(m, ServerMessage::Error { .. }), "nothing of the meeting reaches the lobby: {m:?}");
    }

    // Admitted over REST: it negotiates a peer (through the relay) and media flows within a second.
    let admitted_at = Instant::now();
    let (status, body) =
        ts.api.call(Method::POST, &format!("/meetings/{meeting_id}/lobby:admit"), Some(json!({"all": true}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"][0]["participantId"], participant_id);
    let Some(ServerMessage::Admitted { .. }) =
        e_sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Admitted { .. })).await
    else {
        panic!("admitted")
    };
    let mut e_peer = RsPeer::new().await;
    subscribe_and_connect(&mut e_sig, &mut e_peer, video).await;
    let first = tokio::time::timeout(Duration::from_secs(3), e_peer.received.recv()).await;
    assert!(matches!(first, Ok(Some(_))), "media after admission");
    let took = admitted_at.elapsed();
    println!("first packet {} ms after the admission", took.as_millis());
    assert!(took < Duration::from_secs(1), "within a second of admission: {took:?}");
    assert!(relay.media_to_others(&members) > 0, "and it came through the relay, counted at the socket");
    drop(org_task.await);
    ts.stop().await;
}
