//! WebRTC peers on a media worker: one str0m `Rtc` (ICE-lite, RTP mode) per browser session,
//! sharing the worker's UDP socket. This module holds the per-peer state and the pure helpers;
//! the worker drives the peers (`worker/rtc_io.rs`).

use super::command::SessionInput;
use super::ids::{SessionId, SubscriptionId, TrackId};
use crate::lean_queue;
use crate::rooms::TrackSource;
use crate::rtp::h264::{self, H264Format};
use crate::sfu::packet::{Codec, MediaKind, TELEPHONE_EVENT_PT};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::bwe::Bitrate;
use str0m::change::SdpPendingOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec as RtcCodec, FormatParams};
use str0m::media::{Frequency, Mid, Pt, Rid};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Event, IceCreds, Rtc, RtcConfig};

/// Settings shared by every peer of a worker.
#[derive(Clone)]
pub struct RtcSettings {
    /// The DTLS certificate (one per process; generating one per peer is slow).
    pub cert: DtlsCert,
    /// Addresses announced as host candidates (the worker's port on each public IP).
    pub candidates: Vec<SocketAddr>,
    pub initial_bitrate: Bitrate,
    /// How long a peer whose ICE consent lapsed is kept for it to come back.
    pub reconnect_grace: Duration,
}

/// Generate the process's DTLS certificate.
pub fn dtls_certificate() -> Option<DtlsCert> {
    str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
}

/// An SDP change waiting for the next server offer. (str0m keeps changes only inside one
/// `SdpApi`, so the worker queues them while an offer is outstanding.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpChange {
    /// Add a send m-line for a subscription.
    Add(SubscriptionId),
    /// Stop a subscription's m-line.
    Stop(Mid),
    /// Make one of the client's sending m-lines inactive (its role no longer allows it).
    Deactivate(Mid),
}

/// How the server sends one subscription to this peer.
#[derive(Debug, Clone)]
pub struct TxBinding {
    pub track: TrackId,
    /// Assigned when the m-line is added to an offer.
    pub mid: Option<Mid>,
    pub codec: Codec,
    /// Known once the m-line is negotiated.
    pub ssrc: Option<Ssrc>,
    pub pt: Option<Pt>,
    /// The browser's payload type for telephone-events on this m-line (audio; `None`: it did
    /// not negotiate them, and they are not sent to it).
    pub tele_pt: Option<Pt>,
    /// H.264: the browser's payload types on this m-line and their formats, and the last choice
    /// made among them (for the SFU payload type the stream arrived in).
    pub h264_pts: Vec<(Pt, H264Format)>,
    pub h264_last: Option<(u8, Pt)>,
    pub seq: ExtendedSeq,
}

impl TxBinding {
    pub fn new(track: TrackId, codec: Codec) -> Self {
        TxBinding {
            track,
            mid: None,
            codec,
            ssrc: None,
            pt: None,
            tele_pt: None,
            h264_pts: Vec::new(),
            h264_last: None,
            seq: ExtendedSeq::default(),
        }
    }

    /// The browser's payload type for H.264 that arrived in the SFU's `sfu_pt`: the one whose
    /// format fits the stream best (`None` before negotiation).
    pub fn h264_pt(&mut self, sfu_pt: u8) -> Option<Pt> {
        if let Some((seen, pt)) = self.h264_last
            && seen == sfu_pt
        {
            return Some(pt);
        }
        let pt = h264::best_fit(self.h264_pts.iter().copied(), h264::format_of(sfu_pt))?;
        self.h264_last = Some((sfu_pt, pt));
        Some(pt)
    }
}

/// What an incoming SSRC of a peer is: a layer of a published track, and (audio) which payload
/// type carries telephone-events on its m-line.
#[derive(Debug, Clone, Copy)]
pub struct RxBinding {
    pub track: TrackId,
    pub layer: u8,
    pub tele_pt: Option<Pt>,
    /// H.264: the last payload type the browser sent on this stream, and the SFU's for its
    /// format.
    pub h264: Option<(Pt, u8)>,
}

/// What a published m-line of this peer carries.
#[derive(Debug, Clone)]
pub struct PublishBinding {
    pub track: TrackId,
    pub source: TrackSource,
    /// Rid of each layer, lowest first (`None` without simulcast).
    pub rids: Vec<Option<Rid>>,
}

/// One browser's peer connection.
pub struct Peer {
    pub rtc: Rtc,
    pub session: SessionId,
    pub inbox: lean_queue::Sender<SessionInput>,
    pub ufrag: String,
    pub timeout: Option<Instant>,
    /// Media was written to it this loop turn: its output is drained once, at the end of the
    /// turn (`Outputs::rtc_dirty`), not after every packet.
    pub dirty: bool,
    /// Our outstanding offer, if any; further changes wait for its answer.
    pub pending: Option<SdpPendingOffer>,
    /// Changes for the next offer.
    pub queued: Vec<SdpChange>,
    /// Changes in the outstanding offer (re-queued if a client offer voids it).
    pub in_flight: Vec<SdpChange>,
    /// The ID of the newest offer (numbered from 1 per peer); the outstanding one while
    /// `pending` is set.
    pub offer_id: u64,
    /// The outstanding offer's SDP, sent again while it is not answered.
    pub pending_sdp: Option<String>,
    /// How often the outstanding offer has been sent.
    pub offer_sends: u32,
    /// Offers the client rejected in a row (the back-off before the next); an answer resets it.
    pub offer_rejects: u32,
    /// No new offer before this (set when the client rejects one).
    pub offers_held_until: Option<Instant>,
    /// When the offer timer fires: send the outstanding offer again, or make the next offer
    /// once `offers_held_until` has passed.
    pub offer_timer: Option<Instant>,
    /// The server's data channel is negotiated (`true`) or in the outstanding offer. Its
    /// `application` m-line is never stopped, so an offer never has an empty BUNDLE group (which
    /// browsers reject) when every subscription has gone.
    pub channel: bool,
    pub channel_in_flight: bool,
    pub publish: HashMap<Mid, PublishBinding>,
    /// Incoming SSRC → its track, layer and telephone-event payload type, resolved once per SSRC.
    pub rx: HashMap<Ssrc, RxBinding>,
    pub tx: HashMap<SubscriptionId, TxBinding>,
    pub by_mid: HashMap<Mid, SubscriptionId>,
    /// Events seen while draining after a write, handled by the worker afterwards.
    pub events: VecDeque<Event>,
    /// The estimate toward this peer: TWCC's, or its receiver reports' when TWCC does not work.
    pub bwe: super::webrtc_bwe::SubscriberBwe,
    /// A loss-based cap on the estimate: what was delivered while losses were high, and when.
    pub loss_cap: Option<(u64, Instant)>,
    /// Bytes sent at the last stats report, and when.
    pub last_tx: Option<(u64, Instant)>,
    pub connected: bool,
    /// When its ICE consent lapsed, while it is kept for `RtcSettings::reconnect_grace`.
    pub lost_at: Option<Instant>,
}

/// Losses above this make the delivered rate a cap on the estimate (GCC's loss-based part: below
/// 10 % it holds). Loss below it is the link's, not congestion, and capping at what got through
/// would ratchet down: each layer delivers less than the one before, so the next cap is lower,
/// and a subscriber on a link with 5 % random loss ended up on the lowest layer for good
/// (`harness_tests`).
pub const LOSS_CAP_THRESHOLD: f32 = 0.10;
/// How long a loss-based cap holds after its last confirmation.
pub const LOSS_CAP_HOLD: Duration = Duration::from_secs(2);
/// An offer not answered within this is sent again; each further resend waits twice as long,
/// up to `OFFER_RETRY_MAX`.
pub const OFFER_RESEND_AFTER: Duration = Duration::from_secs(3);
/// After a rejected offer the next waits this long, doubling with each rejection in a row, up to
/// `OFFER_RETRY_MAX`.
pub const OFFER_REJECT_BACKOFF: Duration = Duration::from_secs(1);
pub const OFFER_RETRY_MAX: Duration = Duration::from_secs(30);

/// `base` doubled `n` times, at most `OFFER_RETRY_MAX`.
pub fn offer_backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.min(16)).min(OFFER_RETRY_MAX)
}

impl Peer {
    /// The estimate to allocate with: the delay-based one, capped by recent loss; or, when TWCC
    /// does not work for this peer, the one from its receiver reports.
    pub fn effective_estimate(&self, now: Instant) -> Option<u64> {
        if self.bwe.fallback().is_some() {
            return self.bwe.receiver_estimate();
        }
        let cap = self.loss_cap.filter(|(_, at)| now.saturating_duration_since(*at) < LOSS_CAP_HOLD).map(|(c, _)| c);
        match (self.bwe.twcc(), cap) {
            (Some(e), Some(c)) => Some(e.min(c)),
            (e, c) => e.or(c),
        }
    }

    /// Take a stats report: when the transport feedback shows heavy loss, cap the estimate at
    /// what actually got through.
    pub fn on_peer_stats(&mut self, bytes_tx: u64, loss: Option<f32>, at: Instant) {
        let previous = self.last_tx.replace((bytes_tx, at));
        let (Some((prev_bytes, prev_at)), Some(loss)) = (previous, loss) else { return };
        let dt = at.saturating_duration_since(prev_at).as_secs_f64();
        if dt <= 0.0 || loss <= LOSS_CAP_THRESHOLD {
            return;
        }
        let sent_bps = bytes_tx.saturating_sub(prev_bytes) as f64 * 8.0 / dt;
        let delivered = sent_bps * f64::from(1.0 - loss.min(1.0));
        self.loss_cap = Some(((delivered * 0.9) as u64, at));
    }
}

impl Peer {
    pub fn new(
        settings: &RtcSettings,
        session: SessionId,
        inbox: lean_queue::Sender<SessionInput>,
        now: Instant,
    ) -> Self {
        let ufrag = random_token(8);
        let creds = IceCreds { ufrag: ufrag.clone(), pass: random_token(24) };
        let mut config = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true);
        // DTMF (RFC 4733) at the Opus clock, as browsers send it with Opus (RTCDTMFSender) and
        // as call automation's tones are: forwarded between carriers by payload type mapping.
        config.codec_config().add_config(
            Pt::from(TELEPHONE_EVENT_PT),
            None,
            RtcCodec::Tele,
            Frequency::FORTY_EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = config
            .enable_bwe(Some(settings.initial_bitrate))
            .set_stats_interval(Some(Duration::from_millis(200)))
            .set_dtls_cert(settings.cert.clone())
            .set_local_ice_credentials(creds)
            .build(now);
        for addr in &settings.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        Self {
            rtc,
            session,
            inbox,
            ufrag,
            timeout: None,
            dirty: false,
            pending: None,
            queued: Vec::new(),
            in_flight: Vec::new(),
            offer_id: 0,
            pending_sdp: None,
            offer_sends: 0,
            offer_rejects: 0,
            offers_held_until: None,
            offer_timer: None,
            channel: false,
            channel_in_flight: false,
            publish: HashMap::new(),
            rx: HashMap::new(),
            tx: HashMap::new(),
            by_mid: HashMap::new(),
            events: VecDeque::new(),
            bwe: super::webrtc_bwe::SubscriberBwe::new(settings.initial_bitrate.as_u64()),
            loss_cap: None,
            last_tx: None,
            connected: false,
            lost_at: None,
        }
    }

    /// The payload type this peer negotiated for telephone-events at 48 kHz on `mid`.
    pub fn negotiated_tele_pt(&self, mid: Mid) -> Option<Pt> {
        let media = self.rtc.media(mid)?;
        media.remote_pts().iter().copied().find(|pt| {
            self.rtc.codec_config().iter().any(|p| {
                p.pt() == *pt && p.spec().codec == RtcCodec::Tele && p.spec().clock_rate == Frequency::FORTY_EIGHT_KHZ
            })
        })
    }

    /// The SFU's H.264 payload type for the H.264 this peer sends in `pt` on `ssrc` (remembered
    /// per incoming stream: browsers keep one payload type).
    pub fn h264_sfu_pt(&mut self, ssrc: Ssrc, pt: Pt) -> u8 {
        if let Some(RxBinding { h264: Some((seen, sfu)), .. }) = self.rx.get(&ssrc)
            && *seen == pt
        {
            return *sfu;
        }
        let sfu = h264::sfu_payload_type(self.h264_format(pt));
        if let Some(b) = self.rx.get_mut(&ssrc) {
            b.h264 = Some((pt, sfu));
        }
        sfu
    }

    /// The format this peer's H.264 payload type `pt` stands for.
    fn h264_format(&self, pt: Pt) -> H264Format {
        self.rtc
            .codec_config()
            .iter()
            .find(|p| p.pt() == pt && p.spec().codec == RtcCodec::H264)
            .map_or(h264::format_of(*pt), |p| {
                H264Format::from_fmtp(p.spec().format.packetization_mode, p.spec().format.profile_level_id)
            })
    }

    /// The H.264 payload types this peer negotiated on `mid`, with their formats.
    pub fn negotiated_h264(&self, mid: Mid) -> Vec<(Pt, H264Format)> {
        let Some(media) = self.rtc.media(mid) else { return Vec::new() };
        media
            .remote_pts()
            .iter()
            .filter_map(|pt| {
                self.rtc.codec_config().iter().find(|p| p.pt() == *pt && p.spec().codec == RtcCodec::H264).map(|p| {
                    (*pt, H264Format::from_fmtp(p.spec().format.packetization_mode, p.spec().format.profile_level_id))
                })
            })
            .collect()
    }

    /// The payload type this peer negotiated for `codec` on `mid`.
    pub fn negotiated_pt(&self, mid: Mid, codec: Codec) -> Option<Pt> {
        let media = self.rtc.media(mid)?;
        let want = to_rtc_codec(codec);
        media
            .remote_pts()
            .iter()
            .copied()
            .find(|pt| self.rtc.codec_config().iter().any(|p| p.pt() == *pt && p.spec().codec == want))
    }
}

/// Map our codec to str0m's.
pub fn to_rtc_codec(c: Codec) -> RtcCodec {
    match c {
        Codec::Opus => RtcCodec::Opus,
        Codec::Vp8 => RtcCodec::Vp8,
        Codec::H264 => RtcCodec::H264,
    }
}

/// Map str0m's codec to ours (the ones the SFU forwards).
pub fn from_rtc_codec(c: RtcCodec) -> Option<Codec> {
    match c {
        RtcCodec::Opus => Some(Codec::Opus),
        RtcCodec::Vp8 => Some(Codec::Vp8),
        RtcCodec::H264 => Some(Codec::H264),
        _ => None,
    }
}

/// Make the sending media lines of an offer that `allow(mid, kind)` refuses receive-only or
/// inactive, so the answer tells the client not to send them (`sendonly` → `inactive`,
/// `sendrecv` → `recvonly`). Returns the rewritten SDP and the refused mids. Lines other than
/// audio and video (e.g. data channels) are left alone.
pub fn restrict_offer(sdp: &str, mut allow: impl FnMut(&str, MediaKind) -> bool) -> (String, Vec<String>) {
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        sections.last_mut().expect("sections starts non-empty and only grows").push(line);
    }
    let mut out = String::with_capacity(sdp.len() + 64);
    let mut refused = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let kind = match section.first().map(|l| l.trim_end()) {
            Some(l) if i > 0 && l.starts_with("m=audio") => Some(MediaKind::Audio),
            Some(l) if i > 0 && l.starts_with("m=video") => Some(MediaKind::Video),
            _ => None,
        };
        let mid = section.iter().find_map(|l| l.trim_end().strip_prefix("a=mid:")).map(str::trim);
        let direction = section
            .iter()
            .position(|l| matches!(l.trim_end(), "a=sendonly" | "a=sendrecv" | "a=recvonly" | "a=inactive"));
        let sends = direction.is_none_or(|d| matches!(section[d].trim_end(), "a=sendonly" | "a=sendrecv"));
        let refuse = match (kind, mid) {
            (Some(kind), Some(mid)) => sends && !allow(mid, kind),
            _ => false,
        };
        if !refuse {
            section.iter().for_each(|l| out.push_str(l));
            continue;
        }
        refused.push(mid.unwrap_or_default().to_owned());
        let ending = if section[0].ends_with("\r\n") { "\r\n" } else { "\n" };
        for (j, line) in section.iter().enumerate() {
            match (Some(j) == direction, line.trim_end()) {
                (true, "a=sendonly") => {
                    out.push_str("a=inactive");
                    out.push_str(ending);
                }
                (true, _) => {
                    out.push_str("a=recvonly");
                    out.push_str(ending);
                }
                (false, _) => {
                    out.push_str(line);
                    if j == 0 && direction.is_none() {
                        out.push_str("a=recvonly");
                        out.push_str(ending);
                    }
                }
            }
        }
    }
    (out, refused)
}

/// What a client is told about SDP that str0m refused: `what` ("invalid SDP offer"), then the
/// parser's message with its memory positions (`PointerOffset(0x…)`, an address inside this
/// process) turned into the line of `sdp` they point at, and nothing else that looks like an
/// address. At most 300 characters, on one line.
pub fn describe_sdp_error(what: &str, error: &dyn std::fmt::Display, sdp: &str) -> String {
    const MARK: &str = "PointerOffset(";
    let detail = error.to_string();
    let base = sdp.as_ptr() as usize;
    let mut out = format!("{what}: ");
    let mut rest = detail.as_str();
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let end = after.find(')').map_or(after.len(), |e| e + 1);
        let addr = after[..end.saturating_sub(1)].trim_start_matches("0x");
        match usize::from_str_radix(addr, 16).ok().and_then(|a| a.checked_sub(base)).filter(|o| *o <= sdp.len()) {
            Some(offset) => {
                let line = sdp.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
                out.push_str("line ");
                out.push_str(&line.to_string());
            }
            None => out.push_str("an unknown position"),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    let words: Vec<&str> = out
        .split_whitespace()
        .filter(|w| !(w.trim_start_matches(['(', '[']).starts_with("0x") && w.len() > 8))
        .collect();
    let mut one_line = words.join(" ");
    if one_line.len() > 300 {
        let mut cut = 300;
        while !one_line.is_char_boundary(cut) {
            cut -= 1;
        }
        one_line.truncate(cut);
    }
    one_line
}

/// Repeat the host candidates of an SDP in every media section that lacks them. str0m writes them
/// once, in the first (BUNDLE-tagged) section; clients built on pion or webrtc-rs read candidates
/// only from sections that are not `inactive`, so when the first section is answered `inactive`
/// (a Consumer's refused camera) they would find none and never connect. Rejected sections
/// (port 0 outside the BUNDLE group) are left alone.
pub fn candidates_in_every_section(sdp: &str) -> String {
    let candidates: Vec<&str> = sdp.split_inclusive('\n').filter(|l| l.starts_with("a=candidate:")).collect();
    if candidates.is_empty() {
        return sdp.to_owned();
    }
    let bundled: Vec<&str> = sdp
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=group:BUNDLE "))
        .map(|g| g.split_whitespace().collect())
        .unwrap_or_default();
    let mut out = String::with_capacity(sdp.len() + 256);
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        let has = section.iter().any(|l| l.starts_with("a=candidate:"));
        let mid = section.iter().find_map(|l| l.trim_end().strip_prefix("a=mid:")).map(str::trim);
        let in_bundle = mid.is_some_and(|m| bundled.contains(&m));
        for line in section.iter() {
            out.push_str(line);
            if is_media && !has && in_bundle && line.starts_with("c=") {
                for c in &candidates {
                    out.push_str(c);
                    // The SDP's last line may have no line break: the copy needs one, or it
                    // would swallow the line after it.
                    if !c.ends_with('\n') {
                        out.push_str("\r\n");
                    }
                }
            }
        }
        section.clear();
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out
}

/// The media IDs of an SDP, in order (`a=mid:` lines).
pub fn sdp_mids(sdp: &str) -> Vec<String> {
    sdp.lines().filter_map(|l| l.trim().strip_prefix("a=mid:")).map(|m| m.trim().to_owned()).collect()
}

/// Extends 16-bit output sequence numbers to the 64-bit form str0m wants (the upper bits feed
/// the SRTP rollover counter), tolerating reordering around a wrap.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtendedSeq {
    last: Option<u64>,
}

impl ExtendedSeq {
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(u64::from(seq));
            return u64::from(seq);
        };
        let roc = last >> 16;
        let candidates = [roc.wrapping_sub(1), roc, roc + 1];
        let ext = candidates
            .iter()
            .filter(|r| **r <= roc + 1 && (**r != u64::MAX))
            .map(|r| (r << 16) | u64::from(seq))
            .min_by_key(|v| v.abs_diff(last))
            .unwrap_or(u64::from(seq));
        if ext > last {
            self.last = Some(ext);
        }
        ext
    }
}

/// A random ICE token from the allowed character set.
fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; len];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| CHARS[usize::from(*b) % CHARS.len()] as char).collect()
}

/// How long until a peer that never connected is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_errors_point_at_a_line_and_never_at_memory() {
        let sdp = "v=0\r\nt=0 0\r\nbad\r\n";
        let at = sdp.as_ptr() as usize + sdp.find("t=").expect("t= is in the SDP");
        let e = format!("SDP parse: Parse error at PointerOffset(0x{at:x})\nUnexpected `t`\nExpected `o`");
        let d = describe_sdp_error("invalid SDP offer", &e, sdp);
        assert_eq!(d, "invalid SDP offer: SDP parse: Parse error at line 2 Unexpected `t` Expected `o`");
        let elsewhere = describe_sdp_error("x", &"at PointerOffset(0x10) near 0x7fffdeadbeef", sdp);
        assert_eq!(elsewhere, "x: at an unknown position near");
        assert!(describe_sdp_error("x", &"y".repeat(1000), sdp).len() <= 300);
    }

    #[test]
    fn extended_sequence_numbers_survive_wrap_and_reorder() {
        let mut e = ExtendedSeq::default();
        assert_eq!(e.extend(65534), 65534);
        assert_eq!(e.extend(65535), 65535);
        assert_eq!(e.extend(0), 65536);
        assert_eq!(e.extend(65535), 65535, "late packet from before the wrap");
        assert_eq!(e.extend(1), 65537);
        let mut f = ExtendedSeq::default();
        assert_eq!(f.extend(3), 3);
        assert_eq!(f.extend(65535), 65535, "reordered just before the first packet stays in ROC 0");
    }

    #[test]
    fn mids_are_read_from_sdp() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        assert_eq!(sdp_mids(sdp), vec!["0", "1"]);
    }

    #[test]
    fn offers_are_restricted_to_what_may_be_sent() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1 2 3\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendrecv\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:4\r\n";
        let (all, refused) = restrict_offer(sdp, |_, _| true);
        assert_eq!(all, sdp, "nothing refused: unchanged");
        assert!(refused.is_empty());
        let (out, refused) = restrict_offer(sdp, |_, kind| kind == MediaKind::Audio);
        assert_eq!(refused, vec!["1", "3"], "sending video lines are refused; a recvonly one is not sending");
        assert!(out.contains("a=mid:0\r\na=sendonly"), "audio still sends");
        assert!(out.contains("a=mid:1\r\na=recvonly"), "sendrecv becomes recvonly");
        assert!(out.contains("a=mid:2\r\na=recvonly"));
        assert!(out.contains("96\r\na=recvonly\r\na=mid:3"), "an implicit sendrecv gets recvonly");
        assert!(out.ends_with("webrtc-datachannel\r\na=mid:4\r\n"), "data channels are untouched");
        let (out, refused) = restrict_offer(sdp, |mid, _| mid != "0");
        assert_eq!(refused, vec!["0"]);
        assert!(out.contains("a=mid:0\r\na=inactive"), "sendonly becomes inactive");
        assert_eq!(sdp_mids(&out), sdp_mids(sdp), "no media line is lost or added");
    }

    #[test]
    fn candidates_are_repeated_in_every_bundled_section() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\na=mid:0\r\na=inactive\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n\
                   m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=inactive\r\n";
        let out = candidates_in_every_section(sdp);
        assert_eq!(out.matches("a=candidate:").count(), 2, "once more, in the bundled audio section: {out}");
        assert!(out.contains("c=IN IP4 0.0.0.0\r\na=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\na=mid:1"));
        assert_eq!(candidates_in_every_section(&out), out, "idempotent");
        assert_eq!(sdp_mids(&out), sdp_mids(sdp));
    }

    /// Found by the `sdp_offer` fuzz target: a candidate on the SDP's last line, without a line
    /// break, was copied in front of the next section's line and swallowed its `a=mid:`.
    #[test]
    fn a_candidate_on_the_last_line_is_copied_with_a_line_break() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
                   a=candidate:1 1 udp 1 127.0.0.1 5 typ host";
        let out = candidates_in_every_section(sdp);
        assert_eq!(sdp_mids(&out), sdp_mids(sdp), "no media line lost: {out:?}");
        assert!(out.contains("a=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\na=mid:0"));
    }

    #[test]
    fn tokens_are_ice_chars() {
        let t = random_token(24);
        assert_eq!(t.len(), 24);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

#[cfg(test)]
mod loss_tests {
    use super::*;

    fn peer() -> Peer {
        let settings = RtcSettings {
            cert: dtls_certificate().expect("certificate"),
            candidates: vec!["127.0.0.1:9".parse().expect("addr")],
            initial_bitrate: Bitrate::kbps(1000),
            reconnect_grace: Duration::from_secs(20),
        };
        let (tx, _rx) = lean_queue::channel(1);
        Peer::new(&settings, SessionId::next(), tx, Instant::now())
    }

    #[test]
    fn heavy_loss_caps_the_estimate_at_what_was_delivered() {
        let t0 = Instant::now();
        let mut p = peer();
        p.bwe.on_twcc(1_500_000);
        p.on_peer_stats(0, Some(0.0), t0);
        // 100 kB in a second (800 kbit/s) with 50 % loss: 400 kbit/s got through.
        p.on_peer_stats(100_000, Some(0.5), t0 + Duration::from_secs(1));
        assert_eq!(p.effective_estimate(t0 + Duration::from_secs(1)), Some(360_000));
        // Light loss does not cap; the cap expires.
        p.on_peer_stats(200_000, Some(0.01), t0 + Duration::from_secs(2));
        assert_eq!(p.effective_estimate(t0 + Duration::from_millis(3500)), Some(1_500_000));
    }
}
