//! QUIC variable-length integers (RFC 9000 §16), the flow identifier prefix of RoQ datagrams.

/// Largest encodable value (2^62 - 1).
pub const MAX: u64 = (1 << 62) - 1;

/// Encoded length of `v` in bytes (1, 2, 4 or 8).
pub fn len(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Append `v` (which must be at most `MAX`; larger values are clamped) in its shortest form.
pub fn write(v: u64, out: &mut impl bytes::BufMut) {
    let v = v.min(MAX);
    match len(v) {
        1 => out.put_u8(v as u8),
        2 => out.put_u16(0x4000 | v as u16),
        4 => out.put_u32(0x8000_0000 | v as u32),
        _ => out.put_u64(0xc000_0000_0000_0000 | v),
    }
}

/// Read a varint from the start of `buf`: the value and the bytes it took.
pub fn read(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let n = 1usize << (first >> 6);
    let bytes = buf.get(..n)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        let enc = |v: u64| {
            let mut out = Vec::new();
            write(v, &mut out);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(37), [0x25]);
        assert_eq!(enc(15293), [0x7b, 0xbd]);
        assert_eq!(enc(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(enc(151_288_809_941_952_652), [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]);
        assert_eq!(read(&[0x40, 0x25]), Some((37, 2)), "non-minimal form decodes");
        assert_eq!(read(&[0x7b]), None);
        assert_eq!(read(&[]), None);
    }

    proptest::proptest! {
        #[test]
        fn round_trip(v in 0u64..=MAX) {
            let mut out = Vec::new();
            write(v, &mut out);
            proptest::prop_assert_eq!(read(&out), Some((v, len(v))));
        }
    }
}
