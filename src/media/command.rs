//! The closed set of messages between the control plane and the media workers, and between
//! workers. Every channel carrying them is bounded.

use super::ids::{RoomId, SessionId, SubscriptionId, TrackId};
use crate::sfu::packet::{Codec, MediaPacket};
use crate::sfu::simulcast::LayerWish;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use tokio::sync::mpsc;

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
    /// Close every session and stop.
    Shutdown,
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
    /// QUIC flow ID per layer.
    pub flows: Vec<u64>,
    pub audio_level_ext: Option<u8>,
}

/// What the subscriber's worker needs to forward a track to a session.
#[derive(Debug, Clone)]
pub struct SubscribeSpec {
    pub session: SessionId,
    pub subscription: SubscriptionId,
    pub track: TrackId,
    pub room: RoomId,
    pub codec: Codec,
    pub heights: Vec<u32>,
    pub flow: u64,
    pub ssrc: u32,
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
