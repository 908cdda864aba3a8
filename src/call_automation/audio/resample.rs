//! Resampling to 48 kHz by a polyphase windowed-sinc interpolator.
//!
//! The rates a prompt may have (8 to 48 kHz) all reach 48 kHz by a ratio `L/M` of small integers,
//! so output sample `n` lies at input position `n·M/L`: an integer part and one of `L` phases.
//! Each phase has its own precomputed filter (a Blackman-windowed sinc cut off a little below the
//! input's Nyquist frequency), which both interpolates and removes the spectral images that
//! upsampling creates (a 1 kHz tone at 8 kHz would otherwise also sound at 7, 9, 15, 17 kHz…).

/// Output rate.
pub const OUTPUT_RATE: u32 = 48_000;
/// Half the filter length, in input samples (zero crossings on each side).
const HALF_TAPS: usize = 16;
/// Cutoff as a fraction of the input's Nyquist frequency: leaves a transition band below it.
const CUTOFF: f64 = 0.9;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resample mono `input` at `rate` Hz to 48 kHz. `rate` must be in `1..=48_000` (callers pass
/// only the rates the WAV parser accepts); the output has `ceil(len · 48000 / rate)` samples.
pub fn to_48k(input: &[f32], rate: u32) -> Vec<f32> {
    if rate == OUTPUT_RATE || rate == 0 || input.is_empty() {
        return input.to_vec();
    }
    let g = gcd(OUTPUT_RATE, rate);
    let up = (OUTPUT_RATE / g) as usize; // L: phases
    let down = (rate / g) as usize; // M: input step per output sample, in 1/L units
    // Upsampling only (every accepted rate is ≤ 48 kHz), so the cutoff is relative to the input.
    let cutoff = CUTOFF * (f64::from(OUTPUT_RATE) / f64::from(rate)).min(1.0);
    let taps = 2 * HALF_TAPS;
    // filters[phase][j] weighs input sample (i - HALF_TAPS + 1 + j) for an output at i + phase/L.
    let filters: Vec<Vec<f32>> = (0..up)
        .map(|phase| {
            let frac = phase as f64 / up as f64;
            let mut h: Vec<f64> = (0..taps)
                .map(|j| {
                    let d = frac + (HALF_TAPS - 1) as f64 - j as f64; // distance in input samples
                    cutoff * sinc(cutoff * d) * blackman(d / HALF_TAPS as f64)
                })
                .collect();
            // Unit gain at DC for every phase, so silence stays silent and no phase ripples.
            let sum: f64 = h.iter().sum();
            if sum.abs() > f64::EPSILON {
                h.iter_mut().for_each(|v| *v /= sum);
            }
            h.into_iter().map(|v| v as f32).collect()
        })
        .collect();

    let out_len = (input.len() * up).div_ceil(down);
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let pos = n * down;
        let (i, phase) = (pos / up, pos % up);
        let filter = &filters[phase];
        let first = i as isize - HALF_TAPS as isize + 1;
        let mut acc = 0.0f32;
        for (j, w) in filter.iter().enumerate() {
            let k = first + j as isize;
            if k >= 0
                && let Some(x) = input.get(k as usize)
            {
                acc += x * w;
            }
        }
        out.push(acc);
    }
    out
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Blackman window over `x ∈ [-1, 1]` (0 outside).
fn blackman(x: f64) -> f64 {
    if x.abs() >= 1.0 {
        return 0.0;
    }
    let t = std::f64::consts::PI * (x + 1.0); // 0..2π across the window
    0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos()
}

/// Power of `signal` at `freq` Hz (Goertzel), normalised so a full-scale sine gives ~0.25.
#[cfg(test)]
pub(crate) fn goertzel(signal: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in signal {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (signal.len() as f64 * signal.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, secs: f64, amp: f32) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n).map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32).collect()
    }

    fn db(ratio: f64) -> f64 {
        10.0 * ratio.log10()
    }

    #[test]
    fn a_1khz_sine_at_8khz_stays_a_1khz_sine_at_48khz() {
        let input = sine(8_000, 1_000.0, 1.0, 0.5);
        let out = to_48k(&input, 8_000);
        assert_eq!(out.len(), 48_000);
        // Skip the filter's edges.
        let body = &out[1_000..47_000];
        let tone = goertzel(body, 48_000, 1_000.0);
        assert!((tone - 0.0625).abs() < 0.005, "1 kHz power {tone} (expected 0.5²/4)");
        // Upsampling images (k·8 kHz ± 1 kHz) and other bins are far below the tone.
        for f in [3_000.0, 5_000.0, 7_000.0, 9_000.0, 15_000.0, 17_000.0, 23_000.0] {
            let p = goertzel(body, 48_000, f);
            assert!(db(p / tone) < -50.0, "{f} Hz is only {:.1} dB below the tone", db(p / tone));
        }
    }

    #[test]
    fn every_supported_rate_keeps_the_tone_and_the_length() {
        for rate in [8_000u32, 16_000, 24_000, 32_000, 44_100] {
            let input = sine(rate, 440.0, 0.5, 0.5);
            let out = to_48k(&input, rate);
            assert_eq!(out.len(), 24_000, "{rate} Hz");
            let body = &out[1_000..23_000];
            let tone = goertzel(body, 48_000, 440.0);
            assert!((tone - 0.0625).abs() < 0.005, "{rate} Hz: 440 Hz power {tone}");
            let image = goertzel(body, 48_000, f64::from(rate) - 440.0);
            assert!(db(image / tone) < -50.0, "{rate} Hz: image at {} Hz", f64::from(rate) - 440.0);
        }
    }

    #[test]
    fn silence_stays_silent_and_48k_is_untouched() {
        assert!(to_48k(&[0.0; 800], 16_000).iter().all(|&s| s == 0.0));
        let x = sine(48_000, 1_000.0, 0.01, 0.3);
        assert_eq!(to_48k(&x, 48_000), x);
        assert!(to_48k(&[], 8_000).is_empty());
    }
}
