//! The forwarding core as one media worker drives it (`sfu::forwarder::TrackForwarder` with its
//! `SimulcastSelector`s and `StreamRewriter`s): an arbitrary sequence of publisher packets on
//! any layer (in order, lost, reordered, duplicated, restarted, or raw bytes), subscriptions
//! coming and going, layer wishes, bandwidth shares, ticks, NACKs, picture loss, time passing,
//! the publisher's sender reports, and the worker reordering the layers (a browser that listed
//! them highest first: the publisher's streams then arrive under new layer numbers).
//! Besides never panicking, it checks what subscribers see:
//!
//! - **Keyframe-gated switches**: a video subscription starts, changes layer or resumes after
//!   a publisher restart only at the first packet of a keyframe of the new layer (or stream),
//!   that packet is forwarded to it, and it receives only packets of the layer it is on.
//! - **Contiguous sequence numbers**: the first packet carries the initial sequence number and
//!   timestamp; a segment (start, switch or publisher restart) continues right after the last
//!   output; within a segment, output sequence numbers move exactly as the source's do (upstream
//!   loss stays a gap of the same size, nothing else does) and reordered packets keep their
//!   offset. Timestamps never go backwards; VP8 picture IDs continue across segments.
//! - **NACKs**: every asked number is accounted for once, a resent packet carries the asked
//!   output sequence number and is the source packet that number was forwarded from.
//! - **Keyframe requests** upstream: only for layers that exist; an unanswered one stands for a
//!   second, after an answer (a keyframe of the layer) the next may follow 100 ms later, and
//!   picture loss asks at most once a second.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard::rtp::{RtpBuilder, vp8};
use switchboard::sfu::forwarder::{ResendPolicy, SenderClock, SubscriptionSpec, TrackForwarder};
use switchboard::sfu::nack::RetransmitBudget;
use switchboard::sfu::packet::{Codec, MediaKind, MediaPacket};
use switchboard::sfu::rewriter::Rewrite;
use switchboard::sfu::simulcast::{ANSWERED_REQUEST_INTERVAL, KEYFRAME_REQUEST_INTERVAL, LayerWish};

/// How far a source sequence number may jump before the rewriter treats it as a restart
/// (`rewriter::MAX_FORWARD_GAP`).
const MAX_FORWARD_GAP: u16 = 3000;

#[derive(Arbitrary, Debug)]
struct Input {
    codec: CodecChoice,
    /// Frame heights per layer, lowest first (`TrackForwarder::new` clamps the count to 1..=4).
    heights: Vec<u16>,
    /// Where each layer's sequence numbers, timestamps and picture IDs start.
    starts: [(u16, u32, u16); 4],
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum CodecChoice {
    Opus,
    Vp8,
    H264,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The publisher sends a packet on `layer`.
    Packet {
        layer: u8,
        step: SeqStep,
        ts_step: u16,
        keyframe: bool,
        frame_start: bool,
        size: u8,
    },
    /// Bytes that parse as RTP, as a publisher could send them.
    Raw {
        layer: u8,
        bytes: Vec<u8>,
    },
    Advance {
        ms: u16,
    },
    Tick,
    Subscribe {
        id: u8,
        wish: Wish,
        seq: u16,
        ts: u32,
        pic: Option<u16>,
        tl0: Option<u8>,
    },
    Unsubscribe {
        id: u8,
    },
    SetWish {
        id: u8,
        wish: Wish,
    },
    Bandwidth {
        id: u8,
        kbps: Option<u16>,
    },
    /// A NACK naming output sequence numbers `back` behind the last one sent, or any number.
    Nack {
        id: u8,
        back: Vec<u16>,
        any: Vec<u16>,
        guard_ms: u8,
        rate_kbps: u16,
    },
    PictureLoss {
        id: u8,
    },
    Report {
        id: u8,
    },
    /// A sender report of the publisher on `layer`, received `back_ms` ago.
    SenderReport {
        layer: u8,
        rtp: u32,
        back_ms: u16,
    },
    /// The worker renumbers the layers: permutation number `perm` of them.
    Reorder {
        perm: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SeqStep {
    Next,
    /// Lose this many packets first.
    Skip(u8),
    /// A late packet: this many behind the newest.
    Back(u8),
    /// The newest again (a duplicate or the publisher's own retransmission).
    Same,
    /// Anywhere (a restart, or garbage).
    Jump(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Wish {
    max_layer: Option<u8>,
    max_height: Option<u16>,
}

impl From<Wish> for LayerWish {
    fn from(w: Wish) -> Self {
        LayerWish { max_layer: w.max_layer.map(|l| l % 5), max_height: w.max_height.map(u32::from) }
    }
}

/// The publisher's state per layer.
#[derive(Debug, Clone, Copy)]
struct Layer {
    seq: u16,
    ts: u32,
    pic: u16,
}

/// What the harness knows of one subscription: what was sent, to check what comes next.
#[derive(Debug)]
struct Sub {
    initial: Rewrite,
    /// The newest output so far: sequence number, timestamp and the source sequence number it
    /// came from (the rewriter's `highest_*`).
    head: Option<(u16, u32, u16)>,
    /// The picture ID of the newest output that had one.
    last_pic: Option<u16>,
    /// Output sequence number -> (layer, source sequence number) of what was forwarded.
    sent: HashMap<u16, (u8, u16)>,
    budget: RetransmitBudget,
    /// Its layer restarted (a new SSRC or a far sequence jump): the next packet it gets starts
    /// a new segment.
    restart_pending: bool,
}

struct Harness {
    codec: Codec,
    f: TrackForwarder<u64>,
    layers: [Layer; 4],
    subs: HashMap<u64, Sub>,
    now: Instant,
    /// When each layer's last keyframe request was let through, and whether a keyframe of the
    /// layer arrived since (the request was answered).
    requested: [(Option<Instant>, bool); 4],
    /// The forwarder's layer number for each of the publisher's streams (they change with
    /// `Op::Reorder`).
    map: [u8; 4],
}

fuzz_target!(|input: Input| {
    let codec = match input.codec {
        CodecChoice::Opus => Codec::Opus,
        CodecChoice::Vp8 => Codec::Vp8,
        CodecChoice::H264 => Codec::H264,
    };
    // Audio has one layer (the signaling layer refuses more).
    let heights: Vec<u32> = match codec.kind() {
        MediaKind::Audio => vec![0],
        MediaKind::Video => input.heights.iter().take(6).map(|&h| u32::from(h)).collect(),
    };
    let t0 = Instant::now();
    let mut h = Harness {
        codec,
        f: TrackForwarder::new(codec, &heights),
        layers: input.starts.map(|(seq, ts, pic)| Layer { seq, ts, pic: pic & 0x7fff }),
        subs: HashMap::new(),
        now: t0,
        requested: [(None, false); 4],
        map: [0, 1, 2, 3],
    };
    for op in input.ops.into_iter().take(2000) {
        h.apply(op);
    }
});

/// `FUZZ_DEBUG=1` traces every operation and what was forwarded (to read a crash).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

impl Harness {
    fn apply(&mut self, op: Op) {
        if debug() {
            eprintln!("{op:?}");
        }
        match op {
            Op::Packet { layer, step, ts_step, keyframe, frame_start, size } => {
                let layer = layer % 5; // 4 does not exist
                let pkt = self.synthetic(layer, step, ts_step, keyframe, frame_start, size);
                let numbered = self.map.get(usize::from(layer)).copied().unwrap_or(layer);
                self.packet(numbered, &pkt);
            }
            Op::Raw { layer, bytes } => {
                if let Ok(pkt) = MediaPacket::parse(Bytes::from(bytes), self.codec, Some(1), self.now) {
                    self.packet(layer % 5, &pkt);
                }
            }
            Op::Advance { ms } => self.now += Duration::from_millis(u64::from(ms)),
            Op::Tick => {
                let mut keyframes = Vec::new();
                self.f.tick(self.now, &mut keyframes);
                let mut seen = [false; 4];
                for layer in keyframes {
                    let l = usize::from(layer);
                    assert!(l < self.f.layer_count(), "a keyframe request for layer {layer} that does not exist");
                    assert!(!seen[l], "layer {layer} requested twice in one tick");
                    seen[l] = true;
                    self.keyframe_requested(layer, ANSWERED_REQUEST_INTERVAL);
                }
                assert_eq!(self.f.drain_layer_changes().count(), 0, "a tick forwards nothing");
            }
            Op::Subscribe { id, wish, seq, ts, pic, tl0 } => {
                let id = u64::from(id % 8);
                if self.subs.contains_key(&id) {
                    return; // the worker's subscription IDs are unique
                }
                let initial = Rewrite { seq, timestamp: ts, picture_id: pic.map(|p| p & 0x7fff), tl0_pic_idx: tl0 };
                self.f.add_subscription(SubscriptionSpec { id, sink: id, out_ssrc: 7, initial, wish: wish.into() });
                let sub = Sub {
                    initial,
                    head: None,
                    last_pic: None,
                    sent: HashMap::new(),
                    budget: Default::default(),
                    restart_pending: false,
                };
                self.subs.insert(id, sub);
            }
            Op::Unsubscribe { id } => {
                let id = u64::from(id % 8);
                let removed = self.f.remove_subscription(id);
                assert_eq!(removed.is_some(), self.subs.remove(&id).is_some());
            }
            Op::SetWish { id, wish } => self.f.set_wish(u64::from(id % 8), wish.into()),
            Op::Bandwidth { id, kbps } => self.f.set_bandwidth(u64::from(id % 8), kbps.map(|k| u64::from(k) * 1000)),
            Op::Nack { id, back, any, guard_ms, rate_kbps } => {
                self.nack(u64::from(id % 8), back, any, guard_ms, rate_kbps)
            }
            Op::PictureLoss { id } => {
                if let Some(layer) = self.f.on_picture_loss(self.now, u64::from(id % 8)) {
                    assert!(usize::from(layer) < self.f.layer_count());
                    self.keyframe_requested(layer, KEYFRAME_REQUEST_INTERVAL);
                }
            }
            Op::SenderReport { layer, rtp, back_ms } => {
                let layer = layer % 5;
                let at = self.now.checked_sub(Duration::from_millis(u64::from(back_ms))).unwrap_or(self.now);
                self.f.on_sender_clock(layer, SenderClock { rtp, at });
                for ts in [rtp, rtp.wrapping_add(90_000), rtp.wrapping_sub(90_000), rtp ^ 0x8000_0000] {
                    assert!(self.f.capture_time(layer, ts, self.now) <= self.now, "a capture time in the future");
                }
            }
            Op::Reorder { perm } => self.reorder(perm),
            Op::Report { id } => {
                let id = u64::from(id % 8);
                let report = self.f.sender_report(id, self.now);
                let sub = self.subs.get(&id);
                assert_eq!(report.is_some(), sub.is_some_and(|s| s.head.is_some()), "a report once something was sent");
                let want = self.f.probe_want(self.now, id);
                assert!(sub.is_some() || !want.held_back, "only a subscription is held back");
                let _ = self.f.layer_statuses(self.now);
            }
        }
    }

    /// The next packet of the publisher's `layer`.
    fn synthetic(
        &mut self,
        layer: u8,
        step: SeqStep,
        ts_step: u16,
        keyframe: bool,
        start: bool,
        size: u8,
    ) -> MediaPacket {
        let l = &mut self.layers[usize::from(layer).min(3)];
        let seq = match step {
            SeqStep::Next => l.seq.wrapping_add(1),
            SeqStep::Skip(n) => l.seq.wrapping_add(2 + u16::from(n)),
            SeqStep::Back(n) => l.seq.wrapping_sub(1 + u16::from(n)),
            SeqStep::Same => l.seq,
            SeqStep::Jump(s) => s,
        };
        // Late packets and duplicates do not move the publisher on.
        let in_order = !matches!(step, SeqStep::Back(_) | SeqStep::Same);
        if in_order {
            l.seq = seq;
            l.ts = l.ts.wrapping_add(u32::from(ts_step));
            if start {
                l.pic = (l.pic + 1) & 0x7fff;
            }
        }
        let body = usize::from(size) * 6;
        let mut payload = Vec::with_capacity(body + 16);
        match self.codec {
            Codec::Vp8 => {
                vp8::synthetic_payload(
                    l.pic,
                    l.pic as u8,
                    start || keyframe,
                    keyframe,
                    (320, 180 << layer.min(3)),
                    body,
                    &mut payload,
                );
            }
            Codec::H264 => {
                payload.push(if keyframe { 0x65 } else { 0x41 });
                payload.resize(body + 1, 0xab);
            }
            Codec::Opus => payload.resize(body + 1, 0xfc),
        }
        let raw = RtpBuilder {
            payload_type: 96,
            seq,
            timestamp: l.ts,
            ssrc: u32::from(layer) + 1,
            marker: start,
            extensions: if self.codec == Codec::Opus { vec![(1, vec![size & 0x7f])] } else { vec![] },
        }
        .build(&payload);
        MediaPacket::parse(Bytes::from(raw), self.codec, Some(1), self.now).expect("a synthetic packet parses")
    }

    fn packet(&mut self, layer: u8, pkt: &MediaPacket) {
        let before: HashMap<u64, Option<u8>> = self.f.subscriptions().iter().map(|s| (s.id, s.layer())).collect();
        let mut got: Vec<(u64, Rewrite)> = Vec::new();
        let report = self.f.on_packet(self.now, layer, pkt, |sub, rw| got.push((sub.id, *rw)));
        assert_eq!(report.forwarded as usize, got.len());
        let video = self.codec.kind() == MediaKind::Video;
        if let Some(r) = self.requested.get_mut(usize::from(layer)) {
            r.1 |= pkt.keyframe_start;
        }
        if report.restarted {
            // The layer's subscriptions start a new segment at their next packet: audio at
            // this one, video at a keyframe of the new stream.
            for (id, sub) in &mut self.subs {
                if before[id] == Some(layer) {
                    sub.restart_pending = true;
                }
            }
        }
        let changes: Vec<_> = self.f.drain_layer_changes().collect();
        if debug() {
            eprintln!("  layer {layer} seq {} key {}: {got:?} {changes:?}", pkt.seq, pkt.keyframe_start);
        }
        for c in &changes {
            assert!(pkt.keyframe_start, "a switch at a packet that does not start a keyframe: {c:?}");
            assert_eq!(c.to, layer, "a switch to another layer than the packet's: {c:?}");
            assert!(got.iter().any(|(id, _)| *id == c.subscription), "the switching packet is not forwarded");
        }
        let after: HashMap<u64, Option<u8>> = self.f.subscriptions().iter().map(|s| (s.id, s.layer())).collect();
        if video && !pkt.keyframe_start {
            // A delta frame that would restart a subscription's segment is not forwarded; its
            // selector waits for a keyframe, which then starts a new segment on the same layer.
            for (id, sub) in &mut self.subs {
                let skipped = !got.iter().any(|(g, _)| g == id);
                if skipped && before[id] == Some(layer) && sub.head.is_some_and(|h| restarted(h.2, pkt.seq)) {
                    sub.restart_pending = true;
                }
            }
        }
        for (id, rw) in got {
            let sub = self.subs.get_mut(&id).expect("forwarded to a subscription that exists");
            if video {
                assert_eq!(after[&id], Some(layer), "a video packet of another layer than the subscription's");
            }
            let started = changes.iter().any(|c| c.subscription == id) || before[&id].is_none() || sub.restart_pending;
            sub.restart_pending = false;
            if video && started {
                assert!(pkt.keyframe_start, "a video segment starts at a delta frame");
            }
            let pic_width = pkt.vp8.and_then(|d| d.picture_id).map(|(_, width, _)| width);
            let mask = |width: u8| if width == 15 { 0x7fff } else { 0x7f };
            match sub.head {
                None => {
                    assert!(started);
                    assert_eq!((rw.seq, rw.timestamp), (sub.initial.seq, sub.initial.timestamp), "the first packet");
                    if let (Some(initial), Some(width)) = (sub.initial.picture_id, pic_width) {
                        assert_eq!(rw.picture_id, Some(initial & mask(width)), "the first picture ID");
                    }
                    sub.last_pic = rw.picture_id.or(sub.initial.picture_id);
                }
                Some((out, ts, src)) if started || restarted(src, pkt.seq) => {
                    assert!(!video || pkt.keyframe_start, "a video segment starts at a delta frame");
                    assert_eq!(rw.seq, out.wrapping_add(1), "a new segment continues right after the last output");
                    let step = rw.timestamp.wrapping_sub(ts);
                    assert!(
                        (1..0x8000_0000).contains(&step),
                        "a new segment's timestamp moves on: {ts} -> {}",
                        rw.timestamp
                    );
                    if let (Some(last), Some(width)) = (sub.last_pic, pic_width) {
                        assert_eq!(rw.picture_id, Some(last.wrapping_add(1) & mask(width)), "picture IDs continue");
                    }
                    sub.last_pic = rw.picture_id.or(sub.last_pic.map(|p| p.wrapping_add(1)));
                }
                Some((out, ts, src)) => {
                    let ahead = pkt.seq.wrapping_sub(src);
                    if ahead != 0 && ahead < 0x8000 {
                        assert_eq!(rw.seq.wrapping_sub(out), ahead, "output moved unlike the source within a segment");
                        assert!(rw.timestamp.wrapping_sub(ts) < 0x8000_0000, "the timestamp went backwards");
                        // Numbers skipped over (upstream loss) were not sent in this round of 2^16.
                        let mut skipped = out.wrapping_add(1);
                        while skipped != rw.seq {
                            sub.sent.remove(&skipped);
                            skipped = skipped.wrapping_add(1);
                        }
                        if rw.picture_id.is_some() {
                            sub.last_pic = rw.picture_id;
                        }
                    } else {
                        // A late packet or a duplicate keeps its place in the segment.
                        assert_eq!(out.wrapping_sub(rw.seq), src.wrapping_sub(pkt.seq), "a late packet moved");
                        assert!(src.wrapping_sub(pkt.seq) < 2048, "too old to forward");
                        sub.sent.insert(rw.seq, (layer, pkt.seq));
                        continue;
                    }
                }
            }
            sub.head = Some((rw.seq, rw.timestamp, pkt.seq));
            sub.sent.insert(rw.seq, (layer, pkt.seq));
        }
    }

    fn nack(&mut self, id: u64, back: Vec<u16>, any: Vec<u16>, guard_ms: u8, rate_kbps: u16) {
        let Some(sub) = self.subs.get_mut(&id) else {
            let answer = self.f.on_nack(
                id,
                any.into_iter(),
                policy(self.now, guard_ms, rate_kbps, &mut RetransmitBudget::default()),
                |_, _, _| panic!("resent to a subscription that does not exist"),
            );
            assert_eq!(answer.sent, 0);
            return;
        };
        let newest = sub.head.map_or(0, |h| h.0);
        let mut asked: Vec<u16> = back.iter().take(64).map(|b| newest.wrapping_sub(*b % 4096)).collect();
        asked.extend(any.iter().take(16));
        let mut resent: Vec<(u16, u16, u32)> = Vec::new();
        let mut budget = sub.budget;
        let answer = self.f.on_nack(
            id,
            asked.iter().copied(),
            policy(self.now, guard_ms, rate_kbps, &mut budget),
            |s, pkt, rw| {
                assert_eq!(s.id, id);
                resent.push((rw.seq, pkt.seq, pkt.ssrc));
            },
        );
        sub.budget = budget;
        assert_eq!(
            (answer.sent + answer.missed + answer.too_recent + answer.over_budget) as usize,
            asked.len(),
            "every asked number is accounted for once: {answer:?}"
        );
        assert_eq!(answer.sent as usize, resent.len());
        let mut pending = asked.clone();
        for (out, src, _) in resent {
            let i = pending.iter().position(|&a| a == out).expect("a resent packet carries an asked sequence number");
            pending.swap_remove(i);
            if let Some(&(_, sent_src)) = sub.sent.get(&out) {
                assert_eq!(src, sent_src, "resent another source packet than was forwarded as {out}");
            }
        }
    }

    /// A keyframe request for `layer` went upstream now: an unanswered one a second after the
    /// last, an answered one `answered` after it.
    /// Renumber the layers with permutation number `perm` (of `layer_count()!`), as the worker
    /// does: every stream keeps its state under its new number, and every subscription that has
    /// sent something starts a new segment at its next packet (a keyframe, for video).
    fn reorder(&mut self, perm: u8) {
        let n = self.f.layer_count();
        if n < 2 {
            return;
        }
        let mut left: Vec<usize> = (0..n).collect();
        let mut rest = usize::from(perm);
        let mut order = Vec::with_capacity(n);
        for k in (1..=n).rev() {
            let f: usize = (1..k).product();
            order.push(left.remove((rest / f) % k));
            rest %= f;
        }
        self.f.reorder_layers(&order);
        let mut new_index = [0u8; 4];
        for (i, &o) in order.iter().enumerate() {
            new_index[o] = i as u8;
        }
        for m in self.map.iter_mut().take(n) {
            *m = new_index[usize::from(*m)];
        }
        let requested = self.requested;
        for (i, &o) in order.iter().enumerate() {
            self.requested[i] = requested[o];
        }
        for sub in self.subs.values_mut() {
            for (layer, _) in sub.sent.values_mut() {
                if let Some(&l) = new_index.get(usize::from(*layer)).filter(|_| usize::from(*layer) < n) {
                    *layer = l;
                }
            }
            if sub.head.is_some() && self.codec.kind() == MediaKind::Video {
                sub.restart_pending = true;
            }
        }
        if debug() {
            eprintln!("  reordered {order:?}, streams now {:?}", self.map);
        }
    }

    fn keyframe_requested(&mut self, layer: u8, answered: Duration) {
        let (last, keyframe_since) = &mut self.requested[usize::from(layer)];
        if let Some(t) = *last {
            let since = self.now.saturating_duration_since(t);
            let wait = if *keyframe_since { answered } else { KEYFRAME_REQUEST_INTERVAL };
            assert!(since >= wait, "layer {layer} requested again after {since:?} (answered: {keyframe_since})");
        }
        *last = Some(self.now);
        *keyframe_since = false;
    }
}

/// Whether the rewriter treats `seq` after `src` as a publisher restart.
fn restarted(src: u16, seq: u16) -> bool {
    let ahead = seq.wrapping_sub(src);
    ahead < 0x8000 && ahead > MAX_FORWARD_GAP
}

fn policy(now: Instant, guard_ms: u8, rate_kbps: u16, budget: &mut RetransmitBudget) -> ResendPolicy<'_> {
    ResendPolicy {
        now,
        guard: Duration::from_millis(u64::from(guard_ms)),
        budget,
        rate_bps: u64::from(rate_kbps) * 1000,
    }
}
