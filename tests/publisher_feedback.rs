//! What the server tells a WebRTC publisher about its packets' arrival (transport-wide congestion
//! control feedback) must describe the network, not how busy the server is. A worker fanning
//! each packet out to many subscribers reads the next one a while later; stamping packets when
//! they were read made a burst that arrived at once look spread out, which a publisher's
//! delay-based estimator takes for a queue on the path (issue: a Chromium publisher dropped its
//! top layer under 80 subscribers).
//!
//! Measured in a debug build with 16 subscribers: a burst reported spread out by 7-8 ms beyond
//! how it was sent (median) when packets were stamped on reading, 0.07 ms with the kernel's
//! receive timestamps.
//!
//! The publisher here is a str0m client driven over a real UDP socket, so the test can read the
//! feedback itself; WebRTC subscribers on the same worker (str0m clients too, connected and then
//! left alone) make the fan-out work: each packet is encrypted and sent to each of them before
//! the next is read.

mod common;

use common::media::{TestServer, group};
use common::webrtc::Signal;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind as Str0mKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::{RawPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use switchboard::client::synthetic::SyntheticVideo;
use switchboard::config::Bounded;
use switchboard::rtp::RtpHeader;
use switchboard::signaling::messages::{ClientMessage, JoinAt, ServerMessage};
use tokio::net::UdpSocket;

/// Enough that, in a debug build, the server took several milliseconds per burst to read it.
const SUBSCRIBERS: usize = 16;
const VP8_PT: u8 = 96;

/// A str0m WebRTC client over a real UDP socket. As a publisher it records, per transport-wide
/// sequence number, when it sent each packet and when the server says it arrived.
struct Str0mClient {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    /// Transport-wide sequence number (16 bits) → when it left this client.
    sent: HashMap<u16, Instant>,
    /// Transport-wide sequence number → arrival time the server reported (on its own clock,
    /// shifted to an arbitrary zero: only differences mean anything).
    reported: HashMap<u16, Instant>,
    connected: bool,
    time_zero: Instant,
}

impl Str0mClient {
    async fn new() -> Str0mClient {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let local = socket.local_addr().expect("addr");
        let now = Instant::now();
        let mut rtc =
            RtcConfig::new().set_rtp_mode(true).enable_raw_packets(true).clear_codecs().enable_vp8(true).build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        Str0mClient {
            rtc,
            socket,
            local,
            mid: Mid::from("none"),
            sent: HashMap::new(),
            reported: HashMap::new(),
            connected: false,
            time_zero: now,
        }
    }

    /// Offer over `sig` and apply the server's answer.
    async fn negotiate(&mut self, sig: &mut Signal) {
        let mut api = self.rtc.sdp_api();
        self.mid = api.add_media(Str0mKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let r = sig.request(ClientMessage::Offer { sdp: offer.to_sdp_string(), sources: Default::default() }).await;
        let ServerMessage::Answer { sdp, .. } = r else { panic!("expected an answer, got {r:?}") };
        let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer SDP");
        self.rtc.sdp_api().accept_answer(pending, answer).expect("accept answer");
    }

    /// Answer the server's offers (a receive-only subscriber) until one has been answered.
    async fn answer_offer(&mut self, sig: &mut Signal) {
        let Some(ServerMessage::Offer { sdp, offer_id }) =
            sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Offer { .. })).await
        else {
            panic!("expected a server offer");
        };
        let offer = SdpOffer::from_sdp_string(&sdp).expect("offer SDP");
        let answer = self.rtc.sdp_api().accept_offer(offer).expect("accept offer");
        let r = sig.request(ClientMessage::Answer { sdp: answer.to_sdp_string(), offer_id: Some(offer_id) }).await;
        assert!(matches!(r, ServerMessage::Ok { .. }), "{r:?}");
    }

    async fn connect(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.connected && Instant::now() < deadline {
            self.run_until(Instant::now() + Duration::from_millis(20)).await;
        }
        assert!(self.connected, "the str0m client connects");
    }

    /// Handle everything str0m has to say; returns when it next wants a timeout.
    async fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("poll") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RawPacket(raw)) => match *raw {
                    RawPacket::RtpTx(header, _) => {
                        if let Some(seq) = header.ext_vals.transport_cc {
                            self.sent.insert(seq, Instant::now());
                        }
                    }
                    RawPacket::RtcpRx(Rtcp::Twcc(twcc)) => {
                        for (seq, _, at) in twcc.into_iter(self.time_zero, 0.into()) {
                            if let Some(at) = at {
                                self.reported.insert(*seq as u16, at);
                            }
                        }
                    }
                    _ => {}
                },
                Output::Event(_) => {}
            }
        }
    }

    /// Run the client until `until`, taking datagrams from the server.
    async fn run_until(&mut self, until: Instant) {
        let mut buf = vec![0u8; 2048];
        loop {
            let wake = self.drain().await.min(until);
            let now = Instant::now();
            if now >= until {
                return;
            }
            let wait = wake.saturating_duration_since(now).max(Duration::from_micros(100));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => {
                    let receive = Receive::new(Protocol::Udp, from, self.local, &buf[..n]).expect("a datagram");
                    self.rtc.handle_input(Input::Receive(Instant::now(), receive)).expect("input");
                }
                _ => self.rtc.handle_input(Input::Timeout(Instant::now())).expect("timeout"),
            }
        }
    }

    /// Write a frame's RTP packets (whole packets from `SyntheticVideo`), then send them back to
    /// back: a burst, as a frame leaves an encoder.
    async fn send_frame(&mut self, packets: &[bytes::Bytes]) {
        for packet in packets {
            let h = RtpHeader::parse(packet).expect("synthetic RTP");
            let payload: Arc<[u8]> = packet[h.payload.clone()].into();
            let write =
                RtpWrite::new(VP8_PT.into(), SeqNo::from(u64::from(h.seq)), h.timestamp, Instant::now(), payload)
                    .marker(h.marker)
                    .nackable(true);
            let mut api = self.rtc.direct_api();
            let tx = api.stream_tx_by_mid(self.mid, None).expect("the video stream");
            tx.write_rtp(write);
        }
        self.rtc.handle_input(Input::Timeout(Instant::now())).expect("timeout");
        self.drain().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_to_a_publisher_reports_arrival_not_when_a_busy_worker_read_it() {
    // One worker: the publisher and every subscriber share it.
    let ts = TestServer::start_with(1, |c| {
        c.limits.joins_per_second_per_address = Bounded::try_from(100_000).expect("in range");
        // Subscribers that are not driven send no congestion feedback: let the estimate toward
        // them start above the video's rate.
        c.webrtc.initial_bitrate_kbps = Bounded::try_from(10_000).expect("in range");
    })
    .await;
    let g = group();
    let (_, token) = ts.identity(&["voip"]).await;
    let mut sig = Signal::connect(&ts.server.endpoint, &ts.ca).await;
    let r = sig.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(&g), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
    let mut publisher = Str0mClient::new().await;
    publisher.negotiate(&mut sig).await;
    let track = match sig.wait_for(Duration::from_secs(5), |m| matches!(m, ServerMessage::Published { .. })).await {
        Some(ServerMessage::Published { track_id, .. }) => track_id,
        other => panic!("expected the track published, got {other:?}"),
    };
    publisher.connect().await;

    // The fan-out: WebRTC subscribers of the track, all on the one worker. Once connected they
    // are not driven: the server sends to them all the same.
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (_, token) = ts.identity(&["voip"]).await;
        let mut sig = Signal::connect(&ts.server.endpoint, &ts.ca).await;
        let r =
            sig.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(&g), display_name: None }).await;
        assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
        let r =
            sig.request(ClientMessage::Subscribe { track_id: track, preferred_layer: None, max_height: None }).await;
        assert!(matches!(r, ServerMessage::Subscribed { .. }), "{r:?}");
        let mut peer = Str0mClient::new().await;
        peer.answer_offer(&mut sig).await;
        peer.connect().await;
        subscribers.push((sig, peer));
    }

    // Two seconds of video: a frame of 8-10 packets every 33 ms, its packets written back to
    // back (a burst, as a frame leaves an encoder); a keyframe every sixth, as this client does
    // not answer keyframe requests.
    let mut video = SyntheticVideo::new(0x5eed, &[(1280, 720, 2_000_000)]);
    let start = Instant::now();
    let mut frame = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        publisher.send_frame(&video.frame(0, frame.is_multiple_of(6), 0)).await;
        frame += 1;
        publisher.run_until(start + Duration::from_millis(33) * frame).await;
    }
    // Let the last feedback come.
    publisher.run_until(Instant::now() + Duration::from_millis(500)).await;
    drop(subscribers);

    // Each frame left this client as a burst (its packets a few microseconds apart) and, on
    // loopback, arrived as one. Compare, burst by burst, how far apart the server reported the
    // first and last packet arriving with how far apart they were sent: they agree but for the
    // feedback's 250 µs resolution. Stamped when read, each packet arrived after the previous
    // one had been sent to every subscriber.
    let mut seqs: Vec<u16> = publisher.reported.keys().copied().filter(|s| publisher.sent.contains_key(s)).collect();
    seqs.sort_unstable();
    assert!(seqs.len() > 300, "feedback on {} packets", seqs.len());
    let mut bursts: Vec<Vec<u16>> = Vec::new();
    for pair in seqs.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let together = b == a.wrapping_add(1)
            && publisher.sent[&b].saturating_duration_since(publisher.sent[&a]) < Duration::from_millis(1);
        match bursts.last_mut() {
            Some(burst) if together && burst.last() == Some(&a) => burst.push(b),
            _ if together => bursts.push(vec![a, b]),
            _ => {}
        }
    }
    let mut excess: Vec<Duration> = bursts
        .iter()
        .filter(|b| b.len() >= 5)
        .map(|b| {
            let (first, last) = (b[0], b[b.len() - 1]);
            let sent = publisher.sent[&last].saturating_duration_since(publisher.sent[&first]);
            let reported = publisher.reported[&last].saturating_duration_since(publisher.reported[&first]);
            reported.saturating_sub(sent)
        })
        .collect();
    assert!(excess.len() > 30, "{} bursts of 5 packets or more", excess.len());
    excess.sort_unstable();
    let median = excess[excess.len() / 2];
    let p90 = excess[excess.len() * 9 / 10];
    // The fan-out happened: each packet went to (nearly) every subscriber.
    let sent_in = ts.metric(r#"switchboard_media_packets_total{direction="in",kind="video",transport="webrtc"}"#).await;
    let sent_out =
        ts.metric(r#"switchboard_media_packets_total{direction="out",kind="video",transport="webrtc"}"#).await;
    assert!(sent_out > sent_in * (SUBSCRIBERS as f64) * 0.5, "{sent_in} packets in, {sent_out} out");
    println!("{} bursts: reported spread beyond the sent one, median {median:?}, p90 {p90:?}", excess.len());
    assert!(median < Duration::from_millis(2), "a burst reported spread out by {median:?} (median), {p90:?} (p90)");
    ts.stop().await;
}
