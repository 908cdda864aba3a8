//! Active speakers from RFC 6464 audio levels: a smoothed loudness per audio track, and a ranking
//! that only changes when someone is clearly louder (so the UI does not flicker).

use std::time::{Duration, Instant};

/// Levels (in -dBov) above this count as silence.
const SILENCE_DBOV: u8 = 70;
/// Smoothing factor per packet (audio packets come every 20 ms).
const ALPHA: f32 = 0.1;
/// A track that sent nothing for this long is silent.
const STALE_AFTER: Duration = Duration::from_millis(500);

/// Smoothed loudness of one audio track: 0 (silent) to 127 (loudest).
#[derive(Debug, Clone, Default)]
pub struct AudioLevelMeter {
    smoothed: f32,
    last: Option<Instant>,
}

impl AudioLevelMeter {
    /// Feed one packet's level (0 = loudest, 127 = silence).
    pub fn on_level(&mut self, now: Instant, dbov: u8) {
        let loudness = if dbov >= SILENCE_DBOV { 0.0 } else { f32::from(127 - dbov) };
        self.smoothed += ALPHA * (loudness - self.smoothed);
        self.last = Some(now);
    }

    /// Current loudness (0 when stale).
    pub fn loudness(&self, now: Instant) -> f32 {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < STALE_AFTER => self.smoothed,
            _ => 0.0,
        }
    }
}

/// Ranks speakers by loudness; reports a new ranking only when it changed.
#[derive(Debug, Clone)]
pub struct SpeakerRanking<K> {
    last: Vec<K>,
}

impl<K> Default for SpeakerRanking<K> {
    fn default() -> Self {
        Self { last: Vec::new() }
    }
}

/// Loudness below this is not speaking.
const SPEAKING: f32 = 20.0;

impl<K: Clone + PartialEq> SpeakerRanking<K> {
    /// Rank `levels` (key, loudness), keep at most `max` speakers, and return the new order if it
    /// differs from the last one reported.
    pub fn update(&mut self, levels: &mut [(K, f32)], max: usize) -> Option<Vec<(K, f32)>> {
        levels.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ranked: Vec<(K, f32)> =
            levels.iter().filter(|(_, l)| *l >= SPEAKING).take(max).map(|(k, l)| (k.clone(), *l)).collect();
        let keys: Vec<K> = ranked.iter().map(|(k, _)| k.clone()).collect();
        if keys == self.last {
            return None;
        }
        self.last = keys;
        Some(ranked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_tracks_rank_first_and_silence_drops_out() {
        let t0 = Instant::now();
        let (mut a, mut b) = (AudioLevelMeter::default(), AudioLevelMeter::default());
        for i in 0..50u64 {
            let now = t0 + Duration::from_millis(i * 20);
            a.on_level(now, 20); // loud
            b.on_level(now, 50); // quieter
        }
        let now = t0 + Duration::from_secs(1);
        assert!(a.loudness(now) > b.loudness(now));
        let mut ranking = SpeakerRanking::default();
        let r = ranking.update(&mut [("b", b.loudness(now)), ("a", a.loudness(now))], 3).expect("first ranking");
        assert_eq!(r.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(ranking.update(&mut [("b", b.loudness(now)), ("a", a.loudness(now))], 3), None, "unchanged");
        let later = now + Duration::from_secs(1);
        assert_eq!(a.loudness(later), 0.0, "stale");
        let r = ranking.update(&mut [("a", 0.0), ("b", 0.0)], 3).expect("changed");
        assert!(r.is_empty());
    }

    #[test]
    fn silence_level_counts_as_silent() {
        let t0 = Instant::now();
        let mut m = AudioLevelMeter::default();
        for i in 0..100u64 {
            m.on_level(t0 + Duration::from_millis(i * 20), 127);
        }
        assert_eq!(m.loudness(t0 + Duration::from_secs(2)), 0.0);
    }
}
