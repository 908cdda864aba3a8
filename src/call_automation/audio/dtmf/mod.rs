//! DTMF over RTP (RFC 4733 telephone-events): the 4-byte payload, the ACS tone names, a detector
//! that turns a participant's event packets into tones, the `recognize` state machine, and the
//! packets `sendDtmfTones` sends. All sans-IO: time is an argument.

mod detector;
mod recognizer;
mod sender;
mod tone;

pub use detector::{FORGET_AFTER, ToneDetector};
pub use recognizer::{CompletedReason, FailedReason, RecognizeOptions, RecognizeOutcome, Recognizer};
pub use sender::{PACKET_INTERVAL, TONE_LENGTH, TONE_PERIOD, tone_packets};
pub use tone::{Tone, UnknownTone};

/// Why a payload is not a telephone-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    #[error("telephone-event payload shorter than 4 bytes")]
    TooShort,
}

/// RFC 4733 telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9, `*` = 10, `#` = 11, A–D = 12–15, flash = 16 (others are not DTMF).
    pub event: u8,
    /// The E bit: this is (a retransmission of) the event's last packet.
    pub end: bool,
    /// Power level in −dBm0, 0–63 (higher bits are dropped on encoding).
    pub volume: u8,
    /// Duration so far, in units of the RTP clock, from the event's timestamp.
    pub duration: u16,
}

/// Parse a telephone-event payload. Bytes after the first four (a sender's padding) are ignored;
/// the reserved R bit is ignored as RFC 4733 asks.
pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
    let [event, flags, d0, d1, ..] = *payload else { return Err(DtmfError::TooShort) };
    Ok(TelephoneEvent { event, end: flags & 0x80 != 0, volume: flags & 0x3f, duration: u16::from_be_bytes([d0, d1]) })
}

/// Encode a telephone-event payload (R bit clear).
pub fn encode(ev: &TelephoneEvent) -> [u8; 4] {
    let [d0, d1] = ev.duration.to_be_bytes();
    [ev.event, (u8::from(ev.end) << 7) | (ev.volume & 0x3f), d0, d1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode_round_trip() {
        for ev in [
            TelephoneEvent { event: 0, end: false, volume: 10, duration: 160 },
            TelephoneEvent { event: 11, end: true, volume: 63, duration: u16::MAX },
            TelephoneEvent { event: 255, end: true, volume: 0, duration: 0 },
        ] {
            assert_eq!(parse(&encode(&ev)), Ok(ev));
        }
        // RFC 4733 §2.3 layout: event, E|R|volume, duration (network order).
        let wire = encode(&TelephoneEvent { event: 5, end: true, volume: 10, duration: 0x0320 });
        assert_eq!(wire, [5, 0x8a, 0x03, 0x20]);
        // The R bit is ignored, trailing bytes too; short payloads are refused.
        assert_eq!(parse(&[5, 0xca, 0x03, 0x20, 0xff]), parse(&wire));
        assert_eq!(parse(&[1, 2, 3]), Err(DtmfError::TooShort));
        assert_eq!(parse(&[]), Err(DtmfError::TooShort));
    }
}
