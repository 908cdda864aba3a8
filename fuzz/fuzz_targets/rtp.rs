//! RTP as a publisher sends it: the header parser, header extensions, and `MediaPacket::parse`
//! for each codec; then the rewrite every subscriber's copy goes through (`write_rewritten`),
//! which must change exactly the fields it names.
//!
//! Input: the packet. Rewrite values and the audio-level extension ID are derived from it.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use switchboard::rtp::{RtpHeader, is_rtcp, vp8};
use switchboard::sfu::packet::{Codec, MediaPacket, write_rewritten};
use switchboard::sfu::rewriter::Rewrite;

fuzz_target!(|data: &[u8]| {
    let _ = is_rtcp(data);
    let Ok(h) = RtpHeader::parse(data) else { return };
    assert!(
        h.payload.start <= h.payload.end && h.payload.end <= data.len(),
        "payload {:?} of {}",
        h.payload,
        data.len()
    );
    if let Some((_, ext)) = &h.extension {
        assert!(ext.start <= ext.end && ext.end <= h.payload.start, "extension {ext:?} overlaps the payload");
    }
    for id in 0..16 {
        if let Some(v) = h.extension_value(data, id) {
            // An element lies inside the extension block.
            let (_, ext) = h.extension.as_ref().expect("a value needs an extension");
            let start = v.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start >= ext.start && start + v.len() <= ext.end);
        }
        let _ = h.audio_level(data, id);
    }

    let now = Instant::now();
    let ext_id = data.get(12).map(|b| b & 0x0f);
    // Derived rewrite values: deterministic, and different from the input's fields.
    let seed = u32::from_be_bytes([data[4], data[5], data[6], data[7]]).rotate_left(7) ^ 0x5a5a_a5a5;
    let rw = Rewrite {
        seq: (seed >> 3) as u16,
        timestamp: seed.wrapping_mul(2_654_435_761),
        picture_id: Some((seed >> 9) as u16),
        tl0_pic_idx: Some(seed as u8),
    };
    for codec in [Codec::Opus, Codec::Vp8, Codec::H264] {
        let pkt = MediaPacket::parse(Bytes::copy_from_slice(data), codec, ext_id, now).expect("the header parsed");
        assert_eq!((pkt.seq, pkt.timestamp, pkt.ssrc), (h.seq, h.timestamp, h.ssrc));
        assert!(pkt.payload_offset <= data.len());
        if let Some(d) = pkt.vp8 {
            assert!(d.len <= h.payload.len(), "descriptor longer than the payload");
        }
        let mut out = BytesMut::new();
        write_rewritten(&pkt, &rw, 0x1234_5678, &mut out);
        assert_eq!(out.len(), data.len(), "a rewrite never changes the length");
        let again = RtpHeader::parse(&out).expect("a rewritten packet still parses");
        assert_eq!((again.seq, again.timestamp, again.ssrc), (rw.seq, rw.timestamp, 0x1234_5678));
        assert_eq!(
            (again.marker, again.payload_type, again.payload.clone()),
            (h.marker, h.payload_type, h.payload.clone())
        );
        if let Some(d) = pkt.vp8 {
            let d2 = vp8::parse(&out[again.payload.clone()]).expect("the descriptor still parses");
            assert_eq!(
                (d2.len, d2.frame_start, d2.keyframe, d2.temporal_id, d2.keyframe_size),
                (d.len, d.frame_start, d.keyframe, d.temporal_id, d.keyframe_size),
                "only the picture ID and TL0PICIDX change"
            );
            if let Some((_, width, offset)) = d.picture_id {
                let mask = if width == 15 { 0x7fff } else { 0x7f };
                assert_eq!(d2.picture_id, Some((rw.picture_id.expect("set") & mask, width, offset)));
            }
            if let Some((_, offset)) = d.tl0_pic_idx {
                assert_eq!(d2.tl0_pic_idx, Some((rw.tl0_pic_idx.expect("set"), offset)));
            }
            // Only the descriptor's ID fields change: the rest of the payload is untouched.
            assert_eq!(&out[again.payload.start + d.len..], &data[h.payload.start + d.len..]);
        } else {
            assert_eq!(&out[12..], &data[12..], "only seq, timestamp and SSRC change");
            assert_eq!(&out[..2], &data[..2]);
        }
    }
});
