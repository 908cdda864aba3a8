//! RTP packets (RFC 3550): a parsed view of the fixed header and its extensions over the original
//! bytes, plus in-place field writers. Parsing never allocates and never panics on any input.

use std::ops::Range;

/// Smallest RTP header.
pub const MIN_HEADER_LEN: usize = 12;

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("CSRC list or header extension runs past the end")]
    Truncated,
    #[error("padding length is invalid")]
    BadPadding,
}

/// The fields of an RTP header and where the parts of the packet lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The header extension: its profile (`0xBEDE` one-byte, `0x100x` two-byte) and the byte
    /// range of its elements.
    pub extension: Option<(u16, Range<usize>)>,
    /// Byte range of the payload (excluding padding).
    pub payload: Range<usize>,
}

/// True when the packet is RTCP rather than RTP under RFC 5761 multiplexing (second byte, the
/// RTCP packet type, in 192..=223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

impl RtpHeader {
    /// Parse the header of `buf`.
    pub fn parse(buf: &[u8]) -> Result<RtpHeader, RtpError> {
        if buf.len() < MIN_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0f);
        let mut offset = MIN_HEADER_LEN + 4 * csrc_count;
        if buf.len() < offset {
            return Err(RtpError::Truncated);
        }
        let extension = if has_extension {
            if buf.len() < offset + 4 {
                return Err(RtpError::Truncated);
            }
            let profile = u16::from_be_bytes([buf[offset], buf[offset + 1]]);
            let words = usize::from(u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            if buf.len() < end {
                return Err(RtpError::Truncated);
            }
            offset = end;
            Some((profile, start..end))
        } else {
            None
        };
        let mut end = buf.len();
        if has_padding {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || offset + pad > buf.len() {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            extension,
            payload: offset..end,
        })
    }

    /// The value of header extension element `id`, if present.
    pub fn extension_value<'a>(&self, buf: &'a [u8], id: u8) -> Option<&'a [u8]> {
        let (profile, range) = self.extension.as_ref()?;
        let data = buf.get(range.clone())?;
        if *profile == 0xBEDE {
            one_byte_element(data, id)
        } else if profile & 0xfff0 == 0x1000 {
            two_byte_element(data, id)
        } else {
            None
        }
    }

    /// RFC 6464 audio level in `-dBov` (0 loudest, 127 silence) and the voice activity flag.
    pub fn audio_level(&self, buf: &[u8], id: u8) -> Option<(u8, bool)> {
        let v = *self.extension_value(buf, id)?.first()?;
        Some((v & 0x7f, v & 0x80 != 0))
    }
}

fn one_byte_element(data: &[u8], want: u8) -> Option<&[u8]> {
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == 0 {
            i += 1; // padding
            continue;
        }
        let id = b >> 4;
        let len = usize::from(b & 0x0f) + 1;
        if id == 15 {
            return None; // reserved: stop parsing
        }
        let value = data.get(i + 1..i + 1 + len)?;
        if id == want {
            return Some(value);
        }
        i += 1 + len;
    }
    None
}

fn two_byte_element(data: &[u8], want: u8) -> Option<&[u8]> {
    let mut i = 0;
    while i < data.len() {
        let id = data[i];
        if id == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(*data.get(i + 1)?);
        let value = data.get(i + 2..i + 2 + len)?;
        if id == want {
            return Some(value);
        }
        i += 2 + len;
    }
    None
}

/// Overwrite the sequence number of an RTP packet (`buf.len() >= 12`).
pub fn write_seq(buf: &mut [u8], seq: u16) {
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
}

/// Overwrite the timestamp of an RTP packet (`buf.len() >= 12`).
pub fn write_timestamp(buf: &mut [u8], ts: u32) {
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
}

/// Overwrite the SSRC of an RTP packet (`buf.len() >= 12`).
pub fn write_ssrc(buf: &mut [u8], ssrc: u32) {
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Builds RTP packets (used by clients, tests and benchmarks).
#[derive(Debug, Clone, Default)]
pub struct RtpBuilder {
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    /// One-byte header extension elements `(id, value)`; ids 1..=14, values 1..=16 bytes.
    pub extensions: Vec<(u8, Vec<u8>)>,
}

impl RtpBuilder {
    /// Append the packet with `payload` to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        let has_ext = !self.extensions.is_empty();
        out.push(0x80 | if has_ext { 0x10 } else { 0 });
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if has_ext {
            let body_len: usize = self.extensions.iter().map(|(_, v)| 1 + v.len()).sum();
            let words = body_len.div_ceil(4);
            out.extend_from_slice(&0xBEDEu16.to_be_bytes());
            out.extend_from_slice(&u16::try_from(words).unwrap_or(u16::MAX).to_be_bytes());
            for (id, value) in &self.extensions {
                let len = u8::try_from(value.len().clamp(1, 16) - 1).unwrap_or(0);
                out.push((id << 4) | len);
                out.extend_from_slice(value);
            }
            out.resize(out.len() + (words * 4 - body_len), 0);
        }
        out.extend_from_slice(payload);
    }

    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_HEADER_LEN + 8 + payload.len());
        self.write(payload, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_with_extensions() {
        let b = RtpBuilder {
            payload_type: 111,
            seq: 65535,
            timestamp: 0xdead_beef,
            ssrc: 42,
            marker: true,
            extensions: vec![(1, vec![0x80 | 30]), (3, vec![1, 2, 3])],
        };
        let pkt = b.build(b"hello");
        let h = RtpHeader::parse(&pkt).expect("valid");
        assert_eq!((h.marker, h.payload_type, h.seq, h.timestamp, h.ssrc), (true, 111, 65535, 0xdead_beef, 42));
        assert_eq!(&pkt[h.payload.clone()], b"hello");
        assert_eq!(h.audio_level(&pkt, 1), Some((30, true)));
        assert_eq!(h.extension_value(&pkt, 3), Some(&[1u8, 2, 3][..]));
        assert_eq!(h.extension_value(&pkt, 2), None);
        assert!(!is_rtcp(&pkt));
    }

    #[test]
    fn rewrites_fields_in_place() {
        let mut pkt = RtpBuilder { payload_type: 96, seq: 1, timestamp: 2, ssrc: 3, ..Default::default() }.build(b"x");
        write_seq(&mut pkt, 100);
        write_timestamp(&mut pkt, 200);
        write_ssrc(&mut pkt, 300);
        let h = RtpHeader::parse(&pkt).expect("valid");
        assert_eq!((h.seq, h.timestamp, h.ssrc), (100, 200, 300));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(RtpHeader::parse(&[0x80; 5]), Err(RtpError::TooShort));
        assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpError::BadVersion));
        let mut csrc = vec![0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RtpHeader::parse(&csrc), Err(RtpError::Truncated));
        csrc[0] = 0x90; // extension flag without extension
        assert_eq!(RtpHeader::parse(&csrc), Err(RtpError::Truncated));
        let mut pad = RtpBuilder::default().build(&[1, 2, 0]);
        pad[0] |= 0x20;
        assert_eq!(RtpHeader::parse(&pad), Err(RtpError::BadPadding));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), id in 0u8..16) {
            if let Ok(h) = RtpHeader::parse(&bytes) {
                let _ = h.extension_value(&bytes, id);
                proptest::prop_assert!(h.payload.start <= h.payload.end && h.payload.end <= bytes.len());
            }
        }
    }
}
