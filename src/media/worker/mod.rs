//! A media worker: one OS thread with a single-threaded runtime that owns its UDP socket, its
//! QUIC connections and the forwarding state of the tracks its sessions publish or receive. The
//! control plane reaches it only through bounded channels of `Command`s; other workers through
//! `PeerMsg`s. Nothing here is shared or locked: a packet never waits on a lock or a task wake-up
//! per subscriber.

mod forwarding;
mod quic_io;

use super::command::{Command, ControlEvent, PeerMsg, SessionInput, SubscribeSpec};
use super::ids::{RoomId, SessionId, SubscriptionId, TrackId};
use super::metrics::WorkerCounters;
use super::quic::{Flow, QuicConn, close_code};
use crate::sfu::forwarder::{SubscriptionSpec, TrackForwarder};
use crate::sfu::nack::LossDetector;
use crate::sfu::packet::{Codec, MediaPacket};
use crate::sfu::rewriter::Rewrite;
use crate::sfu::stats::ReceiveStats;
use bytes::BytesMut;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often forwarders re-select layers and loss detectors send NACKs.
const TICK: Duration = Duration::from_millis(20);
const BWE_INTERVAL: Duration = Duration::from_millis(200);
const AUDIO_LEVEL_INTERVAL: Duration = Duration::from_millis(250);
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams read from the socket before other work gets a turn.
const RECV_BATCH: usize = 256;

/// Where a subscription's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sink {
    pub session: SessionId,
    /// Index of the QUIC connection on this worker.
    pub conn: usize,
    pub flow: u64,
}

/// The publishing side of a track whose publisher is on this worker.
struct Origin {
    publisher: SessionId,
    conn: usize,
    layers: Vec<OriginLayer>,
    /// Workers (by index) with subscribers of this track.
    sinks: Vec<bool>,
    audio_level_ext: Option<u8>,
}

struct OriginLayer {
    flow: u64,
    ssrc: Option<u32>,
    loss: LossDetector,
    stats: ReceiveStats,
}

/// A track this worker forwards (as its origin, or as a mirror for local subscribers).
struct LocalTrack {
    room: RoomId,
    origin_worker: usize,
    forwarder: TrackForwarder<Sink>,
    origin: Option<Origin>,
}

/// Everything a worker needs to start.
pub struct WorkerSetup {
    pub index: usize,
    pub workers: usize,
    pub socket: std::net::UdpSocket,
    pub endpoint_config: Arc<quinn_proto::EndpointConfig>,
    pub server_config: Arc<quinn_proto::ServerConfig>,
    pub commands: mpsc::Receiver<Command>,
    pub peer_rx: mpsc::Receiver<PeerMsg>,
    pub peers: Vec<mpsc::Sender<PeerMsg>>,
    pub control: mpsc::Sender<ControlEvent>,
    pub counters: WorkerCounters,
    pub sessions_gauge: prometheus::IntGauge,
    pub max_message_bytes: usize,
    pub max_sessions: usize,
}

pub struct Worker {
    index: usize,
    workers: usize,
    socket: tokio::net::UdpSocket,
    endpoint: quinn_proto::Endpoint,
    conns: Vec<Option<QuicConn>>,
    sessions: HashMap<SessionId, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    dirty: Vec<usize>,
    tracks: HashMap<TrackId, LocalTrack>,
    /// Subscribers' workers that attached before the track's `Publish` arrived.
    pending_sinks: HashMap<TrackId, Vec<usize>>,
    peers: Vec<mpsc::Sender<PeerMsg>>,
    outgoing: Vec<Vec<(TrackId, u8, MediaPacket)>>,
    commands: mpsc::Receiver<Command>,
    peer_rx: mpsc::Receiver<PeerMsg>,
    control: mpsc::Sender<ControlEvent>,
    counters: WorkerCounters,
    sessions_gauge: prometheus::IntGauge,
    max_message_bytes: usize,
    max_sessions: usize,
    /// Egress arena: datagrams are split off it, so a packet costs no allocation of its own.
    arena: BytesMut,
    /// Ingress arena for received UDP datagrams.
    recv: BytesMut,
    transmit: Vec<u8>,
    rtcp: Vec<u8>,
    rtcp_ssrc: u32,
    epoch: Instant,
    last_bwe: Instant,
    last_audio: Instant,
    last_report: Instant,
    stopping: bool,
}

impl Worker {
    /// Build the worker. Must run inside the worker's runtime (the socket registers with it).
    pub fn new(s: WorkerSetup) -> std::io::Result<Self> {
        let socket = tokio::net::UdpSocket::from_std(s.socket)?;
        let endpoint = quinn_proto::Endpoint::new(s.endpoint_config, Some(s.server_config), true, None);
        let now = Instant::now();
        let mut ssrc = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut ssrc);
        Ok(Self {
            index: s.index,
            workers: s.workers,
            socket,
            endpoint,
            conns: Vec::new(),
            sessions: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            tracks: HashMap::new(),
            pending_sinks: HashMap::new(),
            outgoing: (0..s.workers).map(|_| Vec::new()).collect(),
            peers: s.peers,
            commands: s.commands,
            peer_rx: s.peer_rx,
            control: s.control,
            counters: s.counters,
            sessions_gauge: s.sessions_gauge,
            max_message_bytes: s.max_message_bytes,
            max_sessions: s.max_sessions,
            arena: BytesMut::with_capacity(256 * 1024),
            recv: BytesMut::with_capacity(256 * 1024),
            transmit: Vec::with_capacity(2048),
            rtcp: Vec::with_capacity(1500),
            rtcp_ssrc: u32::from_be_bytes(ssrc),
            epoch: now,
            last_bwe: now,
            last_audio: now,
            last_report: now,
            stopping: false,
        })
    }

    /// Run until told to shut down (or the control plane goes away).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(cmd) => self.on_command(cmd, Instant::now()),
                },
                msg = self.peer_rx.recv() => {
                    if let Some(msg) = msg {
                        self.on_peer(msg, Instant::now());
                    }
                }
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.drain_socket();
                    }
                }
                _ = tick.tick() => self.on_tick(Instant::now()),
                () = sleep_until(next_timer) => {}
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.flush(now);
        }
    }

    async fn shutdown(&mut self) {
        self.stopping = true;
        let now = Instant::now();
        for conn in self.conns.iter_mut().flatten() {
            conn.conn.close(
                now,
                quinn_proto::VarInt::from_u32(close_code::SERVER_SHUTDOWN),
                "server shutting down".into(),
            );
            conn.dirty = true;
        }
        self.dirty = (0..self.conns.len()).filter(|i| self.conns[*i].is_some()).collect();
        self.flush(now);
        // Give CONNECTION_CLOSE a moment to leave and be retransmitted once if needed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        self.fire_timers(now);
        self.flush(now);
        self.counters.flush();
    }

    fn on_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::SendSignal { session, frame } => {
                if let Some(&idx) = self.sessions.get(&session)
                    && let Some(c) = self.conns[idx].as_mut()
                {
                    c.pending_out.extend_from_slice(&frame);
                    self.write_pending(idx);
                }
            }
            Command::CloseSession { session, code, reason } => {
                if let Some(&idx) = self.sessions.get(&session) {
                    // Send what is queued (the last signaling message) before closing.
                    self.write_pending(idx);
                    if let Some(c) = self.conns[idx].as_mut() {
                        c.conn.close(now, quinn_proto::VarInt::from_u32(code), reason.into_bytes().into());
                    }
                    self.mark_dirty(idx);
                    self.end_session(idx);
                }
            }
            Command::Publish(spec) => {
                let Some(&conn) = self.sessions.get(&spec.session) else { return };
                let Some(c) = self.conns[conn].as_mut() else { return };
                for (layer, flow) in spec.flows.iter().enumerate() {
                    c.flows.insert(*flow, Flow::Publish { track: spec.track, layer: layer as u8 });
                }
                let mut sinks = vec![false; self.workers];
                for w in self.pending_sinks.remove(&spec.track).unwrap_or_default() {
                    if let Some(s) = sinks.get_mut(w) {
                        *s = true;
                    }
                }
                let layers = spec
                    .flows
                    .iter()
                    .map(|&flow| OriginLayer {
                        flow,
                        ssrc: None,
                        loss: LossDetector::new(),
                        stats: ReceiveStats::default(),
                    })
                    .collect();
                let existing = self.tracks.remove(&spec.track);
                let mut forwarder = TrackForwarder::new(spec.codec, &spec.heights);
                // A subscriber on this worker may have attached before the publish arrived.
                if let Some(old) = existing {
                    for s in old.forwarder.subscriptions() {
                        forwarder.add_subscription(respawn(s));
                    }
                }
                self.tracks.insert(
                    spec.track,
                    LocalTrack {
                        room: spec.room,
                        origin_worker: self.index,
                        forwarder,
                        origin: Some(Origin {
                            publisher: spec.session,
                            conn,
                            layers,
                            sinks,
                            audio_level_ext: spec.audio_level_ext,
                        }),
                    },
                );
            }
            Command::RemoveTrack { track } => self.remove_track(track),
            Command::Subscribe(spec) => self.subscribe(spec),
            Command::Unsubscribe { session, subscription, track } => {
                if let Some(&idx) = self.sessions.get(&session)
                    && let Some(c) = self.conns[idx].as_mut()
                {
                    c.flows.retain(|_, f| *f != Flow::Subscribe { track, subscription });
                }
                self.remove_subscription(track, subscription);
            }
            Command::SetWish { track, subscription, wish } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.forwarder.set_wish(subscription.0, wish);
                }
            }
            Command::Shutdown => {}
        }
    }

    fn subscribe(&mut self, spec: SubscribeSpec) {
        let Some(&conn) = self.sessions.get(&spec.session) else { return };
        let Some(c) = self.conns[conn].as_mut() else { return };
        c.flows.insert(spec.flow, Flow::Subscribe { track: spec.track, subscription: spec.subscription });
        let index = self.index;
        let track = self.tracks.entry(spec.track).or_insert_with(|| {
            if spec.origin != index
                && let Some(peer) = self.peers.get(spec.origin)
            {
                let _ = peer.try_send(PeerMsg::AttachSink { track: spec.track, worker: index });
            }
            LocalTrack {
                room: spec.room,
                origin_worker: spec.origin,
                forwarder: TrackForwarder::new(spec.codec, &spec.heights),
                origin: None,
            }
        });
        track.forwarder.add_subscription(SubscriptionSpec {
            id: spec.subscription.0,
            sink: Sink { session: spec.session, conn, flow: spec.flow },
            out_ssrc: spec.ssrc,
            initial: random_start(),
            wish: spec.wish,
        });
    }

    fn remove_subscription(&mut self, track: TrackId, subscription: SubscriptionId) {
        let Some(t) = self.tracks.get_mut(&track) else { return };
        t.forwarder.remove_subscription(subscription.0);
        if t.origin.is_none() && t.forwarder.subscriptions().is_empty() {
            let origin = t.origin_worker;
            self.tracks.remove(&track);
            if let Some(peer) = self.peers.get(origin) {
                let _ = peer.try_send(PeerMsg::DetachSink { track, worker: self.index });
            }
        }
    }

    /// Drop a track from this worker entirely.
    fn remove_track(&mut self, track: TrackId) {
        self.pending_sinks.remove(&track);
        let Some(t) = self.tracks.remove(&track) else { return };
        for sub in t.forwarder.subscriptions() {
            if let Some(c) = self.conns.get_mut(sub.sink.conn).and_then(Option::as_mut) {
                c.flows.remove(&sub.sink.flow);
            }
        }
        if let Some(origin) = t.origin {
            if let Some(c) = self.conns.get_mut(origin.conn).and_then(Option::as_mut) {
                for l in &origin.layers {
                    c.flows.remove(&l.flow);
                }
            }
        } else if let Some(peer) = self.peers.get(t.origin_worker) {
            let _ = peer.try_send(PeerMsg::DetachSink { track, worker: self.index });
        }
    }

    fn on_peer(&mut self, msg: PeerMsg, now: Instant) {
        match msg {
            PeerMsg::Media(batch) => {
                for (track, layer, pkt) in batch {
                    self.forward_mirrored(track, layer, &pkt, now);
                }
            }
            PeerMsg::KeyframeRequest { track, layer } => {
                if let Some(t) = self.tracks.get_mut(&track)
                    && t.origin.is_some()
                    && t.forwarder.request_keyframe(now, layer)
                {
                    self.send_keyframe_request(track, layer);
                }
            }
            PeerMsg::AttachSink { track, worker } => {
                match self.tracks.get_mut(&track).and_then(|t| t.origin.as_mut()) {
                    Some(origin) => {
                        if let Some(s) = origin.sinks.get_mut(worker) {
                            *s = true;
                        }
                    }
                    None => self.pending_sinks.entry(track).or_default().push(worker),
                }
            }
            PeerMsg::DetachSink { track, worker } => {
                if let Some(s) =
                    self.tracks.get_mut(&track).and_then(|t| t.origin.as_mut()).and_then(|o| o.sinks.get_mut(worker))
                {
                    *s = false;
                }
                if let Some(p) = self.pending_sinks.get_mut(&track) {
                    p.retain(|w| *w != worker);
                }
            }
            PeerMsg::QuicDatagram { from, data } => self.on_udp(now, from, data),
        }
    }

    /// Tell a session's control-plane task something; a full or closed inbox is the session's
    /// problem (it is going away or not reading), never the worker's.
    fn notify(&mut self, session: SessionId, input: SessionInput) {
        if let Some(&idx) = self.sessions.get(&session)
            && let Some(inbox) = self.conns[idx].as_ref().and_then(|c| c.inbox.as_ref())
            && inbox.try_send(input).is_err()
        {
            self.counters.drop(super::metrics::Drop::InboxFull);
        }
    }

    /// Forget a session: its subscriptions and published tracks on this worker. The connection
    /// itself lives on until it is drained.
    fn end_session(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else { return };
        let Some(session) = c.session.take() else { return };
        let flows: Vec<Flow> = c.flows.drain().map(|(_, f)| f).collect();
        if let Some(inbox) = c.inbox.take() {
            let _ = inbox.try_send(SessionInput::Closed { reason: "connection closed".into() });
        }
        self.sessions.remove(&session);
        self.sessions_gauge.dec();
        for flow in flows {
            match flow {
                Flow::Subscribe { track, subscription } => self.remove_subscription(track, subscription),
                Flow::Publish { track, .. } => {
                    if self.tracks.get(&track).and_then(|t| t.origin.as_ref()).is_some_and(|o| o.publisher == session) {
                        self.remove_track(track);
                    }
                }
            }
        }
    }
}

/// A subscription moved into a new forwarder (when a track's publish arrives after a local
/// subscriber attached): same sink and SSRC, fresh rewriter.
fn respawn(s: &crate::sfu::forwarder::Subscription<Sink>) -> SubscriptionSpec<Sink> {
    SubscriptionSpec {
        id: s.id,
        sink: s.sink,
        out_ssrc: s.out_ssrc,
        initial: random_start(),
        wish: crate::sfu::simulcast::LayerWish::default(),
    }
}

/// Random first output values, so subscribers learn nothing from them.
fn random_start() -> Rewrite {
    let mut b = [0u8; 10];
    let _ = aws_lc_rs::rand::fill(&mut b);
    Rewrite {
        seq: u16::from_be_bytes([b[0], b[1]]),
        timestamp: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
        picture_id: Some(u16::from_be_bytes([b[6], b[7]]) & 0x7fff),
        tl0_pic_idx: Some(b[8]),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Current time as a 64-bit NTP timestamp (for sender reports).
fn ntp_now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Codec of a track (helper for the submodules).
fn codec_of(t: &LocalTrack) -> Codec {
    t.forwarder.codec()
}
