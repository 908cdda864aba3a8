//! How the media worker routes a WebRTC datagram from an address it does not know yet
//! (`rtc_io.rs`, `on_rtc_udp`): str0m classifies the datagram (`Receive::new`), our STUN reader
//! (`rtp::stun`) names the local ICE ufrag of a binding request, and the peer with that ufrag
//! decides whether the request is really its own (`Rtc::accepts`: USERNAME and
//! MESSAGE-INTEGRITY). The peer here is built like `media::webrtc::Peer` (ICE-lite, RTP mode),
//! with fixed credentials so the seed corpus can carry valid requests.
//!
//! Input: the UDP payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, IceCreds, Input, Rtc, RtcConfig};
use switchboard::rtp::stun;

/// The peer's ICE credentials (`fuzz/seeds.py` signs its requests with them).
const UFRAG: &str = "fuzzsrv1";
const PASS: &str = "fuzzpassword0123456789ab";

thread_local! {
    static PEER: RefCell<(Rtc, Instant)> = RefCell::new(peer());
}

fn peer() -> (Rtc, Instant) {
    let now = Instant::now();
    let mut rtc = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .set_local_ice_credentials(IceCreds { ufrag: UFRAG.into(), pass: PASS.into() })
        .build(now);
    rtc.add_local_candidate(Candidate::host(local(), "udp").expect("a host candidate"));
    (rtc, now)
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50_000))
}

fuzz_target!(|data: &[u8]| {
    let ufrag = stun::local_ufrag(data);
    if let Some(u) = ufrag {
        assert!(stun::is_stun(data), "a ufrag only comes from a STUN message");
        assert!(!u.contains(':'));
        assert!(u.len() <= data.len() - 20);
    }
    let from = SocketAddr::from(([127, 0, 0, 2], 40_000));
    let Ok(receive) = Receive::new(Protocol::Udp, from, local(), data) else { return };
    PEER.with(|p| {
        let p = p.borrow();
        let input = Input::Receive(p.1, receive);
        if ufrag == Some(UFRAG) {
            let accepted = p.0.accepts(&input);
            if std::env::var_os("FUZZ_DEBUG").is_some() {
                eprintln!("routed to the peer; accepted: {accepted}");
            }
        }
    });
});
