//! `SimulcastSelector`: which simulcast layer one subscriber should receive, and when it may
//! switch. The target is the highest layer that fits the subscriber's wish (preferred layer or
//! maximum height), its share of the available bandwidth, and the layers the publisher is sending
//! now. A switch happens only at a keyframe of the target layer; while one is wanted, a keyframe
//! is requested (at most once per layer per second).

use std::time::{Duration, Instant};

/// Most simulcast layers a track may have.
pub const MAX_LAYERS: usize = 4;
/// Minimum time between keyframe requests for the same layer.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// Headroom needed before moving up a layer on bandwidth grounds (avoids flapping).
const UPGRADE_HEADROOM: f64 = 1.15;

/// What the publisher is sending on one layer, as seen by the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerStatus {
    /// Packets arrived recently.
    pub active: bool,
    /// Measured bitrate (0 when unknown).
    pub bitrate_bps: u64,
    /// Frame height (declared or read from keyframes; 0 when unknown).
    pub height: u32,
}

/// What the subscriber asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerWish {
    /// Highest layer index wanted (`None`: the highest there is).
    pub max_layer: Option<u8>,
    /// Largest frame height wanted.
    pub max_height: Option<u32>,
}

/// What to do with a packet of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it; `switched` when it starts the newly selected layer (a new segment).
    Forward {
        switched: bool,
    },
    Drop,
}

/// Per-subscription layer selection state.
#[derive(Debug, Clone)]
pub struct SimulcastSelector {
    wish: LayerWish,
    available_bps: Option<u64>,
    current: Option<u8>,
    target: Option<u8>,
    last_request: [Option<Instant>; MAX_LAYERS],
}

impl SimulcastSelector {
    pub fn new(wish: LayerWish) -> Self {
        Self { wish, available_bps: None, current: None, target: None, last_request: [None; MAX_LAYERS] }
    }

    pub fn current(&self) -> Option<u8> {
        self.current
    }

    pub fn target(&self) -> Option<u8> {
        self.target
    }

    pub fn wish(&self) -> LayerWish {
        self.wish
    }

    pub fn set_wish(&mut self, wish: LayerWish) {
        self.wish = wish;
    }

    /// The bandwidth this subscription may use (`None`: unconstrained).
    pub fn set_available_bandwidth(&mut self, bps: Option<u64>) {
        self.available_bps = bps;
    }

    /// Recompute the target from the layers' status. Returns the new target when it changed.
    pub fn update_target(&mut self, layers: &[LayerStatus]) -> Option<u8> {
        let new = self.choose(layers);
        if new != self.target && new.is_some() {
            self.target = new;
            return new;
        }
        None
    }

    fn choose(&self, layers: &[LayerStatus]) -> Option<u8> {
        let fits_wish = |i: usize, l: &LayerStatus| {
            self.wish.max_layer.is_none_or(|m| i <= usize::from(m))
                && (l.height == 0 || self.wish.max_height.is_none_or(|h| l.height <= h))
        };
        let active: Vec<usize> = (0..layers.len().min(MAX_LAYERS)).filter(|&i| layers[i].active).collect();
        let lowest_active = *active.first()?;
        let wished: Vec<usize> = active.iter().copied().filter(|&i| fits_wish(i, &layers[i])).collect();
        let fits_bandwidth = |i: usize| match self.available_bps {
            None => true,
            Some(avail) => {
                let need = layers[i].bitrate_bps as f64;
                let headroom = if self.current.is_some_and(|c| usize::from(c) >= i) { 1.0 } else { UPGRADE_HEADROOM };
                need == 0.0 || need * headroom <= avail as f64
            }
        };
        let chosen = wished.iter().rev().copied().find(|&i| fits_bandwidth(i));
        // Nothing fits: the lowest layer the subscriber would accept, else the lowest active one.
        let chosen = chosen.or_else(|| wished.first().copied()).unwrap_or(lowest_active);
        u8::try_from(chosen).ok()
    }

    /// Decide about one packet (the hot path: a few comparisons).
    pub fn on_packet(&mut self, layer: u8, keyframe_start: bool) -> Decision {
        if Some(layer) == self.current {
            Decision::Forward { switched: false }
        } else if Some(layer) == self.target && keyframe_start {
            self.current = Some(layer);
            Decision::Forward { switched: true }
        } else {
            Decision::Drop
        }
    }

    /// The layer to request a keyframe for, if a switch is pending and the per-layer throttle
    /// allows one now.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<u8> {
        let target = self.target?;
        if self.current == Some(target) {
            return None;
        }
        let slot = self.last_request.get_mut(usize::from(target))?;
        if slot.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL) {
            return None;
        }
        *slot = Some(now);
        Some(target)
    }

    /// Forget the current layer (e.g. the subscriber reported picture loss): the next keyframe
    /// of the target restarts the stream.
    pub fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(active: [bool; 3]) -> [LayerStatus; 3] {
        let rates = [150_000, 500_000, 1_500_000];
        let heights = [180, 360, 720];
        std::array::from_fn(|i| LayerStatus { active: active[i], bitrate_bps: rates[i], height: heights[i] })
    }

    #[test]
    fn target_follows_wish_bandwidth_and_availability() {
        let mut s = SimulcastSelector::new(LayerWish::default());
        let target = |s: &mut SimulcastSelector, l: [LayerStatus; 3]| {
            s.update_target(&l);
            s.target()
        };
        assert_eq!(target(&mut s, layers([true; 3])), Some(2));
        s.set_wish(LayerWish { max_layer: Some(0), max_height: None });
        assert_eq!(target(&mut s, layers([true; 3])), Some(0));
        s.set_wish(LayerWish { max_layer: None, max_height: Some(400) });
        assert_eq!(target(&mut s, layers([true; 3])), Some(1));
        s.set_wish(LayerWish::default());
        s.set_available_bandwidth(Some(600_000));
        assert_eq!(target(&mut s, layers([true; 3])), Some(1));
        s.set_available_bandwidth(Some(100_000));
        assert_eq!(target(&mut s, layers([true; 3])), Some(0), "nothing fits: lowest");
        s.set_available_bandwidth(None);
        assert_eq!(target(&mut s, layers([true, true, false])), Some(1), "top layer stopped");
        assert_eq!(target(&mut s, layers([false, false, true])), Some(2), "only the top is left");
        assert_eq!(s.update_target(&layers([false; 3])), None, "no change when nothing is active");
        assert_eq!(s.target(), Some(2));
    }

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let mut s = SimulcastSelector::new(LayerWish { max_layer: Some(0), max_height: None });
        s.update_target(&layers([true; 3]));
        assert_eq!(s.on_packet(0, false), Decision::Drop, "no keyframe yet");
        assert_eq!(s.on_packet(0, true), Decision::Forward { switched: true });
        assert_eq!(s.on_packet(0, false), Decision::Forward { switched: false });
        assert_eq!(s.on_packet(1, true), Decision::Drop);
        s.set_wish(LayerWish::default());
        s.update_target(&layers([true; 3]));
        assert_eq!(s.on_packet(2, false), Decision::Drop, "target layer, but not a keyframe");
        assert_eq!(s.on_packet(0, false), Decision::Forward { switched: false }, "keep the current layer meanwhile");
        assert_eq!(s.on_packet(2, true), Decision::Forward { switched: true });
        assert_eq!(s.on_packet(0, true), Decision::Drop);
        assert_eq!(s.current(), Some(2));
    }

    #[test]
    fn keyframe_requests_are_throttled_per_layer() {
        let t0 = Instant::now();
        let mut s = SimulcastSelector::new(LayerWish::default());
        s.update_target(&layers([true; 3]));
        assert_eq!(s.poll_keyframe_request(t0), Some(2));
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_millis(500)), None);
        s.update_target(&layers([true, true, false]));
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_millis(600)), Some(1), "another layer is not throttled");
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_millis(1599)), None);
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_millis(1600)), Some(1));
        s.on_packet(1, true);
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_secs(5)), None, "no request once switched");
    }
}
