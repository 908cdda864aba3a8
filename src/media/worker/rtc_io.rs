//! The worker's WebRTC side: one UDP socket shared by every peer (demultiplexed by source address,
//! then by the ICE username of STUN requests), str0m `Rtc`s driven in RTP mode, SDP
//! offer/answer and renegotiation, RTP in and out, keyframe requests and bandwidth estimates.
//!
//! str0m's rule: after every change to an `Rtc` (input, write, SDP), drain `poll_output` until
//! it returns a timeout. `drive` does that; events it meets are queued on the peer and handled by
//! the worker afterwards, so forwarding never re-enters itself.

use super::{Outputs, PendingSub, Sink, Timer, Worker};
use crate::media::command::{OfferAccepted, OfferedMedia, SessionInput};
use crate::media::ids::{SessionId, SubscriptionId, TrackId};
use crate::media::metrics::{IceEvent, OfferEvent, RtcDrop};
use crate::media::recv_batch::RecvBatch;
use crate::media::rx_time::ReadClock;
use crate::media::webrtc::{
    OFFER_REJECT_BACKOFF, OFFER_RESEND_AFTER, Peer, RxBinding, SdpChange, TxBinding, candidates_in_every_section,
    from_rtc_codec, offer_backoff, restrict_offer, sdp_mids,
};
use crate::rooms::TrackSource;
use crate::rtp::stun;
use crate::sfu::forwarder::{SenderClock, SubscriptionSpec};
use crate::sfu::packet::{Codec, MediaKind, MediaPacket, OPUS_PT, TELEPHONE_EVENT_PT};
use bytes::BufMut;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::bwe::BweKind;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};

impl Worker {
    pub(super) fn drain_rtc_socket(&mut self) {
        // (Lent out of `self` while its datagrams are handled, which needs all of `self`.)
        let mut batch = std::mem::replace(&mut self.rtc_recv_batch, RecvBatch::empty());
        let mut read = 0;
        while read < super::RECV_BATCH {
            match self.out.rtc_socket.recv_batch(&mut batch) {
                Ok(0) => break,
                Ok(n) => {
                    read += n;
                    let clock = ReadClock::read();
                    for k in 0..n {
                        let (data, got) = batch.get(k);
                        // What a datagram causes happens when it is handled, not when its batch
                        // was read (a batch's fan-out takes a while).
                        let now = if k == 0 { clock.read_at() } else { Instant::now() };
                        self.on_rtc_udp(clock.arrival(got.kernel), now, got.from, data);
                        if !self.out.forwarded_at.is_empty() {
                            self.send_forwarded(now);
                        }
                    }
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::debug!(worker = self.index, error = %e, "WebRTC UDP receive failed");
                    }
                    break;
                }
            }
        }
        self.rtc_recv_batch = batch;
    }

    /// A datagram that arrived at `arrival` (the kernel's time: what the peer's feedback
    /// reports, `media::rx_time`), read at `now` (what everything it causes happens at).
    pub(super) fn on_rtc_udp(&mut self, arrival: Instant, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.rtc_addr, data) else {
            self.out.rtc_counters.drop(RtcDrop::MalformedUdp);
            return;
        };
        let input = Input::Receive(arrival, receive);
        let idx = match self.peer_by_addr.get(&from) {
            Some(&idx) => Some(idx),
            None => {
                // A new address: only a STUN request naming one of our peers' ufrags (and passing
                // that peer's integrity check) can claim it.
                let by_ufrag = stun::local_ufrag(data).and_then(|u| self.peer_by_ufrag.get(u).copied());
                by_ufrag.filter(|&i| self.out.peers[i].as_ref().is_some_and(|p| p.rtc.accepts(&input)))
            }
        };
        let Some(idx) = idx else {
            self.out.rtc_counters.drop(RtcDrop::UnknownSource);
            return;
        };
        let Some(peer) = self.out.peers[idx].as_mut() else { return };
        if let Err(e) = peer.rtc.handle_input(input) {
            // Bad input is dropped; it never ends the call (it may not even be from the peer).
            tracing::debug!(worker = self.index, error = %e, "WebRTC input rejected");
            self.out.rtc_counters.drop(RtcDrop::RejectedInput);
        }
        self.peer_by_addr.insert(from, idx);
        drive(&mut self.out, idx, now);
        self.handle_rtc_events(idx, now);
    }

    pub(super) fn rtc_timeout(&mut self, idx: usize, at: Instant, now: Instant) {
        let Some(peer) = self.out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
        if peer.timeout != Some(at) {
            return;
        }
        peer.timeout = None;
        if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.out.rtc_counters.drop(RtcDrop::RejectedInput);
        }
        drive(&mut self.out, idx, now);
        self.handle_rtc_events(idx, now);
    }

    /// End the peers whose ICE consent lapsed longer than the grace period ago: the session
    /// learns that its media connection was lost, and the others see it leave.
    pub(super) fn expire_lost_peers(&mut self, now: Instant) {
        let grace = self.rtc_settings.reconnect_grace;
        for idx in 0..self.out.peers.len() {
            let Some(peer) = self.out.peers[idx].as_ref() else { continue };
            let Some(lost) = peer.lost_at else { continue };
            if now.saturating_duration_since(lost) < grace {
                continue;
            }
            let session = peer.session;
            tracing::info!(worker = self.index, %session, "WebRTC peer did not come back");
            self.out.rtc_counters.ice(IceEvent::Expired);
            self.notify(session, SessionInput::Closed { reason: "media connection lost".into() });
            self.close_peer(idx);
        }
    }

    /// Events queued while forwarding wrote to peers.
    pub(super) fn handle_deferred_rtc_events(&mut self, now: Instant) {
        for idx in 0..self.out.peers.len() {
            if self.out.peers[idx].as_ref().is_some_and(|p| !p.events.is_empty()) {
                self.handle_rtc_events(idx, now);
            }
        }
    }

    fn handle_rtc_events(&mut self, idx: usize, now: Instant) {
        loop {
            let Some(peer) = self.out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
            let Some(event) = peer.events.pop_front() else { return };
            match event {
                Event::RtpPacket(pkt) => self.on_browser_rtp(idx, pkt, now),
                Event::KeyframeRequest(req) => {
                    let Some(&subscription) = peer.by_mid.get(&req.mid) else { continue };
                    let Some(track) = peer.tx.get(&subscription).map(|b| b.track) else { continue };
                    self.out.counters.keyframes_received.inc();
                    let layer =
                        self.tracks.get_mut(&track).and_then(|t| t.forwarder.on_picture_loss(now, subscription.0));
                    if let Some(layer) = layer {
                        self.send_keyframe_request(track, layer);
                    }
                }
                Event::SenderFeedback(fb) => {
                    // A publisher's sender report: which track and layer it is about.
                    let found = peer.publish.get(&fb.mid).and_then(|p| {
                        let layer = p.rids.iter().position(|r| *r == fb.rid)?;
                        Some((p.track, layer as u8))
                    });
                    if let Some((track, layer)) = found {
                        let clock = SenderClock { rtp: fb.sender_info.rtp_time.numer() as u32, at: fb.received_at };
                        self.on_sender_clock(track, layer, clock);
                    }
                }
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                    tracing::trace!(worker = self.index, peer = idx, estimate = estimate.as_u64(), "TWCC estimate");
                    peer.bwe.on_twcc(estimate.as_u64());
                }
                Event::MediaEgressStats(s) => {
                    let report = s.remote.map(|r| (*r.maximum_sequence_number, r.packets_lost));
                    peer.bwe.on_egress_stats((s.mid, s.rid), s.bytes, report, s.rtt);
                }
                Event::PeerStats(stats) => {
                    peer.on_peer_stats(stats.peer_bytes_tx, stats.egress_loss_fraction, stats.timestamp);
                    peer.bwe.on_transport_loss(stats.egress_loss_fraction, now);
                    peer.bwe.on_raw_twcc(stats.bwe_tx.map(|b| b.as_u64()), now);
                    tracing::trace!(worker = self.index, peer = idx, loss = ?stats.egress_loss_fraction, raw = ?stats.bwe_tx.map(|b| b.as_u64()), cap = ?peer.loss_cap.map(|c| c.0), "peer stats");
                }
                Event::Connected => peer.connected = true,
                Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed) => {
                    if let Some(lost) = peer.lost_at.take() {
                        let session = peer.session;
                        let after = now.saturating_duration_since(lost);
                        tracing::info!(worker = self.index, %session, ?after, "WebRTC peer reconnected");
                        self.out.rtc_counters.ice(IceEvent::Recovered);
                    }
                }
                // A connected browser whose consent lapsed (str0m's ICE-lite agent heard no binding
                // request for 15 s) keeps its place for the grace period: its network may come
                // back, or it may restart ICE. `expire_lost_peers` ends it after that.
                Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    if peer.connected && peer.lost_at.is_none() && !self.rtc_settings.reconnect_grace.is_zero() =>
                {
                    peer.lost_at = Some(now);
                    let session = peer.session;
                    let grace = self.rtc_settings.reconnect_grace;
                    tracing::info!(worker = self.index, %session, ?grace, "WebRTC peer lost ICE consent; waiting for it to come back");
                    self.out.rtc_counters.ice(IceEvent::Lost);
                }
                // Already waiting (a restart's checks lapsed too).
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) if peer.lost_at.is_some() => {}
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    let session = peer.session;
                    tracing::info!(worker = self.index, %session, "WebRTC peer disconnected");
                    self.notify(session, SessionInput::Closed { reason: "media connection lost".into() });
                    self.close_peer(idx);
                    return;
                }
                _ => {}
            }
        }
    }

    fn on_browser_rtp(&mut self, idx: usize, pkt: str0m::rtp::RtpPacket, now: Instant) {
        let Some(peer) = self.out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
        let ssrc = pkt.header.ssrc;
        let binding = match peer.rx.get(&ssrc) {
            Some(b) => Some(*b),
            None => {
                let found = peer.rtc.direct_api().stream_rx(&ssrc).map(|s| (s.mid(), s.rid()));
                let resolved = found.and_then(|(mid, rid)| {
                    let p = peer.publish.get(&mid)?;
                    let layer = p.rids.iter().position(|r| *r == rid || (r.is_none() && rid.is_none()))?;
                    Some(RxBinding {
                        track: p.track,
                        layer: layer as u8,
                        tele_pt: peer.negotiated_tele_pt(mid),
                        h264: None,
                    })
                });
                if let Some(b) = resolved {
                    peer.rx.insert(ssrc, b);
                }
                resolved
            }
        };
        let Some(RxBinding { track, layer, tele_pt, .. }) = binding else {
            self.out.rtc_counters.drop(RtcDrop::UnboundRtp);
            return;
        };
        let Some(t) = self.tracks.get(&track) else { return };
        let ext_id = t.origin.as_ref().and_then(|o| o.audio_level_ext);
        let codec = t.forwarder.codec();
        // Rebuild the packet as plain RTP (split off the ingress arena: no allocation of its own)
        // so QUIC subscribers and the retransmission history see the same bytes.
        let level = pkt.header.ext_vals.audio_level.map(|l| l.unsigned_abs().min(127));
        let vad = pkt.header.ext_vals.voice_activity.unwrap_or(false);
        let needed = 12 + 8 + pkt.payload.len();
        if self.recv.capacity() < needed {
            self.recv.reserve(256 * 1024);
        }
        let buf = &mut self.recv;
        buf.put_u8(if level.is_some() { 0x90 } else { 0x80 });
        // Audio leaves in the SFU's payload types: telephone-events as TELEPHONE_EVENT_PT, the
        // rest as OPUS_PT, whatever numbers this browser negotiated.
        let pt = match codec {
            Codec::Opus if Some(pkt.header.payload_type) == tele_pt => TELEPHONE_EVENT_PT,
            Codec::Opus => OPUS_PT,
            // H.264 in the SFU's payload type for its format (packetization mode, profile).
            Codec::H264 => peer.h264_sfu_pt(ssrc, pkt.header.payload_type),
            Codec::Vp8 => *pkt.header.payload_type & 0x7f,
        };
        buf.put_u8((u8::from(pkt.header.marker) << 7) | pt);
        buf.put_u16(pkt.header.sequence_number);
        buf.put_u32(pkt.header.timestamp);
        buf.put_u32(*ssrc);
        if let Some(level) = level {
            buf.put_u16(0xBEDE);
            buf.put_u16(1);
            // One-byte header extension: ID, then length - 1 (the level is one byte).
            buf.put_u8(ext_id.unwrap_or(1) << 4);
            buf.put_u8(if vad { 0x80 } else { 0 } | level);
            buf.put_u16(0);
        }
        buf.put_slice(&pkt.payload);
        let data = buf.split().freeze();
        match MediaPacket::parse(data, codec, ext_id.or(Some(1)), now) {
            Ok(mut media) => {
                media.shared_payload = Some(pkt.payload.clone());
                media.video_orientation = pkt.header.ext_vals.video_orientation.map(|o| o as u8);
                self.ingest(track, layer, media, now);
            }
            Err(_) => self.out.rtc_counters.drop(RtcDrop::RejectedInput),
        }
    }

    fn ensure_peer(&mut self, session: SessionId, now: Instant) -> Option<usize> {
        let rs = self.rtc_sessions.get(&session)?;
        if let Some(idx) = rs.peer {
            return Some(idx);
        }
        let peer = Peer::new(&self.rtc_settings, session, rs.inbox.clone(), now);
        let idx = match self.out.peers.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.out.peers.push(None);
                self.out.peers.len() - 1
            }
        };
        self.peer_by_ufrag.insert(peer.ufrag.clone(), idx);
        self.out.peers[idx] = Some(peer);
        if let Some(rs) = self.rtc_sessions.get_mut(&session) {
            rs.peer = Some(idx);
        }
        Some(idx)
    }

    /// Accept a client's offer; report the media lines it newly sends. Sending media lines the
    /// session's admission does not allow are answered `inactive` (reported as `refused`).
    pub(super) fn accept_offer(
        &mut self,
        session: SessionId,
        sdp: &str,
        sources: &HashMap<String, TrackSource>,
        now: Instant,
    ) -> Result<OfferAccepted, String> {
        let idx = self.ensure_peer(session, now).ok_or("no such session")?;
        let caps = self.admissions.get(session).map(|a| a.caps);
        let peer = self.out.peers[idx].as_mut().ok_or("no such peer")?;
        // What each sending line carries: what it was published as, else what the client says
        // (when that fits the line's kind), else the kind's default.
        let source_of = |mid: &str, kind: MediaKind| {
            peer.publish
                .get(&Mid::from(mid))
                .map(|b| b.source)
                .or_else(|| sources.get(mid).copied().filter(|s| s.fits(kind)))
                .unwrap_or_else(|| TrackSource::default_for(kind))
        };
        let (sdp, refused) = restrict_offer(sdp, |mid, kind| caps.is_some_and(|c| c.may_publish(source_of(mid, kind))));
        let offer = SdpOffer::from_sdp_string(&sdp)
            .map_err(|e| crate::media::webrtc::describe_sdp_error("invalid SDP offer", &e, &sdp))?;
        // Our own outstanding offer is void now (glare); its changes are offered again later.
        let withdrawn_offer = void_pending(peer).then_some(peer.offer_id);
        if withdrawn_offer.is_some() {
            self.out.rtc_counters.offer(OfferEvent::Voided);
        }
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| crate::media::webrtc::describe_sdp_error("offer refused", &e, &sdp))?;
        let mut media = Vec::new();
        for mid in sdp_mids(&sdp) {
            let mid = Mid::from(mid.as_str());
            let Some(m) = peer.rtc.media(mid) else { continue };
            if !matches!(m.direction(), Direction::RecvOnly | Direction::SendRecv) || peer.publish.contains_key(&mid) {
                continue;
            }
            let codec = m.remote_pts().iter().find_map(|pt| {
                peer.rtc.codec_config().iter().find(|p| p.pt() == *pt).and_then(|p| from_rtc_codec(p.spec().codec))
            });
            let Some(codec) = codec else { continue };
            let rids = match m.rids_rx() {
                str0m::media::Rids::Specific(rids) => rids.iter().map(|r| r.to_string()).collect(),
                _ => Vec::new(),
            };
            let kind = codec.kind();
            let source = sources
                .get(mid.to_string().as_str())
                .copied()
                .filter(|s| s.fits(kind))
                .unwrap_or_else(|| TrackSource::default_for(kind));
            media.push(OfferedMedia { mid: mid.to_string(), codec, source, rids });
        }
        let answer = candidates_in_every_section(&answer.to_sdp_string());
        // An ICE restart (the offer changed the client's credentials) gave the answer new ones of
        // ours: STUN requests from a new address find this peer by the new ufrag.
        if let Some(ufrag) = answer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).map(str::trim)
            && ufrag != peer.ufrag
        {
            self.peer_by_ufrag.remove(&peer.ufrag);
            self.peer_by_ufrag.insert(ufrag.to_owned(), idx);
            peer.ufrag = ufrag.to_owned();
            self.out.rtc_counters.ice(IceEvent::Restarted);
            tracing::info!(worker = self.index, session = %peer.session, "WebRTC peer restarted ICE");
            // It has no path until its new checks pass (str0m's agent is back at Checking, and
            // stays there if they never come): lost, for the grace period, as when consent lapses.
            if peer.lost_at.is_none() && !self.rtc_settings.reconnect_grace.is_zero() {
                peer.lost_at = Some(now);
                self.out.rtc_counters.ice(IceEvent::Lost);
            }
        }
        drive(&mut self.out, idx, now);
        self.bind_negotiated(idx, now);
        self.renegotiate(idx, now);
        Ok(OfferAccepted { answer, media, refused, withdrawn_offer })
    }

    /// Make one of a peer's sending m-lines inactive with the next offer (its track was taken
    /// away); until the browser answers, its packets on that line are dropped as unbound.
    pub(super) fn deactivate_webrtc_publish(&mut self, idx: usize, mid: Mid, now: Instant) {
        let Some(peer) = self.out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
        peer.publish.remove(&mid);
        peer.queued.push(SdpChange::Deactivate(mid));
        self.renegotiate(idx, now);
    }

    /// Accept the client's answer to our offer (`offer_id`, when the client names it).
    pub(super) fn accept_answer(
        &mut self,
        session: SessionId,
        sdp: &str,
        offer_id: Option<u64>,
        now: Instant,
    ) -> Result<u64, String> {
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| crate::media::webrtc::describe_sdp_error("invalid SDP answer", &e, sdp))?;
        let idx = self.rtc_sessions.get(&session).and_then(|s| s.peer).ok_or("no media session")?;
        let peer = self.out.peers[idx].as_mut().ok_or("no such peer")?;
        if peer.pending.is_none() || offer_id.is_some_and(|id| id != peer.offer_id) {
            return Err(match offer_id {
                Some(id) => {
                    format!("offer {id} is not outstanding (answered, or withdrawn by a crossing client offer)")
                }
                None => "no offer is outstanding".to_owned(),
            });
        }
        let pending = peer.pending.take().ok_or("no offer is outstanding")?;
        peer.in_flight.clear();
        peer.pending_sdp = None;
        peer.offer_timer = None;
        peer.offer_rejects = 0;
        peer.channel |= std::mem::take(&mut peer.channel_in_flight);
        let answered = peer.offer_id;
        self.out.rtc_counters.offer(OfferEvent::Answered);
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| crate::media::webrtc::describe_sdp_error("answer refused", &e, sdp))?;
        drive(&mut self.out, idx, now);
        self.bind_negotiated(idx, now);
        self.renegotiate(idx, now);
        Ok(answered)
    }

    /// Queue a send m-line for a subscription; it is offered as soon as no offer is outstanding.
    pub(super) fn add_send_media(
        &mut self,
        session: SessionId,
        track: TrackId,
        subscription: SubscriptionId,
        codec: Codec,
        now: Instant,
    ) -> Result<(), String> {
        let idx = self.ensure_peer(session, now).ok_or("no media session")?;
        let peer = self.out.peers[idx].as_mut().ok_or("no such peer")?;
        peer.tx.insert(subscription, TxBinding::new(track, codec));
        peer.queued.push(SdpChange::Add(subscription));
        self.renegotiate(idx, now);
        Ok(())
    }

    /// Stop sending a subscription to a browser (its m-line is stopped by renegotiation).
    pub(super) fn unsubscribe_webrtc(&mut self, session: SessionId, subscription: SubscriptionId, now: Instant) {
        let Some(idx) = self.rtc_sessions.get(&session).and_then(|s| s.peer) else { return };
        let Some(peer) = self.out.peers[idx].as_mut() else { return };
        let Some(binding) = peer.tx.remove(&subscription) else { return };
        match binding.mid {
            Some(mid) => {
                peer.by_mid.remove(&mid);
                peer.bwe.forget_streams(mid);
                peer.queued.push(SdpChange::Stop(mid));
            }
            None => peer.queued.retain(|c| *c != SdpChange::Add(subscription)),
        }
        self.renegotiate(idx, now);
    }

    /// Offer the queued changes if there are some and no offer is outstanding.
    fn renegotiate(&mut self, idx: usize, now: Instant) {
        let Some(peer) = self.out.peers[idx].as_mut() else { return };
        if peer.pending.is_some() || peer.queued.is_empty() {
            return;
        }
        if peer.offers_held_until.is_some_and(|until| now < until) {
            return; // the offer timer offers once the back-off after a rejection has passed
        }
        // A peer belongs to the call its session is admitted to; the room tells the session
        // which call an offer is for (an offer of a call it left is dropped there). Without an
        // admission the session is leaving: nothing to offer.
        let Some(room) = self.admissions.get(peer.session).map(|a| a.room) else { return };
        let changes = std::mem::take(&mut peer.queued);
        let mut api = peer.rtc.sdp_api();
        if !peer.channel && !peer.channel_in_flight {
            api.add_channel("switchboard".to_owned());
            peer.channel_in_flight = true;
        }
        let mut added = Vec::new();
        for change in &changes {
            match change {
                SdpChange::Add(sub) => {
                    let Some(b) = peer.tx.get(sub) else { continue };
                    let kind = match b.codec.kind() {
                        MediaKind::Audio => str0m::media::MediaKind::Audio,
                        MediaKind::Video => str0m::media::MediaKind::Video,
                    };
                    // Stream and track IDs name the track, so clients can tell what arrives.
                    let name = format!("t{}", b.track);
                    let mid = api.add_media(kind, Direction::SendOnly, Some(name.clone()), Some(name), None);
                    added.push((*sub, mid));
                }
                SdpChange::Stop(mid) => api.stop_media(*mid),
                SdpChange::Deactivate(mid) => api.set_direction(*mid, Direction::Inactive),
            }
        }
        let applied = api.apply();
        for (sub, mid) in added {
            if let Some(b) = peer.tx.get_mut(&sub) {
                b.mid = Some(mid);
                peer.by_mid.insert(mid, sub);
            }
        }
        let Some((offer, pending)) = applied else {
            peer.channel_in_flight = false;
            return;
        };
        peer.pending = Some(pending);
        peer.in_flight = changes;
        let sdp = candidates_in_every_section(&offer.to_sdp_string());
        // IDs grow across the session's calls (its peers are all on this worker), so the session
        // can tell a late copy of a settled offer from a new one.
        self.next_offer_id += 1;
        peer.offer_id = self.next_offer_id;
        peer.pending_sdp = Some(sdp.clone());
        peer.offer_sends = 1;
        peer.offers_held_until = None;
        let (session, offer_id) = (peer.session, peer.offer_id);
        arm_offer_timer(&mut self.out, idx, now + OFFER_RESEND_AFTER);
        self.out.rtc_counters.offer(OfferEvent::Sent);
        drive(&mut self.out, idx, now);
        self.notify(session, SessionInput::Offer { sdp, room, offer_id });
    }

    /// The client could not apply offer `offer_id`: withdraw it (its changes wait for the next
    /// offer) and offer again after a back-off, longer with each rejection in a row.
    pub(super) fn reject_offer(&mut self, session: SessionId, offer_id: u64, now: Instant) -> Result<(), String> {
        let idx = self.rtc_sessions.get(&session).and_then(|s| s.peer).ok_or("no media session")?;
        let peer = self.out.peers[idx].as_mut().ok_or("no such peer")?;
        if peer.pending.is_none() || offer_id != peer.offer_id {
            return Err(format!("offer {offer_id} is not outstanding"));
        }
        void_pending(peer);
        let hold = offer_backoff(OFFER_REJECT_BACKOFF, peer.offer_rejects);
        peer.offer_rejects = peer.offer_rejects.saturating_add(1);
        peer.offers_held_until = Some(now + hold);
        arm_offer_timer(&mut self.out, idx, now + hold);
        self.out.rtc_counters.offer(OfferEvent::Rejected);
        Ok(())
    }

    /// A peer's offer timer: send the outstanding offer again (it was not answered in time), or
    /// make the offer a rejection held back.
    pub(super) fn offer_timeout(&mut self, idx: usize, at: Instant, now: Instant) {
        let Some(peer) = self.out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
        if peer.offer_timer != Some(at) {
            return;
        }
        peer.offer_timer = None;
        let Some(sdp) = peer.pending_sdp.clone() else {
            peer.offers_held_until = None;
            self.renegotiate(idx, now);
            return;
        };
        let Some(room) = self.admissions.get(peer.session).map(|a| a.room) else { return };
        let (session, offer_id) = (peer.session, peer.offer_id);
        let wait = offer_backoff(OFFER_RESEND_AFTER, peer.offer_sends);
        peer.offer_sends = peer.offer_sends.saturating_add(1);
        arm_offer_timer(&mut self.out, idx, now + wait);
        self.out.rtc_counters.offer(OfferEvent::Resent);
        self.notify(session, SessionInput::Offer { sdp, room, offer_id });
    }

    /// After a negotiation: learn the send streams of newly negotiated subscriptions and start
    /// forwarding to them.
    fn bind_negotiated(&mut self, idx: usize, _now: Instant) {
        let Some(peer) = self.out.peers[idx].as_mut() else { return };
        let session = peer.session;
        let mut ready = Vec::new();
        let subs: Vec<SubscriptionId> =
            peer.tx.iter().filter(|(_, b)| b.ssrc.is_none() && b.mid.is_some()).map(|(s, _)| *s).collect();
        for sub in subs {
            let (mid, codec) = match peer.tx.get(&sub) {
                Some(TxBinding { mid: Some(mid), codec, .. }) => (*mid, *codec),
                _ => continue,
            };
            let pt = peer.negotiated_pt(mid, codec);
            let tele_pt = peer.negotiated_tele_pt(mid);
            let h264_pts = if codec == Codec::H264 { peer.negotiated_h264(mid) } else { Vec::new() };
            let ssrc = peer.rtc.direct_api().stream_tx_by_mid(mid, None).map(|tx| tx.ssrc());
            if let (Some(pt), Some(ssrc), Some(b)) = (pt, ssrc, peer.tx.get_mut(&sub)) {
                b.pt = Some(pt);
                b.tele_pt = tele_pt;
                b.h264_pts = h264_pts;
                b.h264_last = None;
                b.ssrc = Some(ssrc);
                ready.push((b.track, sub, *ssrc));
            }
        }
        for (track, subscription, ssrc) in ready {
            let Some(t) = self.tracks.get_mut(&track) else { continue };
            let Some(pos) = t.pending.iter().position(|p| p.subscription == subscription) else { continue };
            let PendingSub { wish, .. } = t.pending.remove(pos);
            t.webrtc_sinks += 1;
            t.forwarder.add_subscription(SubscriptionSpec {
                id: subscription.0,
                sink: Sink::WebRtc { session, peer: idx, subscription },
                out_ssrc: ssrc,
                initial: super::random_start(),
                wish,
            });
        }
    }

    pub(super) fn request_browser_keyframe(&mut self, idx: usize, mid: Mid, rid: Option<Rid>) {
        let Some(peer) = self.out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
        if let Some(rx) = peer.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        let now = self.now();
        drive(&mut self.out, idx, now);
    }

    /// Remove a peer: its subscriptions and published tracks go too.
    pub(super) fn close_peer(&mut self, idx: usize) {
        let Some(mut peer) = self.out.peers.get_mut(idx).and_then(Option::take) else { return };
        peer.rtc.disconnect();
        self.peer_by_ufrag.remove(&peer.ufrag);
        self.peer_by_addr.retain(|_, i| *i != idx);
        if let Some(rs) = self.rtc_sessions.get_mut(&peer.session) {
            rs.peer = None;
        }
        for (subscription, binding) in &peer.tx {
            self.remove_subscription(binding.track, *subscription);
        }
        let published: Vec<TrackId> = peer.publish.values().map(|p| p.track).collect();
        for track in published {
            self.remove_published_by(track, peer.session);
        }
    }
}

/// Withdraw a peer's outstanding offer, if it has one: its changes go back in front of the
/// queued ones (a subscription's m-line gets a new mid when offered again). Whether there was one.
fn void_pending(peer: &mut Peer) -> bool {
    if peer.pending.take().is_none() {
        return false;
    }
    peer.pending_sdp = None;
    peer.offer_timer = None;
    peer.channel_in_flight = false;
    let mut again = std::mem::take(&mut peer.in_flight);
    for change in &again {
        if let SdpChange::Add(sub) = change
            && let Some(b) = peer.tx.get_mut(sub)
            && let Some(mid) = b.mid.take()
        {
            peer.by_mid.remove(&mid);
        }
    }
    again.append(&mut peer.queued);
    peer.queued = again;
    true
}

/// Arm a peer's offer timer for `at` (replacing an earlier setting; its heap entry goes stale).
fn arm_offer_timer(out: &mut Outputs, idx: usize, at: Instant) {
    let Some(peer) = out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
    peer.offer_timer = Some(at);
    out.timers.push(Reverse((at, Timer::Offer(idx))));
}

/// Drain a peer's output: send transmits, queue events, schedule its next timeout.
pub(super) fn drive(out: &mut Outputs, idx: usize, now: Instant) {
    let Some(peer) = out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
    loop {
        match peer.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let done = out.rtc_socket.queue(&t.contents, t.destination);
                out.counters.drops(crate::media::metrics::Drop::SocketBusy, done.busy);
            }
            Ok(Output::Event(e)) => peer.events.push_back(e),
            Ok(Output::Timeout(t)) => {
                if t <= now {
                    // Due now (e.g. queued packets to stamp and send).
                    if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                        break;
                    }
                    continue;
                }
                // Armed only when earlier than the entry already in the heap (see
                // `arm_quic_timer`): when that one fires, the peer is driven and re-armed.
                if peer.timeout.is_none_or(|armed| t < armed) {
                    peer.timeout = Some(t);
                    out.timers.push(Reverse((t, Timer::Rtc(idx))));
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "WebRTC peer failed");
                peer.rtc.disconnect();
                break;
            }
        }
    }
}
