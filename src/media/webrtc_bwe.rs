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
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use str0m::media::{Mid, Rid};

/// How long the server must have wanted more than an estimate that never moved before it stops
/// trusting TWCC for this subscriber. A working TWCC estimator moves within a second or two of
/// media (it probes, or it drops on a constrained link).
pub const STUCK_AFTER: Duration = Duration::from_secs(5);
/// A move smaller than this (a share of the initial estimate) is not a move.
const MOVE_TOLERANCE: f64 = 0.05;
/// While the TWCC estimate is short of what the server wants, it has the estimator probe toward
/// it this long after it fell short, then each time this interval times `PROBE_BACKOFF` later, up
/// to `PROBE_INTERVAL_MAX` (libwebrtc's own application-limited probes come every 5 s). The
/// estimator alone would not: held to a lower layer, the server sends too much of the estimate
/// to count as application-limited, and its increase is capped near what is sent, so a link that
/// recovers would not be found for the 15 s its stagnation probe waits, or longer.
const PROBE_INTERVAL_FIRST: Duration = Duration::from_secs(2);
const PROBE_BACKOFF: f64 = 1.5;
const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(5);
/// How long each probe pads the subscriber's stream, and up to what share of its estimate. The
/// estimator lets its estimate grow to at most 1.5 times what is acknowledged, so media and
/// padding at 90 % of it lift that cap; the 10 % left spare keeps a probe of a link that is full
/// from filling its queue at once.
const PROBE_PADDING: Duration = Duration::from_millis(500);
const PROBE_PADDING_SHARE: f64 = 0.9;
/// A probe that raised the estimate by this factor is followed by the next this soon.
const PROBE_SUCCESS: f64 = 1.1;
const PROBE_AFTER_SUCCESS: Duration = Duration::from_secs(1);
/// No probe while the transport feedback shows loss (more than `PROBE_LOSS_FRACTION` of a stats
/// round's packets), or did so in the last `PROBE_AFTER_LOSS`: on a lossy path the estimate is
/// held by its losses, which probing adds to, not by a want of evidence.
const PROBE_AFTER_LOSS: Duration = Duration::from_secs(3);
const PROBE_LOSS_FRACTION: f32 = 0.02;

/// str0m's estimate events carry the average of its estimates over the last 3 s, so when a probe
/// finds room the event lags it by up to that long (and the layers with it). Its latest estimate,
/// in its stats every 200 ms, is taken instead when it has been at least that high for this long:
/// down moves still follow the average.
const RAW_SUSTAINED: Duration = Duration::from_secs(1);

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
    /// str0m's latest estimates from its stats (`RAW_SUSTAINED` of them and one before), and
    /// the lowest of them once they span that long.
    raw: VecDeque<(Instant, u64)>,
    raw_floor: Option<u64>,
    /// Since when the server has wanted more than the TWCC estimate (or there was none).
    starved_since: Option<Instant>,
    fallback: Option<Fallback>,
    rr: LossBasedEstimator,
    streams: HashMap<(Mid, Option<Rid>), StreamCounters>,
    /// Running totals over every stream (so a stream that ends takes nothing back).
    totals: PathSample,
    rr_changed: bool,
    rr_estimate: Option<u64>,
    /// While short of what is wanted: when to probe next, and the interval after that.
    next_probe: Option<(Instant, Duration)>,
    /// Until when the current probe pads, and the estimate it started from.
    padding_until: Option<(Instant, u64)>,
    /// When the transport feedback last showed loss.
    last_loss: Option<Instant>,
}

impl SubscriberBwe {
    pub fn new(initial_bps: u64) -> Self {
        Self {
            initial_bps,
            twcc: None,
            twcc_moved: false,
            raw: VecDeque::new(),
            raw_floor: None,
            starved_since: None,
            fallback: None,
            rr: LossBasedEstimator::default(),
            streams: HashMap::new(),
            totals: PathSample::default(),
            rr_changed: false,
            rr_estimate: None,
            next_probe: None,
            padding_until: None,
            last_loss: None,
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

    /// str0m's latest (unaveraged) estimate, from its stats.
    pub fn on_raw_twcc(&mut self, estimate_bps: Option<u64>, now: Instant) {
        let Some(e) = estimate_bps else { return };
        self.raw.push_back((now, e));
        while self.raw.get(1).is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RAW_SUSTAINED) {
            self.raw.pop_front();
        }
        let spans = self.raw.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RAW_SUSTAINED);
        self.raw_floor = if spans { self.raw.iter().map(|(_, e)| *e).min() } else { None };
    }

    /// The TWCC estimate, while it is the one in use: str0m's average, or its latest estimates
    /// where they have been higher for `RAW_SUSTAINED`.
    pub fn twcc(&self) -> Option<u64> {
        if self.fallback.is_some() {
            return None;
        }
        self.twcc.map(|e| e.max(self.raw_floor.unwrap_or(0)))
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

    /// The share of packets the transport feedback of the last stats round showed lost.
    pub fn on_transport_loss(&mut self, fraction: Option<f32>, now: Instant) {
        if fraction.is_some_and(|f| f > PROBE_LOSS_FRACTION) {
            self.last_loss = Some(now);
        }
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

    /// Whether the TWCC estimator should probe toward `desired_bps` now: the estimate has been
    /// short of it for a while (the schedule at `PROBE_INTERVAL_FIRST`). `desired_bps` is what
    /// the layers above the subscriptions bandwidth holds back would take (0: none is held
    /// back). Never without a TWCC estimate in use.
    pub fn probe_due(&mut self, desired_bps: u64, now: Instant) -> bool {
        let short = self.twcc().is_some_and(|estimate| desired_bps > estimate);
        if !short {
            self.next_probe = None;
            self.padding_until = None;
            return false;
        }
        let (at, interval) = *self.next_probe.get_or_insert((now + PROBE_INTERVAL_FIRST, PROBE_INTERVAL_FIRST));
        let lossy = self.last_loss.is_some_and(|t| now.saturating_duration_since(t) < PROBE_AFTER_LOSS);
        if now < at || lossy {
            return false;
        }
        let next = interval.mul_f64(PROBE_BACKOFF).min(PROBE_INTERVAL_MAX);
        self.next_probe = Some((now + next, next));
        self.padding_until = self.twcc().map(|estimate| (now + PROBE_PADDING, estimate));
        true
    }

    /// What a probe pads the subscriber's stream up to now (media and padding together; 0: no
    /// probe). A probe stops early when the estimate falls below where it started (the path is
    /// full).
    pub fn padding_to(&mut self, now: Instant) -> u64 {
        let (Some((until, from)), Some(estimate)) = (self.padding_until, self.twcc()) else { return 0 };
        if now >= until || estimate < from {
            self.padding_until = None;
            // One that raised the estimate is followed up soon, from the first interval again.
            if estimate as f64 > from as f64 * PROBE_SUCCESS && self.next_probe.is_some() {
                self.next_probe = Some((now + PROBE_AFTER_SUCCESS, PROBE_INTERVAL_FIRST));
            }
            return 0;
        }
        (estimate as f64 * PROBE_PADDING_SHARE) as u64
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
    fn probes_come_while_short_of_what_is_wanted_backing_off_to_the_interval_cap() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        assert!(!b.probe_due(2_000_000, t0), "no TWCC estimate yet");
        b.on_twcc(800_000);
        let mut probes = Vec::new();
        for ms in (0..20_000).step_by(100) {
            if b.probe_due(2_000_000, t0 + Duration::from_millis(ms)) {
                probes.push(ms);
            }
        }
        assert_eq!(probes, [2_000, 5_000, 9_500, 14_500, 19_500]);
        // The last probe pads for half a second, at 90 % of the estimate, and stops early when
        // the estimate falls.
        let last = t0 + Duration::from_millis(19_500);
        assert_eq!(b.padding_to(last + Duration::from_millis(400)), 720_000);
        assert_eq!(b.padding_to(last + Duration::from_millis(500)), 0);
        assert!(b.probe_due(2_000_000, last + Duration::from_secs(5)));
        b.on_twcc(700_000);
        assert_eq!(b.padding_to(last + Duration::from_millis(5_100)), 0, "the estimate fell");
        b.on_twcc(800_000);
        assert_eq!(b.padding_to(last + Duration::from_millis(5_200)), 0, "stopped for good");
        // A probe that raises the estimate is followed up a second after it ends.
        let t2 = last + Duration::from_secs(10);
        assert!(b.probe_due(2_000_000, t2));
        b.on_twcc(1_000_000);
        assert_eq!(b.padding_to(t2 + Duration::from_millis(500)), 0);
        assert!(!b.probe_due(2_000_000, t2 + Duration::from_millis(1_400)));
        assert!(b.probe_due(2_000_000, t2 + Duration::from_millis(1_500)));
        // Enough: none, and the schedule starts over when it falls short again.
        let t1 = t0 + Duration::from_secs(20);
        assert!(!b.probe_due(700_000, t1));
        assert!(!b.probe_due(2_000_000, t1 + Duration::from_millis(100)));
        assert!(!b.probe_due(2_000_000, t1 + Duration::from_millis(2_000)));
        assert!(b.probe_due(2_000_000, t1 + Duration::from_millis(2_100)));
        assert!(!b.probe_due(2_000_000, t1 + Duration::from_millis(2_200)));
    }

    #[test]
    fn no_probes_while_the_receiver_reports_show_loss() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        b.on_twcc(800_000);
        b.on_transport_loss(Some(0.01), t0);
        assert!(!b.probe_due(2_000_000, t0));
        // Loss a second later holds the probe due at 2 s off until 3 s after it.
        b.on_transport_loss(Some(0.05), t0 + Duration::from_secs(1));
        b.on_transport_loss(Some(0.0), t0 + Duration::from_secs(2));
        assert!(!b.probe_due(2_000_000, t0 + Duration::from_millis(2_500)));
        assert!(!b.probe_due(2_000_000, t0 + Duration::from_millis(3_900)));
        assert!(b.probe_due(2_000_000, t0 + Duration::from_millis(4_000)));
    }

    #[test]
    fn no_probes_once_receiver_reports_drive_the_estimate() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        b.on_twcc(1_000_000);
        b.on_wanted(2_000_000, t0);
        assert!(b.on_wanted(2_000_000, t0 + STUCK_AFTER).is_some());
        assert!(!b.probe_due(2_000_000, t0 + STUCK_AFTER * 2));
    }

    #[test]
    fn the_latest_estimate_is_used_once_it_has_held_above_the_average_for_a_second() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::new(1_000_000);
        b.on_twcc(400_000);
        let at = |ms| t0 + Duration::from_millis(ms);
        // A probe found 900 kbit/s; the average lags.
        for ms in (0..=800).step_by(200) {
            b.on_raw_twcc(Some(900_000), at(ms));
        }
        assert_eq!(b.twcc(), Some(400_000), "not yet a second");
        b.on_raw_twcc(Some(950_000), at(1_000));
        assert_eq!(b.twcc(), Some(900_000), "the lowest of the last second");
        // A dip counts for the second after it; the average still applies below.
        b.on_raw_twcc(Some(300_000), at(1_200));
        assert_eq!(b.twcc(), Some(400_000));
        for ms in (1_400..=2_200).step_by(200) {
            b.on_raw_twcc(Some(950_000), at(ms));
            assert_eq!(b.twcc(), Some(400_000), "the dip is within the last second at {ms} ms");
        }
        b.on_raw_twcc(Some(950_000), at(2_400));
        assert_eq!(b.twcc(), Some(950_000));
        // Not used once fallen back to receiver reports.
        b.fallback = Some(Fallback::TwccStuck);
        assert_eq!(b.twcc(), None);
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
