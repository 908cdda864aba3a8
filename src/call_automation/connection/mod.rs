//! One call connection: the app's handle on a call, and the task that drives the server's leg in
//! it. The leg's client is the connection's eyes: its call state and the room's member and track
//! events, as the leg's session translates them, become the connection's state and the app's
//! events (`CallConnected`, `ParticipantsUpdated`, `CallDisconnected`, ...). Every event leaves
//! through `CallConnection::emit`.

mod ears;
mod voice;

use super::audio::dtmf::{RecognizeOptions, Tone};
use super::events::{self, EventBase, ParticipantState, ResultInformation};
use super::listener::ListenerError;
use super::speaker::{Job, Loaded, MAIN_STREAM, PlayJob, Speaker, TELEPHONE_EVENT_PT};
use super::{Shared, leg::LEG_TOKEN_MINUTES};
use crate::client::{Client, ClientEvent, Joined};
use crate::identity::IdentityId;
use crate::room_directory::AcsRoomId;
use crate::rooms::RoomKey;
use crate::sfu::packet::MediaKind;
use crate::signaling::messages::{CallState, EndReason, ParticipantInfo, ServerMessage};
use crate::webhooks::{AcsEvent, CallbackUri};
use base64::Engine as _;
use ears::Ears;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use voice::Voice;

/// Commands for a connection's leg task.
pub(super) enum LegCommand {
    /// Leave the call (`DELETE /calling/callConnections/{id}`); replies once the leg is out.
    HangUp { reply: oneshot::Sender<()> },
    /// Queue a play (`:play`) to everyone or to an audience (raw IDs, `playTo`); an
    /// interrupting one cancels those playing or queued first.
    Play { job: PlayJob, interrupt: bool, audience: Option<Vec<String>> },
    /// `:cancelAllMediaOperations`: cancel plays, tones and recognitions.
    CancelMedia,
    /// `:sendDtmfTones`: queued on the leg's audio stream like a play.
    /// Heard by the target (raw ID) only.
    SendTones { tones: Vec<Tone>, target: String, operation_context: Option<String>, slot: super::speaker::MediaSlot },
    /// `:startContinuousDtmfRecognition` for the participant with this raw ID; replies once the
    /// leg listens to its audio.
    StartContinuous { target: String, operation_context: Option<String>, reply: oneshot::Sender<()> },
    /// `:stopContinuousDtmfRecognition`.
    StopContinuous { target: String, operation_context: Option<String> },
    /// `:recognize` (DTMF), after `prompt` has played when there is one.
    Recognize {
        target: String,
        options: RecognizeOptions,
        operation_context: Option<String>,
        prompt: Option<PlayJob>,
        interrupt: bool,
        interrupt_prompt: bool,
        reply: oneshot::Sender<Result<(), ListenerError>>,
    },
}

/// A `recognize` waiting for its prompt to finish.
struct AfterPrompt {
    target: String,
    /// A tone during the prompt stops it and starts the recognition (`interruptPrompt`).
    interrupt_prompt: bool,
    options: RecognizeOptions,
    operation_context: Option<String>,
}

/// What woke the leg's task.
enum Wake {
    Event(Option<ClientEvent>),
    Command(Option<LegCommand>),
    Loaded(Loaded),
    Speak,
    Listen,
    Retire,
    Renew,
}

/// What call a connection is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionKind {
    /// A call the leg placed (`createCall`) or answered (`answer`): a `RoomKey::Call`.
    Call(Uuid),
    /// A group call it connected to.
    Group(Uuid),
    /// An ACS Room it connected to.
    Room(AcsRoomId),
}

impl ConnectionKind {
    pub fn room_key(&self) -> RoomKey {
        match self {
            ConnectionKind::Call(id) => RoomKey::Call(*id),
            ConnectionKind::Group(id) => RoomKey::Group(*id),
            ConnectionKind::Room(id) => RoomKey::Room(*id),
        }
    }

    /// The opaque `serverCallId` of the call (base64 of its room key, as ACS's are base64).
    pub fn server_call_id(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.room_key().to_string())
    }
}

/// ACS `CallConnectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected,
    Disconnecting,
    Disconnected,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnecting => "disconnecting",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

/// Someone in the call as the leg sees them.
#[derive(Debug, Clone)]
struct Member {
    raw_id: String,
    /// Audio tracks and whether each is muted.
    audio: BTreeMap<u64, bool>,
}

impl Member {
    fn state(&self) -> ParticipantState {
        ParticipantState {
            raw_id: self.raw_id.clone(),
            is_muted: !self.audio.is_empty() && self.audio.values().all(|m| *m),
        }
    }
}

/// An `addParticipant` still ringing.
#[derive(Debug, Clone)]
pub(super) struct PendingInvitation {
    pub identity: IdentityId,
    /// The call ID it rings with: the connection's call, or (into a group call) its own.
    pub call: Uuid,
    pub raw_id: String,
    pub operation_context: Option<String>,
    /// Set by `cancelAddParticipant`: the operation context of the cancel.
    pub cancel_context: Option<Option<String>>,
}

struct View {
    state: ConnectionState,
    connected_once: bool,
    /// The leg's own participant ID.
    leg: u64,
    members: BTreeMap<u64, Member>,
    sequence: u64,
    invitations: HashMap<String, PendingInvitation>,
}

/// A call connection.
pub struct CallConnection {
    pub id: Uuid,
    pub kind: ConnectionKind,
    pub correlation_id: Uuid,
    pub callback_uri: CallbackUri,
    pub operation_context: Option<String>,
    /// The leg's identity (the call's source, or the callee that answered).
    pub source_raw_id: String,
    pub source: IdentityId,
    pub source_display_name: Option<String>,
    /// The targets of `createCall`.
    pub targets: Vec<String>,
    /// Whether `CreateCallFailed` is due when the call ends before it connects.
    pub outgoing: bool,
    view: Mutex<View>,
    commands: mpsc::Sender<LegCommand>,
    shared: Arc<Shared>,
    /// Media jobs accepted and not yet ended (`MAX_QUEUED_MEDIA` bounds it; each job holds a
    /// `MediaSlot` of it).
    media_jobs: Arc<std::sync::atomic::AtomicUsize>,
}

/// What a new connection starts from.
pub(super) struct ConnectionSetup {
    pub kind: ConnectionKind,
    pub callback_uri: CallbackUri,
    pub operation_context: Option<String>,
    pub source: IdentityId,
    pub source_raw_id: String,
    pub source_display_name: Option<String>,
    pub targets: Vec<String>,
    pub outgoing: bool,
}

impl CallConnection {
    /// Register a connection whose leg `client` has just `joined` its call, and start its task.
    pub(super) fn start(shared: Arc<Shared>, setup: ConnectionSetup, client: Client, joined: Joined) -> Arc<Self> {
        let (commands, commands_rx) = mpsc::channel(8);
        let state = match joined.state {
            CallState::Connected => ConnectionState::Connected,
            _ => ConnectionState::Connecting,
        };
        let mut members = BTreeMap::new();
        for p in &joined.participants {
            members.insert(p.participant_id, member_of(p));
        }
        let conn = Arc::new(CallConnection {
            id: Uuid::new_v4(),
            kind: setup.kind,
            correlation_id: Uuid::new_v4(),
            callback_uri: setup.callback_uri,
            operation_context: setup.operation_context,
            source_raw_id: setup.source_raw_id,
            source: setup.source,
            source_display_name: setup.source_display_name,
            targets: setup.targets,
            outgoing: setup.outgoing,
            view: Mutex::new(View {
                state: ConnectionState::Connecting,
                connected_once: false,
                leg: joined.participant_id,
                members,
                sequence: 0,
                invitations: HashMap::new(),
            }),
            commands,
            shared: shared.clone(),
            media_jobs: Arc::default(),
        });
        shared.connections.insert(conn.id, conn.clone());
        shared.metrics.state_changed(None, Some(ConnectionState::Connecting));
        if state == ConnectionState::Connected {
            conn.connected();
        }
        tokio::spawn(conn.clone().run(client, commands_rx, setup.source));
        conn
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // The view is plain data updated in short sections that cannot fail halfway.
        self.view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn state(&self) -> ConnectionState {
        self.view().state
    }

    /// The leg's participant ID in the room.
    pub fn leg_participant(&self) -> u64 {
        self.view().leg
    }

    /// Who is in the call (the leg excepted), in join order.
    pub fn participants(&self) -> Vec<ParticipantState> {
        self.view().members.values().map(Member::state).collect()
    }

    pub fn event_base(&self) -> EventBase {
        EventBase {
            call_connection_id: self.id.to_string(),
            server_call_id: self.kind.server_call_id(),
            correlation_id: self.correlation_id.to_string(),
        }
    }

    /// Send an event to the app: the one place events leave a connection. Ordered per
    /// connection (its ID is the ordering key).
    pub fn emit(&self, name: &'static str, data: Value) {
        self.shared.metrics.count_event(name);
        let subject = format!("calling/callConnections/{}", self.id);
        tracing::debug!(connection = %self.id, event = name, "call automation event");
        self.shared.webhooks.publish(&self.callback_uri, &self.id.to_string(), AcsEvent { name, subject, data });
    }

    pub(super) fn add_invitation(&self, id: String, invitation: PendingInvitation) {
        self.view().invitations.insert(id, invitation);
    }

    /// Mark a pending invitation cancelled; returns the invited identity and its call ID.
    pub(super) fn cancel_invitation(&self, id: &str, context: Option<String>) -> Option<(IdentityId, Uuid)> {
        let mut view = self.view();
        let pending = view.invitations.get_mut(id)?;
        pending.cancel_context = Some(context);
        Some((pending.identity, pending.call))
    }

    /// Whether `identity` has an invitation of this connection ringing.
    pub(super) fn invited(&self, identity: IdentityId) -> bool {
        self.view().invitations.values().any(|p| p.identity == identity)
    }

    pub(super) fn take_invitation(&self, id: &str) -> Option<PendingInvitation> {
        self.view().invitations.remove(id)
    }

    /// Ask the leg to leave the call; returns when it has (or its task is gone).
    pub async fn hang_up(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(LegCommand::HangUp { reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    fn set_state(&self, view: &mut View, state: ConnectionState) {
        if view.state != state {
            self.shared.metrics.state_changed(Some(view.state), Some(state));
            view.state = state;
        }
    }

    fn connected(&self) {
        {
            let mut view = self.view();
            if view.connected_once {
                return;
            }
            view.connected_once = true;
            self.set_state(&mut view, ConnectionState::Connected);
        }
        self.emit("CallConnected", events::call_connected(&self.event_base(), self.operation_context.as_deref()));
        // A placed call connects before the callee joins the room (its join is the next update);
        // a connection to a call others are in starts from who is there.
        if !self.view().members.is_empty() {
            self.participants_updated();
        }
    }

    /// Emit `ParticipantsUpdated` with the current list (only once connected).
    fn participants_updated(&self) {
        let (sequence, list) = {
            let mut view = self.view();
            if view.state != ConnectionState::Connected {
                return;
            }
            view.sequence += 1;
            (view.sequence, view.members.values().map(Member::state).collect::<Vec<_>>())
        };
        self.emit("ParticipantsUpdated", events::participants_updated(&self.event_base(), sequence, &list));
    }

    /// The leg's view after a signaling event; whether the participant list changed.
    fn on_signal(&self, msg: &ServerMessage) -> bool {
        let mut view = self.view();
        let leg = view.leg;
        match msg {
            ServerMessage::ParticipantJoined { participant } if participant.participant_id != leg => {
                view.members.insert(participant.participant_id, member_of(participant));
                true
            }
            ServerMessage::ParticipantLeft { participant_id, .. } => view.members.remove(participant_id).is_some(),
            ServerMessage::TrackPublished { track } if track.kind == MediaKind::Audio => {
                let Some(m) = view.members.get_mut(&track.participant_id) else { return false };
                let before = m.state();
                m.audio.insert(track.track_id, track.muted);
                m.state() != before
            }
            ServerMessage::TrackUnpublished { track_id, participant_id, .. } => {
                let Some(m) = view.members.get_mut(participant_id) else { return false };
                let before = m.state();
                m.audio.remove(track_id);
                m.state() != before
            }
            ServerMessage::TrackMuted { track_id, participant_id, muted, .. } => {
                let Some(m) = view.members.get_mut(participant_id) else { return false };
                let before = m.state();
                if let Some(t) = m.audio.get_mut(track_id) {
                    *t = *muted;
                }
                m.state() != before
            }
            _ => false,
        }
    }

    /// Send an app command to the leg's task (false: the leg is gone).
    /// A place for one more media job, or `TooManyQueued`.
    pub(super) fn reserve_media(&self) -> Result<super::speaker::MediaSlot, super::AutomationError> {
        super::speaker::MediaSlot::reserve(&self.media_jobs, super::MAX_QUEUED_MEDIA)
            .ok_or(super::AutomationError::TooManyQueued)
    }

    pub(super) async fn command(&self, command: LegCommand) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// Audio tracks of the participants with this raw ID.
    fn audio_tracks_of(&self, raw_id: &str) -> Vec<u64> {
        self.view().members.values().filter(|m| m.raw_id == raw_id).flat_map(|m| m.audio.keys().copied()).collect()
    }

    /// The raw ID of the participant with this participant ID.
    fn raw_id_of(&self, participant: u64) -> Option<String> {
        self.view().members.get(&participant).map(|m| m.raw_id.clone())
    }

    /// The leg's task: follow its events until the call ends for it, and carry out commands.
    async fn run(self: Arc<Self>, mut client: Client, mut commands: mpsc::Receiver<LegCommand>, identity: IdentityId) {
        let renew_every = Duration::from_secs(u64::try_from(LEG_TOKEN_MINUTES).unwrap_or(60) * 30);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        let mut hang_up_replies: Vec<oneshot::Sender<()>> = Vec::new();
        let random = Uuid::new_v4().as_u128();
        // Random SSRC, first sequence number and timestamp (RFC 3550 §5.1), truncated from one draw.
        let mut voice = Voice {
            speaker: Speaker::new(random as u32, (random >> 32) as u16, (random >> 48) as u32),
            tracks: HashMap::new(),
            job_streams: HashMap::new(),
            next_stream: MAIN_STREAM + 1,
            speak_at: None,
            hold_until: None,
            packets: Vec::new(),
            next_job: 0,
            after_prompt: HashMap::new(),
        };
        let mut ears: HashMap<String, Ears> = HashMap::new();
        // Subscription ID → the raw ID of the participant it listens to.
        let mut listening: HashMap<u64, String> = HashMap::new();
        let reason = loop {
            let speak_at = voice.speak_at;
            let listen_at = ears.values().filter_map(|e| e.listener.next_deadline()).min();
            let retire_at = voice.next_retirement();
            let has_track = !voice.tracks.is_empty();
            let wake = tokio::select! {
                event = client.next_event() => Wake::Event(event),
                command = commands.recv() => Wake::Command(command),
                loaded = async {
                    match voice.speaker.loading() {
                        Some(rx) => rx.await.unwrap_or(Err(super::media::MediaError::Read("the loading task ended".into()))),
                        None => std::future::pending().await,
                    }
                }, if has_track => Wake::Loaded(loaded),
                () = sleep_until(speak_at) => Wake::Speak,
                () = sleep_until(listen_at) => Wake::Listen,
                () = sleep_until(retire_at) => Wake::Retire,
                _ = renew.tick() => Wake::Renew,
            };
            match wake {
                Wake::Event(event) => match event {
                    Some(ClientEvent::Signal(ServerMessage::CallStateChanged { state, code, .. })) => match state {
                        CallState::Connected => self.connected(),
                        CallState::Disconnected => break code.unwrap_or(EndReason::HungUp),
                        _ => {}
                    },
                    Some(ClientEvent::Signal(msg)) => {
                        if let ServerMessage::TrackPublished { track } = &msg
                            && track.kind == MediaKind::Audio
                            && let Some(raw) = self.raw_id_of(track.participant_id)
                            && let Some(e) = ears.get_mut(&raw)
                        {
                            self.listen(&client, &mut listening, e, &raw, track.track_id).await;
                        }
                        if self.on_signal(&msg) {
                            self.participants_updated();
                        }
                    }
                    Some(ClientEvent::Rtp { subscription, packet }) => {
                        let Some(raw) = listening.get(&subscription) else { continue };
                        let Ok(h) = crate::rtp::RtpHeader::parse(&packet) else { continue };
                        if h.payload_type != TELEPHONE_EVENT_PT {
                            continue;
                        }
                        let Some(payload) = packet.get(h.payload.clone()) else { continue };
                        let raw = raw.clone();
                        let Some(e) = ears.get_mut(&raw) else { continue };
                        let now = std::time::Instant::now();
                        let (heard, events) = e.listener.on_packet_heard(h.timestamp, payload, now);
                        self.dtmf_events(events);
                        // A tone during a recognize's prompt with interruptPrompt: the prompt
                        // stops and the tone is the recognition's first.
                        let interrupted = voice
                            .after_prompt
                            .iter()
                            .find(|(_, a)| a.target == raw && a.interrupt_prompt)
                            .map(|(id, _)| *id);
                        if let (Some(tone), Some(job), false) = (heard, interrupted, e.listener.recognizing())
                            && let Some(after) = voice.after_prompt.remove(&job)
                        {
                            voice.speaker.drop_job(job);
                            voice.job_ended(job);
                            if !voice.speaker.playing() {
                                voice.speak_at = None;
                            }
                            self.next_voice(&mut voice);
                            match e.listener.recognize_from(after.options, after.operation_context, tone, now) {
                                Ok(events) => self.dtmf_events(events),
                                Err(err) => {
                                    tracing::debug!(connection = %self.id, error = %err, "recognize not started")
                                }
                            }
                        }
                    }
                    Some(ClientEvent::Closed { reason }) => {
                        tracing::warn!(connection = %self.id, %reason, "the call connection's leg was disconnected");
                        break EndReason::ConnectionLost;
                    }
                    None => break EndReason::ConnectionLost,
                    Some(_) => {}
                },
                Wake::Command(command) => match command {
                    Some(LegCommand::HangUp { reply }) => {
                        {
                            let mut view = self.view();
                            self.set_state(&mut view, ConnectionState::Disconnecting);
                        }
                        hang_up_replies.push(reply);
                        if let Err(e) = client.hang_up(false).await {
                            tracing::debug!(connection = %self.id, error = %e, "hang-up of the leg failed; it is out anyway");
                            break EndReason::HungUp;
                        }
                    }
                    Some(LegCommand::Play { job, interrupt, audience }) => {
                        self.say(&client, &mut voice, Job::Play(job), interrupt, audience, &mut ears).await;
                    }
                    Some(LegCommand::SendTones { tones, target, operation_context, slot }) => {
                        let job = Job::Tones { tones, operation_context, slot };
                        self.say(&client, &mut voice, job, false, Some(vec![target]), &mut ears).await;
                    }
                    Some(LegCommand::CancelMedia) => {
                        let events = voice.speaker.cancel_all();
                        self.voice_events(&mut voice, &mut ears, events);
                        voice.speak_at = None;
                        let canceled = ResultInformation::new(400, 8508, "Action failed, the operation was canceled.");
                        for e in ears.values_mut() {
                            if let Some(context) = e.listener.cancel_recognize() {
                                let data = events::operation(
                                    "RecognizeCanceled",
                                    &self.event_base(),
                                    context.as_deref(),
                                    canceled,
                                );
                                self.emit("RecognizeCanceled", data);
                            }
                        }
                    }
                    Some(LegCommand::StartContinuous { target, operation_context, reply }) => {
                        let e = self.ears_for(&client, &mut listening, &mut ears, &target).await;
                        e.listener.start_continuous(operation_context);
                        let _ = reply.send(());
                    }
                    Some(LegCommand::StopContinuous { target, operation_context }) => {
                        let stopped = ears.get_mut(&target).and_then(|e| e.listener.stop_continuous());
                        if let Some(started_with) = stopped {
                            let context = operation_context.or(started_with);
                            let ok = ResultInformation::new(200, 0, "Action completed successfully.");
                            let data = events::operation(
                                "ContinuousDtmfRecognitionStopped",
                                &self.event_base(),
                                context.as_deref(),
                                ok,
                            );
                            self.emit("ContinuousDtmfRecognitionStopped", data);
                        }
                    }
                    Some(LegCommand::Recognize {
                        target,
                        options,
                        operation_context,
                        prompt,
                        interrupt,
                        interrupt_prompt,
                        reply,
                    }) => {
                        let busy = ears.get(&target).is_some_and(|e| e.listener.recognizing())
                            || voice.after_prompt.values().any(|a| a.target == target);
                        if busy {
                            let _ = reply.send(Err(ListenerError::AlreadyRecognizing));
                            continue;
                        }
                        // Listen before answering, so a tone sent right after the answer (or during
                        // the prompt) is not lost to the subscription's start.
                        self.ears_for(&client, &mut listening, &mut ears, &target).await;
                        let _ = reply.send(Ok(()));
                        match prompt {
                            Some(job) => {
                                // The prompt is for the participant whose tones are awaited.
                                let id = voice.next_job;
                                let audience = Some(vec![target.clone()]);
                                voice
                                    .after_prompt
                                    .insert(id, AfterPrompt { target, interrupt_prompt, options, operation_context });
                                self.say(&client, &mut voice, Job::Play(job), interrupt, audience, &mut ears).await;
                            }
                            None => {
                                if let Some(e) = ears.get_mut(&target) {
                                    let _ = e.listener.recognize(options, operation_context, std::time::Instant::now());
                                }
                            }
                        }
                    }
                    None => break EndReason::HungUp,
                },
                Wake::Loaded(result) => {
                    let events = voice.speaker.loaded(result);
                    self.voice_events(&mut voice, &mut ears, events);
                    self.next_voice(&mut voice);
                }
                Wake::Speak => {
                    let (next, events) = voice.speaker.poll(std::time::Instant::now(), &mut voice.packets);
                    voice.send_packets(&client, self.id);
                    voice.speak_at = next;
                    self.voice_events(&mut voice, &mut ears, events);
                    self.next_voice(&mut voice);
                }
                Wake::Listen => {
                    let now = std::time::Instant::now();
                    for e in ears.values_mut() {
                        let events = e.listener.poll(now);
                        self.dtmf_events(events);
                    }
                }
                Wake::Retire => voice.retire_idle(&client, std::time::Instant::now()).await,
                Wake::Renew => match self.shared.legs.token(identity).await {
                    Ok(token) => {
                        if let Err(e) = client.register(&token, self.source_display_name.as_deref()).await {
                            tracing::warn!(connection = %self.id, error = %e, "the leg could not renew its registration");
                        }
                    }
                    Err(e) => tracing::warn!(connection = %self.id, error = %e, "no new token for the leg"),
                },
            }
            self.stop_listening_when_idle(&client, &mut listening, &mut ears, &voice).await;
        };
        let events = voice.speaker.cancel_all();
        self.voice_events(&mut voice, &mut ears, events);
        self.finish(reason);
        client.close().await;
        for reply in hang_up_replies {
            let _ = reply.send(());
        }
    }

    /// The call ended for the leg: tell the app, forget the connection.
    fn finish(&self, reason: EndReason) {
        let connected_once = {
            let mut view = self.view();
            self.set_state(&mut view, ConnectionState::Disconnected);
            view.connected_once
        };
        let base = self.event_base();
        let context = self.operation_context.as_deref();
        if self.outgoing && !connected_once {
            self.emit("CreateCallFailed", events::create_call_failed(&base, context, failure_result(reason)));
        }
        self.emit("CallDisconnected", events::call_disconnected(&base, context, disconnect_result(reason)));
        self.shared.connections.remove(&self.id);
        tracing::info!(connection = %self.id, reason = reason.label(), "call connection ended");
    }
}

/// Sleep until `at`; never, for `None`.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn member_of(p: &ParticipantInfo) -> Member {
    let audio = p.tracks.iter().filter(|t| t.kind == MediaKind::Audio).map(|t| (t.track_id, t.muted)).collect();
    Member { raw_id: p.identity.clone(), audio }
}

/// Why a call or an invitation never connected, as ACS reports it (SIP-like codes).
pub fn failure_result(reason: EndReason) -> ResultInformation {
    match reason {
        EndReason::Declined => ResultInformation::new(603, 0, "The call was declined"),
        EndReason::NoAnswer => ResultInformation::new(408, 0, "Nobody answered the call in time"),
        EndReason::Unreachable => ResultInformation::new(480, 0, "The target has no connected device"),
        EndReason::Cancelled | EndReason::HungUp | EndReason::Left => {
            ResultInformation::new(487, 0, "The call was cancelled before it was answered")
        }
        _ => ResultInformation::new(500, 0, "The call could not be established"),
    }
}

/// How a connection ended.
pub fn disconnect_result(reason: EndReason) -> ResultInformation {
    match reason {
        EndReason::HungUp | EndReason::Left => ResultInformation::new(200, 0, "The call was hung up"),
        EndReason::RemovedFromCall => ResultInformation::new(200, 0, "The call was terminated"),
        EndReason::RoomDeleted => ResultInformation::new(200, 0, "The room was deleted"),
        EndReason::ServerShutdown => ResultInformation::new(503, 0, "The server is shutting down"),
        EndReason::ConnectionLost => ResultInformation::new(500, 0, "The server's leg lost its connection"),
        other => failure_result(other),
    }
}
