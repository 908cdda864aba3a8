//! Receive statistics for RTCP receiver reports (RFC 3550 §6.4.1, A.3, A.8) and a bitrate meter.

use crate::rtp::rtcp::ReportBlock;
use std::time::{Duration, Instant};

/// Statistics of one received RTP stream.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    base_seq: u32,
    /// Extended highest sequence number (cycles << 16 | seq).
    ext_highest: u32,
    started: bool,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, scaled by 16 (RFC 3550 A.8).
    jitter_q4: u64,
    last_transit: Option<i64>,
    /// Middle 32 bits of the NTP time of the last SR, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveStats {
    pub fn on_packet(&mut self, now: Instant, epoch: Instant, seq: u16, ts: u32, clock_rate: u32) {
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.ext_highest = u32::from(seq);
        } else {
            let highest = self.ext_highest as u16;
            let ahead = seq.wrapping_sub(highest);
            if ahead != 0 && ahead < 0x8000 {
                let cycles = self.ext_highest & 0xffff_0000;
                let wrapped = seq < highest;
                self.ext_highest = (if wrapped { cycles.wrapping_add(0x1_0000) } else { cycles }) | u32::from(seq);
            }
        }
        self.received += 1;
        let arrival = (now.saturating_duration_since(epoch).as_micros() * u128::from(clock_rate) / 1_000_000) as i64;
        let transit = arrival - i64::from(ts);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    pub fn on_sender_report(&mut self, now: Instant, ntp: u64) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// Build a report block and start a new reporting interval.
    pub fn report(&mut self, now: Instant, ssrc: u32) -> ReportBlock {
        let expected = u64::from(self.ext_highest.wrapping_sub(self.base_seq)) + 1;
        let expected = if self.started { expected } else { 0 };
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost =
            ((lost_interval << 8).checked_div(expected_interval)).map_or(0, |f| u8::try_from(f).unwrap_or(255));
        let (last_sr, dlsr) = match self.last_sr {
            Some((mid, at)) => (mid, (now.saturating_duration_since(at).as_micros() * 65536 / 1_000_000) as u32),
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: self.ext_highest,
            jitter: u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX),
            last_sr,
            delay_since_last_sr: dlsr,
        }
    }
}

/// Bitrate over a sliding window, updated per packet in O(1).
#[derive(Debug, Clone)]
pub struct RateMeter {
    window: Duration,
    bucket_start: Option<Instant>,
    current: u64,
    previous: u64,
}

impl RateMeter {
    pub fn new(window: Duration) -> Self {
        Self { window, bucket_start: None, current: 0, previous: 0 }
    }

    pub fn add(&mut self, now: Instant, bytes: usize) {
        self.roll(now);
        self.current += bytes as u64;
    }

    fn roll(&mut self, now: Instant) {
        match self.bucket_start {
            None => self.bucket_start = Some(now),
            Some(start) => {
                let age = now.saturating_duration_since(start);
                if age >= self.window * 2 {
                    self.previous = 0;
                    self.current = 0;
                    self.bucket_start = Some(now);
                } else if age >= self.window {
                    self.previous = self.current;
                    self.current = 0;
                    self.bucket_start = Some(start + self.window);
                }
            }
        }
    }

    /// Bits per second over (about) the last window.
    pub fn bps(&mut self, now: Instant) -> u64 {
        self.roll(now);
        let Some(start) = self.bucket_start else { return 0 };
        let into = now.saturating_duration_since(start).as_secs_f64() / self.window.as_secs_f64();
        let bytes = self.previous as f64 * (1.0 - into).max(0.0) + self.current as f64;
        (bytes * 8.0 / self.window.as_secs_f64()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_fraction_and_extended_sequence() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::default();
        for seq in [65530u16, 65531, 65533, 65534, 65535, 0, 1, 3] {
            s.on_packet(t0, t0, seq, 0, 90_000);
        }
        let r = s.report(t0, 9);
        assert_eq!(r.highest_seq, 0x1_0003);
        assert_eq!(r.cumulative_lost, 2);
        assert_eq!(r.fraction_lost, (2 * 256 / 10) as u8);
        s.on_packet(t0, t0, 4, 0, 90_000);
        assert_eq!(s.report(t0, 9).fraction_lost, 0);
    }

    #[test]
    fn jitter_grows_with_irregular_arrival() {
        let t0 = Instant::now();
        let mut steady = ReceiveStats::default();
        let mut shaky = ReceiveStats::default();
        for i in 0..100u32 {
            let ts = i * 900;
            steady.on_packet(t0 + Duration::from_millis(u64::from(i) * 10), t0, i as u16, ts, 90_000);
            let wobble = if i % 2 == 0 { 0 } else { 7 };
            shaky.on_packet(t0 + Duration::from_millis(u64::from(i) * 10 + wobble), t0, i as u16, ts, 90_000);
        }
        assert!(steady.report(t0, 1).jitter <= 1);
        assert!(shaky.report(t0, 1).jitter > 300);
    }

    #[test]
    fn rate_meter_measures_bits_per_second() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(1));
        for i in 0..200u64 {
            m.add(t0 + Duration::from_millis(i * 10), 1250); // 1 Mbit/s
        }
        let bps = m.bps(t0 + Duration::from_millis(2000));
        assert!((900_000..=1_100_000).contains(&bps), "{bps}");
        assert_eq!(m.bps(t0 + Duration::from_secs(10)), 0);
    }
}
