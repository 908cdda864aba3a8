//! Helpers for WebRTC tests: WebSocket signaling (`wss://.../signal`) and webrtc-rs peers — an
//! independent WebRTC implementation, so the server's str0m is checked against another stack.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::shared::marshal::{Marshal, Unmarshal};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use switchboard::signaling::messages::{ClientEnvelope, ClientMessage, ServerMessage};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry, register_default_interceptors,
};

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A signaling session over WebSocket.
pub struct Signal {
    ws: Ws,
    next_id: u64,
    pub events: VecDeque<ServerMessage>,
}

impl Signal {
    /// Connect to `wss://<endpoint>/signal`, trusting `ca`.
    pub async fn connect(endpoint: &str, ca: &[u8]) -> Signal {
        Self::connect_with_headers(endpoint, ca, &[]).await
    }

    /// Connect with extra request headers on the upgrade (e.g. `X-Forwarded-For`, as a reverse
    /// proxy adds it).
    pub async fn connect_with_headers(endpoint: &str, ca: &[u8], headers: &[(&str, &str)]) -> Signal {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let host = endpoint.trim_start_matches("https://").trim_end_matches('/').to_owned();
        let tcp = tokio::net::TcpStream::connect(&host).await.expect("tcp connect");
        let tls = switchboard::tls::client_config(ca, &[b"http/1.1"]).expect("tls config");
        let server_name = rustls::pki_types::ServerName::try_from(host.rsplit_once(':').expect("port").0.to_owned())
            .expect("server name");
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(server_name, tcp).await.expect("tls");
        let mut request = format!("wss://{host}/signal").into_client_request().expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await.expect("websocket");
        Signal { ws, next_id: 1, events: VecDeque::new() }
    }

    /// Send raw text (tests send malformed messages).
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    /// Send a request and wait for the response with its id (events are kept in `events`).
    pub async fn request(&mut self, message: ClientMessage) -> ServerMessage {
        let id = self.next_id;
        self.next_id += 1;
        let text = serde_json::to_string(&ClientEnvelope { id: Some(id), message }).expect("json");
        self.ws.send(Message::Text(text.into())).await.expect("send");
        loop {
            let msg = self.recv(Duration::from_secs(10)).await.expect("a response");
            if msg.response_id() == Some(id) {
                return msg;
            }
            self.events.push_back(msg);
        }
    }

    /// The next server message (buffered events first).
    pub async fn next(&mut self, limit: Duration) -> Option<ServerMessage> {
        if let Some(m) = self.events.pop_front() {
            return Some(m);
        }
        self.recv(limit).await
    }

    async fn recv(&mut self, limit: Duration) -> Option<ServerMessage> {
        loop {
            match tokio::time::timeout(limit, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).expect("server JSON")),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }

    /// Whether the server closes the socket within `limit` (messages before the close are read
    /// and dropped).
    pub async fn closed(&mut self, limit: Duration) -> bool {
        self.events.clear();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next server message (if one comes before the socket closes) and the close frame's
    /// status code (`None`: closed without one, or not closed within `limit`).
    pub async fn next_and_close(&mut self, limit: Duration) -> (Option<ServerMessage>, Option<u16>) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut first = None;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if first.is_none() {
                        first = serde_json::from_str(&t).ok();
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => return (first, frame.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => {}
                Err(_) | Ok(None | Some(Err(_))) => return (first, None),
            }
        }
    }

    /// Wait for a message matching `pred` (others are kept).
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&ServerMessage) -> bool,
    ) -> Option<ServerMessage> {
        if let Some(i) = self.events.iter().position(&mut pred) {
            return self.events.remove(i);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if pred(&m) {
                return Some(m);
            }
            self.events.push_back(m);
        }
    }
}

/// What a webrtc-rs peer received on one remote track.
#[derive(Debug)]
pub struct Received {
    /// The remote track ID (the server names tracks `t<trackId>`).
    pub track_id: String,
    pub packet: bytes::Bytes,
}

struct Handler {
    gathered: mpsc::Sender<()>,
    connected: mpsc::Sender<RTCPeerConnectionState>,
    received: mpsc::Sender<Received>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.connected.try_send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        tokio::spawn(async move {
            let track_id = track.track_id().await.to_string();
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event
                    && let Ok(packet) = p.marshal()
                {
                    let _ = received.send(Received { track_id: track_id.clone(), packet: packet.freeze() }).await;
                }
            }
        });
    }
}

/// A webrtc-rs peer connection with VP8 and Opus.
pub struct RsPeer {
    pub pc: Box<dyn PeerConnection>,
    gathered: mpsc::Receiver<()>,
    pub state: mpsc::Receiver<RTCPeerConnectionState>,
    pub received: mpsc::Receiver<Received>,
}

impl RsPeer {
    pub async fn new() -> RsPeer {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs().expect("codecs");
        Self::with_engine(media_engine).await
    }

    /// A peer with the default codecs and RFC 4733 telephone-events at 48 kHz (payload type 126
    /// when it offers; it takes the server's in an answer).
    pub async fn with_telephone_events() -> RsPeer {
        use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs().expect("codecs");
        let tele = RTCRtpCodec {
            mime_type: "audio/telephone-event".to_owned(),
            clock_rate: 48_000,
            channels: 0,
            sdp_fmtp_line: "0-16".to_owned(),
            rtcp_feedback: vec![],
        };
        media_engine
            .register_codec(RTCRtpCodecParameters { rtp_codec: tele, payload_type: 126 }, RtpCodecKind::Audio)
            .expect("telephone-event");
        Self::with_engine(media_engine).await
    }

    /// A peer with the default codecs that also negotiates the video orientation (CVO) header
    /// extension, as phone browsers do.
    pub async fn with_video_orientation() -> RsPeer {
        use rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability;
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs().expect("codecs");
        media_engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability { uri: CVO_URI.to_owned() },
                RtpCodecKind::Video,
                None,
            )
            .expect("CVO");
        Self::with_engine(media_engine).await
    }

    /// A peer whose only video codec is H.264 (packetization mode 1, constrained baseline).
    pub async fn h264_only() -> RsPeer {
        Self::h264(&[(102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")]).await
    }

    /// A peer whose video codecs are the H.264 formats `(payload type, fmtp)` given, in that order.
    pub async fn h264(formats: &[(u8, &str)]) -> RsPeer {
        use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
        let mut media_engine = MediaEngine::default();
        let codec = |mime: &str, clock_rate, channels, fmtp: &str| RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        };
        for &(payload_type, fmtp) in formats {
            let h264 = codec("video/H264", 90_000, 0, fmtp);
            media_engine
                .register_codec(RTCRtpCodecParameters { rtp_codec: h264, payload_type }, RtpCodecKind::Video)
                .expect("H.264");
        }
        let opus = codec("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1");
        media_engine
            .register_codec(RTCRtpCodecParameters { rtp_codec: opus, payload_type: 111 }, RtpCodecKind::Audio)
            .expect("Opus");
        Self::with_engine(media_engine).await
    }

    async fn with_engine(mut media_engine: MediaEngine) -> RsPeer {
        let registry = register_default_interceptors(Registry::new(), &mut media_engine).expect("interceptors");
        let (gtx, gathered) = mpsc::channel(4);
        let (ctx, state) = mpsc::channel(32);
        let (rtx, received) = mpsc::channel(100_000);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler { gathered: gtx, connected: ctx, received: rtx }))
            .with_runtime(webrtc::runtime::default_runtime().expect("tokio runtime"))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("peer connection");
        RsPeer { pc: Box::new(pc), gathered, state, received }
    }

    /// Add a send track (a `sendrecv` transceiver, as `addTrack` makes); returns it for
    /// `write_rtp`.
    pub async fn add_track(
        &self,
        kind: RtpCodecKind,
        mime: &str,
        clock_rate: u32,
        channels: u16,
        ssrc: u32,
    ) -> Arc<TrackLocalStaticRTP> {
        let track = local_track(kind, mime, clock_rate, channels, ssrc);
        self.pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.expect("add track");
        track
    }

    /// Add a send-only track (a `sendonly` transceiver, as a publishing browser makes).
    pub async fn add_sendonly_track(
        &self,
        kind: RtpCodecKind,
        mime: &str,
        clock_rate: u32,
        channels: u16,
        ssrc: u32,
    ) -> Arc<TrackLocalStaticRTP> {
        let track = local_track(kind, mime, clock_rate, channels, ssrc);
        let init = rtc::rtp_transceiver::RTCRtpTransceiverInit {
            direction: rtc::rtp_transceiver::RTCRtpTransceiverDirection::Sendonly,
            streams: vec![],
            send_encodings: vec![],
        };
        self.pc
            .add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init))
            .await
            .expect("add transceiver");
        track
    }

    /// Create an offer and wait for ICE gathering (the SDP then carries the candidates).
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("create offer");
        self.pc.set_local_description(offer).await.expect("set local");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.recv()).await;
        self.pc.local_description().await.expect("local description").sdp
    }

    pub async fn accept_answer(&self, sdp: String) {
        let answer = RTCSessionDescription::answer(sdp).expect("answer SDP");
        self.pc.set_remote_description(answer).await.expect("set remote answer");
    }

    /// Answer a server offer.
    pub async fn answer(&mut self, sdp: String) -> String {
        let offer = RTCSessionDescription::offer(sdp).expect("offer SDP");
        self.pc.set_remote_description(offer).await.expect("set remote offer");
        let answer = self.pc.create_answer(None).await.expect("create answer");
        self.pc.set_local_description(answer).await.expect("set local");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.recv()).await;
        self.pc.local_description().await.expect("local description").sdp
    }

    /// Wait until the peer connection is connected.
    pub async fn connected(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.state.recv()).await {
                Ok(Some(RTCPeerConnectionState::Connected)) => return true,
                Ok(Some(_)) => continue,
                _ => return false,
            }
        }
    }
}

/// The video orientation (CVO) header extension's URI.
pub const CVO_URI: &str = "urn:3gpp:video-orientation";

/// The ID an SDP gives header extension `uri` (its `a=extmap:` line), in the first section
/// that has one.
pub fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.strip_prefix("a=extmap:")?;
        let (id, name) = rest.split_once(' ')?;
        (name.trim() == uri).then(|| id.split('/').next()?.parse().ok()).flatten()
    })
}

/// The value of header extension `id` in an RTP packet, if it carries it.
pub fn extension_value(packet: &[u8], id: u8) -> Option<Vec<u8>> {
    let h = switchboard::rtp::RtpHeader::parse(packet).ok()?;
    h.extension_value(packet, id).map(<[u8]>::to_vec)
}

/// Write raw RTP bytes to a webrtc-rs track.
pub async fn write(track: &TrackLocalStaticRTP, packet: &[u8]) {
    let mut buf = bytes::BytesMut::from(packet);
    let p = rtc::rtp::Packet::unmarshal(&mut buf).expect("valid RTP");
    track.write_rtp(p).await.expect("write RTP");
}

/// Write a synthetic audio packet, moving its audio level into the extension ID webrtc-rs
/// negotiated (a real client uses the negotiated ID, not the synthetic packet's).
pub async fn write_audio(track: &TrackLocalStaticRTP, packet: &[u8]) {
    use rtc::rtp::extension::HeaderExtension;
    use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
    let level = switchboard::rtp::RtpHeader::parse(packet)
        .ok()
        .and_then(|h| h.audio_level(packet, switchboard::client::synthetic::AUDIO_LEVEL_EXT));
    let mut buf = bytes::BytesMut::from(packet);
    let mut p = rtc::rtp::Packet::unmarshal(&mut buf).expect("valid RTP");
    p.header.extension = false;
    p.header.extensions.clear();
    p.header.extensions_padding = 0;
    let exts: Vec<HeaderExtension> = level
        .map(|(level, voice)| HeaderExtension::AudioLevel(AudioLevelExtension { level, voice }))
        .into_iter()
        .collect();
    track.write_rtp_with_extensions(p, &exts).await.expect("write RTP");
}

/// A local RTP track of one encoding with a fixed SSRC.
fn local_track(kind: RtpCodecKind, mime: &str, clock_rate: u32, channels: u16, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("stream-{kind}"),
        format!("track-{kind}"),
        format!("label-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )))
}
