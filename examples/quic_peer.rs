//! A QUIC participant for interop tests: it joins a group call, records the first video and
//! audio tracks another participant publishes (real VP8/Opus from a browser, say) through QUIC
//! subscriptions, then publishes that recording back into the call in a loop, as a new VP8 and
//! Opus track with continuous sequence numbers, timestamps and picture IDs. Progress is printed
//! as JSON lines on stdout. Runs until killed.
//!
//!   cargo run --example quic_peer -- --quic 127.0.0.1:4433 --ca data/tls/ca.pem --token T --group G

use anyhow::{Context as _, bail};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientEvent, ClientOptions};
use switchboard::rtp::{RtpHeader, packet, vp8};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::ServerMessage;

struct Args {
    quic: std::net::SocketAddr,
    ca: String,
    token: String,
    group: String,
    record: Duration,
    /// Where to write some of the recorded packets as fuzzing seeds (`fuzz/README.md`).
    capture_dir: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        map.insert(k.trim_start_matches("--").to_owned(), v);
    }
    let get = |k: &str| map.get(k).cloned().with_context(|| format!("--{k} is required"));
    Ok(Args {
        quic: get("quic")?.parse()?,
        ca: get("ca")?,
        token: get("token")?,
        group: get("group")?,
        record: Duration::from_secs_f64(map.get("record-seconds").map_or(Ok(4.0), |s| s.parse())?),
        capture_dir: map.get("capture-dir").map(Into::into),
    })
}

fn say(v: serde_json::Value) {
    println!("{v}");
}

/// A recorded packet and when it arrived relative to the first.
struct Recorded {
    at: Duration,
    packet: Bytes,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let mut client = Client::connect(ClientOptions::new(a.quic, std::fs::read(&a.ca)?)).await?;
    let joined = client.join_group(&a.token, &a.group).await?;
    say(serde_json::json!({"event": "joined", "participantId": joined.participant_id}));

    // Find a video and an audio track of someone else.
    let mut tracks: Vec<(u64, MediaKind)> =
        joined.participants.iter().flat_map(|p| p.tracks.iter().map(|t| (t.track_id, t.kind))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(tracks.iter().any(|t| t.1 == MediaKind::Video) && tracks.iter().any(|t| t.1 == MediaKind::Audio)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_timeout(left).await {
            Some(ClientEvent::Signal(ServerMessage::TrackPublished { track })) => {
                tracks.push((track.track_id, track.kind))
            }
            Some(_) => {}
            None => bail!("no audio and video tracks to record"),
        }
    }
    let video = tracks.iter().find(|t| t.1 == MediaKind::Video).map(|t| t.0).context("video track")?;
    let audio = tracks.iter().find(|t| t.1 == MediaKind::Audio).map(|t| t.0).context("audio track")?;
    // The lowest layer keeps the recording small.
    let vsub = client.subscribe(video, Some(0), None).await?;
    let asub = client.subscribe(audio, None, None).await?;

    let mut rec_video: Vec<Recorded> = Vec::new();
    let mut rec_audio: Vec<Recorded> = Vec::new();
    let start = Instant::now();
    let mut keyframes = 0;
    let mut size = (0, 0);
    while start.elapsed() < a.record || rec_video.is_empty() || keyframes == 0 {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("nothing recorded");
        }
        if let Some(ClientEvent::Rtp { subscription, packet }) =
            client.next_event_timeout(Duration::from_millis(200)).await
        {
            let at = start.elapsed();
            if subscription == vsub.subscription_id {
                if let Ok(h) = RtpHeader::parse(&packet)
                    && let Some(d) = vp8::parse(&packet[h.payload.clone()])
                    && d.keyframe
                {
                    keyframes += 1;
                    size = d.keyframe_size.map_or(size, |(w, h)| (w, h));
                }
                rec_video.push(Recorded { at, packet });
            } else if subscription == asub.subscription_id {
                rec_audio.push(Recorded { at, packet });
            }
        }
    }
    say(serde_json::json!({
        "event": "recorded", "videoPackets": rec_video.len(), "audioPackets": rec_audio.len(),
        "keyframes": keyframes, "width": size.0, "height": size.1,
    }));
    if let Some(dir) = &a.capture_dir {
        capture(dir, &rec_video, vsub.flow_id, "video")?;
        capture(dir, &rec_audio, asub.flow_id, "audio")?;
    }
    client.unsubscribe(vsub.subscription_id).await?;
    client.unsubscribe(asub.subscription_id).await?;

    // Publish the recording back, looped.
    let vtrack = client.publish(MediaKind::Video, Codec::Vp8, vec![]).await?;
    let atrack = client.publish(MediaKind::Audio, Codec::Opus, vec![]).await?;
    say(serde_json::json!({"event": "publishing", "videoTrack": vtrack.track_id, "audioTrack": atrack.track_id}));
    let first_key = first_keyframe(&rec_video).context("a keyframe in the recording")?;
    let rec_video = rec_video.split_off(first_key);
    let mut video_out = Replay::new(0x5151, 90_000);
    let mut audio_out = Replay::new(0x5252, 48_000);
    let loop_len =
        rec_video.last().map_or(Duration::from_secs(1), |r| r.at) - rec_video[0].at + Duration::from_millis(50);
    let (mut vi, mut ai) = (0usize, 0usize);
    let mut loop_start = Instant::now();
    let base_v = rec_video[0].at;
    let base_a = rec_audio.first().map_or(Duration::ZERO, |r| r.at);
    loop {
        // Keyframe requests restart the loop at its keyframe.
        while let Some(ev) = client.next_event_timeout(Duration::from_millis(1)).await {
            if let ClientEvent::KeyframeRequest { track, .. } = ev
                && track == vtrack.track_id
            {
                vi = 0;
                video_out.new_loop();
            }
        }
        let now = loop_start.elapsed();
        while vi < rec_video.len() && rec_video[vi].at - base_v <= now {
            client.send_rtp(&vtrack, 0, video_out.rewrite(&rec_video[vi].packet, true))?;
            vi += 1;
        }
        while ai < rec_audio.len() && rec_audio[ai].at.saturating_sub(base_a) <= now {
            client.send_rtp(&atrack, 0, audio_out.rewrite(&rec_audio[ai].packet, false))?;
            ai += 1;
        }
        if now >= loop_len {
            loop_start = Instant::now();
            vi = 0;
            ai = 0;
            video_out.new_loop();
            audio_out.new_loop();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Rewrites replayed packets into one continuous stream.
struct Replay {
    ssrc: u32,
    clock: u32,
    seq: u16,
    ts_offset: u32,
    last_ts: Option<u32>,
    first_src_ts: Option<u32>,
    picture_id: u16,
    last_src_pic: Option<u16>,
}

impl Replay {
    fn new(ssrc: u32, clock: u32) -> Self {
        Self {
            ssrc,
            clock,
            seq: 1000,
            ts_offset: 0,
            last_ts: None,
            first_src_ts: None,
            picture_id: 0,
            last_src_pic: None,
        }
    }

    /// The next loop continues 50 ms after the last timestamp sent.
    fn new_loop(&mut self) {
        self.first_src_ts = None;
        self.last_src_pic = None;
    }

    fn rewrite(&mut self, src: &Bytes, video: bool) -> Bytes {
        let mut p = src.to_vec();
        let Ok(h) = RtpHeader::parse(&p) else { return Bytes::from(p) };
        if self.first_src_ts.is_none() {
            self.first_src_ts = Some(h.timestamp);
            let next = self.last_ts.map_or(0, |t| t.wrapping_add(self.clock / 20));
            self.ts_offset = next.wrapping_sub(h.timestamp);
        }
        let ts = h.timestamp.wrapping_add(self.ts_offset);
        self.last_ts = Some(ts);
        packet::write_seq(&mut p, self.seq);
        packet::write_timestamp(&mut p, ts);
        packet::write_ssrc(&mut p, self.ssrc);
        self.seq = self.seq.wrapping_add(1);
        if video
            && let Some(d) = vp8::parse(&p[h.payload.clone()])
            && let Some((pic, width, off)) = d.picture_id
        {
            if self.last_src_pic != Some(pic) {
                self.picture_id = (self.picture_id + 1) & 0x7fff;
                self.last_src_pic = Some(pic);
            }
            let start = h.payload.start;
            vp8::write_picture_id(&mut p[start..], off, width, self.picture_id);
        }
        Bytes::from(p)
    }
}

/// Write the first 16 packets of a recording and the 16 from its first keyframe on, as the fuzz
/// targets read them: `rtp/` the packet, `roq/` the packet as a RoQ datagram on `flow`, and for
/// video `vp8/` the start of the payload (the descriptor and the VP8 header).
fn capture(dir: &std::path::Path, rec: &[Recorded], flow: u64, kind: &str) -> anyhow::Result<()> {
    let keyframe = first_keyframe(rec).unwrap_or(0);
    let chosen: std::collections::BTreeSet<usize> =
        (0..16).chain(keyframe..keyframe + 16).filter(|&i| i < rec.len()).collect();
    for sub in ["rtp", "roq", "vp8"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for i in chosen {
        let packet = &rec[i].packet;
        let name = format!("chromium_{kind}_{i:03}");
        std::fs::write(dir.join("rtp").join(&name), packet)?;
        let mut roq = Vec::new();
        switchboard::rtp::varint::write(flow, &mut roq);
        roq.extend_from_slice(packet);
        std::fs::write(dir.join("roq").join(&name), roq)?;
        if kind == "video"
            && let Ok(h) = RtpHeader::parse(packet)
        {
            let payload = &packet[h.payload.clone()];
            std::fs::write(dir.join("vp8").join(&name), &payload[..payload.len().min(64)])?;
        }
    }
    Ok(())
}

/// The index of the first VP8 keyframe packet of a recording.
fn first_keyframe(rec: &[Recorded]) -> Option<usize> {
    rec.iter().position(|r| {
        RtpHeader::parse(&r.packet)
            .ok()
            .and_then(|h| vp8::parse(&r.packet[h.payload.clone()]))
            .is_some_and(|d| d.keyframe)
    })
}
