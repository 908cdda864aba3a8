//! `loadtest media`: synthetic participants with media against a running server, over QUIC or
//! (`--carrier webrtc`, `crate::webrtc`) WebRTC.
//!
//! Rooms of publishers (Opus-sized audio at 50 packets/s with audio levels; VP8-shaped video in
//! three simulcast layers of 150, 500 and 1500 kbit/s, a keyframe every 2 s) and subscribers.
//! Every packet carries its send time and the SFU numbers each subscription's packets without
//! gaps, so subscribers measure one-way latency and loss exactly (one clock: the publishers and
//! subscribers are in this process). Server CPU seconds and forwarded packets are read from
//! `/metrics` before and after: the server's CPU per forwarded packet, and its ratio to the
//! machine's bare send cost (`floor`). Workers publish their packet counters once a second, so
//! the count trails the CPU reading by up to a second: run for 20 s or more for a figure.

use crate::acs::AcsClient;
use crate::stats::Latencies;
use anyhow::Context as _;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use switchboard::client::synthetic::{SyntheticAudio, SyntheticVideo, VP8_PT, read_marker};
use switchboard::client::{Client, ClientEvent, ClientOptions};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{LayerRequest, ServerMessage};

/// What one run looks like.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shape {
    pub rooms: usize,
    /// Per room: participants that publish (and subscribe to every other publisher).
    pub publishers: usize,
    /// Per room: participants that only subscribe.
    pub subscribers: usize,
    /// Publishers send video too (else audio only).
    pub video: bool,
    /// Subscribers want the first publisher's video at the top layer and the others' at the
    /// lowest (a speaker and thumbnails); else the top layer of every video.
    pub speaker_layout: bool,
}

impl Shape {
    /// The named scenarios.
    pub fn scenario(name: &str) -> anyhow::Result<Shape> {
        Ok(match name {
            // Many listeners, a few talkers.
            "audio-large" => Shape { rooms: 1, publishers: 3, subscribers: 47, video: false, speaker_layout: false },
            // N×N with a speaker layout.
            "video-meeting" => Shape { rooms: 2, publishers: 4, subscribers: 0, video: true, speaker_layout: true },
            // One to many.
            "livestream" => Shape { rooms: 1, publishers: 1, subscribers: 40, video: true, speaker_layout: false },
            other => anyhow::bail!("unknown scenario `{other}` (audio-large, video-meeting, livestream)"),
        })
    }
}

/// How participants reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    /// `switchboard::client` over QUIC (RoQ datagrams).
    Quic,
    /// str0m peers in RTP mode, signaled over `wss://HOST/signal` (`crate::webrtc`).
    #[value(name = "webrtc")]
    #[serde(rename = "webrtc")]
    WebRtc,
}

/// The server under test.
pub enum Server {
    /// Switchboard: identities and tokens from its REST API, its CPU and forwarded packets from
    /// `/metrics`.
    Switchboard { acs: AcsClient, ca: Vec<u8>, metrics_token: Option<String> },
    /// Janus's VideoRoom (`--sfu janus`, WebRTC only): no identities, no server counters (the
    /// caller measures its CPU, as `compare.sh` does).
    Janus { url: String, room: u64 },
}

pub struct MediaArgs {
    pub carrier: Carrier,
    pub quic: SocketAddr,
    pub shape: Shape,
    pub duration: Duration,
    /// Participants joining per second.
    pub join_rate: f64,
    /// From everyone joined to the steady window's start.
    pub settle: Duration,
    /// WebRTC: the address peers bind to (default: the one routing to the server).
    pub local_ip: Option<std::net::IpAddr>,
}

/// Counters shared by every participant task (and the WebRTC driver).
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) joined: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    /// Latency samples since the last progress line.
    pub(crate) recent: Mutex<Latencies>,
    pub(crate) stop: AtomicBool,
    /// WebRTC: the CPU time the driver thread has used, in microseconds.
    pub(crate) driver_busy_us: AtomicU64,
    /// The steady window is open: receivers count what they get into `Measured::window`.
    pub(crate) window: AtomicBool,
}

/// What a participant measured of its subscriptions.
#[derive(Default)]
pub(crate) struct Measured {
    pub(crate) latencies: Latencies,
    pub(crate) received: u64,
    pub(crate) expected: u64,
    /// Received while the steady window was open.
    pub(crate) window: Window,
}

/// What receivers got in the steady window.
#[derive(Default, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) packets: u64,
    /// RTP payload bytes.
    pub(crate) payload_bytes: u64,
    /// Video packets per synthetic simulcast layer (from the payload's marker), lowest first.
    pub(crate) video_layers: [u64; 3],
}

/// The synthetic layers' resolutions, lowest first (as the QUIC publishers declare them).
pub(crate) const LAYER_RESOLUTIONS: [&str; 3] = ["320x180", "640x360", "1280x720"];

impl Window {
    fn add(&mut self, other: &Window) {
        self.packets += other.packets;
        self.payload_bytes += other.payload_bytes;
        for (a, b) in self.video_layers.iter_mut().zip(other.video_layers) {
            *a += b;
        }
    }

    /// The layer most video packets were of, and its share of them.
    pub(crate) fn dominant_layer(&self) -> Option<(usize, f64)> {
        let total: u64 = self.video_layers.iter().sum();
        let (layer, n) = self.video_layers.iter().enumerate().max_by_key(|(_, n)| **n)?;
        (total > 0).then(|| (layer, *n as f64 / total as f64))
    }
}

impl Measured {
    /// Count a received packet into the window: its payload size and, for video, its layer.
    pub(crate) fn count_in_window(&mut self, payload_len: usize, video_layer: Option<u8>) {
        self.window.packets += 1;
        self.window.payload_bytes += payload_len as u64;
        if let Some(n) = video_layer.and_then(|l| self.window.video_layers.get_mut(usize::from(l))) {
            *n += 1;
        }
    }

    pub(crate) fn merge(&mut self, other: Measured) {
        self.latencies.merge(other.latencies);
        self.received += other.received;
        self.expected += other.expected;
        self.window.add(&other.window);
    }

    /// Count what `seqs` saw as received and expected.
    pub(crate) fn add_counts<'a>(&mut self, seqs: impl IntoIterator<Item = &'a SeqTrack>) {
        for s in seqs {
            let (received, expected) = s.counts();
            self.received += received;
            self.expected += expected;
        }
    }
}

/// The clock every synthetic packet's send time is on (one per process).
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One subscription's sequence numbers, extended past wrap-around.
#[derive(Default)]
pub(crate) struct SeqTrack {
    seen: HashSet<u64>,
    last: Option<u64>,
}

impl SeqTrack {
    pub(crate) fn add(&mut self, seq: u16) {
        let ext = match self.last {
            None => u64::from(seq) + (1 << 16),
            Some(last) => {
                let base = last & !0xffff;
                let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
                candidates.into_iter().map(|b| b + u64::from(seq)).min_by_key(|c| c.abs_diff(last)).unwrap_or(last)
            }
        };
        self.last = Some(self.last.map_or(ext, |l| l.max(ext)));
        self.seen.insert(ext);
    }

    /// The missing ranges between the first and the last received (inclusive).
    pub(crate) fn gaps(&self) -> Vec<(u64, u64)> {
        let mut seen: Vec<u64> = self.seen.iter().copied().collect();
        seen.sort_unstable();
        seen.windows(2).filter(|w| w[1] > w[0] + 1).map(|w| (w[0] + 1, w[1] - 1)).collect()
    }

    /// (received, expected between the first and the last received).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let (Some(min), Some(max)) = (self.seen.iter().min(), self.seen.iter().max()) else { return (0, 0) };
        (self.seen.len() as u64, max - min + 1)
    }
}

#[allow(clippy::too_many_arguments)]
async fn participant(
    quic: SocketAddr,
    ca: Vec<u8>,
    token: String,
    group: String,
    publishes: bool,
    shape: Shape,
    seed: u32,
    shared: Arc<Shared>,
) -> anyhow::Result<Measured> {
    let mut client = Client::connect(ClientOptions::new(quic, ca)).await?;
    let joined = client.join_group(&token, &group).await?;
    shared.joined.fetch_add(1, Ordering::Relaxed);
    let mut pending: Vec<(u64, u64, MediaKind)> = joined
        .participants
        .iter()
        .flat_map(|p| p.tracks.iter().map(move |t| (p.participant_id, t.track_id, t.kind)))
        .collect();
    let (audio, video) = if publishes {
        let audio = client.publish(MediaKind::Audio, Codec::Opus, vec![LayerRequest::default()]).await?;
        let video = if shape.video {
            let layers = [("q", 320, 180), ("h", 640, 360), ("f", 1280, 720)]
                .iter()
                .map(|(rid, w, h)| LayerRequest {
                    rid: Some((*rid).into()),
                    width: Some(*w),
                    height: Some(*h),
                    max_bitrate: None,
                })
                .collect();
            Some(client.publish(MediaKind::Video, Codec::Vp8, layers).await?)
        } else {
            None
        };
        (Some(audio), video)
    } else {
        (None, None)
    };
    let mut agen = SyntheticAudio::new(seed * 16 + 1);
    let mut vgen = SyntheticVideo::three_layers(seed * 16 + 2);
    // The first publisher of the room (the lowest participant ID publishing video) is the
    // speaker in a speaker layout.
    let mut speaker: Option<u64> = None;
    let mut seqs: HashMap<u64, SeqTrack> = HashMap::new();
    let mut measured = Measured::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        for (participant, track, kind) in pending.drain(..) {
            let layer = match kind {
                MediaKind::Audio => None,
                MediaKind::Video if shape.speaker_layout => {
                    let s = *speaker.get_or_insert(participant);
                    Some(if participant == s { 2 } else { 0 })
                }
                MediaKind::Video => Some(2),
            };
            let sub = client.subscribe(track, layer, None).await?;
            seqs.insert(sub.subscription_id, SeqTrack::default());
        }
        tokio::select! {
            _ = tick.tick() => {
                if let Some(a) = &audio
                    && client.send_rtp(a, 0, agen.packet(40, now_us())).is_ok()
                {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                // 25 frames a second of each layer (every other tick), a keyframe every 2 s.
                if let Some(v) = &video && n.is_multiple_of(2) {
                    let keyframe = (n / 2).is_multiple_of(50);
                    for layer in 0..3 {
                        for p in vgen.frame(layer, keyframe, now_us()) {
                            if client.send_rtp(v, layer, p).is_ok() {
                                shared.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                n += 1;
            }
            ev = client.next_event() => match ev {
                Some(ClientEvent::Rtp { subscription, packet }) => {
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    let marker = read_marker(&packet);
                    if let Ok(h) = switchboard::rtp::RtpHeader::parse(&packet) {
                        seqs.entry(subscription).or_default().add(h.seq);
                        if shared.window.load(Ordering::Relaxed) {
                            let layer = if h.payload_type == VP8_PT { marker.as_ref().map(|m| m.layer) } else { None };
                            measured.count_in_window(h.payload.len(), layer);
                        }
                    }
                    if let Some(m) = marker {
                        let sent = Duration::from_micros(m.sent_us);
                        let latency = epoch().elapsed().saturating_sub(sent);
                        measured.latencies.record(latency);
                        if let Ok(mut r) = shared.recent.lock() {
                            r.record(latency);
                        }
                    }
                }
                Some(ClientEvent::Signal(ServerMessage::TrackPublished { track })) => {
                    pending.push((track.participant_id, track.track_id, track.kind));
                }
                Some(ClientEvent::Closed { reason }) => anyhow::bail!("connection closed: {reason}"),
                Some(_) => {}
                None => anyhow::bail!("connection gone"),
            },
        }
    }
    measured.add_counts(seqs.values());
    client.hang_up(false).await.ok();
    Ok(measured)
}

/// The server's CPU seconds and forwarded packets, from `/metrics` (Switchboard).
async fn server_counters(acs: &AcsClient, token: Option<&str>) -> anyhow::Result<(f64, f64)> {
    let text = acs.get_text("/metrics", token).await?;
    let mut cpu = None;
    let mut forwarded = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.parse::<f64>() else { continue };
        if series == "switchboard_cpu_seconds" {
            cpu = Some(v);
        } else if series.starts_with("switchboard_forwarded_packets_total") {
            forwarded += v;
        }
    }
    Ok((cpu.context("the server exports no switchboard_cpu_seconds")?, forwarded))
}

/// This process's CPU seconds (user and system), from `/proc/self/stat`.
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[derive(Debug, serde::Serialize)]
pub struct MediaReport {
    pub carrier: Carrier,
    /// `switchboard` or `janus`.
    pub sfu: &'static str,
    pub shape: Shape,
    pub seconds: f64,
    pub joins: u64,
    pub failed_participants: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub loss_ratio: f64,
    pub latency_ms: serde_json::Value,
    /// The steady window (from `settle` after everyone joined to the end): its length, and the
    /// participants expected to receive media (subscribers; publishers too when several).
    pub window_seconds: f64,
    pub receivers: u64,
    /// Mean per receiver over the window: packets/s and RTP payload kbit/s received.
    pub subscriber_receive_pkt_per_s: f64,
    pub subscriber_receive_kbps: f64,
    /// Video packets received in the window per synthetic layer, lowest first (320x180,
    /// 640x360, 1280x720), from the marker each synthetic payload carries.
    pub received_video_layers: [u64; 3],
    /// The resolution of the layer most video packets were of, and that layer's share.
    pub subscriber_resolution: Option<String>,
    pub subscriber_resolution_share: Option<f64>,
    /// Switchboard's counters from `/metrics` (none for Janus).
    pub server_cpu_seconds: Option<f64>,
    pub forwarded_packets: Option<f64>,
    pub server_us_per_forwarded_packet: Option<f64>,
    pub floor_us_per_packet: Option<f64>,
    pub floor_ratio: Option<f64>,
    pub loadtest_cpu_share: Option<f64>,
    /// WebRTC: the driver thread's CPU time over the run's time (near 1: the one thread that
    /// runs every peer limits the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webrtc_driver_busy_share: Option<f64>,
}

pub async fn run(server: Server, args: &MediaArgs) -> anyhow::Result<MediaReport> {
    let shape = args.shape.clone();
    let shared = Arc::new(Shared::default());
    let run = std::process::id();
    let total = shape.rooms * (shape.publishers + shape.subscribers);
    // Identities and tokens first: joining is what is paced.
    let mut people = Vec::new();
    for room in 0..shape.rooms {
        for i in 0..shape.publishers + shape.subscribers {
            let token = match &server {
                Server::Switchboard { acs, .. } => {
                    let (status, body) = acs
                        .post("/identities?api-version=2023-10-01", &json!({"createTokenWithScopes": ["voip"]}))
                        .await?;
                    anyhow::ensure!(status == 201, "creating an identity: {status} {body}");
                    body["accessToken"]["token"].as_str().context("a token")?.to_owned()
                }
                Server::Janus { .. } => String::new(),
            };
            people.push((token, format!("{run:08x}-{room:04x}-4000-8000-000000000000"), i < shape.publishers));
        }
    }
    let counters0 = match &server {
        Server::Switchboard { acs, metrics_token, .. } => Some(server_counters(acs, metrics_token.as_deref()).await?),
        Server::Janus { .. } => None,
    };
    let own0 = own_cpu_seconds();
    let start = Instant::now();
    let webrtc = match (args.carrier, &server) {
        (Carrier::Quic, Server::Switchboard { .. }) => None,
        (Carrier::Quic, Server::Janus { .. }) => anyhow::bail!("--sfu janus needs --carrier webrtc"),
        (Carrier::WebRtc, Server::Switchboard { acs, ca, .. }) => {
            let sfu = crate::webrtc::Sfu::Switchboard { endpoint: acs.endpoint().to_owned(), ca: Arc::new(ca.clone()) };
            Some(crate::webrtc::WebRtcCarrier::start(sfu, args.local_ip, shared.clone())?)
        }
        (Carrier::WebRtc, Server::Janus { url, room }) => {
            anyhow::ensure!(shape.rooms == 1, "--sfu janus runs one room (--janus-room), not {}", shape.rooms);
            let http = reqwest::Client::builder().pool_max_idle_per_host(4 * total.max(1)).build()?;
            let sfu = crate::webrtc::Sfu::Janus { url: url.clone(), room: *room, http };
            Some(crate::webrtc::WebRtcCarrier::start(sfu, args.local_ip, shared.clone())?)
        }
    };
    let ca = match &server {
        Server::Switchboard { ca, .. } => ca.clone(),
        Server::Janus { .. } => Vec::new(),
    };
    let mut tasks = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / args.join_rate.max(0.1));
    for (i, (t, group, publishes)) in people.into_iter().enumerate() {
        let seed = i as u32 + 1;
        let task = match &webrtc {
            None => tokio::spawn(participant(
                args.quic,
                ca.clone(),
                t,
                group,
                publishes,
                shape.clone(),
                seed,
                shared.clone(),
            )),
            Some(carrier) => tokio::spawn(carrier.participant(t, group, publishes, shape.clone(), seed)),
        };
        tasks.push(task);
        tokio::time::sleep(gap).await;
    }
    let joined_at = Instant::now();
    // The steady window opens `settle` after everyone has joined (or after the last join was
    // started, if some never join).
    let mut all_joined: Option<Instant> = None;
    let mut window_from: Option<Instant> = None;
    // Progress once a second until the duration is over (counted from the last join).
    let mut last = (Instant::now(), 0u64);
    while joined_at.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let joined = shared.joined.load(Ordering::Relaxed);
        if all_joined.is_none() && joined >= total as u64 {
            all_joined = Some(Instant::now());
        }
        let settled_from = all_joined.unwrap_or(joined_at);
        if window_from.is_none() && settled_from.elapsed() >= args.settle {
            shared.window.store(true, Ordering::Relaxed);
            window_from = Some(Instant::now());
        }
        let received = shared.received.load(Ordering::Relaxed);
        let rate = (received - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), received);
        let p99 = shared.recent.lock().ok().and_then(|mut r| {
            let q = r.quantile_ms(0.99);
            *r = Latencies::default();
            q
        });
        eprintln!(
            "[{:>4.0} s] participants {} (failed {}), received {:.0} pkt/s, p99 latency {}",
            start.elapsed().as_secs_f64(),
            joined,
            shared.failed.load(Ordering::Relaxed),
            rate,
            p99.map_or("-".into(), |v| format!("{v:.2} ms"))
        );
    }
    shared.window.store(false, Ordering::Relaxed);
    let window_seconds = window_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let counters1 = match &server {
        Server::Switchboard { acs, metrics_token, .. } => Some(server_counters(acs, metrics_token.as_deref()).await?),
        Server::Janus { .. } => None,
    };
    let own1 = own_cpu_seconds();
    let seconds = joined_at.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    let mut all = Measured::default();
    for t in tasks {
        match t.await {
            Ok(Ok(m)) => all.merge(m),
            Ok(Err(e)) => {
                // The first few reasons go to stderr whatever the log filter: a failed run says why.
                if shared.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("a participant failed: {e:#}");
                }
            }
            Err(e) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a participant task panicked");
            }
        }
    }
    drop(webrtc);
    let (server_cpu, forwarded) = match (counters0, counters1) {
        (Some((cpu0, fwd0)), Some((cpu1, fwd1))) => (Some(cpu1 - cpu0), Some(fwd1 - fwd0)),
        _ => (None, None),
    };
    let us_per_packet = match (server_cpu, forwarded) {
        (Some(cpu), Some(fwd)) if fwd > 0.0 => Some(cpu * 1e6 / fwd),
        _ => None,
    };
    let floor = tokio::task::spawn_blocking(|| crate::floor::measure(1200, 64, 100_000)).await.ok().flatten();
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let own_share = match (own0, own1) {
        (Some(a), Some(b)) => Some((b - a) / start.elapsed().as_secs_f64() / cores),
        _ => None,
    };
    let driver_busy = (args.carrier == Carrier::WebRtc)
        .then(|| shared.driver_busy_us.load(Ordering::Relaxed) as f64 / 1e6 / start.elapsed().as_secs_f64());
    let lost = all.expected.saturating_sub(all.received);
    let receivers = (shape.rooms * shape.subscribers
        + if shape.publishers > 1 { shape.rooms * shape.publishers } else { 0 }) as u64;
    let per_receiver = |x: u64| {
        if receivers == 0 || window_seconds <= 0.0 { 0.0 } else { x as f64 / receivers as f64 / window_seconds }
    };
    let dominant = all.window.dominant_layer();
    let mut l = all.latencies;
    Ok(MediaReport {
        carrier: args.carrier,
        sfu: match server {
            Server::Switchboard { .. } => "switchboard",
            Server::Janus { .. } => "janus",
        },
        shape,
        seconds,
        joins: shared.joined.load(Ordering::Relaxed),
        failed_participants: shared.failed.load(Ordering::Relaxed),
        packets_sent: shared.sent.load(Ordering::Relaxed),
        packets_received: all.received,
        packets_expected: all.expected,
        packets_lost: lost,
        loss_ratio: if all.expected == 0 { 0.0 } else { lost as f64 / all.expected as f64 },
        latency_ms: json!({
            "samples": l.len(), "p50": l.quantile_ms(0.5), "p95": l.quantile_ms(0.95), "p99": l.quantile_ms(0.99),
        }),
        window_seconds,
        receivers,
        subscriber_receive_pkt_per_s: per_receiver(all.window.packets),
        subscriber_receive_kbps: per_receiver(all.window.payload_bytes) * 8.0 / 1000.0,
        received_video_layers: all.window.video_layers,
        subscriber_resolution: dominant.map(|(layer, _)| LAYER_RESOLUTIONS[layer].to_owned()),
        subscriber_resolution_share: dominant.map(|(_, share)| share),
        server_cpu_seconds: server_cpu,
        forwarded_packets: forwarded,
        server_us_per_forwarded_packet: us_per_packet,
        floor_us_per_packet: floor,
        floor_ratio: us_per_packet.zip(floor).map(|(a, b)| a / b),
        loadtest_cpu_share: own_share,
        webrtc_driver_busy_share: driver_busy,
    })
}

/// The final table.
pub fn print(r: &MediaReport) {
    let ms = |k: &str| r.latency_ms[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.2}"));
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    println!("participants joined      {:>12} (failed {})", r.joins, r.failed_participants);
    println!("packets sent / received  {:>12} / {}", r.packets_sent, r.packets_received);
    println!("packets lost             {:>12} ({:.3} %)", r.packets_lost, r.loss_ratio * 100.0);
    println!("latency p50/p95/p99 ms   {:>12} / {} / {}", ms("p50"), ms("p95"), ms("p99"));
    println!(
        "per receiver (window)    {:>12.1} pkt/s, {:.0} kbit/s over {:.1} s; video {}",
        r.subscriber_receive_pkt_per_s,
        r.subscriber_receive_kbps,
        r.window_seconds,
        match (&r.subscriber_resolution, r.subscriber_resolution_share) {
            (Some(res), Some(share)) => format!("{res} ({:.0} % of video packets)", share * 100.0),
            _ => "-".to_owned(),
        }
    );
    if let Some(forwarded) = r.forwarded_packets {
        println!("forwarded by the server  {:>12.0} ({:.0}/s)", forwarded, forwarded / r.seconds.max(1e-9));
    }
    println!("server CPU per packet    {:>12} µs", opt(r.server_us_per_forwarded_packet, 2));
    println!("bare send (floor)        {:>12} µs", opt(r.floor_us_per_packet, 2));
    println!("server / floor           {:>12}", opt(r.floor_ratio, 1));
    if let Some(share) = r.loadtest_cpu_share {
        println!("loadtest CPU             {:>11.0} % of the machine", share * 100.0);
        if share > 0.8 {
            eprintln!("warning: the load tester used {:.0} % of the CPU: it may be what limits the run", share * 100.0);
        }
    }
    if let Some(busy) = r.webrtc_driver_busy_share {
        println!("WebRTC driver thread     {:>11.0} % of a core", busy * 100.0);
        if busy > 0.8 {
            eprintln!(
                "warning: the WebRTC driver thread used {:.0} % of a core: it may be what limits the run",
                busy * 100.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_payload_and_video_layers() {
        let mut m = Measured::default();
        m.count_in_window(100, None);
        m.count_in_window(1000, Some(2));
        m.count_in_window(1000, Some(2));
        m.count_in_window(200, Some(0));
        m.count_in_window(50, Some(255));
        assert_eq!(m.window, Window { packets: 5, payload_bytes: 2350, video_layers: [1, 0, 2] });
        let mut other = Measured::default();
        other.count_in_window(10, Some(1));
        m.merge(other);
        assert_eq!(m.window.video_layers, [1, 1, 2]);
        let (layer, share) = m.window.dominant_layer().expect("video");
        assert_eq!((LAYER_RESOLUTIONS[layer], share), ("1280x720", 0.5));
        assert_eq!(Window::default().dominant_layer(), None);
    }

    #[test]
    fn sequence_numbers_are_counted_across_wrap_around_and_reordering() {
        let mut s = SeqTrack::default();
        for seq in [65_530u16, 65_531, 65_533, 65_532, 65_535, 0, 1, 3] {
            s.add(seq);
        }
        // 65530..=3 is 10 numbers; 65534 and 2 are missing.
        assert_eq!(s.counts(), (8, 10));
        let gaps: Vec<u64> = s.gaps().iter().map(|&(a, b)| b - a + 1).collect();
        assert_eq!(gaps, [1, 1], "two single missing numbers");
    }
}
