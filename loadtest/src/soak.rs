//! `loadtest soak`: many short participant lives against a server with media flowing, then a
//! check that what the server holds went back to where it was.
//!
//! Each of `rooms` group calls has a resident publisher sending audio (50 packets/s) and one video
//! layer (30 frames/s, a keyframe every half second) for the whole run. Each cycle connects a
//! new QUIC client, joins a room, publishes audio and sends some, subscribes to the resident's
//! audio and video, waits for media on both, and leaves, a third each way: `hangUp` and close;
//! close without `hangUp`; vanish (the client's socket goes silent, so only the server's QUIC idle
//! timeout ends the session). At the end the residents leave too, and the server's resident
//! memory, open file descriptors, runtime tasks, sessions, rooms and per-worker maps are compared
//! with the baseline taken before the first cycle (with nobody connected).

use crate::acs::AcsClient;
use anyhow::Context as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::client::synthetic::{SyntheticAudio, SyntheticVideo};
use switchboard::client::{Client, ClientEvent, ClientOptions, PublishedTrack};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::LayerRequest;

pub struct SoakArgs {
    pub quic: SocketAddr,
    pub cycles: u64,
    pub rooms: usize,
    pub concurrency: usize,
    pub metrics_token: Option<String>,
}

/// The gauges compared before and after.
pub type Snapshot = BTreeMap<String, f64>;

#[derive(Debug, serde::Serialize)]
pub struct SoakReport {
    pub cycles: u64,
    pub failed_cycles: u64,
    pub seconds: f64,
    pub baseline: Snapshot,
    pub peak_rss_bytes: f64,
    pub after: Snapshot,
}

/// The series that must return to baseline, and RSS (reported, not required to be equal).
const WATCHED: [&str; 9] = [
    "switchboard_process_resident_memory_bytes",
    "switchboard_process_open_fds",
    "switchboard_runtime_alive_tasks",
    "switchboard_media_sessions",
    "switchboard_registered_devices",
    "switchboard_participants",
    "switchboard_rooms",
    "switchboard_worker_state",
    "switchboard_http_open_connections",
];

pub async fn snapshot(acs: &AcsClient, token: Option<&str>) -> anyhow::Result<Snapshot> {
    let text = acs.get_text("/metrics", token).await?;
    let mut out = Snapshot::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or(series);
        if WATCHED.contains(&name)
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(series.to_owned(), v);
        }
    }
    anyhow::ensure!(out.contains_key("switchboard_process_open_fds"), "the server exports no process metrics");
    Ok(out)
}

fn now_us(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn group_id(run: u32, room: usize) -> String {
    format!("{run:08x}-0000-4000-9000-{room:012x}")
}

async fn token(acs: &AcsClient) -> anyhow::Result<String> {
    let (status, body) =
        acs.post("/identities?api-version=2023-10-01", &json!({"createTokenWithScopes": ["voip"]})).await?;
    anyhow::ensure!(status == 201, "creating an identity: {status} {body}");
    Ok(body["accessToken"]["token"].as_str().context("a token")?.to_owned())
}

/// A resident publisher: joined, publishing audio and one video layer until `stop`.
async fn resident(
    quic: SocketAddr,
    ca: Vec<u8>,
    token: String,
    group: String,
    seed: u32,
    stop: stop::Stop,
) -> anyhow::Result<()> {
    let client = Client::connect(ClientOptions::new(quic, ca)).await?;
    client.join_group(&token, &group).await?;
    let audio = client.publish(MediaKind::Audio, Codec::Opus, vec![LayerRequest::default()]).await?;
    let layer = LayerRequest { rid: Some("q".into()), width: Some(320), height: Some(180), max_bitrate: None };
    let video = client.publish(MediaKind::Video, Codec::Vp8, vec![layer]).await?;
    let (mut agen, mut vgen) =
        (SyntheticAudio::new(seed * 16 + 1), SyntheticVideo::new(seed * 16 + 2, &[(320, 180, 150_000)]));
    let epoch = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n: u64 = 0;
    while !stop.stopped() {
        tick.tick().await;
        let _ = client.send_rtp(&audio, 0, agen.packet(30, now_us(epoch)));
        // 25 video frames a second is close enough to 30 for a soak; a keyframe every 12.
        if n.is_multiple_of(2) {
            let keyframe = (n / 2).is_multiple_of(12);
            for p in vgen.frame(0, keyframe, now_us(epoch)) {
                let _ = client.send_rtp(&video, 0, p);
            }
        }
        n += 1;
    }
    client.hang_up(false).await.ok();
    Ok(())
}

/// The track IDs (audio, video) of the resident in a joined room's participant list.
fn resident_tracks(joined: &switchboard::client::Joined) -> Option<(u64, u64)> {
    let tracks = joined.participants.iter().flat_map(|p| p.tracks.iter());
    let (mut audio, mut video) = (None, None);
    for t in tracks {
        match t.kind {
            MediaKind::Audio => audio = audio.or(Some(t.track_id)),
            MediaKind::Video => video = video.or(Some(t.track_id)),
        }
    }
    Some((audio?, video?))
}

/// How a cycle's participant leaves.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `hangUp`, then close the connection.
    HangUp,
    /// Close the connection without `hangUp`.
    Close,
    /// Go silent: the server hears nothing more, not even a close.
    Vanish,
}

/// One participant's life.
async fn cycle(
    quic: SocketAddr,
    ca: Vec<u8>,
    token: &str,
    group: &str,
    seed: u32,
    ending: Ending,
) -> anyhow::Result<()> {
    let mut client = Client::connect(ClientOptions::new(quic, ca)).await?;
    let joined = client.join_group(token, group).await?;
    let (audio_track, video_track) =
        resident_tracks(&joined).context("the room's resident publishes audio and video")?;
    let mine: PublishedTrack = client.publish(MediaKind::Audio, Codec::Opus, vec![LayerRequest::default()]).await?;
    let mut agen = SyntheticAudio::new(seed);
    let epoch = Instant::now();
    let audio = client.subscribe(audio_track, None, None).await?;
    let video = client.subscribe(video_track, Some(0), None).await?;
    let (mut got_audio, mut got_video) = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut sent = 0;
    while !(got_audio && got_video) {
        if sent < 25 {
            let _ = client.send_rtp(&mine, 0, agen.packet(40, now_us(epoch)));
            sent += 1;
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        anyhow::ensure!(!wait.is_zero(), "no media within 5 s (audio {got_audio}, video {got_video})");
        match client.next_event_timeout(wait.min(Duration::from_millis(20))).await {
            Some(ClientEvent::Rtp { subscription, .. }) => {
                got_audio |= subscription == audio.subscription_id;
                got_video |= subscription == video.subscription_id;
            }
            Some(ClientEvent::Closed { reason }) => anyhow::bail!("closed: {reason}"),
            _ => {}
        }
    }
    match ending {
        Ending::HangUp => {
            client.hang_up(false).await?;
            drop(client);
        }
        Ending::Close => drop(client),
        Ending::Vanish => client.vanish(),
    }
    Ok(())
}

pub async fn run(acs: AcsClient, ca: Vec<u8>, args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let metrics_token = args.metrics_token.as_deref();
    let run_id = std::process::id();
    // Tokens first (the identity API is not what this soaks), then the baseline with nobody in.
    let mut tokens = Vec::with_capacity(args.concurrency + args.rooms);
    for _ in 0..args.concurrency + args.rooms {
        tokens.push(token(&acs).await?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = snapshot(&acs, metrics_token).await?;

    let stop = stop::Stop::default();
    let mut residents = tokio::task::JoinSet::new();
    for room in 0..args.rooms {
        let (ca, token, stop) = (ca.clone(), tokens[args.concurrency + room].clone(), stop.clone());
        residents.spawn(resident(args.quic, ca, token, group_id(run_id, room), room as u32, stop));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for token in tokens.iter().take(args.concurrency) {
        let (ca, token, next, failed) = (ca.clone(), token.clone(), next.clone(), failed.clone());
        let (quic, rooms, cycles) = (args.quic, args.rooms, args.cycles);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cycles {
                    return;
                }
                let group = group_id(run_id, (i as usize) % rooms);
                let ending = [Ending::HangUp, Ending::Close, Ending::Vanish][(i % 3) as usize];
                if let Err(e) = cycle(quic, ca.clone(), &token, &group, 0x5000_0000 + i as u32, ending).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("cycle {i} failed: {e:#}");
                }
                if (i + 1) % 1000 == 0 {
                    eprintln!("{} cycles", i + 1);
                }
            }
        });
    }
    let mut peak_rss = 0f64;
    let mut sampler = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            done = workers.join_next() => match done {
                Some(r) => r.context("a cycle worker")?,
                None => break,
            },
            _ = sampler.tick() => {
                if let Ok(s) = snapshot(&acs, metrics_token).await {
                    peak_rss = peak_rss.max(s.get("switchboard_process_resident_memory_bytes").copied().unwrap_or(0.0));
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.stop();
    while let Some(r) = residents.join_next().await {
        r.context("a resident")??;
    }
    // Sessions close at once; a QUIC connection whose client vanished without closing it (a
    // third of the cycles) is held until the QUIC idle timeout, and its last timers fire
    // after that. Wait until the workers hold no more connections than at the start (at most
    // 120 s), then 5 s for the timers.
    let connections = |s: &Snapshot| -> f64 {
        s.iter().filter(|(k, _)| k.contains("what=\"quic_connections\"")).map(|(_, v)| *v).sum()
    };
    let settle_until = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = snapshot(&acs, metrics_token).await?;
        if connections(&now) <= connections(&baseline) || Instant::now() >= settle_until {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&acs, metrics_token).await?;
    Ok(SoakReport {
        cycles: args.cycles,
        failed_cycles: failed.load(Ordering::Relaxed),
        seconds,
        baseline,
        peak_rss_bytes: peak_rss,
        after,
    })
}

/// Which watched series did not return to their baseline (RSS excepted: allocators keep freed
/// memory, so it is reported, not required to match).
pub fn not_back(report: &SoakReport) -> Vec<String> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = report.baseline.keys().chain(report.after.keys()).collect();
    for key in keys {
        if key.starts_with("switchboard_process_resident_memory_bytes") || key.starts_with("switchboard_http_open") {
            continue;
        }
        let (before, after) =
            (report.baseline.get(key).copied().unwrap_or(0.0), report.after.get(key).copied().unwrap_or(0.0));
        if after > before {
            out.push(format!("{key}: {before} before, {after} after"));
        }
    }
    out
}

/// A stop flag shared by the resident publishers.
mod stop {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    pub struct Stop(Arc<AtomicBool>);

    impl Stop {
        pub fn stop(&self) {
            self.0.store(true, Ordering::Relaxed);
        }

        pub fn stopped(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }
}
