//! The worker's media path: packets in (RoQ datagrams or WebRTC), through the `TrackForwarder`s,
//! rewritten copies out to each subscriber's transport; RTCP from QUIC subscribers (NACK,
//! PLI/FIR, REMB) and publishers (SR); and the periodic work (layer selection, NACKs to QUIC
//! publishers, receiver and sender reports, bandwidth shares, audio levels).

use super::rtc_egress::RtcCopy;
use super::rtc_io::drive;
use super::{
    AUDIO_LEVEL_INTERVAL, BWE_INTERVAL, FORWARDED_PER_TURN, LayerSource, LocalTrack, Outputs, REPORT_INTERVAL, Sink,
    Worker, codec_of, ntp_now,
};
use crate::media::bwe::PathSample;
use crate::media::command::{ControlEvent, PeerMsg, SessionInput};
use crate::media::ids::{SubscriptionId, TrackId};
use crate::media::metrics::{Drop, kind_index};
use crate::media::quic::{DATAGRAM_SEND_BUFFER, Flow};
use crate::rtp::{self, rtcp, varint};
use crate::sfu::forwarder::{LayerChange, ResendPolicy, SenderClock};
use crate::sfu::packet::{MediaKind, MediaPacket, write_rewritten};
use crate::sfu::rewriter::Rewrite;
use crate::sfu::simulcast::{Ladder, allocate};
use bytes::{Bytes, BytesMut};
use std::time::{Duration, Instant};
use str0m::bwe::Bitrate;

/// A subscriber NACK does not resend a packet forwarded less than its round-trip time ago (the
/// NACK crossed it); at least this long (loopback round trips are shorter than task wake-ups)...
const MIN_RESEND_GUARD: Duration = Duration::from_millis(10);
/// ...and at most this long (a long round trip must not hold back a real repair).
const MAX_RESEND_GUARD: Duration = Duration::from_millis(250);
/// Probing goes a little beyond what the next layers need, so an upgrade's threshold is reached
/// (and not overshot by much: the further the estimate runs ahead of what is sent, the slower
/// it falls at a new bottleneck).
const PROBE_MARGIN: f64 = 1.1;
/// A subscriber may be sent again this share of its bandwidth estimate...
const RETRANSMIT_SHARE_OF_ESTIMATE: f64 = 0.2;
/// ...but at least this much (a low or unknown estimate still gets repairs)...
const MIN_RETRANSMIT_BPS: u64 = 200_000;
/// ...and this much before any estimate.
const DEFAULT_RETRANSMIT_BPS: u64 = 500_000;

/// The rate a subscriber's retransmission budget refills at.
fn retransmit_rate(estimate_bps: Option<u64>) -> u64 {
    estimate_bps
        .map_or(DEFAULT_RETRANSMIT_BPS, |e| ((e as f64 * RETRANSMIT_SHARE_OF_ESTIMATE) as u64).max(MIN_RETRANSMIT_BPS))
}

/// Room for one datagram in the egress arena.
const DATAGRAM_ROOM: usize = 1600;
/// Part of a subscriber's estimate that video may use (the rest absorbs RTCP, retransmissions,
/// padding and estimate noise).
const VIDEO_SHARE_OF_ESTIMATE: f64 = 0.85;
/// Bandwidth set aside per audio subscription.
const AUDIO_RESERVE_BPS: u64 = 60_000;

/// The estimate at which `video_bps` of layers could be upgraded to (the inverse of the share
/// arithmetic in `share_bandwidth` and the selector's upgrade headroom): what probing aims for.
pub(super) fn estimate_needed_for(video_bps: u64, audio: usize) -> u64 {
    let with_headroom = video_bps as f64 * crate::sfu::simulcast::UPGRADE_HEADROOM;
    ((with_headroom + (AUDIO_RESERVE_BPS * audio as u64) as f64) / VIDEO_SHARE_OF_ESTIMATE) as u64
}

impl Worker {
    pub(super) fn on_datagram(&mut self, idx: usize, data: Bytes, now: Instant) {
        let Some(c) = self.out.conns[idx].as_ref() else { return };
        let Some((flow, n)) = varint::read(&data) else {
            self.out.counters.drop(Drop::MalformedDatagram);
            return;
        };
        let Some(binding) = c.flows.get(&flow).copied() else {
            self.out.counters.drop(if c.flows.is_empty() { Drop::NotJoined } else { Drop::UnknownFlow });
            return;
        };
        let packet = data.slice(n..);
        if rtp::is_rtcp(&packet) {
            self.on_rtcp(idx, binding, &packet, now);
            return;
        }
        match binding {
            Flow::Publish { track, layer } => {
                let Some(t) = self.tracks.get(&track) else {
                    self.out.counters.drop(Drop::UnknownFlow);
                    return;
                };
                let ext = t.origin.as_ref().and_then(|o| o.audio_level_ext);
                match MediaPacket::parse(packet, codec_of(t), ext, now) {
                    Ok(pkt) => self.ingest(track, layer, pkt, now),
                    Err(_) => self.out.counters.drop(Drop::MalformedRtp),
                }
            }
            Flow::Subscribe { .. } => self.out.counters.drop(Drop::MalformedDatagram),
        }
    }

    /// A packet from a publisher on this worker: update the layer's receive state, hand it to
    /// the workers with subscribers, and forward it to the local ones.
    pub(super) fn ingest(&mut self, track_id: TrackId, layer: u8, pkt: MediaPacket, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else { return };
        let codec = codec_of(track);
        let Some(origin) = track.origin.as_mut() else { return };
        if track.muted {
            self.out.counters.drop(Drop::Muted);
            return;
        }
        let k = kind_index(codec.kind());
        let Some(ol) = origin.layers.get_mut(usize::from(layer)) else { return };
        let quic = matches!(ol.source, LayerSource::Quic { .. });
        if quic {
            self.out.counters.traffic.received(k, pkt.data.len());
            ol.loss.on_packet(now, pkt.seq);
            ol.stats.on_packet(now, self.epoch, pkt.seq, pkt.timestamp, codec.clock_rate());
        } else {
            self.out.rtc_counters.traffic.received(k, pkt.data.len());
        }
        ol.ssrc = Some(pkt.ssrc);
        for (w, attached) in origin.sinks.iter().enumerate() {
            if *attached && w != self.index {
                self.outgoing[w].push((track_id, layer, pkt.clone()));
                self.out.counters.handoffs.inc();
            }
        }
        if forward(track, layer, &pkt, now, &mut self.out) {
            self.report_layer_changes(track_id);
        }
    }

    /// Packets of a track whose origin is another worker.
    pub(super) fn forward_mirrored(&mut self, track_id: TrackId, layer: u8, pkt: &MediaPacket, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else { return };
        if forward(track, layer, pkt, now, &mut self.out) {
            self.report_layer_changes(track_id);
        }
    }

    pub(super) fn report_layer_changes(&mut self, track_id: TrackId) {
        let Some(track) = self.tracks.get_mut(&track_id) else { return };
        let changes: Vec<LayerChange> = track.forwarder.drain_layer_changes().collect();
        let notices: Vec<_> = changes
            .iter()
            .filter_map(|change| {
                let sub = track.forwarder.subscriptions().iter().find(|s| s.id == change.subscription)?;
                Some((sub.sink.session(), SubscriptionId(change.subscription), change.to))
            })
            .collect();
        for (session, subscription, layer) in notices {
            self.notify(session, SessionInput::LayerChanged { subscription, layer });
        }
    }

    fn on_rtcp(&mut self, idx: usize, binding: Flow, packet: &[u8], now: Instant) {
        match binding {
            Flow::Subscribe { track, subscription } => {
                let mut keyframe_layer = None;
                let Some(t) = self.tracks.get_mut(&track) else { return };
                for item in rtcp::parse(packet) {
                    match item {
                        Ok(rtcp::Rtcp::Nack { items, .. }) => {
                            let seqs = rtcp::nack_seqs(items);
                            let k = kind_index(t.forwarder.codec().kind());
                            let out = &mut self.out;
                            // Not again what was forwarded within the subscriber's round trip, and
                            // no more than its budget: a share of its estimate.
                            let Some(c) = out.conns.get(idx).and_then(Option::as_ref) else { return };
                            let guard = c.conn.rtt().clamp(MIN_RESEND_GUARD, MAX_RESEND_GUARD);
                            let rate_bps = retransmit_rate(c.last_estimate_bps);
                            let mut budget = c.retransmits;
                            let policy = ResendPolicy { now, guard, budget: &mut budget, rate_bps };
                            let answer = t.forwarder.on_nack(subscription.0, seqs, policy, |sub, pkt, rw| {
                                // (A QUIC subscriber's NACK: its own copies, no WebRTC part.)
                                let copy = RtcCopy { captured: now, vp8: None };
                                send_rtp(out, sub.sink, pkt, rw, sub.out_ssrc, k, now, &copy);
                            });
                            if let Some(c) = out.conns.get_mut(idx).and_then(Option::as_mut) {
                                c.retransmits = budget;
                            }
                            let asked = answer.sent + answer.missed + answer.too_recent + answer.over_budget;
                            out.counters.nacks_received.inc_by(u64::from(asked));
                            out.counters.retransmitted.inc_by(u64::from(answer.sent));
                            out.counters.retransmit_missed.inc_by(u64::from(answer.missed));
                            out.counters.retransmit_too_recent.inc_by(u64::from(answer.too_recent));
                            out.counters.retransmit_over_budget.inc_by(u64::from(answer.over_budget));
                        }
                        Ok(rtcp::Rtcp::Pli { .. } | rtcp::Rtcp::Fir { .. }) => {
                            self.out.counters.keyframes_received.inc();
                            keyframe_layer = keyframe_layer.or(t.forwarder.on_picture_loss(now, subscription.0));
                        }
                        Ok(rtcp::Rtcp::Remb { bitrate_bps, .. }) => {
                            if let Some(c) = self.out.conns[idx].as_mut() {
                                c.estimate_bps = Some(bitrate_bps);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            self.out.counters.drop(Drop::MalformedRtcp);
                            break;
                        }
                    }
                }
                if let Some(layer) = keyframe_layer {
                    self.send_keyframe_request(track, layer);
                }
            }
            Flow::Publish { track, layer } => {
                let Some(origin) = self.tracks.get_mut(&track).and_then(|t| t.origin.as_mut()) else { return };
                let mut clock = None;
                for item in rtcp::parse(packet) {
                    match item {
                        Ok(rtcp::Rtcp::SenderReport { ntp, rtp_timestamp, .. }) => {
                            if let Some(l) = origin.layers.get_mut(usize::from(layer)) {
                                l.stats.on_sender_report(now, ntp);
                            }
                            clock = Some(SenderClock { rtp: rtp_timestamp, at: now });
                        }
                        Ok(_) => {}
                        Err(_) => {
                            self.out.counters.drop(Drop::MalformedRtcp);
                            break;
                        }
                    }
                }
                if let Some(clock) = clock {
                    self.on_sender_clock(track, layer, clock);
                }
            }
        }
    }

    /// A publisher's sender report on a layer of a track this worker is the origin of: for the
    /// forwarder here and the mirrors on other workers.
    pub(super) fn on_sender_clock(&mut self, track: TrackId, layer: u8, clock: SenderClock) {
        let Some(t) = self.tracks.get_mut(&track) else { return };
        t.forwarder.on_sender_clock(layer, clock);
        let Some(origin) = t.origin.as_ref() else { return };
        let sinks: Vec<usize> =
            origin.sinks.iter().enumerate().filter(|&(w, s)| *s && w != self.index).map(|(w, _)| w).collect();
        for w in sinks {
            self.send_peer_control(w, PeerMsg::SenderClock { track, layer, clock });
        }
    }

    /// Ask the publisher of `track` for a keyframe of `layer` (already throttled by the caller).
    pub(super) fn send_keyframe_request(&mut self, track_id: TrackId, layer: u8) {
        let Some(track) = self.tracks.get(&track_id) else { return };
        let Some(origin) = track.origin.as_ref() else {
            if let Some(peer) = self.peer_txs.get(track.origin_worker)
                && peer.try_send(PeerMsg::KeyframeRequest { track: track_id, layer }).is_err()
            {
                self.out.counters.drop(Drop::PeerQueueFull);
            }
            return;
        };
        let Some(l) = origin.layers.get(usize::from(layer)) else { return };
        self.out.counters.keyframes_sent.inc();
        match l.source.clone() {
            LayerSource::Quic { conn, flow } => {
                self.rtcp.clear();
                rtcp::write_pli(&mut self.rtcp, self.rtcp_ssrc, l.ssrc.unwrap_or(0));
                self.send_rtcp(conn, flow);
            }
            LayerSource::WebRtc { peer, mid, rid } => self.request_browser_keyframe(peer, mid, rid),
        }
    }

    /// Send `self.rtcp` on `flow` of QUIC connection `idx`.
    fn send_rtcp(&mut self, idx: usize, flow: u64) {
        let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { return };
        let mut d = BytesMut::with_capacity(8 + self.rtcp.len());
        varint::write(flow, &mut d);
        d.extend_from_slice(&self.rtcp);
        if c.conn.datagrams().send(d.freeze(), true).is_err() {
            self.out.counters.drop(Drop::DatagramTooLarge);
        }
        self.mark_dirty(idx);
    }

    pub(super) fn on_tick(&mut self, now: Instant) {
        // Layer selection and keyframe requests.
        let ids: Vec<TrackId> = self.tracks.keys().copied().collect();
        let mut layers = Vec::new();
        for id in &ids {
            let Some(t) = self.tracks.get_mut(id) else { continue };
            layers.clear();
            t.forwarder.tick(now, &mut layers);
            for layer in layers.drain(..) {
                self.send_keyframe_request(*id, layer);
            }
        }
        // NACKs toward QUIC publishers (str0m NACKs WebRTC publishers itself).
        let mut nacks = Vec::new();
        for id in &ids {
            let Some(origin) = self.tracks.get_mut(id).and_then(|t| t.origin.as_mut()) else { continue };
            let mut to_send = Vec::new();
            for l in &mut origin.layers {
                let LayerSource::Quic { conn, flow } = l.source else { continue };
                let rtt = self.out.conns.get(conn).and_then(Option::as_ref).map(|c| c.conn.rtt()).unwrap_or_default();
                nacks.clear();
                l.loss.poll_nacks(now, rtt, &mut nacks);
                if !nacks.is_empty() {
                    let mut buf = Vec::new();
                    rtcp::write_nack(&mut buf, self.rtcp_ssrc, l.ssrc.unwrap_or(0), &nacks);
                    to_send.push((conn, flow, buf, nacks.len()));
                }
            }
            for (conn, flow, buf, n) in to_send {
                self.rtcp = buf;
                self.send_rtcp(conn, flow);
                self.out.counters.nacks_sent.inc_by(n as u64);
            }
        }
        if now.saturating_duration_since(self.last_bwe) >= BWE_INTERVAL {
            self.last_bwe = now;
            self.update_quic_bandwidth(now);
            self.update_rtc_bandwidth();
        }
        if now.saturating_duration_since(self.last_audio) >= AUDIO_LEVEL_INTERVAL {
            self.last_audio = now;
            let levels: Vec<_> = self
                .tracks
                .iter()
                .filter(|(_, t)| t.origin.is_some() && codec_of(t).kind() == MediaKind::Audio)
                .map(|(id, t)| (t.room, *id, t.forwarder.audio_level.loudness(now)))
                .collect();
            if !levels.is_empty() {
                let _ = self.control.try_send(ControlEvent::AudioLevels(levels));
            }
        }
        if now.saturating_duration_since(self.last_report) >= REPORT_INTERVAL {
            self.last_report = now;
            self.send_reports(now, &ids);
            let subscriptions: usize =
                self.tracks.values().map(|t| t.forwarder.subscriptions().len() + t.pending.len()).sum();
            self.state_gauges.tracks.set(self.tracks.len() as i64);
            self.state_gauges.subscriptions.set(subscriptions as i64);
            self.state_gauges.admitted_sessions.set(self.admissions.len() as i64);
            self.state_gauges.timers.set(self.out.timers.len() as i64);
            self.state_gauges.quic_connections.set(self.out.conns.iter().flatten().count() as i64);
            self.state_gauges.command_queue_peak.set(self.command_peak.report(self.commands.len()));
            self.state_gauges.peer_queue_peak.set(self.peer_peak.report(self.peer_rx.len()));
            self.out.counters.flush();
            self.out.rtc_counters.flush();
        }
    }

    /// Per QUIC connection that subscribes to something: estimate the available bandwidth and
    /// share it among its video subscriptions. The others are skipped: the estimate only divides
    /// bandwidth among subscriptions and paces retransmissions to subscribers, and sampling
    /// 100,000 idle connections five times a second took 60 % of a core.
    fn update_quic_bandwidth(&mut self, now: Instant) {
        for idx in 0..self.out.conns.len() {
            let Some(c) = self.out.conns[idx].as_mut() else { continue };
            if !c.flows.values().any(|f| matches!(f, Flow::Subscribe { .. })) {
                c.bwe.pause();
                continue;
            }
            let stats = c.conn.stats();
            let sample = PathSample {
                sent_bytes: stats.udp_tx.bytes,
                sent_packets: stats.path.sent_packets,
                lost_packets: stats.path.lost_packets,
                congestion_events: stats.path.congestion_events,
                rtt: stats.path.rtt,
            };
            let estimate = c.bwe.update(now, sample);
            let estimate = match (estimate, c.estimate_bps) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            c.last_estimate_bps = estimate;
            let subscribed: Vec<(TrackId, SubscriptionId)> = c
                .flows
                .values()
                .filter_map(|f| match f {
                    Flow::Subscribe { track, subscription } => Some((*track, *subscription)),
                    Flow::Publish { .. } => None,
                })
                .collect();
            let is_video = |t: &TrackId| self.tracks.get(t).is_some_and(|t| codec_of(t).kind() == MediaKind::Video);
            let video: Vec<_> = subscribed.iter().copied().filter(|(t, _)| is_video(t)).collect();
            let audio = subscribed.len() - video.len();
            self.share_bandwidth(estimate, &video, audio, now);
        }
    }

    /// Share each browser's estimate (TWCC's, or its receiver reports' where TWCC does not work:
    /// `media::webrtc_bwe`) among its video subscriptions, and tell its TWCC estimator how much
    /// it should be able to probe for.
    pub(super) fn update_rtc_bandwidth(&mut self) {
        let now = self.now();
        for idx in 0..self.out.peers.len() {
            let Some(peer) = self.out.peers[idx].as_ref() else { continue };
            let video: Vec<(TrackId, SubscriptionId)> = peer
                .tx
                .iter()
                .filter(|(_, b)| b.codec.kind() == MediaKind::Video)
                .map(|(s, b)| (b.track, *s))
                .collect();
            let audio = peer.tx.len() - video.len();
            if video.is_empty() {
                continue;
            }
            // Desired: what the layers the subscriptions want would take (`ProbeWant`).
            let (mut wanted, mut held_back) = (0, false);
            for (t, sub) in &video {
                if let Some(t) = self.tracks.get_mut(t) {
                    let want = t.forwarder.probe_want(now, sub.0);
                    wanted += want.next_layer_bps;
                    held_back |= want.held_back;
                }
            }
            let Some(peer) = self.out.peers[idx].as_mut() else { continue };
            let desired = (estimate_needed_for(wanted, audio) as f64 * PROBE_MARGIN) as u64;
            peer.bwe.on_stats_round(now);
            if peer.connected
                && let Some(why) = peer.bwe.on_wanted(desired, now)
            {
                tracing::info!(worker = self.index, session = %peer.session, reason = why.label(), "TWCC gives no usable estimate for this browser: its receiver reports drive its layers");
                self.out.rtc_counters.bwe_fallback(why);
            }
            // Probing is for TWCC: without it probes only cost the subscriber bandwidth.
            let probe_to = if peer.bwe.fallback().is_some() { Bitrate::ZERO } else { Bitrate::bps(desired) };
            if peer.connected && peer.bwe.probe_due(if held_back { desired } else { 0 }, now) {
                // A probe: str0m's estimator probes when what is wanted grows (an allocation
                // probe, a burst at up to twice its estimate), so want half for one turn of its
                // timers, then all of it again; and for a while media and padding fill most of
                // the estimate (`SubscriberBwe::padding_to`), since its estimate may grow only
                // to 1.5 times what is acknowledged.
                tracing::debug!(worker = self.index, peer = idx, desired, "probing toward the layers wanted");
                peer.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired / 2));
                drive(&mut self.out, idx, now);
                self.out.rtc_counters.bwe_probes.inc();
            }
            let Some(peer) = self.out.peers[idx].as_mut() else { continue };
            let pad_to = Bitrate::bps(peer.bwe.padding_to(now));
            peer.rtc.bwe().set_bitrate(pad_to, probe_to);
            let estimate = peer.effective_estimate(now);
            tracing::debug!(worker = self.index, peer = idx, estimate = ?estimate, wanted, desired, "WebRTC bandwidth");
            drive(&mut self.out, idx, now);
            self.share_bandwidth(estimate, &video, audio, now);
        }
    }

    /// Split a subscriber's estimate among its video subscriptions: what is left after its audio
    /// and a margin for RTCP, retransmissions and padding, by wish and priority
    /// (`sfu::simulcast::allocate`: the biggest tile first, and nothing left unused).
    pub(super) fn share_bandwidth(
        &mut self,
        estimate: Option<u64>,
        video: &[(TrackId, SubscriptionId)],
        audio: usize,
        now: Instant,
    ) {
        if video.is_empty() {
            return;
        }
        let Some(budget) = estimate
            .map(|e| ((e as f64 * VIDEO_SHARE_OF_ESTIMATE) as u64).saturating_sub(AUDIO_RESERVE_BPS * audio as u64))
        else {
            for (track, sub) in video {
                if let Some(t) = self.tracks.get_mut(track) {
                    t.forwarder.set_bandwidth(sub.0, None);
                }
            }
            return;
        };
        let ladders: Vec<Ladder> = video
            .iter()
            .map(|(track, sub)| {
                self.tracks.get_mut(track).and_then(|t| t.forwarder.ladder(now, sub.0)).unwrap_or_default()
            })
            .collect();
        for ((track, sub), share) in video.iter().zip(allocate(budget, &ladders)) {
            if let Some(t) = self.tracks.get_mut(track) {
                t.forwarder.set_bandwidth(sub.0, Some(share));
            }
        }
    }

    fn send_reports(&mut self, now: Instant, ids: &[TrackId]) {
        let ntp = ntp_now();
        let mut out: Vec<(usize, u64, Vec<u8>)> = Vec::new();
        for id in ids {
            let Some(t) = self.tracks.get_mut(id) else { continue };
            if let Some(origin) = t.origin.as_mut() {
                for l in &mut origin.layers {
                    if let (LayerSource::Quic { conn, flow }, Some(ssrc)) = (&l.source, l.ssrc) {
                        let block = l.stats.report(now, ssrc);
                        let mut buf = Vec::new();
                        rtcp::write_rr(&mut buf, self.rtcp_ssrc, &[block]);
                        out.push((*conn, *flow, buf));
                    }
                }
            }
            for sub in t.forwarder.subscriptions() {
                if let Sink::Quic { conn, flow, .. } = sub.sink
                    && let Some((ssrc, ts, packets, octets)) = t.forwarder.sender_report(sub.id, now)
                {
                    let mut buf = Vec::new();
                    rtcp::write_sr(&mut buf, ssrc, ntp, ts, packets, octets);
                    out.push((conn, flow, buf));
                }
            }
        }
        for (conn, flow, buf) in out {
            self.rtcp = buf;
            self.send_rtcp(conn, flow);
        }
    }
}

/// Run one packet through a track's forwarder and send each subscriber its copy. Returns whether
/// any subscription changed layers.
fn forward(track: &mut LocalTrack, layer: u8, pkt: &MediaPacket, now: Instant, out: &mut Outputs) -> bool {
    let k = kind_index(track.forwarder.codec().kind());
    // WebRTC subscribers take the payload as a shared slice: make it once here, not per subscriber.
    let shared;
    let pkt = if track.webrtc_sinks > 0 && pkt.shared_payload.is_none() {
        shared = pkt.with_shared_payload();
        &shared
    } else {
        pkt
    };
    // The wallclock a browser subscriber's sender reports map this packet to (lip sync).
    // What every browser's copy shares: parsed once here, not per subscriber.
    let copy = if track.webrtc_sinks > 0 {
        RtcCopy::of(pkt, track.forwarder.capture_time(layer, pkt.timestamp, now))
    } else {
        RtcCopy { captured: now, vp8: None }
    };
    let report = track.forwarder.on_packet(now, layer, pkt, |sub, rw| {
        send_rtp(out, sub.sink, pkt, rw, sub.out_ssrc, k, now, &copy);
    });
    out.counters.forwarded[k].inc_by(u64::from(report.forwarded));
    if report.dropped > 0 {
        out.counters.drop(Drop::StalePacket);
    }
    if report.forwarded > 0 && out.forwarded_at.len() < FORWARDED_PER_TURN {
        out.forwarded_at.push(pkt.received_at);
    }
    out.counters.switches_up.inc_by(u64::from(report.switched_up));
    out.counters.switches_down.inc_by(u64::from(report.switched_down));
    // A subscription's first layer is reported too (clients show it before any switch).
    report.switched_up + report.switched_down + report.started > 0
}

/// A QUIC connection with more than this waiting in its datagram send buffer (its path is
/// congested, or its client vanished or stopped acknowledging) is sent copies instead of slices
/// of the egress arena. A slice keeps its whole arena block (256 KiB) allocated while it waits,
/// so a connection that holds hundreds of queued datagrams would pin hundreds of blocks, until
/// the idle timeout or, for a client that keeps pinging, for good.
const BACKLOG_COPY_ABOVE: usize = 32 * 1024;

/// A QUIC subscriber the server has heard nothing from for this long gets no more media until it
/// is heard again: a receiving client acknowledges within tens of milliseconds, so its path is
/// down or it vanished. Without this, each such connection holds a full datagram send buffer
/// (`DATAGRAM_SEND_BUFFER`) until the idle timeout. quinn's probes still go out, and the
/// client's acknowledgement of one (or its keep-alive) resumes the media.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

/// Send a subscriber's copy of `pkt` on its transport (`copy`: what browsers' copies share).
#[allow(clippy::too_many_arguments)]
fn send_rtp(
    out: &mut Outputs,
    sink: Sink,
    pkt: &MediaPacket,
    rw: &Rewrite,
    ssrc: u32,
    kind: usize,
    now: Instant,
    copy: &RtcCopy,
) {
    match sink {
        Sink::Quic { conn, flow, .. } => {
            let Some(c) = out.conns.get_mut(conn).and_then(Option::as_mut) else { return };
            if c.last_heard.is_some_and(|t| now.saturating_duration_since(t) > UNRESPONSIVE_AFTER) {
                out.counters.drop(Drop::SubscriberUnresponsive);
                return;
            }
            if out.arena.capacity() - out.arena.len() < DATAGRAM_ROOM {
                out.arena.reserve(256 * 1024);
            }
            varint::write(flow, &mut out.arena);
            write_rewritten(pkt, rw, ssrc, &mut out.arena);
            let waiting = DATAGRAM_SEND_BUFFER.saturating_sub(c.conn.datagrams().send_buffer_space());
            let datagram = if waiting > BACKLOG_COPY_ABOVE {
                // Slow path, only for a connection that is not keeping up: a copy of its own.
                let d = Bytes::copy_from_slice(&out.arena);
                out.arena.clear();
                out.counters.backlog_copies.inc();
                d
            } else {
                out.arena.split().freeze()
            };
            let len = datagram.len();
            match c.conn.datagrams().send(datagram, true) {
                Ok(()) => {
                    if !c.dirty {
                        c.dirty = true;
                        out.dirty.push(conn);
                    }
                    out.counters.traffic.sent(kind, len);
                }
                Err(quinn_proto::SendDatagramError::TooLarge) => out.counters.drop(Drop::DatagramTooLarge),
                Err(_) => out.counters.drop(Drop::DatagramUnsupported),
            }
        }
        Sink::WebRtc { peer, subscription, .. } => super::rtc_egress::write_rtp(out, peer, subscription, pkt, rw, copy),
    }
}
