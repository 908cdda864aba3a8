//! H.264 RTP payloads (RFC 6184): is this packet the start of a keyframe (IDR, or SPS ahead of
//! one)? That is all an SFU needs to switch simulcast layers on H.264. And the formats SDP
//! declares for it (packetization mode, profile-level-id), so that a stream leaves in the payload
//! type of a receiver's format that fits it.

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

/// An H.264 format as an SDP `fmtp` line declares it (RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Format {
    /// 0: single NAL units only; 1: also STAP-A and FU-A (what any stream with frames larger
    /// than a packet needs).
    pub packetization_mode: u8,
    /// profile_idc, profile-iop (the constraint flags), level_idc.
    pub profile_level_id: u32,
}

/// Profiles in the order of what a decoder of each also decodes (a High decoder takes
/// Constrained Baseline and Main streams, and so on). Baseline proper (with its FMO/ASO tools)
/// sorts after Constrained Baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    Other(u8),
}

impl H264Format {
    /// The format when `fmtp` leaves parameters out: RFC 6184's defaults, mode 0 and Baseline
    /// level 1.0.
    pub fn from_fmtp(packetization_mode: Option<u8>, profile_level_id: Option<u32>) -> Self {
        H264Format {
            packetization_mode: packetization_mode.unwrap_or(0),
            profile_level_id: profile_level_id.unwrap_or(0x42_00_0a),
        }
    }

    fn level(self) -> u8 {
        self.profile_level_id as u8
    }

    /// The profile, classified from profile_idc and the constraint flags as RFC 6184 §8.1 and
    /// browsers do.
    fn profile(self) -> Profile {
        let idc = (self.profile_level_id >> 16) as u8;
        let iop = (self.profile_level_id >> 8) as u8;
        match idc {
            0x42 if iop & 0x40 != 0 => Profile::ConstrainedBaseline,
            0x4d if iop & 0x80 != 0 => Profile::ConstrainedBaseline,
            0x58 if iop & 0xc0 == 0xc0 => Profile::ConstrainedBaseline,
            0x42 | 0x58 => Profile::Baseline,
            0x4d => Profile::Main,
            0x64 if iop & 0x0c == 0x0c => Profile::ConstrainedHigh,
            0x64 => Profile::High,
            other => Profile::Other(other),
        }
    }

    /// How well a receiver that negotiated `self` takes a stream sent as `sent`: higher is
    /// better, 0 means it may refuse it. The packetization mode weighs most (a mode-0 receiver
    /// drops FU-A fragments), then the profile (the same, else one whose decoder also decodes
    /// the sent one), then the level.
    pub fn fit(self, sent: H264Format) -> u32 {
        let mode = match (self.packetization_mode, sent.packetization_mode) {
            (r, s) if r == s => 8,
            // Mode 1 includes single NAL units.
            (1, 0) => 6,
            _ => 0,
        };
        let profile = match (self.profile(), sent.profile()) {
            (r, s) if r == s => 4,
            (Profile::Other(_), _) | (_, Profile::Other(_)) => 0,
            (r, s) if r > s => 2,
            _ => 0,
        };
        let level = u32::from(self.level() >= sent.level());
        mode + profile + level
    }
}

/// The SFU's own H.264 payload types, each standing for a format (the numbers and formats the
/// server offers browsers, str0m's defaults). H.264 from a browser is forwarded in the one of
/// these whose format fits it best, so QUIC clients see these numbers, and a stream toward a
/// browser goes out in that browser's payload type of the format that fits the stream best.
pub const H264_PAYLOAD_TYPES: [(u8, H264Format); 7] = [
    (127, H264Format { packetization_mode: 1, profile_level_id: 0x42_00_1f }),
    (125, H264Format { packetization_mode: 0, profile_level_id: 0x42_00_1f }),
    (108, H264Format { packetization_mode: 1, profile_level_id: 0x42_e0_1f }),
    (124, H264Format { packetization_mode: 0, profile_level_id: 0x42_e0_1f }),
    (123, H264Format { packetization_mode: 1, profile_level_id: 0x4d_00_1f }),
    (35, H264Format { packetization_mode: 0, profile_level_id: 0x4d_00_1f }),
    (114, H264Format { packetization_mode: 1, profile_level_id: 0x64_00_1f }),
];

/// What a packet in one of the SFU's H.264 payload types carries. Any other number (a QUIC
/// client's own) is taken as packetization mode 1, Constrained Baseline: what WebRTC encoders
/// send.
pub fn format_of(payload_type: u8) -> H264Format {
    H264_PAYLOAD_TYPES
        .iter()
        .find(|(pt, _)| *pt == payload_type)
        .map_or(H264Format { packetization_mode: 1, profile_level_id: 0x42_e0_1f }, |(_, f)| *f)
}

/// The payload type among `choices` whose format takes a stream sent as `sent` best (the first
/// of equals).
pub fn best_fit<P: Copy>(choices: impl IntoIterator<Item = (P, H264Format)>, sent: H264Format) -> Option<P> {
    let mut best: Option<(P, u32)> = None;
    for (pt, format) in choices {
        let fit = format.fit(sent);
        if best.is_none_or(|(_, b)| fit > b) {
            best = Some((pt, fit));
        }
    }
    best.map(|(pt, _)| pt)
}

/// The SFU's payload type for a stream sent as `sent`.
pub fn sfu_payload_type(sent: H264Format) -> u8 {
    best_fit(H264_PAYLOAD_TYPES, sent).expect("H264_PAYLOAD_TYPES is not empty")
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

    #[test]
    fn a_stream_goes_to_the_receivers_format_that_fits_it() {
        let f = |mode, plid| H264Format { packetization_mode: mode, profile_level_id: plid };
        let receiver = [(125u8, f(0, 0x42_00_1f)), (108, f(1, 0x42_e0_1f)), (114, f(1, 0x64_00_1f))];
        // Mode decides first: a mode-1 stream never goes to a mode-0 type while a mode-1 one is
        // there, even of its own profile.
        assert_eq!(best_fit([(125u8, f(0, 0x42_00_1f)), (108, f(1, 0x42_e0_1f))], f(1, 0x42_00_1f)), Some(108));
        assert_eq!(best_fit(receiver, f(0, 0x42_00_1f)), Some(125));
        // Then the profile: the same one, else a decoder that also decodes it.
        assert_eq!(best_fit(receiver, f(1, 0x64_00_1f)), Some(114));
        assert_eq!(best_fit(receiver, f(1, 0x4d_00_1f)), Some(114), "a High decoder takes Main");
        assert_eq!(best_fit(receiver, f(1, 0x42_e0_1f)), Some(108));
        // Nothing fits: still the first, rather than nothing.
        assert_eq!(best_fit([(96u8, f(0, 0x42_00_1f))], f(1, 0x64_00_1f)), Some(96));
        assert_eq!(best_fit::<u8>([], f(1, 0x42_e0_1f)), None);
    }

    #[test]
    fn profiles_are_classified_by_their_constraint_flags() {
        let p = |plid| H264Format { packetization_mode: 1, profile_level_id: plid }.profile();
        assert_eq!(p(0x42_e0_1f), Profile::ConstrainedBaseline);
        assert_eq!(p(0x4d_80_1f), Profile::ConstrainedBaseline, "Main with constraint_set1");
        assert_eq!(p(0x42_00_1f), Profile::Baseline);
        assert_eq!(p(0x4d_00_1f), Profile::Main);
        assert_eq!(p(0x64_0c_1f), Profile::ConstrainedHigh);
        assert_eq!(p(0x64_00_29), Profile::High);
        assert_eq!(p(0xf4_00_1f), Profile::Other(0xf4));
    }

    #[test]
    fn sfu_payload_types_name_their_formats() {
        for (pt, format) in H264_PAYLOAD_TYPES {
            assert_eq!(sfu_payload_type(format), pt);
            assert_eq!(format_of(pt), format);
        }
        assert_eq!(format_of(96), format_of(108), "a QUIC client's own number: mode 1, Constrained Baseline");
        assert_eq!(
            H264Format::from_fmtp(None, None),
            H264Format { packetization_mode: 0, profile_level_id: 0x42_00_0a }
        );
    }
}
