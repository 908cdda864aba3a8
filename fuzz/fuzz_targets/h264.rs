//! H.264 payloads (RFC 6184) of publishers' packets: is this the start of a keyframe (IDR or SPS,
//! alone, in a STAP-A aggregate or at the start of an FU-A)? That decides when a subscriber may
//! switch layers, so it must never panic or loop, and must agree with a plain reading of the NAL
//! unit types.
//!
//! Input: the RTP payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::rtp::h264;

fuzz_target!(|data: &[u8]| {
    let key = h264::is_keyframe_start(data);
    assert_eq!(key, reference(data), "{data:02x?}");
});

/// The same question answered the slow, obvious way.
fn reference(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let is_key = |nal: u8| matches!(nal & 0x1f, 5 | 7);
    match first & 0x1f {
        5 | 7 => true,
        24 => {
            // STAP-A: 16-bit size, then a NAL unit; true at the first IDR/SPS header present,
            // false when a size field or a NAL header is missing.
            let mut rest = &p[1..];
            loop {
                if rest.len() < 3 {
                    return false;
                }
                if is_key(rest[2]) {
                    return true;
                }
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if rest.len() < 2 + size {
                    return false;
                }
                rest = &rest[2 + size..];
            }
        }
        28 => p.len() >= 2 && p[1] & 0x80 != 0 && p[1] & 0x1f == 5,
        _ => false,
    }
}
