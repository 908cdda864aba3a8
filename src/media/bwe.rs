//! A loss-and-delay bandwidth estimate from a transport's own counters, sans-IO: it is fed
//! snapshots. Two carriers use it: a QUIC subscriber, from quinn's path statistics (quinn's
//! congestion controller already paces the connection; this only decides how much media the
//! simulcast selectors should aim for), and a WebRTC subscriber whose transport-wide congestion
//! control feedback is missing or unusable, from its RTCP receiver reports
//! (`media::webrtc_bwe`).
//!
//! The estimate starts unconstrained. Loss, congestion events or a growing queue (the smoothed RTT
//! above the lowest seen in the last 10 s) cut it to a little below what was actually delivered;
//! a clean interval raises it by 8 %, and after a long clean stretch it becomes unconstrained
//! again.

use std::time::{Duration, Instant};

/// One sample of the connection's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathSample {
    pub sent_bytes: u64,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
    /// The connection's smoothed RTT.
    pub rtt: Duration,
}

/// Loss rate above which the estimate is cut.
const LOSS_CUT: f64 = 0.03;
/// Queueing delay above which the estimate is cut.
const QUEUE_CUT: Duration = Duration::from_millis(80);
/// How long the lowest RTT seen stays the path's base RTT (the queueing delay is measured
/// against it); after that the current RTT replaces it, so a route change is followed.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Clean intervals after which the estimate is lifted entirely.
const CLEAN_TO_UNCONSTRAINED: u32 = 50;
/// Lowest estimate (enough for audio and the lowest video layer).
const FLOOR_BPS: u64 = 100_000;

#[derive(Debug, Clone, Default)]
pub struct LossBasedEstimator {
    last: Option<(Instant, PathSample)>,
    estimate: Option<u64>,
    clean: u32,
    /// The lowest RTT seen within `MIN_RTT_WINDOW`, and when.
    min_rtt: Option<(Duration, Instant)>,
    /// Samples in a row with a queueing delay over `QUEUE_CUT`: one alone may be a scheduling
    /// hiccup on a busy host, two are a queue.
    queued: u32,
}

impl LossBasedEstimator {
    /// Stop sampling for a while (the connection has nothing to share an estimate among): the
    /// next sample starts a fresh interval instead of averaging over the pause.
    pub fn pause(&mut self) {
        self.last = None;
    }

    /// Feed a sample; returns the current estimate (`None`: unconstrained).
    pub fn update(&mut self, now: Instant, s: PathSample) -> Option<u64> {
        let min_rtt = match self.min_rtt {
            Some((m, at)) if m <= s.rtt && now.saturating_duration_since(at) < MIN_RTT_WINDOW => m,
            _ => {
                self.min_rtt = Some((s.rtt, now));
                s.rtt
            }
        };
        let Some((then, prev)) = self.last.replace((now, s)) else { return self.estimate };
        let dt = now.saturating_duration_since(then).as_secs_f64();
        if dt <= 0.0 {
            return self.estimate;
        }
        let sent = s.sent_packets.saturating_sub(prev.sent_packets);
        let lost = s.lost_packets.saturating_sub(prev.lost_packets);
        let congested = s.congestion_events > prev.congestion_events;
        let delivered_bps = (s.sent_bytes.saturating_sub(prev.sent_bytes) as f64 * 8.0 / dt) as u64;
        let loss = if sent == 0 { 0.0 } else { lost as f64 / sent as f64 };
        let queued = s.rtt.saturating_sub(min_rtt) > QUEUE_CUT;
        self.queued = if queued { self.queued + 1 } else { 0 };
        if loss > LOSS_CUT || self.queued >= 2 || (congested && loss > 0.0) {
            self.clean = 0;
            let cut = (delivered_bps as f64 * 0.85) as u64;
            self.estimate = Some(self.estimate.map_or(cut, |e| e.min(cut)).max(FLOOR_BPS));
        } else if queued {
            self.clean = 0; // not clean, not (yet) a queue: hold
        } else if let Some(e) = self.estimate {
            self.clean += 1;
            self.estimate = if self.clean >= CLEAN_TO_UNCONSTRAINED { None } else { Some((e as f64 * 1.08) as u64) };
        }
        self.estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(bytes: u64, packets: u64, lost: u64, rtt_ms: u64) -> PathSample {
        PathSample {
            sent_bytes: bytes,
            sent_packets: packets,
            lost_packets: lost,
            congestion_events: lost,
            rtt: Duration::from_millis(rtt_ms),
        }
    }

    /// The connection gives only its smoothed RTT: the estimator keeps the lowest it has seen,
    /// so a queue building up (the RTT rising well above it) cuts the estimate without loss.
    #[test]
    fn a_growing_queue_cuts_the_estimate_without_loss() {
        let t0 = Instant::now();
        let mut e = LossBasedEstimator::default();
        let mut t = t0;
        let (mut bytes, mut packets) = (0, 0);
        for _ in 0..10 {
            t += Duration::from_millis(200);
            (bytes, packets) = (bytes + 25_000, packets + 20);
            assert_eq!(e.update(t, sample(bytes, packets, 0, 20)), None, "clean at 20 ms");
        }
        // The RTT climbs to 150 ms (130 ms of queue), no packet lost: one sample could be a
        // hiccup, the second cuts.
        t += Duration::from_millis(200);
        (bytes, packets) = (bytes + 25_000, packets + 20);
        assert_eq!(e.update(t, sample(bytes, packets, 0, 150)), None, "one sample alone");
        t += Duration::from_millis(200);
        (bytes, packets) = (bytes + 25_000, packets + 20);
        let cut = e.update(t, sample(bytes, packets, 0, 150));
        assert_eq!(cut, Some(850_000), "85 % of the 1 Mbit/s delivered");
    }

    /// Losses from before a pause (a connection that subscribed to nothing for a while) do not
    /// count against the first interval after it.
    #[test]
    fn a_pause_starts_a_fresh_interval() {
        let t0 = Instant::now();
        let mut paused = LossBasedEstimator::default();
        let mut unpaused = LossBasedEstimator::default();
        for e in [&mut paused, &mut unpaused] {
            e.update(t0, sample(0, 0, 0, 20));
        }
        paused.pause();
        // A minute later: 1,000 packets sent meanwhile, 100 of them lost (10 %).
        let later = t0 + Duration::from_secs(60);
        assert_eq!(paused.update(later, sample(1_250_000, 1_000, 100, 20)), None, "nothing to compare with yet");
        assert!(unpaused.update(later, sample(1_250_000, 1_000, 100, 20)).is_some(), "without the pause it cuts");
    }

    #[test]
    fn the_base_rtt_follows_a_route_change_after_its_window() {
        let t0 = Instant::now();
        let mut e = LossBasedEstimator::default();
        e.update(t0, sample(0, 0, 0, 20));
        // A longer route: 120 ms from now on. Cut at first (it looks like a queue)...
        let mut t = t0 + Duration::from_millis(200);
        e.update(t, sample(25_000, 20, 0, 120));
        t += Duration::from_millis(200);
        assert!(e.update(t, sample(37_500, 30, 0, 120)).is_some());
        // ...but once the 20 ms sample is older than the window, 120 ms is the base.
        t += MIN_RTT_WINDOW;
        e.update(t, sample(50_000, 40, 0, 120));
        let (mut bytes, mut packets) = (50_000, 40);
        let mut last = e.estimate;
        for _ in 0..5 {
            t += Duration::from_millis(200);
            (bytes, packets) = (bytes + 25_000, packets + 20);
            let v = e.update(t, sample(bytes, packets, 0, 120));
            assert!(v.is_none() || v > last, "recovering, not cut: {v:?} after {last:?}");
            last = v;
        }
    }

    #[test]
    fn unconstrained_until_loss_then_recovers() {
        let t0 = Instant::now();
        let mut e = LossBasedEstimator::default();
        assert_eq!(e.update(t0, sample(0, 0, 0, 10)), None);
        // 1 Mbit/s delivered, clean.
        assert_eq!(e.update(t0 + Duration::from_secs(1), sample(125_000, 100, 0, 12)), None);
        // 10 % loss: cut to 85 % of delivered.
        let cut = e.update(t0 + Duration::from_secs(2), sample(250_000, 200, 10, 12)).expect("constrained");
        assert_eq!(cut, 850_000);
        // Queueing delay also cuts, when it lasts two samples.
        let held = e.update(t0 + Duration::from_millis(2500), sample(275_000, 250, 10, 200)).expect("constrained");
        assert_eq!(held, cut, "one sample is held, not cut");
        let later = e.update(t0 + Duration::from_secs(3), sample(300_000, 300, 10, 200)).expect("constrained");
        assert!(later < cut);
        // Clean intervals raise it, then lift the constraint.
        let mut last = later;
        let mut t = t0 + Duration::from_secs(3);
        let mut bytes = 300_000;
        let mut packets = 300;
        for _ in 0..CLEAN_TO_UNCONSTRAINED - 1 {
            t += Duration::from_millis(200);
            bytes += 25_000;
            packets += 20;
            let v = e.update(t, sample(bytes, packets, 10, 11)).expect("still constrained");
            assert!(v > last);
            last = v;
        }
        assert_eq!(e.update(t + Duration::from_millis(200), sample(bytes + 1, packets + 1, 10, 11)), None);
    }

    #[test]
    fn never_below_the_floor() {
        let t0 = Instant::now();
        let mut e = LossBasedEstimator::default();
        e.update(t0, sample(0, 0, 0, 10));
        assert_eq!(e.update(t0 + Duration::from_secs(1), sample(10, 10, 5, 10)), Some(FLOOR_BPS));
    }
}
