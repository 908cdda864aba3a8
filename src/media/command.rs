//! The closed set of messages between the control plane and the media workers, and between
//! workers. Every channel carrying them is bounded.

use super::admission::Refusal;
use super::ids::{RoomId, SessionId, SubscriptionId, TrackId};
use crate::lean_queue;
use crate::rooms::{Capabilities, TrackSource};
use crate::sfu::packet::{Codec, MediaPacket};
use crate::sfu::simulcast::LayerWish;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// Control plane → worker. Commands that change state (admissions, bindings, subscriptions,
/// tracks) are sent with `WorkerHandle::send`, which waits for room in a full queue instead of
/// dropping them; a worker applies commands in the order they were queued.
#[derive(Debug)]
pub enum Command {
    /// Write one signaling frame (already length-prefixed) to a session's signaling stream.
    SendSignal {
        session: SessionId,
        frame: Bytes,
    },
    /// Close a session's connection with an application error code.
    CloseSession {
        session: SessionId,
        code: u32,
        reason: String,
    },
    /// What a session may do in its room (from its role). Narrower capabilities than before prune
    /// what it already has: publish bindings of sources it may no longer send, and (without
    /// `receive`) its subscriptions.
    Admit {
        session: SessionId,
        room: RoomId,
        caps: Capabilities,
        /// The member's role version these capabilities come from (a later one wins).
        version: u64,
    },
    /// The session left its room: forget its admission, its publish bindings and subscriptions.
    Dismiss {
        session: SessionId,
    },
    /// A session on this worker publishes a track (refused unless its admission allows it).
    Publish {
        spec: PublishSpec,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Drop a track on this worker: its origin state, mirror and local subscriptions.
    RemoveTrack {
        track: TrackId,
    },
    /// A session on this worker subscribes to a track (published on `origin`); refused unless
    /// its admission allows receiving in the track's room.
    Subscribe {
        spec: SubscribeSpec,
        reply: oneshot::Sender<Result<(), SubscribeRefusal>>,
    },
    Unsubscribe {
        session: SessionId,
        subscription: SubscriptionId,
        track: TrackId,
    },
    /// Change what a subscription wants.
    SetWish {
        track: TrackId,
        subscription: SubscriptionId,
        wish: LayerWish,
    },
    /// Stop (or resume) forwarding a track published on this worker (server-side mute).
    SetMuted {
        track: TrackId,
        muted: bool,
    },
    /// A WebSocket session will use WebRTC on this worker; worker events go to `inbox`. The reply
    /// is false when the worker is full (`max_sessions_per_worker`, QUIC and WebRTC sessions
    /// together) or stopping.
    WebRtcOpen {
        session: SessionId,
        inbox: lean_queue::Sender<SessionInput>,
        reply: oneshot::Sender<bool>,
    },
    /// The client's SDP offer; the reply carries the answer and the media it offers to send.
    /// Sending media lines the session's admission does not allow are answered `inactive`.
    WebRtcOffer {
        session: SessionId,
        sdp: String,
        /// What the client says each media line carries (by mid; default from the kind).
        sources: HashMap<String, TrackSource>,
        reply: oneshot::Sender<Result<OfferAccepted, String>>,
    },
    /// The client's SDP answer to the server's outstanding offer (`offer_id`: the one it
    /// answers, when the client says).
    WebRtcAnswer {
        session: SessionId,
        sdp: String,
        offer_id: Option<u64>,
        /// The ID of the offer answered.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// The client could not apply the server's offer `offer_id`: withdraw it, offer again later.
    WebRtcRejectOffer {
        session: SessionId,
        offer_id: u64,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Reply once every command queued before it has been applied (a barrier).
    Sync(oneshot::Sender<()>),
    /// Close every session and stop.
    Shutdown,
}

/// Why a subscription could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeRefusal {
    #[error(transparent)]
    Admission(#[from] Refusal),
    /// WebRTC: the send m-line could not be queued for negotiation.
    #[error("{0}")]
    Negotiation(String),
}

/// The outcome of a client's offer.
#[derive(Debug, Clone)]
pub struct OfferAccepted {
    pub answer: String,
    /// Media lines the client newly sends.
    pub media: Vec<OfferedMedia>,
    /// Sending media lines answered `inactive` because the session may not publish them.
    pub refused: Vec<String>,
    /// The server offer this client offer crossed and withdrew (glare), if any.
    pub withdrawn_offer: Option<u64>,
}

/// A media line the client sends.
#[derive(Debug, Clone)]
pub struct OfferedMedia {
    pub mid: String,
    pub codec: Codec,
    pub source: TrackSource,
    /// Simulcast rids in the order offered (empty without simulcast).
    pub rids: Vec<String>,
}

/// Where a published track's RTP comes from.
#[derive(Debug, Clone)]
pub enum PublishIngress {
    /// QUIC: one flow ID per layer.
    Quic { flows: Vec<u64> },
    /// WebRTC: a media line, with one rid per layer (or none).
    WebRtc { mid: String, rids: Vec<String> },
}

/// How a subscription reaches its session.
#[derive(Debug, Clone, Copy)]
pub enum SinkSpec {
    Quic {
        flow: u64,
        ssrc: u32,
    },
    /// WebRTC: the worker adds a send m-line and renegotiates (the track arrives with stream ID
    /// `t<trackId>`).
    WebRtc,
}

/// What the origin worker needs to accept a published track.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub session: SessionId,
    pub room: RoomId,
    pub track: TrackId,
    pub codec: Codec,
    pub source: TrackSource,
    /// Height per layer, lowest first (0 when unknown); one entry without simulcast.
    pub heights: Vec<u32>,
    pub ingress: PublishIngress,
    pub audio_level_ext: Option<u8>,
}

/// What the subscriber's worker needs to forward a track to a session.
#[derive(Debug)]
pub struct SubscribeSpec {
    pub session: SessionId,
    pub subscription: SubscriptionId,
    pub track: TrackId,
    pub room: RoomId,
    pub codec: Codec,
    pub heights: Vec<u32>,
    pub sink: SinkSpec,
    pub wish: LayerWish,
    /// The worker where the publisher is.
    pub origin: usize,
}

/// Worker → worker.
#[derive(Debug)]
pub enum PeerMsg {
    /// Packets of tracks whose origin is the sending worker, for local subscribers.
    Media(Vec<(TrackId, u8, MediaPacket)>),
    /// A subscriber on the sending worker needs a keyframe of this layer.
    KeyframeRequest {
        track: TrackId,
        layer: u8,
    },
    /// The origin put a browser-published track's simulcast layers in order: layer `order[i]`
    /// is now layer `i` (`TrackForwarder::reorder_layers`).
    ReorderLayers {
        track: TrackId,
        order: Vec<usize>,
    },
    /// A publisher's sender report on a layer of a track the sending worker is the origin of.
    SenderClock {
        track: TrackId,
        layer: u8,
        clock: crate::sfu::forwarder::SenderClock,
    },
    /// The sending worker has (or no longer has) subscribers of this track.
    AttachSink {
        track: TrackId,
        worker: usize,
    },
    DetachSink {
        track: TrackId,
        worker: usize,
    },
    /// A QUIC datagram that arrived on the wrong worker's socket (its connection lives here).
    QuicDatagram {
        from: SocketAddr,
        data: BytesMut,
    },
}

/// Worker → the control-plane task of one session.
#[derive(Debug)]
pub enum SessionInput {
    /// One complete signaling frame (without its length prefix).
    Frame(Bytes),
    /// The layer forwarded on a subscription changed.
    LayerChanged { subscription: SubscriptionId, layer: u8 },
    /// WebRTC: the worker's SDP offer `offer_id` (subscriptions or directions changed) for the
    /// peer of the session's call in `room`; the client answers. An offer not answered in time is
    /// sent again with the same ID.
    Offer { sdp: String, room: RoomId, offer_id: u64 },
    /// The signaling frame was malformed or too large; the worker counted it.
    Malformed { reason: String },
    /// The connection is gone.
    Closed { reason: String },
}

/// Worker → control plane.
#[derive(Debug)]
pub enum ControlEvent {
    /// A QUIC client connected; its signaling frames will arrive on `inbox`.
    SessionOpened { session: SessionId, worker: usize, remote: SocketAddr, inbox: lean_queue::Receiver<SessionInput> },
    /// Smoothed loudness of audio tracks published on the worker.
    AudioLevels(Vec<(RoomId, TrackId, f32)>),
}
