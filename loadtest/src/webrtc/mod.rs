//! `loadtest media --carrier webrtc`: the same synthetic participants as the QUIC path, as
//! WebRTC peers (str0m in RTP mode) signaled over a WebSocket.
//!
//! - `driver.rs`: one thread runs every peer (sans-IO str0m, one loop over their sockets).
//! - `peer.rs`: one peer: its `Rtc`, the media it sends and what it measures.
//! - `signal.rs`: the SFU's signaling behind `SfuSignaling` (Switchboard's WebSocket protocol).
//!
//! A participant is a tokio task that does the signaling and asks the driver to make and apply
//! SDP; media never passes through it.

mod driver;
mod peer;
mod signal;

use crate::media::{Measured, Shape, Shared};
use anyhow::Context as _;
use driver::{DriverHandle, PeerId};
use signal::{RemoteTrack, SfuEvent, SfuSignaling, SwitchboardSignaling};
use std::net::{IpAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard::sfu::packet::MediaKind;

/// The WebRTC carrier of one run: the driver, and what participants need to reach the server.
pub struct WebRtcCarrier {
    driver: DriverHandle,
    endpoint: String,
    ca: Arc<Vec<u8>>,
    shared: Arc<Shared>,
}

impl WebRtcCarrier {
    /// Start the driver. `endpoint` is the server's HTTPS endpoint (`https://HOST:PORT/`): the
    /// signaling WebSocket is there, and peers' sockets bind to the local address that routes
    /// to it (their ICE host candidate).
    pub fn start(endpoint: &str, ca: &[u8], shared: Arc<Shared>) -> anyhow::Result<Self> {
        let local_ip = local_ip_towards(endpoint)?;
        tracing::info!(%local_ip, "WebRTC peers' address");
        let driver = DriverHandle::start(local_ip, shared.clone())?;
        Ok(Self { driver, endpoint: endpoint.to_owned(), ca: Arc::new(ca.to_vec()), shared })
    }

    /// One participant's life, to spawn: join `group`, publish (if `publishes`), subscribe to
    /// every other publisher's tracks, until the run stops.
    pub fn participant(
        &self,
        token: String,
        group: String,
        publishes: bool,
        shape: Shape,
        seed: u32,
    ) -> impl Future<Output = anyhow::Result<Measured>> + Send + 'static {
        let driver = self.driver.clone();
        let endpoint = self.endpoint.clone();
        let ca = self.ca.clone();
        let shared = self.shared.clone();
        async move {
            let sfu = SwitchboardSignaling::connect(&endpoint, &ca, token, group).await?;
            participant(sfu, driver, publishes.then_some(shape.video), shape.speaker_layout, seed, shared).await
        }
    }
}

/// Join, then let the driver run the peer while this answers the SFU's offers and subscribes to
/// new tracks. `publish: Some(video)` publishes audio (and video).
async fn participant<S: SfuSignaling>(
    mut sfu: S,
    driver: DriverHandle,
    publish: Option<bool>,
    speaker_layout: bool,
    seed: u32,
    shared: Arc<Shared>,
) -> anyhow::Result<Measured> {
    let existing = sfu.join().await?;
    shared.joined.fetch_add(1, Ordering::Relaxed);
    let (peer, offer) = driver.add(publish, seed).await?;
    let signaled = signal_until_stopped(&mut sfu, &driver, peer, offer, existing, speaker_layout, &shared).await;
    let measured = driver.remove(peer).await;
    sfu.leave().await;
    signaled?;
    measured
}

async fn signal_until_stopped<S: SfuSignaling>(
    sfu: &mut S,
    driver: &DriverHandle,
    peer: PeerId,
    offer: Option<String>,
    existing: Vec<RemoteTrack>,
    speaker_layout: bool,
    shared: &Shared,
) -> anyhow::Result<()> {
    if let Some(offer) = offer {
        let answer = sfu.publish(offer).await.context("publishing")?;
        driver.accept_answer(peer, answer).await?;
    }
    // The first video publisher this participant hears of is the speaker in a speaker layout
    // (as in `media.rs`).
    let mut speaker: Option<u64> = None;
    let mut layer_for = |t: &RemoteTrack| match t.kind {
        MediaKind::Audio => None,
        MediaKind::Video if speaker_layout => {
            let s = *speaker.get_or_insert(t.participant_id);
            Some(if t.participant_id == s { 2 } else { 0 })
        }
        MediaKind::Video => Some(2),
    };
    for track in &existing {
        sfu.subscribe(track, layer_for(track)).await.with_context(|| format!("subscribing to {track:?}"))?;
    }
    let mut check_stop = tokio::time::interval(Duration::from_millis(100));
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::select! {
            event = sfu.next_event() => match event? {
                SfuEvent::TrackPublished(track) => {
                    sfu.subscribe(&track, layer_for(&track)).await.with_context(|| format!("subscribing to {track:?}"))?;
                }
                SfuEvent::Offer { offer_id, sdp } => {
                    let answer = driver.accept_offer(peer, sdp).await?;
                    sfu.answer(offer_id, answer).await.context("answering an offer")?;
                }
            },
            _ = check_stop.tick() => {}
        }
    }
    Ok(())
}

/// The local address a datagram to `endpoint`'s host would leave from.
fn local_ip_towards(endpoint: &str) -> anyhow::Result<IpAddr> {
    let host = endpoint.trim_start_matches("https://").trim_end_matches('/');
    let server = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let unspecified: IpAddr =
        if server.is_ipv4() { std::net::Ipv4Addr::UNSPECIFIED.into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
    let probe = std::net::UdpSocket::bind((unspecified, 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}
