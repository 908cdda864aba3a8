//! Media operations of a call connection: play, cancel, continuous and single DTMF recognition,
//! sending tones; sources load in the background while earlier jobs play.

use super::connection::{ConnectionState, LegCommand};
use super::*;

impl CallAutomation {
    /// `:play`: queue the sources on the leg's audio track. The outcome arrives as `PlayStarted`
    /// then `PlayCompleted`, or `PlayFailed` (a missing or undecodable file), or `PlayCanceled`.
    ///
    /// With `playTo`, only those participants hear it: the leg publishes the audio on a track
    /// whose audience they are (nobody else learns of it or may subscribe to it). Without, it
    /// plays on the leg's track to everyone.
    pub async fn play(&self, id: Uuid, req: Play) -> Result<(), AutomationError> {
        let result = self.play_inner(id, req).await;
        self.shared.metrics.count("play", &result);
        result
    }

    async fn play_inner(&self, id: Uuid, req: Play) -> Result<(), AutomationError> {
        let conn = self.get(id)?;
        if req.sources.is_empty() {
            return Err(AutomationError::bad("playSources", "name at least one play source"));
        }
        let located = req
            .sources
            .iter()
            .map(|uri| self.shared.media.locate(uri).map_err(|e| AutomationError::bad("playSources", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let audience = if req.play_to.is_empty() {
            None
        } else {
            for raw in &req.play_to {
                self.parse_user("playTo", raw)?;
            }
            let present = conn.participants();
            if let Some(missing) = req.play_to.iter().find(|w| !present.iter().any(|p| p.raw_id == **w)) {
                return Err(AutomationError::bad("playTo", format!("{missing} is not in the call")));
            }
            Some(req.play_to.clone())
        };
        if conn.state() != ConnectionState::Connected {
            return Err(AutomationError::NotConnected);
        }
        let slot = conn.reserve_media()?;
        let job = self.load_in_background(located, req.looped, req.operation_context, slot);
        if !conn.command(LegCommand::Play { job, interrupt: req.interrupt, audience }).await {
            return Err(AutomationError::NotConnected);
        }
        Ok(())
    }

    /// `:cancelAllMediaOperations`: cancel what plays, what is queued (`PlayCanceled` each).
    pub async fn cancel_media(&self, id: Uuid) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            if !conn.command(LegCommand::CancelMedia).await {
                return Err(AutomationError::NotConnected);
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("cancel_all_media_operations", &result);
        result
    }
}

impl CallAutomation {
    /// A connected connection and a participant of its call (not the leg).
    fn connected_with(
        &self,
        id: Uuid,
        field: &'static str,
        raw_id: &str,
    ) -> Result<Arc<CallConnection>, AutomationError> {
        let conn = self.get(id)?;
        self.parse_user(field, raw_id)?;
        if !conn.participants().iter().any(|p| p.raw_id == raw_id) {
            return Err(AutomationError::ParticipantNotInCall);
        }
        if conn.state() != ConnectionState::Connected {
            return Err(AutomationError::NotConnected);
        }
        Ok(conn)
    }

    /// `:startContinuousDtmfRecognition`: every tone the participant sends becomes a
    /// `ContinuousDtmfRecognitionToneReceived` event, numbered by `sequenceId`.
    pub async fn start_continuous_dtmf(
        &self,
        id: Uuid,
        target: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.connected_with(id, "targetParticipant", target)?;
            let (reply, listening) = tokio::sync::oneshot::channel();
            let command = LegCommand::StartContinuous { target: target.to_owned(), operation_context, reply };
            if !conn.command(command).await {
                return Err(AutomationError::NotConnected);
            }
            // Answer once the leg listens: tones sent after the answer are heard.
            listening.await.map_err(|_| AutomationError::NotConnected)
        }
        .await;
        self.shared.metrics.count("start_continuous_dtmf_recognition", &result);
        result
    }

    /// `:stopContinuousDtmfRecognition` (`ContinuousDtmfRecognitionStopped` when it ran).
    pub async fn stop_continuous_dtmf(
        &self,
        id: Uuid,
        target: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            self.parse_user("targetParticipant", target)?;
            let command = LegCommand::StopContinuous { target: target.to_owned(), operation_context };
            if !conn.command(command).await {
                return Err(AutomationError::NotConnected);
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("stop_continuous_dtmf_recognition", &result);
        result
    }

    /// `:recognize` (DTMF): collect the participant's tones (after the prompt, if any);
    /// `RecognizeCompleted` or `RecognizeFailed` follows.
    pub async fn recognize(&self, id: Uuid, req: Recognize) -> Result<(), AutomationError> {
        let result = self.recognize_inner(id, req).await;
        self.shared.metrics.count("recognize", &result);
        result
    }

    async fn recognize_inner(&self, id: Uuid, req: Recognize) -> Result<(), AutomationError> {
        let conn = self.connected_with(id, "targetParticipant", &req.target)?;
        let prompt = if req.prompt.is_empty() {
            None
        } else {
            let slot = conn.reserve_media()?;
            let located = req
                .prompt
                .iter()
                .map(|uri| self.shared.media.locate(uri).map_err(|e| AutomationError::bad("playPrompt", e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Some(self.load_in_background(located, false, req.operation_context.clone(), slot))
        };
        let (reply, replied) = tokio::sync::oneshot::channel();
        let command = LegCommand::Recognize {
            target: req.target,
            options: req.options,
            operation_context: req.operation_context,
            prompt,
            interrupt: req.interrupt,
            interrupt_prompt: req.interrupt_prompt,
            reply,
        };
        if !conn.command(command).await {
            return Err(AutomationError::NotConnected);
        }
        match replied.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AutomationError::bad("recognizeOptions.targetParticipant", e.to_string())),
            Err(_) => Err(AutomationError::NotConnected),
        }
    }

    /// `:sendDtmfTones`: RFC 4733 events on a leg's audio track to the target participant only;
    /// `SendDtmfTonesCompleted` follows.
    pub async fn send_dtmf_tones(
        &self,
        id: Uuid,
        tones: Vec<audio::dtmf::Tone>,
        target: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.connected_with(id, "targetParticipant", target)?;
            let slot = conn.reserve_media()?;
            let target = target.to_owned();
            if !conn.command(LegCommand::SendTones { tones, target, operation_context, slot }).await {
                return Err(AutomationError::NotConnected);
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("send_dtmf_tones", &result);
        result
    }

    /// Read and decode play sources in a task; the job's `loading` resolves when done.
    fn load_in_background(
        &self,
        located: Vec<media::Located>,
        looped: bool,
        operation_context: Option<String>,
        slot: speaker::MediaSlot,
    ) -> PlayJob {
        let (mut done, loading) = tokio::sync::oneshot::channel();
        let media = self.shared.media.clone();
        tokio::spawn(async move {
            let load_all = async {
                let mut prompts = Vec::with_capacity(located.len());
                for source in &located {
                    prompts.push(media.load(source).await?);
                }
                Ok(prompts)
            };
            // A job canceled (or its call ended) while it loads stops loading: a canceled
            // queue of long files must not keep the decoders busy.
            let loaded = tokio::select! {
                () = done.closed() => return,
                loaded = load_all => loaded,
            };
            let _ = done.send(loaded);
        });
        PlayJob { loading, looped, operation_context, slot }
    }
}
