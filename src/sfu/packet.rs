//! `MediaPacket`: an RTP packet parsed once on arrival and then shared (cheaply cloned) by every
//! subscriber, plus the function that writes a subscriber's rewritten copy.

use super::rewriter::Rewrite;
use crate::rtp::{self, RtpError, RtpHeader, vp8::Vp8Descriptor};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// The payload type of Opus in the packets the SFU forwards (QUIC carries it as sent; packets
/// from browsers are rewritten to it).
pub const OPUS_PT: u8 = 111;
/// The payload type of RFC 4733 telephone-events in an audio track, at the Opus clock of
/// 48 kHz (`docs/PROTOCOL.md`); browsers' own telephone-event payload types are mapped to it
/// and back.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The codecs the SFU understands well enough to switch layers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Codec {
    #[serde(rename = "opus")]
    Opus,
    #[serde(rename = "VP8")]
    Vp8,
    #[serde(rename = "H264")]
    H264,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus => MediaKind::Audio,
            Codec::Vp8 | Codec::H264 => MediaKind::Video,
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Vp8 | Codec::H264 => 90_000,
        }
    }
}

/// A received RTP packet with the facts forwarding needs.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    /// The packet exactly as received.
    pub data: Bytes,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload_type: u8,
    /// Where the payload starts in `data`.
    pub payload_offset: usize,
    pub vp8: Option<Vp8Descriptor>,
    /// First packet of a keyframe (always true for audio: every packet is decodable).
    pub keyframe_start: bool,
    /// RFC 6464 level in -dBov, when the extension is present.
    pub audio_level: Option<u8>,
    /// Coordination of video orientation (CVO, 3GPP TS 26.114): the rotation a WebRTC publisher
    /// (a phone held upright) sent with this packet, 0..=3 as in the extension. Forwarded to
    /// WebRTC subscribers so the picture is shown upright.
    pub video_orientation: Option<u8>,
    pub received_at: Instant,
    /// The payload as a shared slice, for transports that take one (WebRTC via str0m). Made
    /// at most once per packet per worker, and only when a WebRTC subscriber needs it.
    pub shared_payload: Option<Arc<[u8]>>,
}

impl MediaPacket {
    /// Parse `data` as an RTP packet of `codec`. `audio_level_ext` is the header extension ID
    /// carrying RFC 6464 levels.
    pub fn parse(data: Bytes, codec: Codec, audio_level_ext: Option<u8>, now: Instant) -> Result<Self, RtpError> {
        let header = RtpHeader::parse(&data)?;
        let payload = &data[header.payload.clone()];
        let (vp8, keyframe_start) = match codec {
            Codec::Opus => (None, true),
            Codec::Vp8 => {
                let d = rtp::vp8::parse(payload);
                (d, d.is_some_and(|d| d.keyframe))
            }
            Codec::H264 => (None, rtp::h264::is_keyframe_start(payload)),
        };
        let audio_level = audio_level_ext.and_then(|id| header.audio_level(&data, id)).map(|(level, _)| level);
        Ok(Self {
            seq: header.seq,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            marker: header.marker,
            payload_type: header.payload_type,
            payload_offset: header.payload.start,
            vp8,
            keyframe_start,
            audio_level,
            video_orientation: None,
            received_at: now,
            shared_payload: None,
            data,
        })
    }

    /// A copy whose payload is also held as a shared slice.
    pub fn with_shared_payload(&self) -> MediaPacket {
        let mut p = self.clone();
        if p.shared_payload.is_none() {
            p.shared_payload = Some(Arc::from(self.payload()));
        }
        p
    }

    /// The payload bytes (after the RTP header, before padding).
    pub fn payload(&self) -> &[u8] {
        &self.data[self.payload_offset..]
    }
}

/// Append the subscriber's copy of `pkt` to `out`: same bytes, with the output SSRC, sequence
/// number, timestamp and (VP8) picture ID / TL0PICIDX written in. No allocation beyond `out`'s.
pub fn write_rewritten(pkt: &MediaPacket, rw: &Rewrite, out_ssrc: u32, out: &mut BytesMut) {
    let start = out.len();
    out.put_slice(&pkt.data);
    let buf = &mut out[start..];
    rtp::packet::write_seq(buf, rw.seq);
    rtp::packet::write_timestamp(buf, rw.timestamp);
    rtp::packet::write_ssrc(buf, out_ssrc);
    if let Some(d) = &pkt.vp8 {
        let payload = &mut buf[pkt.payload_offset..];
        if let (Some((_, width, offset)), Some(pic)) = (d.picture_id, rw.picture_id) {
            rtp::vp8::write_picture_id(payload, offset, width, pic);
        }
        if let (Some((_, offset)), Some(tl0)) = (d.tl0_pic_idx, rw.tl0_pic_idx) {
            payload[offset] = tl0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpBuilder;

    #[test]
    fn parse_and_rewrite_vp8() {
        let mut payload = Vec::new();
        rtp::vp8::synthetic_payload(300, 9, true, true, (640, 360), 50, &mut payload);
        let raw = RtpBuilder { payload_type: 96, seq: 7, timestamp: 9, ssrc: 1, ..Default::default() }.build(&payload);
        let pkt = MediaPacket::parse(Bytes::from(raw), Codec::Vp8, None, Instant::now()).expect("valid");
        assert!(pkt.keyframe_start);
        let rw = Rewrite { seq: 1000, timestamp: 2000, picture_id: Some(5), tl0_pic_idx: Some(6) };
        let mut out = BytesMut::new();
        write_rewritten(&pkt, &rw, 0xabcd, &mut out);
        let again = MediaPacket::parse(out.freeze(), Codec::Vp8, None, Instant::now()).expect("valid");
        assert_eq!((again.seq, again.timestamp), (1000, 2000));
        let d = again.vp8.expect("descriptor");
        assert_eq!(d.picture_id.map(|p| p.0), Some(5));
        assert_eq!(d.tl0_pic_idx.map(|t| t.0), Some(6));
        assert_eq!(RtpHeader::parse(&again.data).expect("valid").ssrc, 0xabcd);
        assert_eq!(again.payload().len(), pkt.payload().len());
    }

    #[test]
    fn audio_level_is_read() {
        let raw = RtpBuilder { payload_type: 111, extensions: vec![(1, vec![0x80 | 33])], ..Default::default() }
            .build(&[1; 60]);
        let pkt = MediaPacket::parse(Bytes::from(raw), Codec::Opus, Some(1), Instant::now()).expect("valid");
        assert_eq!(pkt.audio_level, Some(33));
        assert!(pkt.keyframe_start);
    }
}
