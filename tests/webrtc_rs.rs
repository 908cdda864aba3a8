//! WebRTC through the SFU with webrtc-rs as the client: an independent WebRTC implementation
//! (the server uses str0m), so the two check each other.

mod common;

use common::media::{TestServer, group, now_us};
use common::webrtc::{RsPeer, Signal, write, write_audio};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Duration;
use switchboard::client::synthetic::{SyntheticAudio, SyntheticVideo, read_marker};
use switchboard::signaling::messages::{ClientMessage, ServerMessage};

/// Join over WebSocket with a fresh identity.
async fn ws_join(ts: &TestServer, g: &str) -> Signal {
    let (_, token) = ts.identity(&["voip"]).await;
    let mut s = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let r = s.request(ClientMessage::Join { token, group_id: Some(g.into()), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
    s
}

/// Answer every server offer that arrives within `limit`.
async fn answer_offers(sig: &mut Signal, peer: &mut RsPeer, limit: Duration) -> usize {
    let mut n = 0;
    while let Some(ServerMessage::Offer { sdp }) =
        sig.wait_for(limit, |m| matches!(m, ServerMessage::Offer { .. })).await
    {
        let answer = peer.answer(sdp).await;
        let r = sig.request(ClientMessage::Answer { sdp: answer }).await;
        assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_publishes_and_subscribes_through_the_sfu() {
    let ts = TestServer::start(2).await;
    let g = group();

    // Publisher: VP8 video and Opus audio from webrtc-rs.
    let mut pub_sig = ws_join(&ts, &g).await;
    let mut publisher = RsPeer::new().await;
    let video = publisher.add_track(RtpCodecKind::Video, "video/VP8", 90_000, 0, 0x1111).await;
    let audio = publisher.add_track(RtpCodecKind::Audio, "audio/opus", 48_000, 2, 0x2222).await;
    let offer = publisher.offer().await;
    let answer = pub_sig.request(ClientMessage::Offer { sdp: offer }).await;
    let ServerMessage::Answer { sdp, .. } = answer else { panic!("expected an answer, got {answer:?}") };
    publisher.accept_answer(sdp).await;
    let mut tracks = Vec::new();
    while tracks.len() < 2 {
        match pub_sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Published { .. })).await {
            Some(ServerMessage::Published { track_id, kind, .. }) => tracks.push((track_id, kind.expect("kind"))),
            other => panic!("expected published tracks, got {other:?}"),
        }
    }
    assert!(publisher.connected(Duration::from_secs(10)).await, "publisher connects (ICE-lite, DTLS)");

    // Subscriber: webrtc-rs, answering the server's offers.
    let mut sub_sig = ws_join(&ts, &g).await;
    let mut subscriber = RsPeer::new().await;
    for (track, _) in &tracks {
        let r = sub_sig
            .request(ClientMessage::Subscribe { track_id: *track, preferred_layer: None, max_height: None })
            .await;
        assert!(matches!(r, ServerMessage::Subscribed { stream_id: Some(_), .. }), "{r:?}");
    }
    assert!(answer_offers(&mut sub_sig, &mut subscriber, Duration::from_secs(2)).await >= 1);
    assert!(subscriber.connected(Duration::from_secs(10)).await, "subscriber connects");

    // Media: 2 s of synthetic VP8 (keyframe every 15 frames) and Opus.
    // webrtc-rs sends only packets carrying its track's SSRC.
    let mut vgen = SyntheticVideo::new(0x1111, &[(640, 360, 400_000)]);
    let mut agen = SyntheticAudio::new(0x2222);
    for i in 0..100u32 {
        if i % 2 == 0 {
            for p in vgen.frame(0, i % 30 == 0, now_us()) {
                write(&video, &p).await;
            }
        }
        write_audio(&audio, &agen.packet(20, now_us())).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got_video = 0;
    let mut got_audio = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, subscriber.received.recv()).await {
        match read_marker(&r.packet) {
            Some(m) if m.layer == 255 => got_audio += 1,
            Some(_) => got_video += 1,
            None => {}
        }
    }
    if std::env::var("SB_DEBUG").is_ok() {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (_, m) = ts.api.get_public("/metrics").await;
        for l in m.lines().filter(|l| {
            (l.contains("media_") || l.contains("forwarded") || l.contains("keyframe")) && !l.starts_with('#')
        }) {
            eprintln!("{l}");
        }
    }
    assert!(got_audio >= 60, "audio packets received by webrtc-rs: {got_audio}");
    assert!(got_video >= 40, "video packets received by webrtc-rs: {got_video}");
    ts.stop().await;
}
