//! H.264 RTP payloads (RFC 6184): is this packet the start of a keyframe (IDR, or SPS ahead of
//! one)? That is all an SFU needs to switch simulcast layers on H.264.

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// True when `payload` begins an IDR frame (or carries the SPS that precedes one).
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    match first & 0x1f {
        NAL_IDR | NAL_SPS => true,
        STAP_A => {
            let mut i = 1;
            while let Some(len) = payload.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) {
                match payload.get(i + 2) {
                    Some(nal) if matches!(nal & 0x1f, NAL_IDR | NAL_SPS) => return true,
                    Some(_) => i += 2 + len,
                    None => return false,
                }
            }
            false
        }
        FU_A => payload.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_idr_sps_stap_and_fu_start() {
        assert!(is_keyframe_start(&[0x65, 1, 2]));
        assert!(is_keyframe_start(&[0x67, 1, 2]));
        assert!(!is_keyframe_start(&[0x41, 1, 2]), "non-IDR slice");
        assert!(is_keyframe_start(&[0x18, 0, 2, 0x09, 0x10, 0, 2, 0x67, 0]), "STAP-A with SPS");
        assert!(!is_keyframe_start(&[0x18, 0, 2, 0x09, 0x10]), "STAP-A without");
        assert!(is_keyframe_start(&[0x7c, 0x85, 0]), "FU-A start of IDR");
        assert!(!is_keyframe_start(&[0x7c, 0x05, 0]), "FU-A middle");
        assert!(!is_keyframe_start(&[]));
        assert!(!is_keyframe_start(&[0x18, 0xff, 0xff]));
    }
}
