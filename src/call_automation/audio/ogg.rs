//! Ogg Opus (RFC 7845) to a prompt. The container is read by `opus-pure`'s demuxer (page CRCs,
//! `OpusHead`/`OpusTags`, packets across pages); this decides whether the packets can be sent as
//! they are (every one 20 ms, mono or stereo, no header gain) or must be decoded and re-encoded.

use super::{AudioError, FRAME_SAMPLES, MAX_PROMPT, Prompt, encode};
use bytes::Bytes;
use opus_pure::{MAX_PACKET_SAMPLES, OggOpusReader, Trim};

/// True when `bytes` starts with an Ogg page.
pub fn is_ogg(bytes: &[u8]) -> bool {
    bytes.starts_with(b"OggS")
}

pub fn load(bytes: &[u8]) -> Result<Prompt, AudioError> {
    let mut reader = OggOpusReader::new(std::io::Cursor::new(bytes)).map_err(container_error)?;
    let head = reader.head().clone();
    if head.mapping_family != 0 || !(1..=2).contains(&head.channel_count) {
        return Err(AudioError::UnsupportedOgg(format!(
            "{} channels in mapping family {} (only mono or stereo)",
            head.channel_count, head.mapping_family
        )));
    }
    let max_samples = MAX_PROMPT.as_secs() * 48_000;
    let mut packets = Vec::new();
    let mut total: u64 = 0;
    let mut all_20ms = true;
    for (i, packet) in reader.packets().enumerate() {
        let packet = packet.map_err(container_error)?;
        let samples = opus_pure::packet::samples_48k(&packet.data)
            .map_err(|e| AudioError::BadOgg(format!("audio packet {i}: {e}")))?;
        all_20ms &= samples == FRAME_SAMPLES;
        total += samples as u64;
        if total > max_samples {
            return Err(AudioError::TooLong);
        }
        packets.push(packet);
    }
    if packets.is_empty() {
        return Err(AudioError::Empty);
    }
    if all_20ms && head.output_gain_q8 == 0 {
        // Sent as they are: the pre-skip (≈6.5 ms of encoder delay) and the end trim (< 20 ms)
        // play too, which no listener can tell.
        return Ok(Prompt { packets: packets.into_iter().map(|p| Bytes::from(p.data)).collect() });
    }

    // Other frame sizes (or a header gain): decode, trim as RFC 7845 says, mix to mono, re-encode.
    let channels = usize::from(head.channel_count);
    let codec = |e: opus_pure::Error| AudioError::BadOgg(e.to_string());
    let mut decoder = head.decoder(48_000).map_err(codec)?;
    let mut trim = Trim::new(&head, 48_000, channels).map_err(codec)?;
    let mut block = vec![0.0f32; MAX_PACKET_SAMPLES * channels];
    let mut mono = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for (i, packet) in packets.iter().enumerate() {
        let n = decoder
            .decode(&packet.data, MAX_PACKET_SAMPLES, &mut block)
            .map_err(|e| AudioError::BadOgg(format!("audio packet {i}: {e}")))?;
        let kept = trim.keep(packet, block.get(..n * channels).unwrap_or(&[]));
        mono.extend(kept.chunks_exact(channels).map(|f| f.iter().sum::<f32>() / channels as f32));
    }
    if mono.is_empty() {
        return Err(AudioError::Empty);
    }
    encode(&mono)
}

fn container_error(e: opus_pure::Error) -> AudioError {
    match e {
        opus_pure::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => AudioError::Truncated,
        other => AudioError::BadOgg(other.to_string()),
    }
}
