//! Call automation's media against a real server, with QUIC clients as the people called:
//! `play` (WAV files and URLs, decoded by the participant with an independent Opus decoder; to
//! everyone or to some participants only), and DTMF both ways (RFC 4733 tones to continuous
//! recognition and `recognize`; `sendDtmfTones` back).

mod common;

use bytes::Bytes;
use common::automation::*;
use common::media::{TestServer, wait_signal};
use common::wav;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard::call_automation::audio::dtmf::{Tone, ToneDetector, tone_packets};
use switchboard::client::Client;
use switchboard::config::Bounded;
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::ServerMessage;

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
    // How the five accepted plays ended: two played out, two failed, the looped one canceled.
    let outcome =
        |result: &str| format!("switchboard_call_automation_outcomes_total{{operation=\"play\",result=\"{result}\"}}");
    assert_eq!(ts.metric(&outcome("completed")).await, 2.0);
    assert_eq!(ts.metric(&outcome("failed")).await, 2.0);
    assert_eq!(ts.metric(&outcome("canceled")).await, 1.0);
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

    // sendDtmfTones: Bob hears the leg's telephone-events and his detector finds the tones. The
    // prompt was to him, and its track to him is still there: the tones play on it.
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

/// Every signaling message `c` gets for `d` (RTP is dropped).
async fn signals_for(c: &mut Client, d: Duration) -> Vec<ServerMessage> {
    let deadline = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, c.next_event()).await {
        if let switchboard::client::ClientEvent::Signal(m) = ev {
            out.push(m);
        }
    }
    out
}

/// `play` with `playTo` reaches only those participants: the leg publishes it on a track to
/// them, which nobody else learns of or may subscribe to, and unpublishes it when the play is
/// over; a play without `playTo` is published to everyone. A recognize's prompt and
/// `sendDtmfTones` are likewise heard by their target only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_to_some_participants_reaches_only_them() {
    let media = tempfile::tempdir().expect("tmp");
    std::fs::write(media.path().join("short.wav"), wav(&prompt_signal()[..24_000], 48_000)).expect("write wav");
    let dir = media.path().to_path_buf();
    let ts = TestServer::start_with(2, move |c| c.call_automation.media_dir = dir).await;
    let app = app().await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let (carol_raw, carol_token) = ts.identity(&["voip"]).await;
    let mut bob = device(&ts, &bob_token, "Bob").await;
    let mut carol = device(&ts, &carol_token, "Carol").await;
    let id = create_call(&ts, &app, &[&bob_raw]).await["callConnectionId"].as_str().expect("id").to_owned();
    let (call_id, _, _) = incoming(&mut bob).await;
    bob.accept_call(&call_id).await.expect("accept");
    app.wait(&ts, &id, "CallConnected").await;
    let (status, body) =
        post(&ts, &format!("{id}/participants:add"), json!({"participantToAdd": user(&carol_raw)})).await;
    assert_eq!(status, 202, "{body}");
    let (carol_call, _, _) = incoming(&mut carol).await;
    carol.accept_call(&carol_call).await.expect("carol answers");
    app.wait(&ts, &id, "AddParticipantSucceeded").await;

    // To Bob only.
    let play = json!({"playSources": [{"kind": "file", "file": {"uri": "short.wav"}}],
                      "operationContext": "to-bob", "playTo": [user(&bob_raw)]});
    let (status, body) = post(&ts, &format!("{id}:play"), play).await;
    assert_eq!(status, 202, "{body}");
    let track = match wait_signal(&mut bob, WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. })).await {
        Some(ServerMessage::TrackPublished { track }) => track,
        other => panic!("bob is not told of the leg's track: {other:?}"),
    };
    let sub = bob.subscribe(track.track_id, None, None).await.expect("bob subscribes");
    let refused = carol.subscribe(track.track_id, None, None).await;
    assert!(
        matches!(
            refused,
            Err(switchboard::client::ClientError::Server {
                code: switchboard::signaling::messages::ErrorCode::TrackNotFound,
                ..
            })
        ),
        "carol may not receive a track that is not for her: {refused:?}"
    );
    let (bob_heard, carol_saw) = tokio::join!(
        async {
            let mut packets = Vec::new();
            collect_rtp(&mut bob, sub.subscription_id, Duration::from_millis(800), &mut packets).await;
            packets
        },
        signals_for(&mut carol, Duration::from_millis(800))
    );
    assert!(bob_heard.len() >= 20, "bob hears the play: {} packets", bob_heard.len());
    let done = app.wait(&ts, &id, "PlayCompleted").await;
    assert_eq!(done["operationContext"], "to-bob");
    // The track to Bob goes a little after the play is over; Carol never heard of it.
    match wait_signal(&mut bob, 2 * WAIT, |m| matches!(m, ServerMessage::TrackUnpublished { .. })).await {
        Some(ServerMessage::TrackUnpublished { track_id, .. }) => assert_eq!(track_id, track.track_id),
        other => panic!("the track to bob stays: {other:?}"),
    }
    let carol_saw_more = signals_for(&mut carol, Duration::from_millis(300)).await;
    let about_tracks: Vec<&ServerMessage> = carol_saw
        .iter()
        .chain(&carol_saw_more)
        .filter(|m| matches!(m, ServerMessage::TrackPublished { .. } | ServerMessage::TrackUnpublished { .. }))
        .collect();
    assert!(about_tracks.is_empty(), "carol learns nothing of the track to bob: {about_tracks:?}");

    // Tones to Carol: a track to her only.
    let (status, body) = post(
        &ts,
        &format!("{id}:sendDtmfTones"),
        json!({"tones": ["one", "two"], "targetParticipant": user(&carol_raw), "operationContext": "tones"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let to_carol = wait_signal(&mut carol, WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. })).await;
    assert!(to_carol.is_some(), "carol is told of the track her tones play on");
    app.wait(&ts, &id, "SendDtmfTonesCompleted").await;
    let bob_saw = signals_for(&mut bob, Duration::from_millis(300)).await;
    assert!(
        !bob_saw.iter().any(|m| matches!(m, ServerMessage::TrackPublished { .. })),
        "bob is not told of carol's tones: {bob_saw:?}"
    );

    // To everyone: both are told of the leg's track.
    let play = json!({"playSources": [{"kind": "file", "file": {"uri": "short.wav"}}], "operationContext": "to-all"});
    let (status, body) = post(&ts, &format!("{id}:play"), play).await;
    assert_eq!(status, 202, "{body}");
    for c in [&mut bob, &mut carol] {
        let got = wait_signal(c, WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. })).await;
        assert!(got.is_some(), "everyone is told of a play to all");
    }
    ts.stop().await;
}
