//! `switchboard::client`: a Rust client for Switchboard's QUIC transport, used by the tests and
//! the load tester. Connect with the server's CA, join with an access token, publish tracks from
//! RTP you produce, subscribe with a preferred layer, and receive RTP and events.
//!
//! The client does what a media client should: it answers the server's NACKs from a send history
//! (retransmitting the original packet), reports keyframe requests as events, and NACKs packets
//! it misses on its subscriptions.

mod shared;
mod socket;
pub mod synthetic;

use crate::media::quic::ALPN;
use crate::rtp::{rtcp, varint};
use crate::sfu::packet::{Codec, MediaKind};
use crate::signaling::messages::{
    CallState, CapabilitiesInfo, ClientEnvelope, ClientMessage, ErrorCode, JoinAt, LayerFlow, LayerRequest,
    ParticipantInfo, Role, ServerMessage, TrackSource,
};
use bytes::{BufMut, Bytes, BytesMut};
use shared::Shared;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Closed(String),
    #[error("the server refused: {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    #[error("unexpected response: {0}")]
    Unexpected(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub server: SocketAddr,
    /// Name the server certificate must match (the generated one covers `localhost`).
    pub server_name: String,
    /// PEM of the CA to trust (the server's `data/tls/ca.pem`).
    pub ca_pem: Vec<u8>,
    /// How long to wait for a response to a request.
    pub request_timeout: Duration,
    /// The local address to send from (any port). `None`: the unspecified address, so the
    /// system picks by route. A load tester holding more clients than one address has ports
    /// spreads them over several loopback addresses with this.
    pub local_ip: Option<std::net::IpAddr>,
    /// How often the connection sends a QUIC keepalive while it has nothing else to send; it
    /// must stay well under the server's `quic.idle_timeout_seconds` (30 s by default).
    pub keep_alive: Duration,
}

impl ClientOptions {
    pub fn new(server: SocketAddr, ca_pem: Vec<u8>) -> Self {
        Self {
            server,
            server_name: "localhost".into(),
            ca_pem,
            request_timeout: Duration::from_secs(10),
            local_ip: None,
            keep_alive: Duration::from_secs(5),
        }
    }
}

/// What the client hears.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A server message that is not the response to a request (participant and track events,
    /// layer changes, active speakers, call state changes).
    Signal(ServerMessage),
    /// An RTP packet on a subscription.
    Rtp { subscription: u64, packet: Bytes },
    /// The server wants a keyframe of a published layer.
    KeyframeRequest { track: u64, layer: u8 },
    /// The connection ended.
    Closed { reason: String },
}

/// A published track and its flows.
#[derive(Debug, Clone)]
pub struct PublishedTrack {
    pub track_id: u64,
    pub flows: Vec<LayerFlow>,
}

/// A subscription.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionInfo {
    pub subscription_id: u64,
    pub track_id: u64,
    pub flow_id: u64,
    pub ssrc: u32,
}

/// The result of joining (a group call, a room, a call).
#[derive(Debug, Clone)]
pub struct Joined {
    pub participant_id: u64,
    pub room: String,
    pub state: CallState,
    /// A 1:1 call's ID.
    pub call_id: Option<String>,
    /// A meeting's ID.
    pub meeting_id: Option<String>,
    pub role: Option<Role>,
    pub capabilities: CapabilitiesInfo,
    pub participants: Vec<ParticipantInfo>,
}

/// Where to join.
#[derive(Debug, Clone)]
pub enum Locator {
    Group(String),
    Room(String),
    Call(String),
    /// A meeting's 12-digit `joinMeetingId` and passcode.
    Meeting {
        join_meeting_id: String,
        passcode: Option<String>,
    },
    /// A meeting's `joinWebUrl`.
    MeetingLink(String),
}

type Pending = Arc<Mutex<std::collections::HashMap<u64, oneshot::Sender<ServerMessage>>>>;

/// A connected client.
pub struct Client {
    endpoint: quinn::Endpoint,
    socket: Arc<socket::MutableSocket>,
    conn: quinn::Connection,
    signal: tokio::sync::Mutex<quinn::SendStream>,
    pending: Pending,
    next_id: AtomicU64,
    shared: Arc<Mutex<Shared>>,
    /// Told when a subscription is added: the NACK task sleeps until then.
    subscribed: Arc<tokio::sync::Notify>,
    events: mpsc::Receiver<ClientEvent>,
    request_timeout: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Client {
    /// Connect and open the signaling stream.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let tls = crate::tls::client_config(&opts.ca_pem, &[ALPN]).map_err(|e| ClientError::Tls(e.to_string()))?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = crate::media::quic::transport_config(Duration::from_secs(30));
        transport.keep_alive_interval(Some(opts.keep_alive));
        config.transport_config(Arc::new(transport));
        let bind = match opts.local_ip {
            Some(ip) => SocketAddr::new(ip, 0),
            None if opts.server.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
            None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        };
        let udp = std::net::UdpSocket::bind(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let wrapped =
            quinn::Runtime::wrap_udp_socket(&*runtime, udp).map_err(|e| ClientError::Connect(e.to_string()))?;
        let socket = Arc::new(socket::MutableSocket::new(wrapped));
        let mut endpoint =
            quinn::Endpoint::new_with_abstract_socket(quinn::EndpointConfig::default(), None, socket.clone(), runtime)
                .map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(opts.server, &opts.server_name)
            .map_err(|e| ClientError::Connect(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let (events_tx, events) = mpsc::channel(65_536);
        let pending: Pending = Arc::default();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let subscribed = Arc::new(tokio::sync::Notify::new());
        let tasks = vec![
            tokio::spawn(read_signaling(conn.clone(), recv, pending.clone(), shared.clone(), events_tx.clone())),
            tokio::spawn(read_datagrams(conn.clone(), shared.clone(), events_tx.clone())),
            tokio::spawn(send_nacks(conn.clone(), shared.clone(), subscribed.clone())),
        ];
        Ok(Client {
            endpoint,
            socket,
            conn,
            signal: tokio::sync::Mutex::new(send),
            pending,
            next_id: AtomicU64::new(1),
            shared,
            subscribed,
            events,
            request_timeout: opts.request_timeout,
            tasks,
        })
    }

    /// Send a request and wait for its response; error responses become `ClientError::Server`.
    pub async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending map lock is never held across a panic").insert(id, tx);
        let json = serde_json::to_vec(&ClientEnvelope { id: Some(id), message }).expect("client messages serialize");
        self.send_frame(&json).await?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Err(_) => Err(ClientError::Timeout(self.request_timeout)),
            Ok(Err(_)) => Err(ClientError::Closed("connection closed while waiting".into())),
            Ok(Ok(ServerMessage::Error { code, message, .. })) => Err(ClientError::Server { code, message }),
            Ok(Ok(msg)) => Ok(msg),
        }
    }

    /// Write raw bytes as one signaling frame (tests send malformed ones).
    pub async fn send_frame(&self, payload: &[u8]) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(4 + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        self.send_raw_signal(&out).await
    }

    /// Write raw bytes on the signaling stream, framing included.
    pub async fn send_raw_signal(&self, bytes: &[u8]) -> Result<(), ClientError> {
        self.signal.lock().await.write_all(bytes).await.map_err(|e| ClientError::Closed(e.to_string()))
    }

    /// Register this connection as a device of the token's identity (it can then be called, and
    /// join without a token). Returns the identity's raw ID.
    pub async fn register(&self, token: &str, display_name: Option<&str>) -> Result<String, ClientError> {
        let msg = ClientMessage::Register { token: token.into(), display_name: display_name.map(str::to_owned) };
        match self.request(msg).await? {
            ServerMessage::Registered { identity, .. } => Ok(identity),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Join a group call.
    pub async fn join_group(&self, token: &str, group_id: &str) -> Result<Joined, ClientError> {
        self.join(Some(token), Locator::Group(group_id.into()), None).await
    }

    /// Join a call, a group call, a room or a meeting; `token` may be left out once registered.
    /// A meeting join may land in its lobby (`Joined::state` is `InLobby`; `admitted` follows).
    pub async fn join(
        &self,
        token: Option<&str>,
        locator: Locator,
        display_name: Option<&str>,
    ) -> Result<Joined, ClientError> {
        let at = match &locator {
            Locator::Group(g) => JoinAt::group(g),
            Locator::Room(r) => JoinAt::room(r),
            Locator::Call(c) => JoinAt::call(c),
            Locator::Meeting { join_meeting_id, passcode } => JoinAt::meeting(join_meeting_id, passcode.as_deref()),
            Locator::MeetingLink(link) => JoinAt::meeting_link(link),
        };
        let msg =
            ClientMessage::Join { token: token.map(str::to_owned), at, display_name: display_name.map(str::to_owned) };
        joined(self.request(msg).await?)
    }

    /// Call one or more identities (raw IDs). Returns the caller's side of the call, in state
    /// `Connecting`; `callStateChanged` events follow (`Ringing`, `Connected`, `Disconnected`).
    pub async fn start_call(&self, targets: &[&str]) -> Result<Joined, ClientError> {
        let msg = ClientMessage::StartCall { targets: targets.iter().map(|t| (*t).to_owned()).collect() };
        joined(self.request(msg).await?)
    }

    /// Answer a call ringing on this device.
    pub async fn accept_call(&self, call_id: &str) -> Result<Joined, ClientError> {
        joined(self.request(ClientMessage::AcceptCall { call_id: call_id.into() }).await?)
    }

    /// Decline a call ringing on this device.
    pub async fn reject_call(&self, call_id: &str) -> Result<(), ClientError> {
        self.request(ClientMessage::RejectCall { call_id: call_id.into() }).await.map(drop)
    }

    /// (A meeting's organizer or presenters) let people in from the lobby: those named, or all.
    pub async fn admit_lobby(&self, participant_ids: &[u64], all: bool) -> Result<(), ClientError> {
        self.request(ClientMessage::AdmitLobby { participant_ids: participant_ids.to_vec(), all }).await.map(drop)
    }

    /// (A meeting's organizer or presenters) turn people away from the lobby.
    pub async fn reject_lobby(&self, participant_ids: &[u64], all: bool) -> Result<(), ClientError> {
        self.request(ClientMessage::RejectLobby { participant_ids: participant_ids.to_vec(), all }).await.map(drop)
    }

    /// Hang up (for everyone: end a 1:1 call for all, or as a presenter a room's call). A
    /// `callStateChanged` (`Disconnected`) event precedes the answer.
    pub async fn hang_up(&self, for_everyone: bool) -> Result<(), ClientError> {
        self.request(ClientMessage::HangUp { for_everyone }).await.map(drop)
    }

    /// Publish a track. `layers` lists simulcast layers lowest first (empty: one layer).
    pub async fn publish(
        &self,
        kind: MediaKind,
        codec: Codec,
        layers: Vec<LayerRequest>,
    ) -> Result<PublishedTrack, ClientError> {
        self.publish_source(kind, codec, layers, None).await
    }

    /// Publish a track that carries `source` (e.g. a screen share).
    pub async fn publish_source(
        &self,
        kind: MediaKind,
        codec: Codec,
        layers: Vec<LayerRequest>,
        source: Option<TrackSource>,
    ) -> Result<PublishedTrack, ClientError> {
        self.publish_message(ClientMessage::Publish {
            kind,
            codec,
            layers,
            audio_level_ext_id: Some(1),
            source,
            audience: None,
        })
        .await
    }

    /// Publish an audio track to some identities (raw IDs) only: nobody else in the call learns
    /// of it or may receive it.
    pub async fn publish_to(
        &self,
        kind: MediaKind,
        codec: Codec,
        audience: Vec<String>,
    ) -> Result<PublishedTrack, ClientError> {
        let msg = ClientMessage::Publish {
            kind,
            codec,
            layers: Vec::new(),
            audio_level_ext_id: Some(1),
            source: None,
            audience: Some(audience),
        };
        self.publish_message(msg).await
    }

    async fn publish_message(&self, msg: ClientMessage) -> Result<PublishedTrack, ClientError> {
        match self.request(msg).await? {
            ServerMessage::Published { track_id, flows, .. } => {
                let mut shared = self.shared.lock().expect("client state lock");
                for f in &flows {
                    shared.add_publish_flow(f.flow_id, track_id, f.layer);
                }
                Ok(PublishedTrack { track_id, flows })
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Send one RTP packet on a published layer (kept for retransmission on NACK).
    pub fn send_rtp(&self, track: &PublishedTrack, layer: usize, packet: Bytes) -> Result<(), ClientError> {
        let flow = track.flows.get(layer).ok_or_else(|| ClientError::Unexpected(format!("no layer {layer}")))?.flow_id;
        if let Ok(h) = crate::rtp::RtpHeader::parse(&packet) {
            self.shared.lock().expect("client state lock").remember_sent(flow, h.seq, packet.clone());
        }
        self.send_on_flow(flow, &packet)
    }

    /// Record a packet as sent without sending it: the server will notice the gap and NACK it,
    /// and the client then retransmits it from its history (tests of publisher-side loss).
    pub fn lose_rtp(&self, track: &PublishedTrack, layer: usize, packet: Bytes) {
        if let (Some(flow), Ok(h)) = (track.flows.get(layer), crate::rtp::RtpHeader::parse(&packet)) {
            self.shared.lock().expect("client state lock").remember_sent(flow.flow_id, h.seq, packet);
        }
    }

    /// Send `payload` prefixed with `flow` as one datagram.
    pub fn send_on_flow(&self, flow: u64, payload: &[u8]) -> Result<(), ClientError> {
        let mut d = BytesMut::with_capacity(payload.len() + 8);
        varint::write(flow, &mut d);
        d.put_slice(payload);
        self.conn.send_datagram(d.freeze()).map_err(|e| ClientError::Closed(e.to_string()))
    }

    /// Send an arbitrary datagram (tests send malformed ones).
    pub fn send_raw_datagram(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.conn.send_datagram(bytes).map_err(|e| ClientError::Closed(e.to_string()))
    }

    /// Subscribe to a track.
    pub async fn subscribe(
        &self,
        track_id: u64,
        preferred_layer: Option<u8>,
        max_height: Option<u32>,
    ) -> Result<SubscriptionInfo, ClientError> {
        match self.request(ClientMessage::Subscribe { track_id, preferred_layer, max_height }).await? {
            ServerMessage::Subscribed {
                subscription_id, track_id, flow_id: Some(flow_id), ssrc: Some(ssrc), ..
            } => {
                self.shared.lock().expect("client state lock").add_subscription(flow_id, subscription_id, ssrc);
                self.subscribed.notify_one();
                Ok(SubscriptionInfo { subscription_id, track_id, flow_id, ssrc })
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn set_preferences(
        &self,
        subscription_id: u64,
        preferred_layer: Option<u8>,
        max_height: Option<u32>,
    ) -> Result<(), ClientError> {
        self.request(ClientMessage::SetPreferences { subscription_id, preferred_layer, max_height }).await.map(drop)
    }

    /// Stop publishing a track (subscribers are told it is gone).
    pub async fn unpublish(&self, track: &PublishedTrack) -> Result<(), ClientError> {
        let result = self.request(ClientMessage::Unpublish { track_id: track.track_id }).await.map(drop);
        let mut shared = self.shared.lock().expect("client state lock");
        for f in &track.flows {
            shared.remove_publish_flow(f.flow_id);
        }
        result
    }

    pub async fn unsubscribe(&self, subscription_id: u64) -> Result<(), ClientError> {
        self.request(ClientMessage::Unsubscribe { subscription_id }).await.map(drop)
    }

    /// Ask for a keyframe on a subscription (PLI).
    pub fn request_keyframe(&self, sub: &SubscriptionInfo) -> Result<(), ClientError> {
        let mut buf = Vec::new();
        rtcp::write_pli(&mut buf, 1, sub.ssrc);
        self.send_on_flow(sub.flow_id, &buf)
    }

    /// NACK `seqs` on a subscription by hand (the client's own loss detection NACKs by itself;
    /// this is for tests of how the server answers, and of what it refuses).
    pub fn send_nack(&self, sub: &SubscriptionInfo, seqs: &[u16]) -> Result<(), ClientError> {
        let mut buf = Vec::new();
        rtcp::write_nack(&mut buf, 1, sub.ssrc, seqs);
        self.send_on_flow(sub.flow_id, &buf)
    }

    /// Pretend the next `count` RTP packets of a subscription were lost on the way (tests).
    pub fn drop_incoming(&self, subscription_id: u64, count: u32) {
        self.shared.lock().expect("client state lock").drop_incoming(subscription_id, count);
    }

    /// The next event, or `None` after the connection closed and all events were read.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next event within `limit`.
    pub async fn next_event_timeout(&mut self, limit: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(limit, self.events.recv()).await.ok().flatten()
    }

    /// How many NACKed sequence numbers this client sent, and retransmissions it answered.
    pub fn nack_stats(&self) -> (u64, u64) {
        let s = self.shared.lock().expect("client state lock");
        (s.nacks_sent, s.retransmissions_sent)
    }

    /// RTCP reports received: (sender reports on subscriptions, receiver reports on published
    /// flows).
    pub fn report_stats(&self) -> (u64, u64) {
        let s = self.shared.lock().expect("client state lock");
        (s.sender_reports, s.receiver_reports)
    }

    /// The latest sender report on a subscription: (NTP time, RTP timestamp), which says what
    /// wallclock the stream's timestamps stand for (lip sync between a participant's streams).
    pub fn last_sender_report(&self, subscription_id: u64) -> Option<(u64, u32)> {
        self.shared.lock().expect("client state lock").last_sender_report.get(&subscription_id).copied()
    }

    /// The QUIC path's round-trip time.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Leave the call; the connection stays open (and registered).
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.request(ClientMessage::Leave {}).await.map(drop)
    }

    /// Close the connection without leaving first.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        for t in &self.tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Vanish, as a client whose network went away: from now on nothing this client sends
    /// reaches the network, not even the close that dropping it sends. The server notices only
    /// when its idle timeout expires. For load tests and tests of that path.
    pub fn vanish(self) {
        self.socket.mute();
    }
}

/// Dropping a client closes its connection (without leaving first, like [`Client::close`]) and
/// stops its tasks. The tasks hold handles to the connection, so without this a dropped client
/// would stay connected, and keep answering keep-alives, until the process exits.
impl Drop for Client {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"dropped");
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn joined(msg: ServerMessage) -> Result<Joined, ClientError> {
    match msg {
        ServerMessage::Joined {
            participant_id,
            room,
            state,
            call_id,
            meeting_id,
            role,
            capabilities,
            participants,
            ..
        } => Ok(Joined { participant_id, room, state, call_id, meeting_id, role, capabilities, participants }),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

async fn read_signaling(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    pending: Pending,
    shared: Arc<Mutex<Shared>>,
    events: mpsc::Sender<ClientEvent>,
) {
    let reason = loop {
        let mut len = [0u8; 4];
        if let Err(e) = recv.read_exact(&mut len).await {
            break e.to_string();
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > 16 * 1024 * 1024 {
            break format!("server frame of {len} bytes");
        }
        let mut body = vec![0u8; len];
        if let Err(e) = recv.read_exact(&mut body).await {
            break e.to_string();
        }
        let msg: ServerMessage = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unparseable server message");
                continue;
            }
        };
        if let ServerMessage::TrackUnpublished { track_id, .. } = &msg {
            shared.lock().expect("client state lock").forget_track(*track_id);
        }
        let waiter = msg.response_id().and_then(|id| pending.lock().expect("pending map lock").remove(&id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(msg);
            }
            None => {
                let _ = events.send(ClientEvent::Signal(msg)).await;
            }
        }
    };
    pending.lock().expect("pending map lock").clear();
    // The connection's own close says more than the stream error ("connection lost").
    let reason = match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            format!("closed by the server: code {} ({})", c.error_code, String::from_utf8_lossy(&c.reason))
        }
        Some(other) => other.to_string(),
        None => reason,
    };
    let _ = events.send(ClientEvent::Closed { reason }).await;
}

async fn read_datagrams(conn: quinn::Connection, shared: Arc<Mutex<Shared>>, events: mpsc::Sender<ClientEvent>) {
    while let Ok(d) = conn.read_datagram().await {
        let outcome = shared.lock().expect("client state lock").on_datagram(d, std::time::Instant::now());
        for action in outcome {
            match action {
                shared::Action::Event(e) => {
                    if events.try_send(e).is_err() {
                        tracing::debug!("client event queue full; event dropped");
                    }
                }
                shared::Action::Send(bytes) => {
                    let _ = conn.send_datagram(bytes);
                }
            }
        }
    }
}

/// NACK missing packets of subscriptions every 10 ms.
/// Every 10 ms while something is subscribed, NACK what is missing. A client with no
/// subscription sleeps until one is added: a load tester holding 100,000 idle clients spent most
/// of its CPU waking each of them 100 times a second for nothing.
async fn send_nacks(conn: quinn::Connection, shared: Arc<Mutex<Shared>>, subscribed: Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !shared.lock().expect("client state lock").has_subscriptions() {
            subscribed.notified().await;
            tick.reset();
            continue;
        }
        tick.tick().await;
        let rtt = conn.rtt();
        let datagrams = shared.lock().expect("client state lock").poll_nacks(std::time::Instant::now(), rtt);
        for d in datagrams {
            let _ = conn.send_datagram(d);
        }
    }
}
