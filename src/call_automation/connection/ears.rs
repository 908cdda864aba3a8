//! The leg's ears: the participants it listens to for DTMF (subscribed to their audio while a
//! recognition needs them) and how what it hears becomes the app's events.

use super::{CallConnection, Voice};
use crate::call_automation::audio::dtmf::RecognizeOutcome;
use crate::call_automation::events::{self, ResultInformation};
use crate::call_automation::listener::{DtmfEvent, DtmfListener};
use crate::client::Client;
use std::collections::HashMap;

/// A participant the leg listens to for DTMF.
#[derive(Default)]
pub(super) struct Ears {
    pub(super) listener: DtmfListener,
    /// Audio tracks subscribed to.
    pub(super) tracks: std::collections::HashSet<u64>,
}

impl CallConnection {
    /// The app's events of DTMF recognition.
    pub(super) fn dtmf_events(&self, events: Vec<DtmfEvent>) {
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

    /// The ears on participant `raw_id`, subscribing to its audio tracks the first time.
    pub(super) async fn ears_for<'a>(
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
    pub(super) async fn stop_listening_when_idle(
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
    pub(super) async fn listen(
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
}
