//! The media core over QUIC, end to end: a real server on loopback and real QUIC clients.

mod common;

use common::media::{Participant, TestServer, contiguous, group, subscribe};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard::sfu::packet::MediaKind;
use switchboard::signaling::messages::{CallState, EndReason, ErrorCode, ServerMessage};

/// Three participants, each publishing audio and 3-layer simulcast video; each subscribes to the
/// other two. Everyone receives everyone else's streams without a single hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_receive_each_other_without_loss() {
    let ts = TestServer::start(2).await;
    let g = group();
    // Participants on different workers, so packets also cross between workers.
    let mut ps = Vec::new();
    for (i, client) in ts.clients_on_both_workers(3).await.into_iter().enumerate() {
        let (_, token) = ts.identity(&["voip"]).await;
        let joined = client.join_group(&token, &g).await.expect("join");
        let mut p = Participant::new(client, i as u32 + 1);
        p.client_participant_id = joined.participant_id;
        ps.push(p);
    }
    for p in &mut ps {
        p.publish_audio_video().await;
    }
    // The first participant talks loudly, the others quietly.
    ps[0].audio_level = 10;
    // Those who were there first hear of the later tracks as events.
    for (i, p) in ps.iter_mut().enumerate() {
        let later = 2 * (2 - i);
        assert!(
            p.wait_until(Duration::from_secs(5), |p| p.announced_tracks().len() >= later).await,
            "participant {i} was told about {later} tracks"
        );
    }
    // Everyone subscribes to every track that is not theirs (highest layer).
    let mut subs: Vec<HashMap<u64, (u64, MediaKind)>> = vec![HashMap::new(); 3];
    let all: Vec<(u64, MediaKind, usize)> = ps
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            [
                (p.audio.as_ref().expect("audio").track_id, MediaKind::Audio, i),
                (p.video.as_ref().expect("video").track_id, MediaKind::Video, i),
            ]
        })
        .collect();
    for (i, p) in ps.iter().enumerate() {
        for &(track, kind, owner) in &all {
            if owner != i {
                let s = subscribe(p, track, None).await;
                subs[i].insert(s.subscription_id, (track, kind));
            }
        }
    }
    let handles: Vec<_> = ps
        .into_iter()
        .map(|mut p| {
            tokio::spawn(async move {
                p.run(Duration::from_secs(3)).await;
                p
            })
        })
        .collect();
    let mut ps = Vec::new();
    for h in handles {
        ps.push(h.await.expect("participant task"));
    }
    for (i, p) in ps.iter().enumerate() {
        assert_eq!(p.received.len(), 4, "participant {i} receives 4 streams: {:?}", p.received.keys());
        for (sub, arrivals) in &p.received {
            let (_, kind) = subs[i][sub];
            match kind {
                MediaKind::Audio => {
                    assert!(arrivals.len() >= 120, "participant {i} audio: only {} packets in 3 s", arrivals.len());
                    let frames: Vec<u32> = arrivals.iter().map(|a| a.marker.frame).collect();
                    let (min, max) =
                        (frames.iter().min().copied().unwrap_or(0), frames.iter().max().copied().unwrap_or(0));
                    assert_eq!((max - min + 1) as usize, frames.len(), "participant {i}: audio packets missing");
                }
                MediaKind::Video => {
                    assert!(arrivals.iter().all(|a| a.marker.layer == 2), "participant {i} gets the top layer");
                    assert!(arrivals[0].marker.keyframe, "the stream starts with a keyframe");
                    assert!(arrivals.len() >= 300, "participant {i} video: only {} packets", arrivals.len());
                }
            }
            assert!(contiguous(arrivals.iter().map(|a| a.seq)), "participant {i}: holes in the output sequence");
        }
    }
    // Audio levels become an active-speaker ranking with the loud participant first.
    let loud = ps[0].client_participant_id;
    for (i, p) in ps.iter().enumerate() {
        let ranking = p
            .signals
            .iter()
            .filter_map(|m| match m {
                ServerMessage::ActiveSpeakers { speakers } => Some(speakers),
                _ => None,
            })
            .next_back()
            .unwrap_or_else(|| panic!("participant {i} got an active speaker ranking"));
        assert_eq!(ranking.first().map(|s| s.participant_id), Some(loud), "participant {i}: {ranking:?}");
        assert_eq!(ranking.len(), 3, "everyone is audible");
    }
    // RTCP: sender reports reach subscribers, receiver reports reach publishers.
    for (i, p) in ps.iter().enumerate() {
        let (sr, rr) = p.client.report_stats();
        assert!(sr >= 4, "participant {i} received sender reports on its subscriptions: {sr}");
        assert!(rr >= 2, "participant {i} received receiver reports on its published layers: {rr}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // worker metrics flush once a second
    let forwarded = ts.metric("switchboard_forwarded_packets_total{kind=\"video\"}").await;
    assert!(forwarded > 1000.0, "forwarded video packets: {forwarded}");
    let handoffs = ts.metric("switchboard_worker_handoffs_total").await;
    assert!(handoffs > 100.0, "packets crossed between workers: {handoffs}");
    // Forwarding latency is measured from the read to the send: never all zero (it was, when
    // it was taken at the instant of reading), and well under a second on loopback.
    let count = ts.metric("switchboard_forwarding_latency_seconds_count").await;
    let sum = ts.metric("switchboard_forwarding_latency_seconds_sum").await;
    assert!(count > 1000.0, "latency observed per forwarded packet: {count}");
    assert!(sum > 0.0 && sum / count < 0.1, "mean forwarding latency {} s", sum / count);
    ts.stop().await;
}

/// A subscriber on the low layer asks for the high layer: the publisher is asked for a keyframe
/// of the high layer, and the switch happens exactly at that keyframe with contiguous sequence
/// numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_up_happens_at_the_next_high_keyframe() {
    let ts = TestServer::start(2).await;
    let g = group();
    let (mut publisher, mut subscriber) = ts.pair_on_different_workers(&g).await;
    // Like a real encoder, the publisher needs a few frames to produce a requested keyframe;
    // high-layer delta frames keep arriving meanwhile and must not be forwarded.
    publisher.keyframe_delay = 4;
    publisher.publish_audio_video().await;
    let video = publisher.video.clone().expect("video").track_id;
    let sub = subscribe(&subscriber, video, Some(0)).await;

    let pub_task = tokio::spawn(async move {
        publisher.run(Duration::from_millis(1500)).await;
        publisher
    });
    subscriber.run(Duration::from_millis(1000)).await;
    assert!(
        subscriber.signals.iter().any(|m| matches!(m,
            ServerMessage::LayerChanged { subscription_id, layer: 0 } if *subscription_id == sub.subscription_id)),
        "the first layer is reported before any switch"
    );
    // Taken before asking: the worker's keyframe request can reach the publisher before the
    // answer to set_preferences reaches the subscriber.
    let asked_at = Instant::now();
    subscriber.client.set_preferences(sub.subscription_id, None, None).await.expect("prefer high");
    subscriber.run(Duration::from_millis(1200)).await;
    let publisher = pub_task.await.expect("publisher");

    let arrivals = &subscriber.received[&sub.subscription_id];
    let first_high = arrivals.iter().position(|a| a.marker.layer == 2).expect("the high layer arrived");
    assert!(first_high > 10, "low layer first");
    assert!(arrivals[..first_high].iter().all(|a| a.marker.layer == 0), "only the low layer before the switch");
    assert!(arrivals[first_high..].iter().all(|a| a.marker.layer == 2), "only the high layer after it");
    // The publisher was asked for a keyframe of layer 2 after the preference changed...
    let request = publisher
        .keyframe_requests
        .iter()
        .find(|(l, at)| *l == 2 && *at >= asked_at)
        .expect("keyframe request for layer 2");
    // ... and the switch happened exactly at the first layer-2 keyframe sent after it.
    let keyframe =
        publisher.keyframes_sent.iter().find(|(l, _, at)| *l == 2 && *at >= request.1).expect("keyframe sent");
    let m = arrivals[first_high].marker;
    assert!(m.keyframe, "the first high packet starts a keyframe");
    assert_eq!(m.frame, keyframe.1, "switched at the requested keyframe, not later");
    assert!(contiguous(arrivals.iter().map(|a| a.seq)), "sequence numbers stay contiguous across the switch");
    let seqs: Vec<u16> = arrivals.iter().map(|a| a.seq).collect();
    assert_eq!(seqs[first_high], seqs[first_high - 1].wrapping_add(1));
    assert!(
        subscriber.signals.iter().any(|s| matches!(s, ServerMessage::LayerChanged { subscription_id, layer: 2 } if *subscription_id == sub.subscription_id)),
        "the subscriber is told about the layer change"
    );
    ts.stop().await;
}

/// The publisher stops its top layer: a subscriber on it is moved down within one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_top_layer_moves_subscribers_down_within_a_second() {
    let ts = TestServer::start(2).await;
    let g = group();
    let mut publisher = Participant::new(ts.joined(&g).await.0, 1);
    let mut subscriber = Participant::new(ts.joined(&g).await.0, 2);
    publisher.publish_audio_video().await;
    let sub = subscribe(&subscriber, publisher.video.as_ref().expect("video").track_id, None).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pub_task = tokio::spawn(async move {
        publisher.run(Duration::from_millis(1000)).await;
        publisher.sending[2] = false;
        let _ = tx.send(Instant::now());
        publisher.run(Duration::from_millis(2000)).await;
        publisher
    });
    subscriber.run(Duration::from_millis(3000)).await;
    let stopped_at = rx.await.expect("stop time");
    let _publisher = pub_task.await.expect("publisher");
    let arrivals = &subscriber.received[&sub.subscription_id];
    assert!(arrivals.iter().any(|a| a.marker.layer == 2), "was on the top layer");
    let first_lower =
        arrivals.iter().find(|a| a.marker.layer < 2 && a.at > stopped_at).expect("moved to a lower layer");
    let took = first_lower.at - stopped_at;
    assert!(took < Duration::from_secs(1), "moved down after {took:?}");
    assert_eq!(first_lower.marker.layer, 1, "to the next layer down");
    assert!(contiguous(arrivals.iter().map(|a| a.seq)));
    ts.stop().await;
}

/// A packet lost on the way to a subscriber is NACKed by it and retransmitted by the SFU; a
/// packet lost on the way from the publisher is NACKed by the SFU and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packets_are_nacked_and_retransmitted_both_ways() {
    let ts = TestServer::start(2).await;
    let g = group();
    let (mut publisher, mut subscriber) = ts.pair_on_different_workers(&g).await;
    publisher.publish_audio_video().await;
    let audio = subscribe(&subscriber, publisher.audio.as_ref().expect("audio").track_id, None).await;
    let video = subscribe(&subscriber, publisher.video.as_ref().expect("video").track_id, Some(0)).await;
    // Publisher-side loss: the first packet of frame 20 on layer 0 is never sent by itself.
    publisher.lose_frame = Some((0, 20));
    let pub_task = tokio::spawn(async move {
        publisher.run(Duration::from_millis(2500)).await;
        publisher
    });
    subscriber.run(Duration::from_millis(500)).await;
    // Subscriber-side loss: the next two audio packets "vanish" on the way.
    subscriber.client.drop_incoming(audio.subscription_id, 2);
    subscriber.run(Duration::from_millis(2000)).await;
    let publisher = pub_task.await.expect("publisher");

    let got_audio = &subscriber.received[&audio.subscription_id];
    assert!(contiguous(got_audio.iter().map(|a| a.seq)), "audio repaired by retransmission");
    let (nacked, _) = subscriber.client.nack_stats();
    assert!(nacked >= 2, "the subscriber NACKed the dropped packets ({nacked})");
    let got_video = &subscriber.received[&video.subscription_id];
    assert!(got_video.iter().any(|a| a.marker.frame == 20), "the withheld frame arrived after the SFU's NACK");
    let seqs: Vec<u16> = got_video.iter().map(|a| a.seq).collect();
    let holes: Vec<(u16, u16)> =
        seqs.windows(2).filter(|w| w[1] != w[0].wrapping_add(1)).map(|w| (w[0], w[1])).collect();
    let frames: Vec<u32> = got_video.iter().map(|a| a.marker.frame).collect();
    assert!(contiguous(seqs.iter().copied()), "video has no holes: {holes:?} (frames {frames:?})");
    let (_, retransmitted) = publisher.client.nack_stats();
    assert!(retransmitted >= 1, "the publisher answered the SFU's NACK");
    tokio::time::sleep(Duration::from_millis(1100)).await; // worker metrics flush once a second
    assert!(ts.metric("switchboard_retransmissions_total{result=\"sent\"}").await >= 2.0);
    assert!(ts.metric("switchboard_nacks_total{direction=\"to_publisher\"}").await >= 1.0);
    assert!(ts.metric("switchboard_nacks_total{direction=\"from_subscriber\"}").await >= 2.0);
    ts.stop().await;
}

/// A subscriber that NACKs everything it got, 20 times a second, plus 100 PLIs a second, is not
/// an amplifier: the server resends at most its retransmission budget (100 packets a second, and
/// a share of its bandwidth estimate), refuses and counts the rest, and the subscriber's media
/// keeps flowing; the publisher gets keyframe requests at the throttled rate only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_flood_gets_a_bounded_answer() {
    let ts = TestServer::start(2).await;
    let g = group();
    let (mut publisher, mut subscriber) = ts.pair_on_different_workers(&g).await;
    publisher.publish_audio_video().await;
    let video = subscribe(&subscriber, publisher.video.as_ref().expect("video").track_id, Some(0)).await;
    let flood = Duration::from_secs(5);
    let pub_task = tokio::spawn(async move {
        publisher.run(flood + Duration::from_millis(1500)).await;
        publisher
    });
    subscriber.run(Duration::from_millis(500)).await;
    let mut nacked = 0usize;
    let start = Instant::now();
    while start.elapsed() < flood {
        let seqs: Vec<u16> = subscriber.received[&video.subscription_id].iter().rev().take(64).map(|a| a.seq).collect();
        subscriber.client.send_nack(&video, &seqs).expect("nack");
        nacked += seqs.len();
        for _ in 0..5 {
            subscriber.client.request_keyframe(&video).expect("pli");
        }
        subscriber.run(Duration::from_millis(50)).await;
    }
    let before_end = subscriber.received[&video.subscription_id].len();
    subscriber.run(Duration::from_millis(500)).await;
    let publisher = pub_task.await.expect("publisher");
    tokio::time::sleep(Duration::from_millis(1100)).await; // worker metrics flush once a second
    let sent = ts.metric("switchboard_retransmissions_total{result=\"sent\"}").await;
    let refused = ts.metric("switchboard_retransmissions_total{result=\"over_budget\"}").await;
    let recent = ts.metric("switchboard_retransmissions_total{result=\"too_recent\"}").await;
    let missing = ts.metric("switchboard_retransmissions_total{result=\"not_in_history\"}").await;
    let received = ts.metric("switchboard_nacks_total{direction=\"from_subscriber\"}").await;
    println!(
        "NACKed {nacked} packets in {flood:?} ({received} reached the server): {sent} resent, {refused} refused over \
         budget, {recent} forwarded too recently, {missing} not in the history"
    );
    assert!(received > 1_500.0, "the flood reached the server: {received} NACKed packets");
    assert!(sent <= 100.0 * flood.as_secs_f64() + 100.0, "at most ~100 retransmissions a second: {sent}");
    assert!(refused > received / 2.0, "the rest is refused and counted: {refused} of {received}");
    assert!(subscriber.received[&video.subscription_id].len() > before_end, "media still flows");
    let requests = publisher.keyframe_requests.len();
    assert!(requests <= 10, "500 PLIs reach the publisher as at most one request a second: {requests}");
    ts.stop().await;
}

/// Bad, expired, revoked and wrong-scope tokens are refused with a clear code; voip.join may
/// join but not start a call; revoking a connected participant disconnects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_on_join_and_revocation_disconnects() {
    let ts = TestServer::start(2).await;
    let g = group();
    let code = |r: Result<switchboard::client::Joined, switchboard::client::ClientError>| match r {
        Err(switchboard::client::ClientError::Server { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let c = ts.client().await;
    assert_eq!(code(c.join_group("not-a-token", &g).await), ErrorCode::TokenInvalid);
    let (raw, _) = ts.identity(&["voip"]).await;
    let id =
        switchboard::identity::IdentityId(uuid::Uuid::parse_str(raw.rsplit('_').next().expect("uuid")).expect("uuid"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let expired = ts
        .server
        .token_issuer()
        .issue(
            id,
            switchboard::auth::Scopes::VOIP,
            switchboard::auth::TokenLifetime::from_minutes(60).expect("valid"),
            now - 7200,
        )
        .expect("issue")
        .token;
    assert_eq!(code(c.join_group(&expired, &g).await), ErrorCode::TokenExpired);
    let (_, chat) = ts.identity(&["chat"]).await;
    assert_eq!(code(c.join_group(&chat, &g).await), ErrorCode::TokenScopeInsufficient);
    let (join_raw, join_only) = ts.identity(&["voip.join"]).await;
    assert_eq!(code(c.join_group(&join_only, &g).await), ErrorCode::CallNotFound, "voip.join cannot start a call");
    let revoked_path =
        format!("/identities/{}/:revokeAccessTokens?api-version=2023-10-01", common::encode_id(&join_raw));
    let (starter, _) = ts.joined(&g).await;
    c.join_group(&join_only, &g).await.expect("voip.join joins an existing call");
    assert_eq!(ts.api.call(reqwest::Method::POST, &revoked_path, None).await.0, 204);
    let c2 = ts.client().await;
    assert_eq!(code(c2.join_group(&join_only, &g).await), ErrorCode::TokenRevoked, "revoked before joining");

    // The connected session with the revoked token is disconnected.
    let mut c = c;
    let m = common::media::wait_signal(&mut c, Duration::from_secs(5), |m| {
        matches!(m, ServerMessage::CallStateChanged { .. })
    })
    .await
    .expect("disconnect notice");
    assert_eq!(
        m,
        ServerMessage::CallStateChanged {
            state: CallState::Disconnected,
            code: Some(EndReason::TokenRevoked),
            reason: Some("the access token was revoked".into())
        }
    );
    let closed = loop {
        match c.next_event_timeout(Duration::from_secs(5)).await {
            Some(switchboard::client::ClientEvent::Closed { reason }) => break Some(reason),
            Some(_) => continue,
            None => break None,
        }
    };
    assert!(closed.is_some(), "the connection is closed");
    // The participant who was not revoked is still there and sees the other leave.
    let mut starter = starter;
    assert!(
        common::media::wait_signal(&mut starter, Duration::from_secs(5), |m| matches!(
            m,
            ServerMessage::ParticipantLeft { .. }
        ))
        .await
        .is_some()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ts.metric("switchboard_joins_total{result=\"expired\"}").await >= 1.0);
    assert!(ts.metric("switchboard_joins_total{result=\"revoked\"}").await >= 1.0);
    ts.stop().await;
}

/// Malformed datagrams and signaling frames are dropped and counted; the call continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_dropped_and_counted_and_the_call_continues() {
    let ts = TestServer::start(2).await;
    let g = group();
    let mut publisher = Participant::new(ts.joined(&g).await.0, 1);
    let mut subscriber = Participant::new(ts.joined(&g).await.0, 2);
    let (bystander, _) = ts.joined(&g).await;
    publisher.publish_audio_video().await;
    let audio = publisher.audio.clone().expect("audio");
    let sub = subscribe(&subscriber, audio.track_id, None).await;
    let flow = audio.flows[0].flow_id;

    // Garbage datagrams: empty, a bad varint, an unknown flow, truncated RTP and RTCP.
    let c = &publisher.client;
    for d in [&b""[..], &[0xff], &[0x3f, 0x80, 0x60], &[flow as u8, 0x80, 0x60, 0, 1], &[flow as u8, 0x80, 200, 0, 50]]
    {
        c.send_raw_datagram(bytes::Bytes::copy_from_slice(d)).expect("send");
    }
    let mut junk = vec![flow as u8];
    junk.extend(std::iter::repeat_n(0x41, 300));
    c.send_raw_datagram(junk.into()).expect("send");
    // Garbage signaling: not JSON, unknown type, missing fields.
    for frame in [&b"{nope"[..], br#"{"type":"teleport"}"#, br#"{"type":"subscribe"}"#] {
        c.send_frame(frame).await.expect("frame");
    }
    let pong = c.request(switchboard::signaling::messages::ClientMessage::Ping {}).await.expect("still answering");
    assert!(matches!(pong, ServerMessage::Pong { .. }));
    // A rid every subscriber would receive is bounded (16 token characters).
    let long_rid = switchboard::signaling::messages::LayerRequest { rid: Some("x".repeat(100)), ..Default::default() };
    let refused = bystander.publish(MediaKind::Video, switchboard::sfu::packet::Codec::Vp8, vec![long_rid]).await;
    assert!(
        matches!(refused, Err(switchboard::client::ClientError::Server { code: ErrorCode::BadRequest, .. })),
        "{refused:?}"
    );

    let pub_task = tokio::spawn(async move {
        publisher.run(Duration::from_millis(1500)).await;
        publisher
    });
    subscriber.run(Duration::from_millis(1500)).await;
    let publisher = pub_task.await.expect("publisher");
    let errors = publisher
        .signals
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { code: ErrorCode::BadRequest, .. }))
        .count();
    assert_eq!(errors, 3, "one error per malformed frame");
    let got = &subscriber.received[&sub.subscription_id];
    assert!(got.len() >= 60, "audio kept flowing: {}", got.len());
    assert!(contiguous(got.iter().map(|a| a.seq)));

    // An oversized frame cannot be skipped: that session is closed; the others carry on.
    let mut bystander = bystander;
    bystander.send_raw_signal(&(10_000_000u32).to_be_bytes()).await.expect("write");
    let closed = loop {
        match bystander.next_event_timeout(Duration::from_secs(5)).await {
            Some(switchboard::client::ClientEvent::Closed { reason }) => break reason,
            Some(_) => continue,
            None => panic!("bystander connection was not closed"),
        }
    };
    assert!(!closed.is_empty());
    let pong = publisher.client.request(switchboard::signaling::messages::ClientMessage::Ping {}).await;
    assert!(pong.is_ok(), "the publisher's session is unaffected");

    // Junk to the QUIC port from outside any connection: too short or malformed to be QUIC.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for junk in [&b"\x00"[..], b"\x40junk", b"\xc0\x00", b"hello, world", &[0u8; 20]] {
        stranger.send_to(junk, ts.server.quic_addr).await.expect("send junk");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let junk = ts.metric("switchboard_media_drops_total{reason=\"quic_unroutable\"}").await;
    assert!(junk >= 5.0, "junk to the QUIC port is counted: {junk}");
    for reason in ["malformed_datagram", "unknown_flow", "malformed_rtp", "malformed_rtcp", "malformed_signal"] {
        let v = ts.metric(&format!("switchboard_media_drops_total{{reason=\"{reason}\"}}")).await;
        assert!(v >= 1.0, "{reason} counted: {v}");
    }
    assert!(ts.metric("switchboard_signaling_messages_total{result=\"malformed\"}").await >= 3.0);
    ts.stop().await;
}

/// A graceful stop tells connected clients why they are being disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_tells_clients() {
    let ts = TestServer::start(2).await;
    let g = group();
    let (mut a, _) = ts.joined(&g).await;
    let (b, _) = ts.joined(&g).await;
    let stop = tokio::spawn(async move { ts.stop().await });
    let notice = common::media::wait_signal(&mut a, Duration::from_secs(5), |m| {
        matches!(m, ServerMessage::CallStateChanged { .. })
    })
    .await;
    assert_eq!(
        notice,
        Some(ServerMessage::CallStateChanged {
            state: CallState::Disconnected,
            code: Some(EndReason::ServerShutdown),
            reason: Some("the server is shutting down".into())
        })
    );
    stop.await.expect("stopped");
    drop(b);
}

/// A member who joins while someone is speaking is told the current ranking right after
/// `joined`, without waiting for it to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_learns_who_is_speaking() {
    let ts = TestServer::start(1).await;
    let g = group();
    let (_, token) = ts.identity(&["voip"]).await;
    let client = ts.client().await;
    let joined = client.join_group(&token, &g).await.expect("join");
    let mut speaker = Participant::new(client, 1);
    speaker.client_participant_id = joined.participant_id;
    speaker.publish_audio_video().await;
    speaker.audio_level = 10;
    let talking = tokio::spawn(async move {
        speaker.run(Duration::from_secs(4)).await;
        speaker
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, token) = ts.identity(&["voip"]).await;
    let mut late = ts.client().await;
    late.join_group(&token, &g).await.expect("late join");
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut ranking = None;
    while ranking.is_none() && Instant::now() < deadline {
        if let Some(switchboard::client::ClientEvent::Signal(ServerMessage::ActiveSpeakers { speakers })) =
            late.next_event_timeout(Duration::from_millis(50)).await
        {
            ranking = Some(speakers);
        }
    }
    let ranking = ranking.expect("the late joiner is told who speaks within a second of joining");
    assert_eq!(ranking.first().map(|s| s.participant_id), Some(joined.participant_id), "{ranking:?}");
    let speaker = talking.await.expect("speaker task");
    drop(speaker);
    ts.stop().await;
}

/// A dropped client closes its connection: the others see it leave at once. A client that
/// vanishes (its network goes silent) is noticed only at the server's idle timeout, and then
/// leaves the same way; meanwhile media for it stops being queued after 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_leaves_at_once_and_a_vanished_one_at_the_idle_timeout() {
    let idle = Duration::from_secs(8);
    let ts = TestServer::start_with(1, |c| {
        c.quic.idle_timeout_seconds = switchboard::config::Bounded::try_from(idle.as_secs() as i64).expect("in range")
    })
    .await;
    let g = group();
    let (mut observer, _) = ts.joined(&g).await;
    let left = |m: &ServerMessage| matches!(m, ServerMessage::ParticipantLeft { .. });

    let (dropped, _) = ts.joined(&g).await;
    drop(dropped);
    assert!(
        common::media::wait_signal(&mut observer, Duration::from_secs(3), left).await.is_some(),
        "a dropped client's session ends within 3 s, not at the idle timeout"
    );
    let connections = "switchboard_worker_state{what=\"quic_connections\",worker=\"0\"}";
    let deadline = Instant::now() + Duration::from_secs(3);
    while ts.metric(connections).await != 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ts.metric(connections).await, 1.0, "the dropped client's connection is closed, not held");

    // A subscriber vanishes while media flows to it: what waits for it in its connection's send
    // buffer is copied, so it does not pin the worker's egress arena blocks.
    let mut publisher = Participant::new(ts.joined(&g).await.0, 7);
    publisher.publish_audio_video().await;
    let (vanished, _) = ts.joined(&g).await;
    for track in [publisher.video.as_ref(), publisher.audio.as_ref()].map(|t| t.expect("published").track_id) {
        vanished.subscribe(track, Some(2), None).await.expect("subscribe");
    }
    let gone = Instant::now();
    vanished.vanish();
    publisher.run(idle / 2).await;
    assert!(
        ts.metric("switchboard_quic_backlog_copies_total").await > 0.0,
        "the vanished subscriber's backlog is copied"
    );
    // Two seconds after it was last heard, media for it is dropped instead of queued.
    let unresponsive = "switchboard_media_drops_total{reason=\"subscriber_unresponsive\"}";
    assert!(ts.metric(unresponsive).await > 0.0, "no more media is queued for a subscriber not heard for 2 s");
    assert!(
        common::media::wait_signal(&mut observer, Duration::from_millis(100), left).await.is_none(),
        "nothing tells the server that a vanished client is gone before the idle timeout"
    );
    assert!(
        common::media::wait_signal(&mut observer, idle + Duration::from_secs(5), left).await.is_some(),
        "the idle timeout ends a vanished client's session"
    );
    assert!(gone.elapsed() >= idle - Duration::from_secs(1), "not before the idle timeout: {:?}", gone.elapsed());
    assert_eq!(ts.sessions_per_worker(1).await, vec![2.0], "only the observer and the publisher are left");
    ts.stop().await;
}

/// NTP time now (RFC 3550: seconds since 1900 in 32.32 fixed point).
fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    ((d.as_secs() + 2_208_988_800) << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// A publisher whose video leaves 200 ms after it was captured (an encoder's delay) and whose
/// audio leaves at once, and whose sender reports say so: the subscriber's sender reports map
/// each stream's timestamps to the publisher's capture times, so a receiver that syncs by them
/// plays a frame with the sound captured with it. (Mapped by forwarding time, as before, the
/// video's timestamps stood for when it arrived: 200 ms late against the audio.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_keep_a_publishers_audio_and_video_in_step() {
    use switchboard::rtp::{RtpBuilder, rtcp, vp8};
    use switchboard::sfu::packet::Codec;
    const LAG: Duration = Duration::from_millis(200);
    let ts = TestServer::start(2).await;
    let g = group();
    let (publisher, mut subscriber) = ts.pair_on_different_workers(&g).await;
    let audio = publisher.client.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("audio");
    let video = publisher.client.publish(MediaKind::Video, Codec::Vp8, vec![]).await.expect("video");
    let sa = subscriber.client.subscribe(audio.track_id, None, None).await.expect("subscribe audio");
    let sv = subscriber.client.subscribe(video.track_id, None, None).await.expect("subscribe video");

    // Each stream's RTP clock reads `base + elapsed` at the publisher's wallclock.
    let (a0, v0) = (1_000_000u32, 7_000_000u32);
    let rtp_at = |base: u32, rate: u128, t: Duration| base.wrapping_add((t.as_micros() * rate / 1_000_000) as u32);
    let sending = tokio::spawn(async move {
        let start = Instant::now();
        let (mut tick, mut aseq, mut vseq, mut frame) = (0u32, 0u16, 0u16, 0u16);
        while start.elapsed() < Duration::from_secs(3) {
            let t = start.elapsed();
            let rtp = |pt, seq, timestamp, ssrc| RtpBuilder {
                payload_type: pt,
                seq,
                timestamp,
                ssrc,
                marker: true,
                extensions: vec![],
            };
            publisher
                .client
                .send_rtp(&audio, 0, rtp(111, aseq, rtp_at(a0, 48_000, t), 0xA).build(&[0xF8; 60]).into())
                .expect("audio");
            aseq = aseq.wrapping_add(1);
            if tick % 2 == 0 && t >= LAG {
                // A frame captured LAG ago.
                let mut payload = Vec::new();
                vp8::synthetic_payload(frame, 0, true, frame % 30 == 0, (320, 180), 300, &mut payload);
                let pkt = rtp(96, vseq, rtp_at(v0, 90_000, t - LAG), 0xB).build(&payload);
                publisher.client.send_rtp(&video, 0, pkt.into()).expect("video");
                vseq = vseq.wrapping_add(1);
                frame += 1;
            }
            if tick % 10 == 0 {
                // Sender reports: both clocks as they read now.
                for (track, base, rate, ssrc) in [(&audio, a0, 48_000, 0xA), (&video, v0, 90_000, 0xB)] {
                    let mut sr = Vec::new();
                    rtcp::write_sr(&mut sr, ssrc, ntp_now(), rtp_at(base, rate, t), 0, 0);
                    publisher.client.send_on_flow(track.flows[0].flow_id, &sr).expect("sender report");
                }
            }
            tick += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publisher
    });
    let mut last: HashMap<u64, (u32, Instant)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_millis(3200);
    while Instant::now() < deadline {
        if let Some(switchboard::client::ClientEvent::Rtp { subscription, packet }) =
            subscriber.client.next_event_timeout(Duration::from_millis(50)).await
            && let Ok(h) = switchboard::rtp::RtpHeader::parse(&packet)
        {
            last.insert(subscription, (h.timestamp, Instant::now()));
        }
    }
    let _publisher = sending.await.expect("publisher");
    // Capture time by the subscriber's sender reports, in seconds on the server's NTP clock.
    let captured = |sub: u64, rate: f64| {
        let (ntp, rtp) = subscriber.client.last_sender_report(sub).expect("a sender report");
        let (ts, at) = last[&sub];
        let ntp_secs = (ntp >> 32) as f64 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
        (ntp_secs + f64::from(ts.wrapping_sub(rtp) as i32) / rate, at)
    };
    let (audio_at, audio_arrived) = captured(sa.subscription_id, 48_000.0);
    let (video_at, video_arrived) = captured(sv.subscription_id, 90_000.0);
    let arrived_apart = if audio_arrived >= video_arrived {
        (audio_arrived - video_arrived).as_secs_f64()
    } else {
        -(video_arrived - audio_arrived).as_secs_f64()
    };
    // How much earlier than the audio the video was captured, relative to when each arrived.
    let skew = (audio_at - video_at) - arrived_apart;
    assert!(
        (skew - LAG.as_secs_f64()).abs() < 0.05,
        "video captured {skew:.3} s before the audio it arrived with (sent {LAG:?} late)"
    );
    ts.stop().await;
}
