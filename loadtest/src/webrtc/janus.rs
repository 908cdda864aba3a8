//! Janus VideoRoom (Janus 1.x, multistream) over its HTTP API, behind [`SfuSignaling`]
//! (`loadtest/janus/README.md` has the flow and the JSON it was checked with).
//!
//! One Janus session per participant, with a long poll (`GET /janus/{session}`) feeding every
//! asynchronous event into a channel and a keepalive every 25 s. Two handles:
//! - the "publisher" handle joins the room as `ptype: publisher` (also for participants that never
//!   publish: its `joined` event lists the publishers, later ones are announced on it) and, for a
//!   publisher, `configure`s with the offer;
//! - the "subscriber" handle (attached at the first subscription) joins as `ptype: subscriber`
//!   with the feeds' streams; Janus offers (`attached`, then `updated` for later feeds), the
//!   answer goes back with `start`, and each video stream's layer is chosen with `configure`
//!   naming the subscription's own `mid`.
//!
//! Janus takes the first rid of a publisher's offer as its highest layer: the driver offers
//! `f;h;q` for Janus, so Janus's substream N is the synthetic layer N (0 the lowest).

use super::signal::{Pc, RemoteTrack, SfuEvent, SfuSignaling};
use anyhow::Context as _;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use switchboard::sfu::packet::MediaKind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long an asynchronous request may wait for its event.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Janus destroys a session after 60 s without a request; the long poll keeps it alive too.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Events per long-poll response.
const MAX_EVENTS: u32 = 16;

/// Janus's simulcast substream for a synthetic layer (0 = lowest). Janus numbers substreams by
/// the rid order of the offer, the first rid being the highest (2): with the rids offered
/// highest first (`f;h;q`, [`super::peer::RidOrder::HighestFirst`]) substream N is layer N.
pub fn substream_for_layer(layer: u8) -> u8 {
    layer.min(2)
}

/// What a Janus API response says.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// `ack`: the answer comes as an event with the same transaction.
    Ack,
    /// `success`, with its `plugindata.data` (synchronous plugin requests) or `data`.
    Success(Value),
}

/// Read a Janus API response: `ack`, `success`, or an error (`"janus":"error"`, or a plugin
/// `error_code` in a synchronous answer).
pub fn parse_reply(v: &Value) -> anyhow::Result<Reply> {
    match v["janus"].as_str() {
        Some("ack") => Ok(Reply::Ack),
        Some("success") => {
            if let Some((code, reason)) = plugin_error(v) {
                anyhow::bail!("Janus VideoRoom error {code}: {reason}");
            }
            let data = if v["plugindata"].is_object() { v["plugindata"]["data"].clone() } else { v["data"].clone() };
            Ok(Reply::Success(data))
        }
        Some("error") => anyhow::bail!(
            "Janus error {}: {}",
            v["error"]["code"].as_i64().unwrap_or(0),
            v["error"]["reason"].as_str().unwrap_or("(no reason)")
        ),
        _ => anyhow::bail!("unexpected Janus reply: {v}"),
    }
}

/// A VideoRoom error in an event or a synchronous answer (`plugindata.data.error_code`).
pub fn plugin_error(v: &Value) -> Option<(i64, String)> {
    let data = &v["plugindata"]["data"];
    let code = data["error_code"].as_i64()?;
    Some((code, data["error"].as_str().unwrap_or("(no message)").to_owned()))
}

/// The SDP of an event's JSEP of type `kind` (`offer`, `answer`).
pub fn jsep_sdp(v: &Value, kind: &str) -> Option<String> {
    let jsep = &v["jsep"];
    (jsep["type"].as_str() == Some(kind)).then(|| jsep["sdp"].as_str().map(str::to_owned)).flatten()
}

/// A stream one publisher (feed) sends.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedStream {
    pub feed: u64,
    pub mid: String,
    pub kind: MediaKind,
}

fn kind_of(t: &Value) -> Option<MediaKind> {
    match t.as_str()? {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    }
}

/// The streams of the publishers a `joined` or `event` VideoRoom message lists
/// (`plugindata.data.publishers[].streams[]`), leaving out `own` feed and disabled streams.
pub fn published_streams(v: &Value, own: Option<u64>) -> Vec<FeedStream> {
    let Some(publishers) = v["plugindata"]["data"]["publishers"].as_array() else { return Vec::new() };
    let mut out = Vec::new();
    for p in publishers {
        let Some(feed) = p["id"].as_u64() else { continue };
        if Some(feed) == own {
            continue;
        }
        for s in p["streams"].as_array().into_iter().flatten() {
            if s["disabled"].as_bool() == Some(true) {
                continue;
            }
            if let (Some(kind), Some(mid)) = (kind_of(&s["type"]), s["mid"].as_str()) {
                out.push(FeedStream { feed, mid: mid.to_owned(), kind });
            }
        }
    }
    out
}

/// One stream of the subscription, as Janus describes it (`attached`/`updated`): its own `mid`
/// (the m-line of Janus's offer, what `configure` names) and the feed's stream it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribedStream {
    pub mid: String,
    pub feed: u64,
    pub feed_mid: String,
    pub kind: MediaKind,
}

pub fn subscription_streams(v: &Value) -> Vec<SubscribedStream> {
    let Some(streams) = v["plugindata"]["data"]["streams"].as_array() else { return Vec::new() };
    streams
        .iter()
        .filter(|s| s["active"].as_bool() != Some(false))
        .filter_map(|s| {
            Some(SubscribedStream {
                mid: s["mid"].as_str()?.to_owned(),
                feed: s["feed_id"].as_u64()?,
                feed_mid: s["feed_mid"].as_str()?.to_owned(),
                kind: kind_of(&s["type"])?,
            })
        })
        .collect()
}

/// The `streams` entries of a subscriber `join` or `update`: one per feed stream, with the
/// starting substream for video streams that have a layer.
pub fn subscribe_entries(wanted: &[(FeedStream, Option<u8>)]) -> Value {
    Value::Array(
        wanted
            .iter()
            .map(|(s, layer)| match layer {
                Some(l) if s.kind == MediaKind::Video => {
                    json!({"feed": s.feed, "mid": s.mid, "substream": substream_for_layer(*l)})
                }
                _ => json!({"feed": s.feed, "mid": s.mid}),
            })
            .collect(),
    )
}

/// The `configure` request choosing each subscription stream's substream, by the
/// subscription's mid; `None` when no stream has a layer to set.
pub fn configure_layers(streams: &[SubscribedStream], layers: &HashMap<(u64, String), u8>) -> Option<Value> {
    let entries: Vec<Value> = streams
        .iter()
        .filter(|s| s.kind == MediaKind::Video)
        .filter_map(|s| {
            let l = layers.get(&(s.feed, s.feed_mid.clone()))?;
            Some(json!({"mid": s.mid, "substream": substream_for_layer(*l)}))
        })
        .collect();
    (!entries.is_empty()).then(|| json!({"request": "configure", "streams": entries}))
}

/// `GET /janus/{session}?maxev=N` answers an array (or, from older builds, one object).
pub fn poll_events(v: Value) -> Vec<Value> {
    match v {
        Value::Array(events) => events,
        other => vec![other],
    }
}

/// Janus VideoRoom signaling for one participant.
pub struct JanusSignaling {
    http: reqwest::Client,
    /// `http://HOST:PORT/janus`
    url: String,
    room: u64,
    display: String,
    session: Option<u64>,
    publisher_handle: Option<u64>,
    subscriber_handle: Option<u64>,
    own_feed: Option<u64>,
    events: Option<mpsc::UnboundedReceiver<anyhow::Result<Value>>>,
    tasks: Vec<JoinHandle<()>>,
    next_transaction: u64,
    /// Events that arrived while a request waited for its own.
    pending: VecDeque<Value>,
    /// Events for the participant, in order.
    ready: VecDeque<SfuEvent>,
    /// Our track IDs for feed streams.
    tracks: HashMap<u64, FeedStream>,
    track_ids: HashMap<(u64, String), u64>,
    /// Feed streams asked for and not yet in a `join`/`update` (one is being negotiated).
    wanted: Vec<(FeedStream, Option<u8>)>,
    /// The layer wanted per feed stream (video).
    layers: HashMap<(u64, String), u8>,
    /// Janus's subscriber offer awaits our answer.
    negotiating: bool,
    subscription: Vec<SubscribedStream>,
    offers: u64,
}

impl JanusSignaling {
    pub fn new(http: reqwest::Client, url: &str, room: u64, display: String) -> Self {
        Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            room,
            display,
            session: None,
            publisher_handle: None,
            subscriber_handle: None,
            own_feed: None,
            events: None,
            tasks: Vec::new(),
            next_transaction: 1,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            tracks: HashMap::new(),
            track_ids: HashMap::new(),
            wanted: Vec::new(),
            layers: HashMap::new(),
            negotiating: false,
            subscription: Vec::new(),
            offers: 0,
        }
    }

    fn transaction(&mut self) -> String {
        let t = format!("lt{}", self.next_transaction);
        self.next_transaction += 1;
        t
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "POST {url}: {status} {text}");
        serde_json::from_str(&text).with_context(|| format!("POST {url}: not JSON: {text}"))
    }

    /// A core request on the session (or a handle): its `data`.
    async fn core(&mut self, path: &str, mut body: Value) -> anyhow::Result<Value> {
        body["transaction"] = json!(self.transaction());
        match parse_reply(&self.post(path, &body).await?)? {
            Reply::Success(data) => Ok(data),
            Reply::Ack => Ok(Value::Null),
        }
    }

    /// A VideoRoom message on `handle`: the synchronous answer, or the event that answers it.
    async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let session = self.session.context("no Janus session")?;
        let transaction = self.transaction();
        let mut request = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let reply = self.post(&format!("/{session}/{handle}"), &request).await?;
        match parse_reply(&reply)? {
            Reply::Success(_) => Ok(reply),
            Reply::Ack => {
                let event = tokio::time::timeout(REQUEST_TIMEOUT, self.wait_for(&transaction))
                    .await
                    .with_context(|| format!("no Janus event for {} within 15 s", body["request"]))??;
                if let Some((code, reason)) = plugin_error(&event) {
                    anyhow::bail!("Janus VideoRoom error {code} on {}: {reason}", body["request"]);
                }
                Ok(event)
            }
        }
    }

    async fn wait_for(&mut self, transaction: &str) -> anyhow::Result<Value> {
        loop {
            let event = self.receive().await?;
            if event["janus"] == "event" && event["transaction"].as_str() == Some(transaction) {
                return Ok(event);
            }
            self.pending.push_back(event);
        }
    }

    async fn receive(&mut self) -> anyhow::Result<Value> {
        let events = self.events.as_mut().context("not joined")?;
        events.recv().await.context("the Janus long poll stopped")?
    }

    /// Start the long poll and the keepalive of the session.
    fn start_session_tasks(&mut self, session: u64) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(rx);
        let http = self.http.clone();
        let url = format!("{}/{session}?maxev={MAX_EVENTS}", self.url);
        self.tasks.push(tokio::spawn(async move {
            loop {
                let result = async {
                    let resp = http.get(&url).timeout(Duration::from_secs(65)).send().await?;
                    let status = resp.status();
                    let text = resp.text().await?;
                    anyhow::ensure!(status.is_success(), "GET {url}: {status} {text}");
                    Ok(poll_events(serde_json::from_str(&text)?))
                }
                .await;
                match result {
                    Ok(events) => {
                        for e in events {
                            if e["janus"] == "keepalive" {
                                continue;
                            }
                            if e["janus"] == "error" {
                                let _ = tx.send(Err(anyhow::anyhow!("the Janus long poll: {e}")));
                                return;
                            }
                            if tx.send(Ok(e)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.context("the Janus long poll")));
                        return;
                    }
                }
            }
        }));
        let http = self.http.clone();
        let url = format!("{}/{session}", self.url);
        self.tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(KEEPALIVE_EVERY).await;
                n += 1;
                let body = json!({"janus": "keepalive", "transaction": format!("ka{n}")});
                if let Err(e) = http.post(&url).json(&body).timeout(REQUEST_TIMEOUT).send().await {
                    tracing::warn!(error = %e, "Janus keepalive");
                }
            }
        }));
    }

    async fn attach(&mut self) -> anyhow::Result<u64> {
        let session = self.session.context("no Janus session")?;
        let data =
            self.core(&format!("/{session}"), json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
        data["id"].as_u64().context("attach: no handle id")
    }

    fn track_for(&mut self, stream: FeedStream) -> RemoteTrack {
        let key = (stream.feed, stream.mid.clone());
        let next = self.track_ids.len() as u64 + 1;
        let id = *self.track_ids.entry(key).or_insert(next);
        let track = RemoteTrack { track_id: id, participant_id: stream.feed, kind: stream.kind };
        self.tracks.insert(id, stream);
        track
    }

    /// Ask Janus for the wanted streams (a subscriber `join`, or an `update` once joined); its
    /// offer goes to `ready`.
    async fn request_wanted(&mut self) -> anyhow::Result<()> {
        if self.wanted.is_empty() || self.negotiating {
            return Ok(());
        }
        let wanted = std::mem::take(&mut self.wanted);
        let streams = subscribe_entries(&wanted);
        let (handle, body) = match self.subscriber_handle {
            None => {
                let handle = self.attach().await?;
                self.subscriber_handle = Some(handle);
                let body = json!({"request": "join", "ptype": "subscriber", "room": self.room, "streams": streams});
                (handle, body)
            }
            Some(handle) => (handle, json!({"request": "update", "subscribe": streams})),
        };
        let event = self.message(handle, body, None).await?;
        let streams = subscription_streams(&event);
        if !streams.is_empty() {
            self.subscription = streams;
        }
        match jsep_sdp(&event, "offer") {
            Some(sdp) => {
                self.negotiating = true;
                self.offers += 1;
                self.ready.push_back(SfuEvent::Offer { offer_id: self.offers, sdp, pc: Pc::Subscriptions });
            }
            None => tracing::debug!(%event, "Janus answered a subscription without an offer"),
        }
        Ok(())
    }

    /// An event nobody waits for.
    fn on_event(&mut self, event: Value) -> anyhow::Result<()> {
        let sender = event["sender"].as_u64();
        match event["janus"].as_str() {
            Some("event") => {
                if let Some((code, reason)) = plugin_error(&event) {
                    tracing::warn!(code, %reason, "a Janus VideoRoom error event");
                    return Ok(());
                }
                if sender == self.publisher_handle {
                    let new: Vec<FeedStream> = published_streams(&event, self.own_feed)
                        .into_iter()
                        .filter(|s| !self.track_ids.contains_key(&(s.feed, s.mid.clone())))
                        .collect();
                    let tracks: Vec<RemoteTrack> = new.into_iter().map(|s| self.track_for(s)).collect();
                    if !tracks.is_empty() {
                        self.ready.push_back(SfuEvent::TracksPublished(tracks));
                    }
                } else {
                    tracing::debug!(%event, "a Janus event");
                }
            }
            Some("hangup") => {
                anyhow::bail!("Janus hung up a PeerConnection: {}", event["reason"].as_str().unwrap_or("?"));
            }
            Some("detached") => anyhow::bail!("Janus detached a handle"),
            Some("timeout") => anyhow::bail!("the Janus session timed out"),
            _ => tracing::trace!(%event, "a Janus event"),
        }
        Ok(())
    }
}

impl Drop for JanusSignaling {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SfuSignaling for JanusSignaling {
    async fn join(&mut self) -> anyhow::Result<Vec<RemoteTrack>> {
        let data = self.core("", json!({"janus": "create"})).await.context("creating a Janus session")?;
        let session = data["id"].as_u64().context("create: no session id")?;
        self.session = Some(session);
        self.start_session_tasks(session);
        let handle = self.attach().await.context("attaching the VideoRoom")?;
        self.publisher_handle = Some(handle);
        let body = json!({"request": "join", "ptype": "publisher", "room": self.room, "display": self.display});
        let joined = self.message(handle, body, None).await.context("joining the room")?;
        anyhow::ensure!(joined["plugindata"]["data"]["videoroom"] == "joined", "expected `joined`, got {joined}");
        self.own_feed = joined["plugindata"]["data"]["id"].as_u64();
        Ok(published_streams(&joined, self.own_feed).into_iter().map(|s| self.track_for(s)).collect())
    }

    async fn publish(&mut self, offer_sdp: String) -> anyhow::Result<String> {
        let handle = self.publisher_handle.context("not joined")?;
        let body = json!({"request": "configure", "audio": true, "video": true});
        let event = self.message(handle, body, Some(json!({"type": "offer", "sdp": offer_sdp}))).await?;
        jsep_sdp(&event, "answer").with_context(|| format!("no answer in {event}"))
    }

    async fn subscribe(&mut self, tracks: &[(RemoteTrack, Option<u8>)]) -> anyhow::Result<()> {
        for (track, layer) in tracks {
            let stream = self.tracks.get(&track.track_id).cloned().with_context(|| format!("no track {track:?}"))?;
            if let Some(l) = layer {
                self.layers.insert((stream.feed, stream.mid.clone()), *l);
            }
            self.wanted.push((stream, *layer));
        }
        self.request_wanted().await
    }

    async fn next_event(&mut self) -> anyhow::Result<SfuEvent> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            let event = match self.pending.pop_front() {
                Some(e) => e,
                None => self.receive().await?,
            };
            self.on_event(event)?;
        }
    }

    async fn answer(&mut self, _offer_id: u64, answer_sdp: String) -> anyhow::Result<()> {
        let handle = self.subscriber_handle.context("no subscription")?;
        let jsep = json!({"type": "answer", "sdp": answer_sdp});
        self.message(handle, json!({"request": "start"}), Some(jsep)).await.context("start")?;
        self.negotiating = false;
        if let Some(configure) = configure_layers(&self.subscription, &self.layers) {
            self.message(handle, configure, None).await.context("configuring the layers")?;
        }
        self.request_wanted().await
    }

    async fn leave(&mut self) {
        // The long poll first: a poll of a destroyed session is an error in Janus's log.
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let quick = Duration::from_secs(2);
        if let (Some(session), Some(handle)) = (self.session, self.publisher_handle) {
            let t = self.transaction();
            let body = json!({"janus": "message", "transaction": t, "body": {"request": "leave"}});
            let _ = tokio::time::timeout(quick, self.post(&format!("/{session}/{handle}"), &body)).await;
        }
        if let Some(session) = self.session.take() {
            let t = self.transaction();
            let _ = tokio::time::timeout(
                quick,
                self.post(&format!("/{session}"), &json!({"janus": "destroy", "transaction": t})),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_acks_and_errors_are_told_apart() {
        assert_eq!(parse_reply(&json!({"janus": "ack", "transaction": "t3"})).unwrap(), Reply::Ack);
        let created = json!({"janus": "success", "transaction": "t1", "data": {"id": 2465132449789360u64}});
        assert_eq!(parse_reply(&created).unwrap(), Reply::Success(json!({"id": 2465132449789360u64})));
        let sync = json!({"janus": "success", "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "success", "room": 1234, "exists": true}}});
        assert_eq!(
            parse_reply(&sync).unwrap(),
            Reply::Success(json!({"videoroom": "success", "room": 1234, "exists": true}))
        );
        let gone = json!({"janus": "error", "error": {"code": 458, "reason": "No such session 1"}});
        assert!(parse_reply(&gone).unwrap_err().to_string().contains("458"));
        let refused = json!({"janus": "success", "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 426, "error": "No such room (1)"}}});
        assert!(parse_reply(&refused).unwrap_err().to_string().contains("No such room"));
    }

    #[test]
    fn plugin_errors_come_as_events() {
        let event = json!({"janus": "event", "session_id": 7746347443694572u64, "transaction": "j3",
            "sender": 4293844124807909u64, "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 428, "error": "No such feed (42)"}}});
        assert_eq!(plugin_error(&event), Some((428, "No such feed (42)".to_owned())));
        assert_eq!(plugin_error(&json!({"janus": "event", "plugindata": {"data": {"configured": "ok"}}})), None);
    }

    #[test]
    fn publishers_streams_are_tracks_but_not_our_own() {
        let joined = json!({"janus": "event", "plugindata": {"plugin": "janus.plugin.videoroom", "data":
            {"videoroom": "joined", "room": 1234, "id": 8509543339409649u64, "private_id": 762244802,
             "publishers": [{"id": 4843978819857200u64, "display": "chromium-pub", "streams": [
                {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus", "fec": true},
                {"type": "video", "mindex": 1, "mid": "1", "codec": "vp8", "simulcast": true},
                {"type": "data", "mindex": 2, "mid": "2"}]},
               {"id": 8509543339409649u64, "streams": [{"type": "audio", "mid": "0"}]}]}}});
        let feed = 4843978819857200;
        assert_eq!(
            published_streams(&joined, Some(8509543339409649)),
            vec![
                FeedStream { feed, mid: "0".into(), kind: MediaKind::Audio },
                FeedStream { feed, mid: "1".into(), kind: MediaKind::Video }
            ]
        );
        assert!(published_streams(&json!({"plugindata": {"data": {"configured": "ok"}}}), None).is_empty());
    }

    #[test]
    fn subscriptions_name_feeds_and_layers_are_set_on_the_subscriptions_mids() {
        let feed = 2084264765474889u64;
        let wanted = [
            (FeedStream { feed, mid: "0".into(), kind: MediaKind::Audio }, None),
            (FeedStream { feed, mid: "1".into(), kind: MediaKind::Video }, Some(2)),
        ];
        assert_eq!(
            subscribe_entries(&wanted),
            json!([{"feed": feed, "mid": "0"}, {"feed": feed, "mid": "1", "substream": 2}])
        );
        // Janus's `attached`: the subscription's mids differ from the feed's (here the video is
        // the subscription's "0", the feed's "1").
        let attached = json!({"janus": "event", "transaction": "t11", "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "attached", "room": 1234, "streams": [
                {"type": "video", "active": true, "mindex": 0, "mid": "0", "feed_id": feed, "feed_mid": "1",
                 "codec": "vp8", "simulcast": {"substream": -1, "substream-target": 2}},
                {"type": "audio", "active": true, "mindex": 1, "mid": "1", "feed_id": feed, "feed_mid": "0"}]}},
            "jsep": {"type": "offer", "sdp": "v=0\r\n"}});
        let streams = subscription_streams(&attached);
        assert_eq!(streams.len(), 2);
        assert_eq!(jsep_sdp(&attached, "offer").as_deref(), Some("v=0\r\n"));
        assert_eq!(jsep_sdp(&attached, "answer"), None);
        let layers = HashMap::from([((feed, "1".to_owned()), 0u8)]);
        assert_eq!(
            configure_layers(&streams, &layers),
            Some(json!({"request": "configure", "streams": [{"mid": "0", "substream": 0}]}))
        );
        assert_eq!(configure_layers(&streams, &HashMap::new()), None);
    }

    #[test]
    fn layers_map_to_substreams_with_the_highest_rid_first() {
        // The publisher offers f;h;q for Janus: f (layer 2, 1280x720) is Janus's substream 2.
        assert_eq!([0, 1, 2].map(substream_for_layer), [0, 1, 2]);
    }

    #[test]
    fn long_polls_answer_arrays_or_one_event() {
        assert_eq!(poll_events(json!([{"janus": "keepalive"}])).len(), 1);
        assert_eq!(poll_events(json!({"janus": "webrtcup"})), vec![json!({"janus": "webrtcup"})]);
    }
}
