//! Client state shared by the API and the reader tasks: which flow is what, the send history for
//! answering NACKs, and loss detection on subscriptions.

use super::ClientEvent;
use crate::rtp::{self, RtpHeader, rtcp, varint};
use crate::sfu::nack::{LossDetector, PacketHistory};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the reader should do after a datagram.
pub enum Action {
    Event(ClientEvent),
    Send(Bytes),
}

struct PublishFlow {
    track: u64,
    layer: u8,
    history: PacketHistory<Bytes>,
}

struct SubscriptionFlow {
    subscription: u64,
    ssrc: u32,
    loss: LossDetector,
    drop_next: u32,
}

#[derive(Default)]
pub struct Shared {
    publish: HashMap<u64, PublishFlow>,
    subscriptions: HashMap<u64, SubscriptionFlow>,
    pub nacks_sent: u64,
    pub retransmissions_sent: u64,
    /// Sender reports received on subscriptions.
    pub sender_reports: u64,
    /// The latest sender report on each subscription: (NTP time, RTP timestamp).
    pub last_sender_report: HashMap<u64, (u64, u32)>,
    /// Receiver reports received on published flows.
    pub receiver_reports: u64,
}

fn datagram(flow: u64, payload: &[u8]) -> Bytes {
    let mut d = BytesMut::with_capacity(payload.len() + 8);
    varint::write(flow, &mut d);
    d.put_slice(payload);
    d.freeze()
}

impl Shared {
    pub fn add_publish_flow(&mut self, flow: u64, track: u64, layer: u8) {
        self.publish.insert(flow, PublishFlow { track, layer, history: PacketHistory::new(1024) });
    }

    /// Forget an unpublished track's flow and its send history.
    pub fn remove_publish_flow(&mut self, flow: u64) {
        self.publish.remove(&flow);
    }

    pub fn remember_sent(&mut self, flow: u64, seq: u16, packet: Bytes) {
        if let Some(f) = self.publish.get_mut(&flow) {
            f.history.insert(seq, packet);
        }
    }

    pub fn add_subscription(&mut self, flow: u64, subscription: u64, ssrc: u32) {
        self.subscriptions
            .insert(flow, SubscriptionFlow { subscription, ssrc, loss: LossDetector::new(), drop_next: 0 });
    }

    /// Whether anything is subscribed to (there is nothing to NACK otherwise).
    pub fn has_subscriptions(&self) -> bool {
        !self.subscriptions.is_empty()
    }

    pub fn forget_track(&mut self, track: u64) {
        self.publish.retain(|_, f| f.track != track);
    }

    pub fn drop_incoming(&mut self, subscription: u64, count: u32) {
        if let Some(s) = self.subscriptions.values_mut().find(|s| s.subscription == subscription) {
            s.drop_next += count;
        }
    }

    pub fn on_datagram(&mut self, d: Bytes, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((flow, n)) = varint::read(&d) else { return out };
        let packet = d.slice(n..);
        if rtp::is_rtcp(&packet) {
            if let Some(p) = self.publish.get_mut(&flow) {
                for item in rtcp::parse(&packet).flatten() {
                    match item {
                        rtcp::Rtcp::Nack { items, .. } => {
                            for seq in rtcp::nack_seqs(items) {
                                if let Some(orig) = p.history.get(seq) {
                                    out.push(Action::Send(datagram(flow, orig)));
                                    self.retransmissions_sent += 1;
                                }
                            }
                        }
                        rtcp::Rtcp::Pli { .. } | rtcp::Rtcp::Fir { .. } => {
                            out.push(Action::Event(ClientEvent::KeyframeRequest { track: p.track, layer: p.layer }));
                        }
                        rtcp::Rtcp::ReceiverReport { .. } => self.receiver_reports += 1,
                        _ => {}
                    }
                }
            } else if let Some(s) = self.subscriptions.get(&flow) {
                for p in rtcp::parse(&packet).flatten() {
                    if let rtcp::Rtcp::SenderReport { ntp, rtp_timestamp, .. } = p {
                        self.sender_reports += 1;
                        self.last_sender_report.insert(s.subscription, (ntp, rtp_timestamp));
                    }
                }
            }
            return out;
        }
        if let Some(s) = self.subscriptions.get_mut(&flow) {
            let Ok(h) = RtpHeader::parse(&packet) else { return out };
            if s.drop_next > 0 {
                s.drop_next -= 1;
                return out;
            }
            s.loss.on_packet(now, h.seq);
            out.push(Action::Event(ClientEvent::Rtp { subscription: s.subscription, packet }));
        }
        out
    }

    /// NACK datagrams due now.
    pub fn poll_nacks(&mut self, now: Instant, rtt: Duration) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut seqs = Vec::new();
        for (flow, s) in &mut self.subscriptions {
            seqs.clear();
            s.loss.poll_nacks(now, rtt, &mut seqs);
            if !seqs.is_empty() {
                let mut buf = Vec::new();
                rtcp::write_nack(&mut buf, 1, s.ssrc, &seqs);
                self.nacks_sent += seqs.len() as u64;
                out.push(datagram(*flow, &buf));
            }
        }
        out
    }
}
