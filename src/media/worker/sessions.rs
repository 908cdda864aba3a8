//! What a worker holds per session besides media: pruning bindings its admission no longer
//! allows, server-side mutes, and the backlogs that make state messages (to other workers) and
//! offers (to WebRTC sessions) wait for room instead of being dropped.

use super::{SESSION_BACKLOG, Worker, codec_of};
use crate::media::command::{PeerMsg, SessionInput};
use crate::media::ids::{SessionId, SubscriptionId, TrackId};
use crate::media::quic::Flow;
use crate::rooms::TrackSource;
use crate::sfu::packet::MediaKind;
use std::time::Instant;
use tokio::sync::mpsc;

impl Worker {
    /// Send a state message to another worker: now if its queue has room, else after what is
    /// already waiting for it (never dropped).
    pub(super) fn send_peer_control(&mut self, worker: usize, msg: PeerMsg) {
        let Some(tx) = self.peer_txs.get(worker) else { return };
        let backlog = &mut self.peer_backlog[worker];
        if backlog.is_empty() {
            match tx.try_send(msg) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => backlog.push_back(msg),
            }
        } else {
            backlog.push_back(msg);
        }
    }

    /// Retry state messages that found a queue full (each loop turn).
    pub(super) fn flush_backlogs(&mut self) {
        for (w, backlog) in self.peer_backlog.iter_mut().enumerate() {
            while let Some(msg) = backlog.pop_front() {
                match self.peer_txs[w].try_send(msg) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                    Err(mpsc::error::TrySendError::Full(msg)) => {
                        backlog.push_front(msg);
                        break;
                    }
                }
            }
        }
        if self.backlogged.is_empty() {
            return;
        }
        let mut overflowed = Vec::new();
        let sessions = &mut self.rtc_sessions;
        self.backlogged.retain(|session| {
            let Some(rs) = sessions.get_mut(session) else { return false };
            while let Some(input) = rs.backlog.pop_front() {
                match rs.inbox.try_send(input) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                    Err(mpsc::error::TrySendError::Full(input)) => {
                        rs.backlog.push_front(input);
                        break;
                    }
                }
            }
            if rs.backlog.len() > SESSION_BACKLOG {
                overflowed.push(*session);
            }
            !rs.backlog.is_empty()
        });
        for session in overflowed {
            tracing::info!(worker = self.index, %session, "WebRTC session does not read its messages; ending it");
            self.out.counters.drop(crate::media::metrics::Drop::InboxFull);
            self.end_rtc_session(session);
        }
    }

    /// Forget a WebSocket session's media: its peer, bindings and subscriptions. Dropping its
    /// inbox ends the session's task if it is still running.
    pub(super) fn end_rtc_session(&mut self, session: SessionId) {
        if let Some(rs) = self.rtc_sessions.remove(&session) {
            self.rtc_sessions_gauge.dec();
            self.admissions.dismiss(session);
            if let Some(peer) = rs.peer {
                self.close_peer(peer);
            }
        }
    }

    /// Remove what `session` may no longer have under its admission: publish bindings (the
    /// tracks go, and a browser's m-line is set inactive by the next offer) and subscriptions.
    pub(super) fn prune(&mut self, session: SessionId, now: Instant) {
        let allowed = |w: &Worker, track: TrackId, source: Option<TrackSource>| {
            w.tracks.get(&track).is_some_and(|t| w.admissions.allows(session, t.room, source))
        };
        if let Some(&idx) = self.sessions.get(&session) {
            let flows: Vec<(u64, Flow)> = self.out.conns[idx]
                .as_ref()
                .map(|c| c.flows.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default();
            for (flow, binding) in flows {
                match binding {
                    Flow::Publish { track, .. } => {
                        let source = self.tracks.get(&track).and_then(|t| t.origin.as_ref()).map(|o| o.source);
                        if source.is_none_or(|s| !allowed(self, track, Some(s))) {
                            self.remove_published_by(track, session);
                            if let Some(c) = self.out.conns[idx].as_mut() {
                                c.flows.remove(&flow);
                            }
                        }
                    }
                    Flow::Subscribe { track, subscription } => {
                        if !allowed(self, track, None) {
                            if let Some(c) = self.out.conns[idx].as_mut() {
                                c.flows.remove(&flow);
                            }
                            self.remove_subscription(track, subscription);
                        }
                    }
                }
            }
        }
        let Some(peer) = self.rtc_sessions.get(&session).and_then(|s| s.peer) else { return };
        let Some(p) = self.out.peers[peer].as_ref() else { return };
        let published: Vec<(str0m::media::Mid, TrackId, TrackSource)> =
            p.publish.iter().map(|(mid, b)| (*mid, b.track, b.source)).collect();
        let subscribed: Vec<(SubscriptionId, TrackId)> = p.tx.iter().map(|(s, b)| (*s, b.track)).collect();
        for (mid, track, source) in published {
            if !allowed(self, track, Some(source)) {
                self.remove_published_by(track, session);
                self.deactivate_webrtc_publish(peer, mid, now);
            }
        }
        for (subscription, track) in subscribed {
            if !allowed(self, track, None) {
                self.unsubscribe_webrtc(session, subscription, now);
                self.remove_subscription(track, subscription);
            }
        }
    }

    /// Stop forwarding a track (or start again). Unmuting video asks for keyframes, so
    /// subscribers' decoders restart cleanly.
    pub(super) fn set_muted(&mut self, track: TrackId, muted: bool) {
        let Some(t) = self.tracks.get_mut(&track) else { return };
        t.muted = muted;
        let layers = t.origin.as_ref().map_or(0, |o| o.layers.len());
        if !muted && codec_of(t).kind() == MediaKind::Video {
            for layer in 0..layers {
                self.send_keyframe_request(track, layer as u8);
            }
        }
    }

    /// Tell a session's control-plane task something; a full or closed inbox is the session's
    /// problem (it is going away or not reading), never the worker's.
    pub(super) fn notify(&mut self, session: SessionId, input: SessionInput) {
        if let Some(rs) = self.rtc_sessions.get_mut(&session) {
            // An offer must arrive (the peer's negotiation waits for its answer): keep it for the
            // next turn when the inbox is full. Layer changes may be missed.
            let must_arrive = matches!(input, SessionInput::Offer { .. });
            if !rs.backlog.is_empty() && must_arrive {
                rs.backlog.push_back(input);
                return;
            }
            match rs.inbox.try_send(input) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(input)) => {
                    if must_arrive {
                        rs.backlog.push_back(input);
                        self.backlogged.push(session);
                    } else {
                        self.out.counters.drop(crate::media::metrics::Drop::InboxFull);
                    }
                }
            }
            return;
        }
        let inbox = self.sessions.get(&session).and_then(|&idx| self.out.conns[idx].as_ref()?.inbox.as_ref());
        if let Some(inbox) = inbox
            && inbox.try_send(input).is_err()
        {
            self.out.counters.drop(crate::media::metrics::Drop::InboxFull);
        }
    }
}
