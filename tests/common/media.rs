//! Helpers for media tests: a server with identities and tokens, and QUIC clients.
#![allow(dead_code)]

use super::{Api, test_config};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientEvent, ClientOptions};
use switchboard::server::{self, RunningServer};
use switchboard::signaling::messages::ServerMessage;

/// A running server and an API client for it.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: RunningServer,
    pub api: Api,
    pub ca: Vec<u8>,
}

impl TestServer {
    /// Start a server with `workers` media workers.
    pub async fn start(workers: u32) -> Self {
        Self::start_with(workers, |_| {}).await
    }

    /// Start a server with `workers` media workers and the config changed by `tweak`.
    pub async fn start_with(workers: u32, tweak: impl FnOnce(&mut switchboard::config::Config)) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = test_config(dir.path());
        config.media.workers = switchboard::config::Bounded::try_from(i64::from(workers)).expect("valid worker count");
        tweak(&mut config);
        let server = server::start(config).await.expect("server starts");
        let ca = std::fs::read(&server.trust_cert).expect("CA");
        let api = Api::new(&server.connection_string(), &ca);
        Self { dir, server, api, ca }
    }

    /// Create an identity and return (raw id, token with `scopes`).
    pub async fn identity(&self, scopes: &[&str]) -> (String, String) {
        let (status, body) = self
            .api
            .call(Method::POST, "/identities?api-version=2023-10-01", Some(json!({"createTokenWithScopes": scopes})))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["identity"]["id"].as_str().expect("id").to_owned(),
            body["accessToken"]["token"].as_str().expect("token").to_owned(),
        )
    }

    pub async fn client(&self) -> Client {
        Client::connect(ClientOptions::new(self.server.quic_addr, self.ca.clone())).await.expect("client connects")
    }

    /// Sessions per worker, from `/metrics`.
    pub async fn sessions_per_worker(&self, workers: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for w in 0..workers {
            out.push(self.metric(&format!("switchboard_media_sessions{{transport=\"quic\",worker=\"{w}\"}}")).await);
        }
        out
    }

    /// `n` connected clients spread over both of two workers (the kernel picks a worker per
    /// client address; extra connections are made until both have one).
    pub async fn clients_on_both_workers(&self, n: usize) -> Vec<Client> {
        assert!(n >= 2);
        let mut by_worker: [Vec<Client>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..64 {
            let before = self.sessions_per_worker(2).await;
            let c = self.client().await;
            let after = self.wait_session_change(&before).await;
            let w = usize::from(after[1] > before[1]);
            by_worker[w].push(c);
            let total: usize = by_worker.iter().map(Vec::len).sum();
            if !by_worker[0].is_empty() && !by_worker[1].is_empty() && total >= n {
                break;
            }
        }
        assert!(!by_worker[0].is_empty() && !by_worker[1].is_empty(), "clients landed on both workers");
        // Alternate workers: client 0 on worker 0, client 1 on worker 1, then the rest.
        let [mut a, mut b] = by_worker;
        let mut out = vec![a.remove(0), b.remove(0)];
        out.extend(a.into_iter().chain(b).take(n - 2));
        out
    }

    async fn wait_session_change(&self, before: &[f64]) -> Vec<f64> {
        for _ in 0..100 {
            let now = self.sessions_per_worker(before.len()).await;
            if now != before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the new connection never showed up in switchboard_media_sessions");
    }

    /// A publisher and a subscriber joined to `group`, on different workers.
    pub async fn pair_on_different_workers(&self, group: &str) -> (Participant, Participant) {
        let mut clients = self.clients_on_both_workers(2).await.into_iter();
        let mut next = || clients.next().expect("two clients");
        let (a, b) = (next(), next());
        for c in [&a, &b] {
            let (_, token) = self.identity(&["voip"]).await;
            c.join_group(&token, group).await.expect("join");
        }
        (Participant::new(a, 1), Participant::new(b, 2))
    }

    /// A client joined to `group` with a fresh `voip` identity.
    pub async fn joined(&self, group: &str) -> (Client, String) {
        let (raw, token) = self.identity(&["voip"]).await;
        let client = self.client().await;
        client.join_group(&token, group).await.expect("join");
        (client, raw)
    }

    /// The value of a metric line (exact label set) in `/metrics`.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let (_, text) = self.api.get_public("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

pub fn group() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as u64
}

/// Wait for a signaling event matching `pred`, returning it; other events are collected into
/// `skipped`.
pub async fn wait_signal(
    client: &mut Client,
    limit: Duration,
    mut pred: impl FnMut(&ServerMessage) -> bool,
) -> Option<ServerMessage> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_timeout(left).await? {
            ClientEvent::Signal(m) if pred(&m) => return Some(m),
            _ => {}
        }
    }
}

use switchboard::client::synthetic::{Marker, SyntheticAudio, SyntheticVideo, read_marker};
use switchboard::client::{PublishedTrack, SubscriptionInfo};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::LayerRequest;

/// The usual three simulcast layers as publish requests.
pub fn three_layers() -> Vec<LayerRequest> {
    [("q", 320, 180), ("h", 640, 360), ("f", 1280, 720)]
        .into_iter()
        .map(|(rid, w, h)| LayerRequest { rid: Some(rid.into()), width: Some(w), height: Some(h), max_bitrate: None })
        .collect()
}

/// One received RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub seq: u16,
    pub marker: Marker,
    pub at: Instant,
}

/// A test participant: publishes synthetic media, answers keyframe requests, and records what it
/// receives.
pub struct Participant {
    pub client: Client,
    pub audio: Option<PublishedTrack>,
    pub video: Option<PublishedTrack>,
    vgen: SyntheticVideo,
    agen: SyntheticAudio,
    /// Per layer: frames to wait before sending a requested keyframe (`None`: none pending).
    pub pending_keyframe: [Option<u32>; 3],
    /// How many frames a requested keyframe takes to come out (an encoder's delay).
    pub keyframe_delay: u32,
    /// Layers currently being sent.
    pub sending: [bool; 3],
    /// Keyframes sent: (layer, frame number, when).
    pub keyframes_sent: Vec<(u8, u32, Instant)>,
    /// Keyframe requests received: (layer, when).
    pub keyframe_requests: Vec<(u8, Instant)>,
    /// Received packets by subscription ID.
    pub received: std::collections::HashMap<u64, Vec<Arrival>>,
    pub signals: Vec<ServerMessage>,
    pub closed: Option<String>,
    /// Packets to withhold (publisher-side loss) by (layer, frame) — sent only on NACK.
    pub lose_frame: Option<(u8, u32)>,
    /// Audio level sent, in -dBov (0 loudest).
    pub audio_level: u8,
    /// The participant ID the server gave this client (when known).
    pub client_participant_id: u64,
}

impl Participant {
    pub fn new(client: Client, seed: u32) -> Self {
        Self {
            client,
            audio: None,
            video: None,
            vgen: SyntheticVideo::three_layers(seed * 10),
            agen: SyntheticAudio::new(seed * 10 + 9),
            pending_keyframe: [Some(0); 3],
            keyframe_delay: 0,
            sending: [true; 3],
            keyframes_sent: Vec::new(),
            keyframe_requests: Vec::new(),
            received: Default::default(),
            signals: Vec::new(),
            closed: None,
            lose_frame: None,
            audio_level: 40,
            client_participant_id: 0,
        }
    }

    pub async fn publish_audio_video(&mut self) {
        self.audio = Some(self.client.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publish audio"));
        self.video =
            Some(self.client.publish(MediaKind::Video, Codec::Vp8, three_layers()).await.expect("publish video"));
    }

    pub fn send_video_frame(&mut self) {
        let Some(track) = self.video.clone() else { return };
        for layer in 0..3 {
            if !self.sending[layer] {
                continue;
            }
            let key = match self.pending_keyframe[layer] {
                Some(0) => {
                    self.pending_keyframe[layer] = None;
                    true
                }
                Some(n) => {
                    self.pending_keyframe[layer] = Some(n - 1);
                    false
                }
                None => false,
            };
            let packets = self.vgen.frame(layer, key, now_us());
            let frame = read_marker(&packets[0]).map_or(0, |m| m.frame);
            if key {
                self.keyframes_sent.push((layer as u8, frame, Instant::now()));
            }
            for (i, p) in packets.into_iter().enumerate() {
                if self.lose_frame == Some((layer as u8, frame)) && i == 0 {
                    self.client.lose_rtp(&track, layer, p);
                } else {
                    self.client.send_rtp(&track, layer, p).expect("send video");
                }
            }
        }
    }

    pub fn send_audio(&mut self) {
        if let Some(track) = self.audio.clone() {
            let p = self.agen.packet(self.audio_level, now_us());
            self.client.send_rtp(&track, 0, p).expect("send audio");
        }
    }

    pub fn on_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::KeyframeRequest { layer, .. } => {
                self.keyframe_requests.push((layer, Instant::now()));
                if let Some(p) = self.pending_keyframe.get_mut(usize::from(layer)) {
                    p.get_or_insert(self.keyframe_delay);
                }
            }
            ClientEvent::Rtp { subscription, packet } => {
                let seq = u16::from_be_bytes([packet[2], packet[3]]);
                if let Some(marker) = read_marker(&packet) {
                    self.received.entry(subscription).or_default().push(Arrival { seq, marker, at: Instant::now() });
                }
            }
            ClientEvent::Signal(m) => self.signals.push(m),
            ClientEvent::Closed { reason } => self.closed = Some(reason),
        }
    }

    /// Send media (30 fps video on the `sending` layers, 50 pps audio) and handle events for
    /// `duration`.
    pub async fn run(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        let mut video = tokio::time::interval(Duration::from_millis(33));
        let mut audio = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = video.tick() => self.send_video_frame(),
                _ = audio.tick() => self.send_audio(),
                ev = self.client.next_event() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    /// Handle events (without sending) until `pred` holds or `limit` passes.
    pub async fn wait_until(&mut self, limit: Duration, mut pred: impl FnMut(&Participant) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !pred(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.next_event_timeout(left).await {
                Some(ev) => self.on_event(ev),
                None => return pred(self),
            }
        }
        true
    }

    /// Subscribe to every track announced so far by others (from signals and the join snapshot).
    pub fn announced_tracks(&self) -> Vec<(u64, MediaKind)> {
        self.signals
            .iter()
            .filter_map(|m| match m {
                ServerMessage::TrackPublished { track } => Some((track.track_id, track.kind)),
                _ => None,
            })
            .collect()
    }
}

/// True when the sequence numbers, in any order, form one contiguous range without duplicates.
pub fn contiguous(seqs: impl IntoIterator<Item = u16>) -> bool {
    let seqs: Vec<u16> = seqs.into_iter().collect();
    let Some(&first) = seqs.first() else { return true };
    let base = seqs.iter().map(|s| s.wrapping_sub(first) as i16).min().unwrap_or(0);
    let start = first.wrapping_add(base as u16);
    let mut rel: Vec<u32> = seqs.iter().map(|s| u32::from(s.wrapping_sub(start))).collect();
    rel.sort_unstable();
    let n = rel.len();
    rel.dedup();
    rel.len() == n && rel.last().is_some_and(|l| *l as usize + 1 == n)
}

/// Subscribe `p` to a track.
pub async fn subscribe(p: &Participant, track: u64, layer: Option<u8>) -> SubscriptionInfo {
    p.client.subscribe(track, layer, None).await.expect("subscribe")
}
