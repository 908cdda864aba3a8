//! Signaling with an SFU, behind [`SfuSignaling`]: the WebRTC carrier only needs a publisher's
//! offer answered, to ask for tracks, and to answer the SFU's offers. [`SwitchboardSignaling`]
//! speaks Switchboard's protocol (`docs/PROTOCOL.md`, "WebRTC (WebSocket carrier)") over
//! `wss://HOST/signal`; `janus.rs` speaks Janus's VideoRoom over its HTTP API.

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchboard::sfu::packet::MediaKind;
use switchboard::signaling::messages::{CallState, ClientEnvelope, ClientMessage, JoinAt, ServerMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// How long a request may wait for its response (the SDK's figure).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A track someone else in the room publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteTrack {
    pub track_id: u64,
    pub participant_id: u64,
    pub kind: MediaKind,
}

/// Which of a participant's PeerConnections an SFU offer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pc {
    /// The participant's one PeerConnection (Switchboard: publishing and subscriptions).
    Main,
    /// The subscriptions' own PeerConnection, for an SFU that keeps them apart from the
    /// published media (Janus: a subscriber handle). A participant that does not publish uses
    /// its main one.
    Subscriptions,
}

/// What the SFU says that the participant must act on.
#[derive(Debug)]
pub enum SfuEvent {
    /// Tracks were published in the room by someone else (one participant's, or one).
    TracksPublished(Vec<RemoteTrack>),
    /// The SFU offers media (its subscriptions changed): apply it on `pc` and
    /// [`SfuSignaling::answer`].
    Offer { offer_id: u64, sdp: String, pc: Pc },
}

/// One participant's signaling with an SFU. The SDP itself is made and applied by the caller's
/// WebRTC peer; this only carries it.
pub trait SfuSignaling: Send {
    /// Join the room; returns the tracks already published there.
    fn join(&mut self) -> impl Future<Output = anyhow::Result<Vec<RemoteTrack>>> + Send;
    /// Send the publisher's offer; returns the SFU's answer.
    fn publish(&mut self, offer_sdp: String) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Ask for tracks (the media comes with a later [`SfuEvent::Offer`]), each with its preferred
    /// layer: the simulcast layer wanted, 0 the lowest; `None` the best the bandwidth allows.
    fn subscribe(&mut self, tracks: &[(RemoteTrack, Option<u8>)]) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The next event; an error when the session is over.
    fn next_event(&mut self) -> impl Future<Output = anyhow::Result<SfuEvent>> + Send;
    /// Answer the SFU's offer `offer_id`.
    fn answer(&mut self, offer_id: u64, answer_sdp: String) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Leave the room (best effort) and close the session.
    fn leave(&mut self) -> impl Future<Output = ()> + Send;
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Switchboard's signaling over a WebSocket, one session per participant. `S` is the stream under
/// the WebSocket (TLS over TCP; an in-memory pipe in tests).
pub struct SwitchboardSignaling<S = Tls> {
    ws: WebSocketStream<S>,
    next_id: u64,
    token: String,
    group: String,
    participant_id: Option<u64>,
    /// Messages that arrived while a request waited for its response, in arrival order.
    pending: VecDeque<ServerMessage>,
    /// The highest server `offerId` answered: the server re-sends an offer that is not answered
    /// soon enough, and copies of one already answered are ignored.
    answered_offer: Option<u64>,
}

impl SwitchboardSignaling<Tls> {
    /// Open `wss://HOST/signal` on the HTTPS endpoint (`https://HOST:PORT/`), trusting `ca_pem`.
    pub async fn connect(endpoint: &str, ca_pem: &[u8], token: String, group: String) -> anyhow::Result<Self> {
        let host = endpoint.trim_start_matches("https://").trim_end_matches('/').to_owned();
        let name = host.rsplit_once(':').map_or(host.as_str(), |(name, _)| name);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_owned())
            .with_context(|| format!("server name `{name}`"))?;
        let tls = switchboard::tls::client_config(ca_pem, &[b"http/1.1"]).context("CA certificate")?;
        let tcp = tokio::net::TcpStream::connect(&host).await.with_context(|| format!("connecting to {host}"))?;
        tcp.set_nodelay(true)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(server_name, tcp).await?;
        let request = format!("wss://{host}/signal").into_client_request()?;
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await.context("WebSocket upgrade")?;
        Ok(Self::over(ws, token, group))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> SwitchboardSignaling<S> {
    /// A session over an open WebSocket; `join` joins group call `group` with `token`.
    pub fn over(ws: WebSocketStream<S>, token: String, group: String) -> Self {
        Self { ws, next_id: 1, token, group, participant_id: None, pending: VecDeque::new(), answered_offer: None }
    }

    async fn send(&mut self, id: Option<u64>, message: ClientMessage) -> anyhow::Result<()> {
        let text = serde_json::to_string(&ClientEnvelope { id, message })?;
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next server message from the socket (not the pending ones); an error when it closed.
    async fn receive(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(m) => return Ok(m),
                    // A message this build does not know: the protocol lets clients skip it.
                    Err(e) => tracing::debug!(error = %e, "skipping a server message"),
                },
                Some(Ok(Message::Close(frame))) => anyhow::bail!("the server closed the WebSocket: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the WebSocket closed"),
            }
        }
    }

    /// Send a request and wait for its response. Other messages are kept for `next_event`,
    /// except, while our own offer awaits its answer, server offers: they crossed it and are
    /// withdrawn (glare rule 1).
    async fn request(&mut self, message: ClientMessage) -> anyhow::Result<ServerMessage> {
        let id = self.next_id;
        self.next_id += 1;
        let ours_is_offer = matches!(message, ClientMessage::Offer { .. });
        if ours_is_offer {
            // Glare rule 2: sending an offer withdraws every server offer not answered yet.
            self.pending.retain(|m| !matches!(m, ServerMessage::Offer { .. }));
        }
        self.send(Some(id), message).await?;
        let wait = async {
            loop {
                let m = self.receive().await?;
                if m.response_id() == Some(id) {
                    return anyhow::Ok(m);
                }
                if ours_is_offer && matches!(m, ServerMessage::Offer { .. }) {
                    continue;
                }
                self.pending.push_back(m);
            }
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, wait).await.context("no response within 15 s")??;
        if let ServerMessage::Error { code, message, .. } = &response {
            anyhow::bail!("{code:?}: {message}");
        }
        Ok(response)
    }

    fn own(&self, participant_id: u64) -> bool {
        self.participant_id == Some(participant_id)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> SfuSignaling for SwitchboardSignaling<S> {
    async fn join(&mut self) -> anyhow::Result<Vec<RemoteTrack>> {
        let join =
            ClientMessage::Join { token: Some(self.token.clone()), at: JoinAt::group(&self.group), display_name: None };
        match self.request(join).await? {
            ServerMessage::Joined { participant_id, participants, .. } => {
                self.participant_id = Some(participant_id);
                Ok(participants
                    .iter()
                    .filter(|p| p.participant_id != participant_id)
                    .flat_map(|p| &p.tracks)
                    .map(|t| RemoteTrack { track_id: t.track_id, participant_id: t.participant_id, kind: t.kind })
                    .collect())
            }
            other => anyhow::bail!("expected `joined`, got {other:?}"),
        }
    }

    async fn publish(&mut self, offer_sdp: String) -> anyhow::Result<String> {
        match self.request(ClientMessage::Offer { sdp: offer_sdp, sources: Default::default() }).await? {
            ServerMessage::Answer { sdp, .. } => Ok(sdp),
            other => anyhow::bail!("expected `answer`, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, tracks: &[(RemoteTrack, Option<u8>)]) -> anyhow::Result<()> {
        for (track, preferred_layer) in tracks {
            let subscribe = ClientMessage::Subscribe {
                track_id: track.track_id,
                preferred_layer: *preferred_layer,
                max_height: None,
            };
            match self.request(subscribe).await.with_context(|| format!("subscribing to {track:?}"))? {
                ServerMessage::Subscribed { .. } => {}
                other => anyhow::bail!("expected `subscribed`, got {other:?}"),
            }
        }
        Ok(())
    }

    async fn next_event(&mut self) -> anyhow::Result<SfuEvent> {
        loop {
            let m = match self.pending.pop_front() {
                Some(m) => m,
                None => self.receive().await?,
            };
            match m {
                ServerMessage::TrackPublished { track } if !self.own(track.participant_id) => {
                    return Ok(SfuEvent::TracksPublished(vec![RemoteTrack {
                        track_id: track.track_id,
                        participant_id: track.participant_id,
                        kind: track.kind,
                    }]));
                }
                ServerMessage::Offer { offer_id, sdp } => {
                    if self.answered_offer.is_some_and(|answered| offer_id <= answered) {
                        continue;
                    }
                    return Ok(SfuEvent::Offer { offer_id, sdp, pc: Pc::Main });
                }
                ServerMessage::CallStateChanged { state: CallState::Disconnected, code, reason } => {
                    anyhow::bail!("disconnected: {code:?} {}", reason.unwrap_or_default());
                }
                ServerMessage::LayerChanged { subscription_id, layer } => {
                    tracing::debug!(subscription_id, layer, "layer changed");
                }
                ServerMessage::Error { id, code, message } => {
                    tracing::warn!(?id, ?code, %message, "the server reported an error");
                }
                _ => {}
            }
        }
    }

    async fn answer(&mut self, offer_id: u64, answer_sdp: String) -> anyhow::Result<()> {
        self.answered_offer = Some(self.answered_offer.map_or(offer_id, |a| a.max(offer_id)));
        match self.request(ClientMessage::Answer { sdp: answer_sdp, offer_id: Some(offer_id) }).await? {
            ServerMessage::Ok { .. } => Ok(()),
            other => anyhow::bail!("expected `ok`, got {other:?}"),
        }
    }

    async fn leave(&mut self) {
        if self.participant_id.is_some() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.request(ClientMessage::Leave {})).await;
        }
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const GROUP: &str = "7b0c9f1e-5d3a-4c11-9a57-2f0e1c3b8d42";

    /// The server's end of an in-memory WebSocket.
    struct FakeServer(WebSocketStream<tokio::io::DuplexStream>);

    impl FakeServer {
        async fn read(&mut self) -> Value {
            loop {
                match self.0.next().await {
                    Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("the client sends JSON"),
                    Some(Ok(_)) => {}
                    other => panic!("the client closed the socket: {other:?}"),
                }
            }
        }

        async fn send(&mut self, v: Value) {
            self.0.send(Message::Text(v.to_string().into())).await.expect("send");
        }
    }

    async fn pair() -> (SwitchboardSignaling<tokio::io::DuplexStream>, FakeServer) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let request = "ws://localhost/signal".into_client_request().expect("request");
        let (client, server) =
            tokio::join!(tokio_tungstenite::client_async(request, client), tokio_tungstenite::accept_async(server));
        let (ws, _) = client.expect("client handshake");
        let sfu = SwitchboardSignaling::over(ws, "token".into(), GROUP.into());
        (sfu, FakeServer(server.expect("server handshake")))
    }

    fn track(track_id: u64, participant_id: u64, kind: &str) -> Value {
        json!({"trackId": track_id, "participantId": participant_id, "kind": kind, "codec": "VP8",
               "source": "camera", "layers": [], "muted": false})
    }

    /// The flow of `docs/PROTOCOL.md`: join, the publisher's offer (a server offer crossing it is
    /// withdrawn), a server offer answered once (its re-sent copy ignored), own tracks ignored.
    #[tokio::test]
    async fn follows_the_offer_answer_and_glare_rules() {
        let (mut sfu, mut server) = pair().await;
        let script = async {
            let join = server.read().await;
            assert_eq!((join["type"].as_str(), join["groupId"].as_str()), (Some("join"), Some(GROUP)));
            server
                .send(json!({"type": "joined", "id": join["id"], "participantId": 1, "room": "group:x",
                    "state": "Connected", "capabilities": {"publish": [], "receive": true, "moderate": false},
                    "participants": [{"participantId": 2, "identity": "8:acs:b", "tracks": [track(10, 2, "video")]}]}))
                .await;
            let offer = server.read().await;
            assert_eq!(offer["type"], "offer");
            // Crosses the client's offer: withdrawn, must not be answered.
            server.send(json!({"type": "offer", "offerId": 1, "sdp": "withdrawn"})).await;
            server.send(json!({"type": "answer", "id": offer["id"], "sdp": "server answer"})).await;
            server.send(json!({"type": "trackPublished", "track": track(11, 1, "audio")})).await;
            server.send(json!({"type": "offer", "offerId": 2, "sdp": "subscriptions"})).await;
            let answer = server.read().await;
            assert_eq!((answer["type"].as_str(), answer["offerId"].as_u64()), (Some("answer"), Some(2)));
            assert_eq!(answer["sdp"], "answer to subscriptions");
            server.send(json!({"type": "ok", "id": answer["id"]})).await;
            // A copy of the offer just answered, then someone else's track.
            server.send(json!({"type": "offer", "offerId": 2, "sdp": "subscriptions"})).await;
            server.send(json!({"type": "trackPublished", "track": track(12, 3, "audio")})).await;
        };
        let client = async {
            let existing = sfu.join().await.expect("joined");
            assert_eq!(existing, vec![RemoteTrack { track_id: 10, participant_id: 2, kind: MediaKind::Video }]);
            assert_eq!(sfu.publish("client offer".into()).await.expect("answered"), "server answer");
            match sfu.next_event().await.expect("an event") {
                SfuEvent::Offer { offer_id: 2, sdp, pc: Pc::Main } => {
                    sfu.answer(2, format!("answer to {sdp}")).await.expect("ok")
                }
                other => panic!("expected offer 2, got {other:?}"),
            }
            match sfu.next_event().await.expect("an event") {
                SfuEvent::TracksPublished(t) => assert_eq!((t[0].track_id, t[0].participant_id), (12, 3)),
                other => panic!("expected track 12, got {other:?}"),
            }
        };
        tokio::join!(script, client);
    }

    #[tokio::test]
    async fn a_refused_request_is_an_error_and_a_closed_socket_ends_the_session() {
        let (mut sfu, mut server) = pair().await;
        let script = async {
            let join = server.read().await;
            server
                .send(json!({"type": "error", "id": join["id"], "code": "TokenInvalid", "message": "bad token"}))
                .await;
            server.send(json!({"type": "somethingNew", "field": 1})).await;
            server.0.close(None).await.expect("close");
        };
        let client = async {
            let e = sfu.join().await.expect_err("the join is refused");
            assert!(e.to_string().contains("TokenInvalid"), "{e}");
            assert!(sfu.next_event().await.is_err(), "the session is over");
        };
        tokio::join!(script, client);
    }
}
