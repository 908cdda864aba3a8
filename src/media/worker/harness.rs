//! A paired test harness for the media worker, after quinn-proto's: the worker is driven as a
//! value — datagrams in; transmits and timer deadlines out — on a virtual clock, and the
//! browsers on the other side are str0m clients behind a simulated network (delay, jitter and
//! so reordering, loss, and a bottleneck with a queue of its own). The harness plays the control
//! plane too: it admits sessions, publishes what a client offers and subscribes, with the same
//! `Command`s the signaling sessions send. No socket and no sleeping: seconds of a call take
//! milliseconds. The network's randomness is seeded; str0m's and the worker's own (SSRCs,
//! credentials, first sequence numbers) are not, so assert on what must hold whatever they are.

use super::port::PortSetup;
use super::{Worker, WorkerSetup};
use crate::client::synthetic::{Marker, SyntheticVideo, read_marker};
use crate::media::command::{Command, PublishIngress, PublishSpec, SessionInput, SinkSpec, SubscribeSpec};
use crate::media::ids::{RoomId, SessionId, SubscriptionId, TrackId};
use crate::media::metrics::{MediaMetrics, RtcCounters, StateGauges, WorkerCounters};
use crate::media::webrtc::{RtcSettings, dtls_certificate};
use crate::rooms::{Capabilities, TrackSource};
use crate::rtp::RtpBuilder;
use crate::sfu::packet::Codec;
use crate::sfu::simulcast::LayerWish;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RawPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};

/// One direction of a client's path to the server.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub delay: Duration,
    /// Each datagram is delayed by up to this much more, at random (so datagrams reorder).
    pub jitter: Duration,
    /// Share of datagrams lost, at random.
    pub loss: f64,
    /// A bottleneck: datagrams leave at most this fast...
    pub rate_bps: Option<u64>,
    /// ...and wait at most this long in its queue (the rest are dropped).
    pub queue: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue: Duration::from_millis(200),
        }
    }
}

/// A link and its bottleneck's state.
#[derive(Debug)]
struct Path {
    link: Link,
    busy_until: Instant,
}

/// A datagram on its way.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    /// Ties keep sending order.
    n: u64,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// What a subscribing client received of its video: one entry per RTP packet, in arrival order.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub at: Instant,
    /// The RTP sequence number the SFU gave it (extended by str0m), and its timestamp.
    pub seq: u64,
    pub timestamp: u32,
    /// What the synthetic source wrote in it: layer, frame, keyframe.
    pub marker: Option<Marker>,
}

/// A browser: a str0m client in RTP mode.
pub struct Client {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub session: SessionId,
    inbox: crate::lean_queue::Receiver<SessionInput>,
    up: Path,
    down: Path,
    timeout: Instant,
    /// Publisher: its camera (three simulcast layers) and when the next frame is due.
    camera: Option<Camera>,
    pub received: Vec<Received>,
    /// Layer changes the server reported, by subscription.
    pub layers: Vec<(Instant, SubscriptionId, u8)>,
    /// Keyframe requests this publisher received (rid).
    pub keyframe_requests: Vec<(Instant, Option<Rid>)>,
    /// Publisher: transport-wide sequence number → (sent, arrival the server reported).
    pub twcc: HashMap<u16, (Instant, Option<Instant>)>,
    pub offers_answered: usize,
}

struct Camera {
    mid: Mid,
    rids: Vec<Rid>,
    video: SyntheticVideo,
    next_frame: Instant,
    /// Layers owed a keyframe (requested, or the first frame).
    keyframe_due: Vec<bool>,
    pub track: Option<TrackId>,
}

pub struct Harness {
    pub worker: Worker,
    pub now: Instant,
    server: SocketAddr,
    pub clients: Vec<Client>,
    net: BinaryHeap<Reverse<InFlight>>,
    sent: u64,
    rng: u64,
    next_tick: Instant,
    pub room: RoomId,
    /// The QUIC port's address, and the CA its certificate is signed by.
    pub quic: SocketAddr,
    pub quic_ca: String,
    /// QUIC connections holding TLS handshake state (`switchboard_quic_tls_sessions`).
    pub tls_held: prometheus::IntGauge,
    /// A busy worker: it gets to its socket only this often, and datagrams wait for it there
    /// (`None`: at once).
    pub read_every: Option<Duration>,
    waiting: Vec<InFlight>,
    next_read: Instant,
    _commands: mpsc::Sender<Command>,
    /// What the worker tells the control plane (QUIC sessions opened, with their inboxes).
    pub(super) control: mpsc::Receiver<crate::media::command::ControlEvent>,
}

const RIDS: [&str; 3] = ["q", "h", "f"];

impl Harness {
    /// A worker with one room; `initial_bitrate_bps` is its TWCC estimate before feedback.
    pub fn new(seed: u64, initial_bitrate_bps: u64) -> Harness {
        let start = Instant::now();
        let server: SocketAddr = "10.0.0.1:50000".parse().expect("literal address");
        let quic: SocketAddr = "10.0.0.1:4433".parse().expect("literal address");
        let registry = prometheus::Registry::new();
        let metrics = MediaMetrics::new(&registry);
        let tls = crate::tls::generate(&[]).expect("a generated certificate");
        let quic_ca = tls.ca_pem.clone();
        let certs = rustls_pemfile::certs(&mut tls.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("PEM");
        let key = rustls_pemfile::private_key(&mut tls.key_pem.as_bytes()).expect("PEM").expect("a key");
        let tls = crate::tls::server_config(certs, key, &[]).expect("TLS config");
        let tls_held = metrics.quic_tls_sessions.clone();
        let server_config =
            crate::media::quic::server_config(tls, Duration::from_secs(30), tls_held.clone()).expect("QUIC config");
        let (commands_tx, commands) = mpsc::channel(64);
        let (peer_tx, peer_rx) = mpsc::channel(64);
        let (control, control_rx) = mpsc::channel(64);
        let setup = WorkerSetup {
            index: 0,
            workers: 1,
            socket: PortSetup::Virtual(quic),
            rtc_socket: PortSetup::Virtual(server),
            rtc_settings: RtcSettings {
                cert: dtls_certificate().expect("DTLS certificate"),
                candidates: vec![server],
                initial_bitrate: str0m::bwe::Bitrate::bps(initial_bitrate_bps),
                reconnect_grace: Duration::from_secs(20),
            },
            endpoint_config: Arc::new(quinn_proto::EndpointConfig::default()),
            server_config: Arc::new(server_config),
            commands,
            peer_rx,
            peers: vec![peer_tx],
            control,
            counters: WorkerCounters::new(&metrics, "quic"),
            rtc_counters: RtcCounters::new(&metrics),
            state_gauges: StateGauges::new(&metrics, 0),
            sessions_gauge: metrics.sessions.with_label_values(&["quic", "0"]),
            rtc_sessions_gauge: metrics.sessions.with_label_values(&["webrtc", "0"]),
            max_message_bytes: 65536,
            max_sessions: 10_000,
            retry_above_handshakes: 10_000,
        };
        let mut worker = Worker::new(setup).expect("a virtual worker");
        worker.virtual_now = Some(start);
        Harness {
            worker,
            now: start,
            server,
            clients: Vec::new(),
            net: BinaryHeap::new(),
            sent: 0,
            rng: seed.max(1),
            next_tick: start,
            room: RoomId(1),
            quic,
            quic_ca,
            tls_held,
            read_every: None,
            waiting: Vec::new(),
            next_read: start,
            _commands: commands_tx,
            control: control_rx,
        }
    }

    fn random(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn command(&mut self, cmd: Command) {
        let now = self.now;
        self.worker.on_command(cmd, now);
    }

    /// A new browser session in the room, on links `up` (to the server) and `down`.
    fn open(&mut self, rtc: Rtc, addr: SocketAddr, up: Link, down: Link) -> usize {
        let session = SessionId::next();
        let (inbox_tx, inbox) = crate::lean_queue::channel(256);
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::WebRtcOpen { session, inbox: inbox_tx, reply });
        assert_eq!(answer.try_recv(), Ok(true), "the worker takes the session");
        self.command(Command::Admit { session, room: self.room, caps: Capabilities::PARTICIPANT, version: 1 });
        let now = self.now;
        self.clients.push(Client {
            rtc,
            addr,
            session,
            inbox,
            up: Path { link: up, busy_until: now },
            down: Path { link: down, busy_until: now },
            timeout: now,
            camera: None,
            received: Vec::new(),
            layers: Vec::new(),
            keyframe_requests: Vec::new(),
            twcc: HashMap::new(),
            offers_answered: 0,
        });
        self.clients.len() - 1
    }

    fn client_rtc(&self, addr: SocketAddr, twcc: bool) -> Rtc {
        let mut config = RtcConfig::new().set_rtp_mode(true).enable_raw_packets(true).clear_codecs().enable_vp8(true);
        if twcc {
            config = config.enable_bwe(Some(str0m::bwe::Bitrate::kbps(3000)));
        } else {
            config = config
                .clear_extension_map()
                .set_extension(4, Extension::RtpMid)
                .set_extension(10, Extension::RtpStreamId)
                .set_extension(11, Extension::RepairedRtpStreamId);
        }
        let mut rtc = config.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a host candidate"));
        rtc
    }

    fn next_addr(&self) -> SocketAddr {
        SocketAddr::new([10, 0, 1, (self.clients.len() + 2) as u8].into(), 40000)
    }

    /// A browser publishing a camera in three simulcast layers (320x180, 640x360, 1280x720 at
    /// 150, 500 and 1500 kbit/s). Returns its index; its track ID is `track_of`.
    pub fn add_publisher(&mut self, up: Link, down: Link) -> usize {
        let addr = self.next_addr();
        let mut rtc = self.client_rtc(addr, true);
        let mut simulcast = Simulcast::new();
        for rid in RIDS {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(simulcast));
        let (offer, pending) = api.apply().expect("an offer");
        let idx = self.open(rtc, addr, up, down);
        let session = self.clients[idx].session;
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::WebRtcOffer { session, sdp: offer.to_sdp_string(), sources: HashMap::new(), reply });
        let accepted = answer.try_recv().expect("a reply").expect("the offer is accepted");
        let sdp = SdpAnswer::from_sdp_string(&accepted.answer).expect("answer SDP");
        self.clients[idx].rtc.sdp_api().accept_answer(pending, sdp).expect("the answer applies");
        let media = accepted.media.first().expect("the camera is offered");
        assert_eq!(media.codec, Codec::Vp8);
        let track = TrackId::next();
        let (reply, mut published) = oneshot::channel();
        self.command(Command::Publish {
            spec: PublishSpec {
                session,
                room: self.room,
                track,
                codec: Codec::Vp8,
                source: TrackSource::Camera,
                heights: vec![180, 360, 720],
                ingress: PublishIngress::WebRtc { mid: media.mid.clone(), rids: media.rids.clone() },
                audio_level_ext: None,
            },
            reply,
        });
        assert_eq!(published.try_recv(), Ok(Ok(())), "published");
        let now = self.now;
        self.clients[idx].camera = Some(Camera {
            mid,
            rids: RIDS.iter().map(|r| Rid::from(*r)).collect(),
            video: SyntheticVideo::new(
                0x1000 * (idx as u32 + 1),
                &[(320, 180, 150_000), (640, 360, 500_000), (1280, 720, 1_500_000)],
            ),
            next_frame: now,
            keyframe_due: vec![true; 3],
            track: Some(track),
        });
        idx
    }

    pub fn track_of(&self, publisher: usize) -> TrackId {
        self.clients[publisher].camera.as_ref().and_then(|c| c.track).expect("a publisher")
    }

    /// A receive-only browser; `twcc` says whether it negotiates transport-wide congestion
    /// control.
    pub fn add_subscriber(&mut self, twcc: bool, up: Link, down: Link) -> usize {
        let addr = self.next_addr();
        let rtc = self.client_rtc(addr, twcc);
        self.open(rtc, addr, up, down)
    }

    /// Subscribe `client` to `track`; the server's offer is answered as the run goes on.
    pub fn subscribe(&mut self, client: usize, track: TrackId, wish: LayerWish) -> SubscriptionId {
        let subscription = SubscriptionId::next();
        let (reply, mut done) = oneshot::channel();
        self.command(Command::Subscribe {
            spec: SubscribeSpec {
                session: self.clients[client].session,
                subscription,
                track,
                room: self.room,
                codec: Codec::Vp8,
                heights: vec![180, 360, 720],
                sink: SinkSpec::WebRtc,
                wish,
                origin: 0,
            },
            reply,
        });
        assert!(matches!(done.try_recv(), Ok(Ok(()))), "subscribed");
        subscription
    }

    pub fn set_wish(&mut self, track: TrackId, subscription: SubscriptionId, wish: LayerWish) {
        self.command(Command::SetWish { track, subscription, wish });
    }

    /// Change the server-to-client link of `client` from now on (a bottleneck that appears or
    /// lifts); what is already on its way keeps its arrival time.
    pub fn set_down_link(&mut self, client: usize, link: Link) {
        self.clients[client].down.link = link;
    }

    /// Run the call for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let next = self.next_event().clamp(self.now, end);
            self.advance(next);
        }
    }

    fn next_event(&self) -> Instant {
        let mut next = self.next_tick;
        if let Some(Reverse(d)) = self.net.peek() {
            next = next.min(d.at);
        }
        if let Some(Reverse((at, _))) = self.worker.out.timers.peek() {
            next = next.min(*at);
        }
        if !self.waiting.is_empty() {
            next = next.min(self.next_read);
        }
        for c in &self.clients {
            next = next.min(c.timeout);
            if let Some(cam) = &c.camera {
                next = next.min(cam.next_frame);
            }
        }
        next
    }

    fn advance(&mut self, now: Instant) {
        self.now = now;
        self.worker.virtual_now = Some(now);
        // Datagrams that have arrived.
        while self.net.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(d)) = self.net.pop() else { break };
            if d.to == self.server {
                self.waiting.push(d);
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == d.to)
                && let Ok(r) = Receive::new(Protocol::Udp, d.from, d.to, &d.data)
            {
                let _ = c.rtc.handle_input(Input::Receive(d.at, r));
            }
        }
        // The worker reads what has arrived for it (all of it, when it gets to its socket).
        if now >= self.next_read {
            if let Some(every) = self.read_every {
                self.next_read = now + every;
            }
            for d in std::mem::take(&mut self.waiting) {
                self.worker.on_rtc_udp(d.at, now, d.from, &d.data);
            }
        }
        // The worker's deadlines and its periodic work, as its run loop does them.
        self.worker.fire_timers(now);
        if now >= self.next_tick {
            self.next_tick = now + super::TICK;
            self.worker.on_tick(now);
            self.worker.order_browser_layers(now);
            self.worker.expire_closing(now);
            self.worker.expire_lost_peers(now);
            self.worker.out.compact_timers();
        }
        self.worker.flush(now);
        // The clients: their media, timeouts and output.
        for i in 0..self.clients.len() {
            self.drive_client(i, now);
        }
        self.take_server_output(now);
        self.take_session_input(now);
        // Answers and media written just now go out at once.
        for i in 0..self.clients.len() {
            self.drive_client(i, now);
        }
        self.take_server_output(now);
    }

    fn drive_client(&mut self, i: usize, now: Instant) {
        let c = &mut self.clients[i];
        if let Some(cam) = c.camera.as_mut()
            && cam.next_frame <= now
            && c.rtc.is_connected()
        {
            for (layer, rid) in cam.rids.iter().enumerate() {
                let key = std::mem::take(&mut cam.keyframe_due[layer]);
                for p in cam.video.frame(layer, key, 0) {
                    let Ok(h) = crate::rtp::RtpHeader::parse(&p) else { continue };
                    let payload: Arc<[u8]> = p[h.payload.clone()].into();
                    let write = RtpWrite::new(96.into(), SeqNo::from(u64::from(h.seq)), h.timestamp, now, payload)
                        .marker(h.marker)
                        .nackable(true);
                    if let Some(tx) = c.rtc.direct_api().stream_tx_by_mid(cam.mid, Some(*rid)) {
                        tx.write_rtp(write);
                    }
                }
            }
            cam.next_frame = now + Duration::from_micros(33_333);
        } else if let Some(cam) = c.camera.as_mut()
            && cam.next_frame <= now
        {
            cam.next_frame = now + Duration::from_micros(33_333);
        }
        if c.timeout <= now {
            let _ = c.rtc.handle_input(Input::Timeout(now));
        }
        let mut out = Vec::new();
        loop {
            match c.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    c.timeout = t.max(now + Duration::from_micros(100));
                    break;
                }
                Ok(Output::Transmit(t)) => out.push((t.destination, t.contents.to_vec())),
                Ok(Output::Event(e)) => on_client_event(c, e, now),
                Err(_) => {
                    c.timeout = now + Duration::from_millis(10);
                    break;
                }
            }
        }
        let from = self.clients[i].addr;
        for (to, data) in out {
            self.send(Some(i), true, from, to, data, now);
        }
    }

    /// Put a datagram on the network: through the client's `up` path (toward the server) or its
    /// `down` path.
    fn send(&mut self, client: Option<usize>, up: bool, from: SocketAddr, to: SocketAddr, data: Vec<u8>, now: Instant) {
        let Some(i) = client else { return };
        let (loss, jitter_frac) = (self.random(), self.random());
        let path = if up { &mut self.clients[i].up } else { &mut self.clients[i].down };
        if loss < path.link.loss {
            return;
        }
        let mut leave = now;
        if let Some(rate) = path.link.rate_bps {
            let start = path.busy_until.max(now);
            if start.saturating_duration_since(now) > path.link.queue {
                return; // tail drop
            }
            path.busy_until = start + Duration::from_secs_f64((data.len() as f64 + 28.0) * 8.0 / rate as f64);
            leave = path.busy_until;
        }
        let at = leave + path.link.delay + path.link.jitter.mul_f64(jitter_frac);
        self.sent += 1;
        self.net.push(Reverse(InFlight { at, n: self.sent, from, to, data }));
    }

    fn take_server_output(&mut self, now: Instant) {
        let sent = match &mut self.worker.out.rtc_socket {
            super::port::UdpPort::Virtual { sent, .. } => std::mem::take(sent),
            super::port::UdpPort::Socket(..) => Vec::new(),
        };
        for (to, data) in sent {
            let client = self.clients.iter().position(|c| c.addr == to);
            let from = self.server;
            self.send(client, false, from, to, data, now);
        }
    }

    fn take_session_input(&mut self, now: Instant) {
        for i in 0..self.clients.len() {
            while let Ok(input) = self.clients[i].inbox.try_recv() {
                match input {
                    SessionInput::Offer { sdp, offer_id, .. } => {
                        let c = &mut self.clients[i];
                        let offer = SdpOffer::from_sdp_string(&sdp).expect("the server's offer parses");
                        let answer = c.rtc.sdp_api().accept_offer(offer).expect("the server's offer applies");
                        c.offers_answered += 1;
                        let (reply, mut done) = oneshot::channel();
                        let session = c.session;
                        self.command(Command::WebRtcAnswer {
                            session,
                            sdp: answer.to_sdp_string(),
                            offer_id: Some(offer_id),
                            reply,
                        });
                        assert!(matches!(done.try_recv(), Ok(Ok(_))), "the answer is taken");
                    }
                    SessionInput::LayerChanged { subscription, layer } => {
                        self.clients[i].layers.push((now, subscription, layer));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The publisher's encoder restarts: its sequence numbers and timestamps jump (forward: the
    /// SRTP index must not go back on the same SSRC), and every layer starts on a keyframe.
    pub fn restart_camera(&mut self, publisher: usize, seq_offset: u16, ts_offset: u32) {
        let cam = self.clients[publisher].camera.as_mut().expect("a publisher");
        cam.video.restart(seq_offset, ts_offset);
        cam.keyframe_due.iter_mut().for_each(|k| *k = true);
    }

    /// Datagrams the worker sent from its QUIC port since the last call.
    pub fn take_quic_output(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        match &mut self.worker.socket {
            super::port::UdpPort::Virtual { sent, .. } => std::mem::take(sent),
            super::port::UdpPort::Socket(..) => Vec::new(),
        }
    }

    /// The worker's WebRTC peer of a client.
    pub fn peer(&self, client: usize) -> &crate::media::webrtc::Peer {
        let session = self.clients[client].session;
        let idx = self.worker.rtc_sessions.get(&session).and_then(|s| s.peer).expect("a negotiated peer");
        self.worker.out.peers[idx].as_ref().expect("a live peer")
    }
}

fn on_client_event(c: &mut Client, e: Event, now: Instant) {
    match e {
        Event::RtpPacket(p) => {
            let packet = RtpBuilder {
                payload_type: 96,
                seq: p.header.sequence_number,
                timestamp: p.header.timestamp,
                ssrc: 1,
                marker: p.header.marker,
                extensions: Vec::new(),
            }
            .build(&p.payload);
            c.received.push(Received {
                at: now,
                seq: *p.seq_no,
                timestamp: p.header.timestamp,
                marker: read_marker(&packet),
            });
        }
        Event::KeyframeRequest(r) => {
            c.keyframe_requests.push((now, r.rid));
            if let Some(cam) = c.camera.as_mut()
                && let Some(layer) = r.rid.and_then(|rid| cam.rids.iter().position(|x| *x == rid))
            {
                cam.keyframe_due[layer] = true;
            }
        }
        Event::RawPacket(raw) => match *raw {
            RawPacket::RtpTx(header, _) => {
                if let Some(seq) = header.ext_vals.transport_cc {
                    c.twcc.insert(seq, (now, None));
                }
            }
            RawPacket::RtcpRx(str0m::rtp::rtcp::Rtcp::Twcc(twcc)) => {
                let zero = c.twcc.values().map(|v| v.0).min().unwrap_or(now);
                for (seq, _, at) in twcc.into_iter(zero, 0.into()) {
                    if let (Some(at), Some(entry)) = (at, c.twcc.get_mut(&(*seq as u16))) {
                        entry.1 = Some(at);
                    }
                }
            }
            _ => {}
        },
        _ => {}
    }
}
