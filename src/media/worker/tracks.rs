//! The tracks a worker forwards: publishing (a local origin), subscribing (attaching a sink,
//! mirroring a track whose origin is another worker), and taking them down again.

use super::*;

impl Worker {
    pub(super) fn publish(&mut self, spec: crate::media::command::PublishSpec) -> Result<(), Refusal> {
        let sources: Vec<LayerSource> = match &spec.ingress {
            PublishIngress::Quic { flows } => {
                let Some(&conn) = self.sessions.get(&spec.session) else { return Err(Refusal::NoSession) };
                let Some(c) = self.out.conns[conn].as_mut() else { return Err(Refusal::NoSession) };
                for (layer, flow) in flows.iter().enumerate() {
                    c.flows.insert(*flow, Flow::Publish { track: spec.track, layer: layer as u8 });
                }
                flows.iter().map(|&flow| LayerSource::Quic { conn, flow }).collect()
            }
            PublishIngress::WebRtc { mid, rids } => {
                let Some(peer) = self.rtc_sessions.get(&spec.session).and_then(|s| s.peer) else {
                    return Err(Refusal::NoSession);
                };
                let mid = Mid::from(mid.as_str());
                let rids: Vec<Option<Rid>> = if rids.is_empty() {
                    vec![None]
                } else {
                    rids.iter().map(|r| Some(Rid::from(r.as_str()))).collect()
                };
                if let Some(p) = self.out.peers[peer].as_mut() {
                    p.publish.insert(
                        mid,
                        crate::media::webrtc::PublishBinding {
                            track: spec.track,
                            source: spec.source,
                            rids: rids.clone(),
                        },
                    );
                }
                rids.into_iter().map(|rid| LayerSource::WebRtc { peer, mid, rid }).collect()
            }
        };
        let mut sinks = vec![false; self.workers];
        for w in self.pending_sinks.remove(&spec.track).unwrap_or_default() {
            if let Some(s) = sinks.get_mut(w) {
                *s = true;
            }
        }
        let layers = sources
            .into_iter()
            .map(|source| OriginLayer { source, ssrc: None, loss: LossDetector::new(), stats: ReceiveStats::default() })
            .collect();
        let existing = self.tracks.remove(&spec.track);
        let mut forwarder = TrackForwarder::new(spec.codec, &spec.heights);
        let mut webrtc_sinks = 0;
        let mut existing_pending = Vec::new();
        // A subscriber on this worker may have attached before the publish arrived.
        if let Some(old) = existing {
            webrtc_sinks = old.webrtc_sinks;
            existing_pending = old.pending;
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
                    source: spec.source,
                    layers,
                    sinks,
                    audio_level_ext: spec.audio_level_ext,
                    order: match spec.ingress {
                        PublishIngress::WebRtc { .. } => layer_order::LayerOrder::default(),
                        // A QUIC publisher lists its layers lowest first (PROTOCOL.md).
                        PublishIngress::Quic { .. } => layer_order::LayerOrder::settled(),
                    },
                }),
                webrtc_sinks,
                pending: existing_pending,
                muted: false,
            },
        );
        Ok(())
    }

    pub(super) fn subscribe(&mut self, spec: SubscribeSpec, now: Instant) -> Result<(), SubscribeRefusal> {
        let SubscribeSpec { session, subscription, track, room, codec, heights, sink, wish, origin } = spec;
        let (sink, ssrc) = match sink {
            SinkSpec::Quic { flow, ssrc } => {
                let Some(&conn) = self.sessions.get(&session) else { return Err(Refusal::NoSession.into()) };
                let Some(c) = self.out.conns[conn].as_mut() else { return Err(Refusal::NoSession.into()) };
                c.flows.insert(flow, Flow::Subscribe { track, subscription });
                (Sink::Quic { session, conn, flow }, ssrc)
            }
            SinkSpec::WebRtc => {
                // The m-line is negotiated first; the subscription joins the forwarder once the
                // client's answer arrives (`rtc_io::bind_negotiated`).
                self.add_send_media(session, track, subscription, codec, now).map_err(SubscribeRefusal::Negotiation)?;
                self.ensure_track(track, room, codec, &heights, origin);
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.pending.push(PendingSub { subscription, session, wish });
                }
                return Ok(());
            }
        };
        self.ensure_track(track, room, codec, &heights, origin);
        if let Some(t) = self.tracks.get_mut(&track) {
            t.forwarder.add_subscription(SubscriptionSpec {
                id: subscription.0,
                sink,
                out_ssrc: ssrc,
                initial: random_start(),
                wish,
            });
        }
        Ok(())
    }

    /// Make sure a track entry exists (a mirror when the publisher is on another worker).
    pub(super) fn ensure_track(&mut self, track: TrackId, room: RoomId, codec: Codec, heights: &[u32], origin: usize) {
        if self.tracks.contains_key(&track) {
            return;
        }
        self.tracks.insert(
            track,
            LocalTrack {
                room,
                origin_worker: origin,
                forwarder: TrackForwarder::new(codec, heights),
                origin: None,
                webrtc_sinks: 0,
                pending: Vec::new(),
                muted: false,
            },
        );
        if origin != self.index {
            self.send_peer_control(origin, PeerMsg::AttachSink { track, worker: self.index });
        }
    }

    pub(super) fn remove_subscription(&mut self, track: TrackId, subscription: SubscriptionId) {
        let Some(t) = self.tracks.get_mut(&track) else { return };
        if let Some(s) = t.forwarder.remove_subscription(subscription.0)
            && matches!(s.sink, Sink::WebRtc { .. })
        {
            t.webrtc_sinks = t.webrtc_sinks.saturating_sub(1);
        }
        t.pending.retain(|p| p.subscription != subscription);
        if t.origin.is_none() && t.forwarder.subscriptions().is_empty() && t.pending.is_empty() {
            let origin = t.origin_worker;
            self.tracks.remove(&track);
            self.send_peer_control(origin, PeerMsg::DetachSink { track, worker: self.index });
        }
    }

    /// Drop a track from this worker entirely.
    pub(super) fn remove_track(&mut self, track: TrackId) {
        self.pending_sinks.remove(&track);
        let Some(t) = self.tracks.remove(&track) else { return };
        let now = self.now();
        for sub in t.forwarder.subscriptions() {
            match sub.sink {
                Sink::Quic { conn, flow, .. } => {
                    if let Some(c) = self.out.conns.get_mut(conn).and_then(Option::as_mut) {
                        c.flows.remove(&flow);
                    }
                }
                Sink::WebRtc { session, subscription, .. } => self.unsubscribe_webrtc(session, subscription, now),
            }
        }
        for p in &t.pending {
            self.unsubscribe_webrtc(p.session, p.subscription, now);
        }
        if let Some(origin) = t.origin {
            for l in &origin.layers {
                match &l.source {
                    LayerSource::Quic { conn, flow } => {
                        if let Some(c) = self.out.conns.get_mut(*conn).and_then(Option::as_mut) {
                            c.flows.remove(flow);
                        }
                    }
                    LayerSource::WebRtc { peer, mid, .. } => {
                        if let Some(p) = self.out.peers.get_mut(*peer).and_then(Option::as_mut) {
                            p.publish.remove(mid);
                            p.rx.retain(|_, b| b.track != track);
                        }
                    }
                }
            }
        } else {
            self.send_peer_control(t.origin_worker, PeerMsg::DetachSink { track, worker: self.index });
        }
    }

    /// Remove `track` if `session` publishes it from this worker.
    pub(super) fn remove_published_by(&mut self, track: TrackId, session: SessionId) {
        if self.tracks.get(&track).and_then(|t| t.origin.as_ref()).is_some_and(|o| o.publisher == session) {
            self.remove_track(track);
        }
    }
}

/// A subscription moved into a new forwarder (when a track's publish arrives after a local
/// subscriber attached): same sink and SSRC, fresh rewriter.
pub(super) fn respawn(s: &crate::sfu::forwarder::Subscription<Sink>) -> SubscriptionSpec<Sink> {
    SubscriptionSpec { id: s.id, sink: s.sink, out_ssrc: s.out_ssrc, initial: random_start(), wish: s.wish() }
}
