//! `TrackForwarder`: one published track as seen by one media worker. It keeps per-layer
//! history and liveness, and every local subscription of the track (its `StreamRewriter` and, for
//! video, its `SimulcastSelector`). For each arriving packet it decides per subscription whether
//! to forward and with which rewrite, and hands that to the caller's `emit`, which writes the
//! bytes wherever the transport wants them. No I/O, no clock reads, no allocation per packet.

mod layers;
mod resend;
#[cfg(test)]
mod test_support;

pub use layers::{ProbeWant, SenderClock};
pub use resend::{NackAnswer, ResendPolicy};

use super::nack::PacketHistory;
use super::packet::{Codec, MediaKind, MediaPacket};
use super::rewriter::{MAX_FORWARD_GAP, Outcome, Rewrite, StreamRewriter};
use super::simulcast::{
    ANSWERED_REQUEST_INTERVAL, Decision, KEYFRAME_REQUEST_INTERVAL, Ladder, LayerStatus, LayerWish, MAX_LAYERS,
    SimulcastSelector,
};
use super::speakers::AudioLevelMeter;
use super::stats::RateMeter;
use bytes::BytesMut;
use std::time::{Duration, Instant};

/// A layer's history keeps its packets' bytes in blocks of this size of its own.
const HISTORY_BLOCK: usize = 32 * 1024;

/// A layer with no packets for this long is considered stopped.
pub const LAYER_STALE: Duration = Duration::from_millis(500);
/// Packets kept per layer for retransmissions (about 1 s of 2.5 Mbit/s video).
const VIDEO_HISTORY: usize = 512;
const AUDIO_HISTORY: usize = 128;

/// Per-layer state shared by the local subscriptions.
#[derive(Debug)]
struct LayerState {
    /// The layer's source: its SSRC and highest sequence number, to notice a publisher restart.
    source: Option<(u32, u16)>,
    history: PacketHistory<MediaPacket>,
    /// Where the history's copies of packet bytes live. A received packet is a slice of a
    /// 256 KiB receive block shared with every other packet read with it; kept as is, one slow
    /// layer's packet would keep its whole block allocated for as long as it stays in the
    /// history (half a minute for a 180p layer), so memory grew with the worker's ingress rate.
    /// Copied here, a block holds only this layer's packets, and memory follows the history's
    /// length. A new block is allocated once the current one is full (every ~25 video packets).
    history_bytes: BytesMut,
    /// A keyframe of this layer arrived since its last keyframe request (the request was answered).
    keyframe_since_request: bool,
    last_packet_at: Option<Instant>,
    rate: RateMeter,
    height: u32,
    /// The publisher's clock for this layer, from its latest sender report.
    clock: Option<SenderClock>,
}

/// One subscriber's subscription to this track on this worker.
#[derive(Debug)]
pub struct Subscription<S> {
    pub id: u64,
    /// Where the transport sends this subscription's packets.
    pub sink: S,
    pub out_ssrc: u32,
    rewriter: StreamRewriter,
    selector: Option<SimulcastSelector>,
    pub packets: u64,
    pub octets: u64,
}

impl<S> Subscription<S> {
    /// The layer being forwarded to this subscriber.
    pub fn layer(&self) -> Option<u8> {
        self.rewriter.layer()
    }

    /// The subscriber's layer wish (the default for audio).
    pub fn wish(&self) -> LayerWish {
        self.selector.as_ref().map(SimulcastSelector::wish).unwrap_or_default()
    }

    pub fn target_layer(&self) -> Option<u8> {
        self.selector.as_ref().and_then(SimulcastSelector::target)
    }
}

/// What to create a subscription with.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec<S> {
    pub id: u64,
    pub sink: S,
    pub out_ssrc: u32,
    /// First output sequence number / timestamp / picture IDs (random in production).
    pub initial: Rewrite,
    pub wish: LayerWish,
}

/// A subscription's forwarded layer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerChange {
    pub subscription: u64,
    pub from: Option<u8>,
    pub to: u8,
}

/// Counts from one `on_packet` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardReport {
    pub forwarded: u32,
    pub dropped: u32,
    pub switched_up: u32,
    pub switched_down: u32,
    /// Subscriptions that received their first layer (reported like a switch, not counted as one).
    pub started: u32,
    /// The packet's layer restarted (new SSRC or a far sequence jump): video subscribers on it
    /// wait for its next keyframe.
    pub restarted: bool,
}

/// One published track on one worker.
#[derive(Debug)]
pub struct TrackForwarder<S> {
    codec: Codec,
    layers: Vec<LayerState>,
    subs: Vec<Subscription<S>>,
    last_request: [Option<Instant>; MAX_LAYERS],
    changes: Vec<LayerChange>,
    /// Smoothed loudness (audio tracks with the RFC 6464 extension).
    pub audio_level: AudioLevelMeter,
}

impl<S: Copy> TrackForwarder<S> {
    /// `heights` has one entry per simulcast layer, lowest first (0 when unknown); audio and
    /// non-simulcast video have one layer.
    pub fn new(codec: Codec, heights: &[u32]) -> Self {
        let history = if codec.kind() == MediaKind::Video { VIDEO_HISTORY } else { AUDIO_HISTORY };
        let count = heights.len().clamp(1, MAX_LAYERS);
        let layers = (0..count)
            .map(|i| LayerState {
                source: None,
                keyframe_since_request: false,
                history: PacketHistory::new(history),
                history_bytes: BytesMut::new(),
                last_packet_at: None,
                rate: RateMeter::new(Duration::from_secs(1)),
                height: heights.get(i).copied().unwrap_or(0),
                clock: None,
            })
            .collect();
        Self {
            codec,
            layers,
            subs: Vec::new(),
            last_request: [None; MAX_LAYERS],
            changes: Vec::new(),
            audio_level: AudioLevelMeter::default(),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    pub fn subscriptions(&self) -> &[Subscription<S>] {
        &self.subs
    }

    pub fn add_subscription(&mut self, spec: SubscriptionSpec<S>) {
        let selector = (self.codec.kind() == MediaKind::Video).then(|| SimulcastSelector::new(spec.wish));
        self.subs.push(Subscription {
            id: spec.id,
            sink: spec.sink,
            out_ssrc: spec.out_ssrc,
            rewriter: StreamRewriter::new(self.codec.clock_rate(), spec.initial),
            selector,
            packets: 0,
            octets: 0,
        });
    }

    pub fn remove_subscription(&mut self, id: u64) -> Option<Subscription<S>> {
        let i = self.subs.iter().position(|s| s.id == id)?;
        Some(self.subs.swap_remove(i))
    }

    /// Change what a subscriber wants; takes effect at the next `tick`.
    pub fn set_wish(&mut self, id: u64, wish: LayerWish) {
        if let Some(sel) = self.subs.iter_mut().find(|s| s.id == id).and_then(|s| s.selector.as_mut()) {
            sel.set_wish(wish);
        }
    }

    /// What a video subscription needs to be given to receive each layer it would accept
    /// (`None` for audio, or an unknown subscription).
    pub fn ladder(&mut self, now: Instant, id: u64) -> Option<Ladder> {
        let statuses = self.layer_statuses(now);
        let count = self.layers.len();
        let sel = self.subs.iter().find(|s| s.id == id)?.selector.as_ref()?;
        Some(sel.ladder(&statuses[..count]))
    }

    /// The bandwidth a subscription may use (`None`: unconstrained).
    pub fn set_bandwidth(&mut self, id: u64, bps: Option<u64>) {
        if let Some(sel) = self.subs.iter_mut().find(|s| s.id == id).and_then(|s| s.selector.as_mut()) {
            sel.set_available_bandwidth(bps);
        }
    }

    /// Forward one packet of `layer` to every subscription that should get it.
    pub fn on_packet(
        &mut self,
        now: Instant,
        layer: u8,
        pkt: &MediaPacket,
        mut emit: impl FnMut(&Subscription<S>, &Rewrite),
    ) -> ForwardReport {
        let mut report = ForwardReport::default();
        let Some(state) = self.layers.get_mut(usize::from(layer)) else {
            report.dropped = 1;
            return report;
        };
        // A publisher restart (a new SSRC, or the sequence jumping far either way): what was
        // forwarded of this layer cannot be continued from. Audio starts a new segment at once;
        // video waits for a keyframe of the new stream (the selector asks for one at the tick).
        let restarted = match state.source {
            Some((ssrc, highest)) => {
                let jump = pkt.seq.wrapping_sub(highest);
                ssrc != pkt.ssrc || (jump > MAX_FORWARD_GAP && jump < 0u16.wrapping_sub(MAX_FORWARD_GAP))
            }
            None => false,
        };
        match &mut state.source {
            Some(source) if !restarted => {
                if pkt.seq.wrapping_sub(source.1) < 0x8000 {
                    source.1 = pkt.seq;
                }
            }
            source => *source = Some((pkt.ssrc, pkt.seq)),
        }
        if restarted {
            state.history.clear();
            state.clock = None;
            report.restarted = true;
        }
        let mut kept = pkt.clone();
        if state.history_bytes.capacity() < pkt.data.len() {
            state.history_bytes.reserve(HISTORY_BLOCK.max(pkt.data.len()));
        }
        state.history_bytes.extend_from_slice(&pkt.data);
        kept.data = state.history_bytes.split().freeze();
        state.history.insert(pkt.seq, kept);
        state.last_packet_at = Some(now);
        state.keyframe_since_request |= pkt.keyframe_start;
        state.rate.add(now, pkt.data.len());
        if let Some(size) = pkt.vp8.and_then(|d| d.keyframe_size) {
            state.height = u32::from(size.1);
        }
        if let Some(level) = pkt.audio_level {
            self.audio_level.on_level(now, level);
        }
        let len = pkt.data.len() as u64;
        for sub in &mut self.subs {
            if restarted && let Some(sel) = sub.selector.as_mut().filter(|s| s.current() == Some(layer)) {
                sel.reset();
            }
            let rewrite = match sub.selector.as_mut() {
                None => Some(if sub.rewriter.layer().is_none() || restarted {
                    sub.rewriter.start_segment(now, layer, pkt.seq, pkt.timestamp, pkt.vp8.as_ref())
                } else {
                    match sub.rewriter.rewrite(now, pkt.seq, pkt.timestamp, pkt.vp8.as_ref()) {
                        Outcome::Forward(rw) => rw,
                        Outcome::Stale => {
                            report.dropped += 1;
                            continue;
                        }
                    }
                }),
                Some(sel) => match sel.on_packet(layer, pkt.keyframe_start) {
                    Decision::Drop => None,
                    Decision::Forward { switched: true } => {
                        let from = sub.rewriter.layer();
                        match from {
                            Some(f) if f < layer => report.switched_up += 1,
                            Some(f) if f > layer => report.switched_down += 1,
                            Some(_) => {}
                            None => report.started += 1,
                        }
                        if from != Some(layer) {
                            self.changes.push(LayerChange { subscription: sub.id, from, to: layer });
                        }
                        Some(sub.rewriter.start_segment(now, layer, pkt.seq, pkt.timestamp, pkt.vp8.as_ref()))
                    }
                    Decision::Forward { switched: false } => {
                        // The subscription's own view of the layer jumped although the layer's did
                        // not (it started at a packet the layer had already passed): as after a
                        // restart, video resumes only at a keyframe of the new stream.
                        if !pkt.keyframe_start && sub.rewriter.is_restart(pkt.seq) {
                            sel.reset();
                            report.dropped += 1;
                            continue;
                        }
                        match sub.rewriter.rewrite(now, pkt.seq, pkt.timestamp, pkt.vp8.as_ref()) {
                            Outcome::Forward(rw) => Some(rw),
                            Outcome::Stale => {
                                report.dropped += 1;
                                continue;
                            }
                        }
                    }
                },
            };
            if let Some(rw) = rewrite {
                sub.packets += 1;
                sub.octets += len;
                report.forwarded += 1;
                emit(sub, &rw);
            }
        }
        report
    }

    /// A subscriber lost its picture (PLI/FIR): the layer to request a keyframe for, if the
    /// per-layer throttle allows one now.
    pub fn on_picture_loss(&mut self, now: Instant, subscription: u64) -> Option<u8> {
        let sub = self.subs.iter().find(|s| s.id == subscription)?;
        let layer = sub.rewriter.layer().or_else(|| sub.target_layer())?;
        self.request_keyframe(now, layer, KEYFRAME_REQUEST_INTERVAL).then_some(layer)
    }

    /// Throttle upstream keyframe requests per layer. A request stands until a keyframe of the
    /// layer arrives or `KEYFRAME_REQUEST_INTERVAL` passes (then it is sent again); after an
    /// answered one, the next may follow `answered_interval` later. Returns whether a request for
    /// `layer` may be sent now (and records it).
    pub fn request_keyframe(&mut self, now: Instant, layer: u8, answered_interval: Duration) -> bool {
        let i = usize::from(layer);
        let (Some(slot), Some(state)) = (self.last_request.get_mut(i), self.layers.get_mut(i)) else { return false };
        if let Some(last) = *slot {
            let since = now.saturating_duration_since(last);
            let wait = if state.keyframe_since_request { answered_interval } else { KEYFRAME_REQUEST_INTERVAL };
            if since < wait {
                return false;
            }
        }
        *slot = Some(now);
        state.keyframe_since_request = false;
        true
    }

    /// What each layer is doing now.
    pub fn layer_statuses(&mut self, now: Instant) -> [LayerStatus; MAX_LAYERS] {
        let mut out = [LayerStatus::default(); MAX_LAYERS];
        for (o, l) in out.iter_mut().zip(self.layers.iter_mut()) {
            *o = LayerStatus {
                active: l.last_packet_at.is_some_and(|t| now.saturating_duration_since(t) < LAYER_STALE),
                bitrate_bps: l.rate.bps(now),
                height: l.height,
            };
        }
        out
    }

    /// Periodic work (every ~50 ms): re-select layers and collect the layers that need a keyframe
    /// from the publisher (already throttled) into `keyframes`.
    pub fn tick(&mut self, now: Instant, keyframes: &mut Vec<u8>) {
        if self.codec.kind() != MediaKind::Video {
            return;
        }
        let statuses = self.layer_statuses(now);
        let statuses = &statuses[..self.layers.len()];
        let mut wanted = [false; MAX_LAYERS];
        for sub in &mut self.subs {
            if let Some(sel) = sub.selector.as_mut() {
                if let Some(t) = sel.update_target(now, statuses) {
                    tracing::debug!(subscription = sub.id, target = t, congested = sel.congested(), "layer target");
                }
                if let Some(layer) = sel.poll_keyframe_request(now) {
                    wanted[usize::from(layer)] = true;
                }
            }
        }
        for (layer, want) in wanted.iter().enumerate() {
            let layer = layer as u8;
            if *want && self.request_keyframe(now, layer, ANSWERED_REQUEST_INTERVAL) {
                keyframes.push(layer);
            }
        }
    }

    /// Layer changes since the last call.
    pub fn drain_layer_changes(&mut self) -> std::vec::Drain<'_, LayerChange> {
        self.changes.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::rtp::{RtpBuilder, vp8};
    use bytes::Bytes;

    #[test]
    fn the_history_does_not_keep_the_receive_block_alive() {
        let t0 = Instant::now();
        let mut f: TrackForwarder<u64> = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        // A packet read into a 256 KiB receive block, as the worker reads them.
        let frame = p.frame(t0, 0, true);
        let mut block = bytes::BytesMut::with_capacity(256 * 1024);
        block.extend_from_slice(&[0; 1000]);
        block.extend_from_slice(&frame.data);
        let block = block.freeze();
        let mut pkt = frame.clone();
        pkt.data = block.slice(1000..);
        let seq = pkt.seq;
        f.on_packet(t0, 0, &pkt, |_, _| {});
        let kept = f.layers[0].history.get(seq).expect("in the history");
        assert_eq!(kept.data, frame.data, "the same bytes");
        let inside = block.as_ptr_range();
        assert!(!inside.contains(&kept.data.as_ptr()), "a copy of its own, not a slice pinning the receive block");
    }

    #[test]
    fn each_subscriber_gets_its_layer_from_a_keyframe_on() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, low()));
        f.add_subscription(spec(2, LayerWish::default()));
        round(&mut f, &mut p, t0, [false; 3]);
        let mut kf = Vec::new();
        f.tick(t0, &mut kf);
        assert_eq!(kf, vec![0, 2], "both targets need a keyframe");
        assert!(round(&mut f, &mut p, t0, [false; 3]).is_empty(), "nothing before a keyframe");
        let got = round(&mut f, &mut p, t0, [true; 3]);
        assert_eq!(got, vec![(1, 0, 65_530), (2, 2, 65_530)]);
        let got = round(&mut f, &mut p, t0, [false; 3]);
        assert_eq!(got, vec![(1, 0, 65_531), (2, 2, 65_531)]);
    }

    #[test]
    fn low_to_high_switch_happens_at_the_high_keyframe_with_contiguous_sequence() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, low()));
        let mut kf = Vec::new();
        round(&mut f, &mut p, t0, [false; 3]);
        f.tick(t0, &mut kf);
        let mut seqs: Vec<u16> = round(&mut f, &mut p, t0, [true, false, false]).iter().map(|g| g.2).collect();
        for _ in 0..5 {
            seqs.extend(round(&mut f, &mut p, t0, [false; 3]).iter().map(|g| g.2));
        }
        f.set_wish(1, LayerWish::default());
        kf.clear();
        let t1 = t0 + Duration::from_millis(100);
        f.tick(t1, &mut kf);
        assert_eq!(kf, vec![2], "a keyframe of the high layer is requested");
        // Until that keyframe, the low layer keeps flowing.
        let got = round(&mut f, &mut p, t1, [false; 3]);
        assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), vec![0]);
        seqs.extend(got.iter().map(|g| g.2));
        // A low-layer keyframe does not switch; the high keyframe does, exactly there.
        let got = round(&mut f, &mut p, t1, [true, false, true]);
        assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), vec![0, 2]);
        seqs.extend(got.iter().map(|g| g.2));
        let got = round(&mut f, &mut p, t1, [false; 3]);
        assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), vec![2]);
        seqs.extend(got.iter().map(|g| g.2));
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "contiguous: {seqs:?}");
        }
        let changes: Vec<_> = f.drain_layer_changes().collect();
        assert_eq!(changes.last(), Some(&LayerChange { subscription: 1, from: Some(0), to: 2 }));
    }

    #[test]
    fn stopped_top_layer_moves_subscribers_down() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, LayerWish::default()));
        let mut kf = Vec::new();
        round(&mut f, &mut p, t0, [true; 3]);
        f.tick(t0, &mut kf);
        round(&mut f, &mut p, t0, [true; 3]);
        assert_eq!(f.subscriptions()[0].layer(), Some(2));
        // The top layer stops; the others go on at 30 fps.
        let mut now = t0;
        let mut requested_at = None;
        for i in 0..30 {
            now += Duration::from_millis(33);
            for layer in 0..2 {
                let pkt = p.frame(now, layer, false);
                f.on_packet(now, layer as u8, &pkt, |_, _| {});
            }
            kf.clear();
            f.tick(now, &mut kf);
            if kf.contains(&1) && requested_at.is_none() {
                requested_at = Some(i);
                // The publisher answers with a keyframe on layer 1.
                let pkt = p.frame(now, 1, true);
                let mut got = Vec::new();
                f.on_packet(now, 1, &pkt, |_, rw| got.push(rw.seq));
                assert_eq!(got.len(), 1);
            }
        }
        let at = requested_at.expect("a keyframe of layer 1 was requested");
        assert!(Duration::from_millis(33 * (at as u64 + 1)) < Duration::from_secs(1), "within 1 s");
        assert_eq!(f.subscriptions()[0].layer(), Some(1));
    }

    #[test]
    fn audio_forwards_every_packet_and_meters_level() {
        let t0 = Instant::now();
        let mut f: TrackForwarder<u64> = TrackForwarder::new(Codec::Opus, &[0]);
        f.add_subscription(spec(1, LayerWish::default()));
        let mut out = Vec::new();
        for i in 0..50u16 {
            let raw = RtpBuilder {
                payload_type: 111,
                seq: i,
                timestamp: u32::from(i) * 960,
                extensions: vec![(1, vec![30])],
                ..Default::default()
            }
            .build(&[0; 80]);
            let pkt = MediaPacket::parse(Bytes::from(raw), Codec::Opus, Some(1), t0).expect("valid");
            f.on_packet(t0 + Duration::from_millis(u64::from(i) * 20), 0, &pkt, |_, rw| out.push(rw.seq));
        }
        assert_eq!(out.len(), 50);
        assert!(f.audio_level.loudness(t0 + Duration::from_secs(1)) > 50.0);
        let mut kf = Vec::new();
        f.tick(t0, &mut kf);
        assert!(kf.is_empty());
    }

    #[test]
    fn a_subscription_not_held_back_probes_one_layer_up() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, low()));
        for i in 0..30 {
            let now = t0 + Duration::from_millis(33 * i);
            round(&mut f, &mut p, now, [i == 1; 3]);
            let mut kf = Vec::new();
            f.tick(now, &mut kf);
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(f.subscriptions()[0].layer(), Some(0));
        let rates = f.layer_statuses(now);
        assert!(rates[1].bitrate_bps > 0);
        assert_eq!(f.probe_want(now, 1).next_layer_bps, rates[1].bitrate_bps, "probe for the middle layer");
        assert_eq!(
            f.probe_want(now, 99).next_layer_bps,
            rates.iter().map(|l| l.bitrate_bps).max().unwrap_or(0),
            "unknown: the top"
        );
    }

    #[test]
    fn picture_loss_requests_are_throttled() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, low()));
        round(&mut f, &mut p, t0, [true; 3]);
        let mut kf = Vec::new();
        f.tick(t0, &mut kf);
        round(&mut f, &mut p, t0, [true; 3]);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(f.on_picture_loss(later, 1), Some(0));
        assert_eq!(f.on_picture_loss(later + Duration::from_millis(100), 1), None);
        assert_eq!(f.on_picture_loss(later + Duration::from_secs(1), 1), Some(0));
    }

    /// Output sequence numbers of one subscription, checked contiguous.
    fn assert_contiguous(seqs: &[u16]) {
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "contiguous output: {seqs:?}");
        }
    }

    #[test]
    fn a_video_publisher_restart_waits_for_a_keyframe_of_the_new_stream_and_asks_for_one() {
        for (ssrc, seq_base) in [(77, 50), (77, 40_000), (1, 5), (1, 30_000)] {
            let t0 = Instant::now();
            let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
            let mut p = Publisher::new();
            f.add_subscription(spec(1, low()));
            let mut kf = Vec::new();
            f.tick(t0, &mut kf);
            let mut seqs: Vec<u16> = round(&mut f, &mut p, t0, [true, false, false]).iter().map(|g| g.2).collect();
            for _ in 0..5 {
                seqs.extend(round(&mut f, &mut p, t0, [false; 3]).iter().map(|g| g.2));
            }
            // Layer 0 restarts (new SSRC, or the same SSRC with a far-away sequence base, behind
            // or ahead): its delta frames cannot continue what was forwarded.
            p.restart(0, ssrc, seq_base, 12_345);
            let t1 = t0 + Duration::from_secs(2);
            let got = round(&mut f, &mut p, t1, [false; 3]);
            assert!(
                got.is_empty(),
                "no delta frame of the new stream is forwarded (ssrc {ssrc}, seq {seq_base}): {got:?}"
            );
            kf.clear();
            f.tick(t1, &mut kf);
            assert_eq!(kf, vec![0], "a keyframe of the restarted layer is asked for");
            let got = round(&mut f, &mut p, t1, [true, false, false]);
            assert_eq!(got.len(), 1, "the new stream resumes at its keyframe");
            seqs.extend(got.iter().map(|g| g.2));
            seqs.extend(round(&mut f, &mut p, t1, [false; 3]).iter().map(|g| g.2));
            assert_contiguous(&seqs);
            assert!(f.drain_layer_changes().all(|c| c.from != Some(c.to)), "a restart is not a layer change");
        }
    }

    /// Found by the forwarder fuzz target: a subscription that started at a keyframe the layer
    /// had already passed (2352 packets late) took a jump that was small for the layer but over
    /// `MAX_FORWARD_GAP` for itself as a restart, and started a segment at a delta frame.
    #[test]
    fn a_jump_only_the_subscription_sees_waits_for_a_keyframe() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[720]);
        f.add_subscription(spec(1, LayerWish::default()));
        let vp8_packet = |seq: u16, key: bool| {
            let mut payload = Vec::new();
            vp8::synthetic_payload(seq & 0x7fff, 0, true, key, (1280, 720), 50, &mut payload);
            let raw =
                RtpBuilder { payload_type: 96, seq, timestamp: u32::from(seq) * 3000, ssrc: 9, ..Default::default() }
                    .build(&payload);
            MediaPacket::parse(Bytes::from(raw), Codec::Vp8, None, t0).expect("valid")
        };
        let mut out = Vec::new();
        for (seq, key) in [(20_641, false), (2_351, false)] {
            f.on_packet(t0, 0, &vp8_packet(seq, key), |_, rw| out.push(rw.seq));
        }
        f.tick(t0, &mut Vec::new());
        // A keyframe 2352 behind the layer's newest packet: late for the layer, a start for the
        // subscription.
        for (seq, key) in [(65_535, true), (0, false), (1, false)] {
            f.on_packet(t0, 0, &vp8_packet(seq, key), |_, rw| out.push(rw.seq));
        }
        assert_eq!(out, vec![65_530, 65_531, 65_532]);
        // 2256 ahead for the layer, 4606 for the subscription: a delta frame is not a start.
        let report = f.on_packet(t0, 0, &vp8_packet(4_607, false), |_, rw| out.push(rw.seq));
        assert_eq!((report.forwarded, out.len()), (0, 3), "no segment starts at a delta frame");
        let t1 = t0 + Duration::from_millis(200);
        let mut kf = Vec::new();
        f.tick(t1, &mut kf);
        assert_eq!(kf, vec![0], "a keyframe is asked for");
        f.on_packet(t1, 0, &vp8_packet(4_608, true), |_, rw| out.push(rw.seq));
        f.on_packet(t1, 0, &vp8_packet(4_609, false), |_, rw| out.push(rw.seq));
        assert_contiguous(&out);
        assert_eq!(out.len(), 5);
    }

    fn opus(seq: u16, ts: u32, ssrc: u32, now: Instant) -> MediaPacket {
        let raw = RtpBuilder { payload_type: 111, seq, timestamp: ts, ssrc, ..Default::default() }.build(&[1, 2, 3]);
        MediaPacket::parse(Bytes::from(raw), Codec::Opus, None, now).expect("valid")
    }

    #[test]
    fn an_audio_publisher_restart_continues_the_output_at_once() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Opus, &[0]);
        f.add_subscription(spec(1, LayerWish::default()));
        let mut out: Vec<(u16, u32)> = Vec::new();
        for i in 0..50u16 {
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            f.on_packet(now, 0, &opus(30_000 + i, 1_000_000 + u32::from(i) * 960, 5, now), |_, rw| {
                out.push((rw.seq, rw.timestamp))
            });
        }
        // A new SSRC, its sequence far behind and its timestamp hours away.
        for i in 0..50u16 {
            let now = t0 + Duration::from_millis(1000 + u64::from(i) * 20);
            f.on_packet(now, 0, &opus(10 + i, 4_000_000_000 + u32::from(i) * 960, 6, now), |_, rw| {
                out.push((rw.seq, rw.timestamp))
            });
        }
        assert_eq!(out.len(), 100, "nothing of the new stream is counted stale");
        let seqs: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_contiguous(&seqs);
        let step = out[50].1.wrapping_sub(out[49].1);
        assert!(step < 48_000, "the timestamp moves by about the time that passed, not the new base: {step}");
    }

    #[test]
    fn subscribers_arriving_100_ms_apart_each_get_a_keyframe_promptly_and_requests_stay_bounded() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        let mut requests = 0;
        let mut pending_answer: Option<Instant> = None;
        let mut joined_at = std::collections::HashMap::new();
        let mut first_packet = std::collections::HashMap::new();
        // 20 subscribers, one every 100 ms; ticks every 20 ms; the publisher answers a keyframe
        // request 30 ms later; delta frames every 33 ms otherwise.
        for step in 0..150u64 {
            let now = t0 + Duration::from_millis(step * 20);
            if step % 5 == 0 && step / 5 < 20 {
                let id = step / 5 + 1;
                f.add_subscription(spec(id, low()));
                joined_at.insert(id, now);
            }
            let mut kf = Vec::new();
            f.tick(now, &mut kf);
            if kf.contains(&0) {
                requests += 1;
                pending_answer.get_or_insert(now + Duration::from_millis(30));
            }
            let key = pending_answer.is_some_and(|at| now >= at);
            if key {
                pending_answer = None;
            }
            for (sub, _, _) in round(&mut f, &mut p, now, [key, false, false]) {
                first_packet.entry(sub).or_insert(now);
            }
        }
        let mut waits: Vec<Duration> =
            joined_at.iter().map(|(id, at)| first_packet[id].saturating_duration_since(*at)).collect();
        waits.sort();
        assert!(waits[waits.len() / 2] <= Duration::from_millis(150), "median join to first video: {waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(250)), "every subscriber: {waits:?}");
        assert!(requests <= 20, "at most one request per arrival: {requests}");
        // A subscriber's picture loss still asks the publisher at most once a second.
        let pli_start = t0 + Duration::from_secs(10);
        let mut asked = 0;
        for i in 0..100u64 {
            let now = pli_start + Duration::from_millis(i * 10);
            if f.on_picture_loss(now, 1).is_some() {
                asked += 1;
            }
            round(&mut f, &mut p, now, [i % 10 == 0, false, false]);
        }
        assert!(asked <= 1, "picture loss requests in one second: {asked}");
    }

    proptest::proptest! {
        /// Whatever restarts an audio publisher goes through (a new SSRC, or the same SSRC with
        /// its sequence jumping more than `MAX_FORWARD_GAP` either way; timestamps anywhere),
        /// every packet is forwarded and the output sequence is contiguous with timestamps that
        /// never go backwards.
        #[test]
        fn audio_output_stays_contiguous_across_any_restarts(
            runs in proptest::collection::vec(
                (proptest::bool::ANY, (MAX_FORWARD_GAP + 1)..=(u16::MAX - MAX_FORWARD_GAP), proptest::num::u32::ANY, 1u16..40),
                1..8,
            )
        ) {
            let t0 = Instant::now();
            let mut f = TrackForwarder::new(Codec::Opus, &[0]);
            f.add_subscription(spec(1, LayerWish::default()));
            let mut out: Vec<(u16, u32)> = Vec::new();
            let (mut sent, mut tick, mut ssrc, mut seq) = (0usize, 0u64, 7u32, 1000u16);
            for (new_ssrc, jump, ts, count) in runs {
                if new_ssrc {
                    ssrc += 1;
                }
                seq = seq.wrapping_add(jump);
                for i in 0..count {
                    tick += 1;
                    let now = t0 + Duration::from_millis(tick * 20);
                    let pkt = opus(seq, ts.wrapping_add(u32::from(i) * 960), ssrc, now);
                    f.on_packet(now, 0, &pkt, |_, rw| out.push((rw.seq, rw.timestamp)));
                    seq = seq.wrapping_add(1);
                    sent += 1;
                }
            }
            proptest::prop_assert_eq!(out.len(), sent);
            for w in out.windows(2) {
                proptest::prop_assert_eq!(w[1].0, w[0].0.wrapping_add(1));
                proptest::prop_assert!(w[1].1.wrapping_sub(w[0].1) < 0x8000_0000, "timestamp went backwards: {:?}", w);
            }
        }
    }
}
