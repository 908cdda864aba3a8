//! Media requests of a joined session: publish and unpublish (QUIC `publish`, WebRTC offers),
//! subscribe, preferences, unsubscribe, mute. The room checks the member's role; the worker
//! checks its admission set before it creates any binding, and answers whether it did.

use super::messages::{ErrorCode, LayerFlow, LayerRequest, ServerMessage};
use super::session::{Failure, Joined, SessionHandler, Transport, room_failure, unavailable};
use crate::media::admission::Refusal;
use crate::media::command::{Command, PublishIngress, PublishSpec, SinkSpec, SubscribeRefusal, SubscribeSpec};
use crate::media::ids::{RoomId, SubscriptionId, TrackId};
use crate::rooms::{Audience, PublishRequest, TrackSource};
use crate::sfu::packet::{Codec, MediaKind};
use crate::sfu::simulcast::{LayerWish, MAX_LAYERS};
use std::collections::HashMap;
use std::sync::Arc;

/// A QUIC `publish` request's fields.
pub(super) struct QuicPublish {
    pub kind: MediaKind,
    pub codec: Codec,
    pub layers: Vec<LayerRequest>,
    pub audio_level_ext_id: Option<u8>,
    pub source: Option<TrackSource>,
    pub audience: Option<Vec<String>>,
}

/// At most this many identities in a track's `audience`.
pub const MAX_AUDIENCE: usize = 64;
/// At most this many bytes per raw ID in an `audience`.
pub const MAX_RAW_ID_LEN: usize = 256;

/// An `audience` as the room keeps it: 1 to `MAX_AUDIENCE` raw IDs of 1 to `MAX_RAW_ID_LEN`
/// bytes (an ID that names no one is harmless: nobody with it is told).
fn check_audience(raw_ids: Vec<String>) -> Result<Audience, Failure> {
    if raw_ids.is_empty() || raw_ids.len() > MAX_AUDIENCE {
        return Err((ErrorCode::BadRequest, format!("audience must list 1 to {MAX_AUDIENCE} raw IDs")));
    }
    if raw_ids.iter().any(|r| r.is_empty() || r.len() > MAX_RAW_ID_LEN) {
        return Err((ErrorCode::BadRequest, format!("an audience raw ID must be 1 to {MAX_RAW_ID_LEN} bytes")));
    }
    Ok(raw_ids.into_iter().map(Arc::from).collect())
}

impl SessionHandler {
    pub(super) fn joined(&self) -> Result<&Joined, Failure> {
        self.joined.as_ref().ok_or((ErrorCode::NotJoined, "join a call first".to_owned()))
    }

    pub(super) async fn publish(&mut self, id: Option<u64>, request: QuicPublish) -> Result<ServerMessage, Failure> {
        let QuicPublish { kind, codec, layers, audio_level_ext_id, source, audience } = request;
        if self.transport == Transport::WebRtc {
            return Err((ErrorCode::BadRequest, "over WebRTC, publish by sending an SDP offer".into()));
        }
        if codec.kind() != kind {
            return Err((ErrorCode::BadRequest, format!("codec {codec:?} is not {kind:?}")));
        }
        if layers.len() > MAX_LAYERS || (kind == MediaKind::Audio && layers.len() > 1) {
            return Err((ErrorCode::BadRequest, format!("at most {MAX_LAYERS} video layers and 1 audio layer")));
        }
        check_rids(layers.iter().filter_map(|l| l.rid.as_deref()))?;
        let audience = audience.map(check_audience).transpose()?;
        let source = source.unwrap_or_else(|| TrackSource::default_for(kind));
        if !source.fits(kind) {
            return Err((ErrorCode::BadRequest, format!("a {kind:?} track cannot have source {source:?}")));
        }
        let count = layers.len().max(1);
        let flows: Vec<u64> = (0..count)
            .map(|_| {
                self.next_flow += 1;
                self.next_flow
            })
            .collect();
        let j = self.joined()?;
        let request = PublishRequest { kind, codec, source, layers: layers.clone(), audience };
        let entry = j.room.publish(j.participant, request, self.ctx.rooms.limits()).map_err(|e| room_failure(&e))?;
        let spec = PublishSpec {
            session: self.session,
            room: j.room.id,
            track: entry.id,
            codec,
            source,
            heights: entry.heights(),
            ingress: PublishIngress::Quic { flows: flows.clone() },
            audio_level_ext: Some(audio_level_ext_id.unwrap_or(1)),
        };
        self.bind_published(spec).await?;
        let flows = flows
            .into_iter()
            .enumerate()
            .map(|(i, flow_id)| LayerFlow { layer: i as u8, rid: layers.get(i).and_then(|l| l.rid.clone()), flow_id })
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

    /// Ask the worker to bind a track the room accepted; undo the room's entry when it refuses.
    async fn bind_published(&mut self, spec: PublishSpec) -> Result<(), Failure> {
        let track = spec.track;
        let result = self.ctx.workers[self.worker].request(|reply| Command::Publish { spec, reply }).await;
        let refusal = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(refusal)) => refusal,
            Err(_) => Refusal::NoSession,
        };
        if let Ok(j) = self.joined() {
            let _ = j.room.unpublish(j.participant, track);
        }
        let _ = self.ctx.live.remove_track_everywhere(track).await;
        Err(refusal_failure(refusal))
    }

    pub(super) async fn unpublish(&mut self, id: Option<u64>, track_id: u64) -> Result<ServerMessage, Failure> {
        let j = self.joined()?;
        j.room.unpublish(j.participant, TrackId(track_id)).map_err(|e| room_failure(&e))?;
        self.ctx.live.remove_track_everywhere(TrackId(track_id)).await.map_err(|_| unavailable())?;
        Ok(ServerMessage::Ok { id })
    }

    pub(super) async fn subscribe(
        &mut self,
        id: Option<u64>,
        track_id: u64,
        preferred_layer: Option<u8>,
        max_height: Option<u32>,
    ) -> Result<ServerMessage, Failure> {
        let j = self.joined()?;
        if !j.caps.receive {
            return Err((ErrorCode::NotAllowed, "this participant's role does not receive media".into()));
        }
        let track = j
            .room
            .track_for(TrackId(track_id), j.participant)
            .ok_or((ErrorCode::TrackNotFound, format!("no track {track_id} in this call")))?;
        let subscription = SubscriptionId::next();
        let (sink, flow, ssrc) = match self.transport {
            Transport::Quic => {
                self.next_flow += 1;
                let mut ssrc = [0u8; 4];
                // A failed fill leaves zeros: a valid, merely predictable SSRC.
                let _ = aws_lc_rs::rand::fill(&mut ssrc);
                let ssrc = u32::from_be_bytes(ssrc);
                (SinkSpec::Quic { flow: self.next_flow, ssrc }, Some(self.next_flow), Some(ssrc))
            }
            Transport::WebRtc => (SinkSpec::WebRtc, None, None),
        };
        let j = self.joined()?;
        let spec = SubscribeSpec {
            session: self.session,
            subscription,
            track: track.id,
            room: j.room.id,
            codec: track.codec,
            heights: track.heights(),
            sink,
            wish: LayerWish { max_layer: preferred_layer, max_height },
            origin: track.worker,
        };
        match self.ctx.workers[self.worker].request(|reply| Command::Subscribe { spec, reply }).await {
            Ok(Ok(())) => {}
            Ok(Err(SubscribeRefusal::Admission(r))) => return Err(refusal_failure(r)),
            Ok(Err(SubscribeRefusal::Negotiation(e))) => return Err((ErrorCode::BadRequest, e)),
            Err(_) => return Err(unavailable()),
        }
        if let Some(j) = self.joined.as_mut() {
            j.subscriptions.insert(subscription, track.id);
        }
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

    pub(super) async fn unsubscribe(
        &mut self,
        id: Option<u64>,
        subscription_id: u64,
    ) -> Result<ServerMessage, Failure> {
        let subscription = SubscriptionId(subscription_id);
        let track = self
            .joined
            .as_mut()
            .and_then(|j| j.subscriptions.remove(&subscription))
            .ok_or((ErrorCode::SubscriptionNotFound, format!("no subscription {subscription_id}")))?;
        let cmd = Command::Unsubscribe { session: self.session, subscription, track };
        self.ctx.workers[self.worker].send(cmd).await.map_err(|_| unavailable())?;
        Ok(ServerMessage::Ok { id })
    }

    pub(super) async fn set_preferences(
        &mut self,
        id: Option<u64>,
        subscription_id: u64,
        preferred_layer: Option<u8>,
        max_height: Option<u32>,
    ) -> Result<ServerMessage, Failure> {
        let subscription = SubscriptionId(subscription_id);
        let track = *self
            .joined()?
            .subscriptions
            .get(&subscription)
            .ok_or((ErrorCode::SubscriptionNotFound, format!("no subscription {subscription_id}")))?;
        let wish = LayerWish { max_layer: preferred_layer, max_height };
        self.ctx.workers[self.worker]
            .send(Command::SetWish { track, subscription, wish })
            .await
            .map_err(|_| unavailable())?;
        Ok(ServerMessage::Ok { id })
    }

    /// Mute or unmute one of this participant's tracks: everyone is told, and its worker stops
    /// (or resumes) forwarding it.
    pub(super) async fn mute(&mut self, id: Option<u64>, track_id: u64, muted: bool) -> Result<ServerMessage, Failure> {
        let j = self.joined()?;
        let entry = j.room.set_muted(j.participant, TrackId(track_id), muted).map_err(|e| room_failure(&e))?;
        self.ctx.workers[entry.worker]
            .send(Command::SetMuted { track: entry.id, muted })
            .await
            .map_err(|_| unavailable())?;
        Ok(ServerMessage::Ok { id })
    }

    /// A WebRTC offer: accept it on the worker (lines the role may not send are answered
    /// `inactive`), publish what it newly sends, answer.
    pub(super) async fn offer(
        &mut self,
        id: Option<u64>,
        sdp: String,
        sources: HashMap<String, TrackSource>,
    ) -> Result<(), Failure> {
        if self.transport != Transport::WebRtc {
            return Err((ErrorCode::BadRequest, "SDP offers are for WebRTC sessions (wss://HOST/signal)".into()));
        }
        let session = self.session;
        let accepted = self.ctx.workers[self.worker]
            .request(|reply| Command::WebRtcOffer { session, sdp, sources, reply })
            .await
            .map_err(|_| unavailable())?
            .map_err(|e| (ErrorCode::BadRequest, e))?;
        // The answer responds to the offer; refusals and the tracks it published follow as events.
        // An offer this one withdrew may still be on its way here: it is dropped, not sent after
        // the answer (where a client following the glare rule would apply it).
        if let Some(withdrawn) = accepted.withdrawn_offer {
            self.settled_offer = self.settled_offer.max(withdrawn);
        }
        self.send(ServerMessage::Answer { id, sdp: accepted.answer });
        for mid in accepted.refused {
            self.send(ServerMessage::error(
                None,
                ErrorCode::NotAllowed,
                format!("media {mid} not published: this participant's role does not allow it (answered inactive)"),
            ));
        }
        for m in accepted.media {
            if let Err((code, reason)) = check_rids(m.rids.iter().map(String::as_str)) {
                self.send(ServerMessage::error(None, code, format!("media {} not published: {reason}", m.mid)));
                continue;
            }
            let kind = m.codec.kind();
            let layers: Vec<LayerRequest> =
                m.rids.iter().map(|r| LayerRequest { rid: Some(r.clone()), ..LayerRequest::default() }).collect();
            let j = self.joined()?;
            let request = PublishRequest { kind, codec: m.codec, source: m.source, layers, audience: None };
            let entry = match j.room.publish(j.participant, request, self.ctx.rooms.limits()) {
                Ok(e) => e,
                Err(e) => {
                    self.send(ServerMessage::error(
                        None,
                        room_failure(&e).0,
                        format!("media {} not published: {e}", m.mid),
                    ));
                    continue;
                }
            };
            let spec = PublishSpec {
                session,
                room: j.room.id,
                track: entry.id,
                codec: m.codec,
                source: m.source,
                heights: entry.heights(),
                ingress: PublishIngress::WebRtc { mid: m.mid.clone(), rids: m.rids },
                audio_level_ext: None,
            };
            if let Err((code, message)) = self.bind_published(spec).await {
                self.send(ServerMessage::error(None, code, format!("media {} not published: {message}", m.mid)));
                continue;
            }
            self.send(ServerMessage::Published {
                id: None,
                track_id: entry.id.0,
                flows: Vec::new(),
                mid: Some(m.mid),
                kind: Some(kind),
                codec: Some(m.codec),
            });
        }
        Ok(())
    }

    /// The worker's offer for the peer of a call: passed on while this session is in that call.
    pub fn on_worker_offer(&mut self, sdp: String, room: RoomId, offer_id: u64) {
        if self.joined.as_ref().is_some_and(|j| j.room.id == room) && offer_id > self.settled_offer {
            self.send(ServerMessage::Offer { sdp, offer_id });
        }
    }

    /// A WebRTC answer to the server's offer.
    pub(super) async fn answer(
        &mut self,
        id: Option<u64>,
        sdp: String,
        offer_id: Option<u64>,
    ) -> Result<ServerMessage, Failure> {
        if self.transport != Transport::WebRtc {
            return Err((ErrorCode::BadRequest, "SDP answers are for WebRTC sessions".into()));
        }
        let session = self.session;
        let answered = self.ctx.workers[self.worker]
            .request(|reply| Command::WebRtcAnswer { session, sdp, offer_id, reply })
            .await
            .map_err(|_| unavailable())?
            .map_err(|e| (ErrorCode::BadRequest, e))?;
        self.settled_offer = self.settled_offer.max(answered);
        Ok(ServerMessage::Ok { id })
    }

    /// The client could not apply a server offer.
    pub(super) async fn reject_offer(
        &mut self,
        id: Option<u64>,
        offer_id: u64,
        reason: Option<String>,
    ) -> Result<ServerMessage, Failure> {
        if self.transport != Transport::WebRtc {
            return Err((ErrorCode::BadRequest, "offers are for WebRTC sessions".into()));
        }
        let reason = reason.unwrap_or_default();
        let reason = &reason[..reason.floor_char_boundary(256)];
        tracing::info!(session = ?self.session, offer_id, reason, "the client rejected an offer");
        let session = self.session;
        self.ctx.workers[self.worker]
            .request(|reply| Command::WebRtcRejectOffer { session, offer_id, reply })
            .await
            .map_err(|_| unavailable())?
            .map_err(|e| (ErrorCode::BadRequest, e))?;
        self.settled_offer = self.settled_offer.max(offer_id);
        Ok(ServerMessage::Ok { id })
    }
}

fn refusal_failure(r: Refusal) -> Failure {
    match r {
        Refusal::NoSession => (ErrorCode::ServiceUnavailable, r.to_string()),
        Refusal::NotAdmitted | Refusal::SourceNotAllowed | Refusal::ReceiveNotAllowed => {
            (ErrorCode::NotAllowed, r.to_string())
        }
    }
}

/// Longest simulcast `rid` accepted: what the one-byte RTP header extension that carries it
/// (RFC 8852) can hold. Every subscriber receives the rids of a track, so they are bounded.
pub const MAX_RID_LEN: usize = 16;

/// A rid is 1 to `MAX_RID_LEN` of `A-Z a-z 0-9 - _` (RFC 8851's rid-id, bounded).
fn check_rids<'a>(mut rids: impl Iterator<Item = &'a str>) -> Result<(), Failure> {
    let valid = |r: &str| {
        (1..=MAX_RID_LEN).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match rids.find(|r| !valid(r)) {
        Some(bad) => {
            let shown: String = bad.chars().take(MAX_RID_LEN).collect();
            Err((
                ErrorCode::BadRequest,
                format!("rid {shown:?} is not 1 to {MAX_RID_LEN} characters of A-Z, a-z, 0-9, '-' and '_'"),
            ))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod rid_tests {
    use super::*;

    #[test]
    fn rids_are_short_tokens() {
        assert!(check_rids(["q", "h", "f", "layer_1-a"].into_iter()).is_ok());
        for bad in ["", "a b", "x".repeat(17).as_str(), "é", "r\"id"] {
            assert!(check_rids([bad].into_iter()).is_err(), "{bad:?}");
        }
    }
}
