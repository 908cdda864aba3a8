//! The leg's ears for one participant: the telephone-events of its audio tracks become tones
//! ([`ToneDetector`]), which feed continuous recognition (`ContinuousDtmfRecognitionToneReceived`,
//! one per tone with a growing `sequenceId`) and a `recognize` in progress ([`Recognizer`]).
//! Sans-IO: the leg's task subscribes to the participant's audio, hands over the telephone-event
//! packets, and calls [`DtmfListener::poll`] at [`DtmfListener::next_deadline`].

use super::audio::dtmf::{RecognizeOptions, RecognizeOutcome, Recognizer, Tone, ToneDetector};
use std::time::Instant;

/// What the app hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtmfEvent {
    /// `ContinuousDtmfRecognitionToneReceived`.
    ToneReceived { tone: Tone, sequence_id: u64, operation_context: Option<String> },
    /// `RecognizeCompleted` / `RecognizeFailed`.
    Recognized { outcome: RecognizeOutcome, operation_context: Option<String> },
}

/// Why a listener refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    #[error("a recognize operation is already running for this participant")]
    AlreadyRecognizing,
}

/// DTMF state for one participant.
#[derive(Debug, Default)]
pub struct DtmfListener {
    detector: ToneDetector,
    /// Continuous recognition is on, with this operation context.
    continuous: Option<Option<String>>,
    sequence: u64,
    recognize: Option<(Recognizer, Option<String>)>,
}

impl DtmfListener {
    /// Start (or restart, with a new context) continuous recognition.
    pub fn start_continuous(&mut self, operation_context: Option<String>) {
        self.continuous = Some(operation_context);
    }

    /// Stop continuous recognition; the context it ran with, if it ran.
    pub fn stop_continuous(&mut self) -> Option<Option<String>> {
        self.continuous.take()
    }

    /// Start a `recognize` at `now` (its initial silence timeout counts from here).
    pub fn recognize(
        &mut self,
        options: RecognizeOptions,
        operation_context: Option<String>,
        now: Instant,
    ) -> Result<(), ListenerError> {
        if self.recognize.is_some() {
            return Err(ListenerError::AlreadyRecognizing);
        }
        self.recognize = Some((Recognizer::new(options, now), operation_context));
        Ok(())
    }

    /// Whether a `recognize` runs.
    pub fn recognizing(&self) -> bool {
        self.recognize.is_some()
    }

    /// Cancel a `recognize`; its context, if one ran.
    pub fn cancel_recognize(&mut self) -> Option<Option<String>> {
        self.recognize.take().map(|(_, c)| c)
    }

    /// Whether nothing listens any more (the leg may unsubscribe).
    pub fn idle(&self) -> bool {
        self.continuous.is_none() && self.recognize.is_none()
    }

    /// A telephone-event packet of the participant (RTP timestamp and payload) at `now`.
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8], now: Instant) -> Vec<DtmfEvent> {
        self.on_packet_heard(rtp_timestamp, payload, now).1
    }

    /// [`on_packet`](Self::on_packet), also saying which tone the packet started (heard even
    /// when nothing recognizes: a tone during a recognize's prompt may interrupt it).
    pub fn on_packet_heard(
        &mut self,
        rtp_timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> (Option<Tone>, Vec<DtmfEvent>) {
        let mut events = self.poll(now);
        let Some(tone) = self.detector.on_packet(rtp_timestamp, payload, now) else { return (None, events) };
        if let Some(context) = &self.continuous {
            self.sequence += 1;
            events.push(DtmfEvent::ToneReceived {
                tone,
                sequence_id: self.sequence,
                operation_context: context.clone(),
            });
        }
        if let Some((recognizer, _)) = self.recognize.as_mut()
            && let Some(outcome) = recognizer.on_tone(tone, now)
        {
            events.extend(self.finish(outcome));
        }
        (Some(tone), events)
    }

    /// Start a `recognize` with a tone already heard (one that interrupted its prompt).
    pub fn recognize_from(
        &mut self,
        options: RecognizeOptions,
        operation_context: Option<String>,
        first: Tone,
        now: Instant,
    ) -> Result<Vec<DtmfEvent>, ListenerError> {
        self.recognize(options, operation_context, now)?;
        match self.recognize.as_mut().and_then(|(r, _)| r.on_tone(first, now)) {
            Some(outcome) => Ok(self.finish(outcome)),
            None => Ok(Vec::new()),
        }
    }

    /// Timeouts due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<DtmfEvent> {
        self.detector.poll(now);
        match self.recognize.as_mut().and_then(|(r, _)| r.poll(now)) {
            Some(outcome) => self.finish(outcome),
            None => Vec::new(),
        }
    }

    /// When [`poll`](Self::poll) is next due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.recognize.as_ref().and_then(|(r, _)| r.next_deadline())
    }

    fn finish(&mut self, outcome: RecognizeOutcome) -> Vec<DtmfEvent> {
        let operation_context = self.recognize.take().and_then(|(_, c)| c);
        vec![DtmfEvent::Recognized { outcome, operation_context }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call_automation::audio::dtmf::{CompletedReason, tone_packets};
    use crate::rtp::RtpHeader;
    use std::time::Duration;

    /// Feed the packets of `tones` (starting at `t0`) to the listener; the events in order.
    fn feed(l: &mut DtmfListener, tones: &[Tone], t0: Instant) -> Vec<DtmfEvent> {
        let mut events = Vec::new();
        for (offset, packet) in tone_packets(tones, 1, 101, 0, 0, 48_000) {
            let h = RtpHeader::parse(&packet).expect("rtp");
            events.extend(l.on_packet(h.timestamp, &packet[h.payload.clone()], t0 + offset));
        }
        events
    }

    #[test]
    fn continuous_recognition_numbers_each_tone_once() {
        let mut l = DtmfListener::default();
        l.start_continuous(Some("c".into()));
        let events = feed(&mut l, &[Tone::One, Tone::One, Tone::Pound], Instant::now());
        let got: Vec<(Tone, u64)> = events
            .iter()
            .map(|e| match e {
                DtmfEvent::ToneReceived { tone, sequence_id, .. } => (*tone, *sequence_id),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [(Tone::One, 1), (Tone::One, 2), (Tone::Pound, 3)]);
        assert_eq!(l.stop_continuous(), Some(Some("c".into())));
        assert!(l.idle());
        assert!(feed(&mut l, &[Tone::Two], Instant::now()).is_empty(), "nothing after stop");
    }

    #[test]
    fn recognize_completes_on_a_stop_tone_and_fails_on_silence() {
        let t0 = Instant::now();
        let mut l = DtmfListener::default();
        let options = RecognizeOptions { max_tones: 5, stop_tones: vec![Tone::Pound], ..Default::default() };
        l.recognize(options.clone(), Some("r".into()), t0).expect("starts");
        assert_eq!(l.recognize(options.clone(), None, t0), Err(ListenerError::AlreadyRecognizing));
        let events = feed(&mut l, &[Tone::Four, Tone::Two, Tone::Pound, Tone::Nine], t0);
        assert_eq!(
            events,
            [DtmfEvent::Recognized {
                outcome: RecognizeOutcome::Completed {
                    tones: vec![Tone::Four, Tone::Two, Tone::Pound],
                    reason: CompletedReason::StopTone
                },
                operation_context: Some("r".into()),
            }]
        );
        assert!(l.idle());
        l.recognize(options, None, t0).expect("again");
        let deadline = l.next_deadline().expect("initial silence timeout");
        assert!(l.poll(deadline - Duration::from_millis(1)).is_empty());
        assert!(matches!(
            l.poll(deadline).as_slice(),
            [DtmfEvent::Recognized { outcome: RecognizeOutcome::Failed { .. }, .. }]
        ));
    }
}
