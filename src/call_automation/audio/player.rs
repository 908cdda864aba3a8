//! Sends a [`Prompt`] as an RTP stream paced by the caller's clock: packet `i` is due 20 ms × `i`
//! after the first poll. Sequence numbers and timestamps run on without a break across loops, so a
//! looped prompt is one continuous talkspurt (marker bit on its first packet only).

use super::{FRAME, FRAME_SAMPLES, Prompt};
use crate::rtp::RtpBuilder;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A caller this late gets the overdue packets at once, up to this much audio; beyond it the
/// schedule slips (the rest plays later) rather than bursting seconds of audio into a jitter buffer.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// What [`Player::poll`] says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayerOutput {
    /// Send this RTP packet now (then poll again).
    Packet(Bytes),
    /// Nothing is due before this instant.
    Wait(Instant),
    /// The prompt has finished (or was stopped): nothing more will come.
    Done,
}

/// One playback of a prompt on one RTP stream.
#[derive(Debug, Clone)]
pub struct Player {
    prompt: Arc<Prompt>,
    looped: bool,
    rtp: RtpBuilder,
    /// Index of the next packet in the prompt.
    next: usize,
    /// Packets sent so far (across loops).
    sent: u64,
    /// When packet `sent` is due; set by the first poll.
    due: Option<Instant>,
    stopped: bool,
}

impl Player {
    pub fn new(prompt: Arc<Prompt>, looped: bool, ssrc: u32, payload_type: u8, first_seq: u16, first_ts: u32) -> Self {
        Self {
            prompt,
            looped,
            rtp: RtpBuilder {
                payload_type,
                seq: first_seq,
                timestamp: first_ts,
                ssrc,
                marker: true,
                extensions: Vec::new(),
            },
            next: 0,
            sent: 0,
            due: None,
            stopped: false,
        }
    }

    /// The next thing to do at `now`: a packet that is due (a complete RTP packet: 12-byte header
    /// and the Opus payload), the instant to wait for, or `Done`. Call it again after each packet.
    pub fn poll(&mut self, now: Instant) -> PlayerOutput {
        if self.stopped || self.prompt.packets.is_empty() {
            return PlayerOutput::Done;
        }
        if self.next == self.prompt.packets.len() {
            if !self.looped {
                return PlayerOutput::Done;
            }
            self.next = 0;
        }
        let due = *self.due.get_or_insert(now);
        if now < due {
            return PlayerOutput::Wait(due);
        }
        // Too far behind (a stalled caller): slip the schedule instead of bursting.
        let due = if now.saturating_duration_since(due) > MAX_CATCH_UP {
            now.checked_sub(MAX_CATCH_UP).unwrap_or(due)
        } else {
            due
        };
        let payload = &self.prompt.packets[self.next];
        let mut packet = Vec::with_capacity(12 + payload.len());
        self.rtp.write(payload, &mut packet);
        self.rtp.marker = false;
        self.rtp.seq = self.rtp.seq.wrapping_add(1);
        self.rtp.timestamp = self.rtp.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.next += 1;
        self.sent += 1;
        self.due = Some(due + FRAME);
        PlayerOutput::Packet(Bytes::from(packet))
    }

    /// Start the schedule at `due` instead of at the first poll: a prompt that follows another on
    /// the same stream starts where the previous one's next packet was due ([`Player::next_due`]).
    pub fn starting_at(mut self, due: Instant) -> Self {
        self.due = Some(due);
        self
    }

    /// When the next packet is (or would have been) due; `None` before the first poll.
    pub fn next_due(&self) -> Option<Instant> {
        self.due
    }

    /// Interrupt: every later poll returns `Done`.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Packets sent so far, across loops.
    pub fn packets_sent(&self) -> u64 {
        self.sent
    }

    /// Sequence number the next packet would carry: a later player on the same stream starts here.
    pub fn next_seq(&self) -> u16 {
        self.rtp.seq
    }

    /// RTP timestamp the next packet would carry (add the silence between prompts, at 48 kHz,
    /// before starting a later player on the same stream).
    pub fn next_timestamp(&self) -> u32 {
        self.rtp.timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    fn prompt(n: u8) -> Arc<Prompt> {
        Arc::new(Prompt { packets: (0..n).map(|i| Bytes::from(vec![i; 3 + usize::from(i)])).collect() })
    }

    /// Drive a player on a virtual clock that jumps to each `Wait`; returns (time offset, header,
    /// payload) of every packet until `Done` or `limit` packets.
    fn run(player: &mut Player, start: Instant, limit: usize) -> Vec<(Duration, RtpHeader, Vec<u8>)> {
        let mut now = start;
        let mut out = Vec::new();
        while out.len() < limit {
            match player.poll(now) {
                PlayerOutput::Packet(p) => {
                    let h = RtpHeader::parse(&p).expect("the player writes valid RTP");
                    let payload = p[h.payload.clone()].to_vec();
                    out.push((now - start, h, payload));
                }
                PlayerOutput::Wait(at) => {
                    assert!(at > now, "Wait must be in the future");
                    now = at;
                }
                PlayerOutput::Done => break,
            }
        }
        out
    }

    #[test]
    fn sends_every_packet_20ms_apart_with_continuous_seq_and_ts() {
        let mut p = Player::new(prompt(5), false, 0xabcd, 111, 65_534, u32::MAX - 960);
        let start = Instant::now();
        let out = run(&mut p, start, 100);
        assert_eq!(out.len(), 5);
        for (i, (at, h, payload)) in out.iter().enumerate() {
            assert_eq!(*at, FRAME * i as u32);
            assert_eq!(h.seq, 65_534u16.wrapping_add(i as u16), "seq wraps at 65535");
            assert_eq!(h.timestamp, (u32::MAX - 960).wrapping_add(960 * i as u32), "ts wraps");
            assert_eq!((h.ssrc, h.payload_type), (0xabcd, 111));
            assert_eq!(h.marker, i == 0, "marker on the first packet only");
            assert_eq!(payload, &vec![i as u8; 3 + i]);
        }
        assert_eq!(p.poll(start + Duration::from_secs(10)), PlayerOutput::Done);
        assert_eq!((p.packets_sent(), p.next_seq(), p.next_timestamp()), (5, 3, (u32::MAX - 960).wrapping_add(4800)));
    }

    #[test]
    fn waits_until_due_and_catches_up_a_little() {
        let mut p = Player::new(prompt(20), false, 1, 111, 0, 0);
        let t0 = Instant::now();
        assert!(matches!(p.poll(t0), PlayerOutput::Packet(_)));
        assert_eq!(p.poll(t0 + Duration::from_millis(5)), PlayerOutput::Wait(t0 + FRAME));
        // 60 ms late: the three overdue packets come at once, then a wait.
        let late = t0 + Duration::from_millis(65);
        for _ in 0..3 {
            assert!(matches!(p.poll(late), PlayerOutput::Packet(_)));
        }
        assert_eq!(p.poll(late), PlayerOutput::Wait(t0 + Duration::from_millis(80)));
        // A 1 s stall: only 100 ms of audio comes in the burst, then the schedule has slipped.
        let stalled = t0 + Duration::from_millis(1_080);
        let mut burst = 0;
        while let PlayerOutput::Packet(_) = p.poll(stalled) {
            burst += 1;
        }
        assert_eq!(burst, 6, "100 ms of catch-up plus the packet due now");
    }

    #[test]
    fn loops_until_stopped() {
        let mut p = Player::new(prompt(3), true, 1, 111, 10, 1000);
        let start = Instant::now();
        let out = run(&mut p, start, 10);
        assert_eq!(out.len(), 10, "a looped prompt never ends by itself");
        let payload_ids: Vec<u8> = out.iter().map(|(_, _, pl)| pl[0]).collect();
        assert_eq!(payload_ids, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        for (i, (at, h, _)) in out.iter().enumerate() {
            assert_eq!(*at, FRAME * i as u32, "no gap at the loop point");
            assert_eq!(h.seq, 10 + i as u16);
            assert_eq!(h.timestamp, 1000 + 960 * i as u32);
            assert_eq!(h.marker, i == 0);
        }
        p.stop();
        assert_eq!(p.poll(start + Duration::from_secs(1)), PlayerOutput::Done);
    }

    #[test]
    fn stop_before_start_and_empty_prompt_are_done() {
        let mut p = Player::new(prompt(3), false, 1, 111, 0, 0);
        p.stop();
        assert_eq!(p.poll(Instant::now()), PlayerOutput::Done);
        let mut empty = Player::new(Arc::new(Prompt::default()), true, 1, 111, 0, 0);
        assert_eq!(empty.poll(Instant::now()), PlayerOutput::Done, "an empty looped prompt must not spin");
    }
}
