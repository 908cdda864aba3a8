//! The RTP packets of `sendDtmfTones`, RFC 4733 style: each tone is an event of [`TONE_LENGTH`]
//! with a packet every [`PACKET_INTERVAL`] (marker bit on the first, duration growing, all carrying
//! the event's start as timestamp), then the end packet three times at the same interval; tones
//! start [`TONE_PERIOD`] apart. A pure function: the caller paces the packets by their offsets.

use super::{TelephoneEvent, Tone, encode};
use crate::rtp::RtpBuilder;
use bytes::Bytes;
use std::time::Duration;

/// How long each tone sounds.
pub const TONE_LENGTH: Duration = Duration::from_millis(100);
/// From one tone's start to the next (the tone, then its end packets and a gap).
pub const TONE_PERIOD: Duration = Duration::from_millis(200);
/// Between two packets of one event.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Power level of generated events, in −dBm0 (a common default).
const VOLUME: u8 = 10;

/// Duration in RTP clock units, saturating at the 16-bit field's maximum.
fn units(d: Duration, clock_rate: u32) -> u64 {
    d.as_micros() as u64 * u64::from(clock_rate) / 1_000_000
}

/// The packets for `tones`, as (offset from the start, complete RTP packet) in sending order.
/// `clock_rate` is the telephone-event clock negotiated (8000 or 48000).
pub fn tone_packets(
    tones: &[Tone],
    ssrc: u32,
    payload_type: u8,
    first_seq: u16,
    first_ts: u32,
    clock_rate: u32,
) -> Vec<(Duration, Bytes)> {
    let per_tone = (TONE_LENGTH.as_millis() / PACKET_INTERVAL.as_millis()) as u32;
    let mut rtp = RtpBuilder { payload_type, seq: first_seq, ssrc, ..RtpBuilder::default() };
    let mut out = Vec::with_capacity(tones.len() * (per_tone as usize + 3));
    let tone_duration = u16::try_from(units(TONE_LENGTH, clock_rate)).unwrap_or(u16::MAX);
    for (i, tone) in tones.iter().enumerate() {
        let start = TONE_PERIOD * i as u32;
        rtp.timestamp = first_ts.wrapping_add(units(start, clock_rate) as u32);
        let mut push = |rtp: &mut RtpBuilder, at: Duration, end: bool, elapsed: Duration, marker: bool| {
            let duration =
                if end { tone_duration } else { u16::try_from(units(elapsed, clock_rate)).unwrap_or(u16::MAX) };
            let payload = encode(&TelephoneEvent { event: tone.code(), end, volume: VOLUME, duration });
            rtp.marker = marker;
            out.push((at, Bytes::from(rtp.build(&payload))));
            rtp.seq = rtp.seq.wrapping_add(1);
        };
        for k in 0..per_tone {
            push(&mut rtp, start + PACKET_INTERVAL * k, false, PACKET_INTERVAL * (k + 1), k == 0);
        }
        for k in 0..3 {
            push(&mut rtp, start + TONE_LENGTH + PACKET_INTERVAL * k, true, TONE_LENGTH, false);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ToneDetector, parse};
    use super::*;
    use crate::rtp::RtpHeader;
    use std::time::Instant;

    #[test]
    fn packets_follow_rfc_4733() {
        let packets = tone_packets(&[Tone::One, Tone::Pound], 0x1234, 101, 65_535, 1_000, 8_000);
        assert_eq!(packets.len(), 2 * (5 + 3));
        let parsed: Vec<_> = packets
            .iter()
            .map(|(at, p)| {
                let h = RtpHeader::parse(p).expect("valid RTP");
                let ev = parse(&p[h.payload.clone()]).expect("valid telephone-event");
                (*at, h, ev)
            })
            .collect();
        for (i, (at, h, ev)) in parsed.iter().enumerate() {
            let (tone, k) = (i / 8, i % 8);
            assert_eq!((h.ssrc, h.payload_type), (0x1234, 101));
            assert_eq!(h.seq, 65_535u16.wrapping_add(i as u16), "one sequence number per packet, wrapping");
            assert_eq!(h.timestamp, 1_000 + 1_600 * tone as u32, "the event's start, 200 ms apart at 8 kHz");
            assert_eq!(h.marker, k == 0, "marker on each event's first packet");
            assert_eq!(ev.event, [1, 11][tone]);
            assert_eq!(ev.end, k >= 5, "the end packet is sent three times");
            let expected = if k < 5 { 160 * (k as u16 + 1) } else { 800 };
            assert_eq!(ev.duration, expected, "duration grows, then the full 100 ms");
            let expected_at = TONE_PERIOD * tone as u32 + PACKET_INTERVAL * k as u32;
            assert_eq!(*at, expected_at);
        }
        // Offsets never go backwards, so a caller can send them in order.
        assert!(packets.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn a_48khz_clock_scales_durations_and_timestamps() {
        let packets = tone_packets(&[Tone::Zero, Tone::Zero], 1, 126, 0, 0, 48_000);
        let h = RtpHeader::parse(&packets[8].1).expect("valid RTP");
        assert_eq!(h.timestamp, 9_600);
        let last = &packets[7].1;
        assert_eq!(parse(&last[12..]).expect("valid").duration, 4_800);
    }

    #[test]
    fn detector_recovers_the_sent_tones_even_with_loss() {
        let sent = [Tone::Nine, Tone::Nine, Tone::Asterisk, Tone::A, Tone::Zero, Tone::Pound];
        let packets = tone_packets(&sent, 7, 101, 100, 5_000, 8_000);
        for drop_every in [0usize, 2, 3, 5] {
            let mut d = ToneDetector::new();
            let t0 = Instant::now();
            let mut got = Vec::new();
            for (i, (at, p)) in packets.iter().enumerate() {
                if drop_every != 0 && i % drop_every == 0 {
                    continue;
                }
                let h = RtpHeader::parse(p).expect("valid RTP");
                got.extend(d.on_packet(h.timestamp, &p[h.payload.clone()], t0 + *at));
            }
            assert_eq!(got, sent, "dropping every {drop_every}th packet");
        }
    }

    #[test]
    fn no_tones_no_packets() {
        assert!(tone_packets(&[], 1, 101, 0, 0, 8_000).is_empty());
    }
}
