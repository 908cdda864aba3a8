//! Turns a participant's telephone-event packets into tones, one per event.
//!
//! RFC 4733: every packet of one event carries the event's RTP timestamp; the duration grows; the
//! last packet (E bit) is sent three times. A tone is reported on the **first** packet seen of a
//! new event, so it is reported exactly once whether or not its end packets arrive, and as early as
//! possible. Later packets with the same timestamp (progress, end, retransmissions) and late
//! packets of older events (timestamp behind the newest event, in serial arithmetic) are ignored.
//! A long event split into 0xFFFF-unit segments (§2.5.1.3) continues the same tone. State older
//! than [`FORGET_AFTER`] is dropped, so a sender whose timestamps restart is heard again.

use super::{Tone, parse};
use std::time::{Duration, Instant};

/// Silence after which the detector forgets the last event (no reordering is that late).
pub const FORGET_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Event {
    timestamp: u32,
    code: u8,
    ended: bool,
    /// Longest duration seen (packets may be reordered).
    duration: u16,
    last_seen: Instant,
}

/// Telephone-event packets in, tones out.
#[derive(Debug, Clone, Default)]
pub struct ToneDetector {
    newest: Option<Event>,
}

impl ToneDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// One telephone-event packet (its RTP timestamp and payload) received at `now`. Returns the
    /// tone when this packet starts a new DTMF event. Malformed payloads and non-DTMF events
    /// (codes above 16) report nothing.
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8], now: Instant) -> Option<Tone> {
        self.expire(now);
        let ev = parse(payload).ok()?;
        if let Some(cur) = self.newest.as_mut() {
            let ahead = rtp_timestamp.wrapping_sub(cur.timestamp) as i32;
            if ahead < 0 {
                return None; // a late packet of an older event
            }
            if ahead == 0 {
                // More of the current event (progress, end, or a retransmission).
                cur.ended |= ev.end;
                cur.duration = cur.duration.max(ev.duration);
                cur.last_seen = now;
                return None;
            }
            let continues = !cur.ended
                && cur.code == ev.event
                && cur.duration == u16::MAX
                && rtp_timestamp == cur.timestamp.wrapping_add(u32::from(u16::MAX));
            if continues {
                *cur = Event {
                    timestamp: rtp_timestamp,
                    code: ev.event,
                    ended: ev.end,
                    duration: ev.duration,
                    last_seen: now,
                };
                return None;
            }
        }
        self.newest = Some(Event {
            timestamp: rtp_timestamp,
            code: ev.event,
            ended: ev.end,
            duration: ev.duration,
            last_seen: now,
        });
        Tone::from_code(ev.event)
    }

    /// Housekeeping at `now`: forgets an event not heard from for [`FORGET_AFTER`]. Tones are
    /// reported by [`on_packet`](Self::on_packet) as soon as an event starts, so this reports
    /// none today; it is here so a caller's timer loop needs no change if that ever changes.
    pub fn poll(&mut self, now: Instant) -> Option<Tone> {
        self.expire(now);
        None
    }

    fn expire(&mut self, now: Instant) {
        if self.newest.is_some_and(|e| now.saturating_duration_since(e.last_seen) >= FORGET_AFTER) {
            self.newest = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TelephoneEvent, encode};
    use super::*;
    use proptest::prelude::*;

    fn pl(code: u8, end: bool, duration: u16) -> [u8; 4] {
        encode(&TelephoneEvent { event: code, end, volume: 10, duration })
    }

    /// Feeds (timestamp, payload) at 20 ms intervals; returns the tones reported.
    fn feed(d: &mut ToneDetector, start: Instant, packets: &[(u32, [u8; 4])]) -> Vec<Tone> {
        let mut tones = Vec::new();
        for (i, (ts, p)) in packets.iter().enumerate() {
            let now = start + Duration::from_millis(20 * i as u64);
            tones.extend(d.on_packet(*ts, p, now));
            tones.extend(d.poll(now));
        }
        tones
    }

    /// A whole event as RFC 4733 senders do it: progress packets, then the end packet ×3.
    fn event(ts: u32, code: u8) -> Vec<(u32, [u8; 4])> {
        let mut v: Vec<_> = (1..=4).map(|k| (ts, pl(code, false, 160 * k))).collect();
        v.extend([(ts, pl(code, true, 800)); 3]);
        v
    }

    #[test]
    fn one_tone_per_event_despite_duplicates_and_three_end_packets() {
        let mut packets = event(1000, 1);
        packets.extend(event(3000, 1)); // the same digit twice is two tones
        packets.extend(event(5000, 11));
        packets.insert(2, packets[1]); // a duplicated packet
        let tones = feed(&mut ToneDetector::new(), Instant::now(), &packets);
        assert_eq!(tones, [Tone::One, Tone::One, Tone::Pound]);
    }

    #[test]
    fn lost_end_packets_and_lost_starts_still_give_one_tone() {
        let mut packets = Vec::new();
        packets.extend(event(1000, 2).into_iter().take(3)); // every end packet lost
        packets.extend(event(2000, 3).into_iter().skip(5)); // only end packets arrive
        packets.extend(event(3000, 4).into_iter().take(1)); // one packet of it at all
        let tones = feed(&mut ToneDetector::new(), Instant::now(), &packets);
        assert_eq!(tones, [Tone::Two, Tone::Three, Tone::Four]);
    }

    #[test]
    fn reordered_and_late_packets_are_not_new_tones() {
        let mut packets = event(1000, 5);
        let mut second = event(2000, 6);
        second.swap(0, 2); // reordered within the event
        // A late end packet of the first event arrives in the middle of the second.
        second.insert(3, (1000, pl(5, true, 800)));
        packets.extend(second);
        // A very late progress packet of the first event after the second ended.
        packets.push((1000, pl(5, false, 160)));
        let tones = feed(&mut ToneDetector::new(), Instant::now(), &packets);
        assert_eq!(tones, [Tone::Five, Tone::Six]);
    }

    #[test]
    fn timestamps_wrap_and_restart_after_silence() {
        let mut d = ToneDetector::new();
        let t0 = Instant::now();
        let mut packets = event(u32::MAX - 100, 7);
        packets.extend(event(700, 8)); // past the wrap: newer
        assert_eq!(feed(&mut d, t0, &packets), [Tone::Seven, Tone::Eight]);
        // An older timestamp right away is a late packet…
        assert_eq!(d.on_packet(10, &pl(9, false, 160), t0 + Duration::from_secs(1)), None);
        // …but after FORGET_AFTER of silence a sender whose timestamps restarted is heard.
        let later = t0 + Duration::from_secs(1) + FORGET_AFTER;
        assert_eq!(d.poll(later), None);
        assert_eq!(d.on_packet(10, &pl(9, false, 160), later), Some(Tone::Nine));
    }

    #[test]
    fn long_event_segments_continue_one_tone() {
        let mut packets = vec![(1000, pl(0, false, 30_000)), (1000, pl(0, false, u16::MAX))];
        packets.push((1000 + u32::from(u16::MAX), pl(0, false, 160))); // segment 2 of the same press
        packets.push((1000 + u32::from(u16::MAX), pl(0, true, 1000)));
        packets.push((200_000, pl(0, false, 160))); // a new press of the same key
        assert_eq!(feed(&mut ToneDetector::new(), Instant::now(), &packets), [Tone::Zero, Tone::Zero]);
    }

    #[test]
    fn malformed_and_non_dtmf_events_report_nothing() {
        let mut d = ToneDetector::new();
        let now = Instant::now();
        assert_eq!(d.on_packet(1, &[1, 2], now), None);
        assert_eq!(d.on_packet(2, &pl(40, false, 160), now), None, "event 40 is not DTMF");
        assert_eq!(d.on_packet(3, &pl(16, false, 160), now), Some(Tone::Flash));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_packets(
            packets in proptest::collection::vec(
                (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..8), 0u64..10_000),
                0..200,
            )
        ) {
            let mut d = ToneDetector::new();
            let mut now = Instant::now();
            for (ts, payload, gap_ms) in packets {
                now += Duration::from_millis(gap_ms);
                let _ = d.on_packet(ts, &payload, now);
                let _ = d.poll(now);
            }
        }

        #[test]
        fn each_event_is_reported_at_most_once(
            codes in proptest::collection::vec(0u8..17, 1..20),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
        ) {
            // Events 2000 units apart, each as RFC 4733 packets, then some packets duplicated
            // and moved later: the detector never reports more tones than events.
            let mut packets: Vec<(u32, [u8; 4])> =
                codes.iter().enumerate().flat_map(|(i, &c)| event(2000 * i as u32, c)).collect();
            for idx in order {
                let p = packets[idx.index(packets.len())];
                packets.push(p);
            }
            let tones = feed(&mut ToneDetector::new(), Instant::now(), &packets);
            prop_assert_eq!(tones.len(), codes.len());
            let expected: Vec<Tone> = codes.iter().map(|&c| Tone::from_code(c).expect("codes < 17")).collect();
            prop_assert_eq!(tones, expected);
        }
    }
}
