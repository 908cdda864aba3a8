//! The leg's voice: its audio tracks (one to everyone, one per audience of targeted jobs) and
//! the jobs the speaker plays on them, and how their outcomes become the app's events (a
//! `recognize`'s prompt starts its recognition when it ends).

use super::super::speaker::{Job, MAIN_STREAM, PlayEvent, PlayEventKind, Speaker, Stream, StreamId};
use super::{AfterPrompt, CallConnection, Ears};
use crate::call_automation::events::{self, ResultInformation};
use crate::client::{Client, PublishedTrack};
use crate::sfu::packet::{Codec, MediaKind};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

impl CallConnection {
    /// The app's events of plays and tones.
    pub(super) fn play_events(&self, events: Vec<PlayEvent>) {
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

    /// Queue a job on the leg's voice, heard by `audience` (raw IDs; `None`: everyone),
    /// publishing an audio track to it first if need be.
    pub(super) async fn say(
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
                    let err =
                        crate::call_automation::media::MediaError::Read(format!("the leg cannot publish audio: {e}"));
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
    pub(super) fn next_voice(&self, voice: &mut Voice) {
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
    pub(super) fn voice_events(&self, voice: &mut Voice, ears: &mut HashMap<String, Ears>, events: Vec<PlayEvent>) {
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
}

/// The leg's audio streams and what it is saying.
pub(super) struct Voice {
    pub(super) speaker: Speaker,
    /// The leg's published audio tracks by stream: the main one (to everyone) from the first job
    /// for everyone on, one per audience of targeted jobs while it has jobs (and `AUDIENCE_LINGER`
    /// after).
    pub(super) tracks: HashMap<StreamId, VoiceTrack>,
    /// The stream of each job queued or playing.
    pub(super) job_streams: HashMap<u64, StreamId>,
    pub(super) next_stream: StreamId,
    pub(super) speak_at: Option<std::time::Instant>,
    /// Nothing starts before this (a new track's `SUBSCRIBE_GRACE`).
    pub(super) hold_until: Option<std::time::Instant>,
    pub(super) packets: Vec<(StreamId, bytes::Bytes)>,
    pub(super) next_job: u64,
    /// Recognitions waiting for their prompt (by job ID).
    pub(super) after_prompt: HashMap<u64, AfterPrompt>,
}

/// One of the leg's audio tracks.
pub(super) struct VoiceTrack {
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
    /// Send the packets the speaker made, each on its stream's track.
    pub(super) fn send_packets(&mut self, client: &Client, connection: Uuid) {
        for (stream, packet) in self.packets.drain(..) {
            let Some(t) = self.tracks.get(&stream) else { continue };
            if let Err(e) = client.send_rtp(&t.track, 0, packet) {
                tracing::debug!(%connection, error = %e, "the leg could not send audio");
            }
        }
    }

    /// The stream already published to `audience`.
    pub(super) fn stream_for(&self, audience: Option<&Vec<String>>) -> Option<StreamId> {
        self.tracks.iter().find(|(_, t)| t.audience.as_ref() == audience).map(|(s, _)| *s)
    }

    /// Publish a track to `audience` (to everyone: the main stream).
    pub(super) async fn open_stream(
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

    pub(super) fn job_started(&mut self, job: u64, stream: StreamId) {
        self.job_streams.insert(job, stream);
        if let Some(t) = self.tracks.get_mut(&stream) {
            t.jobs += 1;
            t.idle_since = None;
        }
    }

    /// A job ended (or was dropped): its track may go idle.
    pub(super) fn job_ended(&mut self, job: u64) {
        let Some(stream) = self.job_streams.remove(&job) else { return };
        if let Some(t) = self.tracks.get_mut(&stream) {
            t.jobs = t.jobs.saturating_sub(1);
            if t.jobs == 0 {
                t.idle_since = Some(std::time::Instant::now());
            }
        }
    }

    /// When the next idle track to an audience is due to be unpublished.
    pub(super) fn next_retirement(&self) -> Option<std::time::Instant> {
        self.tracks
            .values()
            .filter(|t| t.audience.is_some())
            .filter_map(|t| t.idle_since)
            .min()
            .map(|since| since + AUDIENCE_LINGER)
    }

    /// Unpublish tracks to an audience that have been idle for `AUDIENCE_LINGER`.
    pub(super) async fn retire_idle(&mut self, client: &Client, now: std::time::Instant) {
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

/// `PlayFailed`'s result (ACS play error codes).
pub(super) fn play_failure(err: &crate::call_automation::media::MediaError) -> ResultInformation {
    let (code, sub) = err.acs_code();
    let message = match sub {
        8535 => "Action failed, file format is invalid.",
        8536 => "Action failed, file could not be downloaded.",
        8565 => "Action failed, the media file was not found.",
        _ => "Unknown internal server error.",
    };
    ResultInformation::new(code, sub, message)
}
