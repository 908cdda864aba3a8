//! A media worker: one OS thread with a single-threaded runtime that owns its UDP sockets (QUIC
//! and WebRTC), its QUIC connections and WebRTC peers, and the forwarding state of the tracks its
//! sessions publish or receive. The control plane reaches it only through bounded channels of
//! `Command`s; other workers through `PeerMsg`s. Nothing here is shared or locked: a packet never
//! waits on a lock or a task wake-up per subscriber.

mod forwarding;
#[cfg(test)]
mod harness;
#[cfg(test)]
mod harness_tests;
mod layer_order;
pub mod port;
mod quic_io;
mod rtc_egress;
mod rtc_io;
mod sessions;
mod tracks;

use super::admission::{AdmissionSet, Refusal};
use super::command::{
    Command, ControlEvent, PeerMsg, PublishIngress, SessionInput, SinkSpec, SubscribeRefusal, SubscribeSpec,
};
use super::ids::{RoomId, SessionId, SubscriptionId, TrackId};
use super::metrics::{QueuePeak, RtcCounters, StateGauges, WorkerCounters};
use super::quic::{Flow, QuicConn, close_code};
use super::recv_batch::RecvBatch;
use super::webrtc::{Peer, RtcSettings};
use crate::rooms::TrackSource;
use crate::sfu::forwarder::{SubscriptionSpec, TrackForwarder};
use crate::sfu::nack::LossDetector;
use crate::sfu::packet::{Codec, MediaPacket};
use crate::sfu::rewriter::Rewrite;
use crate::sfu::stats::ReceiveStats;
use bytes::BytesMut;
use port::{PortSetup, UdpPort};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::{Mid, Rid};
use tokio::sync::mpsc;

/// How often forwarders re-select layers and loss detectors send NACKs.
const TICK: Duration = Duration::from_millis(20);
const BWE_INTERVAL: Duration = Duration::from_millis(200);
const AUDIO_LEVEL_INTERVAL: Duration = Duration::from_millis(250);
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams read from a socket before other work gets a turn.
const RECV_BATCH: usize = 256;
/// Forwarded packets whose latency one loop turn observes (reads are batched by `RECV_BATCH`
/// per socket, so a turn rarely forwards more; the rest go unobserved).
const FORWARDED_PER_TURN: usize = 4 * RECV_BATCH;
/// Signaling bytes held for a QUIC client that does not read them, as a multiple of the largest
/// message; beyond it the connection is closed (the client is not keeping up).
const PENDING_SIGNAL_MESSAGES: usize = 16;
/// Messages held for a WebRTC session whose inbox is full (offers must not be lost); beyond it
/// the session is ended.
const SESSION_BACKLOG: usize = 64;

/// Where a subscription's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// A QUIC connection (index on this worker) and the subscription's flow.
    Quic { session: SessionId, conn: usize, flow: u64 },
    /// A WebRTC peer (index on this worker); the subscription's m-line is in the peer.
    WebRtc { session: SessionId, peer: usize, subscription: SubscriptionId },
}

impl Sink {
    pub fn session(&self) -> SessionId {
        match self {
            Sink::Quic { session, .. } | Sink::WebRtc { session, .. } => *session,
        }
    }
}

/// A deadline of a connection or peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Quic(usize),
    Rtc(usize),
    /// A peer's offer timer (`Peer::offer_timer`).
    Offer(usize),
}

/// Where a published layer's packets come from.
#[derive(Debug, Clone)]
enum LayerSource {
    Quic { conn: usize, flow: u64 },
    WebRtc { peer: usize, mid: Mid, rid: Option<Rid> },
}

/// The publishing side of a track whose publisher is on this worker.
struct Origin {
    publisher: SessionId,
    source: TrackSource,
    layers: Vec<OriginLayer>,
    /// Workers (by index) with subscribers of this track.
    sinks: Vec<bool>,
    audio_level_ext: Option<u8>,
    /// Browser simulcast: whether the layers are known to be lowest first yet.
    order: layer_order::LayerOrder,
}

struct OriginLayer {
    source: LayerSource,
    ssrc: Option<u32>,
    /// QUIC only: the server detects loss and NACKs (str0m does it for WebRTC).
    loss: LossDetector,
    stats: ReceiveStats,
}

/// A track this worker forwards (as its origin, or as a mirror for local subscribers).
struct LocalTrack {
    room: RoomId,
    origin_worker: usize,
    forwarder: TrackForwarder<Sink>,
    origin: Option<Origin>,
    /// Local WebRTC subscribers need the payload as a shared `Arc<[u8]>`.
    webrtc_sinks: usize,
    /// WebRTC subscriptions whose m-line is still being negotiated.
    pending: Vec<PendingSub>,
    /// Muted by its publisher or a moderator: its packets are not forwarded.
    muted: bool,
}

/// A WebRTC subscription waiting for the client's answer.
#[derive(Debug, Clone, Copy)]
struct PendingSub {
    subscription: SubscriptionId,
    session: SessionId,
    wish: crate::sfu::simulcast::LayerWish,
}

/// The worker's egress side: everything forwarding writes to.
struct Outputs {
    /// Indexed by quinn-proto's connection handle. Boxed: a connection is about 6.6 KB, and an
    /// unboxed slot of a vector grown by doubling costs that much empty (a third of the slots
    /// at 100,000 connections) and is copied whole on each growth.
    conns: Vec<Option<Box<QuicConn>>>,
    /// QUIC connections with queued packets.
    dirty: Vec<usize>,
    peers: Vec<Option<Peer>>,
    /// WebRTC peers with media written this turn, to drive at its end.
    rtc_dirty: Vec<usize>,
    rtc_socket: UdpPort,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// The heap's length when `compact_timers` last counted the live entries.
    timers_checked_at: usize,
    /// Egress arena: QUIC datagrams are split off it, so a packet costs no allocation of its own.
    arena: BytesMut,
    /// When each packet forwarded this loop turn was read: its forwarding latency is observed
    /// when its copies have been sent, at the end of the turn (`flush`).
    forwarded_at: Vec<Instant>,
    counters: WorkerCounters,
    rtc_counters: RtcCounters,
}

impl Outputs {
    /// Drop the timer heap's stale entries once they outnumber the live ones (one per connection
    /// or peer: the entry its `timeout` names) a few times over, and give the spare capacity
    /// back. A deadline that moves earlier leaves its later entry behind until it comes up, and
    /// with media flowing that happens many times a second per connection; without this the
    /// heap would hold the packet rate times the idle timeout in stale entries.
    ///
    /// Counting the live entries visits every connection (a cache miss each), so it is done only
    /// once the heap has grown by half since the last count: done every tick, it took half a core
    /// with 100,000 idle connections. The heap stays within about six times the live entries.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 1024 || self.timers.len() < self.timers_checked_at + self.timers_checked_at / 2 {
            return;
        }
        self.timers_checked_at = self.timers.len();
        let live = self.conns.iter().flatten().filter(|c| c.timeout.is_some()).count()
            + self
                .peers
                .iter()
                .flatten()
                .map(|p| usize::from(p.timeout.is_some()) + usize::from(p.offer_timer.is_some()))
                .sum::<usize>();
        if self.timers.len() <= 4 * live + 256 {
            return;
        }
        let (conns, peers) = (&self.conns, &self.peers);
        let live: Vec<Reverse<(Instant, Timer)>> = std::mem::take(&mut self.timers)
            .into_vec()
            .into_iter()
            .filter(|Reverse((at, key))| match *key {
                Timer::Quic(i) => conns.get(i).and_then(Option::as_ref).is_some_and(|c| c.timeout == Some(*at)),
                Timer::Rtc(i) => peers.get(i).and_then(Option::as_ref).is_some_and(|p| p.timeout == Some(*at)),
                Timer::Offer(i) => peers.get(i).and_then(Option::as_ref).is_some_and(|p| p.offer_timer == Some(*at)),
            })
            .collect();
        let mut heap = BinaryHeap::from(live);
        heap.shrink_to_fit();
        self.timers = heap;
        self.timers_checked_at = self.timers.len();
    }
}

/// Everything a worker needs to start.
pub struct WorkerSetup {
    pub index: usize,
    pub workers: usize,
    pub socket: PortSetup,
    pub rtc_socket: PortSetup,
    pub rtc_settings: RtcSettings,
    pub endpoint_config: Arc<quinn_proto::EndpointConfig>,
    pub server_config: Arc<quinn_proto::ServerConfig>,
    pub commands: mpsc::Receiver<Command>,
    pub peer_rx: mpsc::Receiver<PeerMsg>,
    pub peers: Vec<mpsc::Sender<PeerMsg>>,
    pub control: mpsc::Sender<ControlEvent>,
    pub counters: WorkerCounters,
    pub rtc_counters: RtcCounters,
    pub state_gauges: StateGauges,
    pub sessions_gauge: prometheus::IntGauge,
    pub rtc_sessions_gauge: prometheus::IntGauge,
    pub max_message_bytes: usize,
    pub max_sessions: usize,
    pub retry_above_handshakes: usize,
}

pub struct Worker {
    index: usize,
    workers: usize,
    socket: UdpPort,
    endpoint: quinn_proto::Endpoint,
    /// The address WebRTC packets are taken to have arrived at: the ICE candidate this worker
    /// announces. str0m drops STUN not addressed to one of its candidates, and behind NAT (or on
    /// `0.0.0.0`) the socket's own address is not one (`[webrtc] public_ips`).
    rtc_addr: SocketAddr,
    rtc_settings: RtcSettings,
    out: Outputs,
    sessions: HashMap<SessionId, usize>,
    rtc_sessions: HashMap<SessionId, RtcSession>,
    peer_by_addr: HashMap<SocketAddr, usize>,
    peer_by_ufrag: HashMap<String, usize>,
    tracks: HashMap<TrackId, LocalTrack>,
    /// Which session may publish and receive what, in which room.
    admissions: AdmissionSet,
    /// Subscribers' workers that attached before the track's `Publish` arrived.
    pending_sinks: HashMap<TrackId, Vec<usize>>,
    peer_txs: Vec<mpsc::Sender<PeerMsg>>,
    /// State messages for each other worker that found its queue full, in order. They are sent
    /// again every loop turn: a state change between workers is delayed, never dropped. (Bounded
    /// by the signaling that causes them, which is rate-limited per session.)
    peer_backlog: Vec<VecDeque<PeerMsg>>,
    /// WebRTC sessions with messages in their backlog (so a loop turn looks at these only).
    backlogged: Vec<SessionId>,
    outgoing: Vec<Vec<(TrackId, u8, MediaPacket)>>,
    commands: mpsc::Receiver<Command>,
    peer_rx: mpsc::Receiver<PeerMsg>,
    control: mpsc::Sender<ControlEvent>,
    sessions_gauge: prometheus::IntGauge,
    rtc_sessions_gauge: prometheus::IntGauge,
    state_gauges: StateGauges,
    command_peak: QueuePeak,
    peer_peak: QueuePeak,
    max_message_bytes: usize,
    max_sessions: usize,
    /// QUIC handshakes in progress (accepted, not yet connected) and the count at which new
    /// clients must validate their address first (`quic.retry_above_handshakes`).
    handshakes: usize,
    retry_above_handshakes: usize,
    /// Connections closing after a flush, with the instant they are closed regardless.
    closing_deadlines: Vec<(Instant, usize, quinn_proto::ConnectionHandle)>,
    /// Ingress arena for received QUIC datagrams (quinn-proto takes each as its own `BytesMut`).
    recv: BytesMut,
    /// The datagrams of one read (`recvmmsg`), of the QUIC socket and of the WebRTC socket.
    recv_batch: RecvBatch,
    rtc_recv_batch: RecvBatch,
    transmit: Vec<u8>,
    rtcp: Vec<u8>,
    rtcp_ssrc: u32,
    epoch: Instant,
    last_bwe: Instant,
    last_audio: Instant,
    last_report: Instant,
    stopping: bool,
    /// The newest server SDP offer ID handed out (`Peer::offer_id`).
    next_offer_id: u64,
    /// A test harness's virtual clock, when it drives the worker (`harness.rs`).
    virtual_now: Option<Instant>,
}

/// A WebSocket session on this worker (its peer exists once media is negotiated).
struct RtcSession {
    inbox: crate::lean_queue::Sender<SessionInput>,
    peer: Option<usize>,
    /// Messages that must reach the session (offers) but found its inbox full.
    backlog: VecDeque<SessionInput>,
}

impl Worker {
    /// Build the worker. Must run inside the worker's runtime (the sockets register with it).
    pub fn new(s: WorkerSetup) -> std::io::Result<Self> {
        let socket = UdpPort::new(s.socket)?;
        let rtc_socket = UdpPort::new(s.rtc_socket)?;
        let bound = rtc_socket.local_addr()?;
        let rtc_addr = candidate_for(bound, &s.rtc_settings.candidates);
        let endpoint = quinn_proto::Endpoint::new(s.endpoint_config, Some(s.server_config), true, None);
        let now = Instant::now();
        let mut ssrc = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut ssrc);
        Ok(Self {
            index: s.index,
            workers: s.workers,
            socket,
            endpoint,
            rtc_addr,
            rtc_settings: s.rtc_settings,
            out: Outputs {
                conns: Vec::new(),
                dirty: Vec::new(),
                peers: Vec::new(),
                rtc_dirty: Vec::new(),
                rtc_socket,
                timers: BinaryHeap::new(),
                timers_checked_at: 0,
                arena: BytesMut::with_capacity(256 * 1024),
                forwarded_at: Vec::with_capacity(FORWARDED_PER_TURN),
                counters: s.counters,
                rtc_counters: s.rtc_counters,
            },
            sessions: HashMap::new(),
            rtc_sessions: HashMap::new(),
            peer_by_addr: HashMap::new(),
            peer_by_ufrag: HashMap::new(),
            tracks: HashMap::new(),
            admissions: AdmissionSet::default(),
            pending_sinks: HashMap::new(),
            outgoing: (0..s.workers).map(|_| Vec::new()).collect(),
            peer_backlog: (0..s.workers).map(|_| VecDeque::new()).collect(),
            backlogged: Vec::new(),
            peer_txs: s.peers,
            commands: s.commands,
            peer_rx: s.peer_rx,
            control: s.control,
            sessions_gauge: s.sessions_gauge,
            rtc_sessions_gauge: s.rtc_sessions_gauge,
            state_gauges: s.state_gauges,
            command_peak: QueuePeak::default(),
            peer_peak: QueuePeak::default(),
            max_message_bytes: s.max_message_bytes,
            max_sessions: s.max_sessions,
            handshakes: 0,
            closing_deadlines: Vec::new(),
            retry_above_handshakes: s.retry_above_handshakes,
            recv: BytesMut::with_capacity(256 * 1024),
            recv_batch: RecvBatch::new(),
            rtc_recv_batch: RecvBatch::new(),
            transmit: Vec::with_capacity(2048),
            rtcp: Vec::with_capacity(1500),
            rtcp_ssrc: u32::from_be_bytes(ssrc),
            epoch: now,
            last_bwe: now,
            last_audio: now,
            last_report: now,
            stopping: false,
            next_offer_id: 0,
            virtual_now: None,
        })
    }

    /// The time: the clock's, or the test harness's.
    fn now(&self) -> Instant {
        self.virtual_now.unwrap_or_else(Instant::now)
    }

    /// Run until told to shut down (or the control plane goes away).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next_timer = self.out.timers.peek().map(|Reverse((t, _))| *t);
            // Unbiased: the branch polled first is chosen at random each turn, so a socket that
            // is always readable cannot starve the others, the tick or the control plane.
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(cmd) => {
                        self.command_peak.taken(self.commands.len());
                        self.on_command(cmd, Instant::now());
                    }
                },
                msg = self.peer_rx.recv() => {
                    if let Some(msg) = msg {
                        self.peer_peak.taken(self.peer_rx.len());
                        self.on_peer(msg, Instant::now());
                    }
                }
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.drain_socket();
                    }
                }
                ready = self.out.rtc_socket.readable() => {
                    if ready.is_ok() {
                        self.drain_rtc_socket();
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.on_tick(now);
                    self.order_browser_layers(now);
                    self.expire_closing(now);
                    self.expire_lost_peers(now);
                    self.out.compact_timers();
                }
                () = sleep_until(next_timer) => {}
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.flush(now);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        // (Stale entries, superseded by an earlier deadline, are skipped when they come up and
        // dropped in bulk by `Outputs::compact_timers`.)
        while let Some(&Reverse((at, key))) = self.out.timers.peek() {
            if at > now {
                break;
            }
            self.out.timers.pop();
            match key {
                Timer::Quic(idx) => self.quic_timeout(idx, at, now),
                Timer::Rtc(idx) => self.rtc_timeout(idx, at, now),
                Timer::Offer(idx) => self.offer_timeout(idx, at, now),
            }
        }
    }

    async fn shutdown(&mut self) {
        self.stopping = true;
        let now = Instant::now();
        for conn in self.out.conns.iter_mut().flatten() {
            conn.conn.close(
                now,
                quinn_proto::VarInt::from_u32(close_code::SERVER_SHUTDOWN),
                "server shutting down".into(),
            );
        }
        self.out.dirty = (0..self.out.conns.len()).filter(|i| self.out.conns[*i].is_some()).collect();
        for c in self.out.conns.iter_mut().flatten() {
            c.dirty = true;
        }
        for idx in 0..self.out.peers.len() {
            self.close_peer(idx);
        }
        self.flush(now);
        // Give CONNECTION_CLOSE a moment to leave and be retransmitted once if needed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        self.fire_timers(now);
        self.flush(now);
        self.out.counters.flush();
        self.out.rtc_counters.flush();
    }

    /// Whether the worker has `max_sessions` sessions, QUIC and WebRTC (WebSocket) together.
    fn full(&self) -> bool {
        self.sessions.len() + self.rtc_sessions.len() >= self.max_sessions
    }

    fn on_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::SendSignal { session, frame } => {
                let limit = self.max_message_bytes.saturating_mul(PENDING_SIGNAL_MESSAGES);
                if let Some(&idx) = self.sessions.get(&session)
                    && let Some(c) = self.out.conns[idx].as_mut()
                {
                    if c.pending_out.len() + frame.len() > limit {
                        self.out.counters.drop(super::metrics::Drop::InboxFull);
                        self.close(idx, close_code::OVERLOADED, "signaling messages are not being read");
                        return;
                    }
                    c.pending_out.extend_from_slice(&frame);
                    if let Some((code, reason)) = c.close_after_next_message.take() {
                        self.close_after_flush(idx, code, reason, now);
                    }
                    self.write_pending(idx);
                }
            }
            Command::CloseSession { session, code, reason } => {
                if let Some(&idx) = self.sessions.get(&session) {
                    // Deliver what is queued (the last signaling message, saying why) first.
                    self.close_after_flush(idx, code, reason, now);
                    self.end_session(idx);
                } else {
                    self.end_rtc_session(session);
                }
            }
            Command::Admit { session, room, caps, version } => {
                // A session whose connection already ended is not admitted (it would never be
                // dismissed).
                if (self.sessions.contains_key(&session) || self.rtc_sessions.contains_key(&session))
                    && self.admissions.admit(session, room, caps, version)
                {
                    self.prune(session, now);
                }
            }
            Command::Dismiss { session } => {
                self.admissions.dismiss(session);
                // A WebRTC peer belongs to one call: the next call negotiates a fresh one (new
                // ICE and DTLS), as a client opens a new peer connection per call. Closing it
                // first drops its bindings without renegotiating them away.
                if let Some(peer) = self.rtc_sessions.get(&session).and_then(|s| s.peer) {
                    self.close_peer(peer);
                }
                self.prune(session, now);
            }
            Command::Publish { spec, reply } => {
                let result = self
                    .admissions
                    .check_publish(spec.session, spec.room, spec.source)
                    .and_then(|()| self.publish(spec));
                let _ = reply.send(result);
            }
            Command::RemoveTrack { track } => self.remove_track(track),
            Command::Subscribe { spec, reply } => {
                let result = match self.admissions.check_receive(spec.session, spec.room) {
                    Ok(()) => self.subscribe(spec, now),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::SetMuted { track, muted } => self.set_muted(track, muted),
            Command::Sync(done) => {
                let _ = done.send(());
            }
            Command::Unsubscribe { session, subscription, track } => {
                if let Some(&idx) = self.sessions.get(&session)
                    && let Some(c) = self.out.conns[idx].as_mut()
                {
                    c.flows.retain(|_, f| *f != Flow::Subscribe { track, subscription });
                }
                self.unsubscribe_webrtc(session, subscription, now);
                self.remove_subscription(track, subscription);
            }
            Command::SetWish { track, subscription, wish } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.forwarder.set_wish(subscription.0, wish);
                    // Still waiting for its m-line: the wish applies once it is forwarded.
                    for p in t.pending.iter_mut().filter(|p| p.subscription == subscription) {
                        p.wish = wish;
                    }
                }
            }
            Command::WebRtcOpen { session, inbox, reply } => {
                if self.stopping || self.full() {
                    let _ = reply.send(false);
                    return;
                }
                self.rtc_sessions.insert(session, RtcSession { inbox, peer: None, backlog: VecDeque::new() });
                self.rtc_sessions_gauge.inc();
                let _ = reply.send(true);
            }
            Command::WebRtcOffer { session, sdp, sources, reply } => {
                let result = self.accept_offer(session, &sdp, &sources, now);
                let _ = reply.send(result);
            }
            Command::WebRtcAnswer { session, sdp, offer_id, reply } => {
                let result = self.accept_answer(session, &sdp, offer_id, now);
                let _ = reply.send(result);
            }
            Command::WebRtcRejectOffer { session, offer_id, reply } => {
                let _ = reply.send(self.reject_offer(session, offer_id, now));
            }
            Command::Shutdown => {}
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
                    && t.forwarder.request_keyframe(now, layer, crate::sfu::simulcast::ANSWERED_REQUEST_INTERVAL)
                {
                    self.send_keyframe_request(track, layer);
                }
            }
            PeerMsg::SenderClock { track, layer, clock } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.forwarder.on_sender_clock(layer, clock);
                }
            }
            PeerMsg::ReorderLayers { track, order } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.forwarder.reorder_layers(&order);
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

    /// Forget a QUIC session: its subscriptions and published tracks on this worker. The
    /// connection itself lives on until it is drained.
    fn end_session(&mut self, idx: usize) {
        let Some(c) = self.out.conns[idx].as_mut() else { return };
        let Some(session) = c.session.take() else { return };
        let flows: Vec<Flow> = c.flows.drain().map(|(_, f)| f).collect();
        if let Some(inbox) = c.inbox.take() {
            let _ = inbox.try_send(SessionInput::Closed { reason: "connection closed".into() });
        }
        self.sessions.remove(&session);
        self.admissions.dismiss(session);
        self.sessions_gauge.dec();
        for flow in flows {
            match flow {
                Flow::Subscribe { track, subscription } => self.remove_subscription(track, subscription),
                Flow::Publish { track, .. } => self.remove_published_by(track, session),
            }
        }
    }
}

/// The announced candidate that packets arriving at `bound` were sent to: `bound` itself when it
/// is announced, else the first candidate (a public address in front of this one).
fn candidate_for(bound: SocketAddr, candidates: &[SocketAddr]) -> SocketAddr {
    if candidates.contains(&bound) { bound } else { candidates.first().copied().unwrap_or(bound) }
}

/// Random first output values, so subscribers learn nothing from them.
fn random_start() -> Rewrite {
    let mut b = [0u8; 10];
    let _ = aws_lc_rs::rand::fill(&mut b);
    Rewrite {
        // Below 2^15 so a WebRTC stream's first extended sequence number has rollover counter 0
        // with room to reorder.
        seq: u16::from_be_bytes([b[0], b[1]]) & 0x7fff,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_taken_to_arrive_at_an_announced_candidate() {
        let bound: SocketAddr = "10.0.0.5:50000".parse().expect("addr");
        let public: SocketAddr = "203.0.113.7:50000".parse().expect("addr");
        assert_eq!(candidate_for(bound, &[bound]), bound);
        assert_eq!(candidate_for(bound, &[public]), public, "behind NAT: the public address");
        let any: SocketAddr = "0.0.0.0:50000".parse().expect("addr");
        assert_eq!(candidate_for(any, &[public, bound]), public, "bound to every interface");
        assert_eq!(candidate_for(bound, &[]), bound);
    }
}
