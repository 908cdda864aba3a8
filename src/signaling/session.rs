//! `SessionHandler`: one client's signaling, whatever carries it. It verifies the join token,
//! joins the room, and turns publish/subscribe requests into room updates and worker commands.
//! Everything it says to the client goes through its outbox, in order.

use super::context::{SignalingContext, TokenBucket};
use super::messages::{CallState, ClientEnvelope, ClientMessage, ErrorCode, LayerFlow, ServerMessage, parse_client};
use crate::auth::Action;
use crate::identity::{IdentityEvent, IdentityId};
use crate::media::command::{Command, PublishIngress, PublishSpec, SinkSpec, SubscribeSpec};
use crate::media::ids::{ParticipantId, SessionId, SubscriptionId, TrackId};
use crate::rooms::{JoinRequest, PublishRequest, Room, RoomError, RoomKey};
use crate::sfu::simulcast::{LayerWish, MAX_LAYERS};
use crate::signaling::messages::LayerRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// How the session's media travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC datagrams on the session's connection (flows).
    Quic,
    /// WebRTC negotiated over the session's WebSocket.
    WebRtc,
}

/// Why the handler wants the session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u32,
    pub reason: String,
}

struct Joined {
    room: Arc<Room>,
    participant: ParticipantId,
    identity: IdentityId,
    generation: u32,
    subscriptions: HashMap<SubscriptionId, TrackId>,
}

/// The signaling state machine of one session.
pub struct SessionHandler {
    ctx: Arc<SignalingContext>,
    session: SessionId,
    worker: usize,
    remote: SocketAddr,
    outbox: mpsc::Sender<ServerMessage>,
    transport: Transport,
    joined: Option<Joined>,
    next_flow: u64,
    bucket: TokenBucket,
}

impl SessionHandler {
    pub fn new(
        ctx: Arc<SignalingContext>,
        session: SessionId,
        worker: usize,
        remote: SocketAddr,
        outbox: mpsc::Sender<ServerMessage>,
        transport: Transport,
    ) -> Self {
        let bucket = TokenBucket::new(ctx.messages_per_second, Instant::now());
        Self { ctx, session, worker, remote, outbox, transport, joined: None, next_flow: 0, bucket }
    }

    /// Queue a message for the client. A client that does not read its messages is dropped.
    pub fn send(&self, msg: ServerMessage) {
        if self.outbox.try_send(msg).is_err() {
            tracing::debug!(session = %self.session, "outbox full; message dropped");
        }
    }

    fn count(&self, result: &str) {
        self.ctx.messages.with_label_values(&[result]).inc();
    }

    /// Handle one raw message. Returns a close request when the session must end.
    pub async fn on_frame(&mut self, bytes: &[u8]) -> Option<CloseRequest> {
        if !self.bucket.take(Instant::now()) {
            self.count("rate_limited");
            self.send(ServerMessage::error(None, ErrorCode::RateLimited, "too many messages"));
            return None;
        }
        let envelope = match parse_client(bytes) {
            Ok(e) => e,
            Err(e) => {
                self.count("malformed");
                self.send(ServerMessage::error(None, ErrorCode::BadRequest, format!("malformed message: {e}")));
                return None;
            }
        };
        self.count("ok");
        self.on_message(envelope).await
    }

    async fn on_message(&mut self, ClientEnvelope { id, message }: ClientEnvelope) -> Option<CloseRequest> {
        // `Ok(None)`: the handler already sent its messages (in order).
        let result = match message {
            ClientMessage::Join { token, group_id, display_name } => {
                self.join(id, &token, group_id, display_name).map(Some)
            }
            ClientMessage::Ping {} => Ok(Some(ServerMessage::Pong { id })),
            _ if self.joined.is_none() => Err((ErrorCode::NotJoined, "join first".to_owned())),
            ClientMessage::Offer { sdp } => self.offer(id, sdp).await,
            ClientMessage::Answer { sdp } => self.answer(id, sdp).await.map(Some),
            ClientMessage::Candidate { .. } => Ok(Some(ServerMessage::Ok { id })),
            ClientMessage::Subscribe { track_id, preferred_layer, max_height } => {
                self.subscribe(id, track_id, LayerWish { max_layer: preferred_layer, max_height }).await.map(Some)
            }
            other => self.on_joined_message(id, other).map(Some),
        };
        match result {
            Ok(None) => None,
            Ok(Some(msg)) => {
                let leaving = matches!(msg, ServerMessage::CallStateChanged { state: CallState::Disconnected, .. });
                self.send(msg);
                leaving.then(|| CloseRequest { code: crate::media::quic::close_code::NORMAL, reason: "left".into() })
            }
            Err((code, message)) => {
                self.send(ServerMessage::error(id, code, message));
                None
            }
        }
    }

    fn join(
        &mut self,
        id: Option<u64>,
        token: &str,
        group_id: Option<String>,
        display_name: Option<String>,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        if self.joined.is_some() {
            return Err((ErrorCode::AlreadyJoined, "this session already joined a call".into()));
        }
        let now = Instant::now();
        if !self.ctx.join_limiter.allow(self.remote.ip(), now) {
            self.ctx.rooms.count_join_failure("rate_limited");
            return Err((ErrorCode::RateLimited, "too many join attempts from this address".into()));
        }
        let key = match group_id.as_deref().map(uuid::Uuid::parse_str) {
            Some(Ok(g)) => RoomKey::Group(g),
            Some(Err(_)) => {
                self.ctx.rooms.count_join_failure("bad_request");
                return Err((ErrorCode::BadRequest, "groupId must be a UUID".into()));
            }
            None => {
                self.ctx.rooms.count_join_failure("bad_request");
                return Err((ErrorCode::BadRequest, "join needs a locator: groupId".into()));
            }
        };
        let verified = match self.ctx.verifier.verify(token, Action::JoinCall, unix_now()) {
            Ok(v) => v,
            Err(e) => {
                self.ctx.rooms.count_join_failure(e.reason());
                return Err((ErrorCode::from_token_error(&e), e.to_string()));
            }
        };
        let request = JoinRequest {
            identity: verified.raw_id.clone(),
            display_name,
            can_create: verified.scopes.allows(Action::StartCall),
            session: self.session,
            worker: self.worker,
            outbox: self.outbox.clone(),
        };
        let room_name = key.to_string();
        let (room, participant, participants) = self.ctx.rooms.join(key, request).map_err(|e| room_error(&e))?;
        tracing::info!(session = %self.session, %participant, room = %room_name, "joined");
        self.joined = Some(Joined {
            room,
            participant,
            identity: verified.identity,
            generation: verified.generation,
            subscriptions: HashMap::new(),
        });
        Ok(ServerMessage::Joined {
            id,
            participant_id: participant.0,
            room: room_name,
            state: CallState::Connected,
            participants,
        })
    }

    fn on_joined_message(
        &mut self,
        id: Option<u64>,
        message: ClientMessage,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        let limits = self.ctx.rooms.limits();
        let worker = self.worker;
        let session = self.session;
        let joined = self.joined.as_mut().expect("on_joined_message is only called after a join");
        match message {
            ClientMessage::Publish { kind, codec, layers, audio_level_ext_id } => {
                if self.transport == Transport::WebRtc {
                    return Err((ErrorCode::BadRequest, "over WebRTC, publish by sending an SDP offer".into()));
                }
                if codec.kind() != kind {
                    return Err((ErrorCode::BadRequest, format!("codec {codec:?} is not {kind:?}")));
                }
                if layers.len() > MAX_LAYERS || (kind == crate::sfu::packet::MediaKind::Audio && layers.len() > 1) {
                    return Err((
                        ErrorCode::BadRequest,
                        format!("at most {MAX_LAYERS} video layers and 1 audio layer"),
                    ));
                }
                let entry = joined
                    .room
                    .publish(joined.participant, PublishRequest { kind, codec, layers: layers.clone() }, limits)
                    .map_err(|e| room_error(&e))?;
                let count = layers.len().max(1);
                let flows: Vec<u64> = (0..count)
                    .map(|_| {
                        self.next_flow += 1;
                        self.next_flow
                    })
                    .collect();
                let spec = PublishSpec {
                    session,
                    room: joined.room.id,
                    track: entry.id,
                    codec,
                    heights: entry.heights(),
                    ingress: PublishIngress::Quic { flows: flows.clone() },
                    audio_level_ext: Some(audio_level_ext_id.unwrap_or(1)),
                };
                command(&self.ctx, worker, Command::Publish(spec))?;
                let flows = flows
                    .into_iter()
                    .enumerate()
                    .map(|(i, flow_id)| LayerFlow {
                        layer: i as u8,
                        rid: layers.get(i).and_then(|l| l.rid.clone()),
                        flow_id,
                    })
                    .collect();
                Ok(ServerMessage::Published {
                    id,
                    track_id: entry.id.0,
                    flows,
                    mid: None,
                    kind: Some(kind),
                    codec: Some(codec),
                })
            }
            ClientMessage::Unpublish { track_id } => {
                joined.room.unpublish(joined.participant, TrackId(track_id)).map_err(|e| room_error(&e))?;
                self.remove_track_everywhere(TrackId(track_id));
                Ok(ServerMessage::Ok { id })
            }
            ClientMessage::Unsubscribe { subscription_id } => {
                let subscription = SubscriptionId(subscription_id);
                let track = joined
                    .subscriptions
                    .remove(&subscription)
                    .ok_or((ErrorCode::SubscriptionNotFound, format!("no subscription {subscription_id}")))?;
                command(&self.ctx, worker, Command::Unsubscribe { session, subscription, track })?;
                Ok(ServerMessage::Ok { id })
            }
            ClientMessage::SetPreferences { subscription_id, preferred_layer, max_height } => {
                let subscription = SubscriptionId(subscription_id);
                let track = *joined
                    .subscriptions
                    .get(&subscription)
                    .ok_or((ErrorCode::SubscriptionNotFound, format!("no subscription {subscription_id}")))?;
                let wish = LayerWish { max_layer: preferred_layer, max_height };
                command(&self.ctx, worker, Command::SetWish { track, subscription, wish })?;
                Ok(ServerMessage::Ok { id })
            }
            ClientMessage::Mute { track_id, muted } => {
                joined.room.set_muted(joined.participant, TrackId(track_id), muted).map_err(|e| room_error(&e))?;
                Ok(ServerMessage::Ok { id })
            }
            ClientMessage::Leave {} => {
                self.leave("left");
                Ok(ServerMessage::CallStateChanged {
                    state: CallState::Disconnected,
                    code: None,
                    reason: Some("left".into()),
                })
            }
            ClientMessage::Join { .. }
            | ClientMessage::Ping {}
            | ClientMessage::Subscribe { .. }
            | ClientMessage::Offer { .. }
            | ClientMessage::Answer { .. }
            | ClientMessage::Candidate { .. } => {
                unreachable!("handled in on_message before on_joined_message")
            }
        }
    }

    async fn subscribe(
        &mut self,
        id: Option<u64>,
        track_id: u64,
        wish: LayerWish,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        let worker = self.worker;
        let session = self.session;
        let joined = self.joined.as_mut().expect("subscribe is only handled after a join");
        let track = joined
            .room
            .track(TrackId(track_id))
            .ok_or((ErrorCode::TrackNotFound, format!("no track {track_id} in this call")))?;
        let subscription = SubscriptionId::next();
        let (sink, flow, ssrc, reply) = match self.transport {
            Transport::Quic => {
                self.next_flow += 1;
                let mut ssrc = [0u8; 4];
                let _ = aws_lc_rs::rand::fill(&mut ssrc);
                let ssrc = u32::from_be_bytes(ssrc);
                (SinkSpec::Quic { flow: self.next_flow, ssrc }, Some(self.next_flow), Some(ssrc), None)
            }
            Transport::WebRtc => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (SinkSpec::WebRtc { reply: tx }, None, None, Some(rx))
            }
        };
        let spec = SubscribeSpec {
            session,
            subscription,
            track: track.id,
            room: joined.room.id,
            codec: track.codec,
            heights: track.heights(),
            sink,
            wish,
            origin: track.worker,
        };
        command(&self.ctx, worker, Command::Subscribe(spec))?;
        if let Some(rx) = reply {
            rx.await
                .map_err(|_| (ErrorCode::ServiceUnavailable, "media worker did not answer".to_owned()))?
                .map_err(|e| (ErrorCode::BadRequest, e))?;
        }
        joined.subscriptions.insert(subscription, track.id);
        Ok(ServerMessage::Subscribed {
            id,
            subscription_id: subscription.0,
            track_id,
            kind: track.kind,
            codec: track.codec,
            flow_id: flow,
            ssrc,
            stream_id: (self.transport == Transport::WebRtc).then(|| format!("t{track_id}")),
        })
    }

    /// A WebRTC offer: accept it on the worker, publish what it sends, answer.
    async fn offer(&mut self, id: Option<u64>, sdp: String) -> Result<Option<ServerMessage>, (ErrorCode, String)> {
        if self.transport != Transport::WebRtc {
            return Err((ErrorCode::BadRequest, "SDP offers are for WebRTC sessions (wss://HOST/signal)".into()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        command(&self.ctx, self.worker, Command::WebRtcOffer { session: self.session, sdp, reply: tx })?;
        let accepted = rx
            .await
            .map_err(|_| (ErrorCode::ServiceUnavailable, "media worker did not answer".to_owned()))?
            .map_err(|e| (ErrorCode::BadRequest, e))?;
        let limits = self.ctx.rooms.limits();
        let joined = self.joined.as_ref().expect("offer is only handled after a join");
        let mut published = Vec::new();
        for m in accepted.media {
            let kind = m.codec.kind();
            let layers: Vec<LayerRequest> =
                m.rids.iter().map(|r| LayerRequest { rid: Some(r.clone()), ..LayerRequest::default() }).collect();
            let entry = match joined.room.publish(
                joined.participant,
                PublishRequest { kind, codec: m.codec, layers },
                limits,
            ) {
                Ok(e) => e,
                Err(e) => {
                    self.send(ServerMessage::error(
                        None,
                        room_error(&e).0,
                        format!("media {} not published: {e}", m.mid),
                    ));
                    continue;
                }
            };
            let spec = PublishSpec {
                session: self.session,
                room: joined.room.id,
                track: entry.id,
                codec: m.codec,
                heights: entry.heights(),
                ingress: PublishIngress::WebRtc { mid: m.mid.clone(), rids: m.rids },
                audio_level_ext: None,
            };
            command(&self.ctx, self.worker, Command::Publish(spec))?;
            published.push(ServerMessage::Published {
                id: None,
                track_id: entry.id.0,
                flows: Vec::new(),
                mid: Some(m.mid),
                kind: Some(kind),
                codec: Some(m.codec),
            });
        }
        // The answer responds to the offer; the tracks it published follow as events.
        self.send(ServerMessage::Answer { id, sdp: accepted.answer });
        for p in published {
            self.send(p);
        }
        Ok(None)
    }

    /// A WebRTC answer to the server's offer.
    async fn answer(&mut self, id: Option<u64>, sdp: String) -> Result<ServerMessage, (ErrorCode, String)> {
        if self.transport != Transport::WebRtc {
            return Err((ErrorCode::BadRequest, "SDP answers are for WebRTC sessions".into()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        command(&self.ctx, self.worker, Command::WebRtcAnswer { session: self.session, sdp, reply: tx })?;
        rx.await
            .map_err(|_| (ErrorCode::ServiceUnavailable, "media worker did not answer".to_owned()))?
            .map_err(|e| (ErrorCode::BadRequest, e))?;
        Ok(ServerMessage::Ok { id })
    }

    /// Keep local state in step with what the room tells the client.
    pub fn observe_outgoing(&mut self, msg: &ServerMessage) {
        if let (ServerMessage::TrackUnpublished { track_id, .. }, Some(j)) = (msg, self.joined.as_mut()) {
            j.subscriptions.retain(|_, t| t.0 != *track_id);
        }
    }

    /// Whether an identity event ends this session (its token was revoked or its identity
    /// deleted).
    pub fn revoked_by(&self, event: &IdentityEvent) -> bool {
        let Some(j) = &self.joined else { return false };
        match event {
            IdentityEvent::Deleted { id } => *id == j.identity,
            IdentityEvent::TokensRevoked { id, generation } => *id == j.identity && *generation > j.generation,
        }
    }

    /// After missing identity events: check the token generation directly.
    pub fn revoked_now(&self) -> bool {
        let Some(j) = &self.joined else { return false };
        !matches!(self.ctx.directory.current_generation(j.identity), Ok(Some(g)) if g <= j.generation)
    }

    fn remove_track_everywhere(&self, track: TrackId) {
        for w in &self.ctx.workers {
            if w.commands.try_send(Command::RemoveTrack { track }).is_err() {
                tracing::warn!(worker = w.index, %track, "worker queue full; track removal dropped");
            }
        }
    }

    /// Leave the room (if joined): tell the others, drop published tracks and subscriptions.
    pub fn leave(&mut self, reason: &str) {
        let Some(j) = self.joined.take() else { return };
        let removed = self.ctx.rooms.leave(&j.room, j.participant, reason);
        for track in removed {
            self.remove_track_everywhere(track);
        }
        for (subscription, track) in j.subscriptions {
            let _ = self.ctx.workers[self.worker].commands.try_send(Command::Unsubscribe {
                session: self.session,
                subscription,
                track,
            });
        }
    }
}

fn command(ctx: &SignalingContext, worker: usize, cmd: Command) -> Result<(), (ErrorCode, String)> {
    ctx.workers[worker]
        .commands
        .try_send(cmd)
        .map_err(|_| (ErrorCode::ServiceUnavailable, "media worker overloaded".to_owned()))
}

fn room_error(e: &RoomError) -> (ErrorCode, String) {
    let code = match e {
        RoomError::NotFound => ErrorCode::CallNotFound,
        RoomError::RoomFull => ErrorCode::RoomFull,
        RoomError::TooManyRooms | RoomError::TooManyTracks | RoomError::TooManyPublishers => ErrorCode::LimitExceeded,
        RoomError::NotAllowed => ErrorCode::NotAllowed,
        RoomError::TrackNotFound => ErrorCode::TrackNotFound,
        RoomError::Closed => ErrorCode::ServiceUnavailable,
    };
    (code, e.to_string())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
