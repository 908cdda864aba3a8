//! `loadtest media --carrier webrtc`: the same synthetic participants as the QUIC path, as
//! WebRTC peers (str0m in RTP mode) signaled over Switchboard's WebSocket, or Janus's HTTP API.
//!
//! - `driver.rs`: one thread runs every peer (sans-IO str0m, one loop over their sockets).
//! - `peer.rs`: one peer: its `Rtc`, the media it sends and what it measures.
//! - `signal.rs`: the SFU's signaling behind `SfuSignaling` (Switchboard's WebSocket protocol).
//! - `janus.rs`: Janus's VideoRoom (HTTP API) behind the same trait (`--sfu janus`).
//!
//! A participant is a tokio task that does the signaling and asks the driver to make and apply
//! SDP; media never passes through it.

mod driver;
mod janus;
mod peer;
mod signal;

use crate::media::{Measured, Shape, Shared};
use anyhow::Context as _;
use driver::{DriverHandle, PeerId};
use peer::RidOrder;
use signal::{Pc, RemoteTrack, SfuEvent, SfuSignaling, SwitchboardSignaling};
use std::net::{IpAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard::sfu::packet::MediaKind;

/// The SFU the peers talk to.
#[derive(Clone)]
pub enum Sfu {
    /// Switchboard's WebSocket signaling on its HTTPS endpoint (`https://HOST:PORT/`).
    Switchboard { endpoint: String, ca: Arc<Vec<u8>> },
    /// Janus's VideoRoom over its HTTP API (`http://HOST:PORT/janus`), in room `room`.
    Janus { url: String, room: u64, http: reqwest::Client },
}

/// The WebRTC carrier of one run: the driver, and what participants need to reach the server.
pub struct WebRtcCarrier {
    driver: DriverHandle,
    sfu: Sfu,
    shared: Arc<Shared>,
}

impl WebRtcCarrier {
    /// Start the driver. Peers' sockets bind to `local_ip` if given, else to the local address
    /// that routes to the SFU (their ICE host candidate).
    pub fn start(sfu: Sfu, local_ip: Option<IpAddr>, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let (local_ip, rids) = match &sfu {
            Sfu::Switchboard { endpoint, .. } => {
                let host = endpoint.trim_start_matches("https://").trim_end_matches('/');
                (local_ip.map_or_else(|| local_ip_towards(host), Ok)?, RidOrder::LowestFirst)
            }
            Sfu::Janus { url, .. } => {
                let u = reqwest::Url::parse(url).with_context(|| format!("--janus-url {url}"))?;
                let host = format!("{}:{}", u.host_str().context("no host")?, u.port_or_known_default().unwrap_or(80));
                // Janus takes the first rid offered as its highest layer.
                (local_ip.map_or_else(|| local_ip_towards(&host), Ok)?, RidOrder::HighestFirst)
            }
        };
        tracing::info!(%local_ip, "WebRTC peers' address");
        let driver = DriverHandle::start(local_ip, rids, shared.clone())?;
        Ok(Self { driver, sfu, shared })
    }

    /// One participant's life, to spawn: join `group` (Switchboard; Janus: the room), publish
    /// (if `publishes`), subscribe to every other publisher's tracks, until the run stops.
    pub fn participant(
        &self,
        token: String,
        group: String,
        publishes: bool,
        shape: Shape,
        seed: u32,
    ) -> impl Future<Output = anyhow::Result<Measured>> + Send + 'static {
        let driver = self.driver.clone();
        let sfu = self.sfu.clone();
        let shared = self.shared.clone();
        async move {
            let publish = publishes.then_some(shape.video);
            match sfu {
                Sfu::Switchboard { endpoint, ca } => {
                    let sfu = SwitchboardSignaling::connect(&endpoint, &ca, token, group).await?;
                    participant(sfu, driver, publish, shape.speaker_layout, seed, shared).await
                }
                Sfu::Janus { url, room, http } => {
                    let sfu = janus::JanusSignaling::new(http, &url, room, format!("loadtest-{seed}"));
                    participant(sfu, driver, publish, shape.speaker_layout, seed, shared).await
                }
            }
        }
    }
}

/// A participant's peers: the main one, and (an SFU that keeps subscriptions on a
/// PeerConnection of their own, for a participant that publishes) the subscriptions' one.
struct Peers {
    main: PeerId,
    subscriptions: Option<PeerId>,
    publishes: bool,
}

impl Peers {
    async fn for_offer(&mut self, pc: Pc, driver: &DriverHandle, seed: u32) -> anyhow::Result<PeerId> {
        match pc {
            Pc::Subscriptions if self.publishes => match self.subscriptions {
                Some(p) => Ok(p),
                None => {
                    let (p, _) = driver.add(None, seed).await?;
                    self.subscriptions = Some(p);
                    Ok(p)
                }
            },
            _ => Ok(self.main),
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
    let existing = match sfu.join().await {
        Ok(e) => e,
        Err(e) => {
            sfu.leave().await;
            return Err(e.context("joining"));
        }
    };
    shared.joined.fetch_add(1, Ordering::Relaxed);
    let (main, offer) = driver.add(publish, seed).await?;
    let mut peers = Peers { main, subscriptions: None, publishes: publish.is_some() };
    let signaled =
        signal_until_stopped(&mut sfu, &driver, &mut peers, offer, existing, speaker_layout, seed, &shared).await;
    let mut measured = driver.remove(peers.main).await;
    if let Some(p) = peers.subscriptions {
        let second = driver.remove(p).await;
        measured = match (measured, second) {
            (Ok(mut a), Ok(b)) => {
                a.merge(b);
                Ok(a)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    sfu.leave().await;
    signaled?;
    measured
}

#[allow(clippy::too_many_arguments)]
async fn signal_until_stopped<S: SfuSignaling>(
    sfu: &mut S,
    driver: &DriverHandle,
    peers: &mut Peers,
    offer: Option<String>,
    existing: Vec<RemoteTrack>,
    speaker_layout: bool,
    seed: u32,
    shared: &Shared,
) -> anyhow::Result<()> {
    if let Some(offer) = offer {
        let answer = sfu.publish(offer).await.context("publishing")?;
        driver.accept_answer(peers.main, answer).await?;
    }
    // The first video publisher this participant hears of is the speaker in a speaker layout
    // (as in `media.rs`).
    let mut speaker: Option<u64> = None;
    let mut with_layers = |tracks: &[RemoteTrack]| -> Vec<(RemoteTrack, Option<u8>)> {
        tracks
            .iter()
            .map(|t| {
                let layer = match t.kind {
                    MediaKind::Audio => None,
                    MediaKind::Video if speaker_layout => {
                        let s = *speaker.get_or_insert(t.participant_id);
                        Some(if t.participant_id == s { 2 } else { 0 })
                    }
                    MediaKind::Video => Some(2),
                };
                (*t, layer)
            })
            .collect()
    };
    if !existing.is_empty() {
        sfu.subscribe(&with_layers(&existing)).await.context("subscribing")?;
    }
    let mut check_stop = tokio::time::interval(Duration::from_millis(100));
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::select! {
            event = sfu.next_event() => match event? {
                SfuEvent::TracksPublished(tracks) => {
                    sfu.subscribe(&with_layers(&tracks)).await.context("subscribing")?;
                }
                SfuEvent::Offer { offer_id, sdp, pc } => {
                    let peer = peers.for_offer(pc, driver, seed).await?;
                    let answer = driver.accept_offer(peer, sdp).await?;
                    sfu.answer(offer_id, answer).await.context("answering an offer")?;
                }
            },
            _ = check_stop.tick() => {}
        }
    }
    Ok(())
}

/// The local address a datagram to `host` (`HOST:PORT`) would leave from.
fn local_ip_towards(host: &str) -> anyhow::Result<IpAddr> {
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
