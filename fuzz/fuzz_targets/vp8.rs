//! The VP8 payload descriptor (RFC 7741) of publishers' packets: where a frame starts, keyframes,
//! and the picture ID / TL0PICIDX offsets the rewriter writes into. Every offset it reports must
//! lie inside the descriptor, and writing a picture ID there must change nothing else.
//!
//! Input: the RTP payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::rtp::vp8;

fuzz_target!(|data: &[u8]| {
    let Some(d) = vp8::parse(data) else { return };
    assert!(d.len >= 1 && d.len <= data.len(), "descriptor of {} bytes in {}", d.len, data.len());
    assert!(!d.keyframe || d.frame_start, "a keyframe starts a frame");
    assert!(d.keyframe_size.is_none() || d.keyframe, "only keyframes carry a size");
    if let Some((w, h)) = d.keyframe_size {
        assert!(w <= 0x3fff && h <= 0x3fff);
    }
    if let Some((_, offset)) = d.tl0_pic_idx {
        assert!(offset < d.len);
    }
    let Some((pic, width, offset)) = d.picture_id else { return };
    assert!(width == 7 || width == 15);
    assert!(offset + usize::from(width / 8) < d.len, "picture ID at {offset} (width {width}) outside {}", d.len);
    let mask = if width == 15 { 0x7fff } else { 0x7f };
    assert_eq!(pic & !mask, 0);
    // What the rewriter does with it.
    for value in [0, pic.wrapping_add(1), u16::MAX, pic ^ 0x5555] {
        let mut copy = data.to_vec();
        vp8::write_picture_id(&mut copy, offset, width, value & mask);
        let again = vp8::parse(&copy).expect("still a descriptor");
        assert_eq!(again.picture_id, Some((value & mask, width, offset)));
        assert_eq!((again.len, again.tl0_pic_idx, again.keyframe), (d.len, d.tl0_pic_idx, d.keyframe));
        let end = offset + usize::from(width / 8) + 1;
        assert_eq!(&copy[..offset], &data[..offset]);
        assert_eq!(&copy[end..], &data[end..]);
    }
});
