//! One synthetic WebRTC participant: a str0m `Rtc` in RTP mode, its UDP socket, the synthetic
//! media it publishes and what it measures of the media it receives. Owned and driven by the
//! driver thread (`driver.rs`); nothing here blocks or takes a lock.

use crate::media::{Measured, SeqTrack, Shared, epoch, now_us};
use crate::stats::Latencies;
use anyhow::Context as _;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec as Str0mCodec;
use str0m::media::{Direction, MediaKind as Str0mKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use switchboard::client::synthetic::{Marker, OPUS_PT, SyntheticAudio, SyntheticVideo, VP8_PT, read_marker};
use switchboard::rtp::{RtpBuilder, RtpHeader};

/// Simulcast rids, lowest first (as the browser SDK offers them); a layer's index here is its
/// synthetic layer number.
const RIDS: [&str; 3] = ["q", "h", "f"];

/// The order a publisher offers its rids in (`a=simulcast:send ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RidOrder {
    /// `q;h;f`, as the browser SDK offers them (Switchboard).
    LowestFirst,
    /// `f;h;q`: Janus takes the first rid as the highest layer.
    HighestFirst,
}
/// The audio level the synthetic talkers send, in -dBov.
const AUDIO_LEVEL_DBOV: u8 = 40;
/// A video keyframe every this many frames (2 s at 25 frames a second), as `media.rs` sends.
const KEYFRAME_EVERY: u64 = 50;

/// A peer the driver runs.
pub struct Peer {
    rtc: Rtc,
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    /// When str0m next wants `Input::Timeout`.
    pub next_timeout: Instant,
    publishing: Option<Publishing>,
    /// Our offer, until the SFU's answer is applied.
    pending_offer: Option<SdpPendingOffer>,
    connected: bool,
    /// Why str0m gave up on this peer, if it did.
    failed: Option<String>,
    measured: Measured,
    /// Latency samples since the driver last collected them for the progress line (kept here,
    /// not in `Shared`, to take no lock per packet).
    recent: Latencies,
    /// Per received SSRC (one per subscription: the SFU keeps each one a clean stream).
    received: HashMap<u32, RxStream>,
    /// Datagrams str0m did not take (`accepts`) or could not parse, and sends that failed.
    pub dropped: u64,
}

/// What a publishing peer sends.
struct Publishing {
    audio_mid: Mid,
    video_mid: Option<Mid>,
    audio: SyntheticAudio,
    video: SyntheticVideo,
    /// The negotiated payload types (known once the answer is applied).
    opus_pt: Option<Pt>,
    vp8_pt: Option<Pt>,
    /// Extended sequence numbers per stream (audio, then the video layers): str0m takes the
    /// rollover counter from the upper bits.
    seqs: [SeqExtender; 4],
    /// Layers the SFU asked a keyframe of (PLI/FIR), sent with the next frame.
    keyframe_wanted: [bool; 3],
}

/// One received stream (a subscription).
#[derive(Default)]
struct RxStream {
    seqs: SeqTrack,
    /// The last packet's sequence number and marker, to describe a gap when one opens.
    last: Option<(u16, Option<Marker>)>,
}

/// 16-bit sequence numbers to a growing 64-bit count.
#[derive(Default, Clone, Copy)]
struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    /// The first number keeps rollover counter 0: the receiver's SRTP context starts there.
    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.last {
            None => u64::from(seq),
            Some(last) => {
                let base = last & !0xffff;
                [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b + u64::from(seq))
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(last)
            }
        };
        self.last = Some(self.last.map_or(ext, |l| l.max(ext)));
        ext
    }
}

impl Peer {
    /// A peer on a new UDP socket at `local_ip`. A publisher (`publish: Some(video)`) returns its
    /// offer too: one send-only Opus line and, with `video`, one send-only VP8 line in three
    /// simulcast layers.
    /// `cert`: the DTLS certificate (made once per run: making one per peer would stall the
    /// driver, and every other peer's media with it, for each join).
    pub fn new(
        local_ip: std::net::IpAddr,
        cert: &DtlsCert,
        publish: Option<bool>,
        rids: RidOrder,
        seed: u32,
    ) -> anyhow::Result<(Peer, Option<String>)> {
        let socket = mio::net::UdpSocket::bind(SocketAddr::new(local_ip, 0)).context("binding a peer socket")?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .set_dtls_cert(cert.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").context("a host candidate")?);
        let mut offer = None;
        let mut pending_offer = None;
        let publishing = match publish {
            None => None,
            Some(video) => {
                let mut api = rtc.sdp_api();
                let stream = format!("loadtest-{seed}");
                let audio_mid = api.add_media(Str0mKind::Audio, Direction::SendOnly, Some(stream.clone()), None, None);
                let video_mid = video.then(|| {
                    let mut simulcast = Simulcast::new();
                    let mut order = RIDS;
                    if rids == RidOrder::HighestFirst {
                        order.reverse();
                    }
                    for rid in order {
                        simulcast.add_send_layer(SimulcastLayer::new(rid));
                    }
                    api.add_media(Str0mKind::Video, Direction::SendOnly, Some(stream), None, Some(simulcast))
                });
                let (o, pending) = api.apply().context("str0m made no offer for new media")?;
                offer = Some(o.to_sdp_string());
                pending_offer = Some(pending);
                Some(Publishing {
                    audio_mid,
                    video_mid,
                    audio: SyntheticAudio::new(seed * 16 + 1),
                    video: SyntheticVideo::three_layers(seed * 16 + 2),
                    opus_pt: None,
                    vp8_pt: None,
                    seqs: [SeqExtender::default(); 4],
                    keyframe_wanted: [true; 3],
                })
            }
        };
        let peer = Peer {
            rtc,
            socket,
            local,
            next_timeout: now,
            publishing,
            pending_offer,
            connected: false,
            failed: None,
            measured: Measured::default(),
            recent: Latencies::default(),
            received: HashMap::new(),
            dropped: 0,
        };
        Ok((peer, offer))
    }

    pub fn socket(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// Apply the SFU's answer to our offer.
    pub fn accept_answer(&mut self, sdp: &str, shared: &Shared) -> anyhow::Result<()> {
        let pending = self.pending_offer.take().context("no offer of ours awaits an answer")?;
        let answer = SdpAnswer::from_sdp_string(sdp).context("the answer's SDP")?;
        self.rtc.sdp_api().accept_answer(pending, answer).context("applying the answer")?;
        if let Some(p) = &mut self.publishing {
            let params = self.rtc.codec_config().params();
            p.opus_pt = params.iter().find(|c| c.spec().codec == Str0mCodec::Opus).map(|c| c.pt());
            p.vp8_pt = params.iter().find(|c| c.spec().codec == Str0mCodec::Vp8).map(|c| c.pt());
        }
        self.drain(shared);
        Ok(())
    }

    /// Apply an SFU offer (subscriptions); returns our answer.
    pub fn accept_offer(&mut self, sdp: &str, shared: &Shared) -> anyhow::Result<String> {
        let offer = SdpOffer::from_sdp_string(sdp).context("the offer's SDP")?;
        let answer = self.rtc.sdp_api().accept_offer(offer).context("applying the offer")?;
        self.drain(shared);
        Ok(answer.to_sdp_string())
    }

    /// Read every datagram waiting on the socket (the driver's poll is edge-triggered).
    pub fn read_socket(&mut self, buf: &mut [u8], shared: &Shared) {
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    let Some(datagram) = buf.get(..n) else { continue };
                    let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, datagram) else {
                        self.dropped += 1;
                        continue;
                    };
                    let input = Input::Receive(Instant::now(), receive);
                    // Each peer has its own socket, but all of them talk to the same server
                    // address: str0m checks it is this peer's ICE pair (or its ufrag).
                    if !self.rtc.accepts(&input) {
                        self.dropped += 1;
                        continue;
                    }
                    if let Err(e) = self.rtc.handle_input(input) {
                        self.fail(format!("str0m input: {e}"));
                        return;
                    }
                    // str0m keeps one input's output until it is polled: poll before the next.
                    self.drain(shared);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, local = %self.local, "receiving");
                    break;
                }
            }
        }
    }

    /// Let str0m run its timers.
    pub fn handle_timeout(&mut self, now: Instant, shared: &Shared) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(format!("str0m timeout: {e}"));
            return;
        }
        self.drain(shared);
    }

    /// Send tick `n`'s media (every 20 ms): an audio packet, and on even ticks a frame of each
    /// video layer.
    pub fn send_media(&mut self, n: u64, shared: &Shared) {
        if !self.connected || self.failed.is_some() {
            return;
        }
        let Some(p) = &mut self.publishing else { return };
        let now = Instant::now();
        let mut sent = 0u64;
        if let Some(pt) = p.opus_pt {
            let packet = p.audio.packet(AUDIO_LEVEL_DBOV, now_us());
            let ext = ExtensionValues {
                audio_level: Some(-i8::try_from(AUDIO_LEVEL_DBOV).expect("an audio level is at most 127")),
                voice_activity: Some(true),
                ..Default::default()
            };
            if write(&mut self.rtc, p.audio_mid, None, pt, &mut p.seqs[0], &packet, ext, false, now) {
                sent += 1;
            }
        }
        if let (Some(mid), Some(pt)) = (p.video_mid, p.vp8_pt)
            && n.is_multiple_of(2)
        {
            let periodic = (n / 2).is_multiple_of(KEYFRAME_EVERY);
            for (layer, rid) in RIDS.iter().enumerate() {
                let keyframe = periodic || std::mem::take(&mut p.keyframe_wanted[layer]);
                for packet in p.video.frame(layer, keyframe, now_us()) {
                    let seqs = &mut p.seqs[layer + 1];
                    let ext = ExtensionValues::default();
                    if write(&mut self.rtc, mid, Some(Rid::from(*rid)), pt, seqs, &packet, ext, true, now) {
                        sent += 1;
                    }
                }
            }
        }
        shared.sent.fetch_add(sent, Ordering::Relaxed);
        self.handle_timeout(now, shared);
    }

    /// Handle everything str0m has to say until it wants a timeout.
    fn drain(&mut self, shared: &Shared) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination) {
                        tracing::trace!(error = %e, "sending");
                        self.dropped += 1;
                    }
                }
                Ok(Output::Event(event)) => self.on_event(event, shared),
                Err(e) => {
                    self.fail(format!("str0m output: {e}"));
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, event: Event, shared: &Shared) {
        match event {
            Event::Connected => self.connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::warn!(local = %self.local, "ICE disconnected");
            }
            Event::RtpPacket(packet) => self.on_rtp(&packet, shared),
            Event::KeyframeRequest(request) => {
                if let Some(p) = &mut self.publishing
                    && Some(request.mid) == p.video_mid
                {
                    let layer = request.rid.and_then(|rid| RIDS.iter().position(|r| Rid::from(*r) == rid));
                    match layer {
                        Some(layer) => p.keyframe_wanted[layer] = true,
                        None => p.keyframe_wanted = [true; 3],
                    }
                }
            }
            _ => {}
        }
    }

    /// A packet of a subscription: count it and measure its latency from its marker.
    fn on_rtp(&mut self, packet: &RtpPacket, shared: &Shared) {
        shared.received.fetch_add(1, Ordering::Relaxed);
        let h = &packet.header;
        // `read_marker` knows the synthetic payload types; the SFU sends the ones this peer
        // negotiated, so rebuild the packet with the synthetic one of its kind (video runs on
        // a 90 kHz clock, Opus on 48 kHz).
        let video = packet.time.frequency().get() == 90_000;
        let rebuilt = RtpBuilder {
            payload_type: if video { VP8_PT } else { OPUS_PT },
            seq: h.sequence_number,
            timestamp: h.timestamp,
            ssrc: *h.ssrc,
            marker: h.marker,
            extensions: Vec::new(),
        }
        .build(&packet.payload);
        let marker = read_marker(&rebuilt);
        if shared.window.load(Ordering::Relaxed) {
            let layer = if video { marker.map(|m| m.layer) } else { None };
            self.measured.count_in_window(packet.payload.len(), layer);
        }
        if let Some(marker) = marker {
            let latency = epoch().elapsed().saturating_sub(Duration::from_micros(marker.sent_us));
            self.measured.latencies.record(latency);
            self.recent.record(latency);
        }
        let stream = self.received.entry(*h.ssrc).or_default();
        stream.seqs.add(h.sequence_number);
        if let Some((last_seq, last_marker)) = stream.last {
            let skipped = h.sequence_number.wrapping_sub(last_seq).wrapping_sub(1);
            if skipped > 0 && skipped < 0x8000 {
                tracing::debug!(ssrc = *h.ssrc, skipped, ?last_marker, ?marker, "a gap in a received stream");
            }
        }
        stream.last = Some((h.sequence_number, marker));
    }

    /// The latency samples since the last call.
    pub fn take_recent(&mut self) -> Latencies {
        std::mem::take(&mut self.recent)
    }

    fn fail(&mut self, why: String) {
        tracing::warn!(local = %self.local, %why, "a WebRTC peer failed");
        self.failed.get_or_insert(why);
        // Nothing more to do for it: the driver no longer wakes it.
        self.next_timeout = Instant::now() + Duration::from_secs(3600);
    }

    /// What this peer measured; an error if it never connected or str0m gave up on it.
    pub fn finish(mut self) -> anyhow::Result<Measured> {
        if let Some(why) = self.failed {
            anyhow::bail!("the peer failed: {why}");
        }
        anyhow::ensure!(self.connected, "the peer never connected (ICE/DTLS)");
        for (ssrc, stream) in &self.received {
            let (received, expected) = stream.seqs.counts();
            let gaps = stream.seqs.gaps();
            tracing::debug!(local = %self.local, ssrc, received, expected, ?gaps, dropped = self.dropped, "a received stream");
        }
        self.measured.add_counts(self.received.values().map(|s| &s.seqs));
        Ok(self.measured)
    }
}

/// Hand one synthetic RTP packet to str0m on `mid`/`rid` in payload type `pt`. False when the
/// stream does not exist (yet) or the packet is not RTP.
#[allow(clippy::too_many_arguments)]
fn write(
    rtc: &mut Rtc,
    mid: Mid,
    rid: Option<Rid>,
    pt: Pt,
    seqs: &mut SeqExtender,
    packet: &[u8],
    ext: ExtensionValues,
    video: bool,
    now: Instant,
) -> bool {
    let Ok(h) = RtpHeader::parse(packet) else { return false };
    let Some(payload) = packet.get(h.payload.clone()) else { return false };
    let payload: std::sync::Arc<[u8]> = payload.into();
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, rid) else { return false };
    let write = RtpWrite::new(pt, SeqNo::from(seqs.extend(h.seq)), h.timestamp, now, payload)
        .marker(h.marker)
        .ext_vals(ext)
        .nackable(video);
    tx.write_rtp(write);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Switchboard gets the rids lowest first (as the browser SDK offers them), Janus highest
    /// first (it takes the first rid as its top layer).
    #[test]
    fn publishers_offer_their_rids_in_the_order_asked() {
        let cert = str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("a certificate");
        let ip = std::net::Ipv4Addr::LOCALHOST.into();
        for (order, line) in
            [(RidOrder::LowestFirst, "a=simulcast:send q;h;f"), (RidOrder::HighestFirst, "a=simulcast:send f;h;q")]
        {
            let (_, offer) = Peer::new(ip, &cert, Some(true), order, 1).expect("a peer");
            let offer = offer.expect("a publisher's offer");
            assert!(offer.contains(line), "{order:?}: no `{line}` in\n{offer}");
        }
    }

    #[test]
    fn sequence_numbers_extend_across_wrap_around() {
        let mut s = SeqExtender::default();
        let a = s.extend(65_534);
        assert_eq!(s.extend(65_535), a + 1);
        assert_eq!(s.extend(0), a + 2);
        assert_eq!(s.extend(65_535), a + 1, "a late packet keeps its place");
        assert_eq!(s.extend(1), a + 3);
    }
}
