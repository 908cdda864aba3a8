//! WebRTC through the SFU with webrtc-rs as the client: an independent WebRTC implementation
//! (the server uses str0m), so the two check each other.

mod common;

use common::media::{TestServer, contiguous, group, now_us};
use common::webrtc::{RsPeer, Signal, write, write_audio};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Duration;
use switchboard::client::ClientEvent;
use switchboard::client::synthetic::{SyntheticAudio, SyntheticVideo, read_marker};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{ClientMessage, ErrorCode, JoinAt, ServerMessage};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

/// Join over WebSocket with a fresh identity.
async fn ws_join(ts: &TestServer, g: &str) -> Signal {
    let (_, token) = ts.identity(&["voip"]).await;
    let mut s = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let r = s.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(g), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
    s
}

/// Answer every server offer that arrives within `limit`.
async fn answer_offers(sig: &mut Signal, peer: &mut RsPeer, limit: Duration) -> usize {
    let mut n = 0;
    while let Some(ServerMessage::Offer { sdp, offer_id }) =
        sig.wait_for(limit, |m| matches!(m, ServerMessage::Offer { .. })).await
    {
        let answer = peer.answer(sdp).await;
        let r = sig.request(ClientMessage::Answer { sdp: answer, offer_id: Some(offer_id) }).await;
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
    let answer = pub_sig.request(ClientMessage::Offer { sdp: offer, sources: Default::default() }).await;
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

/// A webrtc-rs publisher joined to a call, with its published tracks.
struct RsPublisher {
    _sig: Signal,
    /// Kept alive for the duration of the test (dropping it closes the peer connection).
    _peer: RsPeer,
    video: std::sync::Arc<TrackLocalStaticRTP>,
    audio: std::sync::Arc<TrackLocalStaticRTP>,
    /// (track ID, kind, codec) as the server published them.
    tracks: Vec<(u64, MediaKind, Codec)>,
    answer_sdp: String,
}

async fn rs_publisher(ts: &TestServer, g: &str, mut peer: RsPeer, video_mime: &str) -> RsPublisher {
    let mut sig = ws_join(ts, g).await;
    let video = peer.add_track(RtpCodecKind::Video, video_mime, 90_000, 0, 0x1111).await;
    let audio = peer.add_track(RtpCodecKind::Audio, "audio/opus", 48_000, 2, 0x2222).await;
    let offer = peer.offer().await;
    let ServerMessage::Answer { sdp, .. } =
        sig.request(ClientMessage::Offer { sdp: offer, sources: Default::default() }).await
    else {
        panic!("answer")
    };
    peer.accept_answer(sdp.clone()).await;
    let mut tracks = Vec::new();
    while tracks.len() < 2 {
        match sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Published { .. })).await {
            Some(ServerMessage::Published { track_id, kind, codec, .. }) => {
                tracks.push((track_id, kind.expect("kind"), codec.expect("codec")));
            }
            other => panic!("expected published tracks, got {other:?}"),
        }
    }
    assert!(peer.connected(Duration::from_secs(10)).await, "publisher connects");
    RsPublisher { _sig: sig, _peer: peer, video, audio, tracks, answer_sdp: sdp }
}

async fn rs_subscriber(ts: &TestServer, g: &str, mut peer: RsPeer, tracks: &[u64]) -> (Signal, RsPeer) {
    let mut sig = ws_join(ts, g).await;
    for track in tracks {
        let r =
            sig.request(ClientMessage::Subscribe { track_id: *track, preferred_layer: None, max_height: None }).await;
        assert!(matches!(r, ServerMessage::Subscribed { .. }), "{r:?}");
    }
    assert!(answer_offers(&mut sig, &mut peer, Duration::from_secs(2)).await >= 1);
    assert!(peer.connected(Duration::from_secs(10)).await, "subscriber connects");
    (sig, peer)
}

/// Received RTP packets grouped by the server's track names (`t<trackId>`).
async fn drain(peer: &mut RsPeer, limit: Duration) -> std::collections::HashMap<String, Vec<bytes::Bytes>> {
    let mut out: std::collections::HashMap<String, Vec<bytes::Bytes>> = Default::default();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, peer.received.recv()).await {
        out.entry(r.track_id).or_default().push(r.packet);
    }
    out
}

/// A QUIC client and webrtc-rs peers in one call: media crosses transports both ways, with
/// payload types mapped to what each WebRTC peer negotiated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_webrtc_exchange_media_with_payload_types_mapped() {
    let ts = TestServer::start(2).await;
    let g = group();
    // QUIC publisher, deliberately on payload type 100 for VP8.
    let (quic, _) = ts.joined(&g).await;
    let qvideo = quic.publish(MediaKind::Video, Codec::Vp8, vec![]).await.expect("publish");
    let qaudio = quic.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publish");
    let (_sub_sig, mut subscriber) =
        rs_subscriber(&ts, &g, RsPeer::new().await, &[qvideo.track_id, qaudio.track_id]).await;
    let mut vgen = SyntheticVideo::new(40, &[(320, 180, 200_000)]);
    let mut agen = SyntheticAudio::new(41);
    for i in 0..75u32 {
        if i % 2 == 0 {
            for p in vgen.frame(0, i % 20 == 0, now_us()) {
                let mut p = p.to_vec();
                p[1] = (p[1] & 0x80) | 100;
                quic.send_rtp(&qvideo, 0, p.into()).expect("send");
            }
        }
        quic.send_rtp(&qaudio, 0, agen.packet(30, now_us())).expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = drain(&mut subscriber, Duration::from_secs(1)).await;
    let video = &got[&format!("t{}", qvideo.track_id)];
    let audio = &got[&format!("t{}", qaudio.track_id)];
    assert!(video.len() >= 30, "webrtc-rs got the QUIC client's video: {}", video.len());
    assert!(audio.len() >= 50, "webrtc-rs got the QUIC client's audio: {}", audio.len());
    let pts: std::collections::HashSet<u8> = video.iter().map(|p| p[1] & 0x7f).collect();
    assert_eq!(pts.len(), 1);
    assert_ne!(
        pts.iter().next(),
        Some(&100),
        "VP8 arrives on the payload type webrtc-rs negotiated, not the publisher's"
    );
    assert!(video.iter().all(|p| read_marker(p).is_some_and(|m| m.layer == 0)));
    assert!(contiguous(video.iter().map(|p| u16::from_be_bytes([p[2], p[3]]))), "no holes");

    // webrtc-rs publisher → QUIC subscriber.
    let publisher = rs_publisher(&ts, &g, RsPeer::new().await, "video/VP8").await;
    let mut quic = quic;
    let video_track = publisher.tracks.iter().find(|t| t.1 == MediaKind::Video).expect("video").0;
    let sub = quic.subscribe(video_track, None, None).await.expect("subscribe");
    let mut vgen = SyntheticVideo::new(0x1111, &[(640, 360, 300_000)]);
    for i in 0..30u32 {
        for p in vgen.frame(0, i % 10 == 0, now_us()) {
            write(&publisher.video, &p).await;
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let mut frames = Vec::new();
    while let Some(ev) = quic.next_event_timeout(Duration::from_millis(500)).await {
        if let ClientEvent::Rtp { subscription, packet } = ev
            && subscription == sub.subscription_id
        {
            frames.push(read_marker(&packet).expect("marker").frame);
        }
    }
    assert!(frames.len() >= 20, "the QUIC client got webrtc-rs video: {}", frames.len());
    drop(publisher);
    ts.stop().await;
}

/// RFC 4733 telephone-events a QUIC client sends (payload type 101 in its Opus track) reach a
/// WebRTC peer that negotiated telephone-event/48000 on the payload type of that negotiation,
/// between Opus packets on its Opus type; a peer that did not negotiate them gets the Opus
/// packets only. (Browsers that offer first pick their own type, e.g. Chrome's 110: the Chromium
/// DTMF test covers that direction.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telephone_events_reach_webrtc_peers_in_their_payload_type() {
    use switchboard::call_automation::audio::dtmf::{Tone, tone_packets};
    let ts = TestServer::start(2).await;
    let g = group();
    let (quic, _) = ts.joined(&g).await;
    let audio = quic.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publish");
    let (_with_sig, mut with_tele) =
        rs_subscriber(&ts, &g, RsPeer::with_telephone_events().await, &[audio.track_id]).await;
    let answer = with_tele.pc.local_description().await.expect("answered").sdp;
    let tele_pt: u8 = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" telephone-event/48000")?.parse().ok())
        .unwrap_or_else(|| panic!("the peer negotiated telephone-event/48000: {answer}"));
    let (_without_sig, mut without) = rs_subscriber(&ts, &g, RsPeer::new().await, &[audio.track_id]).await;
    let (ssrc, mut seq, mut ts48) = (0x7e1e_u32, 1000u16, 960_000u32);
    let opus = |seq: u16, ts48: u32| {
        let mut p = vec![0x80, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts48.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xf8, 0xff, 0xfe]); // an Opus frame of silence
        bytes::Bytes::from(p)
    };
    let mut tones_sent = 0;
    for round in 0..3 {
        for _ in 0..25 {
            quic.send_rtp(&audio, 0, opus(seq, ts48)).expect("send");
            seq = seq.wrapping_add(1);
            ts48 = ts48.wrapping_add(960);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = tokio::time::Instant::now();
        let packets = tone_packets(&[[Tone::Five, Tone::Pound, Tone::Zero][round]], ssrc, 101, seq, ts48, 48_000);
        seq = seq.wrapping_add(packets.len() as u16);
        ts48 = ts48.wrapping_add(48_000 / 4);
        tones_sent += packets.len();
        for (offset, packet) in packets {
            tokio::time::sleep_until(start + offset).await;
            quic.send_rtp(&audio, 0, packet).expect("send");
        }
    }
    let key = format!("t{}", audio.track_id);
    let got = drain(&mut with_tele, Duration::from_secs(1)).await.remove(&key).unwrap_or_default();
    let pt = |p: &bytes::Bytes| p[1] & 0x7f;
    let tele = got.iter().filter(|p| pt(p) == tele_pt).count();
    let voice = got.iter().filter(|p| pt(p) == 111).count();
    assert_eq!(tele, tones_sent, "every telephone-event arrives as {tele_pt} ({} packets)", got.len());
    assert!(voice >= 70, "the Opus packets arrive as 111: {voice}");
    assert_eq!(
        tele + voice,
        got.len(),
        "nothing else: {:?}",
        got.iter().map(pt).collect::<std::collections::BTreeSet<_>>()
    );
    assert!(contiguous(got.iter().map(|p| u16::from_be_bytes([p[2], p[3]]))), "one clean stream");
    let plain = drain(&mut without, Duration::from_millis(200)).await.remove(&key).unwrap_or_default();
    assert!(plain.len() >= 70, "the peer without telephone-events gets the voice: {}", plain.len());
    assert!(plain.iter().all(|p| pt(p) == 111), "and no telephone-events");
    ts.stop().await;
}

/// H.264 end to end: a webrtc-rs publisher offering only H.264, a webrtc-rs subscriber; the SFU
/// starts the subscriber at an IDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_is_forwarded_from_an_idr_on() {
    let ts = TestServer::start(2).await;
    let g = group();
    let publisher = rs_publisher(&ts, &g, RsPeer::h264_only().await, "video/H264").await;
    let (video, _, codec) = *publisher.tracks.iter().find(|t| t.1 == MediaKind::Video).expect("video");
    assert_eq!(codec, Codec::H264, "the track was published as H.264");
    let (_sig, mut subscriber) = rs_subscriber(&ts, &g, RsPeer::h264_only().await, &[video]).await;
    // Single-NAL-unit packets: an IDR (type 5) every 15 frames, non-IDR slices (type 1) between.
    for i in 0..60u32 {
        let nal: u8 = if i % 15 == 5 { 0x65 } else { 0x41 };
        let mut payload = vec![nal];
        payload.extend_from_slice(&i.to_be_bytes());
        payload.resize(400, 0x11);
        let rtp = switchboard::rtp::RtpBuilder {
            payload_type: 102,
            seq: i as u16,
            timestamp: i * 3000,
            ssrc: 0x1111,
            marker: true,
            extensions: vec![],
        };
        write(&publisher.video, &rtp.build(&payload)).await;
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let got = drain(&mut subscriber, Duration::from_secs(1)).await;
    let packets = &got[&format!("t{video}")];
    let first = switchboard::rtp::RtpHeader::parse(&packets[0]).expect("rtp");
    assert_eq!(packets[0][first.payload.start] & 0x1f, 5, "the first packet forwarded is an IDR");
    assert!(packets.len() >= 40, "H.264 packets received: {}", packets.len());
    drop(publisher);
    ts.stop().await;
}

/// H.264 goes to a browser in the payload type whose format fits what the publisher sends, not
/// in the first H.264 one it negotiated: a subscriber that takes packetization mode 0 (single NAL
/// units only) and mode 1 gets a mode-1 publisher's stream as mode 1 (its FU-A fragments would
/// not be accepted as mode 0), and a mode-0 publisher's as mode 0; the QUIC client gets both in
/// the SFU's own payload types for those formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_goes_out_in_the_payload_type_of_the_publishers_format() {
    let ts = TestServer::start(2).await;
    let g = group();
    const MODE0: &str = "packetization-mode=0;profile-level-id=42001f";
    const MODE1: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
    let mode1 = rs_publisher(&ts, &g, RsPeer::h264(&[(102, MODE1)]).await, "video/H264").await;
    let mode0 = rs_publisher(&ts, &g, RsPeer::h264(&[(97, MODE0)]).await, "video/H264").await;
    let video = |p: &RsPublisher| p.tracks.iter().find(|t| t.1 == MediaKind::Video).expect("video").0;
    let (v1, v0) = (video(&mode1), video(&mode0));
    // The subscriber negotiates both formats; mode 0 comes first in the server's offer.
    let (_sig, mut subscriber) =
        rs_subscriber(&ts, &g, RsPeer::h264(&[(125, MODE0), (108, MODE1)]).await, &[v1, v0]).await;
    let (mut quic, _) = ts.joined(&g).await;
    let q1 = quic.subscribe(v1, None, None).await.expect("subscribe");
    let q0 = quic.subscribe(v0, None, None).await.expect("subscribe");
    // Single-NAL-unit packets, an IDR first: valid in either mode.
    for i in 0..45u32 {
        let nal: u8 = if i % 15 == 0 { 0x65 } else { 0x41 };
        let mut payload = vec![nal];
        payload.extend_from_slice(&i.to_be_bytes());
        payload.resize(300, 0x11);
        for (publisher, pt) in [(&mode1, 102), (&mode0, 97)] {
            let rtp = switchboard::rtp::RtpBuilder {
                payload_type: pt,
                seq: i as u16,
                timestamp: i * 3000,
                ssrc: 0x1111,
                marker: true,
                extensions: vec![],
            };
            write(&publisher.video, &rtp.build(&payload)).await;
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let got = drain(&mut subscriber, Duration::from_secs(1)).await;
    let one = |pt: u8| std::collections::HashSet::from([pt]);
    let pts = |track: u64| -> std::collections::HashSet<u8> {
        got.get(&format!("t{track}")).map(|ps| ps.iter().map(|p| p[1] & 0x7f).collect()).unwrap_or_default()
    };
    assert_eq!(pts(v1), one(108), "the mode-1 stream in the subscriber's mode-1 payload type");
    assert_eq!(pts(v0), one(125), "the mode-0 stream in the subscriber's mode-0 payload type");
    let mut quic_pts: std::collections::HashMap<u64, std::collections::HashSet<u8>> = Default::default();
    while let Some(event) = quic.next_event_timeout(Duration::from_millis(300)).await {
        if let ClientEvent::Rtp { subscription, packet } = event {
            quic_pts.entry(subscription).or_default().insert(packet[1] & 0x7f);
        }
    }
    assert_eq!(quic_pts[&q1.subscription_id], one(108), "the SFU's payload type for 42e01f, mode 1");
    assert_eq!(quic_pts[&q0.subscription_id], one(125), "the SFU's payload type for 42001f, mode 0");
    ts.stop().await;
}

/// Garbage on the WebRTC media port and malformed signaling are dropped and counted; an ongoing
/// call is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_media_and_signaling_do_not_disturb_a_call() {
    let ts = TestServer::start(2).await;
    let g = group();
    let publisher = rs_publisher(&ts, &g, RsPeer::new().await, "video/VP8").await;
    let audio = publisher.tracks.iter().find(|t| t.1 == MediaKind::Audio).expect("audio").0;
    let (_sig, mut subscriber) = rs_subscriber(&ts, &g, RsPeer::new().await, &[audio]).await;
    let ufrag = publisher
        .answer_sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("the server's ufrag")
        .trim()
        .to_owned();
    let mut agen = SyntheticAudio::new(0x2222);
    let mut send_audio = |n: usize| {
        let track = publisher.audio.clone();
        let packets: Vec<_> = (0..n).map(|_| agen.packet(30, now_us())).collect();
        async move {
            for p in packets {
                write_audio(&track, &p).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    send_audio(25).await;
    let before = drain(&mut subscriber, Duration::from_millis(300)).await.values().map(Vec::len).sum::<usize>();
    assert!(before >= 15, "audio flows before the garbage: {before}");

    // Garbage to every worker's media port, from an address no peer uses.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut stun_wrong_integrity = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun_wrong_integrity.extend_from_slice(&[7; 12]);
    let user = format!("{ufrag}:evil");
    let mut attr = vec![0x00, 0x06, 0x00, user.len() as u8];
    attr.extend_from_slice(user.as_bytes());
    attr.resize(attr.len().div_ceil(4) * 4, 0);
    attr.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attr.extend_from_slice(&[0xab; 20]);
    stun_wrong_integrity[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
    stun_wrong_integrity.extend_from_slice(&attr);
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 100],                                            // not STUN, DTLS, RTP or RTCP
        vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 9],                // a truncated DTLS record
        vec![0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad], // RTP from nobody
        vec![0x80, 200, 0, 1, 1, 2, 3],                             // RTCP from nobody
        stun_wrong_integrity,                                       // names a real peer but fails its integrity check
    ];
    for addr in ts.server.webrtc_addrs() {
        for g in &garbage {
            for _ in 0..5 {
                junk.send_to(g, addr).expect("send");
            }
        }
    }
    // Malformed signaling on the publisher's and a bystander's sessions.
    let mut bystander = ws_join(&ts, &g).await;
    bystander.send_text("{not json").await;
    bystander.send_text(r#"{"type":"warp"}"#).await;
    bystander.send_text(r#"{"type":"subscribe"}"#).await;
    let pong = bystander.request(ClientMessage::Ping {}).await;
    assert!(matches!(pong, ServerMessage::Pong { .. }), "the session survives malformed messages");
    let errors = bystander
        .events
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { code: ErrorCode::BadRequest, .. }))
        .count();
    assert_eq!(errors, 3, "one error per malformed message: {:?}", bystander.events);
    // An oversized message ends only that session.
    bystander.send_text(&"x".repeat(100_000)).await;
    assert!(bystander.closed(Duration::from_secs(5)).await, "the oversized sender is disconnected");

    send_audio(50).await;
    let after = drain(&mut subscriber, Duration::from_millis(500)).await.values().map(Vec::len).sum::<usize>();
    assert!(after >= 40, "the call goes on: {after} audio packets after the garbage");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for reason in ["malformed_udp", "unknown_source"] {
        let v = ts.metric(&format!("switchboard_media_drops_total{{reason=\"{reason}\"}}")).await;
        assert!(v >= 5.0, "{reason}: {v}");
    }
    assert!(ts.metric("switchboard_signaling_messages_total{result=\"malformed\"}").await >= 3.0);
    drop(publisher);
    ts.stop().await;
}

/// A `Consumer` in an ACS Room, over WebRTC: the media lines it offers to send are answered
/// `inactive` (and reported as refused), nothing is published, and it still receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_offering_to_send_is_answered_inactive_and_still_receives() {
    let ts = TestServer::start(2).await;
    let (presenter, p_token) = ts.identity(&["voip"]).await;
    let (consumer, c_token) = ts.identity(&["voip"]).await;
    let (status, room) = ts
        .api
        .call(
            reqwest::Method::POST,
            "/rooms?api-version=2024-04-15",
            Some(
                serde_json::json!({"participants": {presenter: {"role": "Presenter"}, consumer: {"role": "Consumer"}}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().expect("room id").to_owned();
    // The presenter publishes over QUIC.
    let quic = ts.client().await;
    quic.join(Some(&p_token), switchboard::client::Locator::Room(room_id.clone()), None).await.expect("join");
    let qvideo = quic.publish(MediaKind::Video, Codec::Vp8, vec![]).await.expect("publish");

    // The consumer joins over WebSocket and offers to send video and audio.
    let mut sig = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let joined =
        sig.request(ClientMessage::Join { token: Some(c_token), at: JoinAt::room(&room_id), display_name: None }).await;
    let ServerMessage::Joined { capabilities, .. } = &joined else { panic!("joined: {joined:?}") };
    assert!(capabilities.publish.is_empty() && capabilities.receive, "{capabilities:?}");
    // A send-only video line (as a publishing browser offers) and a send-receive audio line.
    let mut peer = RsPeer::new().await;
    let _video = peer.add_sendonly_track(RtpCodecKind::Video, "video/VP8", 90_000, 0, 0x1111).await;
    let _audio = peer.add_track(RtpCodecKind::Audio, "audio/opus", 48_000, 2, 0x2222).await;
    let offer = peer.offer().await;
    let directions = |sdp: &str| -> Vec<String> {
        sdp.lines()
            .map(str::trim)
            .filter(|l| matches!(*l, "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(directions(&offer), ["a=sendonly", "a=sendrecv"], "{offer}");
    let answer = sig.request(ClientMessage::Offer { sdp: offer, sources: Default::default() }).await;
    let ServerMessage::Answer { sdp, .. } = answer else { panic!("expected an answer, got {answer:?}") };
    assert_eq!(
        directions(&sdp),
        ["a=inactive", "a=sendonly"],
        "the send-only line is answered inactive; the other may only receive: {sdp}"
    );
    peer.accept_answer(sdp).await;
    let mut refused = 0;
    while let Some(m) = sig.next(Duration::from_millis(500)).await {
        match m {
            ServerMessage::Error { code: ErrorCode::NotAllowed, .. } => refused += 1,
            ServerMessage::Published { .. } => panic!("a consumer published a track"),
            _ => {}
        }
    }
    assert_eq!(refused, 2, "both refused lines are reported");

    // It still receives: subscribe to the presenter's video.
    let r = sig
        .request(ClientMessage::Subscribe { track_id: qvideo.track_id, preferred_layer: None, max_height: None })
        .await;
    assert!(matches!(r, ServerMessage::Subscribed { .. }), "{r:?}");
    assert!(answer_offers(&mut sig, &mut peer, Duration::from_secs(2)).await >= 1);
    assert!(peer.connected(Duration::from_secs(10)).await, "the consumer connects");
    let mut vgen = SyntheticVideo::new(40, &[(320, 180, 200_000)]);
    for i in 0..75u32 {
        for p in vgen.frame(0, i % 15 == 0, now_us()) {
            quic.send_rtp(&qvideo, 0, p).expect("send");
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let got = drain(&mut peer, Duration::from_secs(1)).await;
    let video = got.get(&format!("t{}", qvideo.track_id)).map_or(0, Vec::len);
    assert!(video >= 40, "the consumer receives the presenter's video: {video}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        ts.metric("switchboard_media_packets_total{direction=\"in\",kind=\"video\",transport=\"webrtc\"}").await,
        0.0,
        "no media came in from the consumer"
    );
    ts.stop().await;
}

/// A WebSocket session is a device that outlives its calls: after leaving, the same session joins
/// another call with a new peer connection (fresh ICE and DTLS) and media flows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_takes_part_in_two_calls_one_after_the_other() {
    let ts = TestServer::start(1).await;
    let (_, token) = ts.identity(&["voip"]).await;
    let mut sig = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let r = sig.request(ClientMessage::Register { token, display_name: Some("Ada".into()) }).await;
    assert!(matches!(r, ServerMessage::Registered { .. }), "{r:?}");
    for round in 0..2 {
        let g = group();
        let r = sig.request(ClientMessage::Join { token: None, at: JoinAt::group(&g), display_name: None }).await;
        assert!(matches!(r, ServerMessage::Joined { .. }), "round {round}: {r:?}");
        // A QUIC publisher in the same call.
        let (quic, _) = ts.joined(&g).await;
        let qvideo = quic.publish(MediaKind::Video, Codec::Vp8, vec![]).await.expect("publish");
        // This session publishes audio and receives the QUIC client's video on a new peer.
        let mut peer = RsPeer::new().await;
        let audio = peer.add_sendonly_track(RtpCodecKind::Audio, "audio/opus", 48_000, 2, 0x2222).await;
        let offer = peer.offer().await;
        let answer = sig.request(ClientMessage::Offer { sdp: offer, sources: Default::default() }).await;
        let ServerMessage::Answer { sdp, .. } = answer else {
            panic!("round {round}: expected an answer, got {answer:?}")
        };
        peer.accept_answer(sdp).await;
        let Some(ServerMessage::Published { track_id: audio_track, .. }) =
            sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Published { .. })).await
        else {
            panic!("round {round}: the audio was published")
        };
        let r = sig
            .request(ClientMessage::Subscribe { track_id: qvideo.track_id, preferred_layer: None, max_height: None })
            .await;
        assert!(matches!(r, ServerMessage::Subscribed { .. }), "round {round}: {r:?}");
        assert!(answer_offers(&mut sig, &mut peer, Duration::from_secs(2)).await >= 1);
        assert!(peer.connected(Duration::from_secs(10)).await, "round {round}: a fresh peer connects");
        let mut quic = quic;
        let sub = quic.subscribe(audio_track, None, None).await.expect("subscribe to the browser's audio");
        let mut vgen = SyntheticVideo::new(40, &[(320, 180, 200_000)]);
        let mut agen = SyntheticAudio::new(0x2222);
        for i in 0..60u32 {
            for p in vgen.frame(0, i % 15 == 0, now_us()) {
                quic.send_rtp(&qvideo, 0, p).expect("send");
            }
            write_audio(&audio, &agen.packet(20, now_us())).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let got = drain(&mut peer, Duration::from_millis(500)).await;
        let video = got.get(&format!("t{}", qvideo.track_id)).map_or(0, Vec::len);
        assert!(video >= 30, "round {round}: video reaches the WebRTC session: {video}");
        let mut heard = 0;
        while let Some(ev) = quic.next_event_timeout(Duration::from_millis(300)).await {
            if matches!(ev, ClientEvent::Rtp { subscription, .. } if subscription == sub.subscription_id) {
                heard += 1;
            }
        }
        assert!(heard >= 30, "round {round}: the WebRTC session's audio reaches QUIC: {heard}");
        let r = sig.request(ClientMessage::Leave {}).await;
        assert!(matches!(r, ServerMessage::Ok { .. }), "round {round}: {r:?}");
        drop(peer);
        quic.close().await;
    }
    ts.stop().await;
}

/// The BUNDLE group of an SDP (its mids), and whether the application (data channel) line is
/// there and not rejected (port 0).
fn bundle_and_channel(sdp: &str) -> (Vec<String>, bool) {
    let bundle = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=group:BUNDLE"))
        .map(|mids| mids.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let channel = sdp.lines().any(|l| l.starts_with("m=application ") && !l.starts_with("m=application 0 "));
    (bundle, channel)
}

/// Server offers are numbered; one nobody answers is sent again (same ID and SDP); one the client
/// rejects is withdrawn and its changes offered again with a new ID; answers and rejections of an
/// offer that is not outstanding are refused; and an offer after every subscription has gone
/// still has a media line in its BUNDLE group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_offers_are_resent_rejected_and_never_lose_their_bundle() {
    let ts = TestServer::start(1).await;
    let g = group();
    let publisher = rs_publisher(&ts, &g, RsPeer::new().await, "video/VP8").await;
    let video_track = publisher.tracks.iter().find(|t| t.1 == MediaKind::Video).expect("video").0;

    let mut sig = ws_join(&ts, &g).await;
    let r =
        sig.request(ClientMessage::Subscribe { track_id: video_track, preferred_layer: None, max_height: None }).await;
    let ServerMessage::Subscribed { subscription_id, .. } = r else { panic!("{r:?}") };
    let is_offer = |m: &ServerMessage| matches!(m, ServerMessage::Offer { .. });

    // Ignored: the same offer comes again after about 3 s.
    let Some(ServerMessage::Offer { sdp: first, offer_id: first_id }) =
        sig.wait_for(Duration::from_secs(5), is_offer).await
    else {
        panic!("an offer")
    };
    let ignored = std::time::Instant::now();
    let Some(ServerMessage::Offer { sdp: again, offer_id: again_id }) =
        sig.wait_for(Duration::from_secs(6), is_offer).await
    else {
        panic!("the offer is sent again when nobody answers it")
    };
    assert_eq!((again_id, again), (first_id, first), "the same offer ID and SDP");
    assert!(ignored.elapsed() >= Duration::from_millis(2500), "resent after {:?}", ignored.elapsed());

    // Rejected: withdrawn, offered again after a back-off with a new ID.
    let r = sig.request(ClientMessage::RejectOffer { offer_id: first_id, reason: Some("testing".into()) }).await;
    assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
    let rejected = std::time::Instant::now();
    let r = sig.request(ClientMessage::RejectOffer { offer_id: first_id, reason: None }).await;
    assert!(matches!(r, ServerMessage::Error { code: ErrorCode::BadRequest, .. }), "a withdrawn offer: {r:?}");
    let Some(ServerMessage::Offer { sdp, offer_id: second_id }) = sig.wait_for(Duration::from_secs(5), is_offer).await
    else {
        panic!("a new offer after the rejection")
    };
    assert!(second_id > first_id, "a new offer ID: {second_id} after {first_id}");
    assert!(rejected.elapsed() >= Duration::from_millis(800), "offered again after {:?}", rejected.elapsed());
    let mut peer = RsPeer::new().await;
    let answer = peer.answer(sdp).await;
    let r = sig.request(ClientMessage::Answer { sdp: answer.clone(), offer_id: Some(first_id) }).await;
    assert!(
        matches!(r, ServerMessage::Error { code: ErrorCode::BadRequest, .. }),
        "an answer to the withdrawn offer: {r:?}"
    );
    let r = sig.request(ClientMessage::Answer { sdp: answer, offer_id: Some(second_id) }).await;
    assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
    assert!(peer.connected(Duration::from_secs(10)).await, "the subscriber connects");

    // The last subscription goes: the offer that stops its line keeps the data channel's line.
    let r = sig.request(ClientMessage::Unsubscribe { subscription_id }).await;
    assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
    let Some(ServerMessage::Offer { sdp, offer_id: third_id }) = sig.wait_for(Duration::from_secs(5), is_offer).await
    else {
        panic!("an offer stops the line")
    };
    let (bundle, channel) = bundle_and_channel(&sdp);
    assert!(!bundle.is_empty() && channel, "a non-empty BUNDLE group with the data channel's line:\n{sdp}");
    let answer = peer.answer(sdp).await;
    let r = sig.request(ClientMessage::Answer { sdp: answer, offer_id: Some(third_id) }).await;
    assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");

    for (result, least) in [("sent", 3.0), ("resent", 1.0), ("rejected", 1.0), ("answered", 2.0)] {
        let n = ts.metric(&format!("switchboard_webrtc_offers_total{{result=\"{result}\"}}")).await;
        assert!(n >= least, "{result}: {n}");
    }
    drop(publisher);
    ts.stop().await;
}

/// A phone's video orientation (CVO) reaches WebRTC subscribers, so its picture is shown upright
/// (issue 10, item 17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_orientation_reaches_webrtc_subscribers() {
    use common::webrtc::{CVO_URI, extension_value, extmap_id};
    use webrtc::media_stream::track_local::TrackLocal as _;
    let ts = TestServer::start(1).await;
    let g = group();
    let publisher = rs_publisher(&ts, &g, RsPeer::with_video_orientation().await, "video/VP8").await;
    let pub_id = extmap_id(&publisher.answer_sdp, CVO_URI).expect("the server's answer takes CVO");
    let video_track = publisher.tracks.iter().find(|t| t.1 == MediaKind::Video).expect("video").0;

    let mut sig = ws_join(&ts, &g).await;
    let r =
        sig.request(ClientMessage::Subscribe { track_id: video_track, preferred_layer: None, max_height: None }).await;
    assert!(matches!(r, ServerMessage::Subscribed { .. }), "{r:?}");
    let Some(ServerMessage::Offer { sdp, offer_id }) =
        sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Offer { .. })).await
    else {
        panic!("an offer")
    };
    let sub_id = extmap_id(&sdp, CVO_URI).expect("the server offers CVO");
    let mut subscriber = RsPeer::with_video_orientation().await;
    let answer = subscriber.answer(sdp).await;
    let r = sig.request(ClientMessage::Answer { sdp: answer, offer_id: Some(offer_id) }).await;
    assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
    assert!(subscriber.connected(Duration::from_secs(10)).await, "subscriber connects");

    // A phone turned 90°: CVO rotation 3 on the last packet of every frame.
    let mut vgen = SyntheticVideo::new(0x1111, &[(640, 360, 400_000)]);
    for i in 0..60u32 {
        for p in vgen.frame(0, i % 15 == 0, now_us()) {
            let mut buf = bytes::BytesMut::from(&p[..]);
            let mut packet = <rtc::rtp::Packet as rtc::shared::marshal::Unmarshal>::unmarshal(&mut buf).expect("RTP");
            if packet.header.marker {
                packet.header.set_extension(pub_id, bytes::Bytes::from_static(&[3])).expect("extension");
            }
            publisher.video.write_rtp(packet).await.expect("write");
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let got = drain(&mut subscriber, Duration::from_secs(1)).await;
    let packets = got.get(&format!("t{video_track}")).map(Vec::as_slice).unwrap_or_default();
    let rotated = packets.iter().filter(|p| extension_value(p, sub_id).is_some_and(|v| v.first() == Some(&3))).count();
    assert!(packets.len() > 60, "video arrives: {} packets", packets.len());
    assert!(rotated >= 30, "frames carry their rotation: {rotated} of {} packets", packets.len());
}
