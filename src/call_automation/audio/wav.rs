//! WAV (RIFF) parsing: finds the `fmt ` and `data` chunks and returns 16-bit PCM samples mixed
//! down to mono. Only what a prompt needs: linear PCM, 16 bits, one or two channels. Pure
//! parsing over a byte slice; every malformed file is an [`AudioError`], never a panic.

use super::AudioError;

/// `WAVE_FORMAT_PCM`.
const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_EXTENSIBLE`: the real format is the first two bytes of the sub-format GUID.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Sample rates accepted (all resample to 48 kHz by an integer ratio of small terms).
pub const SUPPORTED_RATES: [u32; 6] = [8_000, 16_000, 24_000, 32_000, 44_100, 48_000];

/// Mono PCM read from a WAV file.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub sample_rate: u32,
    /// Samples in `[-1, 1)`, stereo averaged to mono.
    pub samples: Vec<f32>,
}

/// The `fmt ` chunk fields that matter.
#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// True when `bytes` starts like a WAV file.
pub fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// Parse a WAV file to mono samples at its own rate.
pub fn parse(bytes: &[u8]) -> Result<Pcm, AudioError> {
    if !is_wav(bytes) {
        return Err(AudioError::UnknownFormat);
    }
    let mut format = None;
    let mut data = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4).ok_or(AudioError::Truncated)? as usize;
        let body_start = at + 8;
        let body_end = body_start.checked_add(size).ok_or(AudioError::Truncated)?;
        let Some(body) = bytes.get(body_start..body_end) else {
            return Err(AudioError::Truncated);
        };
        match id {
            b"fmt " => format = Some(parse_format(body)?),
            b"data" => {
                data = Some(body);
                break; // Nothing after the samples matters.
            }
            _ => {} // LIST, fact, cue, …: skipped.
        }
        // Chunks are padded to an even length.
        at = body_end + (size & 1);
    }
    let format = format.ok_or(AudioError::BadWav("no fmt chunk"))?;
    let data = data.ok_or(AudioError::BadWav("no data chunk"))?;
    if format.tag != FORMAT_PCM {
        return Err(AudioError::UnsupportedWav(format!(
            "format tag {:#06x} (only linear PCM is supported)",
            format.tag
        )));
    }
    if format.bits != 16 {
        return Err(AudioError::UnsupportedWav(format!("{}-bit samples (only 16-bit is supported)", format.bits)));
    }
    if format.channels == 0 || format.channels > 2 {
        return Err(AudioError::UnsupportedWav(format!("{} channels (only mono or stereo)", format.channels)));
    }
    if !SUPPORTED_RATES.contains(&format.sample_rate) {
        return Err(AudioError::UnsupportedWav(format!(
            "sample rate {} Hz (supported: 8, 16, 24, 32, 44.1 and 48 kHz)",
            format.sample_rate
        )));
    }
    let channels = usize::from(format.channels);
    if usize::from(format.block_align) != 2 * channels {
        return Err(AudioError::BadWav("block align does not match 16-bit samples"));
    }
    // A trailing partial frame (a writer that stopped mid-sample) is ignored.
    let samples = data
        .chunks_exact(2 * channels)
        .map(|frame| {
            let sum: i32 = frame.chunks_exact(2).map(|s| i32::from(i16::from_le_bytes([s[0], s[1]]))).sum();
            sum as f32 / (32_768.0 * channels as f32)
        })
        .collect();
    Ok(Pcm { sample_rate: format.sample_rate, samples })
}

fn parse_format(body: &[u8]) -> Result<Format, AudioError> {
    const SHORT: AudioError = AudioError::BadWav("fmt chunk too short");
    let mut tag = u16_at(body, 0).ok_or(SHORT)?;
    let channels = u16_at(body, 2).ok_or(SHORT)?;
    let sample_rate = u32_at(body, 4).ok_or(SHORT)?;
    let block_align = u16_at(body, 12).ok_or(SHORT)?;
    let bits = u16_at(body, 14).ok_or(SHORT)?;
    if tag == FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID, whose first two bytes
        // are the format tag.
        tag = u16_at(body, 24).ok_or(AudioError::BadWav("extensible fmt chunk too short"))?;
    }
    Ok(Format { tag, channels, sample_rate, block_align, bits })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A canonical 44-byte-header WAV of 16-bit PCM (interleaved samples).
    pub(crate) fn write_wav(sample_rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        write_wav_with(
            sample_rate,
            channels,
            16,
            FORMAT_PCM,
            &samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<_>>(),
        )
    }

    pub(crate) fn write_wav_with(sample_rate: u32, channels: u16, bits: u16, tag: u16, data: &[u8]) -> Vec<u8> {
        let block_align = channels * bits / 8;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&sample_rate.to_le_bytes());
        out.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
        out.extend_from_slice(&block_align.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_mono_and_averages_stereo() {
        let mono = parse(&write_wav(8_000, 1, &[0, 16_384, -32_768])).expect("valid mono WAV");
        assert_eq!(mono.sample_rate, 8_000);
        assert_eq!(mono.samples, vec![0.0, 0.5, -1.0]);
        // Left and right differ: the mix is their mean.
        let stereo = parse(&write_wav(48_000, 2, &[16_384, 0, -16_384, -16_384])).expect("valid stereo WAV");
        assert_eq!(stereo.sample_rate, 48_000);
        assert_eq!(stereo.samples, vec![0.25, -0.5]);
    }

    #[test]
    fn skips_unknown_chunks_with_odd_padding() {
        let plain = write_wav(16_000, 1, &[1, 2, 3]);
        // Insert a 3-byte LIST chunk (padded to 4) before `fmt `.
        let mut with_list = plain[..12].to_vec();
        with_list.extend_from_slice(b"LIST");
        with_list.extend_from_slice(&3u32.to_le_bytes());
        with_list.extend_from_slice(&[9, 9, 9, 0]);
        with_list.extend_from_slice(&plain[12..]);
        assert_eq!(parse(&with_list).expect("valid"), parse(&plain).expect("valid"));
    }

    #[test]
    fn accepts_extensible_pcm() {
        let mut wav = write_wav(16_000, 1, &[100, -100]);
        // Rewrite the fmt chunk as WAVE_FORMAT_EXTENSIBLE (40 bytes) with the PCM sub-format.
        let data = wav.split_off(36);
        wav.truncate(12);
        wav.extend_from_slice(b"fmt ");
        wav.extend_from_slice(&40u32.to_le_bytes());
        wav.extend_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&16_000u32.to_le_bytes());
        wav.extend_from_slice(&32_000u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        wav.extend_from_slice(&16u16.to_le_bytes()); // valid bits
        wav.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        wav.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        wav.extend_from_slice(&data);
        let pcm = parse(&wav).expect("extensible PCM is PCM");
        assert_eq!(pcm.samples.len(), 2);
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let good = write_wav(16_000, 1, &[1; 100]);
        // Truncated in the data chunk.
        assert_eq!(parse(&good[..good.len() - 10]), Err(AudioError::Truncated));
        // Truncated in the header.
        assert!(matches!(parse(&good[..20]), Err(AudioError::Truncated | AudioError::BadWav(_))));
        assert_eq!(parse(&good[..12]), Err(AudioError::BadWav("no fmt chunk")));
        // Not a WAV.
        assert_eq!(parse(b"OggS not really"), Err(AudioError::UnknownFormat));
        assert_eq!(parse(&[]), Err(AudioError::UnknownFormat));
        // 0 channels, 3 channels, 24-bit, 8-bit, float, 22.05 kHz.
        let reason = |r: Result<Pcm, AudioError>| match r {
            Err(AudioError::UnsupportedWav(why)) => why,
            other => panic!("expected UnsupportedWav, got {other:?}"),
        };
        assert!(reason(parse(&write_wav_with(16_000, 0, 16, FORMAT_PCM, &[0; 4]))).contains("0 channels"));
        assert!(reason(parse(&write_wav_with(16_000, 3, 16, FORMAT_PCM, &[0; 6]))).contains("3 channels"));
        assert!(reason(parse(&write_wav_with(16_000, 1, 24, FORMAT_PCM, &[0; 6]))).contains("24-bit"));
        assert!(reason(parse(&write_wav_with(16_000, 1, 8, FORMAT_PCM, &[0; 6]))).contains("8-bit"));
        assert!(reason(parse(&write_wav_with(16_000, 1, 32, 3, &[0; 8]))).contains("format tag 0x0003"));
        assert!(reason(parse(&write_wav(22_050, 1, &[0; 8]))).contains("22050"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), keep in 0usize..60) {
            let _ = parse(&bytes);
            // Valid headers followed by junk, and valid files cut anywhere.
            let mut wav = write_wav(8_000, 2, &[7; 8]);
            wav.truncate(keep.min(wav.len()));
            wav.extend_from_slice(&bytes);
            let _ = parse(&wav);
        }
    }
}
