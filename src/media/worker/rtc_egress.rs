//! Media out to browsers: a subscriber's copy of a packet written to its str0m peer
//! (`write_rtp`), what all copies of one packet share (`RtcCopy`), and driving the peers written
//! to once per loop turn (`drive_written`).

use super::Outputs;
use super::rtc_io::drive;
use crate::media::ids::SubscriptionId;
use crate::media::metrics::RtcDrop;
use crate::sfu::packet::{Codec, MediaKind, MediaPacket, TELEPHONE_EVENT_PT};
use crate::sfu::rewriter::Rewrite;
use std::time::Instant;
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};

/// What every browser's copy of a packet shares, worked out once per packet.
pub(super) struct RtcCopy {
    /// When the publisher captured it, on this server's clock (`TrackForwarder::capture_time`):
    /// the wallclock str0m's sender reports map it to.
    pub captured: Instant,
    /// Its VP8 payload descriptor, when its picture ID is rewritten (where the fields are).
    pub vp8: Option<str0m::rtp::Vp8Descriptor>,
}

impl RtcCopy {
    pub fn of(pkt: &MediaPacket, captured: Instant) -> Self {
        let vp8 = match (&pkt.vp8, pkt.shared_payload.as_ref()) {
            (Some(d), Some(payload)) if d.picture_id.is_some() => str0m::rtp::Vp8Descriptor::parse(payload).ok(),
            _ => None,
        };
        Self { captured, vp8 }
    }
}

/// Write a subscriber's copy of `pkt` to a browser (it goes out when the peer is driven at the
/// end of the turn, `drive_written`).
pub(super) fn write_rtp(
    out: &mut Outputs,
    idx: usize,
    subscription: SubscriptionId,
    pkt: &MediaPacket,
    rw: &Rewrite,
    copy: &RtcCopy,
) {
    let Some(peer) = out.peers.get_mut(idx).and_then(Option::as_mut) else { return };
    if peer.lost_at.is_some() {
        out.rtc_counters.drop(RtcDrop::Unresponsive);
        return;
    }
    let Some(b) = peer.tx.get_mut(&subscription) else { return };
    let kind = crate::media::metrics::kind_index(b.codec.kind());
    let (Some(ssrc), Some(pt), Some(payload)) = (b.ssrc, b.pt, pkt.shared_payload.as_ref()) else {
        out.rtc_counters.drop(RtcDrop::NotNegotiated);
        return;
    };
    // Telephone-events go out in this browser's payload type for them, or not at all.
    let pt = match (b.codec, pkt.payload_type == TELEPHONE_EVENT_PT, b.tele_pt) {
        (Codec::Opus, true, Some(tele)) => tele,
        (Codec::Opus, true, None) => {
            out.rtc_counters.drop(RtcDrop::NotNegotiated);
            return;
        }
        // H.264 in the browser's payload type of the format that fits the stream.
        (Codec::H264, _, _) => b.h264_pt(pkt.payload_type).unwrap_or(pt),
        _ => pt,
    };
    let seq = SeqNo::from(b.seq.extend(rw.seq));
    let len = payload.len();
    // The wallclock str0m's sender reports map this timestamp to: the publisher's capture time,
    // so audio and video stay in step for the browser (lip sync).
    let mut write = RtpWrite::new(pt, seq, rw.timestamp, copy.captured, payload.clone())
        .marker(pkt.marker)
        .nackable(b.codec.kind() == MediaKind::Video);
    if pkt.audio_level.is_some() || pkt.video_orientation.is_some() {
        let ext = ExtensionValues {
            audio_level: pkt.audio_level.map(|level| -(level.min(127) as i8)),
            voice_activity: pkt.audio_level.map(|level| level < 70),
            video_orientation: pkt.video_orientation.map(str0m::rtp::VideoOrientation::from),
            ..Default::default()
        };
        write = write.ext_vals(ext);
    }
    if let (Some(desc), Some(pic)) = (&copy.vp8, rw.picture_id) {
        let mut patch = desc.patch().picture_id(pic);
        if let (Some(tl0), true) = (rw.tl0_pic_idx, pkt.vp8.is_some_and(|d| d.tl0_pic_idx.is_some())) {
            patch = patch.tl0_pic_idx(tl0);
        }
        if let Ok(patch) = patch.build() {
            write = write.vp8_patch(patch);
        }
    }
    {
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else { return };
        tx.write_rtp(write);
    }
    out.rtc_counters.traffic.sent(kind, len);
    if !peer.dirty {
        peer.dirty = true;
        out.rtc_dirty.push(idx);
    }
}

/// Drive the peers media was written to this turn (`write_rtp`): each encrypts and hands over
/// everything it was given in one pass, instead of one `poll_output` pass per packet.
pub(super) fn drive_written(out: &mut Outputs, now: Instant) {
    while let Some(idx) = out.rtc_dirty.pop() {
        if let Some(peer) = out.peers.get_mut(idx).and_then(Option::as_mut) {
            peer.dirty = false;
            drive(out, idx, now);
        }
    }
}
