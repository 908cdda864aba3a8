//! One call connection: the app's handle on a call, and the task that drives the server's leg in
//! it. The leg's client is the connection's eyes: its call state and the room's member and track
//! events, as the leg's session translates them, become the connection's state and the app's
//! events (`CallConnected`, `ParticipantsUpdated`, `CallDisconnected`, ...). Every event leaves
//! through `CallConnection::emit`.

use super::audio::dtmf::{RecognizeOptions, RecognizeOutcome, Tone};
use super::events::{self, EventBase, ParticipantState, ResultInformation};
use super::listener::{DtmfEvent, DtmfListener, ListenerError};
use super::speaker::{
    Job, Loaded, MAIN_STREAM, PlayEvent, PlayEventKind, PlayJob, Speaker, Stream, StreamId, TELEPHONE_EVENT_PT,
};
use super::{Shared, leg::LEG_TOKEN_MINUTES};
use crate::client::{Client, ClientEvent, Joined, PublishedTrack};
use crate::identity::IdentityId;
use crate::room_directory::AcsRoomId;
use crate::rooms::RoomKey;
use crate::sfu::packet::{Codec, MediaKind};
use crate::signaling::messages::{CallState, EndReason, ParticipantInfo, ServerMessage};
use crate::webhooks::{AcsEvent, CallbackUri};
use base64::Engine as _;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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

/// A participant the leg listens to for DTMF.
#[derive(Default)]
struct Ears {
    listener: DtmfListener,
    /// Audio tracks subscribed to.
    tracks: std::collections::HashSet<u64>,
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

    /// The app's events of plays and tones.
    fn play_events(&self, events: Vec<PlayEvent>) {
        let base = self.event_base();
        let ok = ResultInformation::new(200, 0, "Action completed successfully.");
        let canceled = ResultInformation::new(400, 8508, "Action failed, the operation was canceled.");
        for e in events {
            let (name, result) = match (&e.kind, e.tones) {
                (PlayEventKind::Started, false) => ("PlayStarted", ok),
                (PlayEventKind::Started, true) => continue,
                (PlayEventKind::Completed, false) => ("PlayCompleted", ok),
                (PlayEventKind::Completed, true) => ("SendDtmfTonesCompleted", ok),
                (PlayEventKind::Canceled, false) => ("PlayCanceled", canceled),
                (PlayEventKind::Canceled, true) => ("SendDtmfTonesFailed", canceled),
                (PlayEventKind::Failed(err), _) => {
                    tracing::info!(connection = %self.id, error = %err, "play failed");
                    ("PlayFailed", play_failure(err))
                }
            };
            self.emit(name, events::operation(name, &base, e.operation_context.as_deref(), result));
        }
    }

    /// The app's events of DTMF recognition.
    fn dtmf_events(&self, events: Vec<DtmfEvent>) {
        let base = self.event_base();
        for e in events {
            match e {
                DtmfEvent::ToneReceived { tone, sequence_id, operation_context } => {
                    let data = events::tone_received(&base, operation_context.as_deref(), tone.name(), sequence_id);
                    self.emit("ContinuousDtmfRecognitionToneReceived", data);
                }
                DtmfEvent::Recognized { outcome, operation_context } => {
                    let result = ResultInformation::new(outcome.code(), outcome.sub_code(), outcome.message());
                    match &outcome {
                        RecognizeOutcome::Completed { tones, .. } => {
                            let names: Vec<&str> = tones.iter().map(|t| t.name()).collect();
                            let data = events::recognize_completed(&base, operation_context.as_deref(), &names, result);
                            self.emit("RecognizeCompleted", data);
                        }
                        RecognizeOutcome::Failed { .. } => {
                            let data =
                                events::operation("RecognizeFailed", &base, operation_context.as_deref(), result);
                            self.emit("RecognizeFailed", data);
                        }
                    }
                }
            }
        }
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
                    for (stream, packet) in voice.packets.drain(..) {
                        let Some(t) = voice.tracks.get(&stream) else { continue };
                        if let Err(e) = client.send_rtp(&t.track, 0, packet) {
                            tracing::debug!(connection = %self.id, error = %e, "the leg could not send audio");
                        }
                    }
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

    /// Queue a job on the leg's voice, heard by `audience` (raw IDs; `None`: everyone),
    /// publishing an audio track to it first if need be.
    async fn say(
        &self,
        client: &Client,
        voice: &mut Voice,
        job: Job,
        interrupt: bool,
        audience: Option<Vec<String>>,
        ears: &mut HashMap<String, Ears>,
    ) {
        let id = voice.next_job;
        voice.next_job += 1;
        let audience = audience.map(|mut a| {
            a.sort();
            a.dedup();
            a
        });
        let stream = match voice.stream_for(audience.as_ref()) {
            Some(stream) => stream,
            None => match voice.open_stream(client, audience).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(connection = %self.id, error = %e, "the leg cannot publish audio");
                    let tones = matches!(job, Job::Tones { .. });
                    let operation_context = match job {
                        Job::Play(j) => j.operation_context,
                        Job::Tones { operation_context, .. } => operation_context,
                    };
                    let err = super::media::MediaError::Read(format!("the leg cannot publish audio: {e}"));
                    let failed = PlayEvent { id, operation_context, kind: PlayEventKind::Failed(err), tones };
                    self.voice_events(voice, ears, vec![failed]);
                    return;
                }
            },
        };
        voice.job_started(id, stream);
        let events = voice.speaker.enqueue(id, stream, job, interrupt);
        if !voice.speaker.playing() {
            voice.speak_at = None;
        }
        self.voice_events(voice, ears, events);
        self.next_voice(voice);
    }

    /// Start queued tones when nothing else is under way, or what loaded; not before a new
    /// track's grace is over.
    fn next_voice(&self, voice: &mut Voice) {
        let now = std::time::Instant::now();
        let start = voice.hold_until.filter(|h| *h > now).unwrap_or(now);
        if voice.speaker.tones_ready() {
            voice.speaker.start_tones(start);
            voice.speak_at = Some(start);
        } else if voice.speaker.playing() && voice.speak_at.is_none() {
            voice.speak_at = Some(start);
        }
    }

    /// Events of the voice: a recognize's prompt starts its recognition when it ends; others go
    /// to the app.
    fn voice_events(&self, voice: &mut Voice, ears: &mut HashMap<String, Ears>, events: Vec<PlayEvent>) {
        let mut for_app = Vec::with_capacity(events.len());
        for e in events {
            if !matches!(e.kind, PlayEventKind::Started) {
                voice.job_ended(e.id);
            }
            if !voice.after_prompt.contains_key(&e.id) {
                for_app.push(e);
                continue;
            }
            if matches!(e.kind, PlayEventKind::Started) {
                continue;
            }
            let Some(after) = voice.after_prompt.remove(&e.id) else { continue };
            let base = self.event_base();
            let context = after.operation_context.as_deref();
            match e.kind {
                PlayEventKind::Completed => {
                    if let Some(ears) = ears.get_mut(&after.target) {
                        let _ =
                            ears.listener.recognize(after.options, after.operation_context, std::time::Instant::now());
                    }
                }
                PlayEventKind::Failed(err) => {
                    self.emit(
                        "RecognizeFailed",
                        events::operation("RecognizeFailed", &base, context, play_failure(&err)),
                    );
                }
                PlayEventKind::Canceled | PlayEventKind::Started => {
                    let canceled = ResultInformation::new(400, 8508, "Action failed, the operation was canceled.");
                    self.emit("RecognizeCanceled", events::operation("RecognizeCanceled", &base, context, canceled));
                }
            }
        }
        self.play_events(for_app);
    }

    /// The ears on participant `raw_id`, subscribing to its audio tracks the first time.
    async fn ears_for<'a>(
        &self,
        client: &Client,
        listening: &mut HashMap<u64, String>,
        ears: &'a mut HashMap<String, Ears>,
        raw_id: &str,
    ) -> &'a mut Ears {
        let e = ears.entry(raw_id.to_owned()).or_default();
        for track in self.audio_tracks_of(raw_id) {
            self.listen(client, listening, e, raw_id, track).await;
        }
        e
    }

    /// Unsubscribe from participants nobody listens to any more (no continuous recognition, no
    /// `recognize` running or waiting for its prompt): the leg stops receiving their audio.
    async fn stop_listening_when_idle(
        &self,
        client: &Client,
        listening: &mut HashMap<u64, String>,
        ears: &mut HashMap<String, Ears>,
        voice: &Voice,
    ) {
        let idle: Vec<String> = ears
            .iter()
            .filter(|(raw, e)| e.listener.idle() && !voice.after_prompt.values().any(|a| &a.target == *raw))
            .map(|(raw, _)| raw.clone())
            .collect();
        for raw in idle {
            ears.remove(&raw);
            let subscriptions: Vec<u64> = listening.iter().filter(|(_, r)| **r == raw).map(|(s, _)| *s).collect();
            for sub in subscriptions {
                listening.remove(&sub);
                if let Err(e) = client.unsubscribe(sub).await {
                    tracing::debug!(connection = %self.id, error = %e, "the leg could not unsubscribe");
                }
            }
        }
    }

    /// Subscribe the leg to one audio track of a participant it listens to.
    async fn listen(
        &self,
        client: &Client,
        listening: &mut HashMap<u64, String>,
        e: &mut Ears,
        raw_id: &str,
        track: u64,
    ) {
        if !e.tracks.insert(track) {
            return;
        }
        match client.subscribe(track, None, None).await {
            Ok(sub) => {
                listening.insert(sub.subscription_id, raw_id.to_owned());
            }
            Err(err) => {
                e.tracks.remove(&track);
                tracing::warn!(connection = %self.id, error = %err, "the leg cannot listen to a participant's audio");
            }
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

/// The leg's audio streams and what it is saying.
struct Voice {
    speaker: Speaker,
    /// The leg's published audio tracks by stream: the main one (to everyone) from the first job
    /// for everyone on, one per audience of targeted jobs while it has jobs (and `AUDIENCE_LINGER`
    /// after).
    tracks: HashMap<StreamId, VoiceTrack>,
    /// The stream of each job queued or playing.
    job_streams: HashMap<u64, StreamId>,
    next_stream: StreamId,
    speak_at: Option<std::time::Instant>,
    /// Nothing starts before this (a new track's `SUBSCRIBE_GRACE`).
    hold_until: Option<std::time::Instant>,
    packets: Vec<(StreamId, bytes::Bytes)>,
    next_job: u64,
    /// Recognitions waiting for their prompt (by job ID).
    after_prompt: HashMap<u64, AfterPrompt>,
}

/// One of the leg's audio tracks.
struct VoiceTrack {
    track: PublishedTrack,
    /// Raw IDs, sorted (`None`: everyone).
    audience: Option<Vec<String>>,
    /// Jobs queued or playing on it.
    jobs: usize,
    /// Since when it has had no job (targeted tracks are then unpublished).
    idle_since: Option<std::time::Instant>,
}

/// How long a track to an audience stays published without jobs: a prompt's last packets reach
/// the SFU first, and a follow-up prompt to the same people soon after reuses the track.
const AUDIENCE_LINGER: Duration = Duration::from_secs(3);

/// How long a job on a newly published track waits before its first packet: its audience learns
/// of the track and subscribes (a QUIC client in a round trip, a browser in a renegotiation), so
/// the start of a prompt is not lost to that.
const SUBSCRIBE_GRACE: Duration = Duration::from_millis(400);

impl Voice {
    /// The stream already published to `audience`.
    fn stream_for(&self, audience: Option<&Vec<String>>) -> Option<StreamId> {
        self.tracks.iter().find(|(_, t)| t.audience.as_ref() == audience).map(|(s, _)| *s)
    }

    /// Publish a track to `audience` (to everyone: the main stream).
    async fn open_stream(
        &mut self,
        client: &Client,
        audience: Option<Vec<String>>,
    ) -> Result<StreamId, crate::client::ClientError> {
        let (stream, track) = match &audience {
            None => (MAIN_STREAM, client.publish(MediaKind::Audio, Codec::Opus, vec![]).await?),
            Some(raw_ids) => {
                let track = client.publish_to(MediaKind::Audio, Codec::Opus, raw_ids.clone()).await?;
                let stream = self.next_stream;
                self.next_stream = self.next_stream.wrapping_add(1).max(MAIN_STREAM + 1);
                let random = Uuid::new_v4().as_u128();
                // A stream of its own: random SSRC, first sequence number and timestamp.
                let numbering =
                    Stream { ssrc: random as u32, seq: (random >> 32) as u16, timestamp: (random >> 48) as u32 };
                self.speaker.add_stream(stream, numbering);
                (stream, track)
            }
        };
        self.tracks.insert(stream, VoiceTrack { track, audience, jobs: 0, idle_since: None });
        self.hold_until = Some(std::time::Instant::now() + SUBSCRIBE_GRACE);
        Ok(stream)
    }

    fn job_started(&mut self, job: u64, stream: StreamId) {
        self.job_streams.insert(job, stream);
        if let Some(t) = self.tracks.get_mut(&stream) {
            t.jobs += 1;
            t.idle_since = None;
        }
    }

    /// A job ended (or was dropped): its track may go idle.
    fn job_ended(&mut self, job: u64) {
        let Some(stream) = self.job_streams.remove(&job) else { return };
        if let Some(t) = self.tracks.get_mut(&stream) {
            t.jobs = t.jobs.saturating_sub(1);
            if t.jobs == 0 {
                t.idle_since = Some(std::time::Instant::now());
            }
        }
    }

    /// When the next idle track to an audience is due to be unpublished.
    fn next_retirement(&self) -> Option<std::time::Instant> {
        self.tracks
            .values()
            .filter(|t| t.audience.is_some())
            .filter_map(|t| t.idle_since)
            .min()
            .map(|since| since + AUDIENCE_LINGER)
    }

    /// Unpublish tracks to an audience that have been idle for `AUDIENCE_LINGER`.
    async fn retire_idle(&mut self, client: &Client, now: std::time::Instant) {
        let due: Vec<StreamId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.audience.is_some() && t.idle_since.is_some_and(|s| now >= s + AUDIENCE_LINGER))
            .map(|(s, _)| *s)
            .collect();
        for stream in due {
            let Some(t) = self.tracks.remove(&stream) else { continue };
            self.speaker.remove_stream(stream);
            if let Err(e) = client.unpublish(&t.track).await {
                tracing::debug!(error = %e, "the leg could not unpublish a track to an audience");
            }
        }
    }
}

/// Sleep until `at`; never, for `None`.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// `PlayFailed`'s result (ACS play error codes).
fn play_failure(err: &super::media::MediaError) -> ResultInformation {
    let (code, sub) = err.acs_code();
    let message = match sub {
        8535 => "Action failed, file format is invalid.",
        8536 => "Action failed, file could not be downloaded.",
        8565 => "Action failed, the media file was not found.",
        _ => "Unknown internal server error.",
    };
    ResultInformation::new(code, sub, message)
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
