//! Retransmission bookkeeping: `PacketHistory`, a bounded ring of recent packets per stream that
//! answers NACKs, and `LossDetector`, which notices gaps in a received stream and decides when to
//! NACK them (after a short reordering wait, retried a few times, then given up).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A fixed-size ring of the most recent packets, indexed by sequence number.
#[derive(Debug, Clone)]
pub struct PacketHistory<T> {
    slots: Vec<Option<(u16, T)>>,
    mask: usize,
}

impl<T> PacketHistory<T> {
    /// `capacity` is rounded up to a power of two (at least 16).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(16).next_power_of_two();
        Self { slots: std::iter::repeat_with(|| None).take(cap).collect(), mask: cap - 1 }
    }

    pub fn insert(&mut self, seq: u16, packet: T) {
        self.slots[usize::from(seq) & self.mask] = Some((seq, packet));
    }

    pub fn get(&self, seq: u16) -> Option<&T> {
        match &self.slots[usize::from(seq) & self.mask] {
            Some((s, p)) if *s == seq => Some(p),
            _ => None,
        }
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
}

/// How much a subscriber may be sent again: a token bucket in bytes and in packets, refilled at
/// a rate the caller derives from the subscriber's bandwidth estimate. A subscriber that NACKs
/// everything (by fault or on purpose) gets its budget, not an amplifier: what is over it is
/// refused and counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetransmitBudget {
    bytes: f64,
    packets: f64,
    last: Option<Instant>,
}

/// Retransmissions per second a subscriber may get, whatever its estimate.
pub const MAX_RETRANSMITS_PER_SECOND: f64 = 100.0;
/// The buckets hold this much of a second's budget (a burst after a loss burst).
const RETRANSMIT_BURST: f64 = 0.5;

impl RetransmitBudget {
    /// Take `bytes` (one packet) at `now`, the bucket refilling at `rate_bps`; false when the
    /// subscriber is over its budget.
    pub fn take(&mut self, now: Instant, rate_bps: u64, bytes: usize) -> bool {
        let byte_rate = rate_bps as f64 / 8.0;
        let (byte_cap, packet_cap) = (byte_rate * RETRANSMIT_BURST, MAX_RETRANSMITS_PER_SECOND * RETRANSMIT_BURST);
        match self.last {
            None => (self.bytes, self.packets) = (byte_cap, packet_cap),
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                self.bytes = (self.bytes + dt * byte_rate).min(byte_cap);
                self.packets = (self.packets + dt * MAX_RETRANSMITS_PER_SECOND).min(packet_cap);
            }
        }
        self.last = Some(now);
        let cost = bytes as f64;
        if self.bytes >= cost && self.packets >= 1.0 {
            self.bytes -= cost;
            self.packets -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Wait this long for a reordered packet before NACKing a gap.
const REORDER_WAIT: Duration = Duration::from_millis(10);
/// Never retry a NACK faster than this.
const MIN_RETRY: Duration = Duration::from_millis(20);
/// Give up on a missing packet after this many NACKs.
const MAX_TRIES: u8 = 5;
/// Give up on a missing packet after this long.
const GIVE_UP_AFTER: Duration = Duration::from_secs(1);
/// Gaps larger than this are a restart or a burst not worth repairing: no NACKs.
const MAX_GAP: u16 = 256;
/// Most missing packets tracked at once.
const MAX_TRACKED: usize = 512;

#[derive(Debug, Clone)]
struct Missing {
    seq: u16,
    since: Instant,
    last_nack: Option<Instant>,
    tries: u8,
}

/// Detects losses in a received stream and schedules NACKs for them.
#[derive(Debug, Clone, Default)]
pub struct LossDetector {
    highest: Option<u16>,
    missing: VecDeque<Missing>,
    /// Missing packets given up on.
    pub abandoned: u64,
}

impl LossDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an arriving packet. Returns `true` when it filled a gap (a repair or a late packet).
    pub fn on_packet(&mut self, now: Instant, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return false;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 {
            return false;
        }
        if ahead < 0x8000 {
            if ahead > MAX_GAP {
                self.missing.clear();
            } else {
                let mut s = highest.wrapping_add(1);
                while s != seq {
                    if self.missing.len() == MAX_TRACKED {
                        self.missing.pop_front();
                        self.abandoned += 1;
                    }
                    self.missing.push_back(Missing { seq: s, since: now, last_nack: None, tries: 0 });
                    s = s.wrapping_add(1);
                }
            }
            self.highest = Some(seq);
            false
        } else if let Some(i) = self.missing.iter().position(|m| m.seq == seq) {
            self.missing.remove(i);
            true
        } else {
            false
        }
    }

    /// Sequence numbers to NACK now, given the current round-trip time estimate. Appends to `out`.
    pub fn poll_nacks(&mut self, now: Instant, rtt: Duration, out: &mut Vec<u16>) {
        let retry = rtt.max(MIN_RETRY);
        let before = self.missing.len();
        self.missing.retain(|m| m.tries < MAX_TRIES && now.saturating_duration_since(m.since) < GIVE_UP_AFTER);
        self.abandoned += (before - self.missing.len()) as u64;
        for m in &mut self.missing {
            let due = match m.last_nack {
                None => now.saturating_duration_since(m.since) >= REORDER_WAIT,
                Some(t) => now.saturating_duration_since(t) >= retry,
            };
            if due {
                m.last_nack = Some(now);
                m.tries += 1;
                out.push(m.seq);
            }
        }
    }

    /// Packets currently considered missing.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_returns_only_matching_sequence_numbers() {
        let mut h = PacketHistory::new(16);
        for s in 0..20u16 {
            h.insert(s, s * 10);
        }
        assert_eq!(h.get(19), Some(&190));
        assert_eq!(h.get(3), None, "overwritten by 19");
        assert_eq!(h.get(4), Some(&40));
        h.insert(65535, 1);
        assert_eq!(h.get(65535), Some(&1));
        assert_eq!(h.get(15), None);
    }

    #[test]
    fn nacks_after_reorder_wait_retries_and_gives_up() {
        let t0 = Instant::now();
        let mut d = LossDetector::new();
        let mut out = Vec::new();
        d.on_packet(t0, 65534);
        d.on_packet(t0, 1); // 65535 and 0 missing
        d.poll_nacks(t0 + Duration::from_millis(5), Duration::from_millis(50), &mut out);
        assert!(out.is_empty(), "still within the reorder wait");
        d.poll_nacks(t0 + Duration::from_millis(10), Duration::from_millis(50), &mut out);
        assert_eq!(out, vec![65535, 0]);
        out.clear();
        assert!(d.on_packet(t0 + Duration::from_millis(20), 0), "repair fills the gap");
        d.poll_nacks(t0 + Duration::from_millis(30), Duration::from_millis(50), &mut out);
        assert!(out.is_empty(), "retry waits one RTT");
        d.poll_nacks(t0 + Duration::from_millis(60), Duration::from_millis(50), &mut out);
        assert_eq!(out, vec![65535]);
        for i in 0..10 {
            out.clear();
            d.poll_nacks(t0 + Duration::from_millis(200 + 100 * i), Duration::from_millis(50), &mut out);
        }
        assert_eq!(d.missing(), 0);
        assert_eq!(d.abandoned, 1);
    }

    #[test]
    fn huge_gaps_are_not_nacked() {
        let t0 = Instant::now();
        let mut d = LossDetector::new();
        d.on_packet(t0, 10);
        d.on_packet(t0, 5000);
        assert_eq!(d.missing(), 0);
        assert!(!d.on_packet(t0, 9), "old packets are ignored");
    }

    #[test]
    fn retransmissions_are_bounded_by_bytes_and_by_packets() {
        let t0 = Instant::now();
        // 800 kbit/s: 100 kB/s, 50 kB bursts. 1000-byte packets: 50 at once, then 100 per second.
        let mut b = RetransmitBudget::default();
        let burst = (0..1000).filter(|_| b.take(t0, 800_000, 1000)).count();
        assert_eq!(burst, 50);
        let later = t0 + Duration::from_millis(100);
        assert_eq!((0..1000).filter(|_| b.take(later, 800_000, 1000)).count(), 10, "refilled for 100 ms");
        // Small packets on a fast link: the packet rate binds (100 per second).
        let mut b = RetransmitBudget::default();
        let mut sent = 0;
        for ms in 0..2000u64 {
            sent += (0..10).filter(|_| b.take(t0 + Duration::from_millis(ms), 100_000_000, 100)).count();
        }
        assert!((240..=252).contains(&sent), "about 100 per second plus a burst of 50: {sent}");
    }
}
