//! `StreamRewriter`: turns the packets of whichever simulcast layer is being forwarded into one
//! clean stream for a subscriber: sequence numbers contiguous across layer switches, timestamps
//! that never go backwards, and VP8 picture ID / TL0PICIDX continuing without jumps.
//!
//! Each stretch of forwarding from one layer is a *segment* with fixed offsets
//! (`out = source + offset`). A switch starts a new segment right after the last output. Old
//! segments are kept briefly so a NACKed output sequence number can be mapped back to the source
//! packet it came from.

use crate::rtp::vp8::Vp8Descriptor;
use std::collections::VecDeque;
use std::time::Instant;

/// How far a source sequence number may jump forward before it is treated as a stream restart.
pub(crate) const MAX_FORWARD_GAP: u16 = 3000;
/// How many past segments to remember for retransmissions.
const SEGMENT_HISTORY: usize = 8;
/// How far behind the newest output a retransmission may reach.
const RETRANSMIT_WINDOW: u16 = 2048;

/// The output values for one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub seq: u16,
    pub timestamp: u32,
    /// New picture ID (in the packet's own field width) when the packet has one.
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

/// The fixed offsets of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub layer: u8,
    seq_offset: u16,
    ts_offset: u32,
    pic_offset: u16,
    tl0_offset: u8,
    /// First source sequence number of the segment.
    src_start: u16,
    /// Position of the segment's first output in the whole stream (its sequence number without
    /// the wrap at 2^16): a segment may go on for more than 2^16 packets, so NACKs are mapped
    /// back by position, not by wrapped sequence number.
    out_index: u64,
}

impl Segment {
    fn apply(&self, seq: u16, ts: u32, vp8: Option<&Vp8Descriptor>) -> Rewrite {
        Rewrite {
            seq: seq.wrapping_add(self.seq_offset),
            timestamp: ts.wrapping_add(self.ts_offset),
            picture_id: vp8.and_then(|d| d.picture_id).map(|(pic, width, _)| {
                let mask = if width == 15 { 0x7fff } else { 0x7f };
                pic.wrapping_add(self.pic_offset) & mask
            }),
            tl0_pic_idx: vp8.and_then(|d| d.tl0_pic_idx).map(|(tl0, _)| tl0.wrapping_add(self.tl0_offset)),
        }
    }
}

/// Where the stream stands now.
#[derive(Debug, Clone, Copy)]
struct Head {
    segment: Segment,
    highest_src: u16,
    highest_out: u16,
    /// Position of `highest_out` in the whole stream (see `Segment::out_index`).
    highest_index: u64,
    /// Largest output timestamp so far (timestamps never go below it).
    max_out_ts: u32,
    last_out_pic: Option<u16>,
    last_out_tl0: Option<u8>,
    last_forward_at: Instant,
}

/// Rewrites one subscriber's view of a (possibly simulcast) track.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    clock_rate: u32,
    initial: Rewrite,
    head: Option<Head>,
    history: VecDeque<Segment>,
}

/// What happened to a packet offered to the rewriter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forward(Rewrite),
    /// From before the current segment began (or too old): not forwarded.
    Stale,
}

impl StreamRewriter {
    /// `initial` gives the first output sequence number, timestamp and picture IDs (random in
    /// production, so a subscriber cannot infer anything from them).
    pub fn new(clock_rate: u32, initial: Rewrite) -> Self {
        Self { clock_rate: clock_rate.max(1), initial, head: None, history: VecDeque::with_capacity(SEGMENT_HISTORY) }
    }

    /// The track's layers were renumbered: the segments forwarded so far (the current one and
    /// those kept for retransmissions) now name their layer by `new_index[old]`.
    pub fn relabel_layers(&mut self, new_index: &[u8]) {
        let relabel = |s: &mut Segment| s.layer = new_index.get(usize::from(s.layer)).copied().unwrap_or(s.layer);
        if let Some(h) = self.head.as_mut() {
            relabel(&mut h.segment);
        }
        self.history.iter_mut().for_each(relabel);
    }

    /// The layer being forwarded and its timestamp offset (output = source + offset).
    pub fn ts_offset(&self) -> Option<(u8, u32)> {
        self.head.map(|h| (h.segment.layer, h.segment.ts_offset))
    }

    /// The layer being forwarded, if any.
    pub fn layer(&self) -> Option<u8> {
        self.head.map(|h| h.segment.layer)
    }

    /// Whether `rewrite` would take `seq` for a restart of the source (a forward jump of more
    /// than `MAX_FORWARD_GAP` from the newest packet) and start a new segment at it.
    pub fn is_restart(&self, seq: u16) -> bool {
        self.head.is_some_and(|h| {
            let ahead = seq.wrapping_sub(h.highest_src);
            ahead > MAX_FORWARD_GAP && ahead < 0x8000
        })
    }

    /// The highest output sequence number and timestamp so far (for sender reports).
    pub fn last_output(&self) -> Option<(u16, u32, Instant)> {
        self.head.map(|h| (h.highest_out, h.max_out_ts, h.last_forward_at))
    }

    /// Start a new segment at this packet, continuing the output right after what was sent so
    /// far. Call it for the first packet ever, for the keyframe that completes a layer switch,
    /// and after a publisher restart.
    pub fn start_segment(
        &mut self,
        now: Instant,
        layer: u8,
        seq: u16,
        ts: u32,
        vp8: Option<&Vp8Descriptor>,
    ) -> Rewrite {
        let out_index = self.head.map_or(0, |h| h.highest_index + 1);
        let (out_seq, out_ts, out_pic, out_tl0) = match &self.head {
            None => (self.initial.seq, self.initial.timestamp, self.initial.picture_id, self.initial.tl0_pic_idx),
            Some(h) => {
                let elapsed = now.saturating_duration_since(h.last_forward_at);
                let ticks =
                    (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000).clamp(1, u128::from(u32::MAX / 2));
                (
                    h.highest_out.wrapping_add(1),
                    h.max_out_ts.wrapping_add(ticks as u32),
                    h.last_out_pic.map(|p| p.wrapping_add(1)),
                    h.last_out_tl0.map(|t| t.wrapping_add(1)),
                )
            }
        };
        let pic = vp8.and_then(|d| d.picture_id);
        let tl0 = vp8.and_then(|d| d.tl0_pic_idx);
        let segment = Segment {
            layer,
            seq_offset: out_seq.wrapping_sub(seq),
            ts_offset: out_ts.wrapping_sub(ts),
            pic_offset: match (pic, out_pic) {
                (Some((p, _, _)), Some(o)) => o.wrapping_sub(p),
                _ => 0,
            },
            tl0_offset: match (tl0, out_tl0) {
                (Some((t, _)), Some(o)) => o.wrapping_sub(t),
                _ => 0,
            },
            src_start: seq,
            out_index,
        };
        if self.history.len() == SEGMENT_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(segment);
        let rw = segment.apply(seq, ts, vp8);
        self.head = Some(Head {
            segment,
            highest_src: seq,
            highest_out: rw.seq,
            highest_index: out_index,
            max_out_ts: rw.timestamp,
            last_out_pic: rw.picture_id.or(out_pic),
            last_out_tl0: rw.tl0_pic_idx.or(out_tl0),
            last_forward_at: now,
        });
        rw
    }

    /// Rewrite a packet of the layer currently forwarded. Restarts (a large forward jump in the
    /// source sequence) start a new segment so the output stays contiguous.
    pub fn rewrite(&mut self, now: Instant, seq: u16, ts: u32, vp8: Option<&Vp8Descriptor>) -> Outcome {
        let Some(head) = self.head.as_mut() else {
            return Outcome::Stale;
        };
        let ahead = seq.wrapping_sub(head.highest_src);
        if ahead != 0 && ahead < 0x8000 {
            if ahead > MAX_FORWARD_GAP {
                let layer = head.segment.layer;
                return Outcome::Forward(self.start_segment(now, layer, seq, ts, vp8));
            }
            let mut rw = head.segment.apply(seq, ts, vp8);
            if rw.timestamp.wrapping_sub(head.max_out_ts) >= 0x8000_0000 {
                // The source timestamp went backwards: hold the output at its maximum.
                head.segment.ts_offset = head.max_out_ts.wrapping_sub(ts);
                rw.timestamp = head.max_out_ts;
            }
            head.highest_src = seq;
            head.highest_out = rw.seq;
            head.highest_index += u64::from(ahead);
            head.max_out_ts = rw.timestamp;
            head.last_forward_at = now;
            if rw.picture_id.is_some() {
                head.last_out_pic = rw.picture_id;
            }
            if rw.tl0_pic_idx.is_some() {
                head.last_out_tl0 = rw.tl0_pic_idx;
            }
            if let Some(last) = self.history.back_mut() {
                *last = head.segment;
            }
            return Outcome::Forward(rw);
        }
        // Older than (or equal to) the newest: a reordered packet or a retransmission. Forward it
        // only if it belongs to the current segment.
        let since_start = seq.wrapping_sub(head.segment.src_start);
        let behind = head.highest_src.wrapping_sub(seq);
        if since_start < 0x8000 && behind < RETRANSMIT_WINDOW {
            Outcome::Forward(head.segment.apply(seq, ts, vp8))
        } else {
            Outcome::Stale
        }
    }

    /// Map an output sequence number a subscriber NACKed back to its source: the segment it
    /// was forwarded in and the source sequence number.
    pub fn source_of(&self, out_seq: u16) -> Option<(Segment, u16)> {
        let head = self.head.as_ref()?;
        let behind = head.highest_out.wrapping_sub(out_seq);
        if behind >= RETRANSMIT_WINDOW {
            return None;
        }
        let index = head.highest_index.checked_sub(u64::from(behind))?;
        let segment = self.history.iter().rev().find(|s| s.out_index <= index)?;
        Some((*segment, out_seq.wrapping_sub(segment.seq_offset)))
    }

    /// Rewrite a retransmitted source packet with the offsets of the segment it was sent in.
    pub fn rewrite_retransmission(segment: &Segment, seq: u16, ts: u32, vp8: Option<&Vp8Descriptor>) -> Rewrite {
        segment.apply(seq, ts, vp8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn initial(seq: u16) -> Rewrite {
        Rewrite { seq, timestamp: 1000, picture_id: Some(100), tl0_pic_idx: Some(10) }
    }

    fn vp8(pic: u16, tl0: u8) -> Vp8Descriptor {
        Vp8Descriptor { picture_id: Some((pic, 15, 2)), tl0_pic_idx: Some((tl0, 4)), ..Default::default() }
    }

    #[test]
    fn switch_continues_sequence_timestamp_and_picture_id() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(90_000, initial(65534));
        let a = r.start_segment(t0, 0, 500, 9000, Some(&vp8(7, 3)));
        assert_eq!((a.seq, a.timestamp, a.picture_id, a.tl0_pic_idx), (65534, 1000, Some(100), Some(10)));
        let Outcome::Forward(b) = r.rewrite(t0, 501, 9000, Some(&vp8(7, 3))) else { panic!() };
        assert_eq!(b.seq, 65535);
        let Outcome::Forward(c) = r.rewrite(t0 + Duration::from_millis(33), 502, 12000, Some(&vp8(8, 4))) else {
            panic!()
        };
        assert_eq!((c.seq, c.timestamp, c.picture_id, c.tl0_pic_idx), (0, 4000, Some(101), Some(11)));
        // Switch to layer 2 whose numbers are unrelated, 33 ms later.
        let d = r.start_segment(t0 + Duration::from_millis(66), 2, 40_000, 777, Some(&vp8(30_000, 200)));
        assert_eq!(d.seq, 1);
        assert_eq!(d.timestamp, 4000 + 2970);
        assert_eq!((d.picture_id, d.tl0_pic_idx), (Some(102), Some(12)));
        // Reordered packets from before the new segment began are stale.
        assert_eq!(r.rewrite(t0, 39_999, 700, None), Outcome::Stale);
    }

    #[test]
    fn retransmissions_map_back_across_segments() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(90_000, initial(10));
        r.start_segment(t0, 0, 100, 0, None);
        for s in 101..110 {
            r.rewrite(t0, s, 0, None);
        }
        r.start_segment(t0, 1, 5000, 0, None); // out 20
        for s in 5001..5005 {
            r.rewrite(t0, s, 0, None);
        }
        let (seg, src) = r.source_of(15).expect("in first segment");
        assert_eq!((seg.layer, src), (0, 105));
        let (seg, src) = r.source_of(22).expect("in second segment");
        assert_eq!((seg.layer, src), (1, 5002));
        assert_eq!(StreamRewriter::rewrite_retransmission(&seg, src, 0, None).seq, 22);
        assert!(r.source_of(25).is_none() || r.source_of(25).map(|(s, _)| s.layer) == Some(1));
        assert!(r.source_of(10u16.wrapping_sub(3000)).is_none());
    }

    /// A segment that goes on for more than 2^16 packets (an hour of video without a switch):
    /// its wrapped sequence numbers came round again, and NACKs used to be mapped to the
    /// segment before it (resending a packet of the other layer, or nothing).
    #[test]
    fn retransmissions_map_back_in_a_segment_longer_than_2_16() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(90_000, initial(10));
        r.start_segment(t0, 0, 100, 0, None);
        for s in 101..700 {
            r.rewrite(t0, s, 0, None);
        }
        let mut src = 5000u16;
        r.start_segment(t0, 1, src, 0, None);
        for _ in 0..65_536 + 20 {
            src = src.wrapping_add(1);
            r.rewrite(t0, src, 0, None);
        }
        let (highest, _, _) = r.last_output().expect("forwarding");
        for behind in [0u16, 19, 20, 21, 500, 2047] {
            let (seg, from) = r.source_of(highest.wrapping_sub(behind)).expect("within the window");
            assert_eq!((seg.layer, from), (1, src.wrapping_sub(behind)), "{behind} behind");
        }
        assert!(r.source_of(highest.wrapping_sub(2048)).is_none());
    }

    #[test]
    fn publisher_restart_keeps_output_contiguous() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(48_000, initial(0));
        r.start_segment(t0, 0, 10, 0, None);
        let Outcome::Forward(rw) = r.rewrite(t0, 30_000, 5, None) else { panic!() };
        assert_eq!(rw.seq, 1);
    }

    /// One input event for the property test.
    #[derive(Debug, Clone)]
    enum Step {
        /// Deliver the next `n` packets of the current layer, in an order shuffled by `swap`.
        Packets { n: u8, swap: bool, drop_one: bool },
        /// Switch to another layer (with its own numbering).
        Switch,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                4 => (1u8..20, any::<bool>(), any::<bool>()).prop_map(|(n, swap, drop_one)| Step::Packets { n, swap, drop_one }),
                1 => Just(Step::Switch),
            ],
            1..40,
        )
    }

    proptest! {
        /// Output sequence numbers are contiguous modulo 2^16 across wrap-around, reordering,
        /// upstream drops and any sequence of layer switches: every number in the output range
        /// is either forwarded exactly once or corresponds to a packet lost upstream; timestamps
        /// of in-order packets never go backwards.
        #[test]
        fn output_is_contiguous_and_monotonic(
            start_out in any::<u16>(),
            layer_starts in prop::collection::vec((any::<u16>(), any::<u32>()), 4),
            steps in steps(),
        ) {
            let t0 = Instant::now();
            let mut r = StreamRewriter::new(90_000, Rewrite { seq: start_out, timestamp: 0, picture_id: None, tl0_pic_idx: None });
            let mut layer = 0usize;
            let mut next_src: Vec<u16> = layer_starts.iter().map(|(s, _)| *s).collect();
            let mut next_ts: Vec<u32> = layer_starts.iter().map(|(_, t)| *t).collect();
            let mut now = t0;
            let mut outputs: Vec<u16> = Vec::new();
            let mut lost = 0usize;
            let mut max_ts: Option<u32> = None;
            let mut highest: Option<u16> = None;
            let mut started = false;
            for step in steps {
                match step {
                    Step::Switch => {
                        layer = (layer + 1) % 4;
                        now += Duration::from_millis(20);
                        let (s, t) = (next_src[layer], next_ts[layer]);
                        next_src[layer] = s.wrapping_add(1);
                        next_ts[layer] = t.wrapping_add(3000);
                        let rw = r.start_segment(now, layer as u8, s, t, None);
                        if let Some(m) = max_ts { prop_assert!(rw.timestamp.wrapping_sub(m) < 0x8000_0000); }
                        max_ts = Some(rw.timestamp);
                        highest = Some(rw.seq);
                        outputs.push(rw.seq);
                        started = true;
                    }
                    Step::Packets { n, swap, drop_one } => {
                        if !started { continue; }
                        let mut batch: Vec<(u16, u32)> = (0..n).map(|_| {
                            let p = (next_src[layer], next_ts[layer]);
                            next_src[layer] = next_src[layer].wrapping_add(1);
                            next_ts[layer] = next_ts[layer].wrapping_add(3000);
                            p
                        }).collect();
                        if drop_one && batch.len() > 1 {
                            batch.remove(batch.len() / 2);
                            lost += 1;
                        }
                        if swap && batch.len() >= 2 {
                            let l = batch.len();
                            batch.swap(l - 1, l - 2);
                        }
                        for (s, t) in batch {
                            now += Duration::from_millis(1);
                            match r.rewrite(now, s, t, None) {
                                Outcome::Forward(rw) => {
                                    outputs.push(rw.seq);
                                    let in_order = highest.is_none_or(|h| rw.seq.wrapping_sub(h).wrapping_sub(1) < 0x8000);
                                    if in_order {
                                        highest = Some(rw.seq);
                                        if let Some(m) = max_ts {
                                            prop_assert!(rw.timestamp.wrapping_sub(m) < 0x8000_0000, "timestamp went back");
                                        }
                                        max_ts = Some(rw.timestamp);
                                    }
                                }
                                Outcome::Stale => prop_assert!(false, "a packet of the current segment was refused"),
                            }
                        }
                    }
                }
            }
            // Contiguity: relative to the first output, the outputs fill 0..len+lost with no
            // duplicates; exactly `lost` numbers are missing.
            if let Some(&first) = outputs.first() {
                let mut rel: Vec<u32> = outputs.iter().map(|s| u32::from(s.wrapping_sub(first))).collect();
                rel.sort_unstable();
                let before = rel.len();
                rel.dedup();
                prop_assert_eq!(rel.len(), before, "duplicate output sequence numbers");
                let span = rel.last().copied().unwrap_or(0) as usize + 1;
                prop_assert!(span >= rel.len());
                prop_assert!(span - rel.len() <= lost, "holes beyond the packets lost upstream");
            }
        }
    }
}
