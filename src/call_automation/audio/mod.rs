//! The audio of call automation, sans-IO: prompts (`play`) and DTMF (`recognize`,
//! `sendDtmfTones`, continuous recognition).
//!
//! - [`load`] turns a media file's bytes into a [`Prompt`]: Opus packets of 20 ms at 48 kHz, ready
//!   to send. WAV (16-bit PCM) is resampled to 48 kHz mono and encoded; Ogg Opus is demuxed and its
//!   packets reused when they are already 20 ms frames, else decoded and re-encoded.
//! - [`Player`] sends a prompt as RTP, paced by the caller's clock.
//! - [`dtmf`]: RFC 4733 telephone-events, a tone detector, the `recognize` state machine and the
//!   packets of `sendDtmfTones`.
//!
//! Nothing here reads a clock or does I/O: every time-dependent call takes `now`.
//!
//! The Opus codec is `opus-pure`, a pure-Rust port of libopus: building needs only `cargo` (no
//! cmake, no system libopus), which keeps the quick start `cargo run --release`.

pub mod dtmf;
mod ogg;
mod player;
mod resample;
mod wav;

pub use player::{Player, PlayerOutput};

use bytes::Bytes;
use std::time::Duration;

/// Samples of one 20 ms frame at 48 kHz: the RTP timestamp step of a prompt packet.
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one prompt packet.
pub const FRAME: Duration = Duration::from_millis(20);
/// Longest prompt accepted (bounds the memory and CPU one load may take).
pub const MAX_PROMPT: Duration = Duration::from_secs(10 * 60);
/// Target bitrate of encoded prompts: transparent for speech and fine for music in mono.
const BITRATE_BPS: i32 = 48_000;

/// Why a media file cannot be played.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("not a WAV or Ogg Opus file")]
    UnknownFormat,
    #[error("file is truncated")]
    Truncated,
    #[error("malformed WAV file: {0}")]
    BadWav(&'static str),
    #[error("unsupported WAV file: {0}")]
    UnsupportedWav(String),
    #[error("malformed Ogg Opus file: {0}")]
    BadOgg(String),
    #[error("unsupported Ogg Opus file: {0}")]
    UnsupportedOgg(String),
    #[error("the file has no audio")]
    Empty,
    #[error("the audio is longer than {} s", MAX_PROMPT.as_secs())]
    TooLong,
    #[error("Opus encoder failed: {0}")]
    Encoder(String),
}

/// A prompt ready to send: Opus packets, each 20 ms at 48 kHz (960 samples of RTP timestamp).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    pub packets: Vec<Bytes>,
}

impl Prompt {
    /// Playing time: 20 ms per packet.
    pub fn duration(&self) -> Duration {
        FRAME * u32::try_from(self.packets.len()).unwrap_or(u32::MAX)
    }
}

/// Read a media file's bytes: WAV (RIFF, 16-bit PCM at 8, 16, 24, 32, 44.1 or 48 kHz, mono or
/// stereo) is resampled to 48 kHz mono and Opus-encoded; Ogg Opus is demuxed, its packets reused
/// as they are when every one is a 20 ms frame (and the header asks for no gain), otherwise
/// decoded and re-encoded. Bad or unsupported input is an [`AudioError`], never a panic.
///
/// **CPU-bound** (resampling and Opus encoding, all on the calling thread): a minute of 16 kHz
/// audio took 5.6 s in a debug build here, and an optimised build is many times faster. Call it
/// from `spawn_blocking`, never on a runtime thread.
pub fn load(bytes: &[u8]) -> Result<Prompt, AudioError> {
    if wav::is_wav(bytes) {
        let pcm = wav::parse(bytes)?;
        check_length(pcm.samples.len(), pcm.sample_rate)?;
        let samples = resample::to_48k(&pcm.samples, pcm.sample_rate);
        encode(&samples)
    } else if ogg::is_ogg(bytes) {
        ogg::load(bytes)
    } else {
        Err(AudioError::UnknownFormat)
    }
}

fn check_length(samples: usize, rate: u32) -> Result<(), AudioError> {
    if samples == 0 {
        return Err(AudioError::Empty);
    }
    if samples as u64 > MAX_PROMPT.as_secs() * u64::from(rate) {
        return Err(AudioError::TooLong);
    }
    Ok(())
}

/// Encode mono 48 kHz samples as 20 ms Opus packets. The input is followed by the encoder's
/// lookahead of silence, so its last samples come out of the encoder, and padded to whole frames.
fn encode(samples: &[f32]) -> Result<Prompt, AudioError> {
    use opus_pure::{Application, OpusEncoder};
    let err = |e: opus_pure::Error| AudioError::Encoder(e.to_string());
    let mut encoder = OpusEncoder::new(48_000, 1, Application::Audio).map_err(err)?;
    encoder.bitrate_bps = BITRATE_BPS;
    let total = samples.len() + encoder.lookahead();
    let frames = total.div_ceil(FRAME_SAMPLES);
    let mut packets = Vec::with_capacity(frames);
    let mut frame = [0.0f32; FRAME_SAMPLES];
    let mut out = vec![0u8; opus_pure::MAX_PACKET_BYTES];
    for i in 0..frames {
        let start = (i * FRAME_SAMPLES).min(samples.len());
        let end = (start + FRAME_SAMPLES).min(samples.len());
        frame[..end - start].copy_from_slice(&samples[start..end]);
        frame[end - start..].fill(0.0);
        let n = encoder.encode(&frame, FRAME_SAMPLES, &mut out).map_err(err)?;
        packets.push(Bytes::copy_from_slice(&out[..n]));
    }
    Ok(Prompt { packets })
}

#[cfg(test)]
mod tests;
