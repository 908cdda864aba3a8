//! `load` end to end: files written here, loaded, and every packet decoded with an independent
//! Opus decoder (`rusty-opus`, not the encoder's own crate) to compare what a listener would hear
//! with what the file holds.

use super::resample::goertzel;
use super::wav::tests::write_wav;
use super::*;

const SR: u32 = 48_000;

/// Decode every packet of a prompt (each must be exactly 20 ms) to 48 kHz mono.
fn decode(prompt: &Prompt) -> Vec<f32> {
    let mut decoder = rusty_opus::OpusDecoder::new(48_000, 1).expect("48 kHz mono decoder");
    let mut out = Vec::new();
    let mut buf = [0.0f32; FRAME_SAMPLES];
    for (i, p) in prompt.packets.iter().enumerate() {
        let n =
            decoder.decode(p, FRAME_SAMPLES, &mut buf).unwrap_or_else(|e| panic!("packet {i} does not decode: {e:?}"));
        assert_eq!(n, FRAME_SAMPLES, "packet {i} is not 20 ms");
        out.extend_from_slice(&buf);
    }
    out
}

fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// The test signal, as segments of (seconds, frequency, amplitude): tone, silence, softer tone.
const SEGMENTS: [(f64, f64, f64); 3] = [(0.5, 440.0, 0.5), (0.5, 0.0, 0.0), (0.3, 440.0, 0.2)];

fn signal(rate: u32) -> Vec<f32> {
    let mut out = Vec::new();
    for (secs, freq, amp) in SEGMENTS {
        let n = (secs * f64::from(rate)) as usize;
        let phase0 = out.len();
        out.extend((0..n).map(|i| {
            let t = (phase0 + i) as f64 / f64::from(rate);
            (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as f32
        }));
    }
    out
}

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter().map(|v| (v * 32_767.0).round() as i16).collect()
}

/// RMS per 100 ms window of `decoded` (shifted by the codec delay) against `original` (48 kHz).
fn assert_energy_matches(original: &[f32], decoded: &[f32], what: &str) {
    const DELAY: usize = 312; // encoder lookahead at 48 kHz
    const WINDOW: usize = 4_800;
    let decoded = &decoded[DELAY.min(decoded.len())..];
    assert!(decoded.len() >= original.len(), "{what}: decoded audio is shorter than the file");
    for (w, orig) in original.chunks(WINDOW).enumerate() {
        let dec = &decoded[w * WINDOW..w * WINDOW + orig.len()];
        let (o, d) = (rms(orig), rms(dec));
        if o == 0.0 {
            assert!(d < 0.002, "{what}: window {w} should be silent, has RMS {d}");
        } else {
            assert!((d - o).abs() <= 0.12 * o + 0.003, "{what}: window {w} RMS {d} vs file {o}");
        }
    }
    // Whatever follows the file (padding to whole frames) is silent.
    assert!(rms(&decoded[original.len()..]) < 0.002, "{what}: tail not silent");
    // The pitch survived (an RMS match alone would not catch a wrong sample rate).
    let tone = &decoded[2_400..21_600];
    let at_440 = goertzel(tone, SR, 440.0);
    assert!((at_440 - 0.0625).abs() < 0.01, "{what}: 440 Hz power {at_440}");
    for f in [220.0, 880.0, 1_320.0, 2_640.0] {
        assert!(goertzel(tone, SR, f) < at_440 / 1_000.0, "{what}: energy at {f} Hz");
    }
}

#[test]
fn wav_at_every_rate_mono_and_stereo_decodes_to_the_same_audio() {
    let reference = signal(SR);
    for rate in [8_000u32, 16_000, 48_000] {
        for channels in [1u16, 2] {
            let what = format!("{rate} Hz, {channels} channel(s)");
            let mono = signal(rate);
            let samples: Vec<i16> = if channels == 1 {
                to_i16(&mono)
            } else {
                // Both channels carry the signal with opposite small offsets: the mix is the signal.
                to_i16(&mono).into_iter().flat_map(|s| [s.saturating_add(300), s.saturating_sub(300)]).collect()
            };
            let prompt = load(&write_wav(rate, channels, &samples)).unwrap_or_else(|e| panic!("{what}: {e}"));
            // 1.3 s plus the encoder lookahead, rounded up to 20 ms frames.
            let frames = (reference.len() + 312).div_ceil(FRAME_SAMPLES);
            assert_eq!(prompt.packets.len(), frames, "{what}");
            assert_eq!(prompt.duration(), FRAME * frames as u32);
            assert!(
                prompt.duration() >= Duration::from_millis(1_300) && prompt.duration() <= Duration::from_millis(1_327)
            );
            assert_energy_matches(&reference, &decode(&prompt), &what);
        }
    }
}

#[test]
fn silence_stays_silent() {
    let prompt = load(&write_wav(16_000, 1, &[0; 16_000])).expect("a silent WAV is a prompt");
    assert_eq!(prompt.duration(), Duration::from_millis(1_020));
    assert!(decode(&prompt).iter().all(|s| s.abs() < 1e-3));
}

// --- Ogg Opus -------------------------------------------------------------------------------

/// Ogg CRC-32 (polynomial 0x04c11db7, no reflection, zero init) — written here independently of
/// the demuxer under test.
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

/// A minimal Ogg writer: each element of `pages` becomes one page holding those packets.
fn ogg_pages(pages: &[(Vec<Vec<u8>>, i64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, (packets, granule)) in pages.iter().enumerate() {
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for p in packets {
            let mut left = p.len();
            while left >= 255 {
                lacing.push(255u8);
                left -= 255;
            }
            lacing.push(left as u8);
            body.extend_from_slice(p);
        }
        let flags = if seq == 0 {
            0x02
        } else if seq == pages.len() - 1 {
            0x04
        } else {
            0
        };
        let start = out.len();
        out.extend_from_slice(b"OggS");
        out.extend_from_slice(&[0, flags]);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&0x5eed_u32.to_le_bytes());
        out.extend_from_slice(&(seq as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]); // CRC, filled below
        out.push(lacing.len() as u8);
        out.extend_from_slice(&lacing);
        out.extend_from_slice(&body);
        let crc = ogg_crc(&out[start..]);
        out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

fn opus_head(channels: u8, family: u8, gain_q8: i16) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.extend_from_slice(&[1, channels]);
    h.extend_from_slice(&312u16.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&gain_q8.to_le_bytes());
    h.push(family);
    if family != 0 {
        h.extend_from_slice(&[channels, 0]);
        h.extend((0..channels).collect::<Vec<u8>>());
    }
    h
}

fn opus_tags() -> Vec<u8> {
    let mut t = b"OpusTags".to_vec();
    t.extend_from_slice(&4u32.to_le_bytes());
    t.extend_from_slice(b"test");
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

/// Encode `pcm` (48 kHz, interleaved) with `frame` samples per packet, followed by the encoder's
/// lookahead of silence so the end of the audio leaves the encoder (as `opusenc` does).
fn encode_packets(pcm: &[f32], channels: usize, frame: usize) -> Vec<Vec<u8>> {
    let mut enc = opus_pure::OpusEncoder::new(48_000, channels, opus_pure::Application::Audio).expect("encoder");
    let mut out = vec![0u8; opus_pure::MAX_PACKET_BYTES];
    let mut pcm = pcm.to_vec();
    pcm.resize(pcm.len() + enc.lookahead() * channels, 0.0);
    pcm.chunks(frame * channels)
        .map(|block| {
            let mut block = block.to_vec();
            block.resize(frame * channels, 0.0);
            let n = enc.encode(&block, frame, &mut out).expect("encodes");
            out[..n].to_vec()
        })
        .collect()
}

/// An Ogg Opus file of `packets`, several packets per page; the last page's granule says where
/// the audio ends (RFC 7845 §4.4), `audio` samples after the pre-skip.
fn ogg_opus(channels: u8, family: u8, gain_q8: i16, packets: &[Vec<u8>], frame: usize, audio: usize) -> Vec<u8> {
    let mut pages = vec![(vec![opus_head(channels, family, gain_q8)], 0), (vec![opus_tags()], 0)];
    let mut granule = 312i64;
    for chunk in packets.chunks(7) {
        granule += (chunk.len() * frame) as i64;
        pages.push((chunk.to_vec(), granule));
    }
    if let Some(last) = pages.last_mut() {
        last.1 = last.1.min(312 + audio as i64);
    }
    ogg_pages(&pages)
}

#[test]
fn ogg_opus_with_20ms_frames_gives_the_same_packets_back() {
    for channels in [1u8, 2] {
        let mono = signal(SR);
        let pcm: Vec<f32> = mono.iter().flat_map(|&s| vec![s; usize::from(channels)]).collect();
        let packets = encode_packets(&pcm, usize::from(channels), FRAME_SAMPLES);
        let prompt = load(&ogg_opus(channels, 0, 0, &packets, FRAME_SAMPLES, mono.len())).expect("valid Ogg Opus");
        let got: Vec<Vec<u8>> = prompt.packets.iter().map(|p| p.to_vec()).collect();
        assert_eq!(got, packets, "{channels} channel(s): packets reused as they are");
    }
}

#[test]
fn ogg_opus_with_other_frame_sizes_or_gain_is_re_encoded() {
    let reference = signal(SR);
    // 10 ms frames: decoded and re-encoded as 20 ms frames.
    let packets = encode_packets(&reference, 1, 480);
    let prompt = load(&ogg_opus(1, 0, 0, &packets, 480, reference.len())).expect("10 ms frames are re-encoded");
    assert_eq!(prompt.packets.len(), (reference.len() + 312).div_ceil(FRAME_SAMPLES));
    // The pre-skip was trimmed, so the audio lines up with the file again after re-encoding.
    assert_energy_matches(&reference, &decode(&prompt), "Ogg 10 ms");
    // 20 ms frames but a header gain of −6.02 dB: re-encoded at half the amplitude.
    let packets = encode_packets(&reference, 1, FRAME_SAMPLES);
    let prompt = load(&ogg_opus(1, 0, -1541, &packets, FRAME_SAMPLES, reference.len())).expect("gain is applied");
    let decoded = decode(&prompt);
    let loud = rms(&decoded[2_400 + 312..21_600 + 312]);
    assert!((loud - 0.5 / 2f32.sqrt() / 2.0).abs() < 0.02, "gain applied: RMS {loud}");
}

#[test]
fn bad_ogg_files_are_clear_errors() {
    let audio = signal(SR);
    let packets = encode_packets(&audio, 1, FRAME_SAMPLES);
    let good = ogg_opus(1, 0, 0, &packets, FRAME_SAMPLES, audio.len());
    assert!(load(&good).is_ok());
    // Truncated in the middle of a page.
    let cut = load(&good[..good.len() / 2]);
    assert!(matches!(cut, Err(AudioError::Truncated | AudioError::BadOgg(_))), "{cut:?}");
    // A corrupted byte fails the page CRC.
    let mut corrupt = good.clone();
    let last = corrupt.len() - 5;
    corrupt[last] ^= 0x55;
    assert!(matches!(load(&corrupt), Err(AudioError::BadOgg(_))), "{:?}", load(&corrupt));
    // Headers only.
    let empty = ogg_pages(&[(vec![opus_head(1, 0, 0)], 0), (vec![opus_tags()], 0)]);
    assert_eq!(load(&empty), Err(AudioError::Empty));
    // Surround (mapping family 1, 6 channels).
    let surround = ogg_opus(6, 1, 0, &packets, FRAME_SAMPLES, audio.len());
    assert!(matches!(load(&surround), Err(AudioError::UnsupportedOgg(why)) if why.contains("6 channels")));
    // Not Opus in an Ogg page.
    let vorbis = ogg_pages(&[(vec![b"\x01vorbis and more bytes".to_vec()], 0)]);
    assert!(matches!(load(&vorbis), Err(AudioError::BadOgg(_))));
    // A packet that is not Opus: code 3 (several frames) with a frame count of 0.
    let bad_packet = ogg_opus(1, 0, 0, &[vec![0xff, 0x00]], FRAME_SAMPLES, 960);
    assert!(matches!(load(&bad_packet), Err(AudioError::BadOgg(_))), "{:?}", load(&bad_packet));
}

#[test]
fn unknown_empty_and_too_long_files_are_refused() {
    assert_eq!(load(b""), Err(AudioError::UnknownFormat));
    assert_eq!(load(b"ID3\x03 an mp3"), Err(AudioError::UnknownFormat));
    assert_eq!(load(&write_wav(8_000, 1, &[])), Err(AudioError::Empty));
    let too_long = vec![0i16; 8_000 * (MAX_PROMPT.as_secs() as usize + 1)];
    assert_eq!(load(&write_wav(8_000, 1, &too_long)), Err(AudioError::TooLong));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn load_never_panics(prefix in 0usize..3, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let mut input = [&b""[..], b"OggS", b"RIFF\x00\x00\x00\x00WAVE"][prefix].to_vec();
        input.extend_from_slice(&bytes);
        let _ = load(&input);
    }

    #[test]
    fn load_never_panics_on_damaged_ogg(at in 0usize..2_000, value in proptest::num::u8::ANY, cut in 0usize..2_000) {
        let packets = encode_packets(&[0.1; 4_800], 1, FRAME_SAMPLES);
        let mut file = ogg_opus(1, 0, 0, &packets, FRAME_SAMPLES, 4_800);
        let at = at % file.len();
        file[at] = value;
        file.truncate(file.len() - cut % file.len());
        let _ = load(&file);
    }

    #[test]
    fn load_never_panics_on_damaged_opus_in_valid_pages(
        damage in proptest::collection::vec((0usize..8, 0usize..200, proptest::num::u8::ANY), 1..6),
    ) {
        // The pages (and their CRCs) are valid; the header and packets inside are not.
        let mut packets = encode_packets(&[0.1; 4_800], 1, FRAME_SAMPLES);
        let mut head = opus_head(1, 0, 0);
        let count = packets.len();
        for (which, at, value) in damage {
            let target = if which == 0 { &mut head } else { &mut packets[which % count] };
            let at = at % target.len();
            target[at] = value;
        }
        let mut pages = vec![(vec![head], 0), (vec![opus_tags()], 0)];
        pages.push((packets, 5_112));
        let _ = load(&ogg_pages(&pages));
    }
}
