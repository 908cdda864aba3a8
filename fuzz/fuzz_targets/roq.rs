//! The QUIC carrier's framing: RoQ datagrams (a QUIC varint flow ID, then RTP or RTCP) routed
//! the way the media worker's `on_datagram` does it, and the signaling stream's `u32`-length
//! prefixed frames (`take_frames`), which must split the same bytes into the same frames however
//! the stream delivers them.
//!
//! Input: a datagram. The same bytes, cut into chunks at positions derived from them, are also
//! fed to the frame splitter as stream data.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use switchboard::media::quic::{FrameTooLarge, take_frames};
use switchboard::rtp::{self, rtcp, varint};
use switchboard::sfu::packet::{Codec, MediaPacket};

/// A small limit, so that both outcomes of the size check are reached.
const MAX_FRAME: usize = 300;

fuzz_target!(|data: &[u8]| {
    datagram(data);
    stream(data);
});

fn datagram(data: &[u8]) {
    let Some((flow, n)) = varint::read(data) else {
        assert!(data.is_empty() || data.len() < 1 << (data[0] >> 6));
        return;
    };
    assert!(matches!(n, 1 | 2 | 4 | 8) && n <= data.len());
    assert!(flow <= varint::MAX);
    assert!(varint::len(flow) <= n, "the shortest form is never longer than what was read");
    let mut enc = Vec::new();
    varint::write(flow, &mut enc);
    assert_eq!(varint::read(&enc), Some((flow, varint::len(flow))));
    let packet = Bytes::copy_from_slice(&data[n..]);
    if rtp::is_rtcp(&packet) {
        for item in rtcp::parse(&packet) {
            if let Ok(rtcp::Rtcp::Nack { items, .. }) = item {
                let _ = rtcp::nack_seqs(items).count();
            }
        }
        return;
    }
    let codec = [Codec::Opus, Codec::Vp8, Codec::H264][(flow % 3) as usize];
    let _ = MediaPacket::parse(packet, codec, Some(1), Instant::now());
}

fn stream(data: &[u8]) {
    // All at once.
    let mut whole = data.to_vec();
    let mut frames_whole = Vec::new();
    let result_whole = take_frames(&mut whole, MAX_FRAME, |f| frames_whole.push(f));
    // The same bytes in chunks (sizes from the data itself, 1..=64).
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut result: Result<(), FrameTooLarge> = Ok(());
    let mut i = 0;
    let mut k = 0;
    while i < data.len() && result.is_ok() {
        let step = 1 + usize::from(data[k % data.len()] % 64);
        k += 1;
        let end = (i + step).min(data.len());
        buf.extend_from_slice(&data[i..end]);
        i = end;
        result = take_frames(&mut buf, MAX_FRAME, |f| frames.push(f));
        if result.is_ok() {
            assert!(buf.len() < 4 + MAX_FRAME, "a complete frame was left in the buffer");
        }
    }
    for f in frames_whole.iter().chain(frames.iter()) {
        assert!(f.len() <= MAX_FRAME);
    }
    match (&result_whole, &result) {
        (Ok(()), Ok(())) => {
            assert_eq!(frames, frames_whole, "chunking changed the frames");
            assert_eq!(buf, whole, "chunking changed the remainder");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert_eq!(frames, frames_whole, "frames before the oversized one");
        }
        _ => panic!("chunking changed the outcome: {result_whole:?} vs {result:?}"),
    }
    // Frames and remainder are the input, minus the length prefixes.
    if result_whole.is_ok() {
        let total: usize = frames_whole.iter().map(|f| f.len() + 4).sum();
        assert_eq!(total + whole.len(), data.len());
    }
}
