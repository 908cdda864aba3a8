//! The closed set of messages between the control plane and the media workers, and between
//! workers. Every channel carrying them is bounded.

use super::ids::{RoomId, SessionId, SubscriptionId, TrackId};
use crate::sfu::packet::{Codec, MediaPacket};
use crate::sfu::simulcast::LayerWish;
use crate::signaling::messages::ServerMessage;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

/// Control plane → worker.
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
    /// A session on this worker publishes a track.
    Publish(PublishSpec),
    /// Drop a track on this worker: its origin state, mirror and local subscriptions.
    RemoveTrack {
        track: TrackId,
    },
    /// A session on this worker subscribes to a track (published on `origin`).
    Subscribe(SubscribeSpec),
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
    /// A WebSocket session will use WebRTC on this worker; worker events go to `inbox`.
    WebRtcOpen {
        session: SessionId,
        inbox: mpsc::Sender<SessionInput>,
    },
    /// The client's SDP offer; the reply carries the answer and the media it offers to send.
    WebRtcOffer {
        session: SessionId,
        sdp: String,
        reply: oneshot::Sender<Result<OfferAccepted, String>>,
    },
    /// The client's SDP answer to the server's last offer.
    WebRtcAnswer {
        session: SessionId,
        sdp: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Close every session and stop.
    Shutdown,
}

/// The outcome of a client's offer.
#[derive(Debug, Clone)]
pub struct OfferAccepted {
    pub answer: String,
    /// Media lines the client newly sends.
    pub media: Vec<OfferedMedia>,
}

/// A media line the client sends.
#[derive(Debug, Clone)]
pub struct OfferedMedia {
    pub mid: String,
    pub codec: Codec,
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
#[derive(Debug)]
pub enum SinkSpec {
    Quic {
        flow: u64,
        ssrc: u32,
    },
    /// WebRTC: the worker adds a send m-line and renegotiates (the track arrives with stream ID
    /// `t<trackId>`); the reply says whether that could start.
    WebRtc {
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What the origin worker needs to accept a published track.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub session: SessionId,
    pub room: RoomId,
    pub track: TrackId,
    pub codec: Codec,
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
    /// A message for the client originating in the worker (e.g. a renegotiation offer).
    Signal(ServerMessage),
    /// The signaling frame was malformed or too large; the worker counted it.
    Malformed { reason: String },
    /// The connection is gone.
    Closed { reason: String },
}

/// Worker → control plane.
#[derive(Debug)]
pub enum ControlEvent {
    /// A QUIC client connected; its signaling frames will arrive on `inbox`.
    SessionOpened { session: SessionId, worker: usize, remote: SocketAddr, inbox: mpsc::Receiver<SessionInput> },
    /// Smoothed loudness of audio tracks published on the worker.
    AudioLevels(Vec<(RoomId, TrackId, f32)>),
}
