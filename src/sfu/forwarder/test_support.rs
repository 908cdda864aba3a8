//! Synthetic publishers and subscriptions for the forwarder's unit tests.

use super::SubscriptionSpec;
use crate::rtp::{RtpBuilder, vp8};
use crate::sfu::forwarder::TrackForwarder;
use crate::sfu::packet::{Codec, MediaPacket};
use crate::sfu::rewriter::Rewrite;
use crate::sfu::simulcast::LayerWish;
use bytes::Bytes;
use std::time::Instant;

/// A synthetic 3-layer VP8 publisher: packet `i` of layer `l` has seq `base[l] + i`.
pub(super) struct Publisher {
    pub(super) seq: [u16; 3],
    pub(super) ts: [u32; 3],
    pub(super) pic: [u16; 3],
    pub(super) ssrc: [u32; 3],
}

impl Publisher {
    pub(super) fn new() -> Self {
        Self { seq: [100, 20_000, 65_000], ts: [0, 5_000, 90_000], pic: [1, 500, 32_000], ssrc: [1, 2, 3] }
    }

    /// The publisher restarts `layer`: a new SSRC (or the same), new sequence and timestamp
    /// bases.
    pub(super) fn restart(&mut self, layer: usize, ssrc: u32, seq: u16, ts: u32) {
        self.ssrc[layer] = ssrc;
        self.seq[layer] = seq;
        self.ts[layer] = ts;
    }

    /// One single-packet frame on `layer`.
    pub(super) fn frame(&mut self, now: Instant, layer: usize, key: bool) -> MediaPacket {
        let mut payload = Vec::new();
        vp8::synthetic_payload(self.pic[layer], 0, true, key, (320 << layer, 180 << layer), 100, &mut payload);
        let raw = RtpBuilder {
            payload_type: 96,
            seq: self.seq[layer],
            timestamp: self.ts[layer],
            ssrc: self.ssrc[layer],
            marker: true,
            ..Default::default()
        }
        .build(&payload);
        self.seq[layer] = self.seq[layer].wrapping_add(1);
        self.ts[layer] = self.ts[layer].wrapping_add(3000);
        self.pic[layer] = (self.pic[layer] + 1) & 0x7fff;
        MediaPacket::parse(Bytes::from(raw), Codec::Vp8, None, now).expect("valid")
    }
}

pub(super) fn spec(id: u64, wish: LayerWish) -> SubscriptionSpec<u64> {
    SubscriptionSpec {
        id,
        sink: id,
        out_ssrc: 1000 + id as u32,
        initial: Rewrite { seq: 65_530, timestamp: 0, picture_id: Some(0), tl0_pic_idx: Some(0) },
        wish,
    }
}

pub(super) fn low() -> LayerWish {
    LayerWish { max_layer: Some(0), max_height: None }
}

/// Send one frame on each layer; return what each subscription got: (sub, layer, seq).
pub(super) fn round(
    f: &mut TrackForwarder<u64>,
    p: &mut Publisher,
    now: Instant,
    key: [bool; 3],
) -> Vec<(u64, u8, u16)> {
    let mut got = Vec::new();
    for (layer, key) in key.into_iter().enumerate() {
        let pkt = p.frame(now, layer, key);
        f.on_packet(now, layer as u8, &pkt, |sub, rw| got.push((sub.sink, layer as u8, rw.seq)));
    }
    got
}
