//! The VP8 RTP payload descriptor (RFC 7741 §4.2): where a frame starts, whether it is a
//! keyframe, and the picture ID / TL0PICIDX fields an SFU must rewrite when it splices layers.

/// What the descriptor at the start of a VP8 payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// `S` bit set with partition index 0: the first packet of a frame.
    pub frame_start: bool,
    /// The first packet of a keyframe (inverse key frame bit clear in the VP8 payload header).
    pub keyframe: bool,
    /// Picture ID value, its width in bits (7 or 15), and its byte offset within the payload.
    pub picture_id: Option<(u16, u8, usize)>,
    /// TL0PICIDX value and its byte offset within the payload.
    pub tl0_pic_idx: Option<(u8, usize)>,
    /// Temporal layer index, when present.
    pub temporal_id: Option<u8>,
    /// Frame size from the keyframe header, when this packet starts a keyframe.
    pub keyframe_size: Option<(u16, u16)>,
    /// Length of the descriptor in bytes.
    pub len: usize,
}

/// Parse the descriptor at the start of `payload`. `None` when it is truncated.
pub fn parse(payload: &[u8]) -> Option<Vp8Descriptor> {
    let b0 = *payload.first()?;
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    let mut d = Vp8Descriptor::default();
    let mut i = 1;
    if extended {
        let x = *payload.get(i)?;
        i += 1;
        let (has_pic, has_tl0, has_tid, has_key_idx) = (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
        if has_pic {
            let p0 = *payload.get(i)?;
            if p0 & 0x80 != 0 {
                let p1 = *payload.get(i + 1)?;
                d.picture_id = Some(((u16::from(p0 & 0x7f) << 8) | u16::from(p1), 15, i));
                i += 2;
            } else {
                d.picture_id = Some((u16::from(p0), 7, i));
                i += 1;
            }
        }
        if has_tl0 {
            d.tl0_pic_idx = Some((*payload.get(i)?, i));
            i += 1;
        }
        if has_tid || has_key_idx {
            let t = *payload.get(i)?;
            if has_tid {
                d.temporal_id = Some(t >> 6);
            }
            i += 1;
        }
    }
    d.len = i;
    d.frame_start = start && partition == 0;
    if d.frame_start {
        // VP8 payload header: bit 0 of the first byte is the inverse key frame flag.
        let header = payload.get(i..)?;
        let first = *header.first()?;
        d.keyframe = first & 0x01 == 0;
        if d.keyframe && header.len() >= 10 && header[3..6] == [0x9d, 0x01, 0x2a] {
            let w = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
            let h = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
            d.keyframe_size = Some((w, h));
        }
    }
    Some(d)
}

/// Write a picture ID of the given width (7 or 15 bits) at `offset` of `payload`.
pub fn write_picture_id(payload: &mut [u8], offset: usize, width: u8, value: u16) {
    if width == 15 {
        payload[offset] = 0x80 | ((value >> 8) as u8 & 0x7f);
        payload[offset + 1] = (value & 0xff) as u8;
    } else {
        payload[offset] = (value & 0x7f) as u8;
    }
}

/// Build a VP8 payload descriptor plus a minimal payload header, for synthetic streams in tests,
/// benchmarks and the load tester. Keyframe starts carry a real keyframe header with `size`.
pub fn synthetic_payload(
    picture_id: u16,
    tl0: u8,
    frame_start: bool,
    keyframe: bool,
    size: (u16, u16),
    body_len: usize,
    out: &mut Vec<u8>,
) {
    out.push(0x80 | if frame_start { 0x10 } else { 0 });
    out.push(0xC0); // I and L present
    out.push(0x80 | ((picture_id >> 8) as u8 & 0x7f));
    out.push((picture_id & 0xff) as u8);
    out.push(tl0);
    if frame_start {
        if keyframe {
            out.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            out.extend_from_slice(&(size.0 & 0x3fff).to_le_bytes());
            out.extend_from_slice(&(size.1 & 0x3fff).to_le_bytes());
        } else {
            out.extend_from_slice(&[0x11, 0x02, 0x00]);
        }
    }
    let filled = out.len();
    out.resize(filled + body_len, 0xAB);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_synthetic_keyframe_and_delta() {
        let mut key = Vec::new();
        synthetic_payload(0x1234, 7, true, true, (1280, 720), 100, &mut key);
        let d = parse(&key).expect("valid");
        assert!(d.frame_start && d.keyframe);
        assert_eq!(d.picture_id, Some((0x1234, 15, 2)));
        assert_eq!(d.tl0_pic_idx, Some((7, 4)));
        assert_eq!(d.keyframe_size, Some((1280, 720)));
        assert_eq!(d.len, 5);

        let mut delta = Vec::new();
        synthetic_payload(5, 8, true, false, (0, 0), 10, &mut delta);
        let d = parse(&delta).expect("valid");
        assert!(d.frame_start && !d.keyframe);

        let mut cont = Vec::new();
        synthetic_payload(5, 8, false, false, (0, 0), 10, &mut cont);
        let d = parse(&cont).expect("valid");
        assert!(!d.frame_start && !d.keyframe);
    }

    #[test]
    fn seven_bit_picture_id_and_no_extension() {
        // X=1, S=1; I=1; M=0 picture id 0x55; then payload header with P=0 (key).
        let p = [0x90, 0x80, 0x55, 0x00, 0, 0];
        let d = parse(&p).expect("valid");
        assert_eq!(d.picture_id, Some((0x55, 7, 2)));
        assert!(d.keyframe);
        let plain = [0x10, 0x01];
        let d = parse(&plain).expect("valid");
        assert_eq!(d.picture_id, None);
        assert!(d.frame_start && !d.keyframe);
    }

    #[test]
    fn rewrites_picture_id() {
        let mut p = Vec::new();
        synthetic_payload(1, 1, true, false, (0, 0), 0, &mut p);
        write_picture_id(&mut p, 2, 15, 0x7fff);
        assert_eq!(parse(&p).expect("valid").picture_id, Some((0x7fff, 15, 2)));
        let mut q = [0x90, 0x80, 0x01, 0x01];
        write_picture_id(&mut q, 2, 7, 0x1ff);
        assert_eq!(parse(&q).expect("valid").picture_id, Some((0x7f, 7, 2)));
    }

    #[test]
    fn truncated_is_none() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x80]), None);
        assert_eq!(parse(&[0x80, 0x80, 0x80]), None);
        assert_eq!(parse(&[0x90]), None, "frame start without payload header");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..32)) {
            if let Some(d) = parse(&bytes) {
                proptest::prop_assert!(d.len <= bytes.len());
            }
        }
    }
}
