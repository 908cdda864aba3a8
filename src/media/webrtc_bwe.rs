//! Which bandwidth estimate a WebRTC subscriber's video is shared out by. Sans-IO: fed str0m's
//! estimates and stats, and `now`.
//!
//! Normally it is str0m's: transport-wide congestion control (TWCC), from the subscriber's
//! feedback on every packet, probed upward when the server wants more. But a client may not
//! negotiate TWCC, or send feedback the estimator cannot use. werift (a Node.js WebRTC stack)
//! does both: by default it answers without the TWCC header extension, and when given it, its
//! feedback counts every sequence number between the first and last it saw as received (those of
//! packets it never saw, or that went to its other receivers, too), so the message lists more
//! packets than it has arrival times for and is rejected whole; the rest carry arrival times
//! shifted by up to 64 ms (its reference time is rounded down, its deltas are not). str0m's
//! estimate then never leaves its initial value, however long the server probes, and every
//! subscriber of such a client sits on the layer that value fits.
//!
//! So the TWCC estimate is trusted only once it has moved. A subscriber for which the server has
//! wanted more than it for `STUCK_AFTER` while it never moved (or never came), is switched for
//! good to a [`LossBasedEstimator`] fed from its RTCP receiver reports, which every client sends:
//! unconstrained while they show no loss and no growing round trip, cut to what was delivered
//! when they do.

use super::bwe::{LossBasedEstimator, PathSample};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use str0m::media::{Mid, Rid};

/// How long the server must have wanted more than an estimate that never moved before it stops
/// trusting TWCC for this subscriber. A working TWCC estimator moves within a second or two of
/// media (it probes, or it drops on a constrained link).
pub const STUCK_AFTER: Duration = Duration::from_secs(5);
/// A move smaller than this (a share of the initial estimate) is not a move.
const MOVE_TOLERANCE: f64 = 0.05;

/// Why a subscriber's estimate comes from its receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Its TWCC estimate never came (it did not negotiate TWCC).
    NoTwcc,
    /// Its TWCC estimate never moved from the initial one.
    TwccStuck,
}

impl Fallback {
    pub fn label(self) -> &'static str {
        match self {
            Fallback::NoTwcc => "no_twcc",
            Fallback::TwccStuck => "twcc_stuck",
        }
    }
}

/// What the receiver reports of one egress stream said last, and what was sent on it.
#[derive(Debug, Clone, Copy, Default)]
struct StreamCounters {
    bytes: u64,
    /// The highest extended sequence number received, and the cumulative loss, from its last
    /// receiver report.
    max_seq: u64,
    lost: u64,
    reported: bool,
}

#[derive(Debug)]
pub struct SubscriberBwe {
    initial_bps: u64,
    twcc: Option<u64>,
    twcc_moved: bool,
    /// Since when the server has wanted more than the TWCC estimate (or there was none).
    starved_since: Option<Instant>,
    fallback: Option<Fallback>,
    rr: LossBasedEstimator,
    streams: HashMap<(Mid, Option<Rid>), StreamCounters>,
    /// Running totals over every stream (so a stream that ends takes nothing back).
    totals: PathSample,
    rr_changed: bool,
    rr_estimate: Option<u64>,
}

impl SubscriberBwe {
    pub fn new(initial_bps: u64) -> Self {
        Self {
            initial_bps,
            twcc: None,
            twcc_moved: false,
            starved_since: None,
            fallback: None,
            rr: LossBasedEstimator::default(),
            streams: HashMap::new(),
            totals: PathSample::default(),
            rr_changed: false,
            rr_estimate: None,
        }
    }

    /// str0m's TWCC estimate changed.
    pub fn on_twcc(&mut self, estimate_bps: u64) {
        self.twcc = Some(estimate_bps);
        let initial = self.initial_bps as f64;
        if (estimate_bps as f64 - initial).abs() > initial * MOVE_TOLERANCE {
            self.twcc_moved = true;
        }
    }

    /// The TWCC estimate, while it is the one in use.
    pub fn twcc(&self) -> Option<u64> {
        if self.fallback.is_some() { None } else { self.twcc }
    }

    pub fn fallback(&self) -> Option<Fallback> {
        self.fallback
    }

    /// One egress stream's stats: bytes sent, and what its last receiver report said (highest
    /// extended sequence number received, cumulative loss) and the round trip it gave.
    pub fn on_egress_stats(
        &mut self,
        stream: (Mid, Option<Rid>),
        bytes: u64,
        report: Option<(u64, u64)>,
        rtt: Option<Duration>,
    ) {
        let s = self.streams.entry(stream).or_default();
        self.totals.sent_bytes += bytes.saturating_sub(s.bytes);
        s.bytes = bytes;
        if let Some(r) = rtt {
            self.totals.rtt = r;
        }
        let Some((max_seq, lost)) = report else { return };
        if s.reported && (max_seq, lost) == (s.max_seq, s.lost) {
            return;
        }
        if s.reported {
            // Packets the receiver should have had since its last report, and lost of them.
            self.totals.sent_packets += max_seq.saturating_sub(s.max_seq);
            let new_lost = lost.saturating_sub(s.lost);
            self.totals.lost_packets += new_lost;
            self.totals.congestion_events += new_lost;
            self.rr_changed = true;
        }
        (s.max_seq, s.lost, s.reported) = (max_seq, lost, true);
    }

    /// A media line the subscriber no longer receives.
    pub fn forget_streams(&mut self, mid: Mid) {
        self.streams.retain(|(m, _), _| *m != mid);
    }

    /// A round of stats has been taken in: a new receiver report updates the estimate.
    pub fn on_stats_round(&mut self, now: Instant) {
        if std::mem::take(&mut self.rr_changed) {
            self.rr_estimate = self.rr.update(now, self.totals);
        }
    }

    /// The server wants `desired_bps` toward this subscriber (what its next layers up take).
    /// Returns the fallback when this call switched to it.
    pub fn on_wanted(&mut self, desired_bps: u64, now: Instant) -> Option<Fallback> {
        if self.fallback.is_some() || self.twcc_moved {
            return None;
        }
        // No TWCC estimate at all is starved whatever is wanted: the receiver reports are the
        // only signal, and should at least cut on loss.
        if self.twcc.is_some_and(|estimate| desired_bps <= estimate) {
            self.starved_since = None;
            return None;
        }
        let since = *self.starved_since.get_or_insert(now);
        if now.saturating_duration_since(since) < STUCK_AFTER {
            return None;
        }
        let why = if self.twcc.is_some() { Fallback::TwccStuck } else { Fallback::NoTwcc };
        self.fallback = Some(why);
        Some(why)
    }

    /// The receiver-report estimate (`None`: unconstrained), once fallen back to.
    pub fn receiver_estimate(&self) -> Option<u64> {
        self.rr_estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid() -> (Mid, Option<Rid>) {
        (Mid::from("v"), None)
    }

    #[test]
    fn a_twcc_estimate_that_moves_is_kept() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        b.on_twcc(1_000_000);
        assert_eq!(b.on_wanted(2_000_000, t0), None);
        b.on_twcc(1_200_000);
        assert_eq!(b.on_wanted(2_000_000, t0 + STUCK_AFTER * 3), None, "it moved: TWCC works");
        assert_eq!(b.twcc(), Some(1_200_000));
    }

    #[test]
    fn a_twcc_estimate_that_never_moves_while_more_is_wanted_is_dropped() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        b.on_twcc(1_000_000);
        b.on_twcc(1_020_000); // within tolerance: not a move
        assert_eq!(b.on_wanted(2_000_000, t0), None);
        assert_eq!(b.on_wanted(2_000_000, t0 + STUCK_AFTER / 2), None);
        // Wanting no more than it resets the clock.
        assert_eq!(b.on_wanted(900_000, t0 + STUCK_AFTER / 2), None);
        assert_eq!(b.on_wanted(2_000_000, t0 + STUCK_AFTER), None);
        assert_eq!(b.on_wanted(2_000_000, t0 + STUCK_AFTER * 2), Some(Fallback::TwccStuck));
        assert_eq!(b.twcc(), None, "no longer used");
        assert_eq!(b.on_wanted(2_000_000, t0 + STUCK_AFTER * 3), None, "switched once");
        assert_eq!(b.receiver_estimate(), None, "unconstrained until a report shows loss");
    }

    #[test]
    fn no_twcc_at_all_falls_back_too() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        assert_eq!(b.on_wanted(500_000, t0), None);
        assert_eq!(b.on_wanted(500_000, t0 + STUCK_AFTER), Some(Fallback::NoTwcc), "whatever is wanted");
    }

    #[test]
    fn receiver_reports_with_loss_cut_the_estimate_to_what_was_delivered() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        // First report: a baseline.
        b.on_egress_stats(mid(), 0, Some((1_000, 0)), Some(Duration::from_millis(20)));
        b.on_stats_round(t0);
        // A second of 100 packets (125 kB), none lost.
        b.on_egress_stats(mid(), 125_000, Some((1_100, 0)), Some(Duration::from_millis(20)));
        b.on_stats_round(t0 + Duration::from_secs(1));
        assert_eq!(b.receiver_estimate(), None, "clean: unconstrained");
        // Stats without a new report change nothing.
        b.on_egress_stats(mid(), 200_000, Some((1_100, 0)), None);
        b.on_stats_round(t0 + Duration::from_millis(1500));
        assert_eq!(b.receiver_estimate(), None);
        // The next second: 20 of 100 lost. 250 kB in 1 s (2 Mbit/s) went out since the last
        // report; the cut is 85 % of it.
        b.on_egress_stats(mid(), 375_000, Some((1_200, 20)), None);
        b.on_stats_round(t0 + Duration::from_secs(2));
        assert_eq!(b.receiver_estimate(), Some(1_700_000));
    }

    #[test]
    fn a_stream_that_ends_and_one_that_starts_do_not_look_like_loss() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        b.on_egress_stats(mid(), 10_000, Some((500, 3)), None);
        b.on_stats_round(t0);
        b.forget_streams(mid().0);
        // A new stream with its own (random) sequence numbers and loss counts.
        let other = (Mid::from("w"), None);
        b.on_egress_stats(other, 5_000, Some((40_000, 0)), None);
        b.on_egress_stats(other, 130_000, Some((40_100, 0)), None);
        b.on_stats_round(t0 + Duration::from_secs(1));
        b.on_egress_stats(other, 255_000, Some((40_200, 0)), None);
        b.on_stats_round(t0 + Duration::from_secs(2));
        assert_eq!(b.receiver_estimate(), None);
    }
}
