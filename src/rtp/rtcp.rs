//! RTCP (RFC 3550, 4585, 5104): parsing of compound packets into the kinds an SFU acts on, and
//! writers for the ones it sends. Parsing is a zero-allocation iterator that stops at the first
//! malformed packet.

/// One RTCP packet within a compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rtcp<'a> {
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_timestamp: u32,
        packets: u32,
        octets: u32,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    /// Generic NACK (RTPFB FMT 1): `(pid, blp)` pairs.
    Nack {
        sender: u32,
        media: u32,
        items: &'a [u8],
    },
    /// Picture loss indication (PSFB FMT 1).
    Pli {
        sender: u32,
        media: u32,
    },
    /// Full intra request (PSFB FMT 4): the media SSRCs it names.
    Fir {
        sender: u32,
        entries: &'a [u8],
    },
    /// Receiver estimated maximum bitrate (PSFB FMT 15, "REMB").
    Remb {
        sender: u32,
        bitrate_bps: u64,
    },
    /// Anything else (SDES, BYE, APP, XR, TWCC...): its packet type and format.
    Other {
        packet_type: u8,
        format: u8,
    },
}

/// The 24-byte report blocks of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed cumulative loss.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl<'a> ReportBlocks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0.chunks_exact(24).map(|b| {
            let lost = i32::from_be_bytes([0, b[5], b[6], b[7]]);
            ReportBlock {
                ssrc: be32(&b[0..4]),
                fraction_lost: b[4],
                cumulative_lost: if lost & 0x80_0000 != 0 { lost - 0x100_0000 } else { lost },
                highest_seq: be32(&b[8..12]),
                jitter: be32(&b[12..16]),
                last_sr: be32(&b[16..20]),
                delay_since_last_sr: be32(&b[20..24]),
            }
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Iterate the packets of a compound RTCP packet.
pub fn parse(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter { buf }
}

/// Iterator over a compound packet; yields `Err(())` once for a malformed packet, then stops.
pub struct RtcpIter<'a> {
    buf: &'a [u8],
}

/// A malformed RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed RTCP packet")]
pub struct RtcpError;

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<Rtcp<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let result = parse_one(self.buf);
        match result {
            Ok((packet, len)) => {
                self.buf = &self.buf[len..];
                Some(Ok(packet))
            }
            Err(e) => {
                self.buf = &[];
                Some(Err(e))
            }
        }
    }
}

fn parse_one(buf: &[u8]) -> Result<(Rtcp<'_>, usize), RtcpError> {
    if buf.len() < 4 || buf[0] >> 6 != 2 {
        return Err(RtcpError);
    }
    let count = buf[0] & 0x1f;
    let packet_type = buf[1];
    let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
    if buf.len() < len {
        return Err(RtcpError);
    }
    let mut body = &buf[4..len];
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(*body.last().ok_or(RtcpError)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError);
        }
        body = &body[..body.len() - pad];
    }
    let need = |n: usize| if body.len() >= n { Ok(()) } else { Err(RtcpError) };
    let packet = match packet_type {
        200 => {
            need(24 + 24 * usize::from(count))?;
            Rtcp::SenderReport {
                ssrc: be32(&body[0..4]),
                ntp: (u64::from(be32(&body[4..8])) << 32) | u64::from(be32(&body[8..12])),
                rtp_timestamp: be32(&body[12..16]),
                packets: be32(&body[16..20]),
                octets: be32(&body[20..24]),
                reports: ReportBlocks(&body[24..24 + 24 * usize::from(count)]),
            }
        }
        201 => {
            need(4 + 24 * usize::from(count))?;
            Rtcp::ReceiverReport {
                ssrc: be32(&body[0..4]),
                reports: ReportBlocks(&body[4..4 + 24 * usize::from(count)]),
            }
        }
        205 if count == 1 => {
            need(8)?;
            let items = &body[8..];
            Rtcp::Nack { sender: be32(&body[0..4]), media: be32(&body[4..8]), items: &items[..items.len() / 4 * 4] }
        }
        206 if count == 1 => {
            need(8)?;
            Rtcp::Pli { sender: be32(&body[0..4]), media: be32(&body[4..8]) }
        }
        206 if count == 4 => {
            need(8)?;
            let entries = &body[8..];
            Rtcp::Fir { sender: be32(&body[0..4]), entries: &entries[..entries.len() / 8 * 8] }
        }
        206 if count == 15 && body.len() >= 16 && &body[8..12] == b"REMB" => {
            let exp = body[13] >> 2;
            let mantissa = (u64::from(body[13] & 0x03) << 16) | (u64::from(body[14]) << 8) | u64::from(body[15]);
            Rtcp::Remb {
                sender: be32(&body[0..4]),
                bitrate_bps: mantissa.checked_shl(u32::from(exp)).unwrap_or(u64::MAX),
            }
        }
        _ => Rtcp::Other { packet_type, format: count },
    };
    Ok((packet, len))
}

/// The sequence numbers a NACK's `(pid, blp)` items name.
pub fn nack_seqs(items: &[u8]) -> impl Iterator<Item = u16> + '_ {
    items.chunks_exact(4).flat_map(|c| {
        let pid = u16::from_be_bytes([c[0], c[1]]);
        let blp = u16::from_be_bytes([c[2], c[3]]);
        std::iter::once(pid)
            .chain((0..16u16).filter(move |i| blp & (1 << i) != 0).map(move |i| pid.wrapping_add(i + 1)))
    })
}

/// The SSRCs a FIR names.
pub fn fir_ssrcs(entries: &[u8]) -> impl Iterator<Item = u32> + '_ {
    entries.chunks_exact(8).map(|c| be32(&c[0..4]))
}

fn header(out: &mut Vec<u8>, count: u8, packet_type: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(packet_type);
    out.extend_from_slice(&u16::try_from(words_after_header).unwrap_or(u16::MAX).to_be_bytes());
}

/// Append a generic NACK for `seqs` (in any order; duplicates are fine).
pub fn write_nack(out: &mut Vec<u8>, sender: u32, media: u32, seqs: &[u16]) {
    // Group into (pid, blp) items: each item covers pid and the 16 following numbers.
    let mut items: Vec<(u16, u16)> = Vec::new();
    let mut sorted: Vec<u16> = seqs.to_vec();
    sorted.sort_unstable_by_key(|s| s.wrapping_sub(seqs.first().copied().unwrap_or(0)));
    sorted.dedup();
    for seq in sorted {
        match items.last_mut() {
            Some((pid, blp)) if seq.wrapping_sub(*pid) >= 1 && seq.wrapping_sub(*pid) <= 16 => {
                *blp |= 1 << (seq.wrapping_sub(*pid) - 1);
            }
            _ => items.push((seq, 0)),
        }
    }
    header(out, 1, 205, 2 + items.len());
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    for (pid, blp) in items {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
}

/// Append a picture loss indication.
pub fn write_pli(out: &mut Vec<u8>, sender: u32, media: u32) {
    header(out, 1, 206, 2);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
}

/// Append a full intra request.
pub fn write_fir(out: &mut Vec<u8>, sender: u32, media: u32, seq_nr: u8) {
    header(out, 4, 206, 4);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    out.extend_from_slice(&[seq_nr, 0, 0, 0]);
}

/// Append a sender report without report blocks.
pub fn write_sr(out: &mut Vec<u8>, ssrc: u32, ntp: u64, rtp_timestamp: u32, packets: u32, octets: u32) {
    header(out, 0, 200, 6);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&packets.to_be_bytes());
    out.extend_from_slice(&octets.to_be_bytes());
}

/// Append a receiver report with up to 31 blocks.
pub fn write_rr(out: &mut Vec<u8>, ssrc: u32, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(31)];
    header(out, u8::try_from(blocks.len()).unwrap_or(31), 201, 1 + 6 * blocks.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        out.push(b.fraction_lost);
        out.extend_from_slice(&b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff).to_be_bytes()[1..4]);
        out.extend_from_slice(&b.highest_seq.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
}

/// Append a REMB message.
pub fn write_remb(out: &mut Vec<u8>, sender: u32, bitrate_bps: u64, ssrcs: &[u32]) {
    let mut exp = 0u8;
    let mut mantissa = bitrate_bps;
    while mantissa > 0x3ffff {
        mantissa >>= 1;
        exp += 1;
    }
    header(out, 15, 206, 4 + ssrcs.len());
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(b"REMB");
    out.push(u8::try_from(ssrcs.len()).unwrap_or(u8::MAX));
    out.push((exp << 2) | ((mantissa >> 16) as u8 & 0x03));
    out.extend_from_slice(&(mantissa as u16).to_be_bytes());
    for s in ssrcs {
        out.extend_from_slice(&s.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_round_trip() {
        let mut out = Vec::new();
        write_sr(&mut out, 1, 0x0102_0304_0506_0708, 99, 10, 1000);
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 70000,
            jitter: 5,
            ..Default::default()
        };
        write_rr(&mut out, 2, &[block]);
        write_nack(&mut out, 3, 4, &[100, 101, 116, 117, 65535]);
        write_pli(&mut out, 5, 6);
        write_fir(&mut out, 5, 8, 1);
        write_remb(&mut out, 9, 1_500_000, &[10]);
        let packets: Vec<_> = parse(&out).collect::<Result<_, _>>().expect("valid compound");
        assert_eq!(packets.len(), 6);
        match &packets[0] {
            Rtcp::SenderReport { ssrc, ntp, rtp_timestamp, packets, octets, .. } => {
                assert_eq!((*ssrc, *ntp, *rtp_timestamp, *packets, *octets), (1, 0x0102_0304_0506_0708, 99, 10, 1000));
            }
            other => panic!("{other:?}"),
        }
        match &packets[1] {
            Rtcp::ReceiverReport { ssrc: 2, reports } => assert_eq!(reports.iter().collect::<Vec<_>>(), vec![block]),
            other => panic!("{other:?}"),
        }
        match &packets[2] {
            Rtcp::Nack { sender: 3, media: 4, items } => {
                let mut seqs: Vec<u16> = nack_seqs(items).collect();
                seqs.sort_unstable();
                assert_eq!(seqs, vec![100, 101, 116, 117, 65535]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(packets[3], Rtcp::Pli { sender: 5, media: 6 });
        match &packets[4] {
            Rtcp::Fir { entries, .. } => assert_eq!(fir_ssrcs(entries).collect::<Vec<_>>(), vec![8]),
            other => panic!("{other:?}"),
        }
        match packets[5] {
            Rtcp::Remb { bitrate_bps, .. } => assert!((1_499_000..=1_500_000).contains(&bitrate_bps)),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nack_items_cover_wraparound() {
        let mut out = Vec::new();
        write_nack(&mut out, 0, 0, &[65534, 65535, 0, 1]);
        let Some(Ok(Rtcp::Nack { items, .. })) = parse(&out).next() else { panic!("nack") };
        assert_eq!(items.len(), 4, "one item covers all four");
        assert_eq!(nack_seqs(items).collect::<Vec<_>>(), vec![65534, 65535, 0, 1]);
    }

    #[test]
    fn malformed_stops_iteration() {
        assert_eq!(parse(&[0x80, 200, 0, 50]).next(), Some(Err(RtcpError)));
        assert_eq!(parse(&[0x00, 200, 0, 0]).next(), Some(Err(RtcpError)));
        let mut it = parse(&[0x81, 200, 0, 1, 0, 0, 0, 0]);
        assert_eq!(it.next(), Some(Err(RtcpError)), "SR with a block but too short");
        assert_eq!(it.next(), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            for p in parse(&bytes).flatten() {
                if let Rtcp::Nack { items, .. } = p { let _ = nack_seqs(items).count(); }
                if let Rtcp::SenderReport { reports, .. } | Rtcp::ReceiverReport { reports, .. } = p { let _ = reports.iter().count(); }
            }
        }
    }
}
