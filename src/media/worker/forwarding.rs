//! The worker's media path: RoQ datagrams in, RTP through the `TrackForwarder`s, rewritten
//! datagrams out; RTCP from subscribers (NACK, PLI/FIR, REMB) and publishers (SR); and the
//! periodic work (layer selection, NACKs to publishers, receiver and sender reports, bandwidth
//! estimates, audio levels).

use super::{AUDIO_LEVEL_INTERVAL, BWE_INTERVAL, LocalTrack, REPORT_INTERVAL, Sink, Worker, codec_of, ntp_now};
use crate::media::bwe::PathSample;
use crate::media::command::{ControlEvent, SessionInput};
use crate::media::ids::{SubscriptionId, TrackId};
use crate::media::metrics::{Drop, WorkerCounters, kind_index};
use crate::media::quic::{Flow, QuicConn};
use crate::rtp::{self, rtcp, varint};
use crate::sfu::forwarder::LayerChange;
use crate::sfu::packet::{MediaKind, MediaPacket, write_rewritten};
use crate::sfu::rewriter::Rewrite;
use bytes::{Bytes, BytesMut};
use std::time::Instant;

/// Room for one datagram in the egress arena.
const DATAGRAM_ROOM: usize = 1600;

impl Worker {
    pub(super) fn on_datagram(&mut self, idx: usize, data: Bytes, now: Instant) {
        let Some(c) = self.conns[idx].as_ref() else { return };
        let Some((flow, n)) = varint::read(&data) else {
            self.counters.drop(Drop::MalformedDatagram);
            return;
        };
        let Some(binding) = c.flows.get(&flow).copied() else {
            self.counters.drop(if c.flows.is_empty() { Drop::NotJoined } else { Drop::UnknownFlow });
            return;
        };
        let packet = data.slice(n..);
        if rtp::is_rtcp(&packet) {
            self.on_rtcp(idx, binding, &packet, now);
            return;
        }
        match binding {
            Flow::Publish { track, layer } => self.on_publisher_rtp(track, layer, packet, now),
            Flow::Subscribe { .. } => self.counters.drop(Drop::MalformedDatagram),
        }
    }

    fn on_publisher_rtp(&mut self, track_id: TrackId, layer: u8, data: Bytes, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else {
            self.counters.drop(Drop::UnknownFlow);
            return;
        };
        let codec = codec_of(track);
        let Some(origin) = track.origin.as_mut() else { return };
        let pkt = match MediaPacket::parse(data, codec, origin.audio_level_ext, now) {
            Ok(p) => p,
            Err(_) => {
                self.counters.drop(Drop::MalformedRtp);
                return;
            }
        };
        let k = kind_index(codec.kind());
        self.counters.packets_in[k].inc();
        self.counters.bytes_in[k].inc_by(pkt.data.len() as u64);
        let Some(ol) = origin.layers.get_mut(usize::from(layer)) else { return };
        ol.ssrc = Some(pkt.ssrc);
        ol.loss.on_packet(now, pkt.seq);
        ol.stats.on_packet(now, self.epoch, pkt.seq, pkt.timestamp, codec.clock_rate());
        for (w, attached) in origin.sinks.iter().enumerate() {
            if *attached && w != self.index {
                self.outgoing[w].push((track_id, layer, pkt.clone()));
                self.counters.handoffs.inc();
            }
        }
        let changes =
            forward(track, layer, &pkt, now, &mut self.conns, &mut self.arena, &mut self.counters, &mut self.dirty);
        if changes {
            self.report_layer_changes(track_id);
        }
    }

    /// Packets of a track whose origin is another worker.
    pub(super) fn forward_mirrored(&mut self, track_id: TrackId, layer: u8, pkt: &MediaPacket, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else { return };
        if forward(track, layer, pkt, now, &mut self.conns, &mut self.arena, &mut self.counters, &mut self.dirty) {
            self.report_layer_changes(track_id);
        }
    }

    fn report_layer_changes(&mut self, track_id: TrackId) {
        let Some(track) = self.tracks.get_mut(&track_id) else { return };
        let changes: Vec<LayerChange> = track.forwarder.drain_layer_changes().collect();
        let notices: Vec<_> = changes
            .iter()
            .filter_map(|change| {
                let sub = track.forwarder.subscriptions().iter().find(|s| s.id == change.subscription)?;
                Some((sub.sink.session, SubscriptionId(change.subscription), change.to))
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
                            let (conns, arena, counters, dirty) =
                                (&mut self.conns, &mut self.arena, &mut self.counters, &mut self.dirty);
                            let (sent, missed) = t.forwarder.on_nack(subscription.0, seqs, |sub, pkt, rw| {
                                send_rtp(conns, sub.sink, pkt, rw, sub.out_ssrc, k, arena, counters, dirty);
                            });
                            counters.nacks_received.inc_by(u64::from(sent + missed));
                            counters.retransmitted.inc_by(u64::from(sent));
                            counters.retransmit_missed.inc_by(u64::from(missed));
                        }
                        Ok(rtcp::Rtcp::Pli { .. } | rtcp::Rtcp::Fir { .. }) => {
                            self.counters.keyframes_received.inc();
                            keyframe_layer = keyframe_layer.or(t.forwarder.on_picture_loss(now, subscription.0));
                        }
                        Ok(rtcp::Rtcp::Remb { bitrate_bps, .. }) => {
                            if let Some(c) = self.conns[idx].as_mut() {
                                c.estimate_bps = Some(bitrate_bps);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            self.counters.drop(Drop::MalformedRtcp);
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
                for item in rtcp::parse(packet) {
                    match item {
                        Ok(rtcp::Rtcp::SenderReport { ntp, .. }) => {
                            if let Some(l) = origin.layers.get_mut(usize::from(layer)) {
                                l.stats.on_sender_report(now, ntp);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            self.counters.drop(Drop::MalformedRtcp);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Ask the publisher of `track` for a keyframe of `layer` (already throttled by the caller).
    pub(super) fn send_keyframe_request(&mut self, track_id: TrackId, layer: u8) {
        let Some(track) = self.tracks.get(&track_id) else { return };
        let Some(origin) = track.origin.as_ref() else {
            if let Some(peer) = self.peers.get(track.origin_worker)
                && peer.try_send(crate::media::command::PeerMsg::KeyframeRequest { track: track_id, layer }).is_err()
            {
                self.counters.drop(Drop::PeerQueueFull);
            }
            return;
        };
        let Some(l) = origin.layers.get(usize::from(layer)) else { return };
        self.rtcp.clear();
        rtcp::write_pli(&mut self.rtcp, self.rtcp_ssrc, l.ssrc.unwrap_or(0));
        let (conn, flow) = (origin.conn, l.flow);
        self.send_rtcp(conn, flow);
        self.counters.keyframes_sent.inc();
    }

    /// Send `self.rtcp` on `flow` of connection `idx`.
    fn send_rtcp(&mut self, idx: usize, flow: u64) {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { return };
        let mut d = BytesMut::with_capacity(8 + self.rtcp.len());
        varint::write(flow, &mut d);
        d.extend_from_slice(&self.rtcp);
        if c.conn.datagrams().send(d.freeze(), true).is_err() {
            self.counters.drop(Drop::DatagramTooLarge);
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
        // NACKs toward publishers.
        let mut nacks = Vec::new();
        for id in &ids {
            let Some(origin) = self.tracks.get_mut(id).and_then(|t| t.origin.as_mut()) else { continue };
            let rtt = self.conns.get(origin.conn).and_then(Option::as_ref).map(|c| c.conn.rtt()).unwrap_or_default();
            let conn = origin.conn;
            let mut to_send = Vec::new();
            for l in &mut origin.layers {
                nacks.clear();
                l.loss.poll_nacks(now, rtt, &mut nacks);
                if !nacks.is_empty() {
                    let mut buf = Vec::new();
                    rtcp::write_nack(&mut buf, self.rtcp_ssrc, l.ssrc.unwrap_or(0), &nacks);
                    to_send.push((l.flow, buf, nacks.len()));
                }
            }
            for (flow, buf, n) in to_send {
                self.rtcp = buf;
                self.send_rtcp(conn, flow);
                self.counters.nacks_sent.inc_by(n as u64);
            }
        }
        if now.saturating_duration_since(self.last_bwe) >= BWE_INTERVAL {
            self.last_bwe = now;
            self.update_bandwidth(now);
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
            self.counters.flush();
        }
    }

    /// Per connection: estimate the available bandwidth and share it among its video
    /// subscriptions.
    fn update_bandwidth(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else { continue };
            let stats = c.conn.stats();
            let sample = PathSample {
                sent_bytes: stats.udp_tx.bytes,
                sent_packets: stats.path.sent_packets,
                lost_packets: stats.path.lost_packets,
                congestion_events: stats.path.congestion_events,
                rtt: stats.path.rtt,
                min_rtt: c.conn.rtt().min(stats.path.rtt),
            };
            let estimate = c.bwe.update(now, sample);
            let estimate = match (estimate, c.estimate_bps) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let video: Vec<(TrackId, SubscriptionId)> = c
                .flows
                .values()
                .filter_map(|f| match f {
                    Flow::Subscribe { track, subscription } => Some((*track, *subscription)),
                    Flow::Publish { .. } => None,
                })
                .filter(|(t, _)| self.tracks.get(t).is_some_and(|t| codec_of(t).kind() == MediaKind::Video))
                .collect();
            if video.is_empty() {
                continue;
            }
            let share = estimate.map(|e| e / video.len() as u64);
            for (track, sub) in video {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.forwarder.set_bandwidth(sub.0, share);
                }
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
                    if let Some(ssrc) = l.ssrc {
                        let block = l.stats.report(now, ssrc);
                        let mut buf = Vec::new();
                        rtcp::write_rr(&mut buf, self.rtcp_ssrc, &[block]);
                        out.push((origin.conn, l.flow, buf));
                    }
                }
            }
            for sub in t.forwarder.subscriptions() {
                if let Some((ssrc, ts, packets, octets)) = t.forwarder.sender_report(sub.id, now) {
                    let mut buf = Vec::new();
                    rtcp::write_sr(&mut buf, ssrc, ntp, ts, packets, octets);
                    out.push((sub.sink.conn, sub.sink.flow, buf));
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
#[allow(clippy::too_many_arguments)]
fn forward(
    track: &mut LocalTrack,
    layer: u8,
    pkt: &MediaPacket,
    now: Instant,
    conns: &mut [Option<QuicConn>],
    arena: &mut BytesMut,
    counters: &mut WorkerCounters,
    dirty: &mut Vec<usize>,
) -> bool {
    let k = kind_index(track.forwarder.codec().kind());
    let report = track.forwarder.on_packet(now, layer, pkt, |sub, rw| {
        send_rtp(conns, sub.sink, pkt, rw, sub.out_ssrc, k, arena, counters, dirty);
    });
    counters.forwarded[k].inc_by(u64::from(report.forwarded));
    if report.dropped > 0 {
        counters.drop(Drop::StalePacket);
    }
    if report.forwarded > 0 {
        counters.latency.observe(now.saturating_duration_since(pkt.received_at).as_secs_f64());
    }
    counters.switches_up.inc_by(u64::from(report.switched_up));
    counters.switches_down.inc_by(u64::from(report.switched_down));
    report.switched_up + report.switched_down > 0
}

/// Write a subscriber's copy of `pkt` as a RoQ datagram and queue it on the connection.
#[allow(clippy::too_many_arguments)]
fn send_rtp(
    conns: &mut [Option<QuicConn>],
    sink: Sink,
    pkt: &MediaPacket,
    rw: &Rewrite,
    ssrc: u32,
    kind: usize,
    arena: &mut BytesMut,
    counters: &mut WorkerCounters,
    dirty: &mut Vec<usize>,
) {
    let Some(c) = conns.get_mut(sink.conn).and_then(Option::as_mut) else { return };
    if arena.capacity() - arena.len() < DATAGRAM_ROOM {
        arena.reserve(256 * 1024);
    }
    varint::write(sink.flow, arena);
    write_rewritten(pkt, rw, ssrc, arena);
    let datagram = arena.split().freeze();
    let len = datagram.len() as u64;
    match c.conn.datagrams().send(datagram, true) {
        Ok(()) => {
            if !c.dirty {
                c.dirty = true;
                dirty.push(sink.conn);
            }
            counters.packets_out[kind].inc();
            counters.bytes_out[kind].inc_by(len);
        }
        Err(quinn_proto::SendDatagramError::TooLarge) => counters.drop(Drop::DatagramTooLarge),
        Err(_) => counters.drop(Drop::DatagramUnsupported),
    }
}
