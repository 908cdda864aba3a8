//! What the forwarder learns about a track's layers from outside the packets: the publisher's
//! sender reports (its media clock, for lip sync downstream) and the worker's renumbering of a
//! browser's simulcast layers that were not listed lowest first; and what a subscriber's
//! bandwidth estimator should be asked for, from its subscription's layers.

use super::{LayerState, Subscription, TrackForwarder};
use crate::sfu::simulcast::{MAX_LAYERS, SimulcastSelector};
use std::time::{Duration, Instant};

/// What a publisher's sender report says of a layer's media clock: RTP time `rtp` was its "now"
/// when the report arrived here (`at`). Audio and video of one publisher come from one wallclock,
/// so mapping each stream through its own reports keeps them in step (lip sync) whatever the
/// forwarding and layer switches do to their timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    pub rtp: u32,
    pub at: Instant,
}

/// What one subscription asks of its subscriber's bandwidth estimator (`TrackForwarder::probe_want`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeWant {
    /// The bitrate of the layer it wants when bandwidth holds it back, else of the layer above
    /// the one it receives (of its current layer on the top active layer; of the highest layer
    /// before it receives any).
    pub next_layer_bps: u64,
    /// Bandwidth, not its wish, holds it below the layer it wants.
    pub held_back: bool,
}

impl<S: Copy> TrackForwarder<S> {
    /// What `subscription` asks of its subscriber's bandwidth estimator now.
    pub fn probe_want(&mut self, now: Instant, subscription: u64) -> ProbeWant {
        let statuses = self.layer_statuses(now);
        let count = self.layers.len();
        let sub = self.subs.iter().find(|s| s.id == subscription);
        let selector = sub.and_then(|s| s.selector.as_ref());
        let held_back = selector.is_some_and(SimulcastSelector::limited_by_bandwidth);
        let layer = sub.and_then(Subscription::layer);
        // Held back: toward the layer it wants, in one step (the estimator caps each probe at
        // twice its estimate anyway); otherwise one layer up, or its own on the top one.
        let wished = selector.and_then(|sel| sel.wished(&statuses[..count])).map(usize::from);
        let next_layer_bps = match (layer.map(usize::from), wished) {
            (None, _) => statuses[..count].iter().map(|l| l.bitrate_bps).max().unwrap_or(0),
            (Some(current), Some(w)) if held_back && w > current => statuses[w].bitrate_bps,
            (Some(current), _) => {
                let next = (current + 1..count).find(|&i| statuses[i].active).unwrap_or(current);
                statuses[next].bitrate_bps
            }
        };
        ProbeWant { next_layer_bps, held_back }
    }

    /// The publisher's layers were not lowest first: layer `order[i]` becomes layer `i`. Each
    /// layer keeps its state (source, history, rate, height, clock), and what was forwarded keeps
    /// naming the layer it came from (NACKs are answered from the right history); every video
    /// subscription starts again at a keyframe of the layer its wish gives it now. Ignored
    /// unless `order` is a permutation of the layers.
    pub fn reorder_layers(&mut self, order: &[usize]) {
        let n = self.layers.len();
        let mut seen = [false; MAX_LAYERS];
        if order.len() != n || !order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true)) {
            return;
        }
        let mut old: Vec<Option<LayerState>> = std::mem::take(&mut self.layers).into_iter().map(Some).collect();
        self.layers = order.iter().filter_map(|&i| old[i].take()).collect();
        let requests = self.last_request;
        for (slot, &i) in self.last_request.iter_mut().zip(order) {
            *slot = requests[i];
        }
        let mut new_index = [0u8; MAX_LAYERS];
        for (i, &o) in order.iter().enumerate() {
            new_index[o] = i as u8;
        }
        for sub in &mut self.subs {
            sub.rewriter.relabel_layers(&new_index[..n]);
            if let Some(sel) = sub.selector.as_mut() {
                sel.reset();
            }
        }
    }

    /// A sender report of the publisher on `layer`.
    pub fn on_sender_clock(&mut self, layer: u8, clock: SenderClock) {
        if let Some(l) = self.layers.get_mut(usize::from(layer)) {
            l.clock = Some(clock);
        }
    }

    /// When the publisher captured the packet of `layer` with RTP timestamp `ts`, on this
    /// server's clock, by its latest sender report on that layer: the wallclock to report for it
    /// downstream. `now` without a report, and never later than `now`.
    pub fn capture_time(&self, layer: u8, ts: u32, now: Instant) -> Instant {
        let Some(c) = self.layers.get(usize::from(layer)).and_then(|l| l.clock) else { return now };
        let ticks = i64::from(ts.wrapping_sub(c.rtp) as i32);
        let micros = ticks * 1_000_000 / i64::from(self.codec.clock_rate().max(1));
        let at = if micros >= 0 {
            c.at.checked_add(Duration::from_micros(micros.unsigned_abs()))
        } else {
            c.at.checked_sub(Duration::from_micros(micros.unsigned_abs()))
        };
        at.map_or(now, |t| t.min(now))
    }

    /// Values for a sender report on `subscription`: (SSRC, RTP timestamp for `now`, packets,
    /// octets). `None` before anything was sent. The timestamp follows the publisher's clock
    /// (its sender reports on the layer being forwarded) when there is one, else the time the
    /// last packet was forwarded.
    pub fn sender_report(&self, subscription: u64, now: Instant) -> Option<(u32, u32, u32, u32)> {
        let sub = self.subs.iter().find(|s| s.id == subscription)?;
        let (_, ts, at) = sub.rewriter.last_output()?;
        let rate = u128::from(self.codec.clock_rate());
        let ticks_since = |at: Instant| (now.saturating_duration_since(at).as_micros() * rate / 1_000_000) as u32;
        let clocked = sub.rewriter.ts_offset().and_then(|(layer, offset)| {
            let c = self.layers.get(usize::from(layer))?.clock?;
            Some(c.rtp.wrapping_add(ticks_since(c.at)).wrapping_add(offset))
        });
        let ts = clocked.unwrap_or_else(|| ts.wrapping_add(ticks_since(at)));
        Some((sub.out_ssrc, ts, sub.packets as u32, sub.octets as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::sfu::forwarder::ResendPolicy;
    use crate::sfu::nack::RetransmitBudget;
    use crate::sfu::packet::Codec;

    /// The wallclock of a packet comes from its layer's sender report: earlier or later than the
    /// report by its timestamp's distance, never in the future, and `now` without a report or
    /// after the layer restarted (a new stream has a clock of its own).
    #[test]
    fn capture_time_follows_the_layers_sender_report() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(1);
        let mut f = TrackForwarder::<u64>::new(Codec::Vp8, &[0]);
        assert_eq!(f.capture_time(0, 5, now), now, "no report yet");
        f.on_sender_clock(0, SenderClock { rtp: 90_000, at: t0 });
        assert_eq!(f.capture_time(0, 90_000 - 18_000, now), t0 - Duration::from_millis(200));
        assert_eq!(f.capture_time(0, 90_000 + 9_000, now), t0 + Duration::from_millis(100));
        assert_eq!(f.capture_time(0, 90_000 + 900_000, now), now, "never later than now");
        assert_eq!(f.capture_time(3, 90_000, now), now, "no such layer");
        let mut p = Publisher::new();
        f.on_packet(t0, 0, &p.frame(t0, 0, true), |_, _| {});
        p.restart(0, 99, 1, 1);
        f.on_packet(t0, 0, &p.frame(t0, 0, true), |_, _| {});
        assert_eq!(f.capture_time(0, 90_000 - 18_000, now), now, "a restart forgets the clock");
    }

    /// A browser listed its rids highest first; once the worker has seen that, it puts them in
    /// order. Each layer's state moves with its stream, and the subscriber restarts at a keyframe
    /// of the layer it really asked for, with contiguous sequence numbers.
    #[test]
    fn reordered_layers_keep_their_state_and_restart_subscribers_at_a_keyframe() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[0, 0, 0]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, low()));
        // Publisher layer `l` arrives as forwarder layer `map[l]`: (forwarder layer, seq, SSRC).
        let send = |f: &mut TrackForwarder<u64>, p: &mut Publisher, key: bool, map: [u8; 3]| {
            let mut got = Vec::new();
            for (l, fl) in map.into_iter().enumerate() {
                let pkt = p.frame(t0, l, key);
                let ssrc = pkt.ssrc;
                f.on_packet(t0, fl, &pkt, |_, rw| got.push((fl, rw.seq, ssrc)));
            }
            got
        };
        let heights =
            |f: &mut TrackForwarder<u64>| f.layer_statuses(t0)[..3].iter().map(|s| s.height).collect::<Vec<_>>();
        send(&mut f, &mut p, false, [2, 1, 0]);
        f.tick(t0, &mut Vec::new());
        assert_eq!(send(&mut f, &mut p, true, [2, 1, 0]), vec![(0, 65_530, 3)], "layer 0 is the top stream");
        assert_eq!(heights(&mut f), vec![720, 360, 180]);

        f.reorder_layers(&[2, 1, 0]);
        assert_eq!(heights(&mut f), vec![180, 360, 720], "each layer's state moved with its stream");
        assert!(send(&mut f, &mut p, false, [0, 1, 2]).is_empty(), "nothing until a keyframe");
        let mut keyframes = Vec::new();
        f.tick(t0, &mut keyframes);
        assert_eq!(keyframes, vec![0], "a keyframe of the new layer 0 is asked for");
        assert_eq!(send(&mut f, &mut p, true, [0, 1, 2]), vec![(0, 65_531, 1)], "the lowest stream, contiguous");
        // A NACK for what was sent before the reorder is answered from the top stream's history.
        let mut budget = RetransmitBudget::default();
        let later = t0 + Duration::from_secs(1);
        let policy = ResendPolicy { now: later, guard: Duration::ZERO, budget: &mut budget, rate_bps: 1_000_000 };
        let mut resent = Vec::new();
        f.on_nack(1, [65_530].into_iter(), policy, |_, pkt, rw| resent.push((pkt.ssrc, rw.seq)));
        assert_eq!(resent, vec![(3, 65_530)], "the packet that was sent, from its own layer");
        // Not a permutation: nothing changes.
        f.reorder_layers(&[0, 0, 1]);
        f.reorder_layers(&[1, 0]);
        assert_eq!(heights(&mut f), vec![180, 360, 720]);
    }
}
