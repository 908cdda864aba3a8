//! Simulcast layers of browser publishers, lowest first. A browser's offer lists its rids in the
//! order of its `sendEncodings`, which need not be lowest first (and its SDP declares no
//! resolutions), while layer numbers everywhere else (wishes, `layerChanged`, bandwidth) count from
//! the lowest. So the worker watches each browser-published simulcast track, and once it can tell
//! it puts the layers lowest first, once: by the frame height of their keyframes (VP8), else by
//! bitrate after the layers have flowed for `RATE_DECIDES_AFTER`. It can tell when every layer has
//! arrived, or when two or more have and their order is plain: rising (nothing to do) or falling
//! (the whole list is reversed). Browsers often leave out the smallest layer for a long time (a
//! small capture, a busy CPU), so waiting for every layer could mean waiting for good.

use super::{LayerSource, Worker};
use crate::media::command::PeerMsg;
use crate::media::ids::TrackId;
use std::time::{Duration, Instant};

/// With no heights to go by (H.264), how long every layer must have been flowing before their
/// bitrates decide the order.
const RATE_DECIDES_AFTER: Duration = Duration::from_secs(2);

/// Where a browser-published track's layer order stands.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LayerOrder {
    /// Decided (or nothing to decide: one layer, or a QUIC publisher that declared its order).
    pub settled: bool,
    /// Since when two or more layers have been arriving.
    pub active_since: Option<Instant>,
}

impl LayerOrder {
    pub fn settled() -> Self {
        LayerOrder { settled: true, active_since: None }
    }
}

/// The order that puts layers with these `keys` lowest first (`order[i]`: the layer that becomes
/// layer `i`; equal keys keep their order), or `None` when they already are.
pub(super) fn lowest_first(keys: &[u64]) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    order.iter().enumerate().any(|(i, &o)| i != o).then_some(order)
}

/// The order of layers with these `keys`, of which those in `active` (two or more, ascending)
/// are arriving: `Some(None)` when they are lowest first, `Some(Some(order))` when they must be
/// reordered (see `lowest_first`), `None` when it cannot be told yet (some layers missing, and
/// those arriving neither rising nor falling).
pub(super) fn decide(keys: &[u64], active: &[usize]) -> Option<Option<Vec<usize>>> {
    if active.len() == keys.len() {
        return Some(lowest_first(keys));
    }
    let seen: Vec<u64> = active.iter().map(|&i| keys[i]).collect();
    if seen.windows(2).all(|w| w[0] < w[1]) {
        Some(None)
    } else if seen.windows(2).all(|w| w[0] > w[1]) {
        Some(Some((0..keys.len()).rev().collect()))
    } else {
        None
    }
}

impl Worker {
    /// Settle the layer order of browser-published simulcast tracks that have shown all their
    /// layers (every tick; settled tracks cost one check).
    pub(super) fn order_browser_layers(&mut self, now: Instant) {
        let mut reorders: Vec<(TrackId, Vec<usize>)> = Vec::new();
        for (id, t) in &mut self.tracks {
            let Some(origin) = t.origin.as_mut() else { continue };
            if origin.order.settled {
                continue;
            }
            let n = origin.layers.len();
            let statuses = t.forwarder.layer_statuses(now);
            let statuses = &statuses[..n.min(statuses.len())];
            if n < 2 || statuses.len() < n {
                origin.order.settled = true;
                continue;
            }
            let active: Vec<usize> = (0..n).filter(|&i| statuses[i].active).collect();
            if active.len() < 2 {
                origin.order.active_since = None;
                continue;
            }
            let since = *origin.order.active_since.get_or_insert(now);
            let keys: Vec<u64> = if active.iter().all(|&i| statuses[i].height > 0) {
                statuses.iter().map(|s| u64::from(s.height)).collect()
            } else if now.saturating_duration_since(since) >= RATE_DECIDES_AFTER {
                statuses.iter().map(|s| s.bitrate_bps).collect()
            } else {
                continue;
            };
            let Some(order) = decide(&keys, &active) else { continue };
            origin.order.settled = true;
            if let Some(order) = order {
                reorders.push((*id, order));
            }
        }
        for (track, order) in reorders {
            self.reorder_layers(track, &order);
        }
    }

    /// Make layer `order[i]` of a track this worker publishes its layer `i`: where the browser's
    /// packets land (its SSRCs and rids), the forwarder here, and the mirrors on other workers.
    fn reorder_layers(&mut self, track: TrackId, order: &[usize]) {
        let Some(t) = self.tracks.get_mut(&track) else { return };
        let Some(origin) = t.origin.as_mut() else { return };
        if order.len() != origin.layers.len() {
            return;
        }
        let mut old: Vec<_> = std::mem::take(&mut origin.layers).into_iter().map(Some).collect();
        origin.layers = order.iter().filter_map(|&i| old.get_mut(i).and_then(Option::take)).collect();
        let mut new_index = vec![0u8; order.len()];
        for (i, &o) in order.iter().enumerate() {
            new_index[o] = i as u8;
        }
        if let Some(&LayerSource::WebRtc { peer, mid, .. }) = origin.layers.first().map(|l| &l.source)
            && let Some(p) = self.out.peers.get_mut(peer).and_then(Option::as_mut)
        {
            if let Some(b) = p.publish.get_mut(&mid) {
                b.rids = origin
                    .layers
                    .iter()
                    .map(|l| match l.source {
                        LayerSource::WebRtc { rid, .. } => rid,
                        LayerSource::Quic { .. } => None,
                    })
                    .collect();
            }
            for b in p.rx.values_mut().filter(|b| b.track == track) {
                b.layer = new_index.get(usize::from(b.layer)).copied().unwrap_or(b.layer);
            }
        }
        t.forwarder.reorder_layers(order);
        let rids: Vec<String> = origin
            .layers
            .iter()
            .map(|l| match l.source {
                LayerSource::WebRtc { rid: Some(rid), .. } => rid.to_string(),
                _ => "-".to_owned(),
            })
            .collect();
        tracing::info!(worker = self.index, %track, ?rids, "simulcast layers reordered lowest first");
        let sinks: Vec<usize> =
            origin.sinks.iter().enumerate().filter(|&(w, s)| *s && w != self.index).map(|(w, _)| w).collect();
        for w in sinks {
            self.send_peer_control(w, PeerMsg::ReorderLayers { track, order: order.to_vec() });
        }
        self.out.counters.layer_reorders.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::{decide, lowest_first};

    #[test]
    fn orders_by_key_and_leaves_an_ordered_list_alone() {
        assert_eq!(lowest_first(&[720, 360, 180]), Some(vec![2, 1, 0]));
        assert_eq!(lowest_first(&[360, 180, 720]), Some(vec![1, 0, 2]));
        assert_eq!(lowest_first(&[180, 360, 720]), None);
        assert_eq!(lowest_first(&[180, 180]), None, "equal keys keep their order");
        assert_eq!(lowest_first(&[]), None);
    }

    #[test]
    fn two_layers_arriving_tell_the_direction() {
        // All three: sorted.
        assert_eq!(decide(&[360, 720, 180], &[0, 1, 2]), Some(Some(vec![2, 0, 1])));
        // The smallest missing (0 height), the others falling: the whole list is reversed.
        assert_eq!(decide(&[720, 360, 0], &[0, 1]), Some(Some(vec![2, 1, 0])));
        // Rising: already lowest first.
        assert_eq!(decide(&[0, 360, 720], &[1, 2]), Some(None));
        assert_eq!(decide(&[180, 0, 720], &[0, 2]), Some(None));
        // Equal keys say nothing: wait for more.
        assert_eq!(decide(&[360, 360, 0], &[0, 1]), None);
    }
}
