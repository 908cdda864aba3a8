//! `SimulcastSelector`: which simulcast layer one subscriber should receive, and when it may
//! switch. The target is the highest layer that fits the subscriber's wish (preferred layer or
//! maximum height), its share of the available bandwidth, and the layers the publisher is sending
//! now. A switch happens only at a keyframe of the target layer; while one is wanted, a keyframe
//! is requested (at most once per layer per second).
//!
//! Under congestion (the current layer no longer fits the bandwidth) the current layer stops at
//! once: pushing more of it into a full link only delays the lower layer's keyframe. A switch
//! the subscriber asked for keeps the current layer flowing until the keyframe, so the picture
//! never freezes. Upgrades that bandwidth allows must hold for `UPGRADE_HOLD` first, so a brief
//! overshoot of the estimate does not cause a switch up and straight back down.

use std::time::{Duration, Instant};

/// Most simulcast layers a track may have.
pub const MAX_LAYERS: usize = 4;
/// How long an unanswered keyframe request for a layer stands before it is sent again (it or its
/// keyframe may have been lost), and the minimum time between requests a subscriber's picture
/// loss (PLI/FIR) causes.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// The minimum time between keyframe requests for a layer whose last request was answered: a
/// subscriber that starts or switches just after a keyframe waits at most this (plus the
/// publisher's answer) for the next one, and the publisher is asked at most ten times a second.
pub const ANSWERED_REQUEST_INTERVAL: Duration = Duration::from_millis(100);
/// Headroom needed before moving up a layer on bandwidth grounds (avoids flapping).
pub const UPGRADE_HEADROOM: f64 = 1.15;
/// The current layer is kept while its rate is at most this much over the share (rates of a
/// layer swing with keyframes and content).
const KEEP_TOLERANCE: f64 = 1.1;
/// The current layer is stopped at once (congestion) when its rate is this much over the share.
const CONGESTION_FACTOR: f64 = 1.25;
/// How long the bandwidth must allow a higher layer before switching up to it.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(1);

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

/// What one subscription needs to be given to receive each layer it would accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ladder {
    /// Bandwidth needed for each acceptable layer, lowest layer first (`len` of them).
    costs: [u64; MAX_LAYERS],
    len: usize,
    /// The largest frame height among those layers: a big tile is served before thumbnails.
    pub top_height: u32,
}

impl Ladder {
    /// A ladder with these costs, lowest layer first (at most `MAX_LAYERS`).
    pub fn new(costs: &[u64], top_height: u32) -> Self {
        let mut l = Ladder { top_height, ..Ladder::default() };
        for &c in costs.iter().take(MAX_LAYERS) {
            l.costs[l.len] = c;
            l.len += 1;
        }
        l
    }

    pub fn costs(&self) -> &[u64] {
        &self.costs[..self.len]
    }
}

/// Share `budget` among one subscriber's video subscriptions. Each first gets what its lowest
/// acceptable layer needs; then, in order of priority (the largest frame it accepts first, a
/// speaker's tile before the thumbnails), each is moved up as far as what is left allows; the
/// rest is shared evenly, so nothing a thumbnail cannot use is withheld from the others. When not
/// even the lowest layers fit, the budget is shared evenly.
pub fn allocate(budget: u64, ladders: &[Ladder]) -> Vec<u64> {
    let n = ladders.len() as u64;
    if n == 0 {
        return Vec::new();
    }
    let mut given: Vec<u64> = ladders.iter().map(|l| l.costs().first().copied().unwrap_or(0)).collect();
    let floor: u64 = given.iter().sum();
    if floor > budget {
        return vec![budget / n; ladders.len()];
    }
    let mut left = budget - floor;
    let mut order: Vec<usize> = (0..ladders.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ladders[i].top_height));
    for i in order {
        for &cost in ladders[i].costs().iter().skip(1) {
            let more = cost.saturating_sub(given[i]);
            if more > left {
                break;
            }
            left -= more;
            given[i] = given[i].max(cost);
        }
    }
    let each = left / n;
    for g in &mut given {
        *g += each;
    }
    given
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
    /// A bandwidth-driven upgrade waiting out `UPGRADE_HOLD`.
    pending_upgrade: Option<(u8, Instant)>,
    /// The target is below what the wish allows because of bandwidth.
    limited_by_bandwidth: bool,
    /// The current layer does not fit the bandwidth: stop forwarding it.
    congested: bool,
}

impl SimulcastSelector {
    pub fn new(wish: LayerWish) -> Self {
        Self {
            wish,
            available_bps: None,
            current: None,
            target: None,
            last_request: [None; MAX_LAYERS],
            pending_upgrade: None,
            limited_by_bandwidth: false,
            congested: false,
        }
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

    /// Whether bandwidth, not the wish, holds the target below the layer wanted (as of the last
    /// `update_target`).
    pub fn limited_by_bandwidth(&self) -> bool {
        self.limited_by_bandwidth
    }

    pub fn set_wish(&mut self, wish: LayerWish) {
        self.wish = wish;
    }

    /// The bandwidth this subscription may use (`None`: unconstrained).
    pub fn set_available_bandwidth(&mut self, bps: Option<u64>) {
        self.available_bps = bps;
    }

    /// Whether the current layer is being held back because it does not fit the bandwidth.
    pub fn congested(&self) -> bool {
        self.congested
    }

    /// Recompute the target from the layers' status. Returns the new target when it changed.
    pub fn update_target(&mut self, now: Instant, layers: &[LayerStatus]) -> Option<u8> {
        let chosen = self.choose(layers, self.available_bps)?;
        // An upgrade that only bandwidth held back must be allowed for a while before it
        // happens; one the subscriber asked for happens at once.
        if self.target.is_some_and(|t| chosen > t) && self.limited_by_bandwidth {
            match self.pending_upgrade {
                Some((layer, since)) if layer == chosen && now.saturating_duration_since(since) >= UPGRADE_HOLD => {}
                Some((layer, _)) if layer == chosen => return None,
                _ => {
                    self.pending_upgrade = Some((chosen, now));
                    return None;
                }
            }
        }
        self.pending_upgrade = None;
        self.limited_by_bandwidth = self.choose(layers, None).is_some_and(|wished| wished > chosen);
        // The current layer no longer fits the bandwidth: it stops until the switch.
        self.congested = match (self.current, self.available_bps) {
            (Some(c), Some(avail)) => {
                chosen < c
                    && layers
                        .get(usize::from(c))
                        .is_some_and(|l| l.bitrate_bps as f64 > avail as f64 * CONGESTION_FACTOR)
            }
            _ => false,
        };
        if Some(chosen) != self.target {
            self.target = Some(chosen);
            return Some(chosen);
        }
        None
    }

    /// Whether the subscriber's wish admits layer `i`.
    fn fits_wish(&self, i: usize, l: &LayerStatus) -> bool {
        self.wish.max_layer.is_none_or(|m| i <= usize::from(m))
            && (l.height == 0 || self.wish.max_height.is_none_or(|h| l.height <= h))
    }

    /// How much bandwidth over layer `i`'s rate it takes to choose it: less to stay on the
    /// current layer, more to move up.
    fn headroom(&self, i: usize) -> f64 {
        match self.current.map(usize::from) {
            Some(c) if c == i => 1.0 / KEEP_TOLERANCE,
            Some(c) if c > i => 1.0,
            _ => UPGRADE_HEADROOM,
        }
    }

    /// The bandwidth this subscription must be given to choose each layer it would accept, lowest
    /// first (what `choose` compares against), and its priority: the largest frame it accepts.
    pub fn ladder(&self, layers: &[LayerStatus]) -> Ladder {
        let mut ladder = Ladder::default();
        for (i, l) in layers.iter().enumerate().take(MAX_LAYERS) {
            if l.active && self.fits_wish(i, l) {
                let cost = (l.bitrate_bps as f64 * self.headroom(i)).ceil() as u64;
                ladder.costs[ladder.len] = cost;
                ladder.len += 1;
                ladder.top_height = ladder.top_height.max(l.height);
            }
        }
        ladder
    }

    /// The layer the wish alone would choose.
    pub fn wished(&self, layers: &[LayerStatus]) -> Option<u8> {
        self.choose(layers, None)
    }

    fn choose(&self, layers: &[LayerStatus], available_bps: Option<u64>) -> Option<u8> {
        // Runs for every subscription at every tick: no allocation, just the (at most four) layers.
        let n = layers.len().min(MAX_LAYERS);
        let lowest_active = (0..n).find(|&i| layers[i].active)?;
        let wished = |i: usize| layers[i].active && self.fits_wish(i, &layers[i]);
        let fits_bandwidth = |i: usize| match available_bps {
            None => true,
            Some(avail) => {
                let need = layers[i].bitrate_bps as f64;
                need == 0.0 || need * self.headroom(i) <= avail as f64
            }
        };
        let chosen = (0..n).rev().filter(|&i| wished(i)).find(|&i| fits_bandwidth(i));
        // Nothing fits: the lowest layer the subscriber would accept, else the lowest active one.
        let chosen = chosen.or_else(|| (0..n).find(|&i| wished(i))).unwrap_or(lowest_active);
        u8::try_from(chosen).ok()
    }

    /// Decide about one packet (the hot path: a few comparisons).
    pub fn on_packet(&mut self, layer: u8, keyframe_start: bool) -> Decision {
        if Some(layer) == self.target && self.current != self.target && keyframe_start {
            self.current = Some(layer);
            self.congested = false;
            Decision::Forward { switched: true }
        } else if Some(layer) == self.current && !self.congested {
            Decision::Forward { switched: false }
        } else {
            Decision::Drop
        }
    }

    /// The layer this subscription needs a keyframe of: its target, while a start or switch to
    /// it is pending. Asked at every tick until the keyframe comes; the track's forwarder turns
    /// the wishes of all its subscriptions into requests to the publisher, throttled per layer.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<u8> {
        let target = self.target?;
        if self.current == Some(target) {
            return None;
        }
        if let Some(slot) = self.last_request.get_mut(usize::from(target)) {
            *slot = Some(now);
        }
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

    /// A speaker tile that accepts every layer, and eight 180p thumbnails: with 3.5 Mbit/s, an
    /// even split (389 kbit/s each) would hold the speaker at its lowest layer; by priority it
    /// gets its top layer and every thumbnail still gets its one.
    #[test]
    fn the_speaker_tile_is_served_before_the_thumbnails() {
        let sel = SimulcastSelector::new(LayerWish::default());
        let speaker = sel.ladder(&layers([true; 3]));
        let thumb =
            SimulcastSelector::new(LayerWish { max_layer: None, max_height: Some(180) }).ladder(&layers([true; 3]));
        assert_eq!(thumb.costs().len(), 1);
        let mut ladders = vec![thumb; 8];
        ladders.insert(3, speaker);
        let shares = allocate(3_500_000, &ladders);
        assert!(shares.iter().sum::<u64>() <= 3_500_000);
        assert!(shares[3] >= *speaker.costs().last().expect("three layers"), "speaker: {}", shares[3]);
        for (i, s) in shares.iter().enumerate().filter(|(i, _)| *i != 3) {
            assert!(*s >= thumb.costs()[0], "thumbnail {i}: {s}");
        }
        // The selectors pick accordingly.
        assert_eq!(sel.choose(&layers([true; 3]), Some(shares[3])), Some(2));
        assert_eq!(sel.choose(&layers([true; 3]), Some(3_500_000 / 9)), Some(0), "what an even split gave");
    }

    #[test]
    fn the_taller_wish_gets_the_one_upgrade_there_is_room_for() {
        let small = Ladder::new(&[100, 400], 360);
        let big = Ladder::new(&[100, 400], 720);
        let shares = allocate(550, &[small, big]);
        assert_eq!(shares, vec![100 + 25, 400 + 25], "the rest (50) is shared evenly");
    }

    #[test]
    fn when_not_even_the_lowest_layers_fit_the_budget_is_shared_evenly() {
        let l = Ladder::new(&[150_000, 500_000], 360);
        assert_eq!(allocate(300_000, &[l, l, l]), vec![100_000; 3]);
        assert_eq!(allocate(1_000, &[]), Vec::<u64>::new());
        // A subscription with no layer known yet takes part in the even rest.
        assert_eq!(allocate(600, &[Ladder::default(), Ladder::new(&[200], 180)]), vec![200, 400]);
    }

    proptest::proptest! {
        /// Never more than the budget; each gets at least its lowest layer when all of those fit.
        #[test]
        fn allocations_stay_within_the_budget(
            budget in 0u64..10_000_000,
            raw in proptest::collection::vec((proptest::collection::vec(0u64..3_000_000, 0..=4), 0u32..1080), 0..10),
        ) {
            let ladders: Vec<Ladder> = raw
                .iter()
                .map(|(costs, h)| {
                    let mut c = costs.clone();
                    c.sort_unstable();
                    Ladder::new(&c, *h)
                })
                .collect();
            let shares = allocate(budget, &ladders);
            proptest::prop_assert_eq!(shares.len(), ladders.len());
            proptest::prop_assert!(shares.iter().sum::<u64>() <= budget);
            let floor: u64 = ladders.iter().map(|l| l.costs().first().copied().unwrap_or(0)).sum();
            if floor <= budget {
                for (s, l) in shares.iter().zip(&ladders) {
                    proptest::prop_assert!(*s >= l.costs().first().copied().unwrap_or(0));
                }
            }
        }
    }

    fn layers(active: [bool; 3]) -> [LayerStatus; 3] {
        let rates = [150_000, 500_000, 1_500_000];
        let heights = [180, 360, 720];
        std::array::from_fn(|i| LayerStatus { active: active[i], bitrate_bps: rates[i], height: heights[i] })
    }

    #[test]
    fn target_follows_wish_bandwidth_and_availability() {
        let mut s = SimulcastSelector::new(LayerWish::default());
        // Each step is `UPGRADE_HOLD` apart: held upgrades have matured by the second call.
        let mut now = Instant::now();
        let mut target = |s: &mut SimulcastSelector, l: [LayerStatus; 3]| {
            now += UPGRADE_HOLD;
            s.update_target(now, &l);
            now += UPGRADE_HOLD;
            s.update_target(now, &l);
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
        assert_eq!(s.update_target(Instant::now(), &layers([false; 3])), None, "no change when nothing is active");
        assert_eq!(s.target(), Some(2));
    }

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let t0 = Instant::now();
        let mut s = SimulcastSelector::new(LayerWish { max_layer: Some(0), max_height: None });
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.on_packet(0, false), Decision::Drop, "no keyframe yet");
        assert_eq!(s.on_packet(0, true), Decision::Forward { switched: true });
        assert_eq!(s.on_packet(0, false), Decision::Forward { switched: false });
        assert_eq!(s.on_packet(1, true), Decision::Drop);
        s.set_wish(LayerWish::default());
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.on_packet(2, false), Decision::Drop, "target layer, but not a keyframe");
        assert_eq!(s.on_packet(0, false), Decision::Forward { switched: false }, "keep the current layer meanwhile");
        assert_eq!(s.on_packet(2, true), Decision::Forward { switched: true });
        assert_eq!(s.on_packet(0, true), Decision::Drop);
        assert_eq!(s.current(), Some(2));
    }

    #[test]
    fn a_keyframe_is_wanted_while_a_switch_is_pending() {
        let t0 = Instant::now();
        let mut s = SimulcastSelector::new(LayerWish::default());
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.poll_keyframe_request(t0), Some(2));
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_millis(50)), Some(2), "still pending");
        s.update_target(t0, &layers([true, true, false]));
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_millis(600)), Some(1), "the new target");
        s.on_packet(1, true);
        assert_eq!(s.poll_keyframe_request(t0 + Duration::from_secs(5)), None, "no request once switched");
    }

    #[test]
    fn congestion_stops_the_current_layer_at_once_but_a_wish_does_not() {
        let t0 = Instant::now();
        let mut s = SimulcastSelector::new(LayerWish::default());
        s.update_target(t0, &layers([true; 3]));
        s.on_packet(2, true);
        // The subscriber asks for the low layer: the high one keeps flowing until the keyframe.
        s.set_wish(LayerWish { max_layer: Some(0), max_height: None });
        s.update_target(t0, &layers([true; 3]));
        assert!(!s.congested());
        assert_eq!(s.on_packet(2, false), Decision::Forward { switched: false });
        // Back to the high layer; then the bandwidth collapses under it.
        s.set_wish(LayerWish::default());
        s.update_target(t0, &layers([true; 3]));
        // A little short of the current layer's rate: keep it.
        s.set_available_bandwidth(Some(1_400_000));
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.target(), Some(2), "within the tolerance");
        // Somewhat short: move down, but keep the picture until the lower keyframe.
        s.set_available_bandwidth(Some(1_300_000));
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.target(), Some(1));
        assert!(!s.congested());
        assert_eq!(s.on_packet(2, false), Decision::Forward { switched: false });
        // Far short: the current layer stops at once.
        s.set_available_bandwidth(Some(600_000));
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.target(), Some(1));
        assert!(s.congested());
        assert_eq!(s.on_packet(2, false), Decision::Drop, "the layer that does not fit stops");
        assert_eq!(s.on_packet(1, true), Decision::Forward { switched: true });
        assert!(!s.congested());
    }

    #[test]
    fn bandwidth_upgrades_wait_but_wished_ones_do_not() {
        let t0 = Instant::now();
        let mut s = SimulcastSelector::new(LayerWish::default());
        s.set_available_bandwidth(Some(200_000));
        s.update_target(t0, &layers([true; 3]));
        assert_eq!(s.target(), Some(0));
        s.on_packet(0, true);
        // Bandwidth recovers: the upgrade waits UPGRADE_HOLD.
        s.set_available_bandwidth(Some(5_000_000));
        assert_eq!(s.update_target(t0 + Duration::from_millis(100), &layers([true; 3])), None);
        assert_eq!(s.update_target(t0 + Duration::from_millis(900), &layers([true; 3])), None);
        assert_eq!(s.update_target(t0 + Duration::from_millis(1100), &layers([true; 3])), Some(2));
        // A wished upgrade is immediate.
        let mut w = SimulcastSelector::new(LayerWish { max_layer: Some(0), max_height: None });
        w.set_available_bandwidth(Some(5_000_000));
        w.update_target(t0, &layers([true; 3]));
        w.set_wish(LayerWish::default());
        assert_eq!(w.update_target(t0, &layers([true; 3])), Some(2));
    }
}
