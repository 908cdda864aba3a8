//! Answering a subscriber's NACKs from the forwarded layers' histories, within its budget.

use super::{Subscription, TrackForwarder};
use crate::sfu::nack::RetransmitBudget;
use crate::sfu::packet::MediaPacket;
use crate::sfu::rewriter::{Rewrite, StreamRewriter};
use std::time::{Duration, Instant};

/// What became of the sequence numbers of a subscriber's NACK.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NackAnswer {
    /// Sent again from the history.
    pub sent: u32,
    /// Not in the history (never received, or too old).
    pub missed: u32,
    /// Forwarded so recently that the NACK crossed it: not sent twice.
    pub too_recent: u32,
    /// Over the subscriber's retransmission budget: refused.
    pub over_budget: u32,
}

/// How a subscriber's NACK is answered.
#[derive(Debug)]
pub struct ResendPolicy<'a> {
    pub now: Instant,
    /// Do not resend what was forwarded less than this ago (about the subscriber's round trip).
    pub guard: Duration,
    /// The subscriber's retransmission budget, and the rate it refills at.
    pub budget: &'a mut RetransmitBudget,
    pub rate_bps: u64,
}

impl<S: Copy> TrackForwarder<S> {
    /// Answer a subscriber's NACK from the history under `policy`. A packet that reached the SFU
    /// (and was forwarded) less than `policy.guard` ago is not sent again: the NACK crossed it on
    /// the way, and resending would only deliver it twice. What the subscriber's retransmission
    /// budget does not cover is refused.
    pub fn on_nack(
        &mut self,
        subscription: u64,
        seqs: impl Iterator<Item = u16>,
        policy: ResendPolicy<'_>,
        mut emit: impl FnMut(&Subscription<S>, &MediaPacket, &Rewrite),
    ) -> NackAnswer {
        let ResendPolicy { now, guard, budget, rate_bps } = policy;
        let mut answer = NackAnswer::default();
        let Some(sub) = self.subs.iter().find(|s| s.id == subscription) else { return answer };
        for out_seq in seqs {
            let found = sub.rewriter.source_of(out_seq).and_then(|(segment, src)| {
                let pkt = self.layers.get(usize::from(segment.layer))?.history.get(src)?;
                Some((pkt, StreamRewriter::rewrite_retransmission(&segment, src, pkt.timestamp, pkt.vp8.as_ref())))
            });
            match found {
                Some((pkt, _)) if now.saturating_duration_since(pkt.received_at) < guard => answer.too_recent += 1,
                Some((pkt, _)) if !budget.take(now, rate_bps, pkt.data.len()) => answer.over_budget += 1,
                Some((pkt, rw)) => {
                    answer.sent += 1;
                    emit(sub, pkt, &rw);
                }
                None => answer.missed += 1,
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::sfu::packet::Codec;

    #[test]
    fn nacks_are_answered_from_history_with_the_original_rewrite() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[180, 360, 720]);
        let mut p = Publisher::new();
        f.add_subscription(spec(1, low()));
        let mut kf = Vec::new();
        round(&mut f, &mut p, t0, [false; 3]);
        f.tick(t0, &mut kf);
        let mut sent = Vec::new();
        for i in 0..10 {
            for (_, _, seq) in round(&mut f, &mut p, t0, [i == 0, false, false]) {
                sent.push(seq);
            }
        }
        let mut again = Vec::new();
        let nack = [sent[3], sent[7], 12_345];
        let guard = Duration::from_millis(10);
        let mut budget = RetransmitBudget::default();
        fn policy(now: Instant, budget: &mut RetransmitBudget) -> ResendPolicy<'_> {
            ResendPolicy { now, guard: Duration::from_millis(10), budget, rate_bps: 1_000_000 }
        }
        // A NACK that crossed the packets (they were forwarded just now) resends nothing.
        let crossed = f.on_nack(1, nack.into_iter(), policy(t0 + Duration::from_millis(5), &mut budget), |_, _, _| {
            panic!("nothing is resent within the guard")
        });
        assert_eq!(crossed, NackAnswer { sent: 0, missed: 1, too_recent: 2, over_budget: 0 });
        let later = t0 + Duration::from_millis(50);
        let answer =
            f.on_nack(1, nack.into_iter(), policy(later, &mut budget), |_, pkt, rw| again.push((pkt.seq, rw.seq)));
        assert_eq!(answer, NackAnswer { sent: 2, missed: 1, too_recent: 0, over_budget: 0 });
        // An empty budget refuses.
        let mut empty = RetransmitBudget::default();
        let tiny = ResendPolicy { now: later, guard, budget: &mut empty, rate_bps: 8 };
        let refused = f.on_nack(1, nack.into_iter(), tiny, |_, _, _| panic!("nothing fits the budget"));
        assert_eq!(refused.over_budget, 2);
        assert_eq!(again.iter().map(|a| a.1).collect::<Vec<_>>(), vec![sent[3], sent[7]]);
        assert_eq!(again[0].0, 100 + 1 + 3, "source packet of layer 0");
    }
}
