//! Compound RTCP as subscribers (NACK, PLI, FIR, REMB, RR) and publishers (SR) send it over
//! QUIC. The iterator must stop at the first malformed packet and never read past the buffer;
//! what parses is written again with the server's own writers and must parse back to the same
//! values (NACK sequence numbers as a set, report blocks exactly, REMB within its precision).
//!
//! Input: the compound packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use switchboard::rtp::rtcp::{self, Rtcp};

fuzz_target!(|data: &[u8]| {
    let mut errors = 0;
    let mut count = 0;
    for item in rtcp::parse(data) {
        count += 1;
        assert!(count <= data.len() / 4 + 1, "more packets than 4-byte words");
        let packet = match item {
            Ok(p) => p,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        assert_eq!(errors, 0, "nothing is yielded after an error");
        match packet {
            Rtcp::SenderReport { ssrc, ntp, rtp_timestamp, packets, octets, reports } => {
                let blocks: Vec<_> = reports.iter().collect();
                let mut out = Vec::new();
                rtcp::write_sr(&mut out, ssrc, ntp, rtp_timestamp, packets, octets);
                let back = single(&out);
                let Rtcp::SenderReport { ssrc: s, ntp: n, rtp_timestamp: t, packets: p, octets: o, .. } = back else {
                    panic!("an SR parses back as an SR: {back:?}")
                };
                assert_eq!((s, n, t, p, o), (ssrc, ntp, rtp_timestamp, packets, octets));
                round_trip_rr(ssrc, &blocks);
            }
            Rtcp::ReceiverReport { ssrc, reports } => {
                let blocks: Vec<_> = reports.iter().collect();
                assert!(blocks.len() <= 31);
                round_trip_rr(ssrc, &blocks);
            }
            Rtcp::Nack { sender, media, items } => {
                assert_eq!(items.len() % 4, 0);
                let seqs: Vec<u16> = rtcp::nack_seqs(items).collect();
                assert!(seqs.len() <= items.len() / 4 * 17);
                let mut out = Vec::new();
                rtcp::write_nack(&mut out, sender, media, &seqs);
                let Rtcp::Nack { sender: s, media: m, items: again } = single(&out) else {
                    panic!("a NACK parses back as a NACK")
                };
                assert_eq!((s, m), (sender, media));
                let want: BTreeSet<u16> = seqs.iter().copied().collect();
                let got: BTreeSet<u16> = rtcp::nack_seqs(again).collect();
                assert_eq!(got, want, "write_nack covers exactly the sequence numbers it is given");
            }
            Rtcp::Pli { sender, media } => {
                let mut out = Vec::new();
                rtcp::write_pli(&mut out, sender, media);
                assert_eq!(single(&out), Rtcp::Pli { sender, media });
            }
            Rtcp::Fir { sender, entries } => {
                assert_eq!(entries.len() % 8, 0);
                for media in rtcp::fir_ssrcs(entries) {
                    let mut out = Vec::new();
                    rtcp::write_fir(&mut out, sender, media, 7);
                    let Rtcp::Fir { sender: s, entries: e } = single(&out) else { panic!("a FIR parses back") };
                    assert_eq!(s, sender);
                    assert_eq!(rtcp::fir_ssrcs(e).collect::<Vec<_>>(), vec![media]);
                }
            }
            Rtcp::Remb { sender, bitrate_bps } => {
                let mut out = Vec::new();
                rtcp::write_remb(&mut out, sender, bitrate_bps, &[1, 2]);
                let Rtcp::Remb { sender: s, bitrate_bps: b } = single(&out) else { panic!("a REMB parses back") };
                assert_eq!(s, sender);
                // 18 bits of mantissa: the value is rounded down by less than 2^-17 of itself.
                assert!(b <= bitrate_bps && bitrate_bps - b <= bitrate_bps >> 17, "{bitrate_bps} -> {b}");
            }
            Rtcp::Other { .. } => {}
        }
    }
    assert!(errors <= 1);
});

/// The one packet `out` holds.
fn single(out: &[u8]) -> Rtcp<'_> {
    let mut it = rtcp::parse(out);
    let p = it.next().expect("one packet").expect("the server's own packets parse");
    assert!(it.next().is_none(), "exactly one packet");
    p
}

fn round_trip_rr(ssrc: u32, blocks: &[rtcp::ReportBlock]) {
    let mut out = Vec::new();
    rtcp::write_rr(&mut out, ssrc, blocks);
    let Rtcp::ReceiverReport { ssrc: s, reports } = single(&out) else { panic!("an RR parses back as an RR") };
    assert_eq!(s, ssrc);
    let n = blocks.len().min(31);
    assert_eq!(reports.iter().collect::<Vec<_>>(), blocks[..n].to_vec(), "report blocks round-trip");
}
