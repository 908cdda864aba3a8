//! ACS `recognize` with DTMF options, as a state machine over explicit time: collect tones until
//! `maxTonesToCollect` or a stop tone, or until the inter-tone timeout after the last tone; fail
//! when no tone comes within the initial silence timeout. The outcomes carry the ACS
//! `resultInformation` codes (from the ACS "Gather user input" event-code table).

use super::Tone;
use std::time::{Duration, Instant};

/// The DTMF options of an ACS `recognize` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognizeOptions {
    /// `maxTonesToCollect` (ACS requires ≥ 1; 0 is treated as 1).
    pub max_tones: usize,
    /// `stopTones`: any of these ends the recognition (and is included in the tones).
    pub stop_tones: Vec<Tone>,
    /// `interToneTimeoutInSeconds` (ACS default 2 s, 1–60 s).
    pub inter_tone_timeout: Duration,
    /// `initialSilenceTimeoutInSeconds` (ACS default 5 s, 0–300 s); `None` waits for ever.
    pub initial_silence_timeout: Option<Duration>,
}

impl Default for RecognizeOptions {
    /// ACS defaults, collecting one tone.
    fn default() -> Self {
        Self {
            max_tones: 1,
            stop_tones: Vec::new(),
            inter_tone_timeout: Duration::from_secs(2),
            initial_silence_timeout: Some(Duration::from_secs(5)),
        }
    }
}

/// Why a recognition completed with tones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletedReason {
    MaxTones,
    StopTone,
    InterToneTimeout,
}

/// Why a recognition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailedReason {
    InitialSilenceTimeout,
}

/// How a recognition ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecognizeOutcome {
    /// `RecognizeCompleted` with `collectTonesResult.tones`.
    Completed { tones: Vec<Tone>, reason: CompletedReason },
    /// `RecognizeFailed`.
    Failed { reason: FailedReason },
}

impl RecognizeOutcome {
    /// The ACS event type (without the `Microsoft.Communication.` prefix).
    pub fn event_type(&self) -> &'static str {
        match self {
            RecognizeOutcome::Completed { .. } => "RecognizeCompleted",
            RecognizeOutcome::Failed { .. } => "RecognizeFailed",
        }
    }

    /// `resultInformation.code`.
    pub fn code(&self) -> u16 {
        match self {
            RecognizeOutcome::Completed { reason: CompletedReason::MaxTones | CompletedReason::StopTone, .. } => 200,
            // ACS reports this one as a completion with the tones, but with code 400.
            RecognizeOutcome::Completed { reason: CompletedReason::InterToneTimeout, .. } => 400,
            RecognizeOutcome::Failed { reason: FailedReason::InitialSilenceTimeout } => 400,
        }
    }

    /// `resultInformation.subCode`.
    pub fn sub_code(&self) -> u32 {
        match self {
            RecognizeOutcome::Completed { reason: CompletedReason::MaxTones, .. } => 8531,
            RecognizeOutcome::Completed { reason: CompletedReason::StopTone, .. } => 8514,
            RecognizeOutcome::Completed { reason: CompletedReason::InterToneTimeout, .. } => 8532,
            RecognizeOutcome::Failed { reason: FailedReason::InitialSilenceTimeout } => 8510,
        }
    }

    /// `resultInformation.message`.
    pub fn message(&self) -> &'static str {
        match self {
            RecognizeOutcome::Completed { reason: CompletedReason::MaxTones, .. } => {
                "Action completed, max digits received."
            }
            RecognizeOutcome::Completed { reason: CompletedReason::StopTone, .. } => {
                "Action completed as stop tone was detected."
            }
            RecognizeOutcome::Completed { reason: CompletedReason::InterToneTimeout, .. } => {
                "Action failed, inter-digit silence time out reached."
            }
            RecognizeOutcome::Failed { reason: FailedReason::InitialSilenceTimeout } => {
                "Action failed, initial silence time out reached."
            }
        }
    }
}

/// One `recognize` operation.
#[derive(Debug, Clone)]
pub struct Recognizer {
    opts: RecognizeOptions,
    started: Instant,
    tones: Vec<Tone>,
    last_tone: Option<Instant>,
    done: bool,
}

impl Recognizer {
    pub fn new(opts: RecognizeOptions, now: Instant) -> Self {
        Self { opts, started: now, tones: Vec::new(), last_tone: None, done: false }
    }

    /// A tone heard at `now`. A timeout already due at `now` wins over the tone (call `poll` at
    /// `next_deadline` to keep that window small). After an outcome, returns `None` for ever.
    pub fn on_tone(&mut self, t: Tone, now: Instant) -> Option<RecognizeOutcome> {
        if self.done {
            return None;
        }
        if let Some(timed_out) = self.poll(now) {
            return Some(timed_out);
        }
        self.tones.push(t);
        self.last_tone = Some(now);
        let reason = if self.opts.stop_tones.contains(&t) {
            CompletedReason::StopTone
        } else if self.tones.len() >= self.opts.max_tones.max(1) {
            CompletedReason::MaxTones
        } else {
            return None;
        };
        self.done = true;
        Some(RecognizeOutcome::Completed { tones: std::mem::take(&mut self.tones), reason })
    }

    /// The outcome of a timeout that is due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<RecognizeOutcome> {
        let deadline = self.next_deadline()?;
        if now < deadline {
            return None;
        }
        self.done = true;
        Some(if self.tones.is_empty() {
            RecognizeOutcome::Failed { reason: FailedReason::InitialSilenceTimeout }
        } else {
            RecognizeOutcome::Completed {
                tones: std::mem::take(&mut self.tones),
                reason: CompletedReason::InterToneTimeout,
            }
        })
    }

    /// When `poll` should next be called; `None` when finished or waiting without a timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        // A timeout too large to add to an `Instant` never expires (options come from requests).
        match self.last_tone {
            Some(at) => at.checked_add(self.opts.inter_tone_timeout),
            None => self.opts.initial_silence_timeout.and_then(|t| self.started.checked_add(t)),
        }
    }

    /// Tones collected so far (before an outcome).
    pub fn tones(&self) -> &[Tone] {
        &self.tones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn opts(max_tones: usize, stop: &[Tone]) -> RecognizeOptions {
        RecognizeOptions { max_tones, stop_tones: stop.to_vec(), ..RecognizeOptions::default() }
    }

    #[test]
    fn completes_at_max_tones() {
        let t0 = Instant::now();
        let mut r = Recognizer::new(opts(3, &[Tone::Pound]), t0);
        assert_eq!(r.on_tone(Tone::One, t0 + secs(1.0)), None);
        assert_eq!(r.poll(t0 + secs(2.9)), None, "inter-tone timeout not reached yet");
        assert_eq!(r.on_tone(Tone::Two, t0 + secs(2.9)), None);
        assert_eq!(r.tones(), [Tone::One, Tone::Two]);
        let out = r.on_tone(Tone::Three, t0 + secs(3.0)).expect("third tone completes");
        assert_eq!(
            out,
            RecognizeOutcome::Completed {
                tones: vec![Tone::One, Tone::Two, Tone::Three],
                reason: CompletedReason::MaxTones
            }
        );
        assert_eq!((out.event_type(), out.code(), out.sub_code()), ("RecognizeCompleted", 200, 8531));
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.on_tone(Tone::Four, t0 + secs(3.1)), None, "nothing after the outcome");
        assert_eq!(r.poll(t0 + secs(100.0)), None);
    }

    #[test]
    fn completes_at_a_stop_tone_which_is_included() {
        let t0 = Instant::now();
        let mut r = Recognizer::new(opts(10, &[Tone::Pound, Tone::Asterisk]), t0);
        assert_eq!(r.on_tone(Tone::Five, t0 + secs(0.5)), None);
        let out = r.on_tone(Tone::Asterisk, t0 + secs(1.0)).expect("stop tone completes");
        assert_eq!(
            out,
            RecognizeOutcome::Completed { tones: vec![Tone::Five, Tone::Asterisk], reason: CompletedReason::StopTone }
        );
        assert_eq!((out.code(), out.sub_code()), (200, 8514));
    }

    #[test]
    fn completes_with_the_tones_at_the_inter_tone_timeout() {
        let t0 = Instant::now();
        let mut r = Recognizer::new(RecognizeOptions { inter_tone_timeout: secs(3.0), ..opts(4, &[]) }, t0);
        assert_eq!(r.next_deadline(), Some(t0 + secs(5.0)), "initial silence first");
        assert_eq!(r.on_tone(Tone::Seven, t0 + secs(4.0)), None);
        assert_eq!(r.next_deadline(), Some(t0 + secs(7.0)), "then inter-tone from the last tone");
        assert_eq!(r.poll(t0 + secs(6.99)), None, "the initial silence timeout no longer applies");
        let out = r.poll(t0 + secs(7.0)).expect("inter-tone timeout");
        assert_eq!(
            out,
            RecognizeOutcome::Completed { tones: vec![Tone::Seven], reason: CompletedReason::InterToneTimeout }
        );
        assert_eq!((out.event_type(), out.code(), out.sub_code()), ("RecognizeCompleted", 400, 8532));
    }

    #[test]
    fn fails_at_the_initial_silence_timeout() {
        let t0 = Instant::now();
        let mut r = Recognizer::new(opts(1, &[]), t0);
        assert_eq!(r.poll(t0 + secs(4.999)), None);
        let out = r.poll(t0 + secs(5.0)).expect("initial silence timeout");
        assert_eq!(out, RecognizeOutcome::Failed { reason: FailedReason::InitialSilenceTimeout });
        assert_eq!((out.event_type(), out.code(), out.sub_code()), ("RecognizeFailed", 400, 8510));
        assert_eq!(r.on_tone(Tone::One, t0 + secs(5.1)), None);
    }

    #[test]
    fn a_tone_after_a_missed_deadline_loses_to_the_timeout() {
        let t0 = Instant::now();
        let mut r = Recognizer::new(opts(1, &[]), t0);
        let out = r.on_tone(Tone::One, t0 + secs(6.0)).expect("the timeout was already due");
        assert_eq!(out, RecognizeOutcome::Failed { reason: FailedReason::InitialSilenceTimeout });
    }

    #[test]
    fn absurd_timeouts_do_not_panic() {
        let t0 = Instant::now();
        let huge = Duration::from_secs(u64::MAX);
        let mut r = Recognizer::new(
            RecognizeOptions { inter_tone_timeout: huge, initial_silence_timeout: Some(huge), ..opts(2, &[]) },
            t0,
        );
        assert_eq!(r.poll(t0 + secs(1.0)), None);
        assert_eq!(r.on_tone(Tone::One, t0 + secs(1.0)), None);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn no_initial_timeout_waits_for_ever_and_zero_max_means_one() {
        let t0 = Instant::now();
        let mut r = Recognizer::new(RecognizeOptions { initial_silence_timeout: None, ..opts(0, &[]) }, t0);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.poll(t0 + secs(10_000.0)), None);
        let out = r.on_tone(Tone::D, t0 + secs(10_000.0)).expect("one tone is the maximum");
        assert_eq!(out, RecognizeOutcome::Completed { tones: vec![Tone::D], reason: CompletedReason::MaxTones });
    }
}
