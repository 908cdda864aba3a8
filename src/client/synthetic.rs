//! Synthetic media for tests and the load tester: Opus-sized audio with RFC 6464 levels and
//! VP8-shaped simulcast video with real keyframe bits. Every packet's body starts with a
//! `Marker` (layer, frame number, send time) so a receiver can tell what arrived and when it was
//! sent, even though the SFU rewrote SSRCs and sequence numbers.

use crate::rtp::{RtpBuilder, RtpHeader, vp8};
use bytes::Bytes;

/// Largest RTP packet produced (fits a QUIC datagram on any path).
pub const MAX_PACKET: usize = 1100;
/// Payload type used for synthetic VP8 and Opus.
pub const VP8_PT: u8 = 96;
pub const OPUS_PT: u8 = 111;
/// Header extension ID of the audio level.
pub const AUDIO_LEVEL_EXT: u8 = 1;

/// What a synthetic packet says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Simulcast layer (255 for audio).
    pub layer: u8,
    /// Frame number within the layer (packet number for audio).
    pub frame: u32,
    /// Sender's clock in microseconds.
    pub sent_us: u64,
    /// First packet of a keyframe.
    pub keyframe: bool,
}

const MARKER_LEN: usize = 13;

fn write_marker(m: &Marker, out: &mut Vec<u8>) {
    out.push(m.layer);
    out.extend_from_slice(&m.frame.to_be_bytes());
    out.extend_from_slice(&m.sent_us.to_be_bytes());
}

/// Read the marker of a synthetic packet (after any rewriting by the SFU).
pub fn read_marker(packet: &[u8]) -> Option<Marker> {
    let h = RtpHeader::parse(packet).ok()?;
    let payload = packet.get(h.payload.clone())?;
    let (offset, keyframe) = if h.payload_type == VP8_PT {
        let d = vp8::parse(payload)?;
        let header = if d.frame_start { if d.keyframe { 10 } else { 3 } } else { 0 };
        (d.len + header, d.keyframe)
    } else {
        (0, true)
    };
    let b = payload.get(offset..offset + MARKER_LEN)?;
    Some(Marker {
        layer: b[0],
        frame: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
        sent_us: u64::from_be_bytes([b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]]),
        keyframe,
    })
}

/// One simulcast layer of a synthetic video source.
#[derive(Debug, Clone)]
struct Layer {
    ssrc: u32,
    seq: u16,
    ts: u32,
    picture_id: u16,
    tl0: u8,
    frame: u32,
    size: (u16, u16),
    frame_bytes: usize,
}

/// A VP8-shaped simulcast source at 30 frames per second.
#[derive(Debug, Clone)]
pub struct SyntheticVideo {
    layers: Vec<Layer>,
}

impl SyntheticVideo {
    /// `layers`: (width, height, bits per second) per layer, lowest first.
    pub fn new(ssrc_base: u32, layers: &[(u16, u16, u64)]) -> Self {
        let layers = layers
            .iter()
            .enumerate()
            .map(|(i, &(w, h, bps))| Layer {
                ssrc: ssrc_base + i as u32,
                seq: (ssrc_base as u16).wrapping_mul(7).wrapping_add(i as u16 * 1000),
                ts: ssrc_base.wrapping_mul(13),
                picture_id: (i as u16) * 100,
                tl0: 0,
                frame: 0,
                size: (w, h),
                frame_bytes: usize::try_from(bps / 8 / 30).unwrap_or(1000).max(MARKER_LEN + 20),
            })
            .collect();
        Self { layers }
    }

    /// The usual three layers: 320x180 at 150 kbit/s, 640x360 at 500 kbit/s, 1280x720 at 1.5 Mbit/s.
    pub fn three_layers(ssrc_base: u32) -> Self {
        Self::new(ssrc_base, &[(320, 180, 150_000), (640, 360, 500_000), (1280, 720, 1_500_000)])
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Start again as a restarted encoder would: every layer's sequence numbers and timestamps
    /// jump by these offsets, and frames count from 0.
    pub fn restart(&mut self, seq_offset: u16, ts_offset: u32) {
        for l in &mut self.layers {
            l.seq = l.seq.wrapping_add(seq_offset);
            l.ts = l.ts.wrapping_add(ts_offset);
            l.frame = 0;
        }
    }

    /// The packets of the next frame of `layer` (a keyframe is 3x larger). Advances the layer's
    /// RTP timestamp by one 30 fps frame.
    pub fn frame(&mut self, layer: usize, keyframe: bool, sent_us: u64) -> Vec<Bytes> {
        let Some(l) = self.layers.get_mut(layer) else { return Vec::new() };
        let total = if keyframe { l.frame_bytes * 3 } else { l.frame_bytes };
        let per_packet = MAX_PACKET - 12 - 15 - MARKER_LEN;
        let count = total.div_ceil(per_packet).max(1);
        let marker = Marker { layer: layer as u8, frame: l.frame, sent_us, keyframe };
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let body = (total / count).max(1);
            let mut payload = Vec::with_capacity(body + 32);
            vp8::synthetic_payload(l.picture_id, l.tl0, i == 0, keyframe, l.size, 0, &mut payload);
            write_marker(&marker, &mut payload);
            payload.resize(payload.len() + body, 0x5a);
            let rtp = RtpBuilder {
                payload_type: VP8_PT,
                seq: l.seq,
                timestamp: l.ts,
                ssrc: l.ssrc,
                marker: i + 1 == count,
                extensions: Vec::new(),
            };
            out.push(Bytes::from(rtp.build(&payload)));
            l.seq = l.seq.wrapping_add(1);
        }
        l.ts = l.ts.wrapping_add(3000);
        l.picture_id = (l.picture_id + 1) & 0x7fff;
        l.tl0 = l.tl0.wrapping_add(1);
        l.frame += 1;
        out
    }
}

/// An Opus-sized audio source: 20 ms packets of about 80 bytes (32 kbit/s).
#[derive(Debug, Clone)]
pub struct SyntheticAudio {
    ssrc: u32,
    seq: u16,
    ts: u32,
    packet: u32,
}

impl SyntheticAudio {
    pub fn new(ssrc: u32) -> Self {
        Self { ssrc, seq: (ssrc as u16).wrapping_mul(3), ts: ssrc, packet: 0 }
    }

    /// The next 20 ms packet, with an audio level in -dBov (0 loudest, 127 silent).
    pub fn packet(&mut self, level_dbov: u8, sent_us: u64) -> Bytes {
        let mut payload = Vec::with_capacity(80);
        write_marker(&Marker { layer: 255, frame: self.packet, sent_us, keyframe: true }, &mut payload);
        payload.resize(80, 0x33);
        let rtp = RtpBuilder {
            payload_type: OPUS_PT,
            seq: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            marker: false,
            extensions: vec![(AUDIO_LEVEL_EXT, vec![0x80 | (level_dbov & 0x7f)])],
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(960);
        self.packet += 1;
        Bytes::from(rtp.build(&payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::packet::{Codec, MediaPacket};

    #[test]
    fn video_frames_carry_markers_and_keyframe_bits() {
        let mut v = SyntheticVideo::three_layers(1000);
        let key = v.frame(2, true, 42);
        assert!(key.len() > 1, "a 720p keyframe needs several packets");
        assert!(key.iter().all(|p| p.len() <= MAX_PACKET));
        let first = read_marker(&key[0]).expect("marker");
        assert_eq!((first.layer, first.frame, first.sent_us, first.keyframe), (2, 0, 42, true));
        let m = read_marker(&key[1]).expect("marker in continuation packets");
        assert_eq!((m.layer, m.frame, m.keyframe), (2, 0, false));
        let parsed = MediaPacket::parse(key[0].clone(), Codec::Vp8, None, std::time::Instant::now()).expect("valid");
        assert!(parsed.keyframe_start);
        let delta = v.frame(2, false, 43);
        assert_eq!(read_marker(&delta[0]).map(|m| (m.frame, m.keyframe)), Some((1, false)));
        let h0 = RtpHeader::parse(&key[0]).expect("rtp");
        let h1 = RtpHeader::parse(&delta[0]).expect("rtp");
        assert_eq!(h1.seq, h0.seq.wrapping_add(key.len() as u16));
        assert_eq!(h1.timestamp, h0.timestamp.wrapping_add(3000));
    }

    #[test]
    fn audio_packets_carry_levels() {
        let mut a = SyntheticAudio::new(5);
        let p = a.packet(30, 7);
        let parsed = MediaPacket::parse(p.clone(), Codec::Opus, Some(AUDIO_LEVEL_EXT), std::time::Instant::now())
            .expect("valid");
        assert_eq!(parsed.audio_level, Some(30));
        assert_eq!(read_marker(&p).map(|m| (m.layer, m.frame, m.sent_us)), Some((255, 0, 7)));
    }
}
